"""The numerics of ``edgefuse export --plugins``: the custom-node graph (``edgefuse::EfPillarScatter`` ×2,
``edgefuse::EfBevFusion``), run in onnxruntime with Python custom ops (onnxruntime-extensions) whose
implementations are the numpy references of the CUDA kernels (``edgefuse.runtime.kernel_refs``), gives the
standard export's outputs on the same feeds: boxes within 1e-4 absolute, labels equal.

onnxruntime-extensions' Python ops register in its own domain (``ai.onnx.contrib``) and take scalar
attributes only (int64, float, string), so the copy handed to onnxruntime moves the custom nodes to that
domain and writes ``EfBevFusion``'s one list attribute, ``heights``, as a string of the same float32
values (``repr`` round-trips them exactly). Nothing else in the graph changes.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

from edgefuse.engine.export import PLUGIN_DOMAIN, example_feed, export_onnx
from edgefuse.model.checkpoint import new_model, save_model
from edgefuse.model.config import ModelConfig
from edgefuse.runtime.kernel_refs import camera_lift_ref, gated_fusion_ref, pillar_scatter_ref
from edgefuse.runtime.manifest import read_onnx_manifest
from edgefuse.tensors import TensorSpec

ext = pytest.importorskip("onnxruntime_extensions", reason="onnxruntime-extensions (dev extra) not installed")
ort = pytest.importorskip("onnxruntime")

SPEC = TensorSpec(image_size=(32, 64), x_range=(-6.4, 6.4), y_range=(-6.4, 6.4), pillar_size=(0.4, 0.4),
                  max_pillars=300, max_points_per_pillar=4, radar_max_pillars=16,
                  radar_max_points_per_pillar=2)  # fmt: skip
CONFIG = ModelConfig(image_channels=16, lidar_channels=16, radar_channels=8, fused_channels=16,
                     backbone_channels=(16, 32), head_channels=16, top_k=20)  # fmt: skip
FUSION_INTS = ("num_modalities", "ny", "nx", "image_h", "image_w", "gate_kernel")
FUSION_FLOATS = ("origin_x", "origin_y", "cell", "min_depth", "gate_eps")
F, I32 = ext.PyCustomOpDef.dt_float, ext.PyCustomOpDef.dt_int32
LIFTED_CELLS: list[float] = []  # per EfBevFusion call: the share of BEV cells the camera lift filled


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugins")
    net, manifest = new_model(SPEC, CONFIG, seed=3)
    save_model(d / "m.pt", net.eval(), manifest)
    return export_onnx(d / "m.pt", d / "std.onnx"), export_onnx(d / "m.pt", d / "plug.onnx", plugins=True)


def _scatter(features, coords, counts, ny, nx):
    return np.stack([
        pillar_scatter_ref(features[b], coords[b], counts[b], ny, nx, channels_first=True)
        for b in range(features.shape[0])
    ])  # fmt: skip


def _fusion(*inputs, heights, num_modalities, ny, nx, image_h, image_w, gate_kernel, origin_x, origin_y, cell,
            min_depth, gate_eps):  # fmt: skip
    m = num_modalities
    cam, projection, camera_valid = inputs[:3]
    bevs, valid = inputs[3 : 3 + m - 1], inputs[2 + m]
    weights = inputs[3 + m : 3 + 3 * m]
    gate_w, gate_b = inputs[3 + 3 * m :]
    assert gate_w.shape[-1] == gate_kernel
    B, ncam = projection.shape[:2]
    z = [float(h) for h in heights.split(",")]
    out = []
    for b in range(B):
        lifted = camera_lift_ref(cam[b * ncam : (b + 1) * ncam], projection[b], camera_valid[b], (ny, nx),
                                 (origin_x, origin_y), cell, z, (image_h, image_w), min_depth)  # fmt: skip
        LIFTED_CELLS.append(float(lifted.any(axis=0).mean()))
        feats = [lifted, *(x[b] for x in bevs)]
        out.append(gated_fusion_ref(feats, valid[b], weights[0::2], weights[1::2], gate_w, gate_b, gate_eps))
    return np.stack(out)


@functools.cache
def _register(fusion_inputs: int):
    """The two Python custom ops (process-wide in onnxruntime-extensions, so once; the fusion's input count
    is the graph's, 3 + (M−1) + 1 + 2M + 2 for M modalities)."""
    ints = {"ny": ext.PyCustomOpDef.dt_int64, "nx": ext.PyCustomOpDef.dt_int64}
    ext.onnx_op(op_type="EfPillarScatter", inputs=[F, I32, I32], outputs=[F], attrs=ints)(_scatter)
    attrs = {k: ext.PyCustomOpDef.dt_int64 for k in FUSION_INTS}
    attrs |= {k: F for k in FUSION_FLOATS} | {"heights": ext.PyCustomOpDef.dt_string}
    ext.onnx_op(op_type="EfBevFusion", inputs=[F] * fusion_inputs, outputs=[F], attrs=attrs)(_fusion)


def _for_onnxruntime(model: onnx.ModelProto, change=None) -> bytes:
    """``model`` with its custom nodes in onnxruntime-extensions' domain and ``heights`` as a string;
    ``change`` (node, attribute, factor) scales one float attribute (to show the check can fail)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    domain = ext.default_opset_domain()
    for n in m.graph.node:
        if n.domain != PLUGIN_DOMAIN:
            continue
        n.domain = domain
        for a in n.attribute:
            if a.name == "heights":
                text = ",".join(repr(float(np.float32(v))) for v in a.floats)
                a.CopyFrom(onnx.helper.make_attribute("heights", text))
            if change and change[:2] == (n.op_type, a.name):
                a.f = float(np.float32(a.f * change[2]))
    for o in m.opset_import:
        if o.domain == PLUGIN_DOMAIN:
            o.domain = domain
    return m.SerializeToString()


def forward_camera(ncam: int) -> np.ndarray:
    """(1, ncam, 3, 4): a 64×32 pinhole camera 1.5 m above base_link looking along +x (so the lift
    samples the image in front of the vehicle; the random projections of ``example_feed`` mostly miss)."""
    K = np.array([[32.0, 0, 32], [0, 32, 16], [0, 0, 1]])
    R = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # base_link (x fwd, y left, z up) → camera
    t = -R @ np.array([0.0, 0, 1.5])
    return np.broadcast_to(K @ np.c_[R, t], (1, ncam, 3, 4)).astype(np.float32).copy()


def _session(model_bytes: bytes):
    so = ort.SessionOptions()
    so.register_custom_ops_library(ext.get_library_path())
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def test_plugin_graph_with_reference_kernels_matches_the_standard_export(exported):
    std, plug = exported
    model = onnx.load(str(plug))
    custom = sorted(n.op_type for n in model.graph.node if n.domain == PLUGIN_DOMAIN)
    assert custom == ["EfBevFusion", "EfPillarScatter", "EfPillarScatter"]
    fusion = next(n for n in model.graph.node if n.op_type == "EfBevFusion")
    _register(len(fusion.input))
    a = ort.InferenceSession(str(std), providers=["CPUExecutionProvider"])
    b = _session(_for_onnxruntime(model))
    manifest = read_onnx_manifest(std)
    for seed in (0, 1, 2):
        feed = example_feed(manifest, seed=seed)
        if seed > 0:
            feed["projection"] = forward_camera(feed["projection"].shape[1])
        want = dict(zip([o.name for o in a.get_outputs()], a.run(None, feed), strict=True))
        got = dict(zip([o.name for o in b.get_outputs()], b.run(None, feed), strict=True))
        assert want["boxes"].shape == got["boxes"].shape == (1, CONFIG.top_k, 9)
        np.testing.assert_array_equal(got["labels"], want["labels"])
        np.testing.assert_allclose(got["boxes"], want["boxes"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-4)
    assert max(LIFTED_CELLS[-2:]) > 0.2  # the camera lift was exercised, not only its empty case


def test_the_comparison_sees_a_wrong_plugin_attribute(exported):
    """The same check on a graph whose fusion node has gate_eps 0.3 instead of 1e-3 fails: the comparison
    depends on the plugin nodes' attributes, not only on the standard parts of the graph."""
    std, plug = exported
    model = onnx.load(str(plug))
    _register(len(next(n for n in model.graph.node if n.op_type == "EfBevFusion").input))
    a = ort.InferenceSession(str(std), providers=["CPUExecutionProvider"])
    b = _session(_for_onnxruntime(model, change=("EfBevFusion", "gate_eps", 300.0)))
    feed = example_feed(read_onnx_manifest(std), seed=0)
    want, got = a.run(["boxes"], feed)[0], b.run(["boxes"], feed)[0]
    assert np.abs(got - want).max() > 1e-3
