"""Import foreign calibrations into the project's calibration file.

- **KITTI object benchmark** ``calib/*.txt``: ``P0``–``P3`` (3 × 4 rectified projections), ``R0_rect``
  (3 × 3), ``Tr_velo_to_cam`` (3 × 4, Velodyne → unrectified camera 0), ``Tr_imu_to_velo`` (3 × 4).
  The camera is KITTI's rectified colour camera 2: ``P2 = K [I | t₂]``, so K = P2[:, :3] and its offset from
  rectified camera 0 is t₂ = K⁻¹ P2[:, 3]; a Velodyne point X maps to camera 2 as
  ``[I | t₂] · R0_rect · Tr_velo_to_cam · X``. Sensors: ``cam2`` (pinhole, no distortion: the images are
  rectified), ``velodyne``, and ``imu`` when ``Tr_imu_to_velo`` is given. base_link is the IMU frame (x
  forward, y left, z up, as KITTI's OXTS) when it is given, else the Velodyne frame. KITTI's calibration
  files carry no image size: ``width``/``height`` (default 1242 × 375, the most common; sequences vary
  between 1224–1242 × 370–376).
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


def kitti_to_calibration(
    text: str, name: str = "<kitti calib>", width: int = 1242, height: int = 375
) -> Calibration:
    """A KITTI object-benchmark calibration (see the module doc) as a :class:`Calibration`."""
    d = parse_kitti_calib(text, name)
    P2 = _need(d, "P2", 12, name).reshape(3, 4)
    R0 = _need(d, "R0_rect", 9, name).reshape(3, 3)
    Tr = _rigid(_need(d, "Tr_velo_to_cam", 12, name), "Tr_velo_to_cam", name)
    K = P2[:, :3].copy()
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1) > 1e-9:
        raise CalibImportError(f"{name}: P2: expected K [I | t] with fx, fy > 0 and K[2][2] = 1")
    t2 = np.linalg.solve(K, P2[:, 3])
    U, _S, Vt = np.linalg.svd(R0)
    T_cam2_velo = Transform(np.eye(3), t2) @ Transform(U @ Vt, np.zeros(3)) @ Tr
    cam = CameraModel(width, height, K, np.zeros(5), "pinhole")
    calib = Calibration(cameras={"cam2": cam})
    if "Tr_imu_to_velo" in d:
        T_velo_imu = _rigid(_need(d, "Tr_imu_to_velo", 12, name), "Tr_imu_to_velo", name)
        T_base_velo = T_velo_imu.inverse()  # base_link = the IMU frame
        calib.extrinsics["imu"] = Transform.identity()
    else:
        T_base_velo = Transform.identity()
    calib.extrinsics["velodyne"] = T_base_velo
    calib.extrinsics["cam2"] = T_base_velo @ T_cam2_velo.inverse()
    calib.time_offsets_ns = {k: 0 for k in calib.extrinsics}
    calib.provenance = {
        "imported_from": f"KITTI object calibration {name}",
        "base_frame": "imu (KITTI OXTS)" if "Tr_imu_to_velo" in d else "velodyne",
        "image_size_assumed": [width, height],
    }
    return calib


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
