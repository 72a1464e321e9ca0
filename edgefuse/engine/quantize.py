"""Post-training INT8 quantization of an exported model to QDQ ONNX (onnx + onnxruntime; no torch).

:func:`quantize_int8` — static QDQ: symmetric int8 activations (zero point 0) and symmetric per-channel
int8 weights (what TensorRT's explicit-precision builder accepts), calibrated on batch-1 feeds with
``percentile`` (default), ``minmax`` or ``entropy`` ranges — percentile because minmax cost the bundled
10-epoch model 1.3 mAP and percentile nothing (docs/model.md, table (c)). Only the nodes under
:data:`QUANTIZED_SCOPES` are quantized — the image CNN and the BEV backbone; everything else stays float:
the pillar nets (few FLOPs on raw coordinates), the camera projection and lift, the fusion gates, the
detection heads (their outputs are the logits and box parameters themselves: quantizing them cost 4–5 mAP
points on the bundled model, quantizing the rest costs 0.3 on the clear held-out log) and the decode and
top-K.
``keep_float`` names further nodes to leave in float;
:func:`sensitivity` ranks the quantizable Convs by how much quantizing each alone moves the head tensors,
and ``quantize_int8(..., sweep=N)`` keeps the N worst in float.

:func:`calibration_feeds` — frames from logs through the real preprocessing (the model's tensor spec,
:mod:`edgefuse.tensors` via :mod:`edgefuse.dataset`'s cache).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError

METHODS = ("minmax", "entropy", "percentile")
#: Module scopes (as the exporter names nodes) whose nodes are quantized by default: the image CNN and
#: the BEV backbone (heads and fusion stay float, see the module doc).
QUANTIZED_SCOPES: tuple[str, ...] = ("/image_encoder/", "/backbone/")
#: Every conv stack, heads included (the default before the bundled model was measured).
CONV_SCOPES: tuple[str, ...] = ("/image_encoder/", "/backbone/", "/head/")
#: Every scope with convolutions or gates: image CNN, fusion, backbone, heads.
ALL_CONV_AND_FUSION_SCOPES: tuple[str, ...] = ("/image_encoder/", "/fusion/", "/backbone/", "/head/")


class QuantizeError(InputError):
    """Bad quantization input (names the argument and what was expected)."""


def calibration_feeds(
    logs: Sequence[str | Path], manifest, cache_root: str | Path, max_frames: int = 64, progress: bool = False
) -> list[dict[str, np.ndarray]]:
    """Up to ``max_frames`` batch-1 feeds from ``logs`` (evenly spaced over all their frames), built with
    the model's tensor spec through the dataset cache."""
    from edgefuse.dataset import CachedFrames, build_cache
    from edgefuse.runtime.feed import INPUT_NAMES
    from edgefuse.tensors import TensorSpec

    if not logs:
        raise QuantizeError("quantize --calib: expected at least one log")
    spec = TensorSpec.from_dict(manifest.tensor_spec, "model manifest tensor_spec")
    dirs = [build_cache(p, spec, cache_root, progress=progress).directory for p in logs]
    data = CachedFrames(dirs, spec)
    if len(data) == 0:
        raise QuantizeError(f"quantize --calib: no frames in {[str(p) for p in logs]}")
    idx = np.unique(np.linspace(0, len(data) - 1, min(max_frames, len(data))).round().astype(int))
    feeds = []
    for i in idx:
        feed, _ = data.load(int(i))
        feeds.append({k: feed[k][None] for k in INPUT_NAMES})
    return feeds


def quantizable_nodes(model, scopes: Sequence[str] = QUANTIZED_SCOPES) -> list[str]:
    return [n.name for n in model.graph.node if any(s in n.name for s in scopes)]


def quantize_int8(
    onnx_in: str | Path,
    out: str | Path,
    feeds: Iterable[dict[str, np.ndarray]],
    *,
    method: str = "percentile",
    scopes: Sequence[str] = QUANTIZED_SCOPES,
    keep_float: Sequence[str] = (),
    sweep: int = 0,
    symmetric_activations: bool = True,
) -> dict:
    """Static QDQ INT8 of ``onnx_in`` → ``out`` (manifest kept). Returns a report: method, quantized and
    float-kept node names, the sensitivity ranking when ``sweep`` > 0. ``symmetric_activations=False``:
    uint8 asymmetric activations (onnxruntime's fast x86 path; TensorRT does not take it)."""
    import onnx

    from edgefuse.runtime.manifest import read_onnx_manifest

    if method not in METHODS:
        raise QuantizeError(f"quantize --method: expected one of {METHODS}, got {method!r}")
    read_onnx_manifest(onnx_in)  # ours, or a clear error
    feeds = list(feeds)
    if not feeds:
        raise QuantizeError("quantize --calib: no calibration frames")
    model = onnx.load(str(onnx_in))
    nodes = quantizable_nodes(model, scopes)
    ranking: list[tuple[str, float]] = []
    if sweep > 0:
        ranking = sensitivity(onnx_in, feeds, method=method, scopes=scopes)
        keep_float = [*keep_float, *(n for n, _ in ranking[:sweep])]
    nodes = [n for n in nodes if n not in set(keep_float)]
    _quantize(onnx_in, out, feeds, nodes, method, symmetric_activations)
    q = onnx.load(str(out))
    bad = non_int8_dequantize_inputs(q)
    if bad and symmetric_activations:  # meant for TensorRT: never leave a graph its parser rejects
        Path(out).unlink()
        raise QuantizeError(
            f"quantize {onnx_in}: {len(bad)} DequantizeLinear inputs are not INT8, which TensorRT's "
            f"IDequantizeLayer rejects (first: {bad[0]}); nothing written"
        )
    del q.metadata_props[:]
    for p in model.metadata_props:
        e = q.metadata_props.add()
        e.key, e.value = p.key, p.value
    onnx.save(q, str(out))
    return {
        "out": str(out),
        "method": method,
        "calibration_frames": len(feeds),
        "quantized_nodes": len(nodes),
        "kept_float": list(keep_float),
        "sensitivity": [{"node": n, "head_error": e} for n, e in ranking],
        "tensorrt_valid": not bad,
    }


def non_int8_dequantize_inputs(model) -> list[str]:
    """``"node: input (dtype)"`` of every ``DequantizeLinear`` whose input is not INT8. TensorRT's
    ``IDequantizeLayer`` (and onnx-tensorrt's DequantizeLinear) take INT8, FP8 or INT4 only, while
    onnxruntime's quantizer turns each quantized Conv's bias into an INT32 tensor behind a
    DequantizeLinear unless ``QuantizeBias`` is off — a graph onnxruntime runs and TensorRT refuses.
    ``model``: an ``onnx.ModelProto``; types from its initializers and shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {i.name: i.data_type for i in g.initializer}
    for v in (*g.input, *g.value_info, *g.output):
        types.setdefault(v.name, v.type.tensor_type.elem_type)
    out = []
    for n in g.node:
        if n.op_type == "DequantizeLinear" and types.get(n.input[0]) != onnx.TensorProto.INT8:
            dtype = onnx.TensorProto.DataType.Name(types.get(n.input[0], 0))
            out.append(f"{n.name}: {n.input[0]} ({dtype})")
    return out


def unshare_initializers(model) -> int:
    """Give every consumer of a shared initializer its own copy (in place); returns the copies made.
    onnxslim merges equal constants, and the quantizer rewrites an initializer for all its consumers, so
    a float node (e.g. a pillar net's BatchNorm) sharing a constant with a quantized Conv would otherwise
    read the dequantized values."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    seen: dict[str, int] = {}
    copies = 0
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                new = onnx.TensorProto()
                new.CopyFrom(inits[name])
                new.name = f"{name}__{node.name or copies}_{k}"
                model.graph.initializer.append(new)
                node.input[k] = new.name
                copies += 1
    return copies


def _quantize(onnx_in, out, feeds, nodes, method, symmetric_activations=True) -> None:
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(onnx_in))
    unshare_initializers(model)
    it = iter(list(feeds))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(it, None)

    calib = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    overrides = {}
    if method == "entropy":
        # quantize_static's entropy calibrator uses 128 histogram bins for 128 quantized bins, which leaves
        # one candidate threshold (= min-max): calibrate here with 512 bins (TensorRT uses 2048; 512 keeps
        # the KL search fast) and pass the ranges on as per-tensor overrides
        overrides = _entropy_ranges(model, feeds, nodes)
        calib = CalibrationMethod.MinMax
    with contextlib.redirect_stdout(sys.stderr):  # the calibrators print progress: keep stdout for --json
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "unshared.onnx"
            onnx.save(model, str(src))
            quantize_static(
                str(src),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(nodes),
                calibrate_method=calib,
                extra_options={
                    "QuantizeBias": False,  # float biases: an INT32 bias behind a DQ is not TensorRT's
                    "ActivationSymmetric": symmetric_activations,
                    "WeightSymmetric": True,
                    "CalibPercentile": 99.99,
                    "TensorQuantOverrides": overrides,
                },
            )


def _entropy_ranges(model, feeds, nodes) -> dict:
    """Entropy (KL) ranges of the tensors around ``nodes``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    it = iter(list(feeds))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(it, None)

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        src = Path(tmp) / "m.onnx"
        onnx.save(model, str(src))
        cal = create_calibrator(
            src,
            None,
            augmented_model_path=str(Path(tmp) / "aug.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"symmetric": True, "num_bins": 512, "num_quantized_bins": 128},
        )
        cal.collect_data(Reader())
        wanted = {t for n in model.graph.node if n.name in set(nodes) for t in (*n.input, *n.output)}
        hist = cal.collector.histogram_dict  # KL search is the slow part: only the tensors quantized
        for k in [k for k in hist if k not in wanted]:
            del hist[k]
        ranges = cal.compute_data()
    out = {}
    for name, td in ranges.items():
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in td.range_value)
        out[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    return out


def head_outputs(onnx_path: str | Path, feeds, threads: int = 2) -> list[np.ndarray]:
    """The head tensors (heatmap, regression) of an ONNX model for each feed, concatenated flat."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    from edgefuse.engine.export import head_tensor_names

    names = head_tensor_names(model)
    existing = {o.name for o in model.graph.output}
    for n in names:
        if n not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [np.concatenate([o.ravel() for o in sess.run(list(names), f)]) for f in feeds]


def sensitivity(
    onnx_in: str | Path, feeds, *, method: str = "minmax", scopes: Sequence[str] = QUANTIZED_SCOPES
) -> list[tuple[str, float]]:
    """(Conv node, error) worst first: the RMS change of the head tensors (relative to their RMS) when
    only that Conv (with its input/weight quantizers) is quantized."""
    import tempfile

    import onnx

    model = onnx.load(str(onnx_in))
    convs = [n for n in quantizable_nodes(model, scopes) if "Conv" in n]
    ref = head_outputs(onnx_in, feeds)
    scale = float(np.sqrt(np.mean(np.concatenate(ref) ** 2))) or 1.0
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in convs:
            q = Path(tmp) / "one.onnx"
            _quantize(onnx_in, q, feeds, [n], method)
            got = head_outputs(q, feeds)
            err = float(np.sqrt(np.mean(np.concatenate([g - r for g, r in zip(got, ref, strict=True)]) ** 2)))
            out.append((n, err / scale))
    return sorted(out, key=lambda t: -t[1])
