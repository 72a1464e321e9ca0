"""``edgefuse inspect`` and ``edgefuse convert``: what a source gives, and turning it into files or a log.

Pure cores: :func:`summarize` (messages + the source's stats → a per-sensor summary) and
:func:`convert_message` (one message → one file in a directory). Thin shells: :func:`inspect_uri` and
:func:`convert_uri` open the source (:func:`~edgefuse.sources.open_source`), read it through a
:class:`~edgefuse.adapters.SourceReader` (so a silent live source is bounded by ``duration_s``), and
show a tqdm progress bar on stderr when it is a terminal.

Summary per sensor: ``kind`` (from the payload), ``count``, ``rate_hz`` ((count − 1) / (last − first
stamp), sensor time), ``first_stamp_ns`` / ``last_stamp_ns`` (``stamp_ns``), ``fields`` (point
clouds and radar scans) or ``size`` (W×H images, ``format`` for compressed ones), ``points``
(min / mean / max per message). Per source: ``decode_errors`` (by reason), ``dropped`` (by reason),
the source's full ``stats`` and, if it failed mid-stream, ``error``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefuse.adapters.base import SourceReader, decode_errors, drops, payload_kind, read_messages
from edgefuse.errors import InputError
from edgefuse.sources import open_source
from edgefuse.types import CompressedImage, Image, Message, PointCloud, RadarScan

_NS = 1_000_000_000


@dataclass
class _SensorSummary:
    kind: str
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    fields: tuple[str, ...] | None = None
    sizes: set[str] = field(default_factory=set)
    points_min: int | None = None
    points_max: int = 0
    points_sum: int = 0


def summarize(messages: Iterable[Message]) -> dict[str, Any]:
    """``{"sensors": {id: summary}, "messages": n}`` for ``messages`` (summary: module doc). Pure."""
    sensors: dict[str, _SensorSummary] = {}
    for m in messages:
        s = sensors.get(m.sensor_id)
        if s is None:
            s = _SensorSummary(payload_kind(m), first_ns=m.stamp_ns, last_ns=m.stamp_ns)
            sensors[m.sensor_id] = s
        s.count += 1
        s.first_ns, s.last_ns = min(s.first_ns, m.stamp_ns), max(s.last_ns, m.stamp_ns)
        p = m.payload
        if isinstance(p, (PointCloud, RadarScan)):
            if s.fields is None:
                s.fields = p.fields
            elif s.fields != p.fields:
                s.sizes.add("fields vary: " + " ".join(p.fields))
            n = len(p)
            s.points_min = n if s.points_min is None else min(s.points_min, n)
            s.points_max = max(s.points_max, n)
            s.points_sum += n
        elif isinstance(p, Image):
            s.sizes.add(f"{p.width}x{p.height}")
        elif isinstance(p, CompressedImage):
            s.sizes.add(p.format)
    out: dict[str, Any] = {"sensors": {}}
    for sid, s in sorted(sensors.items()):
        span = s.last_ns - s.first_ns
        d: dict[str, Any] = {
            "kind": s.kind,
            "count": s.count,
            "rate_hz": round((s.count - 1) * _NS / span, 3) if s.count > 1 and span > 0 else None,
            "first_stamp_ns": s.first_ns,
            "last_stamp_ns": s.last_ns,
        }
        if s.fields is not None:
            d["fields"] = list(s.fields)
            d["points"] = {
                "min": s.points_min,
                "mean": round(s.points_sum / s.count, 1),
                "max": s.points_max,
            }
        if s.sizes:
            d["size"] = sorted(s.sizes)
        out["sensors"][sid] = d
    out["messages"] = sum(s.count for s in sensors.values())
    return out


def source_health(stats: dict[str, int]) -> dict[str, Any]:
    """A source's ``stats()`` → ``decode_errors`` and ``dropped`` by reason, and the stats themselves."""
    return {"decode_errors": decode_errors(stats), "dropped": drops(stats), "stats": dict(stats)}


def _progress(desc: str, enabled: bool, total: int | None = None):
    from tqdm import tqdm

    # disable=None: tqdm shows itself only when stderr is a terminal
    return tqdm(total=total, desc=desc, unit="msg", disable=None if enabled else True, leave=False)


def _bounded(reader: SourceReader, max_messages, duration_s, clock, bar, state: dict) -> Iterable[Message]:
    """The reader's messages within the bounds; Ctrl-C ends them (``state["interrupted"]``) so the
    caller still reports what it read."""
    try:
        for msg in read_messages(reader, max_messages, duration_s, clock):
            bar.update(1)
            yield msg
    except KeyboardInterrupt:
        state["interrupted"] = True


def _check_bounds(max_messages: int | None, duration_s: float | None) -> None:
    if max_messages is not None and max_messages < 1:
        raise InputError(f"--max-messages: expected a positive count, got {max_messages}")
    if duration_s is not None and not duration_s > 0:
        raise InputError(f"--duration: expected a positive number of seconds, got {duration_s}")


def inspect_uri(
    uri: str,
    max_messages: int | None = None,
    duration_s: float | None = None,
    *,
    progress: bool = True,
    clock: Callable[[], int] = time.monotonic_ns,
) -> dict[str, Any]:
    """Open ``uri``, read it (bounded by ``max_messages`` / ``duration_s`` seconds of ``clock``) and
    :func:`summarize` it. A source failing mid-stream is reported in ``error``, not raised."""
    _check_bounds(max_messages, duration_s)
    source = open_source(uri)
    reader = SourceReader(source).start()
    state = {"interrupted": False}
    try:
        with _progress("inspect", progress) as bar:
            result = summarize(_bounded(reader, max_messages, duration_s, clock, bar, state))
    finally:
        reader.stop()
    stats = source.stats()
    if reader.dropped_oldest:
        stats["dropped.reader_oldest"] = reader.dropped_oldest
    out = {"uri": uri, "kind": source.kind, **result, **source_health(stats), **state}
    if reader.error:
        out["error"] = reader.error
    return out


def format_inspect(r: dict[str, Any]) -> str:
    """The human form of :func:`inspect_uri`'s result."""
    lines = [f"{r['uri']}  ({r['kind']}, {r['messages']} messages)"]
    for sid, s in r["sensors"].items():
        rate = f"{s['rate_hz']:.2f} Hz" if s["rate_hz"] is not None else "- Hz"
        lines.append(f"  {sid}: {s['kind']}, {s['count']} msgs, {rate}")
        lines.append(f"    stamps: {s['first_stamp_ns']} .. {s['last_stamp_ns']} ns")
        if "fields" in s:
            p = s["points"]
            lines.append(f"    fields: {' '.join(s['fields'])}")
            lines.append(f"    points min/mean/max: {p['min']}/{p['mean']}/{p['max']}")
        if "size" in s:
            lines.append(f"    size: {', '.join(s['size'])}")
    errs = ", ".join(f"{k} {v}" for k, v in r["decode_errors"].items()) or "none"
    lines.append(f"  decode errors: {errs}")
    dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none"
    lines.append(f"  dropped: {dropped}")
    if r.get("error"):
        lines.append(f"  source failed: {r['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- convert


def message_filename(msg: Message) -> str | None:
    """``<sensor_id>/<stamp_ns, 19 digits>.<ext>`` for payloads that have a file form (PCD for point
    clouds and radar scans, PNG for images, the compressed bytes' own format), else None (InputError
    for a negative stamp). Nineteen digits make the name a stamp the ``pcd://`` and
    ``images://…?stamps=name`` sources read back."""
    p = msg.payload
    if isinstance(p, (PointCloud, RadarScan)):
        ext = "pcd"
    elif isinstance(p, Image):
        ext = "png"
    elif isinstance(p, CompressedImage):
        ext = "jpg" if p.format == "jpeg" else "png"
    else:
        return None
    if msg.stamp_ns < 0:
        raise InputError(
            f"message of {msg.sensor_id!r}: stamp_ns: expected ≥ 0 for a file name, got {msg.stamp_ns}"
        )
    return f"{msg.sensor_id}/{msg.stamp_ns:019d}.{ext}"


def convert_message(msg: Message, out_dir: Path) -> Path | None:
    """Write one message as a file under ``out_dir`` (:func:`message_filename`); None if the payload
    has no file form. PCD: binary, every column as F4 (files package's ``write_pcd``); PNG: cv2 (RGB →
    BGR here); compressed images: their bytes as they are."""
    name = message_filename(msg)
    if name is None:
        return None
    path = out_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    p = msg.payload
    if isinstance(p, (PointCloud, RadarScan)):
        from edgefuse.adapters.files import write_pcd

        write_pcd(path, p, "binary")
    elif isinstance(p, Image):
        import cv2

        if not cv2.imwrite(str(path), cv2.cvtColor(p.data, cv2.COLOR_RGB2BGR)):
            raise InputError(f"{path}: cv2.imwrite failed")
    else:
        assert isinstance(p, CompressedImage)
        path.write_bytes(p.data)
    return path


def convert_uri(
    uri: str,
    out: str | os.PathLike,
    max_messages: int | None = None,
    duration_s: float | None = None,
    *,
    progress: bool = True,
    clock: Callable[[], int] = time.monotonic_ns,
) -> dict[str, Any]:
    """Convert a source: ``out`` ending in ``.mcap`` → one MCAP log with every message (and the
    source's calibration, if it has one); otherwise a directory with one file per message
    (:func:`convert_message`). Payloads without a file form and messages that fail to write are
    counted (``skipped`` by payload type, ``write_errors``), never fatal."""
    _check_bounds(max_messages, duration_s)
    out = Path(out)
    to_log = out.suffix.lower() == ".mcap"
    if not to_log and out.exists() and not out.is_dir():
        raise InputError(f"convert --out {out}: expected a directory or a .mcap file, found a file")
    source = open_source(uri)
    reader = SourceReader(source).start()
    written: dict[str, int] = {}
    skipped: dict[str, int] = {}
    errors: list[str] = []
    rec = None
    state = {"interrupted": False}
    try:
        if to_log:
            from edgefuse.logs import Recorder

            out.parent.mkdir(parents=True, exist_ok=True)
            rec = Recorder(out)
            if source.calibration is not None:
                rec.write_calibration(source.calibration)
        else:
            out.mkdir(parents=True, exist_ok=True)
        with _progress("convert", progress) as bar:
            for msg in _bounded(reader, max_messages, duration_s, clock, bar, state):
                try:
                    done = rec.write(msg) if rec is not None else convert_message(msg, out)
                except (InputError, OSError) as e:
                    errors.append(f"{msg.sensor_id} stamp {msg.stamp_ns}: {e}")
                    continue
                if done is None:
                    kind = type(msg.payload).__name__
                    skipped[kind] = skipped.get(kind, 0) + 1
                else:
                    written[msg.sensor_id] = written.get(msg.sensor_id, 0) + 1
    finally:
        reader.stop()
        if rec is not None:
            rec.close()
    result: dict[str, Any] = {
        "uri": uri,
        "out": str(out),
        "format": "mcap" if to_log else "files",
        "written": dict(sorted(written.items())),
        "skipped": skipped,
        "write_errors": len(errors),
        "errors": errors[:20],
        "decode_errors": decode_errors(source.stats()),
        **state,
    }
    if reader.error:
        result["error"] = reader.error
    return result
