"""Clock mapping: each sensor's clock onto the host (rig) clock. Design notes: docs/sync.md.

A pure core taking time as an argument (never reading a clock), so live and replay run the same code and
replay is deterministic:

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

Also the time units (``NS``, ``MS``, ``HOUR_NS``) and :class:`SyncInputError`, shared with
:mod:`edgefuse.sync.synchronizer` and :mod:`edgefuse.sync.report`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from edgefuse.errors import InputError
from edgefuse.rig import HOUR_NS  # Velodyne stamps: µs past the top of the hour
from edgefuse.types import Message

NS = 1_000_000_000
MS = 1_000_000
__all__ = ["HOUR_NS", "MS", "NS", "ClockEstimator", "ClockStatus", "StampMapper", "SyncInputError"]


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
    ``host`` (raw = host monotonic time) pass through; the others (``sensor``, ``ptp``, ``gps``: another
    time domain) are estimated, periodic at the kit's ``rate_hz``, unwrapped with the sensor's
    :meth:`~edgefuse.rig.SensorSpec.raw_wrap_ns` (an hour for Velodyne sources). ``wrap_ns``: per-sensor
    wrap periods that override the kit's (e.g. ``{"lidar_top": HOUR_NS}``); ``estimator``: keyword
    arguments for every estimator. Messages of sensors not in the kit pass unchanged."""

    def __init__(self, kit, calibration=None, *, wrap_ns: dict[str, int] | None = None, **estimator):
        self.kit = kit
        self.offsets = dict(calibration.time_offsets_ns) if calibration is not None else {}
        self.estimators: dict[str, ClockEstimator] = {}
        self.latency: dict[str, int] = {}
        for s in kit.sensors:
            self.estimators[s.id] = ClockEstimator(
                wrap_ns=(wrap_ns or {}).get(s.id, s.raw_wrap_ns()),
                period_ns=int(round(NS / s.rate_hz)),
                passthrough=s.clock == "host",
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
