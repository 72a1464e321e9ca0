"""`edgefuse replay LOG --rate 1.0` on the default simulator log, fp32 and INT8 ONNX side by side in one
run (ONNX Runtime, each of ``--threads``): frames dropped, deadline misses, e2e p50/p99, data age p99,
per-stage p50, throughput — as the pipeline reports them (issue acceptance: no frame dropped, e2e p99
≤ 100 ms with the INT8 model).

    .venv/bin/python benchmarks/pipeline_replay.py [--log LOG] [--model M.onnx] [--threads 1,2] [--duration S]

Without ``--model`` the bundled model runs (``edge.onnx`` and ``edge.int8.onnx``), or, before one is
trained, a freshly initialised edge model (same cost) and its INT8 quantization on the log's first 8
frames; with ``--model M.onnx`` the INT8 side is M quantized that way. Without ``--log`` the default
scenario is recorded (``--duration`` s). Writes docs/pipeline_replay.json and the "Pipeline replay"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _report import replace_section, untrained_edge_onnx  # noqa: E402  (benchmarks/ is on sys.path)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", default="1,2", help="comma-separated backend thread counts")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)

    from edgefuse.engine.profile import int8_model
    from edgefuse.logs import LogReader
    from edgefuse.models import load_backend
    from edgefuse.pipeline.replay import kit_for_log, run_replay
    from edgefuse.profiling import machine_info

    work = Path(tempfile.mkdtemp(prefix="edgefuse-replay-bench-"))
    from edgefuse.runtime.bundled import FILES

    bundled = args.model is None and FILES["onnx"].is_file() and FILES["int8"].is_file()
    if args.model:
        model, desc = Path(args.model), f"model {args.model}"
    elif bundled:
        model, desc = FILES["onnx"], "the bundled model (edge.onnx, edge.int8.onnx)"
    else:
        model, desc = untrained_edge_onnx(work), "untrained edge model (same cost as a trained one)"
    log = Path(args.log) if args.log else work / "default.mcap"
    if args.log is None:
        from edgefuse.sim.run import record

        record(log, "default", 0, args.duration, progress=False)
    reader = LogReader(log)
    int8 = FILES["int8"] if bundled else int8_model(model, work, reader, kit_for_log(reader, None),
                                                      reader.calibration())  # fmt: skip
    rows = []
    combos = [(p, m, int(t)) for t in args.threads.split(",") for p, m in (("fp32", model), ("int8", int8))]
    for precision, path, threads in combos:
        load = os.getloadavg()
        backend = load_backend(path, None, threads=threads)
        r = run_replay(log, backend, work / f"out_{precision}_{threads}", rate=1.0, handle_signals=False)
        backend.close()
        rows.append({
            "precision": precision, "threads": threads,
            "frames": r["frames"], "published": r["frames_published"],
            "frames_dropped": r["frames_dropped"], "frames_dropped_total": r["frames_dropped_total"],
            "deadline_misses": r["deadline_misses"],
            "e2e_p50_ms": r["e2e_p50_ms"], "e2e_p99_ms": r["e2e_p99_ms"],
            "data_age_p99_ms": r["data_age_p99_ms"], "fps": r["throughput_fps"],
            "stages_p50_ms": {s: v["p50"] for s, v in r["stages"].items()},
            "inference_p99_ms": r["stages"]["inference"]["p99"],
            "loadavg_before": [round(x, 2) for x in load],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        })  # fmt: skip
    print(f"{'precision':9s} {'thr':>3s} {'frames':>6s} {'pub':>5s} {'dropped':>8s} {'e2e p50':>8s} "
          f"{'e2e p99':>8s} {'age p99':>8s} {'pre':>6s} {'infer':>6s} {'inf p99':>8s} {'fps':>6s}  "
          "load 1-min")  # fmt: skip
    for w in rows:
        st = w["stages_p50_ms"]
        print(f"{w['precision']:9s} {w['threads']:3d} {w['frames']:6d} {w['published']:5d} "
              f"{w['frames_dropped_total']:8d} "
              f"{w['e2e_p50_ms'] or 0:8.1f} {w['e2e_p99_ms'] or 0:8.1f} {w['data_age_p99_ms'] or 0:8.1f} "
              f"{st['preprocess'] or 0:6.1f} {st['inference'] or 0:6.1f} {w['inference_p99_ms'] or 0:8.1f} "
              f"{w['fps'] or 0:6.2f}  {w['loadavg_before'][0]}→{w['loadavg_after'][0]}")  # fmt: skip
    out = {
        "log": str(log),
        "model": desc,
        "rows": rows,
        "machine": machine_info(),
        "command": "python benchmarks/pipeline_replay.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if not args.no_docs:
        (ROOT / "docs" / "pipeline_replay.json").write_text(json.dumps(out, indent=2))
        update_docs(out)
    return out


def update_docs(o: dict) -> None:
    m = o["machine"]
    lines = [
        f"`{o['command']}` — `edgefuse replay LOG --rate 1.0` (threaded pipeline, deadline 100 ms) on a "
        f"default-scenario simulator log ({o['rows'][0]['frames']} LiDAR frames), ONNX Runtime (intra-op "
        f"threads per row), {o['model']}. Machine: {m['cpu']}, {m['cpus']} CPUs "
        "(1-min load average before → after each run in the last column).",
        "",
        "| precision | threads | frames | published | dropped (reason) | e2e p50 ms | e2e p99 ms "
        "| data age p99 ms | preprocess p50 | inference p50 / p99 | fps | load |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in o["rows"]:
        st = w["stages_p50_ms"]
        lines.append(
            f"| {w['precision']} | {w['threads']} | {w['frames']} | {w['published']} "
            f"| {w['frames_dropped_total']} "
            f"{w['frames_dropped']} | {w['e2e_p50_ms']} | {w['e2e_p99_ms']} | {w['data_age_p99_ms']} "
            f"| {st['preprocess']} | {st['inference']} / {w['inference_p99_ms']} | {w['fps']} "
            f"| {w['loadavg_before'][0]} → {w['loadavg_after'][0]} |"
        )
    lines += ["", "JSON: docs/pipeline_replay.json (per-stage p50 of every stage, machine).", ""]
    body = "\n".join(lines) + "\n"
    replace_section("Pipeline replay", body)


if __name__ == "__main__":
    main()
