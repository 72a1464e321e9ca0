"""KITTI Velodyne scans (``.bin``): N × 4 little-endian float32 ``x y z reflectance``, no header.

Reflectance is KITTI's 0..1 value; edgefuse's ``intensity`` is on the 0..255 scale (types.PointCloud),
so ``intensity = 255 × reflectance`` (values kept as they are, no clipping). Points with NaN/inf are
dropped and counted. Coordinates are the Velodyne frame KITTI publishes (x forward, y left, z up).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgefuse.adapters.files.common import drop_nonfinite
from edgefuse.errors import InputError
from edgefuse.types import PointCloud

KITTI_POINT_BYTES = 16
#: KITTI reflectance (0..1) × this = edgefuse intensity (0..255 scale).
KITTI_INTENSITY_SCALE = 255.0


class KittiError(InputError):
    """A malformed KITTI .bin scan."""


def parse_kitti_bin(data: bytes, name: str = "<kitti>") -> tuple[PointCloud, dict[str, int]]:
    """Decode a KITTI scan's bytes to a PointCloud (x y z intensity) and the dropped points by reason.

    Raises :class:`KittiError` when the size is not a multiple of 16 bytes (4 float32 per point)."""
    if len(data) % KITTI_POINT_BYTES:
        raise KittiError(
            f"{name}: size {len(data)} bytes: expected a multiple of {KITTI_POINT_BYTES} "
            f"(x y z reflectance float32 per point); {len(data) % KITTI_POINT_BYTES} bytes left over"
        )
    mat = np.frombuffer(data, dtype="<f4").reshape(-1, 4).astype(np.float32)
    mat[:, 3] *= KITTI_INTENSITY_SCALE
    mat, dropped = drop_nonfinite(mat)
    return PointCloud(mat, ("x", "y", "z", "intensity")), dropped


def read_kitti_bin(path: str | os.PathLike) -> tuple[PointCloud, dict[str, int]]:
    """Read one KITTI .bin file (thin shell around :func:`parse_kitti_bin`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KittiError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_kitti_bin(data, str(path))
