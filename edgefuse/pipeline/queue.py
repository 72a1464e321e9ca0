"""The bounded queue between the pipeline's threads: drops the oldest item when full (counted)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

END = object()  # what a closed, empty DropQueue returns


class DropQueue:
    """A bounded FIFO that drops its oldest item when full (``put`` returns the dropped item) and keeps
    its high-water mark (``max_depth`` never exceeds ``maxlen``)."""

    def __init__(self, maxlen: int):
        self.maxlen = int(maxlen)
        self._q: deque = deque()
        self._cond = threading.Condition()
        self.max_depth = 0
        self.dropped = 0
        self._closed = False

    def put(self, item) -> Any:
        with self._cond:
            old = None
            if len(self._q) >= self.maxlen:
                old = self._q.popleft()
                self.dropped += 1
            self._q.append(item)
            self.max_depth = max(self.max_depth, len(self._q))
            self._cond.notify()
            return old

    def get(self, timeout_s: float) -> Any:
        """The oldest item; None if none came within ``timeout_s``; :data:`END` once closed and empty."""
        with self._cond:
            if not self._q and not self._closed:
                self._cond.wait(timeout_s)
            if self._q:
                return self._q.popleft()
            return END if self._closed else None

    def close(self) -> None:
        """No more items: ``get`` returns :data:`END` once the queue is empty (nothing is dropped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._q)
