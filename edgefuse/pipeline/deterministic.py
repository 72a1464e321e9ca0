"""Deterministic mode: one thread, every message in log order with the log's receive stamp as ``now``, no
drops, no deadline — the same log gives the same detection bytes (golden tests, ``replay
--deterministic``, ``profile``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from edgefuse.frames import Clock, Frame, FrameCore, PipelineConfig
from edgefuse.pipeline.report import summary
from edgefuse.pipeline.sinks import McapSink
from edgefuse.pipeline.stages import decode, infer, preprocess, warmup
from edgefuse.profiling import LatencyRecord
from edgefuse.types import Message


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
    log time is the receive stamp of the frame's last input). ``log`` should be opened with
    ``block=True`` (every message waits for room in its queue). Returns (summary, latency records)."""
    from edgefuse.tensors import TensorBuilder, TensorSpec

    core = FrameCore(kit, calibration, config)
    builder = TensorBuilder(TensorSpec.from_dict(backend.manifest.tensor_spec), calibration)
    warmup(builder, backend)
    classes = tuple(backend.manifest.classes)
    records: list[LatencyRecord] = []
    dropped: dict[str, int] = {}
    errors: dict[str, int] = {}
    last_error: list[str] = []
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
                last_error[:] = [f"{type(e).__name__}: {e}"]
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
    report = summary(core, records, dropped, clock() - t0, {
        "stopped": "stopped" if stop is not None and stop.is_set() else "end of input",
        "health": core.health(now if now is not None else 0), "errors": errors,
        "last_error": last_error[0] if last_error else None,
        "backend": getattr(backend, "name", type(backend).__name__),
        **({"logging": log.stats()} if log is not None else {}),
    })  # fmt: skip
    return report, records
