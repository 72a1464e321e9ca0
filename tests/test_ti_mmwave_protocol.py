"""TI mmWave data-port protocol: decode hand-packed packets, encoder round trips, a resynchronizing
stream decoder that counts (and survives) bad input."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefuse.adapters.ti_mmwave import (
    FrameDecoder,
    TiFrameError,
    decode_frame,
    encode_frame,
    load_cfg,
)
from edgefuse.errors import InputError

DATA = Path(__file__).parent / "data" / "ti_mmwave"
MAGIC = struct.pack("<4H", 0x0102, 0x0304, 0x0506, 0x0708)
V3, V2 = 0x03050004, 0x02010004
CFG_2X = load_cfg(DATA / "xwr16xx_2tx.cfg")
DOPPLER_RES_2X = 3e8 / (2 * 77e9 * 65e-6 * 16 * 2)  # hand formula, see the cfg file


def packet(version=V3, platform=0xA6843, frame=1, cycles=0, n_obj=0, tlvs=(), sub_frame=True,
           total=None, n_tlvs=None):
    """A packet packed field by field (independent of the code under test)."""
    body = b"".join(struct.pack("<II", t, len(v)) + v for t, v in tlvs)
    hlen = 40 if sub_frame else 36
    size = hlen + len(body)
    size += -size % 32
    hdr = MAGIC + struct.pack("<7I", version, size if total is None else total, platform, frame, cycles,
                              n_obj, len(tlvs) if n_tlvs is None else n_tlvs)
    if sub_frame:
        hdr += struct.pack("<I", 3)
    out = hdr + body
    return out + bytes(size - len(out))


def pts3(rows):
    return b"".join(struct.pack("<4f", *r) for r in rows)


# ---------------------------------------------------------------- decode_frame


def test_decode_3x_points_side_info_and_axes():
    rows = [(1.5, 4.0, 0.25, -1.0), (-2.0, 8.5, 0.5, 0.75)]
    side = struct.pack("<4h", 153, 402, -20, 395)
    buf = packet(frame=42, cycles=123456, n_obj=2, tlvs=[(1, pts3(rows)), (7, side), (6, bytes(24))])
    f = decode_frame(buf)
    assert (f.sdk, f.frame_number, f.time_cpu_cycles, f.sub_frame_number) == ("3.x", 42, 123456, 3)
    assert f.platform == 0xA6843 and f.packet_len == len(buf) and len(buf) % 32 == 0
    # TI x right / y forward  ->  ours x forward / y left
    np.testing.assert_array_equal(f.x, [4.0, 8.5])
    np.testing.assert_array_equal(f.y, [-1.5, 2.0])
    np.testing.assert_array_equal(f.z, [0.25, 0.5])
    np.testing.assert_array_equal(f.doppler, [-1.0, 0.75])
    np.testing.assert_allclose(f.snr, [15.3, -2.0], rtol=1e-6)
    np.testing.assert_allclose(f.noise, [40.2, 39.5], rtol=1e-6)
    assert f.skipped_tlvs == (6,)
    scan = f.to_scan()
    assert scan.fields == ("x", "y", "z", "doppler", "snr", "noise") and scan.data.dtype == np.float32
    np.testing.assert_array_equal(scan.xyz, [[4.0, -1.5, 0.25], [8.5, 2.0, 0.5]])


def test_decode_3x_without_side_info_gives_nan_snr():
    f = decode_frame(packet(n_obj=1, tlvs=[(1, pts3([(0, 1, 2, 3)]))]))
    assert np.isnan(f.snr).all() and np.isnan(f.noise).all()
    np.testing.assert_array_equal([f.x[0], f.y[0], f.z[0], f.doppler[0]], [1, 0, 2, 3])


def test_decode_2x_fixed_point_with_and_without_cfg():
    # (rangeIdx, dopplerIdx, peak, x, y, z), x y z in Q9; doppler index 14 of 16 bins is -2
    rows = [(105, 3, 1200, 512, 2432, 64), (60, 14, 800, -768, 1280, -128)]
    descr = struct.pack("<HH", 2, 9) + b"".join(struct.pack("<HhHhhh", *r) for r in rows)
    buf = packet(version=V2, platform=0xA1642, n_obj=2, tlvs=[(1, descr)])
    f = decode_frame(buf, CFG_2X)
    assert f.sdk == "2.x" and f.xyz_q_format == 9
    np.testing.assert_array_equal(f.x, [2432 / 512, 1280 / 512])
    np.testing.assert_array_equal(f.y, [-1.0, 1.5])
    np.testing.assert_array_equal(f.z, [0.125, -0.25])
    np.testing.assert_allclose(f.doppler, [3 * DOPPLER_RES_2X, -2 * DOPPLER_RES_2X], rtol=1e-6)
    np.testing.assert_array_equal(f.range_idx, [105, 60])
    np.testing.assert_array_equal(f.peak, [1200, 800])
    assert np.isnan(f.snr).all()
    assert f.to_scan().fields[-1] == "peak"
    again = decode_frame(encode_frame(f.to_scan(), 0, sdk="2.x", cfg=CFG_2X, xyz_q_format=9), CFG_2X)
    np.testing.assert_array_equal(again.to_scan().data, f.to_scan().data)
    np.testing.assert_array_equal(again.doppler_idx, [3, -2])
    assert np.isnan(decode_frame(buf).doppler).all()  # no cfg: doppler unknown


def test_decode_2x_xwr14xx_has_a_36_byte_header():
    descr = struct.pack("<HH", 1, 10) + struct.pack("<HhHhhh", 40, -1, 500, 1024, 3072, 0)
    buf = packet(version=V2, platform=0xA1443, n_obj=1, tlvs=[(1, descr)], sub_frame=False)
    assert buf[36:40] == struct.pack("<I", 1)  # the TLV type follows numTLVs directly
    f = decode_frame(buf, CFG_2X)
    np.testing.assert_array_equal([f.x[0], f.y[0], f.z[0]], [3.0, -1.0, 0.0])
    np.testing.assert_allclose(f.doppler, [-DOPPLER_RES_2X], rtol=1e-6)
    assert f.sub_frame_number == 0
    # SDK 1.1 on an xWR16xx: no subFrameNumber yet either
    old = packet(version=0x01010000, platform=0xA1642, n_obj=1, tlvs=[(1, descr)], sub_frame=False)
    np.testing.assert_array_equal(decode_frame(old).y, [-1.0])


@pytest.mark.parametrize(
    "buf, reason, field",
    [
        (packet(version=0x07000000), "version", "version"),
        (packet(n_obj=1, tlvs=[(1, pts3([(0, 0, 0, 0)]))], total=2**31), "length", "totalPacketLen"),
        (packet(n_obj=2**31, tlvs=[(1, pts3([(0, 0, 0, 0)]))]), "num_points", "numDetectedObj"),
        (packet(n_tlvs=2**31), "num_tlvs", "numTLVs"),
        (packet(n_obj=2, tlvs=[(1, pts3([(0, 0, 0, 0)])), (6, bytes(32))]), "tlv_points", "length"),
        (packet(n_obj=1, tlvs=[(1, pts3([(0, 0, 0, 0)])), (7, bytes(8))]), "side_info", "side-info"),
        (packet(version=V2, platform=0xA1642, n_obj=1,
                tlvs=[(1, struct.pack("<HH", 1, 16) + bytes(12))]), "q_format", "xyzQFormat"),
    ],
)
def test_decode_frame_rejects_bad_fields_with_a_named_error(buf, reason, field):
    with pytest.raises(TiFrameError) as e:
        decode_frame(buf, source="cap.dat", offset=96)
    assert isinstance(e.value, InputError)
    assert e.value.reason == reason
    assert "cap.dat" in str(e.value) and "byte 96" in str(e.value) and field in str(e.value)


def test_decode_frame_rejects_a_tlv_longer_than_the_packet():
    buf = bytearray(packet(n_obj=1, tlvs=[(1, pts3([(0, 0, 0, 0)]))]))
    struct.pack_into("<I", buf, 44, 2**31)  # the TLV length field
    with pytest.raises(TiFrameError, match="TLV 0 .*length") as e:
        decode_frame(bytes(buf))
    assert e.value.reason == "tlv_length"


# ---------------------------------------------------------------- encoder


finite = st.floats(-200, 200, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    pts=st.lists(st.tuples(finite, finite, finite, st.floats(-60, 60, width=32)), max_size=40),
    tenths=st.lists(st.tuples(st.integers(-3000, 3000), st.integers(-3000, 3000)), min_size=40,
                    max_size=40),
    frame=st.integers(0, 2**32 - 1),
    cycles=st.integers(0, 2**32 - 1),
)
def test_encode_3x_round_trip_is_exact(pts, tenths, frame, cycles):
    a = np.array(pts, dtype=np.float32).reshape(-1, 4)
    snr = np.array([t[0] for t in tenths[: len(a)]]) / 10.0
    noise = np.array([t[1] for t in tenths[: len(a)]]) / 10.0
    buf = encode_frame(a, frame, sdk="3.x", snr_db=snr, noise_db=noise, time_cpu_cycles=cycles)
    assert len(buf) % 32 == 0
    f = decode_frame(buf)
    assert (f.frame_number, f.time_cpu_cycles, len(f)) == (frame, cycles, len(a))
    np.testing.assert_array_equal(np.stack([f.x, f.y, f.z, f.doppler], axis=1), a)
    np.testing.assert_array_equal(f.snr, snr.astype(np.float32))
    np.testing.assert_array_equal(f.noise, noise.astype(np.float32))
    # and the other way: re-encoding the decoded frame gives the same bytes
    again = encode_frame(f.to_scan(), frame, sdk="3.x", time_cpu_cycles=cycles)
    assert again == buf


@settings(max_examples=60, deadline=None)
@given(
    xyz=st.lists(st.tuples(*[st.floats(-60, 60, allow_nan=False)] * 3), max_size=30),
    bins=st.lists(st.integers(-8, 7), min_size=30, max_size=30),
)
def test_encode_2x_round_trip_within_quantization(xyz, bins):
    a = np.array(xyz, dtype=np.float64).reshape(-1, 3)
    dop = np.array(bins[: len(a)]) * DOPPLER_RES_2X
    pts = np.concatenate([a, dop[:, None]], axis=1)
    f = decode_frame(encode_frame(pts, 9, sdk="2.x", cfg=CFG_2X), CFG_2X)
    assert f.sdk == "2.x" and len(f) == len(a)
    if len(a):
        step = 2.0 ** -f.xyz_q_format
        assert step <= 60 / 32767 * 2 + 1e-12  # the finest Q format that fits was chosen
        got = np.stack([f.x, f.y, f.z], axis=1)
        sent = a.astype(np.float32).astype(np.float64)  # the encoder takes float32 input
        assert np.abs(got - sent).max() <= step / 2
        np.testing.assert_allclose(f.doppler, dop, rtol=1e-6, atol=1e-6)
        bins_expected = np.round(np.linalg.norm(sent, axis=1) / CFG_2X.range_bin_m)
        np.testing.assert_array_equal(f.range_idx, bins_expected)


def test_encoder_refuses_what_the_format_cannot_carry():
    with pytest.raises(ValueError, match="both or neither"):
        encode_frame(np.zeros((1, 4)), 0, snr_db=[1.0])
    with pytest.raises(ValueError, match="doppler"):
        encode_frame(np.array([[1, 0, 0, 100.0]]), 0, sdk="2.x", cfg=CFG_2X)
    with pytest.raises(ValueError, match="shape"):
        encode_frame(np.zeros((2, 5)), 0)


# ---------------------------------------------------------------- stream decoder


def _stream(n=6, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 12, n)
    return [encode_frame(rng.uniform(-20, 20, (int(k), 4)), i, time_cpu_cycles=i * 20_000_000)
            for i, k in enumerate(sizes)]


def test_garbage_mid_stream_is_skipped_and_counted():
    frames = _stream()
    rng = np.random.default_rng(1)
    garbage = rng.integers(0, 256, 777, dtype=np.uint8).tobytes()
    assert MAGIC not in garbage
    data = frames[0] + frames[1] + garbage + frames[2] + garbage[:5] + b"".join(frames[3:])
    d = FrameDecoder()
    got = d.feed(data)
    assert [f.frame_number for f in got] == list(range(6))
    assert d.stats["garbage_bytes"] == 777 + 5 and d.stats["frames"] == 6 and d.buffered == 0


def test_truncated_frame_is_counted_and_the_next_one_decoded():
    frames = _stream()
    data = frames[0] + frames[1][:50] + frames[2] + frames[3][:-7]
    d = FrameDecoder()
    assert [f.frame_number for f in d.feed(data)] == [0, 2]
    assert d.stats["skip_truncated"] == 1 and d.stats["skipped_bytes"] == 50
    assert d.flush() == len(frames[3]) - 7  # a packet cut short by the end of the stream
    assert d.stats["skip_truncated"] == 2 and "stream ended" in d.last_error


def test_random_bytes_never_crash_and_stay_bounded():
    rng = np.random.default_rng(2)
    d = FrameDecoder(max_packet_len=4096)
    frames = []
    for _ in range(64):
        chunk = rng.integers(0, 256, int(rng.integers(1, 20000)), dtype=np.uint8).tobytes()
        frames += d.feed(chunk)
        assert d.buffered <= 4096 + FrameDecoder.FEED_SLICE
    # random bytes plus magic words followed by random headers
    for _ in range(300):
        frames += d.feed(MAGIC + rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes())
    d.flush()
    s = d.stats
    assert s["garbage_bytes"] + s["skipped_bytes"] == s["bytes_in"] - sum(f.packet_len for f in frames)
    assert sum(v for k, v in s.items() if k.startswith("skip_")) >= 250
    good = encode_frame(np.ones((3, 4)), 77)
    assert [f.frame_number for f in d.feed(good)] == [77]  # still in sync afterwards


@pytest.mark.parametrize("field_offset, value, reason", [
    (12, 2**31, "length"),            # totalPacketLen
    (12, 0xFFFFFFFF, "length"),
    (28, 2**31, "num_points"),        # numDetectedObj
    (32, 2**31, "num_tlvs"),          # numTLVs
])
def test_huge_header_counts_allocate_nothing(field_offset, value, reason):
    bad = bytearray(encode_frame(np.ones((2, 4)), 1))
    struct.pack_into("<I", bad, field_offset, value)
    good = encode_frame(np.ones((2, 4)), 2)
    d = FrameDecoder()
    tracemalloc.start()
    got = d.feed(bytes(bad) + good)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [f.frame_number for f in got] == [2]
    assert d.stats[f"skip_{reason}"] == 1
    assert peak < 1 << 20
    assert d.buffered == 0


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_any_split_of_the_stream_gives_the_same_frames(cuts):
    frames = _stream(5, seed=3)
    data = frames[0] + b"\x02\x01\x04junk" + frames[1] + frames[2][:33] + b"".join(frames[3:])
    whole = FrameDecoder()
    ref = whole.feed(data)
    d = FrameDecoder()
    got = []
    prev = 0
    for c in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        got += d.feed(data[prev:c])
        prev = c
    assert [f.frame_number for f in got] == [f.frame_number for f in ref] == [0, 1, 3, 4]
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a.to_scan().data, b.to_scan().data)
    assert d.stats == whole.stats


def test_2x_without_cfg_warns_once_and_counts():
    frames = [encode_frame(np.ones((2, 4)), i, sdk="2.x") for i in range(3)]
    d = FrameDecoder(source="capture.dat")
    with pytest.warns(UserWarning, match="capture.dat.*without a chirp configuration.*NaN"):
        got = d.feed(b"".join(frames))
    assert all(np.isnan(f.doppler).all() for f in got)
    assert d.stats["doppler_nan_no_cfg"] == 3


@settings(max_examples=150, deadline=None)
@given(sdk=st.sampled_from(["3.x", "2.x"]), edits=st.lists(
    st.tuples(st.integers(8, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_packets_never_escape_the_decoder(sdk, edits):
    rng = np.random.default_rng(4)
    pts = np.concatenate([rng.uniform(-10, 10, (6, 3)), np.zeros((6, 1))], axis=1)
    kw = dict(snr_db=np.ones(6), noise_db=np.ones(6)) if sdk == "3.x" else dict(cfg=CFG_2X)
    bad = bytearray(encode_frame(pts, 1, sdk=sdk, **kw))
    for pos, value in edits:
        bad[pos % len(bad)] = value
    good = encode_frame(pts, 2, sdk=sdk, **kw)
    d = FrameDecoder(cfg=CFG_2X)
    frames = d.feed(bytes(bad) + good)
    d.flush()
    assert frames and frames[-1].frame_number == 2  # the next good packet always survives
    for f in frames:
        f.to_scan()
