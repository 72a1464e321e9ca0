"""Planar paths of the simulated world: :class:`Path2D`, a dense polyline (xy in m at cumulative arc length s
in m, unwrapped headings in rad; closed paths wrap), built from straight and arc segments (:func:`build_path`,
:func:`rounded_rect`). Every road outline, lane and mover of the world follows one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ================================================================ paths


def _clamp(x: np.ndarray, lo, hi) -> np.ndarray:
    """``np.clip(x, lo, hi)`` without its Python-level overhead (called per agent per scene)."""
    return np.minimum(np.maximum(x, lo), hi)


@dataclass(frozen=True)
class Path2D:
    """A planar path: ``xy`` (K, 2) m at cumulative arc length ``s`` (K,) m (``s[0] = 0``) with unwrapped
    ``heading`` (K,) rad. A ``closed`` path's last point equals its first; s wraps modulo its length."""

    s: np.ndarray
    xy: np.ndarray
    heading: np.ndarray
    closed: bool = False

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Arc length(s) (N,) → xy (N, 2), heading (N,), unit chord direction (N, 2), curvature (N,) 1/m.

        Open paths continue straight beyond their ends."""
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        L = self.length
        if self.closed:
            s = np.mod(s, L)
        # (take() instead of fancy indexing: the same values, without its overhead on small index arrays)
        i = _clamp(self.s.searchsorted(s, side="right") - 1, 0, len(self.s) - 2)
        i1 = i + 1
        s_i = self.s.take(i)
        ds = self.s.take(i1) - s_i
        f = (s - s_i) / ds
        xy_i = self.xy.take(i, axis=0)
        chord = (self.xy.take(i1, axis=0) - xy_i) / ds[:, None]
        xy = xy_i + chord * (f * ds)[:, None]
        h_i = self.heading.take(i)
        dh = self.heading.take(i1) - h_i
        if not self.closed:
            f = _clamp(f, 0.0, 1.0)  # beyond the ends: keep the end heading
        heading = h_i + f * dh
        curvature = dh / ds
        if not self.closed:
            curvature = np.where((s < 0) | (s > L), 0.0, curvature)
        return xy, heading, chord, curvature

    def offset(self, d: float) -> Path2D:
        """The parallel path ``d`` m to the left (negative = right), re-measured."""
        n = np.stack([-np.sin(self.heading), np.cos(self.heading)], axis=1)
        return _path_from_points(self.xy + d * n, self.heading, self.closed)

    def reversed(self) -> Path2D:
        """The same curve driven the other way."""
        return _path_from_points(self.xy[::-1].copy(), self.heading[::-1] + np.pi, self.closed)


def _path_from_points(xy: np.ndarray, heading: np.ndarray, closed: bool) -> Path2D:
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    xy, heading = xy[keep], heading[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    return Path2D(s, xy, np.unwrap(heading), closed)


def build_path(start, heading: float, segments, step: float = 0.25, closed: bool = False) -> Path2D:
    """A path from ``start`` (x, y) and ``heading`` rad through ``segments``: ``("straight", length_m)`` or
    ``("arc", radius_m, angle_rad)`` (positive angle = left turn), sampled every ``step`` m."""
    pts = [np.asarray(start, dtype=np.float64)]
    hs = [float(heading)]
    p, h = pts[0], float(heading)
    for seg in segments:
        if seg[0] == "straight":
            n = max(1, int(math.ceil(seg[1] / step)))
            u = np.linspace(0, seg[1], n + 1)[1:]
            d = np.array([math.cos(h), math.sin(h)])
            new = p + u[:, None] * d
            pts.extend(new)
            hs.extend([h] * n)
            p = new[-1]
        elif seg[0] == "arc":
            r, ang = float(seg[1]), float(seg[2])
            n = max(2, int(math.ceil(abs(ang) * r / step)))
            sign = 1.0 if ang > 0 else -1.0
            c = p + sign * r * np.array([-math.sin(h), math.cos(h)])
            a = h + np.linspace(0, ang, n + 1)[1:]
            new = c + sign * r * np.stack([np.sin(a), -np.cos(a)], axis=1)
            pts.extend(new)
            hs.extend(a.tolist())
            p, h = new[-1], float(a[-1])
        else:
            raise ValueError(f"build_path: unknown segment {seg!r}")
    xy = np.asarray(pts)
    if closed:
        xy[-1] = xy[0]
    return _path_from_points(xy, np.asarray(hs), closed)


def rounded_rect(width: float, height: float, radius: float, origin=(0.0, 0.0)) -> Path2D:
    """A closed counter-clockwise rounded rectangle whose bottom straight starts at ``origin``, heading +x:
    straights of ``width`` and ``height`` m joined by quarter circles of ``radius`` m."""
    q = math.pi / 2
    return build_path(
        origin,
        0.0,
        [
            ("straight", width),
            ("arc", radius, q),
            ("straight", height),
            ("arc", radius, q),
            ("straight", width),
            ("arc", radius, q),
            ("straight", height),
            ("arc", radius, q),
        ],
        step=0.1,
        closed=True,
    )
