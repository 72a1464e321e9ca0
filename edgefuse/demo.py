"""``edgefuse demo``: the main job on the built-in simulated rig, with no arguments and no hardware.

1. simulate a short drive on the default rig (camera, VLP-32C LiDAR, radar, odometry, IMU, ground truth)
   and record it as an MCAP log (``sim.mcap``);
2. replay the log through the real-time pipeline (:func:`edgefuse.pipeline.run_replay`, real-time rate)
   with the bundled INT8 model on onnxruntime: detections in ``detections.mcap``, the latency report
   (``report.json``, ``latency_hist.png``, ``timeline.png``, ``trace.json``);
3. score the published detections against the log's ground truth (:func:`score_detection_log`: mAP,
   per-class AP, NDS, mAVE: the nuScenes detection metric);
4. draw every published frame — the camera with the detected boxes beside a bird's-eye view of LiDAR,
   radar, detections and (green) ground truth — into ``demo.mp4`` (PNG frames in ``frames/`` when the
   OpenCV build writes no MP4), plus ``camera.png`` and ``bev.png`` of the middle frame.

Everything lands in ``demo-output/``; ``summary.json`` holds what is printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from edgefuse.dataset import GT_TOLERANCE_NS
from edgefuse.errors import InputError
from edgefuse.types import Detections, Message

VIDEO_FPS = 10.0


def _nearest(stamps: np.ndarray, t: int) -> int:
    """Index of the stamp in sorted ``stamps`` nearest to ``t``."""
    i = int(np.searchsorted(stamps, t))
    if i == 0:
        return 0
    if i == len(stamps):
        return len(stamps) - 1
    return i if stamps[i] - t < t - stamps[i - 1] else i - 1


def pair_with_truth(
    preds: Iterable[Detections], truth: Iterable[Detections], tolerance_ns: int = GT_TOLERANCE_NS
) -> tuple[list[Detections], list[Detections]]:
    """Frame-aligned (predictions, ground truth): each prediction with the truth message nearest in stamp
    within ``tolerance_ns`` (training's tolerance by default); predictions without one are left out."""
    gts = sorted(truth, key=lambda d: d.stamp_ns)
    if not gts:
        return [], []
    stamps = np.array([g.stamp_ns for g in gts], np.int64)
    out_p, out_g = [], []
    for p in preds:
        g = gts[_nearest(stamps, p.stamp_ns)]
        if abs(g.stamp_ns - p.stamp_ns) <= tolerance_ns:
            out_p.append(p)
            out_g.append(g)
    return out_p, out_g


def score_detection_log(detections_log: str | Path, truth_log: str | Path, spec) -> dict:
    """nuScenes scores (:func:`edgefuse.eval.metrics.evaluate_detections`) of the detections a
    pipeline published (``detections_log``) against the ground-truth topic of the simulator log
    ``truth_log``, both inside the model's BEV grid (``spec``, a :class:`~edgefuse.tensors.TensorSpec`);
    classes the log has no truth of are left out."""
    from edgefuse.dataset import GROUND_TRUTH_ID
    from edgefuse.eval.evaluate import in_grid
    from edgefuse.eval.metrics import evaluate_detections
    from edgefuse.logs import LogReader
    from edgefuse.pipeline.sinks import DETECTIONS_TOPIC

    preds = [m.payload for _t, m in LogReader(detections_log).messages(topics=[DETECTIONS_TOPIC])]
    truth = [m.payload for _t, m in LogReader(truth_log).messages(topics=[f"/{GROUND_TRUTH_ID}/detections"])]
    if not truth:
        raise InputError(f"{truth_log}: no /{GROUND_TRUTH_ID}/detections topic; expected a simulator log")
    p, g = pair_with_truth(preds, truth)
    n = sum(len(d.objects) for d in preds)
    if not p:
        return {"mAP": None, "NDS": None, "mAVE": None, "per_class": {}, "frames": 0, "detections": n}
    r = evaluate_detections(
        [in_grid(x, spec) for x in p], [in_grid(x, spec) for x in g], tuple(spec.classes), skip_absent=True
    )
    r = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
    return {**r, "detections": n}


def _frames_for_video(sim_log: Path, det_log: Path, calib, score_min: float):
    """Per published detection frame: (camera RGB nearest in stamp, LiDAR and radar points in base_link,
    radar doppler, detections ≥ ``score_min``, ground truth nearest in stamp)."""
    from edgefuse.calib.common import image_rgb
    from edgefuse.dataset import GROUND_TRUTH_ID
    from edgefuse.logs import LogReader
    from edgefuse.pipeline.sinks import DETECTIONS_TOPIC

    dets = [m.payload for _t, m in LogReader(det_log).messages(topics=[DETECTIONS_TOPIC])]
    by_sensor: dict[str, list[Message]] = {}
    for _t, m in LogReader(sim_log).messages():
        by_sensor.setdefault(m.sensor_id, []).append(m)
    cams = by_sensor.get("cam_front", [])
    lidars = by_sensor.get("lidar_top", [])
    radars = by_sensor.get("radar_front", [])
    truth = [m.payload for m in by_sensor.get(GROUND_TRUTH_ID, [])]
    if not (cams and lidars and dets):
        return
    # a detection carries its LiDAR sweep's stamp mapped onto the rig clock; the simulator's messages
    # carry true time, which the mapping recovers to ~1 ms (tests/test_sync.py): nearest stamps pair them
    stamps = {sid: np.array([m.stamp_ns for m in ms], np.int64) for sid, ms in by_sensor.items()}
    tstamps = np.array([t.stamp_ns for t in truth], np.int64)
    for d in dets:
        lid = lidars[_nearest(stamps["lidar_top"], d.stamp_ns)]
        cam = cams[_nearest(stamps["cam_front"], lid.stamp_ns)]
        rad = radars[_nearest(stamps["radar_front"], lid.stamp_ns)] if radars else None
        gt = truth[_nearest(tstamps, lid.stamp_ns)] if len(truth) else None
        pts = calib.extrinsics["lidar_top"].apply(lid.payload.xyz.astype(np.float64))
        if rad is not None:
            rpts = calib.extrinsics["radar_front"].apply(rad.payload.xyz.astype(np.float64))
            dop = rad.payload.column("doppler") if rad.payload.has("doppler") else None
        else:
            rpts, dop = np.zeros((0, 3)), None
        shown = [o for o in d.objects if o.score >= score_min]
        yield image_rgb(cam, "cam_front"), pts, rpts, dop, shown, list(gt.objects) if gt else []


def _views(rgb: np.ndarray, pts, rpts, dop, shown, gt, calib) -> tuple[np.ndarray, np.ndarray]:
    """(camera with the detections, BEV with detections over green truth) of one frame; RGB uint8."""
    from edgefuse.sim.preview import bev_image, camera_overlay

    cam = camera_overlay(rgb, shown, calib.cameras["cam_front"], calib.extrinsics["cam_front"])
    return cam, bev_image(pts, rpts, shown, radar_doppler=dop, truth=gt)


def _panel(cam: np.ndarray, bev: np.ndarray, height: int) -> np.ndarray:
    """The two views side by side, both scaled to ``height`` px; RGB uint8."""

    def fit(img):
        w = int(round(img.shape[1] * height / img.shape[0]))
        return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)

    return np.concatenate([fit(cam), fit(bev)], axis=1)


def write_video(
    sim_log: Path,
    det_log: Path,
    calib,
    out_dir: Path,
    score_min: float = 0.3,
    height: int = 480,
    progress: bool = True,
) -> dict:
    """``demo.mp4`` (mp4v, :data:`VIDEO_FPS`) of every published frame (:func:`_views` side by side), or
    PNG frames in ``frames/`` when this OpenCV build cannot write MP4; ``camera.png`` and ``bev.png`` of
    the middle frame. Frames are streamed (one decoded image at a time). Returns the paths and the frame
    count."""
    from tqdm import tqdm

    from edgefuse.logs import LogReader
    from edgefuse.pipeline.sinks import DETECTIONS_TOPIC

    topic = LogReader(det_log).topics().get(DETECTIONS_TOPIC)
    total = topic.count if topic is not None else 0
    video = out_dir / "demo.mp4"
    writer = png_dir = middle = None
    n = 0
    frames = _frames_for_video(sim_log, det_log, calib, score_min)
    for f in tqdm(frames, total=total, desc="video", unit="frame", disable=not progress, leave=False):
        cam, bev = _views(*f, calib=calib)
        if n == total // 2:
            middle = (cam, bev)
        panel = cv2.cvtColor(_panel(cam, bev, height), cv2.COLOR_RGB2BGR)
        if writer is None and png_dir is None:
            size = (panel.shape[1] // 2 * 2, panel.shape[0] // 2 * 2)
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, size)
            if not writer.isOpened():
                writer, png_dir = None, out_dir / "frames"
                png_dir.mkdir(exist_ok=True)
        if writer is not None:
            writer.write(np.ascontiguousarray(panel[: size[1], : size[0]]))
        else:
            cv2.imwrite(str(png_dir / f"{n:05d}.png"), panel)
        n += 1
    if writer is not None:
        writer.release()
    if middle is None:
        return {"video": None, "video_frames": 0, "camera_png": None, "bev_png": None}
    cam_png, bev_png = out_dir / "camera.png", out_dir / "bev.png"
    cv2.imwrite(str(cam_png), cv2.cvtColor(middle[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(bev_png), cv2.cvtColor(middle[1], cv2.COLOR_RGB2BGR))
    return {
        "video": str(png_dir) if png_dir is not None else str(video),
        "video_frames": n,
        "camera_png": str(cam_png),
        "bev_png": str(bev_png),
    }


def run_demo(
    out_dir: str | Path = "demo-output",
    scenario: str = "default",
    seed: int = 0,
    duration_s: float = 10.0,
    model: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo (module doc); returns the summary (also written to ``out_dir/summary.json``).
    ``model``: default the bundled INT8 model (``edge.int8.onnx``) on onnxruntime."""
    import sys

    from edgefuse.models import load_backend
    from edgefuse.pipeline.replay import run_replay
    from edgefuse.runtime.backends import inference_threads
    from edgefuse.sim.run import record
    from edgefuse.tensors import TensorSpec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "sim.mcap"
    rec = record(log_path, scenario, seed, duration_s, progress=progress)
    backend = load_backend(model, threads=inference_threads())
    report = run_replay(log_path, backend, out, rate=1.0, status=sys.stderr if progress else None)
    spec = TensorSpec.from_dict(backend.manifest.tensor_spec, "model manifest tensor_spec")
    det_log = Path(report["outputs"]["log"])
    scores = score_detection_log(det_log, log_path, spec)
    from edgefuse.logs import LogReader

    video = write_video(log_path, det_log, LogReader(log_path).calibration(), out, progress=progress)
    summary = {
        "out_dir": str(out),
        "scenario": scenario,
        "seed": seed,
        "simulated_s": duration_s,
        "sim_realtime_factor": rec["realtime_factor"],
        "log": str(log_path),
        "log_size_bytes": rec["size_bytes"],
        "model": str(backend.path) if hasattr(backend, "path") else str(model),
        "backend": backend.name,
        "frames": report["frames"],
        "frames_published": report["frames_published"],
        "frames_dropped": report["frames_dropped_total"],
        "deadline_misses": report["deadline_misses"],
        "detections": scores["detections"],
        "mAP": scores["mAP"],
        "NDS": scores["NDS"],
        "mAVE": scores["mAVE"],
        "per_class_AP": {k: v.get("AP") for k, v in scores["per_class"].items()},
        "scored_frames": scores["frames"],
        "e2e_p50_ms": report["e2e_p50_ms"],
        "e2e_p99_ms": report["e2e_p99_ms"],
        "data_age_p99_ms": report["data_age_p99_ms"],
        **video,
        "outputs": report["outputs"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def format_summary(s: dict) -> str:
    def pct(x):
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{100 * x:.1f}"

    def ms(x):
        return "–" if x is None else f"{x:.1f}"

    per = ", ".join(f"{k} {pct(v)}" for k, v in s["per_class_AP"].items())
    mave = "–" if s["mAVE"] is None else f"{s['mAVE']:.2f}"
    return "\n".join(
        [
            f"edgefuse demo: {s['simulated_s']:.1f} s of the '{s['scenario']}' scenario (seed {s['seed']}), "
            f"simulated at {s['sim_realtime_factor']}× real time → {s['log']} "
            f"({s['log_size_bytes'] / 1e6:.0f} MB)",
            f"  pipeline ({s['backend']}, {Path(s['model']).name}), replayed at real time: "
            f"{s['frames']} frames, {s['frames_published']} published, {s['frames_dropped']} dropped, "
            f"{s['deadline_misses']} deadline misses, {s['detections']} detections",
            f"  latency: e2e p50 {ms(s['e2e_p50_ms'])} ms, p99 {ms(s['e2e_p99_ms'])} ms; "
            f"data age p99 {ms(s['data_age_p99_ms'])} ms",
            f"  against ground truth ({s['scored_frames']} frames): mAP {pct(s['mAP'])}  ({per}); "
            f"NDS {pct(s['NDS'])}; mAVE {mave} m/s",
            f"  video: {s['video']} ({s['video_frames']} frames); "
            f"pictures: {s['camera_png']}, {s['bev_png']}",
            f"  latency report: {s['outputs'].get('report_json')}, {s['outputs'].get('histogram_png')}, "
            f"{s['outputs'].get('timeline_png')}",
            f"  summary: {s['out_dir']}/summary.json",
        ]
    )
