"""Where a frame's detections go: :class:`UdpSink` (JSON datagrams for a downstream consumer),
:class:`ConsoleSink` (a line per frame) and :class:`McapSink` (the run's MCAP log: calibration, inputs,
detections). A sink has ``publish(frame)`` (``realtime`` sinks, before the publish stamp) or
``write_input``/``write_detections`` (the log), and ``close()``."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import TextIO

from edgefuse.errors import InputError
from edgefuse.frames import NS, Frame
from edgefuse.types import Detections, Message

#: Topic and sensor id of the pipeline's detections in its MCAP log.
DETECTIONS_SENSOR = "fusion"
DETECTIONS_TOPIC = f"/{DETECTIONS_SENSOR}/detections"


def detections_json(frame: Frame) -> dict:
    """One frame's detections as the UDP sink sends them."""
    d = frame.detections
    return {
        "stamp_ns": frame.frameset.stamp_ns,
        "frame": d.frame if d is not None else "base_link",
        "missing": list(frame.frameset.missing),
        "detections": [
            {
                "label": o.label,
                "score": round(o.score, 4),
                "center": [round(float(v), 3) for v in o.box.center],
                "size": [round(float(v), 3) for v in o.box.size],
                "yaw": round(float(o.box.yaw), 4),
                "velocity": [round(float(v), 3) for v in o.velocity],
            }
            for o in (d.objects if d is not None else ())
        ],
    }


class UdpSink:
    """Sends each frame's detections as one JSON datagram to ``host:port`` (a downstream consumer);
    a datagram over 60 kB keeps the highest-scoring detections that fit (counted as ``truncated``)."""

    realtime = True

    def __init__(self, host: str, port: int):
        self.addr = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = self.errors = self.truncated = 0

    def publish(self, frame: Frame) -> None:
        doc = detections_json(frame)
        data = json.dumps(doc).encode()
        while len(data) > 60_000 and doc["detections"]:
            doc["detections"] = doc["detections"][: len(doc["detections"]) // 2]
            data = json.dumps(doc).encode()
            self.truncated += 1
        try:
            self.sock.sendto(data, self.addr)
            self.sent += 1
        except OSError:
            self.errors += 1

    def close(self) -> None:
        self.sock.close()


class ConsoleSink:
    """One line per frame: stamp, detections, top classes (for watching a run)."""

    realtime = True

    def __init__(self, stream: TextIO = sys.stdout):
        self.stream = stream

    def publish(self, frame: Frame) -> None:
        d = frame.detections
        n = len(d.objects) if d is not None else 0
        top = ", ".join(f"{o.label} {o.score:.2f}" for o in (d.objects[:3] if d is not None else ()))
        print(
            f"frame {frame.frameset.stamp_ns / NS:.3f} s: {n} detections  {top}", file=self.stream, flush=True
        )

    def close(self) -> None:
        pass


class McapSink:
    """The run's MCAP log: the calibration, the inputs (when ``inputs``) and the detections on
    :data:`DETECTIONS_TOPIC` (stamp = frame reference stamp; log time = ``recv_ns`` given). Closing
    writes the summary and footer (the log is complete)."""

    realtime = False

    def __init__(self, path: str | Path, calibration=None, kit=None, inputs: bool = False):
        from edgefuse.logs import Recorder

        self.path = Path(path)
        self.rec = Recorder(self.path)
        self.inputs = inputs
        self.written = 0
        self.errors = 0
        if calibration is not None:
            frames = {s.id: s.frame for s in kit.sensors} if kit is not None else None
            self.rec.write_calibration(calibration, frames=frames)

    def write_input(self, msg: Message) -> None:
        try:
            self.rec.write(msg)
        except InputError:
            self.errors += 1

    def write_detections(self, frame: Frame, recv_ns: int) -> None:
        d = frame.detections if frame.detections is not None else Detections(frame.frameset.stamp_ns, ())
        self.rec.write(Message(DETECTIONS_SENSOR, frame.frameset.stamp_ns, d, recv_ns=max(0, int(recv_ns)),
                               frame="base_link", seq=frame.seq))  # fmt: skip
        self.written += 1

    def write_metadata(self, name: str, data: dict) -> None:
        """An MCAP metadata record in the log (e.g. :data:`~edgefuse.logs.clock.CLOCK_METADATA`)."""
        self.rec.write_metadata(name, data)

    def tick(self) -> None:
        self.rec.tick()

    def close(self) -> None:
        self.rec.close()


def make_sinks(udp: str | None, console: bool) -> list:
    """The realtime sinks the ``--udp HOST:PORT`` and ``--console`` options ask for."""
    sinks: list = []
    if udp:
        host, _, port = udp.rpartition(":")
        if not port.isdigit():
            raise InputError(f"--udp {udp!r}: expected HOST:PORT, e.g. 127.0.0.1:5600")
        sinks.append(UdpSink(host or "127.0.0.1", int(port)))
    if console:
        sinks.append(ConsoleSink())
    return sinks
