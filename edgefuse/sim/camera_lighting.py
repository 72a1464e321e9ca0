"""Light, sky and weather for the simulated camera.

- day: Lambert shading from the sun (:data:`SUN_DIR`, :data:`AMBIENT` + :data:`DIFFUSE` × cos, a gain on
  the albedo), and the sky as a gradient by ray elevation (:func:`_sky`, cached);
- per pixel from the surface-id buffer (:func:`_light_and_fog`): every pixel's depth from the plane of the
  surface it shows (:func:`_depth`), then night light from the ego's two headlight cones and the nearest
  street lamps (:func:`_night_light`; 1.0 = daylight-like) and Koschmieder fog ``I·t + A·(1 − t)``,
  t = exp(−β·d), d the distance (m) from the camera, A the airlight; both on every 2nd pixel and resized;
- rain: short bright slanted streaks on the final image (:func:`_rain_streaks`).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefuse.sim.camera_lens import _CameraTables
from edgefuse.sim.camera_raster import NEAR_M

#: Direction *towards* the sun in the world frame (elevation ≈ 50°).
SUN_DIR = np.array([-0.45, 0.40, 0.80]) / np.linalg.norm([-0.45, 0.40, 0.80])
AMBIENT = 0.45
DIFFUSE = 0.60
#: Fog airlight (the colour of infinitely thick fog) by day and by night.
AIRLIGHT_DAY = np.array([200.0, 203.0, 207.0])
AIRLIGHT_NIGHT = np.array([12.0, 13.0, 16.0])
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
