"""Fakes at the backend boundary and loopback helpers shared by the tests (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np


class FakeBackend:
    """The backend contract without a network: one box per frame at the mean of the first LiDAR pillar's
    points (so outputs follow the inputs), after ``delay_s`` of sleep."""

    name = "fake"

    def __init__(self, delay_s: float = 0.0):
        from edgefuse.model.config import ModelConfig, edge_spec
        from edgefuse.runtime.feed import INPUT_NAMES, OUTPUT_NAMES, geometry_from_spec
        from edgefuse.runtime.manifest import Manifest

        spec = edge_spec()
        self.manifest = Manifest(spec.to_dict(), geometry_from_spec(spec), ModelConfig().to_dict(),
                                 list(spec.classes), list(INPUT_NAMES), list(OUTPUT_NAMES))  # fmt: skip
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, feed):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        n = int(feed["lidar_counts"][0, 0])
        xyz = feed["lidar_pillars"][0, 0, : max(n, 1), :3].mean(axis=0)
        boxes = np.zeros((1, 2, 9), np.float32)
        boxes[0, :, 0:3] = xyz
        boxes[0, :, 3:6] = (4.0, 2.0, 1.5)
        scores = np.array([[0.9, 0.05]], np.float32)
        return {"boxes": boxes, "scores": scores, "labels": np.zeros((1, 2), np.int64)}

    def close(self):
        pass


class HangingBackend(FakeBackend):
    """A :class:`FakeBackend` whose call number ``hang_on`` blocks until :meth:`release` (a backend that
    hangs: a stuck GPU driver, a deadlocked runtime); ``hanging`` is set while it blocks."""

    def __init__(self, hang_on: int):
        super().__init__()
        self.hang_on = hang_on
        self.hanging = threading.Event()
        self.released_ns: int | None = None
        self._release = threading.Event()

    def infer(self, feed):
        if self.calls + 1 == self.hang_on:
            self.hanging.set()
            self._release.wait()
            self.hanging.clear()
        return super().infer(feed)

    def release(self) -> None:
        self.released_ns = time.monotonic_ns()
        self._release.set()


def free_udp_ports(n: int) -> list[int]:
    """``n`` UDP ports on 127.0.0.1 that were free a moment ago (bound, read, released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
