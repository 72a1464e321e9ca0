"""Pure Velodyne packet codec: 1206-byte data packets ⇄ numpy arrays (no I/O, no per-point Python).

Packet layout (Velodyne user manuals, all little-endian): 12 data blocks of 100 bytes — flag 0xFFEE
(bytes ``ff ee``), uint16 azimuth in 0.01° (0..35999), 32 × (uint16 distance in units of the model's
distance resolution, uint8 reflectivity) — then uint32 time stamp (µs past the top of the hour, the time
of the packet's first firing), a return-mode byte (0x37 strongest, 0x38 last, 0x39 dual) and a
product-id byte (0x21 HDL-32E, 0x22 VLP-16, 0x28 VLP-32C). A distance of 0 means no return.

Axes: Velodyne's manual frame has y forward, x right, z up, azimuth measured clockwise (seen from above)
from +y. We output ROS REP-103 axes: **x forward, y left, z up**. With the beam azimuth
``a = block_azimuth(+interpolation) - rot_correction`` and elevation ``w``::

    xy = r cos w - vert_offset sin w
    x  =  xy cos a + horiz_offset sin a
    y  = -xy sin a + horiz_offset cos a
    z  =  r sin w + vert_offset cos w

(the manual's ``X = xy sin a, Y = xy cos a`` rotated by -90° about z: ``x_rep = Y_vel, y_rep = -X_vel``).
The VLP-32C ground truth of Autoware nebula (x forward) is reproduced in these axes.

Per-point time (firing time, from the manuals' timing tables): in single-return mode block ``b`` holds
firing sequences ``b·S .. b·S+S-1`` (``S`` = 32 / lasers: 2 for VLP-16, 1 for 32-laser models); in dual
mode the blocks come in pairs (``2k`` = last, ``2k+1`` = strongest or second strongest) that share the
sequences of ``k``. Channel ``c`` of a block is laser ``c mod L`` in sequence ``c div L`` and fires at
``sequence · sequence_period + firing_offset[laser]`` ns after the packet time stamp.

Azimuth interpolation: the block azimuth is read when the block's first sequence starts; a beam fired
``dt`` later has turned by ``dt / (block duration) · (next block azimuth - this one)`` (the last block of a
packet uses the previous difference). Differences over 5° (a gap, not rotation) fall back to the previous.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from edgefuse.adapters.velodyne.calibration import VelodyneCalibration
from edgefuse.errors import InputError

PACKET_SIZE = 1206
#: a data packet with its Ethernet (14) + IPv4 (20) + UDP (8) headers still in front
PACKET_SIZE_WITH_HEADERS = 1248
BLOCKS = 12
CHANNELS = 32
BLOCK_FLAG = 0xEEFF  # bytes ff ee read as little-endian uint16
RETURN_MODES = {"strongest": 0x37, "last": 0x38, "dual": 0x39}
_MODE_NAMES = {v: k for k, v in RETURN_MODES.items()}
#: reasons a packet is skipped by the decoder
PACKET_REASONS = ("bad_length", "bad_block_flag", "wrong_product_id", "bad_return_mode", "bad_azimuth")
_MAX_AZIMUTH_STEP = 500  # 5° in 0.01°: larger block-to-block steps are a gap, not rotation

_BLOCK = np.dtype(
    [("flag", "<u2"), ("azimuth", "<u2"), ("ch", [("dist", "<u2"), ("refl", "u1")], (CHANNELS,))]
)
_PACKET = np.dtype(
    [("blocks", _BLOCK, (BLOCKS,)), ("stamp_us", "<u4"), ("return_mode", "u1"), ("product_id", "u1")]
)
assert _PACKET.itemsize == PACKET_SIZE


class VelodynePacketError(InputError):
    """One packet is malformed: names the packet, the byte offset/field and what was expected."""


@dataclass
class DecodeStats:
    """Packets decoded and packets skipped by reason (``bad_length``, ``bad_block_flag``,
    ``wrong_product_id``, ``bad_return_mode``, ``bad_azimuth``), plus dropped points
    (``nonfinite_point``) and, in sources, ``queue_overflow`` / ``pcap_*`` reasons."""

    packets: int = 0
    points: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int = 1) -> None:
        if n:
            self.counts[reason] = self.counts.get(reason, 0) + int(n)

    @property
    def skipped(self) -> int:
        """Packets skipped as malformed (the packet-level reasons)."""
        return sum(self.counts.get(k, 0) for k in PACKET_REASONS)


@dataclass(frozen=True, eq=False)
class DecodedPoints:
    """Points of P decoded packets, N points in packet / block / channel order (no-returns removed).

    Stored (computed by the decoder): ``xyz`` (N, 3) float32 m, REP-103 axes (x forward, y left, z up);
    ``intensity`` (N,) float32 0..255; ``flat`` (N,) int64: the point's cell in the (P, 12, 32)
    packet × block × channel grid. Derived on access (cheap gathers, so decoding does not pay for
    columns nobody reads):

    - ``t_ns`` (N,) int64: firing time relative to its packet's time stamp (0 .. ~1.3 ms);
    - ``packet`` (N,) int64 index into the per-packet arrays; ``block`` (N,) 0..11; ``laser`` (N,)
      laser index (calibration order); ``ring`` (N,) 0 = lowest elevation;
    - ``azimuth`` (N,) float32: beam azimuth, radians in [0, 2π), Velodyne convention (clockwise, 0 =
      forward), interpolated and rot-corrected; ``return_index`` (N,) uint8: 0 = strongest / single,
      1 = last (dual mode: the pair's first block carries the last return).

    Per packet (P,): ``stamp_us`` uint32 µs past the hour, ``return_mode`` uint8, ``index`` int64 (the
    packet's position in the decoder's input, to match receive stamps); per block (P, 12):
    ``block_azimuth`` uint16 raw azimuths in 0.01° (encoder reading), ``block_time_ns`` int64 first firing
    after the packet stamp, ``block_step_rad`` float32 rotation over one block, ``block_return`` uint8;
    per channel (32,): ``chan_laser``, ``chan_ring``, ``chan_dt_ns`` (firing offset in its block),
    ``chan_frac`` (the same as a fraction of the block), ``chan_rot_rad`` (rot correction).
    """

    xyz: np.ndarray
    intensity: np.ndarray
    flat: np.ndarray
    stamp_us: np.ndarray
    return_mode: np.ndarray
    index: np.ndarray
    block_azimuth: np.ndarray
    block_time_ns: np.ndarray
    block_step_rad: np.ndarray
    block_return: np.ndarray
    chan_laser: np.ndarray
    chan_ring: np.ndarray
    chan_dt_ns: np.ndarray
    chan_frac: np.ndarray
    chan_rot_rad: np.ndarray

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def packet(self) -> np.ndarray:
        return self.flat // (BLOCKS * CHANNELS)

    @property
    def block(self) -> np.ndarray:
        return (self.flat >> 5) % BLOCKS

    @property
    def laser(self) -> np.ndarray:
        return self.chan_laser[self.flat & 31]

    @property
    def ring(self) -> np.ndarray:
        return self.chan_ring[self.flat & 31]

    @property
    def t_ns(self) -> np.ndarray:
        return self.block_time_ns.ravel()[self.flat >> 5] + self.chan_dt_ns[self.flat & 31]

    @property
    def azimuth(self) -> np.ndarray:
        blk, ch = self.flat >> 5, self.flat & 31
        a0 = self.block_azimuth.ravel()[blk].astype(np.float32) * np.float32(np.pi / 18000)
        a = a0 + self.block_step_rad.ravel()[blk] * self.chan_frac[ch] - self.chan_rot_rad[ch]
        return a - np.float32(2 * np.pi) * np.floor(a * np.float32(1 / (2 * np.pi)))

    @property
    def return_index(self) -> np.ndarray:
        return self.block_return.ravel()[self.flat >> 5]

    def packet_bounds(self) -> np.ndarray:
        """(P+1,) int: points of packet p are ``[bounds[p], bounds[p+1])``."""
        P = self.stamp_us.shape[0]
        return np.searchsorted(self.flat, np.arange(P + 1) * (BLOCKS * CHANNELS))

    def select(self, mask: np.ndarray) -> DecodedPoints:
        """The points where ``mask`` (N,) bool is true; per-packet/block/channel arrays unchanged."""
        return replace(self, xyz=self.xyz[mask], intensity=self.intensity[mask], flat=self.flat[mask])


def as_packet_array(payloads, stats: DecodeStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``payloads`` (P, 1206) uint8 array or a sequence of bytes → ((P', 1206) uint8, (P',) int64 input
    index). Payloads of 1248 bytes lose their 42-byte Ethernet/IPv4/UDP header; other lengths are skipped
    and counted as ``bad_length``."""
    stats = stats if stats is not None else DecodeStats()
    if isinstance(payloads, np.ndarray):
        if payloads.dtype != np.uint8 or payloads.ndim != 2:
            raise TypeError(
                f"payloads: expected a (P, {PACKET_SIZE}) uint8 array, got {payloads.dtype} {payloads.shape}"
            )
        if payloads.shape[1] == PACKET_SIZE_WITH_HEADERS:
            payloads = payloads[:, PACKET_SIZE_WITH_HEADERS - PACKET_SIZE :]
        if payloads.shape[1] != PACKET_SIZE:
            stats.add("bad_length", payloads.shape[0])
            return np.zeros((0, PACKET_SIZE), np.uint8), np.zeros(0, np.int64)
        return np.ascontiguousarray(payloads), np.arange(payloads.shape[0], dtype=np.int64)
    good: list[bytes] = []
    index: list[int] = []
    for i, p in enumerate(payloads):
        n = len(p)
        if n == PACKET_SIZE:
            good.append(p)
        elif n == PACKET_SIZE_WITH_HEADERS:
            good.append(bytes(p[PACKET_SIZE_WITH_HEADERS - PACKET_SIZE :]))
        else:
            stats.add("bad_length")
            continue
        index.append(i)
    if not good:
        return np.zeros((0, PACKET_SIZE), np.uint8), np.zeros(0, np.int64)
    return np.frombuffer(b"".join(good), np.uint8).reshape(-1, PACKET_SIZE), np.asarray(index, np.int64)


def _validate(rec: np.ndarray, calib: VelodyneCalibration, stats: DecodeStats) -> np.ndarray:
    """(P,) bool: packets that pass the checks; failures counted by their first reason."""
    ok = np.ones(rec.shape[0], bool)
    checks = (
        ("bad_block_flag", np.all(rec["blocks"]["flag"] == BLOCK_FLAG, axis=1)),
        ("wrong_product_id", np.isin(rec["product_id"], calib.product_ids)),
        ("bad_return_mode", np.isin(rec["return_mode"], list(_MODE_NAMES))),
        ("bad_azimuth", np.all(rec["blocks"]["azimuth"] < 36000, axis=1)),
    )
    for reason, passed in checks:
        stats.add(reason, int(np.count_nonzero(ok & ~passed)))
        ok &= passed
    return ok


def decode_packets(payloads, calib: VelodyneCalibration, stats: DecodeStats | None = None) -> DecodedPoints:
    """Decode Velodyne data packets into points (see :class:`DecodedPoints` and the module docstring).

    ``payloads``: (P, 1206) uint8 array or a sequence of ``bytes``. Bad packets (length, block flag,
    product id vs ``calib.model``, return mode, azimuth ≥ 360°) are skipped and counted in ``stats``;
    nothing raises for bad packet content. Vectorized over all packets at once.
    """
    stats = stats if stats is not None else DecodeStats()
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN rows (corrupt calibration) are counted
        return _decode(payloads, calib, stats)


def _decode(payloads, calib: VelodyneCalibration, stats: DecodeStats) -> DecodedPoints:
    arr, index = as_packet_array(payloads, stats)
    rec = arr.view(_PACKET).reshape(-1)
    ok = _validate(rec, calib, stats)
    if not ok.all():
        rec, index = rec[ok], index[ok]
    P = rec.shape[0]
    stats.packets += P
    L = calib.num_lasers
    S = calib.sequences_per_block
    period = calib.sequence_period_ns

    dual = rec["return_mode"] == RETURN_MODES["dual"]  # (P,)
    b = np.arange(BLOCKS)
    block_seq = np.where(dual[:, None], (b // 2) * S, b * S)  # (P, 12) first sequence of each block
    ch = np.arange(CHANNELS)
    laser = ch % L  # (32,)
    dt_in_block = (ch // L) * period + calib.firing_offset_ns[laser]  # (32,) ns after the block start

    # azimuth per block and its rate: next distinct block is b+1 (single) or b+2 (dual)
    az = rec["blocks"]["azimuth"].astype(np.int32)  # (P, 12) 0.01°
    stride = np.where(dual, 2, 1)[:, None]
    nxt = np.minimum(b[None, :] + stride, BLOCKS - 1)
    diff = (np.take_along_axis(az, nxt, axis=1) - az) % 36000
    # blocks whose "next" is not a later block (end of packet): use the previous distinct block's diff
    last = (b[None, :] + stride) > BLOCKS - 1
    prev = np.maximum(b[None, :] - stride, 0)
    prev_diff = (az - np.take_along_axis(az, prev, axis=1)) % 36000
    diff = np.where(last, prev_diff, diff)
    diff = np.where(diff > _MAX_AZIMUTH_STEP, np.take_along_axis(diff, prev, axis=1), diff)
    diff = np.where(diff > _MAX_AZIMUTH_STEP, 0, diff)
    block_ns = S * period

    raw = np.ascontiguousarray(rec["blocks"]["ch"]["dist"])  # (P, 12, 32) uint16
    valid = raw > 0
    # dual mode: the strongest block repeats the last return when they coincide — keep one
    if np.any(dual):
        dup = np.zeros_like(valid)
        dup[:, 1::2, :] = (raw[:, 1::2, :] == raw[:, 0::2, :]) & dual[:, None, None]
        stats.add("duplicate_dual_return", int(np.count_nonzero(dup & valid)))
        valid &= ~dup

    # Beam azimuth a = A + B - C: A the block azimuth, B = step · (firing offset / block duration),
    # C the rot correction. float32 on the dense grid (numpy's float32 cos/sin are vectorized).
    f32 = np.float32
    A = az.astype(f32) * f32(np.pi / 18000)  # (P, 12) rad
    frac = (dt_in_block / block_ns).astype(f32)  # (32,)
    step = diff.astype(f32) * f32(np.pi / 18000)  # (P, 12) rad per block
    C = calib.rot_correction_rad[laser].astype(f32)
    a = (A[:, :, None] - C) + step[:, :, None] * frac  # (P, 12, 32)
    cos_a, sin_a = np.cos(a), np.sin(a)
    w = calib.vert_angle_rad[laser]
    cos_w, sin_w = np.cos(w).astype(f32), np.sin(w).astype(f32)
    vo, ho = calib.vert_offset_m[laser].astype(f32), calib.horiz_offset_m[laser].astype(f32)
    r = raw.astype(f32) * f32(calib.distance_resolution_m) + calib.dist_correction_m[laser].astype(f32)
    xy = r * cos_w - vo * sin_w

    # gather the valid points once by flat index (much cheaper than 3-D boolean indexing)
    idx = np.flatnonzero(valid)  # into (P, 12, 32)
    xyz = np.empty((idx.shape[0], 3), f32)
    xyz[:, 0] = (xy * cos_a + ho * sin_a).ravel()[idx]
    xyz[:, 1] = (ho * cos_a - xy * sin_a).ravel()[idx]
    xyz[:, 2] = (r * sin_w + vo * cos_w).ravel()[idx]
    finite = None  # rows with a NaN/inf coordinate (only from a corrupt calibration): counted, dropped
    if not np.isfinite(xyz).all():
        finite = np.all(np.isfinite(xyz), axis=1)
        stats.add("nonfinite_point", int(np.count_nonzero(~finite)))
    mode = rec["return_mode"]
    ret = (dual[:, None] & (b[None, :] % 2 == 0)) | (mode == RETURN_MODES["last"])[:, None]
    out = DecodedPoints(
        xyz=xyz,
        intensity=np.ascontiguousarray(rec["blocks"]["ch"]["refl"]).ravel()[idx].astype(f32),
        flat=idx,
        stamp_us=rec["stamp_us"].copy(),
        return_mode=mode.copy(),
        index=index,
        block_azimuth=rec["blocks"]["azimuth"].copy(),
        block_time_ns=block_seq * period,
        block_step_rad=step,
        block_return=ret.astype(np.uint8),
        chan_laser=laser,
        chan_ring=calib.ring[laser],
        chan_dt_ns=dt_in_block,
        chan_frac=frac,
        chan_rot_rad=C,
    )
    if finite is not None:
        out = out.select(finite)
    stats.points += len(out)
    return out


def decode_packet_strict(payload: bytes, calib: VelodyneCalibration, name: str = "packet") -> DecodedPoints:
    """Decode one packet, raising :class:`VelodynePacketError` (an InputError naming ``name``, the byte
    offset and the expected value) instead of skipping it — for tools that inspect single packets."""
    n = len(payload)
    if n == PACKET_SIZE_WITH_HEADERS:
        payload = bytes(payload[PACKET_SIZE_WITH_HEADERS - PACKET_SIZE :])
    elif n != PACKET_SIZE:
        raise VelodynePacketError(
            f"{name}: length: expected {PACKET_SIZE} (or {PACKET_SIZE_WITH_HEADERS}) bytes, got {n}"
        )
    rec = np.frombuffer(payload, _PACKET)[0]
    for i in range(BLOCKS):
        flag, az = int(rec["blocks"]["flag"][i]), int(rec["blocks"]["azimuth"][i])
        if flag != BLOCK_FLAG:
            got = payload[i * 100 : i * 100 + 2].hex(" ")
            raise VelodynePacketError(f"{name}: byte {i * 100}: block {i} flag: expected ff ee, got {got}")
        if az >= 36000:
            raise VelodynePacketError(
                f"{name}: byte {i * 100 + 2}: block {i} azimuth: expected < 36000 (0.01°), got {az}"
            )
    mode, pid = int(rec["return_mode"]), int(rec["product_id"])
    if mode not in _MODE_NAMES:
        raise VelodynePacketError(
            f"{name}: byte 1204: return mode: expected 0x37, 0x38 or 0x39, got {mode:#04x}"
        )
    if pid not in calib.product_ids:
        want = " or ".join(f"{p:#04x}" for p in calib.product_ids)
        raise VelodynePacketError(
            f"{name}: byte 1205: product id: expected {want} ({calib.model}), got {pid:#04x}"
        )
    return decode_packets([payload], calib)


def encode_packets(
    azimuth_rad: np.ndarray,
    range_m: np.ndarray,
    intensity: np.ndarray,
    first_t_ns: int,
    calib: VelodyneCalibration,
    return_mode: str = "strongest",
    stats: DecodeStats | None = None,
) -> list[bytes]:
    """Pack a firing grid into 1206-byte data packets, inverting :func:`decode_packets`.

    ``azimuth_rad`` (F,): the block azimuth of each firing sequence (Velodyne convention: clockwise, 0 =
    forward; it is the sensor's encoder reading, before ``rot_correction``); ``range_m`` (F, L) metres,
    0 = no return; ``intensity`` (F, L) uint8. ``first_t_ns``: time of the first firing, any clock; each
    packet's stamp is that time + its firing offset, written as µs past the hour (floor). Firings go
    ``sequences_per_block`` per block, 12 blocks per packet; a short last packet is padded with
    no-return blocks that repeat the last azimuth. ``return_mode`` "strongest" or "last" (a single-return
    stream; dual needs two grids and is not encoded). Ranges that are not finite, ≤ 0 or beyond the
    uint16 range become no-returns (counted as ``encode_invalid_range`` in ``stats``).
    """
    if return_mode not in ("strongest", "last"):
        raise ValueError(f"return_mode: expected 'strongest' or 'last', got {return_mode!r}")
    az = np.asarray(azimuth_rad, np.float64)
    rng = np.asarray(range_m, np.float64)
    inten = np.asarray(intensity)
    L, S = calib.num_lasers, calib.sequences_per_block
    F = az.shape[0]
    if az.ndim != 1 or rng.shape != (F, L) or inten.shape != (F, L):
        raise ValueError(
            f"encode_packets: expected azimuth (F,), range (F, {L}), intensity (F, {L}); got "
            f"{az.shape}, {rng.shape}, {inten.shape}"
        )
    if not np.all(np.isfinite(az)):
        raise ValueError("encode_packets: azimuth_rad: expected finite values")
    stats = stats if stats is not None else DecodeStats()
    units = np.round((rng - calib.dist_correction_m[None, :]) / calib.distance_resolution_m)
    bad = ~np.isfinite(rng) | ((rng != 0) & ((units <= 0) | (units > 65535) | ~np.isfinite(units)))
    stats.add("encode_invalid_range", int(np.count_nonzero(bad & (rng != 0))))
    units = np.where(bad | (rng == 0), 0, units).astype(np.uint16)
    per_packet = BLOCKS * S
    n_packets = -(-F // per_packet)
    pad = n_packets * per_packet - F
    az_c = np.round(np.rad2deg(np.mod(az, 2 * np.pi)) * 100).astype(np.int64) % 36000
    if pad:
        az_c = np.concatenate([az_c, np.full(pad, az_c[-1])])
        units = np.concatenate([units, np.zeros((pad, L), np.uint16)])
        inten = np.concatenate([inten, np.zeros((pad, L), inten.dtype)])
    rec = np.zeros(n_packets, _PACKET)
    blocks = rec["blocks"]
    blocks["flag"] = BLOCK_FLAG
    blocks["azimuth"] = az_c.reshape(n_packets, BLOCKS, S)[:, :, 0]
    blocks["ch"]["dist"] = units.reshape(n_packets, BLOCKS, S * L)
    blocks["ch"]["refl"] = np.clip(inten, 0, 255).astype(np.uint8).reshape(n_packets, BLOCKS, S * L)
    t0 = int(first_t_ns) + np.arange(n_packets, dtype=np.int64) * per_packet * calib.sequence_period_ns
    rec["stamp_us"] = ((t0 // 1000) % 3_600_000_000).astype(np.uint32)
    rec["return_mode"] = RETURN_MODES[return_mode]
    rec["product_id"] = calib.product_ids[0]
    raw = rec.tobytes()
    return [raw[i * PACKET_SIZE : (i + 1) * PACKET_SIZE] for i in range(n_packets)]
