"""Input logging on vs off: `edgefuse replay LOG --rate 1 --log-inputs` against `--no-log-inputs`, runs
alternated (off, on, off, on …) so that load from other jobs falls on both: the publish stage's p50/p99/max
(decode end → published: where logging on the publishing thread used to show), e2e p99, frames dropped,
and what the log wrote (MB/s and GB/h, inputs dropped, the writer queue's high-water mark).

    .venv/bin/python benchmarks/logging_bench.py [--log LOG] [--duration S] [--repeats 2] [--threads N]

Without ``--log`` the default scenario is recorded (``--duration`` s). The bundled INT8 model runs (or,
before one is trained, a freshly initialised edge model: same cost). Writes docs/logging_bench.json and
the "Input logging (logging_bench)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _report import machine, machine_line, replace_section, untrained_edge_onnx, write_json  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default=None)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=2, help="off/on pairs")
    ap.add_argument("--threads", type=int, default=None, help="backend threads (default: cores − 1)")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)

    import onnxruntime

    from edgefuse.models import load_backend
    from edgefuse.pipeline.replay import run_replay
    from edgefuse.runtime.backends import inference_threads
    from edgefuse.runtime.bundled import FILES

    work = Path(tempfile.mkdtemp(prefix="edgefuse-logging-bench-"))
    model = FILES["int8"] if FILES["int8"].is_file() else untrained_edge_onnx(work)
    log = Path(args.log) if args.log else work / "default.mcap"
    if args.log is None:
        from edgefuse.sim.run import record

        record(log, "default", 0, args.duration, progress=False)
    threads = args.threads or inference_threads()
    backend = load_backend(model, None, threads=threads)
    rows = []
    for i in range(args.repeats):
        for inputs in (False, True):
            out = work / f"run{i}_{'on' if inputs else 'off'}"
            load = os.getloadavg()[0]
            r = run_replay(log, backend, out, rate=1.0, log_inputs=inputs, handle_signals=False)
            lg, pub = r["logging"], r["stages"]["publish"]
            rows.append({
                "inputs": inputs, "repeat": i, "frames": r["frames"], "published": r["frames_published"],
                "frames_dropped": r["frames_dropped"], "publish_p50_ms": pub["p50"],
                "publish_p99_ms": pub["p99"], "publish_max_ms": pub["max"], "e2e_p50_ms": r["e2e_p50_ms"],
                "e2e_p99_ms": r["e2e_p99_ms"], "wall_s": r["wall_s"], "log_mb": round(lg["bytes"] / 1e6, 1),
                "log_mb_per_s": round(lg["bytes"] / 1e6 / r["wall_s"], 2),
                "log_gb_per_h": round(lg["bytes"] / 1e9 / r["wall_s"] * 3600, 1),
                "written": lg["written"], "dropped": lg["dropped"], "queue_max": lg["queue"]["max_depth"],
                "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            })  # fmt: skip
            w = rows[-1]
            print(f"inputs {'on ' if inputs else 'off'} publish p50/p99/max {w['publish_p50_ms']}/"
                  f"{w['publish_p99_ms']}/{w['publish_max_ms']} ms  e2e p99 {w['e2e_p99_ms']} ms  "
                  f"published {w['published']}/{w['frames']}  log {w['log_mb']} MB "
                  f"({w['log_gb_per_h']} GB/h) queue max {w['queue_max']} dropped {w['dropped']['inputs']}",
                  flush=True)  # fmt: skip
    backend.close()
    summary = {}
    for inputs in (False, True):
        p99 = sorted(w["publish_p99_ms"] for w in rows if w["inputs"] == inputs and w["published"])
        summary["on" if inputs else "off"] = {"publish_p99_ms_median": p99[len(p99) // 2] if p99 else None,
                                              "publish_p99_ms_worst": p99[-1] if p99 else None}  # fmt: skip
    print(f"publish p99 (median of {args.repeats} runs): off {summary['off']['publish_p99_ms_median']} ms, "
          f"on {summary['on']['publish_p99_ms_median']} ms")  # fmt: skip
    command = "python benchmarks/logging_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"log": str(log), "model": str(model), "threads": threads, "rows": rows, "summary": summary,
           "machine": machine(onnxruntime), "command": command}  # fmt: skip
    if not args.no_docs:
        write_json("logging_bench", out)
        update_docs(out)
    return out


def update_docs(o: dict) -> None:
    lines = [
        f"`{o['command']}` — `edgefuse replay LOG --rate 1` with `--no-log-inputs` and `--log-inputs`, "
        f"alternated; {o['rows'][0]['frames']} LiDAR frames of a default-scenario simulator log, ONNX "
        f"Runtime ({o['threads']} thread(s)), {Path(o['model']).name}. "
        f"Machine: {machine_line(o['machine'])}. "
        "Publish = decode end → published (realtime sinks sent); the log writes on its own thread. "
        f"Publish p99, median of the runs: inputs off {o['summary']['off']['publish_p99_ms_median']} ms, "
        f"on {o['summary']['on']['publish_p99_ms_median']} ms.",
        "",
        "| inputs logged | publish p50 / p99 / max ms | e2e p50 / p99 ms | published / frames | log MB "
        "| MB/s (GB/h) | inputs dropped | writer queue max | load |",
        "|---|---|---|---|---:|---|---|---:|---|",
    ]
    for w in o["rows"]:
        lines.append(
            f"| {'yes' if w['inputs'] else 'no'} | {w['publish_p50_ms']} / {w['publish_p99_ms']} / "
            f"{w['publish_max_ms']} | {w['e2e_p50_ms']} / {w['e2e_p99_ms']} | {w['published']} / "
            f"{w['frames']} | {w['log_mb']} | {w['log_mb_per_s']} ({w['log_gb_per_h']}) "
            f"| {', '.join(f'{v} {k}' for k, v in w['dropped']['inputs'].items()) or 0} "
            f"| {w['queue_max']} | {w['load_before']} → {w['load_after']} |"
        )
    lines += ["", "JSON: docs/logging_bench.json.", ""]
    replace_section("Input logging (logging_bench)", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
