"""The robot-side inference backends behind one interface (DESIGN §1): the contract, onnxruntime.

    outputs = backend.infer({name: (1, …) array for name in backend.manifest.inputs})  # → {name: array}
    backend.close()

Every backend has ``name``, ``manifest`` (the model's :class:`~edgefuse.runtime.manifest.Manifest`,
whose tensor spec builds the preprocessing), ``infer(feed) -> outputs`` and ``close()``. The robot side
has two: :class:`OnnxRuntimeBackend` here and :class:`~edgefuse.runtime.tensorrt.TensorRTBackend`; the
torch backend (``.pt`` checkpoints) is workstation side (:mod:`edgefuse.model.backend`).
:func:`edgefuse.models.open_backend` picks one from the file suffix. This module imports numpy only;
onnxruntime is imported by its backend when one is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefuse.errors import InputError
from edgefuse.runtime.manifest import Manifest, read_onnx_manifest

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


class OnnxRuntimeBackend:
    """An ``.onnx`` model in onnxruntime: CUDA provider first when this onnxruntime has it, else CPU
    (``threads`` intra-op threads, 1 inter-op)."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, providers: list[str] | None = None):
        import onnxruntime as ort

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


def inference_threads() -> int:
    """Backend threads for the real-time pipeline: one core is left to sources, sync and sinks (on a
    2-core machine 2 inference threads measured slower than 1: docs/benchmarks.md, Pipeline replay)."""
    return max(1, (os.cpu_count() or 2) - 1)
