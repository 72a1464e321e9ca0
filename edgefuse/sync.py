"""Time synchronization: per-sensor clock mapping and the synchronizer that turns message streams into
:class:`~edgefuse.types.FrameSet` s. Design notes: docs/sync.md.

Two pure cores, both taking time as an argument (never reading a clock), so live and replay run the same
code and replay is deterministic:

- :class:`ClockEstimator` — one sensor's clock → host clock: ``update(raw_ns, recv_ns) -> mapped_ns``.
  Wrap-arounds are unwrapped (``wrap_ns``: 3.6e12 for Velodyne's µs-past-the-hour, 2**32 for a 32-bit
  counter), stamp jitter of periodic sensors is smoothed by a line over the capture index, transport
  jitter is removed by the **minimum-delay envelope** of ``recv − raw`` over ``raw`` (drift: a robust
  line through per-bin minima over a long window; offset: that line under every point of a recent
  window), clock jumps are detected (residuals beyond a threshold for K samples that agree with each
  other), re-converged and reported. ``mapped`` is the host time at which the stamp would have arrived
  with the minimum transport delay: a constant transport latency cannot be told from a clock offset
  with one-way stamps, so :class:`StampMapper` subtracts the kit's nominal latency and adds the
  calibrated time offset (DESIGN §3).
- :class:`Synchronizer` — ``update(now_ns, messages) -> list[FrameSet]`` / ``flush(now_ns)`` with two
  policies: ``reference`` (each reference message is a frame; every other sensor contributes its nearest
  message within a tolerance, waiting at most ``latency_budget_ns`` of ``now_ns``) and ``approximate``
  (ROS message_filters ApproximateTime). Counters: ``frames_dropped`` (a frame that was due and not
  emitted, by reason) and ``messages_unmatched`` (a message no frame used, by sensor and reason) are never
  mixed.

:func:`sync_report` runs both over a log (``edgefuse sync report LOG``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgefuse.errors import InputError
from edgefuse.types import FrameSet, Message

NS = 1_000_000_000
MS = 1_000_000
#: Velodyne stamps: µs past the top of the hour.
HOUR_NS = 3_600 * NS


class SyncInputError(InputError):
    """A synchronizer or clock-mapping argument is wrong (names the argument and what was expected)."""


# ================================================================ clock mapping


@dataclass(frozen=True)
class ClockStatus:
    """What a :class:`ClockEstimator` knows now. ``offset_ns``: mapped − raw at the last sample (host
    minus sensor clock, minimum transport latency included); ``drift_ppm``: how much faster the sensor
    clock runs than the host's (ppm; 0 until the window spans ``min_drift_span_ns``); ``jumps``: clock
    jumps detected, ``last_jump_ns``: the size of the last one (sensor clock step, + = jumped forward),
    ``last_jump_at_ns``: the host receive time where it was confirmed; ``wraps``: wrap-arounds unwrapped;
    ``samples``: updates since start; ``period_resets``: restarts of the periodic stamp smoother (the
    stamps did not follow the period)."""

    offset_ns: int
    drift_ppm: float
    jumps: int
    last_jump_ns: int
    last_jump_at_ns: int
    wraps: int
    samples: int
    period_resets: int
    passthrough: bool


class _PeriodSmoother:
    """Least-squares line of (capture index k, raw stamp) over the last ``n`` captures; the capture index
    grows by round(Δraw / period) so dropped frames keep the line. Exact sums in Python ints."""

    def __init__(self, period_ns: int, n: int):
        self.nominal = int(period_ns)
        self.n = int(n)
        self.reset()

    def reset(self) -> None:
        self.win: deque[tuple[int, int]] = deque()
        self.base = 0
        self.k = 0
        self.sk = self.skk = self.sr = self.skr = 0

    def _line(self) -> float:
        """The fitted slope (ns per capture); the nominal period until 3 captures."""
        m = len(self.win)
        den = m * self.skk - self.sk * self.sk
        slope = (m * self.skr - self.sk * self.sr) / den if m >= 3 and den > 0 else float(self.nominal)
        return slope

    def predict(self, k: int) -> float:
        """Fitted raw (relative to base) at capture k."""
        m = len(self.win)
        slope = self._line()
        return self.sr / m + slope * (k - self.sk / m)

    def update(self, raw: int) -> tuple[int, bool]:
        """Add one raw stamp; returns (smoothed raw, reset happened)."""
        if not self.win:
            self.base, self.k = raw, 0
            self._push(0, 0)
            return raw, False
        slope = self._line()
        last_k = self.k
        pred_last = self.predict(last_k)
        rel = raw - self.base
        dk = int(round((rel - pred_last) / slope)) if slope > 0 else 1
        if dk < 1:
            dk = 1
        k = last_k + dk
        innovation = rel - self.predict(k)
        if abs(innovation) > self.nominal / 4:
            self.reset()
            self.base, self.k = raw, 0
            self._push(0, 0)
            return raw, True
        self.k = k
        self._push(k, rel)
        if len(self.win) > self.n:
            ok, orel = self.win.popleft()
            self.sk -= ok
            self.skk -= ok * ok
            self.sr -= orel
            self.skr -= ok * orel
        return self.base + int(round(self.predict(k))), False

    def _push(self, k: int, rel: int) -> None:
        self.win.append((k, rel))
        self.sk += k
        self.skk += k * k
        self.sr += rel
        self.skr += k * rel


class ClockEstimator:
    """Online mapping of one sensor's clock onto the host clock (see module doc).

    Arguments (all int64 ns unless said): ``wrap_ns`` the raw counter's wrap period (None = no wrap);
    ``period_ns`` the nominal capture period for stamp smoothing (None = not periodic, no smoothing);
    ``smooth_n`` captures in the smoothing line; ``window_ns`` the span of the lower-envelope window;
    ``bin_ns`` envelope bin (one minimum per bin); ``min_drift_span_ns`` the window span before a drift
    is estimated (before: offset only, with the previous drift after a jump); ``offset_window_ns`` the
    recent span whose minimum delay sets the offset; ``jump_threshold_ns`` and
    ``jump_samples`` (K): K consecutive residuals beyond the threshold that agree within the threshold
    are a clock jump; ``passthrough``: the stamps are already host/PTP/GPS time (mapped = raw)."""

    def __init__(
        self,
        *,
        wrap_ns: int | None = None,
        period_ns: int | None = None,
        smooth_n: int = 64,
        window_ns: int = 60 * NS,
        bin_ns: int = NS // 2,
        min_drift_span_ns: int = 15 * NS,
        offset_window_ns: int = 8 * NS,
        jump_threshold_ns: int = 20 * MS,
        jump_samples: int = 5,
        passthrough: bool = False,
    ):
        for name, v in (
            ("window_ns", window_ns),
            ("bin_ns", bin_ns),
            ("jump_threshold_ns", jump_threshold_ns),
        ):
            if int(v) <= 0:
                raise SyncInputError(f"ClockEstimator {name}: expected a positive number of ns, got {v}")
        if wrap_ns is not None and int(wrap_ns) <= 0:
            raise SyncInputError(f"ClockEstimator wrap_ns: expected a positive period or None, got {wrap_ns}")
        if period_ns is not None and int(period_ns) <= 0:
            raise SyncInputError(
                f"ClockEstimator period_ns: expected a positive period or None, got {period_ns}"
            )
        if int(jump_samples) < 1:
            raise SyncInputError(f"ClockEstimator jump_samples: expected ≥ 1, got {jump_samples}")
        self.wrap_ns = None if wrap_ns is None else int(wrap_ns)
        self.window_ns, self.bin_ns = int(window_ns), int(bin_ns)
        self.min_drift_span_ns = int(min_drift_span_ns)
        self.offset_window_ns = int(offset_window_ns)
        self.jump_threshold_ns, self.jump_samples = int(jump_threshold_ns), int(jump_samples)
        self.passthrough = bool(passthrough)
        self._smoother = _PeriodSmoother(period_ns, smooth_n) if period_ns else None
        self._last_unwrapped: int | None = None
        self._wrap_count = 0
        self._wrap_n = 0
        self.samples = 0
        self.jumps = 0
        self.last_jump_ns = 0
        self.last_jump_at_ns = 0
        self.period_resets = 0
        self.last_residual_ns = 0
        self._slope = 0.0  # d(recv − raw)/d(raw); kept across jumps (a jump steps the offset only)
        self._slope_known = False
        self._reset_envelope()

    # ------------------------------------------------------------ state

    def _reset_envelope(self) -> None:
        self._bins: deque[tuple[int, int]] = deque()  # closed bins: (x, y) at each bin's minimum
        self._cur: tuple[int, int] | None = None  # current bin minimum
        self._cur_start = 0
        self._x0 = 0  # line: y = a + slope·(x − x0)
        self._a: int | None = None
        self._suspect: list[tuple[int, int, int]] = []  # (x, y, residual) beyond the threshold
        self._hist: deque[int] = deque(maxlen=512)  # recent residuals above the envelope
        self._post: tuple[int, int, float] | None = None  # the line before a jump, while re-converging
        self._post_r: list[int] = []

    def unwrap(self, raw_ns: int) -> int:
        """The raw stamp on a continuous axis: the wrap count that puts it nearest the previous one."""
        raw = int(raw_ns)
        if self.wrap_ns is None:
            return raw
        if self._last_unwrapped is None:
            return raw
        n = (self._last_unwrapped - raw + self.wrap_ns // 2) // self.wrap_ns
        return raw + n * self.wrap_ns

    def _line_at(self, x: int) -> int:
        return self._a + int(round(self._slope * (x - self._x0)))

    def _fit_slope(self) -> None:
        """Drift: least squares over the closed bins' minima, refit on the lower half of them (the
        minima nearest the minimum-delay line). Only once the bins span ``min_drift_span_ns``."""
        if len(self._bins) < 4 or self._bins[-1][0] - self._bins[0][0] < self.min_drift_span_ns:
            return
        b = np.asarray(self._bins, dtype=np.int64)
        x = (b[:, 0] - b[-1, 0]).astype(np.float64)
        y = (b[:, 1] - b[-1, 1]).astype(np.float64)
        keep = np.ones(x.shape[0], bool)
        for _ in range(2):
            xm, ym = x[keep].mean(), y[keep].mean()
            sxx = float(((x[keep] - xm) ** 2).sum())
            if sxx <= 0:
                return
            slope = float(((x[keep] - xm) * (y[keep] - ym)).sum()) / sxx
            r = y - (ym + slope * (x - xm))
            keep = r <= np.median(r)
            if keep.sum() < 2:
                break
        self._slope = slope
        self._slope_known = True

    def _refit(self) -> None:
        """Offset: the line with the current drift under every point of the last ``offset_window_ns``
        (the minimum delay over a fixed span, so its small-sample bias stays the same)."""
        pts = list(self._bins) + ([self._cur] if self._cur is not None else [])
        if not pts:
            return
        x_last = pts[-1][0]
        self._x0 = x_last
        lo = x_last - self.offset_window_ns
        self._a = min(y - int(round(self._slope * (x - x_last))) for x, y in pts if x >= lo)

    def _add_point(self, x: int, y: int) -> None:
        if self._cur is None or x >= self._cur_start + self.bin_ns:
            if self._cur is not None:
                self._bins.append(self._cur)
            self._cur = (x, y)
            self._cur_start = x
            while self._bins and self._bins[0][0] < x - self.window_ns:
                self._bins.popleft()
            if self._post is None:
                self._fit_slope()
        elif y < self._cur[1]:
            self._cur = (x, y)
        if self._post is None and (self._a is None or y < self._line_at(x) or self._cur == (x, y)):
            self._refit()

    # ------------------------------------------------------------ update

    def update(self, raw_ns: int, recv_ns: int) -> int:
        """Add one (sensor stamp, host receive stamp) pair; return the mapped stamp (host clock, ns)."""
        self.samples += 1
        raw, recv = int(raw_ns), int(recv_ns)
        if self.passthrough:
            self.last_residual_ns = recv - raw
            return raw
        u = self.unwrap(raw)
        if self.wrap_ns is not None:
            n = (u - raw) // self.wrap_ns
            self._wrap_count += abs(n - self._wrap_n)
            self._wrap_n = n
        self._last_unwrapped = u
        x = u
        if self._smoother is not None:
            x, was_reset = self._smoother.update(u)
            self.period_resets += int(was_reset and self.samples > 1)
        y = recv - x
        if self._a is None:
            self._add_point(x, y)
            self.last_residual_ns = 0
            return x + self._line_at(x)
        r = y - self._line_at(x)
        if abs(r) > self.jump_threshold_ns:
            self._suspect.append((x, y, r))
            rs = [s[2] for s in self._suspect]
            if max(rs) - min(rs) > self.jump_threshold_ns or (rs[-1] > 0) != (rs[0] > 0):
                self._suspect = [(x, y, r)]  # not one consistent step: start counting again
            if len(self._suspect) >= self.jump_samples:
                self._jump(recv)
                self.last_residual_ns = 0
                return x + self._line_at(x)
            self.last_residual_ns = r
            return x + self._line_at(x)  # not (yet) believed: mapped with the current line
        self._suspect = []
        self._add_point(x, y)
        if self._post is not None:
            self._post_add(x, y)
        mapped = x + self._line_at(x)
        self.last_residual_ns = recv - mapped
        if self._post is None:
            self._hist.append(max(0, self.last_residual_ns))
        return mapped

    def _jump(self, recv: int) -> None:
        """A confirmed clock step: restart the envelope from the suspect samples. While the new envelope
        has few samples its minimum sits higher above the true minimum delay than the old one did, so for
        ``offset_window_ns`` the offset is the old line (the drift does not step) shifted by the step
        estimated from the new samples: the mean of (their minimum residual less the expected minimum of
        as many draws from the residuals seen before) and (their mean residual less the old mean)."""
        suspect = self._suspect
        rs = sorted(s[2] for s in suspect)
        self.jumps += 1
        self.last_jump_ns = -rs[len(rs) // 2]  # y = recv − raw drops when the sensor clock steps forward
        self.last_jump_at_ns = recv
        old = (self._x0, self._a, self._slope)
        hist = np.sort(np.asarray(self._hist, dtype=np.float64)) if len(self._hist) >= 32 else None
        self._reset_envelope()
        if self._smoother is not None:
            self._smoother.reset()
        if hist is not None:
            self._post = old
            self._post_hist = hist
            self._post_start = suspect[0][0]
        for x, y, _ in suspect:
            self._add_point(x, y)
            if self._post is not None:
                self._post_add(x, y)
        if self._post is None:
            self._refit()

    def _post_add(self, x: int, y: int) -> None:
        x0, a0, slope = self._post
        self._post_r.append(y - a0 - int(round(slope * (x - x0))))
        n = len(self._post_r)
        h = self._post_hist
        m = h.shape[0]
        surv = (np.arange(m, -1, -1, dtype=np.float64) / m) ** n  # P(min of n ≥ h[i]) steps
        expected_min = float(h @ (surv[:-1] - surv[1:]))
        self._x0, self._slope = x0, slope
        by_min = min(self._post_r) - expected_min
        by_mean = sum(self._post_r) / n - float(h.mean())
        self._a = a0 + int(round((by_min + by_mean) / 2))
        if x - self._post_start >= self.offset_window_ns:
            self._post = None
            self._refit()

    def map(self, raw_ns: int) -> int:
        """Map a raw stamp with the current estimate, without learning from it."""
        if self.passthrough:
            return int(raw_ns)
        if self._a is None:
            raise SyncInputError("ClockEstimator.map: no samples yet; call update(raw_ns, recv_ns) first")
        x = self.unwrap(raw_ns)
        return x + self._line_at(x)

    def status(self) -> ClockStatus:
        if self.passthrough or self._a is None or self._last_unwrapped is None:
            offset = 0
        else:
            offset = self._line_at(self._last_unwrapped)
        drift = (1.0 / (1.0 + self._slope) - 1.0) * 1e6 if self._slope_known else 0.0
        return ClockStatus(
            offset_ns=int(offset),
            drift_ppm=float(drift),
            jumps=self.jumps,
            last_jump_ns=int(self.last_jump_ns),
            last_jump_at_ns=int(self.last_jump_at_ns),
            wraps=self._wrap_count,
            samples=self.samples,
            period_resets=self.period_resets,
            passthrough=self.passthrough,
        )


class StampMapper:
    """Maps every message of a kit onto the rig clock (DESIGN §3): ``stamp_ns = map(raw) − nominal
    latency + calibrated time offset``. One :class:`ClockEstimator` per sensor: sensors whose kit clock is
    ``host``/``ptp``/``gps`` pass through; others are periodic at the kit's ``rate_hz``. ``wrap_ns``:
    per-sensor wrap period (e.g. ``{"lidar_top": HOUR_NS}``); ``estimator``: keyword arguments for every
    estimator. Messages of sensors not in the kit pass unchanged."""

    def __init__(self, kit, calibration=None, *, wrap_ns: dict[str, int] | None = None, **estimator):
        self.kit = kit
        self.offsets = dict(calibration.time_offsets_ns) if calibration is not None else {}
        self.estimators: dict[str, ClockEstimator] = {}
        self.latency: dict[str, int] = {}
        for s in kit.sensors:
            self.estimators[s.id] = ClockEstimator(
                wrap_ns=(wrap_ns or {}).get(s.id),
                period_ns=int(round(NS / s.rate_hz)),
                passthrough=s.clock != "sensor",
                **estimator,
            )
            self.latency[s.id] = s.nominal_latency_ns

    def map(self, msg: Message) -> Message:
        est = self.estimators.get(msg.sensor_id)
        if est is None:
            return msg
        mapped = est.update(msg.raw_stamp_ns, msg.recv_ns)
        stamp = mapped - self.latency[msg.sensor_id] + self.offsets.get(msg.sensor_id, 0)
        return Message(
            msg.sensor_id,
            stamp,
            msg.payload,
            raw_stamp_ns=msg.raw_stamp_ns,
            recv_ns=msg.recv_ns,
            frame=msg.frame,
            seq=msg.seq,
        )


# ================================================================ synchronizer


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
    ``silence_ns``: approximate policy — a sensor with no message stamped in the last ``silence_ns`` is
    left out of the match (its frames mark it missing) until it speaks again; ``queue_size``,
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
    sensor → frames emitted without it; ``last_seen_ns``: sensor → last message stamp;
    ``last_frame_ns``: the stamp of the last frame emitted."""

    frames_emitted: int = 0
    frames_dropped: dict[str, int] = field(default_factory=dict)
    messages_unmatched: dict[str, dict[str, int]] = field(default_factory=dict)
    frames_missing: dict[str, int] = field(default_factory=dict)
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
        if self.last_emitted is not None and m.stamp_ns < self.last_emitted - tol:
            self.c.unmatched(m.sensor_id, "late")
            return
        self.buf[m.sensor_id].append(m)

    def _decided(self, s: str, t: int) -> bool:
        b = self.buf[s]
        return bool(b) and b[-1].stamp_ns >= t

    def poll(self, now: int) -> list[FrameSet]:
        out = []
        while self.pending:
            r = self.pending[0]
            if now < r.stamp_ns + self.spec.latency_budget_ns and not all(
                self._decided(s, r.stamp_ns) for s in self.others
            ):
                break
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


# ================================================================ report


def _percentiles(values: list[int]) -> dict:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.abs(np.asarray(values, dtype=np.float64)) / MS
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 4),
    }


def sync_report(
    path,
    *,
    kit=None,
    policy: str = REFERENCE,
    latency_budget_ns: int = 100 * MS,
    png: str | None = None,
) -> dict:
    """Replay a log through clock mapping and the synchronizer; report per sensor the estimated offset
    and drift, clock residuals (receive − mapped, the transport jitter above the envelope) p50/p99/max,
    match residuals, and the frames emitted / dropped and messages unmatched by reason. ``kit``: a
    :class:`~edgefuse.rig.SensorKit` (default: the sim kit when the log is a sim log, else one built
    from the log's topics with the first LiDAR as reference). Writes a residual histogram PNG to ``png``
    (default: next to the log, ``<log>.sync.png``)."""
    from pathlib import Path

    from edgefuse.logs import LogReader

    reader = LogReader(path)
    calib = reader.calibration()
    topics = reader.topics()
    if kit is None:
        kit = _kit_from_log(path, topics, reader.metadata())
    mapper = StampMapper(kit, calib)
    spec = SyncSpec.from_kit(kit, policy, latency_budget_ns=latency_budget_ns)
    sync = Synchronizer(spec)
    clock_res: dict[str, list[int]] = {s.id: [] for s in kit.sensors}
    match_res: dict[str, list[int]] = {s: [] for s in spec.sensors}
    counts: dict[str, int] = {}
    known = {s.id for s in kit.sensors}
    now = None
    for _topic, msg in reader.messages():
        if msg.sensor_id not in known:
            continue
        counts[msg.sensor_id] = counts.get(msg.sensor_id, 0) + 1
        m = mapper.map(msg)
        est = mapper.estimators[msg.sensor_id]
        if est.samples > 1:
            clock_res[msg.sensor_id].append(est.last_residual_ns)
        now = msg.recv_ns
        if m.sensor_id in spec.sensors:
            for fs in sync.update(now, [m]):
                for s, r in fs.residual_ns.items():
                    match_res[s].append(r)
    if now is not None:
        for fs in sync.flush(now):
            for s, r in fs.residual_ns.items():
                match_res[s].append(r)
    last_frame = sync.counters.last_frame_ns
    sensors = {}
    for s in kit.sensors:
        st = mapper.estimators[s.id].status()
        sensors[s.id] = {
            "messages": counts.get(s.id, 0),
            "clock": "passthrough" if st.passthrough else "estimated",
            "offset_ns": st.offset_ns,
            "drift_ppm": round(st.drift_ppm, 3),
            "jumps": st.jumps,
            "last_jump_ms": round(st.last_jump_ns / MS, 3) if st.jumps else None,
            "wraps": st.wraps,
            "clock_residual": _percentiles(clock_res[s.id]),
        }
        if s.id in spec.sensors:
            sensors[s.id]["match_residual"] = _percentiles(match_res[s.id])
            sensors[s.id]["frames_missing"] = sync.counters.frames_missing.get(s.id, 0)
            if s.id in sync.counters.last_seen_ns:
                seen = sync.counters.last_seen_ns[s.id]
                sensors[s.id]["last_seen_ns"] = seen
                if last_frame is not None and last_frame - seen > 2 * NS / s.rate_hz:
                    sensors[s.id]["silent_for_s"] = round((last_frame - seen) / NS, 3)
    out_png = Path(png) if png else Path(str(path) + ".sync.png")
    _residual_png(out_png, clock_res)
    result = {
        "log": str(path),
        "kit": kit.name,
        "policy": policy,
        "reference": spec.reference,
        "latency_budget_ms": latency_budget_ns / MS,
        "sensors": sensors,
        **sync.counters.as_dict(),
        "png": str(out_png),
    }
    if reader.errors:
        result["log_errors"] = list(reader.errors)
    return result


def _kit_from_log(path, topics, metadata: dict) -> object:
    """The sim kit for a simulator log (metadata ``sim``), else a kit of the log's sensor topics: rates
    from the log, own clocks, no nominal latency, the first LiDAR as reference."""
    from edgefuse.rig import SensorKit, SensorSpec

    if "sim" in metadata:
        from edgefuse.sim.rig import sim_kit

        sim = metadata["sim"]
        try:
            return sim_kit(sim.get("scenario", "default"), int(sim.get("seed", "0")))
        except ValueError:
            raise SyncInputError(
                f"{path}: metadata 'sim': seed {sim.get('seed')!r}: expected an integer"
            ) from None
    kinds = {
        "PointCloud": "lidar",
        "RadarScan": "radar",
        "Image": "camera",
        "CompressedImage": "camera",
        "Odometry": "odometry",
        "Imu": "imu",
    }
    sensors = []
    for info in topics.values():
        sid = info.sensor_id
        kind = kinds.get(info.payload)
        if not sid or kind is None or any(s.id == sid for s in sensors):
            continue
        dur = (info.last_ns - info.first_ns) / NS
        rate = (info.count - 1) / dur if info.count > 1 and dur > 0 else 10.0
        sensors.append(SensorSpec(sid, kind, f"mcap://{path}", rate, sid))
    if not sensors:
        raise SyncInputError(
            f"{path}: no sensor topics (point clouds, images, radar, odometry, IMU) in the log"
        )
    lidars = [s.id for s in sensors if s.kind == "lidar"]
    return SensorKit("from-log", tuple(sensors), lidars[0] if lidars else sensors[0].id, None)


def _residual_png(path, residuals: dict[str, list[int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for s, r in residuals.items():
        if len(r) > 1:
            a = np.asarray(r, dtype=np.float64) / MS
            hi = max(float(np.percentile(a, 99.5)), 1e-3)
            ax.hist(np.clip(a, None, hi), bins=80, histtype="step", label=f"{s} (n={len(a)})")
    ax.set_xlabel("clock residual: receive − mapped stamp (ms)")
    ax.set_ylabel("messages")
    ax.set_title("Transport jitter above the minimum-delay envelope")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
