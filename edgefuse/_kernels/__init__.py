"""numba kernels for the loops numpy is too slow for (compiled on first use, cached on disk).

Each kernel has a plain-numpy or plain-Python oracle in the tests; callers get them through the getters
below so that importing edgefuse does not import numba.
"""

from __future__ import annotations

import numpy as np

_CACHE: dict[str, object] = {}


def pillarize():
    """``pillarize(points, lo, hi, size, nx, max_p, max_n, out, coords, counts, cell_count, cell_slot,
    lin) -> kept``: see :class:`edgefuse.tensors.PillarVoxelizer` for the rule."""
    k = _CACHE.get("pillarize")
    if k is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def _pillarize(
            points, lo, hi, size, nx, max_p, max_n, out, coords, counts, cell_count, cell_slot, lin
        ):
            n, f = points.shape
            ny = cell_count.shape[0] // nx
            occ = np.empty(n, np.int64)
            n_occ = 0
            biggest = 0
            for i in range(n):
                x, y, z = points[i, 0], points[i, 1], points[i, 2]
                if not (lo[0] <= x < hi[0] and lo[1] <= y < hi[1] and lo[2] <= z < hi[2]):
                    lin[i] = -1
                    continue
                ix = min(int((x - lo[0]) / size[0]), nx - 1)
                iy = min(int((y - lo[1]) / size[1]), ny - 1)
                cell = iy * nx + ix
                lin[i] = cell
                c = cell_count[cell]
                if c == 0:
                    occ[n_occ] = cell
                    n_occ += 1
                cell_count[cell] = c + 1
                if c + 1 > biggest:
                    biggest = c + 1
            ncell = cell_count.shape[0]
            keys = np.empty(n_occ, np.int64)
            for j in range(n_occ):
                cell = occ[j]
                keys[j] = (biggest - cell_count[cell]) * ncell + cell
            order = np.argsort(keys)
            kept = min(n_occ, max_p)
            for j in range(kept):
                cell = occ[order[j]]
                cell_slot[cell] = j
                coords[j, 0] = cell // nx
                coords[j, 1] = cell % nx
            for i in range(n):
                cell = lin[i]
                if cell < 0:
                    continue
                s = cell_slot[cell]
                if s < 0:
                    continue
                m = counts[s]
                if m < max_n:
                    for c in range(f):
                        out[s, m, c] = points[i, c]
                    counts[s] = m + 1
            for j in range(n_occ):  # leave the scratch grids clean for the next call
                cell = occ[j]
                cell_count[cell] = 0
                cell_slot[cell] = -1
            return kept

        k = _CACHE["pillarize"] = _pillarize
    return k


def deskew_points():
    """``deskew_points(xyz (N,3) f4, t (N,) f8, t0, dt, M (K,3,4) f8, out (N,3) f4)``: each point mapped by
    the 3×4 transform interpolated linearly (element-wise) between knots ``t0 + j·dt`` at its time. Between
    knots a few ms apart the rotation changes by ~1e-3 rad, so the element-wise blend departs from a
    rotation by ~1e-7: far below float32 point precision."""
    k = _CACHE.get("deskew")
    if k is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def _deskew(xyz, t, t0, dt, M, out):
            n = xyz.shape[0]
            kmax = M.shape[0] - 2
            for i in range(n):
                f = (t[i] - t0) / dt
                j = int(np.floor(f))
                if j < 0:
                    j = 0
                elif j > kmax:
                    j = kmax
                w = f - j
                x, y, z = float(xyz[i, 0]), float(xyz[i, 1]), float(xyz[i, 2])
                for r in range(3):
                    a = (1 - w) * M[j, r, 0] + w * M[j + 1, r, 0]
                    b = (1 - w) * M[j, r, 1] + w * M[j + 1, r, 1]
                    c = (1 - w) * M[j, r, 2] + w * M[j + 1, r, 2]
                    d = (1 - w) * M[j, r, 3] + w * M[j + 1, r, 3]
                    out[i, r] = a * x + b * y + c * z + d

        k = _CACHE["deskew"] = _deskew
    return k
