"""``edgefuse record --kit``: every source of a kit into one log; SIGINT in a subprocess leaves a
complete log; broken sources (at start or mid-stream) do not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.base import Source
from edgefuse.errors import InputError
from edgefuse.logs import LogReader, Recorder
from edgefuse.record import KitRecorder, record_kit
from edgefuse.rig import SensorSpec, load_calibration
from edgefuse.sources import open_source
from edgefuse.types import Message, PointCloud

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
PCAP = DATA / "velodyne_vlp32c" / "DERIVED_vlp32c_from_rosbag2.pcap"
TI = DATA / "ti_mmwave"


def make_kit(d: Path, sensors: list[tuple[str, str, str, float]], frames: dict[str, str] | None = None):
    """A kit folder: the test capture files copied in (relative paths), the sim calibration, a kit YAML."""
    shutil.copy(PCAP, d / "lidar.pcap")
    shutil.copy(TI / "capture_3x.dat", d / "radar.dat")
    shutil.copy(TI / "iwr6843_3tx.cfg", d / "radar.cfg")
    shutil.copy(REPO / "calibration" / "sim-default.yaml", d / "calib.yaml")
    lines = ["version: 1", "name: test-kit", "calibration: calib.yaml", "sensors:"]
    for sid, kind, uri, rate in sensors:
        lines += [f"  - id: {sid}", f"    kind: {kind}", f"    source: '{uri}'", f"    rate_hz: {rate}"]
        if frames and sid in frames:
            lines.append(f"    frame: {frames[sid]}")
    (d / "kit.yaml").write_text("\n".join(lines) + "\n")
    return d / "kit.yaml"


def test_sigint_stops_cleanly_with_a_complete_log(tmp_path):
    kit = make_kit(
        tmp_path,
        [
            ("radar_front", "radar", "sim://default?seed=1&sensor=radar_front", 20),
            ("odom", "odometry", "sim://default?seed=1&sensor=odom", 50),
            ("lidar_top", "lidar", "pcap://lidar.pcap?model=VLP32C", 10),
            ("radar_ti", "radar", "ti-mmwave-file://radar.dat?cfg=radar.cfg", 20),
        ],
        frames={"odom": "base_link"},
    )
    out = tmp_path / "rec" / "run.mcap"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "edgefuse.cli", "record", "--kit", str(kit), "--out", str(out), "--json"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # wait for the first health line (printed once a second) that shows the sim radar recording
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "msgs" in line and "radar_front 0.0 Hz" not in line:
                break
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, "".join(seen) + stderr
    r = json.loads(stdout)
    assert r["stopped"] == "signal"
    s = r["sensors"]
    assert s["radar_front"]["status"] == "stopped" and s["radar_front"]["messages"] > 0
    assert s["lidar_top"]["status"] == "ended" and s["radar_ti"]["status"] == "ended"
    assert s["radar_ti"]["decode_errors"] == {"truncated": 1}  # the capture's truncated frame

    log = LogReader(out)
    assert not log.truncated and log.errors == []
    topics = log.topics()
    for topic, n in r["topics"].items():
        assert topics[topic].count == n
    assert topics["/radar_front/points"].count == s["radar_front"]["messages"]
    # calibration written into the log, equal to the kit's file
    calib, kit_calib = log.calibration(), load_calibration(tmp_path / "calib.yaml")
    for sid, T in kit_calib.extrinsics.items():
        np.testing.assert_allclose(calib.extrinsics[sid].matrix(), T.matrix(), atol=1e-12)
    assert "/tf_static" in topics
    # the pcap's sweeps are in the log with their three stamps as the source gives them
    with open_source(f"pcap://{PCAP}?model=VLP32C", "lidar_top") as src:
        direct = list(src)
    logged = [m for _, m in log.messages(topics=["/lidar_top/points"])]
    assert len(logged) == len(direct)
    for a, b in zip(logged, direct, strict=True):
        assert (a.stamp_ns, a.raw_stamp_ns, a.recv_ns) == (b.stamp_ns, b.raw_stamp_ns, b.recv_ns)
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
    # the ODOMETRY frame from the kit, the radar frame defaulted to its id
    odom = next(m for _, m in log.messages(topics=["/odom/odom"]))
    assert odom.frame == "base_link"


def test_broken_sources_are_reported_and_the_others_record(tmp_path):
    kit = make_kit(
        tmp_path,
        [
            ("cam_front", "camera", "v4l2:///dev/does-not-exist", 30),
            ("lidar_top", "lidar", "pcap://lidar.pcap?model=VLP32C", 10),
            ("lidar_rear", "lidar", "pcap://missing.pcap?model=VLP32C", 10),
            ("radar_ti", "radar", "ti-mmwave-file://radar.dat?cfg=radar.cfg", 20),
        ],
        frames={"lidar_top": "lidar_top_frame"},
    )
    out = tmp_path / "run.mcap"
    messages: list[str] = []

    class Err:
        def write(self, s):
            messages.append(s)

        def flush(self):
            pass

        def isatty(self):
            return False

    r = record_kit(kit, out, stderr=Err(), handle_signals=False)
    s = r["sensors"]
    assert r["stopped"] == "sources ended"
    assert s["cam_front"]["status"] == "failed" and "/dev/does-not-exist" in s["cam_front"]["error"]
    assert s["lidar_rear"]["status"] == "failed" and "missing.pcap" in s["lidar_rear"]["error"]
    assert s["lidar_top"]["status"] == "ended" and s["lidar_top"]["messages"] > 0
    assert s["radar_ti"]["messages"] == 3
    assert any("cam_front" in m and "did not open" in m for m in messages)
    log = LogReader(out)
    assert not log.truncated
    assert {t: i.count for t, i in log.topics().items() if t.endswith("points")} == {
        "/lidar_top/points": s["lidar_top"]["messages"],
        "/radar_ti/points": 3,
    }
    first = next(m for _, m in log.messages(topics=["/lidar_top/points"]))
    assert first.frame == "lidar_top_frame"  # the kit's frame replaces the package default


def test_no_source_opens_is_an_input_error(tmp_path):
    kit = make_kit(tmp_path, [("cam_front", "camera", "v4l2:///dev/does-not-exist", 30)])
    with pytest.raises(InputError, match="no source opened"):
        record_kit(kit, tmp_path / "x.mcap", handle_signals=False)
    with pytest.raises(InputError, match="duration"):
        record_kit(kit, tmp_path / "x.mcap", duration_s=-1, handle_signals=False)


class _Scripted(Source):
    """A live fake: yields ``n`` clouds, then raises (if ``fail``) or ends."""

    live = True
    kind = "lidar"

    def __init__(self, sid: str, n: int, fail: bool):
        self.sid, self.n, self.fail, self.uri = sid, n, fail, f"fake://{sid}"

    def __iter__(self):
        for k in range(self.n):
            yield Message(self.sid, 1_000 + k * 100, PointCloud(np.full((2, 4), k, np.float32)), seq=k)
        if self.fail:
            raise OSError("cable pulled")

    def stats(self):
        return {"error.crc": 2} if self.fail else {}


def test_a_source_raising_mid_stream_is_reported_and_the_log_is_complete(tmp_path):
    specs = {
        "a": SensorSpec("a", "lidar", "fake://a", 10.0, "a"),
        "b": SensorSpec("b", "lidar", "fake://b", 10.0, "b"),
    }
    out = tmp_path / "k.mcap"
    kr = KitRecorder({"a": _Scripted("a", 3, True), "b": _Scripted("b", 5, False)}, specs, Recorder(out))
    kr.start()
    deadline = time.monotonic() + 10
    while not kr.all_done and time.monotonic() < deadline:
        kr.step(0.05)
    kr.close()
    r = kr.result()
    assert r["sensors"]["a"]["status"] == "failed" and "cable pulled" in r["sensors"]["a"]["error"]
    assert r["sensors"]["a"]["messages"] == 3 and r["sensors"]["a"]["decode_errors"] == {"crc": 2}
    assert r["sensors"]["b"]["status"] == "ended" and r["sensors"]["b"]["messages"] == 5
    assert "a 0.0 Hz" in kr.health_line() or "FAILED" in kr.health_line()
    log = LogReader(out)
    assert not log.truncated
    assert {t: i.count for t, i in log.topics().items()} == {"/a/points": 3, "/b/points": 5}
