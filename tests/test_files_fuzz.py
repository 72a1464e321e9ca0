"""Damaged files never crash a decoder: they decode or raise InputError (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefuse.adapters.files.kitti import parse_kitti_bin
from edgefuse.adapters.files.nuscenes_radar import parse_nuscenes_radar
from edgefuse.adapters.files.pcd import format_pcd, parse_pcd, pointcloud_from_pcd
from edgefuse.adapters.files.ply import parse_ply
from edgefuse.errors import InputError
from edgefuse.types import PointCloud

rng = np.random.default_rng(11)
CLOUD = PointCloud(np.round(rng.normal(0, 10, (40, 4)), 2).astype(np.float32))
FILES = {enc: format_pcd(CLOUD, enc) for enc in ("ascii", "binary", "binary_compressed")}
PLY = (b"ply\nformat binary_little_endian 1.0\nelement vertex 40\nproperty float x\nproperty float y\n"
       b"property float z\nproperty float intensity\nend_header\n" + CLOUD.data.tobytes())

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def damage(data: bytes, cut: int, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data[: max(0, len(data) - cut)])
    for pos, val in edits:
        if buf:
            buf[pos % len(buf)] = val
    return bytes(buf)


def decodes_or_input_error(fn, data: bytes) -> None:
    try:
        fn(data)
    except InputError:
        pass


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


@FUZZ
@given(enc=st.sampled_from(sorted(FILES)), cut=st.integers(0, 400), edits=EDITS)
def test_damaged_pcd(enc, cut, edits):
    data = damage(FILES[enc], cut, edits)
    decodes_or_input_error(lambda d: pointcloud_from_pcd(parse_pcd(d, "f.pcd"), "f.pcd"), data)
    decodes_or_input_error(lambda d: parse_pcd(d, "f.pcd", use_library=False), data)
    decodes_or_input_error(lambda d: parse_nuscenes_radar(d, "f.pcd"), data)


@FUZZ
@given(cut=st.integers(0, 400), edits=EDITS)
def test_damaged_ply_and_kitti(cut, edits):
    decodes_or_input_error(lambda d: parse_ply(d, "f.ply"), damage(PLY, cut, edits))
    decodes_or_input_error(lambda d: parse_kitti_bin(d, "f.bin"), damage(CLOUD.data.tobytes(), cut, edits))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    head = b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 3\nDATA binary_compressed\n"
    for fn in (lambda d: parse_pcd(head + d), lambda d: parse_pcd(d), lambda d: parse_ply(b"ply\n" + d)):
        decodes_or_input_error(fn, data)
