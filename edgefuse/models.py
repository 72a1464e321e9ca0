"""Open any model file with its backend: ``.pt`` (torch, workstation side), ``.onnx`` (onnxruntime),
``.engine`` (TensorRT).

    backend = open_backend("model.onnx", backend=None, threads=2)   # torch | onnxruntime | tensorrt
    backend = load_backend(None)                                     # the bundled INT8 ONNX model

The backend follows the file suffix unless ``backend`` names one. This module sits above both sides: the
robot side (:mod:`edgefuse.runtime`, :mod:`edgefuse.pipeline`) never imports it — the commands open the
backend here and hand it to the pipeline — and it imports the torch backend only when a ``.pt`` file is
opened, so a robot install without torch runs ``.onnx`` and ``.engine`` models.
"""

from __future__ import annotations

from pathlib import Path

from edgefuse.errors import InputError
from edgefuse.runtime.backends import BACKENDS, SUFFIXES, Backend, BackendError, OnnxRuntimeBackend
from edgefuse.runtime.bundled import bundled_model


def backend_for(model_path: str | Path, backend: str | None = None) -> str:
    """The backend that runs ``model_path``: ``backend`` when it fits the file's suffix, else from the
    suffix; a :class:`BackendError` (one line naming the file) for a pair that cannot run, such as a
    ``.pt`` model with ``onnxruntime``. Opens nothing."""
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
    return backend


def open_backend(
    model_path: str | Path,
    backend: str | None = None,
    threads: int = 2,
    providers: list[str] | None = None,
    plugins: str | Path | None = None,
    trust_engine: bool = False,
) -> Backend:
    """Open ``model_path`` with ``backend`` (default: from the suffix, see module doc). ``providers``: the
    onnxruntime execution providers in order of preference (``tensorrt``, ``cuda``, ``cpu``; onnxruntime
    only, see :func:`~edgefuse.runtime.backends.ort_providers`). ``plugins``: the TensorRT plugin library
    an engine with plugin nodes loads (None: ``$EDGEFUSE_TRT_PLUGINS_LIB``, else the default build,
    :func:`edgefuse.runtime.kernels.trt_plugins_path`); only the TensorRT backend takes it, as
    ``trust_engine`` (run a version-compatible plan's embedded host code: ``--trust-engine``)."""
    path = Path(model_path)
    backend = backend_for(path, backend)
    if plugins is not None and backend != "tensorrt":
        raise BackendError(
            f"--plugins {plugins}: only TensorRT engines load the plugin library; {path} runs on {backend} "
            "(build an engine: edgefuse build-engine)"
        )
    if trust_engine and backend != "tensorrt":
        raise BackendError(
            f"--trust-engine: lets a TensorRT engine run its embedded host code; {path} runs on {backend}, "
            "which has none to trust (drop the flag)"
        )
    if not path.is_file():
        raise BackendError(f"{path}: no such model file")
    if providers is not None and backend != "onnxruntime":
        raise BackendError(f"--providers: onnxruntime's execution providers; {path} runs in {backend}")
    if backend == "torch":
        try:
            from edgefuse.model.backend import TorchBackend
        except ImportError as e:  # a robot install has no torch: .pt files are for the workstation
            raise BackendError(
                f"{path}: the torch backend needs torch ({e}); install the workstation extra "
                "(pip install 'edgefuse[train]') or export the model: edgefuse export --model MODEL.pt"
            ) from None
        return TorchBackend(path, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, threads, providers)
    from edgefuse.runtime.tensorrt import TensorRTBackend

    return TensorRTBackend(path, plugins, allow_host_code=trust_engine)


def load_backend(
    model: str | Path | None,
    backend: str | None = None,
    threads: int = 2,
    providers: list[str] | None = None,
    plugins: str | Path | None = None,
    trust_engine: bool = False,
) -> Backend:
    """Open ``model`` (``.pt``/``.onnx``/``.engine``; None = the bundled INT8 ONNX model) with
    :func:`open_backend` (``plugins``: ``--plugins``, the TensorRT plugin library)."""
    path = Path(model) if model is not None else bundled_model("int8")
    if not path.is_file():
        raise InputError(f"--model {path}: no such model file; expected a .pt, .onnx or .engine model")
    return open_backend(path, backend=backend, threads=threads, providers=providers, plugins=plugins,
                        trust_engine=trust_engine)  # fmt: skip
