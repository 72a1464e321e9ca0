"""``edgefuse demo``: the main job on the built-in simulated rig, with no arguments and no hardware.

Today (before the fusion pipeline exists) the demo exercises what is built end to end:
simulate a short drive on the default rig (camera, VLP-32C LiDAR, radar, odometry, IMU, ground truth)
→ record it as an MCAP log → read the log back and summarize it (topics, rates, gaps) → render the
camera view with the ground-truth boxes and a bird's-eye view of LiDAR + radar + boxes as PNGs.
Everything lands in ``demo-output/``. When the real-time pipeline lands (issue: pipeline/demo), the demo
runs the fusion model over this log and reports detections, mAP and latency as well.
"""

from __future__ import annotations

import json
from pathlib import Path


def run_demo(
    out_dir: str | Path = "demo-output",
    scenario: str = "default",
    seed: int = 0,
    duration_s: float = 6.0,
    progress: bool = True,
) -> dict:
    """Run the demo; returns the summary (also written to ``out_dir/summary.json``)."""
    from edgefuse.logs.info import log_info
    from edgefuse.sim.run import record, write_preview

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "sim.mcap"
    rec = record(log_path, scenario, seed, duration_s, progress=progress)
    info = log_info(log_path)
    preview = write_preview(out, scenario, seed, t_s=min(3.0, duration_s / 2))
    summary = {
        "out_dir": str(out),
        "log": str(log_path),
        "scenario": scenario,
        "seed": seed,
        "simulated_s": duration_s,
        "messages": rec["messages"],
        "realtime_factor": rec["realtime_factor"],
        "log_size_bytes": rec["size_bytes"],
        "topics": {k: {"count": v["count"], "rate_hz": v["rate_hz"]} for k, v in info["topics"].items()},
        "camera_png": preview["camera"],
        "bev_png": preview["bev"],
        "lidar_points": preview["lidar_points"],
        "radar_detections": preview["radar_detections"],
        "ground_truth_boxes": preview["ground_truth_boxes"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"edgefuse demo: {s['simulated_s']:.1f} s of the '{s['scenario']}' scenario (seed {s['seed']}) "
        f"simulated at {s['realtime_factor']}× real time",
        f"  log: {s['log']} ({s['messages']} messages, {s['log_size_bytes'] / 1e6:.1f} MB)",
    ]
    for topic, t in s["topics"].items():
        lines.append(f"    {topic:32s} {t['count']:6d} msgs  {t['rate_hz'] or 0:7.2f} Hz")
    lines += [
        f"  frame at t = {min(3.0, s['simulated_s'] / 2):.1f} s: {s['lidar_points']} LiDAR points, "
        f"{s['radar_detections']} radar detections, {s['ground_truth_boxes']} ground-truth boxes",
        f"  pictures: {s['camera_png']}, {s['bev_png']}",
        f"  summary: {s['out_dir']}/summary.json",
    ]
    return "\n".join(lines)
