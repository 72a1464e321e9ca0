"""The CDR codec against hand-made bytes and against mcap_ros2's independent encoder/decoder, with
property tests over random field names, shapes, NaNs and empty clouds."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mcap_ros2._dynamic import generate_dynamic, serialize_dynamic

from edgefuse.logs import ros2
from edgefuse.logs.cdr import CdrError, CdrReader
from edgefuse.types import Box3D, Detection, Detections, Imu, PointCloud, RadarScan


def ros_decode(schema: str, data: bytes):
    return generate_dynamic(schema, ros2.schema_text(schema))[schema](data)


def ros_encode(schema: str, msg: dict) -> bytes:
    return serialize_dynamic(schema, ros2.schema_text(schema))[schema](msg)


def test_imu_bytes_match_a_hand_made_layout():
    """Header with a 2-char frame (string ends at CDR offset 15 → 1 pad byte before the float64s)."""
    imu = Imu([0.1, 0.2, 0.3], [1.0, 2.0, 9.81], [0.0, 0.0, 0.6, 0.8])
    got = ros2.encode(imu, 3 * 10**9 + 25, "ab")
    want = (
        b"\x00\x01\x00\x00"
        + struct.pack("<iI", 3, 25)
        + struct.pack("<I", 3)
        + b"ab\x00"
        + b"\x00"  # pad to 8
        + struct.pack("<4d", 0.0, 0.0, 0.6, 0.8)
        + struct.pack("<9d", *[0.0] * 9)
        + struct.pack("<3d", 0.1, 0.2, 0.3)
        + struct.pack("<9d", *[0.0] * 9)
        + struct.pack("<3d", 1.0, 2.0, 9.81)
        + struct.pack("<9d", *[0.0] * 9)
    )
    assert got == want


def test_negative_stamp_uses_floor_seconds():
    data = ros2.encode(Imu([0, 0, 0], [0, 0, 0]), -1, "f")
    assert struct.unpack_from("<iI", data, 4) == (-1, 999_999_999)
    _, stamp, _ = ros2.decode(ros2.IMU, data)
    assert stamp == -1


def test_every_schema_parses_in_the_independent_decoder():
    for name in (
        ros2.IMAGE,
        ros2.COMPRESSED_IMAGE,
        ros2.POINT_CLOUD2,
        ros2.ODOMETRY,
        ros2.IMU,
        ros2.DETECTIONS,
        ros2.TF_MESSAGE,
        ros2.CAMERA_INFO,
    ):
        text = ros2.schema_text(name)
        assert name in generate_dynamic(name, text)
        for block in text.split("=" * 80 + "\n")[1:]:
            assert block.startswith("MSG: ") and block.split("\n")[0].count("/") == 1


names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=12,
)


@st.composite
def clouds(draw):
    kind = draw(st.sampled_from([PointCloud, RadarScan]))
    required = ["x", "y", "z", "intensity"] if kind is PointCloud else ["x", "y", "z"]
    extra = draw(st.lists(names.filter(lambda s: s not in required), max_size=4, unique=True))
    fields = draw(st.permutations(required + extra))
    n = draw(st.integers(0, 40))
    data = draw(hnp.arrays(np.float32, (n, len(fields)), elements=st.floats(width=32, allow_nan=True)))
    return kind(data, tuple(fields))


@settings(max_examples=120, deadline=None)
@given(cloud=clouds(), stamp=st.integers(-(2**31) * 10**9, 2**31 * 10**9 - 1), frame=names)
def test_clouds_round_trip_and_decode_independently(cloud, stamp, frame):
    data = ros2.encode(cloud, stamp, frame)
    back, s, f = ros2.decode(ros2.POINT_CLOUD2, data, type(cloud).__name__)
    assert type(back) is type(cloud) and (s, f) == (stamp, frame)
    assert back.fields == cloud.fields and back.data.shape == cloud.data.shape
    assert back.data.tobytes() == cloud.data.tobytes()  # NaN payloads included
    d = ros_decode(ros2.POINT_CLOUD2, data)
    assert [x.name for x in d.fields] == list(cloud.fields)
    assert bytes(d.data) == cloud.data.tobytes()
    assert d.width == len(cloud) and d.header.frame_id == frame
    assert d.header.stamp.sec * 10**9 + d.header.stamp.nanosec == stamp


def test_foreign_pointcloud2_layout_is_converted():
    """A driver-style cloud (float32 xyz, uint8 intensity, uint16 ring, 16-byte points) written by
    mcap_ros2's encoder reads back as float32 columns."""
    n = 5
    rec = np.zeros(
        n,
        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1"), ("pad", "u1"), ("ring", "<u2")],
    )
    rec["x"], rec["y"], rec["z"] = np.arange(n), -np.arange(n), 0.5
    rec["intensity"], rec["ring"] = [0, 10, 200, 255, 7], [0, 1, 31, 65535, 2]
    msg = {
        "header": {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "velo"},
        "height": 1,
        "width": n,
        "fields": [
            {"name": "x", "offset": 0, "datatype": 7, "count": 1},
            {"name": "y", "offset": 4, "datatype": 7, "count": 1},
            {"name": "z", "offset": 8, "datatype": 7, "count": 1},
            {"name": "intensity", "offset": 12, "datatype": 2, "count": 1},
            {"name": "ring", "offset": 14, "datatype": 4, "count": 1},
        ],
        "is_bigendian": False,
        "point_step": 16,
        "row_step": 16 * n,
        "data": rec.tobytes(),
        "is_dense": True,
    }
    cloud, stamp, frame = ros2.decode(ros2.POINT_CLOUD2, ros_encode(ros2.POINT_CLOUD2, msg))
    assert (stamp, frame) == (1_000_000_002, "velo")
    assert cloud.fields == ("x", "y", "z", "intensity", "ring")
    assert cloud.column("ring").tolist() == [0, 1, 31, 65535, 2]
    assert cloud.column("intensity").tolist() == [0, 10, 200, 255, 7]
    assert cloud.column("y").tolist() == [0, -1, -2, -3, -4]


def test_foreign_bgr8_image_with_row_padding():
    h, w, step = 3, 4, 16
    rows = np.arange(h * step, dtype=np.uint8).reshape(h, step)
    msg = {
        "header": {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": "c"},
        "height": h,
        "width": w,
        "encoding": "bgr8",
        "is_bigendian": 0,
        "step": step,
        "data": rows.tobytes(),
    }
    img, _, _ = ros2.decode(ros2.IMAGE, ros_encode(ros2.IMAGE, msg))
    bgr = rows[:, :12].reshape(h, w, 3)
    assert np.array_equal(img.data, bgr[:, :, ::-1])


@pytest.mark.parametrize(
    "data, what",
    [
        (b"", "encapsulation header"),
        (b"\x00\x00\x00\x00" + bytes(40), "big-endian"),
        (b"\x00\x01\x00\x00" + struct.pack("<iI", 0, 0), "header.frame_id length"),
        (b"\x00\x01\x00\x00" + struct.pack("<iII", 0, 0, 1000) + b"abc", "header.frame_id"),
    ],
)
def test_malformed_cdr_names_offset_and_field(data, what):
    with pytest.raises(CdrError, match=what) as e:
        ros2.decode(ros2.IMU, data)
    assert "CDR offset" in str(e.value)


def test_truncated_messages_of_every_type_fail_cleanly():
    """Every prefix of a valid message is rejected with a CdrError, never another exception."""
    from test_logs_roundtrip import sample_messages

    for m in sample_messages(2)[7:]:  # the second round: detections with objects, imu without orientation
        schema = ros2.PAYLOAD_SCHEMA[type(m.payload)][0]
        data = ros2.encode(m.payload, m.stamp_ns, m.frame)
        # a Detections message cut where its appended per-detection fields start (plus up to 3 padding
        # bytes) is a whole message of the older layout: tested in test_detections_without_extras_load
        old_end = _old_layout_end(data) if isinstance(m.payload, Detections) else -1
        for cut in range(0, len(data), max(1, len(data) // 97)):
            if old_end <= cut < old_end + 4:
                continue
            with pytest.raises(CdrError):
                ros2.decode(schema, data[:cut], type(m.payload).__name__)


def _old_layout_end(data: bytes) -> int:
    """Where the detections sequence of an encoded Detection3DArray ends (read with the reader itself:
    header, reference stamp, then each element's fields in the schema's order)."""
    r = CdrReader(data)
    r.u32("sec"), r.u32("nanosec"), r.string("frame_id"), r.i64("reference_stamp_ns")
    for _ in range(r.u32("detections")):
        r.string("label")
        for _ in range(10):  # score, center xyz, size xyz, yaw, velocity xy: float64
            r.f64()
        r.i64("track_id")
    return r.offset


def test_detections_without_extras_load():
    """A Detection3DArray written before attributes, point counts and visibility were appended (the
    message ends after the detections) loads with them unknown."""
    box = Box3D([5.0, 1.0, 0.8], [4.5, 1.9, 1.6], 0.2)
    extras = {"lidar_points": 40, "radar_points": 2, "visibility": 0.5}
    det = Detection("car", 0.5, box, [1.0, 0.0], 7, "vehicle.moving", **extras)
    data = ros2.encode(Detections(11, (det,)), 11, "base_link")
    full = ros2.decode(ros2.DETECTIONS, data)[0].objects[0]
    assert full.attribute == "vehicle.moving"
    assert (full.lidar_points, full.radar_points, full.visibility) == (40, 2, 0.5)
    old = ros2.decode(ros2.DETECTIONS, data[: _old_layout_end(data)])[0].objects[0]
    assert (old.attribute, old.lidar_points, old.radar_points, old.visibility) == ("", None, None, None)
    assert old.track_id == 7 and np.allclose(old.box.center, [5.0, 1.0, 0.8])
    bad = bytearray(data)
    end = _old_layout_end(data)
    bad[end : end + 4] = (2).to_bytes(4, "little")  # two attributes for one detection
    with pytest.raises(CdrError, match="one per detection"):
        ros2.decode(ros2.DETECTIONS, bytes(bad))


def test_reader_bounds_sequence_lengths():
    r = CdrReader(b"\x00\x01\x00\x00" + struct.pack("<I", 2**31))
    with pytest.raises(CdrError, match="cannot fit"):
        r.seq_len("fields", 13)
