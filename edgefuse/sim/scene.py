"""The simulator's scene at one instant: what every sensor model renders or ray-casts.

This module is the contract between the world (``world.py`` and its ``world_*`` modules: scenarios,
agents, ego motion) and the sensor models (``camera.py`` with its ``camera_*`` modules, ``lidar.py``,
``radar.py``). Everything solid is an oriented box; the ground is the plane z = 0 of the world frame with
lane markings painted on it.

Frames: the world frame ``world`` is fixed (x east-ish, y north-ish, z up); the ego's ``base_link``
pose in it is ``Scene.T_world_base``. All box quantities are in the world frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgefuse.geometry import Transform


@dataclass(frozen=True)
class Material:
    """How a surface looks to each sensor.

    ``rgb``: base colour (3,) uint8; ``texture``: "plain", "stripes", "windows", "checker" (the
    calibration board), "skin"; ``lidar_reflectivity``: diffuse reflectivity in [0, 1] (0.8 = white
    paint, 0.1 = dark tyre; retro-reflectors use > 1); ``radar_rcs_dbsm``: the object's total radar cross
    section in dBsm (car ≈ 10, pedestrian ≈ -5, corner reflector ≈ 20)."""

    name: str
    rgb: tuple[int, int, int]
    texture: str = "plain"
    lidar_reflectivity: float = 0.3
    radar_rcs_dbsm: float = 0.0


@dataclass(frozen=True)
class Board:
    """A planar calibration target carried by a box of kind "board": a chessboard of ``cols`` × ``rows``
    squares of ``square_m`` metres (inner corners: (cols-1) × (rows-1)), printed on the box face that
    looks along the box's +x axis, centred on it, with ``margin_m`` of white border around it."""

    cols: int
    rows: int
    square_m: float
    margin_m: float = 0.05


@dataclass(frozen=True)
class WorldBox:
    """One solid object at one instant, in the world frame.

    ``kind``: "car", "pedestrian", "cyclist" (moving agents, with a ``label`` for ground truth),
    "parked_car" (label "car"), "building", "pole", "board", "reflector", …; ``center`` (3,) m (box centre,
    so z = height/2 for objects on the ground); ``size`` (3,) length (along heading), width, height in m;
    ``yaw`` rad about +z; ``velocity`` (3,) m/s; ``yaw_rate`` rad/s; ``track_id`` ≥ 0 for objects that
    have ground truth, -1 for structures; ``pitch``/``roll`` rad, used by tilted calibration boards only."""

    kind: str
    center: np.ndarray
    size: np.ndarray
    yaw: float
    material: Material
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw_rate: float = 0.0
    track_id: int = -1
    label: str | None = None
    pitch: float = 0.0
    roll: float = 0.0
    board: Board | None = None

    def pose(self) -> Transform:
        """T_world_box (box frame: origin at the centre, x along the heading, z up)."""
        return Transform.from_rpy(self.center, self.roll, self.pitch, self.yaw)


@dataclass(frozen=True)
class Weather:
    """``fog_visibility_m``: meteorological visibility V (inf = clear); extinction β = 3.912 / V.
    ``rain``: intensity in [0, 1]; ``night``: no daylight, only the ego's headlights and street lamps."""

    fog_visibility_m: float = float("inf")
    rain: float = 0.0
    night: bool = False

    @property
    def extinction(self) -> float:
        """β in 1/m (Koschmieder): 3.912 / V, 0 in clear air."""
        return 0.0 if not np.isfinite(self.fog_visibility_m) else 3.912 / self.fog_visibility_m


@dataclass(frozen=True)
class LaneMarking:
    """A painted line on the ground: polyline ``points`` (K, 2) x y in the world frame, ``width`` m,
    ``dashed`` (3 m on, 6 m off when true)."""

    points: np.ndarray
    width: float = 0.15
    dashed: bool = False


@dataclass(frozen=True)
class Road:
    """An asphalt strip: centreline polyline ``points`` (K, 2) x y in the world frame, ``half_width`` m.
    Ground outside every road is pavement/grass."""

    points: np.ndarray
    half_width: float = 7.0


@dataclass(frozen=True)
class Scene:
    """The world at time ``t_ns`` (int64 ns, the simulation's true time)."""

    t_ns: int
    boxes: tuple[WorldBox, ...]
    lanes: tuple[LaneMarking, ...]
    T_world_base: Transform
    ego_velocity: np.ndarray  # (3,) m/s in base_link
    ego_yaw_rate: float  # rad/s
    weather: Weather
    roads: tuple[Road, ...] = ()
