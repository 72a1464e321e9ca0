"""Sources: ``pcap://`` and live ``velodyne://`` over a real UDP socket on 127.0.0.1 decode to the same
sweeps; garbage mid-stream is skipped and counted; a full queue drops the oldest (counted); reads time
out; bad URIs are InputErrors naming the URI and the part."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.velodyne import UdpVelodyneSource, open_velodyne
from edgefuse.adapters.velodyne.pcap import read_udp_payloads
from edgefuse.adapters.velodyne.sweep import HOUR_NS
from edgefuse.errors import InputError

DATA = Path(__file__).parent / "data" / "velodyne_vlp32c"
PCAP = DATA / "DERIVED_vlp32c_from_rosbag2.pcap"
FILE_URI = f"pcap://{PCAP}?model=VLP32C&cut=270&sensor_id=lidar_top"


def send_all(port: int, payloads: list[bytes], garbage: dict[int, bytes] | None = None) -> None:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i, p in enumerate(payloads):
            if garbage and i in garbage:
                tx.sendto(garbage[i], ("127.0.0.1", port))
            tx.sendto(p, ("127.0.0.1", port))
            if i % 16 == 15:
                time.sleep(0.002)  # ~8k packets/s: faster than a VLP-32C, gentle on a shared CI box
    finally:
        tx.close()


def test_pcap_uri_yields_sweeps_with_three_stamps():
    msgs = list(open_velodyne(FILE_URI))
    assert len(msgs) == 5  # the capture holds 5 front-half scans (the sensor's FOV is 270°..90°)
    recv_times = [t for t, _ in read_udp_payloads(PCAP, 2368)]
    for m in msgs:
        assert m.sensor_id == "lidar_top" and m.frame == "lidar_top"
        assert m.raw_stamp_ns % HOUR_NS == m.raw_stamp_ns  # ns past the sensor's hour
        assert (m.stamp_ns - m.raw_stamp_ns) % HOUR_NS == 0
        assert m.recv_ns in recv_times
        # this sensor's clock runs ~52 s behind the recorder's: the mapped stamp keeps its own clock
        assert 50e9 < m.recv_ns - m.stamp_ns < 53e9
    assert [m.seq for m in msgs] == list(range(5))
    stamps = [m.stamp_ns for m in msgs]
    assert np.allclose(np.diff(stamps), 100e6, atol=1e6)  # 600 rpm


def test_live_udp_matches_the_file_and_counts_garbage():
    payloads = [p for _, p in read_udp_payloads(PCAP, 2368)]
    file_msgs = list(open_velodyne(FILE_URI))
    src = open_velodyne("velodyne://127.0.0.1:0?model=VLP32C&cut=270&sensor_id=lidar_top&timeout=0.5")
    assert isinstance(src, UdpVelodyneSource)
    garbage = {
        50: b"\x00" * 300,  # wrong length
        120: bytes(1206),  # right length, no block flags
        200: payloads[3][:1205] + b"\x22",  # a VLP-16 product id
    }
    before = time.monotonic_ns()
    try:
        send_all(src.address[1], payloads, garbage)
        live = list(src)  # ends after 0.5 s without packets
    finally:
        src.close()
    after = time.monotonic_ns()
    assert src.stats.counts == {
        "bad_length": 1,
        "bad_block_flag": 1,
        "wrong_product_id": 1,
        "idle_timeout": 1,
    }
    assert src.stats.packets == len(payloads)
    assert len(live) == len(file_msgs)
    for a, b in zip(live, file_msgs, strict=True):
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
        assert a.raw_stamp_ns == b.raw_stamp_ns  # the sensor's own clock, ns past its hour
        # live: received on the host monotonic clock (the pipeline's), stamp = receive until mapped
        assert before <= a.recv_ns <= after and a.stamp_ns == a.recv_ns


def test_full_queue_drops_the_oldest_and_read_times_out():
    payloads = [p for _, p in read_udp_payloads(PCAP, 2368)][:60]
    with open_velodyne("velodyne://127.0.0.1:0?model=VLP32C&queue=10&cut=270") as src:
        t = time.monotonic()
        assert src.read(0.2) is None  # nothing sent: returns after the timeout
        assert 0.15 < time.monotonic() - t < 5
        send_all(src.address[1], payloads)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with src._lock:
                if src._io.get("queue_overflow", 0) + len(src._queue) >= 60:
                    break
            time.sleep(0.01)
        src.read(0.1)
        assert src.stats.counts["queue_overflow"] == 50
        assert src.stats.packets == 10  # the newest ten were kept
        assert src.rcvbuf_bytes >= 200_000


@pytest.mark.parametrize(
    "uri, part",
    [
        ("pcap:///nonexistent/x.pcap?model=VLP32C", "no such file"),
        (f"pcap://{PCAP}?model=HDL64", "model: expected one of"),
        (f"pcap://{PCAP}", "model: missing"),
        (f"pcap://{PCAP}?model=VLP32C&speed=2", "unknown parameter 'speed'"),
        (f"pcap://{PCAP}?model=VLP32C&cut=abc", "cut: expected a number"),
        ("velodyne://127.0.0.1:99999?model=VLP32C", "port: expected an integer 0..65535"),
        ("velodyne://127.0.0.1:abc?model=VLP32C", "port: expected an integer"),
        ("udp://127.0.0.1:2368", "scheme: expected 'pcap' or 'velodyne'"),
        ("VLP32C.pcap", "expected pcap://FILE"),
        (f"pcap://{PCAP}?model=VLP32C&calib=/nonexistent.yaml", "/nonexistent.yaml: file not found"),
    ],
)
def test_bad_uris(uri, part):
    with pytest.raises(InputError) as e:
        open_velodyne(uri)
    assert part in str(e.value)
    assert uri.split("?")[0] in str(e.value) or "nonexistent.yaml" in str(e.value)


def test_relative_paths_resolve_against_base_dir():
    uri = "pcap://DERIVED_vlp32c_from_rosbag2.pcap?model=VLP32C&calib=VLP32.calibration.yaml&cut=270"
    msgs = list(open_velodyne(uri, sensor_id="lidar_front", base_dir=DATA))
    ref = list(open_velodyne(FILE_URI))
    assert [m.sensor_id for m in msgs] == ["lidar_front"] * 5
    for a, b in zip(msgs, ref, strict=True):
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
    with pytest.raises(InputError, match="no such file"):
        open_velodyne(uri)  # relative to the working directory: not there


def test_live_iteration_runs_until_closed():
    import threading

    src = open_velodyne("velodyne://127.0.0.1:0?model=VLP32C")  # no timeout: iterate until close()
    got: list = []
    t = threading.Thread(target=lambda: got.extend(src), daemon=True)
    t.start()
    time.sleep(0.6)
    assert t.is_alive()  # no packets, but still listening
    src.close()
    t.join(timeout=5)
    assert not t.is_alive() and got == [] and "idle_timeout" not in src.stats.counts
