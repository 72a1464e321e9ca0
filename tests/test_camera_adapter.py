"""Camera adapters: the grabber policy against a fake capture that fails mid-stream and comes back, and
the real OpenCV file sources (a video written with cv2.VideoWriter, a folder of PNGs)."""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import pytest

from edgefuse.adapters.camera import (
    Backoff,
    CameraUriError,
    Grabber,
    GStreamerMissingError,
    bgr_to_rgb,
    csi_pipeline,
    gstreamer_available,
    open_camera,
    split_uri,
)
from edgefuse.errors import InputError
from edgefuse.types import CompressedImage, Image

# ---------------------------------------------------------------- a fake device


class FakeDevice:
    """A camera that can be unplugged: captures opened while it is absent do not open, reads fail."""

    def __init__(self, shape=(4, 6, 3)):
        self.present = True
        self.frames = 0
        self.opens = 0
        self.shape = shape
        self.raise_on_read: Exception | None = None
        self.read_delay_s = 0.0
        self.fail_reads = False  # opens fine but delivers nothing
        self.unplug_after: int | None = None  # unplug when this many frames were read
        self.lock = threading.Lock()

    def open(self, *args):
        self.opens += 1
        return FakeCapture(self, args)


class FakeCapture:
    def __init__(self, dev: FakeDevice, args=()):
        self.dev = dev
        self.args = args
        self.opened = dev.present
        self.released = False
        self.props: dict[int, float] = {}
        self.set_order: list[int] = []

    def isOpened(self):
        return self.opened and not self.released

    def read(self):
        d = self.dev
        if d.read_delay_s:
            time.sleep(d.read_delay_s)
        if d.raise_on_read is not None:
            raise d.raise_on_read
        with d.lock:
            if not d.present or d.fail_reads or self.released or not self.opened:
                return False, None
            d.frames += 1
            if d.unplug_after is not None and d.frames >= d.unplug_after:
                d.present, d.unplug_after = False, None
            f = np.zeros(d.shape, np.uint8)
            f[..., 0] = 255  # blue in OpenCV's BGR
            f[0, 0, 1] = d.frames % 256  # the frame number in the green channel
            return True, f

    def release(self):
        self.released = True

    # the V4L2 part of cv2.VideoCapture's interface
    def set(self, prop, value):
        self.set_order.append(prop)
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)


def counter_clock(start=0, step=1000):
    it = iter(range(start, 2**62, step))
    return lambda: next(it)


# ---------------------------------------------------------------- grabber policy (no thread)


def test_backoff_schedule():
    b = Backoff(initial_s=0.1, factor=2.0, max_s=1.0)
    assert [b.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)


def test_grabber_keeps_newest_and_counts_drops():
    dev = FakeDevice()
    g = Grabber(dev.open, clock=counter_clock(100, 10))
    for _ in range(4):
        assert g.step() == 0.0
    got = g.latest(0.0)
    assert got is not None and got.seq == 3 and got.frame[0, 0, 1] == 4
    assert got.stamp_ns == 100 + 10 * 3  # stamped at capture by the injected clock (one tick per read)
    assert g.stats.dropped == 3 and g.stats.frames == 4 and g.stats.delivered == 1
    assert g.latest(0.0) is None  # nothing newer: no stale re-delivery
    g.step()
    assert g.latest(0.0).seq == 4 and g.stats.dropped == 3


def test_grabber_outage_backoff_reconnect_logged_once_per_outage(caplog):
    caplog.set_level(logging.WARNING, logger="edgefuse.adapters.camera")
    dev = FakeDevice()
    g = Grabber(dev.open, name="cam0", backoff=Backoff(0.1, 2.0, 0.5))
    assert g.step() == 0.0  # opens, reads
    dev.present = False
    delays = [g.step() for _ in range(6)]  # read fails, then re-opens fail
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert g.stats.outages == 1 and g.stats.read_failures == 1 and g.stats.open_failures == 5
    assert not g.stats.connected
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1 and "cam0" in lost[0].getMessage() and "no frame" in lost[0].getMessage()
    dev.present = True
    assert g.step() == 0.0  # re-opened and read
    assert g.stats.reconnects == 1 and g.stats.connected
    assert sum("back after" in r.getMessage() for r in caplog.records) == 1
    assert g.backoff.attempt == 0  # reset after the reconnect
    # a second outage: an exception inside read(); logged once more with its reason
    dev.raise_on_read = RuntimeError("VIDIOC_DQBUF: No such device")
    assert g.step() == pytest.approx(0.1)
    dev.raise_on_read = None
    assert g.step() == 0.0
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 2 and "No such device" in lost[1]
    assert g.stats.outages == 2 and g.stats.reconnects == 2
    assert dev.opens == 1 + 5 + 1 + 1


def test_a_device_that_opens_but_delivers_nothing_stays_one_outage(caplog):
    caplog.set_level(logging.WARNING, logger="edgefuse.adapters.camera")
    dev = FakeDevice()
    g = Grabber(dev.open, backoff=Backoff(0.1, 2.0, 0.4))
    g.step()
    dev.fail_reads = True
    delays = [g.step() for _ in range(8)]  # read fails; each re-open works, each read after it fails
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    assert g.stats.outages == 1 and g.stats.reconnects == 0 and g.stats.read_failures == 8
    assert sum("lost" in r.getMessage() for r in caplog.records) == 1
    assert not any("camera back" in r.getMessage() for r in caplog.records)
    dev.fail_reads = False
    g.step()
    assert g.stats.reconnects == 1 and g.latest(0.0) is not None


def test_grabber_open_raising_is_a_failed_attempt():
    def boom():
        raise OSError("device busy")

    g = Grabber(boom, backoff=Backoff(0.05, 2.0, 1.0))
    assert g.step() == pytest.approx(0.05)
    assert g.stats.open_failures == 1 and "device busy" in g.stats.last_error
    assert g.latest(0.0) is None


# ---------------------------------------------------------------- live source with the real thread


def test_live_source_survives_unplug_and_replug_and_converts_to_rgb(caplog):
    caplog.set_level(logging.WARNING, logger="edgefuse.adapters.camera")
    dev = FakeDevice()
    dev.read_delay_s = 0.002
    dev.unplug_after = 5
    src = open_camera(
        "v4l2://0?width=640&height=480&fps=30&fourcc=MJPG",
        sensor_id="front",
        capture_factory=dev.open,
        backoff=Backoff(0.01, 2.0, 0.02),
    )
    try:
        msgs = []
        deadline = time.monotonic() + 10
        plugged_back = False
        while time.monotonic() < deadline and (len(msgs) < 10 or src.stats.grabber.reconnects < 1):
            m = src.read(0.05)
            if m is not None:
                msgs.append(m)
            if src.stats.grabber.outages == 1 and not plugged_back:
                dev.present = plugged_back = True
    finally:
        src.close()
    assert src.stats.grabber.outages == 1 and src.stats.grabber.reconnects == 1
    assert len(msgs) >= 10
    m = msgs[0]
    assert m.sensor_id == "front" and isinstance(m.payload, Image)
    assert m.payload.data.shape == (4, 6, 3)
    assert m.payload.data[1, 1].tolist() == [0, 0, 255]  # BGR blue → RGB blue
    stamps = [m.stamp_ns for m in msgs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(m.recv_ns == m.stamp_ns == m.raw_stamp_ns for m in msgs)
    assert sum("lost" in r.getMessage() for r in caplog.records) == 1
    assert src.finished and src.read(0.0) is None


def test_v4l2_sets_fourcc_first_and_warns_on_what_the_driver_refused(caplog):
    caplog.set_level(logging.WARNING, logger="edgefuse.adapters.camera")
    made: list[FakeCapture] = []

    class Driver(FakeCapture):
        """Accepts MJPG and 1280x720 but only 15 fps."""

        def set(self, prop, value):
            super().set(prop, 15.0 if prop == cv2.CAP_PROP_FPS else value)
            return True

    def factory(*args):
        cap = Driver(FakeDevice(), args)
        made.append(cap)
        return cap

    src = open_camera("v4l2://2?width=1280&height=720&fps=30&fourcc=MJPG", capture_factory=factory)
    src.close()
    cap = made[0]
    assert cap.args == (2, cv2.CAP_V4L2)
    assert cap.set_order[0] == cv2.CAP_PROP_FOURCC
    assert cap.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert src.info["accepted"] == {"fourcc": "MJPG", "width": 1280, "height": 720, "fps": 15.0}
    assert src.info["settings_mismatch"] == ["fps: asked 30.0, driver gave 15.0"]
    assert any("fps: asked 30.0" in r.getMessage() for r in caplog.records)


def test_a_device_that_hangs_in_open_is_an_error_not_a_hang():
    release = threading.Event()
    made: list[FakeCapture] = []

    def hanging(*args):
        release.wait(5.0)
        cap = FakeCapture(FakeDevice(), args)
        made.append(cap)
        return cap

    with pytest.raises(CameraUriError, match="did not open within 0.2 s"):
        open_camera("v4l2://0", capture_factory=hanging, open_timeout_s=0.2)
    release.set()
    deadline = time.monotonic() + 5
    while not (made and made[0].released) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert made[0].released  # the late capture is not leaked


# ---------------------------------------------------------------- GStreamer and CSI


def test_csi_pipeline_text():
    p = csi_pipeline(1, 1280, 720, 60, flip=2)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM)")
    assert "width=(int)1280" in p and "height=(int)720" in p and "framerate=(fraction)60/1" in p
    assert "nvvidconv flip-method=2" in p and "format=(string)BGR !" in p
    assert p.rstrip().split("!")[-1].strip().startswith("appsink")


def test_gstreamer_detection_and_the_error_naming_the_fix():
    assert gstreamer_available("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n")
    assert not gstreamer_available("  Video I/O:\n    GStreamer:                   NO\n")
    no_gst = "Video I/O:\n    GStreamer:                   NO\n"
    for uri in ("csi://0", "gst://videotestsrc ! videoconvert ! appsink"):
        with pytest.raises(GStreamerMissingError) as e:
            open_camera(uri, build_info=no_gst)
        msg = str(e.value)
        assert uri in msg and "JetPack" in msg and "WITH_GSTREAMER" in msg and "pip" in msg
        assert isinstance(e.value, InputError)


def test_this_pip_opencv_refuses_csi_when_it_has_no_gstreamer():
    if "GStreamer:                   NO" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(GStreamerMissingError):
        open_camera("csi://0?width=1280&height=720&fps=30")


def test_csi_with_gstreamer_opens_the_built_pipeline():
    dev = FakeDevice()
    dev.read_delay_s = 0.001
    src = open_camera("csi://1?width=1280&height=720", capture_factory=dev.open, build_info="GStreamer: YES")
    try:
        m = next(iter(src))
    finally:
        src.close()
    assert src.info["pipeline"] == csi_pipeline(1, 1280, 720, 30, 0)
    assert m.payload.data.shape == (4, 6, 3)


def test_gst_pipeline_must_end_in_appsink():
    with pytest.raises(CameraUriError, match="appsink"):
        open_camera("gst://videotestsrc ! autovideosink", build_info="GStreamer: YES")


# ---------------------------------------------------------------- real files through OpenCV


def make_frames(n=8, h=48, w=64):
    rng = np.random.default_rng(7)
    frames = []
    for k in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, :, 0] = 200  # B
        f[:, :, 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]  # G ramp
        f[8 + 2 * k : 24 + 2 * k, 8:24, 2] = 255  # a red square moving down
        f[40:, :8] = rng.integers(0, 255, (h - 40, 8, 3), dtype=np.uint8)
        frames.append(f)
    return frames


def test_video_file_roundtrip(tmp_path):
    path = tmp_path / "clip.avi"
    frames = make_frames()
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    with open_camera(f"video://{path}?rate=max", sensor_id="cam") as src:
        msgs = list(src)
    assert len(msgs) == len(frames)
    assert [m.stamp_ns for m in msgs] == [k * 100_000_000 for k in range(len(frames))]  # 10 fps
    for m, f in zip(msgs, frames, strict=True):
        rgb = m.payload.data
        ref = f[:, :, ::-1].astype(np.int16)  # BGR → RGB by hand
        assert np.abs(rgb[:40].astype(np.int16) - ref[:40]).mean() < 4.0  # MJPEG loss (noise excluded)
        assert rgb[20, 30, 2] > 150 and rgb[20, 30, 0] < 80  # the blue background stays blue in RGB
    assert [m.seq for m in msgs] == list(range(len(frames)))


def test_video_loop_keeps_stamps_increasing_and_realtime_pacing(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for f in make_frames(3):
        w.write(f)
    w.release()
    with open_camera(f"video://{path}?rate=max&loop=1") as src:
        stamps = [src.read(1.0).stamp_ns for _ in range(7)]
    assert stamps == [k * 50_000_000 for k in range(7)]  # 3 frames of 50 ms, then again, contiguous
    # realtime: a frame is not delivered before it is due on the (injected) host clock
    now = [0]
    src = open_camera(f"video://{path}", clock=lambda: now[0])
    assert src.read(0.0).stamp_ns == 0
    assert src.read(0.0) is None  # due at +50 ms, the clock has not moved
    now[0] = 50_000_000
    m = src.read(0.0)
    assert m is not None and m.stamp_ns == 50_000_000 and m.recv_ns == 50_000_000
    src.close()


def test_png_folder_exact_and_stamps(tmp_path, caplog):
    frames = make_frames(5)
    for k, f in enumerate(frames):
        assert cv2.imwrite(str(tmp_path / f"frame_{k:03d}.png"), f)
    with open_camera(f"images://{tmp_path}/frame_*.png?rate=1000") as src:
        msgs = list(src)
    assert len(msgs) == 5
    for m, f in zip(msgs, frames, strict=True):
        np.testing.assert_array_equal(m.payload.data, cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    assert [m.stamp_ns for m in msgs] == [k * 1_000_000 for k in range(5)]
    # stamps from integer-ns file names; a broken file in the middle is skipped and counted
    named = tmp_path / "named"
    named.mkdir()
    t = [1713492677464078412, 1713492677564078412, 1713492677664078412]
    cv2.imwrite(str(named / f"{t[0]}.png"), frames[0])
    (named / f"{t[1]}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cv2.imwrite(str(named / f"{t[2]}.png"), frames[2])
    caplog.set_level(logging.WARNING, logger="edgefuse.adapters.camera")
    # a host clock that advances 100 ms per call, so every frame is due when asked for
    src = open_camera(f"images://{named}/*.png?stamps=name", clock=counter_clock(0, 10**8))
    msgs = list(src)
    assert [m.stamp_ns for m in msgs] == [t[0], t[2]]
    assert src.stats.bad_frames == 1 and str(t[1]) in src.stats.last_error
    (named / "notes.png").write_bytes(b"")
    with pytest.raises(CameraUriError, match="notes"):
        open_camera(f"images://{named}/*.png?stamps=name")


# ---------------------------------------------------------------- URIs and bad input


def test_split_uri_keeps_glob_wildcards():
    assert split_uri("images://d/img_??.png?rate=5") == ("images", "d/img_??.png", {"rate": "5"})
    assert split_uri("images://d/img_?.png") == ("images", "d/img_?.png", {})
    assert split_uri("v4l2:///dev/video0?width=1280&fourcc=MJPG") == (
        "v4l2",
        "/dev/video0",
        {"width": "1280", "fourcc": "MJPG"},
    )
    assert split_uri("gst://a ! b name=x?y=1 ! appsink")[1] == "a ! b name=x?y=1 ! appsink"


@pytest.mark.parametrize(
    "uri, needle",
    [
        ("webcam://0", "unknown scheme"),
        ("/dev/video0", "scheme://"),
        ("video:///no/such/clip.mp4", "/no/such/clip.mp4"),
        ("images:///no/such/dir/*.png", "matches no files"),
        ("v4l2:///dev/video97", "/dev/video97"),
        ("v4l2://0?fourcc=MJPEG", "fourcc"),
        ("v4l2://0?width=-3", "width"),
        ("video:///tmp/x.avi?rate=fast", "rate"),
        ("csi://0?zoom=2", "zoom"),
        ("csi://front", "sensor id"),
    ],
)
def test_bad_uris_name_the_problem(uri, needle):
    with pytest.raises(InputError, match=needle):
        open_camera(uri, capture_factory=FakeDevice().open, build_info="GStreamer: YES")


def test_file_that_is_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("not a video")
    with pytest.raises(CameraUriError, match="notes.mp4"):
        open_camera(f"video://{p}")


def test_bgr_to_rgb_variants():
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(bgr_to_rgb(gray), np.repeat(gray[:, :, None], 3, axis=2))
    bgra = np.array([[[1, 2, 3, 4]]], np.uint8)
    assert bgr_to_rgb(bgra).tolist() == [[[3, 2, 1]]]
    with pytest.raises(ValueError, match="shape"):
        bgr_to_rgb(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        bgr_to_rgb(np.zeros((2, 2, 3), np.float32))


# ---------------------------------------------------------------- MJPEG over HTTP


class _MjpegCamera:
    """An IP camera on 127.0.0.1 (stdlib http.server): GET /video.mjpg streams ``frames`` (BGR) as
    multipart/x-mixed-replace JPEG parts, one every 20 ms, then keeps the connection open."""

    def __init__(self, frames: list[np.ndarray]):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        parts = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
        self.done = threading.Event()
        done = self.done

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path != "/video.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=cam")
                self.end_headers()
                try:
                    for jpg in parts:
                        head = b"--cam\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                        self.wfile.write(head)
                        self.wfile.write(jpg + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.02)
                    done.wait(10)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.done.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_mjpeg_over_http_frames_decode_in_rgb():
    """Flat colour frames (BGR on the wire) come back as the JPEG parts sent, decoding to RGB in order,
    each once or skipped (the grabber keeps the newest), stamped by the host clock; a URL with no server
    is an error naming it."""
    colours = [(14 * k, 255 - 14 * k, 37 * k % 256) for k in range(18)]  # BGR, 18 distinct
    cam = _MjpegCamera([np.full((48, 64, 3), c, np.uint8) for c in colours])
    try:
        with open_camera(f"http://127.0.0.1:{cam.port}/video.mjpg", "ipcam") as src:
            assert src.live and src.info["scheme"] == "http"
            got = []
            deadline = time.monotonic() + 10
            while len(got) < 6 and time.monotonic() < deadline:
                m = src.read(0.5)
                if m is not None:
                    got.append(m)
    finally:
        cam.close()
    assert len(got) >= 6
    # the camera's JPEG bytes, decoded once by the pipeline (here: by OpenCV, BGR → RGB)
    assert all(isinstance(m.payload, CompressedImage) and m.payload.format == "jpeg" for m in got)
    images = [cv2.imdecode(np.frombuffer(m.payload.data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
              for m in got]  # fmt: skip
    rgb = [tuple(int(v) for v in img[24, 32]) for img in images]
    expected = [(c[2], c[1], c[0]) for c in colours]
    pos = [int(np.argmin(np.abs(np.array(expected) - p).sum(axis=1))) for p in rgb]
    for p, i in zip(rgb, pos, strict=True):
        assert max(abs(a - b) for a, b in zip(p, expected[i], strict=True)) <= 3  # JPEG q95 on a flat colour
    assert all(np.diff(pos) > 0)  # in order, none twice
    assert all(img.shape == (48, 64, 3) for img in images) and all(m.sensor_id == "ipcam" for m in got)
    assert all(np.diff([m.stamp_ns for m in got]) > 0) and got[0].stamp_ns == got[0].recv_ns
    with pytest.raises(CameraUriError, match=f"127.0.0.1:{cam.port}"):
        open_camera(f"http://127.0.0.1:{cam.port}/video.mjpg", open_timeout_s=5)
