"""The live-camera grabber: a thread that reads frames, stamps each at capture, keeps only the newest and
reconnects with exponential backoff when the device fails. No OpenCV import: it drives any object with
OpenCV's capture interface (``read() -> (ok, frame)``, ``isOpened()``, ``release()``), so tests use a
fake capture and sources pass a ``cv2.VideoCapture``.

Policy:
- **Stamp at capture**: each frame is stamped with ``clock()`` (host monotonic ns, injectable) as soon as
  ``read()`` returns it — before any conversion, queueing or waiting for the consumer. A capture that
  stamps its frames itself (:class:`StampedCapture`, e.g. the MJPEG reader: the receive time of a part's
  last byte, and the camera's own capture time from its header) gives those stamps instead.
- **Newest frame only**: a one-frame slot. A frame the consumer did not take before the next one arrived
  is dropped and counted (``dropped``); a consumer never sees a stale backlog.
- **Outages**: a failed ``read()`` (``ok`` false, no frame, an exception) or a capture that is not open
  starts an outage: the capture is released and re-opened with exponential backoff (``Backoff``:
  ``initial_s``·``factor``ⁿ, capped at ``max_s``). The outage is logged once, with its reason, when it
  starts, and once when the device is back — when a frame has been read again, so a device that opens
  but does not deliver stays in the same outage; ``outages`` and ``reconnects`` count them.
- **Never blocks the caller forever**: :meth:`Grabber.latest` waits at most its timeout;
  :meth:`Grabber.stop` waits at most its timeout for the thread (which is a daemon) and says whether it
  ended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from edgefuse.adapters.base import Backoff

log = logging.getLogger("edgefuse.adapters.camera")


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the grabber uses."""

    def read(self) -> tuple[bool, Any]: ...

    def isOpened(self) -> bool: ...

    def release(self) -> None: ...


@runtime_checkable
class StampedCapture(Capture, Protocol):
    """A capture that stamps its frames: ``last_stamps()`` → (host receive ns, the camera's own capture
    stamp in ns or ``None``) of the frame ``read()`` returned last."""

    def last_stamps(self) -> tuple[int, int | None]: ...


@dataclass(frozen=True)
class GrabbedFrame:
    """A frame as the device gave it (an OpenCV BGR array, or a capture's compressed frame), its host
    capture stamp, its running number and the camera's own stamp of it (``sensor_ns``; ``None``: the
    camera gives none)."""

    frame: Any
    stamp_ns: int
    seq: int
    sensor_ns: int | None = None


@dataclass
class GrabberStats:
    """Counters of one grabber (all since start)."""

    frames: int = 0  # frames read from the device
    delivered: int = 0  # frames handed to the consumer
    dropped: int = 0  # frames overwritten before the consumer took them
    read_failures: int = 0  # failed read() calls / exceptions
    outages: int = 0  # times the device went away
    reconnects: int = 0  # successful re-opens after an outage
    open_failures: int = 0  # failed re-open attempts
    last_error: str | None = None
    connected: bool = False


class Grabber:
    """Reads ``open_capture()`` in a thread; see the module doc for the policy.

    ``open_capture``: returns a new, opened capture (or one whose ``isOpened()`` is false, or raises —
    both count as a failed attempt). ``clock``: int ns, the capture stamp. ``name``: used in log lines.
    ``capture``: an already-opened capture to start with (else the thread opens one).
    """

    def __init__(
        self,
        open_capture: Callable[[], Capture],
        *,
        name: str = "camera",
        clock: Callable[[], int] = time.monotonic_ns,
        backoff: Backoff | None = None,
        capture: Capture | None = None,
    ) -> None:
        self._open = open_capture
        self.name = name
        self._clock = clock
        self.backoff = backoff if backoff is not None else Backoff()
        self.stats = GrabberStats()
        self._cap: Capture | None = capture
        self._cond = threading.Condition()
        self._slot: GrabbedFrame | None = None
        self._last_seq = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_start_ns: int | None = None

    # ------------------------------------------------------------ consumer side

    def latest(self, timeout_s: float) -> GrabbedFrame | None:
        """The newest frame not yet delivered; waits up to ``timeout_s`` for one, else ``None``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while self._slot is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            item, self._slot = self._slot, None
            self.stats.delivered += 1
            return item

    # ------------------------------------------------------------ device side

    def _put(self, frame: Any, stamp_ns: int, sensor_ns: int | None) -> None:
        with self._cond:
            self._last_seq += 1
            if self._slot is not None:
                self.stats.dropped += 1
            self._slot = GrabbedFrame(frame, stamp_ns, self._last_seq, sensor_ns)
            self.stats.frames += 1
            self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        """Enter (or stay in) an outage: release the capture and log once per outage."""
        self.stats.last_error = reason
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception as e:  # a dying device may fail to release; it is gone either way
                log.debug("%s: release failed: %s", self.name, e)
            self._cap = None
        if self._outage_start_ns is None:
            self._outage_start_ns = self._clock()
            self.stats.outages += 1
            self.stats.connected = False
            log.warning("%s: camera lost (%s); reconnecting with backoff", self.name, reason)

    def step(self) -> float:
        """One iteration of the grab loop: open if needed, else read one frame. Returns how long to wait
        before the next step (seconds; 0 after a frame). The thread calls this in a loop; tests call it
        directly."""
        if self._cap is None:
            try:
                cap = self._open()
                ok = bool(cap.isOpened())
            except Exception as e:
                cap, ok = None, False
                why = f"open failed: {type(e).__name__}: {e}"
            else:
                why = "open failed: the device did not open"
            if not ok:
                if cap is not None:
                    try:
                        cap.release()
                    except Exception as e:
                        log.debug("%s: release failed: %s", self.name, e)
                self.stats.open_failures += 1
                self._fail(why)
                return self.backoff.next_delay()
            self._cap = cap
        try:
            ok, frame = self._cap.read()
            stamp, sensor = self._clock(), None
            if ok and isinstance(self._cap, StampedCapture):
                stamp, sensor = self._cap.last_stamps()
        except Exception as e:
            self.stats.read_failures += 1
            self._fail(f"read raised {type(e).__name__}: {e}")
            return self.backoff.next_delay()
        if not ok or frame is None:
            self.stats.read_failures += 1
            opened = False
            try:
                opened = bool(self._cap.isOpened())
            except Exception as e:
                log.debug("%s: isOpened failed: %s", self.name, e)
            self._fail("read returned no frame" + ("" if opened else " and the device is closed"))
            return self.backoff.next_delay()
        if self._outage_start_ns is not None:  # back only once a frame came (a flapping device stays lost)
            lost_s = (stamp - self._outage_start_ns) / 1e9
            self.stats.reconnects += 1
            log.warning("%s: camera back after %.2f s (%d attempts)", self.name, lost_s, self.backoff.attempt)
            self._outage_start_ns = None
        self.backoff.reset()
        self.stats.connected = True
        self._put(frame, stamp, sensor)
        return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as e:  # a bug in a capture backend must not kill the loop silently
                log.exception("%s: grab loop error", self.name)
                self._fail(f"{type(e).__name__}: {e}")
                wait = self.backoff.next_delay()
            if wait > 0:
                self._stop.wait(wait)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"grabber-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop the thread and release the device. Returns True when the thread ended within the
        timeout (a driver stuck inside ``read()`` keeps a daemon thread until it returns)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        ended = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            ended = not self._thread.is_alive()
        if ended and self._cap is not None:
            self._cap.release()
            self._cap = None
        if not ended:
            log.warning("%s: grabber thread still inside read() after %.1f s", self.name, timeout_s)
        self.stats.connected = False
        return ended
