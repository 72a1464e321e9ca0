"""Model files (torch): ``.pt`` = {"manifest": JSON str, "state_dict": tensors} (+ training state in
``last.pt`` checkpoints). Always loaded with ``torch.load(..., weights_only=True)``: never unpickles
arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch

from edgefuse.model.config import ModelConfig
from edgefuse.model.network import FusionNet, NetGeometry
from edgefuse.runtime.manifest import Manifest, ManifestError


def save_model(path: str | Path, net: FusionNet, manifest: Manifest, **training_state) -> None:
    """Write weights + manifest (+ ``training_state``: optimizer, scheduler, epoch, … for resuming);
    atomically (temp file + rename), so a killed run never leaves a torn file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"manifest": manifest.to_json(), "state_dict": net.state_dict(), **training_state}, tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ManifestError(f"{path}: not a loadable edgefuse .pt model ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "manifest" not in ckpt or "state_dict" not in ckpt:
        raise ManifestError(f"{path}: expected a dict with 'manifest' and 'state_dict'")
    return ckpt


def build_net(manifest: Manifest) -> FusionNet:
    return FusionNet(NetGeometry.from_dict(manifest.geometry), ModelConfig.from_dict(manifest.model_config))


def load_model(path: str | Path) -> tuple[FusionNet, Manifest]:
    """The network (eval mode) and its manifest from a ``.pt`` file."""
    ckpt = read_checkpoint(path)
    manifest = Manifest.from_json(ckpt["manifest"], str(path))
    net = build_net(manifest)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ManifestError(f"{path}: weights do not fit the manifest's network ({e})") from None
    return net.eval(), manifest


def new_model(spec, config: ModelConfig, seed: int = 0) -> tuple[FusionNet, Manifest]:
    """A freshly initialised network (weights from ``seed``) for a :class:`~edgefuse.tensors.TensorSpec`
    and its manifest."""
    from edgefuse.runtime.feed import INPUT_NAMES, OUTPUT_NAMES, geometry_from_spec

    torch.manual_seed(seed)
    geometry = NetGeometry(**geometry_from_spec(spec))
    net = FusionNet(geometry, config)
    manifest = Manifest(
        tensor_spec=spec.to_dict(),
        geometry=geometry.to_dict(),
        model_config=config.to_dict(),
        classes=list(spec.classes),
        inputs=list(INPUT_NAMES),
        outputs=list(OUTPUT_NAMES),
    )
    return net, manifest
