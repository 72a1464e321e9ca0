"""The static ground of the simulated camera: pavement strips beside the roads, asphalt, and lane markings
(3 m on / 6 m off dashes measured along the line) as polygons in the world frame (z = 0, metres), built once
per scene's roads and lanes and cached. (The grass square around the camera is the renderer's own.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefuse.sim.raycast import DASH_ON_M, DASH_PERIOD_M
from edgefuse.sim.scene import Scene

SIDEWALK_M = 3.0  # pavement strip beside each road


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
