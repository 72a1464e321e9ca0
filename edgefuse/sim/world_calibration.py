"""The ``calibration-board`` scenario: a parking lot with a board
(:data:`~edgefuse.sim.world_materials.BOARD_A`) held by a person in 16 poses
(swaying by up to 5 mm / 0.25°), corner reflectors on posts at
12–40 m, then a drive with strong rotation and acceleration.
"""

from __future__ import annotations

import math

import numpy as np

from edgefuse.sim.scene import LaneMarking, Material, Road, Weather, WorldBox
from edgefuse.sim.world_build import _RNG_WORLD, _box
from edgefuse.sim.world_materials import _BOARD, _BUILDING_MATERIALS, _POLE, _REFLECTOR
from edgefuse.sim.world_model import _NS, World
from edgefuse.sim.world_motion import Board6D, SpeedProfile
from edgefuse.sim.world_paths import build_path


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
    # held by hand: it sways by up to 5 mm and 0.25° about each axis
    sway = np.array([0.005, 0.005, 0.005, *np.radians([0.25, 0.25, 0.25])])
    board = Board6D(np.asarray(poses), hold_s=2.5, move_s=1.0, t0=0.5, sway=sway, sway_seed=seed)
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
