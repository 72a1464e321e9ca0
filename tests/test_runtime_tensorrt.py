"""The TensorRT backend (edgefuse.runtime.tensorrt) against the header-derived fake ``tensorrt`` and a host
memory stand-in for cuda-python: which inputs reach the engine, version-compatible plans, plugin plans, and
TensorRT versions outside ``>=10.3,<11``."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from _fake_tensorrt import FakeCudart, make_fake_trt, make_plan, write_plugin_library

from edgefuse.runtime.kernels import KernelLibraryError
from edgefuse.runtime.manifest import Manifest
from edgefuse.runtime.tensorrt import EngineError, TensorRTBackend, import_trt, write_sidecar

ORIN = {"name": "Orin (nvgpu)", "compute_capability": "8.7"}
INPUTS = ["images", "lidar_coords", "camera_valid", "stamp_ns"]
OUTPUTS = ["boxes", "scores"]


def _tensor(name, is_input, shape, dtype):
    return {"name": name, "input": is_input, "shape": list(shape), "dtype": dtype}


def _engine(tmp_path, trt, io, compat=False, plugins=(), libraries=None, name="e.engine"):
    """An engine file in the fake's plan format with ``io``, and its sidecar (manifest inputs INPUTS)."""
    path = tmp_path / name
    path.write_bytes(make_plan(io, trt.__version__, compat, plugins, libraries))
    m = Manifest({}, {}, {}, ["car"], list(INPUTS), list(OUTPUTS))
    rec = {"tensorrt": trt.__version__, "gpu": ORIN["name"], "compute_capability": "8.7", "onnx": "m.onnx",
           "flags": {"version_compatible": compat, "plugins": bool(plugins)}}  # fmt: skip
    write_sidecar(path, m, rec)
    return path


def _feed(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.normal(size=(1, 3, 4, 4)).astype(np.float32),
        "lidar_coords": rng.integers(0, 9, (1, 5, 2)).astype(np.int32),
        "camera_valid": np.array([[1]], np.uint8),
        "stamp_ns": np.array([[123456789]], np.int64),
    }


# the engine's inputs: two of the manifest's four, in another order (TensorRT keeps only what it uses)
ENGINE_IO = [
    _tensor("lidar_coords", True, (1, 5, 2), "INT32"),
    _tensor("images", True, (1, 3, 4, 4), "FLOAT"),
    _tensor("scores", False, (1, 6), "FLOAT"),
    _tensor("boxes", False, (1, 6, 9), "FLOAT"),
]


def test_backend_feeds_the_engines_own_inputs_by_name(tmp_path):
    trt, cudart = make_fake_trt(), FakeCudart()
    be = TensorRTBackend(_engine(tmp_path, trt, ENGINE_IO), trt=trt, cudart=cudart, gpu=ORIN)
    assert be.inputs == ["lidar_coords", "images"] and be.outputs == OUTPUTS
    feed = _feed()
    out = be.infer(feed)
    # the fake engine writes the sum of everything it was given into every output
    want = float(feed["images"].astype(np.float64).sum() + feed["lidar_coords"].sum())
    assert set(out) == {"boxes", "scores"} and out["boxes"].shape == (1, 6, 9)
    np.testing.assert_allclose(out["boxes"], want, rtol=1e-6)
    np.testing.assert_allclose(out["scores"], want, rtol=1e-6)
    assert be.last_gpu_ms == 0.25
    be.close()
    assert len(cudart.freed) == 2 * len(ENGINE_IO) + 3  # host + device per tensor, 2 events, the stream


def test_backend_refuses_an_engine_that_does_not_match_its_manifest(tmp_path):
    trt = make_fake_trt()
    extra = [*ENGINE_IO, _tensor("radar_pillars", True, (1, 2, 2, 5), "FLOAT")]
    with pytest.raises(EngineError, match=r"e\.engine: engine inputs \['radar_pillars'\] are not in its"):
        TensorRTBackend(_engine(tmp_path, trt, extra), trt=trt, cudart=FakeCudart(), gpu=ORIN)
    no_scores = [t for t in ENGINE_IO if t["name"] != "scores"]
    with pytest.raises(EngineError, match=r"e\.engine: engine has no outputs \['scores'\]"):
        TensorRTBackend(_engine(tmp_path, trt, no_scores), trt=trt, cudart=FakeCudart(), gpu=ORIN)
    dynamic = [_tensor("images", True, (-1, 3, 4, 4), "FLOAT"), *ENGINE_IO[2:]]
    with pytest.raises(EngineError, match=r"tensor 'images': expected a fixed shape"):
        TensorRTBackend(_engine(tmp_path, trt, dynamic), trt=trt, cudart=FakeCudart(), gpu=ORIN)
    be = TensorRTBackend(_engine(tmp_path, trt, ENGINE_IO), trt=trt, cudart=FakeCudart(), gpu=ORIN)
    bad = {**_feed(), "images": np.zeros((1, 3, 4, 5), np.float32)}
    with pytest.raises(EngineError, match=r"input 'images': expected shape \(1, 3, 4, 4\), got \(1, 3, 4, 5"):
        be.infer(bad)


def test_backend_loads_a_version_compatible_plan_only_when_trusted(tmp_path):
    trt = make_fake_trt()
    path = _engine(tmp_path, trt, ENGINE_IO, compat=True)
    with pytest.raises(EngineError, match=r"e\.engine: a version-compatible plan.*--trust-engine"):
        TensorRTBackend(path, trt=trt, cudart=FakeCudart(), gpu=ORIN)  # not trusted by default
    be = TensorRTBackend(path, allow_host_code=True, trt=trt, cudart=FakeCudart(), gpu=ORIN)
    assert be.runtime.engine_host_code_allowed is True
    later = make_fake_trt(version="10.7.0.23")  # a later 10.x runs it (sidecar check and runtime agree)
    assert TensorRTBackend(path, allow_host_code=True, trt=later, cudart=FakeCudart(), gpu=ORIN).engine


def test_backend_loads_the_plugin_library_of_a_plugin_plan(tmp_path):
    creators = [("EfPillarScatter", "1", ""), ("EfBevFusion", "1", "")]
    lib = write_plugin_library(tmp_path / "libp.so", creators)
    trt = make_fake_trt()
    path = _engine(tmp_path, trt, ENGINE_IO, plugins=creators)
    with pytest.raises(KernelLibraryError, match=r"nope\.so.*not found"):
        TensorRTBackend(path, plugins=tmp_path / "nope.so", trt=trt, cudart=FakeCudart(), gpu=ORIN)
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"\x7fELF")
    with pytest.raises(KernelLibraryError, match=r"junk\.so: TensorRT could not load"):
        TensorRTBackend(path, plugins=junk, trt=trt, cudart=FakeCudart(), gpu=ORIN)
    be = TensorRTBackend(path, plugins=lib, trt=trt, cudart=FakeCudart(), gpu=ORIN)
    assert be.infer(_feed())["scores"].shape == (1, 6)


@pytest.mark.parametrize("version", ["11.0.0", "10.2.0.19"])
def test_tensorrt_outside_10_3_to_11_is_refused_naming_the_version(tmp_path, monkeypatch, version):
    fake = make_fake_trt(version=version)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(EngineError, match=rf"TensorRT {re.escape(version)} is not supported.*>=10\.3,<11"):
        import_trt()
    ok = make_fake_trt()
    path = _engine(tmp_path, ok, ENGINE_IO)
    with pytest.raises(EngineError, match=rf"TensorRT {re.escape(version)} is not supported"):
        TensorRTBackend(path, trt=fake, cudart=FakeCudart(), gpu=ORIN)
    monkeypatch.setitem(sys.modules, "tensorrt", ok)
    assert import_trt() is ok  # 10.3 itself is fine


def test_an_engine_built_for_a_dla_core_runs_there_or_is_refused(tmp_path):
    """The profile's DLA core (orin-nx/agx) is set on the runtime before deserializing; a device without
    that core (Orin Nano has none) is refused, naming the core."""
    import json

    trt = make_fake_trt()
    path = _engine(tmp_path, trt, ENGINE_IO)
    side = json.loads((tmp_path / "e.engine.json").read_text())
    side["engine"]["flags"]["dla_core"] = 1
    (tmp_path / "e.engine.json").write_text(json.dumps(side))
    trt.Runtime.dla_cores = 0  # Orin Nano
    with pytest.raises(EngineError, match=r"e\.engine: built to run on DLA core 1; this device has 0 DLA"):
        TensorRTBackend(path, trt=trt, cudart=FakeCudart(), gpu=ORIN)
    trt.Runtime.dla_cores = 2  # Orin NX / AGX
    be = TensorRTBackend(path, trt=trt, cudart=FakeCudart(), gpu=ORIN)
    assert be.runtime.DLA_core == 1
