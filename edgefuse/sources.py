"""One entry point for every source: ``open_source(uri) -> Source`` (DESIGN.md §3, docs/adapters.md).

This module sits above the three source families — the drivers (:mod:`edgefuse.adapters`), the logs
(``mcap://``, :mod:`edgefuse.logs.source`) and the simulator (``sim://``, :mod:`edgefuse.sim.source`) — so
none of them imports another to be reachable by URI. Dispatch (:func:`open_source`) is one ``if/elif``
over the URI scheme that imports the one package the scheme needs; each driver's source object is wrapped
in :class:`~edgefuse.adapters.base.AdaptedSource` only to give it the :class:`~edgefuse.adapters.base.Source`
interface (its messages pass through untouched), with its counters flattened into ``stats()`` keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from edgefuse.adapters.base import AdaptedSource, Source, SourceUriError, flat_counts

#: Every URI scheme :func:`open_source` knows, in the order of its dispatch.
SCHEMES: tuple[str, ...] = (
    "pcap",
    "velodyne",
    "kitti",
    "pcd",
    "ply",
    "nuscenes-radar",
    "ti-mmwave",
    "ti-mmwave-file",
    "v4l2",
    "video",
    "images",
    "gst",
    "csi",
    "http",
    "nmea",
    "ego-udp",
    "mcap",
    "sim",
    "kitti-object",
    "nuscenes",
)


#: Velodyne counters that are neither decode errors nor dropped data (kept under their own names).
_VELODYNE_COUNTERS = ("nonfinite_point", "duplicate_dual_return", "idle_timeout", "socket_errors", "rebinds",
                      "kernel_stamp_unused")  # fmt: skip


def _velodyne_stats(src: Any) -> dict[str, int]:
    s = src.stats
    out = {"packets": s.packets, "points": s.points}
    for reason, n in s.counts.items():
        if reason in ("queue_overflow",):
            out["dropped.packets_oldest"] = n
        elif reason in _VELODYNE_COUNTERS:
            out[reason] = n
        elif reason.startswith("pcap_") and "truncated" not in reason:
            out[reason] = n  # other traffic in the capture (not UDP, other port): not sensor data
        else:
            out[f"error.{reason}"] = n
    return out


def _file_stats(src: Any) -> dict[str, int]:
    s = src.stats
    out = {"files": s["files"], "error.bad_file": s["bad_files"]}
    out.update(flat_counts("dropped.points_", s["dropped_points"]))
    return out


def _ti_stats(src: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in src.stats.items():
        if not isinstance(v, int):
            continue
        if k.startswith("skip_"):
            out[f"error.{k[5:]}"] = v
        elif k == "dropped_oldest":
            out["dropped.oldest"] = v
        elif k == "serial_errors":
            out["error.serial"] = v
        elif k != "messages":
            out[k] = v
    return out


def _camera_stats(src: Any) -> dict[str, int]:
    s = src.stats
    out = {"error.bad_frame": s.bad_frames}
    if s.grabber is not None:
        g = s.grabber
        out["dropped.not_taken"] = g.dropped
        out.update(flat_counts("", {k: v for k, v in vars(g).items() if k not in ("dropped", "delivered")}))
    return out


_NMEA_ERRORS = ("checksum", "no_checksum", "garbage", "malformed", "overlong")


def _nmea_stats(src: Any) -> dict[str, int]:
    c = src.counts()
    out = {"dropped.oldest": c["dropped"], "bytes": c["bytes"], "outages": c["outages"]}
    for k, v in c["decoder"].items():
        out[f"error.{k}" if k in _NMEA_ERRORS else f"nmea_{k}"] = int(v)
    return out


def _ego_stats(src: Any) -> dict[str, int]:
    out = {"datagrams": src.stats["datagrams"], "dropped.oldest": src.stats["dropped_oldest"]}
    for k, v in src.stats.items():
        if k not in ("datagrams", "dropped_oldest", "messages"):
            out[k if k == "idle_timeout" else f"error.{k}"] = v
    return out


def _resolve(path: str, base_dir: Path | None) -> str:
    """``path`` against ``base_dir`` when it is relative and a base is given."""
    if base_dir is None or not path or Path(path).is_absolute():
        return path
    return str(Path(base_dir) / path)


def _rebuild(scheme: str, path: str, query: list[tuple[str, str]]) -> str:
    q = urlencode(query, safe="/,:")
    return f"{scheme}://{path}" + (f"?{q}" if q else "")


def _with_path_and_param(uri: str, base_dir: Path | None, key: str, value: str | None) -> str:
    """The URI with its path resolved against ``base_dir`` and ``key=value`` added unless the URI
    already has ``key``."""
    if base_dir is None and value is None:
        return uri
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if value is not None and all(k != key for k, _ in query):
        query.append((key, value))
    return _rebuild(parts.scheme, _resolve(parts.netloc + parts.path, base_dir), query)


def open_source(uri: str, sensor_id: str | None = None, base_dir: Path | None = None) -> Source:
    """Open a sensor source by URI (schemes: :data:`SCHEMES`; DESIGN.md §3, docs/adapters.md).

    ``sensor_id`` names the messages of single-sensor sources (a ``sensor``/``sensor_id`` query
    parameter in the URI wins; ``mcap://`` and ``sim://`` keep the ids they carry); ``base_dir``
    resolves relative file paths (a sensor kit's folder). Raises :class:`InputError` for an unknown
    scheme (listing the known ones), a bad URI, or a file or device that does not open."""
    scheme, sep, _ = uri.partition("://")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise SourceUriError(f"{uri!r}: expected SCHEME://…, with SCHEME one of {', '.join(SCHEMES)}")
    if scheme in ("pcap", "velodyne"):
        from edgefuse.adapters.velodyne import open_velodyne

        # base_dir resolves both the capture path and calib= (open_velodyne does both)
        target = _with_path_and_param(uri, None, "sensor_id", sensor_id)
        return AdaptedSource(
            open_velodyne(target, base_dir=base_dir), uri, "lidar", scheme == "velodyne", _velodyne_stats
        )
    elif scheme in ("kitti", "pcd", "ply", "nuscenes-radar"):
        from edgefuse.adapters.files import open_file_source

        src = open_file_source(_with_path_and_param(uri, base_dir, "sensor", sensor_id))
        kind = "radar" if scheme == "nuscenes-radar" else "lidar"
        return AdaptedSource(src, uri, kind, False, _file_stats)
    elif scheme in ("ti-mmwave", "ti-mmwave-file"):
        from edgefuse.adapters.ti_mmwave import open_ti_mmwave

        src = open_ti_mmwave(uri, sensor_id or "ti_mmwave", base_dir=base_dir)
        return AdaptedSource(src, uri, "radar", scheme == "ti-mmwave", _ti_stats)
    elif scheme in ("v4l2", "video", "images", "gst", "csi", "http"):
        from edgefuse.adapters.camera import open_camera

        target = uri
        if scheme in ("video", "images") and base_dir is not None:
            rest = uri.partition("://")[2]
            if not rest.startswith("/"):
                target = f"{scheme}://{_resolve(rest, base_dir)}"
        src = open_camera(target, sensor_id or "camera")
        return AdaptedSource(src, uri, "camera", scheme not in ("video", "images"), _camera_stats)
    elif scheme == "nmea":
        from edgefuse.adapters.gnss import open_nmea

        return AdaptedSource(open_nmea(uri, sensor_id or "gnss"), uri, "gnss", True, _nmea_stats)
    elif scheme == "ego-udp":
        from edgefuse.adapters.ego_udp import open_ego_udp

        src = open_ego_udp(uri, sensor_id)
        return AdaptedSource(src, uri, src.kind, True, _ego_stats)
    elif scheme == "mcap":
        from edgefuse.logs.source import open_mcap

        return open_mcap(uri, base_dir=base_dir)
    elif scheme == "sim":
        from edgefuse.sim.source import open_sim

        return open_sim(uri)
    elif scheme == "kitti-object":
        from edgefuse.datasets.kitti import KittiObjectDataset, parse_kitti_object_uri

        root, camera, lidar = parse_kitti_object_uri(_with_path_and_param(uri, base_dir, "camera", None))
        ds = KittiObjectDataset(root, camera, lidar)  # a dataset: camera, LiDAR and ground-truth messages
        return AdaptedSource(ds, uri, "dataset", False, lambda d: d.stats())
    elif scheme == "nuscenes":
        from edgefuse.datasets.nuscenes import NuScenesDataset, parse_nuscenes_uri

        root, version = parse_nuscenes_uri(_with_path_and_param(uri, base_dir, "version", None))
        ds = NuScenesDataset(root, version)  # a dataset: LiDAR, camera, radar and ground-truth messages
        return AdaptedSource(ds, uri, "dataset", False, lambda d: d.stats())
    raise SourceUriError(f"{uri!r}: unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


def offered_fields(uri: str, kind: str) -> tuple[str, ...] | None:
    """The point fields a ``kind`` (``lidar``/``radar``) source at ``uri`` gives, from its driver's
    declared layout, without opening it; None where only the data can tell (files, logs) or for other
    kinds. The model ↔ kit contract (:mod:`edgefuse.runtime.contract`) checks them at start-up."""
    scheme = uri.partition("://")[0].lower()
    if kind not in ("lidar", "radar"):
        return None
    if scheme in ("pcap", "velodyne"):
        from edgefuse.adapters.velodyne.sweep import SWEEP_FIELDS

        return SWEEP_FIELDS
    if scheme in ("ti-mmwave", "ti-mmwave-file"):
        from edgefuse.adapters.ti_mmwave.protocol import SCAN_FIELDS

        return SCAN_FIELDS
    if scheme == "nuscenes-radar":
        from edgefuse.adapters.files import NUSCENES_RADAR_FIELDS

        return NUSCENES_RADAR_FIELDS
    if scheme == "sim":
        from edgefuse.sim.lidar import CLOUD_FIELDS
        from edgefuse.sim.radar import RADAR_FIELDS

        return CLOUD_FIELDS if kind == "lidar" else RADAR_FIELDS
    return None
