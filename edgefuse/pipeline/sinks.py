"""Where a frame's detections go: :class:`UdpSink` (JSON datagrams for a downstream consumer),
:class:`ConsoleSink` (a line per frame) and :class:`McapSink` (the run's MCAP log: calibration, inputs,
detections — written on its own thread, split by :class:`LogPolicy`, stopped cleanly when the disk nears
full). A sink has ``publish(frame)`` (``realtime`` sinks, before the publish stamp) or
``write_input``/``write_detections`` (the log), and ``close()``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from edgefuse.errors import InputError
from edgefuse.frames import NS, Frame
from edgefuse.types import Detections, Message

#: Topic and sensor id of the pipeline's detections in its MCAP log.
DETECTIONS_SENSOR = "fusion"
DETECTIONS_TOPIC = f"/{DETECTIONS_SENSOR}/detections"


def detections_json(frame: Frame) -> dict:
    """One frame's detections as the UDP sink sends them."""
    d = frame.detections
    return {
        "stamp_ns": frame.frameset.stamp_ns,
        "frame": d.frame if d is not None else "base_link",
        "missing": list(frame.frameset.missing),
        "detections": [
            {
                "label": o.label,
                "score": round(o.score, 4),
                "center": [round(float(v), 3) for v in o.box.center],
                "size": [round(float(v), 3) for v in o.box.size],
                "yaw": round(float(o.box.yaw), 4),
                "velocity": [round(float(v), 3) for v in o.velocity],
            }
            for o in (d.objects if d is not None else ())
        ],
    }


class UdpSink:
    """Sends each frame's detections as one JSON datagram to ``host:port`` (a downstream consumer);
    a datagram over 60 kB keeps the highest-scoring detections that fit (counted as ``truncated``)."""

    realtime = True

    def __init__(self, host: str, port: int):
        self.addr = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = self.errors = self.truncated = 0

    def publish(self, frame: Frame) -> None:
        doc = detections_json(frame)
        data = json.dumps(doc).encode()
        while len(data) > 60_000 and doc["detections"]:
            doc["detections"] = doc["detections"][: len(doc["detections"]) // 2]
            data = json.dumps(doc).encode()
            self.truncated += 1
        try:
            self.sock.sendto(data, self.addr)
            self.sent += 1
        except OSError:
            self.errors += 1

    def close(self) -> None:
        self.sock.close()


class ConsoleSink:
    """One line per frame: stamp, detections, top classes (for watching a run)."""

    realtime = True

    def __init__(self, stream: TextIO = sys.stdout):
        self.stream = stream

    def publish(self, frame: Frame) -> None:
        d = frame.detections
        n = len(d.objects) if d is not None else 0
        top = ", ".join(f"{o.label} {o.score:.2f}" for o in (d.objects[:3] if d is not None else ()))
        print(
            f"frame {frame.frameset.stamp_ns / NS:.3f} s: {n} detections  {top}", file=self.stream, flush=True
        )

    def close(self) -> None:
        pass


MB = 1_000_000  # the unit of --split-size and --min-free-mb


def disk_free(path: str | Path) -> int:
    """Free bytes for an unprivileged writer on the file system holding ``path`` (the default
    free-space probe of :class:`McapSink`)."""
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class LogPolicy:
    """How :class:`McapSink` writes the run's log (``run``/``replay`` options in brackets).

    ``split_size_bytes`` / ``split_duration_ns`` (``--split-size MB``, ``--split-duration S``): start a new
    file at that size or span of log time (:class:`~edgefuse.logs.recorder.SplitRecorder`; None = no
    limit). ``min_free_bytes`` (``--min-free-mb``): below this much free disk the inputs stop being
    logged (detections go on); ``reserve_bytes``: below this the log is closed (room left for the open
    chunk, ≤ 4 MiB, and the summary), so it ends complete instead of cut by a full disk.
    ``queue_messages`` / ``queue_bytes``: inputs waiting for the writer thread; an input past either bound
    is dropped and counted (``queue_full``). ``queue_detections``: the same for detections (small; only
    a writer stuck for minutes fills it)."""

    split_size_bytes: int | None = None
    split_duration_ns: int | None = None
    min_free_bytes: int = 512 * MB
    reserve_bytes: int = 16 * MB
    queue_messages: int = 4096
    queue_bytes: int = 256 * MB
    queue_detections: int = 4096


def _nbytes(msg: Message) -> int:
    """About what ``msg`` holds in memory (its payload's array or bytes; 256 for small payloads)."""
    data = getattr(msg.payload, "data", None)
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    return len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 256


class McapSink:
    """The run's MCAP log: the calibration, the inputs (when ``inputs``) and the detections on
    :data:`DETECTIONS_TOPIC` (stamp = frame reference stamp; log time = ``recv_ns`` given).

    Writing happens on the sink's own thread (``pipeline log``, at a lower CPU priority where the OS
    allows): :meth:`write_input` and :meth:`write_detections` only queue the message, so logging never
    holds up the thread that calls them. Inputs and detections queue apart, each bounded by
    ``policy`` (:class:`LogPolicy`); a message past the bound is dropped and counted (``queue_full``) —
    or, with ``block`` (deterministic replay: every message logged), waits for room. Before each write
    the writer asks ``free_bytes(directory)`` (injectable; :func:`disk_free`): below
    ``policy.min_free_bytes`` the inputs stop (``disk_low``), below ``policy.reserve_bytes`` the log is
    closed (``stopped`` says why; later messages count as ``log_stopped``). A write that fails anyway
    (``OSError``) ends the log there (``write_error``): its closed chunks stay readable. Nothing here
    raises into the pipeline; :meth:`stats` has the counts. :meth:`close` writes what is queued, then
    the summary and footer (every file is complete). ``metadata`` (name → key/value strings, e.g. the
    clock record of :mod:`edgefuse.logs.clock`) is written into every file before the first message."""

    realtime = False

    def __init__(
        self,
        path: str | Path,
        calibration=None,
        kit=None,
        inputs: bool = False,
        *,
        policy: LogPolicy = LogPolicy(),
        block: bool = False,
        free_bytes: Callable[[str], int] = disk_free,
        metadata: dict[str, dict[str, str]] | None = None,
    ):
        from edgefuse.logs.recorder import SplitRecorder

        self.path = Path(path)
        self.inputs = inputs
        self.policy, self.block, self._free = policy, block, free_bytes
        self.rec = SplitRecorder(self.path, policy.split_size_bytes, policy.split_duration_ns)
        if calibration is not None:
            frames = {s.id: s.frame for s in kit.sensors} if kit is not None else None
            self.rec.write_calibration(calibration, frames=frames)
        for name, data in (metadata or {}).items():  # written before the writer thread starts
            self.rec.write_metadata(name, data)
        self.written = {"inputs": 0, "detections": 0}
        self.dropped: dict[str, dict[str, int]] = {"inputs": {}, "detections": {}}
        self.inputs_stopped: str | None = None  # why inputs are no longer logged
        self.stopped: str | None = None  # why the log was closed before the end of the run
        self.last_error: str | None = None
        self.free_bytes: int | None = None  # at the last write
        self._q: deque[tuple[str, Message, int]] = deque()
        self._queued = {"inputs": 0, "detections": 0}
        self._queued_bytes = 0
        self.max_depth = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="pipeline log", daemon=True)
        self._thread.start()

    # -- producers (any thread)

    def write_input(self, msg: Message) -> None:
        """Queue one input message for the log (dropped and counted when the queue is full)."""
        if self.inputs:
            self._put("inputs", msg)

    def write_detections(self, frame: Frame, recv_ns: int) -> None:
        """Queue the frame's detections (an empty array when it has none) for the log."""
        d = frame.detections if frame.detections is not None else Detections(frame.frameset.stamp_ns, ())
        self._put("detections", Message(DETECTIONS_SENSOR, frame.frameset.stamp_ns, d, frame="base_link",
                                        recv_ns=max(0, int(recv_ns)), seq=frame.seq))  # fmt: skip

    def _put(self, kind: str, msg: Message) -> None:
        n = _nbytes(msg) if kind == "inputs" else 0
        p = self.policy
        with self._cond:
            while True:
                if self._closing or self.stopped:
                    return self._count(kind, "log_stopped")
                if kind == "inputs" and self.inputs_stopped:
                    return self._count(kind, "disk_low")
                # the byte bound admits one message larger than itself into an empty queue
                over = self._queued_bytes > 0 and self._queued_bytes + n > p.queue_bytes
                bound = p.queue_messages if kind == "inputs" else p.queue_detections
                if self._queued[kind] < bound and not over:
                    break
                if not self.block:
                    return self._count(kind, "queue_full")
                self._cond.wait(0.1)
            self._q.append((kind, msg, n))
            self._queued[kind] += 1
            self._queued_bytes += n
            self.max_depth = max(self.max_depth, self._queued["inputs"])
            self._cond.notify_all()
            return None

    def _count(self, kind: str, reason: str) -> None:
        with self._cond:
            d = self.dropped[kind]
            d[reason] = d.get(reason, 0) + 1

    # -- the writer thread

    def _run(self) -> None:
        try:  # Linux: a thread's own nice value; the pipeline's threads come first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            with self._cond:
                if not self._q and not self._closing:
                    self._cond.wait(0.25)
                if not self._q:
                    if self._closing:
                        break
                    item = None
                else:
                    item = self._q.popleft()
                    self._queued[item[0]] -= 1
                    self._queued_bytes -= item[2]
                    self._cond.notify_all()
            if item is None:
                self._guard(self.rec.tick)  # a quiet log still closes its chunk within the interval
            else:
                self._write(item[0], item[1])
        if not self.stopped:
            self._guard(self.rec.close)

    def _write(self, kind: str, msg: Message) -> None:
        if self.stopped:
            return self._count(kind, "log_stopped")
        p = self.policy
        try:
            self.free_bytes = free = int(self._free(str(self.path.parent)))
        except Exception as e:  # noqa: BLE001 - unknown: write, and say why
            free = None
            self.last_error = f"free-space probe: {type(e).__name__}: {e}"
        if free is not None and free < p.reserve_bytes:
            self._stop(f"disk nearly full: {free / MB:.1f} MB free < {p.reserve_bytes / MB:g} MB reserve; "
                       "the log was closed")  # fmt: skip
            return self._count(kind, "log_stopped")
        if kind == "inputs" and free is not None and free < p.min_free_bytes:
            if self.inputs_stopped is None:
                self.inputs_stopped = (f"disk low: {free / MB:.1f} MB free < --min-free-mb "
                                       f"{p.min_free_bytes / MB:g}; inputs no longer logged")  # fmt: skip
            return self._count(kind, "disk_low")
        try:
            self.rec.write(msg)
        except InputError as e:  # a message MCAP cannot hold (named in the error): skip it
            self.last_error = str(e)
            return self._count(kind, "bad_message")
        except Exception as e:  # noqa: BLE001 - the disk (OSError) or anything else: the log ends here
            self._count(kind, "write_error")
            return self._fail(e)
        self.written[kind] += 1
        return None

    def _guard(self, fn: Callable[[], object]) -> None:
        """Run a recorder call that writes (tick, close); a failure ends the log with its reason."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        self.last_error = f"{self.rec.rec.path}: {type(e).__name__}: {e}"
        self.stopped = f"write failed ({e}); {self.rec.rec.path} ends at its last complete chunk"
        self.rec.abort()

    def _stop(self, why: str) -> None:
        self.stopped = why
        self._guard(self.rec.close)

    # -- the pipeline's side

    def close(self) -> None:
        """Write what is queued, then close the log (summary and footer). Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def queue(self) -> dict:
        """The input queue: depth, high-water mark and bound (messages)."""
        q = self._queued["inputs"]
        return {"depth": q, "max_depth": self.max_depth, "bound": self.policy.queue_messages}

    def stats(self) -> dict:
        """What the log holds and lost: files, bytes, messages written and dropped (kind → reason → n),
        the input queue, free disk at the last write, and why inputs or the whole log stopped."""
        p = self.policy
        return {
            "files": [str(f) for f in self.rec.files],
            "inputs": self.inputs,
            "bytes": self.rec.size_bytes,
            "written": dict(self.written),
            "dropped": {k: dict(sorted(v.items())) for k, v in self.dropped.items()},
            "queue": self.queue(),
            "split_size_mb": None if p.split_size_bytes is None else p.split_size_bytes / MB,
            "split_duration_s": None if p.split_duration_ns is None else p.split_duration_ns / NS,
            "free_mb": None if self.free_bytes is None else round(self.free_bytes / MB, 1),
            "inputs_stopped": self.inputs_stopped,
            "stopped": self.stopped,
            "last_error": self.last_error,
        }


def make_sinks(udp: str | None, console: bool) -> list:
    """The realtime sinks the ``--udp HOST:PORT`` and ``--console`` options ask for."""
    sinks: list = []
    if udp:
        host, _, port = udp.rpartition(":")
        if not port.isdigit():
            raise InputError(f"--udp {udp!r}: expected HOST:PORT, e.g. 127.0.0.1:5600")
        sinks.append(UdpSink(host or "127.0.0.1", int(port)))
    if console:
        sinks.append(ConsoleSink())
    return sinks
