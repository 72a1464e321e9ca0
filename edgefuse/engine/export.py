"""ONNX export of a model (torch + onnx + onnxslim; training-side only) and reading ONNX manifests.

- :func:`export_onnx` — ``.pt`` → ONNX: the whole graph with decode and top-K, batch 1, fixed shapes from
  the manifest's tensor spec, opset :data:`OPSET`, every input/output named (:data:`INPUT_NAMES`,
  :data:`OUTPUT_NAMES`), checked with ``onnx.checker``, simplified with onnxslim, the manifest embedded as
  metadata (``edgefuse.manifest``). ``plugins=True`` replaces the pillar scatters and the camera lift +
  gated fusion with the custom-domain nodes ``edgefuse::EfPillarScatter`` / ``edgefuse::EfBevFusion`` of
  ``docs/kernels.md`` (for TensorRT with ``libedgefuse_trt_plugins.so``; onnxruntime cannot run them).
- :func:`read_onnx_manifest` — the manifest of an ONNX file (torch-free; an :class:`ManifestError` naming
  the file and the fix when it is not an edgefuse model).
- :func:`head_tensor_names` — the head tensors (heatmap, regression: the last Convs before decode) of an
  exported graph, for comparisons before decode and the quantization sensitivity sweep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefuse.runtime.feed import INPUT_NAMES, MIN_CAMERA_DEPTH_M, OUTPUT_NAMES
from edgefuse.runtime.manifest import ONNX_METADATA_KEY, Manifest, ManifestError

OPSET = 17
PLUGIN_DOMAIN = "edgefuse"


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


def export_onnx(model_pt: str | Path, out: str | Path, simplify: bool = True, plugins: bool = False) -> Path:
    """Export ``model_pt`` to ``out`` (see module doc); returns ``out``."""
    import onnx
    import torch

    from edgefuse.model.checkpoint import load_model
    from edgefuse.model.network import DecodedNet

    net, manifest = load_model(model_pt)
    feed = example_feed(manifest)
    args = tuple(torch.from_numpy(feed[n]) for n in INPUT_NAMES)
    out = Path(out)
    module = _plugin_net(net, model_pt) if plugins else DecodedNet(net).eval()
    torch.onnx.export(
        module,
        args,
        str(out),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=OPSET,
        dynamo=False,
        custom_opsets={PLUGIN_DOMAIN: 1} if plugins else None,
    )
    model = onnx.load(str(out))
    if simplify and not plugins:  # onnxslim cannot infer the shapes of the custom nodes
        import onnxslim

        model = onnxslim.slim(model)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, manifest.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def head_tensor_names(model) -> tuple[str, str]:
    """(heatmap, regression) tensor names of an exported ``onnx.ModelProto``: the outputs of the head's
    ``heat`` and ``reg`` Convs (QDQ-quantized graphs: the float tensors after their DequantizeLinear)."""
    found = {}
    for n in model.graph.node:
        for key in ("heat", "reg"):
            if n.op_type == "Conv" and f"/head/{key}/" in n.name:
                found[key] = n.output[0]
    if set(found) != {"heat", "reg"}:
        raise ManifestError(
            "model graph: expected Conv nodes named '/head/heat/' and '/head/reg/' (an edgefuse export)"
        )
    return found["heat"], found["reg"]


# ---------------------------------------------------------------- --plugins


def _typed(out, like, shape):
    """``out`` (a custom node's output) typed like ``like`` with ``shape``. ONNX shape inference cannot see
    through the custom nodes: without this every tensor after them has unknown dims; with it the file carries
    each plugin's input and output shapes (tests/test_trt_plugins_harness.py reads them)."""
    out.setType(like.type().with_sizes([int(d) for d in shape]))
    return out


def _plugin_net(net, where):
    """``net`` as a module whose scatters and camera lift + gated fusion trace to plugin nodes."""
    import torch
    from torch import nn

    from edgefuse.model.fusion import GatedFusion
    from edgefuse.runtime.kernel_refs import fold_conv_bn

    c, g = net.config, net.geometry
    if not isinstance(net.fusion, GatedFusion) or c.modalities[0] != "camera":
        raise ManifestError(
            f"{where}: export --plugins needs a model with camera and 'gated' fusion "
            f"(this one: fusion {c.fusion!r}, modalities {list(c.modalities)}); export without --plugins"
        )

    class Scatter(torch.autograd.Function):
        @staticmethod
        def forward(ctx, feats, coords, counts, ny, nx):
            B, C, P = feats.shape
            flat = coords[..., 0].long() * nx + coords[..., 1].long()
            flat = torch.where(counts > 0, flat, torch.full_like(flat, ny * nx))
            canvas = feats.new_zeros(B, C, ny * nx + 1)
            canvas = canvas.scatter(2, flat.unsqueeze(1).expand(B, C, P), feats)
            return canvas[:, :, : ny * nx].reshape(B, C, ny, nx)

        @staticmethod
        def symbolic(gr, feats, coords, counts, ny, nx):
            out = gr.op(f"{PLUGIN_DOMAIN}::EfPillarScatter", feats, coords, counts, ny_i=ny, nx_i=nx)
            B, C, _ = feats.type().sizes()
            return _typed(out, feats, [B, C, ny, nx])

    lift = net.lift
    attributes = {
        "num_modalities_i": len(c.modalities),
        "ny_i": lift.h,
        "nx_i": lift.w,
        "image_h_i": g.image_hw[0],
        "image_w_i": g.image_hw[1],
        "origin_x_f": float(g.origin_xy[0]),
        "origin_y_f": float(g.origin_xy[1]),
        "cell_f": float(g.cell_m * c.bev_downsample),
        "heights_f": [float(h) for h in c.lift_heights_m],
        "gate_kernel_i": int(net.fusion.gate.kernel_size[0]),
        "min_depth_f": MIN_CAMERA_DEPTH_M,
        "gate_eps_f": 1e-3,
    }

    class BevFusion(torch.autograd.Function):
        @staticmethod
        def forward(ctx, cam, projection, *rest):
            # zeros of the output shape: the trace needs shapes only (modules cannot run inside a traced
            # Function); the values come from the plugin at run time
            return cam.new_zeros(projection.shape[0], c.fused_channels, lift.h, lift.w)

        @staticmethod
        def symbolic(gr, *tensors):
            out = gr.op(f"{PLUGIN_DOMAIN}::EfBevFusion", *tensors, **attributes)
            B = tensors[1].type().sizes()[0]  # projection (B, Ncam, 3, 4)
            return _typed(out, tensors[0], [B, c.fused_channels, lift.h, lift.w])

    def folded(seq):
        conv, bn = seq[0], seq[1]
        w, b = fold_conv_bn(
            conv.weight.detach().numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(),
            bn.running_mean.numpy(), bn.running_var.numpy(), bn.eps,
        )  # fmt: skip
        return torch.from_numpy(w), torch.from_numpy(b)

    class PluginNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.proj = [folded(p) for p in net.fusion.proj]

        def encode(self, enc, points, coords, counts):
            feats = enc.pillar_features(points, coords, counts)  # (B, C, P)
            return net._pool(Scatter.apply(feats, coords, counts, enc.h, enc.w))

        def forward(self, images, projection, camera_valid, lp, lc, ln, lv, rp, rc, rn, rv):
            B, ncam = images.shape[:2]
            cam = net.image_encoder(images.reshape(B * ncam, *images.shape[2:]))
            bevs = []
            if "lidar" in c.modalities:
                bevs.append(self.encode(net.lidar_encoder, lp, lc, ln))
            if "radar" in c.modalities:
                bevs.append(self.encode(net.radar_encoder, rp, rc, rn))
            cv = camera_valid.to(torch.float32)
            valid = torch.cat([cv.amax(dim=1, keepdim=True), lv.float(), rv.float()], 1)[:, net.mod_index]
            weights = [t for wb in self.proj for t in wb]
            gate = net.fusion.gate
            fused = BevFusion.apply(
                cam, projection, cv, *bevs, valid, *weights, gate.weight.detach(), gate.bias.detach()
            )
            return net.decode(*net.head(net.backbone(fused)))

    return PluginNet().eval()
