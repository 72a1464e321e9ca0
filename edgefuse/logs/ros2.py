"""edgefuse payloads ↔ ROS 2 messages (CDR bytes), and the ROS 2 message definitions (schemas).

Mapping (docs/logs.md has the full table):

=================  ===================================  =======================================
payload            ROS 2 type                            notes
=================  ===================================  =======================================
Image              sensor_msgs/msg/Image                 rgb8, step = 3·W
CompressedImage    sensor_msgs/msg/CompressedImage       format "jpeg" / "png"
PointCloud         sensor_msgs/msg/PointCloud2           one FLOAT32 PointField per column,
RadarScan          sensor_msgs/msg/PointCloud2           packed, little-endian, point_step 4·C
Odometry           nav_msgs/msg/Odometry                 header.frame_id = Odometry.frame
Imu                sensor_msgs/msg/Imu                   orientation_covariance[0] = -1 if no
                                                         orientation (as ROS says)
Detections         edgefuse_msgs/msg/Detection3DArray    custom; header.frame_id = Detections.frame
Calibration        tf2_msgs/msg/TFMessage + CameraInfo   see recorder.py
=================  ===================================  =======================================

``encode_*`` return the CDR bytes of one message; ``decode`` returns ``(payload, stamp_ns, frame_id)``.
Decoded big arrays are read-only numpy views of the message bytes (no copy): ``.copy()`` to modify.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgefuse.geometry import ROS_DISTORTION_MODELS, CameraModel, Transform
from edgefuse.logs.cdr import CdrError, CdrReader, CdrWriter
from edgefuse.types import (
    Box3D,
    CompressedImage,
    Detection,
    Detections,
    Image,
    Imu,
    Odometry,
    PointCloud,
    RadarScan,
)

# ---------------------------------------------------------------- message definitions (ros2msg)

#: Own text of every message type we write, keyed by "pkg/msg/Type". Field types name other
#: packages' types as "pkg/Type" (same-package types without the package, as in the .msg files).
MSG_TEXT: dict[str, str] = {
    "builtin_interfaces/msg/Time": "int32 sec\nuint32 nanosec\n",
    "std_msgs/msg/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "geometry_msgs/msg/Vector3": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/msg/Point": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/msg/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
    "geometry_msgs/msg/Pose": "Point position\nQuaternion orientation\n",
    "geometry_msgs/msg/PoseWithCovariance": "Pose pose\nfloat64[36] covariance\n",
    "geometry_msgs/msg/Twist": "Vector3 linear\nVector3 angular\n",
    "geometry_msgs/msg/TwistWithCovariance": "Twist twist\nfloat64[36] covariance\n",
    "geometry_msgs/msg/Transform": "Vector3 translation\nQuaternion rotation\n",
    "geometry_msgs/msg/TransformStamped": (
        "std_msgs/Header header\nstring child_frame_id\nTransform transform\n"
    ),
    "tf2_msgs/msg/TFMessage": "geometry_msgs/TransformStamped[] transforms\n",
    "sensor_msgs/msg/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
        "uint32 step\nuint8[] data\n"
    ),
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "sensor_msgs/msg/PointField": (
        "uint8 INT8    = 1\nuint8 UINT8   = 2\nuint8 INT16   = 3\nuint8 UINT16  = 4\n"
        "uint8 INT32   = 5\nuint8 UINT32  = 6\nuint8 FLOAT32 = 7\nuint8 FLOAT64 = 8\n"
        "string name\nuint32 offset\nuint8 datatype\nuint32 count\n"
    ),
    "sensor_msgs/msg/PointCloud2": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\nbool is_bigendian\n"
        "uint32 point_step\nuint32 row_step\nuint8[] data\nbool is_dense\n"
    ),
    "sensor_msgs/msg/RegionOfInterest": (
        "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n"
    ),
    "sensor_msgs/msg/CameraInfo": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\n"
        "float64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\n"
        "RegionOfInterest roi\n"
    ),
    "sensor_msgs/msg/Imu": (
        "std_msgs/Header header\ngeometry_msgs/Quaternion orientation\nfloat64[9] orientation_covariance\n"
        "geometry_msgs/Vector3 angular_velocity\nfloat64[9] angular_velocity_covariance\n"
        "geometry_msgs/Vector3 linear_acceleration\nfloat64[9] linear_acceleration_covariance\n"
    ),
    "nav_msgs/msg/Odometry": (
        "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\n"
        "geometry_msgs/TwistWithCovariance twist\n"
    ),
    # edgefuse's own detections: vision_msgs/Detection3D has no velocity and carries class ids as
    # hypotheses with poses, so our object list gets a small flat schema of its own (docs/logs.md).
    "edgefuse_msgs/msg/Detection3D": (
        "# One object (edgefuse.types.Detection). Box in the array's header.frame_id.\n"
        "string label              # class name, one of edgefuse.types.CLASSES\n"
        "float64 score             # confidence in [0, 1]\n"
        "geometry_msgs/Point center   # box centre, m\n"
        "geometry_msgs/Vector3 size   # length (along heading), width, height, m\n"
        "float64 yaw               # heading about +z, rad; 0 = along +x\n"
        "float64 velocity_x        # m/s over ground, frame x\n"
        "float64 velocity_y        # m/s over ground, frame y\n"
        "int64 track_id            # -1 = not tracked\n"
    ),
    "edgefuse_msgs/msg/Detection3DArray": (
        "# All objects of one fusion frame (edgefuse.types.Detections).\n"
        "std_msgs/Header header    # stamp = Message.stamp_ns; frame_id = the boxes' frame\n"
        "int64 reference_stamp_ns  # Detections.stamp_ns: the frame's reference stamp, ns\n"
        "Detection3D[] detections\n"
        "# Per detection, in the same order (appended later: older logs end above; read as unknown).\n"
        "string[] attributes       # Detection.attribute, empty = none\n"
        "int32[] lidar_points      # LiDAR points on the object, -1 = not counted\n"
        "int32[] radar_points      # radar detections of the object, -1 = not counted\n"
        "float64[] visibility      # fraction visible in the camera, [0, 1]; -1 = unknown\n"
    ),
}

_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
    "wstring",
}


def _deps(name: str) -> list[str]:
    """Direct dependencies of a type ("pkg/msg/Type" names), in field order."""
    pkg = name.split("/")[0]
    out: list[str] = []
    for line in MSG_TEXT[name].splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) < 2 or "=" in line.split("#", 1)[0]:  # blank, comment or constant
            continue
        t = tokens[0].split("[")[0]
        if t in _PRIMITIVES:
            continue
        full = t.replace("/", "/msg/") if "/" in t else f"{pkg}/msg/{t}"
        if full not in out:
            out.append(full)
    return out


def schema_text(name: str) -> str:
    """The full ros2msg schema as rosbag2 writes it: the type's own text, then each dependency once
    (depth first) after a line of 80 ``=`` and a ``MSG: pkg/Type`` line."""
    seen: list[str] = []

    def visit(t: str) -> None:
        for d in _deps(t):
            if d not in seen:
                seen.append(d)
                visit(d)

    visit(name)
    parts = [MSG_TEXT[name]]
    for d in seen:
        pkg, _, typ = d.split("/")
        parts.append("=" * 80 + f"\nMSG: {pkg}/{typ}\n" + MSG_TEXT[d])
    return "\n".join(parts)


IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"
IMU = "sensor_msgs/msg/Imu"
DETECTIONS = "edgefuse_msgs/msg/Detection3DArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"

#: payload class → (ROS 2 schema name, default topic suffix)
PAYLOAD_SCHEMA: dict[type, tuple[str, str]] = {
    Image: (IMAGE, "image_raw"),
    CompressedImage: (COMPRESSED_IMAGE, "image_raw/compressed"),
    PointCloud: (POINT_CLOUD2, "points"),
    RadarScan: (POINT_CLOUD2, "points"),
    Odometry: (ODOMETRY, "odom"),
    Imu: (IMU, "imu"),
    Detections: (DETECTIONS, "detections"),
}

PAYLOAD_TYPES: dict[str, type] = {t.__name__: t for t in PAYLOAD_SCHEMA}

# ---------------------------------------------------------------- header and small helpers

_NS = 1_000_000_000


class StampError(ValueError):
    """A stamp that a ROS 2 ``builtin_interfaces/Time`` (int32 sec) cannot hold."""


def _header(w: CdrWriter, stamp_ns: int, frame: str) -> None:
    sec, nsec = divmod(int(stamp_ns), _NS)
    if not -(2**31) <= sec < 2**31:
        raise StampError(f"{stamp_ns} ns is outside builtin_interfaces/Time's int32 seconds")
    w.i32(sec)
    w.u32(nsec)
    w.string(frame)


def _read_header(r: CdrReader) -> tuple[int, str]:
    sec = r.i32("header.stamp.sec")
    nsec = r.u32("header.stamp.nanosec")
    return sec * _NS + nsec, r.string("header.frame_id")


def _vec3(w: CdrWriter, v) -> None:
    w.f64(float(v[0]))
    w.f64(float(v[1]))
    w.f64(float(v[2]))


def _read_vec(r: CdrReader, n: int, what: str) -> np.ndarray:
    return np.array([r.f64(what) for _ in range(n)], dtype=np.float64)


# ---------------------------------------------------------------- encoders


def encode_image(img: Image, stamp_ns: int, frame: str) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, frame)
    w.u32(img.height)
    w.u32(img.width)
    w.string("rgb8")
    w.u8(0)
    w.u32(3 * img.width)
    w.u8_seq(np.ascontiguousarray(img.data))
    return w.getvalue()


def encode_compressed_image(img: CompressedImage, stamp_ns: int, frame: str) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, frame)
    w.string(img.format)
    w.u8_seq(img.data)
    return w.getvalue()


_FLOAT32 = 7


def encode_points(pc: PointCloud | RadarScan, stamp_ns: int, frame: str) -> bytes:
    data = np.ascontiguousarray(pc.data, dtype="<f4")
    n, c = data.shape
    w = CdrWriter()
    _header(w, stamp_ns, frame)
    w.u32(1)
    w.u32(n)
    w.u32(c)
    for i, name in enumerate(pc.fields):
        w.string(name)
        w.u32(4 * i)
        w.u8(_FLOAT32)
        w.u32(1)
    w.boolean(False)
    w.u32(4 * c)
    w.u32(4 * c * n)
    w.u8_seq(data)
    w.boolean(bool(np.isfinite(data).all()))  # is_dense: no NaN/inf points
    return w.getvalue()


def encode_odometry(od: Odometry, stamp_ns: int) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, od.frame)
    w.string(od.child_frame)
    _vec3(w, od.position)
    w.f64s(od.orientation)
    w.f64s(np.zeros(36))
    _vec3(w, od.linear_velocity)
    _vec3(w, od.angular_velocity)
    w.f64s(np.zeros(36))
    return w.getvalue()


def encode_imu(imu: Imu, stamp_ns: int, frame: str) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, frame)
    ocov = np.zeros(9)
    if imu.orientation is None:
        w.f64s(np.array([0.0, 0.0, 0.0, 1.0]))
        ocov[0] = -1.0
    else:
        w.f64s(imu.orientation)
    w.f64s(ocov)
    _vec3(w, imu.angular_velocity)
    w.f64s(np.zeros(9))
    _vec3(w, imu.linear_acceleration)
    w.f64s(np.zeros(9))
    return w.getvalue()


def encode_detections(dets: Detections, stamp_ns: int) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, dets.frame)
    w.i64(int(dets.stamp_ns))
    w.u32(len(dets.objects))
    for d in dets.objects:
        w.string(d.label)
        w.f64(d.score)
        _vec3(w, d.box.center)
        _vec3(w, d.box.size)
        w.f64(d.box.yaw)
        w.f64(float(d.velocity[0]))
        w.f64(float(d.velocity[1]))
        w.i64(int(d.track_id))
    objs = dets.objects
    w.u32(len(objs))
    for d in objs:
        w.string(d.attribute)
    for name in ("lidar_points", "radar_points"):
        w.u32(len(objs))
        for d in objs:
            v = getattr(d, name)
            w.i32(-1 if v is None else v)
    w.f64_seq(np.array([-1.0 if d.visibility is None else d.visibility for d in objs], np.float64))
    return w.getvalue()


def header_frame(payload, frame: str) -> str:
    """The header.frame_id a payload is written with: its own frame where it has one (Odometry: the
    pose frame; Detections: the boxes' frame), else the message's frame."""
    if isinstance(payload, Odometry):
        return payload.frame
    if isinstance(payload, Detections):
        return payload.frame
    return frame


def encode(payload, stamp_ns: int, frame: str) -> bytes:
    """CDR bytes of one payload (see the module table)."""
    if isinstance(payload, Image):
        return encode_image(payload, stamp_ns, frame)
    if isinstance(payload, CompressedImage):
        return encode_compressed_image(payload, stamp_ns, frame)
    if isinstance(payload, (PointCloud, RadarScan)):
        return encode_points(payload, stamp_ns, frame)
    if isinstance(payload, Odometry):
        return encode_odometry(payload, stamp_ns)
    if isinstance(payload, Imu):
        return encode_imu(payload, stamp_ns, frame)
    if isinstance(payload, Detections):
        return encode_detections(payload, stamp_ns)
    raise TypeError(
        f"payload: expected one of {[t.__name__ for t in PAYLOAD_SCHEMA]}, got {type(payload).__name__}"
    )


def encode_tf(transforms: list[tuple[str, str, Transform]], stamp_ns: int) -> bytes:
    """tf2_msgs/TFMessage from (parent, child, T_parent_child) triples."""
    w = CdrWriter()
    w.u32(len(transforms))
    for parent, child, T in transforms:
        _header(w, stamp_ns, parent)
        w.string(child)
        _vec3(w, T.translation)
        w.f64s(T.quat)
    return w.getvalue()


def decode_tf(data) -> list[tuple[str, str, Transform, int]]:
    r = CdrReader(data)
    out = []
    for _ in range(r.seq_len("transforms", 8)):
        stamp, parent = _read_header(r)
        child = r.string("child_frame_id")
        t = _read_vec(r, 3, "transform.translation")
        q = _read_vec(r, 4, "transform.rotation")
        out.append((parent, child, Transform.from_quat(t, q), stamp))
    return out


def encode_camera_info(cam: CameraModel, stamp_ns: int, frame: str) -> bytes:
    w = CdrWriter()
    _header(w, stamp_ns, frame)
    w.u32(cam.height)
    w.u32(cam.width)
    w.string(ROS_DISTORTION_MODELS[cam.model])
    w.f64_seq(np.asarray(cam.distortion, dtype=np.float64))
    w.f64s(np.asarray(cam.K, dtype=np.float64).ravel())
    w.f64s(cam.rectification_matrix().ravel())
    w.f64s(cam.projection_matrix().ravel())
    w.u32(0)
    w.u32(0)
    for _ in range(4):
        w.u32(0)
    w.boolean(False)
    return w.getvalue()


# ---------------------------------------------------------------- decoders

_PF_DTYPES = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}


def _decode_image(r: CdrReader) -> Image:
    h = r.u32("height")
    wd = r.u32("width")
    enc = r.string("encoding")
    r.u8("is_bigendian")
    step = r.u32("step")
    data = r.u8_seq("data")
    if enc not in ("rgb8", "bgr8"):
        raise CdrError(r.offset, f"encoding: expected 'rgb8' or 'bgr8', got {enc!r}")
    if step < 3 * wd or len(data) < step * h:
        raise CdrError(r.offset, f"data: {len(data)} bytes, step {step} do not hold {h}x{wd} {enc}")
    arr = np.frombuffer(data, dtype=np.uint8, count=step * h).reshape(h, step)[:, : 3 * wd].reshape(h, wd, 3)
    if enc == "bgr8":
        arr = np.ascontiguousarray(arr[:, :, ::-1])
    return Image(arr)


def _decode_compressed(r: CdrReader) -> CompressedImage:
    fmt = r.string("format")
    data = bytes(r.u8_seq("data"))
    low = fmt.lower()
    if "png" in low:
        return CompressedImage(data, "png")
    if "jpeg" in low or "jpg" in low:
        return CompressedImage(data, "jpeg")
    raise CdrError(r.offset, f"format: expected 'jpeg' or 'png', got {fmt!r}")


def _decode_points(r: CdrReader, kind: type) -> PointCloud | RadarScan:
    height = r.u32("height")
    width = r.u32("width")
    names, offsets, dtypes = [], [], []
    for _ in range(r.seq_len("fields", 13)):
        name = r.string("fields.name")
        off = r.u32("fields.offset")
        dt = r.u8("fields.datatype")
        count = r.u32("fields.count")
        if dt not in _PF_DTYPES:
            raise CdrError(r.offset, f"fields[{name}].datatype: expected 1..8, got {dt}")
        if count != 1:
            raise CdrError(r.offset, f"fields[{name}].count: expected 1, got {count}")
        names.append(name)
        offsets.append(off)
        dtypes.append(_PF_DTYPES[dt])
    bigendian = r.boolean("is_bigendian")
    point_step = r.u32("point_step")
    r.u32("row_step")
    data = r.u8_seq("data")
    r.boolean("is_dense")
    n = height * width
    if bigendian:
        raise CdrError(r.offset, "is_bigendian: expected little-endian point data")
    if len(data) < n * point_step:
        raise CdrError(r.offset, f"data: {len(data)} bytes cannot hold {n} points of {point_step} bytes")
    c = len(names)
    packed = all(d == "<f4" for d in dtypes) and offsets == [4 * i for i in range(c)] and point_step == 4 * c
    if packed and n * point_step:
        arr = np.frombuffer(data, dtype="<f4", count=n * c).reshape(n, c)
        if not arr.flags.aligned:  # the record landed at an odd offset in its chunk: copy, keep read-only
            arr = arr.copy()
            arr.flags.writeable = False
    elif packed:
        arr = np.zeros((n, c), dtype=np.float32)
    else:  # foreign layout: convert each field to a float32 column (a copy)
        st = np.dtype({"names": names, "formats": dtypes, "offsets": offsets, "itemsize": point_step})
        rec = np.frombuffer(data, dtype=st, count=n)
        arr = np.empty((n, c), dtype=np.float32)
        for i, name in enumerate(names):
            arr[:, i] = rec[name]
    try:
        return kind(arr, tuple(names))
    except ValueError as e:
        raise CdrError(r.offset, f"fields: {e}") from None


def _decode_odometry(r: CdrReader, stamp_ns: int, frame: str) -> Odometry:
    child = r.string("child_frame_id")
    pos = _read_vec(r, 3, "pose.pose.position")
    quat = _read_vec(r, 4, "pose.pose.orientation")
    r.f64s(36, "pose.covariance")
    lin = _read_vec(r, 3, "twist.twist.linear")
    ang = _read_vec(r, 3, "twist.twist.angular")
    r.f64s(36, "twist.covariance")
    return Odometry(pos, quat, lin, ang, frame=frame, child_frame=child)


def _decode_imu(r: CdrReader) -> Imu:
    quat = _read_vec(r, 4, "orientation")
    ocov = r.f64s(9, "orientation_covariance")
    ang = _read_vec(r, 3, "angular_velocity")
    r.f64s(9, "angular_velocity_covariance")
    acc = _read_vec(r, 3, "linear_acceleration")
    r.f64s(9, "linear_acceleration_covariance")
    return Imu(ang, acc, None if ocov[0] == -1.0 else quat)


def _decode_detections(r: CdrReader, frame: str) -> Detections:
    ref = r.i64("reference_stamp_ns")
    objs = []
    # smallest element: label length (4) + NUL (1) + eight 8-byte numbers (64); padding comes on top
    for _ in range(r.seq_len("detections", 69)):
        label = r.string("detections.label")
        score = r.f64("detections.score")
        center = _read_vec(r, 3, "detections.center")
        size = _read_vec(r, 3, "detections.size")
        yaw = r.f64("detections.yaw")
        vel = _read_vec(r, 2, "detections.velocity")
        track = r.i64("detections.track_id")
        try:
            objs.append(Detection(label, score, Box3D(center, size, yaw), vel, track))
        except ValueError as e:
            raise CdrError(r.offset, f"detections[{len(objs)}]: {e}") from None
    if r.remaining >= 4:  # a log written before the per-detection extras ends here (or pads to 4)
        objs = _decode_detection_extras(r, objs)
    return Detections(ref, tuple(objs), frame=frame)


def _decode_detection_extras(r: CdrReader, objs: list) -> list:
    """The per-detection sequences appended to Detection3DArray (attributes, point counts, visibility)."""

    def seq(name: str, min_bytes: int, read) -> list:
        n = r.seq_len(name, min_bytes)
        if n != len(objs):
            raise CdrError(r.offset, f"{name}: expected {len(objs)} entries (one per detection), got {n}")
        return [read(f"{name}[{i}]") for i in range(n)]

    attrs = seq("attributes", 4, r.string)
    lidar = seq("lidar_points", 4, r.i32)
    radar = seq("radar_points", 4, r.i32)
    vis = seq("visibility", 8, r.f64)
    out = []
    for i, o in enumerate(objs):
        try:
            out.append(
                replace(
                    o,
                    attribute=attrs[i],
                    lidar_points=None if lidar[i] < 0 else lidar[i],
                    radar_points=None if radar[i] < 0 else radar[i],
                    visibility=None if vis[i] < 0 else vis[i],
                )
            )
        except ValueError as e:
            raise CdrError(r.offset, f"detections[{i}]: {e}") from None
    return out


def decode(schema: str, data, payload: str = "") -> tuple[object, int, str]:
    """Decode one message: ``(payload, header stamp ns, header.frame_id)``.

    ``payload``: the edgefuse type name recorded with the channel ("RadarScan" picks RadarScan for a
    PointCloud2; otherwise PointCloud). Raises :class:`CdrError` (with the byte offset) on bad bytes.
    """
    r = CdrReader(data)
    stamp, frame = _read_header(r)
    if schema == IMAGE:
        out = _decode_image(r)
    elif schema == COMPRESSED_IMAGE:
        out = _decode_compressed(r)
    elif schema == POINT_CLOUD2:
        out = _decode_points(r, RadarScan if payload == "RadarScan" else PointCloud)
    elif schema == ODOMETRY:
        out = _decode_odometry(r, stamp, frame)
    elif schema == IMU:
        out = _decode_imu(r)
    elif schema == DETECTIONS:
        out = _decode_detections(r, frame)
    else:
        raise CdrError(0, f"schema {schema!r} has no edgefuse payload")
    return out, stamp, frame


DECODABLE = (IMAGE, COMPRESSED_IMAGE, POINT_CLOUD2, ODOMETRY, IMU, DETECTIONS)
