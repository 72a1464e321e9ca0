"""TensorRT engine builds (workstation side): from ONNX with a deployment profile, with its JSON sidecar.

- :func:`load_profile` — a profile shipped in the package (``edgefuse/deploy/profiles/<name>.yaml``, package
  data: the same path in a source checkout and an installed wheel) or a YAML path → :class:`Profile`.
- :func:`build_engine` — TensorRT Python API builder: explicit batch, FP32/FP16/INT8 (INT8 = an
  explicit-precision build of a QDQ ONNX), workspace limit, timing cache, DLA with GPU fallback,
  version-compatible engines when the profile asks, the plugin library for ``export --plugins`` graphs;
  writes ``X.engine``, ``X.engine.json`` (the model manifest + an ``engine`` record: TensorRT version,
  GPU name and compute capability, build flags; :func:`edgefuse.runtime.tensorrt.write_sidecar`) and
  ``X.engine.report.json`` (per-layer precision and tactic from the engine inspector). ``trt`` is
  injectable (tests pass a fake module).

Loading and running an engine (sidecar checks, the backend) is robot side: :mod:`edgefuse.runtime.tensorrt`.
tensorrt is imported inside the functions that need it, never at module load.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgefuse.runtime.tensorrt import (
    EngineError,
    EngineMismatchError,
    check_trt_version,
    gpu_of,
    import_trt,
    write_sidecar,
)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "deploy" / "profiles"  # package data (pyproject.toml)
PRECISIONS = ("fp32", "fp16", "int8")


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
    """A profile by name (:data:`PROFILES_DIR` ``/<name>.yaml``) or YAML path."""
    import yaml

    p = Path(name_or_path)
    if not p.suffix:
        p = PROFILES_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        have = sorted(q.stem for q in PROFILES_DIR.glob("*.yaml"))
        if not have and not Path(name_or_path).suffix:
            raise EngineError(
                f"--profile {name_or_path}: no profiles in {PROFILES_DIR}: this edgefuse install lacks its "
                "package data; reinstall it (pip install .) or pass a profile YAML path"
            )
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


def builder_config(trt, builder, profile: Profile, precision: str, cache_bytes: bytes | None,
                   plugin_library: Path | None = None):  # fmt: skip
    """A TensorRT ``IBuilderConfig`` for ``profile`` and ``precision``; returns (config, flags record).
    ``plugin_library``: the plugin library a graph with plugin nodes needs; a version-compatible engine
    carries it in the plan (``IBuilderConfig::setPluginsToSerialize``; in Python the property
    ``plugins_to_serialize``), as TensorRT requires for plugins in version-compatible engines."""
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
        if plugin_library is not None:
            config.plugins_to_serialize = [str(plugin_library)]  # the binding of setPluginsToSerialize
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if profile.timing_cache is not None:
        cache = config.create_timing_cache(cache_bytes or b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    flags["version_compatible"] = profile.version_compatible
    flags["builder_optimization_level"] = profile.builder_optimization_level
    return config, flags


def trtexec_command(onnx_path: Path, out: Path, prof: Profile, precision: str,
                    plugin_library: Path | None = None, cache_file: Path | None = None) -> str:  # fmt: skip
    """The ``trtexec`` (TensorRT 10) command that builds the same engine as :func:`builder_config`: for
    comparing with NVIDIA's tool, or building where edgefuse is not installed. Workspace in MiB."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={out}",
           f"--memPoolSize=workspace:{prof.workspace_mb}",
           f"--builderOptimizationLevel={prof.builder_optimization_level}", "--profilingVerbosity=detailed"]
    cmd += {"fp32": [], "fp16": ["--fp16"], "int8": ["--fp16", "--int8"]}[precision]
    if prof.dla_core is not None:
        cmd += [f"--useDLACore={prof.dla_core}", "--allowGPUFallback"]
    if prof.version_compatible:
        cmd.append("--versionCompatible")
    if plugin_library is not None:
        cmd.append(f"--staticPlugins={plugin_library}")
        if prof.version_compatible:
            cmd.append(f"--setPluginsToSerialize={plugin_library}")
    if cache_file is not None:
        cmd.append(f"--timingCacheFile={cache_file}")
    return " ".join(cmd)  # fmt: skip


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
    from edgefuse.engine.export import PLUGIN_DOMAIN
    from edgefuse.runtime.manifest import read_onnx_manifest

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
    if trt is None:
        trt = import_trt()
    else:
        check_trt_version(trt)
    plugin_library = None
    if needs_plugins:
        from edgefuse.runtime.kernels import load_trt_plugins, trt_plugins_path

        plugin_library = trt_plugins_path(plugins).resolve()
        load_trt_plugins(plugin_library, trt=trt)  # a KernelLibraryError naming the file and the build
    gpu = gpu or gpu_of()
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
    config, flags = builder_config(trt, builder, prof, precision, cache_bytes, plugin_library)
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
        "flags": {**flags, "plugins": needs_plugins,
                  "plugin_library": str(plugin_library) if plugin_library else None},  # fmt: skip
        "build_s": time.perf_counter() - t0,
        "onnx": str(onnx_path),
        "trtexec": trtexec_command(onnx_path, out, prof, precision, plugin_library, cache_file),
    }
    write_sidecar(out, manifest, record)
    report = layer_report(trt, logger, bytes(blob), prof.version_compatible, out)
    Path(str(out) + ".report.json").write_text(json.dumps({"engine": record, "layers": report}, indent=1))
    return {"engine": str(out), **record, "layers": len(report)}


def layer_report(trt, logger, blob: bytes, version_compatible: bool = False, where: Path | str = "engine"):
    """Per-layer name, precision and tactic from TensorRT's engine inspector. A version-compatible plan
    embeds the lean runtime (host code): the runtime must allow it to deserialize the plan (we just built
    it, so it is trusted)."""
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise EngineError(f"{where}: written, but TensorRT could not deserialize it for the layer report")
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


