"""A log as a source: ``mcap://`` (an edgefuse MCAP log), opened through :func:`edgefuse.sources.open_source`.

``mcap://LOG.mcap[?topic=/lidar_top/points][&topic=…][&rate=max|R]`` — the messages of the log's
edgefuse topics (all of them, or the ``topic`` ones) in log-time order, from
:class:`~edgefuse.logs.LogReader`; ``mcap://DIR`` reads the split files in DIR as one log
(:mod:`edgefuse.logs.logset`). ``rate=max`` (default) as fast as they decode; ``rate=R`` paced by
:func:`~edgefuse.logs.replay` at R× real time (by receive stamps). The messages keep the log's three
stamps. ``mcap://rel/log.mcap`` is relative (to ``base_dir`` when given), ``mcap:///abs/log.mcap``
absolute. Damage the reader skips (corrupt chunks, undecodable messages) is counted in ``stats()`` as
``error.bad_chunk`` / ``error.bad_message`` / ``error.other``; a truncated log sets ``truncated``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from edgefuse.adapters.base import Source, SourceUriError
from edgefuse.errors import InputError
from edgefuse.types import Message

_KIND_OF_PAYLOAD = {
    "Image": "camera",
    "CompressedImage": "camera",
    "PointCloud": "lidar",
    "RadarScan": "radar",
    "Odometry": "odometry",
    "Imu": "imu",
    "Detections": "detections",
}


def _rate(uri: str, value: str) -> float | None:
    """``max`` → None (as fast as possible); a positive number → that rate."""
    if value == "max":
        return None
    try:
        r = float(value)
    except ValueError:
        r = float("nan")
    if not (r > 0 and r < float("inf")):
        raise SourceUriError(f"{uri}: rate: expected 'max' or a positive number, got {value!r}")
    return r


class McapSource(Source):
    """An MCAP log as a source (module doc); ``path``: a file, a directory of split files, or a list of
    them (read as one, :class:`~edgefuse.logs.logset.LogSet`). ``clock`` paces ``rate=R`` (injectable)."""

    live = False

    def __init__(
        self,
        uri: str,
        path: Path | Sequence[Path],
        topics: list[str] | None = None,
        rate: float | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        from edgefuse.logs.logset import LogSet, log_files

        paths = [path] if isinstance(path, (str, Path)) else list(path)
        self.uri, self.path, self.rate = uri, Path(paths[0]), rate
        try:
            files = log_files(paths)
        except InputError as e:
            raise SourceUriError(f"{uri}: {e}") from None
        self.reader = LogSet(files)
        known = self.reader.topics()
        data_topics = [t for t, info in known.items() if info.payload in _KIND_OF_PAYLOAD]
        for t in topics or []:
            if t not in data_topics:
                raise SourceUriError(f"{uri}: topic {t!r}: expected one of the log's topics {data_topics}")
        self.topics = list(topics) if topics else data_topics
        kinds = {_KIND_OF_PAYLOAD[known[t].payload] for t in self.topics}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"
        try:
            self.calibration = self.reader.calibration()
        except InputError:
            self.calibration = None
        self._clock = clock
        self._stop = threading.Event()
        self._messages = 0

    def __iter__(self) -> Iterator[Message]:
        from edgefuse.logs.replay import replay

        pairs = self.reader.messages(topics=self.topics)
        for _topic, msg in replay(pairs, self.rate, clock=self._clock, sleep=self._stop.wait):
            if self._stop.is_set():
                return
            self._messages += 1
            yield msg

    def stats(self) -> dict[str, int]:
        out = {"messages": self._messages, "truncated": int(bool(self.reader.truncated))}
        for e in self.reader.errors:
            where = getattr(e, "where", "")
            reason = "bad_chunk" if "chunk" in where else "bad_message" if "topic" in where else "other"
            out[f"error.{reason}"] = out.get(f"error.{reason}", 0) + 1
        return out

    def close(self) -> None:
        self._stop.set()


def open_mcap(uri: str, base_dir: Path | None = None) -> McapSource:
    """Open ``mcap://LOG.mcap?topic=…&rate=…`` (module doc)."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    if not path:
        raise SourceUriError(f"{uri}: path: expected mcap://LOG.mcap")
    topics: list[str] = []
    rate: float | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "topic":
            topics.append(value)
        elif key == "rate":
            rate = _rate(uri, value)
        else:
            raise SourceUriError(f"{uri}: parameter {key!r}: expected topic= or rate=")
    p = Path(path)
    if base_dir is not None and not p.is_absolute():
        p = Path(base_dir) / p
    return McapSource(uri, p, topics or None, rate)
