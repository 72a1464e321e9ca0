"""ONNX export and INT8 quantization of a model (torch + onnx + onnxruntime; training-side only).

- :func:`export_onnx` — ``.pt`` → ONNX (opset 17, standard ops, batch 1), decode and top-K in the graph,
  the manifest embedded as metadata (``edgefuse.manifest``), simplified with onnxslim.
- :func:`quantize_int8` — static QDQ INT8 (symmetric activations and weights, per-channel weights)
  calibrated on given frames; the pillar nets (few FLOPs, raw coordinates), the camera projection and
  lift and the decode stay in float (only the image encoder, fusion, backbone and heads are quantized).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgefuse.model.io import INPUT_NAMES, OUTPUT_NAMES
from edgefuse.model.manifest import ONNX_METADATA_KEY, Manifest

OPSET = 17
#: Module scopes (as the exporter names nodes) whose nodes are quantized.
QUANTIZED_SCOPES: tuple[str, ...] = (
    "/image_encoder/",
    "/fusion/",
    "/backbone/",
    "/head/",
)


def example_feed(manifest: Manifest, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch-1 feed of the manifest's shapes: random points in a quarter of the pillars, valid flags 1."""
    from edgefuse.tensors import TensorSpec, input_shapes

    spec = TensorSpec.from_dict(manifest.tensor_spec)
    rng = np.random.default_rng(seed)
    shapes = input_shapes(spec)
    ny, nx = spec.grid_size
    feed = {}
    for n in INPUT_NAMES:
        sh, dt = shapes[n]
        if n.endswith("_coords"):
            cells = rng.choice(ny * nx, sh[0], replace=False)
            a = np.stack([cells // nx, cells % nx], -1)
        elif n.endswith("_counts"):
            a = np.where(np.arange(sh[0]) < sh[0] // 4, rng.integers(1, 5, sh), 0)
        elif n.endswith("_valid"):
            a = np.ones(sh)
        else:
            a = rng.normal(size=sh)
        feed[n] = a.astype(dt)[None]
    return feed


def export_onnx(model_pt: str | Path, out: str | Path, simplify: bool = True) -> Path:
    """Export ``model_pt`` to ``out`` (ONNX, batch 1, manifest in the metadata); returns ``out``."""
    import onnx
    import torch

    from edgefuse.model.checkpoint import load_model
    from edgefuse.model.network import DecodedNet

    net, manifest = load_model(model_pt)
    feed = example_feed(manifest)
    args = tuple(torch.from_numpy(feed[n]) for n in INPUT_NAMES)
    out = Path(out)
    torch.onnx.export(
        DecodedNet(net).eval(),
        args,
        str(out),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=OPSET,
        dynamo=False,
    )
    model = onnx.load(str(out))
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, manifest.to_json()
    onnx.save(model, str(out))
    return out


def read_onnx_manifest(path: str | Path) -> Manifest:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == ONNX_METADATA_KEY:
            return Manifest.from_json(p.value, str(path))
    from edgefuse.model.manifest import ManifestError

    raise ManifestError(f"{path}: no '{ONNX_METADATA_KEY}' metadata: not an edgefuse model")


def quantize_int8(
    onnx_in: str | Path,
    out: str | Path,
    feeds: Iterable[dict[str, np.ndarray]],
    symmetric_activations: bool = True,
) -> Path:
    """Static QDQ INT8 of ``onnx_in`` calibrated on ``feeds`` (batch-1 input dicts); manifest kept.
    ``symmetric_activations``: int8 activations with zero point 0 (TensorRT's scheme, the default);
    False = uint8 asymmetric activations (onnxruntime's fast x86 path, ReLU folds into the quantizer)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(onnx_in))
    nodes = [n.name for n in model.graph.node if any(s in n.name for s in QUANTIZED_SCOPES)]
    it = iter(list(feeds))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(it, None)

    out = Path(out)
    quantize_static(
        str(onnx_in),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
        extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True},
    )
    q = onnx.load(str(out))
    del q.metadata_props[:]
    for p in model.metadata_props:
        e = q.metadata_props.add()
        e.key, e.value = p.key, p.value
    onnx.save(q, str(out))
    return out
