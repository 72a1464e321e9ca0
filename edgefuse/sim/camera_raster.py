"""Polygon rasterization for the simulated camera: the draw list (batches of polygons in drawing order, each
batch one colour and one surface id), clipping against the near plane, culling outside a guard band around
the image, and the anti-aliased ``cv2.fillPoly`` calls (1/16 px vertex precision) into the intermediate image
and the surface-id buffer.

Vertices are (N, 3) metres in the camera optical frame (z forward, x right, y down); pixels are those of the
intermediate pinhole image of :mod:`edgefuse.sim.camera_lens`.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgefuse.sim.camera_lens import _CameraTables

NEAR_M = 0.05
GUARD = 3.0  # guard band: polygons wholly beyond 3 image sizes outside an image edge are dropped
FILL_LINE = cv2.LINE_AA  # anti-aliased polygon edges


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
