"""The realistic LiDAR of the calibration scenario (``LidarImperfections``) and the swaying hand-held board:
each effect checked against what the physics says, computed here from the scene's geometry (ray ∩ plane),
never from the simulator's own intermediate values."""

from __future__ import annotations

import math

import numpy as np

from edgefuse.geometry import Transform
from edgefuse.sim.lidar import (
    BOARD_BLACK_REFLECTIVITY,
    BOARD_WHITE_REFLECTIVITY,
    LidarImperfections,
    scenario_lidar,
    simulate_sweep,
    vlp32c_model,
)
from edgefuse.sim.scene import Board, Material, Scene, Weather, WorldBox
from edgefuse.sim.world import make_world

WALL = Material("wall", (128, 128, 128), "plain", 0.5, 0.0)
PLATE = Material("plate", (245, 245, 245), "checker", 0.7, 0.0)
BOARD = Board(cols=8, rows=6, square_m=0.1, margin_m=0.05)


def _scene(*boxes) -> Scene:
    return Scene(0, tuple(boxes), (), Transform.identity(), np.zeros(3), 0.0, Weather())


def _board(x_face: float) -> WorldBox:
    """Board-a's plate facing the LiDAR (at the origin) with its printed face at x = ``x_face``."""
    return WorldBox(
        "board", np.array([x_face + 0.01, 0.0, 0.0]), np.array([0.02, 0.9, 0.7]), math.pi, PLATE, board=BOARD
    )


def _imperfect(n: int = 32, **kw) -> LidarImperfections:
    base = dict(
        range_bias_m=np.zeros(n),
        elevation_bias_rad=np.zeros(n),
        azimuth_bias_rad=np.zeros(n),
        walk_m_per_decade=0.0,
        divergence_rad=(0.0, 0.0),
    )
    return LidarImperfections(**(base | kw))


def _sweep(scene, imp, seed=0):
    model = vlp32c_model(range_noise_m=0.0, dropout=0.0, imperfections=imp)
    cloud, _ = simulate_sweep(scene, 0, Transform.identity(), model, np.random.default_rng(seed))
    return cloud, model


def _range_error_to_plane(xyz: np.ndarray, x_plane: float) -> np.ndarray:
    """Measured range minus the range along each point's ray to the plane x = x_plane (m)."""
    rho = np.linalg.norm(xyz, axis=1)
    return rho - x_plane / (xyz[:, 0] / rho)


def test_black_squares_read_longer_than_white_by_the_range_walk():
    walk = 0.015
    cloud, _ = _sweep(_scene(_board(5.0)), _imperfect(walk_m_per_decade=walk))
    p = cloud.xyz.astype(np.float64)
    on = (p[:, 0] > 4.5) & (p[:, 0] < 5.5)
    p, inten = p[on], cloud.column("intensity")[on]
    # the printed squares as seen facing the board: columns to the viewer's right (world −y), rows down
    # from the top edge, the top-left square black; 5 mm clear of every square's edge
    a, r = (0.4 - p[:, 1]) / 0.1, (0.3 - p[:, 2]) / 0.1
    clear = (np.abs(a - np.round(a)) > 0.05) & (np.abs(r - np.round(r)) > 0.05)
    inside = (a > 0) & (a < 8) & (r > 0) & (r < 6) & clear
    black = inside & ((np.floor(a) + np.floor(r)) % 2 == 0)
    white = inside & ~black
    assert black.sum() > 50 and white.sum() > 50
    err = _range_error_to_plane(p, 5.0)
    # same range and incidence: the amplitude ratio is the reflectivity ratio
    expected = walk * math.log10(BOARD_WHITE_REFLECTIVITY / BOARD_BLACK_REFLECTIVITY)
    assert abs((err[black].mean() - err[white].mean()) - expected) < 0.002, (
        err[black].mean(),
        err[white].mean(),
    )
    # and the intensity tells them apart (dark squares dim)
    assert inten[black].max() < inten[white].min()


def test_each_laser_reads_its_own_range_bias():
    bias = np.linspace(-0.03, 0.03, 32)
    wall = WorldBox("building", np.array([10.5, 0.0, 0.0]), np.array([1.0, 30.0, 8.0]), 0.0, WALL)
    cloud, model = _sweep(_scene(wall), _imperfect(range_bias_m=bias))
    p = cloud.xyz.astype(np.float64)
    rings = cloud.column("ring").astype(int)
    on = (p[:, 0] > 9.5) & (np.abs(p[:, 1]) < 12)
    err = _range_error_to_plane(p[on], 10.0)
    ring_of_laser = model.ring
    for laser in range(32):
        sel = rings[on] == ring_of_laser[laser]
        if sel.sum() > 50:
            assert abs(err[sel].mean() - bias[laser]) < 0.0015, (laser, err[sel].mean(), bias[laser])


def test_divergent_beams_give_mixed_returns_between_the_board_and_what_is_behind_it():
    wall = WorldBox(
        "building", np.array([5.9, 0.0, 0.0]), np.array([0.2, 30.0, 8.0]), 0.0, WALL
    )  # 0.8 m behind
    scene = _scene(_board(5.0), wall)
    between = []
    for imp in (_imperfect(), _imperfect(divergence_rad=(3.0e-3, 1.5e-3))):
        cloud, _ = _sweep(scene, imp)
        p = cloud.xyz.astype(np.float64)
        near = np.abs(p[:, 1]) < 1.0
        x = p[near, 0]
        between.append(int(((x > 5.05) & (x < 5.75)).sum()))
    assert between[0] == 0 and between[1] > 5, between
    # an ideal model is untouched by the imperfections' code path: same bytes as before they existed
    a, _ = _sweep(scene, None, seed=3)
    b, _ = _sweep(scene, None, seed=3)
    assert np.array_equal(a.data, b.data)


def test_elevation_bias_moves_where_a_laser_hits_not_where_it_is_reported():
    """A laser aimed 0.2° higher than its table says hits a wall 10 m away ~3.5 cm higher; the driver
    places the point along the table's beam: its elevation is the table's, its range the true beam's."""
    bias = np.zeros(32)
    bias[5] = math.radians(0.2)
    wall = WorldBox("building", np.array([10.5, 0.0, 0.0]), np.array([1.0, 30.0, 8.0]), 0.0, WALL)
    cloud, model = _sweep(_scene(wall), _imperfect(elevation_bias_rad=bias))
    p = cloud.xyz.astype(np.float64)
    ring = cloud.column("ring").astype(int) == model.ring[5]
    q = p[ring & (np.abs(p[:, 1]) < 1.0)]
    elev = np.arctan2(q[:, 2], np.hypot(q[:, 0], q[:, 1]))
    assert np.allclose(elev, model.vertical_rad[5], atol=2e-4)
    true_range = 10.0 / (np.cos(model.vertical_rad[5] + bias[5]) * np.cos(np.arctan2(q[:, 1], q[:, 0])))
    assert np.abs(np.linalg.norm(q, axis=1) - true_range).max() < 0.004  # the 4 mm range resolution


def test_the_calibration_scenario_has_a_real_unit_and_a_swaying_board():
    lidar = scenario_lidar("calibration-board", 3)
    assert lidar.imperfections is not None and scenario_lidar("default", 3).imperfections is None
    imp = lidar.imperfections
    assert 0.004 < np.std(imp.range_bias_m) < 0.02 and np.abs(imp.range_bias_m).max() <= 0.03
    other = scenario_lidar("calibration-board", 4).imperfections
    assert not np.array_equal(imp.range_bias_m, other.range_bias_m)  # another seed, another unit
    board = make_world("calibration-board", 3).board
    ts, _ = board.knots()
    t0, t1 = (ts[0] + ts[1]) / 2, ts[1] - 0.1  # within the first hold
    (p0, v0), (p1, _v1) = board.at(t0), board.at(t1)
    assert 1e-4 < np.abs(p1[:3] - p0[:3]).max() <= 0.01 + 1e-9  # it moves, by at most twice the amplitude
    assert np.abs(p1[3:] - p0[3:]).max() <= 2 * math.radians(0.25) + 1e-9
    # the rate is the pose's derivative (what the ray caster extrapolates with)
    h = 1e-4
    assert np.allclose((board.at(t0 + h)[0] - board.at(t0 - h)[0]) / (2 * h), v0, atol=1e-5)
