"""The simulated camera: renders a :class:`~edgefuse.sim.scene.Scene` into an RGB image.

One frame, in this order (all OpenCV rasterization, numpy only for small per-polygon arrays):

1. A *pinhole* intermediate image (same focal length as the camera, large enough to cover the
   distorted image; for fisheye a lower focal length and rays up to
   :data:`~edgefuse.sim.camera_lens.FISHEYE_MAX_THETA_RAD`) is started from a cached sky gradient (by ray
   elevation).
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

Where the steps live: :mod:`~edgefuse.sim.camera_lens` (the intermediate camera and the remap tables),
:mod:`~edgefuse.sim.camera_ground` (road and marking polygons), :mod:`~edgefuse.sim.camera_boxes` (box
culling, painter's order, faces), :mod:`~edgefuse.sim.camera_textures` (face patches),
:mod:`~edgefuse.sim.camera_board` (the chessboard), :mod:`~edgefuse.sim.camera_raster` (clipping and filling),
:mod:`~edgefuse.sim.camera_lighting` (sun, sky, night light, fog, rain streaks). This module: the sensor,
:func:`render_camera`, with its look constants and sensor noise.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefuse.geometry import CameraModel, Transform
from edgefuse.sim.camera_boxes import _add_boxes
from edgefuse.sim.camera_ground import _ground_layers, _runs
from edgefuse.sim.camera_lens import camera_tables
from edgefuse.sim.camera_lighting import AMBIENT, DIFFUSE, SUN_DIR, _light_and_fog, _rain_streaks, _sky
from edgefuse.sim.camera_raster import _QUAD, _DrawList, _rasterize
from edgefuse.sim.scene import Scene

# ---------------------------------------------------------------- look (constants, not config)

SKY_ZENITH_DAY = np.array([70.0, 125.0, 205.0])
SKY_HORIZON_DAY = np.array([190.0, 208.0, 228.0])
SKY_ZENITH_NIGHT = np.array([3.0, 4.0, 10.0])
SKY_HORIZON_NIGHT = np.array([14.0, 16.0, 26.0])
SKY_OVERCAST = np.array([150.0, 155.0, 162.0])
GRASS = (86, 118, 58)
PAVEMENT = (152, 150, 144)
ASPHALT = (72, 72, 76)
MARKING = (235, 235, 228)
GROUND_EXTENT_M = 1000.0  # the ground square around the camera
MAX_MARKING_RANGE_M = 150.0
MAX_GROUND_RANGE_M = 400.0
#: Rain adds a little extinction (1/m per unit rain intensity) on top of fog.
RAIN_EXTINCTION = 0.004
NOISE_STD_DN = 2.0


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
