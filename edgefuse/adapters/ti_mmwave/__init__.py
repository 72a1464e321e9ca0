"""TI mmWave radar (IWR/AWR 14xx, 16xx, 18xx, 68xx running the mmWave SDK demo) over its UARTs.

- :mod:`.protocol`: the data-port byte stream: :func:`decode_frame`, :func:`encode_frame` (its exact
  inverse, used by the simulator), :class:`FrameDecoder` (resynchronizing stream decoder with stats).
- :mod:`.cfg`: ``.cfg`` files → :class:`ChirpConfig` (range/doppler resolution, limits) and
  :func:`send_cfg` (config port driver).
- :mod:`.source`: :func:`open_ti_mmwave` for ``ti-mmwave:///dev/ttyUSB0?data=/dev/ttyUSB1&cfg=…`` and
  ``ti-mmwave-file://capture.dat?cfg=…``; both yield :class:`~edgefuse.types.Message`\\ s with a
  :class:`~edgefuse.types.RadarScan` (x y z doppler snr noise; + peak for SDK 2.x).

Axes: TI's x right / y forward / z up become our sensor frame x forward / y left / z up
(``x = y_ti``, ``y = −x_ti``). Layouts, clocks and formulas: docs/adapters.md, "TI mmWave".
"""

from edgefuse.adapters.ti_mmwave.cfg import CfgError, ChirpConfig, load_cfg, parse_cfg, send_cfg
from edgefuse.adapters.ti_mmwave.protocol import (
    MAGIC,
    FrameDecoder,
    RadarFrame,
    TiFrameError,
    decode_frame,
    encode_frame,
)
from edgefuse.adapters.ti_mmwave.source import (
    TiMmwaveFileSource,
    TiMmwaveSerialSource,
    cpu_clock_hz,
    open_ti_mmwave,
    parse_uri,
)

__all__ = [
    "MAGIC",
    "CfgError",
    "ChirpConfig",
    "FrameDecoder",
    "RadarFrame",
    "TiFrameError",
    "TiMmwaveFileSource",
    "TiMmwaveSerialSource",
    "cpu_clock_hz",
    "decode_frame",
    "encode_frame",
    "load_cfg",
    "open_ti_mmwave",
    "parse_cfg",
    "parse_uri",
    "send_cfg",
]
