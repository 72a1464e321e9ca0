"""LiDAR → camera extrinsics from a planar board seen by both in ≥ 3 poses.

Per pose (:func:`board_observation`): the board's pose in the camera by PnP on its corners (its plane
n·x = d in the optical frame), and its points in the LiDAR cloud: the points near the board as placed by the
initial extrinsics (a generous box around the plate), a RANSAC plane through them, then the inliers.

Solve (:func:`solve_lidar_camera`): rotation by aligning the LiDAR plane normals with the camera plane
normals (Kabsch), translation by least squares on the plane offsets (needs three non-parallel boards),
then a joint Gauss-Newton/Levenberg-Marquardt refinement (``scipy.optimize.least_squares``) of all six
parameters on every board point's distance to its camera plane plus, where the plate size is known, an
edge-alignment term (board points may not fall outside the plate outline). The covariance of the
parameters comes from the Jacobian at the solution, scaled by the residual variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edgefuse.calib.boards import BoardSpec, Corners, detect_corners
from edgefuse.calib.common import CalibrationError, require_scipy
from edgefuse.geometry import CameraModel, Transform, matrix_to_rotvec, rotvec_to_matrix

MIN_POSES = 3


@dataclass(frozen=True)
class BoardObservation:
    """One pose: ``T_cam_board`` (board frame → optical frame, PnP), ``points_lidar`` (K, 3) the board's
    LiDAR points (sensor frame), ``pnp_rms_px`` the PnP reprojection RMS, ``name`` for messages."""

    name: str
    T_cam_board: Transform
    points_lidar: np.ndarray
    pnp_rms_px: float
    pose_cov: np.ndarray | None = None  # (6, 6) of (rotvec, tvec) of T_cam_board, from the PnP Jacobian
    rings: np.ndarray | None = None  # (K,) laser ring of each point (edge alignment), None if unknown

    def plane_sigma_m(self, point_cam: np.ndarray) -> float:
        """1-σ (m) of the camera plane's offset at ``point_cam`` (3,) from the PnP covariance."""
        if self.pose_cov is None:
            return 0.0
        n, _ = self.plane_cam
        # r(p) = n·(p − c); the pose change x → R(δθ)x + δt moves it by δθ·(n × p) − n·δt (first order)
        J = np.concatenate([np.cross(n, point_cam), -n])
        return float(np.sqrt(max(J @ self.pose_cov @ J, 0.0)))

    @property
    def plane_cam(self) -> tuple[np.ndarray, float]:
        """(n (3,), d) with n·x = d on the board, n pointing from the board towards the camera (d < 0)."""
        n = self.T_cam_board.rotation[:, 2].copy()
        c = self.T_cam_board.translation
        if n @ c > 0:
            n = -n
        return n, float(n @ c)


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
    rings: np.ndarray | None = None,
    band_m: float = 0.1,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The LiDAR points (K, 3) of the board: points within ``margin_m`` of the plate as placed by the
    initial extrinsics, then RANSAC planes through them (up to three, each roughly parallel to the board as
    the camera sees it); the board is the one nearest the sensor (a person holding it stands behind it).
    The points returned are all those near the plate within ``band_m`` of that plane, not only the RANSAC
    inliers: the 3 cm RANSAC threshold cuts a 2 cm range noise at 1.5 σ, and that truncation around a
    (tilted) first guess would bias the plane the solver fits; the solver trims at 3 σ itself.
    Returns (points, their ``rings`` if given), or None when too few points."""
    T_board_lidar = T_cam_board.inverse() @ T_cam_lidar_init
    q = T_board_lidar.apply(xyz_lidar.astype(np.float64))
    w, h = board.plate_size
    near = (np.abs(q[:, 0]) < w / 2 + margin_m / 2) & (np.abs(q[:, 1]) < h / 2 + margin_m / 2)
    near &= np.abs(q[:, 2]) < margin_m
    near_pts = xyz_lidar[near].astype(np.float64)
    near_rings = rings[near] if rings is not None else None
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
    return near_pts[on], (near_rings[on] if near_rings is not None else None)


def board_observation(
    name: str,
    image: np.ndarray,
    xyz_lidar: np.ndarray,
    board: BoardSpec,
    cam: CameraModel,
    T_cam_lidar_init: Transform,
    rings: np.ndarray | None = None,
) -> BoardObservation | str:
    """One pose's observation, or the reason (str) it cannot be used. ``rings``: (N,) laser ring of each
    point (the cloud's ``ring`` field), enabling the edge-alignment term."""
    corners = detect_corners(image, board)
    if corners is None:
        return "no board in the image"
    T_cb, rms, cov = board_pose_pnp(corners, board, cam)
    found = board_points_in_cloud(xyz_lidar, T_cb, T_cam_lidar_init, board, rings=rings)
    if found is None:
        return "too few LiDAR points on the board (is the initial calibration within ~20 cm / 5°?)"
    return BoardObservation(name, T_cb, found[0], rms, cov, found[1])


@dataclass
class LidarCameraResult:
    """``T_cam_lidar``; ``std``: 1-σ of (tx, ty, tz) in m and (rx, ry, rz) in degrees (small rotations
    about the camera's axes); ``rms_m``: RMS point-to-plane residual; ``per_pose_rms_m``; ``used``."""

    T_cam_lidar: Transform
    std_translation_m: np.ndarray
    std_rotation_deg: np.ndarray
    rms_m: float
    per_pose_rms_m: dict[str, float]
    used: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    edge_alignment: float = 0.0  # fraction of the board's LiDAR points inside the plate outline (1 cm slack)

    def to_dict(self) -> dict:
        return {
            "T_cam_lidar": {
                "translation": np.round(self.T_cam_lidar.translation, 5).tolist(),
                "rotation_xyzw": np.round(self.T_cam_lidar.quat, 7).tolist(),
            },
            "std_translation_m": np.round(self.std_translation_m, 5).tolist(),
            "std_rotation_deg": np.round(self.std_rotation_deg, 4).tolist(),
            "rms_m": round(self.rms_m, 5),
            "per_pose_rms_m": {k: round(v, 5) for k, v in self.per_pose_rms_m.items()},
            "poses_used": len(self.used),
            "poses_rejected": dict(self.rejected),
            "edge_alignment": round(self.edge_alignment, 4),
        }


def _ring_ends(pc: np.ndarray, T_board_cam: Transform, rings: np.ndarray, min_points: int = 5):
    """For each laser ring crossing the board: indices of its first and last point along the ring's line
    (in the board plane) and the ring's point spacing there (m). None when no ring qualifies."""
    q = (pc @ T_board_cam.rotation.T + T_board_cam.translation)[:, :2]
    first, last, step = [], [], []
    for r in np.unique(rings):
        idx = np.flatnonzero(rings == r)
        if len(idx) < min_points:
            continue
        d = q[idx] - q[idx].mean(axis=0)
        axis = np.linalg.svd(d, full_matrices=False)[2][0]
        s = d @ axis
        order = np.argsort(s)
        gaps = np.diff(s[order])
        if s[order[-1]] - s[order[0]] < 0.2 or np.max(gaps) > 4 * np.median(gaps):
            continue  # too short, or broken (something in front of part of the board)
        first.append(idx[order[0]])
        last.append(idx[order[-1]])
        step.append(float(np.median(gaps)))
    if not first:
        return None
    return np.array(first), np.array(last), np.array(step)


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """R minimizing Σ|b_i − R a_i|² for (N, 3) direction sets."""
    H = a.T @ b
    U, _S, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return Vt.T @ D @ U.T


def solve_lidar_camera(
    obs: list[BoardObservation],
    board: BoardSpec,
    edge_weight: float = 1.0,
    use_edges: bool = False,
    reject_sigma: float = 2.5,
) -> LidarCameraResult:
    """T_cam_lidar from ≥ 3 board observations (see the module doc), then again without the poses whose
    board plane disagrees with the fit by more than ``reject_sigma`` of its expected error (a camera plane
    off at long range, a board mixed with its holder). ``use_edges``: add the plate-outline term (only
    when the board spec knows its plate size; off by default: the one-sided outline penalty pulls the roll
    about the line of sight by ~0.1°, see docs/calibration.md)."""
    first = _solve(obs, board, edge_weight, use_edges)
    T = first.T_cam_lidar
    keep, rejected = [], {}
    for o in obs:
        n, d = o.plane_cam
        pc = T.apply(o.points_lidar)
        r = pc @ n - d
        sig = np.sqrt(np.var(r) / len(r) + o.plane_sigma_m(pc.mean(axis=0)) ** 2 + 0.003**2)
        z = abs(float(np.median(r))) / sig
        (keep.append(o) if z <= reject_sigma else rejected.__setitem__(o.name, f"plane offset {z:.1f} σ"))
    if not rejected or len(keep) < MIN_POSES:
        return first
    out = _solve(keep, board, edge_weight, use_edges)
    out.rejected = rejected
    return out


def _solve(obs: list[BoardObservation], board: BoardSpec, edge_weight: float, use_edges: bool):
    require_scipy()
    from scipy.optimize import least_squares

    if len(obs) < MIN_POSES:
        raise CalibrationError(
            f"only {len(obs)} usable board pose(s); need at least {MIN_POSES}: hold the board in "
            f"{MIN_POSES - len(obs)} "
            "or more further poses seen by both the camera and the LiDAR, tilted differently each time"
        )
    planes = [o.plane_cam for o in obs]
    n_c = np.array([p[0] for p in planes])
    d_c = np.array([p[1] for p in planes])
    sv = np.linalg.svd(n_c, compute_uv=False)
    if sv[-1] / sv[0] < 0.1:
        raise CalibrationError(
            f"degenerate board poses: the {len(obs)} board planes are nearly parallel (normal matrix "
            "singular values "
            f"{np.round(sv, 3).tolist()}), so the LiDAR→camera offset is not observable: hold the board "
            "turned "
            "20–40° left, right, up and down"
        )
    # closed form: normals, then offsets
    n_l, c_l = [], []
    for o in obs:
        c = o.points_lidar.mean(axis=0)
        n = np.linalg.svd(o.points_lidar - c, full_matrices=False)[2][2]
        if n @ c > 0:
            n = -n
        n_l.append(n)
        c_l.append(c)
    R0 = _kabsch(np.array(n_l), n_c)
    rhs = d_c - np.einsum("ij,ij->i", n_c, (R0 @ np.array(c_l).T).T)
    t0 = np.linalg.lstsq(n_c, rhs, rcond=None)[0]

    edges = use_edges and board.plate_m is not None
    hw, hh = np.asarray(board.plate_size) / 2.0
    T_bc = [o.T_cam_board.inverse() for o in obs]
    pts = [o.points_lidar for o in obs]
    rings = [o.rings for o in obs]
    R, t = R0, t0
    for _round in range(3):
        ends = [
            _ring_ends(p @ R.T + t, T_bc[i], rg) if edges and rg is not None else None
            for i, (p, rg) in enumerate(zip(pts, rings, strict=True))
        ]
        # per-pose weight: the pose counts as one plane measurement of variance σ_l²/N + σ_cam² (the camera
        # plane's error is shared by all its points)
        w = []
        for i, p in enumerate(pts):
            pc = p @ R.T + t
            r = pc @ n_c[i] - d_c[i]
            sig_l = max(float(np.std(r)), 0.005)
            sig_c = obs[i].plane_sigma_m(pc.mean(axis=0))
            w.append(1.0 / np.sqrt(sig_l**2 + len(p) * sig_c**2))
        Rb, tb = R, t

        def residuals(x: np.ndarray, Rb=Rb, tb=tb, w=w, pts=pts, ends=ends) -> np.ndarray:
            Rx = rotvec_to_matrix(x[:3]) @ Rb
            tx = tb + x[3:]
            out = []
            for i, p in enumerate(pts):
                pc = p @ Rx.T + tx
                out.append(w[i] * (pc @ n_c[i] - d_c[i]))
                if ends[i] is not None:
                    first, last, step = ends[i]
                    q0 = (pc[first] @ T_bc[i].rotation.T + T_bc[i].translation)[:, :2]
                    q1 = (pc[last] @ T_bc[i].rotation.T + T_bc[i].translation)[:, :2]
                    u = (q1 - q0) / np.linalg.norm(q1 - q0, axis=1, keepdims=True)
                    sig = np.maximum(step / np.sqrt(12.0), 0.003)
                    for e in (q1 + u * step[:, None] / 2, q0 - u * step[:, None] / 2):
                        # signed distance to the plate outline (positive outside), near an edge
                        sdf = np.maximum(np.abs(e[:, 0]) - hw, np.abs(e[:, 1]) - hh)
                        out.append(edge_weight * sdf / sig)
            return np.concatenate(out)

        sol = least_squares(residuals, np.zeros(6), method="lm")
        R = rotvec_to_matrix(sol.x[:3]) @ Rb
        t = tb + sol.x[3:]
        # drop points off the board's plane (a holder behind it, an edge mixed pixel) or outside the plate
        trimmed = []
        for i, p in enumerate(obs):
            pc = p.points_lidar @ R.T + t
            r = pc @ n_c[i] - d_c[i]
            sig = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 0.005)
            q = pc @ T_bc[i].rotation.T + T_bc[i].translation
            keep = (
                (np.abs(r - np.median(r)) < 3 * sig)
                & (np.abs(q[:, 0]) < hw + 0.1)
                & (np.abs(q[:, 1]) < hh + 0.1)
            )
            keep = keep if keep.sum() >= 10 else np.ones(len(keep), bool)
            trimmed.append(p.points_lidar[keep])
            rings[i] = p.rings[keep] if p.rings is not None else None
        pts = trimmed
    T = Transform(R, t)
    J = sol.jac
    dof = max(1, len(sol.fun) - 6)
    s2 = float(sol.fun @ sol.fun) / dof
    try:
        cov = np.linalg.inv(J.T @ J) * s2
        std = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        std = np.full(6, np.nan)
    per_pose = {}
    for i, o in enumerate(obs):
        r = (pts[i] @ R.T + t) @ n_c[i] - d_c[i]
        per_pose[o.name] = float(np.sqrt(np.mean(r**2)))
    all_r = np.concatenate([(p @ R.T + t) @ n_c[i] - d_c[i] for i, p in enumerate(pts)])
    inside = []
    for i, p in enumerate(pts):
        q = (p @ R.T + t) @ T_bc[i].rotation.T + T_bc[i].translation
        inside.append((np.abs(q[:, 0]) <= hw + 0.01) & (np.abs(q[:, 1]) <= hh + 0.01))
    edge_score = float(np.mean(np.concatenate(inside)))
    return LidarCameraResult(
        T_cam_lidar=T,
        std_translation_m=std[3:],
        std_rotation_deg=np.degrees(std[:3]),
        rms_m=float(np.sqrt(np.mean(all_r**2))),
        per_pose_rms_m=per_pose,
        used=[o.name for o in obs],
        edge_alignment=edge_score,
    )


def transform_error(T_est: Transform, T_true: Transform) -> tuple[float, float]:
    """(translation error m, rotation error deg) between two transforms."""
    dR = T_est.rotation @ T_true.rotation.T
    ang = float(np.degrees(np.linalg.norm(matrix_to_rotvec(dR))))
    return float(np.linalg.norm(T_est.translation - T_true.translation)), ang


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
    still_px: float = 0.5,
    per_pose: int = 6,
    progress: bool = True,
) -> tuple[list[BoardObservation], dict[str, int]]:
    """Board observations from a log. Pass 1 reads the camera every ``stride_ns`` and keeps the frames
    whose board corners moved less than ``still_px`` (mean) since the previous checked frame (board and
    rig standing still), at most ``per_pose`` per board pose; pass 2 pairs each kept frame with the LiDAR
    sweep nearest in time (within ``max_dt_ns``). Returns (observations, counts of what was skipped)."""
    from tqdm import tqdm

    from edgefuse.calib.common import image_rgb, sensor_messages

    counts = {
        "frames_checked": 0,
        "no_board": 0,
        "moving": 0,
        "pose_full": 0,
        "no_sweep": 0,
        "no_lidar_board": 0,
    }
    kept: dict[int, tuple[Corners, Transform, float, np.ndarray]] = {}
    prev: Corners | None = None
    last_t = None
    pose_ref: np.ndarray | None = None
    pose_count = 0
    for msg in tqdm(
        sensor_messages(log, camera), desc="camera frames", unit="img", disable=not progress, leave=False
    ):
        if last_t is not None and msg.stamp_ns - last_t < stride_ns:
            continue
        last_t = msg.stamp_ns
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
        if (
            pose_ref is None
            or len(pose_ref) != len(c.uv)
            or float(np.mean(np.linalg.norm(c.uv - pose_ref, axis=1))) > 5.0
        ):
            pose_ref, pose_count = c.uv, 0
        if pose_count >= per_pose:
            counts["pose_full"] += 1
            continue
        pose_count += 1
        T_cb, rms, cov = board_pose_pnp(c, board, cam)
        kept[msg.stamp_ns] = (c, T_cb, rms, cov)
    if not kept:
        return [], counts
    stamps = np.array(sorted(kept), dtype=np.int64)
    best: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = {}
    for msg in sensor_messages(log, lidar):
        i = int(np.argmin(np.abs(stamps - msg.stamp_ns)))
        dt = abs(int(stamps[i]) - msg.stamp_ns)
        if dt <= max_dt_ns and (stamps[i] not in best or dt < best[stamps[i]][0]):
            ring = msg.payload.column("ring") if msg.payload.has("ring") else None
            best[int(stamps[i])] = (dt, msg.payload.xyz.astype(np.float64), ring)
    obs = []
    for t in stamps:
        t = int(t)
        if t not in best:
            counts["no_sweep"] += 1
            continue
        _c, T_cb, rms, cov = kept[t]
        found = board_points_in_cloud(best[t][1], T_cb, T_cam_lidar_init, board, rings=best[t][2])
        if found is None:
            counts["no_lidar_board"] += 1
            continue
        obs.append(BoardObservation(f"{camera}@{t}", T_cb, found[0], rms, cov, found[1]))
    return obs, counts
