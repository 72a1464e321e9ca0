"""Inference backends behind one interface (DESIGN §1).

    backend = open_backend("model.onnx", backend=None, threads=2)   # torch | onnxruntime | tensorrt
    outputs = backend.infer({name: (1, …) array for name in backend.manifest.inputs})  # → {name: array}
    backend.close()

The backend follows the file suffix (``.pt`` torch, ``.onnx`` onnxruntime, ``.engine`` TensorRT) unless
``backend`` names one. ``backend.manifest`` is the model's :class:`~edgefuse.model.manifest.Manifest`
(its tensor spec builds the preprocessing). This module imports numpy only; torch is imported by the torch
backend alone, onnxruntime by the onnxruntime backend, TensorRT/CUDA by :mod:`edgefuse.engine.tensorrt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edgefuse.errors import InputError
from edgefuse.model.manifest import Manifest

BACKENDS = ("torch", "onnxruntime", "tensorrt")
SUFFIXES = {".pt": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt"}


class BackendError(InputError):
    """A model file does not fit the backend asked for, or the backend cannot run here."""


class Backend(Protocol):
    name: str
    manifest: Manifest

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def check_feed(feed: dict[str, np.ndarray], manifest: Manifest, where: str) -> None:
    missing = [n for n in manifest.inputs if n not in feed]
    if missing:
        raise BackendError(f"{where}: feed lacks inputs {missing}; expected {manifest.inputs}")


class TorchBackend:
    """A ``.pt`` model with torch on the CPU (``threads`` intra-op threads)."""

    name = "torch"

    def __init__(self, path: Path, threads: int = 2):
        import torch

        from edgefuse.model.checkpoint import load_model

        self.path = path
        self.net, self.manifest = load_model(path)
        torch.set_num_threads(threads)
        self._torch = torch

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feed(feed, self.manifest, str(self.path))
        torch = self._torch
        with torch.no_grad():
            out = self.net.forward_decoded(
                *[torch.from_numpy(np.ascontiguousarray(feed[k])) for k in self.manifest.inputs]
            )
        return {k: o.numpy() for k, o in zip(self.manifest.outputs, out, strict=True)}

    def heads(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The head tensors before decode: (heatmap, regression)."""
        torch = self._torch
        with torch.no_grad():
            h, r = self.net(*[torch.from_numpy(np.ascontiguousarray(feed[k])) for k in self.manifest.inputs])
        return h.numpy(), r.numpy()

    def close(self) -> None:
        self.net = None


class OnnxRuntimeBackend:
    """An ``.onnx`` model in onnxruntime: CUDA provider first when this onnxruntime has it, else CPU
    (``threads`` intra-op threads, 1 inter-op)."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, providers: list[str] | None = None):
        import onnxruntime as ort

        from edgefuse.engine.export import read_onnx_manifest

        self.path = path
        self.manifest = read_onnx_manifest(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        if providers is None:
            have = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            hint = ""
            if "edgefuse" in str(e):
                hint = (
                    " (exported with --plugins: custom nodes run only in TensorRT; export without --plugins)"
                )
            raise BackendError(f"{path}: onnxruntime cannot load it{hint}: {str(e)[:300]}") from None
        self.providers = self.session.get_providers()
        # the exporter drops inputs a model never reads (a LiDAR-only model has no radar inputs): feed
        # the graph's own inputs, after checking the whole manifest feed
        self.graph_inputs = [i.name for i in self.session.get_inputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feed(feed, self.manifest, str(self.path))
        outs = self.session.run(list(self.manifest.outputs), {k: feed[k] for k in self.graph_inputs})
        return dict(zip(self.manifest.outputs, outs, strict=True))

    def close(self) -> None:
        self.session = None


def open_backend(model_path: str | Path, backend: str | None = None, threads: int = 2) -> Backend:
    """Open ``model_path`` with ``backend`` (default: from the suffix, see module doc)."""
    path = Path(model_path)
    if backend is None:
        backend = SUFFIXES.get(path.suffix)
        if backend is None:
            raise BackendError(
                f"{path}: unknown model suffix {path.suffix!r}; expected one of {sorted(SUFFIXES)}"
            )
    if backend not in BACKENDS:
        raise BackendError(f"--backend: expected one of {BACKENDS}, got {backend!r}")
    want = {v: k for k, v in SUFFIXES.items()}[backend]
    if path.suffix != want:
        raise BackendError(f"{path}: backend {backend} expects a {want} model file")
    if not path.is_file():
        raise BackendError(f"{path}: no such model file")
    if backend == "torch":
        return TorchBackend(path, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, threads)
    from edgefuse.engine.tensorrt import TensorRTBackend

    return TensorRTBackend(path)
