#!/usr/bin/env bash
# GPU check: build the CUDA kernels for the local GPU, run each against its numpy reference, time them with
# CUDA events, run the model with torch fp32/fp16 and the whole GPU path per frame (H2D → voxelize kernel →
# model + decode → D2H), write docs/gpu-report.md + docs/gpu-report.json.
#
#   deploy/gpu_check.sh            # full sizes (≤ 5 min on an H200, most of it the nvcc build)
#   deploy/gpu_check.sh --quick    # smaller inputs
#   PYTHON=.venv/bin/python deploy/gpu_check.sh --cpu-fallback   # plumbing test without a GPU
#
# Needs: an NVIDIA GPU, nvcc (CUDA 12 or 13) + cmake ≥ 3.22, python3 with numpy and torch (CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
exec timeout "${GPU_CHECK_TIMEOUT_S:-300}" "$PY" deploy/gpu_check.py "$@"
