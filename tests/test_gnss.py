"""NMEA parsing and the GNSS decoder (pure parts). Expected values come from the NMEA definitions worked
by hand (ddmm.mmmm → degrees, knots → m/s, XOR checksums), from pynmea2 and from pymap3d."""

from __future__ import annotations

import datetime as dt
import math
from functools import reduce

import numpy as np
import pymap3d
import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefuse.adapters.gnss import (
    GGA,
    RMC,
    VTG,
    LocalTangentPlane,
    NmeaDecoder,
    NmeaError,
    fix_to_message,
    parse_nmea_sentence,
)
from edgefuse.errors import InputError
from edgefuse.types import Odometry

KN = 1852.0 / 3600.0  # m/s per knot, by definition of the knot


def nmea(body: str) -> bytes:
    """A sentence with its checksum (XOR of the body bytes) and CR LF."""
    cs = reduce(lambda a, b: a ^ b, body.encode(), 0)
    return f"${body}*{cs:02X}\r\n".encode()


def utc_ns(y, mo, d, h, mi, s, frac_ns=0) -> int:
    t = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + frac_ns


# ---------------------------------------------------------------- sentences


def test_published_examples_parse_to_hand_values():
    # the classic examples with their published checksums
    gga = parse_nmea_sentence(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n")
    assert isinstance(gga, GGA)
    assert gga.talker == "GP"
    assert gga.time_of_day_ns == ((12 * 60 + 35) * 60 + 19) * 10**9
    assert gga.lat_deg == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert gga.lon_deg == pytest.approx(11 + 31.0 / 60, abs=1e-12)
    assert (gga.quality, gga.num_sats, gga.hdop) == (1, 8, 0.9)
    assert (gga.alt_msl_m, gga.geoid_sep_m) == (545.4, 46.9)

    rmc = parse_nmea_sentence(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A")
    assert isinstance(rmc, RMC)
    assert rmc.valid and rmc.date == dt.date(1994, 3, 23)
    assert rmc.speed_mps == pytest.approx(22.4 * KN)
    assert rmc.course_deg == 84.4

    vtg = parse_nmea_sentence(b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48")
    assert isinstance(vtg, VTG)
    assert vtg.course_deg == 54.7
    assert vtg.speed_mps == pytest.approx(5.5 * KN)


SENTENCES = [
    "GNGGA,235959.25,3352.1234,S,15112.5678,E,4,21,0.6,12.3,M,22.1,M,1.0,0000",
    "GLGGA,000001.5,0000.0000,N,00000.0000,W,2,05,1.7,-3.5,M,-20.0,M,,",
    "GAGGA,101010.125,8959.9999,N,17959.9999,W,5,12,0.8,100.0,M,0.0,M,,",
    "GNRMC,235959.25,A,3352.1234,S,15112.5678,E,0.53,271.3,311299,,,D",
    "GPRMC,081836.75,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*",  # mode-less, '*' stripped below
    "GNRMC,120000.00,A,5130.0000,N,00007.5000,W,12.75,45.0,010124,,,A,V",
    "GNVTG,271.3,T,,M,0.53,N,0.98,K,D",
    "GPVTG,,T,,M,,N,36.0,K,A",
]


@pytest.mark.parametrize("body", [s.rstrip("*") for s in SENTENCES])
def test_agrees_with_pynmea2(body):
    line = nmea(body)
    ours = parse_nmea_sentence(line)
    ref = pynmea2.parse(line.decode().strip(), check=True)
    if isinstance(ours, (GGA, RMC)):
        assert ours.lat_deg == pytest.approx(ref.latitude, abs=1e-12)
        assert ours.lon_deg == pytest.approx(ref.longitude, abs=1e-12)
        t = ref.timestamp
        tod = ((t.hour * 60 + t.minute) * 60 + t.second) * 10**9 + t.microsecond * 1000
        assert ours.time_of_day_ns == tod
    if isinstance(ours, GGA):
        assert ours.alt_msl_m == pytest.approx(float(ref.altitude))
        assert ours.geoid_sep_m == pytest.approx(float(ref.geo_sep))
        assert ours.quality == int(ref.gps_qual)
        assert ours.num_sats == int(ref.num_sats)
    if isinstance(ours, RMC):
        assert ours.date == ref.datestamp
        assert ours.speed_mps == pytest.approx(float(ref.spd_over_grnd) * KN)
        assert ours.course_deg == pytest.approx(float(ref.true_course))
    if isinstance(ours, VTG):
        if ref.spd_over_grnd_kts is not None:
            assert ours.speed_mps == pytest.approx(float(ref.spd_over_grnd_kts) * KN)
        else:
            assert ours.speed_mps == pytest.approx(float(ref.spd_over_grnd_kmph) / 3.6)


def test_empty_fields_are_none():
    gga = parse_nmea_sentence(nmea("GPGGA,120000.00,,,,,0,00,99.99,,,,,,"))
    assert isinstance(gga, GGA)
    assert gga.lat_deg is None and gga.lon_deg is None and gga.quality == 0 and gga.alt_msl_m is None
    rmc = parse_nmea_sentence(nmea("GPRMC,120000.00,V,,,,,,,010124,,,N"))
    assert isinstance(rmc, RMC) and not rmc.valid and rmc.lat_deg is None and rmc.speed_mps is None


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48", "checksum"),
        (b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*4", "checksum"),
        (b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "no_checksum"),
        (b"\x00\xff\x13garbage", "garbage"),
        (nmea("GPGGA,123519,4861.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "malformed"),  # 61'
        (nmea("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "malformed"),  # hemisphere
        (nmea("GPGGA,256001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "malformed"),  # 25 h
        (nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W"), "malformed"),  # 32nd
        (nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,abc,M,46.9,M,,"), "malformed"),
        (nmea("GPGGA,123519,9100.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), "malformed"),  # 91°
    ],
)
def test_bad_sentences_raise_with_reason(line, reason):
    with pytest.raises(NmeaError) as e:
        parse_nmea_sentence(line)
    assert e.value.reason == reason
    assert isinstance(e.value, InputError)
    assert "NMEA" in str(e.value)


def test_other_types_and_talkers_are_none():
    assert (
        parse_nmea_sentence(nmea("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")) is None
    )
    assert parse_nmea_sentence(nmea("BDGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")) is None
    assert parse_nmea_sentence(nmea("PUBX,00,123519")) is None


# ---------------------------------------------------------------- decoder


LAT0, LON0, ALT0, SEP0 = 48 + 7.038 / 60, 11 + 31 / 60, 545.4, 46.9  # exact in ddmm.mmmmmm


def ddmm(deg: float, pos: str, neg: str, width: int) -> tuple[str, str]:
    a = abs(deg)
    d = int(a)
    return f"{d:0{width}d}{(a - d) * 60:09.6f}", pos if deg >= 0 else neg


def epoch(tod: str, date: str | None, lat: float, lon: float, alt: float, kn: float, course: float) -> bytes:
    la, ns = ddmm(lat, "N", "S", 2)
    lo, ew = ddmm(lon, "E", "W", 3)
    out = b""
    if date is not None:
        out += nmea(f"GNRMC,{tod},A,{la},{ns},{lo},{ew},{kn:.3f},{course:.2f},{date},,,A")
    out += nmea(f"GNVTG,{course:.2f},T,,M,{kn:.3f},N,{kn * 1.852:.3f},K,A")
    out += nmea(f"GNGGA,{tod},{la},{ns},{lo},{ew},1,12,0.8,{alt:.3f},M,{SEP0},M,,")
    return out


def test_decoder_epochs_positions_velocities_and_stamps():
    # origin, then 30 m-ish north-east moves; positions checked against pymap3d's geodetic2enu
    pts = [(LAT0, LON0, ALT0), (LAT0 + 2e-4, LON0, ALT0 + 1.0), (LAT0 + 2e-4, LON0 + 3e-4, ALT0 - 2.0)]
    stream = b"".join(
        epoch(f"1235{19 + k:02d}.50", "230394", lat, lon, alt, 10.0, 30.0 + 60 * k)
        for k, (lat, lon, alt) in enumerate(pts)
    )
    dec = NmeaDecoder()
    fixes = dec.feed(stream, recv_ns=777)
    assert len(fixes) == 3
    for k, (fix, (lat, lon, alt)) in enumerate(zip(fixes, pts, strict=True)):
        e, n, u = pymap3d.geodetic2enu(lat, lon, alt + SEP0, LAT0, LON0, ALT0 + SEP0)
        np.testing.assert_allclose(fix.enu, [e, n, u], atol=1e-6)
        assert fix.utc_ns == utc_ns(1994, 3, 23, 12, 35, 19 + k, 500_000_000)
        assert fix.recv_ns == 777
        c = math.radians(30.0 + 60 * k)
        np.testing.assert_allclose(
            fix.velocity_enu, [10 * KN * math.sin(c), 10 * KN * math.cos(c), 0], atol=1e-3
        )
        assert fix.height_m == pytest.approx(alt + SEP0, abs=1e-3)
    assert dec.counts["RMC"] == 3 and dec.counts["GGA"] == 3 and dec.counts["VTG"] == 3


def test_decoder_is_independent_of_chunking_and_counts_bad_lines():
    good = epoch("010203.00", "010124", LAT0, LON0, ALT0, 5.0, 90.0) + epoch(
        "010204.00", "010124", LAT0 + 1e-4, LON0, ALT0, 5.0, 90.0
    )
    bad = (
        b"\x00\x01noise without a dollar\r\n"
        + b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*00\r\n"  # checksum
        + b"xx$GPGGA,junk"  # garbage before '$', then a line with no checksum
        + b"\r\n"
        + nmea("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")  # valid, not used
    )
    cut = good.index(b"\n", 150) + 1  # between two sentences of the first epoch
    stream = good[:cut] + bad + good[cut:]
    whole = NmeaDecoder().feed(stream, 1)
    dec = NmeaDecoder()
    bytewise = [f for i in range(len(stream)) for f in dec.feed(stream[i : i + 1], 1)]
    assert len(whole) == len(bytewise) == 2
    for a, b in zip(whole, bytewise, strict=True):
        np.testing.assert_array_equal(a.enu, b.enu)
        assert a.utc_ns == b.utc_ns
    assert dec.counts["checksum"] == 1
    assert dec.counts["garbage"] == 2
    assert dec.counts["no_checksum"] == 1
    assert dec.counts["unknown"] == 1
    # the second fix is 1e-4 deg north at the same height h: (M + h)·Δφ, M the meridian radius of curvature
    a, e2 = 6378137.0, 0.00669437999014
    s = math.sin(math.radians(LAT0 + 0.5e-4))
    m = a * (1 - e2) / (1 - e2 * s * s) ** 1.5
    assert whole[1].enu[1] == pytest.approx((m + ALT0 + SEP0) * math.radians(1e-4), abs=1e-4)
    assert abs(whole[1].enu[0]) < 1e-6


def test_decoder_dates_no_fix_and_midnight():
    dec = NmeaDecoder()
    la, ns = ddmm(LAT0, "N", "S", 2)
    lo, ew = ddmm(LON0, "E", "W", 3)
    gga = lambda tod: nmea(f"GPGGA,{tod},{la},{ns},{lo},{ew},1,08,0.9,{ALT0},M,{SEP0},M,,")  # noqa: E731
    # GGA before any RMC: no date yet → dropped and counted
    assert dec.feed(gga("235958.00"), 1) == []
    # next epoch (RMC-only, dated) closes the GGA epoch above
    fixes = dec.feed(nmea(f"GPRMC,235959.00,A,{la},{ns},{lo},{ew},0.0,0.0,311224,,,A"), 2)
    assert fixes == [] and dec.counts["no_date"] == 1
    # GGA after midnight, no RMC: closes the RMC epoch, then is dated 2025-01-01 when the next one starts
    fixes = dec.feed(gga("000000.00") + gga("000001.00"), 3)
    assert [f.utc_ns for f in fixes] == [utc_ns(2024, 12, 31, 23, 59, 59), utc_ns(2025, 1, 1, 0, 0, 0)]
    assert fixes[0].speed_mps == 0.0 and np.all(fixes[0].velocity_enu == 0)
    assert fixes[1].speed_mps is None and np.all(np.isnan(fixes[1].velocity_enu))
    assert [f.utc_ns for f in dec.flush()] == [utc_ns(2025, 1, 1, 0, 0, 1)]
    # no fix (quality 0, empty position) → counted, nothing emitted
    assert dec.feed(nmea("GPGGA,000002.00,,,,,0,00,99.9,,,,,,") + gga("000003.00"), 4) == []
    assert dec.counts["no_fix"] == 1


def test_fix_to_message_heading_and_held_course():
    dec = NmeaDecoder(min_course_speed_mps=0.5)
    east = dec.feed(epoch("100000.00", "010124", LAT0, LON0, ALT0, 4.0, 90.0), 10)[0]
    msg = fix_to_message(east, "gnss", 0, dec.yaw_rad)
    odo = msg.payload
    assert isinstance(odo, Odometry)
    np.testing.assert_allclose(odo.orientation, [0, 0, 0, 1], atol=1e-12)  # course east = yaw 0
    np.testing.assert_allclose(odo.linear_velocity, [4.0 * KN, 0, 0])
    assert msg.raw_stamp_ns == utc_ns(2024, 1, 1, 10, 0, 0) and msg.recv_ns == 10 and msg.stamp_ns == 10
    north = dec.feed(epoch("100001.00", "010124", LAT0, LON0, ALT0, 4.0, 0.0), 11)[0]
    q = fix_to_message(north, "gnss", 1, dec.yaw_rad).payload.orientation
    np.testing.assert_allclose(q, [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], atol=1e-12)
    # crawling at 0.2 m/s with a noisy course: the heading stays north
    slow = dec.feed(epoch("100002.00", "010124", LAT0, LON0, ALT0, 0.2 / KN, 200.0), 12)[0]
    q2 = fix_to_message(slow, "gnss", 2, dec.yaw_rad).payload.orientation
    np.testing.assert_allclose(q2, q, atol=1e-12)
    assert np.all(np.isnan(fix_to_message(slow, "gnss", 3, None).payload.orientation))


def test_local_tangent_plane_matches_pymap3d_far_away():
    ltp = LocalTangentPlane(-33.87, 151.21, 40.0)
    for lat, lon, h in [(-33.5, 151.9, 10.0), (-34.9, 150.0, 1200.0), (-33.87, 151.21, 40.0)]:
        np.testing.assert_allclose(
            ltp.enu(lat, lon, h), pymap3d.geodetic2enu(lat, lon, h, -33.87, 151.21, 40.0), atol=1e-6
        )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=90), max_size=20))
def test_decoder_never_raises_on_arbitrary_bytes(chunks):
    dec = NmeaDecoder()
    good = epoch("120000.00", "010124", LAT0, LON0, ALT0, 1.0, 10.0)
    for c in chunks:
        dec.feed(c, 0)
    # after any garbage, a line end resynchronizes: the next good epochs still decode
    fixes = dec.feed(b"\r\n" + good + epoch("120001.00", "010124", LAT0, LON0, ALT0, 1.0, 10.0), 0)
    assert len(fixes) >= 1
