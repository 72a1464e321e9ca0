"""GPU check of the custom CUDA kernels (edgefuse/deploy/plugins/) and the model on this machine's GPU.

    deploy/gpu_check.sh [--quick] [--out-dir docs] [--cpu-fallback]

1. builds the kernel library for the local GPU (CMake, EF_CUDA_ARCHITECTURES=native);
2. runs every kernel against its numpy reference (edgefuse/runtime/kernel_refs.py) on random inputs at the
   default model sizes: max |error| ≤ 1e-5 + 1e-5·|ref| (fp32), voxelization bit-exact; every kernel runs
   twice and must give bit-identical outputs (determinism);
3. times each kernel with CUDA events next to the torch implementation of the same op (the model's layers
   on the same GPU) in the same run;
4. runs the bundled model (edgefuse/runtime/weights/edge.pt) with torch fp32 and fp16 (autocast) when
   present; TensorRT when importable (otherwise noted);
5. writes docs/gpu-report.json and docs/gpu-report.md.

Needs python3 with numpy and torch (CUDA); cuda-python is used for the GpuVoxelizer check when present.
``--cpu-fallback`` runs everything up to the GPU boundary on the CPU, with the numpy reference in place of
each kernel (a plumbing test for machines without a GPU: the numbers it reports mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefuse.runtime import kernel_refs as R  # noqa: E402
from edgefuse.runtime import kernels as K  # noqa: E402

TOL_ABS, TOL_REL = 1e-5, 1e-5
f32 = np.float32


# ================================================================ random cases (default model sizes)


def sizes(quick: bool) -> dict:
    if quick:
        return dict(
            n_points=20_000,
            lo=(-25.6, -25.6, -3.0),
            hi=(25.6, 25.6, 5.0),
            pillar=(0.32, 0.32),
            P=3000,
            N=16,
            F=4,
            C_pillar=32,
            ncam=2,
            C_img=16,
            feat_hw=(22, 40),
            image_hw=(176, 320),
            fusion_hw=(80, 80),
            fusion_cell=0.64,
            chans=(16, 32, 16),
            cout=32,
        )
    # the defaults of TensorSpec / ModelConfig: 320×320 pillar grid, 160×160 fusion grid
    return dict(
        n_points=120_000,
        lo=(-51.2, -51.2, -3.0),
        hi=(51.2, 51.2, 5.0),
        pillar=(0.32, 0.32),
        P=12000,
        N=32,
        F=4,
        C_pillar=32,
        ncam=2,
        C_img=32,
        feat_hw=(44, 80),
        image_hw=(352, 640),
        fusion_hw=(160, 160),
        fusion_cell=0.64,
        chans=(32, 32, 16),
        cout=32,
    )


HEIGHTS = (0.5, 1.0, 1.5, 2.0)


def point_cloud(rng, s) -> np.ndarray:
    """A LiDAR-like cloud: rings around the origin, clutter clusters (pillar overflow), 1 % outside the
    grid, a few NaN/inf."""
    n = s["n_points"]
    r = np.abs(rng.normal(0, s["hi"][0] / 2.5, n)) + 2.0
    a = rng.uniform(-np.pi, np.pi, n)
    pts = np.c_[r * np.cos(a), r * np.sin(a), rng.uniform(-2.5, 3.0, n), rng.uniform(0, 1, n)]
    m = n // 10
    pts[:m, :2] = rng.normal(0, 0.1, (m, 2)) + rng.uniform(-10, 10, (1, 2))  # one dense cluster
    pts[m : m + n // 100, 0] += 2 * s["hi"][0]
    pts[-5:, 0] = [np.nan, np.inf, -np.inf, np.nan, 1e30]
    return pts[:, : s["F"]].astype(f32)


def projections(ncam: int, image_hw) -> np.ndarray:
    """Cameras at (0, 0, 1.6) m looking along yaw 0, 180°, 90°, … (base_link → pixels of image_hw)."""
    H, W = image_hw
    K_ = np.array([[W / 2, 0, W / 2 - 0.5], [0, W / 2, H / 2 - 0.5], [0, 0, 1]])
    out = []
    for k in range(ncam):
        yaw = [0, np.pi, np.pi / 2, -np.pi / 2][k % 4]
        c, s_ = np.cos(yaw), np.sin(yaw)
        R_bc = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]]) @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
        R_cb = R_bc.T
        out.append(K_ @ np.c_[R_cb, -R_cb @ np.array([0, 0, 1.6])])
    return np.stack(out).astype(f32)


# ================================================================ device plumbing


class Device:
    """torch CUDA tensors + CUDA-event timing, or (``cpu_fallback``) numpy in place of the kernels."""

    def __init__(self, cpu_fallback: bool):
        import torch

        self.torch = torch
        self.cpu = cpu_fallback
        self.dev = torch.device("cpu" if cpu_fallback else "cuda")

    def put(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=dtype, device=self.dev)

    @property
    def stream(self) -> int:
        return 0 if self.cpu else self.torch.cuda.current_stream().cuda_stream

    def sync(self):
        if not self.cpu:
            self.torch.cuda.synchronize()

    def time_ms(self, fn, iters: int, warmup: int = 3) -> dict:
        for _ in range(min(warmup, iters)):
            fn()
        self.sync()
        times = []
        for _ in range(iters):
            if self.cpu:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            else:
                a = self.torch.cuda.Event(enable_timing=True)
                b = self.torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
        t = np.array(times)
        return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "iters": iters}


def compare(out: np.ndarray, ref: np.ndarray, exact: bool = False) -> dict:
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        return {"ok": False, "error": f"shape {out.shape} != reference {ref.shape}"}
    if exact:
        return {"ok": bool(np.array_equal(out, ref, equal_nan=True)), "mismatches": int((out != ref).sum())}
    err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    bound = TOL_ABS + TOL_REL * np.abs(ref.astype(np.float64))
    return {
        "ok": bool(np.all(err <= bound)),
        "max_abs_error": float(err.max(initial=0.0)),
        "worst_error_over_bound": float((err / bound).max(initial=0.0)),
    }


# ================================================================ the checks


def check_voxelize(D, k, s, rng, iters) -> dict:
    torch = D.torch
    pts = point_cloud(rng, s)
    ref = R.pillar_voxelize_ref(pts, s["lo"], s["hi"], s["pillar"], s["P"], s["N"])
    res = {"kernel": "ef_pillar_voxelize", "points": len(pts), "pillars": f"{s['P']}×{s['N']}×{s['F']}"}
    if D.cpu:
        launch = lambda: R.pillar_voxelize_ref(pts, s["lo"], s["hi"], s["pillar"], s["P"], s["N"])  # noqa: E731
        outs = [launch() for _ in range(2)]
    else:
        params = K.voxelize_params(s["lo"], s["hi"], s["pillar"], s["P"], s["N"], s["F"])
        ws_size = k.voxelize_workspace_size(params, len(pts))
        d_pts = D.put(pts)
        ws = D.empty((ws_size,), torch.uint8)
        o_pts = D.empty((s["P"], s["N"], s["F"]), torch.float32)
        o_coords = D.empty((s["P"], 2), torch.int32)
        o_counts = D.empty((s["P"],), torch.int32)
        o_num = D.empty((1,), torch.int32)

        def launch():
            k.voxelize(params, d_pts, len(pts), o_pts, o_coords, o_counts, o_num, ws, ws_size, D.stream)

        def fetch():
            D.sync()
            return tuple(t.cpu().numpy().copy() for t in (o_pts, o_coords, o_counts)) + (int(o_num.item()),)

        outs = []
        for _ in range(2):
            o_pts.fill_(7.0)  # the kernel must write every element
            o_coords.fill_(7)
            o_counts.fill_(7)
            launch()
            outs.append(fetch())
        res["workspace_bytes"] = ws_size
    names = ("points", "coords", "counts", "num_pillars")
    res["checks"] = {
        n: compare(np.asarray(o), np.asarray(r), exact=True)
        for n, o, r in zip(names, outs[0], ref, strict=True)
    }
    res["deterministic"] = all(np.array_equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))
    res["ok"] = all(c["ok"] for c in res["checks"].values()) and res["deterministic"]
    res["time"] = D.time_ms(launch, iters)
    # side by side: the CPU voxelizer of the runtime (numba) when importable, else the numpy reference
    try:
        from edgefuse.tensors import PillarVoxelizer

        vox = PillarVoxelizer(
            (s["lo"][0], s["hi"][0]),
            (s["lo"][1], s["hi"][1]),
            (s["lo"][2], s["hi"][2]),
            s["pillar"],
            s["P"],
            s["N"],
        )
        vox(pts)
        cpu_name, cpu_fn = "edgefuse.tensors.PillarVoxelizer (numba, CPU)", lambda: vox(pts)
    except Exception as e:  # noqa: BLE001 - cv2/numba missing on the GPU machine
        res["cpu_voxelizer_note"] = f"edgefuse.tensors not importable here ({type(e).__name__}: {e})"
        cpu_name = "numpy reference (CPU)"
        cpu_fn = lambda: R.pillar_voxelize_ref(pts, s["lo"], s["hi"], s["pillar"], s["P"], s["N"])  # noqa: E731
    t0 = time.perf_counter()
    for _ in range(5):
        cpu_fn()
    res["baseline"] = {"name": cpu_name, "median_ms": (time.perf_counter() - t0) / 5 * 1e3}
    try:  # the same kernel through cuda-python buffers (the pre-engine path of the runtime)
        if D.cpu:
            raise ImportError("cpu fallback")
        gv = K.GpuVoxelizer(
            (s["lo"][0], s["hi"][0]),
            (s["lo"][1], s["hi"][1]),
            (s["lo"][2], s["hi"][2]),
            s["pillar"],
            s["P"],
            s["N"],
            s["F"],
            max_input_points=len(pts) // 2,
            library=k,
        )
        got = gv(pts)  # also exercises the buffer growth
        t = []
        for _ in range(10):
            t0 = time.perf_counter()
            gv(pts)
            t.append((time.perf_counter() - t0) * 1e3)
        gv.close()
        res["gpu_voxelizer"] = {
            "ok": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, ref, strict=True)),
            "runtime": type(gv.cuda).__name__,
            "end_to_end_median_ms": float(np.median(t)),  # host points in → host pillars out, copies included
        }
        res["ok"] = res["ok"] and res["gpu_voxelizer"]["ok"]
    except (ImportError, K.KernelLibraryError) as e:
        res["gpu_voxelizer"] = {"skipped": f"{type(e).__name__}: {e}"}
    except Exception as e:  # noqa: BLE001 - a broken GpuVoxelizer is a failure, but keep the kernel's result
        res["gpu_voxelizer"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        res["ok"] = False
    return res


def check_scatter(D, k, s, rng, iters) -> dict:
    torch = D.torch
    ny, nx = R.grid_shape(s["lo"], s["hi"], s["pillar"])
    P, C = s["P"], s["C_pillar"]
    cells = rng.choice(ny * nx, P, replace=False)
    coords = np.c_[cells // nx, cells % nx].astype(np.int32)
    counts = rng.integers(1, s["N"] + 1, P).astype(np.int32)
    counts[-P // 4 :] = 0  # padding rows
    coords[-P // 4 :] = 0
    coords[:8] = coords[8:16]  # duplicates: last wins
    feats_cp = rng.normal(size=(C, P)).astype(f32)  # the torch PillarEncoder layout (C, P)
    ref = R.pillar_scatter_ref(feats_cp, coords, counts, ny, nx, channels_first=True)
    res = {"kernel": "ef_pillar_scatter", "pillars": P, "channels": C, "grid": [ny, nx]}
    d_f, d_c, d_n = D.put(feats_cp), D.put(coords), D.put(counts)
    if D.cpu:
        launch = lambda: R.pillar_scatter_ref(feats_cp, coords, counts, ny, nx, True)  # noqa: E731
        outs = [launch(), launch()]
    else:
        params = K.EfScatterParams(P, C, nx, ny, 1)
        ws_size = k.scatter_workspace_size(params)
        ws = D.empty((ws_size,), torch.uint8)
        bev = D.empty((C, ny, nx), torch.float32)

        def launch():
            k.scatter(params, d_f, d_c, d_n, bev, ws, ws_size, D.stream)

        outs = []
        for _ in range(2):
            bev.fill_(7.0)
            launch()
            D.sync()
            outs.append(bev.cpu().numpy().copy())
    res["check"] = compare(outs[0], ref, exact=True)
    res["deterministic"] = bool(np.array_equal(outs[0], outs[1]))
    res["ok"] = res["check"]["ok"] and res["deterministic"]
    res["time"] = D.time_ms(launch, iters)

    # side by side: the model's scatter (PillarEncoder's canvas.scatter) in torch on the same device
    flat = (d_c[:, 0].long() * nx + d_c[:, 1].long()).where(d_n > 0, torch.full_like(d_n, ny * nx).long())
    idx = flat.view(1, P).expand(C, P)

    def torch_scatter():
        canvas = torch.zeros(C, ny * nx + 1, device=D.dev)
        return canvas.scatter(1, idx, d_f)[:, : ny * nx].reshape(C, ny, nx)

    res["baseline"] = {"name": "torch scatter (the model's PillarEncoder)", **D.time_ms(torch_scatter, iters)}
    return res


def check_lift(D, k, s, rng, iters) -> dict:
    torch = D.torch
    ncam, C = s["ncam"], s["C_img"]
    Hf, Wf = s["feat_hw"]
    Hi, Wi = s["image_hw"]
    H, W = s["fusion_hw"]
    origin = (s["lo"][0], s["lo"][1])
    feats = rng.normal(size=(ncam, C, Hf, Wf)).astype(f32)
    P = projections(ncam, s["image_hw"])
    cam_valid = np.ones(ncam, f32)
    cam_valid[-1] = 0 if ncam > 1 else 1
    args = ((H, W), origin, s["fusion_cell"], HEIGHTS, (Hi, Wi))
    ref = R.camera_lift_ref(feats, P, cam_valid, *args)
    res = {
        "kernel": "ef_camera_lift",
        "cameras": ncam,
        "features": [C, Hf, Wf],
        "grid": [H, W],
        "heights": len(HEIGHTS),
        "seen_cells": float((ref[0] != 0).mean()),
    }
    d_f, d_p, d_v = D.put(feats), D.put(P), D.put(cam_valid)
    if D.cpu:
        launch = lambda: R.camera_lift_ref(feats, P, cam_valid, *args)  # noqa: E731
        outs = [launch(), launch()]
    else:
        params = K.camera_lift_params((H, W), origin, s["fusion_cell"], ncam, C, (Hf, Wf), (Hi, Wi), HEIGHTS)
        bev = D.empty((C, H, W), torch.float32)

        def launch():
            k.camera_lift(params, d_f, d_p, d_v, bev, D.stream)

        outs = []
        for _ in range(2):
            bev.fill_(7.0)
            launch()
            D.sync()
            outs.append(bev.cpu().numpy().copy())
    res["check"] = compare(outs[0], ref)
    res["deterministic"] = bool(np.array_equal(outs[0], outs[1]))
    res["ok"] = res["check"]["ok"] and res["deterministic"]
    res["time"] = D.time_ms(launch, iters)
    try:
        from edgefuse.model.encoders import CameraLift

        lift = CameraLift(origin, s["fusion_cell"], (H, W), HEIGHTS, (Hi, Wi)).to(D.dev)
        pv, cv = d_p[None], d_v[None]
        with torch.no_grad():
            res["model_max_abs_diff"] = float(
                (lift(d_f, pv, cv)[0].cpu() - torch.from_numpy(ref)).abs().max()
            )

            def model_lift():
                with torch.no_grad():
                    return lift(d_f, pv, cv)

            res["baseline"] = {"name": "torch CameraLift (the model)", **D.time_ms(model_lift, iters)}
    except ImportError as e:
        res["baseline"] = {"skipped": f"edgefuse.model not importable: {e}"}
    return res


def check_fusion(D, k, s, rng, iters) -> dict:
    torch = D.torch
    H, W = s["fusion_hw"]
    chans, cout = list(s["chans"]), s["cout"]
    M = len(chans)
    feats = [np.maximum(rng.normal(size=(c, H, W)), 0).astype(f32) for c in chans]  # ReLU-like inputs
    pw = [(rng.normal(size=(cout, c)) / np.sqrt(c)).astype(f32) for c in chans]
    pb = [rng.normal(0, 0.1, cout).astype(f32) for _ in chans]
    gw = (rng.normal(size=(M, sum(chans), 3, 3)) / np.sqrt(9 * sum(chans))).astype(f32)
    gb = rng.normal(0, 0.1, M).astype(f32)
    res = {
        "kernel": "ef_gated_fusion",
        "channels": chans,
        "out_channels": cout,
        "grid": [H, W],
        "gate_kernel": 3,
    }
    d_feats = [D.put(f) for f in feats]
    d_pw, d_pb = [D.put(w) for w in pw], [D.put(b) for b in pb]
    d_gw, d_gb = D.put(gw), D.put(gb)
    checks, times = {}, None
    for valid in ([1, 1, 1], [1, 0, 1]):
        v = np.array(valid[:M], f32)
        ref = R.gated_fusion_ref(feats, v, pw, pb, gw, gb)
        d_v = D.put(v)
        if D.cpu:
            launch = lambda v=v: R.gated_fusion_ref(feats, v, pw, pb, gw, gb)  # noqa: E731
            outs = [launch(), launch()]
        else:
            params = K.gated_fusion_params((H, W), chans, cout, 3)
            ws_size = k.gated_fusion_workspace_size(params)
            ws = D.empty((ws_size,), torch.uint8)
            out = D.empty((cout, H, W), torch.float32)

            def launch(params=params, d_v=d_v, ws=ws, ws_size=ws_size, out=out):
                k.gated_fusion(params, d_feats, d_v, d_pw, d_pb, d_gw, d_gb, out, ws, ws_size, D.stream)

            outs = []
            for _ in range(2):
                out.fill_(7.0)
                launch()
                D.sync()
                outs.append(out.cpu().numpy().copy())
        c = compare(outs[0], ref)
        c["deterministic"] = bool(np.array_equal(outs[0], outs[1]))
        checks["valid=" + "".join(map(str, valid[:M]))] = c
        if times is None:
            times = D.time_ms(launch, iters)
    res["checks"] = checks
    res["ok"] = all(c["ok"] and c["deterministic"] for c in checks.values())
    res["time"] = times
    try:
        from edgefuse.model.fusion import GatedFusion

        gf = GatedFusion(chans, cout).to(D.dev).eval()
        tv = torch.ones(1, M, device=D.dev)
        tf = [f[None] for f in d_feats]

        def model_fusion():
            with torch.no_grad():
                return gf(tf, tv)

        res["baseline"] = {
            "name": "torch GatedFusion (the model, BN unfolded)",
            **D.time_ms(model_fusion, iters),
        }
    except ImportError as e:
        res["baseline"] = {"skipped": f"edgefuse.model not importable: {e}"}
    return res


BUNDLED_MODEL = ROOT / "edgefuse" / "model" / "weights" / "edge.pt"


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def whole_path(D, k, net, x, radar_pts, t, lo, hi, iters) -> dict:
    """One frame on the GPU end to end, per precision: the raw LiDAR sweep (100k points) and radar points
    copied to the GPU, voxelized there by ``ef_pillar_voxelize`` (LiDAR and radar), the model with its
    decode (boxes, scores, labels: ``forward_decoded``), the detections copied back. CUDA events around
    the whole; the camera tensors are already on the GPU (their decode + undistort is the CPU's)."""
    torch = D.torch
    rng = np.random.default_rng(9)
    F = len(t["lidar_features"])
    pts = point_cloud(rng, {"n_points": 100_000, "hi": hi, "F": F})
    P, N = t["max_pillars"], t["max_points_per_pillar"]
    Rp, Rn, G = t["radar_max_pillars"], t["radar_max_points_per_pillar"], radar_pts.shape[1]

    def vox_buffers(n_points, pillars, per, feats):
        params = K.voxelize_params(lo, hi, t["pillar_size"], pillars, per, feats)
        size = k.voxelize_workspace_size(params, n_points)
        return params, size, D.empty((size,), torch.uint8), D.empty((pillars, per, feats), torch.float32), \
            D.empty((pillars, 2), torch.int32), D.empty((pillars,), torch.int32), D.empty((1,), torch.int32)

    lv = vox_buffers(len(pts), P, N, F)
    rv = vox_buffers(len(radar_pts), Rp, Rn, G)
    host_l, host_r = torch.from_numpy(pts).pin_memory(), torch.from_numpy(radar_pts).pin_memory()

    def frame():
        dl, dr = host_l.to(D.dev, non_blocking=True), host_r.to(D.dev, non_blocking=True)
        outs = []
        for d, (params, size, ws, o_p, o_c, o_n, o_num), n in ((dl, lv, len(pts)), (dr, rv, len(radar_pts))):
            k.voxelize(params, d, n, o_p, o_c, o_n, o_num, ws, size, D.stream)
            outs.append((o_p[None], o_c[None], o_n[None]))
        (lp, lc, ln), (rp, rc, rn) = outs
        b, sc, lab = net.forward_decoded(x[0], x[1], x[2], lp, lc, ln, x[6], rp, rc, rn, x[10])
        return b.cpu(), sc.cpu(), lab.cpu()

    res = {"lidar_points": len(pts), "radar_points": len(radar_pts)}
    with torch.no_grad():
        res["fp32"] = D.time_ms(frame, iters)
        with torch.autocast("cuda", dtype=torch.float16):
            res["fp16"] = D.time_ms(frame, iters)
    return res


def check_model(D, iters, ckpt: Path = BUNDLED_MODEL, k=None) -> dict:
    if not ckpt.is_file():
        return {"skipped": f"no model checkpoint at {_rel(ckpt)}"}
    torch = D.torch
    try:
        from edgefuse.model.checkpoint import load_model
    except ImportError as e:
        return {"skipped": f"edgefuse.model not importable: {e}"}
    net, manifest = load_model(ckpt)
    net = net.to(D.dev).eval()
    t = manifest.tensor_spec
    rng = np.random.default_rng(5)
    ncam, (Hi, Wi) = len(t["cameras"]), t["image_size"]
    P, N, F = t["max_pillars"], t["max_points_per_pillar"], len(t["lidar_features"])
    R, M = t["radar_max_pillars"], t["radar_max_points_per_pillar"]
    G = len(t["radar_features"]) + 2 * len(t.get("radar_optional_features", ()))
    lo, hi = (
        (t["x_range"][0], t["y_range"][0], t["z_range"][0]),
        (t["x_range"][1], t["y_range"][1], t["z_range"][1]),
    )
    lp, lc, ln, _ = R.pillar_voxelize_ref(
        point_cloud(rng, {"n_points": 100_000, "hi": hi, "F": F}), lo, hi, t["pillar_size"], P, N
    )
    radar = np.c_[
        rng.uniform(lo[0], hi[0], (300, 1)),
        rng.uniform(lo[1], hi[1], (300, 1)),
        rng.normal(0, 1, (300, G - 2)),
    ].astype(f32)
    rp, rc, rn, _ = R.pillar_voxelize_ref(radar, lo, hi, t["pillar_size"], R, M)
    feed = [
        rng.normal(size=(1, ncam, 3, Hi, Wi)).astype(f32),
        projections(ncam, (Hi, Wi))[None],
        np.ones((1, ncam), np.uint8),
        lp[None],
        lc[None],
        ln[None],
        np.ones((1, 1), np.uint8),
        rp[None],
        rc[None],
        rn[None],
        np.ones((1, 1), np.uint8),
    ]
    x = [D.put(a) for a in feed]
    res = {"checkpoint": _rel(ckpt), "device": str(D.dev)}
    with torch.no_grad():
        b32, s32, _ = net.forward_decoded(*x)
        res["fp32"] = D.time_ms(lambda: net.forward_decoded(*x), iters)
        if D.cpu:
            res["fp16"] = {"skipped": "cpu fallback"}
        else:
            with torch.autocast("cuda", dtype=torch.float16):
                b16, s16, _ = net.forward_decoded(*x)
                res["fp16"] = D.time_ms(lambda: net.forward_decoded(*x), iters)
            res["fp16"]["max_score_diff_vs_fp32"] = float((s16.float() - s32).abs().max())
    res["whole_path"] = whole_path(D, k, net, x, radar, t, lo, hi, iters) if k is not None else {
        "skipped": "no kernel library (cpu fallback)"
    }
    try:
        import tensorrt  # noqa: F401

        res["tensorrt"] = {"skipped": "TensorRT is importable; engine timing is edgefuse build-engine's job"}
    except ImportError:
        res["tensorrt"] = {"skipped": "TensorRT is not installed on this machine"}
    return res


# ================================================================ report


def environment(D, lib_path) -> dict:
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": D.torch.__version__,
        "host": platform.node(),
        "cpu_fallback": D.cpu,
    }
    if not D.cpu:
        p = D.torch.cuda.get_device_properties(0)
        env.update(
            gpu=p.name,
            compute_capability=f"{p.major}.{p.minor}",
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            torch_cuda=D.torch.version.cuda,
        )
    nvcc = K.find_nvcc()
    if nvcc:
        out = (
            subprocess.run([str(nvcc), "--version"], capture_output=True, text=True)
            .stdout.strip()
            .splitlines()
        )
        release = [ln for ln in out if "release" in ln]  # "Cuda compilation tools, release 13.0, V13.0.88"
        env["nvcc"] = (release or out or [str(nvcc)])[-1]
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        env["driver"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    env["library"] = str(lib_path) if lib_path else None
    return env


def markdown(report: dict) -> str:
    e = report["environment"]
    lines = [
        "# GPU report",
        "",
        f"Generated by `deploy/gpu_check.sh{' --quick' if report['quick'] else ''}` on "
        f"{report['date']} ({report['elapsed_s']:.0f} s). "
        + (
            "**CPU fallback: the kernels were replaced by their numpy references — not a GPU result.**"
            if e["cpu_fallback"]
            else ""
        ),
        "",
        f"- GPU: {e.get('gpu', '—')} (sm_{e.get('compute_capability', '?').replace('.', '')}), "
        f"driver {e.get('driver', '—')}, torch {e['torch']} (CUDA {e.get('torch_cuda', '—')}), "
        f"{e.get('nvcc', 'no nvcc')}",
        f"- Tolerance: max |error| ≤ {TOL_ABS:g} + {TOL_REL:g}·|ref| (fp32); voxelization and scatter "
        "bit-exact; every kernel run twice, outputs compared bit for bit (determinism).",
        "",
        "## Kernels vs numpy reference",
        "",
        "| kernel | size | result | max abs error | deterministic | kernel median ms | baseline | "
        "baseline median ms | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["kernels"]:
        if "error" in r:
            lines.append(f"| {r['kernel']} | | **ERROR** {r['error']} | | | | | | |")
            continue
        errs = [c.get("max_abs_error") for c in r.get("checks", {}).values()] + [
            r.get("check", {}).get("max_abs_error")
        ]
        errs = [x for x in errs if x is not None]
        err = f"{max(errs):.2e}" if errs else "exact"
        det = r.get("deterministic", all(c.get("deterministic", True) for c in r.get("checks", {}).values()))
        size = {
            k: v
            for k, v in r.items()
            if k in ("points", "pillars", "channels", "grid", "cameras", "features")
        }
        b = r.get("baseline", {})
        bms = b.get("median_ms")
        kms = r["time"]["median_ms"]
        lines.append(
            f"| {r['kernel']} | {json.dumps(size, ensure_ascii=False)} | "
            f"{'PASS' if r['ok'] else '**FAIL**'} | {err} | {det} | "
            f"{kms:.3f} | {b.get('name', b.get('skipped', '—'))} | {f'{bms:.3f}' if bms else '—'} | "
            f"{f'{bms / kms:.1f}×' if bms and kms else '—'} |"
        )
    m = report["model"]
    for r in report["kernels"]:
        g = r.get("gpu_voxelizer", {})
        if "end_to_end_median_ms" in g:
            lines += [
                "",
                f"`GpuVoxelizer` ({g['runtime']}, host points → host pillars, copies included): "
                f"{g['end_to_end_median_ms']:.2f} ms median, {'matches' if g['ok'] else '**differs from**'} "
                "the reference. Kernel times above exclude host↔device copies.",
            ]
        elif g:
            lines += ["", f"`GpuVoxelizer`: {g.get('skipped') or g.get('error')}"]
    lines += ["", "## Model", ""]
    if "skipped" in m:
        lines.append(f"Skipped: {m['skipped']}.")
    else:
        lines.append(f"`{m['checkpoint']}` on {m['device']}, batch 1, median of CUDA-event timings:")
        lines.append("")
        lines.append(f"- torch fp32: {m['fp32']['median_ms']:.2f} ms")
        f16 = m["fp16"]
        lines.append(
            f"- torch fp16 (autocast): {f16['median_ms']:.2f} ms, "
            f"max score diff vs fp32 {f16['max_score_diff_vs_fp32']:.2e}"
            if "median_ms" in f16
            else f"- torch fp16: {f16['skipped']}"
        )
        lines.append(f"- TensorRT: {m['tensorrt']['skipped']}")
        w = m.get("whole_path", {})
        if "skipped" in w or not w:
            lines.append(f"- whole GPU path per frame: {w.get('skipped', 'not measured')}")
        else:
            lines.append(
                f"- whole GPU path per frame ({w['lidar_points']} LiDAR + {w['radar_points']} radar points → "
                f"H2D → `ef_pillar_voxelize` ×2 → model + decode → D2H): fp32 "
                f"{w['fp32']['median_ms']:.2f} ms (p90 {w['fp32']['p90_ms']:.2f}), fp16 "
                f"{w['fp16']['median_ms']:.2f} ms (p90 {w['fp16']['p90_ms']:.2f})"
            )
    lines += [
        "",
        f"Overall: **{'PASS' if report['ok'] else 'FAIL'}**. Raw numbers: `docs/gpu-report.json`.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs and fewer timing iterations")
    ap.add_argument("--cpu-fallback", action="store_true", help="numpy references in place of the kernels")
    ap.add_argument("--out-dir", default=str(ROOT / "docs"))
    ap.add_argument("--build-dir", default=None,
                    help="CMake build directory (default: edgefuse build-kernels' per-install cache dir)")
    ap.add_argument("--library", default=None, help="use this built library instead of building")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument(
        "--model", default=str(BUNDLED_MODEL), help="the .pt model to run (default: the bundled one)"
    )
    a = ap.parse_args(argv)
    t_start = time.time()
    D = Device(a.cpu_fallback)
    if not D.cpu and not D.torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU; use --cpu-fallback to test the plumbing", file=sys.stderr)
        return 2
    lib = None
    if not D.cpu:
        path = (
            Path(a.library) if a.library else K.build_library(a.build_dir, "native", jobs=os.cpu_count() or 2)
        )
        print(f"gpu_check: kernel library {path}", flush=True)
        lib = K.load_kernels(path)
    s = sizes(a.quick)
    iters = a.iters or (20 if a.quick else 100)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": a.quick, "sizes": s}
    report["environment"] = environment(D, lib.path if lib else None)
    report["kernels"] = []
    for name, fn in (
        ("ef_pillar_voxelize", check_voxelize),
        ("ef_pillar_scatter", check_scatter),
        ("ef_camera_lift", check_lift),
        ("ef_gated_fusion", check_fusion),
    ):
        t0 = time.time()
        try:
            r = fn(D, lib, s, np.random.default_rng(len(report["kernels"])), iters)
        except Exception as e:  # noqa: BLE001 - report it and go on with the next kernel
            r = {"kernel": name, "ok": False, "error": f"{type(e).__name__}: {e}"}
        r["wall_s"] = round(time.time() - t0, 2)
        print(f"gpu_check: {name}: {'PASS' if r['ok'] else 'FAIL'} ({r['wall_s']} s)", flush=True)
        report["kernels"].append(r)
    try:
        report["model"] = check_model(D, iters, Path(a.model), lib)
    except Exception as e:  # noqa: BLE001
        report["model"] = {"skipped": f"model run failed: {type(e).__name__}: {e}"}
    report["ok"] = all(r["ok"] for r in report["kernels"])
    report["elapsed_s"] = time.time() - t_start
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-report.json").write_text(json.dumps(report, indent=2, default=str, ensure_ascii=False) + "\n")
    (out / "gpu-report.md").write_text(markdown(report))
    print(
        f"gpu_check: {'PASS' if report['ok'] else 'FAIL'}; wrote {out / 'gpu-report.md'} and gpu-report.json"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
