"""De-skew and doppler compensation against hand-built scenes: the ego drives an accelerating, turning
path (integrated finely here, independently of edgefuse.motion), a static box is swept by a LiDAR whose
points each carry their own firing time, and the truth is where each point lies in the world."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.geometry import Transform, rpy_to_matrix
from edgefuse.motion import EgoTrajectory, MotionInputError, compensate_doppler, deskew, sensor_velocity
from edgefuse.types import POINT_TIME_FIELD, Message, Odometry, PointCloud, RadarScan

MS = 1_000_000


def _ego_path(t_end_s: float, dt: float = 1e-4):
    """Accelerating (v = 8 + 3t m/s) and turning (yaw rate 0.4 + 0.5t rad/s) planar motion, Euler-integrated
    at 0.1 ms: returns times (s), xy, yaw, speed, yaw rate."""
    t = np.arange(0.0, t_end_s + dt, dt)
    v = 8.0 + 3.0 * t
    w = 0.4 + 0.5 * t
    yaw = np.concatenate([[0.0], np.cumsum(w[:-1] * dt)])
    x = np.concatenate([[0.0], np.cumsum(v[:-1] * np.cos(yaw[:-1]) * dt)])
    y = np.concatenate([[0.0], np.cumsum(v[:-1] * np.sin(yaw[:-1]) * dt)])
    return t, np.stack([x, y], 1), yaw, v, w


def _pose_world_base(path, t_s):
    t, xy, yaw, _, _ = path
    i = np.clip(np.rint(t_s / (t[1] - t[0])).astype(int), 0, t.shape[0] - 1)
    c, s = np.cos(yaw[i]), np.sin(yaw[i])
    R = np.zeros((np.size(i), 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
    p = np.concatenate([xy[i], np.zeros((np.size(i), 1))], axis=1)
    return R, p


def _odometry(path, t0_s, t1_s, rate=50.0):
    t, xy, yaw, v, w = path
    msgs = []
    for k, ts in enumerate(np.arange(t0_s, t1_s, 1.0 / rate)):
        i = int(round(ts / (t[1] - t[0])))
        o = Odometry(
            np.array([xy[i, 0], xy[i, 1], 0.0]),
            np.array([0, 0, np.sin(yaw[i] / 2), np.cos(yaw[i] / 2)]),
            np.array([v[i], 0.0, 0.0]),
            np.array([0.0, 0.0, w[i]]),
        )
        msgs.append(Message("odom", int(round(ts * 1e9)), o, seq=k))
    return msgs


def _box_surface(center, size, yaw, n, rng):
    """n points on the four vertical faces of a box (world frame)."""
    l, w, h = size
    face = rng.integers(0, 4, n)
    u = rng.uniform(-0.5, 0.5, n)
    z = rng.uniform(-0.5, 0.5, n) * h
    x = np.where(face == 0, l / 2, np.where(face == 1, -l / 2, u * l))
    y = np.where(face == 2, w / 2, np.where(face == 3, -w / 2, u * w))
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * x - s * y, s * x + c * y, z], 1) + center


def _box_distance(p, center, size, yaw):
    """Distance of points to the surface of an upright box (independent of the generator above)."""
    c, s = np.cos(-yaw), np.sin(-yaw)
    d = p - center
    local = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], 1)
    q = np.abs(local) - np.asarray(size) / 2
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    inside = np.minimum(q.max(axis=1), 0)
    return np.abs(outside + inside)


T_BS = Transform(rpy_to_matrix(0.01, -0.02, 0.05), [1.2, 0.1, 1.9])


def _sweep(path, end_s, rng, n=4000):
    """A static box's points as the LiDAR sees them during the 100 ms sweep ending at end_s."""
    R_wb_end, p_wb_end = _pose_world_base(path, np.array([end_s]))
    ahead = p_wb_end[0] + R_wb_end[0] @ np.array([12.0, 3.0, 0.0])
    center, size, yaw = ahead + np.array([0, 0, 1.0]), np.array([4.5, 1.9, 1.6]), 0.7
    pw = _box_surface(center, size, yaw, n, rng)
    t_rel = -rng.uniform(0.0, 0.1, n)  # firing times in the last 100 ms
    R_wb, p_wb = _pose_world_base(path, end_s + t_rel)
    pb = np.einsum("nji,nj->ni", R_wb, pw - p_wb)  # world → base at firing time
    ps = (pb - T_BS.translation) @ T_BS.rotation  # base → sensor
    data = np.concatenate([ps, np.zeros((n, 1)), (t_rel * 1e9)[:, None]], axis=1).astype(np.float32)
    cloud = PointCloud(data, ("x", "y", "z", "intensity", POINT_TIME_FIELD))
    return cloud, pw, (center, size, yaw), (R_wb_end[0], p_wb_end[0])


def test_deskew_with_odometry_collapses_a_static_box_while_turning_and_accelerating():
    rng = np.random.default_rng(0)
    path = _ego_path(3.0)
    end_s = 2.0
    cloud, pw, box, (R_end, p_end) = _sweep(path, end_s, rng)
    stamp = int(round(end_s * 1e9))
    ego = EgoTrajectory.from_odometry(_odometry(path, 1.5, 2.02))  # 50 Hz, brackets the sweep

    def world(c):
        return (T_BS.apply(c.xyz.astype(np.float64))) @ R_end.T + p_end

    raw_err = np.linalg.norm(world(cloud) - pw, axis=1)
    fixed = deskew(cloud, stamp, T_BS, ego)
    err = np.linalg.norm(world(fixed) - pw, axis=1)
    assert raw_err.mean() > 0.3  # the smear is real: ~1 m of travel and 3° of turn in one sweep
    assert err.mean() * 5 <= raw_err.mean()
    assert err.max() < 0.02
    # the de-skewed points lie on the true box
    assert np.percentile(_box_distance(world(fixed), *box), 99) < 0.02
    assert fixed.fields == cloud.fields and np.array_equal(
        fixed.column(POINT_TIME_FIELD), cloud.column("t_ns")
    )


def test_deskew_with_constant_twist_and_extrapolation():
    rng = np.random.default_rng(1)
    # a constant twist path: v = 10 m/s, ω = 0.5 rad/s (exact circle)
    v, w = 10.0, 0.5
    n = 2000
    t_rel = -rng.uniform(0, 0.1, n)
    pw = rng.uniform(-20, 20, (n, 3))
    yaw = w * t_rel
    # pose of base at t_rel relative to the pose at 0 (circle of radius v/w)
    px, py = v / w * np.sin(yaw), v / w * (1 - np.cos(yaw))
    c, s = np.cos(yaw), np.sin(yaw)
    d = pw - np.stack([px, py, np.zeros(n)], 1)
    pb = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], 1)
    ps = (pb - T_BS.translation) @ T_BS.rotation
    data = np.concatenate([ps, np.zeros((n, 1)), (t_rel * 1e9)[:, None]], axis=1).astype(np.float32)
    cloud = PointCloud(data, ("x", "y", "z", "intensity", POINT_TIME_FIELD))
    ego = EgoTrajectory.constant_twist(5 * MS, [v, 0, 0], [0, 0, w])  # sample after the sweep: extrapolated
    fixed = deskew(cloud, 0, T_BS, ego)
    got = T_BS.apply(fixed.xyz.astype(np.float64))
    assert np.abs(got - pw).max() < 2e-3


def test_deskew_rejects_clouds_without_point_times():
    cloud = PointCloud(np.zeros((3, 4), np.float32))
    with pytest.raises(MotionInputError, match="t_ns"):
        deskew(cloud, 0, T_BS, EgoTrajectory.constant_twist(0, [1, 0, 0], [0, 0, 0]))


def test_doppler_of_static_points_becomes_zero():
    rng = np.random.default_rng(2)
    T = Transform(rpy_to_matrix(0.0, 0.01, -0.3), [3.7, 0.4, 0.5])
    v_base, w_base = np.array([12.0, 0.3, 0.0]), np.array([0.0, 0.0, 0.25])
    pts = rng.uniform([2, -20, -1], [60, 20, 2], (500, 3))  # static points, sensor frame
    # independent measured doppler: static point velocity relative to the sensor is −v_sensor; velocity of
    # the sensor origin in the world, expressed in the sensor frame, from the rigid-body formula
    v_origin_base = v_base + np.cross(w_base, T.translation)
    v_sensor = np.linalg.solve(T.rotation, v_origin_base)
    u = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    measured = -(u @ v_sensor)
    scan = RadarScan(np.concatenate([pts, measured[:, None], np.ones((500, 1))], 1).astype(np.float32))
    out = compensate_doppler(scan, T, v_base, w_base)
    assert np.abs(out.column("doppler")).max() < 1e-4
    assert np.array_equal(out.column("rcs"), scan.column("rcs"))
    np.testing.assert_allclose(sensor_velocity(T, v_base, w_base), v_sensor, atol=1e-12)


def test_doppler_compensation_on_sim_radar_static_clutter():
    from edgefuse.sim.radar import RadarModel, simulate_radar
    from edgefuse.sim.rig import sim_calibration
    from edgefuse.sim.world import make_world

    world = make_world("default", 0)
    cal = sim_calibration()
    t = 3_000_000_000
    scene = world.scene_at(t)
    model = RadarModel()
    scan, tracks = simulate_radar(scene, t, cal.extrinsics["radar_front"], model, np.random.default_rng(0))
    ego = world.ego_state(t)
    out = compensate_doppler(scan, cal.extrinsics["radar_front"], ego.velocity_base, [0, 0, ego.yaw_rate])
    static = np.asarray(tracks) < 0  # detections of no track: static boxes and clutter
    assert static.sum() > 5 and ego.speed > 1.0
    raw, comp = np.abs(scan.column("doppler")[static]), np.abs(out.column("doppler")[static])
    assert np.median(comp) < 0.3 < np.median(raw)


def test_sweep_odometry_recovers_the_ego_twist_in_a_turn():
    pytest.importorskip("kiss_icp", reason="SweepOdometry needs the optional kiss-icp package")
    from edgefuse.motion import SweepOdometry
    from edgefuse.sim.run import Simulator

    sim = Simulator("default", 0, truth=False)
    c = sim.clocks["lidar_top"]
    odo = SweepOdometry(sim.calibration.T_base("lidar_top"))
    k0 = c.first_index_at_or_after(27_800_000_000)  # from 28.5 s the ego turns at ~0.3 rad/s, slowing down
    errs = []
    for k in range(k0, k0 + 22):  # KISS-ICP starts from zero motion: ~1.5 s to converge
        t = c.capture_time(k)
        ego = odo.update(sim.capture("lidar_top", t, k)[0].message.payload, t)
        if k - k0 >= 16:
            truth = sim.world.ego_state(t)
            v, w = ego.twist_at(t)
            errs.append((abs(np.linalg.norm(v) - truth.speed), abs(w[2] - truth.yaw_rate)))
    assert max(e[0] for e in errs) < 0.5  # m/s, at ~9.5 m/s
    assert max(e[1] for e in errs) < 0.02  # rad/s, at 0.3 rad/s


def test_deskew_with_imu_gyro_and_known_speed():
    from edgefuse.types import Imu

    rng = np.random.default_rng(4)
    path = _ego_path(3.0)
    t, xy, yaw, v, w = path
    end_s = 2.0
    cloud, pw, box, (R_end, p_end) = _sweep(path, end_s, rng)
    T_bi = Transform(rpy_to_matrix(0.02, -0.01, 0.3), [1.3, -0.05, 0.45])
    msgs = []
    for k, ts in enumerate(np.arange(1.8, 2.01, 0.005)):  # 200 Hz gyro in the IMU frame
        i = int(round(ts / (t[1] - t[0])))
        gyro = T_bi.rotation.T @ np.array([0.0, 0.0, w[i]])
        msgs.append(Message("imu", int(round(ts * 1e9)), Imu(gyro, np.array([0, 0, 9.8])), seq=k))
    i_end = int(round(end_s / (t[1] - t[0])))
    ego = EgoTrajectory.from_imu(msgs, T_bi, linear_velocity=[v[i_end], 0.0, 0.0])

    def world(c):
        return (T_BS.apply(c.xyz.astype(np.float64))) @ R_end.T + p_end

    raw = np.linalg.norm(world(cloud) - pw, axis=1).mean()
    fixed = np.linalg.norm(world(deskew(cloud, int(end_s * 1e9), T_BS, ego)) - pw, axis=1)
    # the speed changes by 0.3 m/s over the sweep (3 m/s²) and is taken constant: a few cm remain
    assert fixed.mean() * 5 <= raw and fixed.max() < 0.05
    with pytest.raises(MotionInputError, match="Imu"):
        EgoTrajectory.from_imu(_odometry(path, 1.9, 2.0), T_bi)
