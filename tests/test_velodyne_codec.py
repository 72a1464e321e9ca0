"""Velodyne calibration tables and the pure packet codec: an independent scalar reference decoder written
from the manuals, the encoder round trip (hypothesis), and every kind of bad packet (skipped + counted,
or raised by the strict decoder)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefuse.adapters.velodyne import (
    DecodeStats,
    VelodynePacketError,
    decode_packet_strict,
    decode_packets,
    default_calibration,
    encode_packets,
    hdl32e,
    load_velodyne_calibration,
    vlp16,
    vlp32c,
)
from edgefuse.adapters.velodyne.pcap import read_udp_payloads
from edgefuse.errors import InputError

DATA = Path(__file__).parent / "data" / "velodyne_vlp32c"
PCAP = DATA / "DERIVED_vlp32c_from_rosbag2.pcap"
YAML = DATA / "VLP32.calibration.yaml"

# VLP-32C manual, firing timing table: firing pairs fire in 2.304 µs slots, a recharge slot after every
# second pair (values in µs for data points 0..31).
VLP32C_TIMING_US = [
    0, 0, 2.304, 2.304, 6.912, 6.912, 9.216, 9.216, 13.824, 13.824, 16.128, 16.128, 20.736, 20.736,
    23.04, 23.04, 27.648, 27.648, 29.952, 29.952, 34.56, 34.56, 36.864, 36.864, 41.472, 41.472,
    43.776, 43.776, 48.384, 48.384, 50.688, 50.688,
]  # fmt: skip


def real_payloads() -> list[bytes]:
    return [p for _, p in read_udp_payloads(PCAP, 2368)]


# ------------------------------------------------------------------ calibration


def test_vlp32c_builtin_is_the_shipped_yaml():
    doc = yaml.safe_load(YAML.read_text())
    lasers = sorted(doc["lasers"], key=lambda l: l["laser_id"])
    cal = vlp32c()
    assert cal.model == "VLP32C" and cal.num_lasers == 32 and cal.distance_resolution_m == 0.004
    np.testing.assert_array_equal(cal.vert_angle_rad, [l["vert_correction"] for l in lasers])
    np.testing.assert_array_equal(cal.rot_correction_rad, [l["rot_correction"] for l in lasers])
    np.testing.assert_array_equal(cal.firing_offset_ns, np.round(np.array(VLP32C_TIMING_US) * 1000))
    assert cal.sequence_period_ns == 55296
    # elevations of the VLP-32C data sheet: -25° .. +15°
    assert math.isclose(math.degrees(cal.vert_angle_rad.min()), -25, abs_tol=1e-6)
    assert math.isclose(math.degrees(cal.vert_angle_rad.max()), 15, abs_tol=1e-6)
    assert (
        load_velodyne_calibration(YAML, model="VLP32C").vert_angle_rad.tolist() == cal.vert_angle_rad.tolist()
    )


def test_hdl32e_and_vlp16_follow_the_manuals():
    h = hdl32e()
    # HDL-32E manual: laser 0 at -30.67°, laser 1 at -9.33°, laser 31 at +10.67°, 1.33° apart in each bank
    deg = np.degrees(h.vert_angle_rad)
    assert deg[0] == pytest.approx(-30.67, abs=0.01) and deg[1] == pytest.approx(-9.33, abs=0.01)
    assert deg[31] == pytest.approx(10.67, abs=0.01)
    assert np.allclose(np.diff(np.sort(deg)), 4 / 3, atol=1e-9)
    assert h.firing_offset_ns[31] == 31 * 1152 and h.sequence_period_ns == 46080  # 1.152 µs, 46.08 µs
    v = vlp16()
    assert np.degrees(v.vert_angle_rad).round(6).tolist() == [
        -15,
        1,
        -13,
        3,
        -11,
        5,
        -9,
        7,
        -7,
        9,
        -5,
        11,
        -3,
        13,
        -1,
        15,
    ]
    assert v.vert_offset_m[0] == pytest.approx(0.0112) and v.vert_offset_m[15] == pytest.approx(-0.0112)
    assert v.sequences_per_block == 2 and h.sequences_per_block == 1
    assert v.ring.tolist() == [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15]
    with pytest.raises(ValueError, match="model"):
        default_calibration("HDL64E")


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d["lasers"][3].pop("vert_correction"), "lasers[3].vert_correction"),
        (lambda d: d["lasers"][5].__setitem__("rot_correction", "abc"), "lasers[5].rot_correction"),
        (lambda d: d["lasers"][7].__setitem__("laser_id", 3), "lasers[7].laser_id"),
        (lambda d: d.__setitem__("num_lasers", 64), "num_lasers"),
        (lambda d: d["lasers"].pop(), "lasers"),
        (lambda d: d.__setitem__("distance_resolution", -1), "distance_resolution"),
        (lambda d: d["lasers"][0].__setitem__("dist_correction_x", 0.1), "lasers[0].dist_correction_x"),
        (lambda d: d.__setitem__("colour", 1), "colour"),
    ],
)
def test_bad_calibration_file_names_file_and_key(tmp_path, edit, key):
    doc = yaml.safe_load(YAML.read_text())
    edit(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError) as e:
        load_velodyne_calibration(path, model="VLP32C")
    assert str(path) in str(e.value) and key in str(e.value)


def test_calibration_file_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_velodyne_calibration(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="model"):  # 32 lasers: the timing needs the model
        load_velodyne_calibration(YAML)
    with pytest.raises(InputError, match="model"):
        load_velodyne_calibration(YAML, model="VLP16")


# ------------------------------------------------------------------ an independent scalar decoder


def reference_decode(payload: bytes, vert, rot, timing_ns, period_ns, res_m, seq_per_block):
    """Per point, straight from the manuals: azimuth interpolated by firing time over the block, beam
    azimuth = that − rot correction, x forward / y left from the clockwise azimuth."""
    az = [struct.unpack_from("<H", payload, b * 100 + 2)[0] for b in range(12)]
    L = len(vert)
    block_ns = period_ns * seq_per_block
    out = []
    for b in range(12):
        step = ((az[b + 1] - az[b]) % 36000) if b < 11 else ((az[11] - az[10]) % 36000)
        for c in range(32):
            d, refl = struct.unpack_from("<HB", payload, b * 100 + 4 + c * 3)
            if d == 0:
                continue
            laser = c % L
            dt = (c // L) * period_ns + timing_ns[laser]
            a = math.radians((az[b] + step * dt / block_ns) / 100.0) - rot[laser]
            r = d * res_m
            w = vert[laser]
            out.append(
                (r * math.cos(w) * math.cos(a), -r * math.cos(w) * math.sin(a), r * math.sin(w), refl,
                 b * seq_per_block * period_ns + dt)
            )  # fmt: skip
    return np.array(out)


def test_decoder_matches_scalar_reference_on_real_vlp32c_packets():
    doc = yaml.safe_load(YAML.read_text())
    lasers = sorted(doc["lasers"], key=lambda l: l["laser_id"])
    vert = [l["vert_correction"] for l in lasers]
    rot = [l["rot_correction"] for l in lasers]
    timing = [round(t * 1000) for t in VLP32C_TIMING_US]
    payloads = real_payloads()[100:104]
    d = decode_packets(payloads, vlp32c())
    ref = np.concatenate([reference_decode(p, vert, rot, timing, 55296, 0.004, 1) for p in payloads])
    assert len(d) == len(ref) > 1000
    np.testing.assert_allclose(d.xyz, ref[:, :3], atol=2e-5)
    np.testing.assert_array_equal(d.intensity, ref[:, 3])
    np.testing.assert_array_equal(d.t_ns, ref[:, 4])
    assert d.stamp_us.tolist() == [struct.unpack_from("<I", p, 1200)[0] for p in payloads]
    # ring: elevation rank
    np.testing.assert_array_equal(np.argsort(np.argsort(vert))[d.laser], d.ring)


def test_vlp16_point_times_follow_the_manual_table():
    """VLP-16 manual: TimeOffset = 55.296 µs × sequence + 2.304 µs × data point; sequence = 2·block +
    channel//16 (single) or block − block%2 + channel//16 (dual)."""
    cal = vlp16()
    F = 24 * 3
    rng = np.random.default_rng(0)
    ranges = rng.uniform(1, 50, (F, 16))
    pk = encode_packets(np.arange(F) * 0.0035, ranges, np.full((F, 16), 7), 10**9, cal)
    d = decode_packets(pk, cal)
    blk, ch = d.block, d.flat & 31
    expect_us = 55.296 * (blk * 2 + ch // 16) + 2.304 * (ch % 16)
    np.testing.assert_allclose(d.t_ns, expect_us * 1000, atol=0.5)
    # the same grid as a dual-return stream: block pairs share firing times
    arr = np.frombuffer(b"".join(pk), np.uint8).reshape(-1, 1206).copy()
    arr[:, 1204] = 0x39
    dd = decode_packets(arr, cal)
    blk, ch = dd.block, dd.flat & 31
    expect_us = 55.296 * (blk - blk % 2 + ch // 16) + 2.304 * (ch % 16)
    np.testing.assert_allclose(dd.t_ns, expect_us * 1000, atol=0.5)


# ------------------------------------------------------------------ encoder round trip


@settings(max_examples=25, deadline=None)
@given(
    model=st.sampled_from(["VLP16", "VLP32C", "HDL32E"]),
    packets=st.integers(1, 4),
    az0=st.floats(0, 2 * math.pi, exclude_max=True),
    rpm=st.floats(300, 1200),
    seed=st.integers(0, 2**31),
    first_t=st.integers(0, 10**18),
)
def test_decode_inverts_encode(model, packets, az0, rpm, seed, first_t):
    cal = default_calibration(model)
    L, S = cal.num_lasers, cal.sequences_per_block
    F = packets * 12 * S
    rng = np.random.default_rng(seed)
    omega = rpm / 60 * 2 * math.pi * 1e-9  # rad/ns, clockwise
    seq_t = np.arange(F) * cal.sequence_period_ns
    az = (az0 + omega * seq_t) % (2 * math.pi)
    max_range = 65000 * cal.distance_resolution_m  # uint16 distance units
    ranges = np.where(rng.random((F, L)) < 0.2, 0.0, rng.uniform(0.3, max_range, (F, L)))
    inten = rng.integers(0, 256, (F, L)).astype(np.uint8)
    pk = encode_packets(az, ranges, inten, first_t, cal)
    assert len(pk) == packets and all(len(p) == 1206 for p in pk)
    d = decode_packets(pk, cal)
    # decoded flat index → firing index and laser
    blk, ch = d.flat >> 5, d.flat & 31
    f = blk * S + ch // L
    laser = ch % L
    assert len(d) == np.count_nonzero(ranges)
    np.testing.assert_array_equal(ranges[f, laser] > 0, True)
    x = d.xyz.astype(np.float64)
    w, vo = cal.vert_angle_rad[laser], cal.vert_offset_m[laser]
    r = np.hypot(x[:, 0], x[:, 1]) * np.cos(w) + x[:, 2] * np.sin(w)  # undo the vertical offset
    assert np.abs(r - ranges[f, laser]).max() <= cal.distance_resolution_m / 2 + 1e-4
    z_expect = ranges[f, laser] * np.sin(w) + vo * np.cos(w)
    assert np.abs(x[:, 2] - z_expect).max() <= cal.distance_resolution_m + 1e-4
    np.testing.assert_array_equal(d.intensity, inten[f, laser])
    # azimuth at the firing instant, within the 0.01° packet quantization (plus interpolation of it)
    true_a = az[f] + omega * cal.firing_offset_ns[laser] - cal.rot_correction_rad[laser]
    err = (d.azimuth - true_a + math.pi) % (2 * math.pi) - math.pi
    assert np.abs(err).max() < math.radians(0.015)
    t_in_packet = (f % (12 * S)) * cal.sequence_period_ns + cal.firing_offset_ns[laser]
    np.testing.assert_array_equal(d.t_ns, t_in_packet)
    pstart = first_t + np.arange(packets) * 12 * S * cal.sequence_period_ns
    np.testing.assert_array_equal(d.stamp_us, (pstart // 1000) % 3_600_000_000)


def test_encoder_counts_nan_and_out_of_range_as_no_return():
    cal = vlp32c()
    ranges = np.full((12, 32), 10.0)
    ranges[0, 0], ranges[1, 1], ranges[2, 2], ranges[3, 3] = np.nan, np.inf, -5.0, 1e6
    stats = DecodeStats()
    pk = encode_packets(np.linspace(0, 0.04, 12), ranges, np.zeros((12, 32), np.uint8), 0, cal, stats=stats)
    assert stats.counts["encode_invalid_range"] == 4
    d = decode_packets(pk, cal)
    assert len(d) == 12 * 32 - 4 and np.isfinite(d.xyz).all()


# ------------------------------------------------------------------ bad packets


@pytest.mark.parametrize(
    "reason, offset, value, message",
    [
        ("bad_length", None, None, "length: expected 1206"),
        ("bad_block_flag", 500, b"\xff\xdd", "byte 500: block 5 flag: expected ff ee"),
        ("wrong_product_id", 1205, b"\x22", "byte 1205: product id: expected 0x28"),
        ("bad_return_mode", 1204, b"\x40", "byte 1204: return mode"),
        ("bad_azimuth", 302, struct.pack("<H", 36500), "byte 302: block 3 azimuth"),
    ],
)
def test_bad_packet_is_skipped_counted_and_strict_raises(reason, offset, value, message):
    good = real_payloads()[10:14]
    bad = (
        good[1][:1000] if offset is None else bytes(good[1][:offset] + value + good[1][offset + len(value) :])
    )
    stats = DecodeStats()
    d = decode_packets([good[0], bad, good[2], good[3]], vlp32c(), stats)
    assert stats.counts == {reason: 1} and stats.packets == 3 and stats.skipped == 1
    ref = decode_packets([good[0], good[2], good[3]], vlp32c())
    np.testing.assert_array_equal(d.xyz, ref.xyz)
    assert d.index.tolist() == [0, 2, 3]  # input positions, to match receive stamps
    with pytest.raises(VelodynePacketError) as e:
        decode_packet_strict(bad, vlp32c(), name="pkt#1")
    assert isinstance(e.value, InputError) and "pkt#1" in str(e.value) and message in str(e.value)


def test_all_garbage_and_empty_input_decode_to_nothing():
    stats = DecodeStats()
    rng = np.random.default_rng(3)
    junk = [rng.bytes(1206) for _ in range(20)] + [b"", b"\x00" * 5000]
    d = decode_packets(junk, vlp32c(), stats)
    assert len(d) == 0 and stats.packets == 0 and stats.skipped == 22
    assert len(decode_packets([], vlp32c())) == 0


def test_packets_with_udp_ip_headers_are_stripped():
    good = real_payloads()[20:22]
    with_headers = [b"\x00" * 42 + p for p in good]
    a, b = decode_packets(good, vlp32c()), decode_packets(with_headers, vlp32c())
    np.testing.assert_array_equal(a.xyz, b.xyz)
    arr = np.frombuffer(b"".join(with_headers), np.uint8).reshape(2, 1248)
    np.testing.assert_array_equal(decode_packets(arr, vlp32c()).xyz, a.xyz)
    np.testing.assert_array_equal(
        decode_packet_strict(with_headers[0], vlp32c()).xyz, decode_packets(good[:1], vlp32c()).xyz
    )


def test_nonfinite_points_are_counted_and_dropped():
    """A calibration whose scale overflows float32 yields inf coordinates: counted, never returned."""
    import dataclasses

    cal = dataclasses.replace(vlp32c(), distance_resolution_m=1e36)
    stats = DecodeStats()
    payloads = real_payloads()[:2]
    n_returns = len(decode_packets(payloads, vlp32c()))
    d = decode_packets(payloads, cal, stats)
    assert stats.counts["nonfinite_point"] > 500
    assert len(d) + stats.counts["nonfinite_point"] == n_returns and np.isfinite(d.xyz).all()


def test_dual_return_pairs_drop_the_repeated_return():
    cal = vlp32c()
    F = 12
    ranges = np.full((F, 32), 5.0)
    pk = bytearray(encode_packets(np.linspace(0, 0.04, F), ranges, np.full((F, 32), 9), 0, cal)[0])
    pk[1204] = 0x39
    # block pairs (0,1), (2,3)...: make block 1 differ from block 0 on channel 0 only
    for b in range(0, 12, 2):  # same azimuth within a pair
        pk[(b + 1) * 100 + 2 : (b + 1) * 100 + 4] = pk[b * 100 + 2 : b * 100 + 4]
    pk[100 + 4 : 100 + 6] = struct.pack("<H", 2000)  # block 1, channel 0: 8 m strongest
    stats = DecodeStats()
    d = decode_packets([bytes(pk)], cal, stats)
    assert len(d) == 6 * 32 + 1  # last returns of 6 firings + the one distinct strongest
    assert stats.counts["duplicate_dual_return"] == 6 * 32 - 1
    ri = d.return_index
    assert np.count_nonzero(ri == 1) == 6 * 32 and np.count_nonzero(ri == 0) == 1
    strongest = d.xyz[ri == 0][0]
    assert np.linalg.norm(strongest) == pytest.approx(8.0, abs=1e-3)
    # firing times: both blocks of a pair share their sequence
    assert set(np.unique(d.t_ns // 55296).tolist()) == set(range(6))
