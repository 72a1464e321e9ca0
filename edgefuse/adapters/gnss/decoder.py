"""From an NMEA byte stream to ego position and velocity. Pure: bytes and receive stamps in, fixes out.

**Epochs.** A receiver sends, once per fix epoch, several sentences that share one UTC time of day (GGA,
RMC) plus VTG, which carries no time. :class:`NmeaDecoder` groups them: an epoch is emitted as soon as it
has both its GGA and its RMC, or when a GGA/RMC with another time of day starts the next epoch (a receiver
that sends only GGA + VTG therefore costs one epoch of latency; :meth:`NmeaDecoder.flush` ends the last).
A VTG goes to the open epoch, or to the next one when none is open. GGA gives the position and height,
RMC the date and (with VTG as fallback) speed and course over ground.

**Time.** ``utc_ns`` = RMC date + time of day, as POSIX nanoseconds (leap seconds not counted, as in UNIX
time). Epochs without an RMC use the last RMC date, rolled over at midnight; before any RMC date is
seen an epoch cannot be stamped and is dropped (counted as ``no_date``). ``recv_ns`` is the host receive
stamp of the bytes that completed the epoch.

**Position.** Latitude/longitude on WGS84 and the ellipsoidal height (GGA altitude above MSL + geoid
separation) are converted to a local East-North-Up tangent plane whose origin is the first fix
(:class:`LocalTangentPlane`: geodetic → ECEF → rotate into ENU at the origin; exact, no flat-earth
approximation). An epoch without a position (no fix, RMC status ``V``, GGA quality 0) is dropped and
counted (``no_fix``). An RMC-only epoch keeps the last known height.

**Velocity.** Speed over ground ``v`` and course ``c`` (degrees clockwise from true north) give
``ve = v·sin c``, ``vn = v·cos c``, ``vu = 0`` (NMEA has no vertical speed). Unknown speed → NaN.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgefuse.adapters.gnss.nmea import (
    GGA,
    MAX_SENTENCE_BYTES,
    RMC,
    VTG,
    NmeaError,
    parse_nmea_sentence,
)
from edgefuse.types import Message, Odometry

# WGS84
WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

_NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = _dt.date(1970, 1, 1)


def geodetic_to_ecef(lat_deg: float, lon_deg: float, h_m: float) -> np.ndarray:
    """WGS84 latitude/longitude (degrees) and ellipsoidal height (m) → ECEF (3,) metres."""
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    s, c = math.sin(lat), math.cos(lat)
    n = WGS84_A / math.sqrt(1.0 - WGS84_E2 * s * s)
    return np.array(
        [(n + h_m) * c * math.cos(lon), (n + h_m) * c * math.sin(lon), (n * (1.0 - WGS84_E2) + h_m) * s]
    )


@dataclass(frozen=True)
class LocalTangentPlane:
    """East-North-Up coordinates around an origin (WGS84 degrees, ellipsoidal height in m)."""

    lat0_deg: float
    lon0_deg: float
    h0_m: float

    def __post_init__(self) -> None:
        lat, lon = math.radians(self.lat0_deg), math.radians(self.lon0_deg)
        sl, cl, so, co = math.sin(lat), math.cos(lat), math.sin(lon), math.cos(lon)
        # rows: east, north, up unit vectors expressed in ECEF
        rot = np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])
        object.__setattr__(self, "_rot", rot)
        object.__setattr__(self, "_origin", geodetic_to_ecef(self.lat0_deg, self.lon0_deg, self.h0_m))

    def enu(self, lat_deg: float, lon_deg: float, h_m: float) -> np.ndarray:
        """(3,) east, north, up in metres of a WGS84 point relative to the origin."""
        return self._rot @ (geodetic_to_ecef(lat_deg, lon_deg, h_m) - self._origin)


@dataclass(frozen=True)
class GnssFix:
    """One fix epoch. ``enu`` (3,) m from the decoder's origin (the first fix); ``velocity_enu`` (3,) m/s
    (ve, vn, 0; NaN when the epoch has no speed); ``course_deg`` clockwise from north or None;
    ``height_m`` ellipsoidal (None before any GGA altitude)."""

    utc_ns: int
    recv_ns: int
    lat_deg: float
    lon_deg: float
    height_m: float | None
    enu: np.ndarray
    velocity_enu: np.ndarray
    speed_mps: float | None
    course_deg: float | None
    quality: int
    num_sats: int | None
    hdop: float | None
    talker: str


def course_to_yaw(course_deg: float) -> float:
    """Course over ground (degrees clockwise from north) → ENU yaw (radians counter-clockwise from east)."""
    return math.atan2(math.cos(math.radians(course_deg)), math.sin(math.radians(course_deg)))


def fix_to_message(
    fix: GnssFix, sensor_id: str, seq: int = 0, yaw_rad: float | None = None, frame: str = "enu"
) -> Message:
    """A fix as a :class:`Message` with an :class:`Odometry` payload.

    ``Odometry.frame`` = ``frame`` (the ENU plane of the first fix), ``child_frame`` = ``sensor_id`` (the
    antenna). ``position`` = ENU metres. ``orientation`` = rotation about +z by ``yaw_rad`` (the direction
    of travel, from the course over ground; NaN quaternion when unknown — GNSS alone does not measure
    heading at standstill). ``linear_velocity`` is in the child frame as Odometry requires: the antenna's
    x axis points along the course, so it is ``(speed, 0, 0)`` (NaN when unknown); ``angular_velocity`` is
    NaN (not measured). The ENU velocity is ``fix.velocity_enu``.

    Stamps: ``raw_stamp_ns`` = UTC ns from the receiver; ``recv_ns`` = host receive stamp;
    ``stamp_ns`` = ``recv_ns`` (the rig clock of a live source) until the synchronizer's clock estimator
    maps ``raw_stamp_ns`` into the rig clock.
    """
    if yaw_rad is None or not math.isfinite(yaw_rad):
        q = np.full(4, np.nan)
    else:
        q = np.array([0.0, 0.0, math.sin(yaw_rad / 2.0), math.cos(yaw_rad / 2.0)])
    speed = math.nan if fix.speed_mps is None else fix.speed_mps
    odo = Odometry(
        position=fix.enu,
        orientation=q,
        linear_velocity=np.array([speed, 0.0, 0.0]),
        angular_velocity=np.full(3, np.nan),
        frame=frame,
        child_frame=sensor_id,
    )
    return Message(
        sensor_id=sensor_id,
        stamp_ns=fix.recv_ns,
        payload=odo,
        raw_stamp_ns=fix.utc_ns,
        recv_ns=fix.recv_ns,
        frame=frame,
        seq=seq,
    )


@dataclass
class _Epoch:
    tod_ns: int
    gga: GGA | None = None
    rmc: RMC | None = None
    vtg: VTG | None = None
    last_recv_ns: int = 0


class NmeaDecoder:
    """Byte stream → :class:`GnssFix` list. Never raises on bad input: every rejected line is counted in
    :attr:`counts` by reason (``checksum``, ``no_checksum``, ``garbage``, ``malformed``, ``overlong``,
    ``unknown`` — valid sentences of other types/talkers), as are epochs dropped (``no_fix``, ``no_date``)
    and good sentences (``GGA``, ``RMC``, ``VTG``). ``min_course_speed_mps``: below this speed the course
    is noise, so the heading (:attr:`yaw_rad`) keeps its last value."""

    def __init__(self, origin: LocalTangentPlane | None = None, min_course_speed_mps: float = 0.5) -> None:
        self.origin = origin
        self.min_course_speed_mps = float(min_course_speed_mps)
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        #: heading of travel in ENU (rad, CCW from east); None until the vehicle first moves
        self.yaw_rad: float | None = None
        self._buf = b""
        self._epoch: _Epoch | None = None
        self._pending_vtg: VTG | None = None
        self._date: _dt.date | None = None
        self._last_tod_ns: int | None = None
        self._height_m: float | None = None

    # ------------------------------------------------------------ input

    def feed(self, data: bytes, recv_ns: int) -> list[GnssFix]:
        """Add received bytes (any chunking) stamped ``recv_ns``; return the epochs they completed."""
        self._buf += data
        out: list[GnssFix] = []
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_SENTENCE_BYTES:  # no newline for too long: drop all but a last '$…'
            self._reject("overlong", f"{len(self._buf)} bytes without a line end")
            start = self._buf.rfind(b"$")
            self._buf = (
                self._buf[start:] if 0 <= start and len(self._buf) - start <= MAX_SENTENCE_BYTES else b""
            )
        for line in lines:
            self._line(line.strip(b"\r"), recv_ns, out)
        return out

    def flush(self) -> list[GnssFix]:
        """End the open epoch (e.g. at the end of a stream) and return it if it makes a fix."""
        out: list[GnssFix] = []
        self._close_epoch(out)
        return out

    def _reject(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        self.last_error = message

    def _line(self, line: bytes, recv_ns: int, out: list[GnssFix]) -> None:
        if not line.strip():
            return
        start = line.rfind(b"$")
        if start < 0:
            self._reject("garbage", f"NMEA line {line[:20]!r}: expected '$'")
            return
        if start > 0:
            self._reject("garbage", f"NMEA line: {start} bytes before '$'")
            line = line[start:]
        try:
            sentence = parse_nmea_sentence(line)
        except NmeaError as e:
            self._reject(e.reason, str(e))
            return
        if sentence is None:
            self.counts["unknown"] += 1
            return
        self.counts[type(sentence).__name__] += 1
        if isinstance(sentence, VTG):
            if self._epoch is not None:
                self._epoch.vtg = sentence
                self._epoch.last_recv_ns = recv_ns
            else:
                self._pending_vtg = sentence
            return
        tod = sentence.time_of_day_ns
        if tod is None:
            self._reject("malformed", f"NMEA {sentence.talker}{type(sentence).__name__}: empty UTC time")
            return
        if self._epoch is not None and self._epoch.tod_ns != tod:
            self._close_epoch(out)
        if self._epoch is None:
            self._epoch = _Epoch(tod_ns=tod, vtg=self._pending_vtg)
            self._pending_vtg = None
        if isinstance(sentence, GGA):
            self._epoch.gga = sentence
        else:
            self._epoch.rmc = sentence
        self._epoch.last_recv_ns = recv_ns
        if self._epoch.gga is not None and self._epoch.rmc is not None:
            self._close_epoch(out)

    # ------------------------------------------------------------ epochs → fixes

    def _utc_ns(self, ep: _Epoch) -> int | None:
        if ep.rmc is not None and ep.rmc.date is not None:
            self._date = ep.rmc.date
        elif (
            self._date is not None
            and self._last_tod_ns is not None
            and ep.tod_ns < self._last_tod_ns - _NS_PER_DAY // 2
        ):
            self._date = self._date + _dt.timedelta(days=1)  # passed midnight since the last RMC
        if self._date is None:
            return None
        self._last_tod_ns = ep.tod_ns
        return (self._date - _EPOCH).days * _NS_PER_DAY + ep.tod_ns

    def _close_epoch(self, out: list[GnssFix]) -> None:
        ep, self._epoch = self._epoch, None
        if ep is None:
            return
        gga, rmc, vtg = ep.gga, ep.rmc, ep.vtg
        if gga is not None and gga.quality > 0 and gga.lat_deg is not None and gga.lon_deg is not None:
            lat, lon, talker = gga.lat_deg, gga.lon_deg, gga.talker
            if gga.alt_msl_m is not None:
                self._height_m = gga.alt_msl_m + (gga.geoid_sep_m or 0.0)
        elif rmc is not None and rmc.valid and rmc.lat_deg is not None and rmc.lon_deg is not None:
            lat, lon, talker = rmc.lat_deg, rmc.lon_deg, rmc.talker
        else:
            self._utc_ns(ep)  # still learn the date
            self.counts["no_fix"] += 1
            return
        utc = self._utc_ns(ep)
        if utc is None:
            self.counts["no_date"] += 1
            return
        if rmc is not None and rmc.valid and rmc.speed_mps is not None:
            speed, course = rmc.speed_mps, rmc.course_deg
        elif vtg is not None and vtg.speed_mps is not None:
            speed, course = vtg.speed_mps, vtg.course_deg
        else:
            speed, course = None, None
        if speed is not None and course is not None:
            c = math.radians(course)
            vel = np.array([speed * math.sin(c), speed * math.cos(c), 0.0])
            if speed >= self.min_course_speed_mps:
                self.yaw_rad = course_to_yaw(course)
        elif speed is not None and speed == 0.0:
            vel = np.zeros(3)
        else:
            vel = np.full(3, np.nan)
        h = self._height_m
        if self.origin is None:
            self.origin = LocalTangentPlane(lat, lon, 0.0 if h is None else h)
        enu = self.origin.enu(lat, lon, self.origin.h0_m if h is None else h)
        out.append(
            GnssFix(
                utc_ns=utc,
                recv_ns=ep.last_recv_ns,
                lat_deg=lat,
                lon_deg=lon,
                height_m=h,
                enu=enu,
                velocity_enu=vel,
                speed_mps=speed,
                course_deg=course,
                quality=gga.quality if gga is not None else 1,
                num_sats=gga.num_sats if gga is not None else None,
                hdop=gga.hdop if gga is not None else None,
                talker=talker,
            )
        )
