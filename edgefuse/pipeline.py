"""The real-time pipeline: sources → stamp mapping + synchronizer → preprocess → backend → decode → sinks.

**Pure cores** (no threads, no clock reading: time comes in as arguments, so replay = live):

- :class:`FrameCore` ``update(now_ns, [(msg, receive_ns), …]) -> [Frame]``: maps stamps
  (:class:`~edgefuse.sync.clock.StampMapper`), keeps the odometry for the ego trajectory, synchronizes
  (:class:`~edgefuse.sync.synchronizer.Synchronizer`, reference policy) and keeps per-sensor health
  (count, rate, silence) — all in the *message clock* (the host clock live, the log's clock on replay).
  Each frame gets a :class:`~edgefuse.profiling.LatencyRecord` whose ``receive_ns`` is the host receive
  time of the last input it used and whose ``reference_ns`` is the reference stamp moved onto the host
  clock.
- :func:`preprocess` (FrameSet → feed, :class:`~edgefuse.tensors.TensorBuilder`), :func:`infer`
  (``backend.infer``), :func:`decode` (→ :class:`~edgefuse.types.Detections`): each stamps its start and
  end into the frame's record from the ``clock`` it is given.

**Shell** (:class:`Pipeline`): one :class:`~edgefuse.adapters.SourceReader` thread per source, a
sync/preprocess thread, an inference thread and a sink thread, joined by bounded queues that drop the
oldest frame (counted as ``queue_overflow`` / ``sink_overflow``). Each frame has a deadline
(``receive_ns + deadline_ns``): a frame that would start preprocessing or inference after it is skipped
and counted (``deadline``), never queued behind fresher work. Health (per-sensor rates, silent sensors,
reader drops, queue depths and high-water marks) goes into the report and on a status line.
:func:`run_pipeline` installs SIGINT/SIGTERM handlers that stop it gracefully: readers stop, queued
frames finish, every sink is flushed and closed (the MCAP log always ends complete).

**Deterministic mode** (:func:`run_deterministic`): one thread, every message in log order with the
log's receive stamp as ``now``, no drops, no deadline: the same log gives the same detection bytes.

Entry points: :func:`run_replay` (``edgefuse replay``), :func:`run_live` (``edgefuse run``),
:func:`profile_model` (``edgefuse profile``). Backends follow the ``edgefuse.engine.backends`` contract
(``manifest``, ``name``, ``infer(feed) -> dict``, ``close()``), passed in (:func:`load_backend` opens one).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgefuse.errors import InputError
from edgefuse.profiling import LatencyRecord
from edgefuse.types import Detections, FrameSet, Message, Odometry

MS = 1_000_000
NS = 1_000_000_000
Clock = Callable[[], int]
#: Topic and sensor id of the pipeline's detections in its MCAP log.
DETECTIONS_SENSOR = "fusion"
DETECTIONS_TOPIC = f"/{DETECTIONS_SENSOR}/detections"


@dataclass(frozen=True)
class PipelineConfig:
    """``deadline_ns``: a frame must start inference within this of its last input's receive time, else
    it is skipped (``deadline``); ``latency_budget_ns``: how long the synchronizer waits for a late
    sensor; ``frame_queue`` / ``out_queue``: bounds of the preprocess → inference and inference → sink
    queues (drop oldest); ``reader_queue``: per-source reader bound; ``score_threshold``: detections
    below it are left out; ``silence_ns``: a sensor with nothing for this long (message clock) is
    ``silent``; ``status_period_ns``: status line period (host clock); ``max_records``: latency records
    kept (the newest; the report's percentiles cover them, ``frames_total`` counts every frame)."""

    deadline_ns: int = 100 * MS
    latency_budget_ns: int = 100 * MS
    frame_queue: int = 2
    out_queue: int = 8
    reader_queue: int = 256
    score_threshold: float = 0.1
    silence_ns: int = 1 * NS
    status_period_ns: int = 1 * NS
    max_records: int = 100_000

    def __post_init__(self) -> None:
        for name in (
            "deadline_ns",
            "latency_budget_ns",
            "frame_queue",
            "out_queue",
            "reader_queue",
            "silence_ns",
        ):
            if getattr(self, name) <= 0:
                raise InputError(f"PipelineConfig.{name}: expected > 0, got {getattr(self, name)}")


# ================================================================ pure cores


@dataclass
class Frame:
    """One frame through the pipeline: the synchronized inputs, the ego trajectory (or None), the
    latency record, and what each stage made."""

    seq: int
    frameset: FrameSet
    ego: Any
    record: LatencyRecord
    last_recv_ns: int  # message clock: receive stamp of the last input (deterministic output stamp)
    feed: dict[str, np.ndarray] | None = None
    outputs: dict[str, np.ndarray] | None = None
    detections: Detections | None = None


@dataclass
class SensorHealth:
    """Per-sensor counters in the message clock."""

    messages: int = 0
    last_ns: int | None = None
    times: deque = field(default_factory=deque)


class FrameCore:
    """Stamp mapping, ego motion, synchronization and sensor health (module doc). Pure: ``now_ns`` is
    the message clock, every message comes with its host receive time."""

    def __init__(self, kit, calibration, config: PipelineConfig, health_window_ns: int = 2 * NS):
        from edgefuse.sync.clock import StampMapper
        from edgefuse.sync.synchronizer import Synchronizer, SyncSpec

        self.kit, self.config = kit, config
        self.mapper = StampMapper(kit, calibration)
        self.spec = SyncSpec.from_kit(kit, latency_budget_ns=config.latency_budget_ns)
        self.sync = Synchronizer(self.spec)
        self.kit_ids = {s.id for s in kit.sensors}
        self.health_window_ns = int(health_window_ns)
        self.sensors: dict[str, SensorHealth] = {s.id: SensorHealth() for s in kit.sensors}
        self.ignored: dict[str, int] = {}
        self._odom: deque[Message] = deque(maxlen=100)
        self._recv: dict[tuple[str, int], tuple[int, int]] = {}  # (sensor, mapped stamp) → (host, msg recv)
        self._seq = 0

    def update(self, now_ns: int, items: Iterable[tuple[Message, int]]) -> list[Frame]:
        mapped = []
        for msg, host_ns in items:
            sid = msg.sensor_id
            if sid not in self.kit_ids:
                self.ignored[sid] = self.ignored.get(sid, 0) + 1
                continue
            h = self.sensors[sid]
            h.messages += 1
            h.last_ns = msg.recv_ns
            h.times.append(msg.recv_ns)
            while h.times[0] <= msg.recv_ns - self.health_window_ns:
                h.times.popleft()
            m = self.mapper.map(msg)
            if isinstance(m.payload, Odometry):
                if not self._odom or m.stamp_ns > self._odom[-1].stamp_ns:
                    self._odom.append(m)
                continue
            if sid in self.spec.sensors:
                self._recv[(sid, m.stamp_ns)] = (int(host_ns), msg.recv_ns)
                mapped.append(m)
        return self._frames(self.sync.update(int(now_ns), mapped))

    def flush(self, now_ns: int) -> list[Frame]:
        return self._frames(self.sync.flush(int(now_ns)))

    def _frames(self, framesets: list[FrameSet]) -> list[Frame]:
        from edgefuse.motion import EgoTrajectory

        out = []
        if not framesets:
            return out
        ego = EgoTrajectory.from_odometry(self._odom) if len(self._odom) else None
        for fs in framesets:
            hosts, recvs = [], []
            for sid, m in fs.messages.items():
                if m is None:
                    continue
                host, recv = self._recv.get((sid, m.stamp_ns), (None, m.recv_ns))
                if host is not None:
                    hosts.append(host)
                recvs.append(recv)
            ref = fs.messages.get(self.spec.reference)
            last_host = max(hosts) if hosts else 0
            if ref is not None and (self.spec.reference, ref.stamp_ns) in self._recv:
                host, recv = self._recv[(self.spec.reference, ref.stamp_ns)]
                reference_host = fs.stamp_ns + (host - recv)
            else:
                reference_host = last_host - (max(recvs) - fs.stamp_ns if recvs else 0)
            rec = LatencyRecord(
                stamp_ns=fs.stamp_ns, reference_ns=int(reference_host), receive_ns=int(last_host)
            )
            rec.deadline_ns = rec.receive_ns + self.config.deadline_ns
            out.append(Frame(self._seq, fs, ego, rec, max(recvs) if recvs else fs.stamp_ns))
            self._seq += 1
        oldest = framesets[-1].stamp_ns - 10 * NS
        for k in [k for k in self._recv if k[1] < oldest]:
            del self._recv[k]
        return out

    def health(self, now_ns: int) -> dict[str, dict]:
        """Sensor id → messages, rate_hz over the health window, last message (message clock), status
        (``ok``, ``silent``: nothing for ``silence_ns``, ``never``: nothing yet), frames missing it."""
        out = {}
        missing = self.sync.counters.frames_missing
        for sid, h in self.sensors.items():
            while h.times and h.times[0] <= now_ns - self.health_window_ns:
                h.times.popleft()
            if h.last_ns is None:
                status = "never"
            elif now_ns - h.last_ns > self.config.silence_ns:
                status = "silent"
            else:
                status = "ok"
            out[sid] = {
                "messages": h.messages,
                "rate_hz": round(len(h.times) * NS / self.health_window_ns, 2),
                "status": status,
                "silent_for_s": None if h.last_ns is None else round(max(0, now_ns - h.last_ns) / NS, 3),
                "frames_missing": int(missing.get(sid, 0)),
            }
        return out


def preprocess(frame: Frame, builder, clock: Clock) -> None:
    """FrameSet (+ ego) → the batch-1 feed (``frame.feed``); stamps ``preprocess_start/end``."""
    from edgefuse.model.io import feed_from_inputs

    frame.record.preprocess_start_ns = clock()
    inputs = builder.build(frame.frameset, frame.ego)
    frame.feed = {k: v[None] for k, v in feed_from_inputs(inputs).items()}
    frame.record.preprocess_end_ns = clock()


def infer(frame: Frame, backend, clock: Clock) -> None:
    """``backend.infer(feed)`` → ``frame.outputs``; stamps ``infer_start/end``; the feed is released."""
    frame.record.infer_start_ns = clock()
    frame.outputs = backend.infer(frame.feed)
    frame.feed = None
    frame.record.infer_end_ns = clock()


def decode(frame: Frame, classes: tuple[str, ...], score_threshold: float, clock: Clock) -> None:
    """Batch-1 outputs ``boxes`` (1,K,9), ``scores`` (1,K), ``labels`` (1,K) → ``frame.detections``
    (base_link, the frame's reference stamp); stamps ``decode_start/end``."""
    from edgefuse.model.decode import OutputError, to_detections

    frame.record.decode_start_ns = clock()
    o = frame.outputs or {}
    for name in ("boxes", "scores", "labels"):
        if name not in o:
            raise OutputError(f"backend output {name!r}: missing; got {sorted(o)}")
    frame.detections = to_detections(
        o["boxes"][0], o["scores"][0], o["labels"][0], frame.frameset.stamp_ns, classes, score_threshold
    )
    frame.outputs = None
    frame.record.decode_end_ns = clock()


def warmup(builder, backend) -> None:
    """One empty frame through preprocessing and the backend, so that kernel compilation (numba) and the
    backend's first-run allocations happen before the first real frame is timed."""
    from edgefuse.model.io import feed_from_inputs

    inputs = builder.build(FrameSet(0, {}), None)
    backend.infer({k: v[None] for k, v in feed_from_inputs(inputs).items()})


# ================================================================ sinks


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


class McapSink:
    """The run's MCAP log: the calibration, the inputs (when ``inputs``) and the detections on
    :data:`DETECTIONS_TOPIC` (stamp = frame reference stamp; log time = ``recv_ns`` given). Closing
    writes the summary and footer (the log is complete)."""

    realtime = False

    def __init__(self, path: str | Path, calibration=None, kit=None, inputs: bool = False):
        from edgefuse.logs import Recorder

        self.path = Path(path)
        self.rec = Recorder(self.path)
        self.inputs = inputs
        self.written = 0
        self.errors = 0
        if calibration is not None:
            frames = {s.id: s.frame for s in kit.sensors} if kit is not None else None
            self.rec.write_calibration(calibration, frames=frames)

    def write_input(self, msg: Message) -> None:
        try:
            self.rec.write(msg)
        except InputError:
            self.errors += 1

    def write_detections(self, frame: Frame, recv_ns: int) -> None:
        d = frame.detections if frame.detections is not None else Detections(frame.frameset.stamp_ns, ())
        self.rec.write(Message(DETECTIONS_SENSOR, frame.frameset.stamp_ns, d, recv_ns=max(0, int(recv_ns)),
                               frame="base_link", seq=frame.seq))  # fmt: skip
        self.written += 1

    def tick(self) -> None:
        self.rec.tick()

    def close(self) -> None:
        self.rec.close()


# ================================================================ bounded queue


_END = object()  # what a closed, empty DropQueue returns


class DropQueue:
    """A bounded FIFO that drops its oldest item when full (``put`` returns the dropped item) and keeps
    its high-water mark (``max_depth`` never exceeds ``maxlen``)."""

    def __init__(self, maxlen: int):
        self.maxlen = int(maxlen)
        self._q: deque = deque()
        self._cond = threading.Condition()
        self.max_depth = 0
        self.dropped = 0
        self._closed = False

    def put(self, item) -> Any:
        with self._cond:
            old = None
            if len(self._q) >= self.maxlen:
                old = self._q.popleft()
                self.dropped += 1
            self._q.append(item)
            self.max_depth = max(self.max_depth, len(self._q))
            self._cond.notify()
            return old

    def get(self, timeout_s: float) -> Any:
        """The oldest item; None if none came within ``timeout_s``; :data:`_END` once closed and empty."""
        with self._cond:
            if not self._q and not self._closed:
                self._cond.wait(timeout_s)
            if self._q:
                return self._q.popleft()
            return _END if self._closed else None

    def close(self) -> None:
        """No more items: ``get`` returns :data:`_END` once the queue is empty (nothing is dropped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._q)


# ================================================================ time bases


class Timebase:
    """Host clock ↔ message clock. ``live``: the same clock (adapters stamp ``recv_ns`` on the host
    monotonic clock). ``paced`` (a log replayed at ``rate``): anchored at the first message; a message's
    host receive time is when the replay released it, ``(recv − recv0) / rate`` after the first.
    ``event`` (a log as fast as possible): receive = the host time it was dequeued, now = the newest
    receive stamp seen."""

    def __init__(self, kind: str, rate: float | None = None):
        if kind not in ("live", "paced", "event"):
            raise InputError(f"Timebase kind: expected live, paced or event, got {kind!r}")
        self.kind, self.rate = kind, rate
        self.host0: int | None = None
        self.msg0: int | None = None
        self.latest: int | None = None

    def receive(self, msg: Message, arrival_ns: int) -> int:
        self.latest = msg.recv_ns if self.latest is None else max(self.latest, msg.recv_ns)
        if self.kind == "live":
            return int(msg.recv_ns)
        if self.kind == "event":
            return int(arrival_ns)
        if self.host0 is None:
            self.host0, self.msg0 = int(arrival_ns), int(msg.recv_ns)
        return self.host0 + int((msg.recv_ns - self.msg0) / self.rate)

    def now(self, host_ns: int) -> int | None:
        if self.kind == "live":
            return int(host_ns)
        if self.kind == "paced" and self.host0 is not None:
            return max(self.msg0 + int((host_ns - self.host0) * self.rate), self.latest)
        return self.latest

    def to_msg(self, host_ns: int) -> int:
        n = self.now(host_ns)
        return int(host_ns if n is None else n)


# ================================================================ the threaded shell


class Pipeline:
    """The threaded pipeline (module doc). ``sources``: sensor or source name → opened Source;
    ``sinks``: objects with ``publish(frame)`` (realtime sinks, before the publish stamp) and/or an
    :class:`McapSink` (``log``); ``clock``: host monotonic ns."""

    def __init__(
        self,
        sources: dict[str, Any],
        kit,
        calibration,
        backend,
        *,
        config: PipelineConfig = PipelineConfig(),
        timebase: Timebase,
        sinks: Iterable[Any] = (),
        log: McapSink | None = None,
        clock: Clock = time.monotonic_ns,
        status: TextIO | None = None,
    ):
        from edgefuse.adapters.source import SourceReader
        from edgefuse.tensors import TensorBuilder, TensorSpec

        self.kit, self.backend, self.config, self.timebase = kit, backend, config, timebase
        self.clock, self.status = clock, status
        self.sinks = list(sinks)
        self.log = log
        self.core = FrameCore(kit, calibration, config)
        spec = TensorSpec.from_dict(backend.manifest.tensor_spec)
        self.builder = TensorBuilder(spec, calibration)
        warmup(self.builder, backend)
        self.classes = tuple(backend.manifest.classes)
        self.wake = threading.Event()
        self.readers = {
            name: SourceReader(src, maxlen=config.reader_queue, wake=self.wake)
            for name, src in sources.items()
        }
        self.frames_q = DropQueue(config.frame_queue)
        self.out_q = DropQueue(config.out_queue)
        self.inputs_q = DropQueue(4096)  # inputs on their way to the log
        self.records: deque[LatencyRecord] = deque(maxlen=config.max_records)
        self.frames_total = 0
        self.dropped: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.stopped = "end of input"
        self.t_start = self.t_end = 0

    # -- helpers

    def _drop(self, frame: Frame, reason: str) -> None:
        frame.record.skipped = reason
        frame.feed = frame.outputs = None
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _error(self, where: str, e: Exception) -> None:
        with self._lock:
            self.errors[where] = self.errors.get(where, 0) + 1
            self.last_error = f"{where}: {type(e).__name__}: {e}"

    def stop(self, why: str = "stopped") -> None:
        self.stopped = why
        self._stop.set()

    # -- threads

    def _sync_loop(self) -> None:
        core, clock = self.core, self.clock
        try:
            while not self._stop.is_set():
                self.wake.wait(0.02)
                self.wake.clear()
                batch = []
                for r in self.readers.values():
                    arrival = clock()
                    for msg in r.drain():
                        batch.append((msg, self.timebase.receive(msg, arrival)))
                batch.sort(key=lambda x: x[0].recv_ns)
                if self.log is not None and self.log.inputs:
                    for msg, _ in batch:
                        if self.inputs_q.put(msg) is not None:
                            self.dropped["log_input_overflow"] = self.dropped.get("log_input_overflow", 0) + 1
                now = self.timebase.now(clock())
                if now is None:
                    continue
                try:
                    frames = core.update(now, batch)
                except Exception as e:  # noqa: BLE001 - bad input never ends the loop
                    self._error("sync", e)
                    continue
                for f in frames:
                    self._preprocess(f)
                if all(r.done for r in self.readers.values()):
                    break
            end = self.timebase.now(clock())
            if end is not None:
                for f in core.flush(end):
                    self._preprocess(f)
        finally:
            self.frames_q.close()

    def _preprocess(self, f: Frame) -> None:
        with self._lock:
            self.records.append(f.record)
            self.frames_total += 1
        f.record.sync_emit_ns = self.clock()
        if f.record.sync_emit_ns > f.record.deadline_ns:
            self._drop(f, "deadline")
            return
        try:
            preprocess(f, self.builder, self.clock)
        except Exception as e:  # noqa: BLE001
            self._error("preprocess", e)
            self._drop(f, "preprocess_error")
            return
        old = self.frames_q.put(f)
        if old is not None:
            self._drop(old, "queue_overflow")

    def _infer_loop(self) -> None:
        try:
            while True:
                f = self.frames_q.get(0.1)
                if f is None:
                    continue
                if f is _END:
                    break
                if self.clock() > f.record.deadline_ns:
                    self._drop(f, "deadline")
                    continue
                try:
                    infer(f, self.backend, self.clock)
                    decode(f, self.classes, self.config.score_threshold, self.clock)
                except Exception as e:  # noqa: BLE001
                    self._error("inference", e)
                    self._drop(f, "inference_error")
                    continue
                old = self.out_q.put(f)
                if old is not None:
                    self._drop(old, "sink_overflow")
        finally:
            self.out_q.close()

    def _write_inputs(self) -> None:
        while len(self.inputs_q):
            msg = self.inputs_q.get(0)
            if msg is not None:
                self.log.write_input(msg)

    def _sink_loop(self) -> None:
        while True:
            f = self.out_q.get(0.1)
            if f is not None and f is not _END:
                self._publish(f)  # first: logging the inputs must not delay the publication
            if self.log is not None:
                try:
                    self._write_inputs()
                    self.log.tick()
                except Exception as e:  # noqa: BLE001
                    self._error("log", e)
            if f is _END:
                break

    def _publish(self, f: Frame) -> None:
        for s in self.sinks:
            try:
                s.publish(f)
            except Exception as e:  # noqa: BLE001
                self._error(type(s).__name__, e)
        f.record.publish_ns = self.clock()
        if self.log is not None:
            try:
                self.log.write_detections(f, self.timebase.to_msg(f.record.publish_ns))
            except Exception as e:  # noqa: BLE001
                self._error("log", e)

    # -- run

    def health(self) -> dict:
        now = self.timebase.to_msg(self.clock())
        h = self.core.health(now)
        for name, r in self.readers.items():
            if name in h:
                h[name]["reader_dropped"] = r.dropped_oldest
                h[name]["error"] = r.error
        return h

    def queues(self) -> dict:
        return {
            name: {"depth": len(q), "max_depth": q.max_depth, "bound": q.maxlen}
            for name, q in (("frames", self.frames_q), ("out", self.out_q), ("log_inputs", self.inputs_q))
        }

    def status_line(self) -> str:
        with self._lock:
            recs = list(self.records)[-50:]
        e2e = [r.e2e_ns for r in recs if r.publish_ns is not None]
        p = f"{np.percentile(e2e, 50) / MS:.0f}/{max(e2e) / MS:.0f}" if e2e else "-"
        sensors = " ".join(f"{k}:{v['rate_hz']:.0f}Hz" + ("(SILENT)" if v["status"] != "ok" else "")
                           for k, v in self.health().items())  # fmt: skip
        q = self.queues()
        fq, oq = q["frames"], q["out"]
        return (f"frames {self.frames_total} dropped {sum(self.dropped.values())} e2e p50/max {p} ms "
                f"| {sensors} | q {fq['depth']}/{fq['bound']} {oq['depth']}/{oq['bound']}")  # fmt: skip

    def run(self, duration_s: float | None = None) -> dict:
        """Run until every source ends, :meth:`stop`, or ``duration_s`` of host time; returns the report
        dict (without machine info and outputs: :func:`finish_report`)."""
        self.t_start = self.clock()
        threads = [
            threading.Thread(target=self._sync_loop, name="pipeline sync", daemon=True),
            threading.Thread(target=self._infer_loop, name="pipeline inference", daemon=True),
            threading.Thread(target=self._sink_loop, name="pipeline sinks", daemon=True),
        ]
        for r in self.readers.values():
            r.start()
        for t in threads:
            t.start()
        last_status = self.t_start
        tty = self.status is not None and getattr(self.status, "isatty", lambda: False)()
        try:
            while threads[0].is_alive():
                threads[0].join(0.1)
                now = self.clock()
                if duration_s is not None and now - self.t_start >= duration_s * NS:
                    self.stop("duration")
                if self.status is not None and now - last_status >= self.config.status_period_ns:
                    last_status = now
                    print(("\r" if tty else "") + self.status_line(), end="" if tty else "\n",
                          file=self.status, flush=True)  # fmt: skip
        finally:
            self._stop.set()
            for r in self.readers.values():
                r.stop()
            for t in threads:
                t.join()
            self._flush_sinks()
            self.t_end = self.clock()
            if tty:
                print(file=self.status)
        return self.summary()

    def _flush_sinks(self) -> None:
        if self.log is not None:
            try:
                self._write_inputs()
            except Exception as e:  # noqa: BLE001
                self._error("log", e)
        for s in [*self.sinks, *([self.log] if self.log is not None else [])]:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001
                self._error(f"close {type(s).__name__}", e)

    def summary(self) -> dict:
        return _summary(self.core, self.records, self.dropped, self.t_end - self.t_start, {
            "stopped": self.stopped,
            "frames_total": self.frames_total,
            "health": self.health(),
            "queues": self.queues(),
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "reader_errors": {k: r.error for k, r in self.readers.items() if r.error},
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
        })  # fmt: skip


def _summary(core: FrameCore, records, dropped: dict, wall_ns: int, extra: dict) -> dict:
    from edgefuse.profiling import latency_report

    c = core.sync.counters.as_dict()
    frames_dropped = {**c["frames_dropped"]}
    for k, v in dropped.items():
        frames_dropped[k] = frames_dropped.get(k, 0) + v
    messages_unmatched = c["messages_unmatched"]
    extra = {"frames_emitted": c["frames_emitted"], "frames_missing": c["frames_missing"],
             "messages_ignored": dict(core.ignored), **extra}  # fmt: skip
    return latency_report(records, wall_ns=wall_ns, frames_dropped=frames_dropped,
                          messages_unmatched=messages_unmatched, extra=extra, machine={})  # fmt: skip


def run_deterministic(
    messages: Iterable[Message],
    kit,
    calibration,
    backend,
    *,
    config: PipelineConfig = PipelineConfig(),
    sinks: Iterable[Any] = (),
    log: McapSink | None = None,
    clock: Clock = time.monotonic_ns,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
) -> tuple[dict, list[LatencyRecord]]:
    """Every frame of ``messages`` (log order), one thread, ``now`` = each message's receive stamp, no
    drops, no deadline: the detections depend on the log and the backend only (the detection message's
    log time is the receive stamp of the frame's last input). Returns (summary, latency records)."""
    from edgefuse.tensors import TensorBuilder, TensorSpec

    core = FrameCore(kit, calibration, config)
    builder = TensorBuilder(TensorSpec.from_dict(backend.manifest.tensor_spec), calibration)
    warmup(builder, backend)
    classes = tuple(backend.manifest.classes)
    records: list[LatencyRecord] = []
    dropped: dict[str, int] = {}
    errors: dict[str, int] = {}
    t0 = clock()
    now = None

    def process(frames: list[Frame]) -> None:
        for f in frames:
            if max_frames is not None and len(records) >= max_frames:
                return
            records.append(f.record)
            f.record.sync_emit_ns = clock()
            try:
                preprocess(f, builder, clock)
                infer(f, backend, clock)
                decode(f, classes, config.score_threshold, clock)
            except Exception as e:  # noqa: BLE001 - bad input never ends the loop
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                f.record.skipped = "error"
                dropped["error"] = dropped.get("error", 0) + 1
                continue
            for s in sinks:
                s.publish(f)
            f.record.publish_ns = clock()
            if log is not None:
                log.write_detections(f, f.last_recv_ns)

    try:
        for msg in messages:
            if stop is not None and stop.is_set():
                break
            if max_frames is not None and len(records) >= max_frames:
                break
            now = msg.recv_ns
            if log is not None and log.inputs:
                log.write_input(msg)
            process(core.update(now, [(msg, clock())]))
        if now is not None and (max_frames is None or len(records) < max_frames):
            process(core.flush(now))
    finally:
        for s in [*sinks, *([log] if log is not None else [])]:
            s.close()
    summary = _summary(core, records, dropped, clock() - t0, {
        "stopped": "stopped" if stop is not None and stop.is_set() else "end of input",
        "health": core.health(now if now is not None else 0), "errors": errors,
        "backend": getattr(backend, "name", type(backend).__name__),
    })  # fmt: skip
    return summary, records


# ================================================================ backends


def inference_threads() -> int:
    """Backend threads for the real-time pipeline: one core is left to sources, sync and sinks (on a
    2-core machine 2 inference threads measured slower than 1: docs/benchmarks.md, Pipeline replay)."""
    return max(1, (os.cpu_count() or 2) - 1)


def load_backend(model: str | Path | None, backend: str | None = None, threads: int = 2):
    """Open ``model`` (``.pt``/``.onnx``/``.engine``; None = the bundled INT8 ONNX model) with
    :func:`edgefuse.engine.backends.open_backend`."""
    from edgefuse.engine.backends import open_backend
    from edgefuse.model.bundled import bundled_model

    path = Path(model) if model is not None else bundled_model("int8")
    if not path.is_file():
        raise InputError(f"--model {path}: no such model file; expected a .pt, .onnx or .engine model")
    return open_backend(path, backend=backend, threads=threads)


# ================================================================ entry points


def _install_signals(pipeline_stop: Callable[[str], None]) -> Callable[[], None]:
    """SIGINT/SIGTERM → ``pipeline_stop(name)`` (main thread only); returns the restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, lambda s, _f: pipeline_stop(signal.Signals(s).name))
    return lambda: [signal.signal(s, h) for s, h in old.items()]


class _StopRequest:
    """A signal during set-up or the run: remembered, and forwarded to the run's stop once attached (so a
    SIGTERM that comes while the model warms up still ends the run cleanly, the log closed)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.target: Callable[[str], None] | None = None

    def __call__(self, name: str) -> None:
        self.name = name
        if self.target is not None:
            self.target(name)

    def attach(self, stop: Callable[[str], None]) -> None:
        self.target = stop
        if self.name is not None:
            stop(self.name)


def _kit_for_log(reader, kit_path: str | None):
    from edgefuse.rig import load_kit
    from edgefuse.sim.rig import sim_kit

    if kit_path is not None:
        return load_kit(kit_path)
    kit = sim_kit()
    ids = {t.sensor_id for t in reader.topics().values() if t.sensor_id}
    kit_ids = {s.id for s in kit.sensors}
    if kit.reference not in ids or not ids & kit_ids:
        raise InputError(
            f"{reader.path if hasattr(reader, 'path') else 'log'}: sensors {sorted(ids)} are not the "
            f"simulator's {sorted(kit_ids)}; pass --kit KIT.yaml describing the logged rig"
        )
    return kit


def write_outputs(out_dir: Path, report: dict, records: list[LatencyRecord]) -> dict:
    """report.json, latency_hist.png, timeline.png, trace.json in ``out_dir``; returns their paths."""
    from edgefuse.profiling import (
        machine_info,
        write_histogram_png,
        write_report,
        write_timeline_png,
        write_trace,
    )

    report["machine"] = machine_info()
    files = {
        "histogram_png": str(write_histogram_png(out_dir / "latency_hist.png", records)),
        "timeline_png": str(write_timeline_png(out_dir / "timeline.png", records)),
        "trace_json": str(write_trace(out_dir / "trace.json", records)),
    }
    report["outputs"] = {**report.get("outputs", {}), **files, "report_json": str(out_dir / "report.json")}
    write_report(out_dir / "report.json", report)
    return files


def _sinks(udp: str | None, console: bool) -> list:
    sinks: list = []
    if udp:
        host, _, port = udp.rpartition(":")
        if not port.isdigit():
            raise InputError(f"--udp {udp!r}: expected HOST:PORT, e.g. 127.0.0.1:5600")
        sinks.append(UdpSink(host or "127.0.0.1", int(port)))
    if console:
        sinks.append(ConsoleSink())
    return sinks


def run_replay(
    log_path: str | Path,
    backend,
    out_dir: str | Path,
    *,
    rate: float | None = 1.0,
    deterministic: bool = False,
    kit_path: str | None = None,
    calib_path: str | None = None,
    config: PipelineConfig = PipelineConfig(),
    udp: str | None = None,
    console: bool = False,
    log_inputs: bool = False,
    status: TextIO | None = None,
    handle_signals: bool = True,
) -> dict:
    """``edgefuse replay``: the log through the pipeline (``rate`` × real time, None = as fast as
    possible; ``deterministic``: every frame, one thread). Writes ``out_dir/detections.mcap`` (the
    detections, the calibration, the inputs too with ``log_inputs``) and the latency outputs; returns
    the report."""
    from edgefuse.adapters.mcap_source import McapSource
    from edgefuse.logs import LogReader
    from edgefuse.rig import load_calibration

    log_path = Path(log_path)
    if not log_path.is_file():
        raise InputError(f"{log_path}: no such log; expected an MCAP log (edgefuse sim record / record)")
    reader = LogReader(log_path)
    kit = _kit_for_log(reader, kit_path)
    calib = load_calibration(calib_path) if calib_path else reader.calibration()
    if calib is None:
        raise InputError(f"{log_path}: no calibration attachment; pass --calib FILE")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sinks = _sinks(udp, console)
    req = _StopRequest()
    restore = _install_signals(req) if handle_signals else (lambda: None)
    try:
        log = McapSink(out / "detections.mcap", calib, kit, inputs=log_inputs)
        try:
            if deterministic:
                stop = threading.Event()
                req.attach(lambda _n: stop.set())
                messages = (m for _t, m in reader.messages())
                report, records = run_deterministic(messages, kit, calib, backend, config=config,
                                                    sinks=sinks, log=log, stop=stop)  # fmt: skip
                if req.name:
                    report["stopped"] = req.name
            else:
                src = McapSource(f"mcap://{log_path}", log_path, rate=rate)
                pipe = Pipeline({"log": src}, kit, calib, backend, config=config,
                                timebase=Timebase("paced", rate) if rate else Timebase("event"),
                                sinks=sinks, log=log, status=status)  # fmt: skip
                req.attach(pipe.stop)
                report = pipe.run()
                records = list(pipe.records)
        finally:
            log.close()  # idempotent: the run closed it already unless set-up failed
    finally:
        restore()
    report.update({"log": str(log_path), "rate": rate if not deterministic else None,
                   "deterministic": deterministic,
                   "outputs": {"log": str(out / "detections.mcap")}})  # fmt: skip
    write_outputs(out, report, records)
    return report


def run_live(
    kit_path: str | Path,
    backend,
    out_dir: str | Path,
    *,
    calib_path: str | None = None,
    duration_s: float | None = None,
    config: PipelineConfig = PipelineConfig(),
    udp: str | None = None,
    console: bool = False,
    log_inputs: bool = True,
    status: TextIO | None = sys.stderr,
) -> dict:
    """``edgefuse run``: every sensor of the kit live (calibration from the kit unless ``calib_path``),
    logged with the detections to ``out_dir/run.mcap``; stops on SIGINT/SIGTERM or after ``duration_s``."""
    from edgefuse.adapters.source import open_source
    from edgefuse.rig import load_calibration, load_kit

    kit = load_kit(kit_path)
    cpath = calib_path or kit.calibration
    if cpath is None:
        raise InputError(f"{kit_path}: calibration: the kit names none; pass --calib FILE")
    calib = load_calibration(cpath)
    base = kit.path.parent if kit.path is not None else Path(kit_path).parent
    sources = {}
    try:
        for s in kit.sensors:
            sources[s.id] = open_source(s.source, s.id, base)
    except InputError:
        for src in sources.values():
            src.close()
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    req = _StopRequest()
    restore = _install_signals(req)
    try:
        log = McapSink(out / "run.mcap", calib, kit, inputs=log_inputs)
        try:
            pipe = Pipeline(sources, kit, calib, backend, config=config, timebase=Timebase("live"),
                            sinks=_sinks(udp, console), log=log, status=status)  # fmt: skip
            req.attach(pipe.stop)
            report = pipe.run(duration_s)
        finally:
            log.close()
            for src in sources.values():
                src.close()
    finally:
        restore()
    report.update({"kit": str(kit_path), "outputs": {"log": str(out / "run.mcap")}})
    write_outputs(out, report, list(pipe.records))
    return report


def profile_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    backends: Iterable[str | None] = (None,),
    precisions: Iterable[str] = ("fp32",),
    threads: Iterable[int] = (2,),
    frames: int = 30,
    log_path: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """``edgefuse profile``: the same ``frames`` frames (of ``log_path``, or of a short simulator log
    recorded into ``out_dir``) through every backend × precision × threads combination, one thread per
    frame in stamp order (:func:`run_deterministic`), so the per-stage times compare like for like.
    ``int8``: the ``.onnx`` model quantized (static QDQ, :func:`edgefuse.engine.quantize.quantize_int8`)
    on the first 8 of those frames, written next to the outputs. Returns ``{"rows": [...], ...}``."""
    from edgefuse.logs import LogReader

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if frames < 1:
        raise InputError(f"profile --frames: expected ≥ 1, got {frames}")
    if log_path is None:
        from edgefuse.sim.run import record

        log_path = out / "profile_sim.mcap"
        if not log_path.is_file():
            record(log_path, "default", 0, frames / 10 + 1.0, progress=progress)
    reader = LogReader(log_path)
    kit = _kit_for_log(reader, None)
    calib = reader.calibration()
    if calib is None:
        raise InputError(f"{log_path}: no calibration attachment; expected an edgefuse log")
    model = Path(model)
    rows = []
    for precision in precisions:
        if precision not in ("fp32", "int8"):
            raise InputError(f"profile --precision: expected fp32 or int8, got {precision!r}")
        path = model
        if precision == "int8":
            path = _int8_model(model, out, reader, kit, calib)
        for name in backends:
            for n in threads:
                backend = load_backend(path, name, threads=int(n))
                try:
                    report, _ = run_deterministic((m for _t, m in reader.messages()), kit, calib, backend,
                                                  max_frames=frames)  # fmt: skip
                finally:
                    backend.close()
                st = report["stages"]
                rows.append({
                    "backend": backend.name, "precision": precision, "threads": int(n), "model": str(path),
                    "frames": report["frames_published"],
                    "preprocess_ms": st["preprocess"]["p50"], "inference_ms": st["inference"]["p50"],
                    "inference_p99_ms": st["inference"]["p99"], "decode_ms": st["decode"]["p50"],
                    "e2e_p50_ms": report["e2e_p50_ms"], "e2e_p99_ms": report["e2e_p99_ms"],
                    "fps": report["throughput_fps"],
                })  # fmt: skip
    from edgefuse.profiling import machine_info, write_report

    result = {"log": str(log_path), "frames": frames, "rows": rows, "machine": machine_info()}
    write_report(out / "profile.json", result)
    return result


def _int8_model(model: Path, out: Path, reader, kit, calib) -> Path:
    """``model`` (.onnx) quantized to INT8 on the log's first 8 frames, cached as ``out/STEM.int8.onnx``."""
    from edgefuse.engine.export import read_onnx_manifest
    from edgefuse.engine.quantize import quantize_int8
    from edgefuse.model.io import feed_from_inputs
    from edgefuse.tensors import TensorBuilder, TensorSpec

    if model.suffix != ".onnx":
        raise InputError(f"profile --precision int8: --model {model}: expected an .onnx model to quantize")
    q = out / f"{model.stem}.int8.onnx"
    if q.is_file() and q.stat().st_mtime_ns >= model.stat().st_mtime_ns:
        return q
    manifest = read_onnx_manifest(model)
    builder = TensorBuilder(TensorSpec.from_dict(manifest.tensor_spec), calib)
    core = FrameCore(kit, calib, PipelineConfig())
    feeds = []
    for _t, m in reader.messages():
        for f in core.update(m.recv_ns, [(m, 0)]):
            feeds.append({k: v[None] for k, v in feed_from_inputs(builder.build(f.frameset, f.ego)).items()})
        if len(feeds) >= 8:
            break
    quantize_int8(model, q, feeds)
    return q


def format_profile(r: dict) -> str:
    """The profile table."""
    head = f"{'backend':12s} {'prec':5s} {'thr':>3s} {'pre ms':>7s} {'infer ms':>8s} {'inf p99':>8s} "
    head += f"{'dec ms':>7s} {'e2e p99':>8s} {'fps':>6s}"
    lines = [f"{r['frames']} frames of {r['log']}", head]
    for w in r["rows"]:
        lines.append(
            f"{w['backend']:12s} {w['precision']:5s} {w['threads']:3d} {w['preprocess_ms']:7.1f} "
            f"{w['inference_ms']:8.1f} {w['inference_p99_ms']:8.1f} {w['decode_ms']:7.1f} "
            f"{w['e2e_p99_ms']:8.1f} {w['fps']:6.2f}"
        )
    return "\n".join(lines)
