"""Numpy references of the custom CUDA kernels (DESIGN §5): the oracle of their tests (docs/kernels.md).

Three stages, each a C ABI function in ``libedgefuse_kernels.so`` (:mod:`edgefuse.runtime.kernels`):

1. :func:`pillar_voxelize_ref` — ``ef_pillar_voxelize``: points → padded pillars, the rule of
   :class:`edgefuse.tensors.PillarVoxelizer` (the CPU path) bit for bit;
2. :func:`pillar_scatter_ref` — ``ef_pillar_scatter``: pillar features → BEV grid (duplicates: last wins);
3. :func:`camera_lift_ref` — ``ef_camera_lift`` (camera features → BEV, the model's ``CameraLift``) and
   :func:`gated_fusion_ref` — ``ef_gated_fusion`` (the model's ``GatedFusion`` with BatchNorm folded by
   :func:`fold_conv_bn`).

Numpy only.
"""

from __future__ import annotations

import numpy as np

from edgefuse.errors import InputError
from edgefuse.runtime.feed import MIN_CAMERA_DEPTH_M

#: The C ABI's fixed array bounds (edgefuse/deploy/plugins/ef_common.h): camera-lift heights, fused
#: modalities.
MAX_HEIGHTS = 16
MAX_MODALITIES = 4


class KernelInputError(InputError):
    """An array handed to a kernel or its reference has the wrong shape, dtype or value."""


def as_array(x, name: str, ndim: int, dtype, what: str) -> np.ndarray:
    """``x`` as a C-contiguous ``dtype`` array of ``ndim`` dimensions (else a :class:`KernelInputError`
    naming ``name`` and ``what`` was expected)."""
    a = np.asarray(x)
    if a.ndim != ndim:
        raise KernelInputError(f"{name}: expected {what}, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


# ================================================================ 1. pillar voxelization


def grid_shape(lo, hi, pillar_size) -> tuple[int, int]:
    """(ny, nx) of the pillar grid, computed as :class:`edgefuse.tensors.PillarVoxelizer` does."""
    nx = int(round((hi[0] - lo[0]) / pillar_size[0]))
    ny = int(round((hi[1] - lo[1]) / pillar_size[1]))
    return ny, nx


def pillar_voxelize_ref(points, lo, hi, pillar_size, max_pillars: int, max_points: int):
    """Reference of ``ef_pillar_voxelize``.

    ``points`` (M, F ≥ 3) float32 (x y z first, metres); ``lo``/``hi`` (3,) grid bounds (half-open),
    ``pillar_size`` (dx, dy) m → ``(points (P, N, F) float32, coords (P, 2) int32 (iy, ix), counts (P,)
    int32, num_pillars int)`` — the fields of :class:`edgefuse.tensors.Pillars`, same dtypes and padding.
    The rule is the CPU voxelizer's (edgefuse/tensors.py): out-of-grid or non-finite points dropped;
    pillars by total count descending, ties by ``iy·nx + ix`` ascending, first ``max_pillars`` kept;
    points in input order, first ``max_points`` kept. Cell indices use float32 arithmetic."""
    p = as_array(points, "pillar_voxelize_ref: points", 2, np.float32, "(M, F ≥ 3) float32")
    if p.shape[1] < 3:
        raise KernelInputError(f"pillar_voxelize_ref: points: expected (M, F ≥ 3), got {p.shape}")
    if int(max_pillars) < 1 or int(max_points) < 1:
        raise KernelInputError(
            f"pillar_voxelize_ref: max_pillars/max_points: expected ≥ 1, got {max_pillars}/{max_points}"
        )
    lo32, hi32 = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    size32 = np.asarray(pillar_size, np.float32)
    ny, nx = grid_shape(lo, hi, pillar_size)
    P, N, F = int(max_pillars), int(max_points), p.shape[1]
    out = np.zeros((P, N, F), np.float32)
    coords = np.zeros((P, 2), np.int32)
    counts = np.zeros(P, np.int32)
    with np.errstate(invalid="ignore"):
        ok = np.ones(p.shape[0], bool)
        for a in range(3):
            ok &= (lo32[a] <= p[:, a]) & (p[:, a] < hi32[a])
    kept_pts = p[ok]
    ix = np.minimum(((kept_pts[:, 0] - lo32[0]) / size32[0]).astype(np.int64), nx - 1)
    iy = np.minimum(((kept_pts[:, 1] - lo32[1]) / size32[1]).astype(np.int64), ny - 1)
    cell = iy * nx + ix
    per_cell = np.bincount(cell, minlength=ny * nx)
    occupied = np.flatnonzero(per_cell)  # ascending cell index
    order = occupied[np.argsort(-per_cell[occupied], kind="stable")]  # count desc, then cell asc
    chosen = order[:P]
    n_kept = chosen.size
    slot = np.full(ny * nx, -1, np.int64)
    slot[chosen] = np.arange(n_kept)
    coords[:n_kept, 0] = chosen // nx
    coords[:n_kept, 1] = chosen % nx
    counts[:n_kept] = np.minimum(per_cell[chosen], N)
    by_cell = np.argsort(cell, kind="stable")  # points grouped by cell, input order inside
    sorted_cell = cell[by_cell]
    rank = np.arange(sorted_cell.size) - np.searchsorted(sorted_cell, sorted_cell, side="left")
    s = slot[sorted_cell]
    take = (s >= 0) & (rank < N)
    out[s[take], rank[take]] = kept_pts[by_cell[take]]
    return out, coords, counts, int(n_kept)


# ================================================================ 2. pillar scatter


def pillar_scatter_ref(
    features, coords, counts, ny: int, nx: int, channels_first: bool = False
) -> np.ndarray:
    """Reference of ``ef_pillar_scatter``: ``features`` (P, C) float32 ((C, P) when ``channels_first``),
    ``coords`` (P, 2) int (iy, ix), ``counts`` (P,) int → (C, ny, nx) float32. Pillars with count ≤ 0 or
    coordinates outside the grid are skipped; when two pillars share a cell the higher index wins."""
    f = as_array(features, "pillar_scatter_ref: features", 2, np.float32, "(P, C) float32")
    if channels_first:
        f = np.ascontiguousarray(f.T)
    c = as_array(coords, "pillar_scatter_ref: coords", 2, np.int64, "(P, 2) int (iy, ix)")
    n = as_array(counts, "pillar_scatter_ref: counts", 1, np.int64, "(P,) int")
    if c.shape != (f.shape[0], 2) or n.shape != (f.shape[0],):
        raise KernelInputError(
            f"pillar_scatter_ref: coords/counts: expected ({f.shape[0]}, 2)/({f.shape[0]},) for "
            f"{f.shape[0]} pillars, got {c.shape}/{n.shape}"
        )
    bev = np.zeros((f.shape[1], ny * nx), np.float32)
    ok = (n > 0) & (c[:, 0] >= 0) & (c[:, 0] < ny) & (c[:, 1] >= 0) & (c[:, 1] < nx)
    idx = np.flatnonzero(ok)
    cells = c[idx, 0] * nx + c[idx, 1]
    # last wins: the first occurrence in the reversed order is the highest pillar index of each cell
    uniq, first_rev = np.unique(cells[::-1], return_index=True)
    winners = idx[::-1][first_rev]
    bev[:, uniq] = f[winners].T
    return bev.reshape(f.shape[1], ny, nx)


# ================================================================ 3a. camera → BEV lifting


def camera_lift_ref(
    features,
    projection,
    camera_valid,
    grid_hw: tuple[int, int],
    origin_xy: tuple[float, float],
    cell: float,
    heights,
    image_hw: tuple[int, int],
    min_depth: float = MIN_CAMERA_DEPTH_M,
) -> np.ndarray:
    """Reference of ``ef_camera_lift`` (the model's ``CameraLift`` for one frame).

    ``features`` (Ncam, C, Hf, Wf) float32; ``projection`` (Ncam, 3, 4) base_link → pixels of the
    ``image_hw`` (Hi, Wi) image; ``camera_valid`` (Ncam,) (≠ 0 = valid; float32 on the GPU); BEV grid
    ``grid_hw`` (H, W) with origin ``origin_xy`` (x_min, y_min) m and square ``cell`` m; ``heights``
    (Z,) m → (C, H, W) float32: the mean over valid (camera, height) samples (depth > ``min_depth``,
    pixel inside the image) of the bilinear feature sample (grid_sample, align_corners=False, border
    padding); 0 where no sample is valid. float32 arithmetic in the kernel's order, so in/out decisions
    agree with the GPU exactly."""
    f = as_array(features, "camera_lift_ref: features", 4, np.float32, "(Ncam, C, Hf, Wf) float32")
    ncam, C, Hf, Wf = f.shape
    P = as_array(projection, "camera_lift_ref: projection", 3, np.float32, "(Ncam, 3, 4) float32")
    if P.shape != (ncam, 3, 4):
        raise KernelInputError(f"camera_lift_ref: projection: expected ({ncam}, 3, 4), got {P.shape}")
    cv = np.asarray(camera_valid).reshape(-1)
    if cv.shape != (ncam,):
        raise KernelInputError(f"camera_lift_ref: camera_valid: expected ({ncam},), got {cv.shape}")
    z_all = np.asarray(heights, np.float32).reshape(-1)
    if not 1 <= z_all.size <= MAX_HEIGHTS:
        raise KernelInputError(
            f"camera_lift_ref: heights: expected 1..{MAX_HEIGHTS} values, got {z_all.size}"
        )
    H, W = int(grid_hw[0]), int(grid_hw[1])
    f32 = np.float32
    Hi, Wi = f32(image_hw[0]), f32(image_hw[1])
    Hf32, Wf32 = f32(Hf), f32(Wf)
    iy, ix = np.divmod(np.arange(H * W), W)
    x = f32(origin_xy[0]) + (ix.astype(f32) + f32(0.5)) * f32(cell)
    y = f32(origin_xy[1]) + (iy.astype(f32) + f32(0.5)) * f32(cell)
    total = np.zeros((C, H * W), f32)
    n = np.zeros(H * W, np.int64)
    for k in range(ncam):
        if not cv[k]:
            continue
        Fk = f[k].reshape(C, Hf * Wf)
        for z in z_all:
            r = [((P[k, i, 0] * x + P[k, i, 1] * y) + P[k, i, 2] * z) + P[k, i, 3] for i in range(3)]
            d = r[2]
            front = d > f32(min_depth)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = r[0] / d
                v = r[1] / d
            seen = front & (u >= 0) & (u <= Wi - f32(1)) & (v >= 0) & (v <= Hi - f32(1))
            cells = np.flatnonzero(seen)
            u, v = u[cells], v[cells]
            gx = (u + f32(0.5)) / Wi * f32(2) - f32(1)
            gy = (v + f32(0.5)) / Hi * f32(2) - f32(1)
            fx = np.clip(((gx + f32(1)) * Wf32 - f32(1)) / f32(2), f32(0), Wf32 - f32(1))
            fy = np.clip(((gy + f32(1)) * Hf32 - f32(1)) / f32(2), f32(0), Hf32 - f32(1))
            x0f, y0f = np.floor(fx), np.floor(fy)
            x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
            x1, y1 = np.minimum(x0 + 1, Wf - 1), np.minimum(y0 + 1, Hf - 1)
            in_x1, in_y1 = x0 + 1 < Wf, y0 + 1 < Hf
            ax, bx = fx - x0f, (x0f + f32(1)) - fx
            ay, by = fy - y0f, (y0f + f32(1)) - fy
            s = Fk[:, y0 * Wf + x0] * (bx * by)
            s = np.where(in_x1, s + Fk[:, y0 * Wf + x1] * (ax * by), s)
            s = np.where(in_y1, s + Fk[:, y1 * Wf + x0] * (bx * ay), s)
            s = np.where(in_x1 & in_y1, s + Fk[:, y1 * Wf + x1] * (ax * ay), s)
            total[:, cells] += s
            n[cells] += 1
    many = n > 1
    total[:, many] /= n[many].astype(f32)
    return total.reshape(C, H, W)


# ================================================================ 3b. gated fusion


def fold_conv_bn(weight, gamma, beta, mean, var, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """A bias-free 1×1 conv ``weight`` (Cout, Cin[, 1, 1]) followed by inference BatchNorm → the equivalent
    (Cout, Cin) weight and (Cout,) bias (what ``ef_gated_fusion`` takes for a modality projection)."""
    w = np.asarray(weight, np.float64)
    w = w.reshape(w.shape[0], -1)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return (w * scale[:, None]).astype(np.float32), bias.astype(np.float32)


def gated_fusion_ref(
    features,
    valid,
    proj_weight,
    proj_bias,
    gate_weight,
    gate_bias,
    gate_eps: float = 1e-3,
) -> np.ndarray:
    """Reference of ``ef_gated_fusion`` (the model's ``GatedFusion`` for one frame, BatchNorm folded).

    ``features``: M arrays (C_m, H, W); ``valid`` (M,) (1 = modality present); ``proj_weight``: M arrays
    (Cout, C_m); ``proj_bias``: M arrays (Cout,); ``gate_weight`` (M, ΣC_m, k, k) odd k; ``gate_bias``
    (M,) → (Cout, H, W) float32:
    ``g_m = (sigmoid(conv_k(concat(valid_m · f_m)))_m + gate_eps) · valid_m``, normalized over m by
    ``max(Σ g, 1e-6)``; output ``Σ_m g_m · ReLU(W_m f_m + b_m)``. Computed in float64."""
    M = len(features)
    if not 1 <= M <= MAX_MODALITIES:
        raise KernelInputError(
            f"gated_fusion_ref: features: expected 1..{MAX_MODALITIES} modalities, got {M}"
        )
    feats = [
        as_array(f, f"gated_fusion_ref: features[{m}]", 3, np.float64, "(C_m, H, W)")
        for m, f in enumerate(features)
    ]
    H, W = feats[0].shape[1:]
    for m, f in enumerate(feats):
        if f.shape[1:] != (H, W):
            raise KernelInputError(f"gated_fusion_ref: features[{m}]: expected (C, {H}, {W}), got {f.shape}")
    val = np.asarray(valid, np.float64).reshape(-1)
    gw = as_array(gate_weight, "gated_fusion_ref: gate_weight", 4, np.float64, "(M, ΣC, k, k)")
    ctot = sum(f.shape[0] for f in feats)
    k = gw.shape[2]
    if val.shape != (M,) or gw.shape != (M, ctot, k, k) or k % 2 == 0:
        raise KernelInputError(
            f"gated_fusion_ref: valid/gate_weight: expected ({M},)/({M}, {ctot}, k, k) with odd k, "
            f"got {val.shape}/{gw.shape}"
        )
    gb = np.asarray(gate_bias, np.float64).reshape(M)
    r = k // 2
    x = np.concatenate([f * val[m] for m, f in enumerate(feats)], axis=0)
    xp = np.pad(x, ((0, 0), (r, r), (r, r)))
    logits = np.broadcast_to(gb[:, None, None], (M, H, W)).copy()
    for dy in range(k):
        for dx in range(k):
            logits += np.tensordot(gw[:, :, dy, dx], xp[:, dy : dy + H, dx : dx + W], axes=1)
    g = (1.0 / (1.0 + np.exp(-logits)) + gate_eps) * val[:, None, None]
    g /= np.maximum(g.sum(axis=0, keepdims=True), 1e-6)
    out = 0.0
    for m, f in enumerate(feats):
        w = np.asarray(proj_weight[m], np.float64).reshape(-1, f.shape[0])
        b = np.asarray(proj_bias[m], np.float64).reshape(w.shape[0])
        proj = np.maximum(np.tensordot(w, f, axes=1) + b[:, None, None], 0.0)
        out = out + g[m] * proj
    return np.asarray(out, np.float32)
