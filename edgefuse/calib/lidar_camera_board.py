"""Board observations for the LiDAR → camera extrinsics (:mod:`edgefuse.calib.lidar_camera` solves them):
a planar board seen by both sensors.

Per frame (:func:`board_observation`): the board's pose in the camera by PnP on its corners (its plane
n·x = d in the optical frame, with the pose's covariance), and its points in the LiDAR cloud: the points
near the board as placed by the initial extrinsics, a RANSAC plane through them to tell the board from its
holder, then every point within 10 cm of that plane. From a log (:func:`observations_from_log`): the
frames where the board stands still, each paired with the LiDAR sweeps recorded while it did.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgefuse.calib.boards import BoardSpec, Corners, detect_corners
from edgefuse.calib.common import CalibrationError
from edgefuse.geometry import CameraModel, Transform, rotvec_to_matrix
from edgefuse.types import PointCloud


def board_plane(T_cam_board) -> tuple[np.ndarray, float]:
    """The board plane in the camera frame from its pose: (n (3,), d) with n·x = d on the board, n the
    board's z axis turned to point from the board towards the camera (so d < 0)."""
    n = T_cam_board.rotation[:, 2].copy()
    c = T_cam_board.translation
    if n @ c > 0:
        n = -n
    return n, float(n @ c)


@dataclass(frozen=True)
class BoardObservation:
    """One pose: ``T_cam_board`` (board frame → optical frame, PnP), ``points_lidar`` (K, 3) the board's
    LiDAR points (sensor frame), ``pnp_rms_px`` the PnP reprojection RMS, ``name`` for messages."""

    name: str
    T_cam_board: Transform
    points_lidar: np.ndarray
    pnp_rms_px: float
    pose_cov: np.ndarray | None = None  # (6, 6) of (rotvec, tvec) of T_cam_board, from the PnP Jacobian
    rings: np.ndarray | None = None  # (K,) laser ring of each point, None if unknown
    intensity: np.ndarray | None = None  # (K,) each point's intensity (reflectivity), None if unknown

    @property
    def plane_cam(self) -> tuple[np.ndarray, float]:
        """(n (3,), d) with n·x = d on the board, n pointing from the board towards the camera (d < 0)."""
        return board_plane(self.T_cam_board)


def board_pose_pnp(
    corners: Corners, board: BoardSpec, cam: CameraModel
) -> tuple[Transform, float, np.ndarray]:
    """T_cam_board, the RMS reprojection error (px) and the (6, 6) covariance of the pose (small rotation
    about the camera axes, then translation) from the detected corners (any camera model: the corners are
    undistorted to normalized coordinates first)."""
    obj = board.object_points()[corners.ids]
    xy = cam.undistort_normalized(corners.uv)
    ok, rvec, tvec = cv2.solvePnP(obj, xy, np.eye(3), None, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError("PnP failed on the board corners")
    rvec, tvec = cv2.solvePnPRefineLM(obj, xy, np.eye(3), None, rvec, tvec)
    T = Transform(rotvec_to_matrix(rvec.reshape(3)), tvec.reshape(3))
    uv, _ = cam.project(T.apply(obj))
    rms = float(np.sqrt(np.mean(np.sum((uv - corners.uv) ** 2, axis=1))))
    # numeric Jacobian of the pixel positions w.r.t. (δθ in the camera frame, δt)
    pc = T.apply(obj)
    J = np.zeros((2 * len(obj), 6))
    eps = 1e-6
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        p2 = pc @ rotvec_to_matrix(d[:3]).T + d[3:]
        J[:, k] = ((cam.project(p2)[0] - uv) / eps).reshape(-1)
    sigma_px = max(rms, 0.1)
    try:
        cov = np.linalg.inv(J.T @ J) * sigma_px**2
    except np.linalg.LinAlgError:
        cov = np.full((6, 6), np.nan)
    return T, rms, cov


def fit_plane_ransac(
    points: np.ndarray,
    threshold_m: float = 0.03,
    iterations: int = 300,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, float, np.ndarray]:
    """RANSAC plane through (N, 3) points, refined by SVD on the inliers: (n (3,), d, inlier mask)
    with n·x = d."""
    rng = rng or np.random.default_rng(0)
    n_pts = len(points)
    if n_pts < 3:
        raise CalibrationError(f"plane fit: expected at least 3 points, got {n_pts}")
    # all hypotheses at once: (I, 3) sampled triplets → normals → inlier counts
    idx = np.stack([rng.choice(n_pts, 3, replace=False) for _ in range(iterations)])
    s = points[idx]
    n = np.cross(s[:, 1] - s[:, 0], s[:, 2] - s[:, 0])
    norm = np.linalg.norm(n, axis=1)
    good = norm > 1e-9
    n = n[good] / norm[good, None]
    d = np.einsum("ij,ij->i", n, s[good, 0])
    counts = (np.abs(points @ n.T - d) < threshold_m).sum(axis=0)
    k = int(np.argmax(counts))
    best = np.abs(points @ n[k] - d[k]) < threshold_m
    for _ in range(2):  # least-squares refit on the inliers, then re-select
        c = points[best].mean(axis=0)
        n = np.linalg.svd(points[best] - c, full_matrices=False)[2][2]
        best = np.abs((points - c) @ n) < threshold_m
    c = points[best].mean(axis=0)
    n = np.linalg.svd(points[best] - c, full_matrices=False)[2][2]
    return n, float(n @ c), best


def board_points_in_cloud(
    xyz_lidar: np.ndarray,
    T_cam_board: Transform,
    T_cam_lidar_init: Transform,
    board: BoardSpec,
    margin_m: float = 0.3,
    min_points: int = 20,
    band_m: float = 0.1,
) -> np.ndarray | None:
    """The LiDAR points (K, 3) of the board: points within ``margin_m`` of the plate as placed by the
    initial extrinsics, then RANSAC planes through them (up to three, each roughly parallel to the board as
    the camera sees it); the board is the one nearest the sensor (a person holding it stands behind it).
    The points returned are all those near the plate within ``band_m`` of that plane, not only the RANSAC
    inliers: the 3 cm RANSAC threshold cuts a 2 cm range noise at 1.5 σ, and that truncation around a
    (tilted) first guess would bias the plane the solver fits; the solver trims at 3 σ itself.
    Returns the indices of those points in ``xyz_lidar`` (K,), or None when too few."""
    T_board_lidar = T_cam_board.inverse() @ T_cam_lidar_init
    q = T_board_lidar.apply(xyz_lidar.astype(np.float64))
    w, h = board.plate_size
    q = q - [*board.plate_offset_m, 0.0]  # about the plate's centre
    near = (np.abs(q[:, 0]) < w / 2 + margin_m / 2) & (np.abs(q[:, 1]) < h / 2 + margin_m / 2)
    near &= np.abs(q[:, 2]) < margin_m
    near_idx = np.flatnonzero(near)
    near_pts = xyz_lidar[near_idx].astype(np.float64)
    cand = near_pts
    n_expect = T_board_lidar.inverse().rotation[:, 2]
    best: tuple[np.ndarray, float] | None = None
    best_dist = np.inf
    first = 0
    for _ in range(3):
        if len(cand) < min_points:
            break
        n, d, inl = fit_plane_ransac(cand, threshold_m=0.03)
        k = int(inl.sum())
        first = first or k
        if k < max(min_points, 0.3 * first):
            break
        dist = float(np.linalg.norm(cand[inl].mean(axis=0)))
        if abs(n @ n_expect) > np.cos(np.radians(30.0)) and dist < best_dist:
            best, best_dist = (n, d), dist
        cand = cand[~inl]
    if best is None:
        return None
    on = np.abs(near_pts @ best[0] - best[1]) < band_m
    if on.sum() < min_points:
        return None
    return near_idx[on]


def board_observation(
    name: str,
    image: np.ndarray,
    cloud: PointCloud,
    board: BoardSpec,
    cam: CameraModel,
    T_cam_lidar_init: Transform,
) -> BoardObservation | str:
    """One pose's observation, or the reason (str) it cannot be used. The cloud's ``ring`` field (laser of
    each point) lets the solver estimate each laser's range offset (and enables the edge term); its
    ``intensity``, the range walk of dark and bright squares."""
    corners = detect_corners(image, board)
    if corners is None:
        return "no board in the image"
    T_cb, rms, cov = board_pose_pnp(corners, board, cam)
    return _observation(name, cloud, T_cb, rms, cov, T_cam_lidar_init, board)


def _observation(name, cloud: PointCloud, T_cb, rms, cov, T_cam_lidar_init, board) -> BoardObservation | str:
    """The observation of a board seen by the camera at ``T_cb`` (PnP) in ``cloud``, or why not (str)."""
    found = board_points_in_cloud(cloud.xyz.astype(np.float64), T_cb, T_cam_lidar_init, board)
    if found is None:
        return "too few LiDAR points on the board (is the initial calibration within ~20 cm / 5°?)"
    column = lambda f: cloud.column(f)[found] if cloud.has(f) else None  # noqa: E731
    xyz = cloud.xyz[found].astype(np.float64)
    return BoardObservation(name, T_cb, xyz, rms, cov, column("ring"), column("intensity"))


# ---------------------------------------------------------------- log shell


def observations_from_log(
    log: str,
    camera: str,
    lidar: str,
    board: BoardSpec,
    cam: CameraModel,
    T_cam_lidar_init: Transform,
    stride_ns: int = 250_000_000,
    max_dt_ns: int = 30_000_000,
    still_px: float = 2.0,
    progress: bool = True,
) -> tuple[list[BoardObservation], dict[str, int]]:
    """Board observations from a log. Pass 1 reads the camera every ``stride_ns`` and keeps the frames
    whose board corners moved less than ``still_px`` (mean) since the previous checked frame: the board and
    the rig stood still between the two. Pass 2 pairs each LiDAR sweep recorded entirely within a run of
    such still frames (its span from its points' ``t_ns``, else from the previous sweep's stamp;
    ``max_dt_ns`` of slack for the clocks) with the run's first frame at or after its end, so a hold gives
    every sweep it has, not one per frame; :func:`~edgefuse.calib.lidar_camera.solve_lidar_camera` merges a
    hold's observations into one pose. Returns (observations, counts of what was skipped)."""
    from tqdm import tqdm

    from edgefuse.calib.common import image_rgb, sensor_messages
    from edgefuse.types import POINT_TIME_FIELD

    counts = {"frames_checked": 0, "no_board": 0, "moving": 0, "no_sweep": 0, "no_lidar_board": 0}
    kept: dict[int, tuple[int, Transform, float, np.ndarray]] = {}  # stamp → (still since, T, rms, cov)
    prev: Corners | None = None
    last_t = None
    for msg in tqdm(
        sensor_messages(log, camera), desc="camera frames", unit="img", disable=not progress, leave=False
    ):
        if last_t is not None and msg.stamp_ns - last_t < stride_ns:
            continue
        since, last_t = last_t, msg.stamp_ns
        counts["frames_checked"] += 1
        c = detect_corners(image_rgb(msg, f"{log}: {camera} stamp {msg.stamp_ns}"), board)
        still = (
            c is not None
            and prev is not None
            and np.array_equal(c.ids, prev.ids)
            and float(np.mean(np.linalg.norm(c.uv - prev.uv, axis=1))) < still_px
        )
        prev = c
        if c is None:
            counts["no_board"] += 1
            continue
        if not still:
            counts["moving"] += 1
            continue
        T_cb, rms, cov = board_pose_pnp(c, board, cam)
        # the still run this frame ends: since the previous checked frame, or since that one's run began
        run_start = kept[since][0] if since in kept else int(since)
        kept[msg.stamp_ns] = (run_start, T_cb, rms, cov)
    if not kept:
        return [], counts
    stamps = np.array(sorted(kept), dtype=np.int64)
    starts = np.array([kept[t][0] for t in stamps], dtype=np.int64)
    paired: dict[int, int] = {}
    obs = []
    prev_sweep: int | None = None
    for msg in sensor_messages(log, lidar):
        cloud = msg.payload
        if cloud.has(POINT_TIME_FIELD) and len(cloud.data):
            begin = msg.stamp_ns + int(np.min(cloud.column(POINT_TIME_FIELD)))
        elif prev_sweep is not None:
            begin = prev_sweep
        else:
            begin = None
        prev_sweep = msg.stamp_ns
        if begin is None:
            continue
        inside = np.flatnonzero((starts - max_dt_ns <= begin) & (msg.stamp_ns <= stamps + max_dt_ns))
        if not len(inside):
            continue
        t = int(stamps[inside[0]])
        paired[t] = paired.get(t, 0) + 1
        _since, T_cb, rms, cov = kept[t]
        o = _observation(
            f"{camera}@{t}+{lidar}@{msg.stamp_ns}", cloud, T_cb, rms, cov, T_cam_lidar_init, board
        )
        if isinstance(o, str):
            counts["no_lidar_board"] += 1
            continue
        obs.append(o)
    counts["no_sweep"] = int(sum(1 for t in stamps if int(t) not in paired))
    return obs, counts
