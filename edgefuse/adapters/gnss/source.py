"""NMEA GNSS receiver over a serial port: ``open_nmea("nmea:///dev/ttyUSB2?baud=115200")``.

A thin I/O shell around :class:`~.decoder.NmeaDecoder`: a reader thread reads whatever bytes arrived
(pyserial, read timeout ``timeout`` s, default 0.2), stamps them with the host clock on arrival, feeds
the decoder and puts each fix as a :class:`Message` (:func:`~.decoder.fix_to_message`) in a bounded
queue (``queue`` messages, default 64) that drops the oldest when full and counts it. A port that fails
(unplugged USB receiver: ``SerialException``/``OSError``) is closed and re-opened with exponential
backoff, logged once per outage (it ends when bytes arrive again). ``read(timeout_s)`` never waits
longer than its timeout.

URI parameters: ``baud`` (default 9600, the common receiver default; NMEA's own is 4800), ``timeout``
(serial read timeout, s), ``queue`` (queue length).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import serial

from edgefuse.adapters.base import Backoff
from edgefuse.adapters.gnss.decoder import NmeaDecoder, fix_to_message
from edgefuse.errors import InputError
from edgefuse.types import Message

log = logging.getLogger("edgefuse.adapters.gnss")


class NmeaUriError(InputError):
    """An ``nmea://`` URI that does not parse or names a port that does not open."""


@dataclass(frozen=True)
class NmeaUri:
    """A parsed ``nmea://<port>?baud=…&timeout=…&queue=…``."""

    port: str
    baud: int = 9600
    timeout_s: float = 0.2
    queue: int = 64


def parse_nmea_uri(uri: str) -> NmeaUri:
    """``nmea:///dev/ttyUSB2?baud=115200`` → :class:`NmeaUri`; :class:`NmeaUriError` names the bad part."""
    parts = urlsplit(uri)
    if parts.scheme != "nmea":
        raise NmeaUriError(f"GNSS URI {uri!r}: expected scheme 'nmea://', got {parts.scheme!r}")
    port = parts.netloc + parts.path
    if not port:
        raise NmeaUriError(f"GNSS URI {uri!r}: expected a serial port, as in nmea:///dev/ttyUSB0")
    kw: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = {"baud": int, "timeout": float, "queue": int}.get(key)
        if kind is None:
            raise NmeaUriError(
                f"GNSS URI {uri!r}: unknown parameter {key!r}; expected baud, timeout or queue"
            )
        try:
            v = kind(value)
        except ValueError:
            v = 0
        if v <= 0:
            raise NmeaUriError(
                f"GNSS URI {uri!r}: parameter {key}={value!r}: expected a positive {kind.__name__}"
            )
        kw["timeout_s" if key == "timeout" else key] = v
    return NmeaUri(port=port, **kw)


@dataclass
class NmeaStats:
    """Counters: messages queued/delivered/dropped (queue full), port outages and reconnects, bytes read;
    the decoder's counts by reason are in ``decoder``."""

    messages: int = 0
    delivered: int = 0
    dropped: int = 0
    bytes: int = 0
    outages: int = 0
    reconnects: int = 0
    last_error: str | None = None
    decoder: dict[str, int] = field(default_factory=dict)


class NmeaSource:
    """A running NMEA receiver. Use :func:`open_nmea`."""

    def __init__(
        self,
        spec: NmeaUri,
        port: Any,
        open_port: Callable[[], Any],
        sensor_id: str = "gnss",
        clock: Callable[[], int] = time.monotonic_ns,
        backoff: Backoff | None = None,
        decoder: NmeaDecoder | None = None,
    ) -> None:
        self.spec = spec
        self.sensor_id = sensor_id
        self.decoder = decoder if decoder is not None else NmeaDecoder()
        self.stats = NmeaStats()
        self._port = port
        self._open_port = open_port
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff()
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seq = 0
        self._in_outage = False
        self._thread = threading.Thread(target=self._run, name=f"nmea-{spec.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ consumer

    def read(self, timeout_s: float = 1.0) -> Message | None:
        """The oldest queued fix, waiting up to ``timeout_s``; ``None`` on timeout or after close."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            self.stats.delivered += 1
            return self._queue.popleft()

    def __iter__(self) -> Iterator[Message]:
        while not self._stop.is_set():
            m = self.read(0.5)
            if m is not None:
                yield m

    def counts(self) -> dict[str, Any]:
        """A snapshot of :attr:`stats` with the decoder's counts by reason."""
        self.stats.decoder = dict(self.decoder.counts)
        return dict(self.stats.__dict__)

    # ------------------------------------------------------------ reader thread

    def _push(self, msg: Message) -> None:
        with self._cond:
            if len(self._queue) >= self.spec.queue:
                self._queue.popleft()
                self.stats.dropped += 1
            self._queue.append(msg)
            self.stats.messages += 1
            self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        self.stats.last_error = reason
        if self._port is not None:
            try:
                self._port.close()
            except Exception as e:  # the device is gone either way
                log.debug("%s: close failed: %s", self.spec.port, e)
            self._port = None
        if not self._in_outage:
            self._in_outage = True
            self.stats.outages += 1
            log.warning("%s: GNSS port lost (%s); reconnecting with backoff", self.spec.port, reason)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._port is None:
                try:
                    self._port = self._open_port()
                except (serial.SerialException, OSError) as e:
                    self._fail(f"open failed: {e}")
                    self._stop.wait(self._backoff.next_delay())
                    continue
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as e:
                # TypeError: pyserial reading a port closed under it
                self._fail(f"read failed: {e}")
                self._stop.wait(self._backoff.next_delay())
                continue
            if not data:
                continue
            if self._in_outage:  # back only once bytes came (a port that opens but fails stays lost)
                self._in_outage = False
                self.stats.reconnects += 1
                log.warning("%s: GNSS port back", self.spec.port)
            self._backoff.reset()
            recv = self._clock()
            self.stats.bytes += len(data)
            for fix in self.decoder.feed(data, recv):
                self._push(fix_to_message(fix, self.sensor_id, self._seq, self.decoder.yaw_rad))
                self._seq += 1

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the reader and close the port (waits at most ``timeout_s`` for the thread)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._port is not None and not self._thread.is_alive():
            self._port.close()
            self._port = None

    def __enter__(self) -> NmeaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_nmea(
    uri: str,
    sensor_id: str = "gnss",
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    backoff: Backoff | None = None,
) -> NmeaSource:
    """Open ``nmea://<port>?baud=…`` and start reading. Raises :class:`NmeaUriError` for a bad URI or a port
    that does not open (at start; later outages reconnect)."""
    spec = parse_nmea_uri(uri)

    def open_port() -> serial.Serial:
        return serial.Serial(spec.port, baudrate=spec.baud, timeout=spec.timeout_s)

    try:
        port = open_port()
    except (serial.SerialException, OSError) as e:
        raise NmeaUriError(
            f"GNSS URI {uri!r}: serial port {spec.port} did not open at {spec.baud} baud: {e}"
        ) from None
    return NmeaSource(spec, port, open_port, sensor_id=sensor_id, clock=clock, backoff=backoff)
