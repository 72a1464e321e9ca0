"""CenterPoint losses (torch): focal loss on the class heatmaps, weighted L1 on the regression at the
object centres."""

from __future__ import annotations

import torch

#: L1 weights per regression channel (REG_FIELDS order); velocity lighter, as CenterPoint does.
REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, neg_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (α = 2, β = 4), normalized by the number of peaks.
    ``logits``, ``target`` (B, K, Ho, Wo); target peaks are exactly 1. ``neg_weight`` (B, K, Ho, Wo):
    weight of each cell's negative term (0 = ignored, around objects no sensor saw); None = all 1."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).to(p.dtype)
    neg = 1.0 - pos
    if neg_weight is not None:
        neg = neg * neg_weight
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
    """(loss, parts) for a batch holding ``heatmap``, ``index``, ``mask``, ``regression`` tensors (and
    optionally ``heat_weight``, see :func:`focal_loss`)."""
    lh = focal_loss(heat, batch["heatmap"], batch.get("heat_weight"))
    lr = regression_loss(reg, batch["index"], batch["mask"], batch["regression"])
    loss = lh + reg_weight * lr
    return loss, {"heatmap": float(lh.detach()), "regression": float(lr.detach())}
