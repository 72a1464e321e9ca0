"""The simulated world: scenarios, determinism, class sizes, motion continuity, the calibration scenario,
the rig files and the ego sensors."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.errors import InputError
from edgefuse.rig import load_calibration, load_kit
from edgefuse.sim.rig import sim_calibration, sim_files, sim_kit
from edgefuse.sim.world import SCENARIOS, ground_truth, make_world

NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def town():
    return make_world("default", 7)


def _movers(scene):
    return {b.track_id: b for b in scene.boxes if b.track_id >= 0}


# ---------------------------------------------------------------- scenarios and parameters


def test_unknown_scenario_names_the_scenarios():
    with pytest.raises(InputError) as e:
        make_world("moon", 0)
    for name in SCENARIOS:
        assert name in str(e.value)
    assert "moon" in str(e.value)


@pytest.mark.parametrize(
    "params, word",
    [
        ({"altitude": 3}, "altitude"),
        ({"visibility": "thick"}, "visibility"),
        ({"visibility": -5}, "visibility"),
        ({"rain": 2}, "rain"),
    ],
)
def test_bad_parameter_is_input_error(params, word):
    with pytest.raises(InputError, match=word):
        make_world("fog", 0, **params)


def test_weather_of_scenarios():
    assert make_world("fog", 0).weather.fog_visibility_m == 60.0
    fog = make_world("fog", 0, visibility="30")  # as it comes from a sim:// query
    assert fog.weather.extinction == pytest.approx(3.912 / 30.0)
    assert make_world("night", 0).weather.night and not make_world("default", 0).weather.night
    assert make_world("rain", 0).weather.rain > 0
    assert not math.isfinite(make_world("default", 0).weather.fog_visibility_m)
    # fog/night/rain are the default world plus weather: the same boxes
    a, b = make_world("default", 4).scene_at(NS), make_world("night", 4).scene_at(NS)
    assert [tuple(x.center) for x in a.boxes] == [tuple(x.center) for x in b.boxes]


# ---------------------------------------------------------------- determinism and purity


def _fingerprint(scene) -> list:
    return [
        (b.kind, b.track_id, *np.round(b.center, 9), *np.round(b.size, 9), round(b.yaw, 9), b.material.rgb)
        for b in scene.boxes
    ] + [tuple(np.round(scene.T_world_base.matrix().ravel(), 9))]


@pytest.mark.parametrize("scenario", ["default", "urban", "highway", "calibration-board"])
def test_same_seed_same_world_different_seed_different(scenario):
    t = 2_500_000_000
    a = _fingerprint(make_world(scenario, 11).scene_at(t))
    b = _fingerprint(make_world(scenario, 11).scene_at(t))
    c = _fingerprint(make_world(scenario, 12).scene_at(t))
    assert a == b
    assert a != c


def test_scene_at_is_pure(town):
    first = _fingerprint(town.scene_at(5 * NS))
    town.scene_at(50 * NS)
    town.scene_at(1 * NS)
    assert _fingerprint(town.scene_at(5 * NS)) == first
    with pytest.raises(TypeError):
        town.scene_at(1.5)


# ---------------------------------------------------------------- content


# class-typical dimensions (length, width, height) in metres, from vehicle/anthropometric norms
# (e.g. nuScenes/KITTI class statistics): generous bounds, independent of the generator's own ranges
TYPICAL = {
    "car": ((3.5, 5.5), (1.5, 2.1), (1.3, 2.0)),
    "pedestrian": ((0.2, 0.8), (0.3, 0.8), (1.4, 2.0)),
    "cyclist": ((1.4, 2.0), (0.4, 0.9), (1.4, 2.0)),
}


@pytest.mark.parametrize("scenario", ["default", "urban", "highway"])
def test_class_typical_sizes_and_classes_present(scenario):
    world = make_world(scenario, 3)
    seen = set()
    for t in (0, 7 * NS, 21 * NS):
        for b in world.scene_at(t).boxes:
            if b.label is None:
                continue
            seen.add(b.label)
            for (lo, hi), v in zip(TYPICAL[b.label], b.size, strict=True):
                assert lo <= v <= hi, (b.kind, b.label, b.size)
            assert b.track_id >= 0
    if scenario == "highway":
        assert seen == {"car"}  # no pedestrians or cyclists on a highway
    else:
        assert seen == {"car", "pedestrian", "cyclist"}


def test_town_has_street_furniture(town):
    kinds = {b.kind for b in town.scene_at(0).boxes}
    assert {"building", "pole", "parked_car", "car"} <= kinds
    assert len(town.scene_at(0).lanes) > 10 and len(town.scene_at(0).roads) >= 2


def _footprint(b):
    return (
        (float(b.center[0]), float(b.center[1])),
        (float(b.size[0]), float(b.size[1])),
        math.degrees(b.yaw),
    )


@pytest.mark.parametrize("scenario", ["default", "urban"])
def test_agents_do_not_overlap_and_ego_stays_on_the_road(scenario):
    world = make_world(scenario, 5)
    for t in np.arange(0, 40, 2.5):
        scene = world.scene_at(int(t * NS))
        movers = [b for b in scene.boxes if b.label is not None]
        xy = np.array([b.center[:2] for b in movers])
        for i in range(len(movers)):
            near = np.nonzero(np.hypot(*(xy[i + 1 :] - xy[i]).T) < 8.0)[0] + i + 1
            for j in near:
                kind, pts = cv2.rotatedRectangleIntersection(_footprint(movers[i]), _footprint(movers[j]))
                area = cv2.contourArea(pts) if pts is not None else 0.0
                assert area < 0.05, (t, movers[i].kind, movers[j].kind, movers[i].center, movers[j].center)
        # the ego (rear axle + 1.4 m, 4.7 × 1.9 m) overlaps no mover either
        T = scene.T_world_base
        ego_c = T.apply(np.array([[1.4, 0.0, 0.0]]))[0]
        ego = ((ego_c[0], ego_c[1]), (4.7, 1.9), math.degrees(T.rpy[2]))
        for b in movers:
            if np.hypot(*(b.center[:2] - ego_c[:2])) < 8.0:
                _, pts = cv2.rotatedRectangleIntersection(ego, _footprint(b))
                assert pts is None or cv2.contourArea(pts) < 0.05
        # on the asphalt: within a road's half width of its centreline
        road = scene.roads[0]
        seg_a, seg_b = road.points[:-1], road.points[1:]
        p = T.translation[:2]
        d = seg_b - seg_a
        u = np.clip(np.einsum("ij,ij->i", p - seg_a, d) / np.einsum("ij,ij->i", d, d), 0, 1)
        dist = np.min(np.hypot(*(seg_a + u[:, None] * d - p).T))
        assert dist < road.half_width - 1.0


# ---------------------------------------------------------------- motion continuity


@pytest.mark.parametrize("scenario", ["default", "highway", "calibration-board"])
def test_velocity_is_the_derivative_of_position(scenario):
    world = make_world(scenario, 2)
    rng = np.random.default_rng(0)
    h = 1_000_000  # ±1 ms
    checked = 0
    for t in rng.integers(NS, 55 * NS, 12):
        t = int(t)
        a, m, b = world.scene_at(t - h), world.scene_at(t), world.scene_at(t + h)
        A, M, B = _movers(a), _movers(m), _movers(b)
        for tid, box in M.items():
            if tid not in A or tid not in B:
                continue
            v_fd = (B[tid].center - A[tid].center) / (2 * h / NS)
            # exact between path samples; a difference straddling a sample mixes two chords, at most
            # 0.0125 rad apart (samples every 0.1 m on curves of radius ≥ 8 m, 0.25 m on radius ≥ 20 m)
            tol = 0.005 + 0.0125 * np.linalg.norm(box.velocity)
            assert np.linalg.norm(v_fd - box.velocity) < tol, (box.kind, v_fd, box.velocity)
            dyaw = (B[tid].yaw - A[tid].yaw + math.pi) % (2 * math.pi) - math.pi
            assert dyaw / (2 * h / NS) == pytest.approx(box.yaw_rate, abs=0.02)
            checked += 1
        # the ego: world velocity of base_link, yaw rate
        Ta, Tb = a.T_world_base, b.T_world_base
        v_fd = (Tb.translation - Ta.translation) / (2 * h / NS)
        v = m.T_world_base.rotation @ m.ego_velocity
        assert np.linalg.norm(v_fd - v) < 0.005 + 0.0125 * np.linalg.norm(v)
        dyaw = (Tb.rpy[2] - Ta.rpy[2] + math.pi) % (2 * math.pi) - math.pi
        assert dyaw / (2 * h / NS) == pytest.approx(m.ego_yaw_rate, abs=0.01)
    assert checked > (0 if scenario == "calibration-board" else 50)


def test_ego_acceleration_matches_speed_derivative(town):
    for t in np.arange(1, 60, 3.7):
        t = int(t * NS)
        e0, e, e1 = town.ego_state(t - 1_000_000), town.ego_state(t), town.ego_state(t + 1_000_000)
        assert (e1.speed - e0.speed) / 2e-3 == pytest.approx(e.accel, abs=1e-3 + 1e-6 * abs(e.accel))
        assert 4.0 < e.speed < 15.0  # a town drive


def test_ground_truth_in_base_link(town):
    scene = town.scene_at(12 * NS)
    gt = ground_truth(scene)
    assert gt and all(g.label in ("car", "pedestrian", "cyclist") for g in gt)
    M = scene.T_world_base.matrix()
    boxes = {b.track_id: b for b in scene.boxes}
    for g in gt:
        w = boxes[g.track_id]
        back = M @ np.append(g.box.center, 1.0)
        assert np.allclose(back[:3], w.center, atol=1e-9)
        assert np.allclose(M[:3, :3] @ np.array([*g.velocity, 0.0]), w.velocity * [1, 1, 0], atol=1e-9)
        assert np.hypot(*g.box.center[:2]) <= 120.0


# ---------------------------------------------------------------- the calibration-board scenario


def test_calibration_board_scenario():
    world = make_world("calibration-board", 0)
    cal = sim_calibration()
    cam, T_base_cam = cal.cameras["cam_front"], cal.extrinsics["cam_front"]
    T_base_lidar = cal.extrinsics["lidar_top"]
    poses, normals = [], []
    for t in np.arange(0.0, world.duration_hint_ns / NS, 0.25):
        scene = world.scene_at(int(t * NS))
        boards = [b for b in scene.boxes if b.kind == "board"]
        assert len(boards) == 1
        b = boards[0]
        assert (
            b.board is not None and (b.board.cols - 1, b.board.rows - 1) == (7, 5) and b.board.square_m == 0.1
        )
        if np.linalg.norm(b.velocity) > 0.05 or np.linalg.norm(scene.ego_velocity) > 0:
            continue  # held (swaying in the hand at a few cm/s at most), ego standing
        T_world_cam = scene.T_world_base @ T_base_cam
        corners = b.pose().apply(np.array([[0.01, sy * 0.45, sz * 0.35] for sy in (-1, 1) for sz in (-1, 1)]))
        uv, z = cam.project(T_world_cam.inverse().apply(corners))
        if not cam.in_image(uv).all():
            continue  # carried out of view at the end
        r = np.linalg.norm((scene.T_world_base @ T_base_lidar).inverse().apply(b.center[None])[0])
        assert 3.0 <= r <= 10.5
        pose = tuple(np.round([*b.center, b.roll, b.pitch, b.yaw], 1))  # a hold, whatever the sway
        if pose not in poses:
            poses.append(pose)
            normals.append(b.pose().rotation[:, 0])
    assert len(poses) >= 10
    ranges = [np.hypot(p[0], p[1]) for p in poses]
    assert max(ranges) - min(ranges) > 3.0
    n = np.array(normals)
    tilt = np.degrees(np.arccos(np.clip(np.abs(n[:, 2]), 0, 1)))  # 90° = upright
    assert np.ptp(tilt) > 10.0 and np.ptp(np.degrees(np.arctan2(n[:, 1], n[:, 0]))) > 20.0
    # corner reflectors at several ranges and bearings
    refl = [b for b in world.scene_at(0).boxes if b.kind == "reflector"]
    assert len(refl) >= 4
    r = np.hypot(*np.array([b.center[:2] for b in refl]).T)
    assert np.ptp(r) > 15.0
    # the drive: strong rotation and acceleration
    ts = np.arange(0, world.duration_hint_ns, 50_000_000)
    st = [world.ego_state(int(t)) for t in ts]
    assert max(abs(s.yaw_rate) for s in st) > 0.6
    assert max(abs(s.accel) for s in st) > 2.0
    assert max(s.speed for s in st) > 5.0


# ---------------------------------------------------------------- rig files


def test_shipped_rig_files_equal_the_code():
    for rel, text in sim_files().items():
        path = ROOT / rel
        assert path.exists(), f"{rel} missing: run python -m edgefuse.sim.rig"
        assert path.read_text(encoding="utf-8") == text, (
            f"{rel} differs from the code: python -m edgefuse.sim.rig"
        )
    kit = load_kit(ROOT / "sensors/sim-default.yaml")
    assert [s.id for s in kit.sensors] == [s.id for s in sim_kit().sensors]
    assert {s.id: s.rate_hz for s in kit.sensors} == {
        "cam_front": 30,
        "lidar_top": 10,
        "radar_front": 20,
        "odom": 50,
        "imu": 200,
    }
    cal = load_calibration(kit.calibration)
    ref = sim_calibration()
    for sid, T in ref.extrinsics.items():
        assert np.allclose(cal.extrinsics[sid].matrix(), T.matrix(), atol=1e-12)
    assert cal.time_offsets_ns == ref.time_offsets_ns
    cam = cal.cameras["cam_front"]
    assert (cam.width, cam.height, cam.model) == (1280, 720, "pinhole")
    assert sim_calibration("fisheye").cameras["cam_front"].model == "fisheye"


def test_camera_mount_looks_forward():
    cal = sim_calibration()
    T = cal.extrinsics["cam_front"]
    # a point 20 m ahead on the ground projects below the image centre, near the middle column
    p_cam = T.inverse().apply(np.array([[22.0, 0.0, 0.0]]))
    ((u, v),) = cal.cameras["cam_front"].project(p_cam)[0]
    assert abs(u - 640) < 40 and 360 < v < 500


def test_walker_faces_the_way_it_walks_and_keeps_facing_through_a_pause():
    """Out 10 m, a 5 s pause, back 10 m (periodic): the yaw is the path heading, plus π on the way back;
    the pause keeps the outbound facing. Asked twice (the per-profile facing table is cached)."""
    from edgefuse.sim.scene import Material
    from edgefuse.sim.world_motion import Agent, PiecewiseS
    from edgefuse.sim.world_paths import build_path

    heading = 0.3
    path = build_path((2.0, -1.0), heading, [("straight", 30.0)])
    motion = PiecewiseS(np.array([0.0, 10.0, 15.0, 25.0]), np.array([0.0, 10.0, 10.0, 0.0]))
    walker = Agent("pedestrian", "pedestrian", np.array([0.4, 0.5, 1.7]), Material("m", (1, 2, 3)), 7,
                   path, motion)
    t = np.array([5.0, 12.0, 20.0, 31.0, 37.0, 45.0])  # out, pause, back, out (next lap), pause, back
    expect = heading + np.pi * np.array([0, 0, 1, 0, 0, 1])
    for _ in range(2):
        xy, yaw, vel, _, active = walker.state(t)
        np.testing.assert_allclose(yaw, expect, atol=1e-12)
        np.testing.assert_allclose(xy[0], [2.0 + 5.0 * math.cos(heading), -1.0 + 5.0 * math.sin(heading)],
                                   atol=1e-9)
        np.testing.assert_allclose(np.hypot(vel[:, 0], vel[:, 1]), [1.0, 0.0, 1.0, 1.0, 0.0, 1.0], atol=1e-9)
