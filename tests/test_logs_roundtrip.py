"""Record → read round trips: bit-identical payloads and stamps, decodable by independent ROS 2 decoders
(mcap_ros2's dynamic CDR decoder and rosbags), calibration on /tf_static + camera_info + attachment,
topic/time-range selection, log_time ordering."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from edgefuse.errors import InputError
from edgefuse.geometry import CameraModel, Transform
from edgefuse.logs import LogReader, Recorder
from edgefuse.rig import Calibration
from edgefuse.types import (
    Box3D,
    CompressedImage,
    Detection,
    Detections,
    Image,
    Imu,
    Message,
    Odometry,
    PointCloud,
    RadarScan,
)

T0 = 1_700_000_000_123_456_789


class FakeClock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def sample_messages(n: int = 4, seed: int = 0) -> list[Message]:
    """Every payload type, with distinct raw/recv/mapped stamps, frames and seq numbers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = T0 + i * 100_000_000
        cloud = rng.standard_normal((50 + i, 5)).astype(np.float32)
        cloud[0, 0] = np.nan  # NaNs go through bit-exact
        out += [
            Message(
                "lidar",
                t,
                PointCloud(cloud, ("x", "y", "z", "intensity", "t_ns")),
                raw_stamp_ns=5_000 + i,
                recv_ns=t + 1_000,
                frame="lidar_top",
                seq=i,
            ),
            Message(
                "cam0",
                t - 7,
                Image(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)),
                raw_stamp_ns=9_000 + i,
                recv_ns=t + 2_000,
                seq=10 + i,
            ),
            Message(
                "cam1", t, CompressedImage(rng.bytes(300 + i), "jpeg" if i % 2 else "png"), recv_ns=t + 2_500
            ),
            Message(
                "radar",
                t,
                RadarScan(
                    rng.standard_normal((7, 6)).astype(np.float32), ("x", "y", "z", "doppler", "rcs", "snr")
                ),
                recv_ns=t + 3_000,
                seq=i,
            ),
            Message(
                "odom",
                t,
                Odometry(
                    rng.standard_normal(3),
                    [0.0, 0.0, np.sin(0.1 * i), np.cos(0.1 * i)],
                    rng.standard_normal(3),
                    rng.standard_normal(3),
                    frame="map",
                    child_frame="base_link",
                ),
                recv_ns=t + 4_000,
            ),
            Message(
                "imu",
                t,
                Imu(rng.standard_normal(3), rng.standard_normal(3), None if i % 2 else [0.0, 0.6, 0.0, 0.8]),
                recv_ns=t + 4_500,
                frame="imu_link",
            ),
            Message(
                "ground_truth",
                t,
                Detections(
                    t - 3,
                    tuple(
                        Detection(
                            ("car", "pedestrian", "cyclist")[k % 3],
                            float(rng.uniform()),
                            Box3D(rng.standard_normal(3), rng.uniform(0.5, 5, 3), float(rng.uniform(-3, 3))),
                            rng.standard_normal(2),
                            k - 1,
                            # odd k: counted (zero counts included), even k: not counted
                            lidar_points=(3 * k - 3) if k % 2 else None,
                            radar_points=(k // 2) if k % 2 else None,
                            visibility=k / 9.0 if k % 2 else None,
                        )
                        for k in range(i)
                    ),
                ),
                recv_ns=t + 5_000,
            ),
        ]
    return out


def assert_same_message(a: Message, b: Message) -> None:
    assert (a.sensor_id, a.stamp_ns, a.raw_stamp_ns, a.recv_ns, a.frame, a.seq) == (
        b.sensor_id,
        b.stamp_ns,
        b.raw_stamp_ns,
        b.recv_ns,
        b.frame,
        b.seq,
    )
    pa, pb = a.payload, b.payload
    assert type(pa) is type(pb)
    if isinstance(pa, (PointCloud, RadarScan)):
        assert pa.fields == pb.fields and pa.data.shape == pb.data.shape
        assert pa.data.tobytes() == pb.data.tobytes()
    elif isinstance(pa, Image):
        assert pa.data.shape == pb.data.shape and pa.data.tobytes() == pb.data.tobytes()
    elif isinstance(pa, CompressedImage):
        assert (pa.data, pa.format) == (pb.data, pb.format)
    elif isinstance(pa, Odometry):
        for f in ("position", "orientation", "linear_velocity", "angular_velocity"):
            assert getattr(pa, f).tobytes() == getattr(pb, f).tobytes()
        assert (pa.frame, pa.child_frame) == (pb.frame, pb.child_frame)
    elif isinstance(pa, Imu):
        assert pa.angular_velocity.tobytes() == pb.angular_velocity.tobytes()
        assert pa.linear_acceleration.tobytes() == pb.linear_acceleration.tobytes()
        assert (pa.orientation is None) == (pb.orientation is None)
        if pa.orientation is not None:
            assert pa.orientation.tobytes() == pb.orientation.tobytes()
    elif isinstance(pa, Detections):
        assert (pa.stamp_ns, pa.frame, len(pa.objects)) == (pb.stamp_ns, pb.frame, len(pb.objects))
        for da, db in zip(pa.objects, pb.objects, strict=True):
            assert (da.label, da.score, da.box.yaw, da.track_id) == (
                db.label,
                db.score,
                db.box.yaw,
                db.track_id,
            )
            assert (da.attribute, da.lidar_points, da.radar_points, da.visibility) == (
                db.attribute,
                db.lidar_points,
                db.radar_points,
                db.visibility,
            )
            for x, y in (
                (da.box.center, db.box.center),
                (da.box.size, db.box.size),
                (da.velocity, db.velocity),
            ):
                assert x.tobytes() == y.tobytes()
    else:  # pragma: no cover
        raise AssertionError(type(pa))


def calibration() -> Calibration:
    K = np.array([[800.0, 0, 640.5], [0, 790.0, 360.25], [0, 0, 1]])
    return Calibration(
        cameras={"cam0": CameraModel(1280, 720, K, [0.1, -0.05, 0.001, 0.002, 0.01])},
        extrinsics={
            "cam0": Transform.from_rpy([1.5, 0.1, 1.2], -np.pi / 2, 0.0, -np.pi / 2),
            "lidar": Transform.from_rpy([0.0, 0.0, 1.8], 0.0, 0.0, 0.05),
        },
        time_offsets_ns={"cam0": -1500},
        provenance={"tool": "test"},
    )


@pytest.fixture(params=["zstd", "lz4", "none"])
def recorded(tmp_path, request):
    path = tmp_path / f"log_{request.param}.mcap"
    msgs = sample_messages()
    clock = FakeClock()
    with Recorder(path, compression=request.param, chunk_interval_ns=1000, clock=clock) as rec:
        rec.write_calibration(calibration(), frames={"lidar": "lidar_top"})
        topics = []
        for i, m in enumerate(msgs):
            clock.t = 300 * i  # a chunk closes every few messages
            topics.append(rec.write(m))
        rec.write_metadata("run", {"vehicle": "test-car", "n": 3})
    return path, msgs, topics


def test_round_trip_is_bit_identical(recorded):
    path, msgs, topics = recorded
    r = LogReader(path)
    assert not r.truncated and r.errors == []
    assert r.chunk_count > 3
    got = list(r.messages())
    assert [t for t, _ in got] == topics  # recv_ns increases in write order here
    assert len(got) == len(msgs)
    for (_, b), a in zip(got, msgs, strict=True):
        assert_same_message(a, b)
    assert r.metadata() == {"run": {"vehicle": "test-car", "n": "3"}}


def test_topics_and_counts(recorded):
    path, msgs, _ = recorded
    info = LogReader(path).topics()
    assert set(info) == {
        "/lidar/points",
        "/cam0/image_raw",
        "/cam1/image_raw/compressed",
        "/radar/points",
        "/odom/odom",
        "/imu/imu",
        "/ground_truth/detections",
        "/tf_static",
        "/cam0/camera_info",
    }
    lid = info["/lidar/points"]
    assert (lid.schema, lid.payload, lid.sensor_id, lid.count) == (
        "sensor_msgs/msg/PointCloud2",
        "PointCloud",
        "lidar",
        4,
    )
    lidar_recv = [m.recv_ns for m in msgs if m.sensor_id == "lidar"]
    assert (lid.first_ns, lid.last_ns) == (lidar_recv[0], lidar_recv[-1])
    assert info["/radar/points"].payload == "RadarScan"
    assert info["/tf_static"].count == 1 and info["/cam0/camera_info"].count == 1


def test_independent_ros2_decoder_reads_every_type(recorded):
    """mcap_ros2's own dynamic decoder (built from our embedded msgdef text) sees the same values."""
    path, msgs, _ = recorded
    by_recv = {m.recv_ns: m for m in msgs}
    seen = set()
    with open(path, "rb") as f:
        for schema, channel, mc, d in make_reader(
            f, decoder_factories=[DecoderFactory()]
        ).iter_decoded_messages():
            seen.add(schema.name)
            if channel.topic in ("/tf_static", "/cam0/camera_info"):
                continue
            m = by_recv[mc.log_time]
            assert (mc.publish_time, mc.sequence) == (m.raw_stamp_ns, m.seq)
            assert d.header.stamp.sec * 10**9 + d.header.stamp.nanosec == m.stamp_ns
            p = m.payload
            if isinstance(p, (PointCloud, RadarScan)):
                assert [f.name for f in d.fields] == list(p.fields)
                assert [(f.offset, f.datatype, f.count) for f in d.fields] == [
                    (4 * i, 7, 1) for i in range(len(p.fields))
                ]
                assert (d.height, d.width, d.point_step, d.row_step, d.is_bigendian) == (
                    1,
                    len(p),
                    4 * len(p.fields),
                    4 * len(p.fields) * len(p),
                    False,
                )
                assert bytes(d.data) == p.data.astype("<f4").tobytes()
                assert d.header.frame_id == m.frame
                assert d.is_dense == bool(np.isfinite(p.data).all())
            elif isinstance(p, Image):
                assert (d.height, d.width, d.encoding, d.step) == (p.height, p.width, "rgb8", 3 * p.width)
                assert bytes(d.data) == p.data.tobytes()
            elif isinstance(p, CompressedImage):
                assert (bytes(d.data), d.format) == (p.data, p.format)
            elif isinstance(p, Odometry):
                assert (d.header.frame_id, d.child_frame_id) == (p.frame, p.child_frame)
                pose = d.pose.pose
                assert [pose.position.x, pose.position.y, pose.position.z] == p.position.tolist()
                q = pose.orientation
                assert [q.x, q.y, q.z, q.w] == p.orientation.tolist()
                tw = d.twist.twist
                assert [tw.linear.x, tw.linear.y, tw.linear.z] == p.linear_velocity.tolist()
                assert [tw.angular.x, tw.angular.y, tw.angular.z] == p.angular_velocity.tolist()
                assert len(d.pose.covariance) == 36
            elif isinstance(p, Imu):
                assert [
                    d.angular_velocity.x,
                    d.angular_velocity.y,
                    d.angular_velocity.z,
                ] == p.angular_velocity.tolist()
                a = d.linear_acceleration
                assert [a.x, a.y, a.z] == p.linear_acceleration.tolist()
                if p.orientation is None:
                    assert d.orientation_covariance[0] == -1.0
                else:
                    o = d.orientation
                    assert [o.x, o.y, o.z, o.w] == p.orientation.tolist() and d.orientation_covariance[
                        0
                    ] == 0.0
            elif isinstance(p, Detections):
                assert d.header.frame_id == p.frame and d.reference_stamp_ns == p.stamp_ns
                assert len(d.detections) == len(p.objects)
                for x, o in zip(d.detections, p.objects, strict=True):
                    assert (x.label, x.score, x.yaw, x.track_id) == (o.label, o.score, o.box.yaw, o.track_id)
                    assert [x.center.x, x.center.y, x.center.z] == o.box.center.tolist()
                    assert [x.size.x, x.size.y, x.size.z] == o.box.size.tolist()
                    assert [x.velocity_x, x.velocity_y] == o.velocity.tolist()
                assert list(d.attributes) == [o.attribute for o in p.objects]
                for name in ("lidar_points", "radar_points", "visibility"):  # -1 = not counted / unknown
                    values = [getattr(o, name) for o in p.objects]
                    assert list(getattr(d, name)) == [-1 if v is None else v for v in values]
    assert seen == {
        "sensor_msgs/msg/PointCloud2",
        "sensor_msgs/msg/Image",
        "sensor_msgs/msg/CompressedImage",
        "nav_msgs/msg/Odometry",
        "sensor_msgs/msg/Imu",
        "edgefuse_msgs/msg/Detection3DArray",
        "tf2_msgs/msg/TFMessage",
        "sensor_msgs/msg/CameraInfo",
    }


def test_rosbags_deserializes_every_type(recorded):
    """rosbags' CDR deserializer, with its own ROS 2 Humble type definitions for the standard types and
    our embedded schema text registered for the custom detections type."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    path, msgs, _ = recorded
    store = get_typestore(Stores.ROS2_HUMBLE)
    by_recv = {m.recv_ns: m for m in msgs}
    n = 0
    with open(path, "rb") as f:
        reader = make_reader(f)
        for schema in reader.get_summary().schemas.values():
            if schema.name.startswith("edgefuse_msgs/"):
                text = schema.data.decode()
                types = {}
                for part in text.split("=" * 80 + "\n"):
                    name = schema.name
                    if part.startswith("MSG: "):
                        first, part = part.split("\n", 1)
                        name = first[5:].replace("/", "/msg/")
                    if name.startswith("edgefuse_msgs/"):
                        types.update(get_types_from_msg(part, name))
                store.register(types)
        for schema, channel, mc in reader.iter_messages():
            d = store.deserialize_cdr(mc.data, schema.name)
            n += 1
            if channel.topic in ("/tf_static", "/cam0/camera_info"):
                continue
            m = by_recv[mc.log_time]
            assert d.header.stamp.sec * 10**9 + d.header.stamp.nanosec == m.stamp_ns
            p = m.payload
            if isinstance(p, (PointCloud, RadarScan)):
                assert d.data.tobytes() == p.data.tobytes()
            elif isinstance(p, Image):
                assert d.data.tobytes() == p.data.tobytes()
            elif isinstance(p, Detections):
                assert [x.track_id for x in d.detections] == [o.track_id for o in p.objects]
                assert [x.score for x in d.detections] == [o.score for o in p.objects]
    assert n == len(msgs) + 2


def test_calibration_travels_with_the_log(recorded):
    path, _, _ = recorded
    calib = calibration()
    r = LogReader(path)
    back = r.calibration()
    assert back is not None
    assert set(back.extrinsics) == {"cam0", "lidar"}
    for k, T in calib.extrinsics.items():
        np.testing.assert_allclose(back.extrinsics[k].matrix(), T.matrix(), atol=1e-12)
    np.testing.assert_array_equal(back.cameras["cam0"].K, calib.cameras["cam0"].K)
    assert back.time_offsets_ns == {"cam0": -1500}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        channels = {c.topic: c for c in reader.get_summary().channels.values()}
        qos = yaml.safe_load(channels["/tf_static"].metadata["offered_qos_profiles"])
        assert qos[0]["durability"] == 1  # rmw: 1 = TRANSIENT_LOCAL
        first_log_time = min(mc.log_time for _, _, mc in reader.iter_messages())
        for _, ch, mc, d in reader.iter_decoded_messages(topics=["/tf_static", "/cam0/camera_info"]):
            assert mc.log_time == first_log_time  # stamped with the first message, not 0
            if ch.topic == "/tf_static":
                tfs = {t.child_frame_id: t for t in d.transforms}
                assert set(tfs) == {"cam0", "lidar_top"}
                for sid, child in (("cam0", "cam0"), ("lidar", "lidar_top")):
                    t = tfs[child]
                    assert t.header.frame_id == "base_link"
                    T = calib.extrinsics[sid]
                    M = Transform.from_quat(
                        [t.transform.translation.x, t.transform.translation.y, t.transform.translation.z],
                        [
                            t.transform.rotation.x,
                            t.transform.rotation.y,
                            t.transform.rotation.z,
                            t.transform.rotation.w,
                        ],
                    ).matrix()
                    np.testing.assert_allclose(M, T.matrix(), atol=1e-12)
            else:
                cam = calib.cameras["cam0"]
                assert (d.width, d.height, d.distortion_model) == (1280, 720, "plumb_bob")
                assert list(d.k) == cam.K.ravel().tolist() and list(d.d) == cam.distortion.tolist()
                assert list(d.p) == [800.0, 0, 640.5, 0, 0, 790.0, 360.25, 0, 0, 0, 1, 0]


def test_camera_info_carries_a_rational_lens_and_the_given_r_and_p(tmp_path):
    """A stereo right camera in OpenCV's rational model with its own R and P (baseline in P's fourth
    column): the log's CameraInfo says rational_polynomial and carries D, R and P as given (decoded by
    mcap_ros2)."""
    K = np.array([[700.0, 0, 620.5], [0, 701.0, 187.5], [0, 0, 1]])
    R = Transform.from_rpy([0, 0, 0], 0.01, -0.02, 0.003).rotation
    P = np.array([[705.0, 0, 611.0, -380.7], [0, 705.0, 180.0, 0], [0, 0, 1, 0]])
    D = [0.45, 0.27, -1e-4, 1.5e-4, 0.03, 0.82, 0.36, 0.11]
    cam = CameraModel(1242, 375, K, D, "rational", projection=P, rectification=R)
    calib = Calibration(cameras={"cam1": cam}, extrinsics={"cam1": Transform.identity()})
    path = tmp_path / "r.mcap"
    with Recorder(path, clock=FakeClock()) as rec:
        rec.write_calibration(calib)
        rec.write(sample_messages()[0])
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        (d,) = [d for _, _, _, d in reader.iter_decoded_messages(topics=["/cam1/camera_info"])]
    assert d.distortion_model == "rational_polynomial" and list(d.d) == D
    assert list(d.r) == R.ravel().tolist() and list(d.p) == P.ravel().tolist()


def test_topic_and_time_range_selection(recorded):
    path, msgs, topics = recorded
    r = LogReader(path)
    lo, hi = msgs[9].recv_ns, msgs[20].recv_ns
    got = [(t, m.recv_ns) for t, m in r.messages(start_ns=lo, end_ns=hi)]
    want = [(t, m.recv_ns) for t, m in zip(topics, msgs, strict=True) if lo <= m.recv_ns < hi]
    assert got == want and len(want) == 11
    got = [m.recv_ns for _, m in r.messages(topics=["/radar/points", "/imu/imu"], start_ns=lo)]
    assert got == [m.recv_ns for m in msgs if m.sensor_id in ("radar", "imu") and m.recv_ns >= lo]
    raw = list(r.raw_messages(topics="/cam0/image_raw"))
    assert [x.log_time for x in raw] == [m.recv_ns for m in msgs if m.sensor_id == "cam0"]
    assert all(x.schema == "sensor_msgs/msg/Image" for x in raw)
    assert raw[0].publish_time == msgs[1].raw_stamp_ns
    topic, schema, log_time, publish_time, data = raw[0]  # a plain tuple too
    assert data[:4] == b"\x00\x01\x00\x00" and topic == "/cam0/image_raw"


def test_time_range_skips_chunks_by_index(tmp_path):
    """With a complete file, chunks outside the range are never read: a damaged one there goes unnoticed."""
    path = tmp_path / "r.mcap"
    clock = FakeClock()
    with Recorder(path, chunk_interval_ns=10, clock=clock) as rec:
        for i in range(30):
            clock.t = i * 5  # a chunk every 3 messages
            rec.write(Message("lidar", i, PointCloud(np.full((4, 4), i, np.float32)), recv_ns=1000 + i))
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) == 10
    first = chunks[0]
    data = bytearray(path.read_bytes())
    mid = first.chunk_start_offset + first.chunk_length - 10
    data[mid] ^= 0xFF
    path.write_bytes(bytes(data))
    r = LogReader(path)
    got = [m.recv_ns for _, m in r.messages(start_ns=first.message_end_time + 1)]
    assert got == list(range(1003, 1030)) and r.errors == []
    assert [m.recv_ns for _, m in r.messages(end_ns=1005)] == [1003, 1004]
    assert len(r.errors) == 1 and f"chunk at offset {first.chunk_start_offset}" in str(r.errors[0])


def test_messages_come_in_log_time_order_across_chunks(tmp_path):
    path = tmp_path / "o.mcap"
    clock = FakeClock()
    recv = [50, 10, 40, 20, 30, 5, 60, 25, 45, 15, 35, 55]
    with Recorder(path, chunk_interval_ns=10, clock=clock, compression="none") as rec:
        for i, t in enumerate(recv):
            clock.t = i * 6  # chunks of two messages
            rec.write(Message("imu", t, Imu([t, 0, 0], [0, 0, 9.81]), recv_ns=t, seq=i))
    got = [(m.recv_ns, m.seq) for _, m in LogReader(path).messages()]
    assert got == sorted((t, i) for i, t in enumerate(recv))


def test_explicit_topic_and_channel_metadata(tmp_path):
    path = tmp_path / "c.mcap"
    with Recorder(path) as rec:
        assert (
            rec.write(
                Message("radar_fl", 5, RadarScan(np.zeros((0, 3), np.float32), ("x", "y", "z"))),
                topic="/custom/radar",
            )
            == "/custom/radar"
        )
    ((topic, m),) = LogReader(path).messages()
    assert topic == "/custom/radar" and isinstance(m.payload, RadarScan) and m.sensor_id == "radar_fl"
    assert m.payload.data.shape == (0, 3) and m.payload.fields == ("x", "y", "z")


def test_recorder_rejects_what_mcap_cannot_hold(tmp_path):
    path = tmp_path / "bad.mcap"
    imu = Imu([0, 0, 0], [0, 0, 9.81])
    with Recorder(path) as rec:
        with pytest.raises(InputError, match="Message.recv_ns"):
            rec.write(Message("imu", 5, imu, recv_ns=-1))
        with pytest.raises(InputError, match="Message.raw_stamp_ns"):
            rec.write(Message("imu", 5, imu, raw_stamp_ns=-3, recv_ns=5))
        with pytest.raises(InputError, match="Message.seq"):
            rec.write(Message("imu", 5, imu, seq=2**32))
        with pytest.raises(InputError, match="Message.stamp_ns"):
            rec.write(Message("imu", 2**31 * 10**9, imu, recv_ns=5))
        rec.write(
            Message("imu", -5, imu, raw_stamp_ns=3, recv_ns=7)
        )  # a negative mapped stamp fits header.stamp
        with pytest.raises(InputError, match="payload type"):
            rec.write(Message("imu", 5, PointCloud(np.zeros((1, 4), np.float32))), topic="/imu/imu")
        with pytest.raises(InputError, match="compression"):
            Recorder(tmp_path / "x.mcap", compression="gzip")
    ((_, m),) = LogReader(path).messages()  # only the good message went in
    assert m.stamp_ns == -5 and m.recv_ns == 7


def test_decoded_arrays_are_read_only_views(recorded):
    path, _, _ = recorded
    for _, m in LogReader(path).messages(topics=["/lidar/points", "/cam0/image_raw"]):
        assert not m.payload.data.flags.writeable
        assert m.payload.data.flags.aligned


def test_many_short_label_detections_round_trip():
    """The smallest Detection3D element (label "car") is 96 bytes: a sequence length check that assumed
    more rejected every array of many cars (found by the simulator's ground truth)."""
    from edgefuse.logs import ros2

    objs = tuple(
        Detection("car", 1.0, Box3D([float(k), 0.0, 0.8], [4.5, 1.9, 1.6], 0.1 * k), [1.0, -0.5], k)
        for k in range(60)
    )
    data = ros2.encode(Detections(10, objs), 10, "base_link")
    back, _, _ = ros2.decode(ros2.DETECTIONS, data)
    assert [o.track_id for o in back.objects] == list(range(60))
    np.testing.assert_array_equal([o.box.center for o in back.objects], [o.box.center for o in objs])
