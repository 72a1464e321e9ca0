"""Replay messages with their original timing: real time, N× or as fast as possible."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from edgefuse.types import Message


def replay(
    messages: Iterable[tuple[str, Message]],
    rate: float | None = 1.0,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[tuple[str, Message]]:
    """Yield ``(topic, message)`` pairs paced by their ``recv_ns`` (MCAP log_time), as ``ros2 bag play`` does.

    The first message goes out at once; message *k* goes out when ``(recv_ns[k] - recv_ns[0]) / rate`` ns of
    ``clock`` have passed since then. ``rate``: 1.0 = real time, 2.0 = twice as fast, ``None`` = as fast as
    possible (no sleeping). Pacing is against the start, not message to message, so time spent by the consumer
    does not accumulate as drift; a consumer slower than the log gets the messages late but in order, none
    dropped. Messages are yielded unchanged (their stamps keep the original times). ``clock`` (ns) and
    ``sleep`` (s) are injected so tests and simulations can run on a fake clock.
    """
    if rate is not None and not rate > 0:
        raise ValueError(f"replay rate: expected a positive number or None, got {rate!r}")
    t0_log: int | None = None
    t0_wall = 0
    for topic, msg in messages:
        if rate is not None:
            if t0_log is None:
                t0_log, t0_wall = msg.recv_ns, clock()
            else:
                due = t0_wall + int(round((msg.recv_ns - t0_log) / rate))
                wait = due - clock()
                if wait > 0:
                    sleep(wait / 1e9)
        yield topic, msg
