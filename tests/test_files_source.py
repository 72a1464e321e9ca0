"""File sources: URIs, directory order, stamps (file names, KITTI timestamps, rate), bad files."""

from __future__ import annotations

import calendar
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.files.source import open_file_source, parse_file_uri, stamp_from_name
from edgefuse.errors import InputError
from edgefuse.types import PointCloud, RadarScan

REAL_PCD = Path(__file__).parent / "data" / "velodyne_vlp32c" / "1713492677464078412.pcd"


def pcd_bytes(n: int, first: float = 0.0) -> bytes:
    """A binary x y z intensity PCD with n points whose x are first, first+1, …"""
    head = (f"VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
            f"WIDTH {n}\nHEIGHT 1\nPOINTS {n}\nDATA binary\n").encode()
    return head + b"".join(struct.pack("<4f", first + i, 0, 0, 1) for i in range(n))


class FakeClock:
    def __init__(self, start=1_000):
        self.t = start

    def __call__(self) -> int:
        self.t += 7
        return self.t


def test_directory_in_name_order_with_rate_stamps(tmp_path):
    for name, n in (("b.pcd", 2), ("a.pcd", 1), ("c.PCD", 3)):
        (tmp_path / name).write_bytes(pcd_bytes(n))
    (tmp_path / "notes.txt").write_text("not a cloud")
    clock = FakeClock()
    src = open_file_source(f"pcd://{tmp_path}?sensor=roof&rate=20", clock=clock)
    msgs = list(src)
    assert [len(m.payload) for m in msgs] == [1, 2, 3]  # a, b, c
    assert [m.stamp_ns for m in msgs] == [0, 50_000_000, 100_000_000]
    assert [m.raw_stamp_ns for m in msgs] == [0, 50_000_000, 100_000_000]
    assert [m.recv_ns for m in msgs] == [1_007, 1_014, 1_021]
    assert [m.seq for m in msgs] == [0, 1, 2]
    assert all(m.sensor_id == "roof" == m.frame and isinstance(m.payload, PointCloud) for m in msgs)
    assert src.stats["stamp_source"] == "rate" and src.stats["messages"] == 3 and src.stats["files"] == 3


def test_single_file_with_ns_name_and_relative_uri(monkeypatch):
    monkeypatch.chdir(REAL_PCD.parent.parent)
    src = open_file_source(f"pcd://{REAL_PCD.parent.name}/{REAL_PCD.name}")
    (msg,) = list(src)
    assert msg.stamp_ns == 1713492677464078412 and msg.sensor_id == "lidar"
    assert len(msg.payload) == 26216 and src.stats["stamp_source"] == "file name"


def test_stamp_from_name():
    assert stamp_from_name(Path("n008-2018-08-01-15-16-36-0400__RADAR_FRONT__1533151603547590.pcd")) == (
        1533151603547590 * 1000)
    assert stamp_from_name(Path("1713492677464078412.pcd")) == 1713492677464078412
    assert stamp_from_name(Path("scan_1533151603547.pcd")) == 1533151603547 * 1_000_000
    assert stamp_from_name(Path("1533151603.5475.pcd")) == 1533151603_547_500_000
    assert stamp_from_name(Path("0000000042.bin")) is None  # a KITTI frame index, not a time
    assert stamp_from_name(Path("frame_12.pcd")) is None


def test_bad_file_in_directory_is_counted_and_skipped(tmp_path, caplog):
    (tmp_path / "1.pcd").write_bytes(pcd_bytes(2))
    (tmp_path / "2.pcd").write_bytes(pcd_bytes(5)[:-9])  # header claims more than is there
    nan_file = bytearray(pcd_bytes(3, first=10))
    nan_file[-16:-12] = struct.pack("<f", float("nan"))
    (tmp_path / "3.pcd").write_bytes(bytes(nan_file))
    with caplog.at_level(logging.WARNING):
        src = open_file_source(f"pcd://{tmp_path}")
        msgs = list(src)
    assert [m.payload.column("x").tolist() for m in msgs] == [[0.0, 1.0], [10.0, 11.0]]
    assert [m.stamp_ns for m in msgs] == [0, 200_000_000]  # stamps keep the file's place
    assert [m.seq for m in msgs] == [0, 1]
    assert src.stats["bad_files"] == 1 and src.stats["messages"] == 2
    assert src.stats["dropped_points"] == {"nan": 1, "inf": 0}
    assert "2.pcd" in src.stats["errors"][0] and "POINTS" in src.stats["errors"][0]
    assert any("2.pcd" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def kitti_dir(root: Path, n: int) -> Path:
    data = root / "velodyne_points" / "data"
    data.mkdir(parents=True)
    for i in range(n):
        (data / f"{i:010d}.bin").write_bytes(struct.pack("<8f", i, 0, 0, 0.5, i, 1, 0, 1.0))
    return data


def test_kitti_directory_with_timestamps(tmp_path):
    data = kitti_dir(tmp_path, 3)
    lines = ["2011-09-26 13:02:25.964389445", "2011-09-26 13:02:26.074898123", "2011-09-26 13:02:26.17"]
    (data.parent / "timestamps.txt").write_text("\n".join(lines) + "\n")
    src = open_file_source(f"kitti://{data}")
    msgs = list(src)
    base = calendar.timegm((2011, 9, 26, 13, 2, 25, 0, 0, 0))
    assert [m.stamp_ns for m in msgs] == [base * 10**9 + 964389445, (base + 1) * 10**9 + 74898123,
                                          (base + 1) * 10**9 + 170000000]
    assert src.stats["stamp_source"].endswith("timestamps.txt")
    np.testing.assert_array_equal(msgs[1].payload.data, [[1, 0, 0, 127.5], [1, 1, 0, 255]])
    # the sweep-end file wins where both exist (a sweep is stamped at its end)
    (data.parent / "timestamps_end.txt").write_text("\n".join(["2011-09-26 13:02:30"] * 3))
    src = open_file_source(f"kitti://{data}")
    assert [m.stamp_ns for m in src] == [(base + 5) * 10**9] * 3
    # one scan by itself takes its own line (index from its name)
    (data.parent / "timestamps_end.txt").unlink()
    (msg,) = list(open_file_source(f"kitti://{data}/0000000002.bin"))
    assert msg.stamp_ns == (base + 1) * 10**9 + 170000000


def test_kitti_without_timestamps_uses_rate(tmp_path):
    data = kitti_dir(tmp_path, 2)
    (data / "0000000001.bin").write_bytes(b"\0" * 20)  # not a multiple of 16 bytes
    src = open_file_source(f"kitti://{data}?rate=5")
    msgs = list(src)
    assert [m.stamp_ns for m in msgs] == [0] and src.stats["bad_files"] == 1
    assert "0000000001.bin" in src.stats["errors"][0] and src.stats["stamp_source"] == "rate"


def test_nuscenes_radar_and_ply_directories(tmp_path):
    head = (b"VERSION 0.7\nFIELDS x y z rcs vx vy\nSIZE 4 4 4 4 4 4\nTYPE F F F F F F\nCOUNT 1 1 1 1 1 1\n"
            b"WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA binary\n")
    radar = tmp_path / "radar"
    radar.mkdir()
    for us in (1533151603597590, 1533151603547590):
        (radar / f"n008__RADAR_FRONT__{us}.pcd").write_bytes(head + struct.pack("<6f", 1, 2, 0, 5, 3, 4))
    src = open_file_source(f"nuscenes-radar://{radar}")
    msgs = list(src)
    assert [m.stamp_ns for m in msgs] == [1533151603547590000, 1533151603597590000]
    assert all(isinstance(m.payload, RadarScan) and m.sensor_id == "radar" for m in msgs)
    assert msgs[0].payload.fields == ("x", "y", "z", "rcs", "vx", "vy")

    plys = tmp_path / "ply"
    plys.mkdir()
    text = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
    (plys / "a.ply").write_text(text + "end_header\n1 2 3\n")
    (plys / "b.ply").write_text(text + "end_header\n")  # a row short
    src = open_file_source(f"ply://{plys}")
    (msg,) = list(src)
    np.testing.assert_array_equal(msg.payload.data, [[1, 2, 3, 0]])
    assert src.stats["bad_files"] == 1 and "b.ply" in src.stats["errors"][0]


@pytest.mark.parametrize(
    "uri, key",
    [
        ("lidar://x", "scheme"),
        ("pcd://", "path"),
        ("pcd://somewhere?rate=0", "rate"),
        ("pcd://somewhere?rate=fast", "rate"),
        ("pcd://somewhere?sensor=", "sensor"),
        ("pcd://somewhere?model=VLP16", "model"),
    ],
)
def test_bad_uris(uri, key):
    with pytest.raises(InputError, match=key) as exc:
        parse_file_uri(uri)
    assert str(exc.value).startswith(uri)


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(InputError, match="existing file or directory"):
        open_file_source(f"pcd://{tmp_path}/nothing_here")
    (tmp_path / "a.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"\*\.pcd files"):
        open_file_source(f"pcd://{tmp_path}")


def test_absolute_uri_form(tmp_path):
    shutil.copy(REAL_PCD, tmp_path / "x.pcd")
    assert parse_file_uri(f"pcd://{tmp_path}/x.pcd").path == tmp_path / "x.pcd"
    (msg,) = list(open_file_source(f"pcd://{tmp_path}/x.pcd?sensor=top"))
    assert msg.sensor_id == "top" and msg.stamp_ns == 0 and len(msg.payload) == 26216
