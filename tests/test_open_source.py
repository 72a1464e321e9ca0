"""``open_source``: dispatch of every URI scheme, the ``mcap://`` and ``sim://`` sources, SourceReader.

Expected values come from hand-made inputs (arrays written with numpy / cv2 / struct), the fixtures'
own provenance (tests/data/*/README, expected.json written independently of edgefuse), or the
package's own entry point called directly (the wrapper must pass its messages through unchanged).
"""

from __future__ import annotations

import json
import os
import struct
import termios
import threading
import time
import tty
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.adapters.base import Source, SourceReader
from edgefuse.errors import InputError
from edgefuse.sources import SCHEMES, open_source
from edgefuse.types import Image, Message, Odometry, PointCloud, RadarScan

DATA = Path(__file__).parent / "data"
PCAP = DATA / "velodyne_vlp32c" / "DERIVED_vlp32c_from_rosbag2.pcap"
VLP_PCD = DATA / "velodyne_vlp32c" / "1713492677464078412.pcd"
TI = DATA / "ti_mmwave"


def take(src: Source, n: int, timeout_s: float = 10.0) -> list[Message]:
    """Up to n messages of a (possibly live) source, through a SourceReader, closing it after."""
    reader = SourceReader(src).start()
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = reader.get(0.2)
            if m is not None:
                out.append(m)
            elif reader.done:
                break
    finally:
        reader.stop()
    return out


# ---------------------------------------------------------------- dispatch errors


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(InputError) as e:
        open_source("lidar://somewhere")
    msg = str(e.value)
    assert "lidar://somewhere" in msg and "'lidar'" in msg
    for scheme in ("pcap", "velodyne", "kitti", "pcd", "ti-mmwave-file", "v4l2", "nmea", "mcap", "sim"):
        assert scheme in msg
    with pytest.raises(InputError, match="expected SCHEME://"):
        open_source("/just/a/path.pcap")


@pytest.mark.parametrize(
    "uri",
    [
        "pcap://does/not/exist.pcap?model=VLP32C",
        "pcap://x.pcap",  # no model
        "kitti://does/not/exist",
        "pcd://does/not/exist.pcd",
        "ply://does/not/exist.ply",
        "nuscenes-radar://does/not/exist",
        "ti-mmwave-file://does/not/exist.dat",
        "ti-mmwave:///dev/does-not-exist?data=/dev/does-not-exist-either",
        "v4l2:///dev/does-not-exist",
        "video://does/not/exist.mp4",
        "images://does/not/exist/*.png",
        "nmea:///dev/does-not-exist",
        "mcap://does/not/exist.mcap",
        "sim://no-such-scenario",
        "sim://default?sensor=sonar",
        "sim://default?fog_colour=3",
        "sim://default?rate=fast",
    ],
)
def test_each_scheme_reaches_its_package_and_bad_targets_are_input_errors(uri):
    with pytest.raises(InputError):
        open_source(uri)


def test_every_scheme_is_dispatched():
    """Every listed scheme is one the dispatch knows: none falls through to 'unknown scheme'."""
    for scheme in SCHEMES:
        try:
            open_source(f"{scheme}://does-not-exist-{os.getpid()}")
        except InputError as e:
            assert "unknown scheme" not in str(e), scheme


# ---------------------------------------------------------------- LiDAR: pcap and live UDP


def test_pcap_passes_the_package_messages_through_with_sensor_id_and_base_dir():
    from edgefuse.adapters.velodyne import open_velodyne

    direct = list(open_velodyne(f"pcap://{PCAP}?model=VLP32C&sensor_id=lidar_top"))
    with open_source(f"pcap://{PCAP.name}?model=VLP32C", "lidar_top", PCAP.parent) as src:
        assert src.kind == "lidar" and not src.live
        got = list(src)
        stats = src.stats()
    assert len(got) == len(direct) > 1
    for a, b in zip(got, direct, strict=True):
        assert a.sensor_id == "lidar_top"
        assert (a.stamp_ns, a.raw_stamp_ns, a.recv_ns) == (b.stamp_ns, b.raw_stamp_ns, b.recv_ns)
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
    assert stats["messages"] == len(got)
    assert stats["packets"] == 379  # tests/data/velodyne_vlp32c/README.md: 379 payloads
    assert not any(k.startswith("error.") and v for k, v in stats.items())


def test_velodyne_udp_is_live_and_decodes_packets_sent_to_it():
    import socket

    from edgefuse.adapters.velodyne.pcap import read_udp_payloads

    payloads = [p for _, p in read_udp_payloads(PCAP)][:120]
    src = open_source("velodyne://127.0.0.1:0?model=VLP32C&timeout=1", "lidar_top")
    assert src.kind == "lidar" and src.live
    port = src.inner.address[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        reader = SourceReader(src).start()
        for p in payloads:
            tx.sendto(p, ("127.0.0.1", port))
            time.sleep(0.0005)
        got = []
        deadline = time.monotonic() + 10
        while not reader.done and time.monotonic() < deadline:
            m = reader.get(0.2)
            if m is not None:
                got.append(m)
        reader.stop()
    finally:
        tx.close()
    assert got and all(isinstance(m.payload, PointCloud) and m.sensor_id == "lidar_top" for m in got)
    assert src.stats()["packets"] == len(payloads)


# ---------------------------------------------------------------- point-cloud files


def test_kitti_relative_to_base_dir(tmp_path):
    d = tmp_path / "velodyne_points"
    d.mkdir()
    rng = np.random.default_rng(1)
    scans = [rng.uniform(-50, 50, (n, 4)).astype(np.float32) for n in (5, 7)]
    for i, s in enumerate(scans):
        s[:, 3] = rng.uniform(0, 1, len(s))
        s.tofile(d / f"{i:010d}.bin")
    with open_source("kitti://velodyne_points", "lidar_top", tmp_path) as src:
        assert src.kind == "lidar"
        got = list(src)
    assert [m.sensor_id for m in got] == ["lidar_top", "lidar_top"]
    for m, s in zip(got, scans, strict=True):
        np.testing.assert_array_equal(m.payload.xyz, s[:, :3])
        # KITTI reflectance 0..1 → edgefuse intensity 0..255 (docs/adapters.md)
        np.testing.assert_allclose(m.payload.column("intensity"), s[:, 3] * 255, rtol=1e-6)


def test_pcd_real_file_stamp_from_its_name():
    with open_source(f"pcd://{VLP_PCD}") as src:
        (m,) = list(src)
    assert m.stamp_ns == 1713492677464078412  # the file name
    assert len(m.payload) == 26216  # README: 26,216 points


def test_ply_and_nuscenes_radar(tmp_path):
    (tmp_path / "a.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
        "property float z\nproperty float intensity\nend_header\n1 2 3 4\n5 6 7 8\n"
    )
    with open_source("ply://a.ply", "lidar_top", tmp_path) as src:
        (m,) = list(src)
    np.testing.assert_array_equal(m.payload.xyz, [[1, 2, 3], [5, 6, 7]])
    # a binary PCD with x y z and one more float field is a radar scan to nuscenes-radar://
    header = (
        b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rcs\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        b"WIDTH 3\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary\n"
    )
    body = struct.pack("<12f", 10, 1, 0, 5, 20, -2, 0, 7, 30, 3, 0, -1)
    (tmp_path / "radar").mkdir()
    (tmp_path / "radar" / "r.pcd").write_bytes(header + body)
    with open_source(f"nuscenes-radar://{tmp_path / 'radar'}", "radar_front") as src:
        assert src.kind == "radar"
        (m,) = list(src)
    assert isinstance(m.payload, RadarScan) and m.sensor_id == "radar_front"
    np.testing.assert_array_equal(m.payload.xyz, [[10, 1, 0], [20, -2, 0], [30, 3, 0]])
    np.testing.assert_array_equal(m.payload.column("rcs"), [5, 7, -1])


def test_bad_file_in_a_directory_is_counted_as_a_decode_error(tmp_path):
    np.zeros((3, 4), np.float32).tofile(tmp_path / "000000.bin")
    (tmp_path / "000001.bin").write_bytes(b"\x00" * 7)  # not a multiple of 16 bytes
    with open_source(f"kitti://{tmp_path}") as src:
        got = list(src)
        stats = src.stats()
    assert len(got) == 1
    assert stats["error.bad_file"] == 1 and stats["messages"] == 1


# ---------------------------------------------------------------- radar: TI capture


def test_ti_mmwave_file_matches_the_fixture_truth():
    expected = json.loads((TI / "expected.json").read_text())["capture_3x.dat"]["frames"]
    with open_source("ti-mmwave-file://capture_3x.dat?cfg=iwr6843_3tx.cfg", "radar_front", TI) as src:
        assert src.kind == "radar"
        got = list(src)
        stats = src.stats()
    assert len(got) == len(expected)
    for m, e in zip(got, expected, strict=True):
        assert m.sensor_id == "radar_front" and m.raw_stamp_ns == e["raw_stamp_ns"]
        np.testing.assert_allclose(m.payload.xyz.reshape(-1, 3), np.reshape(e["xyz"], (-1, 3)), atol=1e-6)
    # the capture holds one truncated frame (tests/data/ti_mmwave/make_captures.py)
    assert stats["error.truncated"] == 1


# ---------------------------------------------------------------- camera and GNSS


def test_images_dir_relative_to_base_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, 2] = (1, 2, 3)
    cv2.imwrite(str(d / "000.png"), rgb[..., ::-1])  # BGR on disk
    with open_source("images://imgs/*.png?rate=100", "cam_front", tmp_path) as src:
        assert src.kind == "camera" and not src.live
        (m,) = list(src)
    assert isinstance(m.payload, Image) and m.sensor_id == "cam_front"
    np.testing.assert_array_equal(m.payload.data, rgb)


def nmea(body: str, flip: int = 0) -> bytes:
    """A sentence with its XOR checksum (``flip`` ≠ 0 makes it wrong)."""
    cs = 0
    for c in body.encode():
        cs ^= c
    return f"${body}*{cs ^ flip:02X}\r\n".encode()


def test_nmea_over_a_pty_and_a_bad_checksum_counted():
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    path = os.ttyname(slave)
    try:
        src = open_source(f"nmea://{path}?baud=115200&timeout=0.05", "gnss")
        assert src.kind == "gnss" and src.live
        gga = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
        rmc = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
        os.write(master, nmea(gga, flip=1))  # wrong checksum
        os.write(master, nmea(gga) + nmea(rmc))
        got = take(src, 1)
        stats = src.stats()
    finally:
        os.close(master)
        os.close(slave)
    assert len(got) == 1 and isinstance(got[0].payload, Odometry)
    assert stats["error.checksum"] == 1


# ---------------------------------------------------------------- mcap://


def _messages() -> list[Message]:
    rng = np.random.default_rng(7)
    out = []
    for k in range(3):
        t = 1_000_000_000 + k * 100_000_000
        cloud = PointCloud(rng.normal(size=(10 + k, 4)).astype(np.float32))
        out.append(Message("lidar_top", t, cloud, raw_stamp_ns=t - 5, recv_ns=t + 7, seq=k))
        scan = RadarScan(rng.normal(size=(4, 5)).astype(np.float32))
        out.append(Message("radar_front", t + 1, scan, raw_stamp_ns=t + 2, recv_ns=t + 9, seq=k))
    img = Image(rng.integers(0, 255, (4, 5, 3), dtype=np.uint8))
    out.append(Message("cam_front", 1_300_000_000, img, recv_ns=1_300_000_010))
    return out


def test_mcap_round_trip_keeps_payloads_and_three_stamps(tmp_path):
    from edgefuse.logs import Recorder

    msgs = _messages()
    with Recorder(tmp_path / "log.mcap") as rec:
        for m in msgs:
            rec.write(m)
    with open_source("mcap://log.mcap", base_dir=tmp_path) as src:
        assert src.kind == "mixed" and not src.live
        got = list(src)
    assert len(got) == len(msgs)
    by_key = {(m.sensor_id, m.seq, type(m.payload)): m for m in got}
    for m in msgs:
        g = by_key[(m.sensor_id, m.seq, type(m.payload))]
        assert (g.stamp_ns, g.raw_stamp_ns, g.recv_ns) == (m.stamp_ns, m.raw_stamp_ns, m.recv_ns)
        np.testing.assert_array_equal(g.payload.data, m.payload.data)
    with open_source(f"mcap://{tmp_path / 'log.mcap'}?topic=/lidar_top/points&rate=1000") as src:
        assert src.kind == "lidar"
        assert [m.seq for m in src] == [0, 1, 2]
    with pytest.raises(InputError, match="/nope"):
        open_source(f"mcap://{tmp_path / 'log.mcap'}?topic=/nope")
    with pytest.raises(InputError, match="rate"):
        open_source(f"mcap://{tmp_path / 'log.mcap'}?rate=-1")


def test_mcap_corrupt_chunk_is_counted(tmp_path):
    from edgefuse.logs import Recorder

    with Recorder(tmp_path / "log.mcap", compression="none", chunk_size=512) as rec:
        for m in _messages():
            rec.write(m)
    data = bytearray((tmp_path / "log.mcap").read_bytes())
    i = data.index(b"\x06", 8)  # the first Chunk record (opcode 0x06)
    data[i + 60] ^= 0xFF  # a byte inside its records: the chunk CRC no longer matches
    (tmp_path / "bad.mcap").write_bytes(bytes(data))
    with open_source(f"mcap://{tmp_path / 'bad.mcap'}") as src:
        got = list(src)
        stats = src.stats()
    assert stats["error.bad_chunk"] >= 1
    assert 0 < len(got) < len(_messages())


# ---------------------------------------------------------------- sim://


def test_sim_single_sensor_unpaced_and_bounded():
    with open_source("sim://default?seed=3&sensor=radar_front&rate=max&duration=0.5") as src:
        assert src.kind == "radar" and src.live
        got = list(src)
    assert {m.sensor_id for m in got} == {"radar_front"}
    assert 8 <= len(got) <= 12  # 20 Hz for 0.5 s of simulated time
    stamps = [m.stamp_ns for m in got]
    assert stamps == sorted(stamps)
    assert all(isinstance(m.payload, RadarScan) for m in got)
    assert src.calibration is not None and "radar_front" in src.calibration.extrinsics


def test_sim_realtime_source_stops_when_closed_from_another_thread():
    src = open_source("sim://default?sensor=odom")
    reader = SourceReader(src).start()
    first = reader.get(20.0)
    assert first is not None and first.sensor_id in ("odom", "ego_truth")
    assert reader.stop(timeout_s=5.0)


# ---------------------------------------------------------------- SourceReader


class _Fake(Source):
    def __init__(self, n: int, live: bool, fail_after: int | None = None):
        self.n, self.live, self.fail_after, self.uri, self.kind = n, live, fail_after, "fake://x", "lidar"
        self.closed = threading.Event()

    def __iter__(self):
        for k in range(self.n):
            if self.fail_after is not None and k == self.fail_after:
                raise RuntimeError("device on fire")
            yield Message("s", k, PointCloud(np.zeros((1, 4), np.float32)), seq=k)

    def stats(self):
        return {}

    def close(self):
        self.closed.set()


def _wait_ended(reader: SourceReader) -> None:
    deadline = time.monotonic() + 10
    while not reader.ended and time.monotonic() < deadline:
        time.sleep(0.01)


def test_reader_live_source_drops_the_oldest_and_counts():
    reader = SourceReader(_Fake(10, live=True), maxlen=4).start()
    _wait_ended(reader)
    assert [m.seq for m in reader.drain()] == [6, 7, 8, 9]
    assert reader.dropped_oldest == 6 and reader.done


def test_reader_file_source_waits_for_room_and_loses_nothing():
    reader = SourceReader(_Fake(50, live=False), maxlen=4).start()
    got = []
    while not reader.done:
        m = reader.get(1.0)
        if m is not None:
            got.append(m.seq)
    assert got == list(range(50)) and reader.dropped_oldest == 0


def test_reader_keeps_a_source_error_and_ends():
    src = _Fake(10, live=True, fail_after=3)
    reader = SourceReader(src).start()
    _wait_ended(reader)
    assert len(reader.drain()) == 3
    assert "fake://x" in reader.error and "device on fire" in reader.error
    assert reader.stop() and src.closed.is_set()


def test_old_import_path_still_opens_sources_with_a_deprecation_warning():
    """``from edgefuse.adapters import open_source`` (before the dispatcher moved above the drivers)
    still gives the dispatcher, and says where it moved."""
    import edgefuse.adapters as adapters

    with pytest.warns(DeprecationWarning, match=r"edgefuse\.sources\.open_source"):
        old = adapters.open_source
    assert old is open_source
    with pytest.warns(DeprecationWarning, match=r"edgefuse\.sources\.SCHEMES"):
        assert adapters.SCHEMES == SCHEMES
    with pytest.raises(AttributeError, match="no_such_name"):
        adapters.no_such_name  # noqa: B018 - the attribute access is the test
    with pytest.raises(InputError, match="unknown scheme"):
        old("nosuch://x")
