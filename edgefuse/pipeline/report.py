"""A run's report: the summary dict (frames, drops, health, latency percentiles) and its files
(report.json, latency histogram and timeline PNGs, the Chrome/Perfetto trace)."""

from __future__ import annotations

from pathlib import Path

from edgefuse.frames import FrameCore
from edgefuse.profiling import LatencyRecord


def summary(core: FrameCore, records, dropped: dict, wall_ns: int, extra: dict) -> dict:
    """The report of a run: frames, drops by reason, wall time, latency percentiles, plus ``extra``."""
    from edgefuse.profiling import latency_report

    c = core.sync.counters.as_dict()
    frames_dropped = {**c["frames_dropped"]}
    for k, v in dropped.items():
        frames_dropped[k] = frames_dropped.get(k, 0) + v
    messages_unmatched = c["messages_unmatched"]
    extra = {"frames_emitted": c["frames_emitted"], "frames_missing": c["frames_missing"],
             "budget_waits": c["budget_waits"],
             "messages_ignored": dict(core.ignored), "messages_rejected": core.rejected(),
             **extra}  # fmt: skip
    return latency_report(records, wall_ns=wall_ns, frames_dropped=frames_dropped,
                          messages_unmatched=messages_unmatched, extra=extra, machine={})  # fmt: skip


def write_outputs(out_dir: Path, report: dict, records: list[LatencyRecord]) -> dict:
    """report.json, latency_hist.png, timeline.png, trace.json in ``out_dir``; returns their paths."""
    from edgefuse.profiling import (
        machine_info,
        write_histogram_png,
        write_report,
        write_timeline_png,
        write_trace,
    )

    report["machine"] = machine_info()
    files = {
        "histogram_png": str(write_histogram_png(out_dir / "latency_hist.png", records)),
        "timeline_png": str(write_timeline_png(out_dir / "timeline.png", records)),
        "trace_json": str(write_trace(out_dir / "trace.json", records)),
    }
    report["outputs"] = {**report.get("outputs", {}), **files, "report_json": str(out_dir / "report.json")}
    write_report(out_dir / "report.json", report)
    return files
