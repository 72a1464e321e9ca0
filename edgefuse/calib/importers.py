"""Import foreign calibrations into the project's calibration file.

- **KITTI object benchmark** ``calib/*.txt``: ``P0``–``P3`` (3 × 4 rectified projections), ``R0_rect``
  (3 × 3), ``Tr_velo_to_cam`` (3 × 4, Velodyne → unrectified camera 0), ``Tr_imu_to_velo`` (3 × 4).
  Every camera ``i`` present (``cam0``–``cam3``, rectified: ``Pi = Ki [I | ti]``, so Ki = Pi[:, :3] and its
  offset from rectified camera 0 is ti = Ki⁻¹ Pi[:, 3]; a Velodyne point X maps to camera i as
  ``[I | ti] · R0_rect · Tr_velo_to_cam · X``), pinhole without distortion (the images are rectified) with
  ``Pi`` kept as its camera_info projection matrix, ``velodyne``, and ``imu`` when ``Tr_imu_to_velo`` is
  given. The tracking benchmark's files name the same matrices ``R_rect``, ``Tr_velo_cam``,
  ``Tr_imu_velo`` (without the colon): read too. base_link is the IMU frame (x forward, y left, z up, as
  KITTI's OXTS) when it is given, else the Velodyne frame. KITTI's object files carry no image size, and it
  varies per drive (1224–1242 × 370–376): the size comes from one of the drive's images (``image``) or is
  given (``size``); nothing is assumed.
- **KITTI raw data** (the date folder's ``calib_cam_to_cam.txt``: ``calib_time``, ``corner_dist``, per
  camera ``S_0i K_0i D_0i R_0i T_0i`` (unrectified) and ``S_rect_0i R_rect_0i P_rect_0i``;
  ``calib_velo_to_cam.txt``: ``R``, ``T``, ``delta_f``, ``delta_c``; ``calib_imu_to_velo.txt``: ``R``,
  ``T``): the same rig as the object benchmark, read through the same code — ``P_rect_0i`` is ``Pi``,
  ``R_rect_00`` is ``R0_rect``, ``[R | T]`` of the two other files are ``Tr_velo_to_cam`` and
  ``Tr_imu_to_velo`` — so the devkit's ``P_rect_0i · R_rect_00 · [R|T]_velo_to_cam · X`` holds. The cameras
  are the rectified ones (the ``*_sync`` images are rectified), sized ``S_rect_0i``; where an image is given
  and its size differs, the image wins and the difference is reported. The unrectified calibration (``K_0i
  D_0i R_0i T_0i``, for the ``*_extract`` images) is not imported. ``calib_time`` is text (kept in the
  provenance).
- **OpenCalib** JSON (``<sensor>-intrinsic.json``: ``cam_K``, ``cam_dist`` k1 k2 p1 p2 [k3], declared
  ``img_dist_w/h``; ``<lidar>-to-<camera>-extrinsic.json``: ``sensor_calib``, the 4 × 4 transform of LiDAR
  points into the camera frame): the LiDAR is base_link, the camera hangs off it (``parent`` = the LiDAR).
  Where an image is given and its size differs from the declared one, the image wins and the difference
  is reported (OpenCalib's sample declares 1920 × 1080 for a 1920 × 1200 image).
- **ROS camera_info YAML** (``image_width``, ``camera_matrix``, ``distortion_model`` plumb_bob,
  rational_polynomial or equidistant, ``distortion_coefficients``, ``rectification_matrix``,
  ``projection_matrix``): one camera's intrinsics, R and P kept exactly as written (see
  :mod:`edgefuse.geometry` for what P means here: kept for round trips and rectified-image users, never
  used to project).
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


#: keys KITTI writes with a text value (the raw data's calibration date, ``calib_time: 09-Jan-2012 13:57:47``)
KITTI_TEXT_KEYS = ("calib_time",)
#: a raw drive's calibration files (in the date folder above its drives; the IMU's is optional) → the keys
#: read from each
KITTI_RAW_FILES = {
    "calib_cam_to_cam.txt": "S_rect_0i, R_rect_00, P_rect_0i",
    "calib_velo_to_cam.txt": "R, T (Velodyne → unrectified camera 0)",
    "calib_imu_to_velo.txt": "R, T (IMU → Velodyne)",
}
_CC, _VC, _IV = KITTI_RAW_FILES


def parse_kitti_calib(text: str, name: str = "<kitti calib>") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``KEY: v1 v2 …`` lines → (key → float64 array as written, key → text for :data:`KITTI_TEXT_KEYS`).
    The tracking benchmark writes some keys without the colon (``R_rect 9.999e-01 …``): read too."""
    out: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            key, _sp, rest = line.strip().partition(" ")
        key = key.strip()
        if not rest.strip():
            raise CalibImportError(f"{name}: line {i}: expected 'KEY: numbers', got {line[:40]!r}")
        if key in KITTI_TEXT_KEYS:
            texts[key] = rest.strip()
            continue
        try:
            out[key] = np.array([float(v) for v in rest.split()], np.float64)
        except ValueError:
            raise CalibImportError(f"{name}: line {i} ({key}): expected numbers") from None
    return out, texts


_OBJECT_KEYS = "a KITTI object calibration has P0–P3, R0_rect, Tr_velo_to_cam"


def _need(d: dict, key: str, n: int, name: str, has: str = _OBJECT_KEYS) -> np.ndarray:
    if key not in d:
        raise CalibImportError(f"{name}: {key}: missing ({has})")
    if d[key].size != n:
        raise CalibImportError(f"{name}: {key}: expected {n} numbers, got {d[key].size}")
    return d[key]


def _rotation(m9: np.ndarray, key: str, name: str) -> np.ndarray:
    """9 numbers (row-major) that must be a rotation → the nearest rotation matrix (KITTI prints its
    matrices with ~1e-6 precision)."""
    R = np.asarray(m9, np.float64).reshape(3, 3)
    U, _S, Vt = np.linalg.svd(R)
    R_ok = U @ Vt
    if np.abs(R_ok - R).max() > 1e-3 or np.linalg.det(R_ok) < 0:
        raise CalibImportError(f"{name}: {key}: expected a rotation matrix (row-major)")
    return R_ok


def _rigid(m12: np.ndarray, key: str, name: str) -> Transform:
    """A 3 × 4 ``[R | t]`` (12 numbers, row-major) → Transform."""
    M = m12.reshape(3, 4)
    return Transform(_rotation(M[:, :3], f"{key} (its first 3 × 3 columns)", name), M[:, 3])


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


def _size_note(where: str, declared: tuple[int, int], image, size: tuple[int, int], kept: str) -> str:
    """The report line for a declared image size an image overrides."""
    return (f"{where}: declares {declared[0]}×{declared[1]}, the image {image} is {size[0]}×{size[1]}: the "
            f"image's size is used ({kept} unchanged)")  # fmt: skip


def _kitti_rig(
    P: dict[int, tuple[np.ndarray, str]],
    R_rect0: np.ndarray,
    T_cam0_velo: Transform,
    T_velo_imu: Transform | None,
    sizes: dict[int, tuple[int, int]],
    name: str,
) -> Calibration:
    """KITTI's rectified cameras, Velodyne and IMU (see the module doc) as a :class:`Calibration`. ``P``:
    camera index → (its 3 × 4 rectified projection, where it was read: "file: key"); ``R_rect0``: the
    rectifying rotation of camera 0; ``T_cam0_velo``: Velodyne → unrectified camera 0; ``T_velo_imu``:
    IMU → Velodyne (base_link = the IMU when given); ``sizes``: camera index → (width, height) px."""
    T_rect0_velo = Transform(R_rect0, np.zeros(3)) @ T_cam0_velo
    calib = Calibration()
    if T_velo_imu is not None:
        T_base_velo = T_velo_imu.inverse()  # base_link = the IMU frame
        calib.extrinsics["imu"] = Transform.identity()
    else:
        T_base_velo = Transform.identity()
    calib.extrinsics["velodyne"] = T_base_velo
    for i, (Pi, where) in sorted(P.items()):
        K = Pi[:, :3].copy()
        if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1) > 1e-9:
            raise CalibImportError(f"{where}: expected K [I | t] with fx, fy > 0 and K[2][2] = 1")
        T_cam_velo = Transform(np.eye(3), np.linalg.solve(K, Pi[:, 3])) @ T_rect0_velo
        w, h = sizes[i]
        calib.cameras[f"cam{i}"] = CameraModel(w, h, K, np.zeros(5), "pinhole", projection=Pi)
        calib.extrinsics[f"cam{i}"] = T_base_velo @ T_cam_velo.inverse()
    calib.time_offsets_ns = {k: 0 for k in calib.extrinsics}
    calib.provenance = {
        "imported_from": name,
        "base_frame": "imu (KITTI OXTS)" if T_velo_imu is not None else "velodyne",
        "image_size": {f"cam{i}": list(sizes[i]) for i in sorted(P)},
    }
    return calib


def kitti_to_calibration(text: str, name: str, size: tuple[int, int]) -> Calibration:
    """A KITTI object or tracking calibration (see the module doc) as a :class:`Calibration`; ``size``:
    (width, height) of the drive's images."""
    d, _texts = parse_kitti_calib(text, name)
    for key, names in _KITTI_ALIASES.items():
        for alt in names:
            if alt in d and key not in d:
                d[key] = d[alt]
    R0 = _rotation(_need(d, "R0_rect", 9, name), "R0_rect", name)
    Tr = _rigid(_need(d, "Tr_velo_to_cam", 12, name), "Tr_velo_to_cam", name)
    Ti = None
    if "Tr_imu_to_velo" in d:
        Ti = _rigid(_need(d, "Tr_imu_to_velo", 12, name), "Tr_imu_to_velo", name)
    cams = [i for i in range(4) if f"P{i}" in d]
    if not cams:
        raise CalibImportError(f"{name}: P0–P3: missing (a KITTI calibration has the rectified projections)")
    P = {i: (_need(d, f"P{i}", 12, name).reshape(3, 4), f"{name}: P{i}") for i in cams}
    size = (int(size[0]), int(size[1]))
    return _kitti_rig(P, R0, Tr, Ti, dict.fromkeys(cams, size), f"KITTI calibration {name}")


def kitti_raw_files(paths: list[str | os.PathLike]) -> dict[str, Path]:
    """A raw drive's calibration files (:data:`KITTI_RAW_FILES`) from what was named: one folder (the date
    folder holding them, or a drive folder below it) or the files themselves, by KITTI's names."""
    ps = [Path(p) for p in paths]
    where = str(ps[0]) if len(ps) == 1 else "the files given"
    if len(ps) == 1 and ps[0].is_dir():
        folder = ps[0]
        if not (folder / _CC).is_file() and (folder.parent / _CC).is_file():
            folder = folder.parent  # a drive folder: KITTI keeps the calibration in the date folder above
        ps = [folder / f for f in KITTI_RAW_FILES if (folder / f).is_file()]
    found: dict[str, Path] = {}
    for p in ps:
        if p.name not in KITTI_RAW_FILES:
            raise CalibImportError(
                f"{p}: expected one of KITTI raw's calibration files {list(KITTI_RAW_FILES)} or their folder"
            )
        if not p.is_file():
            raise CalibImportError(f"{p}: file not found")
        found[p.name] = p
    for f in (_CC, _VC):
        if f not in found:
            raise CalibImportError(
                f"{where}: {f}: missing (a KITTI raw calibration has {_CC} and {_VC}; {_IV} with an IMU)"
            )
    return found


def kitti_raw_to_calibration(
    paths: list[str | os.PathLike], image: str | os.PathLike | None = None
) -> tuple[Calibration, list[str]]:
    """A KITTI raw drive's calibration (see the module doc; ``paths``: see :func:`kitti_raw_files`) → (a
    calibration of the rectified cameras, notes for the user). ``image``: one of the drive's images, whose
    size wins over the declared ``S_rect_0i`` where they differ (reported)."""
    files = kitti_raw_files(paths)
    parsed = {f: parse_kitti_calib(p.read_text(encoding="utf-8"), str(p)) for f, p in files.items()}

    def need(f: str, key: str, n: int) -> np.ndarray:
        return _need(parsed[f][0], key, n, str(files[f]), f"{f} has {KITTI_RAW_FILES[f]}")

    def rigid(f: str) -> Transform:
        return Transform(_rotation(need(f, "R", 9), "R", str(files[f])), need(f, "T", 3))

    cams = [i for i in range(4) if f"P_rect_0{i}" in parsed[_CC][0]]
    if not cams:
        raise CalibImportError(f"{files[_CC]}: P_rect_00–P_rect_03: missing ({KITTI_RAW_FILES[_CC]})")
    P = {i: (need(_CC, f"P_rect_0{i}", 12).reshape(3, 4), f"{files[_CC]}: P_rect_0{i}") for i in cams}
    declared = {}
    for i in cams:
        w, h = need(_CC, f"S_rect_0{i}", 2)
        if w <= 0 or h <= 0 or w != int(w) or h != int(h):
            raise CalibImportError(f"{files[_CC]}: S_rect_0{i}: expected a size in pixels, got {w} {h}")
        declared[i] = (int(w), int(h))
    sizes, notes = dict(declared), []
    if image is not None:
        size = image_size(image)
        sizes = dict.fromkeys(cams, size)
        for dsize in sorted({declared[i] for i in cams if declared[i] != size}):
            keys = ", ".join(f"S_rect_0{i}" for i in cams if declared[i] == dsize)
            notes.append(_size_note(f"{files[_CC]}: {keys}", dsize, image, size, "P"))
    R0 = _rotation(need(_CC, "R_rect_00", 9), "R_rect_00", str(files[_CC]))
    Ti = rigid(_IV) if _IV in files else None
    where = files[_CC].parent if all(p.parent == files[_CC].parent for p in files.values()) else files[_CC]
    calib = _kitti_rig(P, R0, rigid(_VC), Ti, sizes, f"KITTI raw calibration {where}")
    times = {f: texts["calib_time"] for f, (_d, texts) in parsed.items() if "calib_time" in texts}
    calib.provenance["calib_time"] = times
    return calib, notes


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
            notes.append(_size_note(str(ip), declared, image, size, "K"))
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
