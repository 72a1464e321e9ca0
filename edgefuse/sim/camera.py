"""The simulated camera: renders a :class:`~edgefuse.sim.scene.Scene` into an RGB image.

One frame, in this order (all OpenCV rasterization, numpy only for small per-polygon arrays):

1. A *pinhole* intermediate image (same focal length as the camera, large enough to cover the
   distorted image; for fisheye a lower focal length and rays up to :data:`FISHEYE_MAX_THETA_RAD`) is
   started from a cached sky gradient (by ray elevation).
2. The ground (grass, pavement strips beside the roads, asphalt, lane markings with 3 m on / 6 m off
   dashes measured along the line) and then every box as its visible faces with Lambert shading from
   the sun and material textures, boxes in painter's order (a face plane of the nearer box separates
   the camera from the farther box; ties by distance; boxes wholly behind an opaque face are skipped).
   Every polygon is clipped in 3D against the near plane before projection, so boxes partly behind the
   camera are drawn correctly; polygons wholly outside a guard band around the image are dropped.
   Edges are anti-aliased with 1/16 px vertex precision. The calibration board's chessboard is painted
   per pixel (ray ∩ board plane, box-filtered pattern) so its corners are sub-pixel exact.
3. Only for fog / rain / night, a surface-id buffer gives every pixel its exact 3D point (ray ∩ the
   face plane): fog blends towards the airlight A by Koschmieder, ``I·exp(−βd) + A·(1 − exp(−βd))``
   with d the distance from the camera; night multiplies the albedo by the light of the ego's
   headlight cones and the street lamps (boxes of kind "pole"/"street_lamp"), lamps and lit windows
   being emissive. Both are evaluated on every 2nd pixel and resized.
4. One ``cv2.remap`` (tables built once per camera model and cached) applies the lens distortion.
5. Sensor noise from a pre-generated noise table at a random offset (cheap), rain streaks.

Frames: boxes and ground are in the world frame; the camera pose is ``Scene.T_world_base @
T_base_cam`` with ``T_base_cam`` mapping the optical frame (z forward, x right, y down) into base_link.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from edgefuse.geometry import CameraModel, Transform
from edgefuse.sim.raycast import DASH_ON_M, DASH_PERIOD_M
from edgefuse.sim.scene import Scene, WorldBox

# ---------------------------------------------------------------- look (constants, not config)

#: Direction *towards* the sun in the world frame (elevation ≈ 50°).
SUN_DIR = np.array([-0.45, 0.40, 0.80]) / np.linalg.norm([-0.45, 0.40, 0.80])
AMBIENT = 0.45
DIFFUSE = 0.60
SKY_ZENITH_DAY = np.array([70.0, 125.0, 205.0])
SKY_HORIZON_DAY = np.array([190.0, 208.0, 228.0])
SKY_ZENITH_NIGHT = np.array([3.0, 4.0, 10.0])
SKY_HORIZON_NIGHT = np.array([14.0, 16.0, 26.0])
SKY_OVERCAST = np.array([150.0, 155.0, 162.0])
#: Fog airlight (the colour of infinitely thick fog) by day and by night.
AIRLIGHT_DAY = np.array([200.0, 203.0, 207.0])
AIRLIGHT_NIGHT = np.array([12.0, 13.0, 16.0])
GRASS = (86, 118, 58)
PAVEMENT = (152, 150, 144)
ASPHALT = (72, 72, 76)
MARKING = (235, 235, 228)
BOARD_WHITE = (245.0, 245.0, 245.0)
BOARD_BLACK = (12.0, 12.0, 12.0)
SIDEWALK_M = 3.0  # pavement strip beside each road
GROUND_EXTENT_M = 1000.0  # the ground square around the camera
MAX_BOX_RANGE_M = 400.0
MAX_MARKING_RANGE_M = 150.0
MAX_GROUND_RANGE_M = 400.0
LOD_PATCH_PX = 6.0  # boxes whose bounding sphere projects smaller (radius, px) are drawn without patches
NEAR_M = 0.05
GUARD = 3.0  # guard band: polygons wholly beyond 3 image sizes outside an image edge are dropped
FISHEYE_MAX_THETA_RAD = np.deg2rad(80.0)  # fisheye rays beyond this angle are black (vignette)
#: Rain adds a little extinction (1/m per unit rain intensity) on top of fog.
RAIN_EXTINCTION = 0.004
# night lighting: headlights in base_link (x forward, y left, z up)
HEADLIGHTS = (np.array([3.7, 0.7, 0.7]), np.array([3.7, -0.7, 0.7]))
HEADLIGHT_DIR = np.array([1.0, 0.0, -0.035]) / np.linalg.norm([1.0, 0.0, -0.035])
HEADLIGHT_COS_INNER, HEADLIGHT_COS_OUTER = np.cos(np.deg2rad(6.0)), np.cos(np.deg2rad(22.0))
HEADLIGHT_POWER = 300.0  # light = 1 − exp(−Σ power · cone · lambert / d²) (1.0 = daylight-like)
STREET_LAMP_POWER = 60.0
STREET_LAMP_KINDS = ("pole", "street_lamp", "lamp")
MAX_STREET_LAMPS = 6
STREET_LAMP_REACH_M = 20.0
STREET_LAMP_COS_INNER, STREET_LAMP_COS_OUTER = np.cos(np.deg2rad(50.0)), np.cos(np.deg2rad(75.0))
NIGHT_LIGHT_STEP = 2  # night light is computed on every 2nd pixel and resized
FOG_STEP = 2  # so is the fog transmittance (smooth within a surface; edges soften by ~1 px)
NIGHT_AMBIENT = 0.035
NOISE_STD_DN = 2.0
FILL_LINE = cv2.LINE_AA  # anti-aliased polygon edges


# ---------------------------------------------------------------- camera tables (cached)


@dataclass(frozen=True)
class _CameraTables:
    """Per-CameraModel state: intermediate pinhole intrinsics/size and the remap tables."""

    Ki: np.ndarray  # (3, 3) intermediate pinhole intrinsics
    size_i: tuple[int, int]  # (width, height) of the intermediate image
    map1: np.ndarray | None  # cv2 fixed-point maps (None: the intermediate is the image)
    map2: np.ndarray | None
    rays_x: np.ndarray  # (Hi, Wi) float32 normalized x of each intermediate pixel
    rays_y: np.ndarray
    rays_norm: np.ndarray  # (Hi, Wi) float32 |(x, y, 1)|


_TABLES: dict[tuple, _CameraTables] = {}


def _camera_key(cam: CameraModel) -> tuple:
    return (cam.model, cam.width, cam.height, cam.K.tobytes(), cam.distortion.tobytes())


def _fisheye_theta(theta_d: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Solve θ(1 + k1θ² + k2θ⁴ + k3θ⁶ + k4θ⁸) = θ_d for θ (Newton, vectorized)."""
    theta = theta_d.copy()
    for _ in range(20):
        t2 = theta * theta
        f = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - theta_d
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        theta = theta - f / np.where(np.abs(df) > 1e-6, df, 1e-6)
    return theta


UNDISTORT_COARSE_STEP = 8  # cv2.undistortPoints on every 8th pixel, then interpolation + Newton
UNDISTORT_BLOCK_ROWS = 8
UNDISTORT_NEWTON_STEPS = 1  # the interpolated start is within ~0.003 px: one step gives ~1e-9 px


def _undistort_exact(cam: CameraModel, pix: np.ndarray) -> np.ndarray:
    """(N, 2) pixels (u, v) of pinhole ``cam`` → (N, 2) ideal normalized (x/z, y/z), by OpenCV."""
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)
    xy = cv2.undistortPoints(
        pix.reshape(-1, 1, 2).astype(np.float64),
        cam.K,
        cam.distortion,
        R=np.eye(3),
        P=np.eye(3),
        criteria=crit,
    )
    return xy.reshape(-1, 2)


def _lerp_axis(
    a: np.ndarray, nodes: np.ndarray, n: int, axis: int, q0: int = 0, q1: int | None = None
) -> np.ndarray:
    """Linear interpolation of 2-D ``a`` sampled at integer ``nodes`` along ``axis`` onto q0 … q1−1
    (default 0 … n−1)."""
    q = np.arange(q0, n if q1 is None else q1, dtype=np.float64)
    i = np.clip(np.searchsorted(nodes, q, side="right") - 1, 0, len(nodes) - 2)
    f = (q - nodes[i]) / (nodes[i + 1] - nodes[i])
    lo, hi = np.take(a, i, axis=axis), np.take(a, i + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = len(q)
    f = f.reshape(shape)
    return lo + (hi - lo) * f


def undistort_pixel_grid(cam: CameraModel) -> np.ndarray:
    """Ideal normalized coordinates of every pixel of pinhole ``cam``: (H·W, 2), row-major (v, then u).

    Same result as ``cv2.undistortPoints`` on all pixels (≤ 1e-3 px, see tests) at a fraction of the
    cost: OpenCV undistorts a coarse grid (every ``UNDISTORT_COARSE_STEP``-th pixel plus the last
    row/column), bilinear interpolation gives a start for every pixel, and ``UNDISTORT_NEWTON_STEPS``
    vectorized Newton steps on the forward model (:meth:`CameraModel.distort_normalized`, analytic
    2×2 Jacobian) refine it."""
    if cam.model != "pinhole":
        raise ValueError(f"undistort_pixel_grid: expected a pinhole camera, got {cam.model!r}")
    W, H = cam.width, cam.height
    step = UNDISTORT_COARSE_STEP
    nu = np.unique(np.r_[np.arange(0, W, step), W - 1]).astype(np.float64)
    nv = np.unique(np.r_[np.arange(0, H, step), H - 1]).astype(np.float64)
    if len(nu) < 2 or len(nv) < 2:
        uu, vv = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
        return _undistort_exact(cam, np.stack([uu.ravel(), vv.ravel()], axis=1))
    cu, cv_ = np.meshgrid(nu, nv)
    coarse = _undistort_exact(cam, np.stack([cu.ravel(), cv_.ravel()], axis=1)).reshape(len(nv), len(nu), 2)
    rows_x = _lerp_axis(coarse[..., 0], nu, W, 1)  # (len(nv), W): interpolated along u once
    rows_y = _lerp_axis(coarse[..., 1], nu, W, 1)
    fx, fy, cx, cy, skew = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2], cam.K[0, 1]
    k1, k2, p1, p2, k3 = cam.distortion
    u = np.arange(W, dtype=np.float64)
    out = np.empty((H, W, 2))
    # blocks of a few rows keep every temporary in cache (the whole image at once is memory-bound)
    for v0 in range(0, H, UNDISTORT_BLOCK_ROWS):
        v1 = min(H, v0 + UNDISTORT_BLOCK_ROWS)
        x = _lerp_axis(rows_x, nv, H, 0, v0, v1).ravel()
        y = _lerp_axis(rows_y, nv, H, 0, v0, v1).ravel()
        # targets: distorted normalized coordinates of these pixels
        yd_t = np.repeat((np.arange(v0, v1, dtype=np.float64) - cy) / fy, W)
        xd_t = (np.tile(u, v1 - v0) - cx - skew * yd_t) / fx
        for _ in range(UNDISTORT_NEWTON_STEPS):
            d = cam.distort_normalized(np.stack([x, y], axis=1))
            ex, ey = d[:, 0] - xd_t, d[:, 1] - yd_t
            r2 = x * x + y * y
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            dradial = 2.0 * (k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2))  # d radial / d r, divided by r
            jxx = radial + dradial * x * x + 2.0 * p1 * y + 6.0 * p2 * x
            jyy = radial + dradial * y * y + 6.0 * p1 * y + 2.0 * p2 * x
            jxy = dradial * x * y + 2.0 * p1 * x + 2.0 * p2 * y  # = d xd / dy = d yd / dx
            det = jxx * jyy - jxy * jxy
            x = x - (jyy * ex - jxy * ey) / det
            y = y - (jxx * ey - jxy * ex) / det
        out[v0:v1, :, 0] = x.reshape(v1 - v0, W)
        out[v0:v1, :, 1] = y.reshape(v1 - v0, W)
    return out.reshape(-1, 2)


def camera_tables(cam: CameraModel) -> _CameraTables:
    """The cached intermediate camera and distortion remap tables of ``cam`` (built once per model)."""
    key = _camera_key(cam)
    tables = _TABLES.get(key)
    if tables is not None:
        return tables
    W, H = cam.width, cam.height
    fx, fy = cam.K[0, 0], cam.K[1, 1]
    identity = cam.model == "pinhole" and not np.any(cam.distortion)
    if identity:
        xy = None
        Ki = cam.K.copy()
        size_i = (W, H)
    else:
        if cam.model == "pinhole":
            xy = undistort_pixel_grid(cam)
            valid = np.ones(len(xy), dtype=bool)
            scale_f = 1.0
        else:
            uu, vv = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
            pix = np.stack([uu.ravel(), vv.ravel()], axis=1)
            d = (pix - cam.K[:2, 2]) / np.array([fx, fy])
            theta_d = np.hypot(d[:, 0], d[:, 1])
            theta = _fisheye_theta(theta_d, cam.distortion)
            valid = (theta < FISHEYE_MAX_THETA_RAD) & (theta >= 0)
            r = np.tan(np.clip(theta, 0, FISHEYE_MAX_THETA_RAD))
            with np.errstate(invalid="ignore", divide="ignore"):
                s = np.where(theta_d > 1e-12, r / np.maximum(theta_d, 1e-12), 1.0)
            xy = d * s[:, None]
            span = float(np.max(np.abs(xy[valid]))) if valid.any() else 1.0
            scale_f = min(1.0, (2.5 * W) / (2.0 * span * fx))  # the intermediate at most 2.5 W wide
        xs, ys = xy[valid, 0], xy[valid, 1]
        fxi, fyi = fx * scale_f, fy * scale_f
        x0, x1 = xs.min() * fxi - 2.0, xs.max() * fxi + 2.0
        y0, y1 = ys.min() * fyi - 2.0, ys.max() * fyi + 2.0
        Ki = np.array([[fxi, 0.0, -np.floor(x0)], [0.0, fyi, -np.floor(y0)], [0.0, 0.0, 1.0]])
        size_i = (int(np.ceil(x1 - np.floor(x0))) + 1, int(np.ceil(y1 - np.floor(y0))) + 1)
        mx = (xy[:, 0] * fxi + Ki[0, 2]).astype(np.float32)
        my = (xy[:, 1] * fyi + Ki[1, 2]).astype(np.float32)
        mx[~valid] = -10.0
        my[~valid] = -10.0
    map1 = map2 = None
    if xy is not None:
        map1, map2 = cv2.convertMaps(mx.reshape(H, W), my.reshape(H, W), cv2.CV_16SC2)
    Wi, Hi = size_i
    gx = ((np.arange(Wi) - Ki[0, 2]) / Ki[0, 0]).astype(np.float32)
    gy = ((np.arange(Hi) - Ki[1, 2]) / Ki[1, 1]).astype(np.float32)
    rx, ry = np.meshgrid(gx, gy)
    rn = np.sqrt(rx * rx + ry * ry + 1.0).astype(np.float32)
    tables = _CameraTables(Ki, size_i, map1, map2, rx, ry, rn)
    if len(_TABLES) > 8:
        _TABLES.clear()
    _TABLES[key] = tables
    return tables


# ---------------------------------------------------------------- sky (cached per elevation axis)

_SKY: dict[tuple, np.ndarray] = {}


def _sky(tables: _CameraTables, up_cam: np.ndarray, zenith: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """(Hi, Wi, 3) uint8 sky gradient by ray elevation; ``up_cam`` is world +z in the optical frame."""
    key = (tables.size_i, tables.Ki.tobytes(), tuple(np.round(up_cam, 3)), tuple(zenith), tuple(horizon))
    img = _SKY.get(key)
    if img is None:
        u = up_cam / np.linalg.norm(up_cam)
        sin_el = (tables.rays_x * u[0] + tables.rays_y * u[1] + u[2]) / tables.rays_norm
        w = np.clip(sin_el, 0.0, 1.0) ** 0.6
        w1 = 1 - w
        img = np.empty(w.shape + (3,), np.uint8)
        for c in range(3):  # per channel: (Hi, Wi) temporaries instead of (Hi, Wi, 3) float64 ones
            ch = np.asarray(horizon, np.float64)[c] * w1
            ch += np.asarray(zenith, np.float64)[c] * w
            ch += 0.5
            img[..., c] = np.clip(ch, 0, 255)
        if len(_SKY) > 16:
            _SKY.clear()
        _SKY[key] = img
    return img


# ---------------------------------------------------------------- noise (pre-generated table)

_NOISE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_NOISE_PAD = 64


def _noise_tables(h: int, w: int, std: float) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts (uint8) of a fixed Gaussian noise field a little larger than the image."""
    key = (h, w, round(std, 3))
    t = _NOISE.get(key)
    if t is None:
        g = np.random.default_rng(0x5EED).standard_normal((h + _NOISE_PAD, w + _NOISE_PAD, 3), np.float32)
        n = np.rint(g * std)
        t = (np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8))
        if len(_NOISE) > 4:
            _NOISE.clear()
        _NOISE[key] = t
    return t


# ---------------------------------------------------------------- box geometry

# Box faces in the box frame: (outward normal axis, origin corner signs, U axis, V axis); U runs left
# to right and V bottom to top as seen from outside, so U × V is the outward normal.
_FACES = (
    ("+x", (1, -1, -1), (0, 2, 0), (0, 0, 2)),
    ("-x", (-1, 1, -1), (0, -2, 0), (0, 0, 2)),
    ("+y", (1, 1, -1), (-2, 0, 0), (0, 0, 2)),
    ("-y", (-1, -1, -1), (2, 0, 0), (0, 0, 2)),
    ("+z", (-1, -1, 1), (2, 0, 0), (0, 2, 0)),
    ("-z", (-1, 1, -1), (2, 0, 0), (0, -2, 0)),
)
_F_ORIGIN = np.array([f[1] for f in _FACES], dtype=np.float64)  # (6, 3) in half-sizes
_F_U = np.array([f[2] for f in _FACES], dtype=np.float64)
_F_V = np.array([f[3] for f in _FACES], dtype=np.float64)
_F_UAXIS = np.argmax(np.abs(_F_U), axis=1)  # the box axis U runs along, and its sign
_F_USIGN = np.sign(_F_U[np.arange(6), _F_UAXIS])
_F_VAXIS = np.argmax(np.abs(_F_V), axis=1)
_F_VSIGN = np.sign(_F_V[np.arange(6), _F_VAXIS])
_F_NORMAL = np.cross(_F_U, _F_V)
_F_NORMAL /= np.linalg.norm(_F_NORMAL, axis=1, keepdims=True)


def _face_extent(size: np.ndarray, f: int) -> tuple[float, float]:
    """Metric width (along U) and height (along V) of face ``f`` of a box of ``size`` (l, w, h)."""
    return float(np.abs(_F_U[f]) @ size) / 2.0, float(np.abs(_F_V[f]) @ size) / 2.0


def board_inner_corners(box: WorldBox) -> np.ndarray:
    """The chessboard's inner corners of a box with a ``board``, in the world frame.

    Returns ((rows-1)·(cols-1), 3): row-major from the top-left inner corner as seen facing the board
    (standing on the box's +x side): columns run along the box's +y axis (left to right as seen),
    rows along -z (top to bottom). The top-left square is black. The board is centred on the +x face."""
    if box.board is None:
        raise ValueError(f"board_inner_corners: box of kind {box.kind!r} has no board")
    b = box.board
    l, w, h = np.asarray(box.size, dtype=np.float64) / 2.0
    ys = (np.arange(1, b.cols) - b.cols / 2.0) * b.square_m
    zs = (b.rows / 2.0 - np.arange(1, b.rows)) * b.square_m
    Y, Z = np.meshgrid(ys, zs)
    local = np.stack([np.full(Y.size, l), Y.ravel(), Z.ravel()], axis=1)
    return box.pose().apply(local)


def _rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)


def _disc(uc: float, vc: float, r: float, n: int = 12) -> np.ndarray:
    a = np.arange(n) * (2 * np.pi / n)
    return np.stack([uc + r * np.cos(a), vc + r * np.sin(a)], axis=1)


@dataclass(frozen=True)
class _Deco:
    """A flat patch on a face: ``poly`` (K, 2) in face metres (u right, v up from the face's bottom-left
    corner), ``rgb`` albedo, ``emissive`` (drawn unshaded and self-lit at night)."""

    poly: np.ndarray
    rgb: tuple[float, float, float]
    emissive: bool = False
    alone: bool = False  # never share a fill call (patches that touch, e.g. chessboard squares)
    shaded: bool = True  # False: one colour on every face (glass, tyres), so faces can share a fill call


def _dim(rgb, k: float) -> tuple[float, float, float]:
    return (rgb[0] * k, rgb[1] * k, rgb[2] * k)


def _stable_hash(*vals: float) -> int:
    h = 2166136261
    for v in vals:
        h = ((h ^ (int(round(v * 1000)) & 0xFFFFFFFF)) * 16777619) & 0xFFFFFFFF
    return h


# (stacked face-metre vertices (N, 2), vertex counts (P,), rgb, emissive, shaded)
_PatchGroup = tuple[np.ndarray, np.ndarray, tuple[float, float, float], bool, bool]
_DECO_CACHE: dict[tuple, tuple[bool, tuple[tuple[_PatchGroup, ...], ...]]] = {}


def _decorations(box: WorldBox, night: bool) -> tuple[bool, tuple[tuple[_PatchGroup, ...], ...]]:
    """(cutout, patch groups per face, in drawing order). ``cutout``: the face itself is not filled,
    only its patches (thin figures: pedestrians, cyclists). Patches of one group do not overlap."""
    hit = _DECO_BY_ID.get(id(box))
    if hit is not None and hit[0] is box and hit[1] == night:
        return hit[2]
    out = _decorations_uncached(box, night)
    if len(_DECO_BY_ID) > 8192:
        _DECO_BY_ID.clear()
    _DECO_BY_ID[id(box)] = (box, night, out)  # holds the box, so its id is not reused meanwhile
    return out


_DECO_BY_ID: dict[int, tuple] = {}


def _decorations_uncached(box: WorldBox, night: bool) -> tuple[bool, tuple[tuple[_PatchGroup, ...], ...]]:
    size = np.asarray(box.size, dtype=np.float64)
    m = box.material
    key = (
        box.kind,
        m,
        tuple(np.round(size, 3)),
        box.board,
        night,
        box.track_id,
        (round(float(box.center[0]), 1), round(float(box.center[1]), 1)) if night else None,
    )
    hit = _DECO_CACHE.get(key)
    if hit is not None:
        return hit
    L, Wd, Hh = size
    rgb = tuple(float(c) for c in m.rgb)
    kind = box.kind
    faces: list[list[_Deco]] = [[] for _ in range(6)]
    cutout = False
    glass = (38.0, 46.0, 58.0)
    if kind in ("car", "parked_car", "truck", "bus", "van"):
        wheel = (22.0, 22.0, 24.0)
        for f in (2, 3):  # sides: window band, two wheels
            fw, fh = _face_extent(size, f)
            faces[f].append(_Deco(_rect(0.22 * fw, 0.56 * fh, 0.80 * fw, 0.86 * fh), glass, shaded=False))
            r = min(0.34, 0.22 * fh)
            for uc in (0.18 * fw, 0.82 * fw):
                faces[f].append(_Deco(_disc(uc, r, r), wheel, shaded=False))
        # front (+x): windscreen, grille, headlights; back (-x): rear window, tail lights
        fw, fh = _face_extent(size, 0)
        faces[0].append(_Deco(_rect(0.08 * fw, 0.58 * fh, 0.92 * fw, 0.88 * fh), glass, shaded=False))
        faces[0].append(_Deco(_rect(0.34 * fw, 0.30 * fh, 0.66 * fw, 0.44 * fh), (30.0, 30.0, 32.0)))
        for u0 in (0.06, 0.76):
            faces[0].append(
                _Deco(_rect(u0 * fw, 0.36 * fh, (u0 + 0.18) * fw, 0.46 * fh), (240, 238, 215), True)
            )
        fw, fh = _face_extent(size, 1)
        faces[1].append(_Deco(_rect(0.12 * fw, 0.60 * fh, 0.88 * fw, 0.86 * fh), glass, shaded=False))
        for u0 in (0.05, 0.80):
            faces[1].append(
                _Deco(_rect(u0 * fw, 0.38 * fh, (u0 + 0.15) * fw, 0.48 * fh), (200, 25, 25), True)
            )
        faces[4].append(_Deco(_rect(0.30 * L, 0.08 * Wd, 0.72 * L, 0.92 * Wd), _dim(rgb, 0.8)))
    elif kind == "pedestrian" or m.texture == "skin":
        cutout = True
        h = _stable_hash(box.track_id, *rgb)
        trousers = ((40.0, 44.0, 70.0), (30.0, 30.0, 32.0), (120.0, 110.0, 90.0), (70.0, 80.0, 95.0))[h % 4]
        skin = ((225.0, 185.0, 155.0), (170.0, 120.0, 90.0), (110.0, 75.0, 55.0))[(h >> 3) % 3]
        for f in range(4):
            fw, fh = _face_extent(size, f)
            faces[f].append(_Deco(_rect(0.12 * fw, 0.0, 0.46 * fw, 0.48 * fh), trousers))
            faces[f].append(_Deco(_rect(0.54 * fw, 0.0, 0.88 * fw, 0.48 * fh), trousers))
            faces[f].append(_Deco(_rect(0.04 * fw, 0.46 * fh, 0.96 * fw, 0.84 * fh), rgb))
            faces[f].append(_Deco(_rect(0.30 * fw, 0.84 * fh, 0.70 * fw, 1.0 * fh), skin))
        faces[4].append(_Deco(_rect(0.3 * L, 0.3 * Wd, 0.7 * L, 0.7 * Wd), (45.0, 35.0, 28.0)))
    elif kind == "cyclist":
        cutout = True
        tyre, frame = (25.0, 25.0, 25.0), _dim(rgb, 0.5)
        skin = (205.0, 160.0, 130.0)
        for f in (2, 3):
            fw, fh = _face_extent(size, f)
            r = min(0.34, 0.22 * fh, 0.2 * fw)
            for uc in (r + 0.02, fw - r - 0.02):
                faces[f].append(_Deco(_disc(uc, r, r), tyre))
            faces[f].append(_Deco(_rect(r, 0.8 * r, fw - r, 1.2 * r), frame))
            faces[f].append(_Deco(_rect(0.40 * fw, 0.2 * fh, 0.56 * fw, 0.52 * fh), (40.0, 40.0, 60.0)))
            faces[f].append(_Deco(_rect(0.34 * fw, 0.50 * fh, 0.66 * fw, 0.84 * fh), rgb))
            faces[f].append(_Deco(_rect(0.42 * fw, 0.84 * fh, 0.58 * fw, 1.0 * fh), skin))
        for f in (0, 1):
            fw, fh = _face_extent(size, f)
            faces[f].append(_Deco(_rect(0.40 * fw, 0.0, 0.60 * fw, 0.45 * fh), tyre))
            faces[f].append(_Deco(_rect(0.10 * fw, 0.45 * fh, 0.90 * fw, 0.84 * fh), rgb))
            faces[f].append(_Deco(_rect(0.32 * fw, 0.84 * fh, 0.68 * fw, 1.0 * fh), skin))
        faces[4].append(_Deco(_rect(0.35 * L, 0.2 * Wd, 0.6 * L, 0.8 * Wd), rgb))
    elif m.texture == "windows" or kind == "building":
        lit = (255.0, 214.0, 140.0)
        for f in range(4):
            fw, fh = _face_extent(size, f)
            nx = int((fw - 1.6) // 3.0)
            nz = int((fh - 1.2) // 3.2)
            if nx < 1 or nz < 1:
                continue
            u_start = (fw - (nx - 1) * 3.0) / 2.0
            dark, bright = [], []
            for i in range(nx):
                for j in range(nz):
                    uc, v0 = u_start + 3.0 * i, 1.2 + 3.2 * j
                    on = night and _stable_hash(box.center[0], box.center[1], f, i, j) % 5 == 0
                    (bright if on else dark).append(
                        _Deco(_rect(uc - 0.7, v0, uc + 0.7, v0 + 1.6), lit if on else glass, on, shaded=False)
                    )
            faces[f] += dark + bright
    elif m.texture == "stripes":
        for f in range(4):
            fw, fh = _face_extent(size, f)
            for j in range(int(fh // 0.6) + 1):
                v0 = 0.6 * j
                faces[f].append(_Deco(_rect(0.0, v0, fw, min(v0 + 0.3, fh)), _dim(rgb, 0.35)))
    if box.board is not None:
        pass  # the chessboard is painted per pixel (exact corners): see _paint_board
    elif m.texture == "checker":
        for f in range(6):
            fw, fh = _face_extent(size, f)
            n_u, n_v = max(1, int(fw // 0.5)), max(1, int(fh // 0.5))
            for i in range(n_u):
                for j in range(n_v):
                    if (i + j) % 2 == 0:
                        faces[f].append(
                            _Deco(
                                _rect(i * fw / n_u, j * fh / n_v, (i + 1) * fw / n_u, (j + 1) * fh / n_v),
                                (15.0, 15.0, 15.0),
                            )
                        )
    if kind in STREET_LAMP_KINDS and night:
        for f in range(4):
            fw, fh = _face_extent(size, f)
            faces[f].append(_Deco(_rect(0.0, fh - 0.4, fw, fh), (255.0, 230.0, 170.0), True))
        faces[4].append(_Deco(_rect(0.0, 0.0, L, Wd), (255.0, 230.0, 170.0), True))
    grouped = []
    for patches in faces:
        groups: list[tuple[list[np.ndarray], tuple[float, float, float], bool]] = []
        for d in patches:
            shaded = d.shaded and not d.emissive
            if groups and groups[-1][1:] == (d.rgb, d.emissive, shaded) and not d.alone:
                groups[-1][0].append(d.poly)
            else:
                groups.append(([d.poly], d.rgb, d.emissive, shaded))
        grouped.append(
            tuple(
                (np.concatenate(g[0], axis=0), np.array([len(q) for q in g[0]]), g[1], g[2], g[3])
                for g in groups
            )
        )
    out = (cutout, tuple(grouped))
    if len(_DECO_CACHE) > 4096:
        _DECO_CACHE.clear()
    _DECO_CACHE[key] = out
    return out


# ---------------------------------------------------------------- ground (static, cached per scene parts)

GROUND_CHUNK_M = 12.0  # roads and solid lines are drawn as strip polygons of this length


@dataclass(frozen=True)
class _GroundLayer:
    """Static ground polygons of one colour in the world frame (z = 0): stacked ``verts`` (N, 2) with
    ``counts`` (P,) per polygon, their ``centers`` (P, 2), bounding ``radii`` (P,) and ``batch`` (P,)
    ids (sorted): polygons of one batch never overlap (one fill call)."""

    verts: np.ndarray
    counts: np.ndarray
    centers: np.ndarray
    radii: np.ndarray
    batch: np.ndarray


def _strip_polys(points: np.ndarray, half_width: float, dashed: bool) -> list[np.ndarray]:
    """Polygons covering a polyline ``points`` (K, 2) with ``half_width``: chunks of ``GROUND_CHUNK_M``
    (solid) or the painted dashes (``DASH_ON_M`` every ``DASH_PERIOD_M`` by arc length from the first
    point). Vertices are offset along mitred normals, so consecutive chunks share their edges exactly."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) >= 2:
        keep = np.concatenate([[True], np.hypot(*np.diff(pts, axis=0).T) > 1e-9])
        pts = pts[keep]
    if len(pts) < 2:
        return []
    seg = np.diff(pts, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    tang = seg / seg_len[:, None]
    seg_n = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
    vn = np.concatenate([seg_n[:1], seg_n[:-1] + seg_n[1:], seg_n[-1:]], axis=0)
    cosh = np.einsum(
        "ij,ij->i", vn / np.linalg.norm(vn, axis=1, keepdims=True), np.concatenate([seg_n[:1], seg_n], axis=0)
    )
    vn = vn / np.linalg.norm(vn, axis=1, keepdims=True) / np.maximum(cosh, 0.3)[:, None]  # mitre
    s = np.concatenate([[0.0], np.cumsum(seg_len)])
    total = s[-1]
    if dashed:
        k = np.arange(int(np.ceil(total / DASH_PERIOD_M)) + 1)
        iv = np.stack([k * DASH_PERIOD_M, np.minimum(k * DASH_PERIOD_M + DASH_ON_M, total)], axis=1)
    else:
        n = max(1, int(np.ceil(total / GROUND_CHUNK_M)))
        edges = np.linspace(0.0, total, n + 1)
        iv = np.stack([edges[:-1], edges[1:]], axis=1)
    iv = iv[iv[:, 1] - iv[:, 0] > 1e-6]
    out = []
    for a, b in iv:
        inner = np.flatnonzero((s > a) & (s < b))
        ia = min(int(np.searchsorted(s, a, side="right")) - 1, len(seg) - 1)
        ib = min(int(np.searchsorted(s, b, side="left")) - 1, len(seg) - 1)
        ib = max(ib, 0)
        pa = pts[ia] + tang[ia] * (a - s[ia])
        pb = pts[ib] + tang[ib] * (b - s[ib])
        na = vn[ia] if abs(a - s[ia]) < 1e-9 else seg_n[ia]
        nb = vn[ib + 1] if abs(b - s[ib + 1]) < 1e-9 else seg_n[ib]
        c = np.concatenate([pa[None], pts[inner], pb[None]], axis=0)
        nn = np.concatenate([na[None], vn[inner], nb[None]], axis=0) * half_width
        out.append(np.concatenate([c + nn, (c - nn)[::-1]], axis=0))
    return out


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of equal consecutive ``keys``."""
    b = np.flatnonzero(np.diff(keys)) + 1
    lo, hi = np.concatenate([[0], b]).tolist(), np.concatenate([b, [len(keys)]]).tolist()
    return list(zip(lo, hi, strict=True))


def _layer(polys_by_batch: list[list[np.ndarray]]) -> _GroundLayer:
    polys = [p for grp in polys_by_batch for p in grp]
    batch = np.array([i for i, grp in enumerate(polys_by_batch) for _ in grp], dtype=np.int64)
    if not polys:
        return _GroundLayer(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0), batch)
    c = np.array([p.mean(axis=0) for p in polys])
    r = np.array([np.max(np.hypot(*(p - p.mean(axis=0)).T)) for p in polys])
    counts = np.array([len(p) for p in polys], dtype=np.int64)
    return _GroundLayer(np.concatenate(polys, axis=0), counts, c, r, batch)


_GROUND: list = [None, None, None]  # (roads, lanes, layers): one identity-keyed entry


def _ground_layers(scene: Scene) -> tuple[_GroundLayer, _GroundLayer, _GroundLayer]:
    """(pavement, asphalt, markings) of the scene's roads and lanes (static: cached by identity)."""
    if _GROUND[0] is scene.roads and _GROUND[1] is scene.lanes:
        return _GROUND[2]
    pave = _layer([_strip_polys(r.points, r.half_width + SIDEWALK_M, False) for r in scene.roads])
    asph = _layer([_strip_polys(r.points, r.half_width, False) for r in scene.roads])
    mark = _layer([_strip_polys(ln.points, ln.width / 2.0, ln.dashed) for ln in scene.lanes])
    layers = (pave, asph, mark)
    _GROUND[:] = [scene.roads, scene.lanes, layers]
    return layers


# ---------------------------------------------------------------- polygon clipping and drawing


class _DrawList:
    """Batches of polygons in the camera optical frame, in drawing order. A batch: polygons that do not
    overlap, with one colour and one surface id (one fillPoly call), given as stacked vertices (N, 3)
    and per-polygon vertex counts (P,). ``customs[b]``: painters ``fn(img)`` run before batch b."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.batches: list[tuple[tuple[float, float, float], int]] = []
        self.customs: dict[int, list] = {}

    def add_custom(self, fn) -> None:
        self.customs.setdefault(len(self.batches), []).append(fn)

    def add(self, verts_cam: np.ndarray, counts: np.ndarray, rgb, sid: int) -> None:
        if len(counts) == 0:
            return
        self.verts.append(verts_cam)
        self.counts.append(counts)
        self.batches.append((rgb, sid))


_QUAD = np.array([4])


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman against the near plane: the part of (K, 3) ``poly`` (optical frame) with
    z ≥ NEAR_M, as (K', 3) (empty when nothing is in front). Plain Python: polygons are small."""
    pts = poly.tolist()
    out = []
    n = len(pts)
    for i in range(n):
        p, q = pts[i], pts[(i + 1) % n]
        sp, sq = p[2] - NEAR_M, q[2] - NEAR_M
        if sp >= 0:
            out.append(p)
        if (sp >= 0) != (sq >= 0):
            t = sp / (sp - sq)
            out.append([p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t, NEAR_M])
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def _clip_planes(tables: _CameraTables) -> np.ndarray:
    """Near plane plus a guard band GUARD image sizes beyond each edge, as (5, 4) rows a·p + d ≥ 0."""
    Ki, (Wi, Hi) = tables.Ki, tables.size_i
    x0 = (-GUARD * Wi - Ki[0, 2]) / Ki[0, 0]
    x1 = ((1 + GUARD) * Wi - Ki[0, 2]) / Ki[0, 0]
    y0 = (-GUARD * Hi - Ki[1, 2]) / Ki[1, 1]
    y1 = ((1 + GUARD) * Hi - Ki[1, 2]) / Ki[1, 1]
    return np.array(
        [[0, 0, 1, -NEAR_M], [1, 0, -x0, 0], [-1, 0, x1, 0], [0, 1, -y0, 0], [0, -1, y1, 0]], dtype=np.float64
    )


def _rasterize(dl: _DrawList, tables: _CameraTables, img: np.ndarray, ids: np.ndarray | None) -> None:
    """Clip, project and fill every batch of ``dl`` into ``img`` (and its surface id into ``ids``)."""
    if not dl.verts:
        return
    planes = _clip_planes(tables)
    counts = np.concatenate(dl.counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    allv = np.concatenate(dl.verts, axis=0)
    s = allv @ planes[:, :3].T + planes[:, 3]  # (V, 5)
    culled = np.any(np.maximum.reduceat(s, starts, axis=0) < 0, axis=1)  # wholly outside one plane
    # only the near plane is clipped: the guard band just culls (coordinates stay far from int32 limits)
    inside = np.minimum.reduceat(s[:, 0], starts) >= 0
    Ki = tables.Ki
    f = np.array([Ki[0, 0], Ki[1, 1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = allv[:, :2] / allv[:, 2:3] * f + Ki[:2, 2]
    # culled polygons may sit far off (or behind): clamp them inside int32 (drawn ones are far inside it)
    uv = np.clip(np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0), -(2.0**26), 2.0**26)
    uvi = np.rint(uv * 16.0).astype(np.int32)
    n_poly = np.array([len(c) for c in dl.counts])
    b_first = np.concatenate([[0], np.cumsum(n_poly)[:-1]])
    b_inside = np.logical_and.reduceat(inside, b_first).tolist()
    b_culled = np.logical_and.reduceat(culled, b_first).tolist()
    b_uniform = (np.minimum.reduceat(counts, b_first) == np.maximum.reduceat(counts, b_first)).tolist()
    b_v0 = starts[b_first].tolist()
    b_nv = np.add.reduceat(counts, b_first).tolist()
    b_c0 = counts[b_first].tolist()  # vertices per polygon of a uniform batch
    b_p0, b_np = b_first.tolist(), n_poly.tolist()
    customs = dl.customs
    fill = cv2.fillPoly
    for b, (rgb, sid) in enumerate(dl.batches):
        if customs:
            for fn in customs.get(b, ()):
                fn(img)
        if b_culled[b]:
            continue
        if b_inside[b] and b_uniform[b]:
            v0 = b_v0[b]
            pts = uvi[v0 : v0 + b_nv[b]].reshape(b_np[b], b_c0[b], 2)
        else:
            p0 = b_p0[b]
            p1 = p0 + b_np[b]
            pts = []
            for i in range(p0, p1):
                if culled[i]:
                    continue
                if inside[i]:
                    pts.append(uvi[starts[i] : starts[i] + counts[i]])
                else:
                    c = _clip_near(allv[starts[i] : starts[i] + counts[i]])
                    if len(c) >= 3:
                        pts.append(np.rint((c[:, :2] / c[:, 2:3] * f + Ki[:2, 2]) * 16.0).astype(np.int32))
        if len(pts):
            fill(img, pts, rgb, FILL_LINE, 4)
            if ids is not None:
                fill(ids, pts, sid, cv2.LINE_8, 4)
    for fn in dl.customs.get(len(dl.batches), ()):
        fn(img)


def _box_cover(a: np.ndarray, w: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fraction of [a − w, a + w] inside [lo, hi]."""
    return np.clip((np.minimum(a + w, hi) - np.maximum(a - w, lo)) / (2.0 * w), 0.0, 1.0)


def _box_square_wave(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean over [a − w, a + w] of the square wave +1 on [2k, 2k+1), −1 on [2k+1, 2k+2): the difference
    of its antiderivative, the triangle wave F(a) = 1 − |(a mod 2) − 1|, over the window."""

    def tri(x):
        return 1.0 - np.abs(np.mod(x, 2.0) - 1.0)

    return (tri(a + w) - tri(a - w)) / (2.0 * w)


def _paint_board(
    img: np.ndarray,
    tables: _CameraTables,
    o: np.ndarray,
    uax: np.ndarray,
    vax: np.ndarray,
    face_w: float,
    face_h: float,
    board,
    white,
    black,
) -> None:
    """Paint a chessboard exactly: the ray of every pixel of the intermediate image near the board meets
    the face plane (origin ``o``, unit axes ``uax`` right and ``vax`` up, optical frame); the pixel's
    colour is the chessboard box-filtered over the pixel's footprint there (analytically: the pattern is
    a product of two square waves). Polygon filling would put horizontal edges on whole pixel rows;
    calibration needs sub-pixel exact corners."""
    sq = board.square_m
    bw, bh = board.cols * sq, board.rows * sq
    u0, v0 = (face_w - bw) / 2.0, (face_h - bh) / 2.0
    m = board.margin_m
    rect = np.array(
        [[u0 - m, v0 - m], [u0 + bw + m, v0 - m], [u0 + bw + m, v0 + bh + m], [u0 - m, v0 + bh + m]]
    )
    pc = o + rect[:, :1] * uax + rect[:, 1:2] * vax
    Ki, (Wi, Hi) = tables.Ki, tables.size_i
    if np.all(pc[:, 2] > NEAR_M):
        uv = pc[:, :2] / pc[:, 2:3] * np.array([Ki[0, 0], Ki[1, 1]]) + Ki[:2, 2]
        x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, Wi), min(y1, Hi)
    else:
        x0, y0, x1, y1 = 0, 0, Wi, Hi
    if x1 <= x0 or y1 <= y0:
        return
    xs = (np.arange(x0, x1) - Ki[0, 2]) / Ki[0, 0]
    ys = (np.arange(y0, y1) - Ki[1, 2]) / Ki[1, 1]
    X, Y = np.meshgrid(xs, ys)
    normal = np.cross(uax, vax)
    denom = X * normal[0] + Y * normal[1] + normal[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = float(normal @ o) / denom
    valid = t > 0
    rel_x, rel_y, rel_z = X * t - o[0], Y * t - o[1], t - o[2]
    # board coordinates in squares: a along the columns, b down the rows, (0, 0) the top-left corner
    a = ((rel_x * uax[0] + rel_y * uax[1] + rel_z * uax[2]) - u0) / sq
    b = (v0 + bh - (rel_x * vax[0] + rel_y * vax[1] + rel_z * vax[2])) / sq
    a[~valid] = -1e6
    b[~valid] = -1e6
    # each pixel is a box filter over its footprint (half-widths in squares, from the local derivatives)
    wa = np.maximum(0.5 * (np.abs(np.gradient(a, axis=1)) + np.abs(np.gradient(a, axis=0))), 1e-4)
    wb = np.maximum(0.5 * (np.abs(np.gradient(b, axis=1)) + np.abs(np.gradient(b, axis=0))), 1e-4)
    wa[~valid] = 1.0
    wb[~valid] = 1.0
    ms = m / sq
    cov_in = (_box_cover(a, wa, -ms, board.cols + ms) * _box_cover(b, wb, -ms, board.rows + ms))[..., None]
    in_grid = _box_cover(a, wa, 0.0, board.cols) * _box_cover(b, wb, 0.0, board.rows)
    dark = 0.5 * (1.0 + _box_square_wave(a, wa) * _box_square_wave(b, wb))  # (i + j) even → black
    cov_black = (in_grid * dark)[..., None]
    region = img[y0:y1, x0:x1].astype(np.float32)
    white_a, black_a = np.asarray(white, np.float32), np.asarray(black, np.float32)
    out = region * (1 - cov_in) + cov_in * white_a + cov_black * (black_a - white_a)
    img[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- painter's order


def _draw_order(corners, normals, offsets, facing, cam, R_cw, t_cw, tables, opaque) -> list[int]:
    """Back-to-front order of K convex boxes: ``corners`` (K, 8, 3) world, face ``normals`` (K, 6, 3)
    and ``offsets`` (K, 6) (outside: n·p > c), ``facing`` (K, 6) faces towards the camera at ``cam`` (3,).

    For boxes whose image rectangles overlap, box a is drawn after box b when a face plane of a that
    faces the camera has all of b behind it (the plane separates the camera from b); everything else
    goes by distance, farthest first (Kahn's algorithm on a heap). Boxes wholly hidden behind an
    ``opaque`` (K,) box are left out (see :func:`_hidden`)."""
    K = len(corners)
    dist = np.linalg.norm(corners.mean(axis=1) - cam, axis=1)
    pc = corners @ R_cw.T + t_cw  # (K, 8, 3) optical frame
    Ki = tables.Ki
    z = pc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = pc[..., 0] / z * Ki[0, 0] + Ki[0, 2]
        v = pc[..., 1] / z * Ki[1, 1] + Ki[1, 2]
    behind = np.any(z <= NEAR_M, axis=1)
    big = 1e9
    u0 = np.where(behind, -big, np.min(u, axis=1))
    u1 = np.where(behind, big, np.max(u, axis=1))
    v0 = np.where(behind, -big, np.min(v, axis=1))
    v1 = np.where(behind, big, np.max(v, axis=1))
    over = (
        (u0[:, None] <= u1[None])
        & (u0[None] <= u1[:, None])
        & (v0[:, None] <= v1[None])
        & (v0[None] <= v1[:, None])
    )
    ia, ib = np.nonzero(np.triu(over, 1))
    deps: list[list[int]] = [[] for _ in range(K)]
    waiting = [0] * K  # plain lists: the loops below run per dependency
    if len(ia):

        def separating(a, b):  # (P, 6) bool: face f of a faces the camera and has all of b behind it
            side = np.matmul(normals[a], corners[b].transpose(0, 2, 1)) - offsets[a][:, :, None]
            return np.all(side <= 1e-6, axis=2) & facing[a]

        sep_ab, sep_ba = separating(ia, ib), separating(ib, ia)
        ab, ba = sep_ab.any(axis=1), sep_ba.any(axis=1)
        uvs = np.stack([u, v], axis=2)  # (K, 8, 2)
        hidden = _hidden(
            np.concatenate([ia, ib]),
            np.concatenate([ib, ia]),
            np.concatenate([sep_ab, sep_ba]),
            uvs,
            behind,
            opaque,
        )
        for a, b in zip(ia[ab & ~ba].tolist(), ib[ab & ~ba].tolist(), strict=True):  # a in front: waits for b
            deps[b].append(a)
            waiting[a] += 1
        for a, b in zip(ib[ba & ~ab].tolist(), ia[ba & ~ab].tolist(), strict=True):
            deps[b].append(a)
            waiting[a] += 1
    else:
        hidden = np.zeros(K, dtype=bool)
    dist_l = dist.tolist()
    heap = [(-dist_l[i], i) for i in range(K) if waiting[i] == 0]
    heapq.heapify(heap)
    done = [False] * K
    order: list[int] = []
    while len(order) < K:
        if not heap:  # a cycle: break it with the farthest remaining box
            rest = np.flatnonzero(~np.array(done))
            heap = [(-dist[rest[np.argmax(dist[rest])]], int(rest[np.argmax(dist[rest])]))]
        _, i = heapq.heappop(heap)
        if done[i]:
            continue
        done[i] = True
        order.append(int(i))
        for a in deps[i]:
            waiting[a] -= 1
            if waiting[a] == 0 and not done[a]:
                heapq.heappush(heap, (-dist_l[a], a))
    return [i for i in order if not hidden[i]]


# the corners (indices into _CORNER_SIGNS) of each face, in order around it
_FACE_CORNERS = np.array([[1, 3, 7, 5], [0, 2, 6, 4], [2, 3, 7, 6], [0, 1, 5, 4], [4, 5, 7, 6], [0, 1, 3, 2]])


def _hidden(a, b, sep, uvs, behind, opaque) -> np.ndarray:
    """(K,) bool: boxes wholly hidden behind one opaque face of another box. For pairs (a[p], b[p]) and
    separating faces ``sep`` (P, 6) of a (b lies behind that face's plane, the camera in front), b is
    hidden when its 8 projected corners ``uvs`` (K, 8, 2) lie inside the face's projected quad: every
    ray to b then crosses that face first. Boxes with corners behind the camera are never judged."""
    hidden = np.zeros(len(uvs), dtype=bool)
    p, f = np.nonzero(sep & (opaque[a] & ~behind[a] & ~behind[b])[:, None])
    if len(p) == 0:
        return hidden
    q = uvs[a[p][:, None], _FACE_CORNERS[f]]  # (M, 4, 2)
    pts = uvs[b[p]]  # (M, 8, 2)
    e = np.roll(q, -1, axis=1) - q
    w = pts[:, None, :, :] - q[:, :, None, :]  # (M, 4, 8, 2)
    cross = e[:, :, None, 0] * w[..., 1] - e[:, :, None, 1] * w[..., 0]
    inside = np.all(cross >= 0, axis=(1, 2)) | np.all(cross <= 0, axis=(1, 2))
    hidden[b[p][inside]] = True
    return hidden


# ---------------------------------------------------------------- boxes


def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(B, 3, 3) R = Rz(yaw)·Ry(pitch)·Rx(roll), vectorized :func:`edgefuse.geometry.rpy_to_matrix`."""
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], axis=-1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], axis=-1),
            np.stack([-sp, cp * sr, cp * cr], axis=-1),
        ],
        axis=1,
    )


_CORNER_SIGNS = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], dtype=float)


def _add_boxes(
    need_ids,
    dl,
    boxes,
    tables,
    R_cw,
    t_cw,
    cam_w,
    beta,
    night,
    shade,
    col,
    gain,
    s_normal,
    s_offset,
    s_emissive,
    lamps,
) -> None:
    """Cull the boxes, order them back to front and add their visible faces and patches to ``dl``
    (and their face planes to the surface tables)."""
    centers = np.array([b.center for b in boxes], dtype=np.float64).reshape(-1, 3)
    sizes = np.array([b.size for b in boxes], dtype=np.float64).reshape(-1, 3)
    angles = np.array([(b.yaw, b.pitch, b.roll) for b in boxes], dtype=np.float64)
    Rs = _rotations(angles[:, 0], angles[:, 1], angles[:, 2])
    half = sizes / 2.0
    radius = np.linalg.norm(half, axis=1)
    dist = np.linalg.norm(centers - cam_w, axis=1)
    keep = dist - radius < MAX_BOX_RANGE_M
    if beta > 0:  # beyond ln(512)/β a box is less than half a grey level from the airlight
        keep &= dist - radius < np.log(512.0) / beta
    keep &= radius / np.maximum(dist, 1e-3) * tables.Ki[0, 0] > 0.7  # projects to about a pixel
    cam_local = np.einsum("bji,bj->bi", Rs, cam_w - centers)
    keep &= ~np.all(np.abs(cam_local) < half, axis=1)  # the camera inside a box (its own vehicle)
    if night:
        for b in boxes:
            if b.kind in STREET_LAMP_KINDS:
                top = np.asarray(b.center, dtype=np.float64).copy()
                top[2] += float(b.size[2]) / 2.0 - 0.3
                lamps.append(top)
    kidx = np.flatnonzero(keep)
    if len(kidx) == 0:
        return
    corners_w = (
        np.einsum("bij,bkj->bki", Rs[kidx], _CORNER_SIGNS[None] * half[kidx, None, :]) + centers[kidx, None]
    )
    planes = _clip_planes(tables)
    sp = (corners_w @ R_cw.T + t_cw) @ planes[:, :3].T + planes[:, 3]  # (K, 8, 5)
    vis = ~np.any(np.all(sp < 0, axis=1), axis=1)
    kidx, corners_w = kidx[vis], corners_w[vis]
    if len(kidx) == 0:
        return
    normals_w = np.einsum("bij,fj->bfi", Rs[kidx], _F_NORMAL)  # (K, 6, 3)
    # face plane f: n·p = n·centre + the half-size along that face's axis
    offsets = np.einsum("bfi,bi->bf", normals_w, centers[kidx]) + half[kidx] @ np.abs(_F_NORMAL).T
    facing = normals_w @ cam_w - offsets > 1e-9  # (K, 6) faces towards the camera
    opaque = np.array([not _decorations(boxes[i], night)[0] for i in kidx])  # cut-out figures are not
    order = _draw_order(corners_w, normals_w, offsets, facing, cam_w, R_cw, t_cw, tables, opaque)
    # every face of every kept box at once, in the optical frame
    hs = half[kidx]  # (K, 3)
    R_c = R_cw @ Rs[kidx]  # (K, 3, 3)
    t_c = centers[kidx] @ R_cw.T + t_cw
    oc = np.einsum("kij,kfj->kfi", R_c, _F_ORIGIN[None] * hs[:, None, :]) + t_c[:, None, :]  # (K, 6, 3)
    Uc = np.transpose(R_c[:, :, _F_UAXIS] * _F_USIGN, (0, 2, 1))  # (K, 6, 3) unit axes
    Vc = np.transpose(R_c[:, :, _F_VAXIS] * _F_VSIGN, (0, 2, 1))
    fw = (2.0 * hs[:, _F_UAXIS])[..., None]
    fh = (2.0 * hs[:, _F_VAXIS])[..., None]
    quads = np.stack([oc, oc + fw * Uc, oc + fw * Uc + fh * Vc, oc + fh * Vc], axis=2)  # (K, 6, 4, 3)
    n_c = normals_w @ R_cw.T  # (K, 6, 3)
    c_c = np.einsum("kfi,kfi->kf", n_c, oc)
    if night:
        shades = np.ones(facing.shape)
    else:
        shades = gain * (AMBIENT + DIFFUSE * np.maximum(0.0, normals_w @ SUN_DIR))
    px = radius[kidx] / np.maximum(dist[kidx], 1e-3) * tables.Ki[0, 0]  # projected radius
    base = len(s_normal)
    face_sid = np.full(facing.shape, -1, dtype=np.int64)
    fo, ff = np.nonzero(facing[order])  # facing faces in drawing order
    fo = np.asarray(order)[fo]
    face_sid[fo, ff] = base + np.arange(len(fo))
    s_normal.extend(n_c[fo, ff])
    s_offset.extend(c_c[fo, ff])
    s_emissive.extend([False] * len(fo))
    mat_rgb = np.array([boxes[i].material.rgb for i in kidx], dtype=np.float64)
    rgb_faces = np.minimum(255.0, mat_rgb[:, None, :] * shades[:, :, None]).tolist()  # (K, 6, 3)
    facing_l, sid_l, shade_l, px_l = facing.tolist(), face_sid.tolist(), shades.tolist(), px.tolist()
    patch_pcs = iter(_patch_vertices(order, boxes, kidx, night, facing_l, px_l, oc, Uc, Vc))
    for oi in order:
        box = boxes[int(kidx[oi])]
        cutout, groups = _decorations(box, night)
        detailed = px_l[oi] > LOD_PATCH_PX
        # unshaded patches (one colour on every face) share a fill call across the box's faces: they
        # are drawn after all its faces, which never overlap each other (only without the id buffer)
        merged: dict | None = None if need_ids else {}
        sid = 0
        for f in range(6):
            if not facing_l[oi][f]:
                continue
            sid = sid_l[oi][f]
            if not cutout:
                dl.add(quads[oi, f], _QUAD, tuple(rgb_faces[oi][f]), sid)
            if f == 0 and box.board is not None:
                fwid, fhei = 2.0 * hs[oi, _F_UAXIS[0]], 2.0 * hs[oi, _F_VAXIS[0]]
                k0 = shades[oi, 0]
                dl.add_custom(
                    partial(
                        _paint_board,
                        tables=tables,
                        o=oc[oi, 0],
                        uax=Uc[oi, 0],
                        vax=Vc[oi, 0],
                        face_w=fwid,
                        face_h=fhei,
                        board=box.board,
                        white=col(BOARD_WHITE, k0),
                        black=col(BOARD_BLACK, k0),
                    )
                )
            if not (groups[f] and (detailed or cutout)):
                continue
            esid = None
            k = shade_l[oi][f]
            for _verts, counts, rgb, emissive, shaded in groups[f]:
                pc = next(patch_pcs)  # = o + verts[:, :1] * u + verts[:, 1:2] * v
                if merged is not None and not shaded:
                    entry = merged.setdefault(col(rgb, 1.0 if night else gain), ([], []))
                    entry[0].append(pc)
                    entry[1].append(counts)
                elif emissive:
                    if esid is None:
                        s_normal.append(n_c[oi, f])
                        s_offset.append(c_c[oi, f])
                        s_emissive.append(True)
                        esid = len(s_normal) - 1
                    dl.add(pc, counts, col(rgb, 1.0 if night else gain), esid)
                else:
                    dl.add(pc, counts, col(rgb, k if shaded else (1.0 if night else gain)), sid)
        if merged:
            for rgb, (pcs, cnts) in merged.items():
                dl.add(np.concatenate(pcs), np.concatenate(cnts), rgb, sid)


def _patch_vertices(order, boxes, kidx, night, facing_l, px_l, oc, Uc, Vc) -> list[np.ndarray]:
    """The optical-frame vertices ``o + u·verts_u + v·verts_v`` of every patch group that
    :func:`_add_boxes` draws, in its drawing order, computed in one vectorized pass (the same float
    operations as per group; ``oc``, ``Uc``, ``Vc`` (K, 6, 3) face origins and unit axes)."""
    verts, faces = [], []
    for oi in order:
        cutout, groups = _decorations(boxes[int(kidx[oi])], night)
        if not (cutout or px_l[oi] > LOD_PATCH_PX):
            continue
        for f in range(6):
            if facing_l[oi][f] and groups[f]:
                for g in groups[f]:
                    verts.append(g[0])
                    faces.append(6 * oi + f)
    if not verts:
        return []
    lens = [len(v) for v in verts]
    fidx = np.repeat(np.array(faces), lens)
    allv = np.concatenate(verts)
    o, u, v = oc.reshape(-1, 3)[fidx], Uc.reshape(-1, 3)[fidx], Vc.reshape(-1, 3)[fidx]
    pc = o + allv[:, :1] * u + allv[:, 1:2] * v
    ends = np.cumsum(lens).tolist()
    return [pc[e - n : e] for e, n in zip(ends, lens, strict=True)]


# ---------------------------------------------------------------- the renderer


def render_camera(
    scene: Scene,
    cam: CameraModel,
    T_base_cam: Transform,
    rng: np.random.Generator,
    noise_std: float = NOISE_STD_DN,
    exposure: float = 1.0,
) -> np.ndarray:
    """Render ``scene`` as seen by ``cam`` mounted at ``T_base_cam`` (optical frame → base_link).

    Returns (cam.height, cam.width, 3) uint8 RGB. ``rng`` drives the per-frame randomness (noise
    offset, rain streaks), so the same scene, camera and rng state give the same bytes.
    ``noise_std``: sensor noise in digital numbers (0 = none); ``exposure``: a gain on all light."""
    tables = camera_tables(cam)
    Wi, Hi = tables.size_i
    weather = scene.weather
    night = bool(weather.night)
    beta = float(weather.extinction) + RAIN_EXTINCTION * float(weather.rain)
    T_world_cam = scene.T_world_base @ T_base_cam
    T_cam_world = T_world_cam.inverse()
    R_cw, t_cw = T_cam_world.rotation, T_cam_world.translation
    cam_w = T_world_cam.translation
    up_cam = R_cw[:, 2]

    # sky
    if night:
        zen, hor = SKY_ZENITH_NIGHT, SKY_HORIZON_NIGHT
    elif weather.rain > 0:
        w = min(1.0, float(weather.rain))
        zen = SKY_ZENITH_DAY * (1 - w) + SKY_OVERCAST * w
        hor = SKY_HORIZON_DAY * (1 - w) + SKY_OVERCAST * w
    else:
        zen, hor = SKY_ZENITH_DAY, SKY_HORIZON_DAY
    gain = float(exposure)
    if not night and exposure != 1.0:
        zen, hor = np.clip(zen * exposure, 0, 255), np.clip(hor * exposure, 0, 255)
    img = _sky(tables, up_cam, zen, hor).copy()
    need_gbuf = night or beta > 0
    ids = np.zeros((Hi, Wi), dtype=np.uint16) if need_gbuf else None

    # surfaces: 0 = sky, 1 = ground; then one per box face (+ one per emissive patch plane)
    s_normal = [np.zeros(3), R_cw[:, 2].copy()]
    s_offset = [0.0, float(R_cw[:, 2] @ t_cw)]  # n·p = c for the world plane z = 0
    s_emissive = [True, False]

    def shade(normal_w: np.ndarray) -> float:
        if night:
            return 1.0
        return gain * (AMBIENT + DIFFUSE * max(0.0, float(normal_w @ SUN_DIR)))

    def col(rgb, k: float) -> tuple[float, float, float]:
        return (min(255.0, rgb[0] * k), min(255.0, rgb[1] * k), min(255.0, rgb[2] * k))

    dl = _DrawList()
    # ---- ground: grass square around the camera, then pavement, asphalt, markings
    g_shade = shade(np.array([0.0, 0.0, 1.0]))
    E = GROUND_EXTENT_M
    cx, cy = cam_w[0], cam_w[1]
    grass = np.array([[cx - E, cy - E, 0], [cx + E, cy - E, 0], [cx + E, cy + E, 0], [cx - E, cy + E, 0]])
    dl.add(grass @ R_cw.T + t_cw, _QUAD, col(GRASS, g_shade), 1)
    for layer, rgb, reach in zip(
        _ground_layers(scene),
        (PAVEMENT, ASPHALT, MARKING),
        (MAX_GROUND_RANGE_M, MAX_GROUND_RANGE_M, MAX_MARKING_RANGE_M),
        strict=True,
    ):
        if not len(layer.counts):
            continue
        near = np.hypot(layer.centers[:, 0] - cx, layer.centers[:, 1] - cy) - layer.radii < reach
        if not near.any():
            continue
        colour = col(rgb, g_shade)
        verts = layer.verts[np.repeat(near, layer.counts)] @ R_cw[:, :2].T + t_cw
        counts, batch = layer.counts[near], layer.batch[near]
        vsplit = np.cumsum(counts)
        for lo, hi in _runs(batch):
            dl.add(verts[(vsplit[lo - 1] if lo else 0) : vsplit[hi - 1]], counts[lo:hi], colour, 1)

    # ---- boxes, back to front
    lamps: list[np.ndarray] = []
    if scene.boxes:
        _add_boxes(
            need_gbuf,
            dl,
            scene.boxes,
            tables,
            R_cw,
            t_cw,
            cam_w,
            beta,
            night,
            shade,
            col,
            gain,
            s_normal,
            s_offset,
            s_emissive,
            lamps,
        )
    _rasterize(dl, tables, img, ids)

    # ---- fog, rain haze, night light (per pixel, from the surface-id buffer)
    if need_gbuf:
        img = _light_and_fog(
            img,
            ids,
            tables,
            np.array(s_normal),
            np.array(s_offset),
            np.array(s_emissive),
            beta,
            night,
            T_base_cam,
            gain,
            lamps,
            T_cam_world,
        )

    # ---- lens distortion
    if tables.map1 is not None:
        img = cv2.remap(img, tables.map1, tables.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    # ---- rain streaks, sensor noise
    if weather.rain > 0:
        _rain_streaks(img, float(weather.rain), rng)
    std = noise_std * (2.0 if night else 1.0)
    if std > 0:
        pos, neg = _noise_tables(cam.height, cam.width, std)
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_PAD, size=2))
        H, W = cam.height, cam.width
        cv2.add(img, pos[oy : oy + H, ox : ox + W], dst=img)
        cv2.subtract(img, neg[oy : oy + H, ox : ox + W], dst=img)
    return img


def _depth(ids: np.ndarray, tables: _CameraTables, n: np.ndarray, c: np.ndarray, step: int) -> np.ndarray:
    """Depth z (m, optical frame; inf for sky) of every ``step``-th pixel: its ray (x, y, 1) meets the plane
    n·p = c of the surface it shows."""
    i = ids[::step, ::step]
    rx, ry = tables.rays_x[::step, ::step], tables.rays_y[::step, ::step]
    denom = n[i, 0] * rx + n[i, 1] * ry + n[i, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = c[i] / denom
    z[(i == 0) | ~(z > 0)] = np.inf
    return z


def _light_and_fog(
    img, ids, tables, normals, offsets, emissive, beta, night, T_base_cam, gain, lamps, T_cam_world
) -> np.ndarray:
    """Per-pixel 3D points from the surface-id buffer → night lighting and Koschmieder fog
    I·t + A·(1 − t), t = exp(−β·d), d the distance from the camera (both at half resolution, resized)."""
    n = normals.astype(np.float32)
    c = offsets.astype(np.float32)
    if night:
        step = NIGHT_LIGHT_STEP
        light = _night_light(
            ids[::step, ::step],
            _depth(ids, tables, n, c, step),
            tables,
            step,
            n,
            emissive,
            T_base_cam,
            lamps,
            T_cam_world,
        )
        light *= float(gain)
        Hi, Wi = ids.shape
        light = cv2.resize(light, (Wi, Hi), interpolation=cv2.INTER_LINEAR)
        img = cv2.multiply(img, cv2.merge([light, light, light]), dtype=cv2.CV_8U)
    if beta > 0:
        step = FOG_STEP
        d = _depth(ids, tables, n, c, step)
        d *= tables.rays_norm[::step, ::step]
        d *= -float(beta)
        t = np.exp(d)  # sky: exp(-inf) = 0
        if step > 1:
            Hi, Wi = ids.shape
            t = cv2.resize(t, (Wi, Hi), interpolation=cv2.INTER_LINEAR)
        airlight = AIRLIGHT_NIGHT if night else AIRLIGHT_DAY
        a = np.empty_like(img)
        a[:] = np.clip(airlight * (1.0 if night else gain), 0, 255).astype(np.uint8)
        img = cv2.blendLinear(img, a, t, 1.0 - t + np.float32(1e-6))
    return img


def _night_light(ids, z, tables, step, normals, emissive, T_base_cam, lamps, T_cam_world) -> np.ndarray:
    """(h, w) float32 light (1.0 = daylight-like) at every ``step``-th pixel (surface ids ``ids``, depth
    ``z``) from the two headlight cones and the nearest street lamps; emissive surfaces and the sky get 1.0.
    A street lamp is evaluated only inside the image rectangle of its reach (STREET_LAMP_REACH_M)."""
    finite = np.isfinite(z)
    z = np.where(finite, z, 0.0).astype(np.float32)
    x = tables.rays_x[::step, ::step] * z
    y = tables.rays_y[::step, ::step] * z
    nrm = normals[ids]  # (h, w, 3) optical frame
    light = np.zeros(ids.shape, dtype=np.float32)
    h, w = ids.shape
    T_cam_base = T_base_cam.inverse()
    sources = []  # (position, direction, cos inner, cos outer, power, (r0, r1, c0, c1))
    for hl in HEADLIGHTS:
        sources.append(
            (
                T_cam_base.apply(hl[None])[0],
                T_cam_base.rotation @ HEADLIGHT_DIR,
                HEADLIGHT_COS_INNER,
                HEADLIGHT_COS_OUTER,
                HEADLIGHT_POWER,
                (0, h, 0, w),
            )
        )
    if lamps:
        cam_w = T_cam_world.inverse().translation
        near = sorted(lamps, key=lambda p: float(np.linalg.norm(p - cam_w)))[:MAX_STREET_LAMPS]
        down = T_cam_world.rotation @ np.array([0.0, 0.0, -1.0])
        R = STREET_LAMP_REACH_M
        cube = np.array([[sx, sy, sz] for sx in (-R, R) for sy in (-R, R) for sz in (-R, R)])
        Ki = tables.Ki
        for p in near:
            pc = T_cam_world.apply(p[None])[0]
            corners = pc + cube
            if np.all(corners[:, 2] < NEAR_M):
                continue
            if np.any(corners[:, 2] < NEAR_M):
                roi = (0, h, 0, w)
            else:
                u = (corners[:, 0] / corners[:, 2] * Ki[0, 0] + Ki[0, 2]) / step
                v = (corners[:, 1] / corners[:, 2] * Ki[1, 1] + Ki[1, 2]) / step
                c0, c1 = max(int(u.min()), 0), min(int(np.ceil(u.max())) + 1, w)
                r0, r1 = max(int(v.min()), 0), min(int(np.ceil(v.max())) + 1, h)
                if c1 <= c0 or r1 <= r0:
                    continue
                roi = (r0, r1, c0, c1)
            sources.append((pc, down, STREET_LAMP_COS_INNER, STREET_LAMP_COS_OUTER, STREET_LAMP_POWER, roi))
    for pos, direction, cin, cout, power, (r0, r1, c0, c1) in sources:
        px, py, pz = (float(v) for v in pos)
        dx, dy, dz = (float(v) for v in direction)
        vx = x[r0:r1, c0:c1] - px
        vy = y[r0:r1, c0:c1] - py
        vz = z[r0:r1, c0:c1] - pz
        d2 = vx * vx + vy * vy + vz * vz + 1e-3
        inv = 1.0 / np.sqrt(d2)
        cosang = (vx * dx + vy * dy + vz * dz) * inv
        cone = np.clip((cosang - float(cout)) * (1.0 / float(cin - cout)), 0.0, 1.0)
        cone = cone * cone * (3.0 - 2.0 * cone)  # smoothstep
        nr = nrm[r0:r1, c0:c1]
        lam = np.clip(-(nr[..., 0] * vx + nr[..., 1] * vy + nr[..., 2] * vz) * inv, 0.0, 1.0)
        light[r0:r1, c0:c1] += (float(power) * cone) * (0.25 + 0.75 * lam) / d2
    light = NIGHT_AMBIENT + 1.0 - np.exp(-light)  # soft saturation
    light[~finite] = 1.0
    light[emissive[ids]] = 1.0
    return light


def _rain_streaks(img: np.ndarray, rain: float, rng: np.random.Generator) -> None:
    """Short bright slanted streaks (drops in motion blur), added in place: ``600·rain`` streaks in four
    brightness levels (one anti-aliased polyline call each)."""
    H, W = img.shape[:2]
    n = int(600 * min(1.0, rain))
    if n == 0:
        return
    x0 = rng.uniform(0, W, n)
    y0 = rng.uniform(0, H, n)
    length = rng.uniform(12, 40, n)
    level = rng.integers(0, 4, n)
    p0 = np.stack([x0, y0], axis=1)
    p1 = p0 + np.stack([0.18 * length, length], axis=1)
    segs = np.round(np.stack([p0, p1], axis=1) * 16).astype(np.int32)  # (n, 2, 2), 1/16 px
    layer = np.zeros_like(img)
    for k, v in enumerate((25, 35, 48, 60)):
        cv2.polylines(layer, list(segs[level == k]), False, (v, v, v), 1, cv2.LINE_AA, 4)
    cv2.add(img, layer, dst=img)
