"""Building blocks shared by the scenario builders (:mod:`~edgefuse.sim.world_town`,
:mod:`~edgefuse.sim.world_highway`, :mod:`~edgefuse.sim.world_calibration`): the per-stream seed offset, the
build-time conflict check that keeps agents from driving through each other (:class:`_Conflicts`), the
ego's periodic lap profile, lane markings parallel to a path and the static-box shorthand (metres, radians).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from edgefuse.sim.scene import LaneMarking, WorldBox
from edgefuse.sim.world_motion import Agent, SpeedProfile
from edgefuse.sim.world_paths import Path2D

_RNG_WORLD = 1000  # seed + constant: the per-stream seeds of the scenario builders


# ================================================================ conflict check


class _Conflicts:
    """Greedy acceptance of agents whose footprints (3 discs along the length) never overlap an accepted
    one at the sampled times. Accepted footprints live in one growing array; per-chunk bounding boxes
    pick the few (agent, time chunk) pairs that need the disc test."""

    CHUNK = 16  # samples per chunk

    def __init__(self, times: np.ndarray):
        self.t = times
        self.k = int(math.ceil(len(times) / self.CHUNK))
        self.n = 0
        self.discs = np.full((64, self.k * self.CHUNK, 3, 2), np.nan, np.float32)  # NaN where inactive
        self.radii = np.zeros(64, np.float32)
        self.bbox = np.zeros((64, self.k, 4), np.float32)  # per chunk: xmin ymin xmax ymax (+ radius)

    def _footprint(self, xy, yaw, active, length, width, forward=0.0):
        d = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
        offs = np.array([-1.0, 0.0, 1.0]) * max(length / 2 - width / 2, 0.0) + forward
        c = np.full((self.k * self.CHUNK, 3, 2), np.nan, np.float32)
        c[: len(xy)] = xy[:, None, :] + offs[None, :, None] * d[:, None, :]
        c[: len(xy)][~active] = np.nan
        r = width / 2
        ch = c.reshape(self.k, -1, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chunks: inactive
            lo = np.nanmin(ch, axis=1) - r
            hi = np.nanmax(ch, axis=1) + r
        empty = np.isnan(lo[:, 0])
        lo[empty], hi[empty] = np.inf, -np.inf
        return c, r, np.concatenate([lo, hi], axis=1)

    def _push(self, c, r, bbox):
        if self.n == len(self.radii):
            grow = len(self.radii)
            self.discs = np.concatenate(
                [self.discs, np.full((grow,) + self.discs.shape[1:], np.nan, np.float32)]
            )
            self.radii = np.concatenate([self.radii, np.zeros(grow, np.float32)])
            self.bbox = np.concatenate([self.bbox, np.zeros((grow,) + self.bbox.shape[1:], np.float32)])
        self.discs[self.n], self.radii[self.n], self.bbox[self.n] = c, r, bbox
        self.n += 1

    def add_fixed(self, xy, yaw, active, length, width, forward=0.0):
        self._push(*self._footprint(xy, yaw, active, length, width, forward))

    def try_add(self, agent: Agent, margin: float = 0.4) -> bool:
        xy, yaw, _, _, active = agent.state(self.t)
        c, r, bb = self._footprint(xy, yaw, active, float(agent.size[0]), float(agent.size[1]))
        n = self.n
        if n:
            B = self.bbox[:n]
            hit = (
                (B[:, :, 0] <= bb[None, :, 2] + margin)
                & (B[:, :, 2] >= bb[None, :, 0] - margin)
                & (B[:, :, 1] <= bb[None, :, 3] + margin)
                & (B[:, :, 3] >= bb[None, :, 1] - margin)
            )
            a_idx, k_idx = np.nonzero(hit)
            if len(a_idx):
                cs = self.CHUNK
                Ca = self.discs[:n].reshape(n, self.k, cs, 3, 2)[a_idx, k_idx]  # (P, cs, 3, 2)
                cc = c.reshape(self.k, cs, 3, 2)[k_idx]
                d = np.linalg.norm(Ca[:, :, :, None, :] - cc[:, :, None, :, :], axis=-1)
                with np.errstate(invalid="ignore"):
                    if np.any(d < (self.radii[a_idx] + r + margin)[:, None, None, None]):
                        return False
        self._push(c, r, bb)
        return True


def _ego_profile(rng, lap_length: float, speed: tuple[float, float], s0: float, knot_s: float = 9.0):
    """A periodic speed profile that drives exactly one lap per period."""
    n = max(4, int(round(lap_length / (np.mean(speed) * knot_s))))
    v = rng.uniform(speed[0], speed[1], n)
    v = np.concatenate([v, v[:1]])
    dt = lap_length / float(np.sum(v[:-1]))  # closed trapezoid: distance = dt · Σ v_i
    t = np.arange(n + 1) * dt
    return SpeedProfile(t, v, s0=s0, periodic=True)


def _markings_along(path: Path2D, offsets_dashed, offsets_solid, spacing: float = 2.0, skip=None):
    """Lane markings parallel to a path, subsampled every ``spacing`` m; ``skip(s)`` → True leaves a gap."""
    out = []
    s = np.arange(0.0, path.length + 1e-9, spacing)
    for dashed, offsets in ((True, offsets_dashed), (False, offsets_solid)):
        for d in offsets:
            xy, heading, _, _ = path.at(s)
            n = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
            pts = xy + d * n
            keep = np.ones(len(s), bool) if skip is None else ~skip(s, d)
            # split into runs where kept
            run: list[np.ndarray] = []
            for k in range(len(s)):
                if keep[k]:
                    run.append(pts[k])
                elif len(run) >= 2:
                    out.append(LaneMarking(np.asarray(run), 0.15, dashed))
                    run = []
                else:
                    run = []
            if len(run) >= 2:
                out.append(LaneMarking(np.asarray(run), 0.15, dashed))
    return out


def _box(kind, x, y, z, l, w, h, yaw, material) -> WorldBox:
    return WorldBox(
        kind=kind, center=np.array([x, y, z]), size=np.array([l, w, h]), yaw=float(yaw), material=material
    )
