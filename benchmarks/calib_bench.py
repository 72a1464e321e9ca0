"""Calibration benchmark: our choices side by side with the library alternative, in one run.

1. Chessboard corners on the calibration-board scenario's boards (3–9 m): OpenCV's classic detector +
   ``cornerSubPix`` with a spacing-sized window (ours) vs ``findChessboardCornersSB`` with
   ``CALIB_CB_ACCURACY``: time per image and corner error against the simulator's exact corners.
2. Camera yaw rate between frames during the scenario's drive: our planar non-holonomic estimator vs
   OpenCV's ``findEssentialMat`` + ``recoverPose`` on the same tracks: error against the true mean yaw rate
   and time per frame pair.
3. Time offset from sweep-rate samples (10 Hz means over each sweep pair): our interval model vs
   ``scipy.signal.correlate`` on signals resampled to 1 kHz: error against the known delay, and time.
4. Accuracy summary over seeds 0–4 on the realistic calibration scenario (per-laser biases, range walk,
   mixed returns, a swaying board): LiDAR→camera (6 frames per pose, as the tests) with and without the
   solver's range model, and radar→LiDAR (x, y, yaw).

Run: ``.venv/bin/python benchmarks/calib_bench.py`` (≈ 4 min on 1 core); writes docs/calib_bench.json.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from _report import ROOT, machine, write_json

from edgefuse.calib.boards import load_target
from edgefuse.calib.common import CalibrationError
from edgefuse.calib.lidar_camera import solve_lidar_camera, transform_error
from edgefuse.calib.lidar_camera_board import board_observation
from edgefuse.calib.radar_lidar import lidar_targets, solve_radar_lidar
from edgefuse.calib.simdata import lidar_camera_frames, radar_lidar_frames
from edgefuse.calib.time_offset import _planar_rotation, estimate_offset
from edgefuse.geometry import Transform, matrix_to_rotvec
from edgefuse.sim.camera import render_camera
from edgefuse.sim.camera_board import board_inner_corners
from edgefuse.sim.rig import sim_calibration
from edgefuse.sim.world import make_world

MS = 1_000_000


def corners_bench() -> dict:
    calib = sim_calibration()
    cam, T_bc = calib.cameras["cam_front"], calib.extrinsics["cam_front"]
    world = make_world("calibration-board", 0)
    frames = lidar_camera_frames(0)
    out = {"ours": {"t": [], "err": []}, "sb_accuracy": {"t": [], "err": []}}
    for img, _cloud, t in frames:
        scene = world.scene_at(t)
        box = next(b for b in scene.boxes if b.kind == "board")
        truth, _ = cam.project((scene.T_world_base @ T_bc).inverse().apply(board_inner_corners(box)))
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        from edgefuse.calib.boards import detect_corners

        t0 = time.perf_counter()
        c = detect_corners(img, load_target(ROOT / "calibration/targets/board-a.yaml"))
        t1 = time.perf_counter()
        ok, sb = cv2.findChessboardCornersSB(
            gray, (7, 5), flags=cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_ACCURACY
        )
        t2 = time.perf_counter()
        for name, uv, dt in (
            ("ours", c.uv if c else None, t1 - t0),
            ("sb_accuracy", sb.reshape(-1, 2) if ok else None, t2 - t1),
        ):
            out[name]["t"].append(dt)
            if uv is not None:
                e = min(np.abs(uv - truth).max(axis=1).mean(), np.abs(uv[::-1] - truth).max(axis=1).mean())
                out[name]["err"].append(float(e))
    return {
        k: {
            "ms_per_image": 1e3 * float(np.mean(v["t"])),
            "mean_corner_error_px": float(np.mean(v["err"])),
            "found": len(v["err"]),
            "images": len(frames),
        }
        for k, v in out.items()
    }


def yaw_rate_bench() -> dict:
    calib = sim_calibration()
    cam, T_bc = calib.cameras["cam_front"], calib.extrinsics["cam_front"]
    world = make_world("calibration-board", 0)
    T = float(world.board.knots()[0][-1]) + 1.0
    rng = np.random.default_rng(0)
    times = [int((T + 3.5) * 1e9) + k * 33_333_333 for k in range(61)]
    imgs = [cv2.cvtColor(render_camera(world.scene_at(t), cam, T_bc, rng), cv2.COLOR_RGB2GRAY) for t in times]
    res = {"ours": {"t": 0.0, "err": []}, "essential_matrix": {"t": 0.0, "err": []}}
    for k in range(1, len(imgs)):
        p0 = cv2.goodFeaturesToTrack(imgs[k - 1], 600, 0.03, 10)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(imgs[k - 1], imgs[k], p0, None, winSize=(21, 21), maxLevel=3)
        ok = st.reshape(-1) == 1
        u0, u1 = p0.reshape(-1, 2)[ok].astype(float), p1.reshape(-1, 2)[ok].astype(float)
        dt = (times[k] - times[k - 1]) * 1e-9
        truth = np.mean(
            [e.yaw_rate for e in world.ego_states(np.linspace(times[k - 1], times[k], 21).astype(np.int64))]
        )
        t0 = time.perf_counter()
        B0, B1 = cam.rays(u0) @ T_bc.rotation.T, cam.rays(u1) @ T_bc.rotation.T
        psi = _planar_rotation(B0, B1, T_bc.translation, 3.0 * dt, 2.0 / cam.K[0, 0])
        t1 = time.perf_counter()
        x0, x1 = cam.undistort_normalized(u0), cam.undistort_normalized(u1)
        E, inl = cv2.findEssentialMat(
            x0, x1, np.eye(3), method=cv2.RANSAC, prob=0.999, threshold=1.0 / cam.K[0, 0]
        )
        _n, R, _t, _m = cv2.recoverPose(E[:3], x0, x1, np.eye(3), mask=inl)
        w_ess = (T_bc.rotation @ matrix_to_rotvec(R.T))[2] / dt
        t2 = time.perf_counter()
        res["ours"]["t"] += t1 - t0
        res["essential_matrix"]["t"] += t2 - t1
        res["ours"]["err"].append(abs(psi / dt - truth))
        res["essential_matrix"]["err"].append(abs(w_ess - truth))
    n = len(imgs) - 1
    return {
        k: {
            "ms_per_pair": 1e3 * v["t"] / n,
            "median_abs_error_rad_s": float(np.median(v["err"])),
            "p95_abs_error_rad_s": float(np.percentile(v["err"], 95)),
            "pairs": n,
        }
        for k, v in res.items()
    }


def offset_bench() -> dict:
    from scipy.signal import correlate, correlation_lags

    world = make_world("calibration-board", 0)
    T = float(world.board.knots()[0][-1]) + 1.0
    rng = np.random.default_rng(1)
    tg = np.arange(int((T + 1) * 1e9), int((T + 12) * 1e9), 5 * MS)
    gyro = np.array([e.yaw_rate for e in world.ego_states(tg)]) + rng.normal(0, 0.003, len(tg))
    out = {"ours": {"t": 0.0, "err": []}, "scipy_correlate": {"t": 0.0, "err": []}}
    for delay_ms in (-12.0, 0.0, 7.5, 31.0):
        t_end = np.arange(int((T + 2) * 1e9), int((T + 11) * 1e9), 100 * MS) + 37 * MS
        vals = np.array(
            [
                np.mean(
                    [e.yaw_rate for e in world.ego_states(np.linspace(a - 100 * MS, a, 41).astype(np.int64))]
                )
                for a in t_end
            ]
        ) + rng.normal(0, 0.01, len(t_end))
        d = int(delay_ms * MS)
        t0 = time.perf_counter()
        r = estimate_offset((tg, gyro), (t_end + d, vals, t_end - 100 * MS + d))
        t1 = time.perf_counter()
        grid = np.arange(tg[0], tg[-1], MS)  # 1 kHz; B sampled at its interval centres
        a = np.interp(grid, tg, gyro)
        b = np.interp(grid, t_end + d - 50 * MS, vals)
        cc = correlate(b - b.mean(), a - a.mean(), mode="full", method="fft")
        lags = correlation_lags(len(b), len(a), mode="full")
        win = np.abs(lags) <= 500
        lag_ns = int(lags[win][np.argmax(cc[win])]) * MS
        t2 = time.perf_counter()
        out["ours"]["t"] += t1 - t0
        out["scipy_correlate"]["t"] += t2 - t1
        out["ours"]["err"].append(abs(r.offset_ns - d) / MS)
        out["scipy_correlate"]["err"].append(abs(lag_ns - d) / MS)
    return {
        k: {
            "ms_per_estimate": 1e3 * v["t"] / 4,
            "max_abs_error_ms": float(np.max(v["err"])),
            "mean_abs_error_ms": float(np.mean(v["err"])),
        }
        for k, v in out.items()
    }


def accuracy_bench() -> dict:
    calib = sim_calibration()
    T_true = calib.extrinsics["cam_front"].inverse() @ calib.extrinsics["lidar_top"]
    init = Transform.from_rpy([0.05, -0.04, 0.03], 0.02, -0.03, 0.03) @ T_true
    board = load_target(ROOT / "calibration/targets/board-a.yaml")
    lc, rl = [], []
    for seed in (0, 1, 2, 3, 4):
        obs = []
        for k, (img, cloud, _t) in enumerate(lidar_camera_frames(seed, frames_per_pose=6)):
            o = board_observation(f"f{k}", img, cloud, board, calib.cameras["cam_front"], init)
            if not isinstance(o, str):
                obs.append(o)
        row = {"seed": seed}
        # the range model (per-laser offsets, range walk) against the solver without it, on the same data
        for key, range_model in (("", True), ("no_range_model_", False)):
            try:
                r = solve_lidar_camera(obs, board, leave_one_out=False, range_model=range_model)
            except CalibrationError as e:  # e.g. so many poses rejected that the rest are degenerate
                row |= {f"{key}translation_cm": None, f"{key}rotation_deg": None, f"{key}error": str(e)}
                continue
            dt, dr = transform_error(r.T_cam_lidar, T_true)
            row |= {f"{key}translation_cm": 100 * dt, f"{key}rotation_deg": dr, f"{key}poses": len(r.used)}
        lc.append(row)
        scans, clouds = radar_lidar_frames(seed, n_radar=80, n_lidar=8)
        pairs = [(s, lidar_targets(clouds[min(k // 2, len(clouds) - 1)])) for k, s in enumerate(scans)]
        Tr = calib.extrinsics["radar_front"]
        start = Transform.from_rpy(Tr.translation + [0.3, -0.2, 0.0], *(Tr.rpy + np.radians([0, 0, 2.0])))
        rr = solve_radar_lidar(pairs, calib.extrinsics["lidar_top"], start).T_base_radar
        rl.append(
            {
                "seed": seed,
                "dx_cm": 100 * abs(rr.translation[0] - Tr.translation[0]),
                "dy_cm": 100 * abs(rr.translation[1] - Tr.translation[1]),
                "dyaw_deg": float(abs(np.degrees(rr.rpy[2] - Tr.rpy[2]))),
            }
        )
    return {"lidar_camera": lc, "radar_lidar": rl}


def main() -> None:
    t0 = time.perf_counter()
    result = {
        "benchmark": "calib_bench",
        "machine": machine(cv2),
        "corners": corners_bench(),
        "camera_yaw_rate": yaw_rate_bench(),
        "time_offset": offset_bench(),
        "accuracy": accuracy_bench(),
    }
    result["wall_s"] = time.perf_counter() - t0
    write_json("calib_bench", result)
    c, y, o = result["corners"], result["camera_yaw_rate"], result["time_offset"]
    print("| task | ours | library | ratio (library / ours) |")
    print("|---|---|---|---|")
    print(
        f"| corners, ms/image | {c['ours']['ms_per_image']:.1f} | "
        f"{c['sb_accuracy']['ms_per_image']:.1f} (SB+ACCURACY) "
        f"| {c['sb_accuracy']['ms_per_image'] / c['ours']['ms_per_image']:.1f} |"
    )
    print(
        f"| corners, mean error px | {c['ours']['mean_corner_error_px']:.3f} | "
        f"{c['sb_accuracy']['mean_corner_error_px']:.3f} | "
        f"{c['sb_accuracy']['mean_corner_error_px'] / c['ours']['mean_corner_error_px']:.1f} |"
    )
    print(
        f"| camera yaw rate, median error rad/s | {y['ours']['median_abs_error_rad_s']:.3f} | "
        f"{y['essential_matrix']['median_abs_error_rad_s']:.3f} (essential matrix) | "
        f"{y['essential_matrix']['median_abs_error_rad_s'] / y['ours']['median_abs_error_rad_s']:.1f} |"
    )
    print(
        f"| camera yaw rate, p95 error rad/s | {y['ours']['p95_abs_error_rad_s']:.3f} | "
        f"{y['essential_matrix']['p95_abs_error_rad_s']:.3f} | "
        f"{y['essential_matrix']['p95_abs_error_rad_s'] / y['ours']['p95_abs_error_rad_s']:.1f} |"
    )
    print(
        f"| camera yaw rate, ms/pair | {y['ours']['ms_per_pair']:.1f} | "
        f"{y['essential_matrix']['ms_per_pair']:.1f} | "
        f"{y['essential_matrix']['ms_per_pair'] / y['ours']['ms_per_pair']:.2f} |"
    )
    print(
        f"| time offset, max error ms | {o['ours']['max_abs_error_ms']:.2f} | "
        f"{o['scipy_correlate']['max_abs_error_ms']:.2f} (scipy.signal.correlate, 1 kHz) | "
        f"{o['scipy_correlate']['max_abs_error_ms'] / max(o['ours']['max_abs_error_ms'], 1e-3):.1f} |"
    )
    print(
        f"| time offset, ms/estimate | {o['ours']['ms_per_estimate']:.1f} | "
        f"{o['scipy_correlate']['ms_per_estimate']:.1f} | "
        f"{o['scipy_correlate']['ms_per_estimate'] / o['ours']['ms_per_estimate']:.2f} |"
    )
    print()
    lcs = result["accuracy"]["lidar_camera"]

    def err(r: dict, key: str) -> str:
        if r[key + "translation_cm"] is None:
            return f"failed: {r[key + 'error'][:70]}"
        return (
            f"{r[key + 'translation_cm']:.2f} cm, {r[key + 'rotation_deg']:.3f}° ({r[key + 'poses']} poses)"
        )

    for r in lcs:
        print(
            f"LiDAR→camera seed {r['seed']}: {err(r, '')}; "
            f"without the range model {err(r, 'no_range_model_')}"
        )
    solved = [r for r in lcs if r["translation_cm"] is not None]
    print(
        f"LiDAR→camera median over {len(solved)} seeds: "
        f"{np.median([r['translation_cm'] for r in solved]):.2f} cm, "
        f"{np.median([r['rotation_deg'] for r in solved]):.3f}°"
    )
    for r in result["accuracy"]["radar_lidar"]:
        print(
            f"radar→LiDAR seed {r['seed']}: dx {r['dx_cm']:.1f} cm, dy {r['dy_cm']:.1f} cm, "
            f"dyaw {r['dyaw_deg']:.3f}°"
        )
    print(f"wall {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
