"""Simulated LiDAR and the shared ray caster: geometry, firing timing, motion distortion, fog, rain.

Expected values come from hand-built scenes, an independent per-face ray/plane reference, the Velodyne
calibration YAML read directly, and the physics formulas written out here (not from the code under test).
"""

from __future__ import annotations

import math
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
import yaml

from edgefuse.geometry import Transform, rpy_to_matrix
from edgefuse.sim.lidar import CLOUD_FIELDS, simulate_sweep, vlp32c_model
from edgefuse.sim.raycast import (
    GROUND,
    MISS,
    SURFACE_MARKING,
    SURFACE_OFFROAD,
    SURFACE_ROAD,
    cast_rays,
    ground_surface,
)
from edgefuse.sim.scene import LaneMarking, Material, Road, Scene, Weather, WorldBox

GREY = Material("grey", (128, 128, 128), lidar_reflectivity=0.5, radar_rcs_dbsm=10.0)
T_BASE_LIDAR = Transform.from_rpy([1.2, 0.1, 1.9], 0.0, 0.02, 0.3)  # a slightly pitched, yawed mount
END_NS = 5_000_000_000


def _scene(boxes=(), T_world_base=None, v=(0.0, 0.0, 0.0), yaw_rate=0.0, weather=None, lanes=(), roads=()):
    return Scene(
        t_ns=END_NS,
        boxes=tuple(boxes),
        lanes=tuple(lanes),
        T_world_base=T_world_base or Transform.from_rpy([100.0, -40.0, 0.0], 0, 0, 0.7),
        ego_velocity=np.asarray(v, float),
        ego_yaw_rate=float(yaw_rate),
        weather=weather or Weather(),
        roads=tuple(roads),
    )


def _exact_model(**kw):
    """No range noise, no dropout: geometry is exact up to the 4 mm range quantization."""
    return vlp32c_model(range_noise_m=0.0, dropout=0.0, **kw)


def _box_world(scene, x, y, z, size, yaw=0.0, **kw):
    """A box placed at (x, y, z) in the scene's base_link, heading ``yaw`` relative to base_link."""
    c = scene.T_world_base.apply(np.array([[x, y, z]], float))[0]
    base_yaw = float(scene.T_world_base.rpy[2])
    return WorldBox("car", c, np.asarray(size, float), base_yaw + yaw, kw.pop("material", GREY), **kw)


def _surface_distance(p_world, box: WorldBox, center=None):
    """Distance of world points to the surface of ``box`` (optionally at another centre), and whether
    each point is within the box's extent (grown by 2 cm)."""
    c = box.center if center is None else center
    q = Transform.from_rpy(c, box.roll, box.pitch, box.yaw).inverse().apply(p_world)
    half = np.asarray(box.size) / 2.0
    inside = np.all(np.abs(q) <= half + 0.02, axis=1)
    return np.min(np.abs(np.abs(q) - half), axis=1), inside


# ---------------------------------------------------------------- ray caster vs an independent reference


def _reference_cast(o, d, dt, boxes):
    """Per box and face: ray/plane intersection inside the face rectangle, with the box posed at each
    ray's own time (rotation Rz(yaw + ω·dt)·Ry(pitch)·Rx(roll) from geometry.rpy_to_matrix)."""
    n = o.shape[0]
    best = np.full(n, np.inf)
    which = np.full(n, MISS)
    for bi, b in enumerate(boxes):
        R_pr = rpy_to_matrix(b.roll, b.pitch, 0.0)
        yaw = b.yaw + b.yaw_rate * dt
        c = b.center[None, :] + dt[:, None] * b.velocity[None, :]
        cy, sy = np.cos(yaw), np.sin(yaw)
        # world → box: R_pr^T · Rz(−yaw) · (p − c)
        def to_box(v, cy=cy, sy=sy, R_pr=R_pr):
            x = cy * v[:, 0] + sy * v[:, 1]
            y = -sy * v[:, 0] + cy * v[:, 1]
            return np.stack([x, y, v[:, 2]], 1) @ R_pr

        ob, db = to_box(o - c), to_box(d)
        half = b.size / 2.0
        for k in range(3):
            others = [j for j in range(3) if j != k]
            for sgn in (-1.0, 1.0):
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (sgn * half[k] - ob[:, k]) / db[:, k]
                p = ob + t[:, None] * db
                ok = (t > 0) & np.all(np.abs(p[:, others]) <= half[others] + 1e-9, axis=1) & (t < best)
                best[ok], which[ok] = t[ok], bi
    dz = d[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = -o[:, 2] / dz
    g = (dz < 0) & (tg < best)
    best[g], which[g] = tg[g], GROUND
    return best, which


@pytest.mark.parametrize(
    ("origin_spread", "speed", "yaw_rate"),
    [(1.0, 15.0, 1.0), (0.0, 40.0, 3.0)],
    ids=["moving-origins", "fast-boxes"],
)
def test_cast_rays_matches_independent_reference(origin_spread, speed, yaw_rate):
    rng = np.random.default_rng(7)
    boxes = []
    for k in range(10):
        ang = rng.uniform(-np.pi, np.pi)
        dist = rng.uniform(6.0, 25.0)
        size = rng.uniform([0.5, 0.5, 0.5], [6.0, 3.0, 4.0])
        tilt = k % 3 == 0
        boxes.append(
            WorldBox(
                "thing",
                np.array([50 + dist * np.cos(ang), 20 + dist * np.sin(ang), rng.uniform(0.3, 3.0)]),
                size,
                rng.uniform(-np.pi, np.pi),
                GREY,
                velocity=np.array([rng.uniform(-speed, speed), rng.uniform(-speed, speed), 0.0]),
                yaw_rate=rng.uniform(-yaw_rate, yaw_rate),
                roll=rng.uniform(-0.4, 0.4) if tilt else 0.0,
                pitch=rng.uniform(-0.4, 0.4) if tilt else 0.0,
            )
        )
    n = 20_000  # several culling chunks
    o = np.array([50.0, 20.0, 1.5]) + rng.uniform(-origin_spread, origin_spread, (n, 3))
    d = rng.normal(size=(n, 3))
    d[:, 2] = np.abs(d[:, 2]) * 0.3 * np.sign(d[:, 2])  # mostly near-horizontal, like a LiDAR
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    dt = rng.uniform(-0.1, 0.0, n)
    hits = cast_rays(o, d, boxes, dt_s=dt, max_range=500.0)
    ref_t, ref_which = _reference_cast(o, d, dt, boxes)
    ref_which[ref_t > 500.0] = MISS
    ref_t[ref_t > 500.0] = np.inf
    assert (ref_which >= 0).sum() > 2000, "the scene should put many rays on boxes"
    assert (ref_which == GROUND).sum() > 2000
    np.testing.assert_array_equal(hits.box_index, ref_which)
    finite = np.isfinite(ref_t)
    np.testing.assert_allclose(hits.range_m[finite], ref_t[finite], atol=2e-3, rtol=1e-5)
    assert np.all(np.isinf(hits.range_m[~finite]))


def test_culling_box_shape_is_the_rotated_box_without_yaw():
    """The per-sweep culling geometry: corner offsets R(roll, pitch)·(±l/2, ±w/2, ±h/2) and their norms."""
    from edgefuse.sim.raycast import _box_shape, _BoxArrays

    size = np.array([0.1, 1.2, 0.9])
    box = WorldBox("board", np.array([5.0, 1.0, 1.2]), size, 0.7, GREY, roll=0.3, pitch=-0.25)
    shape = _box_shape(_BoxArrays.of([box], np.zeros(3)))
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    half = (size / 2.0).astype(np.float32).astype(np.float64)  # the ray caster keeps sizes in float32
    expected = (signs * half) @ rpy_to_matrix(0.3, -0.25, 0.0).T
    np.testing.assert_allclose(shape.offsets[0], expected, atol=1e-12)
    np.testing.assert_allclose(shape.r3[0], np.linalg.norm(half), rtol=1e-12)
    np.testing.assert_allclose(shape.r_xy[0], np.hypot(expected[:, 0], expected[:, 1]).max(), rtol=1e-12)
    assert shape.z_lo[0] == pytest.approx(expected[:, 2].min())
    assert shape.z_hi[0] == pytest.approx(expected[:, 2].max())


def test_cast_rays_ranges_and_blocking():
    box = WorldBox("wall", np.array([10.0, 0.0, 2.0]), np.array([1.0, 4.0, 4.0]), 0.0, GREY)
    o = np.zeros((3, 3)) + [0.0, 0.0, 1.0]
    d = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    h = cast_rays(o, d, [box], max_range=100.0)
    np.testing.assert_allclose(h.range_m, [9.5, np.inf, 1.0], atol=1e-5)
    np.testing.assert_array_equal(h.box_index, [0, MISS, GROUND])
    np.testing.assert_allclose(h.cos_incidence, [1.0, 0.0, 1.0], atol=1e-6)
    # a wall beyond max range is a miss; a ground hit nearer than min range blocks the ray (no return)
    h = cast_rays(o, d, [box], max_range=9.0, min_range=2.0)
    np.testing.assert_array_equal(h.box_index, [MISS, MISS, MISS])


def test_ground_surface_classifies_hand_made_layout():
    road = Road(np.array([[-50.0, 0.0], [50.0, 0.0]]), half_width=3.5)
    solid = LaneMarking(np.array([[-50.0, 0.0], [50.0, 0.0]]), width=0.2)
    dashed = LaneMarking(np.array([[0.0, 2.0], [20.0, 2.0], [40.0, 2.0]]), width=0.2, dashed=True)
    pts = np.array(
        [
            [5.0, 0.0],  # on the solid line
            [5.0, 0.5],  # asphalt
            [5.0, 6.0],  # off the road
            [1.5, 2.0],  # dash 0..3 m
            [5.0, 2.0],  # gap 3..9 m
            [19.5, 2.0],  # dash 18..21 m (across the polyline's inner vertex)
            [20.5, 2.0],
            [22.0, 2.0],  # gap
            [30.0, 2.0],  # dash 27..30 m: 30.0 is the edge, so step inside
            [28.5, 2.0],
        ]
    )
    pts[8] = [29.0, 2.0]
    got = ground_surface(pts, [solid, dashed], [road])
    expect = [SURFACE_MARKING, SURFACE_ROAD, SURFACE_OFFROAD, SURFACE_MARKING, SURFACE_ROAD,
              SURFACE_MARKING, SURFACE_MARKING, SURFACE_ROAD, SURFACE_MARKING, SURFACE_MARKING]
    np.testing.assert_array_equal(got, expect)


def test_ground_surface_of_a_long_curved_road_far_beyond_the_points():
    """Only the segments that can reach the points' grid are drawn (a performance cull): points beside a
    curved road whose polyline runs 1.6 km away, the centreline itself just outside the points' bounding
    box, are still classified by their distance to the centreline."""
    a = np.linspace(0.0, np.pi, 4001)  # a 500 m radius half circle, 0.4 m segments
    centre = np.stack([500.0 * np.cos(a), 500.0 * np.sin(a)], axis=1)
    road = Road(centre, half_width=3.5)
    line = LaneMarking(centre, width=0.2)
    rng = np.random.default_rng(3)
    ang = rng.uniform(np.pi / 2 - 0.01, np.pi / 2 + 0.01, 400)  # a 10 m stretch at the top
    off = rng.uniform(1.0, 8.0, 400)  # distance outwards from the centreline (y ≥ 500.97)
    pts = np.stack([(500.0 + off) * np.cos(ang), (500.0 + off) * np.sin(ang)], axis=1)
    got = ground_surface(pts, [line], [road])
    clear = np.abs(off - 3.5) > 0.08  # away from the road's edge (±1.5 cells)
    expect = np.where(off < 3.5, SURFACE_ROAD, SURFACE_OFFROAD)  # chords deviate from the arc by 0.04 mm
    assert clear.sum() > 350 and (expect == SURFACE_ROAD).sum() > 100
    np.testing.assert_array_equal(got[clear], expect[clear])
    np.testing.assert_array_equal(ground_surface(pts, [line], [road]), got)  # cached geometry: same answer


# ---------------------------------------------------------------- the sweep


def test_points_lie_on_box_faces_and_on_the_ground():
    sc = _scene()
    box = _box_world(sc, 12.0, 2.0, 0.8, [4.5, 1.9, 1.6], yaw=0.4)
    sc = replace(sc, boxes=(box,))
    cloud, firings = simulate_sweep(sc, END_NS, T_BASE_LIDAR, _exact_model(), np.random.default_rng(0))
    assert cloud.fields == CLOUD_FIELDS and cloud.data.dtype == np.float32
    p_world = (sc.T_world_base @ T_BASE_LIDAR).apply(cloud.xyz.astype(np.float64))
    dist, inside = _surface_distance(p_world, box)
    on_box = inside & (dist <= 0.01)
    assert on_box.sum() > 300
    # every point is on the box surface or on the ground z = 0 (4 mm quantization, no noise)
    assert np.all(on_box | (np.abs(p_world[:, 2]) <= 0.01))
    assert np.abs(p_world[~on_box, 2]).max() <= 0.005
    assert dist[on_box].max() <= 0.005
    # the raw firing grid holds exactly the cloud's ranges
    r = np.linalg.norm(cloud.xyz.astype(np.float64), axis=1)
    fr = firings.range_m[firings.range_m > 0]
    np.testing.assert_allclose(np.sort(r), np.sort(fr), atol=1e-4)


def test_points_have_the_calibration_elevations():
    path = resources.files("edgefuse") / "data" / "velodyne" / "VLP32C.calibration.yaml"
    lasers = yaml.safe_load(path.read_text())["lasers"]
    vert = np.array([l["vert_correction"] for l in sorted(lasers, key=lambda l: l["laser_id"])])
    ring_of_laser = np.argsort(np.argsort(vert, kind="stable"), kind="stable")
    sc = _scene(boxes=[WorldBox("wall", np.array([130.0, -40.0, 10.0]), np.array([1.0, 80.0, 20.0]), 0.0,
                                GREY)])
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    cloud, _ = simulate_sweep(sc, END_NS, T, _exact_model(), np.random.default_rng(1))
    ring = cloud.column("ring").astype(int)
    xyz = cloud.xyz.astype(np.float64)
    el = np.arcsin(xyz[:, 2] / np.linalg.norm(xyz, axis=1))
    laser = np.argsort(ring_of_laser)[ring]  # ring → laser id
    assert len(np.unique(ring)) >= 30
    np.testing.assert_allclose(el, vert[laser], atol=1e-3)


def test_point_times_follow_the_firing_timing():
    """t_ns spans about one 600 rpm revolution (−100 ms..0); each point's time matches its azimuth
    (clockwise rotation, 10 rev/s, seam at the cut azimuth) and its laser's slot in the 55.296 µs
    sequence (the firing table of the Velodyne calibration module)."""
    from edgefuse.adapters.velodyne.calibration import vlp32c

    cal = vlp32c()
    walls = [
        WorldBox("wall", np.array([x, y, 10.0]), np.array([sx, sy, 20.0]), 0.0, GREY)
        for x, y, sx, sy in [(20, 0, 1, 41), (-20, 0, 1, 41), (0, 20, 41, 1), (0, -20, 41, 1)]
    ]
    sc = _scene(boxes=walls, T_world_base=Transform.identity())
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    model = _exact_model()
    cloud, firings = simulate_sweep(sc, END_NS, T, model, np.random.default_rng(2))
    t = cloud.column("t_ns").astype(np.float64)
    assert t.max() <= 0.0
    assert -100e6 <= t.min() <= -99.8e6
    assert t.max() >= -60e3  # a return from the sweep's last firing sequence
    # laser of each point from its ring (elevation rank)
    ring_of_laser = np.argsort(np.argsort(cal.vert_angle_rad, kind="stable"), kind="stable")
    laser = np.argsort(ring_of_laser)[cloud.column("ring").astype(int)]
    xyz = cloud.xyz.astype(np.float64)
    beam_az = np.mod(-np.arctan2(xyz[:, 1], xyz[:, 0]), 2 * np.pi)  # Velodyne: clockwise from +x
    rotor = beam_az + cal.rot_correction_rad[laser]
    omega = 600 / 60 * 2 * np.pi
    expect_t = -np.mod(np.pi - rotor, 2 * np.pi) / omega * 1e9  # the rotor reaches π at the sweep end
    err = t - expect_t
    err = (err + 50e6) % 100e6 - 50e6  # points near the seam may wrap by one revolution
    assert np.abs(err).max() <= 0.6 * 55296
    phase = np.mod(t + END_NS - cal.firing_offset_ns[laser], 55296)
    assert np.ptp(phase) <= 16  # float32 t_ns resolves 8 ns at 100 ms
    assert np.all(np.diff(firings.t_ns) == 55296)
    assert np.all(np.diff(np.unwrap(-firings.azimuth_rad)) < 0)  # clockwise rotation


def test_moving_box_is_motion_distorted_and_deskews_onto_the_box():
    """A car behind the sensor, at the sweep's seam, driving away at 20 m/s: its points span the whole
    revolution, so the raw points smear by ~v·Δt along the motion, while each point minus v·t_ns
    lies on the box at the sweep end."""
    sc = _scene(T_world_base=Transform.identity())
    v = np.array([-20.0, 0.0, 0.0])
    box = WorldBox("car", np.array([-12.0, 0.0, 0.8]), np.array([4.5, 1.9, 1.6]), 0.0, GREY,
                   velocity=v, track_id=3, label="car")
    sc = replace(sc, boxes=(box,))
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    cloud, _ = simulate_sweep(sc, END_NS, T, _exact_model(), np.random.default_rng(3))
    p = T.apply(cloud.xyz.astype(np.float64))
    t_s = cloud.column("t_ns").astype(np.float64) * 1e-9
    comp = p - v[None, :] * t_s[:, None]  # where the point is at the sweep end
    dist, inside = _surface_distance(comp, box)
    mine = inside & (dist <= 0.01)
    assert mine.sum() > 100
    face = mine & (np.abs(comp[:, 0] - (-12.0 + 2.25)) <= 0.01)  # the front face, towards the sensor
    dt_span = np.ptp(t_s[face])
    assert dt_span > 0.09  # the seam splits the car between the first and last firings
    raw_spread = np.ptp(p[face, 0])
    assert raw_spread == pytest.approx(20.0 * dt_span, abs=0.02)
    # without de-skewing, most of the early points are far off the box at the sweep end
    assert np.max(np.abs(p[face, 0] - (-12.0 + 2.25))) > 1.8


def test_ego_motion_distorts_static_world_consistently():
    """Ego at 15 m/s turning at 0.5 rad/s: every point, mapped through the ego pose at its own firing
    time (integrated numerically here), lands on the static wall or the ground."""
    wall = WorldBox("wall", np.array([18.0, 0.0, 3.0]), np.array([1.0, 60.0, 6.0]), 0.0, GREY)
    sc = _scene(boxes=[wall], T_world_base=Transform.identity(), v=(15.0, 0.0, 0.0), yaw_rate=0.5)
    cloud, _ = simulate_sweep(sc, END_NS, T_BASE_LIDAR, _exact_model(), np.random.default_rng(4))
    t_s = cloud.column("t_ns").astype(np.float64) * 1e-9
    # ego pose at -τ by integrating backwards in small steps: heading and position
    steps = 4000
    tau = np.linspace(0.0, -0.1, steps + 1)
    h = 0.5 * tau
    dx = np.concatenate([[0.0], np.cumsum(15.0 * np.cos(0.5 * (h[1:] + h[:-1])) * np.diff(tau))])
    dy = np.concatenate([[0.0], np.cumsum(15.0 * np.sin(0.5 * (h[1:] + h[:-1])) * np.diff(tau))])
    hx, px, py = (np.interp(t_s, tau[::-1], a[::-1]) for a in (h, dx, dy))
    p_base = T_BASE_LIDAR.apply(cloud.xyz.astype(np.float64))
    c, s = np.cos(hx), np.sin(hx)
    pw = np.stack([c * p_base[:, 0] - s * p_base[:, 1] + px, s * p_base[:, 0] + c * p_base[:, 1] + py,
                   p_base[:, 2]], 1)
    dist, inside = _surface_distance(pw, wall)
    on_wall = inside & (dist <= 0.01)
    assert on_wall.sum() > 500
    assert np.all(on_wall | (np.abs(pw[:, 2]) <= 0.01))
    # and the distortion is real: ignoring the ego motion puts wall points up to ~1.5 m off
    front = on_wall & (np.abs(pw[:, 0] - 17.5) <= 0.01)
    assert np.max(np.abs(p_base[front, 0] - 17.5)) > 0.6  # ~15 m/s × 50 ms: the front is mid-sweep


def test_same_rng_same_bytes():
    sc = _scene()
    car = _box_world(sc, 10.0, -3.0, 0.8, [4.0, 1.8, 1.6], velocity=np.array([5.0, 1, 0]))
    sc = replace(sc, boxes=(car,))
    m = vlp32c_model()
    a, fa = simulate_sweep(sc, END_NS, T_BASE_LIDAR, m, np.random.default_rng(11))
    b, fb = simulate_sweep(sc, END_NS, T_BASE_LIDAR, m, np.random.default_rng(11))
    c, _ = simulate_sweep(sc, END_NS, T_BASE_LIDAR, m, np.random.default_rng(12))
    assert a.data.tobytes() == b.data.tobytes()
    assert fa.range_m.tobytes() == fb.range_m.tobytes()
    assert a.data.tobytes() != c.data.tobytes()
    # with noise on, ranges scatter about the truth with about the model's 2 cm
    e, _ = simulate_sweep(sc, END_NS, T_BASE_LIDAR, _exact_model(detection_sigma=0.0),
                          np.random.default_rng(11))
    n, _ = simulate_sweep(sc, END_NS, T_BASE_LIDAR, vlp32c_model(dropout=0.0, detection_sigma=0.0),
                          np.random.default_rng(11))
    assert len(e) == len(n)
    dr = np.linalg.norm(n.xyz, axis=1) - np.linalg.norm(e.xyz, axis=1)
    assert np.std(dr) == pytest.approx(0.02, rel=0.1)


# ---------------------------------------------------------------- weather


def _board_scene(r, weather, refl):
    board = WorldBox("board", np.array([r + 0.05, 0.0, 1.9]), np.array([0.1, 1.6, 1.6]), 0.0,
                     Material("board", (255, 255, 255), lidar_reflectivity=refl))
    return _scene(boxes=[board], T_world_base=Transform.identity(), weather=weather)


def test_fog_return_fraction_follows_the_detection_threshold():
    """Expected returns from a board of reflectivity ρ at range r in fog of visibility V: each ray that
    geometrically hits it returns with probability Φ(ln(ρ·cosθ·exp(−2βr)/r² / P_min) / σ),
    β = 3.912 / V, P_min = ρ_ref / r_ref² (the model's detection parameters)."""
    V, rho = 60.0, 0.5
    beta = 3.912 / V
    T = Transform.from_rpy([0.0, 0.0, 0.0], 0, 0, 0)
    model = _exact_model(backscatter_length_m=0.0)
    p_min = model.reference_reflectivity / model.reference_range_m**2
    sigma = model.detection_sigma
    counts = []
    for r, seed in [(15.0, 1), (28.0, 2), (33.0, 3), (33.8, 4), (34.3, 5), (40.0, 6)]:
        # geometry: which rays hit the board (clear air, a bright board: every hit returns)
        clear, _ = simulate_sweep(_board_scene(r, Weather(), 5.0), END_NS, T, model, np.random.default_rng(0))
        xyz = clear.xyz.astype(np.float64)
        hit = np.abs(xyz[:, 0] - r) < 0.01
        rng_ = np.linalg.norm(xyz[hit], axis=1)
        cos = xyz[hit, 0] / rng_
        z = np.log(rho * cos * np.exp(-2 * beta * rng_) / rng_**2 / p_min) / sigma
        prob = np.array([0.5 * math.erfc(-zi / math.sqrt(2)) for zi in z])
        expect, var = prob.sum(), (prob * (1 - prob)).sum()
        fog, _ = simulate_sweep(_board_scene(r, Weather(fog_visibility_m=V), rho), END_NS, T, model,
                                np.random.default_rng(seed))
        got = int((np.abs(fog.xyz[:, 0] - r) < 0.01).sum())
        assert abs(got - expect) <= 4 * math.sqrt(var) + 2, (r, got, expect)
        counts.append(got)
        if r == 15.0:  # intensity: Velodyne reflectivity 100·ρ·cosθ·exp(−2βr)
            inten = fog.column("intensity")[np.abs(fog.xyz[:, 0] - r) < 0.01].astype(np.float64)
            assert inten.mean() == pytest.approx((100 * rho * cos * np.exp(-2 * beta * rng_)).mean(), abs=0.6)
    assert counts[0] > 50 and counts[-1] == 0
    assert counts == sorted(counts, reverse=True)


def test_fog_backscatter_returns_near_the_sensor():
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    sc = _scene(T_world_base=Transform.identity())
    model = vlp32c_model()
    near = []
    for V in (float("inf"), 200.0, 60.0):
        cloud, _ = simulate_sweep(replace(sc, weather=Weather(fog_visibility_m=V)), END_NS, T, model,
                                  np.random.default_rng(5))
        z_world = cloud.xyz[:, 2] + 1.9
        off_ground = np.abs(z_world) > 0.1  # there is nothing but the ground in this scene
        r = np.linalg.norm(cloud.xyz[off_ground], axis=1)
        near.append(int(off_ground.sum()))
        if np.isfinite(V):
            assert np.median(r) < 5.0 and r.min() >= model.min_range_m
            assert cloud.column("intensity")[off_ground].max() <= 5  # fog echoes are faint
    assert near[0] == 0 and 0 < near[1] < near[2]


def test_rain_adds_dropout():
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    wall = WorldBox("wall", np.array([10.0, 0.0, 3.0]), np.array([1.0, 30.0, 6.0]), 0.0, GREY)
    sc = _scene(boxes=[wall], T_world_base=Transform.identity())
    model = vlp32c_model(detection_sigma=0.0)
    dry, _ = simulate_sweep(sc, END_NS, T, model, np.random.default_rng(6))
    rainy = replace(sc, weather=Weather(rain=0.8))
    wet, _ = simulate_sweep(rainy, END_NS, T, model, np.random.default_rng(6))
    keep = (1 - model.dropout - 0.8 * model.rain_dropout) / (1 - model.dropout)
    n = len(dry)
    assert len(wet) == pytest.approx(n * keep, abs=4 * math.sqrt(n * keep * (1 - keep)))


def test_lane_markings_are_bright_in_intensity():
    lanes = [LaneMarking(np.array([[-100.0, 0.0], [100.0, 0.0]]), width=0.3)]
    roads = [Road(np.array([[-100.0, 0.0], [100.0, 0.0]]), half_width=5.0)]
    sc = _scene(T_world_base=Transform.from_rpy([0.0, 2.0, 0.0], 0, 0, 0), lanes=lanes, roads=roads)
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    cloud, _ = simulate_sweep(sc, END_NS, T, _exact_model(), np.random.default_rng(8))
    pw = (sc.T_world_base @ T).apply(cloud.xyz.astype(np.float64))
    r = np.linalg.norm(cloud.xyz, axis=1)
    band = (r > 6) & (r < 15) & (np.abs(pw[:, 0]) < 10)
    on_line = band & (np.abs(pw[:, 1]) < 0.1)
    asphalt = band & (np.abs(pw[:, 1]) > 0.5) & (np.abs(pw[:, 1]) < 4.5)
    assert on_line.sum() > 5 and asphalt.sum() > 50
    inten = cloud.column("intensity")
    assert inten[on_line].mean() > 4 * inten[asphalt].mean()


def test_intensity_follows_reflectivity_and_incidence():
    """Velodyne calibrated reflectivity of a Lambertian wall seen obliquely: round(100·ρ·cosθ), θ from
    the wall normal and each point's line of sight."""
    yaw = 1.0
    wall = WorldBox("wall", np.array([9.0, 0.0, 2.0]), np.array([0.2, 12.0, 4.0]), yaw,
                    Material("paint", (250, 250, 250), lidar_reflectivity=0.9))
    sc = _scene(boxes=[wall], T_world_base=Transform.identity())
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    cloud, _ = simulate_sweep(sc, END_NS, T, _exact_model(), np.random.default_rng(9))
    p = T.apply(cloud.xyz.astype(np.float64))
    q = wall.pose().inverse().apply(p)
    on = (np.abs(np.abs(q[:, 0]) - 0.1) <= 0.01) & (np.abs(q[:, 1]) < 5.9) & (p[:, 2] > 0.05)  # broad faces
    assert on.sum() > 100
    normal = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # the wall's thin axis
    los = (p[on] - T.translation) / np.linalg.norm(p[on] - T.translation, axis=1, keepdims=True)
    cos = np.abs(los @ normal)
    assert np.ptp(cos) > 0.3  # a range of incidence angles
    np.testing.assert_allclose(cloud.column("intensity")[on], np.rint(90 * cos), atol=1.0)


def test_empty_world_and_sensor_inside_a_box_do_not_fail():
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    empty = _scene(T_world_base=Transform.identity(), weather=Weather(fog_visibility_m=40.0, rain=0.5))
    cloud, firings = simulate_sweep(empty, END_NS, T, vlp32c_model(), np.random.default_rng(0))
    assert len(cloud) > 0 and firings.range_m.shape == (firings.t_ns.shape[0], 32)
    # a box around the sensor (a tunnel seen from inside) is not a surface for rays leaving it
    tunnel = WorldBox("tunnel", np.array([0.0, 0.0, 2.0]), np.array([50.0, 50.0, 4.0]), 0.0, GREY)
    cloud, _ = simulate_sweep(replace(empty, boxes=(tunnel,), weather=Weather()), END_NS, T,
                              _exact_model(), np.random.default_rng(0))
    assert len(cloud) > 0 and np.all(np.abs(cloud.xyz[:, 2] + 1.9) <= 0.01)  # only the ground


def test_firings_round_trip_through_the_velodyne_packet_codec():
    """The raw firing grid, packed as real VLP-32C packets and decoded by the adapter's decoder, gives
    back the simulated cloud: same points (within range/azimuth quantization), rings and intensities."""
    from edgefuse.adapters.velodyne.calibration import vlp32c
    from edgefuse.adapters.velodyne.packet import decode_packets, encode_packets

    cal = vlp32c()
    sc = _scene()
    car = _box_world(sc, 8.0, 3.0, 0.8, [4.5, 1.9, 1.6], yaw=0.3)
    sc = replace(sc, boxes=(car,))
    cloud, firings = simulate_sweep(sc, END_NS, T_BASE_LIDAR, vlp32c_model(), np.random.default_rng(10))
    packets = encode_packets(
        firings.azimuth_rad, firings.range_m, firings.intensity, int(firings.t_ns[0]), cal
    )
    dec = decode_packets(packets, cal)
    assert len(dec.xyz) == len(cloud)
    # the sweep's last sequence ends a padded packet, where the decoder has no next azimuth to
    # interpolate towards: leave it out of the position check
    near = (np.linalg.norm(cloud.xyz, axis=1) < 50.0) & (cloud.column("t_ns") < -cal.sequence_period_ns)
    np.testing.assert_allclose(dec.xyz[near], cloud.xyz[near], atol=0.01)
    np.testing.assert_array_equal(dec.ring, cloud.column("ring").astype(int))
    np.testing.assert_array_equal(dec.intensity, cloud.column("intensity"))


def test_other_beam_layouts_by_config():
    """A VLP-16 from the Velodyne calibration module: 16 beams at −15°..+15° in 2° steps (the manual),
    16 firings 2.304 µs apart; at 300 rpm a sweep lasts 200 ms."""
    from edgefuse.adapters.velodyne.calibration import vlp16
    from edgefuse.sim.lidar import velodyne_model

    model = velodyne_model(vlp16(), rpm=300.0, range_noise_m=0.0, dropout=0.0)
    walls = [
        WorldBox("wall", np.array([x, y, 5.0]), np.array([sx, sy, 20.0]), 0.0, GREY)
        for x, y, sx, sy in [(15, 0, 1, 31), (-15, 0, 1, 31), (0, 15, 31, 1), (0, -15, 31, 1)]
    ]
    sc = _scene(boxes=walls, T_world_base=Transform.identity())
    T = Transform.from_rpy([0.0, 0.0, 1.9], 0, 0, 0)
    cloud, firings = simulate_sweep(sc, END_NS, T, model, np.random.default_rng(0))
    xyz = cloud.xyz.astype(np.float64)
    el = np.rad2deg(np.arcsin(xyz[:, 2] / np.linalg.norm(xyz, axis=1)))
    ring = cloud.column("ring").astype(int)
    np.testing.assert_allclose(el, -15.0 + 2.0 * ring, atol=0.05)
    assert firings.range_m.shape[1] == 16
    assert -200e6 <= cloud.column("t_ns").min() <= -199.8e6
    np.testing.assert_array_equal(np.unique(np.diff(firings.t_ns)), [55296])
