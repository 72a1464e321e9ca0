"""TensorRT engines on the robot: the JSON sidecar, load-time checks, and the backend.

- :func:`read_sidecar` / :func:`write_sidecar` — ``X.engine.json``: the model manifest + an ``engine``
  record (TensorRT version, GPU name and compute capability, build flags), written by the builder
  (:mod:`edgefuse.engine.tensorrt`) and read here before an engine is deserialized.
- :func:`check_engine` — the sidecar against the running TensorRT and GPU: a :class:`EngineMismatchError`
  naming the file, what it was built for, what is here and the fix (rebuild, or build version-compatible).
- :class:`TensorRTBackend` — the backend (:mod:`edgefuse.runtime.backends`): pinned host buffers, device
  buffers, a stream and CUDA events through cuda-python (``cuda.bindings.runtime``); it feeds the
  engine's own input tensors (:func:`engine_io`), by name.
- :func:`import_trt` / :func:`check_trt_version` — TensorRT 10.x from 10.3 on (:data:`TRT_SUPPORTED`);
  TensorRT 11 is refused with the version it found.

tensorrt and cuda-python are imported inside the functions that need them, never at module load.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
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


TRT_SUPPORTED = "tensorrt>=10.3,<11"
TRT_MIN = (10, 3)  # JetPack 6.x
TRT_MAJOR = 10  # TensorRT 11 changes the API edgefuse uses: not supported


def version_key(v: str) -> tuple[int, ...]:
    """"10.3.0.30" → (10, 3, 0, 30); stops at the first part that is not a number."""
    out = []
    for part in str(v).split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def check_trt_version(trt) -> str:
    """``trt.__version__`` when it is a supported TensorRT (:data:`TRT_SUPPORTED`), else an
    :class:`EngineError` naming the version found and the one needed."""
    v = str(getattr(trt, "__version__", ""))
    key = version_key(v)
    if not key:
        raise EngineError(f"tensorrt module: __version__ {v!r}: expected a version like '10.3.0'")
    if key[0] != TRT_MAJOR or key[:2] < TRT_MIN:
        raise EngineError(
            f"TensorRT {v} is not supported: edgefuse needs {TRT_SUPPORTED} (JetPack 6 ships 10.3); "
            f"install it with pip install '{TRT_SUPPORTED}' or use JetPack 6's python3-libnvinfer"
        )
    return v


def import_trt():
    """The tensorrt module (checked by :func:`check_trt_version`), or an :class:`EngineError` saying how
    to install it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError(
            "TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer; on x86 "
            f"pip install 'edgefuse[gpu]' ({TRT_SUPPORTED})"
        ) from None
    check_trt_version(trt)
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
    """Refuse an engine built for another GPU — another compute capability, or another GPU model of the
    same one (TensorRT plans are specific to the GPU model unless built hardware-compatible) — or another
    TensorRT version; a version-compatible engine may run on a later TensorRT of the same major version."""
    fix = f"rebuild it here: edgefuse build-engine {record.get('onnx', 'MODEL.onnx')} --out {engine}"
    if record["compute_capability"] != gpu["compute_capability"]:
        raise EngineMismatchError(
            f"{engine}: built for {record['gpu']} (compute capability {record['compute_capability']}), "
            f"this GPU is {gpu['name']} ({gpu['compute_capability']}); {fix}"
        )
    if record["gpu"] != gpu["name"] and not record["flags"].get("hardware_compatible"):
        raise EngineMismatchError(
            f"{engine}: built on {record['gpu']}, this GPU is {gpu['name']} (same compute capability "
            f"{gpu['compute_capability']}, another model: its tactics were timed there); {fix}"
        )
    built, here = str(record["tensorrt"]), str(trt_version)
    if built == here:
        return
    compat = bool(record["flags"].get("version_compatible"))
    h, b = version_key(here)[:3], version_key(built)[:3]
    if compat and h >= b and h[:1] == b[:1]:
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


@dataclass(frozen=True)
class TensorIO:
    """One I/O tensor of an engine, as the engine declares it."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def engine_io(trt, engine, where: str) -> list[TensorIO]:
    """The engine's I/O tensors in its own order (``ICudaEngine::getIOTensorName`` …); an
    :class:`EngineError` naming ``where`` and the tensor for a dynamic shape (edgefuse builds fixed ones)."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise EngineError(f"{where}: tensor '{name}': expected a fixed shape, got {shape}; rebuild it")
        mode = engine.get_tensor_mode(name)
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        out.append(TensorIO(name, mode == trt.TensorIOMode.INPUT, shape, dtype))
    return out


def plan_io(io: list[TensorIO], inputs: list[str], outputs: list[str], where: str):
    """(engine inputs, outputs to return) after checking them against the manifest's ``inputs``/``outputs``:
    every engine input must be a manifest input (the feed has nothing else; TensorRT may drop unused
    ones), and every manifest output an engine output."""
    ins = [t.name for t in io if t.is_input]
    outs = {t.name for t in io if not t.is_input}
    extra = [n for n in ins if n not in inputs]
    if extra:
        raise EngineError(
            f"{where}: engine inputs {extra} are not in its sidecar's manifest; expected some of {inputs}; "
            "rebuild the engine and its sidecar together (edgefuse build-engine)"
        )
    missing = [n for n in outputs if n not in outs]
    if missing:
        raise EngineError(
            f"{where}: engine has no outputs {missing} (its outputs: {sorted(outs)}); expected the "
            f"manifest's outputs {outputs}; rebuild it with edgefuse build-engine"
        )
    return ins, list(outputs)


def _import_cudart(where):
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            raise EngineError(
                f"{where}: the TensorRT backend needs cuda-python (pip install cuda-python)"
            ) from None
    return cudart


class TensorRTBackend:
    """A ``.engine`` + sidecar on the GPU: one pinned host and one device buffer per I/O tensor, one
    stream, events around the enqueue (``last_gpu_ms``: the engine's GPU time of the last call).

    ``allow_host_code``: a version-compatible plan embeds the TensorRT lean runtime (host code), which
    TensorRT runs only when the runtime allows it (``IRuntime::setEngineHostCodeAllowed``): a plan from an
    untrusted source runs its code in this process. False (the default) refuses a version-compatible plan
    before deserializing it; True — ``run``/``replay --trust-engine`` — trusts it. An engine built for a
    DLA core runs on that core (``IRuntime::setDLACore``), refused where the device has no such core.
    ``trt``, ``cudart``, ``gpu``: injectable (tests)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, plugins: str | Path | None = None, allow_host_code: bool = False,
                 trt=None, cudart=None, gpu: dict | None = None):  # fmt: skip
        self.path = Path(path)
        self.manifest, self.record = read_sidecar(self.path)
        if trt is None:
            trt = import_trt()
        else:
            check_trt_version(trt)
        self.cudart = cudart = cudart or _import_cudart(self.path)
        check_engine(self.path, self.record, trt.__version__, gpu or gpu_of())
        compat = bool(self.record["flags"].get("version_compatible"))
        if compat and not allow_host_code:
            raise EngineError(
                f"{self.path}: a version-compatible plan runs its embedded host code in this process; "
                "trust it with --trust-engine (allow_host_code=True) if you built it, or rebuild it without "
                "version_compatible"
            )
        if self.record["flags"].get("plugins"):
            from edgefuse.runtime.kernels import load_trt_plugins

            load_trt_plugins(plugins, trt=trt)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if compat:
            self.runtime.engine_host_code_allowed = True
        dla = self.record["flags"].get("dla_core")
        if dla is not None:
            cores = int(self.runtime.num_DLA_cores)
            if dla >= cores:
                raise EngineMismatchError(
                    f"{self.path}: built to run on DLA core {dla}; this device has {cores} DLA core(s) "
                    "(Orin Nano has none): rebuild it with a profile without dla_core"
                )
            self.runtime.DLA_core = int(dla)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineError(
                f"{self.path}: TensorRT could not deserialize it (see its log above); rebuild it here"
            )
        self.io = engine_io(trt, self.engine, str(self.path))
        m = self.manifest
        self.inputs, self.outputs = plan_io(self.io, m.inputs, m.outputs, str(self.path))
        self.context = self.engine.create_execution_context()
        self.stream = _ck(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.start = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.stop = _ck(cudart.cudaEventCreate(), "cudaEventCreate")
        self.host, self.device = {}, {}
        for t in self.io:
            nbytes = int(np.prod(t.shape)) * t.dtype.itemsize
            hptr = _ck(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            buf = np.frombuffer((ctypes.c_byte * nbytes).from_address(int(hptr)), dtype=t.dtype)
            self.host[t.name] = (hptr, buf.reshape(t.shape))
            self.device[t.name] = _ck(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.context.set_tensor_address(t.name, int(self.device[t.name]))
        self.last_gpu_ms = float("nan")

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cr = self.cudart
        check_feed(feed, self.manifest, str(self.path))
        h2d, d2h = cr.cudaMemcpyKind.cudaMemcpyHostToDevice, cr.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:  # the engine's own inputs
            _, buf = self.host[name]
            if feed[name].shape != buf.shape:
                raise EngineError(
                    f"{self.path}: input '{name}': expected shape {buf.shape}, got {feed[name].shape}"
                )
            buf[...] = feed[name]
            _ck(cr.cudaMemcpyAsync(self.device[name], buf.ctypes.data, buf.nbytes, h2d, self.stream), "H2D")
        _ck(cr.cudaEventRecord(self.start, self.stream), "cudaEventRecord")
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineError(f"{self.path}: TensorRT enqueue failed")
        _ck(cr.cudaEventRecord(self.stop, self.stream), "cudaEventRecord")
        for name in self.outputs:
            _, buf = self.host[name]
            _ck(cr.cudaMemcpyAsync(buf.ctypes.data, self.device[name], buf.nbytes, d2h, self.stream), "D2H")
        _ck(cr.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        self.last_gpu_ms = float(_ck(cr.cudaEventElapsedTime(self.start, self.stop), "cudaEventElapsedTime"))
        return {n: self.host[n][1].copy() for n in self.outputs}

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
