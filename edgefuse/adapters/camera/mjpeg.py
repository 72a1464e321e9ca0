"""MJPEG over HTTP (``multipart/x-mixed-replace``), read part by part: :class:`MjpegCapture`.

IP cameras and ``edgefuse sim serve`` stream JPEG frames as the parts of one endless multipart HTTP
response. OpenCV's FFmpeg backend opens such a URL, but it hands frames over through its own buffering (a
frame read from the socket may wait behind the next one before ``read()`` returns it) and drops the part
headers, so the host stamp of a frame jitters by up to a frame period and a camera's own capture time is
lost. This reader takes each part off the socket itself:

- ``recv_ns``: the host clock (injectable) when the part's last byte was read — before decoding;
- ``sensor_ns``: the part's ``X-Timestamp: <seconds>.<fraction>`` header (mjpg-streamer and many IP cameras
  write the capture time there, on the camera's clock), in ns, or ``None`` when the part has none.

The camera's driver (:mod:`.sources`) puts ``sensor_ns`` into the message's raw stamp, so a kit that
declares the camera ``clock: sensor`` has the stamp mapping remove the transport jitter (the minimum-delay
envelope, :mod:`edgefuse.sync.clock`); without the header, raw = receive stamp. Side by side with OpenCV's
reader: ``benchmarks/mjpeg_bench.py``.

Frames come out as the camera's JPEG bytes (:class:`~edgefuse.types.CompressedImage`), not decoded: the
pipeline decodes each once at the size the model needs (libjpeg's reduced-size decoding) and input
logging keeps the camera's bytes (about 20× less to write than raw RGB). Bad parts (not a whole JPEG, a
garbled ``X-Timestamp``) are skipped and counted in ``bad_parts`` with ``last_error``; a stream that ends,
times out or sends no multipart at all raises :class:`ConnectionError` from :meth:`MjpegCapture.read`
(the grabber treats that as an outage and reconnects with backoff). Same interface as
``cv2.VideoCapture`` (``read``, ``isOpened``, ``release``) plus :meth:`MjpegCapture.last_stamps`.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from edgefuse.types import CompressedImage

MAX_LINE = 8192
#: bytes of non-multipart data tolerated between two parts before the stream is called broken
MAX_SKIP = 1 << 20
#: consecutive bad parts after which read() gives up (an outage: the grabber reconnects)
MAX_BAD_IN_A_ROW = 30


def parse_x_timestamp(value: str) -> int:
    """``"1713492677.464078"`` (seconds, a decimal fraction of up to 9 digits) → int ns. Raises
    ``ValueError`` naming the value otherwise (no exponent, no sign: a capture time is positive)."""
    sec, _, frac = value.strip().partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        raise ValueError(f"X-Timestamp {value!r}: expected <seconds>.<fraction> (up to 9 digits)")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def is_whole_jpeg(data: bytes) -> bool:
    """Starts with the JPEG start-of-image marker (``FF D8 FF``) and has the end-of-image marker
    (``FF D9``) in its last 32 bytes (some cameras pad a part). A cheap check of a part's framing — a
    truncated or foreign part fails it; a JPEG whose entropy data is corrupt is caught where it is
    decoded."""
    return data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" in data[-32:]


def multipart_boundary(content_type: str | None) -> bytes:
    """The delimiter line (``--`` + boundary) of a ``multipart/x-mixed-replace`` content type. Raises
    ``ValueError`` naming what came instead."""
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "multipart/x-mixed-replace":
        raise ValueError(f"Content-Type {content_type!r}: expected multipart/x-mixed-replace; boundary=…")
    for p in params.split(";"):
        k, _, v = p.strip().partition("=")
        if k.strip().lower() == "boundary" and v.strip().strip('"'):
            b = v.strip().strip('"')
            return (b if b.startswith("--") else "--" + b).encode("latin-1")
    raise ValueError(f"Content-Type {content_type!r}: no boundary parameter")


class MjpegCapture:
    """One HTTP connection to ``url`` (``http://HOST:PORT/PATH``), opened at construction;
    ``connect_timeout_s`` (default ``timeout_s``) bounds the connect and the response headers,
    ``timeout_s`` every read of the parts after. See the module doc."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        connect_timeout_s: float | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        max_part_bytes: int = 16 << 20,
    ):
        self.url = url
        self._clock = clock
        self.max_part_bytes = int(max_part_bytes)
        self.bad_parts = 0
        self.last_error: str | None = None
        self._recv_ns = 0
        self._sensor_ns: int | None = None
        self._conn: http.client.HTTPConnection | None = None
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"MJPEG URL {url!r}: expected http://HOST[:PORT]/PATH")
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=connect_timeout_s or timeout_s)
        try:
            conn.request("GET", path, headers={"Accept": "multipart/x-mixed-replace, image/jpeg"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise ConnectionError(f"MJPEG URL {url!r}: HTTP {resp.status} {resp.reason}")
            try:
                self._delim = multipart_boundary(resp.getheader("Content-Type"))
            except ValueError as e:
                raise ConnectionError(f"MJPEG URL {url!r}: {e}") from None
        except BaseException:
            conn.close()
            raise
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)  # the parts: a camera silent this long is an outage
        self._conn, self._resp = conn, resp
        # the boundary as declared, for servers that write it without the leading "--" of RFC 2046
        self._bare = self._delim[2:]
        self._at_part = False  # the last part ended at the next boundary: its headers come next

    # ------------------------------------------------------------ cv2.VideoCapture's interface

    def isOpened(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def read(self) -> tuple[bool, CompressedImage | None]:
        """The next JPEG part as the camera sent it: ``(True, CompressedImage)`` — not decoded here (the
        pipeline decodes it once, at the size the model needs, and the log keeps the camera's bytes);
        ``(False, None)`` once released or after ``MAX_BAD_IN_A_ROW`` bad parts. Raises
        ``ConnectionError`` when the stream breaks."""
        if self._conn is None:
            return False, None
        for _ in range(MAX_BAD_IN_A_ROW):
            jpeg, recv_ns, header = self._part()
            try:
                sensor_ns = None if header is None else parse_x_timestamp(header)
            except ValueError as e:
                self._bad(str(e))
                continue
            if not is_whole_jpeg(jpeg):
                self._bad(f"a part of {len(jpeg)} bytes is not a whole JPEG (no start or end marker)")
                continue
            self._recv_ns, self._sensor_ns = recv_ns, sensor_ns
            return True, CompressedImage(jpeg, "jpeg")
        return False, None

    def last_stamps(self) -> tuple[int, int | None]:
        """(host receive ns, the camera's ``X-Timestamp`` ns or None) of the frame read() gave last."""
        return self._recv_ns, self._sensor_ns

    # ------------------------------------------------------------ parts

    def _bad(self, why: str) -> None:
        self.bad_parts += 1
        self.last_error = f"{self.url}: {why}"

    def _line(self) -> bytes:
        line = self._resp.readline(MAX_LINE)
        if not line:
            raise ConnectionError(f"MJPEG URL {self.url!r}: the stream ended")
        return line

    def _part(self) -> tuple[bytes, int, str | None]:
        """Read the next part: (its body, host ns at its last byte, its X-Timestamp header or None). A
        part without a usable ``Content-Length`` ends at the JPEG end-of-image marker (``FF D9``) or at the
        next boundary, whichever comes first."""
        skipped = 0
        while not self._at_part and (s := self._line().strip()) not in (self._delim, self._bare):
            skipped += len(s)
            if skipped > MAX_SKIP:
                raise ConnectionError(
                    f"MJPEG URL {self.url!r}: {skipped} bytes without the boundary {self._delim!r}"
                )
        self._at_part = False
        headers: dict[str, str] = {}
        while (line := self._line()).strip():
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        stamp = headers.get("x-timestamp")
        n = headers.get("content-length", "")
        if n.isdigit() and 0 < int(n) <= self.max_part_bytes:
            body = self._resp.read(int(n))
            if len(body) < int(n):
                raise ConnectionError(f"MJPEG URL {self.url!r}: the stream ended inside a part")
            return body, self._clock(), stamp
        buf = bytearray()
        while True:
            line = self._line()
            if line.strip() in (self._delim, self._bare):
                self._at_part = True
                break
            buf += line
            if len(buf) > self.max_part_bytes:
                raise ConnectionError(
                    f"MJPEG URL {self.url!r}: a part without Content-Length ran past {self.max_part_bytes} "
                    "bytes without a JPEG end marker"
                )
            if buf.rstrip(b"\r\n").endswith(b"\xff\xd9"):
                break
        return bytes(buf.rstrip(b"\r\n")), self._clock(), stamp
