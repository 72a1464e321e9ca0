"""Frames per second of each dataset loader into the frame cache (``build_cache``), beside a simulator log
of the same drive: the KITTI object and nuScenes folders that ``edgefuse sim export`` writes, and the MCAP log
``edgefuse sim record --lossless`` writes of the same scenario, seed and duration. Each source is cached
from scratch (a fresh cache folder per run), best of ``--repeat``, one core, default tensor spec.

    .venv/bin/python benchmarks/dataset_loaders.py      # ~2 min; docs/dataset_loaders.json + benchmarks.md
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
from _report import best_of, machine, machine_line, pin_to_one_core, replace_section, write_json

from edgefuse.dataset import build_cache
from edgefuse.datasets.nuscenes_export import export_nuscenes
from edgefuse.datasets.sim_export import export_kitti
from edgefuse.sim.run import record
from edgefuse.tensors import TensorSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="simulated seconds (default 3)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    pin_to_one_core()
    spec = TensorSpec()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export_kitti(work / "kitti", "default", 0, args.duration)
        export_nuscenes(work / "nuscenes", "default", 0, args.duration)
        record(work / "drive.mcap", "default", 0, args.duration, lossless=True, progress=False)
        ids = "camera=cam_front&lidar=lidar_top"  # the default spec's sensor ids
        sources = {
            "KITTI object (kitti-object://)": f"kitti-object://{work / 'kitti'}?{ids}",
            "nuScenes (nuscenes://, + radar)": f"nuscenes://{work / 'nuscenes'}?version=v1.0-sim",
            "simulator log (MCAP, lossless)": str(work / "drive.mcap"),
        }
        rows = []
        for name, src in sources.items():
            runs = iter(range(10**6))
            frames = {}

            def run(src=src, runs=runs, frames=frames):
                info = build_cache(src, spec, work / f"cache{next(runs)}")
                frames["n"] = info.frames_with_truth

            sec = best_of(run, args.repeat)
            rows.append({"source": name, "frames": frames["n"], "seconds": sec, "fps": frames["n"] / sec})
    info = machine(cv2)
    data = {"machine": info, "duration_s": args.duration, "rows": rows}
    write_json("dataset_loaders", data)
    table = "| source | frames | s | frames/s |\n| --- | ---: | ---: | ---: |\n" + "".join(
        f"| {r['source']} | {r['frames']} | {r['seconds']:.2f} | {r['fps']:.1f} |\n" for r in rows
    )
    body = (
        f"Machine: {machine_line(info, with_load=True)}.\n\n"
        f"Command: `.venv/bin/python benchmarks/dataset_loaders.py --duration {args.duration:g}` — one "
        f"simulated drive (default scenario, seed 0) exported to KITTI and nuScenes and recorded as a "
        f"lossless log, each cached from scratch with the default tensor spec "
        f"(best of {args.repeat}).\n\n" + table
    )
    replace_section("Dataset loaders into the frame cache", body)
    print(table)


if __name__ == "__main__":
    main()
