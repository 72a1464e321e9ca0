"""Velodyne sources: thin I/O shells (pcap file, live UDP) around the pure decoder and sweep assembler.

URIs (see :func:`open_velodyne`)::

    pcap://path/to/file.pcap?model=VLP32C[&port=2368][&calib=file.yaml][&cut=0][&sensor_id=lidar]
    velodyne://0.0.0.0:2368?model=VLP32C[&calib=…][&cut=…][&sensor_id=…][&queue=4096][&rcvbuf=8388608][&timeout=2]

``model``: VLP16, VLP32C or HDL32E (built-in calibration unless ``calib`` names a YAML); ``cut``: sweep
cut angle in degrees (Velodyne azimuth, clockwise, 0 = forward); ``port``: UDP destination port to read
from a capture (default 2368; ``any`` for all); ``queue``: packets the UDP receive queue holds before it
drops the oldest; ``rcvbuf``: requested SO_RCVBUF bytes; ``timeout``: seconds without a packet after
which iterating a live source ends (default: iterate until ``close()``; ``read(timeout_s)`` never waits
longer than its own timeout).

Time: the live source stamps each datagram on the host monotonic clock (``time.monotonic_ns``, the clock
every adapter and the pipeline use), from the kernel's receive timestamp (``SO_TIMESTAMPNS``) where the
kernel gives one; the sensor's µs-past-the-hour goes only into ``raw_stamp_ns`` (see
:mod:`~edgefuse.adapters.velodyne.sweep`). A pcap keeps its record times (a wall clock).

Every source is an iterator of sweep :class:`~edgefuse.types.Message` s and has ``stats``
(:class:`DecodeStats`: packets, points and what was skipped or dropped, by reason) and ``close()``.
"""

from __future__ import annotations

import collections
import errno
import logging
import math
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from edgefuse.adapters.base import Backoff
from edgefuse.adapters.velodyne.calibration import (
    MODELS,
    VelodyneCalibration,
    default_calibration,
    load_velodyne_calibration,
)
from edgefuse.adapters.velodyne.packet import DecodeStats, decode_packets
from edgefuse.adapters.velodyne.pcap import PcapStats, read_udp_payloads
from edgefuse.adapters.velodyne.sweep import SweepAssembler
from edgefuse.errors import InputError
from edgefuse.types import Message

DEFAULT_PORT = 2368
_BATCH = 256  # packets decoded per vectorized call
#: Linux socket option for receive timestamps as a struct timespec (CLOCK_REALTIME); the control
#: message type (SCM_TIMESTAMPNS) has the same value. Python's socket module does not name it. None
#: elsewhere (the time ``recvmsg`` returned is used).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("@ll")
#: A kernel receive stamp older than this when read (a wall-clock step in between) is not used.
MAX_KERNEL_STAMP_AGE_NS = 1_000_000_000

log = logging.getLogger("edgefuse.adapters.velodyne")


def kernel_receive_ns(kernel_wall_ns: int, wall_now_ns: int, host_now_ns: int) -> int | None:
    """A kernel receive timestamp (wall clock, ns since the epoch) on the host monotonic clock, given both
    clocks read together now: ``host_now − (wall_now − kernel)``. None when the stamp is in the future or
    older than :data:`MAX_KERNEL_STAMP_AGE_NS` (the wall clock stepped in between: use the read time)."""
    age = int(wall_now_ns) - int(kernel_wall_ns)
    if not 0 <= age <= MAX_KERNEL_STAMP_AGE_NS:
        return None
    return int(host_now_ns) - age


class VelodyneUriError(InputError):
    """A ``pcap://`` / ``velodyne://`` URI is malformed: names the URI, the part and what was expected."""


class VelodyneSource:
    """Common shell: ``_feed`` decodes a batch of ``(recv_ns, payload)`` and queues the sweeps it
    completes; subclasses do the I/O and iterate."""

    def __init__(
        self, calib: VelodyneCalibration, sensor_id: str, cut_angle_rad: float, frame: str = ""
    ) -> None:
        self.calib = calib
        self.sensor_id = sensor_id
        self.stats = DecodeStats()
        self.assembler = SweepAssembler(sensor_id, cut_angle_rad, frame=frame)
        self._ready: collections.deque[Message] = collections.deque()

    def _feed(self, batch: list[tuple[int, bytes]]) -> None:
        if not batch:
            return
        recv = np.fromiter((t for t, _ in batch), np.int64, len(batch))
        pts = decode_packets([p for _, p in batch], self.calib, self.stats)
        self._ready.extend(self.assembler.update(pts, recv[pts.index]))

    def close(self) -> None:
        """Release the source's resources (idempotent)."""


class PcapVelodyneSource(VelodyneSource):
    """Sweeps from a classic pcap / pcapng capture, as fast as they decode (replay pacing is the
    caller's business: the stamps are the capture's). The last, partial sweep is emitted at the end."""

    def __init__(
        self,
        path: str | os.PathLike,
        calib: VelodyneCalibration,
        sensor_id: str = "lidar",
        port: int | None = DEFAULT_PORT,
        cut_angle_rad: float = 0.0,
    ) -> None:
        super().__init__(calib, sensor_id, cut_angle_rad)
        self.path = Path(path)
        self.port = port
        self.pcap_stats = PcapStats()

    def __iter__(self) -> Iterator[Message]:
        batch: list[tuple[int, bytes]] = []
        for item in read_udp_payloads(self.path, self.port, self.pcap_stats):
            batch.append(item)
            if len(batch) >= _BATCH:
                self._feed(batch)
                batch = []
                while self._ready:
                    yield self._ready.popleft()
        self._feed(batch)
        last = self.assembler.flush()
        if last is not None:
            self._ready.append(last)
        for reason, n in self.pcap_stats.counts.items():
            self.stats.add(f"pcap_{reason}", n)
        while self._ready:
            yield self._ready.popleft()


class UdpVelodyneSource(VelodyneSource):
    """Live sweeps from a UDP socket. A receiver thread stamps each datagram on the host monotonic clock
    (the kernel's receive time where ``SO_TIMESTAMPNS`` gives it, else the time ``recvmsg`` returned)
    and puts it in a bounded queue that drops the oldest packet when full (counted as
    ``queue_overflow``). ``read(timeout_s)`` returns the next sweep or None; iterating runs until
    :meth:`close` (from another thread: it ends within 0.25 s), or, when ``idle_timeout_s`` is given,
    after that long without a packet (counted as ``idle_timeout``).

    The interface going down and up: a bound socket keeps its address while the interface is down (it
    receives nothing) and receives again when it is back; a socket error does not end the receiver:
    the socket is closed and bound again with backoff (``socket_errors``, ``rebinds``). An address that
    is not (yet) on any interface at open (``EADDRNOTAVAIL``: the interface is still down) is bound as
    soon as it appears; until then ``last_error`` says why nothing arrives."""

    def __init__(
        self,
        host: str,
        port: int,
        calib: VelodyneCalibration,
        sensor_id: str = "lidar",
        cut_angle_rad: float = 0.0,
        queue_packets: int = 4096,
        rcvbuf_bytes: int = 8 << 20,
        idle_timeout_s: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(calib, sensor_id, cut_angle_rad)
        self.assembler.hour_from_recv = False  # receive times are the host monotonic clock
        self.host, self.port = host, int(port)
        self.rcvbuf_req = int(rcvbuf_bytes)
        self.idle_timeout_s = None if idle_timeout_s is None else float(idle_timeout_s)
        self.last_error: str | None = None
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queue_max = int(queue_packets)
        self._io: dict[str, int] = {}  # counted by the receiver under the lock, moved into stats by read()
        self._last_arrival = time.monotonic()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._backoff = backoff if backoff is not None else Backoff()
        self.sock: socket.socket | None = None
        self.address = (host, self.port)
        self.rcvbuf_bytes = 0
        try:
            self._bind()
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:
                raise VelodyneUriError(f"velodyne://{host}:{port}: cannot bind the UDP socket: {e}") from None
            self._fail(f"cannot bind {host}:{port} yet ({e.strerror}); retrying until the address is up")
        self._thread = threading.Thread(target=self._receive, name=f"velodyne-{port}", daemon=True)
        self._thread.start()

    def _bind(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_req)
            if SO_TIMESTAMPNS is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                except OSError:
                    pass  # no kernel receive stamps here: the read time is used
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.1)
        self.address = sock.getsockname()
        self.port = self.address[1]  # port 0: keep the one the kernel chose when binding again
        self.rcvbuf_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.sock = sock

    def _count(self, reason: str) -> None:
        with self._lock:
            self._io[reason] = self._io.get(reason, 0) + 1

    def _fail(self, why: str) -> None:
        """A socket that failed: close it (the receiver binds again after a backoff delay)."""
        if self.last_error is None or self.sock is not None:
            log.warning("velodyne://%s:%s: %s", self.host, self.port, why)
        self.last_error = why
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _receive(self) -> None:
        anc = socket.CMSG_SPACE(_TIMESPEC.size)
        while not self._stop.is_set():
            if self.sock is None:
                if self._stop.wait(self._backoff.next_delay()):
                    return
                try:
                    self._bind()
                except OSError as e:
                    self._fail(f"cannot bind {self.host}:{self.port}: {e.strerror}; retrying")
                    continue
                self._count("rebinds")
                log.warning("velodyne://%s:%s: socket bound again", self.host, self.port)
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(2048, anc)
            except TimeoutError:
                continue
            except OSError as e:
                if self._stop.is_set():  # closed under us by close()
                    return
                self._count("socket_errors")
                self._fail(f"receive failed: {e}")
                continue
            host = time.monotonic_ns()
            wall = time.time_ns()
            t = host
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(cdata)
                    k = kernel_receive_ns(sec * 1_000_000_000 + nsec, wall, host)
                    if k is None:
                        self._count("kernel_stamp_unused")
                    else:
                        t = k
            self._backoff.reset()
            with self._lock:
                self._last_arrival = time.monotonic()
                if len(self._queue) >= self._queue_max:
                    self._queue.popleft()
                    self._io["queue_overflow"] = self._io.get("queue_overflow", 0) + 1
                self._queue.append((t, data))
                self._arrived.notify()

    def read(self, timeout_s: float = 1.0) -> Message | None:
        """The next complete sweep, or None if none completed within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._ready:
            with self._lock:
                while not self._queue:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        self._take_counts()
                        return None
                    self._arrived.wait(left)
                batch = list(self._queue)
                self._queue.clear()
                self._take_counts()
            self._feed(batch)
        return self._ready.popleft()

    def _take_counts(self) -> None:
        """Move the receiver's counters into ``stats`` (called with the lock held)."""
        for reason, n in self._io.items():
            self.stats.add(reason, n)
        self._io.clear()

    def __iter__(self) -> Iterator[Message]:
        poll = 0.25 if self.idle_timeout_s is None else min(0.25, self.idle_timeout_s)
        while not self._stop.is_set():
            msg = self.read(poll)
            if msg is not None:
                yield msg
            elif (
                self.idle_timeout_s is not None
                and time.monotonic() - self._last_arrival >= self.idle_timeout_s
            ):
                self.stats.add("idle_timeout")
                return

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._arrived.notify_all()
        self._thread.join(timeout=1.0)
        if self.sock is not None:
            self.sock.close()

    def __enter__(self) -> UdpVelodyneSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _params(uri: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise VelodyneUriError(f"{uri}: unknown parameter {extra[0]!r}; allowed: {list(allowed)}")
    return params


def _number(uri: str, params: dict[str, str], key: str, default: float, kind: type = float) -> float:
    if key not in params:
        return default
    try:
        v = kind(params[key])
    except ValueError:
        raise VelodyneUriError(
            f"{uri}: {key}: expected {'an integer' if kind is int else 'a number'}, got {params[key]!r}"
        ) from None
    if not math.isfinite(v) or v < 0:
        raise VelodyneUriError(f"{uri}: {key}: expected a finite number ≥ 0, got {params[key]!r}")
    return v


def _calibration(uri: str, params: dict[str, str], resolve) -> VelodyneCalibration:
    model = params.get("model")
    if model is not None and model.upper().replace("-", "") not in MODELS:
        raise VelodyneUriError(f"{uri}: model: expected one of {MODELS}, got {model!r}")
    model = model.upper().replace("-", "") if model else None
    if "calib" in params:
        return load_velodyne_calibration(resolve(params["calib"]), model=model)
    if model is None:
        raise VelodyneUriError(
            f"{uri}: model: missing; expected ?model= one of {MODELS} (or ?calib=file.yaml)"
        )
    return default_calibration(model)


def open_velodyne(
    uri: str, sensor_id: str | None = None, base_dir: str | os.PathLike | None = None
) -> VelodyneSource:
    """Open a ``pcap://`` or ``velodyne://`` URI (module docstring) as an iterator of sweep Messages.
    ``sensor_id`` (else the URI's ``sensor_id``, else "lidar") names the messages; relative capture and
    ``calib=`` paths resolve against ``base_dir`` (e.g. the sensor-kit file's folder) when given."""

    def resolve(p: str) -> Path:
        return Path(base_dir, p) if base_dir is not None else Path(p)

    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise VelodyneUriError(f"{uri}: expected pcap://FILE?model=… or velodyne://HOST:PORT?model=…")
    target, _, query = rest.partition("?")
    common = ("model", "calib", "cut", "sensor_id")
    if scheme == "pcap":
        params = _params(uri, query, (*common, "port"))
        if not target:
            raise VelodyneUriError(f"{uri}: path: expected pcap://FILE")
        port_s = params.get("port", str(DEFAULT_PORT))
        port = None if port_s == "any" else int(_number(uri, params, "port", DEFAULT_PORT, int))
        path = resolve(target)
        if not path.is_file():
            raise VelodyneUriError(f"{uri}: path: no such file {str(path)!r}")
        return PcapVelodyneSource(
            path,
            _calibration(uri, params, resolve),
            sensor_id=sensor_id or params.get("sensor_id", "lidar"),
            port=port,
            cut_angle_rad=math.radians(_number(uri, params, "cut", 0.0)),
        )
    if scheme == "velodyne":
        params = _params(uri, query, (*common, "queue", "rcvbuf", "timeout"))
        host, colon, port_s = target.rpartition(":")
        if not colon:
            host, port_s = target, str(DEFAULT_PORT)
        try:
            port = int(port_s)
        except ValueError:
            raise VelodyneUriError(f"{uri}: port: expected an integer 0..65535, got {port_s!r}") from None
        if not 0 <= port <= 65535:
            raise VelodyneUriError(f"{uri}: port: expected an integer 0..65535, got {port}")
        return UdpVelodyneSource(
            host or "0.0.0.0",
            port,
            _calibration(uri, params, resolve),
            sensor_id=sensor_id or params.get("sensor_id", "lidar"),
            cut_angle_rad=math.radians(_number(uri, params, "cut", 0.0)),
            queue_packets=max(1, int(_number(uri, params, "queue", 4096, int))),
            rcvbuf_bytes=int(_number(uri, params, "rcvbuf", 8 << 20, int)),
            idle_timeout_s=_number(uri, params, "timeout", 0.0) if "timeout" in params else None,
        )
    raise VelodyneUriError(f"{uri}: scheme: expected 'pcap' or 'velodyne', got {scheme!r}")
