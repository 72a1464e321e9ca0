"""Pictures to look at: a camera image with projected 3D boxes, and a bird's-eye view (BEV) of LiDAR,
radar and boxes. Both return RGB uint8; write PNGs with ``cv2.imwrite(path, cv2.cvtColor(img,
cv2.COLOR_RGB2BGR))``. Used by ``edgefuse sim preview`` and the demo.

Boxes are :class:`~edgefuse.types.Detection` in base_link (x forward, y left, z up).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefuse.geometry import CameraModel, Transform
from edgefuse.types import CLASSES, Detection

#: Box colour per class (RGB).
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "car": (255, 170, 0),
    "pedestrian": (0, 210, 255),
    "cyclist": (255, 60, 210),
}
assert set(CLASS_COLORS) == set(CLASSES)
#: Reference (ground-truth) boxes drawn under predictions (RGB).
TRUTH_COLOR: tuple[int, int, int] = (90, 255, 120)

# the 12 edges of Box3D.corners(): bottom ring, top ring, verticals
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
_EDGE_SAMPLES = 16  # points per edge, so lens distortion bends the drawn edges as it bends the image
_NEAR_M = 0.1


def _clip_segment(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of segment a→b (optical frame) with z ≥ _NEAR_M, or None."""
    if a[2] < _NEAR_M and b[2] < _NEAR_M:
        return None
    if a[2] < _NEAR_M:
        a = a + (b - a) * (_NEAR_M - a[2]) / (b[2] - a[2])
    elif b[2] < _NEAR_M:
        b = b + (a - b) * (_NEAR_M - b[2]) / (a[2] - b[2])
    return a, b


def camera_overlay(
    image: np.ndarray,
    boxes: list[Detection],
    cam: CameraModel,
    T_base_cam: Transform,
    thickness: int = 2,
    label_min_px: float = 25.0,
) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with every box drawn as its 12 edges in its class colour (through
    ``cam`` including its distortion; edges are clipped at the camera's near plane) and labelled with class
    and track id (boxes at least ``label_min_px`` tall in the image). Returns a new image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"camera_overlay: image expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if image.shape[:2] != (cam.height, cam.width):
        raise ValueError(
            f"camera_overlay: image is {image.shape[1]}x{image.shape[0]}, camera is {cam.width}x{cam.height}"
        )
    out = image.copy()
    T_cam_base = T_base_cam.inverse()
    s = np.linspace(0.0, 1.0, _EDGE_SAMPLES)[:, None]
    far_first = sorted(boxes, key=lambda d: -float(np.linalg.norm(d.box.center)))
    for det in far_first:
        colour = CLASS_COLORS.get(det.label, (255, 255, 255))
        corners = T_cam_base.apply(det.box.corners())
        lines = []
        for i, j in _EDGES:
            seg = _clip_segment(corners[i], corners[j])
            if seg is None:
                continue
            uv, _ = cam.project(seg[0] + (seg[1] - seg[0]) * s)
            if np.all(np.isfinite(uv)) and np.all(np.abs(uv) < 1e5):
                lines.append(np.round(uv * 16).astype(np.int32))
        if not lines:
            continue
        cv2.polylines(out, lines, False, colour, thickness, cv2.LINE_AA, 4)
        front = corners[corners[:, 2] > _NEAR_M]
        uv, _ = cam.project(front)
        ok = cam.in_image(uv)
        if ok.any() and np.ptp(uv[ok][:, 1]) >= label_min_px:  # label only boxes that are not tiny
            top = uv[ok][np.argmin(uv[ok][:, 1])]
            text = det.label if det.track_id < 0 else f"{det.label} {det.track_id}"
            org = (int(top[0]), max(12, int(top[1]) - 5))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


def _turbo(values01: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1] → (N, 3) uint8 RGB, OpenCV's TURBO colour map."""
    v = np.clip(np.rint(values01 * 255), 0, 255).astype(np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(v, cv2.COLORMAP_TURBO).reshape(-1, 3)[:, ::-1]


def bev_image(
    points_base: np.ndarray,
    radar_base: np.ndarray,
    boxes: list[Detection],
    extent_m: float = 60,
    px_per_m: float = 8,
    radar_doppler: np.ndarray | None = None,
    z_range_m: tuple[float, float] = (-0.5, 3.0),
    doppler_range_mps: float = 15.0,
    truth: list[Detection] = (),
) -> np.ndarray:
    """A top view in base_link: forward up, left to the left, the ego near the bottom centre.

    Covers x ∈ [-extent_m/3, extent_m] and y ∈ [-extent_m, extent_m] at ``px_per_m``. Range rings every
    10 m; LiDAR ``points_base`` (N, 3) m as 1-px dots coloured by height over ``z_range_m`` (TURBO);
    radar ``radar_base`` (M, 3) m as 3-px rings coloured by ``radar_doppler`` (M,) m/s (blue approaching,
    red receding, saturating at ``doppler_range_mps``; white without doppler); boxes as rotated rectangles
    in their class colour with a heading tick; ``truth`` (optional reference boxes, e.g. ground truth
    under predictions) as thin green outlines beneath them. Returns (H, W, 3) uint8 RGB."""
    pts = np.asarray(points_base, dtype=np.float64).reshape(-1, 3)
    rad = np.asarray(radar_base, dtype=np.float64).reshape(-1, 3)
    if radar_doppler is not None:
        radar_doppler = np.asarray(radar_doppler, dtype=np.float64).reshape(-1)
        if len(radar_doppler) != len(rad):
            raise ValueError(
                f"bev_image: radar_doppler has {len(radar_doppler)} values for {len(rad)} radar points"
            )
    x_max, x_min, y_max = float(extent_m), -float(extent_m) / 3.0, float(extent_m)
    W = int(round(2 * y_max * px_per_m))
    H = int(round((x_max - x_min) * px_per_m))
    img = np.full((H, W, 3), 18, dtype=np.uint8)

    def to_px(xy: np.ndarray) -> np.ndarray:
        """(N, 2) x y (m) → (N, 2) float pixel (col, row)."""
        return np.stack([(y_max - xy[:, 1]) * px_per_m, (x_max - xy[:, 0]) * px_per_m], axis=1)

    ego = to_px(np.zeros((1, 2)))[0]
    centre = (int(round(ego[0] * 16)), int(round(ego[1] * 16)))
    for r in range(10, int(np.hypot(max(x_max, -x_min), y_max)) + 10, 10):
        cv2.circle(img, centre, int(round(r * px_per_m * 16)), (60, 60, 60), 1, cv2.LINE_AA, 4)
        lbl = to_px(np.array([[r * np.cos(0.35), r * np.sin(0.35)]]))[0]
        if 0 <= lbl[0] < W and 10 <= lbl[1] < H:
            cv2.putText(
                img,
                f"{r} m",
                (int(lbl[0]), int(lbl[1])),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                (110, 110, 110),
                1,
                cv2.LINE_AA,
            )
    # LiDAR: low points first so that tall structures stay visible
    if len(pts):
        order = np.argsort(pts[:, 2], kind="stable")
        p = pts[order]
        px = np.floor(to_px(p[:, :2])).astype(np.int64)
        ok = (px[:, 0] >= 0) & (px[:, 0] < W - 1) & (px[:, 1] >= 0) & (px[:, 1] < H - 1)
        rgb = _turbo((p[ok, 2] - z_range_m[0]) / (z_range_m[1] - z_range_m[0]))
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):  # 2×2 px dots
            img[px[ok, 1] + dr, px[ok, 0] + dc] = rgb
    # boxes
    for det in truth:
        poly = np.round(to_px(det.box.corners()[:4, :2]) * 16).astype(np.int32)
        cv2.polylines(img, [poly], True, TRUTH_COLOR, 1, cv2.LINE_AA, 4)
    for det in boxes:
        colour = CLASS_COLORS.get(det.label, (255, 255, 255))
        c = det.box.corners()[:4, :2]
        poly = np.round(to_px(c) * 16).astype(np.int32)
        cv2.polylines(img, [poly], True, colour, 2, cv2.LINE_AA, 4)
        ctr = det.box.center[:2]
        head = ctr + 0.5 * det.box.size[0] * np.array([np.cos(det.box.yaw), np.sin(det.box.yaw)])
        a, b = np.round(to_px(np.array([ctr, head])) * 16).astype(np.int32)
        cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), colour, 2, cv2.LINE_AA, 4)
    # radar on top
    if len(rad):
        if radar_doppler is None:
            colours = np.full((len(rad), 3), 255, dtype=np.uint8)
        else:
            d = np.clip(radar_doppler / doppler_range_mps, -1.0, 1.0)
            red = np.array([255.0, 40.0, 40.0])
            blue = np.array([60.0, 120.0, 255.0])
            grey = np.array([230.0, 230.0, 230.0])
            w = np.abs(d)[:, None]
            colours = np.where(d[:, None] > 0, grey * (1 - w) + red * w, grey * (1 - w) + blue * w).astype(
                np.uint8
            )
        for (u, v), colour in zip(to_px(rad[:, :2]), colours, strict=True):
            if 0 <= u < W and 0 <= v < H:
                cv2.circle(
                    img,
                    (int(round(u * 16)), int(round(v * 16))),
                    3 * 16,
                    tuple(int(x) for x in colour),
                    1,
                    cv2.LINE_AA,
                    4,
                )
    # the ego: a 4.6 m × 1.9 m outline from the rear axle, heading up
    ego_box = np.array([[3.7, 0.95], [3.7, -0.95], [-0.9, -0.95], [-0.9, 0.95]])
    cv2.polylines(
        img, [np.round(to_px(ego_box) * 16).astype(np.int32)], True, (235, 235, 235), 2, cv2.LINE_AA, 4
    )
    return img
