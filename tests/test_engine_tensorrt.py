"""TensorRT up to the library boundary: deployment profiles, builder configuration and the build flow against
a fake ``tensorrt`` module whose enums come from TensorRT 10.3's headers and that rejects what TensorRT
10.3 rejects (``tests/_fake_tensorrt.py``; skipped with the reason where the headers are absent), the
engine sidecar and its refusal to load on another GPU/version, plugin libraries, and (marked
``tensorrt``/``gpu``, skipped here) a real engine build + run. The backend:
``tests/test_runtime_tensorrt.py``."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import onnx
import pytest
from _fake_tensorrt import make_fake_trt, write_plugin_library

from edgefuse.engine.tensorrt import PROFILES_DIR, Profile, build_engine, builder_config, load_profile
from edgefuse.models import open_backend
from edgefuse.runtime.kernels import PLUGINS_DIR, KernelLibraryError, load_trt_plugins
from edgefuse.runtime.manifest import Manifest
from edgefuse.runtime.tensorrt import (
    EngineError,
    EngineMismatchError,
    check_engine,
    read_sidecar,
    write_sidecar,
)

ORIN = {"name": "Orin (nvgpu)", "compute_capability": "8.7"}


def test_the_four_profiles_load_with_their_targets():
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    assert names == ["orin-agx", "orin-nano", "orin-nx", "x86-gpu"]
    profiles = {n: load_profile(n) for n in names}
    for n in ("orin-agx", "orin-nano", "orin-nx"):
        assert profiles[n].compute_capability == "8.7" and profiles[n].name == n
    assert profiles["orin-nano"].dla_core is None  # Orin Nano has no DLA
    assert profiles["orin-nano"].workspace_mb < profiles["orin-agx"].workspace_mb
    assert profiles["x86-gpu"].compute_capability is None and profiles["x86-gpu"].version_compatible
    assert load_profile(PROFILES_DIR / "orin-nx.yaml") == profiles["orin-nx"]


def test_bad_profiles_name_the_file_and_field(tmp_path):
    with pytest.raises(EngineError, match=r"--profile jetson-tx2.*orin-nano"):
        load_profile("jetson-tx2")
    bad = tmp_path / "p.yaml"
    bad.write_text("workspace_mb: -5\n")
    with pytest.raises(EngineError, match=r"p\.yaml.*'workspace_mb'.*positive integer.*-5"):
        load_profile(bad)
    bad.write_text("dla: 0\n")
    with pytest.raises(EngineError, match=r"p\.yaml.*unknown fields \['dla'\]"):
        load_profile(bad)
    bad.write_text("default_precision: int4\n")
    with pytest.raises(EngineError, match=r"'default_precision'.*int4"):
        load_profile(bad)
    bad.write_text("[1, 2\n")
    with pytest.raises(EngineError, match=r"p\.yaml.*YAML"):
        load_profile(bad)


# ---------------------------------------------------------------- the build flow, against the fake


def _flag_names(trt, config) -> set[str]:
    return {f.name for f in trt.BuilderFlag if config.get_flag(f)}


@pytest.mark.parametrize(
    "precision,dla,compat,flags",
    [
        ("fp32", None, False, set()),
        ("fp16", None, False, {"FP16"}),
        ("int8", None, False, {"FP16", "INT8"}),
        ("int8", 1, True, {"FP16", "INT8", "GPU_FALLBACK", "VERSION_COMPATIBLE"}),
    ],
)
def test_builder_config_follows_profile_and_precision(precision, dla, compat, flags):
    trt = make_fake_trt()
    prof = Profile(
        name="t", workspace_mb=300, dla_core=dla, version_compatible=compat, timing_cache="t.cache"
    )
    config, record = builder_config(trt, trt.Builder(trt.Logger()), prof, precision, b"old")
    assert _flag_names(trt, config) == flags
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 300 * 1024 * 1024
    assert config.get_timing_cache().blob == b"old"
    want = ("DLA", 1) if dla is not None else ("GPU", -1)
    assert (config.default_device_type.name, config.DLA_core) == want
    assert config.profiling_verbosity.name == "DETAILED" and config.builder_optimization_level == 3
    assert config.plugins_to_serialize == []
    assert record["precision"] == precision and record["version_compatible"] == compat


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from edgefuse.engine.export import export_onnx
    from edgefuse.model.checkpoint import new_model, save_model
    from edgefuse.model.config import ModelConfig
    from edgefuse.tensors import TensorSpec

    spec = TensorSpec(image_size=(32, 64), x_range=(-6.4, 6.4), y_range=(-6.4, 6.4), pillar_size=(0.4, 0.4),
                      max_pillars=200, max_points_per_pillar=4, radar_max_pillars=16,
                      radar_max_points_per_pillar=2)  # fmt: skip
    d = tmp_path_factory.mktemp("trt")
    net, manifest = new_model(spec, ModelConfig(top_k=10), seed=0)
    save_model(d / "m.pt", net.eval(), manifest)
    return export_onnx(d / "m.pt", d / "m.onnx"), export_onnx(d / "m.pt", d / "p.onnx", plugins=True)


@pytest.fixture
def plugin_lib(tmp_path):
    """A plugin library the fake registry loads, with the creators of trt/ef_trt_plugins.cpp (read from
    the source, not from edgefuse's constant)."""
    src = (PLUGINS_DIR / "trt" / "ef_trt_plugins.cpp").read_text()
    names = sorted(set(re.findall(r'getPluginName\(\) const noexcept override \{ return "(\w+)"; \}', src)))
    version = re.search(r'kVersion = "(\w+)"', src).group(1)
    assert names == ["EfBevFusion", "EfPillarScatter"]
    return write_plugin_library(tmp_path / "libfake_plugins.so", [(n, version, "") for n in names])


def test_build_engine_writes_engine_sidecar_report_and_timing_cache(onnx_models, tmp_path):
    fp32, _ = onnx_models
    trt = make_fake_trt()
    r = build_engine(fp32, tmp_path / "m.engine", "fp16", "orin-nano", trt=trt, gpu=ORIN)
    plan = (tmp_path / "m.engine").read_bytes()
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan) is not None
    manifest, record = read_sidecar(tmp_path / "m.engine")
    assert manifest.inputs == json.loads((tmp_path / "m.engine.json").read_text())["inputs"]
    assert record["tensorrt"] == trt.__version__ and record["compute_capability"] == "8.7"
    assert record["flags"]["precision"] == "fp16" and record["flags"]["workspace_mb"] == 512
    report = json.loads((tmp_path / "m.engine.report.json").read_text())
    nodes = onnx.load(str(fp32)).graph.node
    want = [{"name": n.name, "type": n.op_type, "precision": "Half", "tactic": "fake_tactic"} for n in nodes]
    assert report["layers"] == want
    assert r["layers"] == len(nodes) > 0
    assert (tmp_path / "timing-orin-nano.cache").read_bytes() == b"cache:"
    # the equivalent trtexec command, flag for flag with the profile (orin-nano: 512 MiB, GPU only)
    assert record["trtexec"] == (
        f"trtexec --onnx={fp32} --saveEngine={tmp_path / 'm.engine'} --memPoolSize=workspace:512 "
        f"--builderOptimizationLevel={load_profile('orin-nano').builder_optimization_level} "
        f"--profilingVerbosity=detailed --fp16 --timingCacheFile={tmp_path / 'timing-orin-nano.cache'}"
    )
    # the next build starts from the saved timing cache
    build_engine(fp32, tmp_path / "m2.engine", "fp16", "orin-nano", trt=trt, gpu=ORIN)
    assert trt.last_config.get_timing_cache().blob == b"cache:"
    assert r["engine"] == str(tmp_path / "m.engine")


def test_default_x86_build_is_version_compatible_and_its_report_loads(onnx_models, tmp_path):
    """Regression: x86-gpu sets version_compatible; the layer report deserialized the plan in a runtime
    that did not allow its embedded host code, got None and crashed after writing the engine."""
    fp32, _ = onnx_models
    trt = make_fake_trt()
    r = build_engine(fp32, tmp_path / "m.engine", None, "x86-gpu", trt=trt, gpu=ORIN)
    assert "VERSION_COMPATIBLE" in _flag_names(trt, trt.last_config)
    assert r["layers"] == len(onnx.load(str(fp32)).graph.node)
    report = json.loads((tmp_path / "m.engine.report.json").read_text())
    assert {lay["precision"] for lay in report["layers"]} == {"Half"}  # x86-gpu's default: fp16


def test_version_compatible_plugin_build_serializes_the_plugin_library(onnx_models, plugin_lib, tmp_path):
    _, plugins = onnx_models
    trt = make_fake_trt()
    r = build_engine(plugins, tmp_path / "p.engine", "fp16", "x86-gpu", plugins=plugin_lib, trt=trt, gpu=ORIN)
    assert trt.last_config.plugins_to_serialize == [str(plugin_lib.resolve())]
    assert r["flags"]["plugins"] and r["flags"]["plugin_library"] == str(plugin_lib.resolve())
    lib = plugin_lib.resolve()
    assert f"--versionCompatible --staticPlugins={lib} --setPluginsToSerialize={lib}" in r["trtexec"]
    # the plan carries the library: a process that never loaded it deserializes the plan (host code allowed)
    fresh = make_fake_trt()
    rt = fresh.Runtime(fresh.Logger())
    rt.engine_host_code_allowed = True
    assert rt.deserialize_cuda_engine((tmp_path / "p.engine").read_bytes()) is not None
    # a build that is not version-compatible serializes nothing (the runtime must load the library)
    build_engine(plugins, tmp_path / "q.engine", "fp16", "orin-nano", plugins=plugin_lib, trt=trt, gpu=ORIN)
    assert trt.last_config.plugins_to_serialize == []


def test_build_engine_refusals(onnx_models, tmp_path):
    fp32, plugins = onnx_models
    trt = make_fake_trt()
    with pytest.raises(EngineError, match=r"m\.onnx.*int8.*no QuantizeLinear.*edgefuse quantize"):
        build_engine(fp32, tmp_path / "x.engine", "int8", "orin-nano", trt=trt, gpu=ORIN)
    with pytest.raises(EngineMismatchError, match=r"orin-agx.*8\.7.*RTX 4090.*8\.9"):
        build_engine(fp32, tmp_path / "x.engine", "fp16", "orin-agx", trt=trt,
                     gpu={"name": "RTX 4090", "compute_capability": "8.9"})  # fmt: skip
    with pytest.raises(KernelLibraryError, match=r"nope\.so.*not found"):
        build_engine(plugins, tmp_path / "x.engine", "fp16", "x86-gpu", plugins=tmp_path / "nope.so", trt=trt)
    with pytest.raises(EngineError, match=r"TensorRT 11\.0\.0 is not supported.*tensorrt>=10\.3,<11"):
        trt11 = make_fake_trt(version="11.0.0")
        build_engine(fp32, tmp_path / "x.engine", "fp16", "x86-gpu", trt=trt11, gpu=ORIN)
    assert not (tmp_path / "x.engine").exists()


def test_plugin_library_that_tensorrt_cannot_load_raises_with_its_path(onnx_models, plugin_lib, tmp_path):
    """IPluginRegistry::loadLibrary returns nullptr (Python: None) for a file that is no plugin library:
    that is an error naming the file, not a silent pass that fails later in the parser."""
    _, plugins = onnx_models
    trt = make_fake_trt()
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"\x7fELF not really")
    with pytest.raises(KernelLibraryError, match=r"libjunk\.so: TensorRT could not load the plugin library"):
        load_trt_plugins(junk, trt=trt)
    with pytest.raises(KernelLibraryError, match=r"libjunk\.so"):
        build_engine(plugins, tmp_path / "x.engine", "fp16", "orin-nano", plugins=junk, trt=trt, gpu=ORIN)
    other = write_plugin_library(tmp_path / "libother.so", [("SomeoneElsesPlugin", "1", "")])
    with pytest.raises(KernelLibraryError, match=r"libother\.so: loaded, but.*EfPillarScatter"):
        load_trt_plugins(other, trt=trt)
    assert load_trt_plugins(plugin_lib, trt=trt) is trt.get_plugin_registry()
    assert load_trt_plugins(plugin_lib, trt=trt) is trt.get_plugin_registry()  # twice in one process: fine


# ---------------------------------------------------------------- the fake rejects what TensorRT 10.3 rejects


def _conv_with_dequantized_bias(bias_dtype, manifest_of=None):
    """x (1,2,4,4) → Conv(W int8-dequantized, bias dequantized from ``bias_dtype``): onnxruntime's
    quantizer writes INT32 biases like this by default (QuantizeBias on)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q")
    b = numpy_helper.from_array(np.arange(3).astype(bias_dtype), "b_q")
    scale = numpy_helper.from_array(np.float32(0.1), "s")
    zero = numpy_helper.from_array(np.int8(0), "zp")  # int8 activations (symmetric)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["x_q"], name="x_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["x_q", "s", "zp"], ["x_d"], name="x_DequantizeLinear"),
        helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], name="w_DequantizeLinear"),
        helper.make_node("DequantizeLinear", ["b_q", "s"], ["b"], name="b_DequantizeLinear"),
        helper.make_node("Conv", ["x_d", "w", "b"], ["y"], name="conv"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [w, b, scale, zero])  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    if manifest_of is not None:
        m.metadata_props.extend(onnx.load(str(manifest_of)).metadata_props)
    return m


def test_fake_parser_rejects_a_non_int8_dequantize_input_like_onnx_tensorrt(onnx_models, tmp_path):
    trt = make_fake_trt()
    logger = trt.Logger()
    net = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(net, logger)
    assert not parser.parse(_conv_with_dequantized_bias(np.int32).SerializeToString())
    assert parser.num_errors == 1
    err = str(parser.get_error(0))
    assert "b_DequantizeLinear: only activation types allowed as input to this layer" in err
    ok = trt.OnnxParser(trt.Builder(logger).create_network(0), logger)
    assert ok.parse(_conv_with_dequantized_bias(np.int8).SerializeToString()) and ok.num_errors == 0
    # through build-engine: an INT8 build of such a graph fails with the parser's words and writes nothing
    fp32, _ = onnx_models
    bad = tmp_path / "int32bias.onnx"
    onnx.save(_conv_with_dequantized_bias(np.int32, manifest_of=fp32), str(bad))
    with pytest.raises(EngineError, match=r"int32bias\.onnx: TensorRT's ONNX parser failed.*b_Dequantize"):
        build_engine(bad, tmp_path / "x.engine", "int8", "orin-nano", trt=trt, gpu=ORIN)
    assert not (tmp_path / "x.engine").exists()


def test_fake_runtime_refuses_a_version_compatible_plan_without_host_code_allowed(onnx_models):
    fp32, _ = onnx_models
    trt = make_fake_trt()
    logger = trt.Logger()
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    assert trt.OnnxParser(net, logger).parse(fp32.read_bytes())
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    plan = builder.build_serialized_network(net, config)
    runtime = trt.Runtime(logger)
    assert runtime.engine_host_code_allowed is False  # TensorRT's default
    assert runtime.deserialize_cuda_engine(plan) is None
    assert "setEngineHostCodeAllowed" in trt.log[-1][1]
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(plan) is not None
    # … and a later 10.x loads it, TensorRT 11 does not
    later = make_fake_trt(version="10.7.0.23")
    rt = later.Runtime(later.Logger())
    rt.engine_host_code_allowed = True
    assert rt.deserialize_cuda_engine(plan) is not None


def test_fake_runtime_needs_the_plugin_library_for_a_plan_with_plugins(onnx_models, plugin_lib):
    _, plugins = onnx_models
    trt = make_fake_trt()
    logger = trt.Logger()
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    parser = trt.OnnxParser(net, logger)
    assert not parser.parse(plugins.read_bytes())  # no creators registered yet
    assert "Plugin not found" in str(parser.get_error(0)) and "EfPillarScatter" in str(parser.get_error(0))
    assert trt.get_plugin_registry().load_library(str(plugin_lib)) is not None
    net = builder.create_network(0)
    assert trt.OnnxParser(net, logger).parse(plugins.read_bytes())
    plan = builder.build_serialized_network(net, builder.create_builder_config())
    fresh = make_fake_trt()  # another process: the library is not loaded
    assert fresh.Runtime(fresh.Logger()).deserialize_cuda_engine(plan) is None
    assert "IPluginCreator" in fresh.log[-1][1]
    assert fresh.get_plugin_registry().load_library(str(plugin_lib)) is not None
    assert fresh.Runtime(fresh.Logger()).deserialize_cuda_engine(plan) is not None
    assert fresh.get_plugin_registry().load_library(str(plugin_lib)) is None  # registered already
    # version-compatible with plugins, library not serialized: TensorRT refuses to build
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    assert builder.build_serialized_network(net, config) is None
    config.plugins_to_serialize = [str(plugin_lib)]
    assert builder.build_serialized_network(net, config) is not None


def test_fake_builder_flags_are_tensorrt_10_3s():
    trt = make_fake_trt()
    assert {"FP16", "INT8", "GPU_FALLBACK", "VERSION_COMPATIBLE"} <= {f.name for f in trt.BuilderFlag}
    for gone in ("STRICT_TYPES", "ENABLE_TACTIC_HEURISTIC"):  # removed before 10.x
        assert not hasattr(trt.BuilderFlag, gone)
    assert not hasattr(trt.MemoryPoolType, "WORKSPACE_SIZE")
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(TypeError):
        config.set_flag("FP16")  # the bindings take the enum, not its name
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 30  # removed in 10.0


def _record(**kw):
    r = {"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "compute_capability": "8.7",
         "flags": {"version_compatible": False},
         "onnx": "m.onnx"}  # fmt: skip
    r.update(kw)
    return r


def test_engine_refuses_another_gpu_or_tensorrt_version():
    with pytest.raises(
        EngineMismatchError, match=r"e\.engine.*Orin.*8\.7.*RTX 4090.*8\.9.*build-engine m\.onnx"
    ):
        check_engine("e.engine", _record(), "10.3.0", {"name": "RTX 4090", "compute_capability": "8.9"})
    with pytest.raises(
        EngineMismatchError, match=r"e\.engine.*TensorRT 10\.3\.0.*TensorRT 10\.7\.0.*version_compatible"
    ):
        check_engine("e.engine", _record(), "10.7.0", ORIN)
    check_engine("e.engine", _record(), "10.3.0", ORIN)  # same → fine
    compat = _record(flags={"version_compatible": True})
    check_engine("e.engine", compat, "10.7.0", ORIN)  # version-compatible: a later 10.x loads it
    with pytest.raises(EngineMismatchError, match="version-compatible"):
        check_engine("e.engine", compat, "10.1.0", ORIN)  # … an older one does not
    with pytest.raises(EngineMismatchError):
        check_engine("e.engine", compat, "11.0.0", ORIN)  # nor another major
    # the same compute capability on another GPU model: its tactics were timed on the first one
    rtx = _record(gpu="NVIDIA RTX 4090", compute_capability="8.9")
    with pytest.raises(EngineMismatchError, match=r"built on NVIDIA RTX 4090, this GPU is NVIDIA L40S.*8\.9"):
        check_engine("e.engine", rtx, "10.3.0", {"name": "NVIDIA L40S", "compute_capability": "8.9"})
    hw = _record(gpu="NVIDIA RTX 4090", compute_capability="8.9", flags={"hardware_compatible": True})
    check_engine("e.engine", hw, "10.3.0", {"name": "NVIDIA L40S", "compute_capability": "8.9"})


def test_sidecar_errors_and_backend_without_tensorrt(tmp_path):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"x")
    with pytest.raises(EngineError, match=r"m\.engine.*no sidecar m\.engine\.json.*build-engine"):
        open_backend(eng)
    m = Manifest({"a": 1}, {}, {}, ["car"], ["images"], ["boxes"])
    write_sidecar(eng, m, {"tensorrt": "10.3"})
    with pytest.raises(EngineError, match=r"m\.engine\.json.*'engine'.*compute_capability"):
        read_sidecar(eng)
    write_sidecar(eng, m, _record())
    back, rec = read_sidecar(eng)
    assert back == m and rec["gpu"] == "Orin (nvgpu)"
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(EngineError, match="TensorRT is not installed"):
            open_backend(eng)


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed (needs an NVIDIA GPU machine)")
def test_real_engine_matches_onnxruntime(onnx_models, tmp_path):
    from edgefuse.engine.export import example_feed
    from edgefuse.runtime.manifest import read_onnx_manifest

    fp32, _ = onnx_models
    r = build_engine(fp32, tmp_path / "m.engine", "fp32", "x86-gpu")
    assert r["layers"] > 0
    feed = example_feed(read_onnx_manifest(fp32), seed=1)
    a = open_backend(fp32).infer(feed)
    be = open_backend(tmp_path / "m.engine")
    b = be.infer(feed)
    be.close()
    np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-3)
