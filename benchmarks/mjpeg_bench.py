"""MJPEG over HTTP: edgefuse's part-by-part reader (edgefuse.adapters.camera.mjpeg) beside OpenCV's FFmpeg
reader (``cv2.VideoCapture(url, cv2.CAP_FFMPEG)``, what the ``http://`` camera used before), side by side on
the same stream.

A 30 Hz stream from ``edgefuse sim serve``'s MJPEG server (stdlib http.server on 127.0.0.1) carries frames
whose index is painted into the picture as 12 black/white blocks (robust to JPEG); each part's
``X-Timestamp`` is the host monotonic time it was published. Each reader runs alone for ``--seconds`` per
size and stamps every frame it gets: OpenCV's when ``read()`` returns (what a grabber can do), ours at the
part's last byte (its frames are the camera's JPEG bytes; decoded here at full size, as OpenCV's reader
does, so the CPU columns compare the same work). Stamp error = stamp − publish time of that frame (so the
HTTP path itself is in both).
For ours also the stamp the pipeline uses with ``clock: sensor``: the ``X-Timestamp`` mapped by the
minimum-delay clock estimator (edgefuse.sync.clock), against the publish time. CPU: the reader thread's CPU
time per frame (decode included).

    .venv/bin/python benchmarks/mjpeg_bench.py [--seconds 10]

Writes docs/mjpeg_bench.json and the ``## mjpeg_bench`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import threading
import time

import cv2
import numpy as np
from _report import machine, machine_line, replace_section, write_json

from edgefuse.adapters.camera.mjpeg import MjpegCapture
from edgefuse.sim.serve_links import MjpegServer
from edgefuse.sync.clock import ClockEstimator

FPS = 30
BITS = 12
MS = 1_000_000


def _frames(w: int, h: int, n: int, seed: int = 0) -> list[bytes]:
    """n JPEG frames (q90) of textured noise with the frame index in BITS blocks along the top."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    bw = w // BITS
    out = []
    for k in range(n):
        img = np.roll(base, 7 * k, axis=1)
        for b in range(BITS):
            img[: h // 8, b * bw : (b + 1) * bw] = 255 if (k >> b) & 1 else 0
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(buf.tobytes())
    return out


def _index(img: np.ndarray) -> int:
    h, w = img.shape[:2]
    bw = w // BITS
    strip = img[: h // 8].mean(axis=(0, 2))
    return sum(1 << b for b in range(BITS) if strip[b * bw + bw // 4 : (b + 1) * bw - bw // 4].mean() > 127)


def _publisher(server: MjpegServer, frames: list[bytes], seconds: float, sent: dict, stop: threading.Event):
    period = 1e9 / FPS
    t0 = time.monotonic_ns() + 300 * MS  # give the reader time to connect
    for k in range(int(seconds * FPS)):
        due = t0 + int(k * period)
        while (now := time.monotonic_ns()) < due:
            time.sleep(min(0.002, (due - now) / 1e9))
        if stop.is_set():
            return
        t = time.monotonic_ns()
        sent[k % len(frames)] = t
        server.publish(frames[k % len(frames)], t)
    stop.set()


def run_reader(kind: str, w: int, h: int, seconds: float) -> dict:
    n_frames = int(seconds * FPS)
    frames = _frames(w, h, min(n_frames, 1 << BITS))
    server = MjpegServer("127.0.0.1", 0, "cam")
    sent: dict[int, int] = {}
    stop = threading.Event()
    got: list[tuple[int, int, int | None]] = []  # (frame index, host stamp, X-Timestamp or None)
    cpu = [0.0]

    def read():
        c0 = time.thread_time()
        if kind == "opencv":
            cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
        else:
            cap = MjpegCapture(server.url)
        while not stop.is_set() or len(got) < len(sent):
            ok, frame = cap.read()
            if not ok:
                break
            stamp, sensor = time.monotonic_ns(), None
            if kind == "edgefuse":  # the camera's JPEG bytes: decoded here as the pipeline would (full size)
                stamp, sensor = cap.last_stamps()
                frame = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
            got.append((_index(frame), stamp, sensor))
            if stop.is_set() and got[-1][0] == max(sent, default=-1):
                break
        cpu[0] = time.thread_time() - c0
        cap.release()

    reader = threading.Thread(target=read, daemon=True)
    pub = threading.Thread(target=_publisher, args=(server, frames, seconds, sent, stop), daemon=True)
    reader.start()
    time.sleep(0.1)
    pub.start()
    pub.join()
    reader.join(5)
    server.close()
    err = np.array([(s - sent[i]) / MS for i, s, _ in got if i in sent])
    r = {
        "reader": kind,
        "size": f"{w}x{h}",
        "published": len(sent),
        "received": len(got),
        "stamp_minus_publish_ms": _pct(err),
        "cpu_ms_per_frame": 1e3 * cpu[0] / max(1, len(got)),
    }
    if kind == "edgefuse":
        r["x_timestamp_exact_to_1us"] = all(x == sent[i] // 1000 * 1000 for i, _, x in got if i in sent)
        est = ClockEstimator(period_ns=int(1e9 / FPS))
        mapped = np.array([(est.update(x, s) - sent[i]) / MS for i, s, x in got if x is not None])
        r["mapped_minus_publish_ms"] = _pct(mapped[FPS:])  # after the first second
    return r


def _pct(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"p50": None, "p99": None, "max": None, "spread_p99_p1": None}
    p1, p50, p99 = np.percentile(x, [1, 50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(x.max()), 3),
            "spread_p99_p1": round(float(p99 - p1), 3)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    runs = []
    for w, h in ((640, 360), (1280, 720)):
        for kind in ("opencv", "edgefuse"):
            r = run_reader(kind, w, h, a.seconds)
            print(r, flush=True)
            runs.append(r)
    result = {"machine": machine(cv2), "seconds": a.seconds, "fps": FPS, "runs": runs}
    write_json("mjpeg_bench", result)
    lines = [
        "`benchmarks/mjpeg_bench.py` — the `http://` camera's reader (edgefuse.adapters.camera.mjpeg) beside "
        "OpenCV's FFmpeg reader on the same 30 Hz MJPEG stream (sim serve's server on 127.0.0.1, "
        f"{a.seconds:g} s per reader and size, each alone). Stamp error = the reader's host stamp − the "
        "frame's publish time (frame identified by blocks painted into it); for ours also the frame's "
        "`X-Timestamp` mapped by the clock estimator (`clock: sensor`), after the first second.",
        f"Machine: {machine_line(result['machine'])}. Rerun: `.venv/bin/python benchmarks/mjpeg_bench.py`.",
        "",
        "| size | reader | frames got / sent | stamp − publish p50 / p99 / max ms | p99 − p1 spread ms "
        "| mapped X-Timestamp − publish p50 / p99 ms | CPU ms / frame |",
        "| --- | --- | --- | --- | ---: | --- | ---: |",
    ]
    for r in runs:
        e, m = r["stamp_minus_publish_ms"], r.get("mapped_minus_publish_ms")
        mapped = f"{m['p50']:.2f} / {m['p99']:.2f}" if m else "—"
        lines.append(
            f"| {r['size']} | {r['reader']} | {r['received']} / {r['published']} "
            f"| {e['p50']:.2f} / {e['p99']:.2f} / {e['max']:.2f} | {e['spread_p99_p1']:.2f} | {mapped} "
            f"| {r['cpu_ms_per_frame']:.2f} |"
        )
    by = {(r["size"], r["reader"]): r for r in runs}
    parts = []
    for size in ("640x360", "1280x720"):
        o, e = by[(size, "opencv")], by[(size, "edgefuse")]
        parts.append(
            f"{size}: host stamps {o['stamp_minus_publish_ms']['p50']:.1f} ms (OpenCV) vs "
            f"{e['stamp_minus_publish_ms']['p50']:.1f} ms (ours) after publish at p50, p99 "
            f"{o['stamp_minus_publish_ms']['p99']:.1f} vs {e['stamp_minus_publish_ms']['p99']:.1f} ms; "
            f"CPU {o['cpu_ms_per_frame']:.1f} vs {e['cpu_ms_per_frame']:.1f} ms/frame"
        )
    lines += ["", "Reading: " + "; ".join(parts) + ".", ""]
    replace_section("mjpeg_bench", "\n".join(lines))


if __name__ == "__main__":
    main()
