"""ONNX export: graph contract (opset, names, fixed shapes, checker, manifest metadata), the --plugins graph
of docs/kernels.md, files that are not ours, and the runtime path importing no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgefuse.engine.export import example_feed, export_onnx
from edgefuse.model.checkpoint import load_model, new_model, save_model
from edgefuse.model.config import ModelConfig
from edgefuse.models import open_backend
from edgefuse.runtime.backends import BackendError
from edgefuse.runtime.feed import INPUT_NAMES, OUTPUT_NAMES
from edgefuse.runtime.manifest import ManifestError, read_onnx_manifest
from edgefuse.tensors import TensorSpec, input_shapes

SPEC = TensorSpec(
    image_size=(64, 112),
    x_range=(-12.8, 12.8),
    y_range=(-12.8, 12.8),
    pillar_size=(0.4, 0.4),
    max_pillars=600,
    max_points_per_pillar=8,
    radar_max_pillars=32,
    radar_max_points_per_pillar=4,
)


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    """A fresh model with non-trivial BatchNorm statistics (so BN folding is visible)."""
    net, manifest = new_model(SPEC, ModelConfig(), seed=1)
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    path = tmp_path_factory.mktemp("exp") / "m.pt"
    save_model(path, net.eval(), manifest)
    return path


@pytest.fixture(scope="module")
def onnx_path(model_pt):
    return export_onnx(model_pt, model_pt.with_suffix(".onnx"))


def _dims(vi):
    return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)


def test_export_graph_contract(onnx_path, model_pt):
    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m, full_check=True)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in m.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in m.graph.output] == list(OUTPUT_NAMES)
    shapes = input_shapes(SPEC)
    for vi in m.graph.input:  # fixed shapes from the tensor spec, batch 1
        assert _dims(vi) == (1, *shapes[vi.name][0]), vi.name
    assert _dims(m.graph.output[0]) == (1, ModelConfig().top_k, 9)
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)  # standard ops only
    manifest = read_onnx_manifest(onnx_path)
    assert manifest.tensor_spec == SPEC.to_dict() and manifest.inputs == list(INPUT_NAMES)


def test_export_outputs_match_torch_on_random_feed(onnx_path, model_pt):
    feed = example_feed(read_onnx_manifest(onnx_path), seed=5)
    a = open_backend(model_pt).infer(feed)
    b = open_backend(onnx_path).infer(feed)
    assert set(a) == set(b) == set(OUTPUT_NAMES)
    np.testing.assert_allclose(b["scores"], a["scores"], atol=1e-5)


def _const_values(m) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def test_plugin_export_emits_the_kernels_contract(model_pt, tmp_path):
    net, _ = load_model(model_pt)
    out = export_onnx(model_pt, tmp_path / "p.onnx", plugins=True)
    m = onnx.load(str(out))
    assert {(o.domain, o.version) for o in m.opset_import} >= {("edgefuse", 1)}
    custom = [n for n in m.graph.node if n.domain == "edgefuse"]
    assert sorted(n.op_type for n in custom) == ["EfBevFusion", "EfPillarScatter", "EfPillarScatter"]
    # no torch scatter / camera lift left in the graph
    assert not any(n.op_type == "ScatterElements" for n in m.graph.node)
    assert not any("/lift/" in n.name for n in m.graph.node)
    ny, nx = SPEC.grid_size
    for n in custom:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "EfPillarScatter":
            assert (attrs["ny"], attrs["nx"]) == (ny, nx)
            assert n.input[1:] in (["lidar_coords", "lidar_counts"], ["radar_coords", "radar_counts"])
            continue
        # EfBevFusion: cam, projection, camera_valid, bev_1, bev_2, valid, (W_m, b_m) × 3, gate W, gate b
        assert len(n.input) == 3 + 2 + 1 + 2 * 3 + 2
        assert n.input[1] == "projection"
        c = ModelConfig()
        assert attrs["num_modalities"] == 3 and (attrs["ny"], attrs["nx"]) == (ny // 2, nx // 2)
        assert (attrs["image_h"], attrs["image_w"]) == SPEC.image_size
        assert attrs["cell"] == pytest.approx(0.8) and attrs["origin_x"] == pytest.approx(-12.8)
        assert attrs["heights"] == pytest.approx(list(c.lift_heights_m))
        assert attrs["gate_kernel"] == 3
        vals = _const_values(m)
        # modality projections: conv 1×1 + BN folded (w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε)), computed here
        for k, seq in enumerate(net.fusion.proj):
            conv, bn = seq[0], seq[1]
            s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
            w = conv.weight.detach().numpy()[:, :, 0, 0] * s[:, None]
            b = bn.bias.detach().numpy() - bn.running_mean.numpy() * s
            np.testing.assert_allclose(vals[n.input[6 + 2 * k]], w, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(vals[n.input[7 + 2 * k]], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(vals[n.input[12]], net.fusion.gate.weight.detach().numpy())
    # onnxruntime cannot run the custom nodes: a clear error that says so
    with pytest.raises(BackendError, match=r"p\.onnx.*--plugins"):
        open_backend(out)


def test_plugin_export_refuses_models_without_gated_camera_fusion(tmp_path):
    net, manifest = new_model(SPEC, ModelConfig(fusion="concat"), seed=0)
    save_model(tmp_path / "c.pt", net.eval(), manifest)
    with pytest.raises(ManifestError, match=r"c\.pt.*gated.*without --plugins"):
        export_onnx(tmp_path / "c.pt", tmp_path / "c.onnx", plugins=True)


def test_onnx_that_is_not_ours_is_a_clear_error(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(g), str(tmp_path / "foreign.onnx"))
    with pytest.raises(ManifestError, match=r"foreign\.onnx.*not an edgefuse model.*edgefuse export"):
        open_backend(tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not protobuf at all" * 10)
    with pytest.raises(ManifestError, match=r"junk\.onnx"):
        read_onnx_manifest(tmp_path / "junk.onnx")
    with pytest.raises(BackendError, match=r"model\.bin.*suffix"):
        open_backend(tmp_path / "model.bin")
    with pytest.raises(BackendError, match=r"foreign\.onnx.*torch expects a \.pt"):
        open_backend(tmp_path / "foreign.onnx", backend="torch")


def test_runtime_path_imports_no_torch(onnx_path):
    code = (
        "import sys, numpy as np\n"
        "from edgefuse.models import open_backend\n"
        "import edgefuse.runtime.tensorrt, edgefuse.engine.tensorrt, edgefuse.engine.compare\n"
        "import edgefuse.engine.quantize\n"
        "from edgefuse.runtime.manifest import read_onnx_manifest\n"
        f"b = open_backend({str(onnx_path)!r})\n"
        "from edgefuse.tensors import TensorSpec, input_shapes\n"
        "spec = TensorSpec.from_dict(b.manifest.tensor_spec)\n"
        "shapes = input_shapes(spec)\n"
        "feed = {k: np.zeros((1, *shapes[k][0]), shapes[k][1]) for k in b.manifest.inputs}\n"
        "out = b.infer(feed)\n"
        "print(b.name, sorted(out), [m for m in sys.modules if m == 'torch' or m.startswith('torch.')][:3])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "onnxruntime ['boxes', 'labels', 'scores'] []"
