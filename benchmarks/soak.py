"""Soak test of the real-time pipeline (not run in CI): a simulator log looped at real-time rate through
the threaded pipeline (ONNX Runtime, ``--threads`` intra-op threads, default 1) for ``--duration``
seconds (default 600 = 10 minutes), sampling the process RSS every 5 s.

Reports: frames, frames dropped (by reason), deadline misses, e2e p50/p99, data age p99, throughput,
RSS after warm-up (median of the first minute's samples, or the first 20 % of a shorter run) vs. the
end (median of the last minute / 20 %) and the growth in %; acceptance (issue): growth < 5 %, no drops.

    .venv/bin/python benchmarks/soak.py [--duration 600] [--model M.onnx] [--log LOG.mcap] [--threads 2]

Without ``--model`` the bundled INT8 model runs (``edge.int8.onnx``, the runtime default), or, before
one is trained, a freshly initialised edge model exported to ONNX (untrained weights: the cost is the
same); without ``--log`` a 20 s default-scenario log is recorded. Writes docs/soak.json and the
"Pipeline soak" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import replace_section, untrained_edge_onnx  # noqa: E402  (benchmarks/ is on sys.path)

from edgefuse.adapters.base import Source  # noqa: E402
from edgefuse.types import Message  # noqa: E402


class LoopedLog(Source):
    """A log replayed at ``rate`` forever: lap k shifts every stamp by k × (the LiDAR's span + one LiDAR
    period), so the reference stream stays periodic and monotonic across the seam."""

    live = False

    def __init__(self, path: Path, rate: float = 1.0):
        from edgefuse.logs import LogReader

        self.path, self.rate, self.uri = path, rate, f"loop://{path}"
        r = LogReader(path)
        ref = r.topics()["/lidar_top/points"]  # the reference sensor stays periodic across the seam
        period = (ref.last_ns - ref.first_ns) // max(1, ref.count - 1)
        self.span = int(ref.last_ns - ref.first_ns + period)
        self.calibration = r.calibration()
        self._stop = threading.Event()
        self.laps = 0

    def _stream(self):
        from edgefuse.logs import LogReader

        lap = 0
        while not self._stop.is_set():
            shift = lap * self.span
            for topic, m in LogReader(self.path).messages():
                if self._stop.is_set():
                    return
                yield topic, Message(m.sensor_id, m.stamp_ns + shift, m.payload,
                                     raw_stamp_ns=m.raw_stamp_ns + shift, recv_ns=m.recv_ns + shift,
                                     frame=m.frame, seq=m.seq)  # fmt: skip
            lap += 1
            self.laps = lap

    def __iter__(self):
        from edgefuse.logs import replay

        for _t, m in replay(self._stream(), self.rate, sleep=self._stop.wait):
            if self._stop.is_set():
                return
            yield m

    def stats(self):
        return {"laps": self.laps}

    def close(self):
        self._stop.set()


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--threads", type=int, default=1, help="backend threads (1 beats 2 on a 2-core box)")
    ap.add_argument("--json", default=str(ROOT / "docs" / "soak.json"))
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)

    from edgefuse.frames import PipelineConfig
    from edgefuse.models import load_backend
    from edgefuse.pipeline.loop import Pipeline
    from edgefuse.pipeline.timebase import Timebase
    from edgefuse.profiling import machine_info
    from edgefuse.sim.rig import sim_kit

    work = Path(tempfile.mkdtemp(prefix="edgefuse-soak-"))
    from edgefuse.runtime.bundled import FILES

    if args.model:
        model, desc = args.model, f"model {args.model}"
    elif FILES["int8"].is_file():
        model, desc = FILES["int8"], "the bundled INT8 model edge.int8.onnx"
    else:
        model, desc = untrained_edge_onnx(work), "untrained edge model (fp32)"
    log = Path(args.log) if args.log else work / "soak.mcap"
    if args.log is None:
        from edgefuse.sim.run import record

        record(log, "default", 0, 20.0, progress=False)
    backend = load_backend(model, None, threads=args.threads)
    src = LoopedLog(log)
    pipe = Pipeline({"log": src}, sim_kit(), src.calibration, backend, config=PipelineConfig(),
                    timebase=Timebase("paced", 1.0))  # fmt: skip
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(pipe.run(args.duration)), daemon=True)
    t0 = time.monotonic()
    t.start()
    samples = []
    while t.is_alive():
        t.join(5.0)
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb(), 1)))
    rss = np.array([s[1] for s in samples])
    k = max(1, min(12, len(rss) // 5))  # a minute of 5 s samples, or a fifth of a short run
    start, end = float(np.median(rss[1 : k + 1] if len(rss) > k + 1 else rss[:k])), float(np.median(rss[-k:]))
    r = result
    out = {
        "duration_s": args.duration,
        "threads": args.threads,
        "model": str(model),
        "model_description": desc,
        "log": str(log),
        "laps": src.laps,
        "frames": r["frames"],
        "frames_published": r["frames_published"],
        "frames_dropped": r["frames_dropped"],
        "deadline_misses": r["deadline_misses"],
        "e2e_p50_ms": r["e2e_p50_ms"],
        "e2e_p99_ms": r["e2e_p99_ms"],
        "data_age_p99_ms": r["data_age_p99_ms"],
        "throughput_fps": r["throughput_fps"],
        "stages_p50_ms": {s: v["p50"] for s, v in r["stages"].items()},
        "rss_start_mb": round(start, 1),
        "rss_end_mb": round(end, 1),
        "rss_growth_pct": round(100 * (end - start) / start, 2),
        "rss_samples": samples,
        "queues": r["queues"],
        "machine": machine_info(),
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"{'duration s':>12} {'frames':>7} {'dropped':>8} {'misses':>7} {'e2e p50':>8} {'e2e p99':>8} "
          f"{'age p99':>8} {'fps':>6} {'RSS MB start→end':>18} {'growth %':>9}")  # fmt: skip
    print(f"{args.duration:12.0f} {out['frames']:7d} {sum(out['frames_dropped'].values()):8d} "
          f"{out['deadline_misses']:7d} {out['e2e_p50_ms'] or 0:8.1f} {out['e2e_p99_ms'] or 0:8.1f} "
          f"{out['data_age_p99_ms'] or 0:8.1f} {out['throughput_fps'] or 0:6.2f} "
          f"{out['rss_start_mb']:8.0f} → {out['rss_end_mb']:<7.0f} {out['rss_growth_pct']:9.2f}")  # fmt: skip
    Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.no_docs:
        update_docs(out)
    return out


def update_docs(o: dict) -> None:
    m = o["machine"]
    body = (
        f"`{o['command']}` — machine: {m['cpu']}, {m['cpus']} CPUs, load average {m['loadavg']} at the end. "
        "A 20 s default-scenario simulator log looped at real-time rate "
        f"through the threaded pipeline (ONNX Runtime, {o['threads']} intra-op thread(s), "
        f"{o['model_description']}, deadline 100 ms).\n\n"
        "| run s | frames | dropped | deadline misses | e2e p50 ms | e2e p99 ms | data age p99 ms | fps "
        "| RSS start → end MB | RSS growth |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"
        f"| {o['duration_s']:.0f} | {o['frames']} "
        f"| {sum(o['frames_dropped'].values())} {o['frames_dropped']} "
        f"| {o['deadline_misses']} | {o['e2e_p50_ms']} | {o['e2e_p99_ms']} | {o['data_age_p99_ms']} "
        f"| {o['throughput_fps']} | {o['rss_start_mb']} → {o['rss_end_mb']} | {o['rss_growth_pct']} % |\n\n"
        "Per-stage p50 ms: " + ", ".join(f"{k} {v}" for k, v in o["stages_p50_ms"].items()) + ". "
        "JSON: docs/soak.json (RSS sampled every 5 s).\n"
    )
    replace_section("Pipeline soak", body)


if __name__ == "__main__":
    main()
