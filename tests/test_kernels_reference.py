"""The numpy references of the CUDA kernels (edgefuse/runtime/kernel_refs.py) against obviously-correct Python
loops on small inputs, against the CPU voxelizer, and against the torch model's layers they stand for."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from edgefuse.runtime.kernel_refs import (
    KernelInputError,
    camera_lift_ref,
    fold_conv_bn,
    gated_fusion_ref,
    grid_shape,
    pillar_scatter_ref,
    pillar_voxelize_ref,
)

f32 = np.float32
HAS_TORCH = importlib.util.find_spec("torch") is not None

# ---------------------------------------------------------------- 1. voxelization

LO, HI, SIZE = (-4.0, -3.0, -2.0), (4.0, 3.0, 2.0), (0.5, 0.75)


def voxelize_loop(points, lo, hi, size, max_pillars, max_points):
    """The rule of edgefuse/tensors.py spelled out with dicts and lists (float32 scalars for the cell)."""
    nx = int(round((hi[0] - lo[0]) / size[0]))
    ny = int(round((hi[1] - lo[1]) / size[1]))
    members: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        inside = all(f32(lo[a]) <= p[a] < f32(hi[a]) for a in range(3))  # NaN compares False
        if not inside:
            continue
        ix = min(int((p[0] - f32(lo[0])) / f32(size[0])), nx - 1)
        iy = min(int((p[1] - f32(lo[1])) / f32(size[1])), ny - 1)
        members.setdefault(iy * nx + ix, []).append(i)
    ranked = sorted(members, key=lambda cell: (-len(members[cell]), cell))[:max_pillars]
    F = points.shape[1]
    out = np.zeros((max_pillars, max_points, F), f32)
    coords = np.zeros((max_pillars, 2), np.int32)
    counts = np.zeros(max_pillars, np.int32)
    for j, cell in enumerate(ranked):
        coords[j] = (cell // nx, cell % nx)
        kept = members[cell][:max_points]
        counts[j] = len(kept)
        for r, i in enumerate(kept):
            out[j, r] = points[i]
    return out, coords, counts, len(ranked)


def awkward_points(seed: int, n: int = 600) -> np.ndarray:
    """Clustered points (pillar/point overflow, count ties), grid-boundary values, NaN/inf, out of range."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform((-5, -4, -3), (5, 4, 3), (12, 3))
    pts = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.4, (n, 3))
    pts = np.c_[pts, rng.uniform(0, 1, (n, 2))].astype(f32)
    special = [
        (LO[0], LO[1], 0.0), (np.nextafter(f32(HI[0]), f32(0)), 0.0, 0.0), (HI[0], 0.0, 0.0),
        (0.0, HI[1], 0.0), (0.0, 0.0, HI[2]), (0.0, 0.0, LO[2]), (np.nan, 0.0, 0.0), (0.0, np.inf, 0.0),
        (0.0, 0.0, -np.inf), (0.5, 0.75, 0.0), (0.49999997, 0.0, 0.0),
    ]  # fmt: skip
    for k, s in enumerate(special):
        pts[k * 7, :3] = s
    return pts


@pytest.mark.parametrize("seed,max_pillars,max_points", [(0, 10, 4), (1, 200, 64), (2, 1, 1), (3, 37, 3)])
def test_voxelize_reference_matches_loop_and_cpu_voxelizer(seed, max_pillars, max_points):
    pts = awkward_points(seed)
    want = voxelize_loop(pts, LO, HI, SIZE, max_pillars, max_points)
    got = pillar_voxelize_ref(pts, LO, HI, SIZE, max_pillars, max_points)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    assert got[0].dtype == np.float32 and got[1].dtype == np.int32 and got[2].dtype == np.int32
    if importlib.util.find_spec("numba") is not None and importlib.util.find_spec("cv2") is not None:
        from edgefuse.tensors import PillarVoxelizer

        cpu = PillarVoxelizer((LO[0], HI[0]), (LO[1], HI[1]), (LO[2], HI[2]), SIZE, max_pillars, max_points)(
            pts
        )
        for c, g in zip((cpu.points, cpu.coords, cpu.counts, cpu.num_pillars), got, strict=True):
            np.testing.assert_array_equal(g, c)


def test_voxelize_overflow_rule_by_hand():
    # cell (0, 0) gets 3 points, cell (0, 1) 3 points, cell (1, 0) 1 point: ties by linear index
    pts = np.array(
        [[-3.9, -2.9, 0, 1], [-3.4, -2.9, 0, 2], [-3.9, -2.8, 0, 3], [-3.3, -2.9, 0, 4],
         [-3.9, -2.1, 0, 5], [-3.8, -2.7, 0, 6], [-3.2, -2.5, 0, 7]], f32,
    )  # fmt: skip
    out, coords, counts, n = pillar_voxelize_ref(pts, LO, HI, SIZE, max_pillars=2, max_points=2)
    assert n == 2
    assert coords.tolist() == [[0, 0], [0, 1]]  # (1, 0) has one point: dropped by max_pillars
    assert counts.tolist() == [2, 2]
    assert out[0, :, 3].tolist() == [1, 3] and out[1, :, 3].tolist() == [2, 4]  # input order, first two


def test_voxelize_empty_and_bad_input():
    out, coords, counts, n = pillar_voxelize_ref(np.zeros((0, 4), f32), LO, HI, SIZE, 5, 3)
    assert n == 0 and not out.any() and not coords.any() and not counts.any() and out.shape == (5, 3, 4)
    with pytest.raises(KernelInputError, match="points"):
        pillar_voxelize_ref(np.zeros((4, 2), f32), LO, HI, SIZE, 5, 3)
    assert grid_shape(LO, HI, SIZE) == (8, 16)


# ---------------------------------------------------------------- 2. scatter


def scatter_loop(feats_pc, coords, counts, ny, nx):
    bev = np.zeros((feats_pc.shape[1], ny, nx), f32)
    for p in range(feats_pc.shape[0]):
        iy, ix = coords[p]
        if counts[p] > 0 and 0 <= iy < ny and 0 <= ix < nx:
            bev[:, iy, ix] = feats_pc[p]  # sequential: the last pillar written wins
    return bev


def test_scatter_reference_matches_loop_with_duplicates_and_padding():
    rng = np.random.default_rng(4)
    P, C, ny, nx = 60, 5, 6, 7
    feats = rng.normal(size=(P, C)).astype(f32)
    coords = np.c_[rng.integers(-1, ny + 1, P), rng.integers(-1, nx + 1, P)].astype(np.int32)
    counts = rng.integers(-1, 4, P).astype(np.int32)
    assert len({tuple(c) for c in coords}) < P  # duplicates present
    want = scatter_loop(feats, coords, counts, ny, nx)
    np.testing.assert_array_equal(pillar_scatter_ref(feats, coords, counts, ny, nx), want)
    np.testing.assert_array_equal(
        pillar_scatter_ref(np.ascontiguousarray(feats.T), coords, counts, ny, nx, channels_first=True), want
    )


def test_scatter_after_voxelization_places_every_pillar():
    pts = awkward_points(5)
    _, coords, counts, n = pillar_voxelize_ref(pts, LO, HI, SIZE, 50, 4)
    ny, nx = grid_shape(LO, HI, SIZE)
    feats = np.arange(50 * 2, dtype=f32).reshape(50, 2) + 1
    bev = pillar_scatter_ref(feats, coords, counts, ny, nx)
    assert np.count_nonzero(bev[0]) == n
    for j in range(n):
        assert bev[:, coords[j, 0], coords[j, 1]].tolist() == feats[j].tolist()


# ---------------------------------------------------------------- 3a. camera lift

GRID, ORIGIN, CELL, HEIGHTS, IMAGE = (10, 12), (-6.0, -5.0), 1.0, (-0.5, 0.0, 1.0), (24, 40)


def camera_rig(n_cameras: int = 2) -> np.ndarray:
    """Projections of cameras at (0, 0, 1.5) looking along +x and −x (base_link → pixels of IMAGE)."""
    K = np.array([[20.0, 0, 19.5], [0, 20.0, 11.5], [0, 0, 1]])
    R_fwd = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)  # base_link → optical
    R_back = R_fwd @ np.diag([-1.0, -1.0, 1.0])
    Ps = [K @ np.c_[R, -R @ np.array([0, 0, 1.5])] for R in (R_fwd, R_back)]
    return np.stack(Ps[:n_cameras]).astype(f32)


def bilinear_border(fmap, fx, fy):
    """Bilinear sample of (C, H, W) at feature pixel (fx, fy), coordinates clamped to the map."""
    C, H, W = fmap.shape
    fx = min(max(fx, f32(0)), f32(W - 1))
    fy = min(max(fy, f32(0)), f32(H - 1))
    x0, y0 = math.floor(fx), math.floor(fy)
    out = np.zeros(C, f32)
    for yy, wy in ((y0, f32(y0 + 1) - fy), (y0 + 1, fy - f32(y0))):
        for xx, wx in ((x0, f32(x0 + 1) - fx), (x0 + 1, fx - f32(x0))):
            if xx < W and yy < H:
                out += fmap[:, yy, xx] * (wx * wy)
    return out


def lift_loop(feats, P, cam_valid, grid, origin, cell, heights, image, min_depth=0.1):
    C = feats.shape[1]
    H, W = grid
    Hi, Wi = f32(image[0]), f32(image[1])
    Hf, Wf = f32(feats.shape[2]), f32(feats.shape[3])
    out = np.zeros((C, H, W), f32)
    for iy in range(H):
        for ix in range(W):
            x = f32(origin[0]) + (f32(ix) + f32(0.5)) * f32(cell)
            y = f32(origin[1]) + (f32(iy) + f32(0.5)) * f32(cell)
            total, n = np.zeros(C, f32), 0
            for k in range(len(P)):
                for z in heights:
                    u_, v_, d = (
                        ((P[k, r, 0] * x + P[k, r, 1] * y) + P[k, r, 2] * f32(z)) + P[k, r, 3]
                        for r in range(3)
                    )
                    if not cam_valid[k] or not d > f32(min_depth):
                        continue
                    u, v = u_ / d, v_ / d
                    if not (0 <= u <= Wi - 1 and 0 <= v <= Hi - 1):
                        continue
                    gx = (u + f32(0.5)) / Wi * f32(2) - f32(1)  # grid_sample's normalized coordinates
                    gy = (v + f32(0.5)) / Hi * f32(2) - f32(1)
                    fx = ((gx + f32(1)) * Wf - f32(1)) / f32(2)
                    fy = ((gy + f32(1)) * Hf - f32(1)) / f32(2)
                    total += bilinear_border(feats[k], fx, fy)
                    n += 1
            out[:, iy, ix] = total / f32(max(n, 1))
    return out


def test_camera_lift_reference_matches_loop():
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(2, 3, 6, 10)).astype(f32)
    P = camera_rig(2)
    for valid in ([1, 1], [0, 1], [0, 0]):
        want = lift_loop(feats, P, valid, GRID, ORIGIN, CELL, HEIGHTS, IMAGE)
        got = camera_lift_ref(feats, P, valid, GRID, ORIGIN, CELL, HEIGHTS, IMAGE)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(got) == 0  # no valid camera → zeros
    seen = np.count_nonzero(camera_lift_ref(feats, P, [1, 1], GRID, ORIGIN, CELL, HEIGHTS, IMAGE)[0])
    assert 0 < seen < GRID[0] * GRID[1]  # some cells seen, some not (behind/outside both cameras)


def test_camera_lift_linear_feature_map_is_sampled_exactly():
    """A feature map linear in the feature pixel (a·fx + b·fy) is reproduced exactly by bilinear sampling:
    a seen cell's value is the mean of a·fx + b·fy over its samples, fx = (u + 0.5)·Wf/Wi − 0.5 computed
    here in float64 from the projection."""
    Hf, Wf = 6, 10
    fy_grid, fx_grid = np.mgrid[0:Hf, 0:Wf].astype(np.float64)
    fmap = np.stack([0.3 * fx_grid + 0.7 * fy_grid, np.ones_like(fx_grid)])[None].astype(f32)
    P = camera_rig(1)
    got = camera_lift_ref(fmap, P, [1], GRID, ORIGIN, CELL, HEIGHTS, IMAGE)
    Hi, Wi = IMAGE
    for iy in range(GRID[0]):
        for ix in range(GRID[1]):
            vals = []
            for z in HEIGHTS:
                X = np.array([ORIGIN[0] + (ix + 0.5) * CELL, ORIGIN[1] + (iy + 0.5) * CELL, z, 1.0])
                u_, v_, d = P[0].astype(np.float64) @ X
                if d <= 0.1 or not (0 <= u_ / d <= Wi - 1 and 0 <= v_ / d <= Hi - 1):
                    continue
                fx = min(max((u_ / d + 0.5) * Wf / Wi - 0.5, 0), Wf - 1)
                fy = min(max((v_ / d + 0.5) * Hf / Hi - 0.5, 0), Hf - 1)
                vals.append(0.3 * fx + 0.7 * fy)
            want = np.mean(vals) if vals else 0.0
            assert got[0, iy, ix] == pytest.approx(want, abs=1e-4)
            assert got[1, iy, ix] == pytest.approx(1.0 if vals else 0.0, abs=1e-6)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed: no model layer to compare with")
def test_camera_lift_reference_matches_model_camera_lift():
    import torch

    from edgefuse.model.encoders import CameraLift

    rng = np.random.default_rng(7)
    feats = rng.normal(size=(2, 4, 6, 10)).astype(f32)
    P = camera_rig(2)
    lift = CameraLift(ORIGIN, CELL, GRID, HEIGHTS, IMAGE)
    with torch.no_grad():
        want = lift(torch.from_numpy(feats), torch.from_numpy(P)[None], torch.tensor([[1, 1]]))[0].numpy()
    got = camera_lift_ref(feats, P, [1, 1], GRID, ORIGIN, CELL, HEIGHTS, IMAGE)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 3b. gated fusion


def fusion_loop(feats, valid, pw, pb, gw, gb, eps=1e-3):
    M = len(feats)
    H, W = feats[0].shape[1:]
    k = gw.shape[2]
    r = k // 2
    chan = [(m, c) for m in range(M) for c in range(feats[m].shape[0])]  # the concatenation order
    out = np.zeros((pw[0].shape[0], H, W))
    for y in range(H):
        for x in range(W):
            g = []
            for mo in range(M):
                s = float(gb[mo])
                for ci, (m, c) in enumerate(chan):
                    for dy in range(k):
                        for dx in range(k):
                            yy, xx = y + dy - r, x + dx - r
                            if 0 <= yy < H and 0 <= xx < W:
                                s += float(gw[mo, ci, dy, dx]) * float(feats[m][c, yy, xx]) * float(valid[m])
                g.append((1 / (1 + math.exp(-s)) + eps) * float(valid[mo]))
            total = max(sum(g), 1e-6)
            for o in range(out.shape[0]):
                for m in range(M):
                    proj = float(pb[m][o]) + sum(
                        float(pw[m][o, c]) * float(feats[m][c, y, x]) for c in range(feats[m].shape[0])
                    )
                    out[o, y, x] += g[m] / total * max(proj, 0.0)
    return out


def fusion_case(seed, chans=(3, 4, 2), cout=3, k=3, hw=(5, 6)):
    rng = np.random.default_rng(seed)
    feats = [rng.normal(size=(c, *hw)).astype(f32) for c in chans]
    pw = [rng.normal(size=(cout, c)).astype(f32) for c in chans]
    pb = [rng.normal(size=cout).astype(f32) for _ in chans]
    gw = rng.normal(0, 0.5, (len(chans), sum(chans), k, k)).astype(f32)
    gb = rng.normal(size=len(chans)).astype(f32)
    return feats, pw, pb, gw, gb


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("valid", [(1, 1, 1), (1, 0, 1), (0, 0, 1), (0, 0, 0)])
def test_gated_fusion_reference_matches_loop(k, valid):
    feats, pw, pb, gw, gb = fusion_case(8, k=k)
    v = np.array(valid, f32)
    want = fusion_loop(feats, v, pw, pb, gw, gb)
    got = gated_fusion_ref(feats, v, pw, pb, gw, gb)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if not any(valid):
        assert not got.any()


def test_gated_fusion_single_valid_modality_is_its_projection():
    feats, pw, pb, gw, gb = fusion_case(9)
    got = gated_fusion_ref(feats, np.array([0, 1, 0], f32), pw, pb, gw, gb)
    want = np.maximum(np.einsum("oc,chw->ohw", pw[1].astype(float), feats[1]) + pb[1][:, None, None], 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fold_conv_bn_matches_the_formula():
    rng = np.random.default_rng(10)
    w = rng.normal(size=(4, 3, 1, 1))
    gamma, beta, mean, var = (
        rng.normal(size=4),
        rng.normal(size=4),
        rng.normal(size=4),
        rng.uniform(0.5, 2, 4),
    )
    x = rng.normal(size=3)
    bn = gamma * ((w[:, :, 0, 0] @ x) - mean) / np.sqrt(var + 1e-5) + beta
    fw, fb = fold_conv_bn(w, gamma, beta, mean, var)
    np.testing.assert_allclose(fw @ x + fb, bn, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed: no model layer to compare with")
def test_gated_fusion_reference_matches_model_gated_fusion():
    import torch

    from edgefuse.model.fusion import GatedFusion

    torch.manual_seed(0)
    chans, cout = [4, 5, 3], 6
    gf = GatedFusion(chans, cout).eval()
    with torch.no_grad():
        for p in gf.proj:
            p[1].running_mean.normal_()
            p[1].running_var.uniform_(0.5, 2.0)
            p[1].weight.normal_()
            p[1].bias.normal_()
    rng = np.random.default_rng(11)
    feats = [rng.normal(size=(c, 8, 9)).astype(f32) for c in chans]
    folded = [
        fold_conv_bn(p[0].weight.detach().numpy(), p[1].weight.detach().numpy(), p[1].bias.detach().numpy(),
                     p[1].running_mean.numpy(), p[1].running_var.numpy(), p[1].eps)
        for p in gf.proj
    ]  # fmt: skip
    for valid in ([1, 1, 1], [1, 0, 1]):
        v = np.array(valid, f32)
        with torch.no_grad():
            want = gf([torch.from_numpy(f)[None] for f in feats], torch.from_numpy(v)[None])[0].numpy()
        got = gated_fusion_ref(
            feats, v, [w for w, _ in folded], [b for _, b in folded],
            gf.gate.weight.detach().numpy(), gf.gate.bias.detach().numpy(),
        )  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_array():
    with pytest.raises(KernelInputError, match="features"):
        camera_lift_ref(np.zeros((2, 3, 4), f32), camera_rig(1), [1], GRID, ORIGIN, CELL, HEIGHTS, IMAGE)
    with pytest.raises(KernelInputError, match="projection"):
        camera_lift_ref(
            np.zeros((2, 3, 4, 5), f32), camera_rig(1), [1, 1], GRID, ORIGIN, CELL, HEIGHTS, IMAGE
        )
    feats, pw, pb, gw, gb = fusion_case(12)
    with pytest.raises(KernelInputError, match="gate_weight"):
        gated_fusion_ref(feats, np.ones(3, f32), pw, pb, gw[:, :-1], gb)
    with pytest.raises(KernelInputError, match="coords"):
        pillar_scatter_ref(np.zeros((4, 2), f32), np.zeros((3, 2)), np.ones(4), 3, 3)
