"""File sources: ``kitti://``, ``pcd://``, ``ply://`` and ``nuscenes-radar://`` URIs → Messages.

``SCHEME://PATH[?sensor=ID&rate=HZ]``: PATH is one file or a directory (its files with the scheme's
suffix — ``.bin`` for kitti, ``.ply`` for ply, ``.pcd`` otherwise — in name order, not recursive).
``pcd://data/x.pcd`` is relative, ``pcd:///abs/x.pcd`` absolute. ``sensor`` names the sensor (default
``lidar``, ``radar`` for nuscenes-radar; also the message frame), ``rate`` (Hz, default 10) spaces
stamps where the files carry none.

Stamps (``stamp_ns`` = ``raw_stamp_ns``, int64 ns; mapping to the rig clock happens downstream), one rule
for the whole source, first that applies to every file:

1. a time stamp at the end of each file name: 19 digits = ns (``1713492677464078412.pcd``), 16 = µs
   (nuScenes' ``..._1533151603547590.pcd``), 13 = ms, or ``SECONDS.FRACTION`` (``1533151603.547590.pcd``);
2. kitti only: KITTI raw's ``timestamps_end.txt`` (sweep end, edgefuse's convention), else
   ``timestamps.txt`` (scanner facing forward), in the directory above the scans, line i for scan
   ``i.bin`` (read as UTC: KITTI writes local time without a zone);
3. file k (k-th in name order, from 0) at k / rate.

``recv_ns`` is the injected ``clock()`` (default :func:`time.monotonic_ns`) when the file has been read.
The source does not pace itself (replay at a rate belongs to the replayer). A file that fails to
decode is counted (``stats["bad_files"]``), logged as a warning naming the file and the reason
(``stats["errors"]``), and the source goes on with the next file; points with NaN/inf are dropped and
counted in ``stats["dropped_points"]`` by reason.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from edgefuse.adapters.files.common import add_counts
from edgefuse.adapters.files.kitti import read_kitti_bin
from edgefuse.adapters.files.nuscenes_radar import read_nuscenes_radar
from edgefuse.adapters.files.pcd import pointcloud_from_pcd, read_pcd
from edgefuse.adapters.files.ply import load_ply
from edgefuse.errors import InputError
from edgefuse.types import Message, PointCloud, RadarScan

log = logging.getLogger(__name__)

#: scheme → (file suffix, default sensor id)
FILE_SCHEMES: dict[str, tuple[str, str]] = {
    "kitti": (".bin", "lidar"),
    "pcd": (".pcd", "lidar"),
    "ply": (".ply", "lidar"),
    "nuscenes-radar": (".pcd", "radar"),
}
DEFAULT_RATE_HZ = 10.0
KITTI_TIMESTAMP_FILES = ("timestamps_end.txt", "timestamps.txt")

_NAME_STAMP = re.compile(r"(?:^|\D)(\d{19}|\d{16}|\d{13})$")
_NAME_SECONDS = re.compile(r"(?:^|\D)(\d{9,10})\.(\d{1,9})$")
_DIGITS_SCALE = {19: 1, 16: 1_000, 13: 1_000_000}


@dataclass(frozen=True)
class FileSourceSpec:
    """A parsed file-source URI."""

    scheme: str
    path: Path
    sensor_id: str
    rate_hz: float


def parse_file_uri(uri: str) -> FileSourceSpec:
    """Parse ``SCHEME://PATH[?sensor=ID&rate=HZ]``; InputError naming the URI and the part otherwise."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in FILE_SCHEMES or "://" not in uri:
        raise InputError(f"{uri}: scheme: expected one of {', '.join(s + '://' for s in FILE_SCHEMES)}")
    path = parts.netloc + parts.path
    if not path:
        raise InputError(f"{uri}: path: expected a file or directory after {scheme}://")
    sensor_id = FILE_SCHEMES[scheme][1]
    rate = DEFAULT_RATE_HZ
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "sensor":
            if not value:
                raise InputError(f"{uri}: query sensor: expected a non-empty sensor id")
            sensor_id = value
        elif key == "rate":
            try:
                rate = float(value)
            except ValueError:
                rate = float("nan")
            if not (rate > 0 and rate < float("inf")):
                raise InputError(f"{uri}: query rate: expected a positive number of Hz, got {value!r}")
        else:
            raise InputError(f"{uri}: query {key}: expected only sensor= and rate=")
    return FileSourceSpec(scheme, Path(path), sensor_id, rate)


def list_files(path: Path, suffix: str, uri: str = "") -> list[Path]:
    """``path`` itself if it is a file, else its files ending in ``suffix`` (any case), in name order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{uri or path}: path {path}: expected an existing file or directory")
    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffix)), key=lambda p: p.name
    )
    if not files:
        raise InputError(f"{uri or path}: path {path}: expected *{suffix} files in the directory, found none")
    return files


def stamp_from_name(path: Path) -> int | None:
    """The stamp (ns) at the end of a file's name (see module doc), or None."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    m = _NAME_STAMP.search(stem)
    if m:
        digits = m.group(1)
        return int(digits) * _DIGITS_SCALE[len(digits)]
    m = _NAME_SECONDS.search(stem)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int(m.group(2).ljust(9, "0"))
    return None


def parse_kitti_timestamps(text: str, name: str) -> list[int]:
    """KITTI raw time stamps (``YYYY-MM-DD HH:MM:SS.fffffffff`` per line, read as UTC) → ns."""
    out = []
    for i, line in enumerate(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            whole, _, frac = line.partition(".")
            t = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            if frac and not (frac.isdigit() and len(frac) <= 9):
                raise ValueError
        except ValueError:
            raise InputError(
                f"{name}: line {i + 1}: expected 'YYYY-MM-DD HH:MM:SS.fraction', got {line!r}"
            ) from None
        out.append(int(t.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0") or 0))
    return out


def _kitti_stamps(files: list[Path]) -> tuple[list[int], str] | None:
    folder = files[0].parent.parent
    for fname in KITTI_TIMESTAMP_FILES:
        tpath = folder / fname
        if not tpath.is_file():
            continue
        try:
            stamps = parse_kitti_timestamps(tpath.read_text(), str(tpath))
        except (InputError, OSError) as exc:
            log.warning("%s: ignored (%s)", tpath, exc)
            continue
        idx = [int(p.stem) if p.stem.isdigit() else -1 for p in files]
        if all(0 <= i < len(stamps) for i in idx):
            return [stamps[i] for i in idx], str(tpath)
        log.warning(
            "%s: %d lines do not cover scans %s..%s; ignored",
            tpath,
            len(stamps),
            files[0].name,
            files[-1].name,
        )
    return None


def plan_stamps(files: list[Path], scheme: str, rate_hz: float) -> tuple[list[int], str]:
    """The stamp of each file (ns) and where they come from (``file name``, a timestamps file, ``rate``)."""
    named = [stamp_from_name(p) for p in files]
    if all(s is not None for s in named):
        return [int(s) for s in named], "file name"
    if scheme == "kitti":
        kitti = _kitti_stamps(files)
        if kitti is not None:
            return kitti
    period = 1e9 / rate_hz
    return [round(k * period) for k in range(len(files))], "rate"


def decode_file(scheme: str, path: Path) -> tuple[PointCloud | RadarScan, dict[str, int]]:
    """Read and decode one file of a scheme: the payload and the points dropped by reason."""
    if scheme == "kitti":
        return read_kitti_bin(path)
    if scheme == "pcd":
        return pointcloud_from_pcd(read_pcd(path), str(path))
    if scheme == "ply":
        return load_ply(path)
    if scheme == "nuscenes-radar":
        return read_nuscenes_radar(path)
    raise InputError(f"{path}: scheme {scheme!r}: expected one of {', '.join(FILE_SCHEMES)}")


class FileSource:
    """Iterates the Messages of a file source (see module doc); ``stats`` counts what happened:
    ``files`` (listed), ``messages``, ``bad_files``, ``errors`` (one line each), ``dropped_points``
    (by reason), ``stamp_source``."""

    def __init__(self, spec: FileSourceSpec, uri: str = "", clock: Callable[[], int] = time.monotonic_ns):
        self.spec = spec
        self.uri = uri or f"{spec.scheme}://{spec.path}"
        self.clock = clock
        self.files = list_files(spec.path, FILE_SCHEMES[spec.scheme][0], self.uri)
        self.stamps, stamp_source = plan_stamps(self.files, spec.scheme, spec.rate_hz)
        self.stats: dict = {
            "files": len(self.files),
            "messages": 0,
            "bad_files": 0,
            "errors": [],
            "dropped_points": {"nan": 0, "inf": 0},
            "stamp_source": stamp_source,
        }

    def __iter__(self) -> Iterator[Message]:
        for path, stamp in zip(self.files, self.stamps, strict=True):
            try:
                payload, dropped = decode_file(self.spec.scheme, path)
            except InputError as exc:
                self.stats["bad_files"] += 1
                self.stats["errors"].append(str(exc))
                log.warning("%s: skipped bad file: %s", self.uri, exc)
                continue
            add_counts(self.stats["dropped_points"], dropped)
            if dropped.get("nan", 0) or dropped.get("inf", 0):
                log.debug("%s: dropped non-finite points %s", path, dropped)
            recv = int(self.clock())
            msg = Message(
                sensor_id=self.spec.sensor_id,
                stamp_ns=stamp,
                payload=payload,
                raw_stamp_ns=stamp,
                recv_ns=recv,
                frame=self.spec.sensor_id,
                seq=self.stats["messages"],
            )
            self.stats["messages"] += 1
            yield msg


def open_file_source(uri: str, clock: Callable[[], int] = time.monotonic_ns) -> FileSource:
    """Open a ``kitti://``, ``pcd://``, ``ply://`` or ``nuscenes-radar://`` URI (see module doc).

    Raises InputError for a bad URI or a missing path; bad files inside are counted, not raised."""
    return FileSource(parse_file_uri(uri), uri, clock)


def is_file_uri(uri: str) -> bool:
    """True for the URIs :func:`open_file_source` handles."""
    return urlsplit(uri).scheme.lower() in FILE_SCHEMES and "://" in uri


__all__ = [
    "FILE_SCHEMES",
    "FileSource",
    "FileSourceSpec",
    "decode_file",
    "is_file_uri",
    "list_files",
    "open_file_source",
    "parse_file_uri",
    "parse_kitti_timestamps",
    "plan_stamps",
    "stamp_from_name",
]
