"""The simulated world: scenarios, roads and lanes, static structures, moving agents and the ego drive.

``make_world(scenario, seed, **params)`` builds a :class:`World`; ``world.scene_at(t_ns)`` is a pure
function of the true simulation time (int64 ns from 0) that returns the :class:`~edgefuse.sim.scene.Scene`
the sensor models render. Same scenario + seed + params → the same world, bit for bit.

How motion is modelled (so every velocity is the exact time derivative of the position):

- every mover follows a :class:`Path2D` (a dense polyline with unwrapped headings, built from straight
  and arc segments; closed paths wrap), and a *motion law* gives its arc length s(t) and speed ds/dt:
  constant speed, a piecewise-linear speed profile (the ego: piecewise-constant acceleration), a
  piecewise-linear s(t) with pauses (pedestrians crossing back and forth, the calibration board), an
  offset that follows the ego (the lead/follow cars in the ego lane), or a periodic trip that exists only
  while it is on its path (cars turning in from and out to side streets);
- velocity = speed · chord direction, yaw = interpolated heading, yaw rate = speed · dheading/ds;
- a conflict check at build time samples every candidate over the first ``duration_hint_ns`` and drops
  candidates whose footprint would overlap an already accepted agent (or the ego), so agents do not
  drive through each other.

Town layout (``default``, ``urban``, ``fog``, ``night``, ``rain``): a counter-clockwise loop road (a
rounded rectangle, right-hand traffic, 2 lanes each way + bike lanes + parking strips + sidewalks) with
T-junction side streets on the outside, buildings, street lamps, trees and parked cars along it; the ego
drives the inner right lane. ``highway``: a long oval, 3 lanes each way, median barrier, guard rails,
sound walls and gantries, faster traffic, no pedestrians or cyclists. ``calibration-board``: a parking
lot with a board held in 16 poses, corner reflectors, then a drive with strong rotation and acceleration.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgefuse.errors import InputError
from edgefuse.geometry import Transform
from edgefuse.sim.scene import Board, LaneMarking, Material, Road, Scene, Weather, WorldBox

SCENARIOS: tuple[str, ...] = ("default", "urban", "highway", "fog", "night", "rain", "calibration-board")
#: Accepted ``make_world`` parameters (the ``sim://`` URI query), with their meaning.
PARAMS: dict[str, str] = {
    "visibility": "fog visibility V in metres (fog scenario default 60; any scenario accepts it)",
    "rain": "rain intensity in [0, 1] (rain scenario default 0.7)",
    "night": "1 for night (night scenario default 1)",
}
#: The calibration target the ``calibration-board`` scenario carries (calibration/targets/board-a.yaml).
BOARD_A = Board(cols=8, rows=6, square_m=0.1, margin_m=0.05)
_NS = 1_000_000_000
_RNG_WORLD = 1000  # seed + constant: the per-stream seeds of this module


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
    the last pose. The holder (a pedestrian) stands ``0.35`` m behind it."""

    poses: np.ndarray
    hold_s: float
    move_s: float
    t0: float = 0.0

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
        if t <= ts[0] or t >= ts[-1]:
            return (ps[0] if t <= ts[0] else ps[-1]).copy(), np.zeros(6)
        i = int(np.searchsorted(ts, t, side="right") - 1)
        f = (t - ts[i]) / (ts[i + 1] - ts[i])
        return ps[i] + f * (ps[i + 1] - ps[i]), (ps[i + 1] - ps[i]) / (ts[i + 1] - ts[i])


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


# ================================================================ the world


@dataclass
class World:
    """A built world: static boxes, lanes and roads, agents, the ego's lane path and speed profile.

    ``scene_at(t_ns)`` is pure. ``duration_hint_ns``: the natural length of the scenario (one
    calibration sequence, or a good stretch of driving); the world keeps going beyond it."""

    scenario: str
    seed: int
    params: dict
    weather: Weather
    static: tuple[WorldBox, ...]
    lanes: tuple[LaneMarking, ...]
    roads: tuple[Road, ...]
    agents: tuple[Agent, ...]
    ego_path: Path2D
    ego_motion: SpeedProfile
    duration_hint_ns: int
    board: Board6D | None = None
    board_track_id: int = -1
    holder_track_id: int = -1
    _board_material: Material | None = field(default=None, repr=False)
    view_radius_m: float = 250.0

    def ego_states(self, t_ns) -> list[EgoState]:
        """The ego at each true time of ``t_ns`` (N,) int64 ns (pure, vectorized)."""
        t = np.asarray(t_ns, dtype=np.int64) / _NS
        s, v, _ = self.ego_motion.eval(t)
        xy, heading, chord, curv = self.ego_path.at(s)
        a = self.ego_motion.accel(t)
        slip = (np.arctan2(chord[:, 1], chord[:, 0]) - heading + np.pi) % (2 * np.pi) - np.pi
        return [
            EgoState(
                xy[i],
                float(heading[i]),
                float(v[i]),
                float(a[i]),
                float(v[i] * curv[i]),
                float(curv[i]),
                float(slip[i]),
            )
            for i in range(len(t))
        ]

    def ego_state(self, t_ns: int) -> EgoState:
        """The ego at true time ``t_ns`` (pure)."""
        return self.ego_states(np.array([int(t_ns)]))[0]

    def __post_init__(self) -> None:
        # static boxes: centres and reach for culling; constant-speed agents grouped by path (vectorized)
        self._static_xy = np.array([b.center[:2] for b in self.static]).reshape(-1, 2)
        self._static_reach = np.array([float(np.hypot(b.size[0], b.size[1])) / 2 for b in self.static])
        groups: dict[int, list[int]] = {}
        self._single: list[int] = []
        for i, ag in enumerate(self.agents):
            if isinstance(ag.motion, ConstantSpeed):
                groups.setdefault(id(ag.path), []).append(i)
            else:
                self._single.append(i)
        self._groups = [
            (
                self.agents[idx[0]].path,
                np.array(idx),
                np.array([self.agents[i].motion.s0 for i in idx]),
                np.array([self.agents[i].motion.v for i in idx]),
            )
            for idx in groups.values()
        ]

    def scene_at(self, t_ns: int) -> Scene:
        """The scene at true simulation time ``t_ns`` (int64 ns from 0): every box within
        ``view_radius_m`` of the ego, static structures first, then movers by track id."""
        if isinstance(t_ns, (float, np.floating)):
            raise TypeError(f"World.scene_at: t_ns must be an integer (ns), got {t_ns!r}")
        t_ns = int(t_ns)
        t = t_ns / _NS
        ego = self.ego_state(t_ns)
        R = self.view_radius_m
        d = np.hypot(*(self._static_xy - ego.xy).T) - self._static_reach if len(self.static) else np.zeros(0)
        boxes = [self.static[i] for i in np.nonzero(d < R)[0]]
        movers = []
        for path, idx, s0, v in self._groups:
            xy, heading, chord, curv = path.at(s0 + v * t)
            near = np.nonzero(np.hypot(*(xy - ego.xy).T) < R)[0]
            for k in near:
                movers.append((idx[k], xy[k], heading[k], chord[k] * v[k], v[k] * curv[k]))
        tt = np.array([t])
        for i in self._single:
            xy, yaw, vel, yaw_rate, active = self.agents[i].state(tt)
            if active[0] and math.hypot(*(xy[0] - ego.xy)) < R:
                movers.append((i, xy[0], yaw[0], vel[0], yaw_rate[0]))
        movers.sort(key=lambda m: self.agents[m[0]].track_id)
        for i, xy, yaw, vel, yaw_rate in movers:
            ag = self.agents[i]
            boxes.append(
                WorldBox(
                    kind=ag.kind,
                    center=np.array([xy[0], xy[1], ag.size[2] / 2 if ag.z is None else ag.z]),
                    size=ag.size,
                    yaw=float(yaw),
                    material=ag.material,
                    velocity=np.array([vel[0], vel[1], 0.0]),
                    yaw_rate=float(yaw_rate),
                    track_id=ag.track_id,
                    label=ag.label,
                )
            )
        if self.board is not None:
            boxes.extend(self._board_boxes(t))
        return Scene(
            t_ns=t_ns,
            boxes=tuple(boxes),
            lanes=self.lanes,
            T_world_base=ego.transform(),
            ego_velocity=ego.velocity_base,
            ego_yaw_rate=ego.yaw_rate,
            weather=self.weather,
            roads=self.roads,
        )

    def _board_boxes(self, t: float) -> list[WorldBox]:
        pose, rate = self.board.at(t)
        x, y, z, roll, pitch, yaw = pose
        vel = np.array([rate[0], rate[1], rate[2]])
        board = WorldBox(
            kind="board",
            center=np.array([x, y, z]),
            size=np.array([0.02, 0.9, 0.7]),
            yaw=float(yaw),
            material=self._board_material,
            velocity=vel,
            yaw_rate=float(rate[5]),
            track_id=self.board_track_id,
            label=None,
            pitch=float(pitch),
            roll=float(roll),
            board=BOARD_A,
        )
        back = -0.35 * np.array([math.cos(yaw), math.sin(yaw)])
        holder = WorldBox(
            kind="pedestrian",
            center=np.array([x + back[0], y + back[1], 0.88]),
            size=np.array([0.35, 0.55, 1.76]),
            yaw=float(yaw),
            material=_PED_MATERIALS[2],
            # d/dt of (board centre + back(yaw)): the board's velocity plus the lever arm's rotation
            velocity=np.array([vel[0] - back[1] * rate[5], vel[1] + back[0] * rate[5], 0.0]),
            yaw_rate=float(rate[5]),
            track_id=self.holder_track_id,
            label="pedestrian",
        )
        return [board, holder]


# ================================================================ materials and sizes

_CAR_COLOURS = {  # colour families, roughly as common on the road
    "white": ((235, 235, 232), 0.7),
    "black": ((25, 25, 28), 0.08),
    "silver": ((170, 172, 175), 0.5),
    "grey": ((95, 98, 102), 0.3),
    "red": ((165, 25, 25), 0.35),
    "blue": ((30, 55, 130), 0.25),
    "green": ((30, 80, 50), 0.2),
    "beige": ((190, 170, 130), 0.45),
}
_CAR_WEIGHTS = np.array([0.24, 0.2, 0.16, 0.14, 0.09, 0.09, 0.04, 0.04])
_PED_MATERIALS = tuple(
    Material(f"clothing_{i}", rgb, "skin", 0.25, -5.0)
    for i, rgb in enumerate(
        [(40, 45, 70), (120, 30, 40), (60, 60, 60), (200, 190, 160), (30, 90, 120), (150, 110, 60)]
    )
)
_BUILDING_MATERIALS = tuple(
    Material(f"facade_{i}", rgb, "windows", refl, 25.0)
    for i, (rgb, refl) in enumerate(
        [
            ((150, 70, 55), 0.3),
            ((200, 190, 165), 0.45),
            ((130, 130, 128), 0.35),
            ((225, 220, 210), 0.55),
            ((95, 100, 110), 0.25),
            ((175, 120, 80), 0.35),
        ]
    )
)
_POLE = Material("pole_metal", (120, 122, 125), "plain", 0.5, 5.0)
_TRUNK = Material("tree_trunk", (85, 60, 40), "plain", 0.3, 0.0)
_CANOPY = Material("tree_canopy", (55, 105, 45), "plain", 0.25, -3.0)
_BARRIER = Material("concrete", (175, 172, 165), "plain", 0.4, 15.0)
_RAIL = Material("guard_rail", (185, 188, 190), "stripes", 0.6, 12.0)
_WALL = Material("sound_wall", (125, 135, 120), "stripes", 0.3, 20.0)
_BOARD = Material("calibration_board", (245, 245, 245), "checker", 0.7, 0.0)
_REFLECTOR = Material("corner_reflector", (200, 200, 205), "plain", 2.0, 20.0)

#: Class-typical box sizes (length, width, height) in metres: uniform ranges per class.
SIZE_RANGES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "car": ((3.9, 5.0), (1.7, 2.0), (1.4, 1.8)),
    "pedestrian": ((0.3, 0.6), (0.5, 0.7), (1.55, 1.9)),
    "cyclist": ((1.6, 1.9), (0.5, 0.7), (1.6, 1.9)),
}


def _size(rng: np.random.Generator, label: str) -> np.ndarray:
    return np.array([rng.uniform(lo, hi) for lo, hi in SIZE_RANGES[label]])


def _car_material(rng: np.random.Generator) -> Material:
    name = list(_CAR_COLOURS)[int(rng.choice(len(_CAR_COLOURS), p=_CAR_WEIGHTS))]
    rgb, refl = _CAR_COLOURS[name]
    jitter = rng.integers(-12, 13, 3)
    rgb = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(rgb, jitter, strict=True))
    return Material(f"car_paint_{name}", rgb, "plain", refl, float(rng.uniform(8.0, 13.0)))


def _cyclist_material(rng: np.random.Generator) -> Material:
    rgb = [(230, 120, 20), (20, 140, 200), (200, 200, 40), (180, 30, 60), (40, 40, 40)][int(rng.integers(5))]
    return Material("cyclist", rgb, "stripes", 0.35, float(rng.uniform(-1.0, 2.0)))


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


# ================================================================ builders


@dataclass(frozen=True)
class _TownSpec:
    width: float  # loop straights (m)
    height: float
    radius: float
    ego_speed: tuple[float, float]
    lane_speed: tuple[float, float]
    car_gap: tuple[float, float]  # m between cars in a lane
    n_walkers: int
    n_crossers: int
    n_cyclists: int
    n_trips: int
    parked_prob: float
    storeys: tuple[int, int]


_TOWNS = {
    "default": _TownSpec(
        300.0, 200.0, 30.0, (7.0, 11.0), (8.0, 12.0), (25.0, 70.0), 40, 4, 8, 3, 0.5, (2, 6)
    ),
    "urban": _TownSpec(220.0, 160.0, 25.0, (5.0, 9.0), (6.0, 9.0), (14.0, 40.0), 90, 8, 14, 4, 0.8, (4, 12)),
}

# cross-section of the town loop (offsets from the centreline, + = left = inside of the CCW loop)
_LANE_W = 3.5
_BIKE = (7.0, 8.5)
_PARK = (8.5, 11.0)
_ROAD_HALF = 11.0
_WALK = (11.0, 14.5)
_SIDE_HALF = 6.0  # side streets: one 3.5 m lane each way + edges


def _weather(scenario: str, params: dict) -> Weather:
    vis = params.get("visibility", 60.0 if scenario == "fog" else float("inf"))
    rain = params.get("rain", 0.7 if scenario == "rain" else 0.0)
    night = bool(params.get("night", 1.0 if scenario == "night" else 0.0))
    return Weather(fog_visibility_m=float(vis), rain=float(rain), night=night)


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


def _build_town(scenario: str, seed: int, spec: _TownSpec, weather: Weather, params: dict) -> World:
    rng = np.random.default_rng(seed + _RNG_WORLD)
    loop = rounded_rect(spec.width, spec.height, spec.radius)
    L = loop.length
    # side streets (T-junctions on the outside): two on the bottom straight, one on the top straight
    top0 = spec.width + math.pi / 2 * spec.radius + spec.height + math.pi / 2 * spec.radius
    side_s = [round(0.27 * spec.width), round(0.67 * spec.width), top0 + round(0.5 * spec.width)]
    side_len = 140.0

    def near_side(s, d=0.0, margin=_SIDE_HALF + 3.0):
        """True where arc length s (on the outside, d < 0) is at a side street mouth."""
        s = np.atleast_1d(s)
        hit = np.zeros(s.shape, bool)
        if d > 0:
            return hit
        for sc in side_s:
            ds = np.abs((s - sc + L / 2) % L - L / 2)
            hit |= ds < margin
        return hit

    # ---- roads and markings
    loop_pts = loop.at(np.arange(0, L, 4.0))[0]
    roads = [Road(np.vstack([loop_pts, loop_pts[:1]]), _ROAD_HALF)]
    lanes: list[LaneMarking] = []
    lanes += _markings_along(
        loop, [-_LANE_W, _LANE_W], [-0.15, 0.15], skip=lambda s, d: np.zeros(s.shape, bool)
    )
    lanes += _markings_along(
        loop,
        [],
        [-2 * _LANE_W, -_BIKE[1], 2 * _LANE_W, _BIKE[1]],
        skip=lambda s, d: near_side(s, d, _SIDE_HALF + 1.0),
    )
    side_paths = []
    for sc in side_s:
        (p,), (h,), _, _ = loop.at([sc])
        n_out = np.array([math.sin(h), -math.cos(h)])  # outward = right of travel
        t_dir = np.array([math.cos(h), math.sin(h)])
        start = p + n_out * _ROAD_HALF
        end = p + n_out * (_ROAD_HALF + side_len)
        roads.append(Road(np.stack([p + n_out * 2.0, end]), _SIDE_HALF))
        side_paths.append((sc, p, h, n_out, t_dir))
        lanes.append(LaneMarking(np.stack([start + n_out * 12.0, end]), 0.15, True))  # centre line
        for e in (-1, 1):
            lanes.append(
                LaneMarking(
                    np.stack(
                        [
                            start + n_out * 4.0 + e * (_SIDE_HALF - 0.3) * t_dir,
                            end + e * (_SIDE_HALF - 0.3) * t_dir,
                        ]
                    ),
                    0.15,
                    False,
                )
            )
        # zebra crossing across the side street, 5 m out from the loop road edge
        for k in np.arange(-_SIDE_HALF + 0.6, _SIDE_HALF - 0.4, 1.0):
            a = start + n_out * 5.0 + k * t_dir
            lanes.append(LaneMarking(np.stack([a, a + n_out * 3.0]), 0.5, False))
        # stop line on the inbound lane (east of the centre when looking inward)
        a = start + n_out * 9.0
        lanes.append(LaneMarking(np.stack([a + 0.2 * t_dir, a + (_SIDE_HALF - 0.4) * t_dir]), 0.4, False))

    # ---- static structures along the loop's straights
    static: list[WorldBox] = []
    parked: list[tuple[float, float]] = []  # (s, d) of parked cars
    straights = []  # (s_start, s_end)
    s_acc = 0.0
    for length in (spec.width, spec.height, spec.width, spec.height):
        straights.append((s_acc, s_acc + length))
        s_acc += length + math.pi / 2 * spec.radius
    for side in (-1, 1):
        for s_a, s_b in straights:
            # buildings: a row of blocks with small gaps, skipping side-street mouths (outside)
            s = s_a + 8.0
            inner_depth = min(14.0, spec.height / 2 - 18.0) if side > 0 else 16.0
            while s < s_b - 8.0:
                blen = float(rng.uniform(10.0, 28.0))
                if s + blen > s_b - 8.0:
                    break
                mid = s + blen / 2
                if not near_side(np.array([mid]), float(side), _SIDE_HALF + blen / 2 + 2.0)[0]:
                    depth = (
                        float(rng.uniform(0.6, 1.0) * inner_depth) if side > 0 else float(rng.uniform(9, 16))
                    )
                    storeys = int(rng.integers(spec.storeys[0], spec.storeys[1] + 1))
                    (p,), (h,), _, _ = loop.at([mid])
                    nrm = np.array([-math.sin(h), math.cos(h)]) * side
                    c = p + nrm * (_WALK[1] + 1.5 + depth / 2)
                    mat = _BUILDING_MATERIALS[int(rng.integers(len(_BUILDING_MATERIALS)))]
                    height = storeys * 3.2 + float(rng.uniform(0.0, 1.5))
                    static.append(_box("building", c[0], c[1], height / 2, blen, depth, height, h, mat))
                s += blen + float(rng.uniform(1.5, 6.0))
            # street lamps every 30 m on the curb, trees between them
            for s in np.arange(s_a + 10.0, s_b - 5.0, 30.0):
                for kind, ds in (("pole", 0.0), ("tree", 15.0)):
                    sp = s + ds
                    if sp > s_b - 5.0 or (side < 0 and near_side(np.array([sp]), -1.0, _SIDE_HALF + 2.0)[0]):
                        continue
                    (p,), (h,), _, _ = loop.at([sp])
                    nrm = np.array([-math.sin(h), math.cos(h)]) * side
                    if kind == "pole":
                        c = p + nrm * (_WALK[0] + 0.5)
                        static.append(_box("pole", c[0], c[1], 3.5, 0.2, 0.2, 7.0, h, _POLE))
                    else:
                        c = p + nrm * (_WALK[0] + 1.0)
                        static.append(_box("tree", c[0], c[1], 1.25, 0.35, 0.35, 2.5, h, _TRUNK))
                        cw = float(rng.uniform(2.5, 4.0))
                        static.append(_box("tree", c[0], c[1], 2.5 + cw * 0.45, cw, cw, cw * 0.9, h, _CANOPY))
            # parked cars in the parking strip
            s = s_a + 6.0
            while s < s_b - 6.0:
                if rng.uniform() < spec.parked_prob and not (
                    side < 0 and near_side(np.array([s]), -1.0, _SIDE_HALF + 6.0)[0]
                ):
                    parked.append((s, side * (_PARK[0] + _PARK[1]) / 2))
                s += float(rng.uniform(5.8, 7.5))

    # ---- agents
    tid = iter(range(1, 1_000_000))
    horizon = 120.0
    checker = _Conflicts(np.arange(0.0, horizon, 0.25))
    ego_lane = loop.offset(-_LANE_W / 2)  # inner right lane
    ego_s0 = max(side_s[0] - 45.0, 5.0)
    ego_motion = _ego_profile(rng, ego_lane.length, spec.ego_speed, ego_s0)
    ego_xy, ego_h, _, _ = ego_lane.at(ego_motion.eval(checker.t)[0])
    checker.add_fixed(ego_xy, ego_h, np.ones(len(checker.t), bool), 4.7, 1.9, forward=1.4)
    agents: list[Agent] = []

    def accept(agent: Agent) -> bool:
        if checker.try_add(agent):
            agents.append(agent)
            return True
        return False

    def car(path, motion) -> Agent:
        return Agent("car", "car", _size(rng, "car"), _car_material(rng), next(tid), path, motion)

    # parked cars: static, with ground truth (checked against the others like agents)
    parking = {side: loop.offset(side * (_PARK[0] + _PARK[1]) / 2) for side in (-1, 1)}
    parking[1] = parking[1].reversed()  # inside: parked facing that side's traffic
    for s, d in parked:
        lane = parking[int(np.sign(d))]
        s_lane = s * lane.length / L if d < 0 else lane.length * (1.0 - s / L)
        ag = Agent(
            "parked_car",
            "car",
            _size(rng, "car"),
            _car_material(rng),
            next(tid),
            lane,
            ConstantSpeed(s_lane, 0.0),
        )
        if checker.try_add(ag, margin=0.2):
            (xy,), (yaw,), _, _ = lane.at([s_lane])
            static.append(
                WorldBox(
                    kind="parked_car",
                    center=np.array([xy[0], xy[1], ag.size[2] / 2]),
                    size=ag.size,
                    yaw=float(yaw),
                    material=ag.material,
                    track_id=ag.track_id,
                    label="car",
                )
            )
    # lead and follow cars in the ego lane
    accept(car(ego_lane, FollowEgo(ego_motion, 1.4 + 20.0, 5.0, 13.0, float(rng.uniform(0, 6.28)))))
    accept(car(ego_lane, FollowEgo(ego_motion, 1.4 - 16.0, 3.0, 17.0, float(rng.uniform(0, 6.28)))))
    # lane traffic: curb lane same direction (slower), both oncoming lanes
    curb_v = 0.0
    curb_len = 0.0
    for d, reverse in ((-1.5 * _LANE_W, False), (0.5 * _LANE_W, True), (1.5 * _LANE_W, True)):
        lane = loop.offset(d)
        lane = lane.reversed() if reverse else lane
        v = float(rng.uniform(*spec.lane_speed))
        if not reverse:
            v = min(v, float(rng.uniform(7.0, 8.5)))
            curb_v, curb_len = v, lane.length
        s = float(rng.uniform(0, 20))
        while s < lane.length - 10:
            accept(car(lane, ConstantSpeed(s, v)))
            s += float(rng.uniform(*spec.car_gap))
    # trips: from side street A, right turn into the curb lane, right turn out into side street B, at the
    # curb lane's speed and with its lap time as period, so a trip that fits a gap once fits it every time
    r_turn = 12.0
    sa, pa, ha, n_out_a, t_a = side_paths[0]
    sb = side_paths[1][0]
    curb = 1.5 * _LANE_W
    start = pa + n_out_a * (side_len + _ROAD_HALF - 5.0) + t_a * (_LANE_W / 2)
    trip_path = build_path(
        start,
        ha + math.pi / 2,
        [
            ("straight", side_len + _ROAD_HALF - 5.0 - curb - r_turn),
            ("arc", r_turn, -math.pi / 2),
            ("straight", (sb - sa) - 2 * (_LANE_W / 2 + r_turn)),
            ("arc", r_turn, -math.pi / 2),
            ("straight", side_len - 10.0),
        ],
        step=0.1,
    )
    period = curb_len / curb_v
    for _ in range(spec.n_trips):
        proto = car(trip_path, None)
        for _try in range(24):
            motion = Trip(float(rng.uniform(0, period)), period, curb_v, trip_path.length)
            if accept(
                Agent(proto.kind, proto.label, proto.size, proto.material, proto.track_id, trip_path, motion)
            ):
                break
    # cyclists in the bike lanes
    for side in (-1, 1):
        lane = loop.offset(side * (_BIKE[0] + _BIKE[1]) / 2)
        lane = lane.reversed() if side > 0 else lane
        v = float(rng.uniform(4.0, 6.5))
        for s in np.sort(rng.uniform(0, lane.length, spec.n_cyclists // 2)):
            accept(
                Agent(
                    "cyclist",
                    "cyclist",
                    _size(rng, "cyclist"),
                    _cyclist_material(rng),
                    next(tid),
                    lane,
                    ConstantSpeed(float(s), v),
                )
            )
    # pedestrians walking the sidewalks (two directions, offset so they pass each other)
    for side in (-1, 1):
        for k, d in enumerate((12.0, 13.4)):
            lane = loop.offset(side * d)
            lane = lane.reversed() if k else lane
            for s in rng.uniform(0, lane.length, spec.n_walkers // 4):
                ped = Agent(
                    "pedestrian",
                    "pedestrian",
                    _size(rng, "pedestrian"),
                    _PED_MATERIALS[int(rng.integers(len(_PED_MATERIALS)))],
                    next(tid),
                    lane,
                    ConstantSpeed(float(s), float(rng.uniform(1.1, 1.6))),
                )
                accept(ped)
    # pedestrians crossing the side streets on the zebra, back and forth with waits
    for k in range(spec.n_crossers):
        sc, p, h, n_out, t_dir = side_paths[k % len(side_paths)]
        off = 6.5 + (k // len(side_paths)) * 0.9
        a = p + n_out * (_ROAD_HALF + off) - t_dir * (_SIDE_HALF + 1.5)
        path = build_path(a, h, [("straight", 2 * _SIDE_HALF + 3.0)])
        v = float(rng.uniform(1.1, 1.5))
        cross = path.length / v
        size = _size(rng, "pedestrian")
        mat = _PED_MATERIALS[int(rng.integers(len(_PED_MATERIALS)))]
        track = next(tid)
        for _try in range(16):
            w1, w2 = rng.uniform(4.0, 15.0, 2)
            t0 = float(rng.uniform(0.0, 10.0))
            knots_t = np.array([t0, t0 + w1, t0 + w1 + cross, t0 + w1 + cross + w2, t0 + w1 + 2 * cross + w2])
            motion = PiecewiseS(knots_t, np.array([0.0, 0.0, path.length, path.length, 0.0]))
            if accept(Agent("pedestrian", "pedestrian", size, mat, track, path, motion)):
                break

    return World(
        scenario=scenario,
        seed=seed,
        params=params,
        weather=weather,
        static=tuple(static),
        lanes=tuple(lanes),
        roads=tuple(roads),
        agents=tuple(agents),
        ego_path=ego_lane,
        ego_motion=ego_motion,
        duration_hint_ns=60 * _NS,
        view_radius_m=160.0,
    )


def _build_highway(scenario: str, seed: int, weather: Weather, params: dict) -> World:
    rng = np.random.default_rng(seed + _RNG_WORLD + 1)
    lane_w = 3.75
    n_lanes = 3
    straight, radius = 2500.0, 600.0
    loop = build_path(
        (0.0, 0.0),
        0.0,
        [("straight", straight), ("arc", radius, math.pi), ("straight", straight), ("arc", radius, math.pi)],
        closed=True,
    )
    L = loop.length
    half = 1.0 + n_lanes * lane_w + 3.0  # median half + lanes + shoulder
    pts = loop.at(np.arange(0, L, 10.0))[0]
    roads = (Road(np.vstack([pts, pts[:1]]), half),)
    lanes: list[LaneMarking] = []
    dashed = [s * (1.0 + k * lane_w) for s in (-1, 1) for k in range(1, n_lanes)]
    solid = [s * d for s in (-1, 1) for d in (1.0, 1.0 + n_lanes * lane_w)]
    lanes += _markings_along(loop, dashed, solid, spacing=5.0)
    static: list[WorldBox] = []
    # median barrier, guard rails and sound walls in 20 m pieces; lamps in the median; gantries
    for s in np.arange(0.0, L, 20.0):
        (p,), (h,), _, _ = loop.at([s + 10.0])
        nrm = np.array([-math.sin(h), math.cos(h)])
        static.append(_box("barrier", p[0], p[1], 0.45, 20.0, 0.6, 0.9, h, _BARRIER))
        for side in (-1, 1):
            c = p + nrm * side * (half + 0.5)
            static.append(_box("guard_rail", c[0], c[1], 0.6, 20.0, 0.3, 0.4, h, _RAIL))
            if (s // 400) % 3 != 1:
                c = p + nrm * side * (half + 6.0)
                static.append(_box("wall", c[0], c[1], 2.5, 20.0, 0.4, 5.0, h, _WALL))
        if s % 60 == 0:
            static.append(_box("pole", p[0], p[1], 5.0, 0.25, 0.25, 10.0, h, _POLE))
        if s % 600 == 0:
            for side in (-1, 1):
                c = p + nrm * side * (half + 1.5)
                static.append(_box("pole", c[0], c[1], 3.5, 0.4, 0.4, 7.0, h, _POLE))
            static.append(_box("gantry", p[0], p[1], 6.5, 0.8, 2 * (half + 1.5), 1.2, h, _POLE))
    tid = iter(range(1, 1_000_000))
    checker = _Conflicts(np.arange(0.0, 90.0, 0.25))
    ego_lane = loop.offset(-(1.0 + 1.5 * lane_w))  # middle lane
    ego_motion = _ego_profile(rng, ego_lane.length, (24.0, 30.0), 100.0, knot_s=12.0)
    ego_xy, ego_h, _, _ = ego_lane.at(ego_motion.eval(checker.t)[0])
    checker.add_fixed(ego_xy, ego_h, np.ones(len(checker.t), bool), 4.7, 1.9, forward=1.4)
    agents: list[Agent] = []

    def car(path, motion) -> Agent:
        return Agent("car", "car", _size(rng, "car"), _car_material(rng), next(tid), path, motion)

    for ag in (
        car(ego_lane, FollowEgo(ego_motion, 1.4 + 45.0, 10.0, 20.0, float(rng.uniform(0, 6.28)))),
        car(ego_lane, FollowEgo(ego_motion, 1.4 - 35.0, 6.0, 23.0, float(rng.uniform(0, 6.28)))),
    ):
        if checker.try_add(ag):
            agents.append(ag)
    for side in (-1, 1):
        for k in range(n_lanes):
            if side < 0 and k == 1:
                continue  # the ego lane has its lead/follow cars
            lane = loop.offset(side * (1.0 + (k + 0.5) * lane_w))
            lane = lane.reversed() if side > 0 else lane
            v = float(rng.uniform(*[(30.0, 34.0), (25.0, 29.0), (21.0, 25.0)][k]))
            s = float(rng.uniform(0, 40))
            while s < lane.length - 20:
                ag = car(lane, ConstantSpeed(s, v))
                if checker.try_add(ag):
                    agents.append(ag)
                s += float(rng.uniform(40.0, 160.0))
    return World(
        scenario=scenario,
        seed=seed,
        params=params,
        weather=weather,
        static=tuple(static),
        lanes=tuple(lanes),
        roads=roads,
        agents=tuple(agents),
        ego_path=ego_lane,
        ego_motion=ego_motion,
        duration_hint_ns=60 * _NS,
    )


def _build_calibration(scenario: str, seed: int, weather: Weather, params: dict) -> World:
    rng = np.random.default_rng(seed + _RNG_WORLD + 2)
    static: list[WorldBox] = []
    lanes: list[LaneMarking] = []
    # a parking lot: bays marked along the sides, buildings around it
    for x in np.arange(-20.0, 60.0, 2.7):
        for y0, y1 in ((-30.0, -25.0), (37.0, 42.0)):
            lanes.append(LaneMarking(np.array([[x, y0], [x, y1]]), 0.12, False))
    for i, (x, y, l, w, h, yaw) in enumerate(
        [
            (30.0, -45.0, 60.0, 12.0, 9.0, 0.0),
            (30.0, 55.0, 60.0, 12.0, 12.0, 0.0),
            (75.0, 5.0, 12.0, 80.0, 15.0, 0.0),
            (-40.0, 5.0, 12.0, 80.0, 7.0, 0.0),
        ]
    ):
        static.append(_box("building", x, y, h / 2, l, w, h, yaw, _BUILDING_MATERIALS[i]))
    for x in np.arange(-15.0, 60.0, 20.0):
        for y in (-22.0, 34.0):
            static.append(_box("pole", x, y, 3.5, 0.2, 0.2, 7.0, 0.0, _POLE))
    # corner reflectors on posts at several ranges and angles (clear of the drive and the board)
    reflectors = [
        (12.0, -0.35, 10.0),
        (18.0, 0.25, 15.0),
        (25.0, -0.15, 20.0),
        (32.0, 0.45, 15.0),
        (40.0, 0.0, 20.0),
        (22.0, -0.6, 10.0),
    ]
    for r, az, rcs in reflectors:
        x, y = r * math.cos(az), r * math.sin(az)
        mat = Material(f"corner_reflector_{int(rcs)}dBsm", _REFLECTOR.rgb, "plain", 2.0, rcs)
        static.append(_box("reflector", x, y, 1.0, 0.3, 0.3, 0.3, math.pi + az, mat))
        static.append(_box("pole", x, y, 0.425, 0.05, 0.05, 0.85, 0.0, _POLE))
    # the board: 16 poses in front of the ego. The first three as they always were (3.5 m, 9 m, 3-10 m, turned
    # up to ±29° and pitched up to ±20°); then 13 at 3-7 m, each turned 26-46° from facing the sensors
    # (left and right in turn) and pitched 9-20° (up twice, then down twice): the rotation about the
    # camera's line of sight is observed only through such tilts. Then carried away to the right.
    poses = []
    for k in range(16):
        if k < 3:
            r = float(rng.uniform(3.0, 10.0)) if k > 1 else (3.5 if k == 0 else 9.0)
            az = float(rng.uniform(-0.45, 0.15))
            x, y = 1.4 + r * math.cos(az), r * math.sin(az)
            yaw = math.atan2(-y, 1.8 - x) + float(rng.uniform(-0.5, 0.5))  # facing the sensors, turned
            z, roll, pitch = (
                float(rng.uniform(0.9, 1.7)),
                float(rng.uniform(-0.3, 0.3)),
                float(rng.uniform(-0.35, 0.35)),
            )
            poses.append([x, y, z, roll, pitch, yaw])
            continue
        r = float(rng.uniform(3.0, 7.0))
        az = float(rng.uniform(-0.45, 0.15))
        x, y = 1.4 + r * math.cos(az), r * math.sin(az)
        turn = (1.0 if k % 2 == 0 else -1.0) * float(rng.uniform(0.45, 0.8))
        yaw = math.atan2(-y, 1.8 - x) + turn  # facing the sensors, turned
        pitch = (1.0 if k // 2 % 2 == 0 else -1.0) * float(rng.uniform(0.15, 0.35))
        poses.append([x, y, float(rng.uniform(0.9, 1.7)), float(rng.uniform(-0.3, 0.3)), pitch, yaw])
    poses.append([6.0, -14.0, 1.2, 0.0, 0.0, math.pi / 2])
    board = Board6D(np.asarray(poses), hold_s=2.5, move_s=1.0, t0=0.5)
    t_drive = float(board.knots()[0][-1]) + 1.0
    # the drive: a hard left U-turn, a slalom, another U-turn and a straight
    q = math.pi
    path = build_path(
        (0.0, 0.0),
        0.0,
        [
            ("arc", 8.0, q),
            ("straight", 10.0),
            ("arc", 10.0, -q / 3),
            ("arc", 10.0, 2 * q / 3),
            ("arc", 10.0, -q / 3),
            ("straight", 15.0),
            ("arc", 8.0, q),
            ("straight", 60.0),
        ],
        step=0.05,
    )
    T = t_drive
    prof = SpeedProfile(
        np.array([0.0, T, T + 2.8, T + 8.0, T + 9.5, T + 11.5, T + 15.0, T + 17.5]),
        np.array([0.0, 0.0, 7.0, 7.0, 3.0, 6.5, 6.5, 0.0]),
    )
    world = World(
        scenario=scenario,
        seed=seed,
        params=params,
        weather=weather,
        static=tuple(static),
        lanes=tuple(lanes),
        roads=(Road(np.array([[-32.0, 6.0], [68.0, 6.0]]), 37.0),),
        agents=(),
        ego_path=path,
        ego_motion=prof,
        duration_hint_ns=int(round((T + 18.5) * _NS)),
        board=board,
        board_track_id=1,
        holder_track_id=2,
        _board_material=_BOARD,
    )
    return world


def make_world(scenario: str, seed: int, **params) -> World:
    """Build the world of ``scenario`` (one of :data:`SCENARIOS`) with ``seed``; ``params``: see
    :data:`PARAMS` (strings from a URI query are accepted). Unknown scenario or parameter → InputError."""
    if scenario not in SCENARIOS:
        raise InputError(f"sim scenario: unknown {scenario!r}; expected one of {list(SCENARIOS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"sim seed: expected a non-negative integer, got {seed!r}")
    clean: dict[str, float] = {}
    for k, v in params.items():
        if k not in PARAMS:
            raise InputError(f"sim parameter {k!r}: unknown; expected one of {list(PARAMS)}")
        try:
            clean[k] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"sim parameter {k}: expected a number, got {v!r}") from None
    if "visibility" in clean and not clean["visibility"] > 0:
        raise InputError(f"sim parameter visibility: expected a visibility > 0 m, got {clean['visibility']}")
    if "rain" in clean and not 0.0 <= clean["rain"] <= 1.0:
        raise InputError(f"sim parameter rain: expected an intensity in [0, 1], got {clean['rain']}")
    weather = _weather(scenario, clean)
    seed = int(seed)
    if scenario == "highway":
        return _build_highway(scenario, seed, weather, clean)
    if scenario == "calibration-board":
        return _build_calibration(scenario, seed, weather, clean)
    return _build_town(scenario, seed, _TOWNS["urban" if scenario == "urban" else "default"], weather, clean)


def ground_truth(scene: Scene, max_range_m: float = 120.0) -> list:
    """The labelled boxes of ``scene`` as :class:`~edgefuse.types.Detection` in base_link (score 1,
    velocity over ground rotated into base_link), nearest first, within ``max_range_m`` of the ego."""
    from edgefuse.types import Box3D, Detection

    T_base_world = scene.T_world_base.inverse()
    R = T_base_world.rotation
    ego_yaw = float(scene.T_world_base.rpy[2])
    out = []
    for b in scene.boxes:
        if b.label is None or b.track_id < 0:
            continue
        c = R @ b.center + T_base_world.translation
        if math.hypot(c[0], c[1]) > max_range_m:
            continue
        v = R @ b.velocity
        yaw = (b.yaw - ego_yaw + math.pi) % (2 * math.pi) - math.pi
        out.append(Detection(b.label, 1.0, Box3D(c, b.size, yaw), v[:2], b.track_id))
    out.sort(key=lambda d: float(np.hypot(*d.box.center[:2])))
    return out
