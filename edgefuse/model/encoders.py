"""Per-modality encoders to the BEV canvas (torch).

- :class:`PillarEncoder` — PointNet over the points of each pillar (linear + BN + ReLU, masked max)
  and a scatter of the pillar features to the BEV canvas; used for LiDAR and radar (radar features carry
  doppler and RCS as ordinary point features).
- :class:`ImageEncoder` — a small stride-8 CNN.
- :class:`CameraLift` — lifts image features to the BEV canvas: every BEV cell centre is projected at
  several heights through the camera projection matrix (a model input, so a re-calibrated rig needs no
  new weights or engine) and the image features are sampled there (bilinear) and averaged over the
  heights and cameras that see the cell.

Shapes: B batch, P pillars, N points per pillar, F point features, H×W the BEV grid.
"""

from __future__ import annotations

import torch
from torch import nn

from edgefuse.runtime.feed import MIN_CAMERA_DEPTH_M


def _bilinear(features: torch.Tensor, u: torch.Tensor, v: torch.Tensor, Hi: int, Wi: int) -> torch.Tensor:
    """Bilinear samples of ``features`` (M, C, hf, wf) at input-image pixels ``u``, ``v`` (M, S) → (M, C, S).

    Feature pixel j covers input pixels [j·s, (j+1)·s) with s = Wi / wf (likewise rows), so its centre
    is at input pixel (j + 0.5)·s − 0.5; samples beyond the outer centres take the edge value. Written
    with flat Gathers (not GridSample, which is slow in onnxruntime on CPU and clamps differently)."""
    M, C, hf, wf = features.shape
    fx = ((u + 0.5) * (wf / Wi) - 0.5).clamp(0.0, wf - 1.0)
    fy = ((v + 0.5) * (hf / Hi) - 0.5).clamp(0.0, hf - 1.0)
    x0 = torch.floor(fx)
    y0 = torch.floor(fy)
    ax = (fx - x0).unsqueeze(-1)
    ay = (fy - y0).unsqueeze(-1)
    x0i = x0.to(torch.int64)
    y0i = y0.to(torch.int64)
    x1i = torch.clamp(x0i + 1, max=wf - 1)
    y1i = torch.clamp(y0i + 1, max=hf - 1)
    base = (torch.arange(M, device=features.device) * (hf * wf)).view(M, 1)
    table = features.permute(0, 2, 3, 1).reshape(M * hf * wf, C)

    def at(yi, xi):
        return table[(base + yi * wf + xi).reshape(-1)].reshape(M, -1, C)

    top = at(y0i, x0i) * (1 - ax) + at(y0i, x1i) * ax
    bottom = at(y1i, x0i) * (1 - ax) + at(y1i, x1i) * ax
    return (top * (1 - ay) + bottom * ay).permute(0, 2, 1)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv k×k (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class PillarEncoder(nn.Module):
    """Pillars → BEV features.

    forward(points (B, P, N, F) float32 with base_link x y z first, coords (B, P, 2) int (iy, ix),
    counts (B, P) int) → (B, C, H, W) float32. Each point is decorated as in PointPillars with its offset
    from the mean of its pillar's points (3) and from the pillar centre (x, y), giving F + 5 features.
    Pillars with count 0 are padding: they scatter into a dummy cell that is cut off. Padded points
    inside a pillar (index ≥ count) are masked out of the mean and the max."""

    def __init__(
        self,
        in_features: int,
        channels: int,
        grid_hw: tuple[int, int],
        origin_xy: tuple[float, float],
        cell_m: float,
    ):
        super().__init__()
        self.h, self.w = int(grid_hw[0]), int(grid_hw[1])
        self.x0, self.y0, self.cell = float(origin_xy[0]), float(origin_xy[1]), float(cell_m)
        self.channels = channels
        self.linear = nn.Linear(in_features + 5, channels, bias=False)
        self.norm = nn.BatchNorm1d(channels)

    def pillar_features(
        self, points: torch.Tensor, coords: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """The PointNet half: points (B, P, N, F), coords (B, P, 2), counts (B, P) → (B, C, P) features
        per pillar (0 for padding); ``forward`` scatters them to the canvas."""
        B, P, N, _ = points.shape
        counts = counts.to(torch.int64)
        coords = coords.to(torch.int64)
        keep = (torch.arange(N, device=points.device).view(1, 1, N) < counts.unsqueeze(-1)).to(points.dtype)
        xyz = points[..., :3] * keep.unsqueeze(-1)
        mean = xyz.sum(2, keepdim=True) / counts.clamp(min=1).to(points.dtype).view(B, P, 1, 1)
        cx = self.x0 + (coords[..., 1].to(points.dtype) + 0.5) * self.cell  # (B, P)
        cy = self.y0 + (coords[..., 0].to(points.dtype) + 0.5) * self.cell
        centre = torch.stack([cx, cy], -1).unsqueeze(2)  # (B, P, 1, 2)
        dec = torch.cat([points, points[..., :3] - mean, points[..., :2] - centre], -1) * keep.unsqueeze(-1)
        x = self.norm(self.linear(dec).reshape(B * P * N, self.channels)).reshape(B, P, N, self.channels)
        x = torch.relu(x) * keep.unsqueeze(-1)  # ReLU output ≥ 0: masked points never win the max
        return x.amax(dim=2).transpose(1, 2)  # (B, C, P)

    def forward(self, points: torch.Tensor, coords: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        feats = self.pillar_features(points, coords, counts)
        B, P = counts.shape
        counts = counts.to(torch.int64)
        coords = coords.to(torch.int64)
        flat = coords[..., 0] * self.w + coords[..., 1]
        flat = torch.where(counts > 0, flat, torch.full_like(flat, self.h * self.w))
        # zeros derived from the data (not a constant): keeps a C×H×W zero block out of the exported file
        canvas = (feats[:, :, :1] * 0.0).expand(B, self.channels, self.h * self.w + 1)
        canvas = canvas.scatter(2, flat.unsqueeze(1).expand(B, self.channels, P), feats)
        return canvas[:, :, : self.h * self.w].reshape(B, self.channels, self.h, self.w)


class ImageEncoder(nn.Module):
    """(B·Ncam, 3, Hi, Wi) normalized RGB → (B·Ncam, C, Hi/8, Wi/8)."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            conv_bn(3, c // 2, 3, 2),
            conv_bn(c // 2, c // 2, 3, 1),
            conv_bn(c // 2, c, 3, 2),
            conv_bn(c, c, 3, 1),
            conv_bn(c, c, 3, 2),
            conv_bn(c, c, 3, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class CameraLift(nn.Module):
    """Image features → BEV by projecting each cell centre at several heights.

    forward(features (B·Ncam, C, hf, wf), projection (B, Ncam, 3, 4) base_link → pixel of the network's
    input image (Hi × Wi), camera_valid (B, Ncam) 0/1) → (B, C, H, W): the mean over (valid camera,
    height) samples whose point is in front of the camera (depth > ``MIN_CAMERA_DEPTH_M``) and inside
    the image; 0 where no camera sees the cell."""

    def __init__(
        self,
        grid_origin_xy: tuple[float, float],
        cell_m: float,
        grid_hw: tuple[int, int],
        heights_m: tuple[float, ...],
        image_hw: tuple[int, int],
    ):
        super().__init__()
        H, W = int(grid_hw[0]), int(grid_hw[1])
        self.h, self.w = H, W
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        ys = grid_origin_xy[1] + (torch.arange(H, dtype=torch.float32) + 0.5) * cell_m
        xs = grid_origin_xy[0] + (torch.arange(W, dtype=torch.float32) + 0.5) * cell_m
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        zs = torch.tensor(heights_m, dtype=torch.float32)
        Z = len(heights_m)
        pts = torch.stack(
            [
                xx.reshape(1, -1).expand(Z, -1),
                yy.reshape(1, -1).expand(Z, -1),
                zs.view(Z, 1).expand(Z, H * W),
                torch.ones(Z, H * W),
            ],
            dim=0,
        )  # (4, Z, H·W) homogeneous base_link points
        self.register_buffer("points", pts.reshape(4, Z * H * W), persistent=False)
        self.n_heights = Z

    def forward(
        self, features: torch.Tensor, projection: torch.Tensor, camera_valid: torch.Tensor
    ) -> torch.Tensor:
        B, ncam = projection.shape[0], projection.shape[1]
        C = features.shape[1]
        Hi, Wi = self.image_hw
        Z, H, W = self.n_heights, self.h, self.w
        uvw = torch.matmul(projection.reshape(B * ncam, 3, 4), self.points)  # (B·Ncam, 3, Z·H·W)
        depth = uvw[:, 2]
        safe = torch.where(depth > MIN_CAMERA_DEPTH_M, depth, torch.ones_like(depth))
        u = uvw[:, 0] / safe
        v = uvw[:, 1] / safe
        seen = (depth > MIN_CAMERA_DEPTH_M) & (u >= 0) & (u <= Wi - 1) & (v >= 0) & (v <= Hi - 1)
        sampled = _bilinear(features, u, v, Hi, Wi)  # (B·Ncam, C, Z·H·W)
        w = seen.to(features.dtype) * camera_valid.to(features.dtype).reshape(B * ncam, 1)
        w = w.reshape(B * ncam, 1, Z, H * W)
        sampled = sampled.reshape(B * ncam, C, Z, H * W)
        total = (sampled * w).reshape(B, ncam, C, Z, H * W).sum(dim=(1, 3))
        n = w.reshape(B, ncam, 1, Z, H * W).sum(dim=(1, 3))
        return (total / n.clamp(min=1.0)).reshape(B, C, H, W)
