"""``edgefuse record --kit KIT.yaml --out LOG.mcap [--duration SEC]``: record every sensor of a kit at once.

Core: :class:`KitRecorder` takes the kit's opened sources, reads each in its own thread into a bounded
queue (:class:`~edgefuse.adapters.SourceReader`: live sources drop the oldest when the writer falls
behind and count it), and writes every message, with its raw / receive / mapped stamps as the source
gave them, to one :class:`~edgefuse.logs.Recorder` from the calling thread. It keeps per-sensor health
(rate over the last ``window_s`` seconds, drops, decode and write errors, silence) and always closes
the log complete (summary and footer) — on stop, at the end of every source, or when anything raises.

Shell: :func:`record_kit` loads the kit and its calibration (written into the log: ``/tf_static``,
camera_info, ``calibration.yaml``), opens each source (one that fails to open is reported and the
others record), prints a health line on stderr once a second (``\\r``-updated on a terminal), and stops
on SIGINT / SIGTERM or after ``duration_s``.

Messages keep their sensor id; a message whose frame is the package default (its sensor id) gets the
kit's ``frame`` for that sensor, so headers match the ``/tf_static`` children.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edgefuse.adapters.base import Source, SourceReader, decode_errors, drops
from edgefuse.errors import InputError
from edgefuse.logs.clock import CLOCK_METADATA, host_clock_metadata
from edgefuse.rig import SensorSpec, load_calibration, load_kit
from edgefuse.sources import open_source
from edgefuse.types import Message

_NS = 1_000_000_000


@dataclass
class SensorHealth:
    """One kit sensor while recording. ``status``: ``recording``, ``silent`` (nothing for longer than
    ``silence_ns``), ``ended`` (its file or stream finished), ``failed`` (did not open, or raised:
    ``error`` says why)."""

    sensor_id: str
    kind: str
    uri: str
    status: str = "recording"
    messages: int = 0  # messages of this sensor id written
    extra: int = 0  # other messages its source gave (the simulator's ground truth) written
    write_errors: int = 0
    error: str | None = None
    last_ns: int | None = None  # recorder clock at the last message
    first_stamp_ns: int | None = None  # Message.stamp_ns of the first / last message
    last_stamp_ns: int | None = None
    stats: dict[str, int] = field(default_factory=dict)
    reader_dropped: int = 0
    times: deque[int] = field(default_factory=deque)  # recorder clock of recent messages

    @property
    def dropped(self) -> int:
        return self.reader_dropped + sum(drops(self.stats).values())

    @property
    def errors(self) -> int:
        return self.write_errors + sum(decode_errors(self.stats).values())

    def rate_hz(self, now_ns: int, window_ns: int) -> float:
        """Messages per second over the last ``window_ns`` of the recorder clock."""
        while self.times and self.times[0] <= now_ns - window_ns:
            self.times.popleft()
        return len(self.times) * _NS / window_ns


class KitRecorder:
    """Records N sources into one log (module doc).

    ``sources``: kit sensor id → opened :class:`~edgefuse.adapters.Source`; ``failed``: sensor id →
    why it did not open; ``specs``: the kit's sensors (kind, frame, nominal rate); ``recorder``: an
    open :class:`~edgefuse.logs.Recorder` (closed by :meth:`close`); ``clock``: host monotonic ns."""

    def __init__(
        self,
        sources: dict[str, Source],
        specs: dict[str, SensorSpec],
        recorder: Any,
        failed: dict[str, str] | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        queue_size: int = 256,
        window_s: float = 2.0,
    ):
        self.sources, self.specs, self.recorder = sources, specs, recorder
        self.clock = clock
        self.window_ns = int(window_s * _NS)
        self.wake = threading.Event()
        self.readers = {sid: SourceReader(src, queue_size, self.wake) for sid, src in sources.items()}
        self.health: dict[str, SensorHealth] = {}
        for sid, spec in specs.items():
            h = SensorHealth(sid, spec.kind, spec.source)
            if sid in (failed or {}):
                h.status, h.error = "failed", (failed or {})[sid]
            self.health[sid] = h
        self.topics: dict[str, int] = {}
        self.started_ns: int | None = None
        self.stopped_ns: int | None = None
        self._closed = False

    # ------------------------------------------------------------ running

    def start(self) -> None:
        self.started_ns = self.clock()
        for r in self.readers.values():
            r.start()

    def _write(self, sid: str, msg: Message, now: int) -> None:
        h = self.health[sid]
        spec = self.specs[sid]
        if msg.sensor_id == sid and msg.frame == sid and spec.frame != sid:
            msg = dataclasses.replace(msg, frame=spec.frame)
        try:
            topic = self.recorder.write(msg, now_ns=now)
        except InputError as e:  # a stamp MCAP cannot hold, a topic clash: counted, the rest goes on
            h.write_errors += 1
            h.error = str(e)
            return
        self.topics[topic] = self.topics.get(topic, 0) + 1
        if msg.sensor_id != sid:
            h.extra += 1
            return
        h.messages += 1
        h.first_stamp_ns = msg.stamp_ns if h.first_stamp_ns is None else h.first_stamp_ns
        h.last_stamp_ns = msg.stamp_ns
        h.last_ns = now
        h.times.append(now)

    def step(self, timeout_s: float = 0.1) -> int:
        """Wait up to ``timeout_s`` for messages, write every queued one, refresh health; returns the
        number of messages taken."""
        if self.wake.wait(timeout_s):
            self.wake.clear()
        n = 0
        for sid, reader in self.readers.items():
            batch = reader.drain()
            now = self.clock()
            for msg in batch:
                self._write(sid, msg, now)
            n += len(batch)
        self.recorder.tick()
        self._refresh(self.clock())
        return n

    def _refresh(self, now: int) -> None:
        for sid, reader in self.readers.items():
            h = self.health[sid]
            try:
                h.stats = self.sources[sid].stats()
            except RuntimeError:  # a counter dict resized under us by the reader thread: next time
                pass
            h.reader_dropped = reader.dropped_oldest
            if reader.error:
                h.status, h.error = "failed", reader.error
            elif reader.done:
                h.status = "ended"
            else:
                rate = self.specs[sid].rate_hz
                silence_ns = int(max(1.0, 3.0 / rate) * _NS) if rate > 0 else _NS
                last = h.last_ns if h.last_ns is not None else self.started_ns or now
                h.status = "silent" if now - last > silence_ns else "recording"

    @property
    def all_done(self) -> bool:
        """Every source has ended (or failed) and its queue is empty."""
        return all(r.done for r in self.readers.values())

    def health_line(self, now_ns: int | None = None) -> str:
        """``12.0s 1234 msgs | lidar_top 10.0 Hz | radar 19.8 Hz drop 3 err 1 | cam SILENT | gnss FAILED``."""
        now = self.clock() if now_ns is None else now_ns
        elapsed = (now - (self.started_ns or now)) / _NS
        total = sum(h.messages for h in self.health.values())
        parts = [f"{elapsed:6.1f}s {total} msgs"]
        for sid, h in self.health.items():
            p = f"{sid} {h.rate_hz(now, self.window_ns):.1f} Hz"
            if h.dropped:
                p += f" drop {h.dropped}"
            if h.errors:
                p += f" err {h.errors}"
            if h.status != "recording":
                p += f" {h.status.upper()}"
            parts.append(p)
        return " | ".join(parts)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop every reader (closing its source, waiting at most ``timeout_s`` each), write what they
        had queued, and close the log (summary and footer). Idempotent; the log is closed even if a
        step raises."""
        if self._closed:
            return
        self._closed = True
        try:
            running = [sid for sid, r in self.readers.items() if not r.ended]
            for reader in self.readers.values():
                reader.stop(timeout_s)
            now = self.clock()
            for sid, reader in self.readers.items():
                for msg in reader.drain():
                    self._write(sid, msg, now)
            self._refresh(now)
            for sid in running:
                if self.health[sid].status != "failed":
                    self.health[sid].status = "stopped"
        finally:
            self.stopped_ns = self.clock()
            self.recorder.close()

    def result(self) -> dict[str, Any]:
        """Per-sensor counts, rate (from the message stamps), drops and errors; the topics written;
        the duration (recorder clock)."""
        end = self.stopped_ns if self.stopped_ns is not None else self.clock()
        duration_s = (end - (self.started_ns or end)) / _NS
        sensors = {}
        for sid, h in self.health.items():
            span = 0.0
            if h.first_stamp_ns is not None and h.last_stamp_ns is not None:
                span = (h.last_stamp_ns - h.first_stamp_ns) / _NS
            sensors[sid] = {
                "kind": h.kind,
                "uri": h.uri,
                "status": h.status,
                "messages": h.messages,
                "other_messages": h.extra,
                "rate_hz": round((h.messages - 1) / span, 2) if h.messages > 1 and span > 0 else None,
                "dropped": h.dropped,
                "errors": h.errors,
                "dropped_by_reason": {
                    **({"reader_oldest": h.reader_dropped} if h.reader_dropped else {}),
                    **drops(h.stats),
                },
                "decode_errors": decode_errors(h.stats),
                "write_errors": h.write_errors,
                "error": h.error,
            }
        return {
            "duration_s": round(duration_s, 3),
            "messages": sum(self.topics.values()),
            "sensors": sensors,
            "topics": dict(sorted(self.topics.items())),
        }


# ---------------------------------------------------------------- shell


def record_kit(
    kit_path: str | os.PathLike,
    out: str | os.PathLike,
    duration_s: float | None = None,
    *,
    stderr: TextIO | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    health_every_s: float = 1.0,
    queue_size: int = 256,
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Record every sensor of the kit at ``kit_path`` into ``out`` (module doc) until SIGINT/SIGTERM,
    ``duration_s`` seconds, or the end of every source. Returns :meth:`KitRecorder.result` plus
    ``out``, ``kit``, ``stopped`` (why) and ``size_bytes``. InputError for a bad kit or calibration
    file, a bad ``duration_s``, or when no source opens."""
    from edgefuse.logs import Recorder

    if duration_s is not None and not duration_s > 0:
        raise InputError(f"record --duration: expected a positive number of seconds, got {duration_s}")
    stderr = stderr if stderr is not None else sys.stderr
    kit = load_kit(kit_path)
    calib = load_calibration(kit.calibration) if kit.calibration is not None else None
    base_dir = Path(kit_path).resolve().parent
    sources: dict[str, Source] = {}
    failed: dict[str, str] = {}
    for spec in kit.sensors:
        try:
            sources[spec.id] = open_source(spec.source, spec.id, base_dir)
        except (InputError, OSError) as e:
            failed[spec.id] = str(e)
            print(f"record: {spec.id}: source did not open: {e}", file=stderr, flush=True)
    if not sources:
        raise InputError(
            f"{kit_path}: sensors: no source opened: "
            + "; ".join(f"{sid}: {why}" for sid, why in failed.items())
        )
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        rec = Recorder(out, clock=clock)
    except OSError:
        for src in sources.values():
            src.close()
        raise
    if calib is not None:
        rec.write_calibration(calib, frames={s.id: s.frame for s in kit.sensors})
    sources_meta = {f"source.{s.id}": s.source for s in kit.sensors}
    rec.write_metadata("kit", {"name": kit.name, "file": str(kit_path), **sources_meta})
    rec.write_metadata(CLOCK_METADATA, host_clock_metadata(host=clock))  # absolute time of the log times
    kr = KitRecorder(
        sources, {s.id: s for s in kit.sensors}, rec, failed, clock=clock, queue_size=queue_size
    )
    stop = threading.Event()
    stopped = "sources ended"
    restore: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    tty = stderr.isatty()
    try:
        kr.start()
        next_health = clock() + int(health_every_s * _NS)
        while True:
            kr.step(0.05)
            now = clock()
            if stop.is_set():
                stopped = "signal"
                break
            if duration_s is not None and now - (kr.started_ns or now) >= duration_s * _NS:
                stopped = "duration"
                break
            if kr.all_done:
                break
            if now >= next_health:
                print(kr.health_line(now), end="\r" if tty else "\n", file=stderr, flush=True)
                next_health = now + int(health_every_s * _NS)
    finally:
        kr.close()
        for sig, old in restore.items():
            signal.signal(sig, old)
    print(("\n" if tty else "") + kr.health_line(kr.stopped_ns), file=stderr, flush=True)
    return {
        "out": str(out),
        "kit": kit.name,
        "stopped": stopped,
        **kr.result(),
        "size_bytes": os.path.getsize(out),
    }


def format_record(r: dict[str, Any]) -> str:
    """The human form of :func:`record_kit`'s result: one line per sensor."""
    lines = [
        f"{r['out']}: {r['messages']} messages in {r['duration_s']:.1f} s (stopped: {r['stopped']}), "
        f"{r['size_bytes'] / 1e6:.1f} MB",
        f"  {'sensor':<16} {'status':<9} {'msgs':>7} {'Hz':>8} {'dropped':>8} {'errors':>7}",
    ]
    for sid, s in r["sensors"].items():
        hz = f"{s['rate_hz']:.2f}" if s["rate_hz"] is not None else "-"
        lines.append(
            f"  {sid:<16} {s['status']:<9} {s['messages']:>7} {hz:>8} {s['dropped']:>8} {s['errors']:>7}"
        )
        if s["error"]:
            lines.append(f"    {s['error']}")
    return "\n".join(lines)
