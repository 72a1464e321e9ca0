"""TensorRT up to the library boundary: deployment profiles, builder configuration and the build flow against
a fake ``tensorrt`` module, the engine sidecar and its refusal to load on another GPU/version, a missing
plugin library, and (marked ``tensorrt``/``gpu``, skipped here) a real engine build + run."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgefuse.engine.tensorrt import PROFILES_DIR, Profile, build_engine, builder_config, load_profile
from edgefuse.models import open_backend
from edgefuse.runtime.kernels import KernelLibraryError
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


# ---------------------------------------------------------------- a fake tensorrt module


class _Flags:
    FP16, INT8, GPU_FALLBACK, VERSION_COMPATIBLE = "FP16", "INT8", "GPU_FALLBACK", "VERSION_COMPATIBLE"


class _Config:
    def __init__(self):
        self.flags, self.pools, self.cache = set(), {}, None
        self.default_device_type = "GPU"
        self.DLA_core = -1

    def set_memory_pool_limit(self, pool, n):
        self.pools[pool] = n

    def set_flag(self, f):
        self.flags.add(f)

    def create_timing_cache(self, blob):
        return SimpleNamespace(blob=bytes(blob), serialize=lambda: b"cache:" + bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache

    def get_timing_cache(self):
        return self.cache


def fake_trt(parse_ok=True):
    built = {}

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return SimpleNamespace()

        def create_builder_config(self):
            built["config"] = _Config()
            return built["config"]

        def build_serialized_network(self, network, config):
            built["onnx"] = built.get("onnx")
            return b"ENGINE-BYTES"

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse(self, data, path):
            built["onnx"] = data[:4]
            return parse_ok

        def get_error(self, i):
            return "In node 3 (EfBevFusion): unsupported"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            layers = {"Layers": [{"Name": "conv1", "LayerType": "CaskConvolution", "TacticName": "sm87_xmma",
                                  "Outputs": [{"Format/Datatype": "Int8 NC/32HW32"}]}]}  # fmt: skip
            return SimpleNamespace(
                create_engine_inspector=lambda: SimpleNamespace(
                    get_engine_information=lambda fmt: json.dumps(layers)
                )
            )

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    trt = SimpleNamespace(
        __version__="10.3.0.30",
        Builder=Builder,
        OnnxParser=OnnxParser,
        Runtime=Runtime,
        Logger=Logger,
        BuilderFlag=_Flags,
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        DeviceType=SimpleNamespace(DLA="DLA", GPU="GPU"),
        ProfilingVerbosity=SimpleNamespace(DETAILED="DETAILED"),
        LayerInformationFormat=SimpleNamespace(JSON="JSON"),
    )
    return trt, built


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
    trt, _ = fake_trt()
    prof = Profile(
        name="t", workspace_mb=300, dla_core=dla, version_compatible=compat, timing_cache="t.cache"
    )
    config, record = builder_config(trt, trt.Builder(None), prof, precision, b"old")
    assert config.flags == flags
    assert config.pools == {"WORKSPACE": 300 * 1024 * 1024}
    assert config.cache.blob == b"old"
    assert (config.default_device_type, config.DLA_core) == (("DLA", 1) if dla is not None else ("GPU", -1))
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


def test_build_engine_writes_engine_sidecar_report_and_timing_cache(onnx_models, tmp_path):
    fp32, _ = onnx_models
    trt, built = fake_trt()
    r = build_engine(fp32, tmp_path / "m.engine", "fp16", "orin-nano", trt=trt, gpu=ORIN)
    assert (tmp_path / "m.engine").read_bytes() == b"ENGINE-BYTES"
    assert built["onnx"] == fp32.read_bytes()[:4]
    manifest, record = read_sidecar(tmp_path / "m.engine")
    assert manifest.inputs == json.loads((tmp_path / "m.engine.json").read_text())["inputs"]
    assert record["tensorrt"] == "10.3.0.30" and record["compute_capability"] == "8.7"
    assert record["flags"]["precision"] == "fp16" and record["flags"]["workspace_mb"] == 512
    report = json.loads((tmp_path / "m.engine.report.json").read_text())
    assert report["layers"] == [{"name": "conv1", "type": "CaskConvolution", "precision": "Int8 NC/32HW32",
                                 "tactic": "sm87_xmma"}]  # fmt: skip
    assert (tmp_path / "timing-orin-nano.cache").read_bytes() == b"cache:"
    # the next build starts from the saved timing cache
    build_engine(fp32, tmp_path / "m2.engine", "fp16", "orin-nano", trt=trt, gpu=ORIN)
    assert built["config"].cache.blob == b"cache:"
    assert r["engine"] == str(tmp_path / "m.engine")


def test_build_engine_refusals(onnx_models, tmp_path):
    fp32, plugins = onnx_models
    trt, _ = fake_trt()
    with pytest.raises(EngineError, match=r"m\.onnx.*int8.*no QuantizeLinear.*edgefuse quantize"):
        build_engine(fp32, tmp_path / "x.engine", "int8", "orin-nano", trt=trt, gpu=ORIN)
    with pytest.raises(EngineMismatchError, match=r"orin-agx.*8\.7.*RTX 4090.*8\.9"):
        build_engine(fp32, tmp_path / "x.engine", "fp16", "orin-agx", trt=trt,
                     gpu={"name": "RTX 4090", "compute_capability": "8.9"})  # fmt: skip
    with pytest.raises(KernelLibraryError, match=r"nope\.so.*not found"):
        build_engine(plugins, tmp_path / "x.engine", "fp16", "x86-gpu", plugins=tmp_path / "nope.so", trt=trt)
    bad_trt, _ = fake_trt(parse_ok=False)
    with pytest.raises(EngineError, match=r"m\.onnx.*parser failed.*EfBevFusion"):
        build_engine(fp32, tmp_path / "x.engine", "fp16", "x86-gpu", trt=bad_trt, gpu=ORIN)
    assert not (tmp_path / "x.engine").exists()


def _record(**kw):
    r = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7",
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
    assert back == m and rec["gpu"] == "Orin"
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
