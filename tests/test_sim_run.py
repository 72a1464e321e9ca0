"""The simulator's message generator and shells: determinism, clocks and their recorded truth, ground
truth, ego sensors, the record CLI (also SIGKILLed) and the live sim:// source (`sim serve`:
test_sim_serve.py)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgefuse.cli import main
from edgefuse.errors import InputError
from edgefuse.logs import LogReader
from edgefuse.sim.rig import sim_calibration
from edgefuse.sim.run import Simulator, parse_sim_uri, record, sim_source
from edgefuse.types import CompressedImage, Detections, Imu, Odometry, PointCloud, RadarScan

NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """A monotonic clock that advances ``step`` ns per reading, and a sleep that advances it."""

    def __init__(self, start: int = 5 * NS, step: int = 1_000_000):
        self.now = start
        self.step = step
        self.slept = 0.0

    def __call__(self) -> int:
        self.now += self.step
        return self.now

    def sleep(self, s: float) -> None:
        self.slept += s
        self.now += int(s * NS)


# ---------------------------------------------------------------- determinism


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("simlogs")
    out = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        path = d / f"{name}.mcap"
        record(path, "default", seed, 0.35, progress=False, clock=FakeClock())
        out[name] = path
    return out


def test_same_seed_identical_bytes_different_seed_different(logs):
    a, b, c = (logs[k].read_bytes() for k in "abc")
    assert a == b
    assert a != c
    ra, rc = LogReader(logs["a"]), LogReader(logs["c"])
    pa = [m.payload for _, m in ra.messages(["/lidar_top/points"])]
    pc = [m.payload for _, m in rc.messages(["/lidar_top/points"])]
    assert not np.array_equal(pa[0].data, pc[0].data)


def test_log_content_and_clock_truth(logs):
    r = LogReader(logs["a"])
    topics = r.topics()
    for t in (
        "/cam_front/image_raw/compressed",
        "/lidar_top/points",
        "/radar_front/points",
        "/odom/odom",
        "/imu/imu",
        "/ground_truth/detections",
        "/ego_truth/odom",
    ):
        assert t in topics, t
    assert topics["/ground_truth/detections"].count == topics["/lidar_top/points"].count
    sensor_topics = [
        t for t in topics if not t.startswith(("/ground_truth", "/tf_static")) and "info" not in t
    ]
    msgs = [m for _, m in r.messages(sensor_topics)]
    assert not r.errors
    kinds = {m.sensor_id: type(m.payload) for m in msgs}
    assert kinds["cam_front"] is CompressedImage and kinds["lidar_top"] is PointCloud
    assert kinds["radar_front"] is RadarScan and kinds["odom"] is Odometry and kinds["imu"] is Imu
    recv = [m.recv_ns for m in msgs]
    assert recv == sorted(recv)  # host-receive order
    meta = r.metadata()
    assert meta["sim"]["scenario"] == "default" and meta["sim"]["seed"] == "3"
    clocks = {k: json.loads(v) for k, v in meta["sim.clocks"].items() if k != "model"}
    assert set(clocks) == {"cam_front", "lidar_top", "radar_front", "odom", "imu"}
    for m in msgs:
        c = clocks.get(m.sensor_id)
        if c is None:
            continue
        # raw stamp = offset + (t + delay)(1 + drift) + jitter: within 6 σ of the recorded model
        model = c["offset_ns"] + (m.stamp_ns + c["stamp_delay_ns"]) * (1 + c["drift_ppm"] * 1e-6)
        assert abs(m.raw_stamp_ns - model) <= 6 * c["jitter_ns"] + 1
        assert m.recv_ns - m.stamp_ns >= c["stamp_delay_ns"]
        assert m.recv_ns - m.stamp_ns < c["latency_ns"] + 10 * c["latency_jitter_ns"]
    cal = r.calibration()
    ref = sim_calibration()
    assert np.allclose(cal.extrinsics["lidar_top"].matrix(), ref.extrinsics["lidar_top"].matrix())
    assert cal.time_offsets_ns == ref.time_offsets_ns


def test_rates_and_ground_truth_at_every_lidar_stamp():
    sim = Simulator("default", 1, sensors=("lidar_top", "radar_front", "odom", "imu"))
    msgs = list(sim.messages(int(0.6 * NS)))
    n = Counter(m.sensor_id for m in msgs)
    assert 5 <= n["lidar_top"] <= 7 and 11 <= n["radar_front"] <= 13
    assert 29 <= n["odom"] <= 31 and 119 <= n["imu"] <= 121 and n["ego_truth"] == n["odom"]
    lidar = {m.stamp_ns: m for m in msgs if m.sensor_id == "lidar_top"}
    gt = {m.stamp_ns: m for m in msgs if m.sensor_id == "ground_truth"}
    assert set(gt) == set(lidar)
    for stamp, m in lidar.items():
        t = m.payload.column("t_ns")
        assert t.max() <= 0 and t.min() > -0.11 * NS  # stamped at the sweep's end
        assert gt[stamp].payload.stamp_ns == stamp and gt[stamp].payload.objects
    seqs = [m.seq for m in msgs if m.sensor_id == "imu"]
    assert seqs == list(range(len(seqs)))


def test_sensor_clock_drift_recoverable_from_stamps():
    """A line fit of raw stamp vs true time gives each sensor's recorded drift and offset."""
    sim = Simulator("default", 9, sensors=("imu",), truth=False)
    msgs = list(sim.messages(8 * NS))
    t = np.array([m.stamp_ns for m in msgs], dtype=np.float64)
    raw = np.array([m.raw_stamp_ns for m in msgs], dtype=np.float64)
    c = json.loads(sim.metadata()["sim.clocks"]["imu"])
    slope, icpt = np.polyfit(t - t[0], raw - raw[0], 1)
    assert (slope - 1) * 1e6 == pytest.approx(c["drift_ppm"], abs=1.0)
    period = np.diff(t).mean()
    assert period == pytest.approx(5e6 / (1 + c["drift_ppm"] * 1e-6), rel=1e-6)


# ---------------------------------------------------------------- ego sensors


def test_imu_and_odometry_against_the_truth():
    sim = Simulator("calibration-board", 0, sensors=("odom", "imu"))
    msgs = list(sim.messages(int(sim.world.duration_hint_ns)))
    T_base_imu = sim_calibration().extrinsics["imu"]
    imu = [m for m in msgs if m.sensor_id == "imu"]
    truth = [m for m in msgs if m.sensor_id == "ego_truth"]
    odom = [m for m in msgs if m.sensor_id == "odom"]
    # standing still (board phase): the accelerometer reads gravity, the gyro only its bias
    still = [m.payload for m in imu if m.stamp_ns < 20 * NS]
    acc = np.array([p.linear_acceleration for p in still])
    gyro = np.array([p.angular_velocity for p in still])
    assert np.linalg.norm(acc.mean(0)) == pytest.approx(9.80665, abs=0.15)
    assert np.linalg.norm(gyro.mean(0)) < 0.01
    # driving: the gyro's yaw rate (rotated into base_link) follows the true yaw rate
    tr = {m.stamp_ns: m.payload for m in truth}
    t_truth = np.array(sorted(tr))
    w_true = np.array([tr[t].angular_velocity[2] for t in t_truth])
    drive = [m for m in imu if m.stamp_ns > sim.world.duration_hint_ns - 17 * NS]
    w_imu = np.array([(T_base_imu.rotation @ m.payload.angular_velocity)[2] for m in drive])
    w_ref = np.interp([m.stamp_ns for m in drive], t_truth, w_true)
    assert np.max(np.abs(w_ref)) > 0.5
    assert np.mean(np.abs(w_imu - w_ref)) < 0.02
    # … and is exactly the heading change over each sample period (an averaging gyro) plus bias and noise
    clock = sim.clocks["imu"]
    k = np.array([m.seq for m in drive])
    t_k = np.array([clock.capture_time(int(i)) for i in k])
    t_prev = np.array([clock.capture_time(int(i) - 1) for i in k])
    yaw = np.array([e.yaw for e in sim.world.ego_states(np.concatenate([t_k, t_prev]))])
    dyaw = (yaw[: len(k)] - yaw[len(k) :] + np.pi) % (2 * np.pi) - np.pi
    w_mean = dyaw * NS / (t_k - t_prev)
    bias = (T_base_imu.rotation @ sim.ego_noise.gyro_bias)[2]
    resid = w_imu - bias - w_mean
    assert np.max(np.abs(resid)) < 5 * sim.ego_noise.gyro_std and abs(resid.mean()) < 5e-4
    # odometry: measured speed within 2 % + noise of the truth; dead-reckoned path drifts only a little
    v_od = np.array([m.payload.linear_velocity[0] for m in odom])
    v_tr = np.array([tr[m.stamp_ns].linear_velocity[0] for m in odom])
    assert np.max(np.abs(v_od - v_tr)) < 0.02 * v_tr.max() + 0.1
    p_tr0, p_tr1 = tr[odom[0].stamp_ns], tr[odom[-1].stamp_ns]
    yaw0 = 2 * math.atan2(p_tr0.orientation[2], p_tr0.orientation[3])
    c, s = math.cos(yaw0), math.sin(yaw0)
    d = p_tr1.position[:2] - p_tr0.position[:2]
    true_rel = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
    travelled = np.sum(v_tr) * 0.02
    assert np.linalg.norm(odom[-1].payload.position[:2] - true_rel) < 0.05 * travelled


# ---------------------------------------------------------------- the CLI


def test_record_cli_writes_a_readable_log(tmp_path, capsys):
    out = tmp_path / "cli.mcap"
    rc = main(
        [
            "sim",
            "record",
            "--scenario",
            "highway",
            "--seed",
            "2",
            "--duration",
            "0.25",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "highway" and summary["messages"] > 50
    r = LogReader(out)
    assert not r.truncated
    assert sum(t.count for name, t in r.topics().items() if name in summary["topics"]) == summary["messages"]
    assert r.calibration() is not None


def test_ground_truth_reads_back_from_the_log(logs):
    r = LogReader(logs["a"])
    gt = [m for _, m in r.messages(["/ground_truth/detections"])]
    assert not r.errors and gt and isinstance(gt[0].payload, Detections) and gt[0].payload.objects


def test_record_cli_bad_input_is_one_line(tmp_path, capsys):
    assert (
        main(["sim", "record", "--scenario", "mars", "--duration", "1", "--out", str(tmp_path / "x.mcap")])
        == 2
    )
    err = capsys.readouterr().err
    assert "mars" in err and "default" in err and err.count("\n") == 1
    assert main(["sim", "record", "--duration", "-1", "--out", str(tmp_path / "y.mcap")]) == 2


def test_sigkilled_record_keeps_what_it_made(tmp_path):
    out = tmp_path / "killed.mcap"
    asked_s = 120
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgefuse.cli",
            "sim",
            "record",
            "--scenario",
            "default",
            "--duration",
            str(asked_s),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t0 = time.monotonic()
    try:
        # wait until at least two chunks (≥ 2 s of wall time) are on disk, then kill hard
        while time.monotonic() - t0 < 90:
            time.sleep(0.5)
            if out.exists() and time.monotonic() - t0 > 6 and out.stat().st_size > 3_000_000:
                break
        elapsed = time.monotonic() - t0
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.warns(UserWarning):
        r = LogReader(out)
    assert r.truncated
    msgs = [m for _, m in r.messages()]
    stamps = np.array([m.stamp_ns for m in msgs if m.sensor_id == "imu"])
    span = (stamps.max() - stamps.min()) / NS
    # The recording is not paced (it runs as fast as the simulator can, which may be faster or slower
    # than real time), so the kept span is bounded by what was asked, not by the wall time that passed.
    assert 0.2 < span < asked_s, f"kept {span:.2f} s of simulated time after {elapsed:.1f} s of wall time"
    n = Counter(m.sensor_id for m in msgs)
    assert {"cam_front", "lidar_top", "radar_front", "odom", "imu"} <= set(n)
    assert n["imu"] == pytest.approx(200 * span, abs=3)  # a gapless prefix: nothing lost before the kill
    lidar = np.array([m.stamp_ns for m in msgs if m.sensor_id == "lidar_top"])
    assert abs(lidar.max() - stamps.max()) / NS < 1.0  # every sensor kept up to about the same moment


# ---------------------------------------------------------------- live source


def test_parse_sim_uri():
    assert parse_sim_uri("sim://fog?seed=4&visibility=30") == ("fog", 4, {"visibility": "30"}, None)
    assert parse_sim_uri("sim://default")[:2] == ("default", 0)
    assert parse_sim_uri("sim://urban?sensor=imu,odom")[3] == ("imu", "odom")
    for bad in ("sim://nowhere", "velodyne://x", "sim://default?seed=x"):
        with pytest.raises(InputError):
            parse_sim_uri(bad)


def test_live_source_is_paced_by_the_injected_clock():
    clock = FakeClock(start=100 * NS, step=0)
    start = clock.now  # time moves only when the source sleeps
    msgs = list(sim_source("sim://default?seed=2&sensor=imu,odom", 0.5, clock=clock, sleep=clock.sleep))
    ref = list(Simulator("default", 2, sensors=("imu", "odom")).messages(NS // 2))
    assert len(msgs) == len(ref)
    for m, r in zip(msgs, ref, strict=True):
        assert m.stamp_ns == r.stamp_ns + start and m.recv_ns == r.recv_ns + start
        assert m.raw_stamp_ns == r.raw_stamp_ns and m.sensor_id == r.sensor_id
    assert clock.slept == pytest.approx(0.5, abs=0.05)  # real-time pacing: slept ≈ the simulated span


