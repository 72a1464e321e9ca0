"""The model manifest (torch-free): what a model file needs to be used without duplicated constants.

A versioned JSON object carried inside every model file — in the ``.pt`` checkpoint (key
``manifest``), in ONNX metadata (key ``edgefuse.manifest``) and as a ``.json`` sidecar for engines —
holding the tensor spec the inputs are built with, the network geometry and config, the classes,
input/output names, and the training record (data, seeds, command, time, data hash) and metrics.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from edgefuse.errors import InputError

MANIFEST_VERSION = 1
ONNX_METADATA_KEY = "edgefuse.manifest"


class ManifestError(InputError):
    """A model manifest is missing, of an unknown version or lacks a field (names the file and field)."""


@dataclass
class Manifest:
    """``tensor_spec``: the tensor spec as a dict (see :mod:`edgefuse.tensors`); ``geometry``:
    :class:`~edgefuse.model.network.NetGeometry` as a dict; ``model_config``:
    :class:`~edgefuse.model.config.ModelConfig` as a dict; ``classes``; ``inputs``/``outputs``: tensor
    names in order; ``training``: how it was trained; ``metrics``: evaluation results."""

    tensor_spec: dict
    geometry: dict
    model_config: dict
    classes: list[str]
    inputs: list[str]
    outputs: list[str]
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "tensor_spec": self.tensor_spec,
                "geometry": self.geometry,
                "model_config": self.model_config,
                "classes": list(self.classes),
                "inputs": list(self.inputs),
                "outputs": list(self.outputs),
                "training": self.training,
                "metrics": self.metrics,
            },
            sort_keys=False,
        )

    @staticmethod
    def from_json(text: str, where: str = "manifest") -> Manifest:
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{where}: expected a JSON object, got unparsable text ({e})") from None
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"{where}: field 'version': expected {MANIFEST_VERSION}, got {d.get('version')!r}"
            )
        need = ("tensor_spec", "geometry", "model_config", "classes", "inputs", "outputs")
        missing = [k for k in need if k not in d]
        if missing:
            raise ManifestError(f"{where}: missing fields {missing}")
        return Manifest(
            tensor_spec=d["tensor_spec"],
            geometry=d["geometry"],
            model_config=d["model_config"],
            classes=list(d["classes"]),
            inputs=list(d["inputs"]),
            outputs=list(d["outputs"]),
            training=d.get("training", {}),
            metrics=d.get("metrics", {}),
        )

    def write_sidecar(self, model_path: str | Path) -> Path:
        """Write ``<model>.json`` next to an engine file; returns its path."""
        p = Path(str(model_path) + ".json")
        p.write_text(self.to_json())
        return p


def files_hash(paths) -> str:
    """sha256 over the bytes of the files, in the order given (the training-data hash)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_onnx_manifest(path: str | Path) -> Manifest:
    """The embedded manifest of the ONNX file ``path``."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any protobuf failure is a bad file
        raise ManifestError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    for p in model.metadata_props:
        if p.key == ONNX_METADATA_KEY:
            return Manifest.from_json(p.value, str(path))
    raise ManifestError(
        f"{path}: no '{ONNX_METADATA_KEY}' metadata: not an edgefuse model; "
        "export it with `edgefuse export --model MODEL.pt --out MODEL.onnx`"
    )
