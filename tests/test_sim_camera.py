"""The simulated camera (edgefuse.sim.camera) and the preview images (edgefuse.sim.preview).

Oracles are independent of the renderer: per-pixel ray casting through ``CameraModel.rays`` (slab
test against each box) for silhouettes and occlusion, ``cv2.findChessboardCorners`` for the board,
Koschmieder's formula for fog.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgefuse.geometry import CameraModel, Transform
from edgefuse.sim.camera import render_camera
from edgefuse.sim.camera_board import board_inner_corners
from edgefuse.sim.camera_lens import camera_tables, undistort_pixel_grid
from edgefuse.sim.rig import sim_calibration
from edgefuse.sim.scene import Board, Material, Scene, Weather, WorldBox

CALIB = sim_calibration()
CAM = CALIB.cameras["cam_front"]
T_BASE_CAM = CALIB.extrinsics["cam_front"]


CLEAR = Weather()


def _scene(boxes, weather=CLEAR) -> Scene:
    return Scene(0, tuple(boxes), (), Transform.identity(), np.zeros(3), 0.0, weather)


def _box(kind, center, size, yaw=0.0, rgb=(200, 30, 30), texture="plain", **kw) -> WorldBox:
    return WorldBox(kind, np.asarray(center, float), np.asarray(size, float), yaw,
                    Material(kind, rgb, texture), **kw)


def _render(scene, cam=CAM, T=T_BASE_CAM, seed=0, noise_std=0.0):
    return render_camera(scene, cam, T, np.random.default_rng(seed), noise_std=noise_std)


@pytest.fixture(scope="module")
def pixel_rays():
    """Unit rays (H·W, 3) in the optical frame of every pixel centre of CAM (independent of the renderer:
    CameraModel.rays undistorts by fixed-point iteration)."""
    uu, vv = np.meshgrid(np.arange(CAM.width, dtype=np.float64), np.arange(CAM.height, dtype=np.float64))
    return CAM.rays(np.stack([uu.ravel(), vv.ravel()], axis=1))


def _ray_box_t(rays_cam: np.ndarray, T_cam_world: Transform, box: WorldBox) -> np.ndarray:
    """Distance along each unit ray (from the camera centre) to ``box`` (slab test), inf for a miss."""
    T_box_cam = box.pose().inverse() @ T_cam_world.inverse()
    o = T_box_cam.translation
    d = rays_cam @ T_box_cam.rotation.T
    half = np.asarray(box.size) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (tmax >= np.maximum(tmin, 0.0)) & (tmax > 0)
    return np.where(hit, np.maximum(tmin, 0.0), np.inf)


def _boundary_band(mask: np.ndarray, px: int = 2) -> np.ndarray:
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, k) != cv2.erode(m, k))


def test_silhouette_matches_ray_cast_and_projected_box(pixel_rays):
    car = _box("car", [14.0, 1.0, 0.75], [4.5, 1.9, 1.5], yaw=0.4, rgb=(30, 60, 200), track_id=1, label="car")
    with_car = _render(_scene([car])).astype(int)
    empty = _render(_scene([])).astype(int)
    rendered = np.abs(with_car - empty).max(axis=2) > 12
    T_cam_world = (Transform.identity() @ T_BASE_CAM).inverse()
    expected = np.isfinite(_ray_box_t(pixel_rays, T_cam_world, car)).reshape(CAM.height, CAM.width)
    assert expected.sum() > 5000
    band = _boundary_band(expected)
    assert np.array_equal(rendered[~band], expected[~band])
    # and the projected GT box (CameraModel.project of points densely spread on its edges) covers it
    c = car.pose().apply(np.array(_box_edge_points(car.size)))
    uv, z = CAM.project(T_cam_world.apply(c))
    hull = np.zeros_like(rendered, dtype=np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(uv * 16).astype(np.int32)), 1, cv2.LINE_8, 4)
    # 2 px: anti-aliased edges reach ~0.5 px out and the distortion remap interpolates over 1 px
    hull = cv2.dilate(hull, np.ones((5, 5), np.uint8)).astype(bool)
    assert rendered[~hull].sum() == 0
    assert rendered.sum() > 0.9 * expected.sum()


def _box_edge_points(size, n: int = 40) -> list:
    l, w, h = np.asarray(size) / 2.0
    corners = np.array([[sx * l, sy * w, sz * h] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    pts = []
    for i in range(8):
        for j in range(i + 1, 8):
            if np.sum(corners[i] != corners[j]) == 1:
                for s in np.linspace(0, 1, n):
                    pts.append(corners[i] * (1 - s) + corners[j] * s)
    return pts


def test_occlusion_and_boxes_behind_the_camera(pixel_rays):
    """Painter's order and near-plane clipping against a per-pixel first-hit ray cast: a wide red wall,
    a yellow box in front of it, and a magenta box that starts behind the camera and runs past it."""
    wall = _box("wall", [40.0, 0.0, 4.0], [1.0, 30.0, 8.0], rgb=(220, 20, 20))
    block = _box("block", [18.0, -2.0, 1.5], [3.0, 4.0, 3.0], yaw=0.3, rgb=(220, 220, 20))
    side = _box("long", [2.0, 3.2, 1.5], [12.0, 1.5, 3.0], rgb=(210, 20, 210))
    boxes = [side, wall, block]  # scene order must not matter
    img = _render(_scene(boxes)).astype(np.float64)
    T_cam_world = T_BASE_CAM.inverse()
    t = np.stack([_ray_box_t(pixel_rays, T_cam_world, b) for b in boxes], axis=1)
    first = np.where(np.isfinite(t.min(axis=1)), np.argmin(t, axis=1), -1).reshape(CAM.height, CAM.width)
    chroma = img / np.maximum(img.sum(axis=2, keepdims=True), 1)
    refs = np.array([b.material.rgb for b in boxes], float)
    refs /= refs.sum(axis=1, keepdims=True)
    dist = np.linalg.norm(chroma[:, :, None, :] - refs[None, None], axis=3)
    label = np.where(dist.min(axis=2) < 0.08, np.argmin(dist, axis=2), -1)
    band = np.zeros_like(first, dtype=bool)
    for k in range(-1, len(boxes)):
        band |= _boundary_band(first == k)
    for k in range(len(boxes)):
        assert (first == k).sum() > 2000, k
        agree = np.mean(label[(first == k) & ~band] == k)
        assert agree > 0.995, (k, agree)
    assert np.all(label[(first == -1) & ~band] == -1)


def test_partly_behind_camera_and_pedestrian_stay_inside_their_boxes(pixel_rays):
    ped = _box("pedestrian", [9.0, -1.5, 0.875], [0.6, 0.7, 1.75], rgb=(40, 160, 60), texture="skin",
               track_id=2, label="pedestrian")
    img = _render(_scene([ped])).astype(int)
    empty = _render(_scene([])).astype(int)
    rendered = np.abs(img - empty).max(axis=2) > 12
    expected = np.isfinite(_ray_box_t(pixel_rays, T_BASE_CAM.inverse(), ped)).reshape(CAM.height, CAM.width)
    grown = cv2.dilate(expected.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # as above: 2 px
    assert rendered.sum() > 0.4 * expected.sum()  # a figure, not a box: legs and a head
    assert rendered[~grown].sum() == 0


@pytest.mark.parametrize("tilt", [(0.0, 0.0), (0.25, -0.2)])
def test_chessboard_corners_detected_at_their_projections(tilt):
    pitch, roll = tilt
    board = Board(cols=9, rows=7, square_m=0.12)
    box = _box("board", [5.0, 0.2, 1.5], [0.02, 1.3, 1.05], yaw=np.pi - 0.35, rgb=(235, 235, 235),
               texture="checker", pitch=pitch, roll=roll, board=board)
    img = _render(_scene([box]))
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    found, corners = cv2.findChessboardCorners(gray, (board.cols - 1, board.rows - 1))
    assert found
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)).reshape(-1, 2)
    truth, _ = CAM.project(T_BASE_CAM.inverse().apply(board_inner_corners(box)))
    assert len(corners) == len(truth) == (board.cols - 1) * (board.rows - 1)
    err = np.linalg.norm(corners[:, None, :] - truth[None], axis=2).min(axis=1)
    assert err.max() <= 0.5, err.max()
    assert err.mean() <= 0.1, err.mean()


def test_board_inner_corners_layout():
    board = Board(cols=4, rows=3, square_m=0.5)
    box = _box("board", [10.0, 0.0, 2.0], [0.05, 3.0, 2.0], yaw=0.0, board=board)
    c = board_inner_corners(box)
    # seen from +x: first corner top-left (towards -y, up), rows run down, columns along +y
    np.testing.assert_allclose(c[0], [10.025, -0.5, 2.25])
    np.testing.assert_allclose(c[2], [10.025, 0.5, 2.25])
    np.testing.assert_allclose(c[3], [10.025, -0.5, 1.75])


def test_fog_contrast_falls_as_koschmieder():
    """I_fog = A + (I_clear − A)·exp(−βd) with β = 3.912/V: measured at the face centre of a box at two
    distances (A = the fogged sky, which is at infinite distance)."""
    V = 60.0
    beta = 3.912 / V
    T_cam_world = T_BASE_CAM.inverse()
    for d_face in (15.0, 35.0):
        box = _box("wall", [d_face + 1.0, 0.0, 3.0], [2.0, 6.0, 6.0], rgb=(40, 90, 40))
        clear = _render(_scene([box])).astype(float)
        fog = _render(_scene([box], Weather(fog_visibility_m=V))).astype(float)
        centre_cam = T_cam_world.apply(np.array([[d_face, 0.0, 2.0]]))
        u, v = np.round(CAM.project(centre_cam)[0][0]).astype(int)
        airlight = fog[20, 640]  # sky: t = 0
        d = float(np.linalg.norm(centre_cam))
        expected = airlight + (clear[v, u] - airlight) * np.exp(-beta * d)
        np.testing.assert_allclose(fog[v - 2 : v + 3, u - 2 : u + 3].mean(axis=(0, 1)), expected, atol=2.0)
        contrast = np.abs(fog[v, u] - airlight).sum() / np.abs(clear[v, u] - airlight).sum()
        assert abs(contrast - np.exp(-beta * d)) < 0.02


def test_night_is_dark_outside_the_headlights():
    wall = _box("wall", [16.0, 0.0, 3.0], [1.0, 60.0, 6.0], rgb=(180, 180, 180))
    day = _render(_scene([wall])).astype(float)
    night = _render(_scene([wall], Weather(night=True))).astype(float)
    T_cam_world = T_BASE_CAM.inverse()
    (u_in, v_in), _ = CAM.project(T_cam_world.apply(np.array([[15.5, 0.0, 0.8]])))[0][0], 0
    (u_out, v_out), _ = CAM.project(T_cam_world.apply(np.array([[15.5, 11.0, 0.8]])))[0][0], 0
    lit = night[int(v_in) - 3 : int(v_in) + 4, int(u_in) - 3 : int(u_in) + 4].mean()
    dark = night[int(v_out) - 3 : int(v_out) + 4, int(u_out) - 3 : int(u_out) + 4].mean()
    assert lit > 4 * dark
    assert dark < 0.15 * day[int(v_out), int(u_out)].mean()
    assert night[:100].mean() < 0.15 * day[:100].mean()  # the sky


def test_fisheye_renders_geometry():
    fish = sim_calibration(camera_model="fisheye").cameras["cam_front"]
    assert fish.model == "fisheye"
    cube = _box("block", [6.0, 5.0, 1.5], [1.5, 1.5, 1.5], rgb=(230, 20, 20))  # ≈ 40° to the left
    img = render_camera(_scene([cube]), fish, T_BASE_CAM, np.random.default_rng(0), noise_std=0.0)
    assert img.shape == (fish.height, fish.width, 3) and img.dtype == np.uint8
    (u, v), _ = fish.project(T_BASE_CAM.inverse().apply(np.array([[5.25, 5.0, 1.5]])))[0][0], 0
    px = img[int(round(v)), int(round(u))].astype(int)
    assert px[0] > 100 and px[1] < 60 and px[2] < 60
    # the centre sees the scene, rays beyond the rendered cone are black
    assert img[fish.height // 2, fish.width // 2].max() > 40


def test_distortion_tables_round_trip():
    """Every output pixel's intermediate (pinhole) position maps back onto it through CameraModel.project."""
    t = camera_tables(CAM)
    mx, my = cv2.convertMaps(t.map1, t.map2, cv2.CV_32FC1)
    rng = np.random.default_rng(1)
    u = rng.integers(0, CAM.width, 500)
    v = rng.integers(0, CAM.height, 500)
    xi = (mx[v, u] - t.Ki[0, 2]) / t.Ki[0, 0]
    yi = (my[v, u] - t.Ki[1, 2]) / t.Ki[1, 1]
    uv, _ = CAM.project(np.stack([xi, yi, np.ones_like(xi)], axis=1))
    assert np.abs(uv - np.stack([u, v], axis=1)).max() < 1.0 / 16  # cv2 fixed-point maps: 1/32 px


@pytest.mark.parametrize(
    "size, hfov_deg, distortion",
    [
        ((1280, 720), 90.0, (-0.06, 0.012, 0.0, 0.0, 0.0)),  # the default rig's camera
        ((641, 357), 90.0, (-0.2, 0.05, 0.0012, -0.0009, 0.0)),  # strong barrel + tangential, odd size
        ((320, 240), 60.0, (0.15, -0.05, -0.002, 0.001, 0.02)),  # pincushion
    ],
)
def test_fast_undistort_grid_matches_opencv_on_every_pixel(size, hfov_deg, distortion):
    """The coarse-grid + Newton table equals cv2.undistortPoints on all pixels to ≤ 1e-3 px."""
    cam = CameraModel.from_fov(size[0], size[1], np.deg2rad(hfov_deg), np.array(distortion))
    uu, vv = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    exact = cv2.undistortPoints(
        np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2),
        cam.K,
        cam.distortion,
        R=np.eye(3),
        P=np.eye(3),
        criteria=crit,
    ).reshape(-1, 2)
    fast = undistort_pixel_grid(cam)
    assert fast.shape == (cam.width * cam.height, 2)
    assert np.abs(fast - exact).max() * cam.K[0, 0] <= 1e-3
    # and it inverts the forward model: re-distorted, every pixel lands on itself
    uv, _ = cam.project(np.column_stack([fast, np.ones(len(fast))]))
    assert np.abs(uv - np.stack([uu.ravel(), vv.ravel()], axis=1)).max() <= 1e-3


def test_deterministic_and_noise_from_rng():
    scene = _scene([_box("car", [12.0, 0.0, 0.75], [4.5, 1.9, 1.5], track_id=1, label="car")],
                   Weather(rain=0.5))
    a = _render(scene, seed=3, noise_std=2.0)
    b = _render(scene, seed=3, noise_std=2.0)
    c = _render(scene, seed=4, noise_std=2.0)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    clean = _render(_scene(scene.boxes), seed=3, noise_std=0.0).astype(float)
    noisy = _render(_scene(scene.boxes), seed=3, noise_std=2.0).astype(float)
    assert 1.0 < np.std(noisy - clean) < 3.0


# ---------------------------------------------------------------- preview


def test_camera_overlay_draws_box_edges_at_projected_corners():
    from edgefuse.sim.preview import CLASS_COLORS, camera_overlay
    from edgefuse.types import Box3D, Detection

    det = Detection("pedestrian", 1.0, Box3D([10.0, 1.0, 0.9], [0.6, 0.7, 1.8], 0.3), track_id=7)
    base = np.zeros((CAM.height, CAM.width, 3), np.uint8)
    out = camera_overlay(base, [det], CAM, T_BASE_CAM)
    uv, _ = CAM.project(T_BASE_CAM.inverse().apply(det.box.corners()))
    colour = np.array(CLASS_COLORS["pedestrian"])
    for u, v in uv:  # every corner is on a drawn edge, in the class colour
        u, v = int(round(u)), int(round(v))
        patch = out[v - 1 : v + 2, u - 1 : u + 2].reshape(-1, 3)
        assert np.min(np.abs(patch.astype(int) - colour).sum(axis=1)) < 60
    inner = np.mean(uv, axis=0)  # the box's inside stays untouched
    assert out[int(inner[1]), int(inner[0])].sum() == 0
    assert base.sum() == 0  # input not modified
    # a box partly behind the camera is drawn without garbage (edges clipped at the near plane)
    behind = Detection("car", 1.0, Box3D([1.0, 3.0, 0.75], [8.0, 1.9, 1.5], 0.0))
    out2 = camera_overlay(base, [behind], CAM, T_BASE_CAM)
    assert out2.any()


def test_bev_image_places_points_boxes_and_radar():
    from edgefuse.sim.preview import CLASS_COLORS, bev_image
    from edgefuse.types import Box3D, Detection

    ppm, ext = 8, 60
    pts = np.array([[20.0, 5.0, 2.0], [-10.0, -30.0, 0.0]])
    rad = np.array([[30.0, -10.0, 0.5]])
    det = Detection("car", 1.0, Box3D([40.0, 0.0, 0.75], [4.0, 2.0, 1.5], 0.0), track_id=1)
    img = bev_image(pts, rad, [det], extent_m=ext, px_per_m=ppm, radar_doppler=np.array([10.0]))
    assert img.shape == (int(ext * 4 / 3 * ppm), 2 * ext * ppm, 3)

    def px(x, y):  # forward up, left to the left, ego at x = 0 on row ext·ppm
        return int((ext - y) * ppm), int((ext - x) * ppm)

    c, r = px(20.0, 5.0)
    level = np.array([[round((2.0 + 0.5) / 3.5 * 255)]], np.uint8)  # z = 2 m on the -0.5..3 m scale
    want = cv2.applyColorMap(level, cv2.COLORMAP_TURBO)[0, 0, ::-1]
    np.testing.assert_array_equal(img[r, c], want)
    c, r = px(42.0, 0.0)  # front edge of the car box
    assert np.abs(img[r, c].astype(int) - CLASS_COLORS["car"]).sum() < 80
    c, r = px(30.0, -10.0)  # radar ring around its point, receding → reddish
    ring = img[r - 4 : r + 5, c - 4 : c + 5].reshape(-1, 3).astype(int)
    assert np.any((ring[:, 0] > 200) & (ring[:, 2] < 150))


def test_box_hidden_behind_a_wall_leaves_no_trace():
    wall = _box("wall", [20.0, 0.0, 3.0], [0.5, 12.0, 6.0], rgb=(150, 140, 120))
    hidden = _box("car", [30.0, 0.5, 0.75], [4.5, 1.9, 1.5], rgb=(220, 20, 20), track_id=1, label="car")
    peeking = _box("car", [30.0, 9.0, 0.75], [4.5, 1.9, 1.5], rgb=(220, 20, 20), track_id=2, label="car")
    alone = _render(_scene([wall]))
    assert np.array_equal(_render(_scene([hidden, wall])), alone)
    assert np.abs(_render(_scene([peeking, wall])).astype(int) - alone).max() > 100


def test_patch_vertices_in_one_pass_equal_the_per_face_formula():
    """The renderer places every face patch (windows, wheels, lights) of all boxes in one vectorized
    pass; each group's vertices must be exactly o + u·a + v·b of its own face (origin o, unit axes u, v;
    (a, b) the patch's face metres), in drawing order, for detailed and far (patch-free) boxes alike."""
    from edgefuse.sim.camera_boxes import LOD_PATCH_PX, _patch_vertices
    from edgefuse.sim.camera_textures import _decorations

    boxes = [_box("car", (12.0, 1.0, 0.75), (4.5, 1.9, 1.5), rgb=(30, 55, 130)),
             _box("bus", (30.0, -4.0, 1.6), (12.0, 2.5, 3.2), yaw=0.3),
             _box("pedestrian", (8.0, -2.0, 0.9), (0.4, 0.5, 1.8), rgb=(40, 45, 70))]
    rng = np.random.default_rng(5)
    K = len(boxes)
    oc, Uc, Vc = rng.normal(size=(K, 6, 3)), rng.normal(size=(K, 6, 3)), rng.normal(size=(K, 6, 3))
    facing = [[True, False, True, True, False, True], [True] * 6, [False, True, True, False, True, False]]
    order, kidx, px = [2, 0, 1], np.arange(K), [50.0, 50.0, 1.0]  # the bus is too small for patches
    got = _patch_vertices(order, boxes, kidx, False, facing, px, oc, Uc, Vc)
    expect = []
    for oi in order:
        cutout, groups = _decorations(boxes[oi], False)
        if px[oi] <= LOD_PATCH_PX and not cutout:
            continue
        for f in range(6):
            for verts, *_ in (groups[f] if facing[oi][f] else ()):
                expect.append(np.array([oc[oi, f] + a * Uc[oi, f] + b * Vc[oi, f] for a, b in verts]))
    assert len(got) == len(expect) > 3
    for g, e in zip(got, expect, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
