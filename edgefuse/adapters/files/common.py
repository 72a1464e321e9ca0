"""Helpers shared by the file decoders."""

from __future__ import annotations

import numpy as np

from edgefuse.errors import InputError
from edgefuse.types import PointCloud

#: Reasons a point is dropped by :func:`drop_nonfinite`.
DROP_REASONS = ("nan", "inf")


def drop_nonfinite(mat: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Drop the rows of an N×C float matrix that hold a NaN or ±inf in any column.

    Returns the kept rows (the input itself when nothing is dropped) and the count by reason:
    ``nan`` (the row holds a NaN) and ``inf`` (the row holds ±inf but no NaN)."""
    if mat.size == 0:
        return mat, {"nan": 0, "inf": 0}
    finite = np.isfinite(mat).all(axis=1)
    if finite.all():
        return mat, {"nan": 0, "inf": 0}
    has_nan = np.isnan(mat).any(axis=1)
    n_nan = int(has_nan.sum())
    n_inf = int((~finite).sum()) - n_nan
    return mat[finite], {"nan": n_nan, "inf": n_inf}


def add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    """``total[k] += more[k]`` for every key of ``more``."""
    for k, v in more.items():
        total[k] = total.get(k, 0) + int(v)


def pointcloud_from_columns(
    names: tuple[str, ...], mat: np.ndarray, name: str, key: str
) -> tuple[PointCloud, dict[str, int]]:
    """A PointCloud of named float32 columns, and the points dropped by reason (see
    :func:`drop_nonfinite`). x y z are required (InputError naming ``name`` and ``key`` otherwise);
    ``intensity`` is appended as zeros where absent (PointCloud requires it); other columns are kept."""
    missing = [f for f in ("x", "y", "z") if f not in names]
    if missing:
        raise InputError(f"{name}: {key}: expected x y z among the fields, missing {' '.join(missing)}")
    if "intensity" not in names:
        names = tuple(names) + ("intensity",)
        mat = np.concatenate([mat, np.zeros((len(mat), 1), np.float32)], axis=1)
    mat, dropped = drop_nonfinite(mat)
    return PointCloud(np.ascontiguousarray(mat, dtype=np.float32), tuple(names)), dropped
