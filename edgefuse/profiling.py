"""Latency records, reports, plots and traces of the real-time pipeline (``edgefuse.pipeline``).

Every frame carries a :class:`LatencyRecord`: host-clock stamps (int64 ns, from the pipeline's injected
clock) of each stage's start and end. From those (DESIGN §3):

- **end-to-end** = ``publish_ns`` − ``receive_ns`` (receive time of the last input the frame needed);
- **data age** = ``publish_ns`` − ``reference_ns`` (the frame's reference stamp on the host clock);
- per stage: ``sync`` (receive of the last input → sync emit), ``queue`` (emit → preprocess start),
  ``preprocess``, ``wait`` (preprocess end → inference start: the inference queue), ``inference``,
  ``decode``, ``publish`` (decode end → publish).

:func:`latency_report` turns records + counters into the report dict (keys ``e2e_p50_ms``,
``e2e_p99_ms``, ``data_age_p99_ms``, ``frames_dropped``, ``messages_unmatched``, ``deadline_misses``,
``throughput_fps``, ``stages``, ``jitter_ms``, ``machine`` …); :func:`write_histogram_png`,
:func:`write_timeline_png` and :func:`write_trace` write the pictures and the Chrome trace-event JSON
(opens in https://ui.perfetto.dev and chrome://tracing); :func:`machine_info` records the machine
(CPU, GPU, Jetson power mode and clocks when on a Jetson, library versions).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

_MS = 1e6

#: Stage name → (start field, end field) of a :class:`LatencyRecord`, in pipeline order.
STAGES: dict[str, tuple[str, str]] = {
    "sync": ("receive_ns", "sync_emit_ns"),
    "queue": ("sync_emit_ns", "preprocess_start_ns"),
    "preprocess": ("preprocess_start_ns", "preprocess_end_ns"),
    "wait": ("preprocess_end_ns", "infer_start_ns"),
    "inference": ("infer_start_ns", "infer_end_ns"),
    "decode": ("decode_start_ns", "decode_end_ns"),
    "publish": ("decode_end_ns", "publish_ns"),
}


@dataclass
class LatencyRecord:
    """One frame's stamps. ``stamp_ns``: the frame's reference stamp in the message clock (a log's clock
    on replay); every ``*_ns`` below is host time (the pipeline's clock). ``reference_ns``: the reference
    stamp moved onto the host clock; ``receive_ns``: host receive time of the last input the frame used.
    Unset stages stay None (a skipped frame has no inference). ``skipped``: why the frame was not
    published (``deadline`` or ``queue_overflow``), else None."""

    stamp_ns: int
    reference_ns: int
    receive_ns: int
    sync_emit_ns: int | None = None
    preprocess_start_ns: int | None = None
    preprocess_end_ns: int | None = None
    infer_start_ns: int | None = None
    infer_end_ns: int | None = None
    decode_start_ns: int | None = None
    decode_end_ns: int | None = None
    publish_ns: int | None = None
    deadline_ns: int | None = None
    skipped: str | None = None

    @property
    def e2e_ns(self) -> int | None:
        return None if self.publish_ns is None else self.publish_ns - self.receive_ns

    @property
    def data_age_ns(self) -> int | None:
        return None if self.publish_ns is None else self.publish_ns - self.reference_ns

    def stage_ns(self, stage: str) -> int | None:
        a, b = STAGES[stage]
        t0, t1 = getattr(self, a), getattr(self, b)
        return None if t0 is None or t1 is None else t1 - t0


def percentiles_ms(values_ns: Sequence[int]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of int64 ns values, in ms (None when empty). Percentiles by linear
    interpolation (numpy's default)."""
    if len(values_ns) == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values_ns, np.float64) / _MS
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": _r(p50), "p90": _r(p90), "p99": _r(p99), "max": _r(a.max()), "mean": _r(a.mean())}


def _r(x: float) -> float:
    return round(float(x), 3)


def latency_report(
    records: Sequence[LatencyRecord],
    *,
    wall_ns: int,
    frames_dropped: dict[str, int],
    messages_unmatched: dict[str, dict[str, int]],
    extra: dict | None = None,
    machine: dict | None = None,
) -> dict:
    """The report of a run (module doc). ``wall_ns``: the run's duration on the host clock (for
    throughput); ``frames_dropped``: reason → frames lost before publication (sync gaps, queue overflow,
    deadline skips…); ``messages_unmatched``: sensor → reason → messages no frame used (kept apart)."""
    published = [r for r in records if r.publish_ns is not None]
    e2e = [r.e2e_ns for r in published]
    age = [r.data_age_ns for r in published]
    e2e_p = percentiles_ms(e2e)
    age_p = percentiles_ms(age)
    stages = {}
    for s in STAGES:
        v = [x for x in (r.stage_ns(s) for r in published) if x is not None]
        stages[s] = percentiles_ms(v)
    pubs = np.array(sorted(r.publish_ns for r in published), np.int64)
    intervals = np.diff(pubs) / _MS if len(pubs) > 1 else np.zeros(0)
    jitter = {
        "e2e_std_ms": _r(np.std(np.asarray(e2e) / _MS)) if e2e else None,
        "publish_interval_p50_ms": _r(np.median(intervals)) if len(intervals) else None,
        "publish_interval_std_ms": _r(np.std(intervals)) if len(intervals) else None,
        "publish_interval_max_ms": _r(intervals.max()) if len(intervals) else None,
    }
    misses = sum(1 for r in records if r.skipped == "deadline")
    out = {
        "frames": len(records),
        "frames_published": len(published),
        "e2e_p50_ms": e2e_p["p50"],
        "e2e_p90_ms": e2e_p["p90"],
        "e2e_p99_ms": e2e_p["p99"],
        "e2e_max_ms": e2e_p["max"],
        "data_age_p50_ms": age_p["p50"],
        "data_age_p99_ms": age_p["p99"],
        "data_age_max_ms": age_p["max"],
        "frames_dropped": dict(sorted((k, int(v)) for k, v in frames_dropped.items() if v)),
        "frames_dropped_total": int(sum(frames_dropped.values())),
        "messages_unmatched": {k: dict(sorted(v.items())) for k, v in sorted(messages_unmatched.items())},
        "deadline_misses": misses,
        "throughput_fps": _r(len(published) / (wall_ns / 1e9)) if wall_ns > 0 else None,
        "wall_s": _r(wall_ns / 1e9),
        "stages": stages,
        "jitter": jitter,
    }
    if extra:
        out.update(extra)
    out["machine"] = machine if machine is not None else machine_info()
    return out


# ---------------------------------------------------------------- machine


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "Hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    try:
        p = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() or None if p.returncode == 0 else None


def jetson_info(root: str = "/") -> dict | None:
    """Jetson model, L4T release, nvpmodel power mode and CPU/GPU/EMC clocks (Hz) when present, else
    None. ``root`` lets a test point it at a fake sysfs tree."""
    r = Path(root)
    release = _read(str(r / "etc/nv_tegra_release"))
    model = _read(str(r / "proc/device-tree/model"))
    if release is None and (model is None or "jetson" not in model.lower()):
        return None
    info: dict = {
        "model": (model or "").strip("\x00") or None,
        "l4t": release.splitlines()[0] if release else None,
    }
    mode = _read(str(r / "etc/nvpmodel.conf"))
    status = _read(str(r / "var/lib/nvpmodel/status"))  # "pmode:0002 fmode:..." written by nvpmodel
    info["power_mode"] = status.split()[0].split(":", 1)[-1] if status else None
    if mode is not None and info["power_mode"] is not None:
        for line in mode.splitlines():  # "< POWER_MODEL ID=2 NAME=15W >"
            if "POWER_MODEL" in line and f"ID={int(info['power_mode'])} " in line:
                info["power_mode_name"] = line.split("NAME=", 1)[-1].rstrip(" >")
    clocks = {}
    for cpu in sorted((r / "sys/devices/system/cpu").glob("cpu[0-9]*")):
        f = _read(str(cpu / "cpufreq/scaling_cur_freq"))
        if f is not None and f.isdigit():
            clocks[cpu.name] = int(f) * 1000
    for name, pattern in (
        ("gpu", "sys/devices/gpu.0/devfreq/*/cur_freq"),
        ("emc", "sys/kernel/debug/bpmp/debug/clk/emc/rate"),
    ):
        for p in sorted(r.glob(pattern)):
            f = _read(str(p))
            if f is not None and f.isdigit():
                clocks[name] = int(f)
                break
    info["clocks_hz"] = clocks
    return info


def machine_info() -> dict:
    """CPU model and count, load average, GPU, Jetson info (or None), Python and library versions."""
    import importlib.metadata as md

    versions = {}
    for lib in (
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "onnxruntime-gpu",
        "torch",
        "tensorrt",
        "mcap",
    ):
        try:
            versions[lib] = md.version(lib)
        except md.PackageNotFoundError:
            continue
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": load,
        "gpu": _gpu(),
        "jetson": jetson_info(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# ---------------------------------------------------------------- outputs


def write_report(path: str | Path, report: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def write_trace(path: str | Path, records: Iterable[LatencyRecord], process: str = "edgefuse") -> Path:
    """Chrome trace-event JSON (``{"traceEvents": [...]}``, complete events ``ph: "X"`` in µs): one
    track per stage thread (sync, preprocess, inference, sinks), one slice per stage and frame, named by
    the stage with the frame stamp in ``args``; skipped frames get an instant event."""
    records = list(records)
    starts = [r.receive_ns for r in records]
    t0 = min(starts) if starts else 0
    tids = {"sync": 1, "queue": 1, "preprocess": 1, "wait": 2, "inference": 2, "decode": 2, "publish": 3}
    names = {1: "sync + preprocess", 2: "inference", 3: "sinks"}
    events: list[dict] = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": process}}]
    for tid, n in names.items():
        events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": n}})
    for r in records:
        args = {"stamp_ns": r.stamp_ns, "e2e_ms": None if r.e2e_ns is None else r.e2e_ns / _MS}
        for s, (a, b) in STAGES.items():
            t_a, t_b = getattr(r, a), getattr(r, b)
            if t_a is None or t_b is None or s in ("queue", "wait"):
                continue
            events.append({
                "ph": "X", "pid": 1, "tid": tids[s], "name": s, "cat": "stage",
                "ts": (t_a - t0) / 1e3, "dur": max(0, t_b - t_a) / 1e3, "args": args,
            })  # fmt: skip
        if r.skipped:
            t = r.infer_start_ns or r.preprocess_end_ns or r.sync_emit_ns or r.receive_ns
            events.append({
                "ph": "i", "s": "t", "pid": 1, "tid": 2, "name": f"skipped: {r.skipped}",
                "ts": (t - t0) / 1e3, "args": args,
            })  # fmt: skip
    path = Path(path)
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    return path


def histogram_bins(values_ms: np.ndarray, n: int = 50) -> np.ndarray:
    """``n`` increasing bin edges covering ``values_ms`` and 0 (non-finite values ignored): a run with
    one frame, equal latencies or negative ones (a clock mapped ahead) still gets a histogram."""
    v = np.asarray(values_ms, np.float64)
    v = v[np.isfinite(v)]
    lo = min(0.0, float(v.min())) if len(v) else 0.0
    hi = max(0.0, float(v.max())) if len(v) else 1.0
    span = max(hi - lo, 1.0)
    return np.linspace(lo, lo + span * 1.05, n)


def write_histogram_png(path: str | Path, records: Sequence[LatencyRecord], title: str = "") -> Path:
    """Histogram of end-to-end latency and data age (ms) with their p50/p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e2e = np.array([r.e2e_ns for r in records if r.publish_ns is not None], np.float64) / _MS
    age = np.array([r.data_age_ns for r in records if r.publish_ns is not None], np.float64) / _MS
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(e2e):
        bins = histogram_bins(np.concatenate([e2e, age]))
        ax.hist(e2e, bins=bins, alpha=0.6, label="end-to-end (publish − last receive)")
        ax.hist(age, bins=bins, alpha=0.6, label="data age (publish − reference stamp)")
        for v, c in ((np.percentile(e2e, 99), "C0"), (np.percentile(age, 99), "C1")):
            ax.axvline(v, color=c, ls="--", lw=1)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no frame was published", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("ms")
    ax.set_ylabel("frames")
    ax.set_title(title or f"latency ({len(e2e)} frames; dashed: p99)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_timeline_png(path: str | Path, records: Sequence[LatencyRecord], max_frames: int = 60) -> Path:
    """Per-stage timeline of the first ``max_frames`` frames: one row per frame, one coloured bar per
    stage from the last input's receive time (ms since the first frame's receive); skipped frames red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = list(records)[:max_frames]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.14 * len(recs) + 1.2)))
    t0 = recs[0].receive_ns if recs else 0
    colors = {s: f"C{i}" for i, s in enumerate(STAGES)}
    for i, r in enumerate(recs):
        for s, (a, b) in STAGES.items():
            t_a, t_b = getattr(r, a), getattr(r, b)
            if t_a is None or t_b is None:
                continue
            ax.barh(i, (t_b - t_a) / _MS, left=(t_a - t0) / _MS, color=colors[s], height=0.8)
        if r.skipped:
            ax.plot([(r.receive_ns - t0) / _MS], [i], "rx")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, list(colors), fontsize=7, ncol=len(colors), loc="upper left")
    ax.set_xlabel("host time since the first frame's last input, ms")
    ax.set_ylabel("frame")
    ax.invert_yaxis()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def records_as_dicts(records: Iterable[LatencyRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def format_report(r: dict) -> str:
    """The human view of a report (any report of the pipeline: keys it lacks are left out)."""

    def ms(x):
        return "-" if x is None else f"{x:.1f}"

    def reasons(d: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "none"

    lines = [
        f"frames {r.get('frames', 0)} (published {r.get('frames_published', 0)}), "
        f"{r.get('throughput_fps')} frames/s, wall {r.get('wall_s')} s"
        + (f", stopped: {r['stopped']}" if r.get("stopped") else ""),
        f"e2e p50 {ms(r.get('e2e_p50_ms'))} ms  p99 {ms(r.get('e2e_p99_ms'))} ms  "
        f"max {ms(r.get('e2e_max_ms'))} ms; data age p99 {ms(r.get('data_age_p99_ms'))} ms",
        f"frames dropped {r.get('frames_dropped_total', 0)} {r.get('frames_dropped', {})}; "
        f"deadline misses {r.get('deadline_misses', 0)}",
    ]
    by = r.get("frames_dropped_by")
    if by is not None:
        lines.append(f"  by the synchronizer: {reasons(by['sync'])}; "
                     f"by the pipeline: {reasons(by['pipeline'])}")  # fmt: skip
    unmatched = r.get("messages_unmatched", {})
    total = r.get("messages_unmatched_total", sum(sum(v.values()) for v in unmatched.values()))
    lines.append(f"messages unmatched {total}" + "".join(
        f"; {sid}: {reasons(v)}" for sid, v in unmatched.items()))  # fmt: skip
    if r.get("stages"):
        lines.append("stage        p50     p90     p99     max (ms)")
        for s, p in r["stages"].items():
            lines.append(f"{s:10s} {ms(p['p50']):>7} {ms(p['p90']):>7} {ms(p['p99']):>7} {ms(p['max']):>7}")
    for sid, h in r.get("health", {}).items():
        status = h["status"] if h["status"] == "ok" or h.get("silent_for_s") is None else (
            f"{h['status'].upper()} for {h['silent_for_s']:.1f} s")  # fmt: skip
        if h["status"] == "never":
            status = "NEVER (no message)"
        lines.append(f"  {sid:14s} {h['messages']:6d} msgs {h['rate_hz']:6.1f} Hz  {status}")
    silent = r.get("silent_sensors")
    if silent:
        lines.append(f"silent sensors: {', '.join(f'{k} ({v})' for k, v in silent.items())}")
    lg = r.get("logging")
    if lg is not None:
        n = len(lg["files"])
        dropped = {k: sum(v.values()) for k, v in lg["dropped"].items()}
        inputs = (f"{lg['written']['inputs']} written, {dropped['inputs']} dropped "
                  f"({reasons(lg['dropped']['inputs'])})") if lg["inputs"] else "not logged"  # fmt: skip
        lines.append(
            f"log: {n} file{'s' if n != 1 else ''}, {lg['bytes'] / 1e6:.1f} MB; inputs {inputs}; "
            f"detections {lg['written']['detections']} written, {dropped['detections']} dropped"
            + (f" ({reasons(lg['dropped']['detections'])})" if dropped["detections"] else "")
        )
        for key in ("inputs_stopped", "stopped"):
            if lg.get(key):
                lines.append(f"  log {key.replace('_', ' ')}: {lg[key]}")
    errors = r.get("errors")
    if errors:
        lines.append(f"errors: {reasons(errors)}")
    lines.append(f"last error: {r['last_error']}" if r.get("last_error") else "last error: none")
    return "\n".join(lines)
