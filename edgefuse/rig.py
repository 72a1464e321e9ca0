"""Sensor-kit and calibration files: load, validate, save.

Two versioned YAML files describe a rig (examples: ``sensors/sim-default.yaml``,
``calibration/sim-default.yaml``; the format is documented in ``docs/rig-files.md``):

- a **sensor kit** says which sensors exist and how to reach them (id, kind, source URI, rate, frame,
  nominal transport latency) and which calibration file belongs to it;
- a **calibration** holds camera intrinsics in ROS ``camera_info`` terms, extrinsics ``T_base_sensor``
  (translation m + quaternion x y z w) and per-sensor time offsets (int64 ns).

Every validation error is a :class:`RigFileError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edgefuse.errors import InputError
from edgefuse.geometry import DISTORTION_SIZES, ROS_DISTORTION_MODELS, CameraModel, Transform

FORMAT_VERSION = 1
#: Velodyne packets stamp µs past the top of the hour: their raw stamps wrap every hour.
HOUR_NS = 3_600_000_000_000
SENSOR_KINDS = ("camera", "lidar", "radar", "odometry", "imu", "gnss")
# ROS camera_info distortion_model names → our camera model names
_ROS_MODELS = {ros: ours for ours, ros in ROS_DISTORTION_MODELS.items()}


class RigFileError(InputError):
    """A sensor-kit or calibration file is malformed: ``path``, ``key`` (dotted) and what was expected."""

    def __init__(self, path: str | os.PathLike, key: str, message: str):
        self.path = str(path)
        self.key = key
        super().__init__(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


# ---------------------------------------------------------------- data


def default_clock_wrap_ns(source: str) -> int | None:
    """The period after which a source's raw stamps wrap, from its URI: Velodyne packets
    (``velodyne://``, ``pcap://``) stamp µs past the top of the hour (:data:`HOUR_NS`); None for the
    others (their adapters give raw stamps that do not wrap)."""
    return HOUR_NS if source.partition("://")[0].lower() in ("velodyne", "pcap") else None


@dataclass(frozen=True)
class SensorSpec:
    """One sensor of a kit. ``nominal_latency_ns``: transport latency the kit declares (subtracted when
    mapping stamps, DESIGN §3); ``rate_hz``: the nominal message rate; ``clock``: what the raw stamp
    is — ``host`` (the host monotonic clock: passed through), ``sensor`` (the sensor's own clock),
    ``ptp`` / ``gps`` (PTP or GPS time; like ``sensor``, another time domain than the host clock, so
    mapped online); ``clock_wrap_ns``: the raw stamp's wrap period (None: :meth:`raw_wrap_ns` takes
    it from the source URI)."""

    id: str
    kind: str
    source: str
    rate_hz: float
    frame: str
    nominal_latency_ns: int = 0
    clock: str = "sensor"
    clock_wrap_ns: int | None = None

    def raw_wrap_ns(self) -> int | None:
        """The raw stamp's wrap period: ``clock_wrap_ns`` when the kit gives it, else
        :func:`default_clock_wrap_ns` of the source (an hour for Velodyne), else None."""
        return self.clock_wrap_ns if self.clock_wrap_ns is not None else default_clock_wrap_ns(self.source)


@dataclass(frozen=True)
class SensorKit:
    name: str
    sensors: tuple[SensorSpec, ...]
    reference: str
    calibration: Path | None
    path: Path | None = None

    def sensor(self, sensor_id: str) -> SensorSpec:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise KeyError(
            f"kit {self.name!r} has no sensor {sensor_id!r}; sensors: {[s.id for s in self.sensors]}"
        )

    def by_kind(self, kind: str) -> tuple[SensorSpec, ...]:
        return tuple(s for s in self.sensors if s.kind == kind)


@dataclass
class Calibration:
    """Intrinsics (camera id → :class:`CameraModel`), extrinsics (sensor id → ``T_base_sensor``, composed
    to the base frame), time offsets (sensor id → ns, added to the mapped stamp) and free-form provenance.
    ``parents``: sensor id → the frame its extrinsic was given in (a TF chain: a camera relative to its
    LiDAR); a sensor not listed hangs off ``base_frame``. Saving writes each extrinsic relative to its
    parent again; :meth:`set_T_base` moves a sensor and keeps its children's transforms to it."""

    cameras: dict[str, CameraModel] = field(default_factory=dict)
    extrinsics: dict[str, Transform] = field(default_factory=dict)
    time_offsets_ns: dict[str, int] = field(default_factory=dict)
    base_frame: str = "base_link"
    provenance: dict[str, Any] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)

    def set_T_base(self, sensor_id: str, T_base_sensor: Transform) -> None:
        """Set a sensor's base-frame transform (a calibration result); sensors whose parent chain runs
        through it move with it, so their transforms relative to it stay as calibrated."""
        old = self.extrinsics.get(sensor_id)
        self.extrinsics[sensor_id] = T_base_sensor
        if old is None:
            return
        delta = T_base_sensor @ old.inverse()
        for child in self._descendants(sensor_id):
            self.extrinsics[child] = delta @ self.extrinsics[child]

    def _descendants(self, sensor_id: str) -> list[str]:
        out, todo = [], [sensor_id]
        while todo:
            p = todo.pop()
            kids = [s for s, parent in self.parents.items() if parent == p and s != sensor_id]
            out += kids
            todo += kids
        return out

    def T_parent(self, sensor_id: str) -> Transform:
        """The sensor's extrinsic relative to its parent frame (what the file holds)."""
        parent = self.parents.get(sensor_id, self.base_frame)
        T = self.T_base(sensor_id)
        return T if parent == self.base_frame else self.T_base(parent).inverse() @ T

    def T_base(self, sensor_id: str) -> Transform:
        try:
            return self.extrinsics[sensor_id]
        except KeyError:
            raise KeyError(
                f"calibration has no extrinsics for {sensor_id!r}; it has {sorted(self.extrinsics)}"
            ) from None

    def camera(self, sensor_id: str) -> CameraModel:
        try:
            return self.cameras[sensor_id]
        except KeyError:
            raise KeyError(
                f"calibration has no intrinsics for {sensor_id!r}; it has {sorted(self.cameras)}"
            ) from None


# ---------------------------------------------------------------- validation helpers


class YamlChecker:
    """Walks a parsed YAML tree of file ``path``, raising :class:`RigFileError` with the dotted key being
    read and what was expected (used by every YAML loader: rig files, Velodyne calibrations, camera_info)."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def fail(self, key: str, msg: str):
        raise RigFileError(self.path, key, msg)

    def mapping(self, node: Any, key: str) -> dict:
        if not isinstance(node, dict):
            self.fail(key, f"expected a mapping, got {_describe(node)}")
        return node

    def get(self, node: dict, key: str, name: str, kind: type | tuple, default: Any = ...) -> Any:
        full = f"{key}.{name}" if key else name
        if name not in node:
            if default is ...:
                self.fail(full, "missing (required)")
            return default
        value = node[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(full, f"expected {_kind_name(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            self.fail(full, f"expected {_kind_name(kinds)}, got {_describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(full, f"expected a finite number, got {value}")
        return value

    def numbers(self, node: dict, key: str, name: str, n: int) -> np.ndarray:
        full = f"{key}.{name}" if key else name
        value = self.get(node, key, name, list)
        if len(value) != n:
            self.fail(full, f"expected a list of {n} numbers, got {len(value)} items")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                self.fail(f"{full}[{i}]", f"expected a finite number, got {_describe(v)}")
        return np.asarray(value, dtype=np.float64)

    def no_unknown(self, node: dict, key: str, allowed: tuple[str, ...]) -> None:
        extra = sorted(set(node) - set(allowed))
        if extra:
            where = key or "top level"
            self.fail(
                f"{key}.{extra[0]}" if key else extra[0], f"unknown key at {where}; allowed: {list(allowed)}"
            )


def _kind_name(kinds: tuple) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
        bool: "a boolean",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, (dict, list)):
        return f"a {type(v).__name__}"
    return f"{type(v).__name__} {v!r}"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 floats without a dot (``3e-4``, ``1E+5``): PyYAML's YAML 1.1 resolver reads them as strings
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """A YAML file that must hold a mapping: UTF-8, valid YAML, no duplicate keys — else a
    :class:`RigFileError` naming the file (and line). Shared by every YAML loader of the project."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RigFileError(path, "", "file not found") from None
    except UnicodeDecodeError as e:
        raise RigFileError(path, "", f"not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise RigFileError(path, "", f"not valid YAML{where}: {problem}") from None
    return YamlChecker(path).mapping(doc, "")


def _read_yaml(path: str | os.PathLike) -> dict:
    """A versioned rig file (``version: 1``)."""
    doc = read_yaml_mapping(path)
    ctx = YamlChecker(path)
    version = ctx.get(doc, "", "version", int)
    if version != FORMAT_VERSION:
        ctx.fail("version", f"expected {FORMAT_VERSION}, got {version}")
    return doc


# ---------------------------------------------------------------- sensor kits


def load_kit(path: str | os.PathLike) -> SensorKit:
    """Load and validate a sensor-kit YAML. The calibration path is resolved relative to the kit file."""
    doc = _read_yaml(path)
    ctx = YamlChecker(path)
    ctx.no_unknown(doc, "", ("version", "name", "sensors", "reference", "calibration", "description"))
    name = ctx.get(doc, "", "name", str)
    items = ctx.get(doc, "", "sensors", list)
    if not items:
        ctx.fail("sensors", "expected at least one sensor")
    sensors: list[SensorSpec] = []
    for i, node in enumerate(items):
        key = f"sensors[{i}]"
        ctx.mapping(node, key)
        allowed = ("id", "kind", "source", "rate_hz", "frame", "nominal_latency_ms", "clock", "clock_wrap_s")
        ctx.no_unknown(node, key, allowed)
        sid = ctx.get(node, key, "id", str)
        if any(s.id == sid for s in sensors):
            ctx.fail(f"{key}.id", f"duplicate sensor id {sid!r}")
        kind = ctx.get(node, key, "kind", str)
        if kind not in SENSOR_KINDS:
            ctx.fail(f"{key}.kind", f"expected one of {list(SENSOR_KINDS)}, got {kind!r}")
        source = ctx.get(node, key, "source", str)
        if "://" not in source:
            ctx.fail(
                f"{key}.source", f"expected a source URI such as 'velodyne://0.0.0.0:2368', got {source!r}"
            )
        rate = ctx.get(node, key, "rate_hz", float)
        if rate <= 0:
            ctx.fail(f"{key}.rate_hz", f"expected a positive rate in Hz, got {rate}")
        latency_ms = ctx.get(node, key, "nominal_latency_ms", float, 0.0)
        if latency_ms < 0:
            ctx.fail(f"{key}.nominal_latency_ms", f"expected a latency ≥ 0 ms, got {latency_ms}")
        clock = ctx.get(node, key, "clock", str, "sensor")
        if clock not in ("sensor", "host", "ptp", "gps"):
            ctx.fail(f"{key}.clock", f"expected one of ['sensor', 'host', 'ptp', 'gps'], got {clock!r}")
        wrap_s = ctx.get(node, key, "clock_wrap_s", float, None)
        if wrap_s is not None and not wrap_s > 0:
            ctx.fail(f"{key}.clock_wrap_s", f"expected a positive period in seconds, got {wrap_s}")
        sensors.append(
            SensorSpec(
                id=sid,
                kind=kind,
                source=source,
                rate_hz=rate,
                frame=ctx.get(node, key, "frame", str, sid),
                nominal_latency_ns=int(round(latency_ms * 1e6)),
                clock=clock,
                clock_wrap_ns=None if wrap_s is None else int(round(wrap_s * 1e9)),
            )
        )
    reference = ctx.get(doc, "", "reference", str, "")
    if not reference:
        lidars = [s.id for s in sensors if s.kind == "lidar"]
        reference = lidars[0] if lidars else sensors[0].id
    elif reference not in [s.id for s in sensors]:
        ctx.fail(
            "reference", f"expected one of the kit's sensor ids {[s.id for s in sensors]}, got {reference!r}"
        )
    calib = ctx.get(doc, "", "calibration", str, "")
    calib_path = (Path(path).parent / calib).resolve() if calib else None
    return SensorKit(name, tuple(sensors), reference, calib_path, Path(path))


# ---------------------------------------------------------------- calibration


def camera_from_ros(ctx: YamlChecker, node: Any, key: str) -> CameraModel:
    """A ROS camera_info mapping (our calibration file's per-camera block) → :class:`CameraModel`."""
    ctx.mapping(node, key)
    ctx.no_unknown(
        node,
        key,
        (
            "image_width",
            "image_height",
            "distortion_model",
            "camera_matrix",
            "distortion_coefficients",
            "camera_name",
            "rectification_matrix",
            "projection_matrix",
        ),
    )
    width = ctx.get(node, key, "image_width", int)
    height = ctx.get(node, key, "image_height", int)
    if width <= 0 or height <= 0:
        ctx.fail(f"{key}.image_width", f"expected positive image size, got {width}x{height}")
    ros_model = ctx.get(node, key, "distortion_model", str, "plumb_bob")
    model = _ROS_MODELS.get(ros_model)
    if model is None:
        ctx.fail(f"{key}.distortion_model", f"expected one of {list(_ROS_MODELS)}, got {ros_model!r}")
    cm = ctx.mapping(ctx.get(node, key, "camera_matrix", dict), f"{key}.camera_matrix")
    K = ctx.numbers(cm, f"{key}.camera_matrix", "data", 9).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        ctx.fail(
            f"{key}.camera_matrix.data", f"expected fx > 0, fy > 0 and K[2][2] = 1, got {K.ravel().tolist()}"
        )
    dc = ctx.mapping(ctx.get(node, key, "distortion_coefficients", dict), f"{key}.distortion_coefficients")
    dist = ctx.numbers(dc, f"{key}.distortion_coefficients", "data", DISTORTION_SIZES[model])
    P = _optional_ros_matrix(ctx, node, key, "projection_matrix", (3, 4))
    R = _optional_ros_matrix(ctx, node, key, "rectification_matrix", (3, 3))
    return CameraModel(width, height, K, dist, model, P, R)


def _optional_ros_matrix(ctx: YamlChecker, node: dict, key: str, name: str, shape: tuple[int, int]):
    """A camera_info matrix (``{rows, cols, data}``) the file may leave out: (rows, cols) numbers, kept as
    written (None when absent)."""
    if name not in node:
        return None
    m = ctx.mapping(ctx.get(node, key, name, dict), f"{key}.{name}")
    return ctx.numbers(m, f"{key}.{name}", "data", shape[0] * shape[1]).reshape(shape)


def _load_extrinsic(ctx: YamlChecker, node: Any, key: str) -> Transform:
    ctx.mapping(node, key)
    ctx.no_unknown(node, key, ("parent", "translation", "rotation", "rpy_deg"))
    t = ctx.numbers(node, key, "translation", 3)
    if "rotation" in node and "rpy_deg" in node:
        ctx.fail(f"{key}.rotation", "expected either 'rotation' (quaternion x y z w) or 'rpy_deg', not both")
    if "rpy_deg" in node:
        r, p, y = np.deg2rad(ctx.numbers(node, key, "rpy_deg", 3))
        return Transform.from_rpy(t, r, p, y)
    q = ctx.numbers(node, key, "rotation", 4)
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > 1e-3:
        ctx.fail(f"{key}.rotation", f"expected a unit quaternion x y z w, got norm {norm:.6f}")
    return Transform.from_quat(t, q)


def _extrinsics_to_base(ctx: YamlChecker, nodes: dict, base: str) -> tuple[dict, dict]:
    """The file's extrinsics (each relative to its ``parent``: the base frame or another sensor) composed
    to the base frame: ({sensor: T_base_sensor}, {sensor: parent} for those not on the base frame). An
    unknown parent or a cycle is an error naming the key."""
    local: dict[str, tuple[str, Transform]] = {}
    for sid, node in nodes.items():
        key = f"extrinsics.{sid}"
        T = _load_extrinsic(ctx, node, key)
        local[str(sid)] = (ctx.get(node, key, "parent", str, base), T)
    parents = {}
    for sid, (parent, _T) in local.items():
        if parent != base:
            if parent not in local:
                have = sorted(local)
                ctx.fail(f"extrinsics.{sid}.parent", f"expected {base!r} or a sensor of extrinsics {have}, "
                         f"got {parent!r}")  # fmt: skip
            parents[sid] = parent
    composed = {}
    for sid in local:
        chain, p = [sid], local[sid][0]
        while p != base:
            if p in chain:
                ctx.fail(f"extrinsics.{sid}.parent", f"a cycle of parents: {' → '.join([*chain, p])}")
            chain.append(p)
            p = local[p][0]
        T = Transform.identity()
        for link in reversed(chain):  # T_base_sensor = T_base_p1 @ T_p1_p2 @ … @ T_pn_sensor
            T = T @ local[link][1]
        composed[sid] = T
    return composed, parents


def load_calibration(path: str | os.PathLike) -> Calibration:
    """Load and validate a calibration YAML (format: docs/rig-files.md)."""
    doc = _read_yaml(path)
    ctx = YamlChecker(path)
    ctx.no_unknown(
        doc, "", ("version", "base_frame", "cameras", "extrinsics", "time_offsets_ns", "provenance")
    )
    calib = Calibration(base_frame=ctx.get(doc, "", "base_frame", str, "base_link"))
    for cam_id, node in ctx.mapping(ctx.get(doc, "", "cameras", dict, {}), "cameras").items():
        calib.cameras[str(cam_id)] = camera_from_ros(ctx, node, f"cameras.{cam_id}")
    calib.extrinsics, calib.parents = _extrinsics_to_base(
        ctx, ctx.mapping(ctx.get(doc, "", "extrinsics", dict, {}), "extrinsics"), calib.base_frame
    )
    offsets = ctx.mapping(ctx.get(doc, "", "time_offsets_ns", dict, {}), "time_offsets_ns")
    for sid in offsets:
        calib.time_offsets_ns[str(sid)] = ctx.get(offsets, "time_offsets_ns", sid, int)
    calib.provenance = ctx.mapping(ctx.get(doc, "", "provenance", dict, {}), "provenance")
    missing = sorted(set(calib.cameras) - set(calib.extrinsics))
    if missing:
        ctx.fail(f"extrinsics.{missing[0]}", "missing: every camera with intrinsics needs its T_base_sensor")
    return calib


def _ros_matrix(m: np.ndarray) -> dict:
    """A matrix as camera_info writes one: ``{rows, cols, data}`` (row-major floats)."""
    m = np.atleast_2d(m)
    return {"rows": m.shape[0], "cols": m.shape[1], "data": [float(v) for v in m.ravel()]}


def camera_to_ros(cam: CameraModel, name: str = "") -> dict:
    """A camera as a ROS camera_info YAML mapping (also the per-camera block of our calibration file): R and
    P as the camera was given them, else the identity and ``[K | 0]``."""
    out = {
        "image_width": cam.width,
        "image_height": cam.height,
        "distortion_model": ROS_DISTORTION_MODELS[cam.model],
        "camera_matrix": _ros_matrix(cam.K),
        "distortion_coefficients": _ros_matrix(cam.distortion),
        "rectification_matrix": _ros_matrix(cam.rectification_matrix()),
        "projection_matrix": _ros_matrix(cam.projection_matrix()),
    }
    if name:
        out["camera_name"] = name
    return out


def calibration_to_dict(calib: Calibration) -> dict:
    return {
        "version": FORMAT_VERSION,
        "base_frame": calib.base_frame,
        "cameras": {k: camera_to_ros(v) for k, v in calib.cameras.items()},
        "extrinsics": {
            k: {
                "parent": calib.parents.get(k, calib.base_frame),
                "translation": [float(v) for v in T.translation],
                "rotation": [float(v) for v in T.quat],
            }
            for k, T in ((k, calib.T_parent(k)) for k in calib.extrinsics)
        },
        "time_offsets_ns": {k: int(v) for k, v in calib.time_offsets_ns.items()},
        "provenance": calib.provenance,
    }


def save_calibration(calib: Calibration, path: str | os.PathLike) -> None:
    """Write a calibration YAML atomically (temp file + rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(calibration_to_dict(calib), sort_keys=False), encoding="utf-8")
    os.replace(tmp, p)
