"""The custom CUDA kernels of deploy/plugins/ (DESIGN §5): their numpy references and a ctypes loader.

Three stages, each a C ABI function in ``libedgefuse_kernels.so`` and a numpy reference here that is the
oracle of its tests (docs/kernels.md):

1. :func:`pillar_voxelize_ref` — ``ef_pillar_voxelize``: points → padded pillars, the rule of
   :class:`edgefuse.tensors.PillarVoxelizer` (the CPU path) bit for bit;
2. :func:`pillar_scatter_ref` — ``ef_pillar_scatter``: pillar features → BEV grid (duplicates: last wins);
3. :func:`camera_lift_ref` — ``ef_camera_lift`` (camera features → BEV, the model's ``CameraLift``) and
   :func:`gated_fusion_ref` — ``ef_gated_fusion`` (the model's ``GatedFusion`` with BatchNorm folded by
   :func:`fold_conv_bn`).

This module imports numpy only: no torch, cv2, numba, cuda-python or pycuda at import time. The GPU side:
:func:`load_kernels` opens the library (:class:`KernelLibraryError` naming the file and the fix when it is
missing); :class:`CudaKernels` calls it with device pointers (ints, torch/CuPy arrays, pycuda allocations)
and a stream; :class:`GpuVoxelizer` runs stage 1 on host points with cuda-python (or pycuda) buffers.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.model.config import MIN_CAMERA_DEPTH_M

ABI_VERSION = 1  # EF_ABI_VERSION of deploy/plugins/ef_common.h
MAX_MODALITIES = 4
MAX_HEIGHTS = 16
LIBRARY_NAME = "libedgefuse_kernels.so"
ENV_LIBRARY = "EDGEFUSE_KERNELS_LIB"
PLUGINS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "plugins"
DEFAULT_LIBRARY = PLUGINS_DIR / "build" / LIBRARY_NAME
BUILD_HINT = (
    "build it with `cmake -S deploy/plugins -B deploy/plugins/build -DEF_CUDA_ARCHITECTURES=native && "
    f"cmake --build deploy/plugins/build -j` (needs nvcc), or set {ENV_LIBRARY} to the built library"
)


class KernelInputError(InputError):
    """An array handed to a kernel or its reference has the wrong shape, dtype or value."""


class KernelLibraryError(InputError):
    """The kernel library is missing, not loadable, or built for another ABI version."""


class KernelError(RuntimeError):
    """A kernel returned an error status (the message carries the function and the status)."""


def _array(x, name: str, ndim: int, dtype, what: str) -> np.ndarray:
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
    p = _array(points, "pillar_voxelize_ref: points", 2, np.float32, "(M, F ≥ 3) float32")
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
    f = _array(features, "pillar_scatter_ref: features", 2, np.float32, "(P, C) float32")
    if channels_first:
        f = np.ascontiguousarray(f.T)
    c = _array(coords, "pillar_scatter_ref: coords", 2, np.int64, "(P, 2) int (iy, ix)")
    n = _array(counts, "pillar_scatter_ref: counts", 1, np.int64, "(P,) int")
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
    f = _array(features, "camera_lift_ref: features", 4, np.float32, "(Ncam, C, Hf, Wf) float32")
    ncam, C, Hf, Wf = f.shape
    P = _array(projection, "camera_lift_ref: projection", 3, np.float32, "(Ncam, 3, 4) float32")
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
        _array(f, f"gated_fusion_ref: features[{m}]", 3, np.float64, "(C_m, H, W)")
        for m, f in enumerate(features)
    ]
    H, W = feats[0].shape[1:]
    for m, f in enumerate(feats):
        if f.shape[1:] != (H, W):
            raise KernelInputError(f"gated_fusion_ref: features[{m}]: expected (C, {H}, {W}), got {f.shape}")
    val = np.asarray(valid, np.float64).reshape(-1)
    gw = _array(gate_weight, "gated_fusion_ref: gate_weight", 4, np.float64, "(M, ΣC, k, k)")
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


# ================================================================ the C ABI (ctypes)


class EfVoxelizeParams(ctypes.Structure):
    _fields_ = [
        ("lo", ctypes.c_float * 3),
        ("hi", ctypes.c_float * 3),
        ("pillar_size", ctypes.c_float * 2),
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("max_pillars", ctypes.c_int),
        ("max_points", ctypes.c_int),
        ("num_features", ctypes.c_int),
    ]


class EfScatterParams(ctypes.Structure):
    _fields_ = [
        ("num_pillars", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("channels_first", ctypes.c_int),
    ]


class EfCameraLiftParams(ctypes.Structure):
    _fields_ = [
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("origin_x", ctypes.c_float),
        ("origin_y", ctypes.c_float),
        ("cell", ctypes.c_float),
        ("num_cameras", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("feat_h", ctypes.c_int),
        ("feat_w", ctypes.c_int),
        ("image_h", ctypes.c_int),
        ("image_w", ctypes.c_int),
        ("num_heights", ctypes.c_int),
        ("heights", ctypes.c_float * MAX_HEIGHTS),
        ("min_depth", ctypes.c_float),
    ]


class EfGatedFusionParams(ctypes.Structure):
    _fields_ = [
        ("nx", ctypes.c_int),
        ("ny", ctypes.c_int),
        ("num_modalities", ctypes.c_int),
        ("channels", ctypes.c_int * MAX_MODALITIES),
        ("out_channels", ctypes.c_int),
        ("gate_kernel", ctypes.c_int),
        ("gate_eps", ctypes.c_float),
    ]


def voxelize_params(lo, hi, pillar_size, max_pillars: int, max_points: int, num_features: int):
    ny, nx = grid_shape(lo, hi, pillar_size)
    return EfVoxelizeParams(
        (ctypes.c_float * 3)(*map(float, lo)),
        (ctypes.c_float * 3)(*map(float, hi)),
        (ctypes.c_float * 2)(*map(float, pillar_size)),
        nx,
        ny,
        int(max_pillars),
        int(max_points),
        int(num_features),
    )


def camera_lift_params(
    grid_hw, origin_xy, cell, n_cameras, channels, feat_hw, image_hw, heights, min_depth=MIN_CAMERA_DEPTH_M
) -> EfCameraLiftParams:
    z = [float(h) for h in heights]
    if not 1 <= len(z) <= MAX_HEIGHTS:
        raise KernelInputError(f"camera lift: heights: expected 1..{MAX_HEIGHTS} values, got {len(z)}")
    return EfCameraLiftParams(
        int(grid_hw[1]), int(grid_hw[0]), float(origin_xy[0]), float(origin_xy[1]), float(cell),
        int(n_cameras), int(channels), int(feat_hw[0]), int(feat_hw[1]), int(image_hw[0]), int(image_hw[1]),
        len(z), (ctypes.c_float * MAX_HEIGHTS)(*z), float(min_depth),
    )  # fmt: skip


def gated_fusion_params(grid_hw, channels, out_channels, gate_kernel, gate_eps=1e-3) -> EfGatedFusionParams:
    ch = [int(c) for c in channels]
    if not 1 <= len(ch) <= MAX_MODALITIES:
        raise KernelInputError(
            f"gated fusion: channels: expected 1..{MAX_MODALITIES} modalities, got {len(ch)}"
        )
    return EfGatedFusionParams(
        int(grid_hw[1]), int(grid_hw[0]), len(ch), (ctypes.c_int * MAX_MODALITIES)(*ch),
        int(out_channels), int(gate_kernel), float(gate_eps),
    )  # fmt: skip


def device_ptr(x) -> int:
    """A device address from an int, a torch CUDA tensor, a CuPy/Numba array (``__cuda_array_interface__``),
    a pycuda ``DeviceAllocation`` or a cuda-python pointer object."""
    if x is None:
        return 0
    if isinstance(x, int):
        return x
    if hasattr(x, "data_ptr"):
        return int(x.data_ptr())
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        return int(cai["data"][0])
    return int(x)


def stream_handle(s) -> int:
    """A ``cudaStream_t`` from an int, a torch stream (``cuda_stream``), a CuPy stream (``ptr``), a pycuda
    stream (``handle``) or a cuda-python stream object; None = the default stream."""
    if s is None:
        return 0
    if isinstance(s, int):
        return s
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(s, attr, None)
        if isinstance(v, int):
            return v
    return int(s)


def library_path(path: str | os.PathLike | None = None) -> Path:
    """The kernel library to load: ``path``, else ``$EDGEFUSE_KERNELS_LIB``, else
    deploy/plugins/build/libedgefuse_kernels.so."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_LIBRARY)
    return Path(env) if env else DEFAULT_LIBRARY


_P = ctypes.c_void_p
_SZ = ctypes.c_size_t
_SIGNATURES = {
    "ef_abi_version": (ctypes.c_int, []),
    "ef_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "ef_pillar_voxelize_workspace_size": (_SZ, [ctypes.POINTER(EfVoxelizeParams), ctypes.c_int]),
    "ef_pillar_voxelize": (
        ctypes.c_int,
        [ctypes.POINTER(EfVoxelizeParams), _P, ctypes.c_int, _P, _P, _P, _P, _P, _SZ, _P],
    ),
    "ef_pillar_scatter_workspace_size": (_SZ, [ctypes.POINTER(EfScatterParams)]),
    "ef_pillar_scatter": (ctypes.c_int, [ctypes.POINTER(EfScatterParams), _P, _P, _P, _P, _P, _SZ, _P]),
    "ef_camera_lift": (ctypes.c_int, [ctypes.POINTER(EfCameraLiftParams), _P, _P, _P, _P, _P]),
    "ef_gated_fusion_workspace_size": (_SZ, [ctypes.POINTER(EfGatedFusionParams)]),
    "ef_gated_fusion": (
        ctypes.c_int,
        [ctypes.POINTER(EfGatedFusionParams), _P, _P, _P, _P, _P, _P, _P, _P, _SZ, _P],
    ),
}


class CudaKernels:
    """The loaded C ABI. Every method takes device pointers (anything :func:`device_ptr` accepts) and a
    stream (:func:`stream_handle`), launches asynchronously, and raises :class:`KernelError` on a non-zero
    status. Open with :func:`load_kernels`."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.lib, self.path = lib, path
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def _check(self, name: str, status: int) -> None:
        if status != 0:
            msg = self.lib.ef_status_string(status).decode()
            raise KernelError(f"{name} ({self.path}): status {status}: {msg}")

    def voxelize_workspace_size(self, params: EfVoxelizeParams, max_input_points: int) -> int:
        return int(self.lib.ef_pillar_voxelize_workspace_size(ctypes.byref(params), int(max_input_points)))

    def voxelize(
        self, params, points, n, out_points, out_coords, out_counts, out_num, ws, ws_size, stream=None
    ):
        d = device_ptr
        self._check("ef_pillar_voxelize", self.lib.ef_pillar_voxelize(
            ctypes.byref(params), d(points), int(n), d(out_points), d(out_coords), d(out_counts), d(out_num),
            d(ws), int(ws_size), stream_handle(stream),
        ))  # fmt: skip

    def scatter_workspace_size(self, params: EfScatterParams) -> int:
        return int(self.lib.ef_pillar_scatter_workspace_size(ctypes.byref(params)))

    def scatter(self, params, features, coords, counts, bev, ws, ws_size, stream=None):
        d = device_ptr
        self._check("ef_pillar_scatter", self.lib.ef_pillar_scatter(
            ctypes.byref(params), d(features), d(coords), d(counts), d(bev), d(ws), int(ws_size),
            stream_handle(stream),
        ))  # fmt: skip

    def camera_lift(self, params, features, projection, camera_valid, bev, stream=None):
        d = device_ptr
        self._check("ef_camera_lift", self.lib.ef_camera_lift(
            ctypes.byref(params), d(features), d(projection), d(camera_valid), d(bev), stream_handle(stream),
        ))  # fmt: skip

    def gated_fusion_workspace_size(self, params: EfGatedFusionParams) -> int:
        return int(self.lib.ef_gated_fusion_workspace_size(ctypes.byref(params)))

    def gated_fusion(self, params, features, valid, proj_weight, proj_bias, gate_weight, gate_bias, out, ws,
                     ws_size, stream=None):  # fmt: skip
        M = params.num_modalities
        if not (len(features) == len(proj_weight) == len(proj_bias) == M):
            raise KernelInputError(
                f"ef_gated_fusion: features/proj_weight/proj_bias: expected {M} each, got "
                f"{len(features)}/{len(proj_weight)}/{len(proj_bias)}"
            )
        arr = ctypes.c_void_p * M
        d = device_ptr
        self._check("ef_gated_fusion", self.lib.ef_gated_fusion(
            ctypes.byref(params), arr(*map(d, features)), d(valid), arr(*map(d, proj_weight)),
            arr(*map(d, proj_bias)), d(gate_weight), d(gate_bias), d(out), d(ws), int(ws_size),
            stream_handle(stream),
        ))  # fmt: skip


def load_kernels(path: str | os.PathLike | None = None) -> CudaKernels:
    """Open the kernel library (:func:`library_path`); :class:`KernelLibraryError` naming the file and the
    fix when it is missing, does not load (no CUDA runtime) or has another ABI version."""
    p = library_path(path)
    if not p.is_file():
        raise KernelLibraryError(f"{p}: CUDA kernel library not found; {BUILD_HINT}")
    try:
        lib = ctypes.CDLL(str(p))
    except OSError as e:
        raise KernelLibraryError(
            f"{p}: could not load the CUDA kernel library ({e}); it needs the CUDA runtime it was built "
            f"with (libcudart on LD_LIBRARY_PATH); rebuild: {BUILD_HINT}"
        ) from None
    missing = [n for n in _SIGNATURES if not hasattr(lib, n)]
    if missing:
        raise KernelLibraryError(
            f"{p}: symbol {missing[0]} missing: not an edgefuse kernel library; {BUILD_HINT}"
        )
    k = CudaKernels(lib, p)
    v = int(lib.ef_abi_version())
    if v != ABI_VERSION:
        raise KernelLibraryError(f"{p}: ABI version {v}, expected {ABI_VERSION}: stale build; {BUILD_HINT}")
    return k


# ================================================================ TensorRT plugins (scatter, BEV fusion)

TRT_PLUGINS_NAME = "libedgefuse_trt_plugins.so"
ENV_TRT_PLUGINS = "EDGEFUSE_TRT_PLUGINS_LIB"
TRT_PLUGIN_NAMES = (
    "EfPillarScatter",
    "EfBevFusion",
)  # op types of the edgefuse-domain ONNX nodes, version "1"
TRT_BUILD_HINT = (
    "build it where TensorRT headers are installed: `cmake -S deploy/plugins -B deploy/plugins/build "
    "-DEF_CUDA_ARCHITECTURES=native -DTENSORRT_ROOT=/path/to/TensorRT && "
    "cmake --build deploy/plugins/build -j` "
    f"(JetPack: TensorRT is found in /usr), or set {ENV_TRT_PLUGINS} to the built library"
)


def trt_plugins_path(path: str | os.PathLike | None = None) -> Path:
    """The TensorRT plugin library: ``path``, else ``$EDGEFUSE_TRT_PLUGINS_LIB``, else
    deploy/plugins/build/libedgefuse_trt_plugins.so."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_TRT_PLUGINS)
    return Path(env) if env else PLUGINS_DIR / "build" / TRT_PLUGINS_NAME


def load_trt_plugins(path: str | os.PathLike | None = None):
    """Register EfPillarScatter and EfBevFusion with TensorRT's plugin registry (imports tensorrt here,
    lazily) → the registry. :class:`KernelLibraryError` naming the file and the fix when the library is
    missing or TensorRT cannot load it."""
    p = trt_plugins_path(path)
    if not p.is_file():
        raise KernelLibraryError(f"{p}: TensorRT plugin library not found; {TRT_BUILD_HINT}")
    try:
        import tensorrt as trt
    except ImportError:
        raise KernelLibraryError(
            f"{p}: loading the plugins needs the tensorrt Python package (JetPack: python3-libnvinfer)"
        ) from None
    registry = trt.get_plugin_registry()
    try:
        registry.load_library(str(p))
    except Exception as e:  # noqa: BLE001 - TensorRT raises plain RuntimeError/TypeError here
        raise KernelLibraryError(
            f"{p}: TensorRT could not load the plugin library ({e}); {TRT_BUILD_HINT}"
        ) from None
    return registry


# ======================================================= stage 1 on host points (cuda-python / pycuda)


class _CudaPython:
    """Minimal device memory + stream through cuda-python's runtime bindings (imported here, lazily)."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as rt
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart as rt
        self.rt = rt
        self.stream = int(self._ok(rt.cudaStreamCreate(), "cudaStreamCreate"))

    def _ok(self, res, what):
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise KernelError(f"{what}: CUDA error {int(err)}")
        return rest[0] if rest else None

    def alloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def htod(self, dst: int, src: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self.stream), "cudaMemcpyAsync"
        )

    def dtoh(self, dst: np.ndarray, src: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(
            self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self.stream), "cudaMemcpyAsync"
        )

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class _PyCuda:
    """The same through pycuda (JetPack ships it)."""

    def __init__(self):
        import pycuda.autoprimaryctx  # noqa: F401 - creates/retains the primary context
        import pycuda.driver as drv

        self.drv = drv
        self._stream = drv.Stream()
        self.stream = int(self._stream.handle)
        self._allocs: dict[int, object] = {}

    def alloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(int(nbytes), 1))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def htod(self, dst: int, src: np.ndarray) -> None:
        self.drv.memcpy_htod_async(dst, src, self._stream)

    def dtoh(self, dst: np.ndarray, src: int) -> None:
        self.drv.memcpy_dtoh_async(dst, src, self._stream)

    def sync(self) -> None:
        self._stream.synchronize()


def _cuda_runtime():
    try:
        return _CudaPython()
    except ImportError:
        pass
    try:
        return _PyCuda()
    except ImportError:
        raise KernelLibraryError(
            "GpuVoxelizer: neither cuda-python nor pycuda is importable; install one "
            "(`pip install cuda-python`, or JetPack's python3-pycuda)"
        ) from None


@dataclass
class _Buffers:
    points: int
    out_points: int
    coords: int
    counts: int
    num: int
    ws: int
    ws_size: int
    capacity: int


class GpuVoxelizer:
    """Stage 1 on the GPU for host points, the twin of :class:`edgefuse.tensors.PillarVoxelizer` (its grid
    arguments plus ``num_features``; its outputs bit for bit, as a ``(points, coords, counts, num_pillars)``
    tuple). Device buffers are sized once for ``max_input_points``
    (grown when a larger cloud comes); ``device_outputs`` exposes them for an engine that reads pillars
    straight from the device. Not for concurrent use from two threads; ``close()`` frees the buffers."""

    def __init__(self, x_range, y_range, z_range, pillar_size, max_pillars: int, max_points_per_pillar: int,
                 num_features: int, max_input_points: int = 200_000, library=None):  # fmt: skip
        self.lo = (x_range[0], y_range[0], z_range[0])
        self.hi = (x_range[1], y_range[1], z_range[1])
        self.params = voxelize_params(self.lo, self.hi, pillar_size, max_pillars, max_points_per_pillar,
                                      num_features)  # fmt: skip
        self.kernels = library if isinstance(library, CudaKernels) else load_kernels(library)
        self.cuda = _cuda_runtime()
        self.F, self.P, self.N = int(num_features), int(max_pillars), int(max_points_per_pillar)
        self.buf: _Buffers | None = None
        self._allocate(int(max_input_points))

    def _allocate(self, capacity: int) -> None:
        self.close()
        c, P, N, F = self.cuda, self.P, self.N, self.F
        ws_size = self.kernels.voxelize_workspace_size(self.params, capacity)
        self.buf = _Buffers(
            c.alloc(capacity * F * 4), c.alloc(P * N * F * 4), c.alloc(P * 2 * 4), c.alloc(P * 4), c.alloc(4),
            c.alloc(ws_size), ws_size, capacity,
        )  # fmt: skip

    @property
    def device_outputs(self) -> dict[str, int]:
        b = self.buf
        return {"points": b.out_points, "coords": b.coords, "counts": b.counts, "num_pillars": b.num}

    def __call__(self, points: np.ndarray):
        """``points`` (M, F) float32 → ``(points (P, N, F), coords (P, 2), counts (P,), num_pillars)``."""
        p = _array(points, "GpuVoxelizer: points", 2, np.float32, f"(M, {self.F}) float32")
        if p.shape[1] != self.F:
            raise KernelInputError(f"GpuVoxelizer: points: expected (M, {self.F}), got {p.shape}")
        if p.shape[0] > self.buf.capacity:
            self._allocate(p.shape[0])
        b, c = self.buf, self.cuda
        if p.shape[0]:
            c.htod(b.points, p)
        self.kernels.voxelize(self.params, b.points, p.shape[0], b.out_points, b.coords, b.counts, b.num,
                              b.ws, b.ws_size, c.stream)  # fmt: skip
        out = np.empty((self.P, self.N, self.F), np.float32)
        coords = np.empty((self.P, 2), np.int32)
        counts = np.empty(self.P, np.int32)
        num = np.empty(1, np.int32)
        for host, dev in ((out, b.out_points), (coords, b.coords), (counts, b.counts), (num, b.num)):
            c.dtoh(host, dev)
        c.sync()
        return out, coords, counts, int(num[0])

    def close(self) -> None:
        b, self.buf = self.buf, None
        if b is not None:
            for ptr in (b.points, b.out_points, b.coords, b.counts, b.num, b.ws):
                self.cuda.free(ptr)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ================================================================ building the library (CMake + nvcc)


def find_nvcc() -> Path | None:
    """nvcc from ``$CUDACXX``, PATH, /usr/local/cuda or the newest /usr/local/cuda-*; None when absent."""
    import shutil

    cands = [os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    cands += sorted((str(p) for p in Path("/usr/local").glob("cuda-*/bin/nvcc")), reverse=True)
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def build_library(build_dir: str | os.PathLike, architectures: str = "native", nvcc=None, jobs: int = 2,
                  timeout_s: float = 900) -> Path:  # fmt: skip
    """Configure and build deploy/plugins/ with CMake into ``build_dir`` for ``architectures`` (a
    CMAKE_CUDA_ARCHITECTURES value: "native", "87", "87;90", "all-major") → the built library path.
    :class:`KernelLibraryError` with the compiler output when cmake/nvcc is missing or the build fails."""
    import shutil
    import subprocess

    cmake = shutil.which("cmake")
    nvcc = Path(nvcc) if nvcc else find_nvcc()
    if cmake is None or nvcc is None:
        missing = "cmake" if cmake is None else "nvcc"
        raise KernelLibraryError(f"{PLUGINS_DIR}: cannot build the CUDA kernels: {missing} not found")
    build = Path(build_dir)
    steps = [
        [cmake, "-S", str(PLUGINS_DIR), "-B", str(build), f"-DEF_CUDA_ARCHITECTURES={architectures}",
         f"-DCMAKE_CUDA_COMPILER={nvcc}", "-DCMAKE_BUILD_TYPE=Release"],
        [cmake, "--build", str(build), "-j", str(int(jobs))],
    ]  # fmt: skip
    for cmd in steps:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if p.returncode != 0:
            raise KernelLibraryError(
                f"{PLUGINS_DIR}: `{' '.join(cmd)}` failed (exit {p.returncode}):\n"
                f"{p.stdout[-4000:]}{p.stderr[-4000:]}"
            )
    lib = build / LIBRARY_NAME
    if not lib.is_file():
        raise KernelLibraryError(f"{lib}: the build finished but the library is missing")
    return lib
