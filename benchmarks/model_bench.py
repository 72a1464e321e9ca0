"""The fusion model's size and CPU latency: parameters, FLOPs, torch (2 threads), onnxruntime FP32 and
static-QDQ INT8 (symmetric int8 activations, and uint8 asymmetric activations; 2 threads), side by side
in one run (interleaved, so machine load hits all alike).

Model: the bundled model when it exists (``edgefuse/runtime/weights/edge.pt``), else the default (edge)
configuration freshly initialised (latency does not depend on the weights). Inputs: the manifest's
fixed shapes with random points in a quarter of the pillars (:func:`edgefuse.engine.export.example_feed`).

    .venv/bin/python benchmarks/model_bench.py [--runs 20] [--config edge|large]   # ~1–2 min
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _report import DOCS, machine, write_json

from edgefuse.engine.export import example_feed, export_onnx
from edgefuse.engine.quantize import quantize_int8
from edgefuse.model.checkpoint import load_model, new_model, save_model
from edgefuse.model.config import CONFIGS, edge_spec
from edgefuse.model.network import DecodedNet
from edgefuse.runtime.bundled import FILES
from edgefuse.runtime.feed import INPUT_NAMES

BUNDLED = FILES["pt"]  # the bundled model (edgefuse.runtime.bundled)


def flops(net, args) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net.forward_decoded(*args)
    return int(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="edge")
    ap.add_argument("--out", default=str(DOCS / "model_bench.json"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.config == "edge" and BUNDLED.is_file():
            pt, which = BUNDLED, "bundled"
        else:
            net, manifest = new_model(edge_spec(), CONFIGS[a.config])
            pt, which = tmp / "m.pt", f"{a.config} (untrained)"
            save_model(pt, net.eval(), manifest)
        net, manifest = load_model(pt)
        feed = example_feed(manifest)
        args = tuple(torch.from_numpy(feed[n]) for n in INPUT_NAMES)
        n_params = sum(p.numel() for p in net.parameters())
        n_flops = flops(net, args)
        fp32 = export_onnx(pt, tmp / "m.onnx")
        calib = [example_feed(manifest, s) for s in range(4)]
        int8, u8 = tmp / "m_int8.onnx", tmp / "m_u8.onnx"
        quantize_int8(fp32, int8, calib)
        quantize_int8(fp32, u8, calib, symmetric_activations=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        sessions = {
            "onnxruntime fp32": ort.InferenceSession(str(fp32), so, providers=["CPUExecutionProvider"]),
            "onnxruntime int8": ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"]),
            "onnxruntime int8 u8-act": ort.InferenceSession(str(u8), so, providers=["CPUExecutionProvider"]),
        }
        dec = DecodedNet(net).eval()

        def run_torch():
            with torch.no_grad():
                dec(*args)

        runners = {"torch fp32": run_torch}
        for k, s in sessions.items():
            runners[k] = lambda s=s: s.run(None, feed)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for r in runners.values():  # warm-up
            r()
        for _ in range(a.runs):
            for k, r in runners.items():
                t0 = time.perf_counter()
                r()
                times[k].append((time.perf_counter() - t0) * 1e3)
        sizes = {"onnx fp32 MB": fp32.stat().st_size / 1e6, "onnx int8 MB": int8.stat().st_size / 1e6}
    rows = {
        k: {"p50_ms": float(np.median(v)), "p99_ms": float(np.percentile(v, 99)), "min_ms": float(min(v))}
        for k, v in times.items()
    }
    base = rows["torch fp32"]["p50_ms"]
    for r in rows.values():
        r["speedup_vs_torch"] = base / r["p50_ms"]
    spec = manifest.tensor_spec
    result = {
        "model": which,
        "config": manifest.model_config,
        "tensor_spec": {
            k: spec[k]
            for k in (
                "image_size",
                "x_range",
                "y_range",
                "pillar_size",
                "max_pillars",
                "max_points_per_pillar",
            )
        },
        "params": n_params,
        "gflops": n_flops / 1e9,
        "sizes": sizes,
        "latency": rows,
        "runs": a.runs,
        "machine": machine(torch, ort),
        "threads": torch.get_num_threads(),
    }
    print(
        f"model: {which}; params {n_params:,}; {n_flops / 1e9:.2f} GFLOPs; "
        f"ONNX {sizes['onnx fp32 MB']:.2f} MB fp32 / {sizes['onnx int8 MB']:.2f} MB int8"
    )
    print(f"{'backend':<24} {'p50 ms':>8} {'p99 ms':>8} {'min ms':>8} {'× torch':>8}")
    for k, r in rows.items():
        print(
            f"{k:<20} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['min_ms']:8.1f} {r['speedup_vs_torch']:8.2f}"
        )
    write_json("model_bench", result, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
