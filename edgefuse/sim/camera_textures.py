"""Surface detail of the simulated camera's boxes: the face frames of a box, and the flat patches painted on
its faces (windows, wheels, lights, clothing, facade windows lit at random by night, lamp heads, stripes,
checkers), grouped per face into batches that can share one fill call, cached per box.

Face f of a box has an origin corner and axes U (left to right as seen from outside) and V (bottom to top),
U × V its outward normal; patches are polygons in face metres (u, v) from the face's bottom-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefuse.sim.camera_lighting import STREET_LAMP_KINDS
from edgefuse.sim.scene import WorldBox

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
        pass  # the chessboard is painted per pixel (exact corners): see camera_board._paint_board
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
