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


#: onnxruntime execution providers by the short names ``--providers`` takes, in the default order of trial
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: where the TensorRT provider keeps the engines it builds (minutes each on a Jetson; reused while the model
#: and TensorRT are the same)
ORT_TRT_CACHE = Path.home() / ".cache" / "edgefuse" / "ort-tensorrt"


def ort_providers(wanted: list[str] | None, available: list[str]) -> tuple[list[str], list[str]]:
    """The execution providers to ask onnxruntime for, in order, and a note for each one left out.

    ``wanted``: short names (:data:`PROVIDERS`) or onnxruntime's own names, in order of preference; None:
    every one of :data:`PROVIDERS` this onnxruntime has (onnxruntime-gpu on a Jetson: TensorRT, CUDA, CPU;
    the PyPI wheel: CPU). ``available``: ``onnxruntime.get_available_providers()``. The CPU provider is
    always last, the fallback for whatever the others do not take. Raises :class:`BackendError` for a name
    that is none of them."""
    full = {**PROVIDERS, **{v: v for v in PROVIDERS.values()}}
    names = list(PROVIDERS) if wanted is None else [w.strip() for w in wanted if w.strip()]
    bad = [w for w in names if w.lower() not in full and w not in full]
    if bad:
        raise BackendError(f"--providers {','.join(bad)}: expected some of {', '.join(PROVIDERS)}")
    chosen, notes = [], []
    for w in names:
        p = full.get(w.lower(), full.get(w))
        if p in chosen:
            continue
        if p in available:
            chosen.append(p)
        elif wanted is not None:
            notes.append(f"{p} is not in this onnxruntime ({', '.join(available)}): skipped")
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    return chosen, notes


def _provider_options(providers: list[str]) -> list[dict]:
    opts = []
    for p in providers:
        if p == PROVIDERS["tensorrt"]:
            opts.append({"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                         "trt_engine_cache_path": str(ORT_TRT_CACHE)})  # fmt: skip
        else:
            opts.append({})
    return opts


class OnnxRuntimeBackend:
    """An ``.onnx`` model in onnxruntime (``threads`` intra-op threads, 1 inter-op) on the execution
    providers :func:`ort_providers` chooses from ``providers`` (default: TensorRT, CUDA where this
    onnxruntime has them, then CPU). A provider with which the session cannot be made (no GPU, a missing
    CUDA library, an op it cannot run) is dropped and the session made again without it; ``providers``
    says what runs, ``provider_notes`` what was left out and why. A model that fails on CPU too is one
    error that says so (the providers tried first were not the cause)."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 2, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = path
        self.manifest = read_onnx_manifest(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        chosen, self.provider_notes = ort_providers(providers, ort.get_available_providers())
        dropped: list[str] = []  # providers the session could not be made with
        while True:
            try:
                self.session = ort.InferenceSession(
                    str(path), so, providers=chosen, provider_options=_provider_options(chosen)
                )
                break
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
                if len(chosen) > 1:  # a GPU provider (or the model on it) failed: try without it
                    self.provider_notes.append(
                        f"{chosen[0]} left out: the session could not be made with it ({str(e)[:200]})"
                    )
                    dropped.append(chosen[0])
                    chosen = chosen[1:]
                    continue
                hint = ""
                if "edgefuse" in str(e):
                    hint = " (an --plugins export: its custom nodes run only in TensorRT)"
                if dropped:  # the model itself fails, not (only) the GPU providers it was tried on first
                    hint += f" (also with {', '.join(dropped)}: the model, not those providers)"
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
