"""GNSS receivers speaking NMEA-0183 (GGA, RMC, VTG) over serial, as ego position and velocity:
:func:`parse_nmea_sentence` (one line), :class:`NmeaDecoder` (a byte stream → fixes in a local ENU plane),
:func:`open_nmea` (``nmea:///dev/ttyUSB2?baud=115200``, a reader thread over pyserial)."""

from edgefuse.adapters.gnss.decoder import (
    GnssFix,
    LocalTangentPlane,
    NmeaDecoder,
    course_to_yaw,
    fix_to_message,
    geodetic_to_ecef,
)
from edgefuse.adapters.gnss.nmea import (
    GGA,
    KNOT_MPS,
    RMC,
    TALKERS,
    VTG,
    NmeaError,
    nmea_checksum,
    parse_nmea_sentence,
)
from edgefuse.adapters.gnss.source import (
    NmeaSource,
    NmeaStats,
    NmeaUri,
    NmeaUriError,
    open_nmea,
    parse_nmea_uri,
)

__all__ = [
    "GGA",
    "KNOT_MPS",
    "RMC",
    "TALKERS",
    "VTG",
    "GnssFix",
    "LocalTangentPlane",
    "NmeaDecoder",
    "NmeaError",
    "NmeaSource",
    "NmeaStats",
    "NmeaUri",
    "NmeaUriError",
    "course_to_yaw",
    "fix_to_message",
    "geodetic_to_ecef",
    "nmea_checksum",
    "open_nmea",
    "parse_nmea_sentence",
    "parse_nmea_uri",
]
