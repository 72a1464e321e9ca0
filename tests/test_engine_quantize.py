"""INT8 QDQ quantization: symmetric int8 activations, per-channel int8 weights, pillar nets / camera lift /
decode kept float, the three calibration methods, the sensitivity sweep, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgefuse.engine.export import example_feed, export_onnx
from edgefuse.engine.quantize import QUANTIZED_SCOPES, QuantizeError, head_outputs, quantize_int8
from edgefuse.model.checkpoint import new_model, save_model
from edgefuse.model.config import ModelConfig
from edgefuse.runtime.manifest import ManifestError, read_onnx_manifest
from edgefuse.tensors import TensorSpec

SPEC = TensorSpec(
    image_size=(32, 64),
    x_range=(-6.4, 6.4),
    y_range=(-6.4, 6.4),
    pillar_size=(0.4, 0.4),
    max_pillars=300,
    max_points_per_pillar=4,
    radar_max_pillars=16,
    radar_max_points_per_pillar=2,
)
CONFIG = ModelConfig(image_channels=16, lidar_channels=16, radar_channels=8, fused_channels=16,
                     backbone_channels=(16, 32), head_channels=16, top_k=20)  # fmt: skip


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    net, manifest = new_model(SPEC, CONFIG, seed=2)
    save_model(d / "m.pt", net.eval(), manifest)
    return export_onnx(d / "m.pt", d / "m.onnx")


@pytest.fixture(scope="module")
def feeds(fp32):
    m = read_onnx_manifest(fp32)
    return [example_feed(m, s) for s in range(4)]


def _init(m):
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _producers(m):
    return {o: n for n in m.graph.node for o in n.output}


def test_qdq_is_symmetric_int8_per_channel_and_keeps_float_parts(fp32, feeds, tmp_path):
    report = quantize_int8(fp32, tmp_path / "q.onnx", feeds)
    q = onnx.load(str(tmp_path / "q.onnx"))
    onnx.checker.check_model(q)
    assert read_onnx_manifest(tmp_path / "q.onnx") == read_onnx_manifest(fp32)  # manifest carried over
    init, prod = _init(q), _producers(q)
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and report["quantized_nodes"] > 0
    for n in qs:  # activations: int8 with zero point 0 (symmetric)
        zp = init[n.input[2]]
        assert zp.dtype == np.int8 and np.all(zp == 0), n.name
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    quantized_convs = 0
    for c in convs:
        w_src = prod.get(c.input[1])
        in_scope = any(s in c.name for s in QUANTIZED_SCOPES)
        if not in_scope:
            continue
        assert w_src is not None and w_src.op_type == "DequantizeLinear", c.name
        w_q, scale = init[w_src.input[0]], init[w_src.input[1]]
        assert w_q.dtype == np.int8 and np.all(init[w_src.input[2]] == 0)
        assert scale.shape == (w_q.shape[0],)  # one scale per output channel
        axis = [a.i for a in w_src.attribute if a.name == "axis"]
        assert axis in ([], [0])
        assert np.abs(w_q).max() <= 127  # symmetric range, -128 unused
        quantized_convs += 1
    assert quantized_convs >= 10
    # pillar nets, camera lift, fusion, heads and decode stay float: their weights are float and every
    # dequantized tensor they read is the output of a quantized node (the boundary)
    assert QUANTIZED_SCOPES == ("/image_encoder/", "/backbone/")
    floats = ("/lidar_encoder/", "/radar_encoder/", "/lift/", "/fusion/", "/head/", "/decode/")
    quantized = QUANTIZED_SCOPES
    n_float = 0
    for n in q.graph.node:
        if not any(s in n.name for s in floats):
            continue
        n_float += 1
        for i in n.input:
            dq = prod.get(i)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            assert dq.input[0] not in init, (n.name, "reads a quantized weight")
            src = prod[prod[dq.input[0]].input[0]]  # DQ ← Q ← the producer of the float tensor
            assert any(s in src.name for s in quantized), (n.name, src.name)
    assert n_float > 20
    # the INT8 model stays close to FP32 on the head tensors (relative RMS)
    ref = np.concatenate(head_outputs(fp32, feeds))
    got = np.concatenate(head_outputs(tmp_path / "q.onnx", feeds))
    assert np.sqrt(np.mean((got - ref) ** 2)) < 0.1 * np.sqrt(np.mean(ref**2))


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_give_other_ranges(fp32, feeds, tmp_path, method):
    quantize_int8(fp32, tmp_path / "mm.onnx", feeds, method="minmax")
    quantize_int8(fp32, tmp_path / "o.onnx", feeds, method=method)
    a, b = onnx.load(str(tmp_path / "mm.onnx")), onnx.load(str(tmp_path / "o.onnx"))
    ia, ib = _init(a), _init(b)

    def act_scales(m, init):
        return {n.input[0]: float(init[n.input[1]]) for n in m.graph.node if n.op_type == "QuantizeLinear"}

    sa, sb = act_scales(a, ia), act_scales(b, ib)
    # ReLU outputs (their ranges are the calibrated ones; a Conv feeding a ReLU gets a range adjusted to it)
    common = sorted(k for k in set(sa) & set(sb) if k.endswith("Relu_output_0"))
    assert len(common) > 5
    # min-max covers every calibration value: the clipping methods never choose a wider range
    assert all(sb[k] <= sa[k] * (1 + 1e-5) for k in common)
    assert any(sb[k] < sa[k] * 0.99 for k in common)
    ref = np.concatenate(head_outputs(fp32, feeds[:1]))
    got = np.concatenate(head_outputs(tmp_path / "o.onnx", feeds[:1]))
    assert np.all(np.isfinite(got)) and got.shape == ref.shape


def test_sensitivity_sweep_keeps_the_worst_convs_float(fp32, feeds, tmp_path):
    r = quantize_int8(fp32, tmp_path / "s.onnx", feeds[:2], sweep=2)
    ranking = [(e["node"], e["head_error"]) for e in r["sensitivity"]]
    errs = [e for _, e in ranking]
    assert errs == sorted(errs, reverse=True) and errs[0] > 0
    kept = [n for n, _ in ranking[:2]]
    assert r["kept_float"] == kept
    q = onnx.load(str(tmp_path / "s.onnx"))
    prod = _producers(q)
    by_name = {n.name: n for n in q.graph.node}
    for name in kept:  # their weights are plain float initializers, the others are dequantized
        w = prod.get(by_name[name].input[1])
        assert w is None or w.op_type != "DequantizeLinear"
    others = [n for n, _ in ranking[2:]]
    assert all(prod[by_name[n].input[1]].op_type == "DequantizeLinear" for n in others)


def test_bad_input(fp32, feeds, tmp_path):
    with pytest.raises(QuantizeError, match="--method.*minmax"):
        quantize_int8(fp32, tmp_path / "x.onnx", feeds, method="mse")
    with pytest.raises(QuantizeError, match="no calibration frames"):
        quantize_int8(fp32, tmp_path / "x.onnx", [])
    m = onnx.load(str(fp32))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "stripped.onnx"))
    with pytest.raises(ManifestError, match=r"stripped\.onnx.*not an edgefuse model"):
        quantize_int8(tmp_path / "stripped.onnx", tmp_path / "x.onnx", feeds)


# ---------------------------------------------------------------- what TensorRT's parser accepts


def _dq_graph(q_dtype: int, q_values) -> onnx.ModelProto:
    """x (float) + DequantizeLinear(a constant of ``q_dtype``): a graph onnxruntime runs either way."""
    from onnx import TensorProto, helper

    q = helper.make_tensor("q", q_dtype, [3], q_values)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("DequantizeLinear", ["q", "s"], ["d"], name="dq"),
             helper.make_node("Add", ["x", "d"], ["y"], name="add")]  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    g = helper.make_graph(nodes, "g", [x], [y], [q, scale])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_check_finds_an_int32_dequantize_input_and_passes_int8():
    from onnx import TensorProto

    from edgefuse.engine.quantize import non_int8_dequantize_inputs

    assert non_int8_dequantize_inputs(_dq_graph(TensorProto.INT8, [1, -2, 3])) == []
    assert non_int8_dequantize_inputs(_dq_graph(TensorProto.INT32, [1, -2, 300])) == ["dq: q (INT32)"]
    assert non_int8_dequantize_inputs(_dq_graph(TensorProto.UINT8, [1, 2, 3])) == ["dq: q (UINT8)"]


def test_every_dequantize_input_is_int8_and_biases_stay_float(fp32, feeds, tmp_path):
    """TensorRT's IDequantizeLayer takes INT8 (FP8/INT4) only: onnxruntime's default INT32 biases behind a
    DequantizeLinear would be refused by the parser. Conv biases stay float initializers."""
    from edgefuse.engine.quantize import non_int8_dequantize_inputs

    r = quantize_int8(fp32, tmp_path / "q.onnx", feeds)
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert r["tensorrt_valid"] and non_int8_dequantize_inputs(q) == []
    init, prod = _init(q), _producers(q)
    convs = [c for c in q.graph.node if c.op_type == "Conv" and any(s in c.name for s in QUANTIZED_SCOPES)]
    with_bias = [c for c in convs if len(c.input) > 2]
    assert with_bias
    for c in with_bias:
        assert c.input[2] in init and init[c.input[2]].dtype == np.float32 and c.input[2] not in prod
    # uint8 asymmetric activations (onnxruntime's x86 path) are allowed, and said not to be TensorRT's
    r8 = quantize_int8(fp32, tmp_path / "u8.onnx", feeds[:2], symmetric_activations=False)
    assert not r8["tensorrt_valid"] and (tmp_path / "u8.onnx").is_file()


def test_the_bundled_int8_model_is_one_tensorrt_accepts():
    from edgefuse.engine.quantize import non_int8_dequantize_inputs
    from edgefuse.runtime.bundled import FILES

    if not FILES["int8"].is_file():
        pytest.skip("no bundled model (python -m edgefuse.recipe)")
    assert non_int8_dequantize_inputs(onnx.load(str(FILES["int8"]))) == []
