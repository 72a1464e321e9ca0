"""The MJPEG-over-HTTP reader (edgefuse.adapters.camera.mjpeg) against the bytes real servers write, over
TCP on 127.0.0.1: each fake is a raw socket that writes one server's response byte for byte (status line,
headers, boundary style), so the reader meets what it meets on a rig:

- mjpg-streamer (output_http): ``boundary=boundarydonotcross``, parts with ``Content-Length`` and
  ``X-Timestamp: <s>.<µs>`` (the capture time);
- an Axis-style IP camera: HTTP/1.0, ``boundary=myboundary``, no timestamp;
- a server that declares its boundary with the leading ``--`` already in it and writes it as declared;
- a motion-style server: ``boundary=++++++++``, lower-case ``Content-length``, no space after ``;``;
- parts without ``Content-Length`` (ended by the JPEG end marker).

Bad input — a part that is not a JPEG, a truncated JPEG, a garbled ``X-Timestamp``, a stream that ends —
is counted or reconnected, never a traceback in the grab loop. Frames come out as the camera's JPEG bytes
(decoded here to check them)."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edgefuse.adapters.camera import open_camera
from edgefuse.adapters.camera.mjpeg import MjpegCapture, multipart_boundary, parse_x_timestamp
from edgefuse.errors import InputError
from edgefuse.types import CompressedImage


def _jpeg(value: int, w: int = 64, h: int = 48) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = value  # blue in OpenCV's BGR
    img[: h // 2, : w // 2, 2] = 255 - value
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


class RawServer:
    """Accepts connections on 127.0.0.1 and writes ``head`` then each of ``parts`` (bytes, with
    ``gap_s`` between them) to every client, then closes (or holds the connection open with ``hold``)."""

    def __init__(self, head: bytes, parts: list[bytes], gap_s: float = 0.02, hold: bool = False):
        self.head, self.parts, self.gap_s, self.hold = head, parts, gap_s, hold
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.clients = 0
        self.sent_at: list[int] = []  # host monotonic ns after each part's last byte was written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.clients += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                req += chunk
            conn.sendall(self.head)
            for p in self.parts:
                time.sleep(self.gap_s)
                conn.sendall(p)
                self.sent_at.append(time.monotonic_ns())
            while self.hold and not self._stop.is_set():
                time.sleep(0.05)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _mjpg_streamer(frames: list[tuple[bytes, str | None]]) -> tuple[bytes, list[bytes]]:
    """mjpg-streamer's output_http: its header block and one part per frame (``X-Timestamp`` as given)."""
    head = (b"HTTP/1.0 200 OK\r\nConnection: close\r\nServer: MJPG-Streamer/0.2\r\n"
            b"Cache-Control: no-store, no-cache, must-revalidate, pre-check=0, post-check=0, max-age=0\r\n"
            b"Pragma: no-cache\r\nExpires: Mon, 3 Aug 2019 12:34:56 GMT\r\n"
            b"Content-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\r\n"
            b"--boundarydonotcross\r\n")  # fmt: skip
    parts = []
    for jpeg, stamp in frames:
        hdr = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
        if stamp is not None:
            hdr += f"X-Timestamp: {stamp}\r\n"
        parts.append(hdr.encode() + b"\r\n" + jpeg + b"\r\n--boundarydonotcross\r\n")
    return head, parts


def _decoded(frame: CompressedImage) -> np.ndarray:
    assert isinstance(frame, CompressedImage) and frame.format == "jpeg"  # the camera's bytes, not decoded
    img = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _read_all(cap: MjpegCapture, n: int) -> list[tuple[np.ndarray, int, int | None]]:
    out = []
    for _ in range(n):
        ok, frame = cap.read()
        assert ok
        out.append((_decoded(frame), *cap.last_stamps()))
    return out


def test_x_timestamp_and_boundary_parsing():
    assert parse_x_timestamp("1713492677.464078") == 1_713_492_677_464_078_000
    assert parse_x_timestamp(" 12.5 ") == 12_500_000_000
    assert parse_x_timestamp("7") == 7_000_000_000
    assert parse_x_timestamp("1.123456789") == 1_123_456_789
    for bad in ("", "-1.5", "1e9", "1.2.3", "1.1234567891", "abc"):
        with pytest.raises(ValueError, match="X-Timestamp"):
            parse_x_timestamp(bad)
    assert multipart_boundary("multipart/x-mixed-replace; boundary=myboundary") == b"--myboundary"
    assert multipart_boundary('multipart/x-mixed-replace;boundary="--abc"') == b"--abc"
    assert multipart_boundary("Multipart/X-Mixed-Replace; charset=x; Boundary=++++") == b"--++++"
    with pytest.raises(ValueError, match="expected multipart/x-mixed-replace"):
        multipart_boundary("image/jpeg")
    with pytest.raises(ValueError, match="no boundary"):
        multipart_boundary("multipart/x-mixed-replace")


def test_mjpg_streamer_parts_give_frames_and_capture_stamps():
    frames = [(_jpeg(40 * k), f"{1000 + k}.{k * 33333:06d}") for k in range(5)]
    head, parts = _mjpg_streamer(frames)
    srv = RawServer(head, parts)
    try:
        cap = MjpegCapture(f"http://127.0.0.1:{srv.port}/?action=stream")
        got = _read_all(cap, 5)
        cap.release()
    finally:
        srv.close()
    for k, (img, _recv, sensor) in enumerate(got):
        assert img.shape == (48, 64, 3)
        assert abs(int(img[40, 40, 0]) - 40 * k) <= 3  # the k-th frame, in order (JPEG loses a little)
        assert sensor == (1000 + k) * 1_000_000_000 + k * 33_333_000
    # the receive stamp is taken when the part's last byte is read: after the server wrote it, and
    # before the next part was written (20 ms apart)
    recv = [g[1] for g in got]
    assert all(srv.sent_at[k] <= recv[k] + 1_000_000 for k in range(5))  # 1 ms: the two threads' clocks
    assert all(recv[k] < srv.sent_at[k + 1] for k in range(4))
    assert cap.bad_parts == 0


@pytest.mark.parametrize(
    "content_type, delim",
    [
        (b"multipart/x-mixed-replace; boundary=myboundary", b"--myboundary"),  # Axis, RFC 2046
        (b"multipart/x-mixed-replace; boundary=--gc0p4Jq0M2Yt08jU534c0p--", b"--gc0p4Jq0M2Yt08jU534c0p--"),
        (b"multipart/x-mixed-replace;boundary=++++++++", b"--++++++++"),  # motion
    ],
)
def test_other_servers_boundary_styles_and_parts_without_content_length(content_type, delim):
    j0, j1, j2 = _jpeg(10), _jpeg(120), _jpeg(230)
    head = b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\nContent-Type: " + content_type + b"\r\n\r\n"
    parts = [
        delim + b"\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j0) + j0 + b"\r\n",
        delim
        + b"\r\nMotion-Event: 0\r\nContent-Type: image/jpeg\r\nContent-length: %d\r\n\r\n" % len(j1)
        + j1
        + b"\r\n",
        delim + b"\r\nContent-Type: image/jpeg\r\n\r\n" + j2 + b"\r\n",  # no length: ends at FF D9
    ]
    srv = RawServer(head, parts, hold=True)
    try:
        cap = MjpegCapture(f"http://127.0.0.1:{srv.port}/mjpg/video.mjpg")
        got = _read_all(cap, 3)
        cap.release()
    finally:
        srv.close()
    values = [int(g[0][40, 40, 0]) for g in got]
    assert np.abs(np.array(values) - [10, 120, 230]).max() <= 3, values
    assert all(g[2] is None for g in got)  # no X-Timestamp: the driver uses the receive stamp


def test_bad_parts_are_skipped_and_counted():
    good = _jpeg(200)
    head, parts = _mjpg_streamer([(b"\x00garbage, not a JPEG\xff", "5.000000"), (_jpeg(100), "5.0x"),
                                  (good[: len(good) // 2], "6.000000"), (good, "6.250000")])  # fmt: skip
    srv = RawServer(head, parts, hold=True)
    try:
        cap = MjpegCapture(f"http://127.0.0.1:{srv.port}/")
        ok, frame = cap.read()
        assert ok and abs(int(_decoded(frame)[40, 40, 0]) - 200) <= 3
        assert cap.last_stamps()[1] == 6_250_000_000
        assert cap.bad_parts == 3 and "not a whole JPEG" in cap.last_error  # garbage, stamp, truncated
        cap.release()
        assert cap.read() == (False, None)
    finally:
        srv.close()


def test_not_an_mjpeg_stream_is_refused_at_open_with_the_url():
    srv = RawServer(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html></html>", [])
    srv404 = RawServer(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", [])
    try:
        with pytest.raises(ConnectionError, match="text/html"):
            MjpegCapture(f"http://127.0.0.1:{srv.port}/index.html")
        with pytest.raises(InputError, match="404"):
            open_camera(f"http://127.0.0.1:{srv404.port}/video.mjpg", "cam")
    finally:
        srv.close()
        srv404.close()
    with pytest.raises(ValueError, match="expected http://HOST"):
        MjpegCapture("rtsp://127.0.0.1/x")


def test_a_stream_that_ends_is_an_outage_and_the_camera_reconnects():
    """The server closes after two frames each time: the driver sees an outage, reconnects with backoff
    and keeps delivering, with the camera's stamps as raw stamps."""
    head, parts = _mjpg_streamer([(_jpeg(50), "10.000000"), (_jpeg(60), "10.033333")])
    srv = RawServer(head, parts)
    try:
        src = open_camera(f"http://127.0.0.1:{srv.port}/?action=stream", "ipcam")
        msgs = []
        deadline = time.monotonic() + 10
        while len(msgs) < 4 and time.monotonic() < deadline:
            m = src.read(0.5)
            if m is not None:
                msgs.append(m)
        stats = src.stats.grabber
        src.close()
    finally:
        srv.close()
    assert len(msgs) >= 4, (len(msgs), stats)
    assert stats.outages >= 1 and stats.reconnects >= 1 and "stream ended" in (stats.last_error or "")
    assert {m.raw_stamp_ns for m in msgs} <= {10_000_000_000, 10_033_333_000}
    assert all(m.recv_ns == m.stamp_ns != m.raw_stamp_ns for m in msgs)
    assert srv.clients >= 2
