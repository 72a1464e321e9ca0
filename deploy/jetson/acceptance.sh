#!/usr/bin/env bash
# The deployment acceptance run for a person with a Jetson Orin (JetPack 6), after deploy/jetson/install.sh:
#   deploy/jetson/acceptance.sh [--venv /opt/edgefuse/venv] [--profile orin-agx|orin-nx|orin-nano] [--out DIR]
# Builds the CUDA kernels + TensorRT plugins, exports (when torch is installed) and quantizes the bundled
# model, builds FP16 and INT8 engines, runs each with trtexec (--loadEngine … --dynamicPlugins …), replays
# a simulated log through onnxruntime and each engine, compares the backends' detections, and writes one
# report (OUT/report.md, OUT/report.json) with the power mode (nvpmodel -q), the L4T version and the clock
# state. A step that fails is recorded with its exit status and output, and the run goes on; the exit
# status is the number of failed steps. Nothing here needs the network.
set -uo pipefail
VENV=/opt/edgefuse/venv
PROFILE=""
OUT="edgefuse-acceptance-$(date +%Y%m%d-%H%M%S)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: $0 [--venv DIR] [--profile orin-agx|orin-nx|orin-nano] [--out DIR]" >&2; exit 2 ;;
  esac
done
PY="$VENV/bin/python"
EF=("$PY" -m edgefuse.cli)
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
: > "$STEPS"
FAILED=0

# step NAME CMD… — runs CMD, keeps its output in OUT/NAME.log, records NAME, exit status and seconds
step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$OUT/commands.txt"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%d\t%d\n' "$name" "$rc" "$((SECONDS - t0))" >> "$STEPS"
  if [[ $rc -ne 0 ]]; then
    FAILED=$((FAILED + 1))
    echo "   FAILED (exit $rc): tail of $OUT/$name.log" >&2
    tail -n 20 "$OUT/$name.log" >&2
  fi
  return $rc
}

# ---- the machine: L4T, power mode, clocks, TensorRT / CUDA versions
{
  echo "l4t: $(head -n 1 /etc/nv_tegra_release 2>/dev/null || echo unknown)"
  echo "model: $(tr -d '\0' < /proc/device-tree/model 2>/dev/null || echo unknown)"
  echo "nvpmodel: $(nvpmodel -q 2>/dev/null | tr '\n' ' ' || echo unavailable)"
  echo "jetson_clocks: $( (jetson_clocks --show 2>/dev/null || echo unavailable) | tr '\n' ' ' | cut -c1-600)"
  echo "tensorrt: $("$PY" -c 'import tensorrt; print(tensorrt.__version__)' 2>&1)"
  echo "nvcc: $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null) | tail -n 1)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
if [[ -z "$PROFILE" ]]; then
  case "$(tr -d '\0' < /proc/device-tree/model 2>/dev/null)" in
    *"Orin Nano"*) PROFILE=orin-nano ;;
    *"Orin NX"*) PROFILE=orin-nx ;;
    *) PROFILE=orin-agx ;;
  esac
fi
echo "profile: $PROFILE" | tee -a "$OUT/machine.txt"

# ---- CUDA kernels + TensorRT plugins for sm_87
step plugins "${EF[@]}" build-kernels --arch 87 --build-dir "$OUT/plugins-build" --jobs 4 --json
LIB="$(ls "$OUT"/plugins-build/libedgefuse_trt_plugins.so 2>/dev/null || true)"
export EDGEFUSE_TRT_PLUGINS_LIB="$LIB"
export EDGEFUSE_KERNELS_LIB="$(ls "$OUT"/plugins-build/libedgefuse_kernels.so 2>/dev/null || true)"

# ---- models: the bundled FP32/INT8 ONNX; a fresh export + quantization from a recorded log
BUNDLED_ONNX="$("$PY" -c 'from edgefuse.runtime.bundled import FILES; print(FILES["onnx"])')"
step record "${EF[@]}" sim record --scenario default --seed 0 --duration 12 --out "$OUT/drive.mcap"
if "$PY" -c 'import torch' 2>/dev/null; then
  step export "${EF[@]}" export --out "$OUT/edge.onnx" --json
  step export_plugins "${EF[@]}" export --plugins --out "$OUT/edge.plugins.onnx" --json
  ONNX="$OUT/edge.onnx"
else
  echo "torch is not installed: the bundled ONNX export is used ($BUNDLED_ONNX)" | tee -a "$OUT/machine.txt"
  ONNX="$BUNDLED_ONNX"
fi
step quantize "${EF[@]}" quantize "$ONNX" --calib "$OUT/drive.mcap" --out "$OUT/edge.int8.onnx" --json

# ---- engines: FP16 from FP32 ONNX, INT8 from the QDQ file; each run by trtexec with the plugins loaded
TRTEXEC="$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)"
for prec in fp16 int8; do
  src="$ONNX"; [[ $prec == int8 ]] && src="$OUT/edge.int8.onnx"
  step "engine_$prec" "${EF[@]}" build-engine "$src" --profile "$PROFILE" --precision "$prec" \
    --out "$OUT/edge.$prec.engine" ${LIB:+--plugins "$LIB"} --json
  step "trtexec_$prec" "$TRTEXEC" --loadEngine="$OUT/edge.$prec.engine" ${LIB:+--dynamicPlugins="$LIB"} \
    --iterations=200 --warmUp=500 --useSpinWait
done

# ---- replay through each backend, and compare their detections (the first model is the reference)
step replay_onnxruntime "${EF[@]}" replay "$OUT/drive.mcap" --model "$OUT/edge.int8.onnx" --rate max \
  --out "$OUT/replay-ort" --json
for prec in fp16 int8; do
  step "replay_$prec" "${EF[@]}" replay "$OUT/drive.mcap" --model "$OUT/edge.$prec.engine" --rate max \
    --out "$OUT/replay-$prec" --json
done
step compare "${EF[@]}" compare "$OUT/drive.mcap" \
  --models "$ONNX,$OUT/edge.int8.onnx,$OUT/edge.fp16.engine,$OUT/edge.int8.engine" --json

# ---- one report
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
steps = [dict(zip(("step", "exit", "seconds"), line.split("\t"))) for line in
         (out / "steps.tsv").read_text().splitlines()]
machine = dict(line.split(": ", 1) for line in (out / "machine.txt").read_text().splitlines() if ": " in line)
def last_json(name):
    p = out / f"{name}.log"
    for line in reversed(p.read_text().splitlines() if p.is_file() else []):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None
replays = {n: last_json(n) for n in ("replay_onnxruntime", "replay_fp16", "replay_int8")}
engines = {n: last_json(n) for n in ("engine_fp16", "engine_int8")}
trtexec = {}
for prec in ("fp16", "int8"):
    p = out / f"trtexec_{prec}.log"
    lines = [l for l in (p.read_text().splitlines() if p.is_file() else []) if "GPU Compute Time" in l
             or "Throughput" in l or "Latency:" in l]
    trtexec[prec] = lines[-3:]
report = {"machine": machine, "steps": steps, "engines": engines, "trtexec": trtexec,
          "replay": {k: None if v is None else {x: v.get(x) for x in ("frames_published", "e2e_p50_ms",
                     "e2e_p99_ms", "throughput_fps", "backend")} for k, v in replays.items()},
          "compare": last_json("compare")}
(out / "report.json").write_text(json.dumps(report, indent=2))
md = ["# edgefuse deployment acceptance", "", *(f"- {k}: {v}" for k, v in machine.items()), "",
      "| step | exit | s |", "| --- | ---: | ---: |", *(f"| {s['step']} | {s['exit']} | {s['seconds']} |" for s in steps),
      "", "## trtexec", *(f"- {p}: {' / '.join(l.strip() for l in ls)}" for p, ls in trtexec.items()),
      "", "## replay", *(f"- {k}: {v}" for k, v in report["replay"].items()),
      "", "## engines (each record carries the equivalent trtexec command)",
      *(f"- {k}: {json.dumps(v)[:600]}" for k, v in engines.items()),
      "", "## compare", "```", json.dumps(report["compare"], indent=1)[:4000], "```"]
(out / "report.md").write_text("\n".join(md) + "\n")
print(f"report: {out / 'report.md'}")
PY
echo "failed steps: $FAILED (details: $OUT/*.log)"
exit "$FAILED"
