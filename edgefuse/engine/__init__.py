"""Deployment: ONNX export, INT8 quantization, TensorRT engines, CUDA kernels and backends (DESIGN §5).

Kept free of imports: each submodule imports its optional dependencies lazily."""
