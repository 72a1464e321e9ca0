"""onnxruntime INT8 vs FP32 on this CPU (2 threads), side by side in one run, and which parts of the graph
are worth quantizing.

Model: the bundled model when it exists (``edgefuse/runtime/weights/edge.pt``), else the default (edge)
configuration freshly initialised (speed does not depend on the weights; the accuracy column then only
says how far INT8 moves the head tensors). Frames: two short simulator logs through the real
preprocessing (edge tensor spec, dataset cache): calibration on one (seed 1), timing and head error on
the other (seed 2). Variants (all static QDQ, symmetric int8 activations and per-channel int8 weights
unless said): which module scopes are quantized. All sessions run interleaved in one loop.

    .venv/bin/python benchmarks/deploy_bench.py [--runs 15] [--seconds 1.5]   # ~2 min
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _report import DOCS, machine, machine_line, replace_section, write_json

from edgefuse.engine.export import export_onnx
from edgefuse.engine.quantize import (
    ALL_CONV_AND_FUSION_SCOPES,
    CONV_SCOPES,
    QUANTIZED_SCOPES,
    calibration_feeds,
    head_outputs,
    quantize_int8,
)
from edgefuse.runtime.bundled import FILES

BUNDLED = FILES["pt"]  # the bundled model (edgefuse.runtime.bundled)
DEFAULT = "int8 image+backbone (default)"  # what `edgefuse quantize` writes
VARIANTS = {
    "fp32": None,
    DEFAULT: dict(scopes=QUANTIZED_SCOPES),
    "int8 image+backbone+head": dict(scopes=CONV_SCOPES),
    "int8 image+fusion+backbone+head": dict(scopes=ALL_CONV_AND_FUSION_SCOPES),
    "int8 backbone+head only": dict(scopes=("/backbone/", "/head/")),
    "int8 everything (pillar nets + lift too)": dict(scopes=("",)),
    "int8 default scopes, uint8 asymmetric act.": dict(scopes=QUANTIZED_SCOPES, symmetric_activations=False),
}


def session(path: Path, threads: int = 2, profile: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_profile(path: Path, feeds, tmp: Path) -> dict[str, float]:
    """ms per frame by node scope (first path component after the root) from onnxruntime's profiler."""
    s = session(path, profile=str(tmp / path.stem))
    for f in feeds:
        s.run(None, f)
    trace = json.loads(Path(s.end_profiling()).read_text())
    out: dict[str, float] = defaultdict(float)
    for e in trace:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "")
        if op in ("QuantizeLinear", "DequantizeLinear"):
            key = "Q/DQ"
        else:
            parts = [p for p in name.split("/") if p]
            key = parts[0] if len(parts) > 1 and not parts[0].startswith(("onnx::", "Conv_")) else "other"
        out[key] += e["dur"] / 1e3 / len(feeds)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=1.5, help="simulated seconds per log")
    a = ap.parse_args()
    import torch

    from edgefuse.model.checkpoint import new_model, save_model
    from edgefuse.model.config import CONFIGS, edge_spec
    from edgefuse.sim.run import record

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if BUNDLED.is_file():
            pt, which = BUNDLED, "bundled"
        else:
            net, manifest = new_model(edge_spec(), CONFIGS["edge"])
            pt, which = tmp / "m.pt", "edge (untrained)"
            save_model(pt, net.eval(), manifest)
        fp32 = export_onnx(pt, tmp / "fp32.onnx")
        from edgefuse.runtime.manifest import read_onnx_manifest

        manifest = read_onnx_manifest(fp32)
        logs = []
        for seed in (1, 2):
            logs.append(tmp / f"sim{seed}.mcap")
            record(logs[-1], "urban", seed, a.seconds, progress=False)
        calib = calibration_feeds([logs[0]], manifest, tmp / "cache", max_frames=16)
        test = calibration_feeds([logs[1]], manifest, tmp / "cache", max_frames=16)
        paths, quant_s = {"fp32": fp32}, {}
        for name, kw in VARIANTS.items():
            if kw is None:
                continue
            p = tmp / f"v{len(paths)}.onnx"
            t0 = time.perf_counter()
            quantize_int8(fp32, p, calib, **kw)
            quant_s[name] = time.perf_counter() - t0
            paths[name] = p
        ref = np.concatenate(head_outputs(fp32, test))
        scale = float(np.std(ref))  # the spread of the head values (their mean is mostly the bias prior)
        head_err = {
            k: float(np.sqrt(np.mean((np.concatenate(head_outputs(p, test)) - ref) ** 2)) / scale)
            for k, p in paths.items()
        }
        sessions = {k: session(p) for k, p in paths.items()}
        for s in sessions.values():  # warm-up
            s.run(None, test[0])
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for r in range(a.runs):
            feed = test[r % len(test)]
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
        profiles = {k: op_profile(paths[k], test[:4], tmp) for k in ("fp32", DEFAULT)}
        sizes = {k: p.stat().st_size / 1e6 for k, p in paths.items()}
    rows = {
        k: {
            "p50_ms": float(np.median(v)),
            "min_ms": float(np.min(v)),
            "p90_ms": float(np.percentile(v, 90)),
            "speed_vs_fp32": float(np.median(times["fp32"]) / np.median(v)),
            "head_rms_error_over_std": head_err[k],
            "mb": sizes[k],
            "quantize_s": quant_s.get(k),
        }
        for k, v in times.items()
    }
    result = {
        "model": which,
        "frames": {"calibration": len(calib), "timing": len(test), "sim_seconds_per_log": a.seconds},
        "runs": a.runs,
        "threads": 2,
        "variants": rows,
        "profile_ms_per_frame": profiles,
        "machine": machine(ort, torch),
    }
    print(f"model: {which}; {len(calib)} calibration frames, {len(test)} timing frames; 2 threads")
    head = f"{'variant':<46} {'p50 ms':>7} {'min ms':>7} {'× fp32':>7} {'head err':>9} {'MB':>5}"
    print(head)
    for k, r in rows.items():
        print(
            f"{k:<46} {r['p50_ms']:7.1f} {r['min_ms']:7.1f} {r['speed_vs_fp32']:7.2f} "
            f"{r['head_rms_error_over_std']:9.4f} {r['mb']:5.2f}"
        )
    for k, prof in profiles.items():
        print(f"profile {k}: " + ", ".join(f"{n} {ms:.1f}" for n, ms in prof.items()) + " (ms/frame)")
    write_json("deploy_bench", result)
    body = [
        "`benchmarks/deploy_bench.py` — rerun: `.venv/bin/python benchmarks/deploy_bench.py` (~2 min;",
        "writes `docs/deploy_bench.json`). onnxruntime CPU, 2 intra-op threads, every variant interleaved in",
        f"one loop ({a.runs} runs) on simulator frames through the real preprocessing; model: {which}.",
        "Head error: RMS change of the head tensors vs fp32 over their std (with an untrained model only",
        "indicative; the accuracy gate is `edgefuse compare`/mAP, see docs/deploy.md).",
        f"Machine: {machine_line(result['machine'], with_load=True)}.",
        "",
        "| variant (onnxruntime, 2 threads) | p50 ms | min ms | speed vs fp32 (p50) | head RMS error / std |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for k, r in rows.items():
        body.append(
            f"| {k} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} | {r['speed_vs_fp32']:.2f}× | "
            f"{r['head_rms_error_over_std']:.4f} |"
        )
    body += ["", "Where the time goes (onnxruntime profiler, ms per frame, by module scope):", ""]
    for k, prof in profiles.items():
        body.append(f"- {k}: " + ", ".join(f"{n} {ms:.1f}" for n, ms in list(prof.items())[:8]))
    replace_section("Deployment: onnxruntime INT8 vs FP32 (deploy_bench)", "\n".join(body) + "\n")
    print(f"wrote {DOCS / 'deploy_bench.json'} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
