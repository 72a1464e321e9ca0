"""Vectorized ray casting against the simulator's world: oriented boxes and the ground plane z = 0.

Shared by the LiDAR and radar models (and usable by the camera for depth). All rays of a call are cast
at once; each ray may carry its own time offset ``dt_s`` from the scene time, and every box is moved to
that time with constant velocity and yaw rate (``center + velocity·dt``, ``yaw + yaw_rate·dt``) before the
ray meets it — this is what makes a spinning LiDAR's cloud motion-distorted.

Speed: everything is vectorized over rays *and* boxes. Each box's azimuth window (from its corners,
padded by its motion over the rays' time span and by the spread of the ray origins) becomes a slice of
the rays sorted by azimuth (``searchsorted``); an elevation window trims the (ray, box) pairs, and one
slab test in the boxes' local frames runs on all remaining pairs at once. Positions are handled
relative to a local reference point in float32 (≤ 0.1 mm rounding at 1 km).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgefuse.sim.scene import LaneMarking, Road, WorldBox

#: ``Hits.box_index`` of rays that hit the ground plane.
GROUND = -1
#: ``Hits.box_index`` of rays that hit nothing within range.
MISS = -2

#: Ground surface codes returned by :func:`ground_surface`.
SURFACE_OFFROAD, SURFACE_ROAD, SURFACE_MARKING = 0, 1, 2

#: Dashed lane markings: painted length and period along the polyline (m), from its first point.
DASH_ON_M, DASH_PERIOD_M = 3.0, 9.0


@dataclass(frozen=True)
class Hits:
    """The first surface each ray meets.

    ``range_m`` (N,) float32: distance along the (unit) ray, ``inf`` for a miss; ``box_index`` (N,) int32:
    index into the boxes passed, :data:`GROUND` or :data:`MISS`; ``cos_incidence`` (N,) float32: |cos| of
    the angle between the ray and the surface normal (0 for a miss); ``face`` (N,) int8: the box face hit,
    0..5 = +x, -x, +y, -y, +z, -z in the box frame, -1 for ground or miss."""

    range_m: np.ndarray
    box_index: np.ndarray
    cos_incidence: np.ndarray
    face: np.ndarray


def ego_motion(dt_s: np.ndarray, velocity_base, yaw_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose of base_link at ``dt_s`` (N,) seconds relative to a reference instant, in the reference
    base_link frame, for a constant twist (``velocity_base`` (3,) m/s in base_link, ``yaw_rate`` rad/s).

    Returns ``(yaw (N,), translation (N, 3))``: the base frame at dt is rotated by ``yaw`` about z and
    displaced by ``translation`` (an exact circular arc in x/y, linear in z)."""
    dt = np.asarray(dt_s, dtype=np.float64)
    v = np.asarray(velocity_base, dtype=np.float64).reshape(3)
    th = float(yaw_rate) * dt
    if abs(float(yaw_rate)) < 1e-9:
        s, c1 = dt, np.zeros_like(dt)  # sin(θ)/ω → dt, (1 − cos θ)/ω → 0
    else:
        s, c1 = np.sin(th) / yaw_rate, (1.0 - np.cos(th)) / yaw_rate
    tr = np.stack([v[0] * s - v[1] * c1, v[0] * c1 + v[1] * s, v[2] * dt], axis=1)
    return th, tr


def _rot_z_apply(yaw: np.ndarray, v: np.ndarray) -> np.ndarray:  # used for tilted boxes
    """Rotate (N, 3) vectors by per-row angles ``yaw`` (N,) about z."""
    c, s = np.cos(yaw).astype(v.dtype), np.sin(yaw).astype(v.dtype)
    out = np.empty_like(v)
    out[:, 0] = c * v[:, 0] - s * v[:, 1]
    out[:, 1] = s * v[:, 0] + c * v[:, 1]
    out[:, 2] = v[:, 2]
    return out


def _slab(o: tuple, d: tuple, half: tuple):
    """Rays vs boxes [-half, half] in the box frame, per axis k = 0, 1, 2: ``o[k]``, ``d[k]``, ``half[k]``
    (N,) float32 arrays (origins, unit directions, half sizes). Returns (t (N,) float32, inf = miss;
    face (N,) int8; |cos incidence| (N,) float32)."""
    tn, tf, dk = [], [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            inv = np.float32(1.0) / d[k]
            a = (-half[k] - o[k]) * inv
            b = (half[k] - o[k]) * inv
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            par = d[k] == 0  # parallel to the slab: inside → no limit, outside → no hit
            if par.any():
                inside = np.abs(o[k]) <= half[k]
                lo = np.where(par, np.where(inside, -np.inf, np.inf), lo).astype(np.float32)
                hi = np.where(par, np.where(inside, np.inf, -np.inf), hi).astype(np.float32)
            tn.append(lo)
            tf.append(hi)
    tnear = np.maximum(np.maximum(tn[0], tn[1]), tn[2])
    tfar = np.minimum(np.minimum(tf[0], tf[1]), tf[2])
    hit = (tnear <= tfar) & (tnear > 0)  # rays starting inside a box see nothing of it
    t = np.where(hit, tnear, np.float32(np.inf))
    axis = np.where(tn[0] == tnear, 0, np.where(tn[1] == tnear, 1, 2))
    dk = np.where(axis == 0, d[0], np.where(axis == 1, d[1], d[2]))
    face = (2 * axis + (dk > 0)).astype(np.int8)  # entering against the +axis normal when d_k < 0
    return t, face, np.abs(dk).astype(np.float32)


def cast_rays(
    origins: np.ndarray,
    directions: np.ndarray,
    boxes: Sequence[WorldBox],
    dt_s: np.ndarray | None = None,
    max_range: float = 200.0,
    min_range: float = 0.0,
    ground: bool = True,
) -> Hits:
    """Cast N rays in the world frame against ``boxes`` (each moved to its ray's time) and the ground.

    ``origins`` (N, 3) m and ``directions`` (N, 3) unit vectors, world frame (any float dtype);
    ``dt_s`` (N,) seconds of each ray relative to the scene time (None = all 0). A first surface nearer
    than ``min_range`` or farther than ``max_range`` (m) gives a miss (a too-near surface still blocks
    the ray). Returns :class:`Hits`."""
    o64 = np.asarray(origins, dtype=np.float64)
    d = np.asarray(directions, dtype=np.float32)
    if o64.ndim != 2 or o64.shape[1] != 3 or d.shape != o64.shape:
        raise ValueError(
            f"cast_rays: expected origins and directions of shape (N, 3), got {o64.shape}, {d.shape}"
        )
    n = o64.shape[0]
    dt = np.zeros(n, np.float32) if dt_s is None else np.asarray(dt_s, dtype=np.float32).reshape(n)
    ref = o64.mean(axis=0) if n else np.zeros(3)
    o = (o64 - ref).astype(np.float32)
    best = np.full(n, np.inf, np.float32)
    index = np.full(n, MISS, np.int32)
    cosi = np.zeros(n, np.float32)
    face = np.full(n, -1, np.int8)
    if n == 0:
        return Hits(best, index, cosi, face)

    if boxes:
        P = _BoxArrays.of(boxes, ref)
        ray, box = _chunked_pairs(P, o, d, dt, max_range)
        tilted = P.tilted[box]
        if not tilted.any():
            t, f, c = _slab_upright(P, o, d, dt, ray, box)
        else:
            t = np.full(ray.size, np.inf, np.float32)
            f = np.full(ray.size, -1, np.int8)
            c = np.zeros(ray.size, np.float32)
            u = np.flatnonzero(~tilted)
            t[u], f[u], c[u] = _slab_upright(P, o, d, dt, ray[u], box[u])
            for b in np.unique(box[tilted]):
                sel = np.flatnonzero(box == b)
                t[sel], f[sel], c[sel] = _hit_box(boxes[b], ref, o[ray[sel]], d[ray[sel]], dt[ray[sel]])
        h = np.flatnonzero(t < np.inf)
        if h.size:
            ray_h, t_h = ray[h], t[h]
            np.minimum.at(best, ray_h, t_h)
            win = h[t_h == best[ray_h]]  # the nearest pair of each ray (ties: either box)
            r = ray[win]
            index[r], face[r], cosi[r] = box[win], f[win], c[win]

    if ground:
        dz = d[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            tg = -(o[:, 2] + np.float32(ref[2])) / dz
        g = (dz < 0) & (tg > 0) & (tg < best)
        best[g] = tg[g]
        index[g] = GROUND
        face[g] = -1
        cosi[g] = -dz[g]

    far = (best > max_range) | (best < min_range)  # a surface too near blocks the ray: no return
    best[far] = np.inf
    index[far] = MISS
    face[far] = -1
    cosi[far] = 0.0
    return Hits(best, index, cosi, face)


@dataclass(frozen=True)
class _BoxArrays:
    """The boxes as arrays, positions relative to the local reference point."""

    center: np.ndarray  # (B, 3) float64
    half: np.ndarray  # (B, 3) float32
    yaw: np.ndarray  # (B,)
    yaw_rate: np.ndarray  # (B,)
    velocity: np.ndarray  # (B, 3)
    roll: np.ndarray  # (B,)
    pitch: np.ndarray  # (B,)
    tilted: np.ndarray  # (B,) bool
    center32: np.ndarray  # (B, 3) float32
    velocity32: np.ndarray  # (B, 3) float32
    moving: bool  # any box with a velocity
    cos_yaw: np.ndarray  # (B,) float32
    sin_yaw: np.ndarray  # (B,) float32

    @staticmethod
    def of(boxes: Sequence[WorldBox], ref: np.ndarray) -> _BoxArrays:
        center = np.array([b.center for b in boxes], np.float64).reshape(-1, 3) - ref
        half = 0.5 * np.array([b.size for b in boxes], np.float32).reshape(-1, 3)
        attrs = np.array([(b.yaw, b.yaw_rate, b.roll, b.pitch) for b in boxes], np.float64).reshape(-1, 4)
        vel = np.array([b.velocity for b in boxes], np.float64).reshape(-1, 3)
        tilted = (attrs[:, 2] != 0) | (attrs[:, 3] != 0)
        return _BoxArrays(
            center,
            half,
            attrs[:, 0],
            attrs[:, 1],
            vel,
            attrs[:, 2],
            attrs[:, 3],
            tilted,
            center.astype(np.float32),
            vel.astype(np.float32),
            bool(np.any(vel != 0)),
            np.cos(attrs[:, 0]).astype(np.float32),
            np.sin(attrs[:, 0]).astype(np.float32),
        )


#: rays per culling chunk: the rays are culled in groups of consecutive time, so each group's windows
#: are padded only by the motion within it (a LiDAR sweep: 8 groups of 12.5 ms)
_CHUNK_RAYS = 7232


def _chunked_pairs(P: _BoxArrays, o, d, dt, max_range) -> tuple[np.ndarray, np.ndarray]:
    n = o.shape[0]
    k = int(np.ceil(n / _CHUNK_RAYS))
    if k <= 1 or float(dt.max()) == float(dt.min()):
        return _candidate_pairs(P, o, d, dt, max_range, _box_shape(P))
    order = np.argsort(dt, kind="stable")
    shape = _box_shape(P)  # chunk-independent: computed once per sweep
    rays, boxes = [], []
    for part in np.array_split(order, k):
        r, b = _candidate_pairs(P, o[part], d[part], dt[part], max_range, shape)
        rays.append(part[r])
        boxes.append(b)
    return np.concatenate(rays), np.concatenate(boxes)


_CORNER_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
)


@dataclass(frozen=True)
class _BoxShape:
    """The time-independent part of the boxes' culling geometry (yaw rotates about z, so norms and
    heights of the corner offsets do not depend on it)."""

    offsets: np.ndarray  # (B, 8, 3) corner offsets from the centre, Ry(pitch)·Rx(roll) applied, no yaw
    r_xy: np.ndarray  # (B,) largest horizontal corner distance from the centre (m)
    r3: np.ndarray  # (B,) largest corner distance from the centre (m)
    z_lo: np.ndarray  # (B,) lowest corner offset in z (m)
    z_hi: np.ndarray  # (B,) highest corner offset in z (m)
    half: np.ndarray  # (B, 3) float64 half sizes (m)
    speed_xy: np.ndarray  # (B,) horizontal speed (m/s)


def _box_shape(P: _BoxArrays) -> _BoxShape:
    cp, sp, cr, sr = np.cos(P.pitch), np.sin(P.pitch), np.cos(P.roll), np.sin(P.roll)
    half = P.half.astype(np.float64)
    lx, ly, lz = (_CORNER_SIGNS[None] * half[:, None, :]).transpose(2, 0, 1)  # each (B, 8)
    cp, sp, cr, sr = cp[:, None], sp[:, None], cr[:, None], sr[:, None]
    ox = cp * lx + sp * sr * ly + sp * cr * lz
    oy = cr * ly - sr * lz
    oz = -sp * lx + cp * sr * ly + cp * cr * lz
    offsets = np.stack([ox, oy, oz], -1)
    r_xy = np.sqrt(offsets[:, :, 0] ** 2 + offsets[:, :, 1] ** 2).max(1)
    r3 = np.sqrt((offsets**2).sum(-1)).max(1)
    speed_xy = np.linalg.norm(P.velocity[:, :2], axis=1)
    return _BoxShape(offsets, r_xy, r3, offsets[:, :, 2].min(1), offsets[:, :, 2].max(1), half, speed_xy)


def _candidate_pairs(P: _BoxArrays, o, d, dt, max_range, shape: _BoxShape) -> tuple[np.ndarray, np.ndarray]:
    """(ray, box) index pairs whose ray direction falls in the box's (motion- and origin-padded)
    azimuth and elevation window, seen from the rays' mean origin. Fully vectorized over boxes;
    ``shape`` is :func:`_box_shape` of ``P``."""
    dt_lo, dt_hi = float(dt.min()), float(dt.max())
    dt_mid, dt_half = 0.5 * (dt_lo + dt_hi), 0.5 * (dt_hi - dt_lo)
    o64 = o.astype(np.float64)
    # any centre works (the windows are padded by the origins' spread around it): the middle of the first
    # and last origin is about the mean for rays in time order, and far cheaper than a column mean
    shift = 0.5 * (o64[0] + o64[-1])
    sq = o64 - shift
    sq *= sq
    spread = float(np.sqrt(((sq[:, 0] + sq[:, 1]) + sq[:, 2]).max()))  # = sum(axis=1), faster on (N, 3)
    # box corners at mid time (B, 8, 3), with the full rotation Rz(yaw)·Ry(pitch)·Rx(roll)
    yaw = P.yaw + P.yaw_rate * dt_mid
    cy, sy = np.cos(yaw), np.sin(yaw)
    cen = P.center + P.velocity * dt_mid - shift
    ox, oy = shape.offsets[:, :, 0], shape.offsets[:, :, 1]
    corner_x = cen[:, 0:1] + (cy[:, None] * ox - sy[:, None] * oy)
    corner_y = cen[:, 1:2] + (sy[:, None] * ox + cy[:, None] * oy)
    # growth over the time span: translation, rotation of the corners, spread of the ray origins
    r_xy = shape.r_xy
    grow = shape.speed_xy * dt_half + np.abs(P.yaw_rate) * dt_half * r_xy
    grow = grow + spread + 1e-3
    grow_z = np.abs(P.velocity[:, 2]) * dt_half + spread + 1e-3
    dist_xy = np.hypot(cen[:, 0], cen[:, 1])
    # horizontal distance from the reference point to the footprint: exact rectangle for upright boxes
    # (long rails and walls beside the road), the bounding circle for tilted ones
    qx = np.abs(cy * cen[:, 0] + sy * cen[:, 1])
    qy = np.abs(-sy * cen[:, 0] + cy * cen[:, 1])
    half = shape.half
    d_rect = np.hypot(np.maximum(qx - half[:, 0], 0.0), np.maximum(qy - half[:, 1], 0.0))
    d_fp = np.where(P.tilted, np.maximum(dist_xy - r_xy, 0.0), d_rect)
    d_min = np.maximum(d_fp - grow, 0.0)
    d_max = dist_xy + r_xy + grow
    z_lo = cen[:, 2] + shape.z_lo - grow_z
    z_hi = cen[:, 2] + shape.z_hi + grow_z
    near = np.linalg.norm(cen, axis=1) - shape.r3 - grow - grow_z <= max_range
    el_hi = np.arctan2(z_hi, np.where(z_hi > 0, d_min, d_max))
    el_lo = np.arctan2(z_lo, np.where(z_lo < 0, d_min, d_max))
    # azimuth window from the corners (exact for a convex box seen from outside its footprint)
    az_c = np.arctan2(cen[:, 1], cen[:, 0])
    a = np.arctan2(corner_y, corner_x) - az_c[:, None]
    a = (a + np.pi) % (2 * np.pi) - np.pi
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = grow / d_fp
    outside = (d_min > 0) & (ratio < 1)  # then every ray origin is outside the (moving) footprint
    pad = np.arcsin(np.clip(np.where(outside, ratio, 0.0), 0.0, 1.0)) + 1e-4
    lo = az_c + a.min(1) - pad
    hi = az_c + a.max(1) + pad
    full = ~outside | (hi - lo >= 2 * np.pi)
    lo = np.where(full, -np.pi, lo)
    hi = np.where(full, np.pi, hi)
    shift = np.floor((lo + np.pi) / (2 * np.pi)) * 2 * np.pi
    lo, hi = lo - shift, hi - shift
    bidx = np.flatnonzero(near)
    wrap = bidx[hi[bidx] > np.pi]
    w_box = np.concatenate([bidx, wrap])
    w_lo = np.concatenate([lo[bidx], np.full(wrap.size, -np.pi)])
    w_hi = np.concatenate([np.minimum(hi[bidx], np.pi), hi[wrap] - 2 * np.pi])
    # rays sorted by azimuth: each window is a slice
    az = np.arctan2(d[:, 1], d[:, 0]).astype(np.float64)
    order = np.argsort(az, kind="stable")
    az_sorted = az[order]
    i0 = np.searchsorted(az_sorted, w_lo, side="left")
    i1 = np.searchsorted(az_sorted, w_hi, side="right")
    counts = np.maximum(i1 - i0, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    box = np.repeat(w_box, counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(total) - np.repeat(starts - i0, counts)
    ray = order[pos]
    sin_el = d[ray, 2]
    keep = (sin_el >= np.sin(np.clip(el_lo - 1e-4, -np.pi / 2, np.pi / 2)).astype(np.float32)[box]) & (
        sin_el <= np.sin(np.clip(el_hi + 1e-4, -np.pi / 2, np.pi / 2)).astype(np.float32)[box]
    )
    return ray[keep], box[keep]


def _slab_upright(P: _BoxArrays, o, d, dt, ray, box):
    """Slab test of (ray, box) pairs for boxes with roll = pitch = 0, each box at its ray's time.

    Works per coordinate on (M,) gathers (no (M, 3) temporaries); the float32 arithmetic is the same,
    operation by operation, as ``o[ray] − center[box] − dt[ray]·velocity[box]`` on rows."""
    dt_r = dt[ray] if P.moving else None
    rel = []
    for k in range(3):
        r = o[:, k][ray]
        r -= P.center32[:, k][box]
        if dt_r is not None:
            r -= dt_r * P.velocity32[:, k][box]
        rel.append(r)
    c, s = P.cos_yaw[box], P.sin_yaw[box]
    turning = np.flatnonzero(P.yaw_rate[box] != 0) if np.any(P.yaw_rate) else ()
    if len(turning):
        b, r = box[turning], ray[turning]
        yaw = (P.yaw[b] + P.yaw_rate[b] * dt[r]).astype(np.float32)
        c[turning], s[turning] = np.cos(yaw), np.sin(yaw)
    dr = [d[:, k][ray] for k in range(3)]
    ob = (c * rel[0] + s * rel[1], c * rel[1] - s * rel[0], rel[2])
    db = (c * dr[0] + s * dr[1], c * dr[1] - s * dr[0], dr[2])
    return _slab(ob, db, tuple(P.half[:, k][box] for k in range(3)))


def _hit_box(box: WorldBox, ref, o, d, dt):
    """Slab test of rays (local float32 origins ``o``, dirs ``d``, times ``dt``) against one moving box."""
    half = (0.5 * np.asarray(box.size, dtype=np.float32)).astype(np.float32)
    c0 = (np.asarray(box.center, dtype=np.float64) - ref).astype(np.float32)
    vel = np.asarray(box.velocity, dtype=np.float32)
    rel = o - c0
    if np.any(vel != 0):
        rel = rel - dt[:, None] * vel[None, :]
    R_pr = _rp_matrix(box.roll, box.pitch)
    if box.yaw_rate != 0.0:
        yaw = -(np.float32(box.yaw) + np.float32(box.yaw_rate) * dt)
        ob, db = _rot_z_apply(yaw, rel), _rot_z_apply(yaw, d)
        if R_pr is not None:
            ob, db = ob @ R_pr, db @ R_pr  # row vectors: v @ R == R^T v
    else:
        cy, sy = np.cos(box.yaw), np.sin(box.yaw)
        Rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        R = Rz if R_pr is None else Rz @ R_pr
        R = R.astype(np.float32)
        ob, db = rel @ R, d @ R
    return _slab(tuple(ob.T), tuple(db.T), tuple(half))


def _rp_matrix(roll: float, pitch: float) -> np.ndarray | None:
    """Ry(pitch)·Rx(roll) as float32 (3, 3), or None when both are 0."""
    if roll == 0.0 and pitch == 0.0:
        return None
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    Ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return (Ry @ Rx).astype(np.float32)


# ---------------------------------------------------------------- ground surface


def ground_surface(
    xy: np.ndarray,
    lanes: Sequence[LaneMarking],
    roads: Sequence[Road],
    resolution_m: float = 0.05,
) -> np.ndarray:
    """Classify ground points ``xy`` (N, 2) world m: :data:`SURFACE_MARKING` on a painted line (dashes
    3 m on / 6 m off from the polyline's first point), else :data:`SURFACE_ROAD` within a road's half
    width of its centreline, else :data:`SURFACE_OFFROAD`. Returns (N,) int8.

    Rasterized with OpenCV (thick polylines) on a grid of ``resolution_m`` covering the points' bounding
    box, so lines are exact to about half a cell; keep the points local (the grid's size follows their
    extent)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    out = np.zeros(xy.shape[0], np.int8)
    if xy.shape[0] == 0 or not (lanes or roads):
        return out
    res = float(resolution_m)
    lo = xy.min(0) - 2 * res
    size = np.ceil((xy.max(0) + 2 * res - lo) / res).astype(int) + 1
    if size[0] * size[1] > 64_000_000:
        raise ValueError(f"ground_surface: points span {size * res} m, too large a grid at {res} m")
    canvas = np.zeros((int(size[1]), int(size[0])), np.uint8)  # rows = y, cols = x
    frac = 4  # cv2 sub-pixel bits: 1/16 cell
    scale = (1 << frac) / res
    lo_pad, hi_pad = lo, lo + size * res

    def draw(lane, half_width: float, code: int) -> None:
        segs, smin, smax, pmin, pmax = _lane_geometry(lane)
        if segs.shape[0] == 0:
            return
        if np.any(pmax + half_width < lo_pad) or np.any(pmin - half_width > hi_pad):
            return
        # only the segments that can touch the grid (a polyline drawn as its separate segments gives the
        # same cells: OpenCV caps every vertex of an open polyline anyway, in one colour)
        reach = half_width + 4 * res
        near = np.flatnonzero(
            (smax[:, 0] + reach >= lo_pad[0])
            & (smax[:, 1] + reach >= lo_pad[1])
            & (smin[:, 0] - reach <= hi_pad[0])
            & (smin[:, 1] - reach <= hi_pad[1])
        )
        if near.size == 0:
            return
        thick = max(1, int(round(2 * half_width / res)))
        # (K, 2, 2) segments; cell centres at lo + (i + 0.5)·res
        q = np.rint((segs[near] - lo - 0.5 * res) * scale).astype(np.int32)
        cv2.polylines(canvas, q, False, int(code), thick, cv2.LINE_8, frac)

    for road in roads:
        draw(road, road.half_width, SURFACE_ROAD)
    for lane in lanes:
        draw(lane, 0.5 * lane.width, SURFACE_MARKING)
    ij = np.floor((xy - lo) / res).astype(np.int64)
    return canvas[ij[:, 1], ij[:, 0]].astype(np.int8)


_LANE_CACHE: dict[int, tuple] = {}


def _lane_geometry(lane: LaneMarking | Road) -> tuple[np.ndarray, ...]:
    """(segments (K, 2, 2), segment bbox min (K, 2), max (K, 2), bbox min (2,), bbox max (2,)) of a lane or
    road: its polyline's segments, or its painted dash pieces. Cached per object (worlds reuse their
    static lanes from scene to scene; the cache keeps the object alive so its id stays unique, and is
    dropped when it grows large)."""
    hit = _LANE_CACHE.get(id(lane))
    if hit is not None and hit[0] is lane:
        return hit[1:]
    pts = np.asarray(lane.points, float).reshape(-1, 2)
    if getattr(lane, "dashed", False):
        segs = _dash_segments(pts)
    elif pts.shape[0] >= 2:
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
    else:
        segs = np.zeros((0, 2, 2))
    smin, smax = segs.min(axis=1), segs.max(axis=1)
    flat = segs.reshape(-1, 2)
    lo = flat.min(0) if flat.size else np.full(2, np.inf)
    hi = flat.max(0) if flat.size else np.full(2, -np.inf)
    if len(_LANE_CACHE) > 4096:
        _LANE_CACHE.clear()
    _LANE_CACHE[id(lane)] = (lane, segs, smin, smax, lo, hi)
    return segs, smin, smax, lo, hi


def _dash_segments(pts: np.ndarray) -> np.ndarray:
    """The painted pieces of a dashed polyline as (K, 2, 2) segments: the polyline split at every dash
    boundary (arc length 9k and 9k + 3 m), keeping the pieces whose middle is painted."""
    if pts.shape[0] < 2:
        return np.zeros((0, 2, 2))
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*(pts[1:] - pts[:-1]).T))])
    k = np.arange(int(s[-1] // DASH_PERIOD_M) + 1) * DASH_PERIOD_M
    cuts = np.concatenate([k, k + DASH_ON_M])
    s_all = np.unique(np.concatenate([s, cuts[cuts < s[-1]]]))
    p_all = np.stack([np.interp(s_all, s, pts[:, 0]), np.interp(s_all, s, pts[:, 1])], 1)
    mid = 0.5 * (s_all[1:] + s_all[:-1])
    on = np.mod(mid, DASH_PERIOD_M) < DASH_ON_M
    return np.stack([p_all[:-1][on], p_all[1:][on]], 1)
