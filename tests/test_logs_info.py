"""log_info / `edgefuse log info`: counts, rates, gaps, duration from hand-made stamps."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgefuse.logs import Recorder
from edgefuse.logs.info import format_log_info, log_info
from edgefuse.types import Image, Message, PointCloud

ROOT = Path(__file__).resolve().parents[1]
LIDAR = [10**9 + k * 100_000_000 for k in range(11)]  # 10 Hz for 1 s ...
LIDAR[7:] = [t + 400_000_000 for t in LIDAR[7:]]  # ... with a 0.5 s hole ending at the 8th sweep
CAM = [10**9 + 50_000_000 + k * 40_000_000 for k in range(26)]  # 25 Hz


def make(path: Path, compression: str = "zstd") -> None:
    img = Image(np.zeros((4, 6, 3), np.uint8))
    with Recorder(path, compression=compression, chunk_size=2000) as rec:
        events = [(t, "lidar") for t in LIDAR] + [(t, "cam") for t in CAM]
        for t, kind in sorted(events):
            if kind == "lidar":
                rec.write(Message("lidar", t, PointCloud(np.ones((3, 4), np.float32)), recv_ns=t))
            else:
                rec.write(Message("cam", t, img, recv_ns=t))
        rec.write_metadata("vehicle", {"name": "car1"})


def test_log_info_numbers(tmp_path):
    path = tmp_path / "i.mcap"
    make(path)
    r = log_info(path)
    assert r["messages"] == len(LIDAR) + len(CAM) and r["truncated"] is False and r["errors"] == []
    assert r["compression"] == ["zstd"] and r["chunks"] > 1 and r["size_bytes"] == path.stat().st_size
    assert r["start_ns"] == LIDAR[0] and r["end_ns"] == max(LIDAR[-1], CAM[-1])
    assert r["duration_s"] == (max(LIDAR[-1], CAM[-1]) - LIDAR[0]) / 1e9
    lid = r["topics"]["/lidar/points"]
    assert lid["count"] == 11 and lid["schema"] == "sensor_msgs/msg/PointCloud2"
    assert lid["rate_hz"] == 10 / ((LIDAR[-1] - LIDAR[0]) / 1e9)
    assert lid["max_gap_ns"] == 500_000_000 and lid["max_gap_at_ns"] == LIDAR[7]
    cam = r["topics"]["/cam/image_raw"]
    assert cam["count"] == 26 and abs(cam["rate_hz"] - 25.0) < 1e-9 and cam["max_gap_ns"] == 40_000_000
    assert r["metadata"] == ["vehicle"]
    text = format_log_info(r)
    assert "/lidar/points" in text and "0.500" in text and "truncated" not in text


def test_truncated_log_info_decompresses_and_agrees(tmp_path):
    path = tmp_path / "i.mcap"
    make(path, "none")
    full = log_info(path)
    cut = tmp_path / "cut.mcap"
    data = path.read_bytes()
    opcode, length, summary_start, _, _ = struct.unpack_from("<BQQQI", data, len(data) - 8 - 29)
    assert (opcode, length) == (0x02, 20)  # the footer record (MCAP spec)
    cut.write_bytes(data[: summary_start - 13])  # drop the DataEnd record (13 bytes) and all after it
    r = log_info(cut)
    assert r["truncated"] is True and r["messages"] == full["messages"]
    assert r["topics"] == full["topics"]
    assert "truncated:   yes" in format_log_info(r)


def test_cli_json(tmp_path):
    path = tmp_path / "i.mcap"
    make(path)
    p = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "log", "info", str(path), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["topics"]["/cam/image_raw"]["count"] == 26
    p = subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", "log", "info", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.returncode == 0 and "/cam/image_raw" in p.stdout
