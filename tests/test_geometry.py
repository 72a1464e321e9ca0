"""Geometry against independent references: OpenCV for cameras and Rodrigues, closed forms for rotations."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefuse.geometry import (
    CameraModel,
    Transform,
    matrix_to_quat,
    matrix_to_rotvec,
    matrix_to_rpy,
    quat_to_matrix,
    quats_to_matrices,
    rotvec_to_matrix,
    rotvecs_to_matrices,
    rpy_to_matrix,
)

angles = st.floats(-np.pi, np.pi, allow_nan=False)


def test_quaternion_convention_is_xyzw():
    # 90° about +z: x axis goes to y axis. As x y z w: (0, 0, sin 45°, cos 45°).
    q = np.array([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)])
    R = quat_to_matrix(q)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(matrix_to_quat(R), q, atol=1e-12)


def test_rpy_is_fixed_axis_zyx():
    r, p, y = 0.1, -0.2, 0.3
    Rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    Ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    Rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    np.testing.assert_allclose(rpy_to_matrix(r, p, y), Rz @ Ry @ Rx, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(angles, st.floats(-1.5, 1.5), angles)
def test_rpy_quaternion_round_trip(r, p, y):
    R = rpy_to_matrix(r, p, y)
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-9)
    np.testing.assert_allclose(rpy_to_matrix(*matrix_to_rpy(R)), R, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3))
def test_rotvec_matches_opencv_rodrigues(rv):
    rv = np.array(rv)
    R_cv, _ = cv2.Rodrigues(rv)
    np.testing.assert_allclose(rotvec_to_matrix(rv), R_cv, atol=1e-9)
    np.testing.assert_allclose(rotvec_to_matrix(matrix_to_rotvec(R_cv)), R_cv, atol=1e-9)


def test_transform_compose_inverse_and_naming():
    T_base_lidar = Transform.from_rpy([1.2, 0.0, 1.9], 0.01, -0.02, 0.5)
    T_lidar_cam = Transform.from_rpy([0.3, -0.1, -0.4], -np.pi / 2, 0.0, -np.pi / 2)
    T_base_cam = T_base_lidar @ T_lidar_cam
    p_cam = np.array([[1.0, 2.0, 10.0], [-3.0, 0.5, 4.0]])
    np.testing.assert_allclose(
        T_base_cam.apply(p_cam), T_base_lidar.apply(T_lidar_cam.apply(p_cam)), atol=1e-12
    )
    np.testing.assert_allclose(T_base_cam.inverse().apply(T_base_cam.apply(p_cam)), p_cam, atol=1e-12)
    np.testing.assert_allclose(
        T_base_cam.matrix() @ np.linalg.inv(T_base_cam.matrix()), np.eye(4), atol=1e-12
    )
    assert T_base_cam.apply(p_cam.astype(np.float32)).dtype == np.float32


def test_transform_rejects_bad_inputs():
    with pytest.raises(ValueError, match="orthonormal"):
        Transform(np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        Transform(np.eye(3), np.zeros(4))
    with pytest.raises(ValueError, match="non-zero"):
        quat_to_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        Transform.identity().apply(np.zeros((4, 2)))


def _random_points(rng, n=200, half_fov=0.6):
    """Points in front of the camera within ±half_fov (normalized x/z, y/z)."""
    z = rng.uniform(1.0, 30.0, n)
    return np.stack(
        [rng.uniform(-half_fov, half_fov, n) * z, rng.uniform(-half_fov, half_fov, n) * z, z], axis=1
    )


#: a wide lens in OpenCV's rational model (k1 k2 p1 p2 k3 k4 k5 k6; the magnitudes of a depth camera's
#: factory calibration: numerator and denominator nearly cancel)
RATIONAL = CameraModel(
    640, 480, np.array([[381.2, 0, 318.9], [0, 381.2, 233.9], [0, 0, 1]]),
    [0.452, 0.274, -1.1e-4, 1.5e-4, 0.028, 0.818, 0.358, 0.109], "rational",
)  # fmt: skip


PINHOLE = CameraModel(
    1280, 720, np.array([[900.0, 0, 641.5], [0, 905.0, 358.2], [0, 0, 1]]), [-0.28, 0.09, 1e-3, -5e-4, -0.01]
)


@pytest.mark.parametrize("cam,half_fov", [(PINHOLE, 0.6), (RATIONAL, 0.8)], ids=["pinhole", "rational"])
def test_projection_matches_opencv(cam, half_fov):
    """OpenCV takes the model from the count: 5 coefficients plumb bob, 8 its rational model."""
    pts = _random_points(np.random.default_rng(0), half_fov=half_fov)
    uv, z = cam.project(pts)
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K, cam.distortion)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6)
    np.testing.assert_allclose(z, pts[:, 2])


def test_fisheye_projection_matches_opencv():
    rng = np.random.default_rng(1)
    cam = CameraModel(
        1280,
        720,
        np.array([[420.0, 0, 640], [0, 420.0, 360], [0, 0, 1]]),
        [0.05, -0.01, 0.002, -3e-4],
        model="fisheye",
    )
    pts = _random_points(rng)
    uv, _ = cam.project(pts)
    ref, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.distortion)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6)


@pytest.mark.parametrize("model", ["pinhole", "rational", "fisheye"])
def test_rays_invert_projection(model):
    rng = np.random.default_rng(2)
    dist = {"pinhole": [-0.2, 0.05, 0.0, 0.0, 0.0], "rational": [0.4, 0.2, 1e-4, -2e-4, 0.03, 0.75, 0.3, 0.1],
            "fisheye": [0.03, -0.01, 0.0, 0.0]}[model]  # fmt: skip
    cam = CameraModel(1280, 720, np.array([[800.0, 0, 640], [0, 800.0, 360], [0, 0, 1]]), dist, model)
    pts = _random_points(rng)
    uv, _ = cam.project(pts)
    rays = cam.rays(uv)
    np.testing.assert_allclose(rays, pts / np.linalg.norm(pts, axis=1, keepdims=True), atol=1e-7)


@pytest.mark.parametrize(
    "cam,uv",
    [
        (CameraModel(1280, 720, np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]]),
                     [-0.25, 0.07, 0.001, 0.0, 0.0]), [[100.0, 80.0], [640.0, 360.0], [1200.0, 700.0]]),
        (RATIONAL, [[5.0, 4.0], [100.0, 80.0], [318.9, 233.9], [600.0, 300.0], [630.0, 470.0]]),
    ],
    ids=["pinhole", "rational"],
)  # fmt: skip
def test_undistort_matches_opencv(cam, uv):
    uv = np.array(uv)
    ref = cv2.undistortPoints(
        uv.reshape(-1, 1, 2),
        cam.K,
        cam.distortion,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12),
    ).reshape(-1, 2)
    np.testing.assert_allclose(cam.undistort_normalized(uv, iterations=50), ref, atol=1e-6)


def test_points_behind_camera_do_not_project():
    cam = CameraModel.from_fov(640, 480, np.deg2rad(90))
    uv, z = cam.project(np.array([[0.0, 0.0, -5.0], [0.0, 0.0, 5.0]]))
    assert np.isnan(uv[0]).all() and not cam.in_image(uv)[0]
    np.testing.assert_allclose(uv[1], [319.5, 239.5])
    assert cam.in_image(uv)[1]


def test_camera_model_validates():
    with pytest.raises(ValueError, match="5 values for pinhole"):
        CameraModel(640, 480, np.eye(3), [0.0] * 4)
    with pytest.raises(ValueError, match="8 values for rational"):
        CameraModel(640, 480, np.eye(3), [0.0] * 5, model="rational")
    with pytest.raises(ValueError, match="projection: expected 3 × 4"):
        CameraModel(640, 480, np.eye(3), [0.0] * 5, projection=np.eye(3))
    with pytest.raises(ValueError, match="one of"):
        CameraModel(640, 480, np.eye(3), [0.0] * 5, model="orthographic")


def test_batch_rotations_equal_the_single_ones():
    rng = np.random.default_rng(7)
    q = rng.normal(size=(50, 4))
    rv = rng.normal(size=(50, 3))
    rv[0] = 0.0
    np.testing.assert_allclose(quats_to_matrices(q), [quat_to_matrix(x) for x in q], atol=1e-12)
    np.testing.assert_allclose(rotvecs_to_matrices(rv), [rotvec_to_matrix(x) for x in rv], atol=1e-12)


def test_resized_camera_keeps_a_given_projection_matrix_consistent():
    """A stereo right camera's P (baseline in its fourth column) read out at half size: a point projected
    through the new P lands where the pixel-centre rule puts the old pixel (u' = (u + 0.5)·s − 0.5)."""
    K = np.array([[700.0, 0, 611.5], [0, 702.0, 180.2], [0, 0, 1]])
    P = np.hstack([K, [[-700.0 * 0.54], [0.0], [0.0]]])
    cam = CameraModel(1242, 375, K, np.zeros(5), projection=P, rectification=rotvec_to_matrix([0, 0.01, 0]))
    half = cam.resized(621, 188)
    X = np.array([[3.0, -1.0, 20.0, 1.0], [-5.0, 0.5, 8.0, 1.0]])
    y, y_half = X @ P.T, X @ half.projection.T
    uv, uv_half = y[:, :2] / y[:, 2:], y_half[:, :2] / y_half[:, 2:]
    np.testing.assert_allclose(uv_half, (uv + 0.5) * [621 / 1242, 188 / 375] - 0.5, atol=1e-9)
    np.testing.assert_array_equal(half.rectification, cam.rectification)
    plain = CameraModel(1242, 375, K, np.zeros(5))  # none given: [K | 0] and the identity
    np.testing.assert_array_equal(plain.projection_matrix(), np.hstack([K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(plain.rectification_matrix(), np.eye(3))
