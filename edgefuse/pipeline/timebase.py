"""Host clock ↔ message clock for live runs and paced or as-fast-as-possible log replay."""

from __future__ import annotations

from edgefuse.errors import InputError
from edgefuse.types import Message


class Timebase:
    """Host clock ↔ message clock. ``live``: the same clock (adapters stamp ``recv_ns`` on the host
    monotonic clock). ``paced`` (a log replayed at ``rate``): anchored at the first message; a message's
    host receive time is when the replay released it, ``(recv − recv0) / rate`` after the first.
    ``event`` (a log as fast as possible): receive = the host time it was dequeued, now = the newest
    receive stamp seen."""

    def __init__(self, kind: str, rate: float | None = None):
        if kind not in ("live", "paced", "event"):
            raise InputError(f"Timebase kind: expected live, paced or event, got {kind!r}")
        self.kind, self.rate = kind, rate
        self.host0: int | None = None
        self.msg0: int | None = None
        self.latest: int | None = None

    def receive(self, msg: Message, arrival_ns: int) -> int:
        self.latest = msg.recv_ns if self.latest is None else max(self.latest, msg.recv_ns)
        if self.kind == "live":
            return int(msg.recv_ns)
        if self.kind == "event":
            return int(arrival_ns)
        if self.host0 is None:
            self.host0, self.msg0 = int(arrival_ns), int(msg.recv_ns)
        return self.host0 + int((msg.recv_ns - self.msg0) / self.rate)

    def now(self, host_ns: int) -> int | None:
        if self.kind == "live":
            return int(host_ns)
        if self.kind == "paced" and self.host0 is not None:
            return max(self.msg0 + int((host_ns - self.host0) * self.rate), self.latest)
        return self.latest

    def to_msg(self, host_ns: int) -> int:
        n = self.now(host_ns)
        return int(host_ns if n is None else n)
