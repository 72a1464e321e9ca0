"""Shapes, dtypes and behaviour of every network stage on small fixed-shape inputs."""

import cv2
import numpy as np
import pytest
import torch

from edgefuse.geometry import Transform, rpy_to_matrix
from edgefuse.model.config import ModelConfig
from edgefuse.model.encoders import CameraLift, ImageEncoder, PillarEncoder
from edgefuse.model.fusion import make_fusion
from edgefuse.model.network import INPUT_NAMES, FusionNet, NetGeometry

torch.manual_seed(0)
GEOM = NetGeometry((0.0, -8.0), 0.5, (32, 40), 6, 5, (64, 96), 1, 3)


def _inputs(B=2, P=50, N=4, Pr=10, Nr=3, seed=0):
    g = np.random.default_rng(seed)
    H, W = GEOM.grid_hw
    cells = g.choice(H * W, size=P, replace=False)
    coords = np.stack([cells // W, cells % W], -1).astype(np.int32)
    K = np.array([[60.0, 0, 47.5], [0, 60.0, 31.5], [0, 0, 1]])
    T = Transform(
        rpy_to_matrix(0, 0, 0) @ np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]), np.array([0, 0, 1.5])
    )
    proj = K @ T.inverse().matrix()[:3]
    return {
        "images": torch.randn(B, 1, 3, 64, 96),
        "projection": torch.from_numpy(np.repeat(proj[None, None], B, 0)).float(),
        "camera_valid": torch.ones(B, 1, dtype=torch.uint8),
        "lidar_pillars": torch.randn(B, P, N, 6),
        "lidar_coords": torch.from_numpy(np.repeat(coords[None], B, 0)),
        "lidar_counts": torch.from_numpy(g.integers(0, N + 1, (B, P)).astype(np.int32)),
        "lidar_valid": torch.ones(B, 1, dtype=torch.uint8),
        "radar_pillars": torch.randn(B, Pr, Nr, 5),
        "radar_coords": torch.from_numpy(np.repeat(coords[None, :Pr], B, 0)),
        "radar_counts": torch.from_numpy(g.integers(0, Nr + 1, (B, Pr)).astype(np.int32)),
        "radar_valid": torch.ones(B, 1, dtype=torch.uint8),
    }


def test_pillar_encoder_scatters_only_real_pillars_and_ignores_padding():
    enc = PillarEncoder(6, 8, GEOM.grid_hw, GEOM.origin_xy, GEOM.cell_m).eval()
    x = _inputs()
    out = enc(x["lidar_pillars"], x["lidar_coords"], x["lidar_counts"])
    assert out.shape == (2, 8, 32, 40) and out.dtype == torch.float32
    occupied = np.zeros((2, 32, 40), bool)
    for b in range(2):
        for p in range(50):
            if x["lidar_counts"][b, p] > 0:
                iy, ix = x["lidar_coords"][b, p].tolist()
                occupied[b, iy, ix] = True
    nonzero = (out.abs().sum(1) > 0).numpy()
    assert not (nonzero & ~occupied).any()  # nothing outside real pillars
    # padded points (index >= count) and padded pillars do not change the output
    pts = x["lidar_pillars"].clone()
    keep = torch.arange(4).view(1, 1, 4) < x["lidar_counts"].unsqueeze(-1)
    pts[~keep] = 1e3
    out2 = enc(pts, x["lidar_coords"], x["lidar_counts"])
    torch.testing.assert_close(out, out2)


def test_image_encoder_stride_8():
    out = ImageEncoder(16)(torch.randn(3, 3, 64, 96))
    assert out.shape == (3, 16, 8, 12) and out.dtype == torch.float32


def test_camera_lift_samples_where_opencv_projects():
    x = _inputs(B=1)
    Hi, Wi = GEOM.image_hw
    heights = (0.5, 1.5)
    lift = CameraLift(GEOM.origin_xy, GEOM.cell_m, GEOM.grid_hw, heights, GEOM.image_hw)
    # feature channel 0 = the input-image column u of each feature pixel's centre; channel 1 = 1
    hf, wf = Hi // 8, Wi // 8
    u_centre = (torch.arange(wf, dtype=torch.float32) + 0.5) * 8 - 0.5
    feat = torch.stack([u_centre.view(1, wf).expand(hf, wf), torch.ones(hf, wf)])[None]
    out = lift(feat, x["projection"], x["camera_valid"])
    assert out.shape == (1, 2, 32, 40)
    K = np.array([[60.0, 0, 47.5], [0, 60.0, 31.5], [0, 0, 1]])
    R_bc = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # base <- optical
    rvec, _ = cv2.Rodrigues(R_bc.T)
    tvec = -R_bc.T @ np.array([0, 0, 1.5])
    checked = 0
    for iy in range(0, 32, 3):
        for ix in range(0, 40, 3):
            cx, cy = 0.25 + ix * 0.5, -8 + 0.25 + iy * 0.5
            pts = np.array([[cx, cy, z] for z in heights])
            uv, _ = cv2.projectPoints(pts, rvec, tvec, K, None)
            uv = uv.reshape(-1, 2)
            depth = (R_bc.T @ (pts - [0, 0, 1.5]).T)[2]
            seen = (
                (depth > 0.1)
                & (uv[:, 0] >= 0)
                & (uv[:, 0] <= Wi - 1)
                & (uv[:, 1] >= 0)
                & (uv[:, 1] <= Hi - 1)
            )
            got = out[0, :, iy, ix].numpy()
            if not seen.any():
                assert got[1] == 0.0
                continue
            assert got[1] == pytest.approx(1.0, abs=1e-5)  # mean of ones over the samples that see it
            # u is linear in the feature column: bilinear sampling returns it exactly away from the edges
            inner = seen & (uv[:, 0] > 4) & (uv[:, 0] < Wi - 5)
            if inner.all():
                assert got[0] == pytest.approx(uv[:, 0].mean(), abs=1e-3)
                checked += 1
    assert checked > 10


@pytest.mark.parametrize("kind", ["concat", "weighted", "gated"])
def test_fusion_ignores_a_missing_modality(kind):
    fus = make_fusion(kind, [4, 6, 3], 8).eval()
    feats = [torch.randn(2, c, 10, 12) for c in (4, 6, 3)]
    valid = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    out = fus(feats, valid)
    assert out.shape == (2, 8, 10, 12)
    other = [feats[0], torch.randn(2, 6, 10, 12) * 5, feats[2]]
    out2 = fus(other, valid)
    torch.testing.assert_close(out[0], out2[0])  # frame 0: modality 1 missing, its features unused
    assert not torch.allclose(out[1], out2[1])  # frame 1: it is used
    if kind == "gated":
        g = fus.gates(feats, valid)
        assert torch.all(g[0, 1] == 0)
        torch.testing.assert_close(g.sum(1), torch.ones(2, 10, 12))
    if kind == "weighted":
        w = fus.weights(valid).detach()
        assert w[0, 1] == 0 and w[0].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_full_network_shapes(fusion):
    net = FusionNet(GEOM, ModelConfig(fusion=fusion, top_k=20)).eval()
    x = _inputs()
    with torch.no_grad():
        heat, reg = net(*[x[n] for n in INPUT_NAMES])
        boxes, scores, labels = net.forward_decoded(*[x[n] for n in INPUT_NAMES])
    assert net.head_hw == (16, 20) and net.head_cell_m == 1.0
    assert heat.shape == (2, 3, 16, 20) and reg.shape == (2, 10, 16, 20)
    assert boxes.shape == (2, 20, 9) and boxes.dtype == torch.float32
    assert scores.shape == (2, 20) and labels.shape == (2, 20) and labels.dtype == torch.int64
    assert torch.all(scores[:, :-1] >= scores[:, 1:])


def test_single_modality_network():
    net = FusionNet(GEOM, ModelConfig(modalities=("radar",), top_k=5)).eval()
    x = _inputs()
    boxes, scores, labels = net.forward_decoded(*[x[n] for n in INPUT_NAMES])
    assert boxes.shape == (2, 5, 9)
    assert not hasattr(net, "image_encoder") and not hasattr(net, "lidar_encoder")


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgefuse.model.network import OUTPUT_NAMES, DecodedNet

    net = FusionNet(GEOM, ModelConfig(top_k=10)).eval()
    x = _inputs(B=1)
    args = tuple(x[n] for n in INPUT_NAMES)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        DecodedNet(net),
        args,
        str(path),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: x[n].numpy() for n in INPUT_NAMES})
    with torch.no_grad():
        want = DecodedNet(net).eval()(*args)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-3, atol=1e-3)
