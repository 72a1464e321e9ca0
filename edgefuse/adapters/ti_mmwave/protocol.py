"""The TI mmWave SDK demo's UART data stream: decode (pure), encode (its exact inverse), resynchronize.

Byte layout (little-endian; TI mmWave SDK demo ``mmw_output.h`` and the "Understanding the UART data
output format" page of TI's radar toolbox, see docs/adapters.md):

Frame header, 40 bytes (36 without ``subFrameNumber``: SDK 1.x/2.x on xWR14xx, and SDK < 1.2)::

    0  magic word   4 × uint16  0x0102 0x0304 0x0506 0x0708  (bytes 02 01 04 03 06 05 08 07)
    8  version      uint32      major<<24 | minor<<16 | bugfix<<8 | build
    12 totalPacketLen uint32    whole packet including this header, padded to a multiple of 32
    16 platform     uint32      0xA1443 xWR14xx, 0xA1642 xWR16xx, 0xA1843 xWR18xx, 0xA6843 xWR68xx …
    20 frameNumber  uint32
    24 timeCpuCycles uint32     see :func:`cpu_clock_hz`
    28 numDetectedObj uint32
    32 numTLVs      uint32
    36 subFrameNumber uint32    (absent on SDK ≤ 2.x xWR14xx and SDK < 1.2)

Then ``numTLVs`` × (type uint32, length uint32 = payload bytes after this 8-byte TL header, payload).

- type 1, detected points. SDK 3.x: ``numDetectedObj`` × (x, y, z, velocity) float32 (m, m/s).
  SDK 1.x/2.x: descriptor (numDetetedObj uint16, xyzQFormat uint16) then per object rangeIdx uint16,
  dopplerIdx int16, peakVal uint16, x y z int16 in Q``xyzQFormat`` metres.
- type 7 (SDK 3.x), side info: per point snr int16, noise int16, both in 0.1 dB.

Other TLV types (range profile, heat maps, stats …) are skipped and listed in ``RadarFrame.skipped_tlvs``.
The SDK format is told from the header's version major (1 or 2 → fixed point, 3 → float).

Axes: TI's frame is x right, y forward (boresight), z up. We convert to the sensor-frame convention
x forward, y left, z up: ``x = y_ti``, ``y = −x_ti``, ``z = z_ti``. Doppler (radial) needs no change.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgefuse.adapters.ti_mmwave.cfg import ChirpConfig
from edgefuse.errors import InputError
from edgefuse.types import RadarScan

MAGIC = bytes.fromhex("0201040306050807")
#: Largest ``totalPacketLen`` accepted before waiting for or allocating anything (1 MiB: the biggest
#: SDK demo packets, with range-Doppler heat maps, are tens of KiB).
MAX_PACKET_LEN = 1 << 20
SEGMENT_LEN = 32  # packets are padded to a multiple of this
PLATFORM_XWR14XX = 0xA1443
PLATFORM_XWR16XX = 0xA1642
PLATFORM_XWR68XX = 0xA6843
TLV_DETECTED_POINTS = 1
TLV_SIDE_INFO = 7
VERSION_3X = 0x03050004  # SDK 3.5.0.4, what encode_frame writes by default
VERSION_2X = 0x02010004  # SDK 2.1.0.4

_HDR = struct.Struct("<7I")  # version … numTLVs, after the magic word
_TL = struct.Struct("<II")
_DESCR = struct.Struct("<HH")
_OBJ_2X = np.dtype(
    [("range_idx", "<u2"), ("doppler_idx", "<i2"), ("peak", "<u2"), ("x", "<i2"), ("y", "<i2"), ("z", "<i2")]
)
_POINT_3X = np.dtype("<f4")
SCAN_FIELDS = ("x", "y", "z", "doppler", "snr", "noise")


class TiFrameError(InputError):
    """A packet that is not a valid TI frame. ``reason`` is the short key counted in decoder stats."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class RadarFrame:
    """One decoded packet. Point arrays are (N,) float32 in the sensor frame (x forward, y left, z up,
    metres); ``doppler`` m/s (positive = moving away; NaN for SDK 2.x without a chirp config), ``snr``
    and ``noise`` dB (NaN when the frame has no side-info TLV, always for SDK 2.x). SDK 2.x frames also
    keep the raw ``range_idx``, ``doppler_idx`` and ``peak`` (uint16 CFAR peak value) per point."""

    sdk: str  # "3.x" or "2.x"
    version: int
    platform: int
    frame_number: int
    time_cpu_cycles: int
    sub_frame_number: int
    num_detected_obj: int  # as the header says
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    doppler: np.ndarray
    snr: np.ndarray
    noise: np.ndarray
    range_idx: np.ndarray | None = None
    doppler_idx: np.ndarray | None = None
    peak: np.ndarray | None = None
    xyz_q_format: int | None = None
    skipped_tlvs: tuple[int, ...] = ()
    packet_len: int = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to_scan(self) -> RadarScan:
        """The points as a :class:`RadarScan` with fields x y z doppler snr noise (+ peak for SDK 2.x)."""
        cols = [self.x, self.y, self.z, self.doppler, self.snr, self.noise]
        fields = SCAN_FIELDS
        if self.peak is not None:
            cols.append(self.peak.astype(np.float32))
            fields = SCAN_FIELDS + ("peak",)
        return RadarScan(
            np.stack(cols, axis=1).astype(np.float32, copy=False).reshape(-1, len(fields)), fields
        )


def _header_len(version: int, platform: int) -> tuple[str, int]:
    """(format, header bytes). ``subFrameNumber`` came with SDK 1.2 on xWR16xx and is absent on
    xWR14xx up to SDK 2.x (TI's own visualizer keys it on the platform the same way)."""
    major, minor = version >> 24, (version >> 16) & 0xFF
    if major in (1, 2):
        old = platform == PLATFORM_XWR14XX or (major == 1 and minor < 2)
        return "2.x", 36 if old else 40
    if major == 3:
        return "3.x", 40
    return "", 0


def decode_frame(
    buf: bytes | bytearray | memoryview,
    cfg: ChirpConfig | None = None,
    source: str = "<bytes>",
    offset: int = 0,
) -> RadarFrame:
    """Decode one packet starting at ``buf[0]`` (``buf`` may run past the packet's end).

    ``cfg`` gives SDK 2.x doppler in m/s (``dopplerIdx`` × :attr:`ChirpConfig.doppler_resolution_mps`,
    indices above ``numDopplerBins/2 − 1`` wrapped to negative as TI's visualizer does); without it
    2.x doppler is NaN. Every count in the header is checked against ``totalPacketLen`` before any array
    is made. Raises :class:`TiFrameError` naming ``source``, the byte ``offset`` of the packet, the
    field and what was expected."""
    mv = memoryview(buf).cast("B")
    n = len(mv)

    def fail(reason: str, what: str) -> TiFrameError:
        return TiFrameError(reason, f"{source}: frame at byte {offset}: {what}")

    if n < 36:
        raise fail("truncated", f"expected at least a 36-byte header, got {n} bytes")
    if bytes(mv[:8]) != MAGIC:
        raise fail("magic", f"magic word: expected {MAGIC.hex()}, got {bytes(mv[:8]).hex()}")
    version, total, platform, frame_no, cycles, n_obj, n_tlv = _HDR.unpack_from(mv, 8)
    sdk, hlen = _header_len(version, platform)
    if not sdk:
        raise fail("version", f"version: expected SDK major 1, 2 or 3, got 0x{version:08x}")
    if not hlen <= total <= n:
        raise fail(
            "length" if total < hlen or total > MAX_PACKET_LEN else "truncated",
            f"totalPacketLen: expected {hlen}..{n} bytes, got {total}",
        )
    sub_frame = struct.unpack_from("<I", mv, 36)[0] if hlen == 40 else 0
    room = total - hlen
    if n_tlv > room // _TL.size:
        raise fail("num_tlvs", f"numTLVs: expected at most {room // _TL.size} in {total} bytes, got {n_tlv}")
    point_size = 16 if sdk == "3.x" else _OBJ_2X.itemsize
    if n_obj > room // point_size:
        raise fail(
            "num_points",
            f"numDetectedObj: expected at most {room // point_size} in {total} bytes, got {n_obj}",
        )

    points = None  # (x_ti, y_ti, z_ti, doppler) float32 arrays
    side = None
    extra: dict = {}
    skipped = []
    pos = hlen
    for i in range(n_tlv):
        if pos + _TL.size > total:
            raise fail(
                "tlv_length",
                f"TLV {i} header at byte {pos}: expected 8 bytes before the packet end at {total}",
            )
        t, length = _TL.unpack_from(mv, pos)
        pos += _TL.size
        if length > total - pos:
            raise fail(
                "tlv_length", f"TLV {i} (type {t}) length: expected at most {total - pos} bytes, got {length}"
            )
        body = mv[pos : pos + length]
        pos += length
        if t == TLV_DETECTED_POINTS:
            if points is not None:
                raise fail("tlv_points", f"TLV {i}: expected one detected-points TLV, got a second")
            if sdk == "3.x":
                if length != 16 * n_obj:
                    raise fail(
                        "tlv_points",
                        f"TLV {i} (points) length: expected 16 × numDetectedObj = {16 * n_obj}, got {length}",
                    )
                a = np.frombuffer(body, dtype=_POINT_3X).reshape(-1, 4)
                if not np.isfinite(a).all():  # the UART has no checksum: corrupted floats show here
                    k = int(np.argwhere(~np.isfinite(a))[0, 0])
                    raise fail("nonfinite", f"TLV {i} (points) point {k}: expected finite x y z velocity, "
                               f"got {a[k].tolist()}")
                points = (a[:, 0], a[:, 1], a[:, 2], a[:, 3])
            else:
                if length < _DESCR.size:
                    raise fail("tlv_points", f"TLV {i} (points) length: expected ≥ 4, got {length}")
                count, q = _DESCR.unpack_from(body, 0)
                if count != n_obj or length != _DESCR.size + _OBJ_2X.itemsize * count:
                    raise fail(
                        "tlv_points",
                        f"TLV {i} (points): expected numDetetedObj = numDetectedObj "
                        f"= {n_obj} and length 4 + 12 × that, got {count} objects, length {length}",
                    )
                if q > 15:
                    raise fail("q_format", f"TLV {i} (points) xyzQFormat: expected 0..15, got {q}")
                o = np.frombuffer(body[_DESCR.size :], dtype=_OBJ_2X)
                scale = np.float32(1.0 / (1 << q))
                dop = np.full(count, np.nan, dtype=np.float32)
                if cfg is not None:
                    nd = cfg.num_doppler_bins
                    idx = o["doppler_idx"].astype(np.int64)
                    idx = np.where(idx > nd // 2 - 1, idx - nd, idx)
                    dop = (idx * cfg.doppler_resolution_mps).astype(np.float32)
                points = (o["x"] * scale, o["y"] * scale, o["z"] * scale, dop)
                extra = dict(
                    range_idx=o["range_idx"].copy(),
                    doppler_idx=o["doppler_idx"].copy(),
                    peak=o["peak"].copy(),
                    xyz_q_format=int(q),
                )
        elif t == TLV_SIDE_INFO and sdk == "3.x":
            if length % 4:
                raise fail("side_info", f"TLV {i} (side info) length: expected a multiple of 4, got {length}")
            side = np.frombuffer(body, dtype="<i2").reshape(-1, 2)
        else:
            skipped.append(int(t))

    if points is None:
        empty = np.zeros(0, dtype=np.float32)
        points = (empty, empty, empty, empty)
    count = points[0].shape[0]
    if side is not None and side.shape[0] != count:
        raise fail(
            "side_info", f"side-info TLV: expected {count} entries (one per point), got {side.shape[0]}"
        )
    if side is None:
        snr = noise = np.full(count, np.nan, dtype=np.float32)
    else:
        snr = (side[:, 0] / 10.0).astype(np.float32)
        noise = (side[:, 1] / 10.0).astype(np.float32)
    x_ti, y_ti, z_ti, dop = points
    return RadarFrame(
        sdk=sdk,
        version=version,
        platform=platform,
        frame_number=frame_no,
        time_cpu_cycles=cycles,
        sub_frame_number=sub_frame,
        num_detected_obj=n_obj,
        x=np.array(y_ti, dtype=np.float32),
        y=np.negative(x_ti, dtype=np.float32),
        z=np.array(z_ti, dtype=np.float32),
        doppler=np.array(dop, dtype=np.float32),
        snr=snr,
        noise=noise,
        skipped_tlvs=tuple(skipped),
        packet_len=total,
        **extra,
    )


# ---------------------------------------------------------------- encoder


def encode_frame(
    points,
    frame_number: int,
    sdk: str = "3.x",
    cfg: ChirpConfig | None = None,
    snr_db=None,
    noise_db=None,
    time_cpu_cycles: int = 0,
    platform: int | None = None,
    sub_frame_number: int = 0,
    peak=None,
    xyz_q_format: int | None = None,
) -> bytes:
    """Build the UART packet the SDK demo would send for ``points`` — the exact inverse of
    :func:`decode_frame`.

    ``points``: a :class:`RadarScan` (x y z, and doppler/snr/noise columns when present) or an (N, 3|4)
    float array x y z [doppler], in the sensor frame (x forward, y left, z up; m, m/s); converted to
    TI's axes here. ``snr_db``/``noise_db`` (N,) override the scan's columns; both or neither.

    SDK 3.x: points as float32 (decoded back bit-exactly), side info in 0.1 dB when snr/noise are given.
    SDK 2.x: x y z in Q``xyz_q_format`` int16 (default: the finest Q that fits), ``dopplerIdx`` =
    round(doppler / doppler resolution) and ``rangeIdx`` = round(range / range bin) when ``cfg`` is given
    (0 without: the decoder then gives NaN doppler), ``peak`` (N,) uint16 (default: the scan's ``peak``
    column, else 0). 2.x has no
    side-info TLV, so snr/noise are not sent. Packets are zero-padded to a multiple of 32 bytes."""
    if sdk not in ("3.x", "2.x"):
        raise ValueError(f"encode_frame: sdk: expected '3.x' or '2.x', got {sdk!r}")
    xyzd, snr_db, noise_db = _points_arrays(points, snr_db, noise_db)
    n = xyzd.shape[0]
    x_ti, y_ti, z_ti = -xyzd[:, 1], xyzd[:, 0], xyzd[:, 2]
    tlvs: list[tuple[int, bytes]] = []
    if sdk == "3.x":
        platform = PLATFORM_XWR68XX if platform is None else platform
        version = VERSION_3X
        if n:
            body = np.stack([x_ti, y_ti, z_ti, xyzd[:, 3]], axis=1).astype("<f4")
            if not np.isfinite(body).all():
                raise ValueError("encode_frame: points: expected finite x y z doppler for SDK 3.x")
            tlvs.append((TLV_DETECTED_POINTS, body.tobytes()))
            if snr_db is not None:
                side = np.stack([_tenths("snr_db", snr_db), _tenths("noise_db", noise_db)], axis=1)
                tlvs.append((TLV_SIDE_INFO, side.astype("<i2").tobytes()))
    else:
        platform = PLATFORM_XWR16XX if platform is None else platform
        version = VERSION_2X
        if n:
            xyz_ti = np.stack([x_ti, y_ti, z_ti], axis=1).astype(np.float64)
            q = _q_format(xyz_ti) if xyz_q_format is None else int(xyz_q_format)
            raw = np.round(xyz_ti * (1 << q))
            if not 0 <= q <= 15 or np.abs(raw).max() > 32767:
                raise ValueError(f"encode_frame: xyz_q_format {q}: coordinates do not fit int16")
            o = np.zeros(n, dtype=_OBJ_2X)
            o["x"], o["y"], o["z"] = raw[:, 0], raw[:, 1], raw[:, 2]
            if cfg is not None:
                dop = xyzd[:, 3].astype(np.float64)
                if not np.all(np.isfinite(dop)):
                    raise ValueError("encode_frame: doppler: expected finite values with a cfg")
                idx = np.round(dop / cfg.doppler_resolution_mps)
                half = cfg.num_doppler_bins // 2
                if idx.size and (idx.min() < -half or idx.max() > half - 1):
                    raise ValueError(
                        f"encode_frame: doppler: expected |v| within the cfg's ±"
                        f"{cfg.max_velocity_mps:.3f} m/s (indices −{half}..{half - 1})"
                    )
                o["doppler_idx"] = idx
                rng = np.linalg.norm(xyz_ti, axis=1) / cfg.range_bin_m
                o["range_idx"] = np.clip(np.round(rng), 0, 65535)
            if peak is None and isinstance(points, RadarScan) and points.has("peak"):
                peak = points.column("peak")
            if peak is not None:
                o["peak"] = np.asarray(peak, dtype=np.uint16).reshape(n)
            tlvs.append((TLV_DETECTED_POINTS, _DESCR.pack(n, q) + o.tobytes()))
    hlen = _header_len(version, platform)[1]
    payload = b"".join(_TL.pack(t, len(b)) + b for t, b in tlvs)
    total = -(-(hlen + len(payload)) // SEGMENT_LEN) * SEGMENT_LEN
    header = MAGIC + _HDR.pack(
        version, total, platform, frame_number & 0xFFFFFFFF, time_cpu_cycles & 0xFFFFFFFF, n, len(tlvs)
    )
    if hlen == 40:
        header += struct.pack("<I", sub_frame_number)
    return header + payload + bytes(total - hlen - len(payload))


def _points_arrays(points, snr_db, noise_db) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(N, 4) float32 x y z doppler in the sensor frame, and (N,) snr/noise or None."""
    if isinstance(points, RadarScan):
        n = len(points)
        cols = [
            points.column(c) if points.has(c) else np.zeros(n, np.float32) for c in ("x", "y", "z", "doppler")
        ]
        xyzd = np.stack(cols, axis=1).astype(np.float32)
        if snr_db is None and noise_db is None and points.has("snr") and points.has("noise"):
            snr_db, noise_db = points.column("snr"), points.column("noise")
    else:
        a = np.asarray(points, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] not in (3, 4):
            raise ValueError(f"encode_frame: points: expected shape (N, 3) or (N, 4), got {a.shape}")
        xyzd = a if a.shape[1] == 4 else np.concatenate([a, np.zeros((a.shape[0], 1), np.float32)], axis=1)
    if (snr_db is None) != (noise_db is None):
        raise ValueError("encode_frame: snr_db and noise_db: expected both or neither")
    if snr_db is not None:
        snr_db = np.asarray(snr_db, dtype=np.float64).reshape(xyzd.shape[0])
        noise_db = np.asarray(noise_db, dtype=np.float64).reshape(xyzd.shape[0])
    return xyzd, snr_db, noise_db


def _tenths(name: str, v: np.ndarray) -> np.ndarray:
    t = np.round(v * 10.0)
    if not np.all(np.isfinite(t)) or (t.size and (t.min() < -32768 or t.max() > 32767)):
        raise ValueError(f"encode_frame: {name}: expected finite values within ±3276.7 dB")
    return t.astype(np.int16)


def _q_format(xyz: np.ndarray) -> int:
    m = float(np.abs(xyz).max()) if xyz.size else 0.0
    for q in range(15, -1, -1):
        if round(m * (1 << q)) <= 32767:
            return q
    raise ValueError(f"encode_frame: points: |coordinate| {m:.1f} m does not fit int16 in any Q format")


# ---------------------------------------------------------------- stream decoder


@dataclass
class FrameDecoder:
    """Finds and decodes packets in a byte stream fed in arbitrary pieces (pure: no I/O, no clock).

    Resynchronizes on the magic word after garbage or a truncated packet. ``totalPacketLen`` is checked
    against ``max_packet_len`` before waiting for the packet; a new magic word inside a packet's span
    means that packet was cut short (counted ``truncated``) and decoding restarts there. The buffer
    never holds more than ``max_packet_len + FEED_SLICE`` bytes.

    ``stats`` counts ``bytes_in``, ``frames``, ``garbage_bytes`` (bytes outside any packet),
    ``skipped_bytes`` (bytes of rejected packets), ``skip_<reason>`` per rejected packet
    (``version``, ``length``, ``truncated``, ``num_tlvs``, ``num_points``, ``tlv_length``,
    ``tlv_points``, ``side_info``, ``q_format``, ``nonfinite``) and ``doppler_nan_no_cfg`` (SDK 2.x
    frames decoded without a chirp config). ``last_error`` keeps the message of the latest rejection."""

    cfg: ChirpConfig | None = None
    max_packet_len: int = MAX_PACKET_LEN
    source: str = "<stream>"
    stats: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None

    FEED_SLICE = 1 << 16

    def __post_init__(self) -> None:
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._scan_from = len(MAGIC)  # where the next in-packet magic search starts
        self._warned = False
        for k in ("bytes_in", "frames", "garbage_bytes", "skipped_bytes"):
            self.stats.setdefault(k, 0)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[RadarFrame]:
        """Add bytes; return the frames completed by them, in stream order."""
        out: list[RadarFrame] = []
        mv = memoryview(data).cast("B")
        self.stats["bytes_in"] += len(mv)
        for start in range(0, len(mv), self.FEED_SLICE):
            self._buf += mv[start : start + self.FEED_SLICE]
            self._drain(out)
        return out

    def flush(self) -> int:
        """End of stream: count what is left as a truncated packet (or garbage); return its size."""
        n = len(self._buf)
        if n:
            if self._buf.startswith(MAGIC):
                self._skip(
                    n,
                    "truncated",
                    f"{self.source}: frame at byte {self._offset}: stream ended "
                    f"after {n} bytes of the packet",
                )
            else:
                self._discard(n)
        return n

    # -- internals

    def _discard(self, n: int) -> None:
        self.stats["garbage_bytes"] += n
        self._consume(n)

    def _skip(self, n: int, reason: str, message: str) -> None:
        key = f"skip_{reason}"
        self.stats[key] = self.stats.get(key, 0) + 1
        self.stats["skipped_bytes"] += n
        self.last_error = message
        self._consume(n)

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._offset += n
        self._scan_from = len(MAGIC)

    def _drain(self, out: list[RadarFrame]) -> None:
        buf = self._buf
        while True:
            i = buf.find(MAGIC)
            if i < 0:
                # keep a tail that may be the start of a magic word split across feeds
                self._discard(max(0, len(buf) - (len(MAGIC) - 1)))
                return
            if i:
                self._discard(i)
            if len(buf) < 20:  # magic + version + totalPacketLen + platform
                return
            version, total, platform = struct.unpack_from("<III", buf, 8)
            sdk, hlen = _header_len(version, platform)
            where = f"{self.source}: frame at byte {self._offset}"
            if not sdk:
                self._skip(
                    len(MAGIC),
                    "version",
                    f"{where}: version: expected SDK major 1, 2 or 3, got 0x{version:08x}",
                )
                continue
            if not hlen <= total <= self.max_packet_len:
                self._skip(
                    len(MAGIC),
                    "length",
                    f"{where}: totalPacketLen: expected {hlen}..{self.max_packet_len} bytes, got {total}",
                )
                continue
            # a magic word starting inside this packet's span: the packet was cut short
            j = buf.find(MAGIC, self._scan_from, min(len(buf), total + len(MAGIC) - 1))
            if 0 <= j < total:
                self._skip(
                    j, "truncated", f"{where}: truncated: next magic word at +{j}, expected {total} bytes"
                )
                continue
            if len(buf) < total:
                self._scan_from = max(len(MAGIC), len(buf) - len(MAGIC) + 1)
                return
            try:
                # a copy: the frame's arrays must not pin the buffer, which shrinks below
                frame = decode_frame(bytes(buf[:total]), self.cfg, self.source, self._offset)
            except TiFrameError as e:
                self._skip(len(MAGIC), e.reason, str(e))
                continue
            if frame.sdk == "2.x" and self.cfg is None and len(frame):
                self.stats["doppler_nan_no_cfg"] = self.stats.get("doppler_nan_no_cfg", 0) + 1
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"{self.source}: SDK 2.x frames give doppler as bin indices; without a chirp "
                        "configuration (cfg=… with the .cfg file the radar runs) doppler is NaN",
                        stacklevel=3,
                    )
            self.stats["frames"] += 1
            out.append(frame)
            self._consume(total)
