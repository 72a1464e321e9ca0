"""The data model: message payloads, messages, frame sets, boxes and detections.

Plain dataclasses around numpy arrays. Every constructor checks shapes and dtypes at the boundary so a
bad array fails where it is made, with the field and the expected value in the message.

Conventions (see docs/conventions.md):
- time is int64 nanoseconds; a Message keeps three stamps: ``raw_stamp_ns`` (the sensor's own clock),
  ``recv_ns`` (host monotonic receive time) and ``stamp_ns`` (raw mapped into the rig clock).
- point clouds and radar scans are N×C float32 matrices with named columns.
- per-point time: the column named ``t_ns`` (:data:`POINT_TIME_FIELD`), float32, nanoseconds relative to
  the message's ``stamp_ns``. A LiDAR sweep is stamped at its last firing, so its ``t_ns`` are ≤ 0.
  float32 resolves 8 ns across a 100 ms sweep.
- images are RGB uint8, H×W×3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Name of the per-point time column: float32 nanoseconds relative to ``Message.stamp_ns``.
POINT_TIME_FIELD = "t_ns"

#: Detection classes, in the order of the model's class axis.
CLASSES: tuple[str, ...] = ("car", "pedestrian", "cyclist")

#: The attributes an object of each class may carry (nuScenes' attribute names; at most one per object).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "car": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"),
    "cyclist": ("cycle.with_rider", "cycle.without_rider"),
}


def _check_array(name: str, arr: np.ndarray, dtype: type, ndim: int, cols: int | None = None) -> None:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if cols is not None and arr.shape[-1] != cols:
        raise ValueError(f"{name}: expected {cols} columns (last axis), got shape {arr.shape}")


def _vec(name: str, value, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Image:
    """A camera frame. ``data``: H×W×3 uint8, RGB (OpenCV's BGR is converted at the adapter edge)."""

    data: np.ndarray

    def __post_init__(self) -> None:
        _check_array("Image.data", self.data, np.uint8, 3, 3)

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])


@dataclass(frozen=True)
class CompressedImage:
    """A compressed camera frame as it came off the wire: ``format`` is ``"jpeg"`` or ``"png"``."""

    data: bytes
    format: str

    def __post_init__(self) -> None:
        if self.format not in ("jpeg", "png"):
            raise ValueError(f"CompressedImage.format: expected 'jpeg' or 'png', got {self.format!r}")


class _FieldMatrix:
    """Shared accessors for N×C float32 matrices with named columns."""

    data: np.ndarray
    fields: tuple[str, ...]

    def _check(self, kind: str, required: tuple[str, ...]) -> None:
        _check_array(f"{kind}.data", self.data, np.float32, 2)
        if len(self.fields) != self.data.shape[1]:
            raise ValueError(
                f"{kind}.fields: {len(self.fields)} names {self.fields} for {self.data.shape[1]} columns"
            )
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"{kind}.fields: duplicate names in {self.fields}")
        missing = [f for f in required if f not in self.fields]
        if missing:
            raise ValueError(f"{kind}.fields: missing required {missing}, got {self.fields}")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def has(self, name: str) -> bool:
        return name in self.fields

    def column(self, name: str) -> np.ndarray:
        """One named column, shape (N,), float32 (a view)."""
        try:
            return self.data[:, self.fields.index(name)]
        except ValueError:
            raise KeyError(f"no field {name!r}; fields are {self.fields}") from None

    @property
    def xyz(self) -> np.ndarray:
        """(N, 3) float32 x y z in metres, in the message's frame."""
        i = self.fields.index("x")
        if self.fields[i : i + 3] == ("x", "y", "z"):
            return self.data[:, i : i + 3]
        return np.stack([self.column("x"), self.column("y"), self.column("z")], axis=1)


@dataclass(frozen=True)
class PointCloud(_FieldMatrix):
    """A LiDAR sweep. ``data``: N×C float32; ``fields`` names the columns: at least x y z (metres,
    sensor frame) and intensity (0..255 scale); optionally ``t_ns`` (per-point time, see module doc),
    ``ring`` (laser index) and others."""

    data: np.ndarray
    fields: tuple[str, ...] = ("x", "y", "z", "intensity")

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        self._check("PointCloud", ("x", "y", "z", "intensity"))


@dataclass(frozen=True)
class RadarScan(_FieldMatrix):
    """Radar detections. ``data``: M×C float32; at least x y z (metres, sensor frame); optionally
    ``doppler`` (radial velocity, m/s, positive = moving away), ``rcs`` (dBsm), ``snr`` (dB),
    ``noise`` (dB), ``vx``/``vy`` (m/s, as nuScenes gives), and other vendor fields. RCS and SNR are
    different quantities and never stand in for each other."""

    data: np.ndarray
    fields: tuple[str, ...] = ("x", "y", "z", "doppler", "rcs")

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        self._check("RadarScan", ("x", "y", "z"))


@dataclass(frozen=True)
class Odometry:
    """Ego pose and twist. Pose of ``child_frame`` (base_link) in ``frame`` (odom): ``position`` (3,) m,
    ``orientation`` (4,) quaternion x y z w. Twist in the child frame: ``linear_velocity`` (3,) m/s,
    ``angular_velocity`` (3,) rad/s."""

    position: np.ndarray
    orientation: np.ndarray
    linear_velocity: np.ndarray
    angular_velocity: np.ndarray
    frame: str = "odom"
    child_frame: str = "base_link"

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _vec("Odometry.position", self.position, 3))
        object.__setattr__(self, "orientation", _vec("Odometry.orientation", self.orientation, 4))
        object.__setattr__(self, "linear_velocity", _vec("Odometry.linear_velocity", self.linear_velocity, 3))
        object.__setattr__(
            self, "angular_velocity", _vec("Odometry.angular_velocity", self.angular_velocity, 3)
        )


@dataclass(frozen=True)
class Imu:
    """IMU sample in the sensor frame: ``angular_velocity`` (3,) rad/s, ``linear_acceleration`` (3,)
    m/s² (gravity included, as accelerometers measure), ``orientation`` (4,) x y z w or None."""

    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray
    orientation: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "angular_velocity", _vec("Imu.angular_velocity", self.angular_velocity, 3))
        object.__setattr__(
            self, "linear_acceleration", _vec("Imu.linear_acceleration", self.linear_acceleration, 3)
        )
        if self.orientation is not None:
            object.__setattr__(self, "orientation", _vec("Imu.orientation", self.orientation, 4))


@dataclass(frozen=True)
class Box3D:
    """An oriented 3D box in a right-handed frame (base_link unless said otherwise).

    ``center`` (3,) m; ``size`` (3,) length (along heading), width, height in m; ``yaw`` rad about +z,
    0 = heading along +x."""

    center: np.ndarray
    size: np.ndarray
    yaw: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _vec("Box3D.center", self.center, 3))
        size = _vec("Box3D.size", self.size, 3)
        if not np.all(size > 0):
            raise ValueError(f"Box3D.size: expected positive length, width, height, got {size}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "yaw", float(self.yaw))

    def corners(self) -> np.ndarray:
        """(8, 3) corners: bottom face (z = -h/2) first, counter-clockwise from front-left, then top."""
        l, w, h = self.size / 2.0
        x = np.array([l, -l, -l, l, l, -l, -l, l])
        y = np.array([w, w, -w, -w, w, w, -w, -w])
        z = np.array([-h, -h, -h, -h, h, h, h, h])
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.stack([c * x - s * y, s * x + c * y, z], axis=1) + self.center


@dataclass(frozen=True)
class Detection:
    """A detected (or ground-truth) object: ``label`` one of :data:`CLASSES`, ``score`` in [0, 1],
    ``box`` in base_link, ``velocity`` (2,) m/s over ground in base_link x/y, ``track_id`` (-1 = none),
    ``attribute`` one of the label's :data:`ATTRIBUTES` or ``""`` (none).

    Ground truth may also say how many LiDAR and radar points fall inside its box (``lidar_points``,
    ``radar_points``; ``None`` = not counted): nuScenes does not score objects no sensor saw; and how much
    of it the camera sees, ``visibility`` in [0, 1] (the fraction of the box visible in the image and not
    occluded, ``None`` = unknown; nuScenes bins it 0-40, 40-60, 60-80, 80-100 %, :func:`visibility_bin`).
    The simulator's exact definitions: :mod:`edgefuse.sim.truth`."""

    label: str
    score: float
    box: Box3D
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    track_id: int = -1
    attribute: str = ""
    lidar_points: int | None = None
    radar_points: int | None = None
    visibility: float | None = None

    def __post_init__(self) -> None:
        if self.label not in CLASSES:
            raise ValueError(f"Detection.label: expected one of {CLASSES}, got {self.label!r}")
        if not 0.0 <= float(self.score) <= 1.0:
            raise ValueError(f"Detection.score: expected a value in [0, 1], got {self.score}")
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "velocity", _vec("Detection.velocity", self.velocity, 2))
        if self.attribute and self.attribute not in ATTRIBUTES[self.label]:
            raise ValueError(
                f"Detection.attribute: expected '' or one of {ATTRIBUTES[self.label]} for a {self.label}, "
                f"got {self.attribute!r}"
            )
        for name in ("lidar_points", "radar_points"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise ValueError(f"Detection.{name}: expected None or a count >= 0, got {v!r}")
            if v is not None:
                object.__setattr__(self, name, int(v))
        if self.visibility is not None:
            if isinstance(self.visibility, bool) or not 0.0 <= float(self.visibility) <= 1.0:
                raise ValueError(
                    f"Detection.visibility: expected None or a fraction in [0, 1], got {self.visibility!r}"
                )
            object.__setattr__(self, "visibility", float(self.visibility))

    @property
    def unseen(self) -> bool:
        """True when its point counts are known and add up to 0 (an uncounted sensor is left out): no
        LiDAR or radar point on it. nuScenes neither scores nor trains on such boxes."""
        counts = [c for c in (self.lidar_points, self.radar_points) if c is not None]
        return bool(counts) and sum(counts) == 0


#: nuScenes' visibility levels: the upper bound of each bin (level 1 = 0-40 %, … level 4 = 80-100 %).
VISIBILITY_BIN_UPPER: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0)


def visibility_bin(visibility: float) -> int:
    """nuScenes' visibility level 1..4 of a visible fraction in [0, 1] (0-40 % → 1, 40-60 % → 2,
    60-80 % → 3, 80-100 % → 4; a bound belongs to the lower bin, as "0-40 %" includes 40 %)."""
    for level, upper in enumerate(VISIBILITY_BIN_UPPER, start=1):
        if visibility <= upper:
            return level
    raise ValueError(f"visibility_bin: expected a fraction in [0, 1], got {visibility!r}")


@dataclass(frozen=True)
class Detections:
    """All detections of one frame, stamped with the frame's reference stamp (ns)."""

    stamp_ns: int
    objects: tuple[Detection, ...]
    frame: str = "base_link"


Payload = Image | CompressedImage | PointCloud | RadarScan | Odometry | Imu | Detections


@dataclass(frozen=True)
class Message:
    """One reading of one sensor.

    ``stamp_ns``: the mapped stamp in the rig clock (int64 ns); ``raw_stamp_ns``: the sensor's own stamp
    as it came (its clock, its epoch); ``recv_ns``: host receive time (int64 ns); ``frame``: the sensor's
    coordinate frame; ``seq``: the source's running count."""

    sensor_id: str
    stamp_ns: int
    payload: Payload
    raw_stamp_ns: int | None = None
    recv_ns: int | None = None
    frame: str = ""
    seq: int = 0

    def __post_init__(self) -> None:
        if not self.sensor_id:
            raise ValueError("Message.sensor_id: expected a non-empty sensor id")
        for name in ("stamp_ns", "raw_stamp_ns", "recv_ns", "seq"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, (float, np.floating)) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"Message.{name}: expected an integer (ns), got {type(v).__name__} {v!r}")
            object.__setattr__(self, name, int(v))
        if self.raw_stamp_ns is None:
            object.__setattr__(self, "raw_stamp_ns", self.stamp_ns)
        if self.recv_ns is None:
            object.__setattr__(self, "recv_ns", self.stamp_ns)
        if not self.frame:
            object.__setattr__(self, "frame", self.sensor_id)


@dataclass(frozen=True)
class FrameSet:
    """The synchronized inputs of one fusion frame: the reference stamp, each sensor's matched message
    (None = missing) and each match's residual (message stamp − reference stamp, ns)."""

    stamp_ns: int
    messages: dict[str, Message | None]
    residual_ns: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(sorted(k for k, m in self.messages.items() if m is None))
