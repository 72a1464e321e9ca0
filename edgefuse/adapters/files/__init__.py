"""Point-cloud and radar files: PCD (ascii, binary, binary_compressed), KITTI ``.bin``, PLY and
nuScenes radar PCD — pure decoders (bytes in, arrays out), a PCD writer, and the ``kitti://``,
``pcd://``, ``ply://``, ``nuscenes-radar://`` sources (a file or a directory → Messages).
See docs/adapters.md, "Point-cloud files"."""

from edgefuse.adapters.files.kitti import KittiError, parse_kitti_bin, read_kitti_bin
from edgefuse.adapters.files.nuscenes_radar import (
    NUSCENES_RADAR_FIELDS,
    parse_nuscenes_radar,
    read_nuscenes_radar,
)
from edgefuse.adapters.files.pcd import (
    PcdData,
    PcdError,
    format_pcd,
    parse_pcd,
    pcd_columns,
    pointcloud_from_pcd,
    read_pcd,
    write_pcd,
)
from edgefuse.adapters.files.ply import PlyError, load_ply, parse_ply
from edgefuse.adapters.files.source import (
    FILE_SCHEMES,
    FileSource,
    is_file_uri,
    open_file_source,
    parse_file_uri,
)

__all__ = [
    "FILE_SCHEMES",
    "FileSource",
    "KittiError",
    "NUSCENES_RADAR_FIELDS",
    "PcdData",
    "PcdError",
    "PlyError",
    "format_pcd",
    "is_file_uri",
    "load_ply",
    "open_file_source",
    "parse_file_uri",
    "parse_kitti_bin",
    "parse_nuscenes_radar",
    "parse_pcd",
    "parse_ply",
    "pcd_columns",
    "pointcloud_from_pcd",
    "read_kitti_bin",
    "read_nuscenes_radar",
    "read_pcd",
    "write_pcd",
]
