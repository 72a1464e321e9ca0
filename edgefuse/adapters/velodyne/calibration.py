"""Per-laser calibration and firing timing of Velodyne spinning LiDARs (VLP-16, VLP-32C, HDL-32E).

A :class:`VelodyneCalibration` holds, for each of the ``L`` lasers (indexed as they appear in a data
block, *not* sorted by elevation):

- ``vert_angle_rad`` (L,): elevation of the beam, radians, positive up;
- ``rot_correction_rad`` (L,): azimuth offset of the beam, radians; the beam's azimuth is
  ``block_azimuth - rot_correction`` (Velodyne azimuth: clockwise seen from above, 0 = forward);
- ``vert_offset_m`` / ``horiz_offset_m`` (L,): offsets of the beam origin, metres;
- ``dist_correction_m`` (L,): added to the measured range, metres;
- ``firing_offset_ns`` (L,) int64: when the laser fires within one firing sequence, ns after the
  sequence start;
- ``sequence_period_ns``: one firing sequence (all L lasers fired and recharged), ns;
- ``distance_resolution_m``: one unit of the packet's uint16 distance, metres.

Built-ins: :func:`vlp16` and :func:`hdl32e` from Velodyne's user manuals (VLP-16 63-9243 Rev D §9,
HDL-32E 63-9113 §A: vertical angles, vertical offsets, firing timing), :func:`vlp32c` from the shipped
``edgefuse/data/velodyne/VLP32C.calibration.yaml`` (Autoware nebula's VLP-32C table, Apache-2.0; the
firing timing from the VLP-32C manual 63-9325 Rev C §9: lasers fire in pairs in 2.304 µs slots with a
recharge slot after every second pair, 55.296 µs per sequence). :func:`load_velodyne_calibration` reads
the ROS ``velodyne_pointcloud`` / nebula YAML format.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from edgefuse.rig import YamlChecker, read_yaml_mapping

#: Product id byte (offset 1205) of each supported model.
PRODUCT_IDS: dict[str, tuple[int, ...]] = {
    "HDL32E": (0x21,),
    "VLP16": (0x22, 0x24),  # VLP-16 / Puck LITE report 0x22, Puck Hi-Res 0x24
    "VLP32C": (0x28,),
}
MODELS: tuple[str, ...] = tuple(PRODUCT_IDS)

# Firing timing from the manuals, integer nanoseconds.
_VLP_FIRING_NS = 2304  # VLP-16 / VLP-32C: one firing (VLP-32C: one pair) every 2.304 µs
_VLP_SEQUENCE_NS = 55296  # 16 firings + recharge
_HDL32_FIRING_NS = 1152  # HDL-32E: one laser every 1.152 µs
_HDL32_SEQUENCE_NS = 46080  # 32 firings + 8 recharge slots


@dataclass(frozen=True, eq=False)
class VelodyneCalibration:
    """Calibration and timing of one Velodyne sensor (see the module docstring for units)."""

    model: str
    vert_angle_rad: np.ndarray
    rot_correction_rad: np.ndarray
    vert_offset_m: np.ndarray
    horiz_offset_m: np.ndarray
    dist_correction_m: np.ndarray
    firing_offset_ns: np.ndarray
    sequence_period_ns: int
    distance_resolution_m: float

    def __post_init__(self) -> None:
        if self.model not in PRODUCT_IDS:
            raise ValueError(f"VelodyneCalibration.model: expected one of {MODELS}, got {self.model!r}")
        n = len(np.asarray(self.vert_angle_rad))
        if n not in (16, 32):
            raise ValueError(f"VelodyneCalibration.vert_angle_rad: expected 16 or 32 lasers, got {n}")
        per_laser = (
            "vert_angle_rad",
            "rot_correction_rad",
            "vert_offset_m",
            "horiz_offset_m",
            "dist_correction_m",
        )
        for name in per_laser:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"VelodyneCalibration.{name}: expected shape ({n},), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"VelodyneCalibration.{name}: expected finite values")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        fo = np.asarray(self.firing_offset_ns, dtype=np.int64)
        if fo.shape != (n,):
            raise ValueError(f"VelodyneCalibration.firing_offset_ns: expected shape ({n},), got {fo.shape}")
        if int(self.sequence_period_ns) <= int(fo.max()):
            raise ValueError(
                f"VelodyneCalibration.sequence_period_ns: expected > the last firing offset {int(fo.max())}, "
                f"got {self.sequence_period_ns}"
            )
        fo.setflags(write=False)
        object.__setattr__(self, "firing_offset_ns", fo)
        object.__setattr__(self, "sequence_period_ns", int(self.sequence_period_ns))
        if not (self.distance_resolution_m > 0 and math.isfinite(self.distance_resolution_m)):
            raise ValueError(
                f"VelodyneCalibration.distance_resolution_m: expected > 0, got {self.distance_resolution_m}"
            )
        object.__setattr__(self, "distance_resolution_m", float(self.distance_resolution_m))

    @property
    def num_lasers(self) -> int:
        return int(self.vert_angle_rad.shape[0])

    @property
    def sequences_per_block(self) -> int:
        """Firing sequences in one 32-channel data block: 2 for 16-laser sensors, 1 for 32."""
        return 32 // self.num_lasers

    @property
    def product_ids(self) -> tuple[int, ...]:
        return PRODUCT_IDS[self.model]

    @property
    def ring(self) -> np.ndarray:
        """(L,) int: ring number of each laser, 0 = lowest elevation (ROS ``ring`` convention)."""
        order = np.argsort(self.vert_angle_rad, kind="stable")
        ring = np.empty(self.num_lasers, dtype=np.int64)
        ring[order] = np.arange(self.num_lasers)
        return ring


def _pair_timing(n: int) -> np.ndarray:
    """VLP-32C: channels 2k and 2k+1 fire together as firing k; firings go in slots of 2.304 µs with an
    idle (recharge) slot after every second firing — slot k + k//2, 16 firings + 8 idle slots = 55.296 µs
    (VLP-32C manual timing table, as also read by Autoware nebula's decoder)."""
    k = np.arange(n) // 2
    return (k + k // 2) * _VLP_FIRING_NS


def vlp16() -> VelodyneCalibration:
    """VLP-16 from the user manual: elevations -15..15° interleaved, vertical offsets per laser (mm),
    16 firings 2.304 µs apart, 55.296 µs per sequence, two sequences per data block, 2 mm resolution."""
    deg = np.array([-15, 1, -13, 3, -11, 5, -9, 7, -7, 9, -5, 11, -3, 13, -1, 15], dtype=np.float64)
    vert_mm = np.array(
        [11.2, -0.7, 9.7, -2.2, 8.1, -3.7, 6.6, -5.1, 5.1, -6.6, 3.7, -8.1, 2.2, -9.7, 0.7, -11.2]
    )
    z = np.zeros(16)
    return VelodyneCalibration(
        model="VLP16",
        vert_angle_rad=np.deg2rad(deg),
        rot_correction_rad=z,
        vert_offset_m=vert_mm / 1000.0,
        horiz_offset_m=z,
        dist_correction_m=z,
        firing_offset_ns=np.arange(16) * _VLP_FIRING_NS,
        sequence_period_ns=_VLP_SEQUENCE_NS,
        distance_resolution_m=0.002,
    )


def hdl32e() -> VelodyneCalibration:
    """HDL-32E from the user manual: elevations -30.67..+10.67° interleaved (4/3° steps), one laser
    every 1.152 µs, 46.08 µs per sequence (one sequence per data block), 2 mm resolution."""
    low = -30.0 - 2.0 / 3.0 + np.arange(16) * (4.0 / 3.0)  # -30.67, -29.33, ..., -10.67
    high = -9.0 - 1.0 / 3.0 + np.arange(16) * (4.0 / 3.0)  # -9.33, -8.00, ..., +10.67
    deg = np.empty(32)
    deg[0::2] = low
    deg[1::2] = high
    z = np.zeros(32)
    return VelodyneCalibration(
        model="HDL32E",
        vert_angle_rad=np.deg2rad(deg),
        rot_correction_rad=z,
        vert_offset_m=z,
        horiz_offset_m=z,
        dist_correction_m=z,
        firing_offset_ns=np.arange(32) * _HDL32_FIRING_NS,
        sequence_period_ns=_HDL32_SEQUENCE_NS,
        distance_resolution_m=0.002,
    )


@functools.cache
def vlp32c() -> VelodyneCalibration:
    """VLP-32C from the shipped calibration YAML (package data) with the manual's pair-wise timing.
    Read once per process (the calibration is immutable)."""
    ref = resources.files("edgefuse") / "data" / "velodyne" / "VLP32C.calibration.yaml"
    with resources.as_file(ref) as path:
        return load_velodyne_calibration(path, model="VLP32C")


def default_calibration(model: str) -> VelodyneCalibration:
    """The built-in calibration of ``model`` (one of :data:`MODELS`)."""
    if model == "VLP16":
        return vlp16()
    if model == "VLP32C":
        return vlp32c()
    if model == "HDL32E":
        return hdl32e()
    raise ValueError(f"Velodyne model: expected one of {MODELS}, got {model!r}")


_LASER_KEYS = (
    "laser_id",
    "rot_correction",
    "vert_correction",
    "dist_correction",
    "dist_correction_x",
    "dist_correction_y",
    "focal_distance",
    "focal_slope",
    "horiz_offset_correction",
    "vert_offset_correction",
    "min_intensity",
    "max_intensity",
)


def load_velodyne_calibration(path: str | os.PathLike, model: str | None = None) -> VelodyneCalibration:
    """Read a ROS ``velodyne_pointcloud`` / nebula calibration YAML (``lasers: [{laser_id, rot_correction,
    vert_correction, vert_offset_correction, horiz_offset_correction, dist_correction, ...}]``,
    ``num_lasers``, ``distance_resolution``; angles in radians, lengths in metres).

    ``model`` (one of :data:`MODELS`) picks the firing timing; it may also come from a top-level
    ``model`` key in the file; a 16-laser file defaults to ``VLP16``. Raises
    :class:`edgefuse.rig.RigFileError` (an InputError) naming the file and the key.
    Two-point distance corrections (``dist_correction_x/_y``, HDL-64E) are not supported: non-zero
    values are rejected rather than silently ignored.
    """
    ctx = YamlChecker(path)
    doc = read_yaml_mapping(path)
    ctx.no_unknown(doc, "", ("lasers", "num_lasers", "distance_resolution", "model", "version"))
    lasers = ctx.get(doc, "", "lasers", list)
    n = ctx.get(doc, "", "num_lasers", int, default=len(lasers))
    if n not in (16, 32):
        ctx.fail("num_lasers", f"expected 16 or 32 (VLP-16, VLP-32C, HDL-32E), got {n}")
    if len(lasers) != n:
        ctx.fail("lasers", f"expected {n} entries (num_lasers), got {len(lasers)}")
    file_model = ctx.get(doc, "", "model", str, default=None)
    if model is not None and file_model is not None and model != file_model:
        ctx.fail("model", f"file says {file_model!r} but {model!r} was requested")
    model = model or file_model or ("VLP16" if n == 16 else None)
    if model is None:
        ctx.fail("model", f"missing: a 32-laser file needs model= one of {MODELS} (for the firing timing)")
    if model not in PRODUCT_IDS:
        ctx.fail("model", f"expected one of {MODELS}, got {model!r}")
    resolution = ctx.get(doc, "", "distance_resolution", float, default=0.004 if model == "VLP32C" else 0.002)
    if resolution <= 0:
        ctx.fail("distance_resolution", f"expected > 0 metres, got {resolution}")

    cols = {k: np.zeros(n) for k in ("rot", "vert", "voff", "hoff", "dist")}
    seen: set[int] = set()
    for i, node in enumerate(lasers):
        key = f"lasers[{i}]"
        ctx.mapping(node, key)
        ctx.no_unknown(node, key, _LASER_KEYS)
        lid = ctx.get(node, key, "laser_id", int)
        if not 0 <= lid < n or lid in seen:
            ctx.fail(f"{key}.laser_id", f"expected a unique id in 0..{n - 1}, got {lid}")
        seen.add(lid)
        cols["rot"][lid] = ctx.get(node, key, "rot_correction", float)
        cols["vert"][lid] = ctx.get(node, key, "vert_correction", float)
        cols["voff"][lid] = ctx.get(node, key, "vert_offset_correction", float, default=0.0)
        cols["hoff"][lid] = ctx.get(node, key, "horiz_offset_correction", float, default=0.0)
        cols["dist"][lid] = ctx.get(node, key, "dist_correction", float, default=0.0)
        for two_pt in ("dist_correction_x", "dist_correction_y", "focal_distance", "focal_slope"):
            if ctx.get(node, key, two_pt, float, default=0.0) != 0.0:
                ctx.fail(f"{key}.{two_pt}", "expected 0.0 (HDL-64E corrections are not supported)")
        if abs(cols["vert"][lid]) > math.pi / 2:
            ctx.fail(f"{key}.vert_correction", f"expected radians in [-pi/2, pi/2], got {cols['vert'][lid]}")
    if model == "HDL32E":
        timing, period = np.arange(n) * _HDL32_FIRING_NS, _HDL32_SEQUENCE_NS
    elif model == "VLP32C":
        timing, period = _pair_timing(n), _VLP_SEQUENCE_NS
    else:
        timing, period = np.arange(n) * _VLP_FIRING_NS, _VLP_SEQUENCE_NS
    if (model == "VLP16") != (n == 16):
        ctx.fail("num_lasers", f"model {model} has {16 if model == 'VLP16' else 32} lasers, the file has {n}")
    return VelodyneCalibration(
        model=model,
        vert_angle_rad=cols["vert"],
        rot_correction_rad=cols["rot"],
        vert_offset_m=cols["voff"],
        horiz_offset_m=cols["hoff"],
        dist_correction_m=cols["dist"],
        firing_offset_ns=timing,
        sequence_period_ns=period,
        distance_resolution_m=resolution,
    )
