"""The synchronizer: message streams (stamps already on the rig clock, see
:class:`~edgefuse.sync.clock.StampMapper`) → :class:`~edgefuse.types.FrameSet` s. Design notes:
docs/sync.md.

A pure core taking time as an argument (never reading a clock), so live and replay run the same code and
replay is deterministic:

- :class:`Synchronizer` — ``update(now_ns, messages) -> list[FrameSet]`` / ``flush(now_ns)`` with two
  policies: ``reference`` (each reference message is a frame; every other sensor contributes its nearest
  message within a tolerance, waiting at most ``latency_budget_ns`` of ``now_ns``, and not at all for a
  sensor that has been silent for ``silence_ns``) and ``approximate``
  (ROS message_filters ApproximateTime). Counters: ``frames_dropped`` (a frame that was due and not
  emitted, by reason) and ``messages_unmatched`` (a message no frame used, by sensor and reason) are never
  mixed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgefuse.sync.clock import MS, NS, SyncInputError
from edgefuse.types import FrameSet, Message

REFERENCE = "reference"
APPROXIMATE = "approximate"


@dataclass(frozen=True)
class SyncSpec:
    """What to synchronize and how.

    ``sensors``: the sensor ids that make up a frame (the reference included); ``reference``: the sensor
    whose stamp is the frame's stamp; ``policy``: ``"reference"`` or ``"approximate"``;
    ``tolerance_ns``: per sensor, the largest |stamp − reference stamp| a match may have (reference
    policy); ``latency_budget_ns``: how long after a reference stamp (by ``now_ns``) a frame waits for late
    messages; ``reference_period_ns``: the reference's nominal period (counts frames that never came);
    ``silence_ns``: a sensor with no message stamped in the last ``silence_ns`` (by ``now_ns``; since
    the first update for a sensor never heard) is *silent*: the reference policy stops waiting for it,
    the approximate policy leaves it out of the match; its frames mark it missing until it speaks
    again; ``queue_size``,
    ``age_penalty``, ``max_interval_ns`` (None = unbounded): as ROS ApproximateTime."""

    sensors: tuple[str, ...]
    reference: str
    policy: str = REFERENCE
    tolerance_ns: dict[str, int] = field(default_factory=dict)
    latency_budget_ns: int = 100 * MS
    reference_period_ns: int | None = None
    silence_ns: int = NS
    queue_size: int = 10
    age_penalty: float = 0.1
    max_interval_ns: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensors", tuple(self.sensors))
        if not self.sensors or len(set(self.sensors)) != len(self.sensors):
            raise SyncInputError(f"SyncSpec.sensors: expected distinct sensor ids, got {self.sensors}")
        if self.reference not in self.sensors:
            raise SyncInputError(
                f"SyncSpec.reference: expected one of {self.sensors}, got {self.reference!r}"
            )
        if self.policy not in (REFERENCE, APPROXIMATE):
            raise SyncInputError(
                f"SyncSpec.policy: expected 'reference' or 'approximate', got {self.policy!r}"
            )
        if self.latency_budget_ns < 0:
            raise SyncInputError(f"SyncSpec.latency_budget_ns: expected ≥ 0, got {self.latency_budget_ns}")
        if self.queue_size < 1:
            raise SyncInputError(f"SyncSpec.queue_size: expected ≥ 1, got {self.queue_size}")
        for s in self.sensors:
            if s != self.reference and self.policy == REFERENCE and s not in self.tolerance_ns:
                raise SyncInputError(f"SyncSpec.tolerance_ns: missing sensor {s!r} (reference policy)")

    @staticmethod
    def from_kit(
        kit,
        policy: str = REFERENCE,
        *,
        kinds: tuple[str, ...] = ("camera", "lidar", "radar"),
        latency_budget_ns: int = 100 * MS,
        **kw,
    ) -> SyncSpec:
        """The kit's frame sensors (``kinds``; ego-motion streams feed motion compensation instead), its
        reference, tolerance = half the sensor's period (the nearest message of a sensor at its nominal
        rate is always within it)."""
        sensors = tuple(s.id for s in kit.sensors if s.kind in kinds or s.id == kit.reference)
        tol = {s.id: int(round(NS / s.rate_hz / 2)) for s in kit.sensors if s.id in sensors}
        ref = kit.sensor(kit.reference)
        return SyncSpec(
            sensors=sensors,
            reference=kit.reference,
            policy=policy,
            tolerance_ns=tol,
            latency_budget_ns=latency_budget_ns,
            reference_period_ns=int(round(NS / ref.rate_hz)),
            **kw,
        )


@dataclass
class SyncCounters:
    """``frames_emitted``; ``frames_dropped``: reason → count (a frame that was due and not emitted);
    ``messages_unmatched``: sensor → reason → count (a message no frame used); ``frames_missing``:
    sensor → frames emitted without it; ``budget_waits``: sensor → frames that waited the whole latency
    budget for it (reference policy: it was neither decided nor silent); ``last_seen_ns``: sensor → last
    message stamp; ``last_frame_ns``: the stamp of the last frame emitted."""

    frames_emitted: int = 0
    frames_dropped: dict[str, int] = field(default_factory=dict)
    messages_unmatched: dict[str, dict[str, int]] = field(default_factory=dict)
    frames_missing: dict[str, int] = field(default_factory=dict)
    budget_waits: dict[str, int] = field(default_factory=dict)
    last_seen_ns: dict[str, int] = field(default_factory=dict)
    last_frame_ns: int | None = None

    def drop_frame(self, reason: str, n: int = 1) -> None:
        if n > 0:
            self.frames_dropped[reason] = self.frames_dropped.get(reason, 0) + n

    def unmatched(self, sensor: str, reason: str, n: int = 1) -> None:
        if n > 0:
            d = self.messages_unmatched.setdefault(sensor, {})
            d[reason] = d.get(reason, 0) + n

    def emitted(self, fs: FrameSet) -> None:
        self.frames_emitted += 1
        self.last_frame_ns = fs.stamp_ns
        for s in fs.missing:
            self.frames_missing[s] = self.frames_missing.get(s, 0) + 1

    def as_dict(self) -> dict:
        return {
            "frames_emitted": self.frames_emitted,
            "frames_dropped": dict(sorted(self.frames_dropped.items())),
            "messages_unmatched": {
                k: dict(sorted(v.items())) for k, v in sorted(self.messages_unmatched.items())
            },
            "frames_missing": dict(sorted(self.frames_missing.items())),
            "budget_waits": dict(sorted(self.budget_waits.items())),
        }


class Synchronizer:
    """The synchronizer's pure core (see module doc and :class:`SyncSpec`).

    ``update(now_ns, messages)`` adds messages (each sensor's in stamp order; an older stamp than the
    sensor's last is ``out_of_order``) and returns the frames that are complete or due by ``now_ns``;
    ``flush(now_ns)`` emits every pending frame (end of a log) and counts what is left. Messages of
    sensors outside the spec are counted as ``not_in_spec``.

    ``messages_unmatched`` reasons: ``not_nearest`` (another message of the sensor was nearer to the
    frame), ``outside_tolerance`` (no frame within tolerance), ``late`` (arrived after the frame it could
    match was emitted), ``out_of_order``, ``not_in_spec``, ``superseded`` / ``queue_overflow`` /
    ``stale`` (approximate policy: a better set was found / the queue was full / the sensor fell silent
    with messages queued), ``flushed`` (left at flush). ``frames_dropped`` reasons: ``reference_gap``
    (reference messages that never came, counted from the reference period), ``reference_out_of_order``."""

    def __init__(self, spec: SyncSpec):
        self.spec = spec
        self.counters = SyncCounters()
        self._last_stamp: dict[str, int] = {}
        if spec.policy == REFERENCE:
            self._core = _ReferenceCore(spec, self.counters)
        else:
            self._core = _ApproximateCore(spec, self.counters)

    def update(self, now_ns: int, messages: Iterable[Message] = ()) -> list[FrameSet]:
        for m in messages:
            s = m.sensor_id
            if s not in self.spec.sensors:
                self.counters.unmatched(s, "not_in_spec")
                continue
            last = self._last_stamp.get(s)
            ref = s == self.spec.reference
            if last is not None and (m.stamp_ns <= last if ref else m.stamp_ns < last):
                if ref:
                    self.counters.drop_frame("reference_out_of_order")
                else:
                    self.counters.unmatched(s, "out_of_order")
                continue
            self._last_stamp[s] = m.stamp_ns
            self.counters.last_seen_ns[s] = m.stamp_ns
            self._core.add(m)
        out = self._core.poll(int(now_ns))
        for fs in out:
            self.counters.emitted(fs)
        return out

    def flush(self, now_ns: int) -> list[FrameSet]:
        out = self._core.flush(int(now_ns))
        for fs in out:
            self.counters.emitted(fs)
        return out


def _frame(spec: SyncSpec, stamp: int, chosen: dict[str, Message | None]) -> FrameSet:
    msgs = {s: chosen.get(s) for s in spec.sensors}
    res = {s: m.stamp_ns - stamp for s, m in msgs.items() if m is not None}
    return FrameSet(stamp, msgs, res)


class _ReferenceCore:
    def __init__(self, spec: SyncSpec, counters: SyncCounters):
        self.spec, self.c = spec, counters
        self.others = tuple(s for s in spec.sensors if s != spec.reference)
        self.buf: dict[str, deque[Message]] = {s: deque() for s in self.others}
        self.pending: deque[Message] = deque()
        self.last_ref: int | None = None
        self.last_emitted: int | None = None
        self.last_seen: dict[str, int] = {}
        self.start: int | None = None

    def add(self, m: Message) -> None:
        spec = self.spec
        if m.sensor_id == spec.reference:
            if self.last_ref is not None and spec.reference_period_ns:
                gap = round((m.stamp_ns - self.last_ref) / spec.reference_period_ns) - 1
                self.c.drop_frame("reference_gap", gap)
            self.last_ref = m.stamp_ns
            self.pending.append(m)
            return
        tol = spec.tolerance_ns[m.sensor_id]
        self.last_seen[m.sensor_id] = m.stamp_ns
        if self.last_emitted is not None and m.stamp_ns < self.last_emitted - tol:
            self.c.unmatched(m.sensor_id, "late")
            return
        self.buf[m.sensor_id].append(m)

    def _decided(self, s: str, t: int) -> bool:
        b = self.buf[s]
        return bool(b) and b[-1].stamp_ns >= t

    def silent(self, now: int) -> set[str]:
        """The sensors with nothing stamped in the last ``silence_ns`` (never heard: since the start)."""
        if self.start is None:
            self.start = now
        return {s for s in self.others if now - self.last_seen.get(s, self.start) > self.spec.silence_ns}

    def poll(self, now: int) -> list[FrameSet]:
        out = []
        silent = self.silent(now)
        while self.pending:
            r = self.pending[0]
            waiting = [s for s in self.others if s not in silent and not self._decided(s, r.stamp_ns)]
            if waiting and now < r.stamp_ns + self.spec.latency_budget_ns:
                break
            for s in waiting:
                self.c.budget_waits[s] = self.c.budget_waits.get(s, 0) + 1
            self.pending.popleft()
            out.append(self._make(r))
        return out

    def _make(self, r: Message) -> FrameSet:
        t = r.stamp_ns
        chosen: dict[str, Message | None] = {self.spec.reference: r}
        for s in self.others:
            tol = self.spec.tolerance_ns[s]
            b = self.buf[s]
            best, best_d = None, None
            for m in b:
                d = abs(m.stamp_ns - t)
                if d <= tol and (best_d is None or d < best_d):
                    best, best_d = m, d
                if m.stamp_ns > t + tol:
                    break
            chosen[s] = best
            keep: deque[Message] = deque()
            for m in b:
                if m is best:
                    continue
                if m.stamp_ns <= t or (best is not None and m.stamp_ns < best.stamp_ns):
                    self.c.unmatched(s, "not_nearest" if abs(m.stamp_ns - t) <= tol else "outside_tolerance")
                else:
                    keep.append(m)
            self.buf[s] = keep
        self.last_emitted = t
        return _frame(self.spec, t, chosen)

    def flush(self, now: int) -> list[FrameSet]:
        out = []
        while self.pending:
            out.append(self._make(self.pending.popleft()))
        for s in self.others:
            self.c.unmatched(s, "flushed", len(self.buf[s]))
            self.buf[s].clear()
        return out


class _ApproximateCore:
    """ROS message_filters ApproximateTime (Willow Garage's algorithm: pivot, candidate, virtual moves
    with inter-message lower bound 0), on the sensors that are not silent (see :class:`SyncSpec`)."""

    def __init__(self, spec: SyncSpec, counters: SyncCounters):
        self.spec, self.c = spec, counters
        self.all = spec.sensors
        self.deques: dict[str, deque[Message]] = {s: deque() for s in self.all}
        self.past: dict[str, list[Message]] = {s: [] for s in self.all}
        self.dropped: dict[str, bool] = dict.fromkeys(self.all, False)
        self.active: tuple[str, ...] = self.all
        self.candidate: dict[str, Message] | None = None
        self.pivot: str | None = None
        self.pivot_time = 0
        self.cand_start = self.cand_end = 0
        self.out: list[FrameSet] = []
        self.last_seen: dict[str, int] = {}
        self.start: int | None = None

    # --- helpers
    def _t(self, m: Message) -> int:
        return m.stamp_ns

    def _nonempty(self) -> int:
        return sum(1 for s in self.active if self.deques[s])

    def _boundary(self, end: bool, virtual: bool = False) -> tuple[str, int]:
        idx, time = None, 0
        for s in self.active:
            if virtual and not self.deques[s]:  # optimistic: the next message comes at the pivot
                t = max(self._t(self.past[s][-1]), self.pivot_time)
            else:
                t = self._t(self.deques[s][0])
            if idx is None or ((t < time) ^ end):
                idx, time = s, t
        return idx, time

    def _move_to_past(self, s: str) -> None:
        self.past[s].append(self.deques[s].popleft())

    def _make_candidate(self) -> None:
        self.candidate = {s: self.deques[s][0] for s in self.active}
        for s in self.active:
            self.c.unmatched(s, "superseded", len(self.past[s]))
            self.past[s].clear()

    def _recover(self) -> None:
        for s in self.all:
            while self.past[s]:
                self.deques[s].appendleft(self.past[s].pop())

    def _publish(self) -> None:
        cand = self.candidate
        ref = self.spec.reference
        stamp = cand[ref].stamp_ns if ref in cand else max(m.stamp_ns for m in cand.values())
        self.out.append(_frame(self.spec, stamp, cand))
        self.candidate, self.pivot = None, None
        self._recover()
        for s in self.active:
            self.deques[s].popleft()

    def _better_or_equal_end(self, end_time: int, start_time: int) -> bool:
        return (end_time - self.cand_end) * (1 + self.spec.age_penalty) >= (start_time - self.cand_start)

    def _process(self) -> None:
        max_iv = self.spec.max_interval_ns
        while self.active and self._nonempty() == len(self.active):
            end_i, end_t = self._boundary(True)
            start_i, start_t = self._boundary(False)
            for s in self.active:
                if s != end_i:
                    self.dropped[s] = False
            if self.pivot is None:
                if (max_iv is not None and end_t - start_t > max_iv) or self.dropped[end_i]:
                    self.deques[start_i].popleft()
                    self.c.unmatched(start_i, "superseded")
                    continue
                self._make_candidate()
                self.cand_start, self.cand_end = start_t, end_t
                self.pivot, self.pivot_time = end_i, end_t
                self._move_to_past(start_i)
            else:
                if self._better_or_equal_end(end_t, start_t):
                    self._move_to_past(start_i)
                else:
                    self._make_candidate()
                    self.cand_start, self.cand_end = start_t, end_t
                    self._move_to_past(start_i)
            if start_i == self.pivot:
                self._publish()
            elif self._better_or_equal_end(end_t, self.pivot_time):
                self._publish()
            elif self._nonempty() < len(self.active):
                moves: list[str] = []
                while True:
                    vend_i, vend_t = self._boundary(True, virtual=True)
                    vstart_i, vstart_t = self._boundary(False, virtual=True)
                    if self._better_or_equal_end(vend_t, self.pivot_time):
                        self._publish()
                        break
                    if not self._better_or_equal_end(vend_t, vstart_t):
                        for s in reversed(moves):  # undo the virtual moves
                            self.deques[s].appendleft(self.past[s].pop())
                        break
                    self._move_to_past(vstart_i)
                    moves.append(vstart_i)

    def _reset_search(self) -> None:
        self._recover()
        self.candidate, self.pivot = None, None

    # --- interface
    def add(self, m: Message) -> None:
        s = m.sensor_id
        self.last_seen[s] = m.stamp_ns
        if s not in self.active:
            self._set_active(tuple(x for x in self.all if x in self.active or x == s))
        q = self.deques[s]
        q.append(m)
        if len(q) == 1 and self._nonempty() == len(self.active):
            self._process()
        if len(q) + len(self.past[s]) > self.spec.queue_size:
            self._reset_search()
            self.deques[s].popleft()
            self.c.unmatched(s, "queue_overflow")
            self.dropped[s] = True
            self._process()

    def _set_active(self, active: tuple[str, ...]) -> None:
        self._reset_search()
        for s in self.all:
            if s not in active and self.deques[s]:
                self.c.unmatched(s, "stale", len(self.deques[s]))
                self.deques[s].clear()
        self.active = active

    def poll(self, now: int) -> list[FrameSet]:
        if self.start is None:
            self.start = now
        silent = [s for s in self.active if now - self.last_seen.get(s, self.start) > self.spec.silence_ns]
        if silent and len(silent) < len(self.active):
            self._set_active(tuple(s for s in self.active if s not in silent))
            self._process()
        out, self.out = self.out, []
        return out

    def flush(self, now: int) -> list[FrameSet]:
        out, self.out = self.out, []
        self._reset_search()
        for s in self.all:
            self.c.unmatched(s, "flushed", len(self.deques[s]))
            self.deques[s].clear()
        return out
