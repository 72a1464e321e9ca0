"""The simulated world: scenarios, roads and lanes, static structures, moving agents and the ego drive.

``make_world(scenario, seed, **params)`` builds a :class:`~edgefuse.sim.world_model.World`;
``world.scene_at(t_ns)`` is a pure function of the true simulation time (int64 ns from 0) that returns
the :class:`~edgefuse.sim.scene.Scene` the sensor models render. Same scenario + seed + params → the
same world, bit for bit.

How motion is modelled (so every velocity is the exact time derivative of the position):

- every mover follows a :class:`~edgefuse.sim.world_paths.Path2D` (a dense polyline with unwrapped
  headings, built from straight and arc segments; closed paths wrap), and a *motion law* gives its arc
  length s(t) and speed ds/dt: constant speed, a piecewise-linear speed profile (the ego:
  piecewise-constant acceleration), a piecewise-linear s(t) with pauses (pedestrians crossing back and
  forth, the calibration board), an offset that follows the ego (the lead/follow cars in the ego lane),
  or a periodic trip that exists only while it is on its path (cars turning in from and out to side
  streets);
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

Where the parts live: :mod:`~edgefuse.sim.world_paths` (paths), :mod:`~edgefuse.sim.world_motion` (motion
laws, agents, the board's poses, the ego state), :mod:`~edgefuse.sim.world_materials` (materials, board-a,
class sizes), :mod:`~edgefuse.sim.world_model` (:class:`~edgefuse.sim.world_model.World` and its pure
queries), :mod:`~edgefuse.sim.world_build` (the conflict check and other builder helpers), and one builder
per layout: :mod:`~edgefuse.sim.world_town`, :mod:`~edgefuse.sim.world_highway`,
:mod:`~edgefuse.sim.world_calibration`. This module: the scenarios and their parameters
(:func:`make_world`) and the ground truth of a scene (:func:`ground_truth`).
"""

from __future__ import annotations

import math

import numpy as np

from edgefuse.errors import InputError
from edgefuse.sim.scene import Scene, Weather
from edgefuse.sim.world_calibration import _build_calibration
from edgefuse.sim.world_highway import _build_highway
from edgefuse.sim.world_model import World
from edgefuse.sim.world_town import _TOWNS, _build_town

SCENARIOS: tuple[str, ...] = ("default", "urban", "highway", "fog", "night", "rain", "calibration-board")
#: Accepted ``make_world`` parameters (the ``sim://`` URI query), with their meaning.
PARAMS: dict[str, str] = {
    "visibility": "fog visibility V in metres (fog scenario default 60; any scenario accepts it)",
    "rain": "rain intensity in [0, 1] (rain scenario default 0.7)",
    "night": "1 for night (night scenario default 1)",
}


def _weather(scenario: str, params: dict) -> Weather:
    vis = params.get("visibility", 60.0 if scenario == "fog" else float("inf"))
    rain = params.get("rain", 0.7 if scenario == "rain" else 0.0)
    night = bool(params.get("night", 1.0 if scenario == "night" else 0.0))
    return Weather(fog_visibility_m=float(vis), rain=float(rain), night=night)


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
