"""TensorRT engines on the robot: the JSON sidecar, load-time checks, and the backend.

- :func:`read_sidecar` / :func:`write_sidecar` — ``X.engine.json``: the model manifest + an ``engine``
  record (TensorRT version, GPU name and compute capability, build flags), written by the builder
  (:mod:`edgefuse.engine.tensorrt`) and read here before an engine is deserialized.
- :func:`check_engine` — the sidecar against the running TensorRT and GPU: a :class:`EngineMismatchError`
  naming the file, what it was built for, what is here and the fix (rebuild, or build version-compatible).
- :class:`TensorRTBackend` — the backend (:mod:`edgefuse.runtime.backends`): pinned host buffers, device
  buffers, a stream and CUDA events through cuda-python (``cuda.bindings.runtime``).

tensorrt and cuda-python are imported inside the functions that need them, never at module load.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.runtime.backends import check_feed
from edgefuse.runtime.manifest import Manifest


class EngineError(InputError):
    """A bad engine build input or a missing TensorRT/CUDA/plugin (names the file and the fix)."""


class EngineMismatchError(EngineError):
    """An engine built for another GPU or TensorRT version."""


def gpu_of(trt_module=None) -> dict:
    """{"name", "compute_capability"} of device 0 via cuda-python (pycuda where that is installed)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            raise EngineError(f"CUDA: no usable GPU (cudaGetDeviceProperties: {err})")
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return {"name": name.strip("\x00 "), "compute_capability": f"{props.major}.{props.minor}"}
    try:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as drv
    except ImportError:
        raise EngineError(
            "TensorRT backend: needs cuda-python (pip install 'edgefuse[gpu]') or pycuda (JetPack)"
        ) from None
    dev = drv.Device(0)
    major, minor = dev.compute_capability()
    return {"name": dev.name(), "compute_capability": f"{major}.{minor}"}


def import_trt():
    """The tensorrt module, or an :class:`EngineError` saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError(
            "TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer; on x86 "
            "pip install 'edgefuse[gpu]' (tensorrt ≥ 10)"
        ) from None
    return trt


# ---------------------------------------------------------------- sidecar


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def write_sidecar(engine: str | Path, manifest: Manifest, record: dict) -> Path:
    """``<engine>.json``: the manifest's fields plus ``engine`` (the build record)."""
    d = json.loads(manifest.to_json())
    d["engine"] = record
    p = sidecar_path(engine)
    p.write_text(json.dumps(d, indent=1))
    return p


def read_sidecar(engine: str | Path) -> tuple[Manifest, dict]:
    p = sidecar_path(engine)
    if not p.is_file():
        raise EngineError(
            f"{engine}: no sidecar {p.name} next to it (manifest + build record); rebuild with "
            "`edgefuse build-engine MODEL.onnx --out ENGINE`"
        )
    text = p.read_text()
    manifest = Manifest.from_json(text, str(p))
    record = json.loads(text).get("engine")
    need = ("tensorrt", "gpu", "compute_capability", "flags")
    if not isinstance(record, dict) or any(k not in record for k in need):
        raise EngineError(f"{p}: field 'engine': expected a build record with {list(need)}")
    return manifest, record


def check_engine(engine: str | Path, record: dict, trt_version: str, gpu: dict) -> None:
    """Refuse an engine built for another GPU (compute capability) or TensorRT version; a
    version-compatible engine may run on a later TensorRT of the same major version."""
    fix = f"rebuild it here: edgefuse build-engine {record.get('onnx', 'MODEL.onnx')} --out {engine}"
    if record["compute_capability"] != gpu["compute_capability"]:
        raise EngineMismatchError(
            f"{engine}: built for {record['gpu']} (compute capability {record['compute_capability']}), "
            f"this GPU is {gpu['name']} ({gpu['compute_capability']}); {fix}"
        )
    built, here = str(record["tensorrt"]), str(trt_version)
    if built == here:
        return
    compat = bool(record["flags"].get("version_compatible"))

    def key(v):
        return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())

    if compat and key(here) >= key(built) and key(here)[:1] == key(built)[:1]:
        return
    raise EngineMismatchError(
        f"{engine}: built with TensorRT {built}{' (version-compatible)' if compat else ''}, this is "
        f"TensorRT {here}; {fix} (or build with a profile that sets version_compatible: true)"
    )


# ---------------------------------------------------------------- backend


def _ck(res, what):
    err = res[0] if isinstance(res, tuple) else res
    if int(err) != 0:
        raise EngineError(f"CUDA {what} failed: {err}")
    return res[1] if isinstance(res, tuple) and len(res) == 2 else res


class TensorRTBackend:
    """A ``.engine`` + sidecar on the GPU: one pinned host and one device buffer per I/O tensor, one
    stream, events around the enqueue (``last_gpu_ms``: the engine's GPU time of the last call)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, plugins: str | Path | None = None):
        self.path = Path(path)
        self.manifest, self.record = read_sidecar(self.path)
        trt = import_trt()
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart
            except ImportError:
                raise EngineError(
                    f"{self.path}: the TensorRT backend needs cuda-python (pip install cuda-python)"
                ) from None
        self.cudart = cudart
        check_engine(self.path, self.record, trt.__version__, gpu_of())
        if self.record["flags"].get("plugins"):
            from edgefuse.runtime.kernels import load_trt_plugins

            load_trt_plugins(plugins)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if self.record["flags"].get("version_compatible"):
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineError(f"{self.path}: TensorRT could not deserialize it; rebuild it here")
        self.context = self.engine.create_execution_context()
        self.stream = _ck(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.start = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.stop = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.host, self.device = {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            hptr = _ck(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            buf = np.frombuffer((ctypes.c_byte * nbytes).from_address(int(hptr)), dtype=dtype)
            self.host[name] = (hptr, buf.reshape(shape))
            self.device[name] = _ck(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.context.set_tensor_address(name, int(self.device[name]))
        self.last_gpu_ms = float("nan")

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cr = self.cudart
        check_feed(feed, self.manifest, str(self.path))
        h2d, d2h = cr.cudaMemcpyKind.cudaMemcpyHostToDevice, cr.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.manifest.inputs:
            _, buf = self.host[name]
            buf[...] = feed[name]
            _ck(cr.cudaMemcpyAsync(self.device[name], buf.ctypes.data, buf.nbytes, h2d, self.stream), "H2D")
        _ck(cr.cudaEventRecord(self.start, self.stream), "cudaEventRecord")
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineError(f"{self.path}: TensorRT enqueue failed")
        _ck(cr.cudaEventRecord(self.stop, self.stream), "cudaEventRecord")
        for name in self.manifest.outputs:
            _, buf = self.host[name]
            _ck(cr.cudaMemcpyAsync(buf.ctypes.data, self.device[name], buf.nbytes, d2h, self.stream), "D2H")
        _ck(cr.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self.last_gpu_ms = float(_ck(cr.cudaEventElapsedTime(self.start, self.stop), "cudaEventElapsedTime"))
        return {n: self.host[n][1].copy() for n in self.manifest.outputs}

    def close(self) -> None:
        cr = self.cudart
        for hptr, _ in self.host.values():
            cr.cudaFreeHost(hptr)
        for d in self.device.values():
            cr.cudaFree(d)
        cr.cudaEventDestroy(self.start)
        cr.cudaEventDestroy(self.stop)
        cr.cudaStreamDestroy(self.stream)
        self.host, self.device, self.context, self.engine = {}, {}, None, None
