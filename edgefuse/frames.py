"""The frame assembler: sensor messages → synchronized frames, one pure core shared by the real-time
pipeline (:mod:`edgefuse.pipeline`), the training/evaluation frames (:mod:`edgefuse.dataset`) and
INT8 calibration.

:class:`FrameCore` ``update(now_ns, [(msg, receive_ns), …]) -> [Frame]`` (no threads, no clock reading: time
comes in as arguments, so replay = live): maps stamps (:class:`~edgefuse.sync.clock.StampMapper`), keeps the
odometry for the ego trajectory, synchronizes (:class:`~edgefuse.sync.synchronizer.Synchronizer`, reference
policy) and keeps per-sensor health (count, rate, silence) — all in the *message clock* (the host clock live,
the log's clock on replay). Each frame gets a :class:`~edgefuse.profiling.LatencyRecord` whose ``receive_ns``
is the host receive time of the last input it used and whose ``reference_ns`` is the reference stamp moved
onto the host clock.
:class:`PipelineConfig` holds the pipeline's bounds and
deadlines (the core reads the synchronizer's wait, the deadline and the silence threshold from it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefuse.errors import InputError
from edgefuse.profiling import LatencyRecord
from edgefuse.types import Detections, FrameSet, Message, Odometry

MS = 1_000_000
NS = 1_000_000_000
#: A clock: host monotonic ns (``time.monotonic_ns`` live; tests pass their own).
Clock = Callable[[], int]


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
