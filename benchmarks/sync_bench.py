"""Sync + tensor building throughput, and pillar voxelization side by side with spconv, in one run.

1. **Frames/s** for the default sim rig on one core (``sched_setaffinity``, cv2 and BLAS single-threaded):
   every message of a simulated stretch (camera 30 Hz JPEG 1280×720, LiDAR 10 Hz VLP-32C sweeps, radar
   20 Hz, odometry 50 Hz, IMU 200 Hz, each with the simulator's own clock stamps) goes through
   ``StampMapper.map`` → ``Synchronizer.update`` (reference policy), and every frame through
   ``TensorBuilder.build`` with LiDAR de-skew from the odometry and radar doppler compensation. Payloads
   are rendered once and cycled (rendering is the simulator's cost, not ours).
2. **Voxelization**: edgefuse's numba :class:`~edgefuse.tensors.PillarVoxelizer` vs spconv's CPU
   ``PointToVoxel`` (pillars: one z cell), same points, same grid, limits and features; and a plain
   vectorized numpy version of the same rule. spconv runs in a subprocess (it needs torch; ours must not
   import it). Outputs are checked equal as sets of pillars (spconv orders pillars by first point,
   we by count — the pillar contents are the same when nothing overflows). Clouds: the real VLP-32C scan
   in tests/data, a simulated sweep, and 4 simulated sweeps stacked (KITTI-sized, ~120k points).

Run: ``.venv/bin/python benchmarks/sync_bench.py [--seconds S] [--repeats K]``; prints tables, writes
docs/sync_bench.json and replaces the "## Sync and tensors (sync_bench)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402

import cv2  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from _report import ROOT, machine, machine_line, pin_to_one_core, replace_section, write_json  # noqa: E402

from edgefuse.motion import EgoTrajectory  # noqa: E402
from edgefuse.sim.clocks import message_rng  # noqa: E402
from edgefuse.sim.ego import OdometryIntegrator  # noqa: E402
from edgefuse.sim.rig import sim_kit  # noqa: E402
from edgefuse.sim.run import Simulator  # noqa: E402
from edgefuse.sync import StampMapper, Synchronizer, SyncSpec  # noqa: E402
from edgefuse.tensors import PillarVoxelizer, TensorBuilder, TensorSpec  # noqa: E402
from edgefuse.types import Message  # noqa: E402

SECTION = "Sync and tensors (sync_bench)"
NS = 1_000_000_000


# ---------------------------------------------------------------- 1. frames/s


def sim_stream(seconds: float, seed: int = 0, n_cam: int = 3, n_lidar: int = 6, n_radar: int = 10):
    """The sim rig's messages over ``seconds`` with true clock stamps; payloads rendered once, cycled."""
    sim = Simulator("default", seed)
    end = int(seconds * NS)
    cache: dict[str, list] = {"cam_front": [], "lidar_top": [], "radar_front": []}
    want = {"cam_front": n_cam, "lidar_top": n_lidar, "radar_front": n_radar}
    odom = OdometryIntegrator(sim.ego_noise)
    msgs = []
    for t, sid, k in sim.schedule(end):
        c = sim.clocks[sid]
        if sid in cache:
            if len(cache[sid]) < want[sid]:
                cache[sid].append(sim.capture(sid, t, k)[0].message.payload)
            payload = cache[sid][k % len(cache[sid])]
            rng = message_rng(sim.seed, c.stream, k)
            raw, recv = c.raw_stamp(t, rng), c.recv_time(t, rng)
            msgs.append(
                Message(sid, t, payload, raw_stamp_ns=raw, recv_ns=recv, frame=sim.frames[sid], seq=k)
            )
        else:
            msgs.append(sim.capture(sid, t, k, odom)[0].message)
    msgs.sort(key=lambda m: m.recv_ns)
    return sim, msgs


def run_pipeline(sim, msgs, spec: TensorSpec):
    """One pass: (frames, total sync s, total build s, per-frame build s list, counters)."""
    kit = sim_kit()
    mapper = StampMapper(kit, sim.calibration)
    sync = Synchronizer(SyncSpec.from_kit(kit))
    builder = TensorBuilder(spec, sim.calibration)
    odom: deque[Message] = deque(maxlen=50)
    t_sync = 0.0
    per_frame: list[float] = []
    for m in msgs:
        t0 = time.perf_counter()
        mm = mapper.map(m)
        if mm.sensor_id == "odom":
            odom.append(mm)
        out = sync.update(m.recv_ns, [mm] if mm.sensor_id in sync.spec.sensors else [])
        t_sync += time.perf_counter() - t0
        for fs in out:
            t1 = time.perf_counter()
            ego = EgoTrajectory.from_odometry(odom) if odom else None
            builder.build(fs, ego)
            per_frame.append(time.perf_counter() - t1)
    return len(per_frame), t_sync, sum(per_frame), per_frame, sync.counters.as_dict()


def stage_breakdown(sim, msgs, spec: TensorSpec, repeats: int) -> dict:
    """ms per frame of each stage of ``TensorBuilder.build`` on one representative frame."""
    from edgefuse.motion import deskew

    builder = TensorBuilder(spec, sim.calibration)
    cam = next(m for m in msgs if m.sensor_id == "cam_front")
    lid = next(m for m in msgs if m.sensor_id == "lidar_top")
    odom = [m for m in msgs if m.sensor_id == "odom" and abs(m.stamp_ns - lid.stamp_ns) < 0.3 * NS]
    ego = EgoTrajectory.from_odometry(odom)
    T = sim.calibration.T_base("lidar_top")
    camm = sim.calibration.camera("cam_front")
    pts = np.array(lid.payload.data[:, :4], np.float32)
    pts[:, :3] = T.apply(pts[:, :3])
    out = np.empty((3, *spec.image_size), np.float32)

    def best(fn):
        fn()
        r = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            r.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(r))

    return {
        "jpeg_decode_ms": best(lambda: builder.images.decode(cam.payload, camm)),
        "image_total_ms": best(lambda: builder.images(cam.payload, camm, out=out)),
        "deskew_ms": best(lambda: deskew(lid.payload, lid.stamp_ns, T, ego)),
        "lidar_voxelize_ms": best(lambda: builder.lidar_vox(pts)),
        "lidar_points": int(len(lid.payload)),
    }


# ---------------------------------------------------------------- 2. voxelization


def numpy_pillars(points, lo, hi, size, nx, ny, max_p, max_n):
    """The same overflow rule, vectorized numpy (argsort/unique)."""
    xyz = points[:, :3]
    ok = np.all((xyz >= lo) & (xyz < hi), axis=1)
    idx = np.flatnonzero(ok)
    cell = np.minimum(((xyz[idx, 1] - lo[1]) / size[1]).astype(np.int64), ny - 1) * nx + np.minimum(
        ((xyz[idx, 0] - lo[0]) / size[0]).astype(np.int64), nx - 1
    )
    order = np.argsort(cell, kind="stable")
    cs = cell[order]
    uniq, first, counts = np.unique(cs, return_index=True, return_counts=True)
    rank = np.lexsort((uniq, -counts))[:max_p]
    slot = np.full(uniq.shape[0], -1, np.int64)
    slot[rank] = np.arange(rank.shape[0])
    pos = np.arange(cs.shape[0]) - np.repeat(first, counts)
    s = slot[np.repeat(np.arange(uniq.shape[0]), counts)]
    keep = (s >= 0) & (pos < max_n)
    out = np.zeros((max_p, max_n, points.shape[1]), np.float32)
    out[s[keep], pos[keep]] = points[idx[order[keep]]]
    coords = np.zeros((max_p, 2), np.int32)
    coords[: rank.shape[0], 0] = uniq[rank] // nx
    coords[: rank.shape[0], 1] = uniq[rank] % nx
    cnt = np.zeros(max_p, np.int32)
    cnt[: rank.shape[0]] = np.minimum(counts[rank], max_n)
    return out, coords, cnt, rank.shape[0]


_SPCONV_CHILD = r"""
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
import numpy as np, torch
torch.set_num_threads(1)
from spconv.pytorch.utils import PointToVoxel
cfg = json.loads(sys.argv[2])
pts = torch.from_numpy(np.load(sys.argv[1]))
gen = PointToVoxel(vsize_xyz=cfg["vsize"], coors_range_xyz=cfg["range"], num_point_features=pts.shape[1],
                   max_num_voxels=cfg["max_p"], max_num_points_per_voxel=cfg["max_n"],
                   device=torch.device("cpu"))
gen(pts)
runs = []
for _ in range(cfg["repeats"]):
    t0 = time.perf_counter(); v, c, n = gen(pts); runs.append(time.perf_counter() - t0)
np.savez(sys.argv[1] + ".out.npz", v=v.numpy(), c=c.numpy(), n=n.numpy())
print(json.dumps({"ms": 1e3 * float(np.min(runs)), "spconv": __import__("spconv").__version__,
                  "torch": torch.__version__}))
"""


def spconv_pillars(points, cfg, repeats, core):
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "pts.npy")
        np.save(f, points)
        cfg = dict(cfg, repeats=repeats)
        r = subprocess.run(
            [sys.executable, "-c", _SPCONV_CHILD, f, json.dumps(cfg), str(core)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            return None, r.stderr.strip().splitlines()[-1] if r.stderr else "failed"
        out = np.load(f + ".out.npz")
        return (json.loads(r.stdout.strip().splitlines()[-1]), (out["v"], out["c"], out["n"])), None


def same_pillars(ours, theirs) -> bool:
    """Ours (points, coords (iy, ix), counts, n) vs spconv (voxels, coords (z, y, x), counts)."""
    p, c, n, k = ours
    v, sc, sn = theirs
    if k != sc.shape[0]:
        return False
    a = {(int(c[i, 0]), int(c[i, 1])): p[i, : n[i]] for i in range(k)}
    for j in range(sc.shape[0]):
        key = (int(sc[j, 1]), int(sc[j, 2]))
        if key not in a or not np.array_equal(a[key], v[j, : sn[j]]):
            return False
    return True


def clouds(sim) -> dict[str, np.ndarray]:
    from edgefuse.adapters.files.pcd import pcd_columns, read_pcd

    out = {}
    _names, real = pcd_columns(
        read_pcd(ROOT / "tests" / "data" / "velodyne_vlp32c" / "1713492677464078412.pcd")
    )
    xyz = real[:, :3]
    out["VLP-32C real scan (tests/data)"] = np.concatenate([xyz, np.zeros((xyz.shape[0], 1), np.float32)], 1)
    sweeps = []
    T = sim.calibration.T_base("lidar_top")
    c = sim.clocks["lidar_top"]
    for j in range(4):
        k = c.first_index_at_or_after(int((1.0 + 0.5 * j) * NS))
        cloud = sim.capture("lidar_top", c.capture_time(k), k)[0].message.payload
        p = np.array(cloud.data[:, :4], np.float32)
        p[:, :3] = T.apply(p[:, :3])
        sweeps.append(p)
    out["sim VLP-32C sweep"] = sweeps[0]
    out["4 sim sweeps stacked"] = np.concatenate(sweeps)
    return out


def bench_voxel(sim, repeats: int, core: int) -> list[dict]:
    rows = []
    lo, hi = (-51.2, -51.2, -5.0), (51.2, 51.2, 3.0)
    for name, pts in clouds(sim).items():
        for max_p in (40000, 6000):
            max_n = 32
            vox = PillarVoxelizer((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]), (0.32, 0.32), max_p, max_n)
            ours = vox(pts)
            t_ours = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                vox(pts)
                t_ours.append(time.perf_counter() - t0)
            lo_a, hi_a, sz = (
                np.array(lo, np.float32),
                np.array(hi, np.float32),
                np.array([0.32, 0.32], np.float32),
            )
            ref = numpy_pillars(pts, lo_a, hi_a, sz, vox.nx, vox.ny, max_p, max_n)
            numpy_equal = all(
                np.array_equal(a, b)
                for a, b in zip(ref[:3], (ours.points, ours.coords, ours.counts), strict=True)
            )
            t_np = []
            for _ in range(max(3, repeats // 4)):
                t0 = time.perf_counter()
                numpy_pillars(pts, lo_a, hi_a, sz, vox.nx, vox.ny, max_p, max_n)
                t_np.append(time.perf_counter() - t0)
            cfg = {
                "vsize": [0.32, 0.32, hi[2] - lo[2]],
                "range": list(lo) + list(hi),
                "max_p": max_p,
                "max_n": max_n,
            }
            sp, err = spconv_pillars(pts, cfg, repeats, core)
            sp2, _ = spconv_pillars(pts, cfg, repeats, core)  # twice, between our runs: load drifts
            if sp is not None and sp2 is not None and sp2[0]["ms"] < sp[0]["ms"]:
                sp = sp2
            for _ in range(repeats):
                t0 = time.perf_counter()
                vox(pts)
                t_ours.append(time.perf_counter() - t0)
            row = {
                "cloud": name,
                "points": int(pts.shape[0]),
                "max_pillars": max_p,
                "pillars": int(ours.num_pillars),
                "edgefuse_ms": 1e3 * float(np.min(t_ours)),
                "numpy_ms": 1e3 * float(np.min(t_np)),
                "numpy_equal": bool(numpy_equal),
            }
            if sp is not None:
                info, theirs = sp
                row.update(spconv_ms=info["ms"], spconv=info["spconv"], torch=info["torch"])
                row["ours_over_spconv"] = row["edgefuse_ms"] / info["ms"]
                row["spconv_equal"] = (
                    same_pillars((ours.points, ours.coords, ours.counts, ours.num_pillars), theirs)
                    if ours.num_pillars < max_p
                    else None
                )
                row["spconv_pillars"] = int(theirs[1].shape[0])
            else:
                row["spconv_error"] = err
            rows.append(row)
    return rows


# ---------------------------------------------------------------- main


def write_markdown(res: dict) -> None:
    p = res["pipeline"]
    lines = [
        f"Machine: {machine_line(res['machine'], with_load=True)}. "
        "Rerun: `.venv/bin/python benchmarks/sync_bench.py` "
        "(about a minute; JSON: "
        "`docs/sync_bench.json`).",
        "",
        f"**Sync + tensors, default sim rig, one core** (best of 3 passes): {p['messages']} messages over "
        f"{p['seconds']} s of "
        f"simulated time → {p['frames']} frames; clock mapping + reference-policy sync "
        f"{p['sync_ms_per_frame']:.2f} ms/frame, tensor building (JPEG decode at ½, undistort+resize remap, "
        f"normalize, de-skew from odometry, transform, voxelize LiDAR and radar) "
        f"{p['build_ms_per_frame']:.2f} ms/frame → **{p['frames_per_s']:.0f} frames/s** "
        f"({p['frames_per_s'] / 10:.1f}× the 10 Hz LiDAR rate; target ≥ 100); from the median frame of all "
        f"passes {p['median_frame_ms']:.2f} ms → **{p['frames_per_s_median_frame']:.0f} frames/s**. "
        "Stages on one frame (medians): "
        + ", ".join(
            f"{k[:-3].replace('_', ' ')} {v:.2f} ms" for k, v in p["stages"].items() if k.endswith("_ms")
        )
        + f" ({p['stages']['lidar_points']} points).",
        "",
        "**Pillar voxelization** (0.32 m pillars over ±51.2 m, z −5…3 m, ≤ 32 points per pillar, "
        "4 features), "
        "same points and settings; best of "
        f"{res['repeats']}×2 runs each (ours before and after spconv's two batches); spconv in a "
        "subprocess pinned "
        "to the same core, torch 1 thread:",
        "",
        "| cloud | points | max pillars | pillars kept | edgefuse (numba) ms | spconv PointToVoxel ms | "
        "numpy ms | edgefuse ÷ spconv | numpy ÷ spconv | same as spconv | same as numpy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in res["voxel"]:
        sp = r.get("spconv_ms")
        lines.append(
            f"| {r['cloud']} | {r['points']:,} | {r['max_pillars']:,} | {r['pillars']:,} | "
            f"{r['edgefuse_ms']:.2f} | "
            + (f"{sp:.2f}" if sp else "n/a")
            + f" | {r['numpy_ms']:.2f} | "
            + (f"{r['ours_over_spconv']:.2f}× | {r['numpy_ms'] / sp:.1f}× | " if sp else "n/a | n/a | ")
            + (
                {True: "yes", False: "NO", None: "overflow: different rule"}[r.get("spconv_equal")]
                if sp
                else "n/a"
            )
            + f" | {'yes' if r['numpy_equal'] else 'NO'} |"
        )
    lines += [
        "",
        '- "same as spconv": identical pillar set and identical per-pillar point rows (both keep points in '
        "input order); with fewer pillars allowed than occupied, spconv keeps the first-seen pillars and we "
        "keep the most populated (documented rule), so the sets differ by design.",
        "- The machine is shared (2 cores, other engineers' jobs): absolute times move ±50 % between runs "
        "(frames/s ranged 69–160 across runs of this benchmark on 2026-11-28 under varying load); the ratios "
        "come from the same run.",
    ]
    replace_section(SECTION, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="simulated seconds for frames/s (default 4)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    core = pin_to_one_core(highest=True)
    cv2.setNumThreads(1)
    spec = TensorSpec()
    sim, msgs = sim_stream(args.seconds)
    run_pipeline(sim, msgs[: len(msgs) // 4], spec)  # warm-up: JIT, remap tables
    # 3 passes: the best pass, and the median frame over all passes (robust to other jobs on the core)
    passes = [run_pipeline(sim, msgs, spec) for _ in range(3)]
    frames, t_sync, t_build, _, counters = min(passes, key=lambda r: r[1] + r[2])
    median_build = float(np.median([x for r in passes for x in r[3]]))
    median_sync = float(np.median([r[1] / r[0] for r in passes]))
    stages = stage_breakdown(sim, msgs, spec, args.repeats)
    pipe = {
        "seconds": args.seconds,
        "messages": len(msgs),
        "frames": frames,
        "sync_ms_per_frame": 1e3 * t_sync / frames,
        "build_ms_per_frame": 1e3 * t_build / frames,
        "frames_per_s": frames / (t_sync + t_build),
        "median_frame_ms": 1e3 * (median_sync + median_build),
        "frames_per_s_median_frame": 1.0 / (median_sync + median_build),
        "counters": counters,
        "stages": stages,
    }
    print(
        f"sync+tensors: {frames} frames, {pipe['frames_per_s']:.0f} frames/s "
        f"(sync {pipe['sync_ms_per_frame']:.2f} ms, build {pipe['build_ms_per_frame']:.2f} ms per frame)"
    )
    print("stages:", {k: round(v, 2) for k, v in stages.items()})
    vox = bench_voxel(sim, args.repeats, core)
    print(f"{'cloud':34} {'points':>8} {'maxP':>6} {'ours':>7} {'spconv':>7} {'numpy':>7} {'o/s':>5} same")
    for r in vox:
        sp = r.get("spconv_ms", float("nan"))
        print(
            f"{r['cloud']:34} {r['points']:8d} {r['max_pillars']:6d} {r['edgefuse_ms']:7.2f} {sp:7.2f} "
            f"{r['numpy_ms']:7.2f} {r.get('ours_over_spconv', float('nan')):5.2f} {r.get('spconv_equal')}"
        )
    res = {"machine": machine(numba, cv2), "repeats": args.repeats, "pipeline": pipe, "voxel": vox}
    write_json("sync_bench", res)
    write_markdown(res)


if __name__ == "__main__":
    main()
