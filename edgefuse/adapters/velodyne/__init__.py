"""Velodyne spinning LiDARs (VLP-16, VLP-32C, HDL-32E): calibration, packet codec, sweeps, sources.

Layers: :mod:`.calibration` (per-laser tables and firing timing), :mod:`.packet` (pure codec: bytes ⇄
arrays), :mod:`.sweep` (pure: hour mapping, sweep assembly → Messages), :mod:`.pcap` (capture reader),
:mod:`.source` (thin I/O shells: ``pcap://`` and ``velodyne://`` → :func:`open_velodyne`).
"""

from edgefuse.adapters.velodyne.calibration import (
    MODELS,
    PRODUCT_IDS,
    VelodyneCalibration,
    default_calibration,
    hdl32e,
    load_velodyne_calibration,
    vlp16,
    vlp32c,
)
from edgefuse.adapters.velodyne.packet import (
    PACKET_SIZE,
    DecodedPoints,
    DecodeStats,
    VelodynePacketError,
    decode_packet_strict,
    decode_packets,
    encode_packets,
)
from edgefuse.adapters.velodyne.source import (
    PcapVelodyneSource,
    UdpVelodyneSource,
    VelodyneSource,
    VelodyneUriError,
    open_velodyne,
)
from edgefuse.adapters.velodyne.sweep import SweepAssembler, map_hour_stamps

__all__ = [
    "MODELS",
    "PACKET_SIZE",
    "PRODUCT_IDS",
    "DecodeStats",
    "DecodedPoints",
    "PcapVelodyneSource",
    "SweepAssembler",
    "UdpVelodyneSource",
    "VelodyneCalibration",
    "VelodynePacketError",
    "VelodyneSource",
    "VelodyneUriError",
    "decode_packet_strict",
    "decode_packets",
    "default_calibration",
    "encode_packets",
    "hdl32e",
    "load_velodyne_calibration",
    "map_hour_stamps",
    "open_velodyne",
    "vlp16",
    "vlp32c",
]
