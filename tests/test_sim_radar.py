"""Simulated radar: doppler from the true relative motion, RCS from the material, the radar equation,
resolution cells, angular noise, clutter and multipath, and immunity to fog and night.

Expected values are computed here from the scene (box velocities, ego twist, mount) and the formulas.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from edgefuse.geometry import Transform
from edgefuse.sim.radar import RADAR_FIELDS, RadarModel, simulate_radar
from edgefuse.sim.scene import Material, Scene, Weather, WorldBox

T_NS = 3_000_000_000
T_BASE_RADAR = Transform.from_rpy([3.6, 0.2, 0.5], 0.0, 0.0, 0.05)
CAR = Material("car", (200, 0, 0), lidar_reflectivity=0.4, radar_rcs_dbsm=10.0)
PED = Material("ped", (0, 0, 200), lidar_reflectivity=0.3, radar_rcs_dbsm=-5.0)
REFLECTOR = Material("corner", (200, 200, 200), lidar_reflectivity=2.0, radar_rcs_dbsm=15.0)


def _scene(boxes, T_world_base=None, v=(0.0, 0.0, 0.0), yaw_rate=0.0, weather=None):
    return Scene(
        t_ns=T_NS,
        boxes=tuple(boxes),
        lanes=(),
        T_world_base=T_world_base or Transform.identity(),
        ego_velocity=np.asarray(v, float),
        ego_yaw_rate=float(yaw_rate),
        weather=weather or Weather(),
    )


def _reflector(x, y, z=0.5, size=0.2, track_id=1, velocity=(0.0, 0.0, 0.0)):
    return WorldBox("reflector", np.array([x, y, z]), np.full(3, size), 0.0, REFLECTOR,
                    velocity=np.asarray(velocity, float), track_id=track_id)


def _radar_world(sc: Scene) -> Transform:
    return sc.T_world_base @ T_BASE_RADAR


def test_doppler_is_the_true_radial_velocity_and_points_lie_on_the_target():
    T_wb = Transform.from_rpy([50.0, 10.0, 0.0], 0, 0, 0.6)
    boxes = [
        WorldBox("car", T_wb.apply(np.array([[25.0, 4.0, 0.75]]))[0], np.array([4.5, 1.9, 1.5]), 0.6 + 2.5,
                 CAR, velocity=np.array([-8.0, 6.0, 0.0]), yaw_rate=0.4, track_id=7, label="car"),
        WorldBox("pedestrian", T_wb.apply(np.array([[15.0, -5.0, 0.9]]))[0], np.array([0.6, 0.6, 1.8]), 0.0,
                 PED, velocity=np.array([0.5, 1.4, 0.0]), track_id=8, label="pedestrian"),
        WorldBox("pole", T_wb.apply(np.array([[30.0, -10.0, 3.0]]))[0], np.array([0.3, 0.3, 6.0]), 0.0,
                 REFLECTOR, track_id=-1),
    ]
    sc = _scene(boxes, T_world_base=T_wb, v=(12.0, 0.3, 0.0), yaw_rate=0.3)
    scan, ids = simulate_radar(sc, T_NS, T_BASE_RADAR, RadarModel().noiseless(), np.random.default_rng(0))
    assert scan.fields == RADAR_FIELDS and ids.dtype == np.int64 and len(ids) == len(scan)
    assert {7, 8} <= set(ids.tolist())
    T_wr = _radar_world(sc)
    p = T_wr.apply(scan.xyz.astype(np.float64))
    o = T_wr.translation
    # sensor velocity: ego body twist at the mount's lever arm, in the world
    v_body = np.array([12.0, 0.3, 0.0]) + np.cross([0, 0, 0.3], T_BASE_RADAR.translation)
    v_sensor = T_wb.rotation @ v_body
    by_id = {7: boxes[0], 8: boxes[1]}
    checked = 0
    for k in range(len(scan)):
        if ids[k] < 0:
            continue
        b = by_id[int(ids[k])]
        q = Transform.from_rpy(b.center, 0, 0, b.yaw).inverse().apply(p[k : k + 1])[0]
        assert np.min(np.abs(np.abs(q) - b.size / 2)) <= 0.01  # on the box surface
        v_point = b.velocity + np.cross([0.0, 0.0, b.yaw_rate], p[k] - b.center)
        u = (p[k] - o) / np.linalg.norm(p[k] - o)
        assert scan.column("doppler")[k] == pytest.approx(float((v_point - v_sensor) @ u), abs=0.05)
        checked += 1
    assert checked >= 3
    # the static pole (track −1) closes at the ego's speed along the line of sight
    pole = np.flatnonzero(ids == -1)
    assert pole.size >= 1
    for k in pole:
        u = (p[k] - o) / np.linalg.norm(p[k] - o)
        assert scan.column("doppler")[k] == pytest.approx(float(-v_sensor @ u), abs=0.05)


def test_rcs_comes_from_the_material():
    for mat, size in [(CAR, [4.5, 1.9, 1.5]), (PED, [0.6, 0.6, 1.8])]:
        box = WorldBox("x", np.array([22.0, 1.0, size[2] / 2]), np.array(size), 0.3, mat, track_id=1)
        scan, ids = simulate_radar(_scene([box]), T_NS, T_BASE_RADAR, RadarModel().noiseless(),
                                   np.random.default_rng(0))
        assert np.all(ids == 1) and len(scan) >= 1
        total = 10 * np.log10(np.sum(10 ** (scan.column("rcs").astype(np.float64) / 10)))
        assert total == pytest.approx(mat.radar_rcs_dbsm, abs=0.05)


def test_snr_follows_the_radar_equation():
    model = RadarModel().noiseless()
    totals = {}
    for r in (10.3, 41.2):
        sc = _scene([_reflector(3.6 + r, 0.2)])
        scan, _ = simulate_radar(sc, T_NS, T_BASE_RADAR, model, np.random.default_rng(0))
        rng_ = np.linalg.norm(scan.xyz.astype(np.float64), axis=1)
        snr, rcs = scan.column("snr").astype(np.float64), scan.column("rcs").astype(np.float64)
        # every detection: snr − rcs + 40·log10(r) is the sensor's constant
        np.testing.assert_allclose(snr - rcs + 40 * np.log10(rng_), model.snr_1m_db, atol=0.01)
        assert np.ptp(rng_) < 0.05  # the reflector's front face
        totals[r] = (10 * np.log10(np.sum(10 ** (snr / 10))), float(rng_.mean()))
    # 1/r⁴: four times the range, 40·log10(4) ≈ 24 dB less
    (s1, r1), (s2, r2) = totals[10.3], totals[41.2]
    assert s1 - s2 == pytest.approx(40 * np.log10(r2 / r1), abs=0.05)


def test_targets_in_one_resolution_cell_merge():
    model = RadarModel().noiseless()
    x = 3.6 + 30.0
    close = _scene([_reflector(x, 0.15, track_id=1), _reflector(x, -0.15, track_id=2)])
    apart = _scene([_reflector(x, 1.5, track_id=1), _reflector(x, -1.5, track_id=2)])
    s_close, id_close = simulate_radar(close, T_NS, Transform.identity(), model, np.random.default_rng(0))
    s_apart, id_apart = simulate_radar(apart, T_NS, Transform.identity(), model, np.random.default_rng(0))
    assert len(s_close) == 1  # 0.57° apart, inside one 2° cell
    assert sorted(id_apart.tolist()) == [1, 2]  # 5.7° apart: resolved
    # the merged cell carries the power of both
    assert float(s_close.column("rcs")[0]) == pytest.approx(15.0 + 10 * np.log10(2), abs=0.05)


def test_angular_noise_and_swerling_fluctuation():
    model = RadarModel(clutter_rate=0.0, multipath_prob=0.0)
    az_true = np.deg2rad(10.0)
    sc = _scene([_reflector(40 * np.cos(az_true), 40 * np.sin(az_true), z=0.0)])
    rng = np.random.default_rng(3)
    az, rcs = [], []
    for _ in range(300):
        scan, ids = simulate_radar(sc, T_NS, Transform.identity(), model, rng)
        assert np.all(ids == 1)
        az.extend(np.arctan2(scan.column("y"), scan.column("x")).tolist())
        rcs.extend(scan.column("rcs").tolist())
    az = np.asarray(az)
    assert len(az) > 200
    assert np.std(az) == pytest.approx(model.azimuth_noise_rad, rel=0.2)
    assert abs(np.mean(az) - az_true) < 4 * model.azimuth_noise_rad / np.sqrt(len(az)) + np.deg2rad(0.1)
    assert np.std(rcs) > 2.0  # the echo fluctuates from scan to scan (Swerling I)


def test_clutter_is_static_world_and_unlabelled():
    model = replace(RadarModel(), clutter_rate=5.0)
    sc = _scene([], v=(10.0, 0.0, 0.0), yaw_rate=0.2)
    rng = np.random.default_rng(4)
    n = 0
    v_body = np.array([10.0, 0.0, 0.0]) + np.cross([0, 0, 0.2], T_BASE_RADAR.translation)
    v_radar = T_BASE_RADAR.rotation.T @ v_body  # sensor velocity in its own frame
    scans = 200
    for _ in range(scans):
        scan, ids = simulate_radar(sc, T_NS, T_BASE_RADAR, model, rng)
        assert np.all(ids == -1)
        n += len(scan)
        if len(scan):
            u = scan.xyz.astype(np.float64)
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            np.testing.assert_allclose(scan.column("doppler"), -(u @ v_radar), atol=1e-3)
            assert np.all(scan.column("snr") >= model.snr_threshold_db)
            az = np.arctan2(u[:, 1], u[:, 0])
            assert np.all(np.abs(az) <= model.fov_azimuth_rad / 2 + 1e-6)
    assert n / scans == pytest.approx(5.0, abs=4 * math.sqrt(5.0 / scans))


def test_multipath_ghost_at_twice_range_and_doppler():
    model = replace(RadarModel().noiseless(), multipath_prob=1.0)
    car = WorldBox("car", np.array([20.0, 0.0, 0.75]), np.array([4.5, 1.9, 1.5]), 0.0, CAR,
                   velocity=np.array([4.0, 0.0, 0.0]), track_id=5, label="car")
    scan, ids = simulate_radar(_scene([car]), T_NS, Transform.identity(), model, np.random.default_rng(0))
    real, ghost = np.flatnonzero(ids == 5), np.flatnonzero(ids == -1)
    assert real.size >= 1 and ghost.size >= 1
    k = real[np.argmax(scan.column("snr")[real])]
    r_real = np.linalg.norm(scan.xyz[k])
    r_ghost = np.linalg.norm(scan.xyz[ghost], axis=1)
    j = ghost[np.argmin(np.abs(r_ghost - 2 * r_real))]
    assert np.linalg.norm(scan.xyz[j]) == pytest.approx(2 * r_real, abs=0.01)
    np.testing.assert_allclose(scan.xyz[j] / np.linalg.norm(scan.xyz[j]), scan.xyz[k] / r_real, atol=1e-5)
    assert scan.column("doppler")[j] == pytest.approx(2 * scan.column("doppler")[k], abs=1e-4)
    assert scan.column("snr")[j] < scan.column("snr")[k]


def test_occlusion_and_field_of_view():
    model = RadarModel().noiseless()
    truck = WorldBox("truck", np.array([15.0, 0.0, 1.75]), np.array([8.0, 2.5, 3.5]), 0.0, CAR, track_id=1)
    hidden = WorldBox("pedestrian", np.array([25.0, 0.0, 0.9]), np.array([0.6, 0.6, 1.8]), 0.0, PED,
                      track_id=2)
    behind = WorldBox("car", np.array([-15.0, 0.0, 0.75]), np.array([4.5, 1.9, 1.5]), 0.0, CAR, track_id=3)
    _, ids = simulate_radar(_scene([truck, hidden, behind]), T_NS, Transform.from_rpy([0, 0, 0.5], 0, 0, 0),
                            model, np.random.default_rng(0))
    assert set(ids.tolist()) == {1}


def test_fog_night_and_rain_leave_the_radar_unchanged_and_seed_decides():
    car = WorldBox("car", np.array([20.0, 2.0, 0.75]), np.array([4.5, 1.9, 1.5]), 0.2, CAR,
                   velocity=np.array([3.0, 0.0, 0.0]), track_id=5)
    clear = _scene([car], v=(8.0, 0.0, 0.0))
    bad = replace(clear, weather=Weather(fog_visibility_m=30.0, rain=1.0, night=True))
    a, ia = simulate_radar(clear, T_NS, T_BASE_RADAR, RadarModel(), np.random.default_rng(9))
    b, ib = simulate_radar(bad, T_NS, T_BASE_RADAR, RadarModel(), np.random.default_rng(9))
    c, _ = simulate_radar(clear, T_NS, T_BASE_RADAR, RadarModel(), np.random.default_rng(10))
    assert len(a) > 0
    assert a.data.tobytes() == b.data.tobytes() and np.array_equal(ia, ib)
    assert a.data.tobytes() != c.data.tobytes()


def test_scan_time_after_scene_time_moves_targets():
    """Scanning 50 ms after the scene instant sees the target where it has driven to."""
    car = WorldBox("car", np.array([20.0, 0.0, 0.75]), np.array([4.5, 1.9, 1.5]), 0.0, CAR,
                   velocity=np.array([10.0, 0.0, 0.0]), track_id=5)
    sc = _scene([car])
    model = RadarModel().noiseless()
    now, _ = simulate_radar(sc, T_NS, Transform.identity(), model, np.random.default_rng(0))
    later, _ = simulate_radar(sc, T_NS + 50_000_000, Transform.identity(), model, np.random.default_rng(0))
    assert later.column("x").min() == pytest.approx(now.column("x").min() + 0.5, abs=0.01)


def test_at_most_max_detections_and_the_strongest_are_kept():
    boxes = [
        _reflector(10.0 + 3.0 * k, -20.0 + 2.5 * j, track_id=100 * k + j) for k in range(8) for j in range(16)
    ]
    sc = _scene(boxes)
    full = replace(RadarModel().noiseless(), max_detections=10_000)
    capped = replace(full, max_detections=20)
    a, ia = simulate_radar(sc, T_NS, Transform.identity(), full, np.random.default_rng(0))
    b, ib = simulate_radar(sc, T_NS, Transform.identity(), capped, np.random.default_rng(0))
    assert len(a) > 20 and len(b) == 20
    assert b.column("snr").min() >= np.sort(a.column("snr"))[-20]
    assert set(ib.tolist()) <= set(ia.tolist())
