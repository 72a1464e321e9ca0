"""The threaded real-time loop (:class:`Pipeline`): one :class:`~edgefuse.adapters.SourceReader` thread
per source, a sync/preprocess thread, an inference thread and a sink thread, joined by bounded queues that
drop the oldest frame (counted as ``queue_overflow`` / ``sink_overflow``). Each frame has a deadline
(``receive_ns + deadline_ns``): a frame that would start preprocessing or inference after it is skipped
and counted (``deadline``), never queued behind fresher work. Health (per-sensor rates, silent sensors,
reader drops, queue depths and high-water marks) goes into the report and on a status line.

The loop is a shell around pure parts: :class:`~edgefuse.frames.FrameCore` (sync), the stages of
:mod:`edgefuse.pipeline.stages`, the sinks; time comes from the injected ``clock`` and
:class:`~edgefuse.pipeline.timebase.Timebase`, so replay = live.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, TextIO

from edgefuse.frames import NS, Clock, Frame, FrameCore, PipelineConfig
from edgefuse.pipeline.queue import END, DropQueue
from edgefuse.pipeline.report import status_line, summary
from edgefuse.pipeline.sinks import McapSink
from edgefuse.pipeline.stages import decode, infer, preprocess, warmup
from edgefuse.pipeline.timebase import Timebase
from edgefuse.profiling import LatencyRecord


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
        from edgefuse.adapters.base import SourceReader
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
                        self.log.write_input(msg)  # queued: the log writes on its own thread
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
                if f is END:
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

    def _sink_loop(self) -> None:
        while True:
            f = self.out_q.get(0.1)
            if f is END:
                break
            if f is not None:
                self._publish(f)

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
        out = {name: {"depth": len(q), "max_depth": q.max_depth, "bound": q.maxlen}
               for name, q in (("frames", self.frames_q), ("out", self.out_q))}  # fmt: skip
        none = {"depth": 0, "max_depth": 0, "bound": 0}
        out["log_inputs"] = self.log.queue() if self.log is not None else none
        return out

    def status_line(self) -> str:
        """The once-a-second line (:func:`~edgefuse.pipeline.report.status_line`) of the run so far."""
        with self._lock:
            recs = list(self.records)[-50:]
            dropped = dict(self.dropped)
            last_error = self.last_error
        return status_line(
            frames=self.frames_total, dropped=dropped, sync=self.core.sync.counters.as_dict(),
            e2e_ns=[r.e2e_ns for r in recs if r.publish_ns is not None], health=self.health(),
            queues=self.queues(), log=self.log.stats() if self.log is not None else None,
            last_error=last_error,
        )  # fmt: skip

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
                    try:  # counters change under it (another thread): skip a line rather than stop
                        line = self.status_line()
                    except RuntimeError:
                        continue
                    print(("\r\x1b[K" if tty else "") + line, end="" if tty else "\n",
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
        for s in [*self.sinks, *([self.log] if self.log is not None else [])]:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001
                self._error(f"close {type(s).__name__}", e)

    def summary(self) -> dict:
        return summary(self.core, self.records, self.dropped, self.t_end - self.t_start, {
            "stopped": self.stopped,
            "frames_total": self.frames_total,
            "health": self.health(),
            "queues": self.queues(),
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "reader_errors": {k: r.error for k, r in self.readers.items() if r.error},
            **({"logging": self.log.stats()} if self.log is not None else {}),
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
        })  # fmt: skip
