"""The custom CUDA kernels of edgefuse/deploy/plugins/ (DESIGN §5; package data, so the sources are in every
install): the ctypes loader of their C ABI, the TensorRT plugin library, :class:`GpuVoxelizer` and the CMake
build (:func:`build_library`, ``edgefuse build-kernels``; by default into :func:`default_build_dir`). Their
numpy references, the oracle of every kernel test, are in :mod:`edgefuse.runtime.kernel_refs`
(docs/kernels.md).

This module imports numpy only: no torch, cv2, numba, cuda-python or pycuda at import time. The GPU side:
:func:`load_kernels` opens the library (:class:`KernelLibraryError` naming the file and the fix when it is
missing); :class:`CudaKernels` calls it with device pointers (ints, torch/CuPy arrays, pycuda allocations)
and a stream; :class:`GpuVoxelizer` runs stage 1 on host points with cuda-python (or pycuda) buffers.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.runtime.feed import MIN_CAMERA_DEPTH_M
from edgefuse.runtime.kernel_refs import MAX_HEIGHTS, MAX_MODALITIES, KernelInputError, as_array, grid_shape

ABI_VERSION = 1  # EF_ABI_VERSION of edgefuse/deploy/plugins/ef_common.h
LIBRARY_NAME = "libedgefuse_kernels.so"
ENV_LIBRARY = "EDGEFUSE_KERNELS_LIB"
#: The kernel and plugin sources (CMakeLists.txt, *.cu, *.h, trt/*.cpp): package data of edgefuse, so this
#: one path is right in a source checkout and in an installed wheel alike. Read-only: builds go elsewhere.
PLUGINS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "plugins"
BUILD_HINT = (
    "build it with `edgefuse build-kernels [--arch 87] [--build-dir DIR]` (CMake >= 3.22 + nvcc), or set "
    f"{ENV_LIBRARY} to the built library"
)


class KernelLibraryError(InputError):
    """The kernel library is missing, not loadable, or built for another ABI version."""


class KernelError(RuntimeError):
    """A kernel returned an error status (the message carries the function and the status)."""


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


def default_build_dir() -> Path:
    """Where :func:`build_library` builds when no directory is given, and so where the libraries are looked
    for when neither an argument nor the environment names them: ``$XDG_CACHE_HOME/edgefuse/kernels-<key>``
    (``~/.cache`` when unset). Outside the package, because an installed one may be read-only; one directory
    per install (``<key>`` hashes :data:`PLUGINS_DIR`), because CMake refuses a build directory configured
    from another source directory, so a checkout and a venv must not share one."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha1(str(PLUGINS_DIR).encode()).hexdigest()[:10]
    return Path(cache) / "edgefuse" / f"kernels-{key}"


def library_path(path: str | os.PathLike | None = None) -> Path:
    """The kernel library to load: ``path``, else ``$EDGEFUSE_KERNELS_LIB``, else
    :func:`default_build_dir` ``/libedgefuse_kernels.so``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_LIBRARY)
    return Path(env) if env else default_build_dir() / LIBRARY_NAME


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
    "build it where TensorRT headers are installed: `edgefuse build-kernels --tensorrt-root "
    "/path/to/TensorRT` (CMake -DTENSORRT_ROOT=…; JetPack's TensorRT is found in /usr), then pass it with "
    f"--plugins or set {ENV_TRT_PLUGINS}"
)


# (name, version, namespace) of the creators libedgefuse_trt_plugins.so registers (trt/ef_trt_plugins.cpp)
TRT_PLUGIN_CREATORS = (("EfPillarScatter", "1", ""), ("EfBevFusion", "1", ""))


def trt_plugins_path(path: str | os.PathLike | None = None) -> Path:
    """The TensorRT plugin library: ``path`` (``--plugins``), else ``$EDGEFUSE_TRT_PLUGINS_LIB``, else
    :func:`default_build_dir` ``/libedgefuse_trt_plugins.so``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_TRT_PLUGINS)
    return Path(env) if env else default_build_dir() / TRT_PLUGINS_NAME


def load_trt_plugins(path: str | os.PathLike | None = None, trt=None):
    """Register EfPillarScatter and EfBevFusion with TensorRT's plugin registry (imports tensorrt here,
    lazily; ``trt``: injectable) → the registry. :class:`KernelLibraryError` naming the file and the fix
    when the library is missing or TensorRT cannot load it (``IPluginRegistry::loadLibrary`` returns no
    handle, or the binding raises)."""
    p = trt_plugins_path(path)
    if not p.is_file():
        raise KernelLibraryError(f"{p}: TensorRT plugin library not found; {TRT_BUILD_HINT}")
    if trt is None:
        try:
            import tensorrt as trt
        except ImportError:
            raise KernelLibraryError(
                f"{p}: loading the plugins needs the tensorrt Python package (JetPack: python3-libnvinfer)"
            ) from None
    registry = trt.get_plugin_registry()
    if all(registry.get_creator(*c) is not None for c in TRT_PLUGIN_CREATORS):
        return registry  # loaded before in this process (loading it twice would fail)
    try:
        handle = registry.load_library(str(p))
    except Exception as e:  # noqa: BLE001 - TensorRT raises plain RuntimeError/TypeError here
        raise KernelLibraryError(
            f"{p}: TensorRT could not load the plugin library ({e}); {TRT_BUILD_HINT}"
        ) from None
    if handle is None:  # loadLibrary returns nullptr: not a plugin library, or its plugins already registered
        raise KernelLibraryError(
            f"{p}: TensorRT could not load the plugin library (loadLibrary returned no handle: not a "
            "TensorRT plugin library for this TensorRT, or its plugins are registered already); "
            f"{TRT_BUILD_HINT}"
        )
    missing = [c for c in TRT_PLUGIN_CREATORS if registry.get_creator(*c) is None]
    if missing:
        raise KernelLibraryError(
            f"{p}: loaded, but it registered no plugin creators {missing} (name, version, namespace); "
            f"expected edgefuse's plugin library; {TRT_BUILD_HINT}"
        )
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
        p = as_array(points, "GpuVoxelizer: points", 2, np.float32, f"(M, {self.F}) float32")
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


def build_library(build_dir: str | os.PathLike | None = None, architectures: str = "native", nvcc=None,
                  jobs: int = 2, timeout_s: float = 900,
                  tensorrt_root: str | os.PathLike | None = None) -> Path:  # fmt: skip
    """Configure and build :data:`PLUGINS_DIR` with CMake into ``build_dir`` (None: :func:`default_build_dir`)
    for ``architectures`` (EF_CUDA_ARCHITECTURES: "native", "87", "87;90", "all-major") → the kernel
    library's path. The TensorRT plugin library (:data:`TRT_PLUGINS_NAME`) is built beside it where CMake
    finds TensorRT (``tensorrt_root``: its install prefix). :class:`KernelLibraryError` with the compiler
    output when cmake/nvcc is missing or the build fails."""
    import shutil
    import subprocess

    cmake = shutil.which("cmake")
    nvcc = Path(nvcc) if nvcc else find_nvcc()
    if cmake is None or nvcc is None:
        missing = "cmake (>= 3.22)" if cmake is None else "nvcc (CUDA 12 or 13)"
        raise KernelLibraryError(f"{PLUGINS_DIR}: cannot build the CUDA kernels: {missing} not found")
    if not (PLUGINS_DIR / "CMakeLists.txt").is_file():
        raise KernelLibraryError(
            f"{PLUGINS_DIR}: no CMakeLists.txt: this edgefuse install lacks its package data; reinstall it"
        )
    build = Path(build_dir) if build_dir is not None else default_build_dir()
    configure = [cmake, "-S", str(PLUGINS_DIR), "-B", str(build), f"-DEF_CUDA_ARCHITECTURES={architectures}",
                 f"-DCMAKE_CUDA_COMPILER={nvcc}", "-DCMAKE_BUILD_TYPE=Release"]  # fmt: skip
    if tensorrt_root is not None:
        configure.append(f"-DTENSORRT_ROOT={tensorrt_root}")
    steps = [configure, [cmake, "--build", str(build), "-j", str(int(jobs))]]
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
