"""KITTI .bin, PLY (our fallback reader) and nuScenes radar PCD, from bytes written here with struct."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edgefuse.adapters.files import ply as ply_mod
from edgefuse.adapters.files.kitti import KittiError, parse_kitti_bin, read_kitti_bin
from edgefuse.adapters.files.nuscenes_radar import NUSCENES_RADAR_FIELDS, parse_nuscenes_radar
from edgefuse.adapters.files.ply import PlyError, load_ply, parse_ply
from edgefuse.errors import InputError
from edgefuse.types import RadarScan

# ---------------------------------------------------------------- KITTI


def test_kitti_points_and_intensity_scale(tmp_path):
    pts = [(1.0, 2.0, 3.0, 0.5), (-4.5, 0.25, -1.75, 1.0), (10.0, -20.0, 0.5, 0.0)]
    data = b"".join(struct.pack("<4f", *p) for p in pts)
    cloud, dropped = parse_kitti_bin(data, "000000.bin")
    assert cloud.fields == ("x", "y", "z", "intensity")
    assert dropped == {"nan": 0, "inf": 0}
    expected = [[x, y, z, 255.0 * r] for x, y, z, r in pts]  # reflectance 0..1 → intensity 0..255
    np.testing.assert_array_equal(cloud.data, np.array(expected, np.float32))
    path = tmp_path / "000000.bin"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_kitti_bin(path)[0].data, cloud.data)


def test_kitti_size_not_multiple_of_16():
    data = struct.pack("<4f", 1, 2, 3, 0.5) + b"\0" * 9
    with pytest.raises(KittiError, match="25 bytes.*multiple of 16") as exc:
        parse_kitti_bin(data, "bad.bin")
    assert isinstance(exc.value, InputError) and str(exc.value).startswith("bad.bin")


def test_kitti_nan_inf_dropped():
    pts = [(1, 2, 3, 0.5), (np.nan, 0, 0, 0), (0, np.inf, 0, 0), (0, 0, 0, np.nan), (4, 5, 6, 0.25)]
    cloud, dropped = parse_kitti_bin(b"".join(struct.pack("<4f", *p) for p in pts), "n.bin")
    assert dropped == {"nan": 2, "inf": 1}
    np.testing.assert_array_equal(cloud.data, np.array([[1, 2, 3, 127.5], [4, 5, 6, 63.75]], np.float32))


def test_kitti_missing_file(tmp_path):
    with pytest.raises(KittiError, match="cannot read"):
        read_kitti_bin(tmp_path / "nope.bin")


# ---------------------------------------------------------------- PLY (our reader)

PLY_PTS = [(1.0, 2.0, 3.0, 7.0, 200), (-1.5, 0.5, 2.25, 0.0, 3), (4.0, -8.0, 16.0, 255.0, 0)]


def ply_binary(order="<", fmt="binary_little_endian", with_faces=True):
    head = (f"ply\nformat {fmt} 1.0\ncomment hand made\nelement vertex {len(PLY_PTS)}\n"
            "property float x\nproperty float y\nproperty float z\nproperty float intensity\n"
            "property uchar ring\n")
    if with_faces:
        head += "element face 1\nproperty list uchar int vertex_indices\n"
    head += "end_header\n"
    body = b"".join(struct.pack(order + "4fB", *p) for p in PLY_PTS)
    if with_faces:
        body += struct.pack(order + "B3i", 3, 0, 1, 2)
    return head.encode() + body


def test_ply_binary_little_and_big_endian():
    expected = np.array(PLY_PTS, np.float32)
    for order, fmt in (("<", "binary_little_endian"), (">", "binary_big_endian")):
        names, mat = parse_ply(ply_binary(order, fmt), "c.ply")
        assert names == ("x", "y", "z", "intensity", "ring")
        np.testing.assert_array_equal(mat, expected)


def test_ply_ascii():
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty double x\nproperty double y\n"
            "property double z\nend_header\n1 2 3\n-1.5 0.5 2.25\n4 -8 16\n")
    names, mat = parse_ply(text.encode(), "a.ply")
    assert names == ("x", "y", "z")
    np.testing.assert_array_equal(mat, np.array([p[:3] for p in PLY_PTS], np.float32))


@pytest.mark.parametrize(
    "data, key",
    [
        (b"not a ply", "end_header"),
        (ply_binary()[:-30], "vertices"),
        (ply_binary().replace(b"binary_little_endian", b"binary_middle_endian"), "format"),
        (ply_binary().replace(b"property float y", b"property float128 y"), "'y'"),
        (ply_binary().replace(b"element vertex 3", b"element vertex lots"), "element"),
        (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n", "2 ascii rows"),
    ],
)
def test_ply_bad_input(data, key):
    with pytest.raises(PlyError, match=key) as exc:
        parse_ply(data, "bad.ply")
    assert str(exc.value).startswith("bad.ply")


def test_load_ply_falls_back_without_open3d(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_open3d(name, *args, **kwargs):
        if name == "open3d" or name.startswith("open3d."):
            raise ImportError("open3d hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_open3d)
    assert ply_mod._open3d() is None
    path = tmp_path / "c.ply"
    path.write_bytes(ply_binary())
    cloud, dropped = load_ply(path)
    assert cloud.fields == ("x", "y", "z", "intensity", "ring")
    np.testing.assert_array_equal(cloud.data, np.array(PLY_PTS, np.float32))
    assert dropped == {"nan": 0, "inf": 0}


def test_load_ply_adds_intensity_and_drops_nan(tmp_path):
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nend_header\n1 2 3\nnan 0 0\n4 5 6\n")
    path = tmp_path / "n.ply"
    path.write_text(text)
    cloud, dropped = load_ply(path, use_open3d=False)
    assert cloud.fields == ("x", "y", "z", "intensity") and dropped == {"nan": 1, "inf": 0}
    np.testing.assert_array_equal(cloud.data, [[1, 2, 3, 0], [4, 5, 6, 0]])


# ---------------------------------------------------------------- nuScenes radar

# nuScenes radar PCD layout: (name, TYPE, SIZE) per field
NUSC_LAYOUT = [("x", "F", 4, "f"), ("y", "F", 4, "f"), ("z", "F", 4, "f"), ("dyn_prop", "I", 1, "b"),
               ("id", "I", 2, "h"), ("rcs", "F", 4, "f"), ("vx", "F", 4, "f"), ("vy", "F", 4, "f"),
               ("vx_comp", "F", 4, "f"), ("vy_comp", "F", 4, "f"), ("is_quality_valid", "I", 1, "b"),
               ("ambig_state", "I", 1, "b"), ("x_rms", "I", 1, "b"), ("y_rms", "I", 1, "b"),
               ("invalid_state", "I", 1, "b"), ("pid_state", "I", 1, "b"), ("vx_rms", "I", 1, "b"),
               ("vy_rms", "I", 1, "b")]
NUSC_ROWS = [
    (12.5, -3.25, 0.0, 0, 17, 5.5, 1.25, -0.5, 0.75, -0.25, 1, 3, 19, 19, 0, 0, 17, 3),
    (40.0, 8.0, 0.0, 3, 300, -7.5, -2.0, 0.125, 0.0, 0.0, 1, 3, 20, 21, 0, 1, 16, 2),
]


def nuscenes_radar_bytes(rows=NUSC_ROWS, padding=b"", nan_row=False):
    n = len(rows) + int(nan_row)
    head = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(f[0] for f in NUSC_LAYOUT)}\n"
        f"SIZE {' '.join(str(f[2]) for f in NUSC_LAYOUT)}\n"
        f"TYPE {' '.join(f[1] for f in NUSC_LAYOUT)}\n"
        f"COUNT {' '.join('1' for _ in NUSC_LAYOUT)}\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n"
    )
    fmt = "<" + "".join(f[3] for f in NUSC_LAYOUT)
    assert struct.calcsize(fmt) == 43
    body = b"".join(struct.pack(fmt, *r) for r in rows)
    if nan_row:
        body += struct.pack(fmt, float("nan"), *NUSC_ROWS[0][1:])
    return head.encode() + body + padding


def test_nuscenes_radar_all_fields_kept_padding_ignored():
    scan, dropped = parse_nuscenes_radar(nuscenes_radar_bytes(padding=b"\0" * 13), "RADAR_FRONT.pcd")
    assert isinstance(scan, RadarScan)
    assert scan.fields == NUSCENES_RADAR_FIELDS == tuple(f[0] for f in NUSC_LAYOUT)
    assert "doppler" not in scan.fields
    np.testing.assert_array_equal(scan.data, np.array(NUSC_ROWS, np.float32))
    np.testing.assert_array_equal(scan.column("z"), 0)
    assert scan.column("id").tolist() == [17, 300] and scan.column("vx").tolist() == [1.25, -2.0]
    assert dropped == {"nan": 0, "inf": 0}


def test_nuscenes_radar_nan_point_dropped():
    scan, dropped = parse_nuscenes_radar(nuscenes_radar_bytes(nan_row=True), "r.pcd")
    assert len(scan) == 2 and dropped == {"nan": 1, "inf": 0}


def test_nuscenes_radar_truncated():
    data = nuscenes_radar_bytes()[:-10]
    with pytest.raises(InputError, match="r.pcd: header POINTS"):
        parse_nuscenes_radar(data, "r.pcd")
