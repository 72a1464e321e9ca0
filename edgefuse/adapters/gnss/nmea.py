"""NMEA-0183 sentences: GGA, RMC and VTG. Pure: bytes in, typed records out.

A sentence is ``$<talker><type>,<fields...>*<hh>`` where ``hh`` is the XOR of every byte between ``$``
and ``*`` as two hex digits. Accepted talkers: GP (GPS), GN (multi-constellation), GL (GLONASS),
GA (Galileo). Empty fields (a receiver without a fix sends ``,,``) become ``None``.

Units: latitude/longitude in signed degrees (north/east positive); altitudes in metres; speeds in m/s
(converted from knots: 1 kn = 1852/3600 m/s); courses in degrees clockwise from true north; time of day
in int64 nanoseconds since 00:00 UTC.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from edgefuse.errors import InputError

#: Talker ids accepted: GPS, multi-GNSS, GLONASS, Galileo.
TALKERS: tuple[str, ...] = ("GP", "GN", "GL", "GA")

#: 1 knot in m/s (exact: 1852 m per hour).
KNOT_MPS = 1852.0 / 3600.0

#: Longest line the decoder keeps (NMEA's limit is 82 characters including ``$`` and CR LF).
MAX_SENTENCE_BYTES = 120

_NS_PER_S = 1_000_000_000


class NmeaError(InputError):
    """A line that is not a valid NMEA sentence. ``reason`` is one of ``checksum`` (the ``*hh`` does not
    match), ``no_checksum`` (no ``*hh``), ``garbage`` (no ``$`` or non-ASCII bytes), ``malformed`` (a
    field of a known sentence that does not parse) or ``overlong``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GGA:
    """Fix data. ``quality``: 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning.
    ``alt_msl_m`` is above mean sea level; ``geoid_sep_m`` is geoid height above the WGS84 ellipsoid, so
    the ellipsoidal height is ``alt_msl_m + geoid_sep_m``."""

    talker: str
    time_of_day_ns: int | None
    lat_deg: float | None
    lon_deg: float | None
    quality: int
    num_sats: int | None
    hdop: float | None
    alt_msl_m: float | None
    geoid_sep_m: float | None


@dataclass(frozen=True)
class RMC:
    """Recommended minimum data. ``valid``: status ``A`` (``V`` = receiver warning, no usable fix).
    ``date``: the UTC date. ``speed_mps``: speed over ground; ``course_deg``: course over ground, true."""

    talker: str
    time_of_day_ns: int | None
    valid: bool
    lat_deg: float | None
    lon_deg: float | None
    speed_mps: float | None
    course_deg: float | None
    date: _dt.date | None
    mode: str | None


@dataclass(frozen=True)
class VTG:
    """Course and speed over ground (no time: it belongs to the epoch of the sentences around it).
    ``speed_mps`` from the knots field, or from km/h where knots is empty."""

    talker: str
    course_deg: float | None
    speed_mps: float | None
    mode: str | None


Sentence = GGA | RMC | VTG


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    c = 0
    for b in body:
        c ^= b
    return c


def parse_nmea_sentence(line: bytes) -> Sentence | None:
    """Parse one sentence (with or without trailing CR LF).

    Returns a :class:`GGA`, :class:`RMC` or :class:`VTG`; ``None`` for a valid sentence of another type or
    talker (GSA, GSV, $PUBX, …). Raises :class:`NmeaError` (with ``reason``) for a bad checksum, a missing
    checksum, garbage or a malformed field.
    """
    line = line.strip(b"\r\n")
    if len(line) > MAX_SENTENCE_BYTES:
        raise NmeaError(
            "overlong", f"NMEA line: expected at most {MAX_SENTENCE_BYTES} bytes, got {len(line)}"
        )
    if not line.startswith(b"$"):
        raise NmeaError("garbage", f"NMEA line: expected a sentence starting with '$', got {line[:20]!r}")
    star = line.rfind(b"*")
    if star < 0:
        raise NmeaError("no_checksum", f"NMEA sentence {line[:20]!r}: expected '*hh' checksum at the end")
    body, given = line[1:star], line[star + 1 :]
    try:
        given_val = int(given, 16)
        if len(given) != 2:
            raise ValueError
    except ValueError:
        raise NmeaError(
            "checksum", f"NMEA sentence {line[:20]!r}: expected two hex digits after '*', got {given!r}"
        ) from None
    actual = nmea_checksum(body)
    if actual != given_val:
        raise NmeaError(
            "checksum",
            f"NMEA sentence {line[:20]!r}: checksum expected {actual:02X} (XOR of the body), "
            f"got {given_val:02X}",
        )
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise NmeaError("garbage", f"NMEA sentence {line[:20]!r}: expected ASCII text") from None
    fields = text.split(",")
    address = fields[0]
    if len(address) != 5:
        return None
    talker, kind = address[:2], address[2:]
    if talker not in TALKERS:
        return None
    parser = _PARSERS.get(kind)
    if parser is None:
        return None
    try:
        return parser(talker, fields)
    except (ValueError, IndexError) as e:
        raise NmeaError("malformed", f"NMEA {address} sentence: {e}") from None


# ---------------------------------------------------------------- field parsers


def _field(fields: list[str], i: int) -> str:
    return fields[i] if i < len(fields) else ""


def _opt_float(fields: list[str], i: int, name: str) -> float | None:
    s = _field(fields, i)
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"field {i} ({name}): expected a number, got {s!r}") from None


def _opt_int(fields: list[str], i: int, name: str) -> int | None:
    s = _field(fields, i)
    if not s:
        return None
    if not s.isdigit():
        raise ValueError(f"field {i} ({name}): expected an integer, got {s!r}")
    return int(s)


def _time_of_day(fields: list[str], i: int) -> int | None:
    """``hhmmss[.sss]`` → ns since midnight."""
    s = _field(fields, i)
    if not s:
        return None
    whole, _, frac = s.partition(".")
    if len(whole) != 6 or not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"field {i} (UTC time): expected hhmmss[.sss], got {s!r}")
    hh, mm, ss = int(whole[:2]), int(whole[2:4]), int(whole[4:6])
    if hh > 23 or mm > 59 or ss > 60:  # 60: a leap second
        raise ValueError(f"field {i} (UTC time): expected hh<24 mm<60 ss<=60, got {s!r}")
    frac_ns = int(frac[:9].ljust(9, "0")) if frac else 0
    return ((hh * 60 + mm) * 60 + ss) * _NS_PER_S + frac_ns


def _angle(fields: list[str], i: int, name: str, max_deg: int, hemis: str) -> float | None:
    """``(d)ddmm.mmmm`` + hemisphere letter in field ``i + 1`` → signed degrees."""
    s, h = _field(fields, i), _field(fields, i + 1)
    if not s and not h:
        return None
    if not s or h not in hemis:
        raise ValueError(
            f"fields {i},{i + 1} ({name}): expected ddmm.mmmm and one of {hemis!r}, got {s!r},{h!r}"
        )
    point = s.find(".")
    head = s if point < 0 else s[:point]
    if len(head) < 3 or not head.isdigit():
        raise ValueError(f"field {i} ({name}): expected degrees and minutes ddmm.mmmm, got {s!r}")
    deg = int(head[:-2])
    minutes = float(s[len(head) - 2 :])
    if deg > max_deg or minutes >= 60.0 or deg + minutes / 60.0 > max_deg:
        raise ValueError(
            f"field {i} ({name}): expected at most {max_deg} degrees and minutes < 60, got {s!r}"
        )
    value = deg + minutes / 60.0
    return -value if h == hemis[1] else value


def _parse_gga(talker: str, f: list[str]) -> GGA:
    q = _opt_int(f, 6, "fix quality")
    alt_unit, sep_unit = _field(f, 10), _field(f, 12)
    if alt_unit not in ("", "M") or sep_unit not in ("", "M"):
        raise ValueError(f"fields 10,12 (altitude units): expected 'M', got {alt_unit!r},{sep_unit!r}")
    return GGA(
        talker=talker,
        time_of_day_ns=_time_of_day(f, 1),
        lat_deg=_angle(f, 2, "latitude", 90, "NS"),
        lon_deg=_angle(f, 4, "longitude", 180, "EW"),
        quality=0 if q is None else q,
        num_sats=_opt_int(f, 7, "satellites"),
        hdop=_opt_float(f, 8, "HDOP"),
        alt_msl_m=_opt_float(f, 9, "altitude"),
        geoid_sep_m=_opt_float(f, 11, "geoid separation"),
    )


def _parse_rmc(talker: str, f: list[str]) -> RMC:
    status = _field(f, 2)
    if status not in ("A", "V"):
        raise ValueError(f"field 2 (status): expected 'A' or 'V', got {status!r}")
    knots = _opt_float(f, 7, "speed over ground")
    d = _field(f, 9)
    date = None
    if d:
        if len(d) != 6 or not d.isdigit():
            raise ValueError(f"field 9 (date): expected ddmmyy, got {d!r}")
        try:
            # NMEA's two-digit year: 80..99 → 1980s/90s (GPS started 1980), 00..79 → 2000s.
            yy = int(d[4:6])
            date = _dt.date(1900 + yy if yy >= 80 else 2000 + yy, int(d[2:4]), int(d[0:2]))
        except ValueError:
            raise ValueError(f"field 9 (date): expected a valid ddmmyy date, got {d!r}") from None
    return RMC(
        talker=talker,
        time_of_day_ns=_time_of_day(f, 1),
        valid=status == "A",
        lat_deg=_angle(f, 3, "latitude", 90, "NS"),
        lon_deg=_angle(f, 5, "longitude", 180, "EW"),
        speed_mps=None if knots is None else knots * KNOT_MPS,
        course_deg=_opt_float(f, 8, "course over ground"),
        date=date,
        mode=_field(f, 12) or None,
    )


def _parse_vtg(talker: str, f: list[str]) -> VTG:
    knots = _opt_float(f, 5, "speed (knots)")
    kmh = _opt_float(f, 7, "speed (km/h)")
    if knots is not None:
        speed = knots * KNOT_MPS
    elif kmh is not None:
        speed = kmh / 3.6
    else:
        speed = None
    return VTG(
        talker=talker,
        course_deg=_opt_float(f, 1, "course (true)"),
        speed_mps=speed,
        mode=_field(f, 9) or None,
    )


_PARSERS = {"GGA": _parse_gga, "RMC": _parse_rmc, "VTG": _parse_vtg}
