"""`edgefuse sync report LOG` on a real MCAP log: the simulator's per-message stamps (edgefuse.sim.clocks)
with small payloads, the radar disconnected half-way."""

from __future__ import annotations

import json

import numpy as np

from edgefuse.cli import main
from edgefuse.logs import Recorder
from edgefuse.sim.clocks import message_rng, sim_clocks
from edgefuse.sim.rig import sim_calibration
from edgefuse.types import Image, Imu, Message, Odometry, PointCloud, RadarScan

NS = 1_000_000_000


def _payload(sid, k):
    if sid == "cam_front":
        return Image(np.full((4, 6, 3), k % 255, np.uint8))
    if sid == "lidar_top":
        return PointCloud(np.full((5, 4), float(k), np.float32))
    if sid == "radar_front":
        return RadarScan(np.ones((3, 5), np.float32))
    if sid == "odom":
        return Odometry(np.zeros(3), np.array([0, 0, 0, 1.0]), np.zeros(3), np.zeros(3))
    return Imu(np.zeros(3), np.array([0, 0, 9.8]))


def _write_log(path, seed=4, duration_ns=8 * NS, radar_until_ns=4 * NS):
    msgs = []
    for sid, c in sim_clocks(seed).items():
        for k in range(c.first_index_at_or_after(duration_ns)):
            t = c.capture_time(k)
            if sid == "radar_front" and t >= radar_until_ns:
                break
            rng = message_rng(seed, c.stream, k)
            raw, recv = c.raw_stamp(t, rng), c.recv_time(t, rng)
            msgs.append(Message(sid, t, _payload(sid, k), raw_stamp_ns=raw, recv_ns=recv, seq=k))
    msgs.sort(key=lambda m: m.recv_ns)
    with Recorder(path) as rec:
        rec.write_calibration(sim_calibration())
        rec.write_metadata("sim", {"scenario": "default", "seed": str(seed)})  # → the sim kit
        for m in msgs:
            rec.write(m)
    return msgs


def test_sync_report_cli_json(tmp_path, capsys):
    log = tmp_path / "run.mcap"
    msgs = _write_log(log)
    png = tmp_path / "res.png"
    assert main(["sync", "report", str(log), "--json", "--png", str(png)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kit"] == "sim-default"
    n_lidar = sum(1 for m in msgs if m.sensor_id == "lidar_top")
    # frames keep flowing at the LiDAR rate after the radar went silent, and the report says so
    assert r["frames_emitted"] == n_lidar
    assert r["frames_dropped"] == {}
    assert r["sensors"]["radar_front"]["frames_missing"] >= 35
    assert r["sensors"]["radar_front"]["last_seen_ns"] < 4.1 * NS
    assert r["sensors"]["radar_front"]["silent_for_s"] > 3.5
    assert "silent_for_s" not in r["sensors"]["cam_front"]
    assert r["sensors"]["cam_front"]["frames_missing"] == 0
    cams = sum(1 for m in msgs if m.sensor_id == "cam_front")
    assert sum(r["messages_unmatched"]["cam_front"].values()) == cams - n_lidar
    truth = sim_clocks(4)
    for sid in ("cam_front", "lidar_top", "odom", "imu"):
        s = r["sensors"][sid]
        assert s["jumps"] == 0 and s["clock"] == "estimated"
        assert s["clock_residual"]["p50_ms"] is not None
        # 8 s is short for drift (its estimate starts after 15 s of data): reported as 0 until then
        assert s["drift_ppm"] == 0.0
    # residual = receive − mapped: the transport jitter above the envelope, within a few jitter std
    assert (
        r["sensors"]["cam_front"]["clock_residual"]["p99_ms"] < 6 * truth["cam_front"].latency_jitter_ns / 1e6
    )
    assert png.stat().st_size > 1000


def test_sync_report_bad_log_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "x.mcap"
    bad.write_bytes(b"not an mcap file at all")
    assert main(["sync", "report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "x.mcap" in err and "Traceback" not in err


def test_sync_report_kit_from_topics_without_sim_metadata(tmp_path):
    from edgefuse.sync import sync_report

    log = tmp_path / "plain.mcap"
    msgs = []
    for k in range(30):  # a 10 Hz LiDAR and a 20 Hz radar on host clocks
        msgs.append(
            Message("lid", k * 100_000_000, _payload("lidar_top", k), recv_ns=k * 100_000_000 + 1_000_000)
        )
    for k in range(60):
        msgs.append(
            Message(
                "rad",
                k * 50_000_000 + 7_000_000,
                _payload("radar_front", k),
                recv_ns=k * 50_000_000 + 9_000_000,
            )
        )
    msgs.sort(key=lambda m: m.recv_ns)
    with Recorder(log) as rec:
        for m in msgs:
            rec.write(m)
    r = sync_report(log, png=str(tmp_path / "p.png"))
    assert r["kit"] == "from-log" and r["reference"] == "lid"
    assert r["frames_emitted"] == 30 and r["sensors"]["rad"]["frames_missing"] == 0
