"""TensorRT engines: build from ONNX with a deployment profile, a JSON sidecar, load-time checks, run.

- :func:`load_profile` — ``deploy/profiles/<name>.yaml`` (or a path) → :class:`Profile`.
- :func:`build_engine` — TensorRT Python API builder: explicit batch, FP32/FP16/INT8 (INT8 = an
  explicit-precision build of a QDQ ONNX), workspace limit, timing cache, DLA with GPU fallback,
  version-compatible engines when the profile asks, the plugin library for ``export --plugins`` graphs;
  writes ``X.engine``, ``X.engine.json`` (the model manifest + an ``engine`` record: TensorRT version,
  GPU name and compute capability, build flags) and ``X.engine.report.json`` (per-layer precision and
  tactic from the engine inspector). ``trt`` is injectable (tests pass a fake module).
- :func:`check_engine` — the sidecar against the running TensorRT and GPU: a :class:`EngineMismatchError`
  naming the file, what it was built for, what is here and the fix (rebuild, or build version-compatible).
- :class:`TensorRTBackend` — the backend (:mod:`edgefuse.engine.backends`): pinned host buffers, device
  buffers, a stream and CUDA events through cuda-python (``cuda.bindings.runtime``).

tensorrt and cuda-python are imported inside the functions that need them, never at module load.
"""

from __future__ import annotations

import ctypes
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.model.manifest import Manifest

PROFILES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "profiles"
PRECISIONS = ("fp32", "fp16", "int8")


class EngineError(InputError):
    """A bad engine build input or a missing TensorRT/CUDA/plugin (names the file and the fix)."""


class EngineMismatchError(EngineError):
    """An engine built for another GPU or TensorRT version."""


@dataclass(frozen=True)
class Profile:
    """A deployment target. ``compute_capability``: "8.7" (Orin) etc., None = any (checked at load
    through the sidecar anyway); ``workspace_mb``: builder workspace limit; ``dla_core``: None = GPU only,
    0/1 = that DLA core with GPU fallback; ``version_compatible``: build a version-compatible engine
    (TensorRT ≥ 8.6; loads on later TensorRT versions, same GPU family); ``builder_optimization_level``
    0–5; ``timing_cache``: file name of the timing cache next to the engine (None = no cache)."""

    name: str
    description: str = ""
    compute_capability: str | None = None
    workspace_mb: int = 1024
    dla_core: int | None = None
    version_compatible: bool = False
    builder_optimization_level: int = 3
    timing_cache: str | None = "timing.cache"
    default_precision: str = "fp16"


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (``deploy/profiles/<name>.yaml``) or YAML path."""
    import yaml

    p = Path(name_or_path)
    if not p.suffix:
        p = PROFILES_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        have = sorted(q.stem for q in PROFILES_DIR.glob("*.yaml"))
        raise EngineError(
            f"--profile {name_or_path}: no such profile file {p}; expected one of {have} or a path"
        )
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise EngineError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(d, dict):
        raise EngineError(f"{p}: expected a mapping of profile fields")
    known = set(Profile.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise EngineError(f"{p}: unknown fields {unknown}; expected some of {sorted(known)}")
    d.setdefault("name", p.stem)
    checks = {
        "workspace_mb": lambda v: isinstance(v, int) and v > 0,
        "dla_core": lambda v: v is None or (isinstance(v, int) and v >= 0),
        "version_compatible": lambda v: isinstance(v, bool),
        "builder_optimization_level": lambda v: isinstance(v, int) and 0 <= v <= 5,
        "default_precision": lambda v: v in PRECISIONS,
        "compute_capability": lambda v: v is None or (isinstance(v, str) and v.replace(".", "").isdigit()),
    }
    expect = {
        "workspace_mb": "a positive integer",
        "dla_core": "null or a core index ≥ 0",
        "version_compatible": "true or false",
        "builder_optimization_level": "an integer 0–5",
        "default_precision": f"one of {PRECISIONS}",
        "compute_capability": 'null or a string like "8.7"',
    }
    for k, ok in checks.items():
        if k in d and not ok(d[k]):
            raise EngineError(f"{p}: field '{k}': expected {expect[k]}, got {d[k]!r}")
    return Profile(**d)


# ---------------------------------------------------------------- build


def _gpu_of(trt_module=None) -> dict:
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


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError(
            "TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer; on x86 "
            "pip install 'edgefuse[gpu]' (tensorrt ≥ 10)"
        ) from None
    return trt


def builder_config(trt, builder, profile: Profile, precision: str, cache_bytes: bytes | None):
    """A TensorRT ``IBuilderConfig`` for ``profile`` and ``precision``; returns (config, flags record)."""
    if precision not in PRECISIONS:
        raise EngineError(f"build-engine --precision: expected one of {PRECISIONS}, got {precision!r}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, profile.workspace_mb << 20)
    config.builder_optimization_level = profile.builder_optimization_level
    flags = {"precision": precision, "workspace_mb": profile.workspace_mb, "dla_core": profile.dla_core}
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 QDQ graphs: float layers run FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit precision: scales come from the QDQ nodes
    if profile.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = profile.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if profile.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if profile.timing_cache is not None:
        cache = config.create_timing_cache(cache_bytes or b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    flags["version_compatible"] = profile.version_compatible
    flags["builder_optimization_level"] = profile.builder_optimization_level
    return config, flags


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    precision: str | None = None,
    profile: str | Path | Profile = "x86-gpu",
    plugins: str | Path | None = None,
    trt=None,
    gpu: dict | None = None,
) -> dict:
    """Build ``out`` from ``onnx_path`` (see module doc); ``precision`` None = the profile's default;
    ``gpu``: {"name", "compute_capability"} of the build GPU (default: asked from CUDA). Returns the build
    record."""
    from edgefuse.engine.export import PLUGIN_DOMAIN, read_onnx_manifest

    onnx_path, out = Path(onnx_path), Path(out)
    manifest = read_onnx_manifest(onnx_path)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    precision = precision or prof.default_precision
    if precision not in PRECISIONS:
        raise EngineError(f"build-engine --precision: expected one of {PRECISIONS}, got {precision!r}")
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)
    needs_plugins = any(n.domain == PLUGIN_DOMAIN for n in graph.graph.node)
    if precision == "int8" and not any(n.op_type == "QuantizeLinear" for n in graph.graph.node):
        raise EngineError(
            f"{onnx_path}: --precision int8 builds an explicit-precision engine from a QDQ model; this "
            "one has no QuantizeLinear nodes: run `edgefuse quantize MODEL.onnx --calib LOG… "
            "--out MODEL.int8.onnx` first"
        )
    if needs_plugins:
        from edgefuse.engine.kernels import load_trt_plugins

        load_trt_plugins(plugins)  # a missing library is a KernelLibraryError naming the file and the build
    trt = trt or _import_trt()
    gpu = gpu or _gpu_of()
    if prof.compute_capability and gpu["compute_capability"] != prof.compute_capability:
        raise EngineMismatchError(
            f"--profile {prof.name}: is for compute capability {prof.compute_capability}, this GPU "
            f"({gpu['name']}) is {gpu['compute_capability']}; pick the profile of this machine"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser failed: {errs[:500]}")
    cache_file = out.parent / prof.timing_cache if prof.timing_cache else None
    cache_bytes = cache_file.read_bytes() if cache_file and cache_file.is_file() else None
    config, flags = builder_config(trt, builder, prof, precision, cache_bytes)
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise EngineError(f"{onnx_path}: TensorRT build failed (see the log above)")
    out.write_bytes(bytes(blob))
    if cache_file is not None:
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    record = {
        "tensorrt": str(trt.__version__),
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"],
        "profile": asdict(prof),
        "flags": {**flags, "plugins": needs_plugins},
        "build_s": time.perf_counter() - t0,
        "onnx": str(onnx_path),
    }
    write_sidecar(out, manifest, record)
    report = layer_report(trt, logger, bytes(blob))
    Path(str(out) + ".report.json").write_text(json.dumps({"engine": record, "layers": report}, indent=1))
    return {"engine": str(out), **record, "layers": len(report)}


def layer_report(trt, logger, blob: bytes) -> list:
    """Per-layer name, precision and tactic from TensorRT's engine inspector."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(blob)
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    out = []
    for layer in layers:
        if isinstance(layer, dict):
            outs = layer.get("Outputs") or [{}]
            out.append(
                {
                    "name": layer.get("Name"),
                    "type": layer.get("LayerType"),
                    "precision": outs[0].get("Format/Datatype"),
                    "tactic": layer.get("TacticName", layer.get("TacticValue")),
                }
            )
        else:
            out.append({"name": str(layer)})
    return out


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
        trt = _import_trt()
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
        check_engine(self.path, self.record, trt.__version__, _gpu_of())
        if self.record["flags"].get("plugins"):
            from edgefuse.engine.kernels import load_trt_plugins

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
        from edgefuse.engine.backends import check_feed

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
