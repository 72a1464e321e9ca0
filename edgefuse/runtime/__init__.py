"""The robot side's model runtime (numpy, onnxruntime, TensorRT, the CUDA kernels; never torch): what a
vehicle computer needs to run a model file.

- :mod:`~edgefuse.runtime.manifest`: the model's manifest (tensor spec, classes, I/O names, training
  record), read from ONNX metadata, ``.pt`` checkpoints and engine sidecars;
- :mod:`~edgefuse.runtime.feed`: the input/output contract (input names, modalities, batching);
- :mod:`~edgefuse.runtime.decode`: head outputs → :class:`~edgefuse.types.Detections`;
- :mod:`~edgefuse.runtime.bundled`: the bundled model files (``weights/``);
- :mod:`~edgefuse.runtime.backends`: the backend contract and onnxruntime;
  :mod:`~edgefuse.runtime.tensorrt`: TensorRT engines (sidecar checks, the backend);
- :mod:`~edgefuse.runtime.kernels` / :mod:`~edgefuse.runtime.kernel_refs`: the custom CUDA kernels of
  ``edgefuse/deploy/plugins`` through ctypes, and their numpy references.

Nothing here imports :mod:`edgefuse.model` or :mod:`edgefuse.engine` (the workstation side): the import
rules in ``pyproject.toml`` check it (docs/architecture.md).
"""
