"""Ego-motion datagrams (pure): one JSON object per UDP datagram carrying one odometry or IMU sample.

The wire format (UTF-8 JSON, one object, at most :data:`MAX_DATAGRAM` bytes; field names as in ROS
``nav_msgs/Odometry`` and ``sensor_msgs/Imu``; SI units; quaternions x y z w)::

    {"type": "odometry", "stamp_ns": 1712000000123456789, "seq": 17,
     "frame": "odom", "child_frame": "base_link",
     "position": [x, y, z], "orientation": [qx, qy, qz, qw],          # pose of child_frame in frame
     "linear_velocity": [vx, vy, vz], "angular_velocity": [wx, wy, wz]}  # twist in child_frame
    {"type": "imu", "stamp_ns": 1712000000124456789, "seq": 70, "frame": "imu",
     "angular_velocity": [wx, wy, wz], "linear_acceleration": [ax, ay, az],   # rad/s, m/s² (gravity in)
     "orientation": [qx, qy, qz, qw] | null}

``stamp_ns``: the sender's own clock (integer ns, any epoch; it becomes ``raw_stamp_ns``). ``seq``:
optional sender count. ``frame``/``child_frame``: optional, defaults as shown. Anything else in the
object is ignored (a sender may add fields). It is what a vehicle's base controller or a ROS bridge can
send in a few lines, and the same JSON-over-UDP style as ``edgefuse run --udp``'s detections.

:func:`encode_datagram` is the exact inverse of :func:`decode_datagram` (floats as JSON's shortest
round-trip repr). A datagram that does not decode raises :class:`EgoDatagramError` with a ``reason``
(``oversize``, ``not_json``, ``type``, ``field``), which the source counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from edgefuse.errors import InputError
from edgefuse.types import Imu, Odometry

#: The largest datagram accepted (bytes); a sample is ~300 bytes.
MAX_DATAGRAM = 8192
TYPES = ("odometry", "imu")


class EgoDatagramError(InputError):
    """A datagram that is not a valid ego-motion sample; ``reason`` is the counter it goes to."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EgoSample:
    """One decoded datagram: the payload, the sender's stamp (ns), its count (or None) and the frame the
    message belongs to (odometry: ``child_frame``; IMU: ``frame``)."""

    payload: Odometry | Imu
    stamp_ns: int
    seq: int | None
    frame: str


def _vector(doc: dict, key: str, n: int, where: str, optional: bool = False) -> np.ndarray | None:
    v = doc.get(key)
    if v is None and optional:
        return None
    if (
        not isinstance(v, list)
        or len(v) != n
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    ):
        raise EgoDatagramError("field", f"{where}: {key}: expected {n} finite numbers, got {v!r:.80}")
    return np.array(v, dtype=np.float64)


def _string(doc: dict, key: str, default: str, where: str) -> str:
    v = doc.get(key, default)
    if not isinstance(v, str) or not v:
        raise EgoDatagramError("field", f"{where}: {key}: expected a non-empty string, got {v!r:.80}")
    return v


def decode_datagram(data: bytes, where: str = "ego datagram") -> EgoSample:
    """One datagram → :class:`EgoSample`; :class:`EgoDatagramError` names ``where``, the field and what
    was expected."""
    if len(data) > MAX_DATAGRAM:
        raise EgoDatagramError("oversize", f"{where}: {len(data)} bytes: expected at most {MAX_DATAGRAM}")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise EgoDatagramError("not_json", f"{where}: expected one UTF-8 JSON object: {e}") from None
    if not isinstance(doc, dict):
        raise EgoDatagramError("not_json", f"{where}: expected a JSON object, got {type(doc).__name__}")
    kind = doc.get("type")
    if kind not in TYPES:
        raise EgoDatagramError("type", f"{where}: type: expected one of {list(TYPES)}, got {kind!r:.40}")
    stamp = doc.get("stamp_ns")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise EgoDatagramError("field", f"{where}: stamp_ns: expected an integer (ns), got {stamp!r:.40}")
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise EgoDatagramError("field", f"{where}: seq: expected an integer or nothing, got {seq!r:.40}")
    if kind == "odometry":
        payload: Odometry | Imu = Odometry(
            _vector(doc, "position", 3, where),
            _vector(doc, "orientation", 4, where),
            _vector(doc, "linear_velocity", 3, where),
            _vector(doc, "angular_velocity", 3, where),
            frame=_string(doc, "frame", "odom", where),
            child_frame=_string(doc, "child_frame", "base_link", where),
        )
        frame = payload.child_frame
    else:
        payload = Imu(
            _vector(doc, "angular_velocity", 3, where),
            _vector(doc, "linear_acceleration", 3, where),
            _vector(doc, "orientation", 4, where, optional=True),
        )
        frame = _string(doc, "frame", "imu", where)
    return EgoSample(payload, stamp, seq, frame)


def _floats(a) -> list[float]:
    return [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)]


def encode_datagram(payload: Odometry | Imu, stamp_ns: int, seq: int | None = None, frame: str = "") -> bytes:
    """The datagram for one sample (the inverse of :func:`decode_datagram`). ``frame``: the IMU's frame
    (default ``imu``); odometry carries its payload's ``frame``/``child_frame``."""
    doc: dict = {"type": "", "stamp_ns": int(stamp_ns)}
    if seq is not None:
        doc["seq"] = int(seq)
    if isinstance(payload, Odometry):
        doc.update(
            type="odometry",
            frame=payload.frame,
            child_frame=payload.child_frame,
            position=_floats(payload.position),
            orientation=_floats(payload.orientation),
            linear_velocity=_floats(payload.linear_velocity),
            angular_velocity=_floats(payload.angular_velocity),
        )
    elif isinstance(payload, Imu):
        doc.update(
            type="imu",
            frame=frame or "imu",
            angular_velocity=_floats(payload.angular_velocity),
            linear_acceleration=_floats(payload.linear_acceleration),
            orientation=None if payload.orientation is None else _floats(payload.orientation),
        )
    else:
        raise ValueError(
            f"encode_datagram: expected an Odometry or Imu payload, got {type(payload).__name__!r}"
        )
    return json.dumps(doc, separators=(",", ":")).encode()
