"""nuScenes radar scans: binary PCD files from the Continental ARS 408 radars.

nuScenes stores 18 fields per detection (:data:`NUSCENES_RADAR_FIELDS`): x y z (z is always 0), the
velocities ``vx vy`` and their ego-motion-compensated ``vx_comp vy_comp`` (m/s, sensor frame),
``rcs`` (dBsm), and the ARS 408 cluster/quality states and RMS codes, in mixed types (F4, I1, I2).
The radar reports velocity vectors, not doppler, so no ``doppler`` column is made up: every field is
kept as a float32 column under its own name. Bytes after the last point (nuScenes pads some files)
are ignored; points with NaN/inf (nuScenes writes one NaN point for an empty scan) are dropped and
counted.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgefuse.adapters.files.common import drop_nonfinite
from edgefuse.adapters.files.pcd import PcdError, parse_pcd, pcd_columns
from edgefuse.types import RadarScan

NUSCENES_RADAR_FIELDS: tuple[str, ...] = (
    "x",
    "y",
    "z",
    "dyn_prop",
    "id",
    "rcs",
    "vx",
    "vy",
    "vx_comp",
    "vy_comp",
    "is_quality_valid",
    "ambig_state",
    "x_rms",
    "y_rms",
    "invalid_state",
    "pid_state",
    "vx_rms",
    "vy_rms",
)


def parse_nuscenes_radar(data: bytes, name: str = "<nuscenes-radar>") -> tuple[RadarScan, dict[str, int]]:
    """Decode a nuScenes radar PCD's bytes to a RadarScan (all fields, float32) and the dropped points
    by reason. Any PCD with x y z decodes; the nuScenes fields are not required to be all present."""
    pcd = parse_pcd(data, name)
    names, mat = pcd_columns(pcd)
    missing = [f for f in ("x", "y", "z") if f not in names]
    if missing:
        raise PcdError(f"{name}: header FIELDS: expected x y z among the fields, missing {' '.join(missing)}")
    mat, dropped = drop_nonfinite(mat)
    return RadarScan(mat, names), dropped


def read_nuscenes_radar(path: str | os.PathLike) -> tuple[RadarScan, dict[str, int]]:
    """Read one nuScenes radar PCD (thin shell around :func:`parse_nuscenes_radar`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PcdError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_nuscenes_radar(data, str(path))
