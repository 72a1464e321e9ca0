"""PCD decoding/encoding: hand-built files of every encoding (bytes written here with numpy/struct,
independent of our writer), lying headers, LZF, NaN/inf, and pypcd4 as an independent implementation."""

from __future__ import annotations

import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.files.lzf import LzfError, lzf_decompress, lzf_decompress_py
from edgefuse.adapters.files.pcd import (
    PcdError,
    format_pcd,
    parse_pcd,
    pcd_columns,
    pointcloud_from_pcd,
    read_pcd,
    write_pcd,
)
from edgefuse.errors import InputError
from edgefuse.types import PointCloud

lzf_c = pytest.importorskip("lzf")
pypcd4 = pytest.importorskip("pypcd4")

DATA = Path(__file__).parent / "data"
REAL_PCD = DATA / "velodyne_vlp32c" / "1713492677464078412.pcd"

# ---------------------------------------------------------------- hand-built files


def header(fields, sizes, types, counts, width, height=1, points=None, data="binary", extra=""):
    points = width * height if points is None else points
    return (
        "# .PCD v0.7 - hand made\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join(map(str, counts))}\nWIDTH {width}\nHEIGHT {height}\n"
        f"VIEWPOINT 1 2 3 1 0 0 0\n{extra}POINTS {points}\nDATA {data}\n"
    ).encode()


def literal_lzf(raw: bytes) -> bytes:
    """An LZF stream of literal runs only (control byte = run length − 1, runs of ≤ 32 bytes)."""
    out = b""
    for i in range(0, len(raw), 32):
        chunk = raw[i : i + 32]
        out += bytes([len(chunk) - 1]) + chunk
    return out


# every TYPE/SIZE pair with extreme values
ALL_TYPES = [
    ("f4", "F", 4, "<f4", [1.5, -(2.0**100), 0.0]),
    ("f8", "F", 8, "<f8", [1e300, -1.0 / 3.0, 5e-324]),
    ("i1", "I", 1, "i1", [-128, 127, 0]),
    ("i2", "I", 2, "<i2", [-32768, 32767, -1]),
    ("i4", "I", 4, "<i4", [-(2**31), 2**31 - 1, 7]),
    ("i8", "I", 8, "<i8", [-(2**63), 2**63 - 1, -5]),
    ("u1", "U", 1, "u1", [0, 255, 3]),
    ("u2", "U", 2, "<u2", [0, 65535, 9]),
    ("u4", "U", 4, "<u4", [0, 2**32 - 1, 11]),
    ("u8", "U", 8, "<u8", [0, 2**64 - 1, 13]),
]


def all_types_array() -> np.ndarray:
    arr = np.zeros(3, dtype=[(n, dt) for n, _, _, dt, _ in ALL_TYPES])
    for n, _, _, _, vals in ALL_TYPES:
        arr[n] = vals
    return arr


def all_types_header(data: str) -> bytes:
    return header([t[0] for t in ALL_TYPES], [t[2] for t in ALL_TYPES], [t[1] for t in ALL_TYPES],
                  [1] * len(ALL_TYPES), 3, data=data)


def check_all_types(pcd, arr):
    assert len(pcd) == 3
    for n, _, _, dt, vals in ALL_TYPES:
        assert pcd.points.dtype[n] == np.dtype(dt), n
        assert pcd.points[n].tolist() == arr[n].tolist() == vals, n


def test_binary_every_type():
    arr = all_types_array()
    pcd = parse_pcd(all_types_header("binary") + arr.tobytes(), "types.pcd")
    check_all_types(pcd, arr)
    assert pcd.encoding == "binary" and pcd.viewpoint == (1, 2, 3, 1, 0, 0, 0)
    assert pcd.trailing_bytes == 0


def test_ascii_every_type():
    arr = all_types_array()
    rows = []
    for i in range(3):
        rows.append(" ".join(repr(float(arr[n][i])) if n.startswith("f") else str(int(arr[n][i]))
                             for n, *_ in ALL_TYPES))
    body = ("\r\n".join(rows) + "\n\n").encode()  # CRLF and a blank line at the end, as some tools write
    check_all_types(parse_pcd(all_types_header("ascii") + body, "types.pcd"), arr)


@pytest.mark.parametrize("use_library", [True, False])
@pytest.mark.parametrize("stream", ["literal", "lzf-c"])
def test_binary_compressed_every_type(use_library, stream):
    arr = all_types_array()
    soa = b"".join(arr[n].tobytes() for n, *_ in ALL_TYPES)  # PCL: each field's values in turn
    packed = literal_lzf(soa) if stream == "literal" else lzf_c.compress(soa)
    assert packed is not None
    data = all_types_header("binary_compressed") + struct.pack("<II", len(packed), len(soa)) + packed
    check_all_types(parse_pcd(data, "types.pcd", use_library=use_library), arr)


# COUNT > 1 and a padding field
PAD_FIELDS = (["x", "y", "z", "_", "intensity", "hist"], [4, 4, 4, 4, 4, 2], ["F", "F", "F", "U", "F", "U"],
              [1, 1, 1, 1, 1, 3])


def pad_arrays(n=5):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    inten = rng.uniform(0, 255, n).astype(np.float32)
    hist = rng.integers(0, 65535, size=(n, 3)).astype(np.uint16)
    return xyz, inten, hist


def check_pad(pcd, xyz, inten, hist):
    assert pcd.points.dtype.names == ("x", "y", "z", "intensity", "hist")
    np.testing.assert_array_equal(pcd.points["x"], xyz[:, 0])
    np.testing.assert_array_equal(pcd.points["z"], xyz[:, 2])
    np.testing.assert_array_equal(pcd.points["intensity"], inten)
    np.testing.assert_array_equal(pcd.points["hist"], hist)
    names, mat = pcd_columns(pcd)
    assert names == ("x", "y", "z", "intensity", "hist_0", "hist_1", "hist_2")
    np.testing.assert_array_equal(mat, np.column_stack([xyz, inten, hist.astype(np.float32)]))


def test_count_and_padding_binary():
    xyz, inten, hist = pad_arrays()
    rec = np.zeros(5, dtype=[("xyz", "<f4", 3), ("pad", "<u4"), ("i", "<f4"), ("h", "<u2", 3)])
    rec["xyz"], rec["pad"], rec["i"], rec["h"] = xyz, 0xDEADBEEF, inten, hist
    pcd = parse_pcd(header(*PAD_FIELDS, 5) + rec.tobytes(), "pad.pcd")
    check_pad(pcd, xyz, inten, hist)


def test_count_and_padding_ascii():
    xyz, inten, hist = pad_arrays()
    rows = []
    for i in range(5):  # repr of the float32 value as a double parses back to the same float32
        x, y, z = (repr(float(v)) for v in xyz[i])
        rows.append(f"{x} {y} {z} 999 {float(inten[i])!r}\t{hist[i, 0]} {hist[i, 1]} {hist[i, 2]}")
    pcd = parse_pcd(header(*PAD_FIELDS, 5, data="ascii") + "\n".join(rows).encode(), "pad.pcd")
    check_pad(pcd, xyz, inten, hist)


def test_count_and_padding_compressed():
    xyz, inten, hist = pad_arrays()
    # PCL leaves padding fields out of the compressed data; a COUNT-3 field is one block of N×3 values
    soa = b"".join(xyz[:, k].tobytes() for k in range(3)) + inten.tobytes() + hist.tobytes()
    packed = literal_lzf(soa)
    data = header(*PAD_FIELDS, 5, data="binary_compressed")
    data += struct.pack("<II", len(packed), len(soa)) + packed
    check_pad(parse_pcd(data, "pad.pcd"), xyz, inten, hist)


def test_organized_cloud():
    w, h = 4, 3
    vals = np.arange(w * h * 3, dtype=np.float32).reshape(w * h, 3)
    pcd = parse_pcd(header(["x", "y", "z"], [4] * 3, ["F"] * 3, [1] * 3, w, h) + vals.tobytes(), "org.pcd")
    assert (pcd.width, pcd.height, len(pcd)) == (4, 3, 12)
    grid = pcd.grid()
    assert grid.shape == (3, 4)
    assert grid[2, 1]["x"] == vals[2 * w + 1, 0] and grid[1, 3]["z"] == vals[1 * w + 3, 2]


def test_trailing_bytes_ignored_and_counted():
    vals = np.ones((2, 3), np.float32)
    pcd = parse_pcd(header(["x", "y", "z"], [4] * 3, ["F"] * 3, [1] * 3, 2) + vals.tobytes() + b"\0" * 7, "t")
    assert len(pcd) == 2 and pcd.trailing_bytes == 7


def test_ascii_rows_after_points_ignored_and_blank_lines_skipped():
    data = header(["x", "y", "z"], [4] * 3, ["F"] * 3, [1] * 3, 2, data="ascii") + b"1 2 3\n\n4 5 6\n7 8 9\n"
    np.testing.assert_array_equal(pcd_columns(parse_pcd(data, "extra.pcd"))[1], [[1, 2, 3], [4, 5, 6]])


def test_empty_cloud_each_encoding():
    for enc in ("ascii", "binary", "binary_compressed"):
        cloud = PointCloud(np.zeros((0, 4), np.float32))
        pcd = parse_pcd(format_pcd(cloud, enc), "empty")
        assert len(pcd) == 0 and pcd.points.dtype.names == ("x", "y", "z", "intensity")


# ---------------------------------------------------------------- lying headers


def xyz_header(**kw):
    return header(["x", "y", "z"], [4, 4, 4], ["F", "F", "F"], [1, 1, 1], **kw)


LIARS = {
    "points beyond data": (xyz_header(width=10) + np.zeros(9 * 3, np.float32).tobytes(), "POINTS"),
    "width x height != points": (xyz_header(width=5, height=2, points=9) + bytes(120), "POINTS"),
    "no DATA line": (xyz_header(width=1).replace(b"DATA binary\n", b"") + b"1 2 3\n", "DATA"),
    "unknown TYPE": (header(["x", "y", "z"], [4, 4, 4], ["F", "Q", "F"], [1, 1, 1], 1) + bytes(12), "TYPE"),
    "F2 not a PCD type": (header(["x", "y", "z"], [4, 2, 4], ["F"] * 3, [1, 1, 1], 1) + bytes(10), "TYPE"),
    "SIZE too short": (header(["x", "y", "z"], [4, 4], ["F", "F", "F"], [1, 1, 1], 1) + bytes(12), "SIZE"),
    "COUNT zero": (header(["x", "y", "z"], [4, 4, 4], ["F", "F", "F"], [1, 0, 1], 1) + bytes(12), "COUNT"),
    "WIDTH not a number": (xyz_header(width=1).replace(b"WIDTH 1", b"WIDTH one") + bytes(12), "WIDTH"),
    "unknown DATA": (xyz_header(width=1).replace(b"DATA binary", b"DATA zip") + bytes(12), "DATA"),
    "VIEWPOINT short": (xyz_header(width=1).replace(b"VIEWPOINT 1 2 3 1 0 0 0", b"VIEWPOINT 1 2") + bytes(12),
                        "VIEWPOINT"),
    "ascii rows missing": (xyz_header(width=3, data="ascii") + b"1 2 3\n4 5 6\n", "POINTS"),
    "ascii row short": (xyz_header(width=2, data="ascii") + b"1.5 2.5 3.5\n4.5 5.5\n", "DATA ascii.*row 2"),
    "ascii not a number": (xyz_header(width=1, data="ascii") + b"1 two 3\n", "DATA ascii.*'two'"),
    "no header at all": (b"\x00" * 100, "DATA"),
    "huge COUNT binary": (header(["x", "y"], [4, 4], ["F", "F"], [1, 10**9], 1) + bytes(8), "COUNT"),
    "huge COUNT ascii": (header(["x", "y"], [4] * 2, ["F"] * 2, [1, 9**5], 1, data="ascii") + b"1", "COUNT"),
    "huge COUNT empty cloud": (header(["x", "y"], [4, 4], ["F", "F"], [1, 10**12], 0, data="ascii"), "COUNT"),
    "compressed usize != points": (xyz_header(width=2, data="binary_compressed")
                                   + struct.pack("<II", 25, 25) + literal_lzf(bytes(24))[:25], "POINTS"),
    "compressed size beyond file": (
        xyz_header(width=2, data="binary_compressed") + struct.pack("<II", 500, 24) + literal_lzf(bytes(24)),
        "truncated",
    ),
    "compressed sizes missing": (xyz_header(width=2, data="binary_compressed") + b"\1\0", "sizes"),
}


@pytest.mark.parametrize("case", sorted(LIARS))
def test_lying_header_raises_input_error(case):
    data, key = LIARS[case]
    with pytest.raises(PcdError) as exc:
        parse_pcd(data, "liar.pcd")
    assert isinstance(exc.value, InputError)
    msg = str(exc.value)
    assert msg.startswith("liar.pcd: ") and re.search(key, msg), msg


def test_huge_claim_allocates_nothing_big():
    # 100 million points claimed (1.2 GB), 8 KiB of data: fails on the sizes, never allocates the claim
    n = 100_000_000
    for enc, body in (("binary", bytes(8192)),
                      ("binary_compressed", struct.pack("<II", 8192, n * 12) + bytes(8192)),
                      ("ascii", b"1 2 3\n" * 1000)):
        data = xyz_header(width=n, data=enc) + body
        tracemalloc.start()
        with pytest.raises(PcdError, match="POINTS"):
            parse_pcd(data, "huge.pcd")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20 * 2**20, (enc, peak)


@pytest.mark.parametrize("use_library", [True, False])
def test_truncated_compressed_data(use_library):
    vals = np.tile(np.arange(60, dtype=np.float32), 20)  # compressible
    packed = lzf_c.compress(vals.tobytes())
    assert packed is not None and len(packed) < vals.nbytes
    hdr = header(["x", "y", "z"], [4] * 3, ["F"] * 3, [1] * 3, 400, data="binary_compressed")
    cut = packed[: len(packed) - 5]
    data = hdr + struct.pack("<II", len(cut), vals.nbytes) + cut  # sizes consistent, stream cut short
    with pytest.raises(PcdError, match="binary_compressed") as exc:
        parse_pcd(data, "cut.pcd", use_library=use_library)
    assert "cut.pcd" in str(exc.value)
    # the whole file truncated: the compressed size now exceeds what is there
    whole = hdr + struct.pack("<II", len(packed), vals.nbytes) + packed
    with pytest.raises(PcdError, match="truncated"):
        parse_pcd(whole[:-10], "cut.pcd", use_library=use_library)


# ---------------------------------------------------------------- LZF


def test_lzf_hand_stream_with_overlapping_reference():
    # literal 'a', then a back reference of 10 bytes at distance 1 (ctrl 0xE0: length 7 + 1 = 8 → 10 bytes)
    stream = b"\x00a" + b"\xe0\x01\x00" + b"\x01xy" + b"\x40\x01"  # + 'xy' + 4 bytes from distance 2
    expected = b"a" * 11 + b"xy" + b"xyxy"
    assert lzf_decompress_py(stream, len(expected)) == expected
    assert lzf_decompress(stream, len(expected), use_library=True) == expected


def test_lzf_errors():
    with pytest.raises(LzfError, match="before the start"):
        lzf_decompress_py(b"\x00a\x20\x05", 4)  # distance 6 with 1 byte written
    with pytest.raises(LzfError, match="truncated"):
        lzf_decompress_py(b"\x05abc", 6)
    with pytest.raises(LzfError, match="expected 12"):
        lzf_decompress_py(b"\x00a", 12)


def test_lzf_python_matches_library_on_compressed_data():
    rng = np.random.default_rng(7)
    cases = [
        np.repeat(rng.normal(size=300).astype(np.float32), 7).tobytes(),
        rng.integers(0, 4, 20000).astype(np.uint8).tobytes(),
        b"abc" * 5000 + bytes(rng.integers(0, 256, 3000).astype(np.uint8)),
    ]
    for raw in cases:
        packed = lzf_c.compress(raw)
        assert packed is not None
        assert lzf_decompress_py(packed, len(raw)) == raw


# ---------------------------------------------------------------- NaN/inf and PointCloud


def test_nan_inf_points_dropped_and_counted():
    vals = np.array([[1, 2, 3, 10], [np.nan, 0, 0, 1], [4, 5, np.inf, 2], [6, 7, 8, np.nan],
                     [-np.inf, np.nan, 0, 3], [9, 10, 11, 12]], dtype=np.float32)
    data = header(["x", "y", "z", "intensity"], [4] * 4, ["F"] * 4, [1] * 4, 6) + vals.tobytes()
    cloud, dropped = pointcloud_from_pcd(parse_pcd(data, "nan.pcd"), "nan.pcd")
    assert dropped == {"nan": 3, "inf": 1}
    np.testing.assert_array_equal(cloud.data, vals[[0, 5]])
    assert cloud.fields == ("x", "y", "z", "intensity")


def test_only_padding_fields():
    data = header(["_", "_"], [4, 2], ["F", "U"], [1, 1], 2) + bytes(12)
    pcd = parse_pcd(data, "pad.pcd")
    assert len(pcd) == 2 and pcd.points.dtype.names == ()
    names, mat = pcd_columns(pcd)
    assert names == () and mat.shape == (2, 0)
    with pytest.raises(InputError, match="pad.pcd: header FIELDS"):
        pointcloud_from_pcd(pcd, "pad.pcd")


def test_pointcloud_requires_xyz_and_fills_intensity():
    data = header(["x", "y"], [4, 4], ["F", "F"], [1, 1], 1) + bytes(8)
    with pytest.raises(InputError, match="FIELDS.*z"):
        pointcloud_from_pcd(parse_pcd(data, "xy.pcd"), "xy.pcd")
    vals = np.array([[1, 2, 3, 7]], np.float32)
    data = header(["x", "y", "z", "ring"], [4, 4, 4, 2], ["F", "F", "F", "U"], [1] * 4, 1)
    data += vals[0, :3].tobytes() + struct.pack("<H", 7)
    cloud, _ = pointcloud_from_pcd(parse_pcd(data, "ring.pcd"))
    assert cloud.fields == ("x", "y", "z", "ring", "intensity")
    np.testing.assert_array_equal(cloud.data, [[1, 2, 3, 7, 0]])


# ---------------------------------------------------------------- writer and pypcd4


def sample_cloud(n=257) -> PointCloud:
    rng = np.random.default_rng(3)
    mat = np.column_stack([rng.normal(0, 30, (n, 3)), rng.uniform(0, 255, n), -rng.uniform(0, 1e8, n)])
    return PointCloud(mat.astype(np.float32), ("x", "y", "z", "intensity", "t_ns"))


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_write_round_trip_and_pypcd4_reads_ours(tmp_path, encoding):
    cloud = sample_cloud()
    path = write_pcd(tmp_path / f"c_{encoding}.pcd", cloud, encoding)
    back = read_pcd(path)
    assert back.encoding == encoding and back.fields == cloud.fields
    names, mat = pcd_columns(back)
    assert names == cloud.fields
    np.testing.assert_array_equal(mat, cloud.data)
    theirs = pypcd4.PointCloud.from_path(path)
    assert tuple(theirs.fields) == cloud.fields
    np.testing.assert_array_equal(theirs.numpy().astype(np.float32), cloud.data)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_we_read_pypcd4_files(tmp_path, encoding):
    rng = np.random.default_rng(5)
    n = 300

    def rep(a):  # repeated values so that LZF compresses (pypcd4 writes binary when it does not)
        return np.repeat(a[: n // 10], 10)

    cols = [rep(rng.normal(size=n).astype(np.float32)), rep(rng.normal(size=n).astype(np.float32)),
            rep(rng.normal(size=n)), rep(rng.integers(0, 255, n).astype(np.uint8)),
            rep(rng.integers(-30000, 30000, n).astype(np.int16)),
            rep(rng.integers(0, 2**32, n).astype(np.uint32))]
    names = ("x", "y", "z", "ring", "label", "id")
    theirs = pypcd4.PointCloud.from_points(cols, names, [c.dtype.type for c in cols])
    path = tmp_path / f"p_{encoding}.pcd"
    theirs.save(path, encoding=pypcd4.Encoding(encoding))
    ours = read_pcd(path)
    assert ours.encoding == encoding
    for name, col in zip(names, cols, strict=True):
        assert ours.points.dtype[name] == col.dtype
        if encoding == "ascii" and col.dtype.kind == "f":  # pypcd4 writes floats as %.10f
            col = np.array([float(f"{v:.10f}") for v in col.tolist()]).astype(col.dtype)
        np.testing.assert_array_equal(ours.points[name], col)


def test_real_velodyne_pcd_matches_pypcd4():
    ours = read_pcd(REAL_PCD)
    theirs = pypcd4.PointCloud.from_path(REAL_PCD)
    assert len(ours) == 26216 == len(theirs)
    np.testing.assert_array_equal(pcd_columns(ours)[1], theirs.numpy())
    cloud, dropped = pointcloud_from_pcd(ours, str(REAL_PCD))
    assert len(cloud) == 26216 and dropped == {"nan": 0, "inf": 0}
    np.testing.assert_array_equal(cloud.column("intensity"), 0)
