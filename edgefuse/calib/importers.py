"""Import foreign calibrations into the project's calibration file.

- **KITTI object benchmark** ``calib/*.txt``: ``P0``–``P3`` (3 × 4 rectified projections), ``R0_rect``
  (3 × 3), ``Tr_velo_to_cam`` (3 × 4, Velodyne → unrectified camera 0), ``Tr_imu_to_velo`` (3 × 4).
  Every camera ``i`` present (``cam0``–``cam3``, rectified: ``Pi = Ki [I | ti]``, so Ki = Pi[:, :3] and its
  offset from rectified camera 0 is ti = Ki⁻¹ Pi[:, 3]; a Velodyne point X maps to camera i as
  ``[I | ti] · R0_rect · Tr_velo_to_cam · X``), pinhole without distortion (the images are rectified),
  ``velodyne``, and ``imu`` when ``Tr_imu_to_velo`` is given. The tracking benchmark's files name the same
  matrices ``R_rect``, ``Tr_velo_cam``, ``Tr_imu_velo`` (and may omit the colon): read too. base_link is the
  IMU frame (x forward, y left, z up, as KITTI's OXTS) when it is given, else the Velodyne frame. KITTI's
  files carry no image size, and it varies per drive (1224–1242 × 370–376): the size comes from one of the
  drive's images (``image``) or is given (``size``); nothing is assumed.
- **OpenCalib** JSON (``<sensor>-intrinsic.json``: ``cam_K``, ``cam_dist`` k1 k2 p1 p2 [k3], declared
  ``img_dist_w/h``; ``<lidar>-to-<camera>-extrinsic.json``: ``sensor_calib``, the 4 × 4 transform of LiDAR
  points into the camera frame): the LiDAR is base_link, the camera hangs off it (``parent`` = the LiDAR).
  Where an image is given and its size differs from the declared one, the image wins and the difference
  is reported (OpenCalib's sample declares 1920 × 1080 for a 1920 × 1200 image).
- **ROS camera_info YAML** (``image_width``, ``camera_matrix``, ``distortion_model`` plumb_bob or
  equidistant, …): one camera's intrinsics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.geometry import CameraModel, Transform
from edgefuse.rig import Calibration, RigFileError


class CalibImportError(InputError):
    """A foreign calibration file that does not parse: names the file, the key and what was expected."""


def parse_kitti_calib(text: str, name: str = "<kitti calib>") -> dict[str, np.ndarray]:
    """``KEY: v1 v2 …`` lines → key → float64 array (as written)."""
    out: dict[str, np.ndarray] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise CalibImportError(f"{name}: line {i}: expected 'KEY: numbers', got {line[:40]!r}")
        try:
            out[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
        except ValueError:
            raise CalibImportError(f"{name}: line {i} ({key.strip()}): expected numbers") from None
    return out


def _need(d: dict, key: str, n: int, name: str) -> np.ndarray:
    if key not in d:
        raise CalibImportError(
            f"{name}: {key}: missing (a KITTI object calibration has P0–P3, R0_rect, Tr_velo_to_cam)"
        )
    if d[key].size != n:
        raise CalibImportError(f"{name}: {key}: expected {n} numbers, got {d[key].size}")
    return d[key]


def _rigid(m12: np.ndarray, key: str, name: str) -> Transform:
    M = np.eye(4)
    M[:3, :] = m12.reshape(3, 4)
    R = M[:3, :3]
    # KITTI's matrices are printed with ~1e-6 precision: re-orthonormalize
    U, _S, Vt = np.linalg.svd(R)
    R_ok = U @ Vt
    if np.abs(R_ok - R).max() > 1e-3 or np.linalg.det(R_ok) < 0:
        raise CalibImportError(f"{name}: {key}: expected a rotation in the first 3 × 3 columns")
    return Transform(R_ok, M[:3, 3])


#: KITTI's names for the same matrices: object benchmark, tracking benchmark
_KITTI_ALIASES = {"R0_rect": ("R0_rect", "R_rect"), "Tr_velo_to_cam": ("Tr_velo_to_cam", "Tr_velo_cam"),
                  "Tr_imu_to_velo": ("Tr_imu_to_velo", "Tr_imu_velo")}  # fmt: skip


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, read from the file (OpenCV); an error names it."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CalibImportError(f"--image {path}: not an image OpenCV reads")
    return int(img.shape[1]), int(img.shape[0])


def kitti_to_calibration(text: str, name: str, size: tuple[int, int]) -> Calibration:
    """A KITTI object or tracking calibration (see the module doc) as a :class:`Calibration`; ``size``:
    (width, height) of the drive's images."""
    d = parse_kitti_calib(text, name)
    for key, names in _KITTI_ALIASES.items():
        for alt in names:
            if alt in d and key not in d:
                d[key] = d[alt]
    R0 = _need(d, "R0_rect", 9, name).reshape(3, 3)
    Tr = _rigid(_need(d, "Tr_velo_to_cam", 12, name), "Tr_velo_to_cam", name)
    U, _S, Vt = np.linalg.svd(R0)
    T_rect0_velo = Transform(U @ Vt, np.zeros(3)) @ Tr
    calib = Calibration()
    if "Tr_imu_to_velo" in d:
        T_velo_imu = _rigid(_need(d, "Tr_imu_to_velo", 12, name), "Tr_imu_to_velo", name)
        T_base_velo = T_velo_imu.inverse()  # base_link = the IMU frame
        calib.extrinsics["imu"] = Transform.identity()
    else:
        T_base_velo = Transform.identity()
    calib.extrinsics["velodyne"] = T_base_velo
    cams = [i for i in range(4) if f"P{i}" in d]
    if not cams:
        raise CalibImportError(f"{name}: P0–P3: missing (a KITTI calibration has the rectified projections)")
    for i in cams:
        P = _need(d, f"P{i}", 12, name).reshape(3, 4)
        K = P[:, :3].copy()
        if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1) > 1e-9:
            raise CalibImportError(f"{name}: P{i}: expected K [I | t] with fx, fy > 0 and K[2][2] = 1")
        T_cam_velo = Transform(np.eye(3), np.linalg.solve(K, P[:, 3])) @ T_rect0_velo
        calib.cameras[f"cam{i}"] = CameraModel(int(size[0]), int(size[1]), K, np.zeros(5), "pinhole")
        calib.extrinsics[f"cam{i}"] = T_base_velo @ T_cam_velo.inverse()
    calib.time_offsets_ns = {k: 0 for k in calib.extrinsics}
    calib.provenance = {
        "imported_from": f"KITTI calibration {name}",
        "base_frame": "imu (KITTI OXTS)" if "Tr_imu_to_velo" in d else "velodyne",
        "image_size": list(size),
    }
    return calib


def _json_matrix(node, key: str, name: str, shape: tuple[int, int]) -> np.ndarray:
    try:
        m = np.asarray(node["data"], np.float64).reshape(shape)
    except (KeyError, TypeError, ValueError):
        raise CalibImportError(f"{name}: {key}.data: expected {shape[0]} × {shape[1]} numbers") from None
    return m


def _opencalib_param(path: Path, kind: str) -> tuple[dict, dict]:
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CalibImportError(f"{path}: not an OpenCalib JSON file ({e})") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise CalibImportError(f"{path}: expected one top-level '<name>-{kind}' object")
    ((_key, body),) = doc.items()
    ok = isinstance(body, dict) and body.get("param_type") == kind and isinstance(body.get("param"), dict)
    if not ok:
        raise CalibImportError(f"{path}: param_type: expected {kind!r} with a 'param' object")
    return body, body["param"]


def opencalib_to_calibration(
    intrinsic: str | os.PathLike, extrinsic: str | os.PathLike, image: str | os.PathLike | None = None
) -> tuple[Calibration, list[str]]:
    """OpenCalib's camera intrinsic + LiDAR-to-camera extrinsic JSON files (see the module doc) → (a
    calibration with the LiDAR as base_link, notes for the user)."""
    ip, ep = Path(intrinsic), Path(extrinsic)
    ibody, iparam = _opencalib_param(ip, "intrinsic")
    ebody, eparam = _opencalib_param(ep, "extrinsic")
    cam_id = str(ibody.get("sensor_name") or ip.stem)
    lidar_id, target = str(ebody.get("sensor_name", "lidar")), str(ebody.get("target_sensor_name", ""))
    if target and target != cam_id:
        raise CalibImportError(
            f"{ep}: target_sensor_name {target!r}: expected the camera of {ip} ({cam_id!r})"
        )
    K = _json_matrix(iparam.get("cam_K", {}), "cam_K", str(ip), (3, 3))
    dist = np.asarray(iparam.get("cam_dist", {}).get("data", []), np.float64).ravel()
    if dist.size not in (4, 5):
        raise CalibImportError(
            f"{ip}: cam_dist.data: expected 4 or 5 numbers (k1 k2 p1 p2 [k3]), got {dist.size}"
        )
    dist = np.concatenate([dist, np.zeros(5 - dist.size)])
    declared = (int(iparam.get("img_dist_w", 0)), int(iparam.get("img_dist_h", 0)))
    notes = []
    size = declared
    if image is not None:
        size = image_size(image)
        if size != declared:
            notes.append(f"{ip}: declares {declared[0]}×{declared[1]}, the image {image} is "
                         f"{size[0]}×{size[1]}: the image's size is used (K unchanged)")  # fmt: skip
    if min(size) <= 0:
        raise CalibImportError(f"{ip}: img_dist_w/h: missing; pass --image with one of its images")
    M = _json_matrix(eparam.get("sensor_calib", {}), "sensor_calib", str(ep), (4, 4))
    T_cam_lidar = _rigid(M[:3].ravel(), "sensor_calib", str(ep))
    calib = Calibration(
        cameras={cam_id: CameraModel(size[0], size[1], K, dist, "pinhole")},
        extrinsics={lidar_id: Transform.identity(), cam_id: T_cam_lidar.inverse()},
        parents={cam_id: lidar_id},
        time_offsets_ns={cam_id: int(round(float(eparam.get("time_lag", 0) or 0) * 1e6)), lidar_id: 0},
        provenance={"imported_from": f"OpenCalib {ip.name} + {ep.name}", "base_frame": lidar_id},
    )
    return calib, notes


def camera_info_to_camera(path: str | os.PathLike) -> tuple[CameraModel, str]:
    """A ROS camera_info YAML → (CameraModel, camera_name or "")."""
    from edgefuse.rig import YamlChecker, camera_from_ros, read_yaml_mapping

    p = Path(path)
    try:
        # the calibration file's per-camera block *is* camera_info
        doc = read_yaml_mapping(p)
        name = str(doc.get("camera_name", "") or "")
        node = {k: v for k, v in doc.items() if k not in ("camera_name",)}
        cam = camera_from_ros(YamlChecker(p), node, "")
    except RigFileError as e:
        raise CalibImportError(str(e).replace(": .", ": ")) from None
    return cam, name
