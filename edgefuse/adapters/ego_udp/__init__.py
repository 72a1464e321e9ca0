"""Ego motion (odometry, IMU) as JSON datagrams over UDP: the wire format in :mod:`.protocol` (pure,
with its encoder), the live source in :mod:`.source` (``ego-udp://HOST:PORT?type=odometry|imu``)."""

from edgefuse.adapters.ego_udp.protocol import (
    MAX_DATAGRAM,
    EgoDatagramError,
    EgoSample,
    decode_datagram,
    encode_datagram,
)
from edgefuse.adapters.ego_udp.source import EgoUdpSource, EgoUdpUriError, open_ego_udp

__all__ = [
    "MAX_DATAGRAM",
    "EgoDatagramError",
    "EgoSample",
    "EgoUdpSource",
    "EgoUdpUriError",
    "decode_datagram",
    "encode_datagram",
    "open_ego_udp",
]
