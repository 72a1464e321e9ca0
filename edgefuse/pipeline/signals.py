"""SIGINT/SIGTERM → a graceful stop of the run (readers stop, queued frames finish, sinks flush, the log
closes complete)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def install_signals(pipeline_stop: Callable[[str], None]) -> Callable[[], None]:
    """SIGINT/SIGTERM → ``pipeline_stop(name)`` (main thread only); returns the restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, lambda s, _f: pipeline_stop(signal.Signals(s).name))
    return lambda: [signal.signal(s, h) for s, h in old.items()]


class StopRequest:
    """A signal during set-up or the run: remembered, and forwarded to the run's stop once attached (so a
    SIGTERM that comes while the model warms up still ends the run cleanly, the log closed)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.target: Callable[[str], None] | None = None

    def __call__(self, name: str) -> None:
        self.name = name
        if self.target is not None:
            self.target(name)

    def attach(self, stop: Callable[[str], None]) -> None:
        self.target = stop
        if self.name is not None:
            stop(self.name)
