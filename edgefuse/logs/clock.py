"""The host clock of a live log, and the way back to absolute time.

A live log (``edgefuse run``, ``edgefuse record``) has one timeline: every ``log_time`` (= ``recv_ns``) is
the host monotonic clock (``time.monotonic_ns``: every adapter stamps its receive times with it, so the
log never mixes clocks). That clock starts at boot; to recover absolute time the log records, as the
MCAP metadata record :data:`CLOCK_METADATA`, the offset wall clock − host clock measured when the log
was opened (``wall_minus_host_ns``, with its measurement's half-width ``uncertainty_ns``). Absolute time
of a log time: :func:`wall_time_ns`. The offset is valid while the wall clock is not stepped (NTP slews
it by ppm; a step of the wall clock after the log started is not in it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: MCAP metadata record name of the host clock ↔ wall clock relation.
CLOCK_METADATA = "edgefuse.clock"


def host_clock_metadata(
    wall: Callable[[], int] = time.time_ns, host: Callable[[], int] = time.monotonic_ns, samples: int = 5
) -> dict[str, str]:
    """The :data:`CLOCK_METADATA` record: ``wall_minus_host_ns`` from the tightest of ``samples``
    host–wall–host readings (its half-width is ``uncertainty_ns``), ``measured_at_host_ns``, and what
    the log's times are (``host_clock``, ``log_time``)."""
    best = None
    for _ in range(max(1, samples)):
        h0, w, h1 = host(), wall(), host()
        if best is None or h1 - h0 < best[2] - best[0]:
            best = (h0, w, h1)
    h0, w, h1 = best
    mid = h0 + (h1 - h0) // 2
    return {
        "host_clock": "CLOCK_MONOTONIC",
        "log_time": "host clock receive time (recv_ns), ns",
        "wall_minus_host_ns": str(w - mid),
        "uncertainty_ns": str((h1 - h0) // 2),
        "measured_at_host_ns": str(mid),
    }


def wall_minus_host_ns(metadata: dict[str, dict[str, str]]) -> int | None:
    """The recorded wall clock − host clock offset (ns) from a log's metadata (``LogReader.metadata()``),
    or None when the log has no :data:`CLOCK_METADATA` record."""
    rec = metadata.get(CLOCK_METADATA)
    return None if rec is None or "wall_minus_host_ns" not in rec else int(rec["wall_minus_host_ns"])


def wall_time_ns(log_time_ns: int, metadata: dict[str, dict[str, str]]) -> int | None:
    """Absolute time (ns since the Unix epoch) of a host-clock ``log_time_ns`` of the log whose metadata
    is given; None when the log does not record the offset."""
    off = wall_minus_host_ns(metadata)
    return None if off is None else int(log_time_ns) + off
