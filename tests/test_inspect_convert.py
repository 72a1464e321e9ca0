"""``edgefuse inspect`` / ``convert``: summaries of hand-made messages, a capture with garbage packets,
a silent live source bounded by --duration, conversion to a directory (read back with pypcd4 and cv2)
and to an MCAP log."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.errors import InputError
from edgefuse.inspect import convert_uri, format_inspect, inspect_uri, summarize
from edgefuse.types import CompressedImage, Image, Message, Odometry, PointCloud, RadarScan

DATA = Path(__file__).parent / "data"
PCAP = DATA / "velodyne_vlp32c" / "DERIVED_vlp32c_from_rosbag2.pcap"
REPO = Path(__file__).resolve().parent.parent


def cloud(n: int, cols: int = 4, seed: int = 0) -> PointCloud:
    data = np.random.default_rng(seed).normal(size=(n, cols)).astype(np.float32)
    return PointCloud(data, ("x", "y", "z", "intensity", "ring")[:cols])


# ---------------------------------------------------------------- summarize (pure)


def test_summarize_hand_made_messages():
    msgs = [Message("lidar", k * 100_000_000, cloud(n)) for k, n in enumerate((10, 20, 30))]
    msgs.append(Message("cam", 5, Image(np.zeros((2, 4, 3), np.uint8))))
    msgs.append(Message("cam", 5 + 50_000_000, CompressedImage(b"\xff\xd8", "jpeg")))
    r = summarize(msgs)
    lidar, cam = r["sensors"]["lidar"], r["sensors"]["cam"]
    assert r["messages"] == 5
    assert lidar["kind"] == "lidar" and lidar["count"] == 3
    assert lidar["rate_hz"] == pytest.approx(10.0)  # 2 intervals over 0.2 s
    assert (lidar["first_stamp_ns"], lidar["last_stamp_ns"]) == (0, 200_000_000)
    assert lidar["fields"] == ["x", "y", "z", "intensity"]
    assert lidar["points"] == {"min": 10, "mean": 20.0, "max": 30}
    assert cam["kind"] == "camera" and cam["rate_hz"] == pytest.approx(20.0)
    assert cam["size"] == ["4x2", "jpeg"]
    assert summarize([Message("x", 0, cloud(1))])["sensors"]["x"]["rate_hz"] is None


# ---------------------------------------------------------------- a capture with garbage


def udp_frame(payload: bytes, dport: int = 2368) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload`` (checksums zero: not checked by readers)."""
    udp = struct.pack(">HHHH", 2368, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), bytes(4))
    return b"\xff" * 6 + b"\x00" * 6 + b"\x08\x00" + ip + udp


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for k, p in enumerate(payloads):
        f = udp_frame(p)
        out.append(struct.pack("<IIII", 1_700_000_000, k * 500, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def real_payloads(n: int) -> list[bytes]:
    """The first n UDP payloads of the real capture, cut out of its pcap records by hand (classic pcap,
    Ethernet/IPv4/UDP: 42 bytes of headers before each 1206-byte payload)."""
    data = PCAP.read_bytes()
    off, out = 24, []
    while off < len(data) and len(out) < n:
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16 : off + 16 + incl]
        out.append(frame[42:])
        off += 16 + incl
    assert all(len(p) == 1206 for p in out)
    return out


@pytest.fixture(scope="module")
def garbage_pcap(tmp_path_factory) -> Path:
    good = real_payloads(160)
    bad_flag = bytearray(good[5])
    bad_flag[0:2] = b"\x00\x00"  # the first block's 0xFFEE flag
    payloads = good[:40] + [b"\x01" * 100, bytes(bad_flag)] + good[40:80] + [b"junk"] * 2 + good[80:]
    path = tmp_path_factory.mktemp("pcap") / "garbage.pcap"
    write_pcap(path, payloads)
    return path


def test_inspect_reports_decode_errors_by_reason(garbage_pcap):
    r = inspect_uri(f"pcap://{garbage_pcap}?model=VLP32C", progress=False)
    assert r["kind"] == "lidar"
    # 3 datagrams that are not 1206 bytes, 1 packet with a bad block flag
    assert r["decode_errors"] == {"bad_length": 3, "bad_block_flag": 1}
    assert r["stats"]["packets"] == 160
    s = r["sensors"]["lidar"]
    assert s["count"] >= 2 and s["fields"][:4] == ["x", "y", "z", "intensity"]
    assert s["points"]["min"] <= s["points"]["mean"] <= s["points"]["max"]
    text = format_inspect(r)
    assert "bad_length 3" in text and "bad_block_flag 1" in text


def test_cli_inspect_json_and_error_exit(garbage_pcap):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edgefuse.cli", "inspect", "--json", f"pcap://{garbage_pcap}?model=VLP32C"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["decode_errors"]["bad_length"] == 3
    p = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "inspect", "radar://x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2 and "radar://x" in p.stderr and "Traceback" not in p.stderr


def test_inspect_bounds_a_live_source(tmp_path):
    # a live UDP LiDAR nobody sends to: --duration ends the inspection with nothing counted
    r = inspect_uri("velodyne://127.0.0.1:0?model=VLP32C&timeout=30", duration_s=0.3, progress=False)
    assert r["messages"] == 0 and r["sensors"] == {}
    r = inspect_uri("sim://default?sensor=radar_front&rate=max", max_messages=5, progress=False)
    assert r["sensors"]["radar_front"]["count"] == 5
    with pytest.raises(InputError, match="max-messages"):
        inspect_uri("sim://default", max_messages=0)


# ---------------------------------------------------------------- convert


@pytest.fixture
def small_log(tmp_path) -> tuple[Path, list[Message]]:
    from edgefuse.logs import Recorder

    rng = np.random.default_rng(5)
    msgs = [
        Message("lidar", 1_000_000_000, cloud(50, 5, 1)),
        Message("lidar", 1_100_000_000, cloud(60, 5, 2)),
        Message("radar", 1_050_000_000, RadarScan(rng.normal(size=(7, 5)).astype(np.float32))),
        Message("cam", 1_020_000_000, Image(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8))),
        Message("odom", 1_030_000_000, Odometry(np.zeros(3), [0, 0, 0, 1], np.zeros(3), np.zeros(3))),
    ]
    path = tmp_path / "in.mcap"
    with Recorder(path) as rec:
        for m in msgs:
            rec.write(m)
    return path, msgs


def test_convert_to_directory_read_back_independently(small_log, tmp_path):
    from pypcd4 import PointCloud as PyPcd

    log, msgs = small_log
    out = tmp_path / "out"
    r = convert_uri(f"mcap://{log}", out, progress=False)
    assert r["written"] == {"cam": 1, "lidar": 2, "radar": 1}
    assert r["skipped"] == {"Odometry": 1} and r["write_errors"] == 0
    for m in msgs[:3]:
        path = out / m.sensor_id / f"{m.stamp_ns:019d}.pcd"
        pc = PyPcd.from_path(path)
        assert list(pc.fields) == list(m.payload.fields)
        np.testing.assert_array_equal(pc.numpy(), m.payload.data)
    png = out / "cam" / f"{msgs[3].stamp_ns:019d}.png"
    np.testing.assert_array_equal(cv2.imread(str(png))[..., ::-1], msgs[3].payload.data)
    # the 19-digit names are stamps the pcd:// source reads back
    from edgefuse.sources import open_source

    with open_source(f"pcd://{out / 'lidar'}") as src:
        assert [m.stamp_ns for m in src] == [1_000_000_000, 1_100_000_000]


def test_convert_to_mcap_keeps_messages_and_calibration(tmp_path):
    from edgefuse.logs import LogReader
    from edgefuse.sources import open_source

    out = tmp_path / "pcap.mcap"
    r = convert_uri(f"pcap://{PCAP}?model=VLP32C&sensor_id=lidar_top", out, progress=False)
    with open_source(f"pcap://{PCAP}?model=VLP32C") as src:
        direct = list(src)
    assert r["format"] == "mcap" and r["written"] == {"lidar_top": len(direct)}
    got = [m for _, m in LogReader(out).messages()]
    assert len(got) == len(direct)
    for a, b in zip(got, direct, strict=True):
        assert (a.stamp_ns, a.raw_stamp_ns, a.recv_ns) == (b.stamp_ns, b.raw_stamp_ns, b.recv_ns)
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
    # a sim source carries its calibration into the converted log
    out2 = tmp_path / "sim.mcap"
    convert_uri("sim://default?sensor=radar_front&rate=max&duration=0.2", out2, progress=False)
    calib = LogReader(out2).calibration()
    assert calib is not None and "radar_front" in calib.extrinsics


def test_convert_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="expected a directory"):
        convert_uri(f"pcap://{PCAP}?model=VLP32C", tmp_path / "f", progress=False)


def test_ctrl_c_ends_an_unbounded_inspection_with_its_summary():
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "edgefuse.cli", "inspect", "--json", "sim://default?sensor=radar_front"]
    # a test run started in the background by a non-interactive shell inherits SIGINT *ignored*, and Python
    # then installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(3.0)  # past start-up (imports, world build); a Ctrl-C during start-up exits 130
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # a hang: dump every thread's stack (faulthandler) into the failure
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=10)
            pytest.fail(f"inspect did not stop within 60 s of Ctrl-C; its threads:\n{err[-6000:]}")
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    r = json.loads(out)
    assert r["interrupted"] is True and r["kind"] == "radar"
    assert set(r["sensors"]) <= {"radar_front"}  # (empty only if the simulator had not started yet)


def test_convert_message_file_forms(tmp_path):
    from edgefuse.inspect import convert_message

    odom = Message("odom", 5, Odometry(np.zeros(3), [0, 0, 0, 1], np.zeros(3), np.zeros(3)))
    assert convert_message(odom, tmp_path) is None
    jpeg = cv2.imencode(".jpg", np.full((4, 4, 3), 90, np.uint8))[1].tobytes()
    path = convert_message(Message("cam", 42, CompressedImage(jpeg, "jpeg")), tmp_path)
    assert path == tmp_path / "cam" / "0000000000000000042.jpg" and path.read_bytes() == jpeg
    with pytest.raises(InputError, match="stamp_ns"):
        convert_message(Message("lidar", -1, cloud(3)), tmp_path)
