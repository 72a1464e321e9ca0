"""The threaded real-time loop (:class:`Pipeline`): one :class:`~edgefuse.adapters.SourceReader` thread
per source, a sync/preprocess thread, an inference thread and a sink thread, joined by bounded queues that
drop the oldest frame (counted as ``queue_overflow`` / ``sink_overflow``). Each frame has a deadline
(``receive_ns + deadline_ns``): a frame that would start preprocessing or inference after it is skipped
and counted (``deadline``), never queued behind fresher work. Health (per-sensor rates, silent sensors,
reader drops, queue depths and high-water marks) goes into the report and on a status line. A watchdog
(the run loop) reports an inference call that runs past ``watchdog_deadlines`` deadlines as a hung
backend (health ``backend``, status line, report ``watchdog``) and stops the run with that error once it
has hung for ``backend_stop_ns``; frames keep being synchronized (and inputs logged) meanwhile.

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

from edgefuse.frames import MS, NS, Clock, Frame, FrameCore, PipelineConfig
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
        self.t_stopped: int | None = None  # host time the run was told to stop (health is frozen there)
        self.infer_calls = 0
        self._infer_done: deque[int] = deque()  # host ns of the calls that returned in the last 2 s
        self._infer_since: int | None = None  # host ns the running inference call started (watchdog)
        self.watchdog = {"hangs": 0, "hung": False, "hung_for_s": 0.0, "longest_hang_s": 0.0, "error": None}

    def add_source(self, name: str, source) -> None:
        """Read one more opened source (before :meth:`run`): ``run_live`` opens the sensors after the
        pipeline has warmed up, so a live sensor has no backlog of stale data when the run starts."""
        from edgefuse.adapters.base import SourceReader

        self.readers[name] = SourceReader(source, maxlen=self.config.reader_queue, wake=self.wake)

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
                now = self.timebase.now(clock())
                if now is None:
                    continue
                batch = core.admit(now, batch)  # a receive stamp off the host clock: counted, not logged
                if self.log is not None and self.log.inputs:
                    for msg, _ in batch:
                        self.log.write_input(msg)  # queued: the log writes on its own thread
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
                self._infer_since = self.clock()
                try:
                    infer(f, self.backend, self.clock)
                    decode(f, self.classes, self.config.score_threshold, self.clock)
                except Exception as e:  # noqa: BLE001
                    self._error("inference", e)
                    self._drop(f, "inference_error")
                    continue
                finally:
                    self._infer_since = None
                    self.infer_calls += 1
                    self._infer_done.append(self.clock())
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

    def _watch(self, now: int) -> None:
        """The backend watchdog (run loop): a call running past ``watchdog_ns`` is a hang (reported);
        past ``backend_stop_ns`` the run stops with that error."""
        since = self._infer_since
        w = self.watchdog
        hung_ns = 0 if since is None else now - since
        if hung_ns > self.config.watchdog_ns:
            if not w["hung"]:
                w["hangs"] += 1
            w["hung"] = True
            w["hung_for_s"] = round(hung_ns / NS, 3)
            w["longest_hang_s"] = max(w["longest_hang_s"], w["hung_for_s"])
            stop = self.config.backend_stop_ns
            if stop is not None and hung_ns > stop and w["error"] is None:
                name = getattr(self.backend, "name", type(self.backend).__name__)
                w["error"] = (f"backend {name}: an inference call has not returned for {hung_ns / NS:.1f} s "
                              f"(watchdog: {self.config.watchdog_ns / MS:.0f} ms = "
                              f"{self.config.watchdog_deadlines:g} deadlines; stops after "
                              f"{stop / NS:g} s); stopping the run")  # fmt: skip
                with self._lock:
                    self.last_error = w["error"]
                if self.status is not None:
                    print(f"\nedgefuse: error: {w['error']}", file=self.status, flush=True)
                self.stop("backend hung")
        elif w["hung"]:
            w["hung"], w["hung_for_s"] = False, 0.0

    def health(self) -> dict:
        """Per sensor: :meth:`FrameCore.health` plus its reader's drops and error and its source's decode
        errors, drops, outages and reconnects; and ``backend``: inference calls, status ``ok``/``hung``
        (the watchdog)."""
        from edgefuse.adapters.base import decode_errors, drops

        host = self.t_stopped if self.t_stopped is not None else self.clock()
        now = self.timebase.to_msg(host)
        h = self.core.health(now)
        for name, r in self.readers.items():
            if name in h:
                h[name]["reader_dropped"] = r.dropped_oldest
                h[name]["error"] = r.error
                try:
                    st = r.source.stats()
                except Exception as e:  # noqa: BLE001 - a broken source's counters must not end the run
                    st = {}
                    h[name]["error"] = h[name]["error"] or f"stats: {e}"
                h[name]["decode_errors"] = decode_errors(st)
                h[name]["source_dropped"] = drops(st)
                for k in ("outages", "reconnects", "rebinds", "socket_errors"):
                    if st.get(k):
                        h[name][k] = st[k]
        w = self.watchdog
        t = self.clock()
        while self._infer_done and self._infer_done[0] < t - 2 * NS:
            self._infer_done.popleft()
        h["backend"] = {"kind": "backend", "messages": self.infer_calls, "rate_hz": len(self._infer_done) / 2,
                        "status": "hung" if w["hung"] else "ok", "hung_for_s": w["hung_for_s"],
                        "hangs": w["hangs"]}  # fmt: skip
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
        health = self.health()
        backend = health.pop("backend")
        hung = f" | BACKEND HUNG {backend['hung_for_s']:.1f}s" if backend["status"] == "hung" else ""
        return status_line(
            frames=self.frames_total, dropped=dropped, sync=self.core.sync.counters.as_dict(),
            e2e_ns=[r.e2e_ns for r in recs if r.publish_ns is not None], health=health,
            queues=self.queues(), log=self.log.stats() if self.log is not None else None,
            last_error=last_error,
        ) + hung  # fmt: skip

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
                self._watch(now)
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
            self.t_stopped = self.clock()  # the health in the report is the sensors' at this moment
            for r in self.readers.values():
                r.stop()
            threads[0].join()
            while threads[1].is_alive():  # the queued frames finish, unless the backend hangs
                threads[1].join(0.1)
                since = self._infer_since
                if since is not None and self.clock() - since > self.config.watchdog_ns:
                    self.out_q.close()  # the sinks end with what was queued; the call is abandoned
                    break
            threads[2].join()
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
            "watchdog": {**self.watchdog, "watchdog_ms": self.config.watchdog_ns / MS},
            **({"logging": self.log.stats()} if self.log is not None else {}),
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
        })  # fmt: skip
