"""The offline sync report (``edgefuse sync report LOG``): :func:`sync_report` replays a log through
clock mapping (:class:`~edgefuse.sync.clock.StampMapper`) and the synchronizer
(:class:`~edgefuse.sync.synchronizer.Synchronizer`) and reports per-sensor clock offset, drift and
residuals, match residuals, frames and drops, with a residual histogram PNG. Design notes: docs/sync.md.
"""

from __future__ import annotations

import numpy as np

from edgefuse.sync.clock import MS, NS, StampMapper, SyncInputError
from edgefuse.sync.synchronizer import REFERENCE, Synchronizer, SyncSpec


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
