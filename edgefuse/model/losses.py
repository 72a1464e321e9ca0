"""CenterPoint losses (torch): focal loss on the class heatmaps, weighted L1 on the regression at the
object centres; and the camera depth head's loss against LiDAR depth (training only)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from edgefuse.model.encoders import depth_bin

#: L1 weights per regression channel (REG_FIELDS order); velocity lighter, as CenterPoint does.
REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (α = 2, β = 4), normalized by the number of peaks.
    ``logits``, ``target`` (B, K, Ho, Wo); target peaks are exactly 1."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).to(p.dtype)
    neg = 1.0 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def regression_loss(
    reg: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """``reg`` (B, 10, Ho, Wo) predictions; ``index`` (B, M) flat cells; ``mask`` (B, M); ``target``
    (B, M, 10). Weighted L1 over the real objects, normalized by their number."""
    B, C = reg.shape[:2]
    pred = torch.gather(reg.reshape(B, C, -1), 2, index.unsqueeze(1).expand(B, C, index.shape[1]))
    pred = pred.permute(0, 2, 1)  # (B, M, 10)
    w = torch.tensor(REG_WEIGHTS, dtype=reg.dtype, device=reg.device)
    l1 = (pred - target).abs() * w * mask.unsqueeze(-1)
    return l1.sum() / mask.sum().clamp(min=1.0)


def total_loss(heat, reg, batch: dict, reg_weight: float = 0.25) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, parts) for a batch holding ``heatmap``, ``index``, ``mask``, ``regression`` tensors."""
    lh = focal_loss(heat, batch["heatmap"])
    lr = regression_loss(reg, batch["index"], batch["mask"], batch["regression"])
    loss = lh + reg_weight * lr
    return loss, {"heatmap": float(lh.detach()), "regression": float(lr.detach())}


def lidar_depth_targets(
    points: torch.Tensor,
    counts: torch.Tensor,
    projection: torch.Tensor,
    camera_valid: torch.Tensor,
    image_hw: tuple[int, int],
    feat_hw: tuple[int, int],
    bins: int,
    range_m: tuple[float, float],
) -> torch.Tensor:
    """The LiDAR's depth bin at every camera feature pixel (what the depth head is trained towards).

    ``points`` (B, P, N, F) pillar points, base_link x y z first; ``counts`` (B, P) points per pillar;
    ``projection`` (B, Ncam, 3, 4) base_link → input-image pixels (Hi × Wi = ``image_hw``);
    ``camera_valid`` (B, Ncam) → (B·Ncam, hf, wf) int64 bin index (as
    :func:`~edgefuse.model.encoders.depth_bin` over ``range_m``), −1 where no point lands, the camera is
    invalid or the depth is out of range. Feature pixel j covers input pixels [j·s, (j+1)·s), s = Wi/wf;
    the nearest point in a feature pixel wins (the surface the camera sees)."""
    B, P, N = points.shape[:3]
    ncam = projection.shape[1]
    (Hi, Wi), (hf, wf) = image_hw, feat_hw
    real = torch.arange(N, device=points.device).view(1, 1, N) < counts.unsqueeze(-1)  # (B, P, N)
    xyz1 = torch.cat([points[..., :3], torch.ones_like(points[..., :1])], dim=-1).reshape(B, 1, P * N, 4)
    uvw = torch.matmul(xyz1, projection.transpose(2, 3))  # (B, Ncam, P·N, 3)
    d = uvw[..., 2]
    safe = torch.where(d > 0.1, d, torch.ones_like(d))
    u, v = uvw[..., 0] / safe, uvw[..., 1] / safe
    px = torch.floor((u + 0.5) * (wf / Wi))
    py = torch.floor((v + 0.5) * (hf / Hi))
    ok = (
        real.reshape(B, 1, P * N)
        & (camera_valid.reshape(B, ncam, 1) > 0)
        & (d > 0.1)
        & (px >= 0) & (px < wf) & (py >= 0) & (py < hf)
    )  # fmt: skip
    cam = torch.arange(B * ncam, device=points.device).view(B, ncam, 1) * (hf * wf)
    flat = (cam + py.clamp(0, hf - 1).to(torch.int64) * wf + px.clamp(0, wf - 1).to(torch.int64))[ok]
    nearest = torch.full((B * ncam * hf * wf,), float("inf"), dtype=d.dtype, device=d.device)
    nearest.scatter_reduce_(0, flat, d[ok], reduce="amin")
    b, inside = depth_bin(nearest, bins, range_m)
    return torch.where(inside, b, torch.full_like(b, -1)).reshape(B * ncam, hf, wf)


def depth_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the depth head ``logits`` (M, D, hf, wf) against ``target`` bins (M, hf, wf),
    −1 ignored; mean over the pixels with a target (0 when there are none)."""
    if not bool((target >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=-1)
