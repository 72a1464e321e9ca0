"""Camera sources through OpenCV: ``open_camera(uri) -> CameraSource``.

URIs (query parameters after the last ``?`` when it reads ``key=value[&key=value…]``):

- ``v4l2:///dev/video0?width=1280&height=720&fps=30&fourcc=MJPG`` — a V4L2 device (``/dev/videoN`` or an
  index ``v4l2://N``) opened with ``CAP_V4L2``. FOURCC is set first, then size, then rate; the values the
  driver accepted are read back, and each mismatch is logged as a warning and listed in
  ``source.info["settings_mismatch"]``. Live: grabber thread (see :mod:`.grabber`).
- ``gst://<pipeline>`` — a GStreamer pipeline ending in ``appsink`` (no query parsing: the rest of the URI
  is the pipeline). Live.
- ``csi://N?width=1920&height=1080&fps=30&flip=0`` — a Jetson CSI camera: builds the
  ``nvarguscamerasrc sensor-id=N`` pipeline (:func:`csi_pipeline`). Live.
- ``http://HOST:PORT/PATH`` — an MJPEG-over-HTTP stream (``multipart/x-mixed-replace``, as IP cameras and
  ``edgefuse sim serve`` serve it), read part by part by :class:`~.mjpeg.MjpegCapture`. Live.
- ``video://clip.mp4?rate=realtime|max&loop=0|1`` — a video file. Stamps: ``CAP_PROP_POS_MSEC`` of each
  frame (media time from the start of the file, ns). ``rate=realtime`` (default) delivers frames when
  they are due on the host clock, like a camera would; ``rate=max`` as fast as they are read. ``loop=1``
  restarts at the end and keeps the stamps increasing (each pass adds the clip length + one frame).
- ``images://dir/*.png?rate=10&stamps=rate|name`` — a sorted (lexicographic: zero-pad the numbers) glob
  of image files. ``stamps=rate`` (default): frame k is stamped ``k/rate`` s; ``stamps=name``: each
  file's stem is its stamp in integer ns (``1713492677464078412.png``), checked for every file at open.
  Frames are delivered when due on the host clock, spaced as their stamps (``rate`` default 10 Hz).
  ``loop=1`` as for video.

Stamps: live sources stamp each frame at capture with the host monotonic clock (``stamp_ns`` =
``raw_stamp_ns`` = ``recv_ns``; ``http://``: the camera's ``X-Timestamp`` as raw stamp where it sends one).
File sources keep media time: ``stamp_ns`` = ``raw_stamp_ns`` = the frame's time in the file, ``recv_ns``
= host clock when decoded. Payloads: :class:`Image` RGB uint8 (BGR/BGRA/gray converted here, at the edge);
``http://``: the camera's JPEG bytes as :class:`CompressedImage` (decoded once, by the pipeline).

File sources are read in the caller's thread and drop nothing (replay is deterministic); live sources
run a :class:`~.grabber.Grabber` thread that keeps only the newest frame. ``read(timeout_s)`` never
waits longer than its timeout.

GStreamer: PyPI's OpenCV wheels are built without it, so ``gst://`` and ``csi://`` raise
:class:`GStreamerMissingError` there, naming the fix (JetPack's OpenCV, not shadowed by pip's, or an
OpenCV built with ``-DWITH_GSTREAMER=ON``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgefuse.adapters.camera.grabber import Backoff, Capture, Grabber, GrabberStats
from edgefuse.adapters.camera.mjpeg import MjpegCapture
from edgefuse.errors import InputError
from edgefuse.types import CompressedImage, Image, Message

log = logging.getLogger("edgefuse.adapters.camera")

SCHEMES = ("v4l2", "video", "images", "gst", "csi", "http")

_NS_PER_S = 1_000_000_000


class CameraUriError(InputError):
    """A camera URI that does not parse, names a missing device/file, or has a bad parameter."""


class GStreamerMissingError(InputError):
    """``gst://`` or ``csi://`` asked of an OpenCV built without GStreamer."""


# ---------------------------------------------------------------- pure helpers


def split_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """``scheme://target?k=v&…`` → (scheme, target, params). The query is the part after the last ``?``
    only when it is ``key=value`` pairs (so a glob's ``?`` wildcard stays in the target); ``gst://`` and
    ``http://`` are never split (the pipeline / the URL is the target)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise CameraUriError(f"camera URI {uri!r}: expected scheme://target, one of {', '.join(SCHEMES)}")
    if scheme not in SCHEMES:
        raise CameraUriError(
            f"camera URI {uri!r}: unknown scheme {scheme!r}, expected one of {', '.join(SCHEMES)}"
        )
    params: dict[str, str] = {}
    if scheme not in ("gst", "http"):
        head, q, query = rest.rpartition("?")
        if q and re.fullmatch(r"[A-Za-z_]\w*=[^&=]*(&[A-Za-z_]\w*=[^&=]*)*", query):
            rest = head
            for pair in query.split("&"):
                k, _, v = pair.partition("=")
                params[k] = v
    if not rest:
        raise CameraUriError(f"camera URI {uri!r}: expected a target after {scheme}://")
    return scheme, rest, params


def _check_params(uri: str, params: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise CameraUriError(
            f"camera URI {uri!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"expected one of {', '.join(allowed)}"
        )


def _num(uri: str, params: dict[str, str], key: str, default: float | None, kind: type = int) -> Any:
    if key not in params:
        return default
    try:
        v = kind(params[key])
    except ValueError:
        v = None
    if v is None or v <= 0:
        raise CameraUriError(
            f"camera URI {uri!r}: parameter {key}={params[key]!r}: expected a positive {kind.__name__}"
        )
    return v


def _choice(uri: str, params: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    v = params.get(key, choices[0])
    if v not in choices:
        raise CameraUriError(
            f"camera URI {uri!r}: parameter {key}={v!r}: expected one of {', '.join(choices)}"
        )
    return v


def gstreamer_available(build_info: str | None = None) -> bool:
    """Whether this OpenCV was built with GStreamer (the ``GStreamer: YES…`` line of
    ``cv2.getBuildInformation()``; pass ``build_info`` to check another build's text)."""
    text = cv2.getBuildInformation() if build_info is None else build_info
    m = re.search(r"^\s*GStreamer:\s*(\S+)", text, re.MULTILINE)
    return bool(m) and m.group(1).upper() != "NO"


def require_gstreamer(uri: str, build_info: str | None = None) -> None:
    """Raise :class:`GStreamerMissingError` naming the fix when this OpenCV has no GStreamer."""
    if gstreamer_available(build_info):
        return
    raise GStreamerMissingError(
        f"camera URI {uri!r}: this OpenCV ({cv2.__version__} at {os.path.dirname(cv2.__file__)}) was built "
        "without GStreamer (cv2.getBuildInformation() says 'GStreamer: NO'; PyPI's opencv-python wheels have "
        "none). Fix: on a Jetson use JetPack's OpenCV (python3-opencv from JetPack) and remove pip's "
        "opencv-python / opencv-python-headless / opencv-contrib-python, which shadow it "
        "(pip uninstall them; check cv2.__file__); elsewhere build OpenCV with -DWITH_GSTREAMER=ON"
    )


def csi_pipeline(
    sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0
) -> str:
    """The Jetson CSI capture pipeline: ``nvarguscamerasrc`` (ISP, NV12 in NVMM memory) → ``nvvidconv``
    (flip, to system-memory BGRx) → ``videoconvert`` (BGR, what OpenCV wants) → ``appsink`` that keeps
    one buffer and drops the rest (the grabber keeps the newest frame anyway)."""
    if not 0 <= flip <= 7:
        raise ValueError(f"csi_pipeline flip: expected 0..7 (nvvidconv flip-method), got {flip}")
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"framerate=(fraction){fps}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (H×W×3 BGR, H×W×4 BGRA or H×W gray, uint8) → H×W×3 RGB uint8 (a new array)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError(f"camera frame: expected a uint8 array, got {getattr(frame, 'dtype', type(frame))}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"camera frame: expected H×W, H×W×3 or H×W×4, got shape {frame.shape}")


def fourcc_str(code: float | int) -> str:
    """OpenCV's FOURCC number → its four characters."""
    c = int(code) & 0xFFFFFFFF
    return "".join(chr((c >> (8 * i)) & 0xFF) for i in range(4))


def settings_mismatch(requested: dict[str, Any], accepted: dict[str, Any]) -> list[str]:
    """Human-readable lines for each requested setting the driver did not take (fps within 1 %)."""
    out = []
    for key, want in requested.items():
        got = accepted.get(key)
        same = (
            got is not None and abs(float(got) - float(want)) <= 0.01 * float(want)
            if key == "fps"
            else got == want
        )
        if not same:
            out.append(f"{key}: asked {want}, driver gave {got}")
    return out


# ---------------------------------------------------------------- the source


@dataclass
class CameraStats:
    """Counters of a source: frames delivered, bad frames skipped (unreadable image files, frames of an
    unexpected shape), and for live sources the grabber's counters."""

    delivered: int = 0
    bad_frames: int = 0
    last_error: str | None = None
    grabber: GrabberStats | None = None


@dataclass
class _FileFrames:
    """A file source's frame iterator plus its pacing state."""

    frames: Iterator[tuple[np.ndarray | None, int, str]]  # (BGR or None if unreadable, stamp ns, name)
    realtime: bool
    t0_host_ns: int | None = None
    t0_media_ns: int | None = None
    held: tuple[np.ndarray | None, int, str] | None = None


@dataclass
class CameraSource:
    """An open camera. ``read(timeout_s)`` → the next :class:`Message` or ``None`` after the timeout;
    iterate for every message until the source ends (files) or :meth:`close` (live). ``info``: what was
    opened (scheme, target, size, rate, what the driver accepted)."""

    uri: str
    sensor_id: str
    info: dict[str, Any]
    clock: Callable[[], int] = time.monotonic_ns
    stats: CameraStats = field(default_factory=CameraStats)
    _grabber: Grabber | None = None
    _files: _FileFrames | None = None
    _seq: int = 0
    _closed: bool = False
    _ended: bool = False

    @property
    def live(self) -> bool:
        return self._grabber is not None

    @property
    def finished(self) -> bool:
        """True once a file source is exhausted or the source is closed."""
        return self._closed or self._ended

    def read(self, timeout_s: float = 1.0) -> Message | None:
        if self.finished:
            return None
        if self._grabber is not None:
            return self._read_live(timeout_s)
        return self._read_file(timeout_s)

    def __iter__(self) -> Iterator[Message]:
        while not self.finished:
            m = self.read(0.5)
            if m is not None:
                yield m

    def _message(self, frame, stamp_ns: int, recv_ns: int, name: str, raw=None) -> Message | None:
        """``frame``: an OpenCV array or the camera's CompressedImage; ``raw``: the camera's own stamp."""
        try:
            payload = frame if isinstance(frame, CompressedImage) else Image(bgr_to_rgb(frame))
        except ValueError as e:
            self.stats.bad_frames += 1
            self.stats.last_error = f"{self.uri} {name}: {e}"
            log.warning("%s", self.stats.last_error)
            return None
        msg = Message(
            sensor_id=self.sensor_id,
            stamp_ns=stamp_ns,
            payload=payload,
            raw_stamp_ns=stamp_ns if raw is None else raw,
            recv_ns=recv_ns,
            seq=self._seq,
        )
        self._seq += 1
        self.stats.delivered += 1
        return msg

    def _read_live(self, timeout_s: float) -> Message | None:
        assert self._grabber is not None
        g = self._grabber.latest(timeout_s)
        if g is None:
            return None
        return self._message(g.frame, g.stamp_ns, g.stamp_ns, f"frame {g.seq}", g.sensor_ns)

    def _read_file(self, timeout_s: float) -> Message | None:
        f = self._files
        assert f is not None
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if f.held is None:
                try:
                    f.held = next(f.frames)
                except StopIteration:
                    self._ended = True
                    return None
            bgr, stamp, name = f.held
            if bgr is None:  # unreadable file: counted, skipped
                f.held = None
                self.stats.bad_frames += 1
                self.stats.last_error = f"{self.uri}: {name} could not be decoded"
                log.warning("%s", self.stats.last_error)
                continue
            if f.realtime:
                now = self.clock()
                if f.t0_host_ns is None:
                    f.t0_host_ns, f.t0_media_ns = now, stamp
                due = f.t0_host_ns + (stamp - f.t0_media_ns)
                wait_s = (due - now) / 1e9
                if wait_s > 0:
                    left = deadline - time.monotonic()
                    if wait_s > left:
                        time.sleep(max(0.0, left))
                        return None
                    time.sleep(wait_s)
            f.held = None
            msg = self._message(bgr, stamp, self.clock(), name)
            if msg is not None:
                return msg
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        """Stop the grabber (live) and release the device; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._grabber is not None:
            self._grabber.stop()
        if self._files is not None:
            close = getattr(self._files.frames, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> CameraSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- openers


def _video_frames(
    uri: str, path: str, loop: bool, factory: Callable[..., Capture], first: Any
) -> Iterator[tuple[np.ndarray | None, int, str]]:
    offset_ns, cap = 0, first
    while True:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        period_ns = int(round(_NS_PER_S / fps)) if fps > 0 else 0
        last_ns, k = -1, 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                pos_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                t = int(round(pos_ms * 1e6)) if pos_ms > 0 or k == 0 else k * period_ns
                if t <= last_ns:  # a container without usable timestamps: fall back to index / fps
                    t = last_ns + max(1, period_ns)
                last_ns = t
                yield frame, offset_ns + t, f"frame {k}"
                k += 1
        finally:
            cap.release()
        if not loop or k == 0:
            return
        offset_ns += last_ns + max(1, period_ns)
        cap = factory(path)
        if not cap.isOpened():
            log.warning("%s: %s did not re-open for the next loop; ending", uri, path)
            return


def _image_frames(
    files: list[str], stamps: list[int], loop: bool
) -> Iterator[tuple[np.ndarray | None, int, str]]:
    offset_ns = 0
    span = (stamps[-1] - stamps[0]) + ((stamps[-1] - stamps[0]) // max(1, len(stamps) - 1) or 1)
    while True:
        for path, t in zip(files, stamps, strict=True):
            frame = cv2.imread(path, cv2.IMREAD_COLOR)
            yield frame, offset_ns + t, path
        if not loop:
            return
        offset_ns += span


def _open_video(
    uri: str, target: str, params: dict[str, str], factory: Callable[..., Capture]
) -> _FileFrames:
    _check_params(uri, params, ("rate", "loop"))
    rate = _choice(uri, params, "rate", ("realtime", "max"))
    loop = _choice(uri, params, "loop", ("0", "1")) == "1"
    if not os.path.isfile(target):
        raise CameraUriError(f"camera URI {uri!r}: video file {target} does not exist")
    cap = factory(target)
    if not cap.isOpened():
        cap.release()
        raise CameraUriError(
            f"camera URI {uri!r}: {target} did not open as a video in OpenCV {cv2.__version__}"
        )
    frames = _video_frames(uri, target, loop, factory, cap)
    return _FileFrames(frames=frames, realtime=rate == "realtime")


def _open_images(uri: str, target: str, params: dict[str, str]) -> tuple[_FileFrames, int]:
    _check_params(uri, params, ("rate", "stamps", "loop"))
    rate = _num(uri, params, "rate", 10.0, float)
    mode = _choice(uri, params, "stamps", ("rate", "name"))
    loop = _choice(uri, params, "loop", ("0", "1")) == "1"
    files = sorted(p for p in glob.glob(target) if os.path.isfile(p))
    if not files:
        raise CameraUriError(f"camera URI {uri!r}: glob {target!r} matches no files")
    if mode == "name":
        stamps = []
        for p in files:
            stem = Path(p).stem
            if not stem.isdigit():
                raise CameraUriError(
                    f"camera URI {uri!r}: stamps=name: file {p}: "
                    f"expected an integer-ns file name, got {stem!r}"
                )
            stamps.append(int(stem))
        if any(b <= a for a, b in zip(stamps[:-1], stamps[1:], strict=True)):
            raise CameraUriError(
                f"camera URI {uri!r}: stamps=name: expected increasing stamps in sorted order"
            )
    else:
        stamps = [int(round(k * _NS_PER_S / rate)) for k in range(len(files))]
    return _FileFrames(frames=_image_frames(files, stamps, loop), realtime=True), len(files)


def _open_bounded(uri: str, open_capture: Callable[[], Any], timeout_s: float) -> Any:
    """Run the first ``open_capture()`` in a helper thread and wait at most ``timeout_s`` (a driver or an
    ``nvarguscamerasrc`` without a camera can hang in open); a late capture is released when it comes."""
    box: dict[str, Any] = {}
    lock = threading.Lock()
    done = threading.Event()

    def run() -> None:
        try:
            cap, err = open_capture(), None
        except Exception as e:  # reported to the caller below
            cap, err = None, e
        with lock:
            abandoned = box.get("abandoned", False)
            box.update(cap=cap, error=err)
            done.set()
        if abandoned and cap is not None:
            cap.release()

    threading.Thread(target=run, name=f"open {uri}", daemon=True).start()
    done.wait(timeout_s)
    with lock:
        if not done.is_set():
            box["abandoned"] = True
            raise CameraUriError(f"camera URI {uri!r}: the device did not open within {timeout_s:g} s")
    if box["error"] is not None:
        e = box["error"]
        raise CameraUriError(f"camera URI {uri!r}: opening failed: {type(e).__name__}: {e}") from e
    return box["cap"]


def _v4l2_target(uri: str, target: str) -> int | str:
    m = re.fullmatch(r"(?:/dev/video)?(\d+)", target)
    if m:
        if target.startswith("/dev/") and not os.path.exists(target):
            raise CameraUriError(f"camera URI {uri!r}: V4L2 device {target} does not exist")
        return int(m.group(1))  # this OpenCV's V4L2 backend opens by index, not by path
    if not os.path.exists(target):
        raise CameraUriError(f"camera URI {uri!r}: V4L2 device {target} does not exist")
    return target


def _open_v4l2(
    uri: str, target: str, params: dict[str, str], factory: Callable[..., Any], open_timeout_s: float
) -> tuple[Callable[[], Capture], Capture, dict[str, Any]]:
    _check_params(uri, params, ("width", "height", "fps", "fourcc"))
    requested: dict[str, Any] = {}
    fourcc = params.get("fourcc")
    if fourcc is not None:
        if len(fourcc) != 4:
            raise CameraUriError(
                f"camera URI {uri!r}: parameter fourcc={fourcc!r}: expected 4 characters (MJPG, YUYV…)"
            )
        requested["fourcc"] = fourcc
    for key, kind in (("width", int), ("height", int), ("fps", float)):
        v = _num(uri, params, key, None, kind)
        if v is not None:
            requested[key] = v
    device = _v4l2_target(uri, target)

    def open_capture() -> Any:
        cap = factory(device, cv2.CAP_V4L2)
        if cap.isOpened():
            # FOURCC first: the sizes and rates a driver offers depend on the pixel format
            if "fourcc" in requested:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*requested["fourcc"]))
            if "width" in requested:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, requested["width"])
            if "height" in requested:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, requested["height"])
            if "fps" in requested:
                cap.set(cv2.CAP_PROP_FPS, requested["fps"])
        return cap

    cap = _open_bounded(uri, open_capture, open_timeout_s)
    if not cap.isOpened():
        cap.release()
        raise CameraUriError(
            f"camera URI {uri!r}: V4L2 device {target} exists but did not open (busy in another process, "
            "no permission — is the user in the 'video' group — or not a capture device)"
        )
    accepted = {
        "fourcc": fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)),
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        "fps": float(cap.get(cv2.CAP_PROP_FPS)),
    }
    mismatch = settings_mismatch(requested, accepted)
    for line in mismatch:
        log.warning("%s: driver did not accept %s", uri, line)
    info = {"requested": requested, "accepted": accepted, "settings_mismatch": mismatch}
    return open_capture, cap, info


def _open_gst(
    uri: str, pipeline: str, factory: Callable[..., Any], build_info: str | None, open_timeout_s: float
) -> tuple[Callable[[], Capture], Capture]:
    elements = [e.strip() for e in pipeline.split("!")]
    if not elements[-1].split(" ")[0].startswith("appsink"):
        raise CameraUriError(
            f"camera URI {uri!r}: expected a GStreamer pipeline ending in 'appsink', got last element "
            f"{elements[-1]!r}"
        )
    require_gstreamer(uri, build_info)

    def open_capture() -> Any:
        return factory(pipeline, cv2.CAP_GSTREAMER)

    cap = _open_bounded(uri, open_capture, open_timeout_s)
    if not cap.isOpened():
        cap.release()
        raise CameraUriError(
            f"camera URI {uri!r}: GStreamer pipeline did not start (run it with gst-launch-1.0, "
            "ending in fakesink, to see why)"
        )
    return open_capture, cap


def open_camera(
    uri: str,
    sensor_id: str = "camera",
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    backoff: Backoff | None = None,
    capture_factory: Callable[..., Any] = cv2.VideoCapture,
    build_info: str | None = None,
    open_timeout_s: float = 10.0,
) -> CameraSource:
    """Open a camera URI (see the module doc). Raises :class:`CameraUriError` / :class:`GStreamerMissingError`
    (both :class:`InputError`) for a bad URI, a missing file or device, or a missing GStreamer.

    ``clock``: host monotonic ns (capture stamps, pacing); ``backoff``: the live reconnect schedule;
    ``capture_factory``: ``cv2.VideoCapture`` or a stand-in with its interface (tests);
    ``build_info``: OpenCV build text to check for GStreamer instead of this OpenCV's;
    ``open_timeout_s``: how long a live device may take to open before :class:`CameraUriError`."""
    scheme, target, params = split_uri(uri)
    info: dict[str, Any] = {"scheme": scheme, "target": target}
    src = CameraSource(uri=uri, sensor_id=sensor_id, info=info, clock=clock)
    if scheme == "video":
        src._files = _open_video(uri, target, params, capture_factory)
        info["rate"] = "realtime" if src._files.realtime else "max"
        return src
    if scheme == "images":
        src._files, info["files"] = _open_images(uri, target, params)
        return src
    if scheme == "v4l2":
        open_capture, cap, extra = _open_v4l2(uri, target, params, capture_factory, open_timeout_s)
        info.update(extra)
    elif scheme == "gst":
        open_capture, cap = _open_gst(uri, target, capture_factory, build_info, open_timeout_s)
        info["pipeline"] = target
    elif scheme == "http":

        def open_capture() -> Any:
            return MjpegCapture(uri, timeout_s=2.0, connect_timeout_s=open_timeout_s, clock=clock)

        try:
            cap = open_capture()
        except (OSError, ValueError) as e:
            raise CameraUriError(f"camera URI {uri!r}: no MJPEG stream there: {e}") from None
    else:  # csi
        _check_params(uri, params, ("width", "height", "fps", "flip"))
        if not target.isdigit():
            raise CameraUriError(f"camera URI {uri!r}: expected csi://N with N the sensor id, got {target!r}")
        flip = int(params.get("flip", "0")) if params.get("flip", "0").isdigit() else -1
        if not 0 <= flip <= 7:
            raise CameraUriError(f"camera URI {uri!r}: parameter flip={params['flip']!r}: expected 0..7")
        pipeline = csi_pipeline(
            int(target),
            _num(uri, params, "width", 1920),
            _num(uri, params, "height", 1080),
            _num(uri, params, "fps", 30),
            flip,
        )
        info["pipeline"] = pipeline
        open_capture, cap = _open_gst(uri, pipeline, capture_factory, build_info, open_timeout_s)
    grabber = Grabber(open_capture, name=f"{sensor_id} ({uri})", clock=clock, backoff=backoff, capture=cap)
    src._grabber = grabber
    src.stats.grabber = grabber.stats
    grabber.start()
    return src
