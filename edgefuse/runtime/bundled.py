"""The bundled model: shipped in the package (``edgefuse/runtime/weights/``), trained by
:mod:`edgefuse.recipe` (its ``bundle`` step writes all three files), the default of every command
that takes ``--model``.

- ``edge.pt`` — torch weights + manifest (``eval --backend torch``, ``export``, fine-tuning);
- ``edge.onnx`` — its fp32 ONNX export (``eval``/``replay`` with onnxruntime when torch is absent);
- ``edge.int8.onnx`` — INT8 static QDQ of ``edge.onnx`` (``demo``, ``replay``, ``run``: the CPU runtime).
"""

from __future__ import annotations

from pathlib import Path

from edgefuse.errors import InputError

WEIGHTS = Path(__file__).parent / "weights"
#: kind → file: "pt" torch weights, "onnx" fp32 export, "int8" INT8 QDQ export.
FILES: dict[str, Path] = {
    "pt": WEIGHTS / "edge.pt",
    "onnx": WEIGHTS / "edge.onnx",
    "int8": WEIGHTS / "edge.int8.onnx",
}


def bundled_model(kind: str, option: str = "--model") -> Path:
    """The bundled model file of ``kind`` (see :data:`FILES`); an :class:`InputError` naming ``option``
    and the fix when the package carries none."""
    if kind not in FILES:
        raise ValueError(f"bundled_model kind: expected one of {sorted(FILES)}, got {kind!r}")
    path = FILES[kind]
    if not path.is_file():
        raise InputError(
            f"{option}: not given and no bundled model at {path}; train one "
            "(python -m edgefuse.recipe, or edgefuse train …) and pass --model DIR/model.pt"
        )
    return path


def default_for_backend(backend: str | None, option: str = "--model") -> Path:
    """The bundled file a backend runs: torch → ``edge.pt``; onnxruntime → ``edge.onnx``; none given →
    ``edge.pt`` where torch is installed, else ``edge.onnx``."""
    if backend is None:
        import importlib.util

        backend = "torch" if importlib.util.find_spec("torch") is not None else "onnxruntime"
    if backend == "torch":
        return bundled_model("pt", option)
    if backend == "onnxruntime":
        return bundled_model("onnx", option)
    raise InputError(f"{option}: no bundled model for backend {backend!r}; pass --model (a .engine file)")
