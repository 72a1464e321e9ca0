"""Time offsets from motion signals on the calibration-board scenario's drive (strong rotation and
acceleration), with stamps shifted by known delays: the truth is the shift, never the code under test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgefuse.calib.common import CalibrationError
from edgefuse.calib.time_offset import camera_yaw_rate, estimate_offset, lidar_motion, radar_speed
from edgefuse.cli import main
from edgefuse.logs import Recorder
from edgefuse.rig import load_calibration, save_calibration
from edgefuse.sim.rig import sim_calibration
from edgefuse.sim.world import make_world
from edgefuse.types import Image, Imu, Message

SEED = 0
MS = 1_000_000


@pytest.fixture(scope="module")
def world():
    return make_world("calibration-board", SEED)


def _drive_start_s(world) -> float:
    return float(world.board.knots()[0][-1]) + 1.0  # the scenario's drive starts 1 s after the last hold


def _gyro(world, t0_s: float, t1_s: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """True yaw rate at 200 Hz plus gyro noise (stamps = true time)."""
    t = np.arange(int(t0_s * 1e9), int(t1_s * 1e9), 5 * MS)
    return t, np.array([e.yaw_rate for e in world.ego_states(t)]) + rng.normal(0, 0.003, len(t))


def _gyro_means(world, t0_s: float, t1_s: float, rng, period_ns: int = 5 * MS) -> tuple:
    """An integrating gyro: the true yaw rate averaged over each 5 ms sample period (from 0.25 ms steps),
    plus noise, as interval means ``(ends, values, starts)``. Instantaneous samples date each step of the
    simulator's yaw rate (its arcs start and end abruptly) only to ±half a period."""
    t = np.arange(int(t0_s * 1e9), int(t1_s * 1e9), period_ns)
    fine = np.arange(t[0] - period_ns, t[-1], period_ns // 20) + period_ns // 40
    w = np.array([e.yaw_rate for e in world.ego_states(fine)]).reshape(len(t), 20).mean(axis=1)
    return t, w + rng.normal(0, 0.003, len(t)), t - period_ns


def _interval_means(world, t_end: np.ndarray, t_start: np.ndarray) -> np.ndarray:
    return np.array(
        [
            np.mean([e.yaw_rate for e in world.ego_states(np.linspace(a, b, 41).astype(np.int64))])
            for a, b in zip(t_start, t_end, strict=True)
        ]
    )


@pytest.mark.parametrize("delay_ms", [-12.0, 0.0, 7.5, 31.0])
def test_interval_mean_samples_give_the_offset(world, delay_ms):
    """10 Hz interval means of the true yaw rate (like sweep-pair rates), stamped late by delay_ms."""
    rng = np.random.default_rng(1)
    T = _drive_start_s(world)
    gyro = _gyro(world, T + 1.0, T + 12.0, rng)
    t_end = np.arange(int((T + 2.0) * 1e9), int((T + 11.0) * 1e9), 100 * MS) + 37 * MS
    vals = _interval_means(world, t_end, t_end - 100 * MS) + rng.normal(0, 0.01, len(t_end))
    d = int(delay_ms * MS)
    r = estimate_offset(gyro, (t_end + d, vals, t_end - 100 * MS + d))
    assert abs(r.offset_ns - d) < 1 * MS, r.to_dict()
    assert r.correlation > 0.95 and r.std_ns < 2 * MS


@pytest.mark.parametrize("delay_ms", [-12.0, 7.5])
def test_interval_means_against_an_integrating_gyro(world, delay_ms):
    """30 Hz interval means (like frame-pair rates) against a gyro that averages over its 5 ms samples:
    the gyro's integral is exact at its sample boundaries, so the steps of the yaw rate date the offset
    to a fraction of a millisecond."""
    rng = np.random.default_rng(2)
    T = _drive_start_s(world)
    gyro = _gyro_means(world, T + 1.0, T + 12.0, rng)
    t_end = np.arange(int((T + 2.0) * 1e9), int((T + 11.0) * 1e9), 33_333_333) + 11 * MS
    vals = _interval_means(world, t_end, t_end - 33_333_333) + rng.normal(0, 0.02, len(t_end))
    d = int(delay_ms * MS)
    r = estimate_offset(gyro, (t_end + d, vals, t_end - 33_333_333 + d))
    assert abs(r.offset_ns - d) < 0.5 * MS, r.to_dict()


def test_no_motion_and_no_overlap_are_clear_errors():
    t = np.arange(0, 20_000_000_000, 5 * MS)
    with pytest.raises(CalibrationError, match=r"no motion"):
        estimate_offset((t, np.zeros(len(t))), (t[::20], np.zeros(len(t[::20]))))
    with pytest.raises(CalibrationError, match=r"too few motion samples"):
        estimate_offset((t, np.sin(t * 1e-9)), (t[:5], np.sin(t[:5] * 1e-9)))


def _sweeps(world, t0_s: float, n: int, stamp_delay_ns: int):
    from edgefuse.sim.lidar import simulate_sweep, vlp32c_model

    calib = sim_calibration()
    rng = np.random.default_rng(5)
    out = []
    for k in range(n):
        t = int(t0_s * 1e9) + k * 100 * MS
        cloud, _ = simulate_sweep(world.scene_at(t), t, calib.extrinsics["lidar_top"], vlp32c_model(), rng)
        out.append(Message("lidar_top", t + stamp_delay_ns, cloud, frame="lidar_top", seq=k))
    return out


@pytest.fixture(scope="module")
def lidar_sweeps(world):
    return _sweeps(world, _drive_start_s(world) + 3.4, 60, 5 * MS)


def test_lidar_yaw_rate_offset_against_gyro(world, lidar_sweeps):
    T = _drive_start_s(world)
    gyro = _gyro(world, T + 2.0, T + 11.0, np.random.default_rng(2))
    yaw_rate, _speed = lidar_motion(lidar_sweeps, sim_calibration().extrinsics["lidar_top"])
    r = estimate_offset(gyro, yaw_rate)
    assert abs(r.offset_ns - 5 * MS) < 2 * MS, r.to_dict()
    assert r.correlation > 0.9


def test_radar_speed_offset_against_odometry(world):
    from edgefuse.sim.radar import RadarModel, simulate_radar

    T = _drive_start_s(world)
    calib = sim_calibration()
    rng = np.random.default_rng(3)
    msgs = []
    for k in range(300):  # 15 s at 20 Hz: the whole drive, speed-ups and slow-downs
        t = int((T + 0.5) * 1e9) + k * 50 * MS
        scan, _ = simulate_radar(world.scene_at(t), t, calib.extrinsics["radar_front"], RadarModel(), rng)
        msgs.append(Message("radar_front", t - 4 * MS, scan, frame="radar_front", seq=k))
    speed = radar_speed(msgs, calib.extrinsics["radar_front"])
    t = np.arange(int(T * 1e9), int((T + 16.5) * 1e9), 20 * MS)
    odom = (t, np.array([e.speed for e in world.ego_states(t)]))
    r = estimate_offset(odom, speed, signal="speed")
    assert abs(r.offset_ns - (-4 * MS)) < 2 * MS, r.to_dict()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start_s", "delay_ms", "seed"),
    [(3.5, 8.0, 4), (2.5, -13.0, 5), (5.0, 21.0, 6)],  # 6 s windows of the drive, camera stamps late by delay
)
def test_camera_yaw_rate_offset_against_gyro(world, start_s, delay_ms, seed):
    from edgefuse.sim.camera import render_camera

    T = _drive_start_s(world)
    calib = sim_calibration()
    rng = np.random.default_rng(seed)
    d = int(delay_ms * MS)
    msgs = []
    for k in range(180):  # 6 s at 30 Hz: U-turns, the slalom, close and repetitive building fronts
        t = int((T + start_s) * 1e9) + k * 33_333_333
        img = render_camera(world.scene_at(t), calib.cameras["cam_front"], calib.extrinsics["cam_front"], rng)
        msgs.append(Message("cam_front", t + d, Image(img), frame="cam_front_optical", seq=k))
    sig = camera_yaw_rate(msgs, calib.cameras["cam_front"], calib.extrinsics["cam_front"])
    assert len(sig[0]) > 100  # most frame pairs give a rate (views of only sky and grass do not)
    gyro = _gyro_means(world, T + start_s - 1.5, T + start_s + 7.5, rng)
    r = estimate_offset(gyro, sig)
    # the target: 2 ms
    assert abs(r.offset_ns - d) < 2 * MS, r.to_dict()
    assert r.correlation > 0.99


def _imu_lidar_log(path, t_imu, w, sweeps, calib, lidar_shift_ns: int = 0) -> None:
    """An MCAP log of IMU yaw rates ``w`` at ``t_imu`` and the LiDAR ``sweeps`` (stamped
    ``lidar_shift_ns`` late)."""
    R_imu_base = calib.extrinsics["imu"].rotation.T
    with Recorder(path, clock=lambda: 0) as rec:
        events = [(int(t), "imu", k) for k, t in enumerate(t_imu)] + [
            (m.stamp_ns + lidar_shift_ns, "lidar", k) for k, m in enumerate(sweeps)
        ]
        for t, kind, k in sorted(events):
            if kind == "imu":
                imu = Imu(
                    angular_velocity=R_imu_base @ np.array([0.0, 0.0, w[k]]),
                    linear_acceleration=np.array([0.0, 0.0, 9.81]),
                )
                rec.write(Message("imu", t, imu, raw_stamp_ns=t, recv_ns=t, frame="imu", seq=k))
            else:
                rec.write(Message("lidar_top", t, sweeps[k].payload, raw_stamp_ns=t, recv_ns=t + MS,
                                  frame="lidar_top", seq=k))  # fmt: skip


def test_cli_time_updates_the_offset(tmp_path, world, lidar_sweeps, capsys):
    calib = sim_calibration()
    T = _drive_start_s(world)
    t_imu, w = _gyro(world, T + 2.5, T + 10.5, np.random.default_rng(6))
    log = tmp_path / "drive.mcap"
    _imu_lidar_log(log, t_imu, w, lidar_sweeps, calib)
    path = tmp_path / "calib.yaml"
    save_calibration(calib, path)
    rc = main(["calibrate", "time", str(log), "--sensors", "imu,lidar_top", "--calib", str(path), "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["signal"] == "yaw_rate" and r["kinds"] == ["imu", "lidar"]
    assert abs(r["offset_ms"] - 5.0) < 2.0, r
    after = load_calibration(path).time_offsets_ns["lidar_top"]
    assert after == calib.time_offsets_ns["lidar_top"] - r["offset_ns"]
    assert "time_offsets_ns.lidar_top" in load_calibration(path).provenance
    assert r["written"] and all(g["ok"] for g in r["gates"])
    assert {g["name"] for g in r["gates"]} == {"motion", "correlation", "peak margin", "offset σ"}


@pytest.mark.parametrize(
    "case, gate",
    [
        ("straight", "motion"),  # the IMU saw no turn (a drive straight ahead): its yaw rate is noise
        ("late_0.8s", "peak margin"),  # the LiDAR 0.8 s late, searched within ±0.5 s: the window's edge
    ],
)
def test_cli_time_refuses_a_result_that_fails_a_gate(tmp_path, world, lidar_sweeps, capsys, case, gate):
    """The issue's cases: nothing written, exit non-zero, one line naming the gate, its value and limit;
    ``--dry-run`` reports without writing; ``--force`` writes and marks the provenance."""
    calib = sim_calibration()
    T = _drive_start_s(world)
    rng = np.random.default_rng(7)
    t_imu, w = _gyro(world, T + 2.5, T + 10.5, rng)
    shift = 0
    if case == "straight":
        w = rng.normal(0, 0.005, len(t_imu))  # gyro noise only
    else:
        shift = 800 * MS
    log = tmp_path / "drive.mcap"
    _imu_lidar_log(log, t_imu, w, lidar_sweeps, calib, lidar_shift_ns=shift)
    path = tmp_path / "calib.yaml"
    save_calibration(calib, path)
    before = path.read_bytes()
    args = ["calibrate", "time", str(log), "--sensors", "imu,lidar_top", "--calib", str(path)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0 and path.read_bytes() == before and not (tmp_path / "calib.yaml.bak").exists()
    assert err.count("\n") == 1 and f"not written: {gate} " in err and "needs" in err, err
    rc = main([*args, "--dry-run", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and not r["written"] and path.read_bytes() == before
    assert any(line.startswith(gate) for line in r["failed_gates"])
    rc = main([*args, "--force", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["written"] and any(line.startswith(gate) for line in r["forced"])
    prov = load_calibration(path).provenance["time_offsets_ns.lidar_top"]
    assert any(line.startswith(gate) for line in prov["forced"])
