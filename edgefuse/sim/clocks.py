"""Per-sensor clocks of the simulated rig: capture schedule, raw sensor stamps and host receive times.

Time axes (all int64 ns):
- **true time** t: the simulation's time from 0; the host's monotonic clock reads true time;
- a sensor captures at ``t_k = phase + k · period / (1 + drift)`` (its period is measured by its own,
  drifting oscillator);
- its **raw stamp** is its own clock read at ``t_k + stamp_delay`` (the stamp refers to a moment after
  the capture, e.g. the end of a camera's readout): ``offset + (t_k + stamp_delay)·(1 + drift) + jitter``;
- the host **receives** it at ``t_k + latency + latency jitter`` (≥ t_k + stamp_delay, never negative).

The truth (offset, drift, jitter, latency, stamp delay) is what :func:`clock_truth` records as MCAP
metadata ``sim.clocks`` so that clock mapping and time-offset calibration can be scored.
Randomness comes from :func:`message_rng` (seed, stream, message index), so message k's stamps do not
depend on which messages were generated before it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from edgefuse.sim.rig import LATENCY_JITTER_NS, SENSORS, STAMP_DELAY_NS

_NS = 1_000_000_000
_RNG_CLOCKS = 2000
# per kind: stamp jitter std (ns); the latency jitter is the rig's (it also sets the kit's nominal latency)
_STAMP_JITTER_NS = {
    "camera": 400_000,
    "lidar": 2_000,
    "radar": 300_000,
    "odometry": 200_000,
    "imu": 50_000,
}


def message_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator for one message of one stream: independent of every other (seed, stream, index)."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


@dataclass(frozen=True)
class SensorClock:
    """One sensor's clock and transport (see module doc). ``stream``: the rng stream number."""

    sensor_id: str
    period_ns: int
    phase_ns: int
    offset_ns: int
    drift_ppm: float
    jitter_ns: float
    latency_ns: int
    latency_jitter_ns: float
    stamp_delay_ns: int
    stream: int

    @property
    def true_period_ns(self) -> float:
        return self.period_ns / (1.0 + self.drift_ppm * 1e-6)

    def capture_time(self, k: int) -> int:
        """True time of capture ``k`` (ns)."""
        return self.phase_ns + int(round(k * self.true_period_ns))

    def first_index_at_or_after(self, t_ns: int) -> int:
        return max(0, int(np.ceil((t_ns - self.phase_ns) / self.true_period_ns - 1e-9)))

    def raw_stamp(self, t_ns: int, rng: np.random.Generator) -> int:
        """The sensor's stamp of a capture at true time ``t_ns``."""
        local = (t_ns + self.stamp_delay_ns) * (1.0 + self.drift_ppm * 1e-6)
        return self.offset_ns + int(round(local + rng.normal(0.0, self.jitter_ns)))

    def recv_time(self, t_ns: int, rng: np.random.Generator) -> int:
        """Host receive time of a capture at true time ``t_ns``: latency plus a positive-skewed jitter
        (gamma, shape 4) with mean 0, never before the stamp moment."""
        j = self.latency_jitter_ns
        extra = rng.gamma(4.0, j / 2.0) - 2.0 * j if j > 0 else 0.0
        return t_ns + max(self.stamp_delay_ns, int(round(self.latency_ns + extra)))


def sim_clocks(seed: int) -> dict[str, SensorClock]:
    """The clocks of the sim rig's sensors (rates and nominal latencies from
    :data:`~edgefuse.sim.rig.SENSORS`), with seed-dependent offsets (100–10,000 s), drifts (±40 ppm)
    and capture phases."""
    rng = np.random.default_rng(seed + _RNG_CLOCKS)
    out = {}
    for stream, (sid, kind, rate, _frame, latency_ms) in enumerate(SENSORS):
        period = int(round(_NS / rate))
        jitter, lat_jitter = _STAMP_JITTER_NS[kind], LATENCY_JITTER_NS[kind]
        out[sid] = SensorClock(
            sensor_id=sid,
            period_ns=period,
            phase_ns=int(rng.integers(0, period)),
            offset_ns=int(rng.integers(100 * _NS, 10_000 * _NS)),
            drift_ppm=float(np.round(rng.uniform(-40.0, 40.0), 3)),
            jitter_ns=float(jitter),
            latency_ns=int(round(latency_ms * 1e6)),
            latency_jitter_ns=float(lat_jitter),
            stamp_delay_ns=STAMP_DELAY_NS[sid],
            stream=stream + 1,
        )
    return out


def clock_truth(clocks: dict[str, SensorClock]) -> dict[str, str]:
    """The MCAP metadata ``sim.clocks``: sensor id → JSON of its clock's true parameters, with the model
    (``raw = offset_ns + (t + stamp_delay_ns)·(1 + drift_ppm·1e-6) + N(0, jitter_ns)``)."""
    out = {sid: json.dumps(asdict(c), sort_keys=True) for sid, c in clocks.items()}
    out["model"] = (
        "capture t_k = phase_ns + k*period_ns/(1+drift_ppm*1e-6); "
        "raw_stamp = offset_ns + (t_k + stamp_delay_ns)*(1+drift_ppm*1e-6) + N(0, jitter_ns); "
        "recv = t_k + max(stamp_delay_ns, "
        "latency_ns + Gamma(4, latency_jitter_ns/2) - 2*latency_jitter_ns); "
        "stamp_ns = t_k (true capture time; LiDAR: sweep end)"
    )
    return out
