"""The town scenarios (``default``, ``urban``, and ``fog``, ``night``, ``rain`` on the default town): a
counter-clockwise loop road (a rounded rectangle, right-hand traffic, 2 lanes each way + bike lanes + parking
strips + sidewalks; cross-section offsets in m from the centreline) with T-junction side streets on the
outside, buildings, street lamps, trees and parked cars; lane traffic, a lead and a following car, trips
through the side streets, cyclists and pedestrians. The ego drives the inner right lane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefuse.sim.scene import LaneMarking, Road, Weather, WorldBox
from edgefuse.sim.world_build import _RNG_WORLD, _box, _Conflicts, _ego_profile, _markings_along
from edgefuse.sim.world_materials import (
    _BUILDING_MATERIALS,
    _CANOPY,
    _PED_MATERIALS,
    _POLE,
    _TRUNK,
    _car_material,
    _cyclist_material,
    _size,
)
from edgefuse.sim.world_model import _NS, World
from edgefuse.sim.world_motion import Agent, ConstantSpeed, FollowEgo, PiecewiseS, Trip
from edgefuse.sim.world_paths import build_path, rounded_rect


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
