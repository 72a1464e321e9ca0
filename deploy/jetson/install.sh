#!/usr/bin/env bash
# Install edgefuse on a Jetson with JetPack 6 (L4T r36.x), using the system TensorRT, CUDA and
# GStreamer-enabled OpenCV, plus cuda-python 12.6 from pip (the TensorRT backend's CUDA bindings).
# Run from the repository root:  sudo deploy/jetson/install.sh [--venv DIR] [--kernels DIR]
set -euo pipefail
VENV=/opt/edgefuse/venv
KERNELS=/opt/edgefuse/kernels  # the built CUDA kernels + TensorRT plugins (edgefuse.service points here)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --kernels) KERNELS="$2"; shift 2 ;;
    *) echo "usage: $0 [--venv DIR] [--kernels DIR]" >&2; exit 2 ;;
  esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

if ! grep -q "R36" /etc/nv_tegra_release 2>/dev/null; then
  echo "warning: /etc/nv_tegra_release does not say L4T R36 (JetPack 6); continuing" >&2
fi
# JetPack's Python packages: TensorRT bindings, OpenCV with GStreamer, GStreamer itself; cmake 3.22 (Ubuntu
# 22.04) for the kernels. nvcc comes with JetPack (/usr/local/cuda).
apt-get update
apt-get install -y --no-install-recommends \
  python3-venv python3-pip python3-libnvinfer python3-opencv \
  gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad cmake

# A venv that sees the system site-packages (tensorrt, cv2) but installs the rest itself, cuda-python
# 12.6.x included (requirements-jetson.txt). edgefuse itself as a wheel, without its desktop dependencies.
python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install -c "$HERE/constraints-jetson.txt" -r "$HERE/requirements-jetson.txt"
"$VENV/bin/pip" install --no-deps "$ROOT"

# The CUDA kernels and TensorRT plugins for sm_87, from the sources installed with the package.
"$VENV/bin/edgefuse" build-kernels --arch 87 --build-dir "$KERNELS"

# Check: the system OpenCV (with GStreamer) and TensorRT are the ones imported; cuda-python sees the GPU.
"$VENV/bin/python" - <<'PY'
import cv2, tensorrt
from cuda import cudart
info = cv2.getBuildInformation()
gst = [l for l in info.splitlines() if "GStreamer" in l]
print("cv2", cv2.__version__, cv2.__file__, gst[0].strip() if gst else "GStreamer: ?")
assert "/dist-packages/" in cv2.__file__, "a pip OpenCV shadows the system one"
print("tensorrt", tensorrt.__version__)
err, version = cudart.cudaRuntimeGetVersion()
print("cuda-python: CUDA runtime", version, err)
PY
echo "installed edgefuse into $VENV; kernels in $KERNELS:"
echo "  EDGEFUSE_KERNELS_LIB=$KERNELS/libedgefuse_kernels.so"
echo "  EDGEFUSE_TRT_PLUGINS_LIB=$KERNELS/libedgefuse_trt_plugins.so   (or: edgefuse run/replay --plugins …)"
