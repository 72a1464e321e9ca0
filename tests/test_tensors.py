"""Tensors: pillar voxelization against a plain reference written here from the documented overflow rule,
image remap tables against OpenCV's own projection, projection matrices, and a full sim frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgefuse.geometry import CameraModel, Transform, rpy_to_matrix
from edgefuse.tensors import (
    FusionInputs,
    ImagePreprocessor,
    PillarVoxelizer,
    TensorBuilder,
    TensorSpec,
    TensorSpecError,
    build_inputs,
    input_shapes,
)
from edgefuse.types import CompressedImage, FrameSet, Image

# ---------------------------------------------------------------- voxelization


def reference_pillars(points, x_range, y_range, z_range, size, max_p, max_n):
    """The documented rule, one point at a time: keep points with lo ≤ coord < hi on x, y, z (NaN fails
    every comparison); cell = (floor((y−y0)/dy), floor((x−x0)/dx)); pillars by total count descending,
    then by iy·nx + ix; first max_p pillars; in each, the first max_n points in input order."""
    nx = int(round((x_range[1] - x_range[0]) / size[0]))
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y, z) in enumerate(points[:, :3].tolist()):
        if not (
            x_range[0] <= x < x_range[1] and y_range[0] <= y < y_range[1] and z_range[0] <= z < z_range[1]
        ):
            continue
        ix = int(np.floor((np.float32(x) - np.float32(x_range[0])) / np.float32(size[0])))
        iy = int(np.floor((np.float32(y) - np.float32(y_range[0])) / np.float32(size[1])))
        cells.setdefault((iy, ix), []).append(i)
    order = sorted(cells, key=lambda c: (-len(cells[c]), c[0] * nx + c[1]))[:max_p]
    F = points.shape[1]
    out = np.zeros((max_p, max_n, F), np.float32)
    coords = np.zeros((max_p, 2), np.int32)
    counts = np.zeros(max_p, np.int32)
    for j, c in enumerate(order):
        idx = cells[c][:max_n]
        out[j, : len(idx)] = points[idx]
        coords[j] = c
        counts[j] = len(idx)
    return out, coords, counts, len(order)


def _points(rng, n):
    # clustered points (so pillars overflow), some outside the grid, some exactly on the edges, some NaN
    centers = rng.uniform(-9, 9, (40, 2))
    xy = centers[rng.integers(0, 40, n)] + rng.normal(0, 0.4, (n, 2))
    z = rng.uniform(-3.5, 3.5, n)
    pts = np.concatenate([xy, z[:, None], rng.uniform(0, 255, (n, 2))], 1).astype(np.float32)
    pts[:5, 0] = -10.0  # on the lower x edge: in
    pts[5:10, 1] = 10.0  # on the upper y edge: out
    pts[10, 2] = np.nan
    pts[11, 0] = np.inf
    return pts


@pytest.mark.parametrize(
    "max_p, max_n",
    [(10_000, 1000), (50, 8), (7, 3), (1, 1)],  # no overflow; pillar + point overflow; heavy; extreme
)
def test_voxelizer_equals_reference(max_p, max_n):
    rng = np.random.default_rng(max_p * 7 + max_n)
    pts = _points(rng, 3000)
    args = ((-10.0, 10.0), (-10.0, 10.0), (-3.0, 3.0), (0.5, 0.25))
    vox = PillarVoxelizer(*args, max_p, max_n)
    got = vox(pts)
    ref = reference_pillars(pts, *args, max_p, max_n)
    assert got.num_pillars == ref[3]
    np.testing.assert_array_equal(got.coords, ref[1])
    np.testing.assert_array_equal(got.counts, ref[2])
    np.testing.assert_array_equal(got.points, ref[0])
    again = vox(pts)  # the scratch grids are clean after a call
    np.testing.assert_array_equal(again.points, got.points)


def test_voxelizer_empty_and_bad_input():
    vox = PillarVoxelizer((0, 1), (0, 1), (0, 1), (0.5, 0.5), 4, 2)
    r = vox(np.zeros((0, 4), np.float32))
    assert r.num_pillars == 0 and r.points.shape == (4, 2, 4) and not r.points.any()
    with pytest.raises(TensorSpecError, match="points"):
        vox(np.zeros((5, 2), np.float32))


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("model", ["pinhole", "rational", "fisheye"])
def test_remap_table_matches_opencv_projection(model):
    if model != "fisheye":
        dist = {"pinhole": [-0.06, 0.012, 0.001, -0.0005, 0.0],  # rational: k1 k2 p1 p2 k3 k4 k5 k6
                "rational": [0.35, 0.07, 0.001, -0.0005, 0.002, 0.42, 0.09, 0.004]}[model]  # fmt: skip
        cam = CameraModel(
            1280, 720, np.array([[800.0, 0, 643.5], [0, 805.0, 361.25], [0, 0, 1]]), np.array(dist), model
        )
    else:
        cam = CameraModel(
            1280,
            720,
            np.array([[380.0, 0, 641.0], [0, 380.0, 359.5], [0, 0, 1]]),
            np.array([0.015, -0.004, 0.0008, 0.0]),
            "fisheye",
        )
    pre = ImagePreprocessor((352, 640))
    for src in ((1280, 720), (640, 360)):  # full and half-size (reduced JPEG decode) sources
        t = pre.table(cam, *src)
        fx, fy = cv2.convertMaps(t.map1, t.map2, cv2.CV_32FC1)
        ys, xs = np.mgrid[20:340:37, 30:620:41]
        # output pixel → ray through K' (no distortion) → OpenCV projects it with the real lens
        xy = np.linalg.solve(t.K, np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])).T
        if model != "fisheye":  # OpenCV: 5 coefficients plumb bob, 8 its rational model
            uv, _ = cv2.projectPoints(xy.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.distortion)
        else:
            uv, _ = cv2.fisheye.projectPoints(
                xy.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.distortion
            )
        uv = uv.reshape(-1, 2)
        r = src[0] / 1280.0
        expect = (uv + 0.5) * r - 0.5  # source pixel in the decoded image
        got = np.stack([fx[ys.ravel(), xs.ravel()], fy[ys.ravel(), xs.ravel()]], 1)
        assert np.abs(got - expect).max() < 0.05, src


def test_normalization_and_reduced_jpeg_decode():
    cam = CameraModel.from_fov(1280, 720, np.deg2rad(80))
    pre = ImagePreprocessor((352, 640), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    img = np.zeros((720, 1280, 3), np.uint8)
    img[:] = (200, 100, 50)
    out = pre(Image(img), cam)
    assert out.shape == (3, 352, 640) and out.dtype == np.float32
    inner = out[:, 10:-10, 10:-10]
    for c, (v, m, s) in enumerate(zip((200, 100, 50), (0.5, 0.4, 0.3), (0.2, 0.25, 0.5), strict=False)):
        np.testing.assert_allclose(inner[c], (v / 255 - m) / s, atol=1e-5)
    # a smooth image through JPEG: reduced (1/2) decode ≈ full decode + resize
    yy, xx = np.mgrid[0:720, 0:1280]
    smooth = np.stack([xx * 255 // 1279, yy * 255 // 719, (xx + yy) * 255 // 1998], -1).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    a = pre(CompressedImage(buf.tobytes(), "jpeg"), cam)
    b = pre(Image(smooth), cam)
    assert np.abs(a - b)[:, 4:-4, 4:-4].mean() < 0.03  # in normalized units (≈ 1.5 grey levels)


def test_projection_matrix_matches_opencv():
    from edgefuse.rig import Calibration

    cam = CameraModel(
        1280,
        720,
        np.array([[800.0, 0, 643.5], [0, 800.0, 361.25], [0, 0, 1]]),
        np.array([-0.06, 0.012, 0, 0, 0]),
    )
    R_opt = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T_base_cam = Transform(rpy_to_matrix(0.01, 0.05, -0.02) @ R_opt, [1.9, 0.0, 1.4])
    calib = Calibration(
        cameras={"cam": cam},
        extrinsics={"cam": T_base_cam, "lid": Transform.identity(), "rad": Transform.identity()},
    )
    spec = TensorSpec(cameras=("cam",), lidars=("lid",), radars=("rad",))
    b = TensorBuilder(spec, calib)
    X = np.array([[20.0, 3.0, 0.5], [8.0, -2.0, 1.0], [40.0, 0.0, -0.5]])
    Xh = np.concatenate([X, np.ones((3, 1))], 1)
    uvw = Xh @ b._P[0].T.astype(np.float64)
    uv = uvw[:, :2] / uvw[:, 2:]
    T_cam_base = T_base_cam.inverse()
    rvec, _ = cv2.Rodrigues(T_cam_base.rotation)
    ref, _ = cv2.projectPoints(
        X.reshape(-1, 1, 3), rvec, T_cam_base.translation, b._K[0].astype(np.float64), np.zeros(5)
    )
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-3)


def test_spec_round_trip_and_validation():
    spec = TensorSpec()
    assert TensorSpec.from_dict(__import__("json").loads(spec.to_json())) == spec
    with pytest.raises(TensorSpecError, match="max_pillars"):
        TensorSpec(max_pillars=0)
    with pytest.raises(TensorSpecError, match="unknown key"):
        TensorSpec.from_dict({"bogus": 1})
    with pytest.raises(TensorSpecError, match="x y z first"):
        TensorSpec(lidar_features=("intensity", "x", "y", "z"))


# ---------------------------------------------------------------- a simulated frame


@pytest.fixture(scope="module")
def sim_frame():
    from edgefuse.sim.run import Simulator

    sim = Simulator("default", 3)
    msgs = {}
    for sid in ("lidar_top", "cam_front", "radar_front"):
        c = sim.clocks[sid]
        k = c.first_index_at_or_after(2_000_000_000)
        msgs[sid] = sim.capture(sid, c.capture_time(k), k)[0].message
    return sim, msgs


def test_sim_frame_shapes_and_vehicle_frame(sim_frame):
    sim, msgs = sim_frame
    spec = TensorSpec()
    fs = FrameSet(msgs["lidar_top"].stamp_ns, dict(msgs))
    inp = build_inputs(fs, sim.calibration, spec)
    shapes = input_shapes(spec)
    d = inp.as_dict()
    assert set(d) == set(shapes)
    for name, (shape, dtype) in shapes.items():
        assert d[name].shape == shape and d[name].dtype == np.dtype(dtype), name
    assert inp.camera_valid.tolist() == [1] and inp.lidar_valid[0] == 1 and inp.radar_valid[0] == 1
    n = int(inp.lidar_num_pillars[0])
    assert 1000 < n <= spec.max_pillars
    # points are in base_link (on the ground at z = 0): the lowest points of the cloud are ground returns
    pts = inp.lidar_pillars[:n][np.arange(spec.max_points_per_pillar)[None, :] < inp.lidar_counts[:n, None]]
    assert abs(np.percentile(pts[:, 2], 5)) < 0.15
    cloud = msgs["lidar_top"].payload
    assert abs(np.percentile(cloud.xyz[:, 2], 5) + 1.98) < 0.2  # in the sensor frame, 1.98 m lower
    # each pillar's coords hold its points
    ny, nx = spec.grid_size
    ix = np.floor((inp.lidar_pillars[:n, 0, 0] - spec.x_range[0]) / spec.pillar_size[0])
    iy = np.floor((inp.lidar_pillars[:n, 0, 1] - spec.y_range[0]) / spec.pillar_size[1])
    np.testing.assert_array_equal(inp.lidar_coords[:n], np.stack([iy, ix], 1).astype(np.int32))
    assert np.all(np.diff(inp.lidar_counts[:n]) <= 0)  # most-populated pillars first


def test_missing_sensor_gives_zeros_and_flags(sim_frame):
    sim, msgs = sim_frame
    spec = TensorSpec()
    fs = FrameSet(
        msgs["lidar_top"].stamp_ns, {"lidar_top": msgs["lidar_top"], "cam_front": None, "radar_front": None}
    )
    inp: FusionInputs = TensorBuilder(spec, sim.calibration).build(fs)
    assert inp.camera_valid.tolist() == [0] and not inp.images.any()
    assert inp.radar_valid[0] == 0 and inp.radar_num_pillars[0] == 0 and not inp.radar_pillars.any()
    assert inp.lidar_valid[0] == 1


def test_deskew_and_doppler_applied_when_ego_given(sim_frame):
    from edgefuse.motion import EgoTrajectory

    sim, msgs = sim_frame
    spec = TensorSpec(radar_features=("x", "y", "z", "doppler", "rcs"))
    t = msgs["lidar_top"].stamp_ns
    ego_state = sim.world.ego_state(t)
    ego = EgoTrajectory.constant_twist(t, ego_state.velocity_base, [0, 0, ego_state.yaw_rate])
    fs = FrameSet(t, dict(msgs))
    b = TensorBuilder(spec, sim.calibration)
    plain, moved = b.build(fs), b.build(fs, ego=ego)
    assert ego_state.speed > 1.0
    assert not np.array_equal(plain.lidar_pillars, moved.lidar_pillars)
    r_plain = plain.radar_pillars[..., 3][
        plain.radar_counts[:, None] > np.arange(spec.radar_max_points_per_pillar)
    ]
    r_moved = moved.radar_pillars[..., 3][
        moved.radar_counts[:, None] > np.arange(spec.radar_max_points_per_pillar)
    ]
    # most radar returns are static structures: their ground-relative doppler is near 0
    assert np.median(np.abs(r_moved)) < np.median(np.abs(r_plain))


def test_bad_payloads_name_the_sensor(sim_frame):
    sim, msgs = sim_frame
    spec = TensorSpec(radar_features=("x", "y", "z", "noise"))
    fs = FrameSet(0, dict(msgs))
    with pytest.raises(TensorSpecError, match="radar_front.*noise"):
        build_inputs(fs, sim.calibration, spec)
    with pytest.raises(TensorSpecError, match="lidar_top"):
        build_inputs(FrameSet(0, {"lidar_top": msgs["radar_front"]}), sim.calibration, TensorSpec())


def test_voxelizer_matches_reference_on_random_inputs():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    vox_cache = {}

    @settings(max_examples=60, deadline=None)
    @given(
        n=st.integers(0, 200),
        max_p=st.integers(1, 12),
        max_n=st.integers(1, 6),
        seed=st.integers(0, 2**32 - 1),
    )
    def check(n, max_p, max_n, seed):
        rng = np.random.default_rng(seed)
        # coarse coordinates so that many points share pillars and land exactly on cell edges
        pts = (rng.integers(-6, 7, (n, 3)) * 0.25).astype(np.float32)
        pts = np.concatenate([pts, rng.random((n, 1), np.float32)], 1)
        args = ((-1.0, 1.0), (-1.0, 1.0), (-1.0, 1.0), (0.5, 0.5))
        vox = vox_cache.setdefault((max_p, max_n), PillarVoxelizer(*args, max_p, max_n))
        got = vox(pts)
        ref = reference_pillars(pts, *args, max_p, max_n)
        assert got.num_pillars == ref[3]
        np.testing.assert_array_equal(got.coords, ref[1])
        np.testing.assert_array_equal(got.counts, ref[2])
        np.testing.assert_array_equal(got.points, ref[0])

    assert hypothesis is not None
    check()


def test_several_cameras_stack_on_the_camera_axis(sim_frame):
    from edgefuse.rig import Calibration
    from edgefuse.sim.rig import sim_camera

    sim, msgs = sim_frame
    cal = sim.calibration
    two = Calibration(
        cameras={"cam_front": cal.cameras["cam_front"], "cam_fish": sim_camera("fisheye")},
        extrinsics={**cal.extrinsics, "cam_fish": cal.extrinsics["cam_front"]},
    )
    spec = TensorSpec(cameras=("cam_fish", "cam_front"))
    fs = FrameSet(msgs["lidar_top"].stamp_ns, {**msgs, "cam_fish": None})
    inp = build_inputs(fs, two, spec)
    assert inp.images.shape == (2, 3, *spec.image_size)
    assert inp.camera_valid.tolist() == [0, 1]
    assert not inp.images[0].any() and inp.images[1].std() > 0.1
    # same pose, different lenses: the projections differ only through K'
    assert not np.allclose(inp.intrinsics[0], inp.intrinsics[1])
    np.testing.assert_allclose(
        np.linalg.solve(inp.intrinsics[0].astype(np.float64), inp.projection[0]),
        np.linalg.solve(inp.intrinsics[1].astype(np.float64), inp.projection[1]),
        atol=1e-4,
    )
