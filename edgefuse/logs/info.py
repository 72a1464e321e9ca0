"""``edgefuse log info``: what a log holds — topics, counts, rates, duration, time gaps, damage."""

from __future__ import annotations

import os
import warnings

import numpy as np

from edgefuse.logs.reader import LogReader


def log_info(path: str | os.PathLike) -> dict:
    """A JSON-able summary of one MCAP log (all times int64 ns of log_time = receive time).

    Per topic: schema, payload, sensor_id, count, rate_hz ((count − 1) / span), first_ns, last_ns,
    max_gap_ns (largest gap between consecutive log_times) and max_gap_at_ns (log_time where it ends).
    Overall: start/end/duration, file size, compression, chunk count, truncated flag and the errors met.
    Raises :class:`McapReadError` for a file that is not MCAP."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is reported in the result instead
        reader = LogReader(path)
    with reader:
        times = reader.log_times()
        topics = {}
        for name, t in reader.topics().items():
            ts = times.get(name, np.zeros(0, dtype=np.int64))
            span = int(ts[-1] - ts[0]) if len(ts) > 1 else 0
            gap, gap_at = 0, None
            if len(ts) > 1:
                d = np.diff(ts)
                i = int(np.argmax(d))
                gap, gap_at = int(d[i]), int(ts[i + 1])
            topics[name] = {
                "schema": t.schema,
                "payload": t.payload,
                "sensor_id": t.sensor_id,
                "count": t.count,
                "rate_hz": (len(ts) - 1) / (span / 1e9) if span > 0 else 0.0,
                "first_ns": t.first_ns,
                "last_ns": t.last_ns,
                "max_gap_ns": gap,
                "max_gap_at_ns": gap_at,
            }
        firsts = [v["first_ns"] for v in topics.values() if v["count"]]
        lasts = [v["last_ns"] for v in topics.values() if v["count"]]
        start = min(firsts) if firsts else 0
        end = max(lasts) if lasts else 0
        return {
            "file": str(path),
            "size_bytes": reader.size_bytes,
            "compression": [c or "none" for c in reader.compression],
            "chunks": reader.chunk_count,
            "truncated": reader.truncated,
            "messages": sum(v["count"] for v in topics.values()),
            "start_ns": start,
            "end_ns": end,
            "duration_s": (end - start) / 1e9,
            "topics": topics,
            "metadata": sorted(reader.metadata()),
            "errors": [str(e) for e in reader.errors],
        }


def format_log_info(r: dict) -> str:
    """The human-readable form of :func:`log_info`'s result."""
    lines = [
        f"file:        {r['file']}",
        f"size:        {r['size_bytes'] / 1e6:.2f} MB, {r['chunks']} chunks, "
        f"compression {', '.join(r['compression']) or '-'}",
        f"messages:    {r['messages']}",
        f"duration:    {r['duration_s']:.3f} s ({r['start_ns']} .. {r['end_ns']} ns)",
    ]
    if r["truncated"]:
        lines.append("truncated:   yes (no summary/footer; recovered the complete chunks)")
    if r["metadata"]:
        lines.append(f"metadata:    {', '.join(r['metadata'])}")
    lines.append("")
    rows = [("topic", "schema", "count", "rate Hz", "max gap s", "gap ends at s")]
    start = r["start_ns"]
    for name, t in r["topics"].items():
        at = "-" if t["max_gap_at_ns"] is None else f"{(t['max_gap_at_ns'] - start) / 1e9:.3f}"
        rows.append(
            (name, t["schema"], str(t["count"]), f"{t['rate_hz']:.2f}", f"{t['max_gap_ns'] / 1e9:.3f}", at)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if r["errors"]:
        lines.append("")
        lines.append(f"errors ({len(r['errors'])}):")
        lines.extend(f"  {e}" for e in r["errors"])
    return "\n".join(lines)
