"""SE(3) transforms, rotations and camera models.

Frames follow ROS REP-103: base_link x forward, y left, z up; camera optical frame z forward, x right,
y down. A transform is named ``T_target_source`` and maps points in ``source`` into ``target``:
``p_target = T_target_source.apply(p_source)``. Quaternions are x y z w (ROS order).

Camera models match OpenCV exactly (tests compare against ``cv2.projectPoints``,
``cv2.undistortPoints`` and ``cv2.fisheye.projectPoints``); ROS camera_info ``distortion_model`` names in
brackets:
- ``pinhole`` (``plumb_bob``): radial-tangential distortion k1 k2 p1 p2 k3,
- ``rational`` (``rational_polynomial``): OpenCV's rational model k1 k2 p1 p2 k3 k4 k5 k6, radial factor
  (1 + k1r² + k2r⁴ + k3r⁶) / (1 + k4r² + k5r⁴ + k6r⁶), tangential terms as plumb bob (``pinhole`` is the
  case k4 = k5 = k6 = 0, and both share one code path),
- ``fisheye`` (``equidistant``): θ_d = θ(1 + k1θ² + k2θ⁴ + k3θ⁶ + k4θ⁸).

A camera_info's projection matrix P (3 × 4) and rectification matrix R (3 × 3) are kept when a file gives
them (``CameraModel.projection`` / ``rectification``) and written back unchanged; without them ``[K | 0]``
and the identity are written (ROS's monocular defaults). The pipeline never projects with P: points map to
the *raw* image through K and the distortion (:meth:`CameraModel.project`), and preprocessing undistorts
with K and the distortion. P and R are for users of rectified images (ROS ``image_proc``'s
``image_rect``, a stereo pair's baseline in P's fourth column) and for exact round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- rotations


def quat_to_matrix(q) -> np.ndarray:
    """Quaternion (x, y, z, w), any norm > 0 → (3, 3) rotation matrix."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"quaternion: expected shape (4,) as x y z w, got {q.shape}")
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion: expected a finite non-zero quaternion, got {q}")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def quats_to_matrices(q: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions x y z w (normalized here, no checks) → (N, 3, 3): :func:`quat_to_matrix` for
    many at once (the scalar one stays separate: 4× faster per single call)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    R = np.empty((q.shape[0], 3, 3))
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - z * w)
    R[:, 0, 2] = 2 * (x * z + y * w)
    R[:, 1, 0] = 2 * (x * y + z * w)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - x * w)
    R[:, 2, 0] = 2 * (x * z - y * w)
    R[:, 2, 1] = 2 * (y * z + x * w)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def matrix_to_quat(R) -> np.ndarray:
    """(3, 3) rotation matrix → unit quaternion (x, y, z, w) with w ≥ 0."""
    R = np.asarray(R, dtype=np.float64)
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = np.array([0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s])
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = np.array([(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = np.array([(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Roll, pitch, yaw (rad; fixed axes x, y, z, i.e. R = Rz(yaw)·Ry(pitch)·Rx(roll)) → (3, 3)."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_rpy(R) -> np.ndarray:
    """(3, 3) → (roll, pitch, yaw) rad, the inverse of :func:`rpy_to_matrix` (pitch in [-π/2, π/2])."""
    R = np.asarray(R, dtype=np.float64)
    pitch = np.arcsin(np.clip(-R[2, 0], -1.0, 1.0))
    if abs(np.cos(pitch)) > 1e-9:
        roll = np.arctan2(R[2, 1], R[2, 2])
        yaw = np.arctan2(R[1, 0], R[0, 0])
    else:  # gimbal lock: yaw and roll share one axis; put it all in yaw
        roll = 0.0
        yaw = np.arctan2(-R[0, 1], R[1, 1])
    return np.array([roll, pitch, yaw])


def rotvec_to_matrix(rv) -> np.ndarray:
    """Axis-angle (3,) rad (OpenCV's rvec) → (3, 3) (Rodrigues)."""
    rv = np.asarray(rv, dtype=np.float64).reshape(3)
    theta = np.linalg.norm(rv)
    if theta < 1e-12:
        return np.eye(3)
    k = rv / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def rotvecs_to_matrices(rv: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle rad → (N, 3, 3): :func:`rotvec_to_matrix` for many at once (zero vectors give
    the identity)."""
    rv = np.asarray(rv, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = rv / safe[:, None]
    K = np.zeros((rv.shape[0], 3, 3))
    K[:, 0, 1], K[:, 0, 2] = -k[:, 2], k[:, 1]
    K[:, 1, 0], K[:, 1, 2] = k[:, 2], -k[:, 0]
    K[:, 2, 0], K[:, 2, 1] = -k[:, 1], k[:, 0]
    s = np.where(theta > 1e-12, np.sin(theta), 0.0)[:, None, None]
    c = np.where(theta > 1e-12, 1 - np.cos(theta), 0.0)[:, None, None]
    return np.eye(3)[None] + s * K + c * (K @ K)


def matrix_to_rotvec(R) -> np.ndarray:
    """(3, 3) → axis-angle (3,) rad."""
    q = matrix_to_quat(R)
    s = np.linalg.norm(q[:3])
    if s < 1e-12:
        return np.zeros(3)
    return q[:3] / s * 2.0 * np.arctan2(s, q[3])


# ---------------------------------------------------------------- SE(3)


@dataclass(frozen=True)
class Transform:
    """A rigid transform T_target_source: ``rotation`` (3, 3), ``translation`` (3,) in metres."""

    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        R = np.asarray(self.rotation, dtype=np.float64)
        t = np.asarray(self.translation, dtype=np.float64).reshape(-1)
        if R.shape != (3, 3):
            raise ValueError(f"Transform.rotation: expected shape (3, 3), got {R.shape}")
        if t.shape != (3,):
            raise ValueError(f"Transform.translation: expected shape (3,), got {t.shape}")
        if not (np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0):
            raise ValueError("Transform.rotation: expected an orthonormal matrix with determinant +1")
        object.__setattr__(self, "rotation", R)
        object.__setattr__(self, "translation", t)

    @staticmethod
    def identity() -> Transform:
        return Transform(np.eye(3), np.zeros(3))

    @staticmethod
    def from_quat(translation, quat_xyzw) -> Transform:
        return Transform(quat_to_matrix(quat_xyzw), translation)

    @staticmethod
    def from_rpy(translation, roll: float, pitch: float, yaw: float) -> Transform:
        return Transform(rpy_to_matrix(roll, pitch, yaw), translation)

    @staticmethod
    def from_matrix(M) -> Transform:
        M = np.asarray(M, dtype=np.float64)
        if M.shape != (4, 4):
            raise ValueError(f"Transform.from_matrix: expected shape (4, 4), got {M.shape}")
        return Transform(M[:3, :3], M[:3, 3])

    @property
    def quat(self) -> np.ndarray:
        """(4,) x y z w."""
        return matrix_to_quat(self.rotation)

    @property
    def rpy(self) -> np.ndarray:
        return matrix_to_rpy(self.rotation)

    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix."""
        M = np.eye(4)
        M[:3, :3] = self.rotation
        M[:3, 3] = self.translation
        return M

    def inverse(self) -> Transform:
        """T_source_target."""
        return Transform(self.rotation.T, -self.rotation.T @ self.translation)

    def __matmul__(self, other: Transform) -> Transform:
        """T_a_b @ T_b_c = T_a_c."""
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) points from source to target; dtype is kept (float32 in, float32 out)."""
        p = np.asarray(points)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"Transform.apply: expected points of shape (N, 3), got {p.shape}")
        out = p @ self.rotation.T.astype(p.dtype, copy=False) + self.translation.astype(p.dtype, copy=False)
        return out.astype(p.dtype, copy=False)


# ---------------------------------------------------------------- cameras

CAMERA_MODELS = ("pinhole", "rational", "fisheye")
#: distortion coefficients of each model (see the module doc)
DISTORTION_SIZES = {"pinhole": 5, "rational": 8, "fisheye": 4}
#: each model's ROS camera_info ``distortion_model`` name
ROS_DISTORTION_MODELS = {"pinhole": "plumb_bob", "rational": "rational_polynomial", "fisheye": "equidistant"}


def _optional_matrix(value, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if value is None:
        return None
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape or not np.isfinite(m).all():
        raise ValueError(f"CameraModel.{name}: expected {shape[0]} × {shape[1]} finite numbers, got {m}")
    return m


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera, in ROS ``camera_info`` terms.

    ``K`` (3, 3); ``distortion``: 5 values k1 k2 p1 p2 k3 for ``pinhole`` (ROS ``plumb_bob``), 8 values
    k1 k2 p1 p2 k3 k4 k5 k6 for ``rational`` (ROS ``rational_polynomial``), 4 values k1 k2 k3 k4 for
    ``fisheye`` (ROS ``equidistant``); ``width``/``height`` in pixels. ``projection`` (3, 4) and
    ``rectification`` (3, 3): a camera_info's P and R as a file gave them (None: not given; see the module
    doc — projection never uses them)."""

    width: int
    height: int
    K: np.ndarray
    distortion: np.ndarray
    model: str = "pinhole"
    projection: np.ndarray | None = None
    rectification: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"CameraModel.model: expected one of {CAMERA_MODELS}, got {self.model!r}")
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"CameraModel.K: expected shape (3, 3), got {K.shape}")
        d = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        n = DISTORTION_SIZES[self.model]
        if d.shape != (n,):
            raise ValueError(
                f"CameraModel.distortion: expected {n} values for {self.model}, got {d.shape[0]}"
            )
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"CameraModel: expected positive width/height, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "distortion", d)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        for name, shape in (("projection", (3, 4)), ("rectification", (3, 3))):
            object.__setattr__(self, name, _optional_matrix(getattr(self, name), shape, name))

    @staticmethod
    def from_fov(width: int, height: int, hfov_rad: float, distortion=None, model: str = "pinhole"):
        """A camera with square pixels, centred principal point and horizontal field of view ``hfov_rad``."""
        f = (width / 2.0) / np.tan(hfov_rad / 2.0)
        K = np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1]])
        if distortion is None:
            distortion = np.zeros(DISTORTION_SIZES.get(model, 5))
        return CameraModel(width, height, K, distortion, model)

    def projection_matrix(self) -> np.ndarray:
        """(3, 4) P: the one a file gave, else ``[K | 0]`` (ROS's monocular default)."""
        if self.projection is not None:
            return self.projection.copy()
        return np.hstack([self.K, np.zeros((3, 1))])

    def rectification_matrix(self) -> np.ndarray:
        """(3, 3) R: the one a file gave, else the identity (ROS's monocular default)."""
        return np.eye(3) if self.rectification is None else self.rectification.copy()

    def resized(self, width: int, height: int) -> CameraModel:
        """The same camera read out at ``width``×``height`` pixels (the whole sensor scaled, as binning
        does): K (and a given P) scaled per axis with pixel centres kept (``c' = (c + 0.5)·s − 0.5``,
        ``f' = f·s``), the distortion (in normalized coordinates) and R unchanged."""
        sx, sy = width / self.width, height / self.height
        A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        P = None if self.projection is None else A @ self.projection
        return CameraModel(width, height, A @ self.K, self.distortion, self.model, P, self.rectification)

    def _rational_coefficients(self) -> np.ndarray:
        """k1 k2 p1 p2 k3 k4 k5 k6 of a ``pinhole`` (k4 = k5 = k6 = 0) or ``rational`` camera."""
        return np.concatenate([self.distortion, np.zeros(8 - self.distortion.size)])

    def distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) ideal normalized coordinates (x/z, y/z) → (N, 2) distorted normalized coordinates."""
        x, y = xy[:, 0], xy[:, 1]
        if self.model != "fisheye":
            k1, k2, p1, p2, k3, k4, k5, k6 = self._rational_coefficients()
            r2 = x * x + y * y
            radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            return np.stack([xd, yd], axis=1)
        k1, k2, k3, k4 = self.distortion
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + k1 * t2 + k2 * t2**2 + k3 * t2**3 + k4 * t2**4)
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return xy * scale[:, None]

    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (N, 3) points in the camera optical frame (m) → ((N, 2) pixels (u, v), (N,) depth z).

        Pixels of points with z ≤ 0 are NaN. No bounds check: see :meth:`in_image`."""
        p = np.asarray(points_cam, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"CameraModel.project: expected points of shape (N, 3), got {p.shape}")
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = p[:, :2] / z[:, None]
        xy[z <= 0] = np.nan
        d = self.distort_normalized(xy)
        uv = d @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z

    def in_image(self, uv: np.ndarray) -> np.ndarray:
        """(N,) bool: pixel centres inside [0, width) × [0, height) (NaN → False)."""
        with np.errstate(invalid="ignore"):
            return (uv[:, 0] >= 0) & (uv[:, 0] < self.width) & (uv[:, 1] >= 0) & (uv[:, 1] < self.height)

    def undistort_normalized(self, uv: np.ndarray, iterations: int = 20) -> np.ndarray:
        """(N, 2) distorted pixels → (N, 2) ideal normalized coordinates (x/z, y/z).

        pinhole and rational: OpenCV's fixed-point iteration x = (x_d − tangential(x)) / radial(x), as
        ``cv2.undistortPoints``; fisheye: Newton on θ_d = θ(1 + k1θ² + …), as
        ``cv2.fisheye.undistortPoints``."""
        d = (np.asarray(uv, dtype=np.float64) - self.K[:2, 2]) @ np.linalg.inv(self.K[:2, :2]).T
        if self.model != "fisheye":
            k1, k2, p1, p2, k3, k4, k5, k6 = self._rational_coefficients()
            x, y = d[:, 0].copy(), d[:, 1].copy()
            for _ in range(iterations):
                r2 = x * x + y * y
                radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
                dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
                dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
                x = (d[:, 0] - dx) / radial
                y = (d[:, 1] - dy) / radial
            return np.stack([x, y], axis=1)
        k = self.distortion
        theta_d = np.hypot(d[:, 0], d[:, 1])
        theta = theta_d.copy()
        for _ in range(iterations):
            t2 = theta * theta
            f = theta * (1 + k[0] * t2 + k[1] * t2**2 + k[2] * t2**3 + k[3] * t2**4) - theta_d
            df = 1 + 3 * k[0] * t2 + 5 * k[1] * t2**2 + 7 * k[2] * t2**3 + 9 * k[3] * t2**4
            theta = theta - f / df
        scale = np.where(theta_d > 1e-12, np.tan(theta) / np.maximum(theta_d, 1e-12), 1.0)
        return d * scale[:, None]

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixels → (N, 3) unit rays in the optical frame."""
        xy = self.undistort_normalized(uv)
        r = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)
        return r / np.linalg.norm(r, axis=1, keepdims=True)
