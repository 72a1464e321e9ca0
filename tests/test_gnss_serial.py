"""The NMEA source over a real serial port: a pty pair, pyserial opens the slave, a fake receiver writes
to the master. Expected positions and velocities are worked out by hand from the WGS84 radii."""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from functools import reduce

import numpy as np
import pytest

from edgefuse.adapters.camera import Backoff
from edgefuse.adapters.gnss import NmeaUriError, open_nmea, parse_nmea_uri
from edgefuse.errors import InputError
from edgefuse.types import Odometry

KN = 1852.0 / 3600.0
A, E2 = 6378137.0, 0.00669437999014  # WGS84 semi-major axis, first eccentricity squared


def nmea(body: str) -> bytes:
    cs = reduce(lambda a, b: a ^ b, body.encode(), 0)
    return f"${body}*{cs:02X}\r\n".encode()


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def read_n(src, n: int, timeout_s: float = 5.0) -> list:
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        m = src.read(0.1)
        if m is not None:
            out.append(m)
    return out


def test_fixes_over_a_pty_with_bad_lines_between(pty_pair):
    master, path = pty_pair
    ticks = iter(range(1_000_000, 10**12, 1000))
    src = open_nmea(f"nmea://{path}?baud=115200&timeout=0.05", sensor_id="gnss0", clock=lambda: next(ticks))
    try:
        # origin 45°N 7°E, h = 100 + 50 m; then 0.06' north (= 0.001°), then 0.06' east
        lines = [
            nmea("GNRMC,080000.00,A,4500.000000,N,00700.000000,E,0.000,0.00,150624,,,A"),
            nmea("GNGGA,080000.00,4500.000000,N,00700.000000,E,1,14,0.7,100.0,M,50.0,M,,"),
            b"\xff\xfe\x00 line noise\r\n",
            b"$GNGGA,080001.00,4500.000000,N,00700.000000,E,1,14,0.7,100.0,M,50.0,M,,*00\r\n",
            nmea("GNRMC,080001.00,A,4500.060000,N,00700.000000,E,19.438,0.00,150624,,,A"),
            b"#$%&'garbage",
            nmea("GNVTG,0.00,T,,M,19.438,N,36.0,K,A"),
            nmea("GNGGA,080001.00,4500.060000,N,00700.000000,E,1,14,0.7,100.0,M,50.0,M,,"),
            nmea("GNRMC,080002.00,A,4500.060000,N,00700.060000,E,10.000,90.00,150624,,,A"),
            nmea("GNGGA,080002.00,4500.060000,N,00700.060000,E,1,14,0.7,100.0,M,50.0,M,,"),
        ]
        data = b"".join(lines)
        for i in range(0, len(data), 37):  # arbitrary chunks, as a UART delivers them
            os.write(master, data[i : i + 37])
            time.sleep(0.002)
        msgs = read_n(src, 3)
        counts = src.counts()
    finally:
        src.close()
    assert len(msgs) == 3
    h = 150.0
    phi = math.radians(45.0)
    s2 = math.sin(phi) ** 2
    m_radius = A * (1 - E2) / (1 - E2 * s2) ** 1.5  # meridian
    n_radius = A / math.sqrt(1 - E2 * s2)  # prime vertical
    d = math.radians(0.001)
    north = (m_radius + h) * d
    east = (n_radius + h) * math.cos(phi) * d
    expected = [[0, 0, 0], [0, north, 0], [east, north, 0]]
    for msg, pos in zip(msgs, expected, strict=True):
        assert isinstance(msg.payload, Odometry)
        assert msg.sensor_id == "gnss0"
        np.testing.assert_allclose(msg.payload.position[:2], pos[:2], atol=2e-3)
        assert abs(msg.payload.position[2]) < 0.01  # curvature drop over ~100 m: d²/2R < 1 mm
    # velocities: 19.438 kn north = 10.0 m/s; 10 kn east, as (speed, 0, 0) along the heading
    np.testing.assert_allclose(msgs[1].payload.linear_velocity, [19.438 * KN, 0, 0], atol=1e-9)
    np.testing.assert_allclose(
        msgs[1].payload.orientation, [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)]
    )
    np.testing.assert_allclose(msgs[2].payload.linear_velocity, [10.0 * KN, 0, 0], atol=1e-9)
    np.testing.assert_allclose(msgs[2].payload.orientation, [0, 0, 0, 1], atol=1e-12)
    # stamps: UTC from the sentences, receive stamps from the injected clock
    t0 = int(dt.datetime(2024, 6, 15, 8, 0, 0, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    assert [m.raw_stamp_ns for m in msgs] == [t0, t0 + 10**9, t0 + 2 * 10**9]
    assert all(m.recv_ns >= 1_000_000 and m.stamp_ns == m.recv_ns for m in msgs)
    assert [m.seq for m in msgs] == [0, 1, 2]
    dec = counts["decoder"]
    assert dec["checksum"] == 1 and dec["garbage"] == 2
    assert dec["GGA"] == 3 and dec["RMC"] == 3 and dec["VTG"] == 1


def test_queue_drops_oldest_and_counts(pty_pair):
    master, path = pty_pair
    src = open_nmea(f"nmea://{path}?queue=2&timeout=0.05")
    try:
        data = b"".join(
            nmea(f"GPRMC,0900{k:02d}.00,A,4500.000000,N,00700.000000,E,0.0,0.0,150624,,,A")
            + nmea(f"GPGGA,0900{k:02d}.00,4500.000000,N,00700.000000,E,1,10,0.9,10.0,M,0.0,M,,")
            for k in range(5)
        )
        os.write(master, data)
        deadline = time.monotonic() + 5
        while src.stats.messages < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        kept = [src.read(0.5), src.read(0.5)]
        assert src.read(0.05) is None  # nothing more, and the call returned
    finally:
        src.close()
    assert src.stats.messages == 5 and src.stats.dropped == 3
    t0 = int(dt.datetime(2024, 6, 15, 9, 0, 0, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    assert [m.raw_stamp_ns for m in kept] == [t0 + 3 * 10**9, t0 + 4 * 10**9]  # the newest two


def test_port_vanishing_is_counted_not_a_crash(pty_pair):
    master, path = pty_pair
    src = open_nmea(f"nmea://{path}?timeout=0.05", backoff=Backoff(0.01, 2.0, 0.05))
    try:
        os.close(master)  # the receiver is unplugged: reads on the slave fail
        deadline = time.monotonic() + 5
        while src.stats.outages == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert src.stats.outages == 1
        assert src.stats.last_error
        assert src.read(0.05) is None
    finally:
        src.close()


def test_bad_uris():
    assert parse_nmea_uri("nmea:///dev/ttyUSB2?baud=115200").baud == 115200
    assert parse_nmea_uri("nmea:///dev/ttyUSB2").port == "/dev/ttyUSB2"
    for uri, part in [
        ("serial:///dev/ttyUSB0", "scheme"),
        ("nmea://", "serial port"),
        ("nmea:///dev/ttyUSB0?baud=fast", "baud"),
        ("nmea:///dev/ttyUSB0?speed=9600", "speed"),
    ]:
        with pytest.raises(NmeaUriError, match=part):
            parse_nmea_uri(uri)
    with pytest.raises(InputError, match="/dev/does-not-exist"):
        open_nmea("nmea:///dev/does-not-exist?baud=9600")
