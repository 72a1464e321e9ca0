"""Odometry or IMU samples from UDP datagrams: ``open_ego_udp("ego-udp://0.0.0.0:9871?type=odometry")``.

URI: ``ego-udp://HOST:PORT?type=odometry|imu[&queue=256][&timeout=S]`` — bind ``HOST:PORT`` (0.0.0.0 for
every interface; port 0 picks one, ``source.address`` says which) and decode each datagram with
:func:`~.protocol.decode_datagram`. ``type`` is the one sample type this sensor sends: a datagram of the
other type is counted (``wrong_type``) and skipped, as is every datagram that does not decode (by its
reason). A receiver thread stamps each datagram with the host monotonic clock on arrival (``recv_ns``),
decodes it and queues the :class:`Message` (``queue`` long; the oldest is dropped when full and
counted). ``raw_stamp_ns`` = the sender's ``stamp_ns``; ``stamp_ns`` = ``recv_ns`` until the sync module
maps the sender's clock. Iteration runs until :meth:`close`, or ``timeout`` seconds without a datagram.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

from edgefuse.adapters.ego_udp.protocol import TYPES, EgoDatagramError, decode_datagram
from edgefuse.errors import InputError
from edgefuse.types import Message, Odometry

SCHEME = "ego-udp"


class EgoUdpUriError(InputError):
    """An ``ego-udp://`` URI that does not parse or whose socket does not bind."""


class EgoUdpSource:
    """The live source of the module doc. ``stats``: ``datagrams`` received, ``messages`` queued,
    ``dropped_oldest``, ``idle_timeout`` and one counter per rejected datagram's reason (``oversize``,
    ``not_json``, ``type``, ``field``, ``wrong_type``); ``last_error`` is the newest rejection's text."""

    def __init__(
        self,
        host: str,
        port: int,
        sample_type: str,
        sensor_id: str,
        queue: int = 256,
        timeout_s: float | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        self.kind, self.sensor_id = sample_type, sensor_id
        self.timeout_s, self._clock = timeout_s, clock
        self.stats: dict[str, int] = {"datagrams": 0, "messages": 0, "dropped_oldest": 0}
        self.last_error: str | None = None
        self._queue: deque[Message] = deque()
        self._queue_max = int(queue)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._last_arrival = time.monotonic()
        self._seq = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, int(port)))
        except OSError as e:
            self.sock.close()
            raise EgoUdpUriError(f"{SCHEME}://{host}:{port}: cannot bind the UDP socket: {e}") from None
        self.sock.settimeout(0.1)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._where = f"{SCHEME}://{self.address[0]}:{self.address[1]}"
        self._thread = threading.Thread(target=self._receive, name=f"ego-udp-{self.address[1]}", daemon=True)
        self._thread.start()

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _decode(self, data: bytes, recv_ns: int) -> Message | None:
        """A datagram → its Message, or None (counted) when it does not decode or is of the other type."""
        try:
            s = decode_datagram(data, self._where)
        except EgoDatagramError as e:
            self._count(e.reason)
            self.last_error = str(e)
            return None
        if ("odometry" if isinstance(s.payload, Odometry) else "imu") != self.kind:
            self._count("wrong_type")
            self.last_error = f"{self._where}: type: expected {self.kind!r} datagrams only"
            return None
        msg = Message(
            self.sensor_id,
            recv_ns,
            s.payload,
            raw_stamp_ns=s.stamp_ns,
            recv_ns=recv_ns,
            frame=s.frame,
            seq=self._seq,
        )
        self._seq += 1
        return msg

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # closed under us
                return
            recv = self._clock()
            with self._cond:
                self._last_arrival = time.monotonic()
                self.stats["datagrams"] += 1
                msg = self._decode(data, recv)
                if msg is None:
                    continue
                if len(self._queue) >= self._queue_max:
                    self._queue.popleft()
                    self.stats["dropped_oldest"] += 1
                self._queue.append(msg)
                self.stats["messages"] += 1
                self._cond.notify()

    def read(self, timeout_s: float = 1.0) -> Message | None:
        """The oldest queued message, or None after ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Message]:
        while not self._stop.is_set():
            msg = self.read(0.25)
            if msg is not None:
                yield msg
            elif self.timeout_s is not None and time.monotonic() - self._last_arrival >= self.timeout_s:
                self._count("idle_timeout")
                return

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self.sock.close()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def __enter__(self) -> EgoUdpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ego_udp(uri: str, sensor_id: str | None = None) -> EgoUdpSource:
    """Open ``ego-udp://HOST:PORT?type=…`` (module doc); :class:`EgoUdpUriError` names the URI and the
    bad part. ``sensor_id`` names the messages (default: the type)."""
    parts = urlsplit(uri)
    if parts.scheme != SCHEME:
        raise EgoUdpUriError(f"{uri!r}: expected scheme '{SCHEME}://', got {parts.scheme!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None or parts.path not in ("", "/"):
        raise EgoUdpUriError(f"{uri!r}: expected {SCHEME}://HOST:PORT?type=odometry|imu, e.g. 0.0.0.0:9871")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - {"type", "queue", "timeout"})
    if unknown:
        raise EgoUdpUriError(f"{uri!r}: unknown parameter(s) {unknown}; expected type, queue, timeout")
    sample_type = query.get("type")
    if sample_type not in TYPES:
        raise EgoUdpUriError(f"{uri!r}: type: expected one of {list(TYPES)}, got {sample_type!r}")
    queue, timeout_s = 256, None
    try:
        if "queue" in query:
            queue = int(query["queue"])
            if queue < 1:
                raise ValueError
    except ValueError:
        raise EgoUdpUriError(f"{uri!r}: queue: expected an integer ≥ 1, got {query['queue']!r}") from None
    try:
        if "timeout" in query:
            timeout_s = float(query["timeout"])
            if not 0 < timeout_s < float("inf"):
                raise ValueError
    except ValueError:
        raise EgoUdpUriError(f"{uri!r}: timeout: expected seconds > 0, got {query['timeout']!r}") from None
    return EgoUdpSource(host, port, sample_type, sensor_id or sample_type, queue=queue, timeout_s=timeout_s)
