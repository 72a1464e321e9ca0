"""The built simulated world, :class:`World`: static boxes, lanes and roads, agents, the ego's lane path and
speed profile, and its pure queries: the ego's state and the :class:`~edgefuse.sim.scene.Scene` at a true time
(int64 ns from 0). Built by :func:`edgefuse.sim.world.make_world`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgefuse.sim.scene import LaneMarking, Material, Road, Scene, Weather, WorldBox
from edgefuse.sim.world_materials import _PED_MATERIALS, BOARD_A
from edgefuse.sim.world_motion import Agent, Board6D, ConstantSpeed, EgoState, SpeedProfile
from edgefuse.sim.world_paths import Path2D

_NS = 1_000_000_000


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
