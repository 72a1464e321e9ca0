"""The CUDA kernels on a GPU against their numpy references (marked gpu: skipped with a reason where there
is no CUDA GPU, torch with CUDA or nvcc), and deploy/gpu_check.py's plumbing up to the GPU boundary (runs
everywhere torch is installed, with the numpy references standing in for the kernels)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from edgefuse.runtime import kernel_refs as R
from edgefuse.runtime import kernels as K

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "deploy" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_gpu_reason() -> str | None:
    if not HAS_TORCH:
        return "torch is not installed (the GPU tests allocate device memory with torch)"
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__}"
    if os.environ.get(K.ENV_LIBRARY) is None and K.find_nvcc() is None:
        return f"no nvcc to build the kernels and {K.ENV_LIBRARY} is not set"
    return None


NO_GPU = _no_gpu_reason()


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    lib_env = os.environ.get(K.ENV_LIBRARY)
    path = Path(lib_env) if lib_env else K.build_library(tmp_path_factory.mktemp("kernels"), "native", jobs=4)
    return _gpu_check_module(), K.load_kernels(path)


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=str(NO_GPU))
@pytest.mark.parametrize("check", ["check_voxelize", "check_scatter", "check_lift", "check_fusion"])
def test_kernel_matches_numpy_reference_on_gpu(gpu, check):
    import numpy as np

    gc, lib = gpu
    res = getattr(gc, check)(gc.Device(False), lib, gc.sizes(quick=True), np.random.default_rng(1), 2)
    assert res["ok"], json.dumps(res, indent=1, default=str)


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU is not None, reason=str(NO_GPU))
def test_voxelize_kernel_edge_cases_on_gpu(gpu):
    """Empty cloud, everything dropped, one pillar overflowing, max_pillars larger than the grid."""
    import numpy as np
    import torch

    _, lib = gpu
    lo, hi, size = (-2.0, -2.0, -1.0), (2.0, 2.0, 1.0), (1.0, 1.0)
    clouds = [
        np.zeros((0, 4), np.float32),
        np.full((5, 4), np.nan, np.float32),
        np.tile(np.array([[0.5, 0.5, 0.0, 1.0]], np.float32), (40, 1))
        * np.linspace(1, 1.5, 40)[:, None].astype(np.float32),
        np.random.default_rng(2).uniform(-2.5, 2.5, (300, 4)).astype(np.float32),
    ]
    for P, N in ((3, 4), (40, 2)):
        params = K.voxelize_params(lo, hi, size, P, N, 4)
        ws_size = lib.voxelize_workspace_size(params, 300)
        ws = torch.empty(ws_size, dtype=torch.uint8, device="cuda")
        outs = [
            torch.full(s, 9, dtype=d, device="cuda")
            for s, d in (
                ((P, N, 4), torch.float32),
                ((P, 2), torch.int32),
                ((P,), torch.int32),
                ((1,), torch.int32),
            )
        ]
        for pts in clouds:
            d_pts = torch.from_numpy(pts).cuda() if len(pts) else None
            lib.voxelize(params, d_pts, len(pts), *outs, ws, ws_size, torch.cuda.current_stream().cuda_stream)
            torch.cuda.synchronize()
            got = [o.cpu().numpy() for o in outs]
            ref = R.pillar_voxelize_ref(pts, lo, hi, size, P, N)
            for g, r in zip(got[:3], ref[:3], strict=True):
                np.testing.assert_array_equal(g, r)
            assert int(got[3][0]) == ref[3]
        # a cloud larger than the workspace was sized for
        with pytest.raises(K.KernelError, match="status 3"):
            lib.voxelize(params, torch.zeros((5000, 4), device="cuda"), 5000, *outs, ws, ws_size, 0)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed: gpu_check needs it")
def test_gpu_check_cpu_fallback_writes_the_report(tmp_path):
    gc = _gpu_check_module()
    rc = gc.main(["--cpu-fallback", "--quick", "--iters", "1", "--out-dir", str(tmp_path)])
    report = json.loads((tmp_path / "gpu-report.json").read_text())
    assert rc == 0 and report["ok"]
    assert [r["kernel"] for r in report["kernels"]] == [
        "ef_pillar_voxelize",
        "ef_pillar_scatter",
        "ef_camera_lift",
        "ef_gated_fusion",
    ]
    md = (tmp_path / "gpu-report.md").read_text()
    assert "CPU fallback" in md and md.count("| PASS |") == 4


HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_missing_trt_plugin_library_error_names_the_file_and_the_fix(tmp_path):
    missing = tmp_path / K.TRT_PLUGINS_NAME
    with pytest.raises(K.KernelLibraryError) as e:
        K.load_trt_plugins(missing)
    assert str(missing) in str(e.value) and "-DTENSORRT_ROOT=" in str(e.value)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT (the tensorrt Python package) is not installed")
@pytest.mark.skipif(NO_GPU is not None, reason=str(NO_GPU))
def test_trt_scatter_plugin_matches_reference(tmp_path):
    import numpy as np
    import tensorrt as trt
    import torch

    path = K.trt_plugins_path()
    if not path.is_file():
        K.build_library(tmp_path, "native", jobs=4)
        path = tmp_path / K.TRT_PLUGINS_NAME
        if not path.is_file():
            pytest.skip(
                "CMake found no TensorRT headers (set TENSORRT_ROOT), so the plugin library was not built"
            )
    registry = K.load_trt_plugins(path)
    for name in K.TRT_PLUGIN_NAMES:
        assert registry.get_creator(name, "1", "") is not None, name
    B, C, P, ny, nx = 2, 3, 40, 6, 7
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(B, C, P)).astype(np.float32)
    coords = np.c_[rng.integers(0, ny, B * P), rng.integers(0, nx, B * P)].astype(np.int32).reshape(B, P, 2)
    counts = rng.integers(0, 3, (B, P)).astype(np.int32)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    ins = [
        net.add_input("features", trt.float32, feats.shape),
        net.add_input("coords", trt.int32, coords.shape),
        net.add_input("counts", trt.int32, counts.shape),
    ]
    fc = trt.PluginFieldCollection(
        [
            trt.PluginField("ny", np.array([ny], np.int32), trt.PluginFieldType.INT32),
            trt.PluginField("nx", np.array([nx], np.int32), trt.PluginFieldType.INT32),
        ]
    )
    plugin = registry.get_creator("EfPillarScatter", "1", "").create_plugin(
        "scatter", fc, trt.TensorRTPhase.BUILD
    )
    layer = net.add_plugin_v3(ins, [], plugin)
    layer.get_output(0).name = "bev"
    net.mark_output(layer.get_output(0))
    blob = builder.build_serialized_network(net, builder.create_builder_config())
    assert blob is not None
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    ctx = engine.create_execution_context()
    dev = {
        n: torch.from_numpy(a).cuda()
        for n, a in (("features", feats), ("coords", coords), ("counts", counts))
    }
    dev["bev"] = torch.full((B, C, ny, nx), 9.0, device="cuda")
    for n, t in dev.items():
        ctx.set_tensor_address(n, t.data_ptr())
    stream = torch.cuda.current_stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    got = dev["bev"].cpu().numpy()
    for b in range(B):
        want = R.pillar_scatter_ref(feats[b], coords[b], counts[b], ny, nx, channels_first=True)
        np.testing.assert_array_equal(got[b], want)
