"""The wires of ``edgefuse sim serve``: how each simulated sensor reaches a reader as a real one does.

- :class:`PtyLink` — a UART: a raw pty pair whose slave is reachable at a stable path (a symlink such as
  ``/tmp/edgefuse-sim/ti_data`` → ``/dev/pts/N``), written without blocking; a full pty (no reader, or a
  slow one) is an overrun: what the reader had not taken is discarded, as a UART's FIFO overruns.
- :class:`TiCliResponder` — the TI mmWave demo's config port on a :class:`PtyLink`: every command line is
  echoed and answered ``Done`` with the ``mmwDemo:/>`` prompt, so a kit may send a ``cfg=``.
- :class:`MjpegServer` — an IP camera: MJPEG over HTTP (``multipart/x-mixed-replace``), the newest frame
  to every client, each part with ``Content-Type``, ``Content-Length`` and ``X-Timestamp`` headers as
  mjpg-streamer sends them; OpenCV's FFmpeg backend opens the URL.

UDP (the LiDAR's packets, the ego-motion datagrams) needs no wrapper: a plain socket sends them.
:class:`Wires` opens them all for ``sim serve``; :class:`TruthLog` writes the ground truth beside.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edgefuse.errors import InputError
from edgefuse.sim.rig import ServeEndpoints
from edgefuse.sim.run import GROUND_TRUTH_ID, Simulator

NS = 1_000_000_000


class PtyLink:
    """A raw pty pair with its slave at ``link`` (module doc). The link is replaced atomically (a stale
    one from an earlier run is overwritten) and removed on :meth:`close` if it still points here. The
    slave stays open in this process, so writes never fail with EIO while no reader is attached.
    ``overruns``: writes that found the pty full (the unread bytes were discarded first)."""

    def __init__(self, link: str | Path):
        import pty
        import tty

        self.link = Path(link)
        if not self.link.is_absolute():
            raise InputError(f"sim serve link {link}: expected an absolute path")
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.overruns = 0
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(self.path, tmp)
        os.replace(tmp, self.link)

    def write(self, data: bytes) -> bool:
        """Write ``data`` whole; on a full pty discard what the reader has not read and try once more.
        Returns False when it still did not fit (the data are lost)."""
        import termios

        for attempt in range(2):
            try:
                n = os.write(self.master, data)
                if n == len(data):
                    return True
                data = data[n:]
            except BlockingIOError:
                pass
            if attempt == 0:
                self.overruns += 1
                termios.tcflush(self.slave, termios.TCIFLUSH)
        return False

    def read(self, n: int = 4096) -> bytes:
        """What the reader wrote to us (non-blocking; b"" when nothing)."""
        try:
            return os.read(self.master, n)
        except (BlockingIOError, OSError):
            return b""

    def unread(self) -> int:
        """Bytes written that the reader has not taken yet."""
        import fcntl
        import struct
        import termios

        try:
            return struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def close(self, linger_s: float = 0.5) -> None:
        """Wait up to ``linger_s`` for a reader to take what was written (closing drops it), then remove
        the link and close the pty."""
        deadline = time.monotonic() + linger_s
        time.sleep(min(0.05, linger_s))  # the pty moves written bytes to the reader's side asynchronously
        while self.unread() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            if os.readlink(self.link) == self.path:
                self.link.unlink()
        except OSError:
            pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class TiCliResponder:
    """Answers the TI mmWave demo's CLI on ``link`` (module doc) from a thread; ``commands``: the
    command lines received, in order."""

    PROMPT = b"mmwDemo:/>"

    def __init__(self, link: PtyLink):
        self.link = link
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ti-cli", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while not self._stop.wait(0.01):
            pending += self.link.read()
            while b"\n" in pending or b"\r" in pending:
                line, _, pending = pending.replace(b"\r", b"\n").partition(b"\n")
                text = line.decode("ascii", errors="replace").strip()
                if text:
                    self.commands.append(text)
                    self.link.write(line + b"\r\nDone\r\n" + self.PROMPT)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)


class MjpegServer:
    """MJPEG over HTTP on ``host:port`` (0: any free port; :attr:`url` says which). ``GET /NAME.mjpg``:
    the stream of frames published from then on (a slow client skips to the newest frame, counted in
    ``skipped``); ``GET /NAME.jpg``: the newest frame; anything else: 404. :meth:`publish` never blocks
    on a client. ``clients``: streams opened; ``sent``: frames written to them."""

    BOUNDARY = "edgefuseframe"

    def __init__(self, host: str, port: int, name: str):
        self.name = name
        self._cond = threading.Condition()
        self._frame: tuple[int, bytes, int] = (0, b"", 0)  # (count, jpeg, stamp ns)
        self._closed = False
        self.clients = self.skipped = self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == f"/{name}.mjpg":
                    server._stream(self)
                elif self.path == f"/{name}.jpg":
                    with server._cond:
                        count, jpeg, _ = server._frame
                    if not count:
                        self.send_error(503, "no frame yet")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(jpeg)))
                    self.end_headers()
                    self.wfile.write(jpeg)
                else:
                    self.send_error(404, f"expected /{name}.mjpg or /{name}.jpg")

            def log_message(self, *args) -> None:
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as e:
            raise InputError(f"sim serve camera http://{host}:{port}: cannot listen: {e}") from None
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.url = f"http://{h}:{p}/{name}.mjpg"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="mjpeg", daemon=True
        )
        self._thread.start()

    def publish(self, jpeg: bytes, stamp_ns: int) -> bool:
        """Make ``jpeg`` the newest frame (``stamp_ns``: its capture time on the camera's clock, sent as
        ``X-Timestamp: <s>.<µs>`` as mjpg-streamer does)."""
        with self._cond:
            self._frame = (self._frame[0] + 1, jpeg, int(stamp_ns))
            self._cond.notify_all()
        return True

    def _stream(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={self.BOUNDARY}")
        h.send_header("Cache-Control", "no-cache, no-store")
        h.send_header("Connection", "close")
        h.end_headers()
        with self._cond:
            self.clients += 1
            seen = self._frame[0]
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda n=seen: self._closed or self._frame[0] > n, timeout=0.5)
                    if self._closed:
                        return
                    count, jpeg, stamp = self._frame
                    if count == seen:
                        continue
                    self.skipped += count - seen - 1
                    seen = count
                head = (
                    f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Timestamp: {stamp // NS}.{stamp % NS // 1000:06d}\r\n\r\n"
                ).encode()
                h.wfile.write(head + jpeg + b"\r\n")
                h.wfile.flush()
                with self._cond:
                    self.sent += 1
        except OSError:  # the client went away
            return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()


class TruthLog:
    """The ground truth for scoring in an MCAP log (:class:`~edgefuse.logs.Recorder`): the sim's
    calibration and metadata, ``/ground_truth/detections`` at every LiDAR sweep end and
    ``/ego_truth/odom`` at every odometry sample, stamped on the host clock (``epoch_ns`` + simulation
    time; the detections' raw stamp is the LiDAR's own stamp of that sweep, ns past its hour). Messages
    made before the start are kept until :meth:`start` gives the epoch."""

    def __init__(self, path: str, sim: Simulator):
        from edgefuse.logs import Recorder

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rec = Recorder(path, compression="lz4")
        self.rec.write_calibration(sim.calibration, frames=sim.frames)
        for name, data in sim.metadata().items():
            self.rec.write_metadata(name, data)
        self.epoch_ns: int | None = None
        self._pending: list = []
        self.messages = 0

    def add(self, msg) -> None:
        if self.epoch_ns is None:
            self._pending.append(msg)
            return
        e = self.epoch_ns
        p = msg.payload
        if msg.sensor_id == GROUND_TRUTH_ID:
            p = dataclasses.replace(p, stamp_ns=e + p.stamp_ns)
        raw = msg.raw_stamp_ns if msg.sensor_id == GROUND_TRUTH_ID else e + msg.raw_stamp_ns
        self.rec.write(
            dataclasses.replace(
                msg, stamp_ns=e + msg.stamp_ns, payload=p, raw_stamp_ns=raw, recv_ns=e + msg.recv_ns
            )
        )
        self.messages += 1

    def start(self, epoch_ns: int, info: dict) -> None:
        import json

        self.epoch_ns = epoch_ns
        self.rec.write_metadata(
            "sim.serve",
            {
                "epoch_monotonic_ns": str(epoch_ns),
                "epoch_wall_ns": str(time.time_ns() - (time.monotonic_ns() - epoch_ns)),
                "stamps": "host monotonic ns = epoch_monotonic_ns + simulation time; ground_truth raw "
                "stamp = the VLP-32C's own stamp of the sweep's last firing, ns past its hour "
                "(velodyne:// raw_stamp_ns)",
                "served": json.dumps(info, sort_keys=True),
            },
        )
        pending, self._pending = self._pending, []
        for m in pending:
            self.add(m)

    def close(self) -> None:
        self.rec.close()


class Wires:
    """The open wires: a UDP socket (LiDAR, odometry, IMU), the radar's pty links, the MJPEG server."""

    def __init__(self, endpoints: ServeEndpoints, sensors: tuple[str, ...]):
        ep = endpoints
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = {
            "lidar_top": (ep.host, ep.lidar_port),
            "odom": (ep.host, ep.odom_port),
            "imu": (ep.host, ep.imu_port),
        }
        self.radar = self.cli = self.camera = None
        self.responder = None
        try:
            if "radar_front" in sensors:
                cli, data = ep.radar_links
                self.cli = PtyLink(cli)
                self.responder = TiCliResponder(self.cli)
                self.radar = PtyLink(data)
            if "cam_front" in sensors:
                self.camera = MjpegServer(ep.host, ep.camera_port, "cam_front")
        except BaseException:
            self.close()
            raise

    def send(self, s) -> bool:
        """Put a :class:`~edgefuse.sim.serve.Send` on its wire; False when the wire refused it."""
        if s.sensor == "radar_front":
            return self.radar.write(s.data)
        if s.sensor == "cam_front":
            return self.camera.publish(s.data, s.raw_ns)
        try:
            self.sock.sendto(s.data, self.addr[s.sensor])
            return True
        except OSError:  # e.g. ECONNREFUSED from an earlier datagram to a port nobody reads
            return False

    def close(self) -> None:
        for part in (self.responder, self.radar, self.cli, self.camera):
            if part is not None:
                part.close()
        self.sock.close()
