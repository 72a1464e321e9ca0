"""Hour mapping of the µs-past-the-hour stamp and sweep assembly (pure), on hand-made cases and on
packets from the encoder with a known rotation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefuse.adapters.velodyne import SweepAssembler, decode_packets, encode_packets, map_hour_stamps, vlp32c
from edgefuse.types import POINT_TIME_FIELD

H = 3_600_000_000_000
T0 = 1_700_000_000 * 10**9 - (1_700_000_000 * 10**9) % H  # an hour boundary (ns since epoch)


@pytest.mark.parametrize(
    "stamp_us, recv_ns, expect_ns",
    [
        (1_000_000, T0 + 1_000_500_000, T0 + 1_000_000_000),  # plain: same hour, 0.5 ms transport
        (3_599_999_900, T0 + H + 100_000_000, T0 + 3_599_999_900_000),  # stamped 59:59.9, received 00:00.1
        (100_000, T0 + H - 200_000_000, T0 + H + 100_000_000),  # sensor ahead: 00:00.1 while host 59:59.8
        (0, T0, T0),
        (1_800_000_000, T0 + 1_799_000_000_000, T0 + 1_800_000_000_000),  # 1 s apart mid-hour
    ],
)
def test_hour_mapping(stamp_us, recv_ns, expect_ns):
    got = map_hour_stamps(np.array([stamp_us], np.uint32), np.array([recv_ns]))
    assert got.tolist() == [expect_ns]


def rotation(revs: float, az0_deg: float = 10.0, rpm: float = 600.0):
    """A firing grid turning clockwise at ``rpm`` from ``az0_deg`` over ``revs`` revolutions."""
    cal = vlp32c()
    F = int(revs * 60 / rpm * 1e9 / cal.sequence_period_ns) // 12 * 12
    t = np.arange(F) * cal.sequence_period_ns
    az = np.radians(az0_deg) + rpm / 60 * 2 * math.pi * t * 1e-9
    ranges = np.full((F, 32), 12.0)
    return cal, az, ranges, np.full((F, 32), 50, np.uint8)


def test_sweeps_cut_at_the_cut_angle_and_are_stamped_at_their_last_firing():
    cal, az, ranges, inten = rotation(2.4)
    first_t = T0 + 5 * 10**9  # sensor clock = host clock here
    packets = encode_packets(az, ranges, inten, first_t, cal)
    d = decode_packets(packets, cal)
    recv = first_t + np.arange(len(packets)) * 12 * cal.sequence_period_ns + 700_000  # 0.7 ms later
    asm = SweepAssembler("lidar_top", cut_angle_rad=math.radians(180))
    out = asm.update(d, recv)
    tail = asm.flush()
    assert len(out) == 2 and tail is not None  # 10° → 874°: passes 180° at 180° and 540°
    full_ns = first_t + np.arange(len(az)) * cal.sequence_period_ns
    for k, m in enumerate([*out, tail]):
        pc = m.payload
        assert pc.fields == ("x", "y", "z", "intensity", POINT_TIME_FIELD, "ring") and m.seq == k
        t = pc.column(POINT_TIME_FIELD)
        assert t.max() == 0.0 and t.min() < 0
        # the stamp is a real firing instant of the grid (sequence start + a laser offset), to the
        # packet stamp's 1 µs resolution
        offs = (m.stamp_ns - full_ns[:, None]) - cal.firing_offset_ns[None, :]
        assert np.abs(offs).min() < 1000
        assert m.raw_stamp_ns == m.stamp_ns - T0 and m.recv_ns <= m.stamp_ns + 2_000_000
    assert len(out[1].payload) == pytest.approx(1808 * 32, abs=12 * 32)  # one revolution: 100 ms / 55.296 µs
    # sweep 1 is a full revolution from ~180° round to ~180°: every 10° sector has points
    a1 = np.degrees(np.arctan2(-out[1].payload.column("y"), out[1].payload.column("x"))) % 360
    assert np.histogram(a1, bins=36, range=(0, 360))[0].min() > 0
    # consecutive sweeps are one revolution apart
    assert (out[1].stamp_ns - out[0].stamp_ns) == pytest.approx(100e6, abs=0.7e6)
    assert sum(len(m.payload) for m in [*out, tail]) == len(d)


def test_sweep_cut_between_packets_and_a_bounded_sweep():
    """A sensor with a restricted field of view (gap past the cut between packets) and a stalled rotor
    (no cut at all: forced cut at max_packets, counted)."""
    cal = vlp32c()
    F = 12 * 10
    az = np.where(
        np.arange(F) < 60, np.radians(300) + np.arange(F) * 1e-3, np.radians(20) + np.arange(F) * 1e-3
    )
    packets = encode_packets(az, np.full((F, 32), 5.0), np.zeros((F, 32), np.uint8), T0, cal)
    d = decode_packets(packets, cal)
    asm = SweepAssembler("l", cut_angle_rad=0.0)
    out = asm.update(d, T0 + np.arange(10) * 700_000)
    assert len(out) == 1 and len(out[0].payload) == 5 * 12 * 32  # the first five packets
    stalled = encode_packets(np.full(F, 1.0), np.full((F, 32), 5.0), np.zeros((F, 32), np.uint8), T0, cal)
    asm = SweepAssembler("l", max_packets=4)
    out = asm.update(decode_packets(stalled, cal), T0 + np.arange(10) * 700_000)
    assert [len(m.payload) for m in out] == [4 * 384, 4 * 384] and asm.forced_cuts == 2
    with pytest.raises(ValueError, match="recv_ns"):
        asm.update(decode_packets(stalled, cal), np.zeros(3, np.int64))
