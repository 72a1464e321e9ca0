"""The frame assembler: sensor messages → synchronized frames, one pure core shared by the real-time
pipeline (:mod:`edgefuse.pipeline`), the training/evaluation frames (:mod:`edgefuse.dataset`) and
INT8 calibration.

:class:`FrameCore` ``update(now_ns, [(msg, receive_ns), …]) -> [Frame]`` (no threads, no clock reading: time
comes in as arguments, so replay = live): maps stamps (:class:`~edgefuse.sync.clock.StampMapper`), keeps the
odometry for the ego trajectory, synchronizes (:class:`~edgefuse.sync.synchronizer.Synchronizer`, reference
policy) and keeps per-sensor health (count, rate, silence) — all in the *message clock* (the host clock live,
the log's clock on replay). A message whose receive stamp is implausibly far from that clock, or whose
mapped stamp is implausibly far from its receive stamp (a sensor clock that jumped, a garbage stamp, an
adapter on another clock), is rejected and counted by reason (``messages_rejected``), never mixed in.
Each frame gets a :class:`~edgefuse.profiling.LatencyRecord` whose ``receive_ns`` is the host receive
time of the last input it used and whose ``reference_ns`` is the reference stamp moved onto the host
clock.
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
    it is skipped (``deadline``) — longer than ``latency_budget_ns``, so a frame that waited the whole
    budget for a late sensor still has time to run; ``latency_budget_ns``: how long the synchronizer
    waits for a late sensor; ``frame_queue`` / ``out_queue``: bounds of the preprocess → inference and
    inference → sink queues (drop oldest); ``reader_queue``: per-source reader bound;
    ``score_threshold``: detections below it are left out; ``silence_ns``: a sensor with nothing for this
    long (message clock) is ``silent`` and the synchronizer stops waiting for it (it is used again when it
    returns); ``status_period_ns``: status line period (host clock); ``max_records``: latency records
    kept (the newest; the report's percentiles cover them, ``frames_total`` counts every frame);
    ``max_clock_skew_ns``: a message whose receive stamp is farther than this from the message clock's
    *now* is rejected (``recv_far_from_host_clock``: an adapter on another clock); ``max_stamp_offset_ns``:
    a message whose mapped stamp is farther than this from its receive stamp is rejected
    (``stamp_far_from_recv``: a sensor clock jump not yet confirmed by the clock estimator, a garbage
    stamp); ``watchdog_deadlines``: an inference call running longer than this many deadlines is
    reported as a hung backend (health, status line, report); ``backend_stop_ns``: a call hung this long
    stops the run with an error (None: keep waiting for the backend)."""

    deadline_ns: int = 200 * MS
    latency_budget_ns: int = 100 * MS
    frame_queue: int = 2
    out_queue: int = 8
    reader_queue: int = 256
    score_threshold: float = 0.1
    silence_ns: int = 1 * NS
    status_period_ns: int = 1 * NS
    max_records: int = 100_000
    max_clock_skew_ns: int = 5 * NS
    max_stamp_offset_ns: int = 500 * MS
    watchdog_deadlines: float = 5.0
    backend_stop_ns: int | None = 10 * NS

    def __post_init__(self) -> None:
        for name in (
            "deadline_ns",
            "latency_budget_ns",
            "frame_queue",
            "out_queue",
            "reader_queue",
            "silence_ns",
            "max_clock_skew_ns",
            "max_stamp_offset_ns",
            "watchdog_deadlines",
        ):
            if getattr(self, name) <= 0:
                raise InputError(f"PipelineConfig.{name}: expected > 0, got {getattr(self, name)}")
        if self.backend_stop_ns is not None and self.backend_stop_ns <= 0:
            raise InputError(
                f"PipelineConfig.backend_stop_ns: expected > 0 or None, got {self.backend_stop_ns}"
            )

    @property
    def watchdog_ns(self) -> int:
        """How long an inference call may run before the backend is reported hung."""
        return int(self.watchdog_deadlines * self.deadline_ns)


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
    """Per-sensor counters in the message clock: messages, the last receive stamp, receive stamps in
    the health window, silences it came back from (and the longest), rejected messages by reason."""

    messages: int = 0
    last_ns: int | None = None
    times: deque = field(default_factory=deque)
    silences: int = 0
    longest_silence_ns: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class FrameCore:
    """Stamp mapping, ego motion, synchronization and sensor health (module doc). Pure: ``now_ns`` is
    the message clock, every message comes with its host receive time."""

    def __init__(self, kit, calibration, config: PipelineConfig, health_window_ns: int = 2 * NS):
        from edgefuse.sync.clock import StampMapper
        from edgefuse.sync.synchronizer import Synchronizer, SyncSpec

        self.kit, self.config = kit, config
        self.mapper = StampMapper(kit, calibration)
        self.spec = SyncSpec.from_kit(
            kit, latency_budget_ns=config.latency_budget_ns, silence_ns=config.silence_ns
        )
        self.sync = Synchronizer(self.spec)
        self.kit_ids = {s.id for s in kit.sensors}
        self.health_window_ns = int(health_window_ns)
        self.sensors: dict[str, SensorHealth] = {s.id: SensorHealth() for s in kit.sensors}
        self.ignored: dict[str, int] = {}
        self._odom: deque[Message] = deque(maxlen=100)
        # the ego trajectory comes from the kit's vehicle odometry only: a GNSS fix is an antenna in an ENU
        # plane with NaN where it measures nothing (yaw rate, heading at standstill), not base_link motion
        self.ego_ids = {s.id for s in kit.sensors if s.kind == "odometry"}
        self._recv: dict[tuple[str, int], tuple[int, int]] = {}  # (sensor, mapped stamp) → (host, msg recv)
        self._seq = 0

    def _reject(self, sid: str, reason: str) -> None:
        r = self.sensors[sid].rejected
        r[reason] = r.get(reason, 0) + 1

    def admit(self, now_ns: int, items: Iterable[tuple[Message, int]]) -> list[tuple[Message, int]]:
        """The items whose receive stamp is within ``max_clock_skew_ns`` of ``now_ns`` (message clock);
        the others are rejected (``recv_far_from_host_clock``, counted per sensor). Messages of sensors
        outside the kit pass (``update`` counts them as ignored)."""
        out = []
        for msg, host_ns in items:
            if msg.sensor_id in self.kit_ids and abs(msg.recv_ns - now_ns) > self.config.max_clock_skew_ns:
                self._reject(msg.sensor_id, "recv_far_from_host_clock")
                continue
            out.append((msg, host_ns))
        return out

    def update(self, now_ns: int, items: Iterable[tuple[Message, int]]) -> list[Frame]:
        mapped = []
        for msg, host_ns in self.admit(now_ns, items):
            sid = msg.sensor_id
            if sid not in self.kit_ids:
                self.ignored[sid] = self.ignored.get(sid, 0) + 1
                continue
            h = self.sensors[sid]
            h.messages += 1
            if h.last_ns is not None and msg.recv_ns - h.last_ns > self.config.silence_ns:
                h.silences += 1  # it was silent and is back
                h.longest_silence_ns = max(h.longest_silence_ns, msg.recv_ns - h.last_ns)
            h.last_ns = msg.recv_ns if h.last_ns is None else max(h.last_ns, msg.recv_ns)
            h.times.append(msg.recv_ns)
            while h.times[0] <= msg.recv_ns - self.health_window_ns:
                h.times.popleft()
            m = self.mapper.map(msg)
            if abs(m.stamp_ns - msg.recv_ns) > self.config.max_stamp_offset_ns:
                self._reject(sid, "stamp_far_from_recv")
                continue
            if isinstance(m.payload, Odometry):
                if sid in self.ego_ids and (not self._odom or m.stamp_ns > self._odom[-1].stamp_ns):
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

    def rejected(self) -> dict[str, dict[str, int]]:
        """Sensor id → reason → messages rejected (``admit``, stamp plausibility); none: left out."""
        return {sid: dict(sorted(h.rejected.items())) for sid, h in self.sensors.items() if h.rejected}

    def health(self, now_ns: int) -> dict[str, dict]:
        """Sensor id → messages, rate_hz over the health window, last message (message clock), status
        (``ok``, ``silent``: nothing for ``silence_ns``, ``never``: nothing yet), frames missing it,
        ``silences`` it came back from and the longest (s), rejected messages by reason, and its clock
        mapping (``jumps`` and ``wraps`` seen, ``drift_ppm``, ``offset_ms`` host − sensor clock)."""
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
                "silences": h.silences,
                "longest_silence_s": round(h.longest_silence_ns / NS, 3),
                "rejected": dict(sorted(h.rejected.items())),
                "clock": self._clock(sid),
            }
        return out

    def _clock(self, sid: str) -> dict:
        st = self.mapper.estimators[sid].status()
        return {"jumps": st.jumps, "wraps": st.wraps, "drift_ppm": round(st.drift_ppm, 2),
                "offset_ms": round(st.offset_ns / MS, 3), "passthrough": st.passthrough}  # fmt: skip
