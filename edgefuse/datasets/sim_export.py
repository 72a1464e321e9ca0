"""``edgefuse sim export --format kitti``: a simulated drive written as a KITTI 3D object dataset.

One sample per LiDAR sweep: the sweep (stamped at its end, true time t), the simulator's ground truth at t,
and the camera frame whose true capture time is nearest t, if it is within half a camera period (1/60 s);
a sweep without one is left out (counted). Objects move between the two captures (≤ 1/60 s): the labels,
like KITTI's, are the boxes at the LiDAR stamp.

- ``image_2``: the sim camera's frame (rendered lossless), undistorted and rectified to an ideal pinhole
  with the same K (OpenCV ``initUndistortRectifyMap`` + bilinear remap). KITTI's images are rectified and
  every KITTI tool projects with P2 alone, so writing the distorted image with P2 = K would misplace
  every point near the edges; only the pinhole camera is exported (a fisheye has no useful pinhole image).
- Rectification ``R0_rect``: the rotation that levels the sim camera — rectified z = the optical axis
  projected on base_link's ground plane, y = base_link's −z (down) — because a KITTI box turns about the
  camera's y axis alone: with a pitched camera, upright boxes would not be representable exactly.
- calib: ``P0``–``P3`` = ``[K | 0]`` (all four are the one sim camera; there is no stereo pair),
  ``R0_rect`` (above), ``Tr_velo_to_cam`` = the sim's exact LiDAR → camera transform (unrectified optical
  frame), ``Tr_imu_to_velo`` = base_link → LiDAR: the exported "IMU" frame is the sim's base_link (not the
  sim's IMU mount), so a reader that takes base_link = IMU (KITTI's OXTS) gets the sim's base_link back.
- ``velodyne``: the sweep in the LiDAR frame, x y z reflectance float32, reflectance = intensity / 255
  (per-point time and ring are not in KITTI's format).
- ``label_2``: the truth objects whose box lies wholly in front of the camera and whose projected box
  overlaps the image (KITTI labels only objects in the image); truncation = the fraction of the projected
  box outside the image; occlusion from the truth's camera ``visibility`` (:func:`kitti_occlusion`);
  alpha = rotation_y − atan2(x, z).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgefuse.datasets.kitti import (
    KittiObject,
    box_corners_rect,
    box_to_kitti,
    calib_text,
    format_kitti_object,
    image_box,
)
from edgefuse.errors import InputError
from edgefuse.geometry import Transform

_NS = 1_000_000_000
#: edgefuse class → KITTI type
KITTI_TYPES = {"car": "Car", "pedestrian": "Pedestrian", "cyclist": "Cyclist"}
CAMERA, LIDAR = "cam_front", "lidar_top"


def level_rectification(T_base_cam: Transform) -> np.ndarray:
    """R (3 × 3, camera optical → rectified): the rectified frame has z along the optical axis projected on
    base_link's x-y plane and y = base_link's −z (module doc)."""
    axis = T_base_cam.rotation[:, 2]
    z = np.array([axis[0], axis[1], 0.0]) / math.hypot(axis[0], axis[1])
    y = np.array([0.0, 0.0, -1.0])
    R_base_rect = np.stack([np.cross(y, z), y, z], axis=1)
    return R_base_rect.T @ T_base_cam.rotation


def pair_captures(sim, duration_ns: int) -> tuple[list[tuple[int, int, int, int]], int]:
    """[(LiDAR time, LiDAR index, camera time, camera index)] by the module doc's rule, and the number of
    sweeps left without a camera frame."""
    cams = [(t, k) for t, sid, k in sim.schedule(duration_ns) if sid == CAMERA]
    lidars = [(t, k) for t, sid, k in sim.schedule(duration_ns) if sid == LIDAR]
    tol = _NS / (2 * 30.0)
    times = np.array([t for t, _ in cams], np.int64)
    pairs, unpaired = [], 0
    for t, k in lidars:
        j = int(np.argmin(np.abs(times - t))) if len(times) else -1
        if j < 0 or abs(int(times[j]) - t) > tol:
            unpaired += 1
            continue
        pairs.append((t, k, int(times[j]), cams[j][1]))
    return pairs, unpaired


def _labels(truth, T_rect_base: Transform, P: np.ndarray, size: tuple[int, int]) -> tuple[list[str], int]:
    lines, outside = [], 0
    for o in truth.objects:
        if o.label not in KITTI_TYPES:
            raise InputError(f"sim export: class {o.label!r}: expected one of {list(KITTI_TYPES)}")
        loc, dims, ry = box_to_kitti(o.box, T_rect_base)
        box = image_box(box_corners_rect(loc, dims, ry), P, size)
        if box is None:
            outside += 1
            continue
        bbox, truncated = box
        alpha = (ry - math.atan2(loc[0], loc[2]) + math.pi) % (2 * math.pi) - math.pi
        ko = KittiObject(KITTI_TYPES[o.label], round(truncated, 2), kitti_occlusion(o.visibility), alpha,
                         tuple(bbox), tuple(dims), tuple(loc), ry)  # fmt: skip
        lines.append(format_kitti_object(ko))
    return lines, outside


def kitti_occlusion(visibility: float | None) -> int:
    """KITTI's ``occluded`` level from the fraction of a box the camera sees: 0 fully visible (≥ 80 %),
    1 partly occluded (40–80 %), 2 largely occluded (< 40 %); 0 when unknown (KITTI's 3 = "unknown" would
    drop the object from every KITTI difficulty)."""
    if visibility is None or visibility >= 0.8:
        return 0
    return 1 if visibility >= 0.4 else 2


def export_simulator(
    fmt: str, scenario: str, seed: int, duration_s: float | None, sensors: tuple[str, ...], params: dict
):
    """(the lossless :class:`~edgefuse.sim.run.Simulator` of an export, its duration in s): the scenario's
    own duration unless given; a pinhole camera (the exports undistort to a pinhole; a fisheye has none)."""
    from edgefuse.sim.run import Simulator

    sim = Simulator(scenario, seed, sensors=sensors, lossless=True, **params)
    cam = sim.calibration.cameras[CAMERA]
    if cam.model != "pinhole":
        raise InputError(f"sim export --format {fmt}: camera model {cam.model!r}: expected pinhole")
    if duration_s is None:
        duration_s = sim.world.duration_hint_ns / _NS
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"sim export --duration: expected a positive number of seconds, got {duration_s!r}")
    return sim, duration_s


def export_kitti(
    out: str | Path, scenario: str = "default", seed: int = 0, duration_s: float | None = None,
    *, progress: bool = False, **params,
) -> dict:  # fmt: skip
    """Write a simulated drive as ``out/training/{image_2, velodyne, calib, label_2}`` (module doc);
    returns a summary (samples, sweeps without a camera frame, objects written / outside the image)."""
    import cv2
    from tqdm import tqdm

    sim, duration_s = export_simulator("kitti", scenario, seed, duration_s, (CAMERA, LIDAR), params)
    cal = sim.calibration
    cam = cal.cameras[CAMERA]
    T_base_cam, T_base_lidar = cal.extrinsics[CAMERA], cal.extrinsics[LIDAR]
    R_rect_cam = level_rectification(T_base_cam)
    T_rect_base = Transform(R_rect_cam, np.zeros(3)) @ T_base_cam.inverse()
    P = np.hstack([cam.K, np.zeros((3, 1))])
    size = (cam.width, cam.height)
    maps = cv2.initUndistortRectifyMap(cam.K, cam.distortion, R_rect_cam, cam.K, size, cv2.CV_32FC1)
    calib = calib_text(P, R_rect_cam, T_base_cam.inverse() @ T_base_lidar, T_base_lidar.inverse())
    root = Path(out) / "training"
    for folder in ("image_2", "velodyne", "calib", "label_2"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    pairs, unpaired = pair_captures(sim, int(round(duration_s * _NS)))
    written = outside = 0
    for i, (t, k, tc, kc) in enumerate(
        tqdm(pairs, desc="sim export kitti", disable=not progress, leave=False)
    ):
        name = f"{i:06d}"
        image = sim.capture(CAMERA, tc, kc)[0].message.payload.data
        rect = cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cv2.imwrite(str(root / "image_2" / f"{name}.png"), cv2.cvtColor(rect, cv2.COLOR_RGB2BGR))
        caps = {c.message.sensor_id: c.message.payload for c in sim.capture(LIDAR, t, k)}
        cloud = caps[LIDAR]
        xyzr = np.stack([cloud.column("x"), cloud.column("y"), cloud.column("z"),
                         cloud.column("intensity") / np.float32(255.0)], axis=1)  # fmt: skip
        xyzr.astype("<f4").tofile(root / "velodyne" / f"{name}.bin")
        (root / "calib" / f"{name}.txt").write_text(calib)
        lines, n_out = _labels(caps["ground_truth"], T_rect_base, P, size)
        (root / "label_2" / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
        written, outside = written + len(lines), outside + n_out
    return {
        "out": str(root), "format": "kitti", "scenario": scenario, "seed": int(seed),
        "duration_s": duration_s,
        "samples": len(pairs), "sweeps_without_camera": unpaired, "objects": written,
        "objects_outside_image": outside,
    }  # fmt: skip
