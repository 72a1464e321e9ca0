"""Calibration check: project a LiDAR cloud into a camera image and score how well its depth edges meet the
image's edges.

- ``points_in_image``: points with positive depth whose projection lands inside the image (nothing else is
  filtered: no range limit, no occlusion test);
- ``edge_alignment``: LiDAR depth-discontinuity points (a ≥ ``jump_m`` depth step within a 5 × 5 px
  neighbourhood of the sparse depth image, near side) are scored by their distance d to the nearest image
  edge (Canny): mean of exp(−d² / 2σ²), σ = 2 px; 1 = every depth edge on an image edge. A few tenths
  of a degree of rotation error lowers it visibly; compare it between calibrations of the same frames.
- the overlay PNG shows the image with the points coloured by depth (near red → far blue).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgefuse.errors import InputError
from edgefuse.geometry import CameraModel, Transform
from edgefuse.types import PointCloud


@dataclass(frozen=True)
class CheckResult:
    """``points_in_image``; ``edge_alignment`` in [0, 1]; ``edge_points`` (LiDAR depth-edge points used);
    ``mean_edge_distance_px``; ``uv`` (K, 2) and ``depth`` (K,) of the points in the image."""

    points_in_image: int
    edge_alignment: float
    edge_points: int
    mean_edge_distance_px: float
    uv: np.ndarray
    depth: np.ndarray

    def to_dict(self) -> dict:
        return {
            "points_in_image": self.points_in_image,
            "edge_alignment": round(self.edge_alignment, 4),
            "edge_points": self.edge_points,
            "mean_edge_distance_px": round(self.mean_edge_distance_px, 3),
        }


def project_cloud(
    xyz_lidar: np.ndarray, cam: CameraModel, T_cam_lidar: Transform
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) pixels and (K,) depths of the points with positive depth that land inside the image."""
    pc = T_cam_lidar.apply(np.asarray(xyz_lidar, np.float64))
    uv, z = cam.project(pc)
    ok = (z > 0) & cam.in_image(uv)
    return uv[ok], z[ok]


def check_frame(
    image: np.ndarray,
    xyz_lidar: np.ndarray,
    cam: CameraModel,
    T_cam_lidar: Transform,
    jump_m: float = 0.5,
    sigma_px: float = 2.0,
) -> CheckResult:
    """Score one image (H, W, 3 RGB uint8) + cloud (N, 3, LiDAR frame) pair (see the module doc)."""
    h, w = image.shape[:2]
    if (w, h) != (cam.width, cam.height):
        raise InputError(f"image size {w}x{h} differs from the calibration's {cam.width}x{cam.height}")
    uv, z = project_cloud(xyz_lidar, cam, T_cam_lidar)
    px = np.floor(uv).astype(int)
    # sparse depth image (nearest point per pixel), and its local min / max over 5 × 5 px
    far = np.float32(1e6)
    depth = np.full((h, w), far, np.float32)
    np.minimum.at(depth, (px[:, 1], px[:, 0]), z.astype(np.float32))
    kernel = np.ones((5, 5), np.uint8)
    near_min = cv2.erode(depth, kernel)
    has = depth < far
    masked = np.where(has, depth, np.float32(0))
    near_max = cv2.dilate(masked, kernel)
    zi = depth[px[:, 1], px[:, 0]]
    is_edge = (
        (np.abs(zi - z) < 1e-3)
        & (near_max[px[:, 1], px[:, 0]] - z > jump_m)
        & (near_min[px[:, 1], px[:, 0]] >= z - 1e-3)
    )
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 40, 120)
    dist = cv2.distanceTransform((edges == 0).astype(np.uint8), cv2.DIST_L2, 5)
    # an image without edges (blank, overexposed) has no distance: count it as the image diagonal away
    d = np.minimum(dist[px[is_edge, 1], px[is_edge, 0]], np.float32(np.hypot(w, h)))
    score = float(np.mean(np.exp(-(d**2) / (2 * sigma_px**2)))) if len(d) else 0.0
    return CheckResult(int(len(z)), score, int(len(d)), float(np.mean(d)) if len(d) else float("nan"), uv, z)


def overlay_png(image: np.ndarray, result: CheckResult, path: str | os.PathLike, title: str = "") -> None:
    """The image with the projected points coloured by depth (near red → far blue), written as PNG."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if len(result.depth):
        d = np.clip(np.log(result.depth / 1.0) / np.log(80.0), 0, 1)
        colours = cv2.applyColorMap(
            (255 * (1 - d)).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_JET
        ).reshape(-1, 3)
        for (u, v), c in zip(result.uv.astype(int), colours, strict=True):
            cv2.circle(bgr, (int(u), int(v)), 1, tuple(int(x) for x in c), -1)
    text = f"{title} points {result.points_in_image}, edge alignment {result.edge_alignment:.3f}".strip()
    cv2.putText(bgr, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    cv2.imwrite(str(path), bgr)


def read_cloud(uri: str) -> PointCloud:
    """One point-cloud file: ``pcd://FILE``, ``kitti://FILE.bin``, ``ply://FILE`` or a plain path with one of
    those extensions."""
    from edgefuse.adapters.files.source import decode_file

    scheme, sep, rest = uri.partition("://")
    if not sep:
        rest = uri
        scheme = {".pcd": "pcd", ".bin": "kitti", ".ply": "ply"}.get(Path(uri).suffix.lower(), "")
        if not scheme:
            raise InputError(
                f"--cloud {uri!r}: expected a .pcd, .bin (KITTI) or .ply file, or pcd:// kitti:// ply://"
            )
    if scheme not in ("pcd", "kitti", "ply"):
        raise InputError(f"--cloud {uri!r}: expected a pcd://, kitti:// or ply:// file")
    if not Path(rest).is_file():
        raise InputError(f"--cloud {uri!r}: file not found")
    cloud, _dropped = decode_file(scheme, Path(rest))
    if not isinstance(cloud, PointCloud):
        raise InputError(f"--cloud {uri!r}: expected a point cloud")
    return cloud


def check_log(
    log: str,
    calib,
    out_dir: str | os.PathLike,
    cameras: list[str] | None = None,
    lidar: str | None = None,
    every: int = 5,
    worst: int = 3,
    max_dt_ns: int = 30_000_000,
    compensate: bool = True,
) -> dict:
    """Check every camera of ``calib`` (or ``cameras``) against ``lidar`` (default: the first LiDAR in the
    log with extrinsics) on every ``every``-th sweep; write the ``worst`` frames per camera as overlays in
    ``out_dir``. Returns per camera: frames, mean/min edge alignment, mean points in image, worst files.

    While the vehicle moves, a sweep and a camera frame see the scene from different places: with
    ``compensate`` and odometry in the log, each sweep is de-skewed (its per-point times) and moved to the
    camera frame's capture time through the ego trajectory (:func:`edgefuse.motion.deskewed_xyz`), so the
    worst frames show calibration error, not motion; without odometry the check says it is not
    motion-compensated (``motion_compensated``: false)."""
    from edgefuse.calib.common import image_rgb, sensor_messages
    from edgefuse.logs import LogReader
    from edgefuse.motion import EgoTrajectory, deskewed_xyz
    from edgefuse.types import POINT_TIME_FIELD

    reader = LogReader(log)
    topics = reader.topics().values()
    lidars = [t.sensor_id for t in topics if t.payload == "PointCloud" and t.sensor_id in calib.extrinsics]
    lidar = lidar or (lidars[0] if lidars else None)
    if lidar is None:
        raise InputError(f"{log}: no LiDAR with extrinsics in the calibration")
    cams = cameras or [c for c in calib.cameras if any(t.sensor_id == c for t in topics)]
    if not cams:
        raise InputError(f"{log}: none of the calibration's cameras {sorted(calib.cameras)} is in the log")
    ego, odom = None, None
    odoms = sorted(
        {t.sensor_id for t in topics if t.payload == "Odometry"},
        key=lambda sid: (sid not in calib.extrinsics, "truth" in sid, sid),
    )  # the rig's own first
    for sid in odoms if compensate else []:
        msgs = [m for m in sensor_messages(log, sid) if m.payload.frame != "enu"]  # not a GNSS fix
        if msgs:
            ego, odom = EgoTrajectory.from_odometry(msgs), sid
            break
    sweeps = {m.stamp_ns: m.payload for k, m in enumerate(sensor_messages(log, lidar)) if k % every == 0}
    st = np.array(sorted(sweeps), np.int64)
    T_base_lidar = calib.T_base(lidar)
    out = {}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for cid in cams:
        cam = calib.camera(cid)
        T = calib.T_base(cid).inverse() @ T_base_lidar
        scored = []
        all_scores, all_points = [], []
        for m in sensor_messages(log, cid):
            if not len(st):
                break
            i = int(np.argmin(np.abs(st - m.stamp_ns)))
            if abs(int(st[i]) - m.stamp_ns) > max_dt_ns:
                continue
            cloud = sweeps[int(st[i])]
            if ego is not None and cloud.has(POINT_TIME_FIELD):  # the sweep as seen at the frame's time
                xyz = deskewed_xyz(cloud, int(st[i]), T_base_lidar, ego, reference_ns=m.stamp_ns)
            else:
                xyz = cloud.xyz
            img = image_rgb(m, f"{log}: {cid} stamp {m.stamp_ns}")
            r = check_frame(img, xyz.astype(np.float64), cam, T)
            all_scores.append(r.edge_alignment)
            all_points.append(r.points_in_image)
            scored.append((r.edge_alignment, m.stamp_ns, r, img))
            scored.sort(key=lambda x: x[0])
            del scored[worst:]  # keep only the worst frames in memory
        files = []
        for _score, stamp, r, img in scored[:worst]:
            p = Path(out_dir) / f"{cid}_{stamp}.png"
            overlay_png(img, r, p, f"{cid} @ {stamp}")
            files.append(str(p))
        out[cid] = {
            "lidar": lidar,
            "frames": len(all_scores),
            "mean_edge_alignment": round(float(np.mean(all_scores)), 4) if all_scores else None,
            "mean_points_in_image": round(float(np.mean(all_points)), 1) if all_points else None,
            "worst": files,
            "worst_edge_alignment": [round(s[0], 4) for s in scored[:worst]],
            "motion_compensated": ego is not None,
            "odometry": odom,
        }
    return out
