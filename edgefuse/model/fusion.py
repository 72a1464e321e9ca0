"""The fusion layer (torch): per-modality BEV features → one BEV feature map.

Every variant takes the list of modality features (each (B, C_m, H, W)) and ``valid`` (B, M) float
flags (1 = the modality delivered data this frame) and returns (B, C, H, W):

- :class:`ConcatFusion` — zero the missing modalities, concatenate, 3×3 conv.
- :class:`WeightedFusion` — 1×1 projection per modality, learned scalar modality weights (softmax over
  the *valid* modalities; a missing one gets weight 0).
- :class:`GatedFusion` — 1×1 projection per modality, per-cell gates from all features (3×3 conv +
  sigmoid), multiplied by the validity flags and normalized over the modalities: a missing modality gets
  weight exactly 0 and the others are re-weighted per cell.
"""

from __future__ import annotations

import torch
from torch import nn

from edgefuse.model.encoders import conv_bn


def _masked(feats: list[torch.Tensor], valid: torch.Tensor) -> list[torch.Tensor]:
    return [f * valid[:, i].view(-1, 1, 1, 1) for i, f in enumerate(feats)]


class ConcatFusion(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.conv = conv_bn(sum(in_channels), out_channels, 3)

    def forward(self, feats: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat(_masked(feats, valid), dim=1))


class WeightedFusion(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.proj = nn.ModuleList(conv_bn(c, out_channels, 1) for c in in_channels)
        self.logits = nn.Parameter(torch.zeros(len(in_channels)))

    def weights(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, M) modality weights: softmax of the learned logits over the valid modalities."""
        e = torch.exp(self.logits - self.logits.max()).unsqueeze(0) * valid
        return e / e.sum(dim=1, keepdim=True).clamp(min=1e-6)

    def forward(self, feats: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        w = self.weights(valid)
        out = 0.0
        for i, (p, f) in enumerate(zip(self.proj, feats, strict=True)):
            out = out + p(f) * w[:, i].view(-1, 1, 1, 1)
        return out


class GatedFusion(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.proj = nn.ModuleList(conv_bn(c, out_channels, 1) for c in in_channels)
        self.gate = nn.Conv2d(sum(in_channels), len(in_channels), 3, 1, 1)

    def gates(self, feats: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) per-cell modality weights; 0 for a missing modality, summing to 1 otherwise."""
        g = torch.sigmoid(self.gate(torch.cat(_masked(feats, valid), dim=1))) + 1e-3
        g = g * valid.unsqueeze(-1).unsqueeze(-1)
        return g / g.sum(dim=1, keepdim=True).clamp(min=1e-6)

    def forward(self, feats: list[torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        g = self.gates(feats, valid)
        out = 0.0
        for i, (p, f) in enumerate(zip(self.proj, feats, strict=True)):
            out = out + p(f) * g[:, i : i + 1]
        return out


def make_fusion(kind: str, in_channels: list[int], out_channels: int) -> nn.Module:
    if kind == "concat":
        return ConcatFusion(in_channels, out_channels)
    if kind == "weighted":
        return WeightedFusion(in_channels, out_channels)
    if kind == "gated":
        return GatedFusion(in_channels, out_channels)
    raise ValueError(f"fusion: expected concat, weighted or gated, got {kind!r}")
