"""Velodyne spinning LiDARs (VLP-16, VLP-32C, HDL-32E): calibration, packet decoding, sweeps, sources."""

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

__all__ = [
    "MODELS",
    "PRODUCT_IDS",
    "VelodyneCalibration",
    "default_calibration",
    "hdl32e",
    "load_velodyne_calibration",
    "vlp16",
    "vlp32c",
]
