"""TI mmWave sources: a live radar over its two UARTs, or a captured byte stream; both yield Messages.

URIs (query values are URL-decoded)::

    ti-mmwave:///dev/ttyUSB0?data=/dev/ttyUSB1[&cfg=profile.cfg][&baud=921600][&cli_baud=115200]
              [&cpu_hz=…][&queue=64][&timeout=5]
    ti-mmwave-file://capture.dat[?cfg=profile.cfg][&cpu_hz=…]     (relative path; ///abs/path for absolute)

The path of ``ti-mmwave://`` is the config (CLI) port; ``data`` the data port. With ``cfg`` the file's
commands are sent to the CLI port (each must answer ``Done``) after the data port is open, and
``sensorStop`` is sent on close. ``queue``: messages kept for the consumer (oldest dropped, counted);
``timeout``: seconds without a frame after which iteration raises :class:`InputError` (default: none —
iterate until ``close()``). A data port that fails (a USB hiccup: the XDS110's two ports vanish and come
back) is closed and re-opened with exponential backoff, the cfg sent again, as the camera and NMEA
sources do: counted in ``outages``, ``reconnects`` and ``open_failures``, logged once per outage.

Time: ``raw_stamp_ns`` is the sensor clock, ``timeCpuCycles`` unwrapped across uint32 wrap-arounds
(every 21.5 s at 200 MHz, 7.2 s at 600 MHz; see :class:`SensorClock`) and divided by the CPU clock
(:func:`cpu_clock_hz`, or ``cpu_hz=``). Live: ``recv_ns`` is the host monotonic time at which
the packet's last byte was read, and ``stamp_ns`` = ``recv_ns`` until the sync module maps the sensor
clock. Files have no host time: ``stamp_ns`` = ``recv_ns`` = ``raw_stamp_ns``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from edgefuse.adapters.base import Backoff
from edgefuse.adapters.ti_mmwave.cfg import ChirpConfig, load_cfg, send_cfg
from edgefuse.adapters.ti_mmwave.protocol import PLATFORM_XWR14XX, FrameDecoder, RadarFrame
from edgefuse.errors import InputError
from edgefuse.types import Message

log = logging.getLogger("edgefuse.adapters.ti_mmwave")

SCHEME_LIVE = "ti-mmwave"
SCHEME_FILE = "ti-mmwave-file"


def cpu_clock_hz(version: int, platform: int) -> int:
    """Clock that ``timeCpuCycles`` counts, from the header. SDK 3.x stamps the packet on the MSS
    (Cortex-R4F, PMU cycle counter, 200 MHz on xWR14xx/16xx/18xx/68xx); SDK 1.x/2.x stamp it where the
    data path runs: the R4F (200 MHz) on xWR14xx, the C674x DSP (600 MHz) on the others."""
    if version >> 24 >= 3 or platform == PLATFORM_XWR14XX:
        return 200_000_000
    return 600_000_000


@dataclass
class SensorClock:
    """Unwraps the uint32 ``timeCpuCycles`` into int64 ns (pure; one per stream). ``hz`` overrides
    :func:`cpu_clock_hz`. Between two frames the counter advanced by ``delta`` mod 2³²; with host
    receive times the whole wraps are chosen so that the sensor interval is closest to the host
    interval (so a pause longer than a wrap period keeps the clock right), without them one wrap at
    most is assumed."""

    hz: int | None = None
    _last: int | None = None
    _last_recv: int | None = None
    _ticks: int = 0  # unwrapped cycle count

    def to_ns(self, frame: RadarFrame, recv_ns: int | None = None) -> int:
        hz = self.hz or cpu_clock_hz(frame.version, frame.platform)
        c = frame.time_cpu_cycles
        if self._last is None:
            self._ticks = c
        else:
            delta = (c - self._last) & 0xFFFFFFFF
            if recv_ns is not None and self._last_recv is not None:
                host_ticks = (recv_ns - self._last_recv) * hz // 1_000_000_000
                delta += max(0, round((host_ticks - delta) / 2**32)) << 32
            self._ticks += delta
        self._last, self._last_recv = c, recv_ns
        return self._ticks * 1_000_000_000 // hz


@dataclass
class FrameToMessage:
    """Turns decoded frames into Messages (pure: the receive time comes in as an argument). Counts
    ``messages`` and ``frames_missing`` (gaps in ``frameNumber``) into ``stats``."""

    sensor_id: str
    clock: SensorClock
    stats: dict[str, int] = field(default_factory=dict)
    _seq: int = 0
    _last_frame: int | None = None

    def __call__(self, frame: RadarFrame, recv_ns: int | None) -> Message:
        raw = self.clock.to_ns(frame, recv_ns)
        if self._last_frame is not None:
            gap = (frame.frame_number - self._last_frame - 1) & 0xFFFFFFFF
            if 0 < gap < 1 << 31:
                self.stats["frames_missing"] = self.stats.get("frames_missing", 0) + gap
        self._last_frame = frame.frame_number
        recv = raw if recv_ns is None else recv_ns
        msg = Message(
            self.sensor_id,
            stamp_ns=recv,
            payload=frame.to_scan(),
            raw_stamp_ns=raw,
            recv_ns=recv,
            seq=self._seq,
        )
        self._seq += 1
        self.stats["messages"] = self._seq
        return msg


# ---------------------------------------------------------------- URIs


@dataclass(frozen=True)
class TiMmwaveUri:
    uri: str
    live: bool
    path: str  # capture file, or the CLI port
    data_port: str | None = None
    cfg: str | None = None
    baud: int = 921600
    cli_baud: int = 115200
    cpu_hz: int | None = None
    queue: int = 64
    timeout_s: float | None = None


_PARAMS = {
    SCHEME_LIVE: ("data", "cfg", "baud", "cli_baud", "cpu_hz", "queue", "timeout"),
    SCHEME_FILE: ("cfg", "cpu_hz"),
}


def parse_uri(uri: str) -> TiMmwaveUri:
    """Parse a ``ti-mmwave://`` or ``ti-mmwave-file://`` URI (see the module doc); errors name the URI
    and the parameter."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme not in _PARAMS:
        raise InputError(f"{uri}: scheme: expected {SCHEME_LIVE}:// or {SCHEME_FILE}://, got {scheme!r}")
    path = parts.netloc + parts.path
    if not path:
        raise InputError(f"{uri}: path: expected a {'serial port' if scheme == SCHEME_LIVE else 'file'}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for k in query:
        if k not in _PARAMS[scheme]:
            raise InputError(f"{uri}: parameter {k!r}: expected one of {list(_PARAMS[scheme])}")

    def num(key: str, kind: type, default, low: float):
        if key not in query:
            return default
        try:
            v = kind(query[key])
        except ValueError:
            v = None
        if v is None or not v >= low:
            raise InputError(
                f"{uri}: parameter {key}: expected a {kind.__name__} ≥ {low}, got {query[key]!r}"
            )
        return v

    live = scheme == SCHEME_LIVE
    if live and not query.get("data"):
        raise InputError(f"{uri}: parameter data: expected the data port, e.g. ?data=/dev/ttyUSB1")
    return TiMmwaveUri(
        uri=uri,
        live=live,
        path=path,
        data_port=query.get("data"),
        cfg=query.get("cfg") or None,
        baud=num("baud", int, 921600, 1),
        cli_baud=num("cli_baud", int, 115200, 1),
        cpu_hz=num("cpu_hz", int, None, 1),
        queue=num("queue", int, 64, 1),
        timeout_s=num("timeout", float, None, 0.001),
    )


def open_ti_mmwave(
    uri: str, sensor_id: str = "ti_mmwave", base_dir: str | os.PathLike | None = None
) -> TiMmwaveFileSource | TiMmwaveSerialSource:
    """Open a TI mmWave source from its URI. Both kinds iterate over Messages with a
    :class:`~edgefuse.types.RadarScan` payload (fields x y z doppler snr noise, + peak for SDK 2.x).
    Relative ``cfg=`` and capture paths are resolved against ``base_dir`` (e.g. the sensor-kit file's
    folder) when given, else against the working directory."""
    u = parse_uri(uri)

    def resolve(p: str) -> Path:
        return Path(base_dir, p) if base_dir is not None else Path(p)

    cfg = load_cfg(resolve(u.cfg)) if u.cfg else None
    if not u.live:
        return TiMmwaveFileSource(resolve(u.path), cfg=cfg, sensor_id=sensor_id, cpu_hz=u.cpu_hz)
    src = TiMmwaveSerialSource(
        u.path,
        u.data_port,
        cfg=cfg,
        sensor_id=sensor_id,
        baud=u.baud,
        cli_baud=u.cli_baud,
        cpu_hz=u.cpu_hz,
        queue_size=u.queue,
        timeout_s=u.timeout_s,
    )
    src.start()
    return src


# ---------------------------------------------------------------- sources


class TiMmwaveFileSource:
    """A captured data-port byte stream (what the radar's data UART sent, as raw bytes)."""

    CHUNK = 1 << 16

    def __init__(
        self,
        path: str | os.PathLike,
        cfg: ChirpConfig | None = None,
        sensor_id: str = "ti_mmwave",
        cpu_hz: int | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: expected a TI mmWave capture file, found none")
        self.decoder = FrameDecoder(cfg=cfg, source=str(self.path))
        self._convert = FrameToMessage(sensor_id, SensorClock(cpu_hz))

    @property
    def stats(self) -> dict[str, int]:
        return {**self.decoder.stats, **self._convert.stats}

    def __iter__(self) -> Iterator[Message]:
        with open(self.path, "rb") as f:
            while chunk := f.read(self.CHUNK):
                for frame in self.decoder.feed(chunk):
                    yield self._convert(frame, None)
        self.decoder.flush()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TiMmwaveSerialSource:
    """A live radar: a reader thread decodes the data port into a bounded queue of Messages.

    ``read(timeout_s)`` returns the oldest queued Message or None; iterating yields Messages until
    :meth:`close` (with ``timeout_s``: raises :class:`InputError` naming the data port when no frame
    comes for that long). A port that fails is closed and re-opened with ``backoff`` (the cfg sent again
    when there is one); the outage is counted (``outages``; ``reconnects`` once bytes arrive again,
    ``open_failures`` per failed attempt) and logged once, and ``last_error`` says why. ``clock_ns`` is
    the host monotonic clock (injectable for tests)."""

    def __init__(
        self,
        cli_port: str,
        data_port: str,
        cfg: ChirpConfig | None = None,
        sensor_id: str = "ti_mmwave",
        baud: int = 921600,
        cli_baud: int = 115200,
        cpu_hz: int | None = None,
        queue_size: int = 64,
        timeout_s: float | None = None,
        cfg_timeout_s: float = 2.0,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        backoff: Backoff | None = None,
    ):
        self.cli_port, self.data_port, self.cfg = cli_port, data_port, cfg
        self.baud, self.cli_baud = baud, cli_baud
        self.timeout_s, self.cfg_timeout_s = timeout_s, cfg_timeout_s
        self.decoder = FrameDecoder(cfg=cfg, source=data_port)
        self._convert = FrameToMessage(sensor_id, SensorClock(cpu_hz))
        self._clock_ns = clock_ns
        self._backoff = backoff if backoff is not None else Backoff()
        self._queue: collections.deque[Message] = collections.deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._in_outage = False
        self._own_stats = {"dropped_oldest": 0, "serial_errors": 0, "outages": 0, "reconnects": 0,
                           "open_failures": 0}  # fmt: skip
        self._data = None
        self._cli = None

    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self.decoder.stats, **self._convert.stats, **self._own_stats}

    def _open_data(self):
        import serial

        return serial.Serial(self.data_port, self.baud, timeout=0.05)

    def _configure(self) -> None:
        """Open the CLI port and send the cfg (raises what ``send_cfg`` and pyserial raise)."""
        import serial

        self._cli = serial.Serial(self.cli_port, self.cli_baud, timeout=0.05)
        self._cli.reset_input_buffer()
        send_cfg(self._cli, self.cfg, self.cli_port, self.cfg_timeout_s)

    def start(self) -> None:
        """Open the data port, start the reader, then send the cfg (if any) to the CLI port."""
        import serial

        try:
            self._data = self._open_data()
        except (serial.SerialException, OSError) as e:
            raise InputError(f"{self.data_port}: cannot open the data port: {e}") from None
        self._thread = threading.Thread(target=self._run, name=f"ti-mmwave {self.data_port}", daemon=True)
        self._thread.start()
        if self.cfg is not None:
            try:
                self._configure()
            except (serial.SerialException, OSError) as e:
                self.close()
                raise InputError(f"{self.cli_port}: cannot use the config port: {e}") from None
            except InputError:
                self.close()
                raise

    def _close_ports(self) -> None:
        for port in (self._data, self._cli):
            if port is not None:
                try:
                    port.close()
                except Exception as e:  # noqa: BLE001 - the device is gone either way
                    log.debug("%s: close failed: %s", self.data_port, e)
        self._data = self._cli = None

    def _lost(self, why: str) -> None:
        """The link failed: close both ports (the reader re-opens them after a backoff delay)."""
        with self._cond:
            self.last_error = why
            if not self._in_outage:
                self._in_outage = True
                self._own_stats["outages"] += 1
                log.warning("%s: radar link lost (%s); reconnecting with backoff", self.data_port, why)
        self._close_ports()

    def _reopen(self) -> bool:
        """One reconnect attempt: the data port, then the cfg. False (counted) when it failed."""
        try:
            self._data = self._open_data()
            if self.cfg is not None:
                self._configure()
            return True
        except Exception as e:  # noqa: BLE001 - serial.SerialException, OSError, a refused cfg: retry later
            with self._cond:
                self._own_stats["open_failures"] += 1
                self.last_error = f"reconnect failed: {e}"
            self._close_ports()
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._data is None:
                if self._stop.wait(self._backoff.next_delay()) or not self._reopen():
                    continue
            data = self._data
            try:
                chunk = data.read(max(1, data.in_waiting))
            except Exception as e:  # serial.SerialException, OSError, TypeError on a closed port
                if self._stop.is_set():
                    return
                with self._cond:
                    self._own_stats["serial_errors"] += 1
                self._lost(f"data port read failed: {e}")
                continue
            if not chunk:
                continue
            recv = self._clock_ns()
            with self._cond:
                if self._in_outage:  # back only once bytes came (a port that opens but stays dead is not)
                    self._in_outage = False
                    self._own_stats["reconnects"] += 1
                    log.warning("%s: radar link back", self.data_port)
                self._backoff.reset()
                for frame in self.decoder.feed(chunk):
                    if len(self._queue) >= self._queue_size:
                        self._queue.popleft()
                        self._own_stats["dropped_oldest"] += 1
                    self._queue.append(self._convert(frame, recv))
                    self._cond.notify_all()

    def read(self, timeout_s: float | None = None) -> Message | None:
        """The oldest queued Message, waiting up to ``timeout_s`` (None: the source's timeout, or 1 s);
        None if none came."""
        wait = timeout_s if timeout_s is not None else (self.timeout_s or 1.0)
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stop.is_set(), wait)
            return self._queue.popleft() if self._queue else None

    def __iter__(self) -> Iterator[Message]:
        last = time.monotonic()
        while not self._stop.is_set():
            msg = self.read(0.25 if self.timeout_s is None else min(0.25, self.timeout_s))
            if msg is not None:
                last = time.monotonic()
                yield msg
            elif self._stop.is_set():
                return
            elif self.timeout_s is not None and time.monotonic() - last >= self.timeout_s:
                why = f" ({self.last_error}; reconnecting)" if self._in_outage else ""
                raise InputError(f"{self.data_port}: no frame within {self.timeout_s:g} s{why}")

    def close(self) -> None:
        """Stop the reader, send ``sensorStop`` if we configured the radar, close both ports."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._cli is not None:
            try:
                self._cli.write(b"sensorStop\n")
                self._cli.flush()
            except Exception:
                pass  # best effort: the port may be gone
        self._close_ports()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
