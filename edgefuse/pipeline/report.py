"""A run's report: the summary dict (frames, drops, health, latency percentiles) and its files
(report.json, latency histogram and timeline PNGs, the Chrome/Perfetto trace)."""

from __future__ import annotations

from pathlib import Path

from edgefuse.frames import MS, FrameCore
from edgefuse.profiling import LatencyRecord


def summary(core: FrameCore, records, dropped: dict, wall_ns: int, extra: dict) -> dict:
    """The report of a run: frames, drops by reason, wall time, latency percentiles, plus ``extra``.

    Besides :func:`~edgefuse.profiling.latency_report`'s keys: ``frames_dropped_by`` (``sync``: frames the
    synchronizer did not emit, by reason; ``pipeline``: frames emitted and not published, by reason — the
    two summed are ``frames_dropped``), ``messages_unmatched_total``, ``silent_sensors`` (sensor →
    ``silent``/``never``, from ``extra["health"]``) and ``last_error`` (None when there was none)."""
    from edgefuse.profiling import latency_report

    c = core.sync.counters.as_dict()
    frames_dropped = {**c["frames_dropped"]}
    for k, v in dropped.items():
        frames_dropped[k] = frames_dropped.get(k, 0) + v
    messages_unmatched = c["messages_unmatched"]
    health = extra.get("health") or {}
    extra = {"frames_emitted": c["frames_emitted"], "frames_missing": c["frames_missing"],
             "budget_waits": c["budget_waits"],
             "messages_ignored": dict(core.ignored), "messages_rejected": core.rejected(),
             "frames_dropped_by": {"sync": c["frames_dropped"], "pipeline": dict(sorted(dropped.items()))},
             "messages_unmatched_total": sum(sum(v.values()) for v in messages_unmatched.values()),
             "silent_sensors": {k: h["status"] for k, h in health.items()
                                if k != "backend" and h.get("status") != "ok"},
             "last_error": None, **extra}  # fmt: skip
    return latency_report(records, wall_ns=wall_ns, frames_dropped=frames_dropped,
                          messages_unmatched=messages_unmatched, extra=extra, machine={})  # fmt: skip


def status_line(
    *,
    frames: int,
    dropped: dict[str, int],
    sync: dict,
    e2e_ns: list[int],
    health: dict[str, dict],
    queues: dict[str, dict],
    log: dict | None,
    last_error: str | None,
) -> str:
    """The pipeline's once-a-second status line, e.g.::

        frames 120 dropped 5 (deadline 3, reference_gap 2) unmatched 7 e2e p50/max 61/118 ms
        | cam_front:30Hz lidar_top:10Hz radar_front:0Hz(SILENT 3.2s) | q 0/2 0/8 log 3/4096
        | log 2 files 812 MB | last error: inference: ValueError: …

    ``dropped``: the pipeline's frame drops by reason; ``sync``: the synchronizer's counters
    (``SyncCounters.as_dict()``: its frame drops and unmatched messages); ``e2e_ns``: recent end-to-end
    latencies; ``health``/``queues``: as in the report; ``log``: :meth:`McapSink.stats` or None."""
    drops = dict(sync.get("frames_dropped", {}))
    for k, v in dropped.items():
        drops[k] = drops.get(k, 0) + v
    drops = {k: v for k, v in drops.items() if v}
    why = ", ".join(f"{k} {v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1]))
    unmatched = sum(sum(v.values()) for v in sync.get("messages_unmatched", {}).values())
    e2e = sorted(e2e_ns)
    p = f"{e2e[len(e2e) // 2] / MS:.0f}/{e2e[-1] / MS:.0f}" if e2e else "-"
    head = f"frames {frames} dropped {sum(drops.values())}" + (f" ({why})" if why else "")
    head += f" unmatched {unmatched} e2e p50/max {p} ms"
    sensors = []
    for k, h in health.items():
        text = f"{k}:{h.get('rate_hz', 0):.0f}Hz"
        if h.get("status") != "ok":
            gone = h.get("silent_for_s")
            text += f"({str(h.get('status')).upper()}" + (f" {gone:.1f}s)" if gone is not None else ")")
        sensors.append(text)
    q = " ".join(f"{v['depth']}/{v['bound']}" for k, v in queues.items() if k != "log_inputs")
    if log is not None and log.get("inputs"):
        li = queues.get("log_inputs", {})
        q += f" log {li.get('depth', 0)}/{li.get('bound', 0)}"
    parts = [head, " ".join(sensors) or "no sensors", f"q {q}"]
    if log is not None:
        n = len(log["files"])
        text = f"log {n} file{'s' if n != 1 else ''} {log['bytes'] / 1e6:.0f} MB"
        lost = sum(log["dropped"]["inputs"].values())
        text += f" (inputs dropped {lost})" if lost else ""
        if log.get("stopped"):
            text += f" STOPPED: {log['stopped']}"
        elif log.get("inputs_stopped"):
            text += f" INPUTS OFF: {log['inputs_stopped']}"
        parts.append(text)
    if last_error:
        parts.append(f"last error: {last_error if len(last_error) <= 120 else last_error[:117] + '...'}")
    return " | ".join(parts)


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
