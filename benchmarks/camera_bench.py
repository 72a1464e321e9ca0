"""Camera adapter overhead: edgefuse's file sources side by side with the bare OpenCV loops they wrap.

Both sides decode the same files in the same run and convert BGR → RGB (what a consumer needs):
- ``video://clip.avi?rate=max`` (MJPG, 1280×720) vs ``cv2.VideoCapture.read`` + ``cv2.cvtColor``;
- ``images://dir/*.png`` (1280×720) vs ``cv2.imread`` + ``cv2.cvtColor``;
The ratio is the adapter's cost on top of OpenCV (1.0 = none). Also measured: the live grabber's hand-off
latency (capture stamp → RGB frame in the consumer's hands) with a paced fake 100 fps 1280×720 camera.

Run: .venv/bin/python benchmarks/camera_bench.py  (writes docs/camera_bench.json)
"""

from __future__ import annotations

import glob
import tempfile
import time

import cv2
import numpy as np
from _report import best_of, machine, write_json

from edgefuse.adapters.camera import Grabber, bgr_to_rgb, open_camera

W, H = 1280, 720


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (H // 16, W // 16, 3), dtype=np.uint8), (W, H))
    return [np.roll(base, 8 * k, axis=1) for k in range(n)]


class PacedCapture:
    """A camera at ``fps``: ``read()`` sleeps until the next frame (releasing the GIL, as OpenCV's drivers
    do while they wait) and returns a preallocated frame."""

    def __init__(self, frame: np.ndarray, fps: float):
        self.frame, self.period, self.next = frame, 1.0 / fps, time.perf_counter()

    def read(self):
        self.next += self.period
        time.sleep(max(0.0, self.next - time.perf_counter()))
        return True, self.frame

    def isOpened(self):
        return True

    def release(self):
        pass


def main() -> None:
    n = 60
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = f"{tmp}/clip.avi"
        w = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H))
        for f in frames(n):
            w.write(f)
        w.release()
        for k, f in enumerate(frames(n // 2)):
            cv2.imwrite(f"{tmp}/img_{k:04d}.png", f, [cv2.IMWRITE_PNG_COMPRESSION, 1])

        def ours_video():
            with open_camera(f"video://{clip}?rate=max") as src:
                return sum(1 for _ in src)

        def cv_video():
            cap, k = cv2.VideoCapture(clip), 0
            while True:
                ok, f = cap.read()
                if not ok:
                    break
                cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
                k += 1
            cap.release()
            return k

        def ours_images():
            with open_camera(f"images://{tmp}/img_*.png?rate=100000") as src:
                return sum(1 for _ in src)

        def cv_images():
            k = 0
            for p in sorted(glob.glob(f"{tmp}/img_*.png")):
                cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                k += 1
            return k

        assert ours_video() == cv_video() == n
        assert ours_images() == cv_images() == n // 2
        for what, ours, ref, count in [
            ("video:// MJPG 1280x720 (ms/frame)", ours_video, cv_video, n),
            ("images:// PNG 1280x720 (ms/frame)", ours_images, cv_images, n // 2),
        ]:
            a, b = best_of(ours, 5), best_of(ref, 5)
            rows.append({"what": what, "edgefuse": 1e3 * a / count, "opencv": 1e3 * b / count})

    # live grabber: capture stamp → consumer has the RGB frame, with a 100 fps camera
    frame = frames(1)[0]
    g = Grabber(lambda: PacedCapture(frame, 100.0), clock=time.perf_counter_ns)
    g.start()
    lat = []
    while len(lat) < 200:
        item = g.latest(1.0)
        if item is not None:
            bgr_to_rgb(item.frame)
            lat.append((time.perf_counter_ns() - item.stamp_ns) / 1e6)
    g.stop()
    grabber = {
        "camera_fps": 100.0,
        "frames": len(lat),
        "handoff_ms_median": float(np.median(lat)),
        "handoff_ms_p99": float(np.percentile(lat, 99)),
        "dropped": g.stats.dropped,
    }
    for r in rows:
        r["ratio"] = r["edgefuse"] / r["opencv"]
    result = {
        "machine": machine(cv2),
        "threads": cv2.getNumThreads(),
        "rows": rows,
        "grabber": grabber,
    }
    print(f"{'':44s} {'edgefuse':>9s} {'opencv':>9s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['what']:44s} {r['edgefuse']:9.3f} {r['opencv']:9.3f} {r['ratio']:6.2f}")
    print(
        f"live grabber hand-off (capture stamp → RGB frame in the consumer), 100 fps camera: "
        f"median {grabber['handoff_ms_median']:.2f} ms, p99 {grabber['handoff_ms_p99']:.2f} ms, "
        f"dropped {grabber['dropped']} of {grabber['frames'] + grabber['dropped']}"
    )
    out = write_json("camera_bench", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
