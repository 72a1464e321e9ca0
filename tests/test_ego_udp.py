"""Ego-motion datagrams: the JSON decoder against hand-written datagrams, the encoder round trip, and the
live ``ego-udp://`` source over a real UDP socket on 127.0.0.1 with bad datagrams between good ones."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from edgefuse.adapters.ego_udp import (
    MAX_DATAGRAM,
    EgoDatagramError,
    EgoUdpUriError,
    decode_datagram,
    encode_datagram,
    open_ego_udp,
)
from edgefuse.sources import open_source
from edgefuse.types import Imu, Odometry

ODOM = (
    b'{"type": "odometry", "stamp_ns": 1712000000123456789, "seq": 17, "frame": "odom",'
    b' "child_frame": "base_link", "position": [1.5, -2, 0.25], "orientation": [0, 0, 0.6, 0.8],'
    b' "linear_velocity": [4.25, 0, 0], "angular_velocity": [0, 0, -0.125], "extra": "ignored"}'
)
IMU = b'{"type":"imu","stamp_ns":42,"angular_velocity":[0.01,0.02,0.03],"linear_acceleration":[0.5,0,9.81]}'


def test_decode_hand_written_datagrams():
    s = decode_datagram(ODOM)
    assert isinstance(s.payload, Odometry)
    assert s.stamp_ns == 1712000000123456789 and s.seq == 17 and s.frame == "base_link"
    np.testing.assert_array_equal(s.payload.position, [1.5, -2.0, 0.25])
    np.testing.assert_array_equal(s.payload.orientation, [0.0, 0.0, 0.6, 0.8])
    np.testing.assert_array_equal(s.payload.linear_velocity, [4.25, 0.0, 0.0])
    np.testing.assert_array_equal(s.payload.angular_velocity, [0.0, 0.0, -0.125])
    assert (s.payload.frame, s.payload.child_frame) == ("odom", "base_link")
    i = decode_datagram(IMU)
    assert isinstance(i.payload, Imu) and i.stamp_ns == 42 and i.seq is None and i.frame == "imu"
    np.testing.assert_array_equal(i.payload.linear_acceleration, [0.5, 0.0, 9.81])
    assert i.payload.orientation is None


def test_encode_is_the_exact_inverse():
    rng = np.random.default_rng(3)
    odom = Odometry(*(rng.standard_normal(n) for n in (3, 4, 3, 3)), frame="odom", child_frame="base_link")
    imu = Imu(rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(4))
    for payload, frame in ((odom, "base_link"), (imu, "imu_1")):
        s = decode_datagram(encode_datagram(payload, -5, 9, frame))
        assert (s.stamp_ns, s.seq) == (-5, 9)
        for name in vars(payload):
            a, b = getattr(payload, name), getattr(s.payload, name)
            assert a == b if isinstance(a, str) else np.array_equal(a, b), name
    assert decode_datagram(encode_datagram(imu, 1, None, "imu_1")).frame == "imu_1"


@pytest.mark.parametrize(
    "data, reason, needle",
    [
        (b"\xff\xfe", "not_json", "UTF-8 JSON"),
        (b"[1, 2]", "not_json", "JSON object, got list"),
        (b'{"type": "gps", "stamp_ns": 1}', "type", "type: expected one of"),
        (b'{"type": "imu", "stamp_ns": 1.5, "angular_velocity": [0,0,0], "linear_acceleration": [0,0,0]}',
         "field", "stamp_ns: expected an integer"),
        (b'{"type": "imu", "stamp_ns": 1, "angular_velocity": [0,0], "linear_acceleration": [0,0,0]}',
         "field", "angular_velocity: expected 3 finite numbers"),
        (b'{"type": "imu", "stamp_ns": 1, "angular_velocity": [0,0,NaN], "linear_acceleration": [0,0,0]}',
         "field", "angular_velocity: expected 3 finite numbers"),
        (ODOM.replace(b'"frame": "odom"', b'"frame": ""'), "field", "frame: expected a non-empty string"),
        (b" " * (MAX_DATAGRAM + 1), "oversize", f"expected at most {MAX_DATAGRAM}"),
    ],
)  # fmt: skip
def test_bad_datagrams_name_the_field_and_reason(data, reason, needle):
    with pytest.raises(EgoDatagramError, match=needle) as e:
        decode_datagram(data, "dgram 7")
    assert e.value.reason == reason and "dgram 7" in str(e.value)


def _send(port: int, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for d in datagrams:
            tx.sendto(d, ("127.0.0.1", port))


def test_live_source_over_udp_counts_what_it_skips():
    src = open_source("ego-udp://127.0.0.1:0?type=odometry&queue=2", "odom")
    inner = src.inner
    assert src.kind == "odometry" and src.live
    port = inner.address[1]
    odoms = [ODOM.replace(b'"seq": 17', b'"seq": %d' % k) for k in range(3)]
    _send(port, b"garbage", odoms[0], IMU, b'{"type": "odometry"}')
    deadline = time.monotonic() + 5
    while inner.stats["datagrams"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    m = inner.read(1.0)
    assert m.sensor_id == "odom" and m.raw_stamp_ns == 1712000000123456789 and m.frame == "base_link"
    assert m.stamp_ns == m.recv_ns and abs(m.recv_ns - time.monotonic_ns()) < 10 * 10**9
    _send(port, *odoms)  # a queue of 2: the oldest of three is dropped
    while inner.stats["datagrams"] < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    got = [inner.read(1.0), inner.read(1.0)]
    assert [g.seq for g in got] == [2, 3]  # the source's own running count; the first of these was dropped
    assert inner.read(0.05) is None
    stats = src.stats()
    src.close()
    assert stats["datagrams"] == 7 and stats["dropped.oldest"] == 1
    assert stats["error.not_json"] == 1 and stats["error.wrong_type"] == 1 and stats["error.field"] == 1


def test_idle_timeout_ends_iteration_and_bad_uris():
    with open_ego_udp("ego-udp://127.0.0.1:0?type=imu&timeout=0.2") as src:
        assert list(src) == [] and src.stats["idle_timeout"] == 1
    for uri, needle in (
        ("ego-udp://127.0.0.1:9871", "type: expected one of"),
        ("ego-udp://127.0.0.1?type=imu", "expected ego-udp://HOST:PORT"),
        ("ego-udp://127.0.0.1:9871?type=imu&rate=5", "unknown parameter"),
        ("ego-udp://127.0.0.1:9871?type=imu&queue=0", "queue: expected an integer"),
        ("ego-udp://127.0.0.1:9871?type=imu&timeout=-1", "timeout: expected seconds"),
    ):
        with pytest.raises(EgoUdpUriError, match=needle):
            open_ego_udp(uri)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(EgoUdpUriError, match="cannot bind"):
            open_ego_udp(f"ego-udp://127.0.0.1:{taken.getsockname()[1]}?type=imu")


def test_the_datagram_is_plain_json_anyone_can_write():
    """The format a non-Python sender writes: the keys documented in the protocol module."""
    doc = json.loads(encode_datagram(Imu(np.zeros(3), np.array([0, 0, 9.81])), 7, 1))
    assert doc == {
        "type": "imu", "stamp_ns": 7, "seq": 1, "frame": "imu", "angular_velocity": [0.0, 0.0, 0.0],
        "linear_acceleration": [0.0, 0.0, 9.81], "orientation": None,
    }  # fmt: skip
