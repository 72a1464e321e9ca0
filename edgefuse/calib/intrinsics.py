"""Camera intrinsics from board views: pinhole (k1 k2 p1 p2 k3), rational (OpenCV's rational model,
k1 k2 p1 p2 k3 k4 k5 k6) and fisheye (equidistant k1..k4).

Core (pure): :func:`detect_views` finds the board in images, :func:`calibrate_intrinsics` fits the camera
with OpenCV (``cv2.calibrateCamera``, with ``CALIB_RATIONAL_MODEL`` for rational / ``cv2.fisheye.calibrate``),
computes per-view RMS reprojection
errors, rejects bad views (RMS over ``max(reject_factor × median, reject_floor_px)``) and refits, and checks
the view set for the classic failure modes (no board found, too few views, all boards parallel, images of
different sizes) with messages that say what to capture next.

Reports: :func:`coverage_png` (where corners fell in the image), :func:`error_plot_png` (per-view RMS),
:func:`camera_info_yaml` (ROS camera_info).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
import yaml

from edgefuse.calib.boards import BoardSpec, Corners, detect_corners
from edgefuse.calib.common import CalibrationError, Gate
from edgefuse.geometry import CAMERA_MODELS, DISTORTION_SIZES, CameraModel, rotvec_to_matrix
from edgefuse.rig import camera_to_ros

#: fewest views a fit accepts (each view gives 8 constraints for 6 pose unknowns; 5 views are a minimum
#: for a stable focal length, principal point and distortion).
MIN_VIEWS = 5
#: all board normals within this angle (deg) of their mean: the focal length is not observable.
MIN_TILT_SPREAD_DEG = 8.0


@dataclass(frozen=True)
class View:
    """The board corners found in one image: ``name`` (file name or ``log@stamp``), ``corners``."""

    name: str
    corners: Corners


@dataclass
class IntrinsicsResult:
    """A fitted camera. ``rms``: overall RMS reprojection error (px) over the used views;
    ``per_view_rms``: name → RMS px of every view that took part in the first fit; ``used`` and
    ``rejected`` (name → reason) views; ``poses``: name → (rvec (3,), tvec (3,)) board→camera of the
    used views; ``tilt_spread_deg``: largest angle of a board normal from the mean normal; ``std``: 1-σ of
    fx fy cx cy (px) and k1 k2 p1 p2 k3 (rational: … k4 k5 k6) from OpenCV's ``calibrateCameraExtended``
    (None for fisheye, whose OpenCV fit gives none)."""

    camera: CameraModel
    rms: float
    per_view_rms: dict[str, float]
    used: list[str]
    rejected: dict[str, str]
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    tilt_spread_deg: float = 0.0
    std: dict[str, float] | None = None  # 1-σ per parameter (px; OpenCV's estimate); None: fisheye

    def to_dict(self) -> dict:
        return {
            "model": self.camera.model,
            "image_size": [self.camera.width, self.camera.height],
            "rms": round(self.rms, 4),
            "camera_matrix": np.round(self.camera.K, 4).tolist(),
            "distortion": np.round(self.camera.distortion, 6).tolist(),
            "views_used": len(self.used),
            "views_rejected": dict(self.rejected),
            "per_view_rms": {k: round(v, 4) for k, v in self.per_view_rms.items()},
            "tilt_spread_deg": round(self.tilt_spread_deg, 2),
            "std": None if self.std is None else {k: round(v, 6) for k, v in self.std.items()},
        }


#: Quality gates of an intrinsic calibration (:func:`intrinsics_gates`). The simulator's 20-view session:
#: RMS < 0.3 px, corners in 83 % of the 8 × 6 coverage grid's cells (its first 12 views: 58 %, refused). A
#: third of the image without corners leaves the distortion there unconstrained; a principal point 10 % of
#: the image off centre is a lens mount no camera has (a fit trading it against distortion); |k| > 5 (a
#: fisheye fit with k4 = −298) is a polynomial fitted to noise. A rational fit's numerator and denominator
#: may both carry large coefficients that cancel (a depth camera's factory calibration has |k| ≈ 280): its
#: gate is instead that the lens maps the rays out to the image corner monotonically (slope ≥ 0.05; a fit
#: with a pole inside the image folds it over, :func:`radial_slope_to_corner`).
STD_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")
MAX_RMS_PX = 0.5
MIN_COVERAGE = 0.67  # a third of the image without corners fails
MAX_CENTRE_OFFSET = 0.10
MAX_ABS_DISTORTION = 5.0
MIN_RADIAL_SLOPE = 0.05


def radial_slope_to_corner(cam: CameraModel) -> float:
    """The smallest slope d r_d / d r of the lens's distortion (normalized coordinates, ideal radius r →
    distorted radius r_d) along the ray to the image corner farthest from the principal point, for r from 0
    to that corner's radius through K: the rays an undistorted image with the camera's K shows (the
    preprocessing remap). Negative: the lens model folds the image over (a pole of a rational fit)."""
    w, h = cam.width - 1, cam.height - 1
    corners = np.array([[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]])
    d = (corners - cam.K[:2, 2]) @ np.linalg.inv(cam.K[:2, :2]).T
    far = d[np.argmax(np.linalg.norm(d, axis=1))]
    r = np.linspace(0.0, float(np.linalg.norm(far)), 4001)
    u = far / r[-1]
    rd = cam.distort_normalized(r[:, None] * u) @ u
    return float(np.min(np.diff(rd) / np.diff(r)))


def intrinsics_gates(r: IntrinsicsResult, coverage: float) -> list[Gate]:
    """The quality gates of one result; ``coverage``: the share of the 8 × 6 grid's cells with a corner."""
    cam = r.camera
    off = np.abs(cam.K[:2, 2] - [cam.width / 2, cam.height / 2]) / [cam.width, cam.height]
    return [
        Gate("rms", r.rms, MAX_RMS_PX, False, " px", "blurred or mis-detected views: check the error plot"),
        Gate("coverage", coverage, MIN_COVERAGE, True, "",
             "corners missing from parts of the image (see the coverage PNG): hold the board there too"),
        Gate("principal point offset", float(off.max()), MAX_CENTRE_OFFSET, False, "",
             "the principal point is far from the image centre: more views near the edges and tilted"),
    ] + [
        Gate("distortion slope to the image corner", radial_slope_to_corner(cam), MIN_RADIAL_SLOPE, True, "",
             "the rational fit folds the image over: more views, covering the corners")
        if cam.model == "rational" else
        Gate("largest distortion coefficient", float(np.max(np.abs(cam.distortion), initial=0.0)),
             MAX_ABS_DISTORTION, False, "", "the distortion fit diverged: more views, covering the corners"),
    ]  # fmt: skip


# ---------------------------------------------------------------- detection


def detect_views(
    images: Iterable[tuple[str, np.ndarray]],
    board: BoardSpec,
    image_size: tuple[int, int] | None = None,
    progress: bool = True,
    total: int | None = None,
    min_shift_px: float = 0.0,
) -> tuple[list[View], list[str], tuple[int, int]]:
    """Find ``board`` in each ``(name, image)`` (RGB or gray uint8). Returns (views, names without a
    board, (width, height)). Every image must have the size of the first (or ``image_size``): an image of
    another size is a :class:`CalibrationError` naming it. ``min_shift_px`` > 0 skips a view whose corners
    moved less than that (mean px) from the previous kept view (a board held still in a video)."""
    from tqdm import tqdm

    views: list[View] = []
    missing: list[str] = []
    size = image_size
    for name, img in tqdm(
        images, total=total, desc="detecting corners", unit="img", disable=not progress, leave=False
    ):
        h, w = img.shape[:2]
        if size is None:
            size = (w, h)
        elif (w, h) != tuple(size):
            raise CalibrationError(
                f"{name}: image size {w}x{h} differs from the set's {size[0]}x{size[1]}; "
                "calibrate each camera/resolution separately (remove this image or capture the set again)"
            )
        c = detect_corners(img, board)
        if c is None:
            missing.append(name)
            continue
        if min_shift_px > 0 and views:
            prev = views[-1].corners
            if len(prev.ids) == len(c.ids) and np.array_equal(prev.ids, c.ids):
                if float(np.mean(np.linalg.norm(prev.uv - c.uv, axis=1))) < min_shift_px:
                    continue
        views.append(View(name, c))
    if size is None:
        raise CalibrationError("no images given: pass --images GLOB or --log LOG --camera ID")
    return views, missing, (int(size[0]), int(size[1]))


# ---------------------------------------------------------------- fit


def _fisheye_flag(name: str) -> int:
    """OpenCV 4 keeps the fisheye flags in ``cv2.fisheye``, OpenCV 5 in ``cv2``."""
    return int(getattr(cv2.fisheye, name, None) or getattr(cv2, name))


def _fit(views: list[View], board: BoardSpec, size: tuple[int, int], model: str):
    obj_all = board.object_points()
    obj = [obj_all[v.corners.ids].astype(np.float32) for v in views]
    img = [v.corners.uv.astype(np.float32) for v in views]
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-9)
    std = None
    if model != "fisheye":
        n = DISTORTION_SIZES[model]
        flags = cv2.CALIB_RATIONAL_MODEL if model == "rational" else 0
        _rms, K, dist, rvecs, tvecs, sd, _sde, _pve = cv2.calibrateCameraExtended(
            obj, img, size, None, None, flags=flags, criteria=crit
        )
        dist = dist.reshape(-1)[:n]
        std = np.asarray(sd, np.float64).reshape(-1)[: 4 + n]  # fx fy cx cy k1 k2 p1 p2 k3 [k4 k5 k6]
        errs = []
        for o, i, r, t in zip(obj, img, rvecs, tvecs, strict=True):
            p, _ = cv2.projectPoints(o, r, t, K, dist)
            errs.append(float(np.sqrt(np.mean(np.sum((p.reshape(-1, 2) - i) ** 2, axis=1)))))
    else:
        flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
        obj_f = [o.reshape(1, -1, 3).astype(np.float64) for o in obj]  # (1, N, 3): OpenCV 5 needs this shape
        img_f = [i.reshape(1, -1, 2).astype(np.float64) for i in img]
        # start from an equidistant lens whose 180° spans the image width (OpenCV's own start diverges on
        # some wide-angle view sets)
        f0 = size[0] / np.pi
        K0 = np.array([[f0, 0.0, (size[0] - 1) / 2.0], [0.0, f0, (size[1] - 1) / 2.0], [0.0, 0.0, 1.0]])
        try:
            _rms, K, dist, rvecs, tvecs = cv2.fisheye.calibrate(
                obj_f,
                img_f,
                size,
                K0,
                np.zeros(4),
                flags=flags | _fisheye_flag("CALIB_USE_INTRINSIC_GUESS"),
                criteria=crit,
            )
        except cv2.error as e:
            raise CalibrationError(
                f"fisheye fit failed ({str(e).strip().splitlines()[-1]}); capture more views with the board "
                "filling different parts of the image, at several distances and tilts"
            ) from None
        dist = dist.reshape(-1)
        errs = []
        for o, i, r, t in zip(obj_f, img_f, rvecs, tvecs, strict=True):
            p, _ = cv2.fisheye.projectPoints(o, r, t, K, dist)
            errs.append(float(np.sqrt(np.mean(np.sum((p.reshape(-1, 2) - i.reshape(-1, 2)) ** 2, axis=1)))))
    n = np.array([len(i) for i in img])
    e = np.array(errs)
    rms = float(np.sqrt(np.sum(n * e**2) / np.sum(n)))
    return (
        K,
        dist,
        [np.asarray(r).reshape(3) for r in rvecs],
        [np.asarray(t).reshape(3) for t in tvecs],
        e,
        rms,
        std,
    )


def _fits(views: list[View], board: BoardSpec, size: tuple[int, int], model: str) -> bool:
    try:
        _fit(views, board, size, model)
        return True
    except CalibrationError:
        return False


def tilt_spread_deg(rvecs: list[np.ndarray]) -> float:
    """Largest angle (deg) between a board normal (camera frame) and the mean normal."""
    normals = np.array([rotvec_to_matrix(r)[:, 2] for r in rvecs])
    normals *= np.sign(normals[:, 2:3] + 1e-12)  # same side
    mean = normals.mean(axis=0)
    mean /= np.linalg.norm(mean)
    return float(np.degrees(np.max(np.arccos(np.clip(normals @ mean, -1.0, 1.0)))))


def calibrate_intrinsics(
    views: list[View],
    board: BoardSpec,
    image_size: tuple[int, int],
    model: str = "pinhole",
    reject_factor: float = 3.0,
    reject_floor_px: float = 0.5,
    missing: list[str] | None = None,
) -> IntrinsicsResult:
    """Fit ``model`` ("pinhole", "rational" or "fisheye") to the board ``views`` of images of ``image_size``
    (width, height). Views whose RMS error exceeds ``max(reject_factor × median, reject_floor_px)`` are
    rejected and the camera refit (repeated until none is rejected). ``missing``: names of images without a
    board (for the messages). Raises :class:`CalibrationError` saying what to capture next."""
    if model not in CAMERA_MODELS:
        raise CalibrationError(f"--model: expected one of {list(CAMERA_MODELS)}, got {model!r}")
    missing = missing or []
    if not views:
        raise CalibrationError(
            f"no {board.describe()} board found in any of the {len(missing)} images: check that --board "
            f"{board.size_rule()} and capture images with the whole board in view, well lit and sharp"
        )
    min_corners = 8 if board.kind == "charuco" else board.n_corners
    views = [v for v in views if len(v.corners.ids) >= min_corners]
    if len(views) < MIN_VIEWS:
        raise CalibrationError(
            f"only {len(views)} view(s) with the board ({len(missing)} image(s) without it); need at least "
            f"{MIN_VIEWS}: capture {MIN_VIEWS - len(views)} or more views with the board at different "
            "distances, "
            "tilts and image positions (corners and edges of the image too)"
        )
    active = list(views)
    rejected: dict[str, str] = {}
    first_errs: dict[str, float] = {}
    while True:
        try:
            K, dist, rvecs, tvecs, errs, rms, std = _fit(active, board, image_size, model)
        except CalibrationError:
            # cv::fisheye's initialisation can fail on one view: find it by leaving views out one at a time
            culprit = next(
                (
                    i
                    for i in range(len(active))
                    if len(active) > MIN_VIEWS
                    and _fits(active[:i] + active[i + 1 :], board, image_size, model)
                ),
                None,
            )
            if culprit is None:
                raise
            rejected[active[culprit].name] = "the fisheye fit's initialisation fails with this view"
            active = active[:culprit] + active[culprit + 1 :]
            continue
        if not first_errs:
            first_errs = {v.name: float(e) for v, e in zip(active, errs, strict=True)}
            spread = tilt_spread_deg(rvecs)
            if spread < MIN_TILT_SPREAD_DEG:
                raise CalibrationError(
                    f"degenerate views: all {len(active)} boards are nearly parallel (normals within "
                    f"{spread:.1f}° of "
                    f"each other; need ≥ {MIN_TILT_SPREAD_DEG:g}°), so the focal length is not observable: "
                    "capture "
                    "views with the board tilted 20–45° left, right, up and down"
                )
        limit = max(reject_factor * float(np.median(errs)), reject_floor_px)
        bad = [i for i, e in enumerate(errs) if e > limit]
        if not bad or len(active) - len(bad) < MIN_VIEWS:
            break
        for i in bad:
            rejected[active[i].name] = f"rms {errs[i]:.3f} px > limit {limit:.3f} px"
        active = [v for i, v in enumerate(active) if i not in set(bad)]
    cam = CameraModel(image_size[0], image_size[1], K, dist, model)
    return IntrinsicsResult(
        camera=cam,
        rms=rms,
        per_view_rms=first_errs,
        used=[v.name for v in active],
        rejected=rejected,
        poses={v.name: (r, t) for v, r, t in zip(active, rvecs, tvecs, strict=True)},
        tilt_spread_deg=tilt_spread_deg(rvecs),
        std=None if std is None else dict(zip(STD_NAMES, (float(x) for x in std), strict=False)),
    )


# ---------------------------------------------------------------- reports


def coverage_png(
    views: list[View], image_size: tuple[int, int], path: str | os.PathLike, rejected=()
) -> float:
    """Draw every view's corners (used: green, rejected: red) and a 8×6 cell grid shaded by how many corners
    fell in each cell; returns the fraction of cells with at least one corner."""
    w, h = image_size
    canvas = np.full((h, w, 3), 255, np.uint8)
    gx, gy = 8, 6
    counts = np.zeros((gy, gx), int)
    for v in views:
        uv = v.corners.uv
        cx = np.clip((uv[:, 0] / w * gx).astype(int), 0, gx - 1)
        cy = np.clip((uv[:, 1] / h * gy).astype(int), 0, gy - 1)
        np.add.at(counts, (cy, cx), 1)
    peak = max(1, counts.max())
    for j in range(gy):
        for i in range(gx):
            shade = int(255 - 120 * counts[j, i] / peak)
            p0 = (int(i * w / gx), int(j * h / gy))
            p1 = (int((i + 1) * w / gx) - 1, int((j + 1) * h / gy) - 1)
            cv2.rectangle(
                canvas, p0, p1, (shade, shade, 255) if counts[j, i] == 0 else (shade, 255, shade), -1
            )
            cv2.rectangle(canvas, p0, p1, (180, 180, 180), 1)
    for v in views:
        colour = (0, 0, 220) if v.name in rejected else (0, 140, 0)
        for u, vv in v.corners.uv:
            cv2.circle(canvas, (int(round(u)), int(round(vv))), 2, colour, -1)
    covered = float(np.mean(counts > 0))
    cv2.putText(
        canvas,
        f"{len(views)} views, {covered:.0%} of cells covered",
        (10, 30),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.8,
        (0, 0, 0),
        2,
    )
    cv2.imwrite(str(path), canvas)
    return covered


def view_labels(names: list[str]) -> list[str]:
    """Axis labels of views or poses: the file name, or — for names a log gives (``sensor@stamp_ns…``) —
    the time since the first one (``t+12.34 s``)."""
    import re

    stamps = [re.match(r"^[^@]+@(\d+)", n) for n in names]
    if names and all(stamps):
        t0 = min(int(m.group(1)) for m in stamps)
        return [f"t+{(int(m.group(1)) - t0) / 1e9:.2f} s" for m in stamps]
    return [os.path.basename(n) for n in names]


def error_plot_png(result: IntrinsicsResult, path: str | os.PathLike) -> None:
    """Bar chart of the per-view RMS reprojection errors (rejected views in red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.per_view_rms)
    vals = [result.per_view_rms[n] for n in names]
    colours = ["tab:red" if n in result.rejected else "tab:green" for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(names) + 2), 3.5))
    ax.bar(range(len(names)), vals, color=colours)
    ax.axhline(result.rms, color="k", lw=1, ls="--", label=f"overall rms {result.rms:.3f} px")
    ax.set_xticks(range(len(names)), view_labels(names), rotation=90, fontsize=7)
    ax.set_xlabel("view")
    ax.set_ylabel("rms reprojection error (px)")
    ax.set_title(f"{result.camera.model}: {len(result.used)} views used, {len(result.rejected)} rejected")
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=80)
    plt.close(fig)


def camera_info_yaml(cam: CameraModel, name: str = "camera") -> str:
    """ROS camera_info YAML text for ``cam``."""
    return yaml.safe_dump(camera_to_ros(cam, name), sort_keys=False)
