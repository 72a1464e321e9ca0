"""One entry point for every sensor source: ``open_source(uri) -> Source``.

A :class:`Source` is an iterable of :class:`~edgefuse.types.Message` with ``stats()`` (flat counters,
see below), ``close()``, a context manager, ``kind`` (``camera`` ``lidar`` ``radar`` ``gnss``
``odometry`` ``imu`` or ``mixed``) and ``live`` (True: the data arrive whether or not we read them,
so a slow reader must drop; False: a file or log, read at the reader's pace).

Dispatch (:func:`open_source`) is one ``if/elif`` over the URI scheme that imports the one package
the scheme needs; each package's source object is wrapped in :class:`AdaptedSource` only to give it
this interface (its messages pass through untouched).

``stats()`` keys (all ``int``): ``messages`` (delivered by this source), ``dropped.<reason>``
(messages or packets lost, e.g. ``dropped.oldest`` when a bounded queue was full),
``error.<reason>`` (input that did not decode, by the package's reason), and the package's other
counters under their own names. :func:`decode_errors` and :func:`drops` pick the two groups out.

:class:`SourceReader` runs one source's iteration in a thread into a bounded queue, so the caller
never blocks on a silent device for longer than its own timeout (``inspect`` and ``record`` use it).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from edgefuse.errors import InputError
from edgefuse.types import CompressedImage, Image, Imu, Message, Odometry, PointCloud, RadarScan

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
    "nmea",
    "mcap",
    "sim",
)


class SourceUriError(InputError):
    """A URI :func:`open_source` cannot dispatch: names the URI and the known schemes."""


@dataclass
class Backoff:
    """Exponential backoff for reconnecting devices: delays ``initial_s, initial_s·factor, …`` capped at
    ``max_s``; ``reset()`` after a success."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 5.0
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (seconds); advances the schedule."""
        d = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        return d

    def reset(self) -> None:
        self.attempt = 0


def payload_kind(msg: Message) -> str:
    """The sensor kind a message's payload belongs to (``camera``, ``lidar``, ``radar``, ``odometry``,
    ``imu``, ``detections``)."""
    p = msg.payload
    if isinstance(p, (Image, CompressedImage)):
        return "camera"
    if isinstance(p, PointCloud):
        return "lidar"
    if isinstance(p, RadarScan):
        return "radar"
    if isinstance(p, Odometry):
        return "gnss" if p.frame == "enu" else "odometry"
    if isinstance(p, Imu):
        return "imu"
    return "detections"


class Source(ABC):
    """A stream of Messages from one URI (see module doc). Subclasses implement ``__iter__`` and
    ``stats``; ``close()`` must be safe to call from another thread while ``__iter__`` runs (it makes
    the iteration end soon) and more than once."""

    uri: str = ""
    kind: str = "mixed"
    live: bool = False
    #: the rig calibration the source carries (a log's, the simulator's), else None
    calibration: Any = None

    @abstractmethod
    def __iter__(self) -> Iterator[Message]: ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Flat counters (module doc): ``messages``, ``dropped.<reason>``, ``error.<reason>``, …"""

    def close(self) -> None:  # noqa: B027 (optional: sources with nothing to release keep it)
        """Release the source; idempotent."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_errors(stats: dict[str, int]) -> dict[str, int]:
    """The ``error.<reason>`` counters of a stats dict, keyed by reason (zeros left out)."""
    return {k[6:]: v for k, v in stats.items() if k.startswith("error.") and v}


def drops(stats: dict[str, int]) -> dict[str, int]:
    """The ``dropped.<reason>`` counters of a stats dict, keyed by reason (zeros left out)."""
    return {k[8:]: v for k, v in stats.items() if k.startswith("dropped.") and v}


def flat_counts(prefix: str, counts: dict[str, Any]) -> dict[str, int]:
    """``{prefix + key: int}`` for the integer values of ``counts`` (others left out)."""
    return {
        f"{prefix}{k}": int(v) for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)
    }


class AdaptedSource(Source):
    """Gives a package's source object the :class:`Source` interface: iterates ``inner`` (stopping
    between messages once closed), ``stats()`` = ``messages`` + ``stats_of(inner)``, ``close()`` closes
    ``inner`` (which ends a live package's blocking read)."""

    def __init__(
        self,
        inner: Any,
        uri: str,
        kind: str,
        live: bool,
        stats_of: Callable[[Any], dict[str, int]],
    ):
        self.inner, self.uri, self.kind, self.live = inner, uri, kind, live
        self._stats_of = stats_of
        self._messages = 0
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Message]:
        for msg in self.inner:
            if self._stop.is_set():
                return
            self._messages += 1
            yield msg

    def stats(self) -> dict[str, int]:
        return {"messages": self._messages, **self._stats_of(self.inner)}

    def close(self) -> None:
        self._stop.set()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------- per-package stats → flat counters


def _velodyne_stats(src: Any) -> dict[str, int]:
    s = src.stats
    out = {"packets": s.packets, "points": s.points}
    for reason, n in s.counts.items():
        if reason in ("queue_overflow",):
            out["dropped.packets_oldest"] = n
        elif reason in ("nonfinite_point", "duplicate_dual_return", "idle_timeout"):
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


# ---------------------------------------------------------------- dispatch


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
    elif scheme in ("v4l2", "video", "images", "gst", "csi"):
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
    elif scheme == "mcap":
        from edgefuse.adapters.mcap_source import open_mcap

        return open_mcap(uri, base_dir=base_dir)
    elif scheme == "sim":
        from edgefuse.adapters.mcap_source import open_sim

        return open_sim(uri)
    raise SourceUriError(f"{uri!r}: unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


# ---------------------------------------------------------------- reading in a thread


class SourceReader:
    """Iterates one source in a daemon thread into a bounded queue of ``maxlen`` messages.

    Live sources (``source.live``) drop the oldest queued message when the queue is full and count it
    (``dropped_oldest``); file sources wait for room instead (nothing is lost, the file is read at the
    consumer's pace). An exception from the source ends the reader and is kept in ``error`` (its
    message); ``done`` is True once the source ended and the queue is empty. ``wake`` (shared by
    several readers) is set whenever a message is queued or the reader ends, so one consumer can wait
    on many readers."""

    def __init__(self, source: Source, maxlen: int = 256, wake: threading.Event | None = None):
        if maxlen < 1:
            raise ValueError(f"SourceReader maxlen: expected ≥ 1, got {maxlen}")
        self.source = source
        self.maxlen = int(maxlen)
        self.wake = wake if wake is not None else threading.Event()
        self.dropped_oldest = 0
        self.error: str | None = None
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source {source.uri}", daemon=True)

    def start(self) -> SourceReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for msg in self.source:
                with self._cond:
                    if len(self._queue) >= self.maxlen:
                        if self.source.live:
                            self._queue.popleft()
                            self.dropped_oldest += 1
                        else:
                            while len(self._queue) >= self.maxlen and not self._stop.is_set():
                                self._cond.wait(0.1)
                    if self._stop.is_set():
                        break
                    self._queue.append(msg)
                self.wake.set()
        except Exception as e:  # a source failing mid-stream ends this reader, never the consumer
            self.error = f"{self.source.uri}: {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self._ended = True
            self.wake.set()

    @property
    def ended(self) -> bool:
        """The source's iteration has finished (end of file, error, or stop)."""
        return self._ended

    @property
    def done(self) -> bool:
        """Ended and nothing left in the queue."""
        with self._cond:
            return self._ended and not self._queue

    def drain(self) -> list[Message]:
        """Every queued message, oldest first (never waits)."""
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        return out

    def get(self, timeout_s: float) -> Message | None:
        """The oldest queued message, waiting at most ``timeout_s``; None if none came."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._cond:
                if self._queue:
                    msg = self._queue.popleft()
                    self._cond.notify_all()
                    return msg
                if self._ended:
                    return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.wake.wait(min(left, 0.1))
            self.wake.clear()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Close the source and wait at most ``timeout_s`` for the thread; True if it ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        try:
            self.source.close()
        except Exception as e:  # closing a broken device: report, go on
            self.error = self.error or f"{self.source.uri}: close failed: {e}"
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()


def read_messages(
    reader: SourceReader,
    max_messages: int | None = None,
    duration_s: float | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    poll_s: float = 0.1,
) -> Iterator[Message]:
    """The messages of a started ``reader`` until its source ends, ``max_messages`` came or
    ``duration_s`` seconds of ``clock`` passed; a silent live source never holds the caller more than
    ``poll_s`` past the deadline. The caller stops the reader (and reads its ``error``)."""
    t0 = clock()
    n = 0
    while max_messages is None or n < max_messages:
        if duration_s is not None and clock() - t0 >= duration_s * 1e9:
            return
        msg = reader.get(poll_s)
        if msg is None:
            if reader.done:
                return
            continue
        n += 1
        yield msg
