"""Latency report arithmetic, trace-event JSON, PNGs and machine info on hand-made records."""

from __future__ import annotations

import json

import cv2
import numpy as np

from edgefuse.profiling import (
    LatencyRecord,
    format_report,
    histogram_bins,
    jetson_info,
    latency_report,
    machine_info,
    write_histogram_png,
    write_timeline_png,
    write_trace,
)

MS = 1_000_000


def _records() -> list[LatencyRecord]:
    """Frame i: last input received at 100·i ms, reference stamp 30 ms before; stages 1, 2+i, 20+i, 1 ms."""
    out = []
    for i in range(20):
        t = 100 * i * MS
        r = LatencyRecord(stamp_ns=5 * MS + t, reference_ns=t - 30 * MS, receive_ns=t)
        r.sync_emit_ns = t + 1 * MS
        r.preprocess_start_ns = r.sync_emit_ns
        r.preprocess_end_ns = r.preprocess_start_ns + (2 + i) * MS
        r.infer_start_ns = r.preprocess_end_ns
        r.infer_end_ns = r.infer_start_ns + (20 + i) * MS
        r.decode_start_ns = r.infer_end_ns
        r.decode_end_ns = r.decode_start_ns + 1 * MS
        r.publish_ns = r.decode_end_ns
        out.append(r)
    skipped = LatencyRecord(stamp_ns=0, reference_ns=0, receive_ns=2_100 * MS, sync_emit_ns=2_101 * MS)
    skipped.skipped = "deadline"
    return [*out, skipped]


def test_report_percentiles_and_counts():
    recs = _records()
    e2e = np.array([1 + (2 + i) + (20 + i) + 1 for i in range(20)], float)  # ms, by construction
    r = latency_report(recs, wall_ns=2 * 10**9, frames_dropped={"deadline": 1, "reference_gap": 2},
                       messages_unmatched={"cam": {"late": 3}}, machine={})  # fmt: skip
    assert r["frames"] == 21 and r["frames_published"] == 20
    assert r["e2e_p50_ms"] == round(float(np.percentile(e2e, 50)), 3)
    assert r["e2e_p99_ms"] == round(float(np.percentile(e2e, 99)), 3)
    assert r["data_age_p99_ms"] == round(float(np.percentile(e2e + 30, 99)), 3)
    assert r["stages"]["inference"]["max"] == 39.0 and r["stages"]["inference"]["p50"] == 29.5
    assert r["stages"]["sync"]["p99"] == 1.0
    assert r["deadline_misses"] == 1
    assert r["frames_dropped"] == {"deadline": 1, "reference_gap": 2} and r["frames_dropped_total"] == 3
    assert r["messages_unmatched"] == {"cam": {"late": 3}}
    assert r["throughput_fps"] == 10.0
    intervals = np.diff([float(x.publish_ns) for x in recs[:20]]) / MS  # 102 ms apart
    assert r["jitter"]["publish_interval_p50_ms"] == round(float(np.median(intervals)), 3)


def test_trace_is_chrome_trace_event_json(tmp_path):
    recs = _records()
    doc = json.loads(write_trace(tmp_path / "t.json", recs).read_text())
    ev = doc["traceEvents"]
    inf = [e for e in ev if e.get("ph") == "X" and e["name"] == "inference"]
    assert len(inf) == 20
    # µs from the first receive: frame 3's inference starts at 300 + 1 + 5 ms and lasts 23 ms
    assert inf[3]["ts"] == 306_000.0 and inf[3]["dur"] == 23_000.0
    assert all(isinstance(e["pid"], int) for e in ev)
    assert [e for e in ev if e.get("ph") == "i"][0]["name"] == "skipped: deadline"
    assert {e["args"]["name"] for e in ev if e.get("name") == "thread_name"} >= {"inference", "sinks"}


def test_pngs_are_images(tmp_path):
    recs = _records()
    for p in (write_histogram_png(tmp_path / "h.png", recs), write_timeline_png(tmp_path / "t.png", recs)):
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


def _one(e2e_ms: float, age_ms: float) -> LatencyRecord:
    """A published frame with the given end-to-end latency and data age."""
    ref, recv = int((100 - age_ms) * MS), int((100 - e2e_ms) * MS)
    return LatencyRecord(stamp_ns=0, reference_ns=ref, receive_ns=recv, publish_ns=100 * MS)


def test_odd_runs_still_get_their_pictures_and_report(tmp_path):
    """No frame, one frame, equal latencies, a clock that maps the reference stamp ahead (negative data
    age): the histogram, the timeline and the report are written all the same (the issue saw numpy's
    ``bins must increase monotonically`` end a run without its report)."""
    cases = {"empty": [], "one": [_one(40, 70)], "equal": [_one(40, 40)] * 5,
             "negative": [_one(-3, -8), _one(-1, -2)], "zero": [_one(0, 0)]}  # fmt: skip
    for name, recs in cases.items():
        for p in (write_histogram_png(tmp_path / f"h_{name}.png", recs),
                  write_timeline_png(tmp_path / f"t_{name}.png", recs)):  # fmt: skip
            img = cv2.imread(str(p))
            assert img is not None and img.shape[0] > 100, (name, p)
        r = latency_report(recs, wall_ns=0, frames_dropped={}, messages_unmatched={}, machine={})
        assert r["frames_published"] == len(recs)
        json.dumps(r)
        assert "last error: none" in format_report(r)
    for values in ([], [5.0], [5.0, 5.0], [-8.0, -2.0], [0.0, 250.0], [np.nan, 3.0]):
        bins = histogram_bins(np.array(values))
        assert np.all(np.diff(bins) > 0), values
        finite = [v for v in values if np.isfinite(v)]
        assert bins[0] <= min(finite + [0.0]) and bins[-1] >= max(finite + [0.0]), values


def test_jetson_info_reads_power_mode_and_clocks(tmp_path):
    assert jetson_info(str(tmp_path)) is None  # not a Jetson
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
    conf = "< POWER_MODEL ID=0 NAME=MAXN >\n< POWER_MODEL ID=2 NAME=15W >\n"
    (tmp_path / "etc/nvpmodel.conf").write_text(conf)
    (tmp_path / "var/lib/nvpmodel").mkdir(parents=True)
    (tmp_path / "var/lib/nvpmodel/status").write_text("pmode:0002 fmode:quiet\n")
    cpu = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    cpu.mkdir(parents=True)
    (cpu / "scaling_cur_freq").write_text("1510400\n")
    gpu = tmp_path / "sys/devices/gpu.0/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    (gpu / "cur_freq").write_text("624750000\n")
    info = jetson_info(str(tmp_path))
    assert info["l4t"].startswith("# R36")
    assert info["power_mode"] == "0002" and info["power_mode_name"] == "15W"
    assert info["clocks_hz"] == {"cpu0": 1_510_400_000, "gpu": 624_750_000}


def test_machine_info_names_the_machine():
    m = machine_info()
    assert m["cpus"] >= 1 and m["cpu"] and "numpy" in m["versions"]
