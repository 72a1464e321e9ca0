"""The ``highway`` scenario: a long oval (2.5 km straights, 600 m radius ends), 3 lanes of 3.75 m each way,
median barrier, guard rails, sound walls, lamps and gantries; cars only at 21–34 m/s, the ego in the middle
lane with a lead and a following car.
"""

from __future__ import annotations

import math

import numpy as np

from edgefuse.sim.scene import LaneMarking, Road, Weather, WorldBox
from edgefuse.sim.world_build import _RNG_WORLD, _box, _Conflicts, _ego_profile, _markings_along
from edgefuse.sim.world_materials import _BARRIER, _POLE, _RAIL, _WALL, _car_material, _size
from edgefuse.sim.world_model import _NS, World
from edgefuse.sim.world_motion import Agent, ConstantSpeed, FollowEgo
from edgefuse.sim.world_paths import build_path


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
