"""How the simulated world's movers move: motion laws giving arc length s(t) (m) and speed ds/dt (m/s) along
a path at times t (s) (:class:`ConstantSpeed`, :class:`SpeedProfile`, :class:`PiecewiseS`, :class:`FollowEgo`,
:class:`Trip`), the movers that follow them (:class:`Agent`; the calibration board's 6-DoF poses,
:class:`Board6D`) and the ego's true state (:class:`EgoState`). Every velocity is the exact time derivative of
the position, every yaw rate that of the yaw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefuse.geometry import Transform
from edgefuse.sim.scene import Material
from edgefuse.sim.world_paths import Path2D, _clamp

# ================================================================ motion laws


@dataclass(frozen=True)
class ConstantSpeed:
    """s(t) = s0 + v·t."""

    s0: float
    v: float

    def eval(self, t: np.ndarray):
        return self.s0 + self.v * t, np.full_like(t, self.v), np.ones(t.shape, bool)


@dataclass(frozen=True)
class SpeedProfile:
    """Speed piecewise linear in time through knots (``t`` s, ``v`` m/s); s(t) its integral from ``s0``.
    With ``period`` (= t[-1], v[-1] = v[0]) it repeats, each period adding the same distance; without, the
    last speed holds. Acceleration is piecewise constant."""

    t: np.ndarray
    v: np.ndarray
    s0: float = 0.0
    periodic: bool = False

    def __post_init__(self):
        seg = np.diff(self.t) * (self.v[:-1] + self.v[1:]) / 2.0
        object.__setattr__(self, "_cum", np.concatenate([[0.0], np.cumsum(seg)]))

    def _split(self, t: np.ndarray):
        t = np.asarray(t, dtype=np.float64)
        laps = np.zeros_like(t)
        if self.periodic:
            P = self.t[-1] - self.t[0]
            laps = np.floor((t - self.t[0]) / P)
            t = t - laps * P
        i = _clamp(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
        return t, laps, i

    def eval(self, t: np.ndarray):
        t, laps, i = self._split(t)
        dt = np.diff(self.t)[i]
        a = (self.v[i + 1] - self.v[i]) / dt
        tau = np.maximum(t - self.t[i], 0.0)
        beyond = tau > dt  # after the last knot of a non-periodic profile: hold the last speed
        tau_in = np.minimum(tau, dt)
        s = (
            self._cum[i]
            + self.v[i] * tau_in
            + 0.5 * a * tau_in**2
            + np.where(beyond, (tau - dt) * self.v[i + 1], 0)
        )
        v = np.where(beyond, self.v[i + 1], self.v[i] + a * tau_in)
        before = t < self.t[0]
        s = np.where(before, self.v[0] * (t - self.t[0]), s)
        v = np.where(before, self.v[0], v)
        s = self.s0 + s + laps * self._cum[-1]
        return s, v, np.ones(t.shape, bool)

    def accel(self, t: np.ndarray) -> np.ndarray:
        t, _, i = self._split(t)
        a = (self.v[i + 1] - self.v[i]) / np.diff(self.t)[i]
        return np.where((t < self.t[0]) | (t > self.t[-1]), 0.0, a)


@dataclass(frozen=True)
class PiecewiseS:
    """Arc length piecewise linear in time through knots (``t`` s, ``s`` m): walks with pauses. With
    ``periodic`` the knots repeat every ``t[-1] - t[0]`` (s[-1] must equal s[0])."""

    t: np.ndarray
    s: np.ndarray
    periodic: bool = True

    def eval(self, t: np.ndarray):
        t = np.asarray(t, dtype=np.float64)
        if self.periodic:
            P = self.t[-1] - self.t[0]
            t = self.t[0] + np.mod(t - self.t[0], P)
        i = _clamp(np.searchsorted(self.t, t, side="right") - 1, 0, len(self.t) - 2)
        dt = np.diff(self.t)[i]
        v = np.diff(self.s)[i] / dt
        inside = (t >= self.t[0]) & (t <= self.t[-1])
        v = np.where(inside, v, 0.0)
        s = np.interp(t, self.t, self.s)
        return s, v, np.ones(t.shape, bool)


@dataclass(frozen=True)
class FollowEgo:
    """Keeps a gap to the ego along the ego's lane: s = s_ego(t) + gap + amp·sin(2πt/period + phase)."""

    ego: SpeedProfile
    gap: float
    amp: float
    period: float
    phase: float

    def eval(self, t: np.ndarray):
        s_e, v_e, ok = self.ego.eval(t)
        w = 2 * math.pi / self.period
        s = s_e + self.gap + self.amp * np.sin(w * t + self.phase)
        v = v_e + self.amp * w * np.cos(w * t + self.phase)
        return s, v, ok


@dataclass(frozen=True)
class Trip:
    """A periodic trip along an open path at constant speed ``v``: it starts at ``t0 + k·period`` and
    exists only while on the path (turning in from a side street, out to another)."""

    t0: float
    period: float
    v: float
    length: float

    def eval(self, t: np.ndarray):
        tau = np.mod(np.asarray(t, dtype=np.float64) - self.t0, self.period)
        s = self.v * tau
        return s, np.full(tau.shape, self.v), s <= self.length


# ================================================================ agents


@dataclass(frozen=True)
class Agent:
    """A mover: a box of ``size`` (l, w, h) m following ``path`` under ``motion``. ``facing``: +1 along the
    path; pedestrians walking back face the way they walk. ``z``: the box centre height (default h/2)."""

    kind: str
    label: str | None
    size: np.ndarray
    material: Material
    track_id: int
    path: Path2D
    motion: object
    z: float | None = None

    def state(self, t: np.ndarray):
        """(T,) times s → centre xy (T, 2), yaw (T,), velocity xy (T, 2), yaw rate (T,), active (T,)."""
        s, v, active = self.motion.eval(t)
        xy, heading, chord, curv = self.path.at(s)
        # walkers face the way they walk; a pause keeps the facing of the last leg
        yaw = _walker_yaw(self.motion, t, heading) if isinstance(self.motion, PiecewiseS) else heading
        return xy, yaw, chord * v[:, None], v * curv, active


def _leg_facing(m: PiecewiseS) -> np.ndarray:
    """(legs,) ±1: the walking direction of each leg; during a pause that of the last non-zero leg
    (cyclically). Constant per profile: cached on it."""
    cached = m.__dict__.get("_facing")
    if cached is not None:
        return cached
    dirs = np.sign(np.diff(m.s))
    last = np.zeros_like(dirs)
    cur = dirs[dirs != 0][-1] if np.any(dirs != 0) else 1.0
    for k in range(len(dirs)):
        if dirs[k] != 0:
            cur = dirs[k]
        last[k] = cur
    last.setflags(write=False)
    object.__setattr__(m, "_facing", last)
    return last


def _walker_yaw(m: PiecewiseS, t: np.ndarray, heading: np.ndarray) -> np.ndarray:
    P = m.t[-1] - m.t[0]
    tt = m.t[0] + np.mod(np.asarray(t, dtype=np.float64) - m.t[0], P)
    last = _leg_facing(m)
    i = _clamp(np.searchsorted(m.t, tt, side="right") - 1, 0, len(last) - 1)
    return np.where(last[i] < 0, heading + np.pi, heading)


@dataclass(frozen=True)
class Board6D:
    """The calibration board carried through poses: ``poses`` (P, 6) x y z roll pitch yaw (world frame),
    held ``hold_s`` each and moved in ``move_s`` between them, starting at ``t0`` s; afterwards it stays at
    the last pose. The holder (a pedestrian) stands ``0.35`` m behind it.

    ``sway`` (6,): amplitudes (m, m, m, rad, rad, rad) of a hand-held board's sway about that path, each
    degree of freedom a sine of its own frequency (0.2–0.7 Hz) and phase drawn from ``sway_seed``;
    None = held perfectly still (a stand)."""

    poses: np.ndarray
    hold_s: float
    move_s: float
    t0: float = 0.0
    sway: np.ndarray | None = None
    sway_seed: int = 0

    def _sway(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """The sway's offset (6,) and its rate (6,) at t s."""
        if self.sway is None:
            return np.zeros(6), np.zeros(6)
        rng = np.random.default_rng([int(self.sway_seed), 0x5A1])
        w = 2.0 * np.pi * rng.uniform(0.2, 0.7, 6)
        phase = rng.uniform(0.0, 2.0 * np.pi, 6)
        a = np.asarray(self.sway, np.float64)
        return a * np.sin(w * t + phase), a * w * np.cos(w * t + phase)

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        ts, ps = [], []
        t = self.t0
        for k, p in enumerate(self.poses):
            if k:
                t += self.move_s
            ts += [t, t + self.hold_s]
            ps += [p, p]
            t += self.hold_s
        return np.asarray(ts), np.asarray(ps)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Pose (6,) and its rate (6,) at t s."""
        ts, ps = self.knots()
        s, ds = self._sway(t)
        if t <= ts[0] or t >= ts[-1]:
            return (ps[0] if t <= ts[0] else ps[-1]) + s, ds
        i = int(np.searchsorted(ts, t, side="right") - 1)
        f = (t - ts[i]) / (ts[i + 1] - ts[i])
        return ps[i] + f * (ps[i + 1] - ps[i]) + s, (ps[i + 1] - ps[i]) / (ts[i + 1] - ts[i]) + ds


@dataclass(frozen=True)
class EgoState:
    """The ego (base_link) at one instant: ``xy`` (2,) m and ``yaw`` rad in the world frame, ``speed``
    m/s along the path, ``accel`` m/s² along it, ``yaw_rate`` rad/s, ``curvature`` 1/m, ``slip`` rad: the
    angle of the velocity from base_link's x axis (under 1° from the path's polyline sampling), so that
    ``velocity_base`` is exactly the time derivative of the position."""

    xy: np.ndarray
    yaw: float
    speed: float
    accel: float
    yaw_rate: float
    curvature: float
    slip: float = 0.0

    @property
    def velocity_base(self) -> np.ndarray:
        """(3,) m/s: the velocity of base_link over ground, in base_link."""
        return np.array([self.speed * math.cos(self.slip), self.speed * math.sin(self.slip), 0.0])

    def transform(self) -> Transform:
        """T_world_base."""
        return Transform.from_rpy([self.xy[0], self.xy[1], 0.0], 0.0, 0.0, self.yaw)
