"""What every source shares: the :class:`Source` interface, :class:`AdaptedSource` (a driver's source
object behind that interface), :class:`Backoff` for reconnecting devices, and :class:`SourceReader`
(one source iterated in a thread into a bounded queue).

A :class:`Source` is an iterable of :class:`~edgefuse.types.Message` with ``stats()`` (flat counters,
see below), ``close()``, a context manager, ``kind`` (``camera`` ``lidar`` ``radar`` ``gnss``
``odometry`` ``imu`` or ``mixed``) and ``live`` (True: the data arrive whether or not we read them,
so a slow reader must drop; False: a file or log, read at the reader's pace). Sources are opened by URI
with :func:`edgefuse.sources.open_source`, above the drivers, the logs and the simulator.

``stats()`` keys (all ``int``): ``messages`` (delivered by this source), ``dropped.<reason>``
(messages or packets lost, e.g. ``dropped.oldest`` when a bounded queue was full),
``error.<reason>`` (input that did not decode, by the package's reason), and the package's other
counters under their own names. :func:`decode_errors` and :func:`drops` pick the two groups out.

:class:`SourceReader` never blocks the caller on a silent device for longer than its own timeout
(``inspect``, ``record`` and the pipeline use it).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgefuse.errors import InputError
from edgefuse.types import CompressedImage, Image, Imu, Message, Odometry, PointCloud, RadarScan


class SourceUriError(InputError):
    """A URI that cannot be opened as a source: names the URI and what was expected."""


@dataclass
class Backoff:
    """Exponential backoff for reconnecting devices: delays ``initial_s, initial_s·factor, …`` capped at
    ``max_s``; ``reset()`` after a success. The cap is 1 s: opening a missing port or socket costs
    microseconds, while a device that comes back after a long outage (a radar restarted 6 s later: 5 s of
    it waited out by a 5 s cap) should be read again within a second."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 1.0
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
