"""BEV backbone, CenterPoint-style heads and the in-graph top-K decode (torch).

Head outputs at the head grid (Ho × Wo = pillar grid / head_stride):
- ``heatmap`` (B, K_cls, Ho, Wo) logits;
- ``regression`` (B, 10, Ho, Wo): :data:`REG_FIELDS` — centre offset within the cell (x, y, in cells),
  z (m), log length/width/height (log m), sin/cos yaw, vx vy (m/s, base_link).

:class:`TopKDecode` turns them into final boxes inside the graph (max-pool peak finding, top-K over
classes × cells) so an exported model returns ``boxes`` (B, K, 9) x y z l w h yaw vx vy, ``scores``
(B, K), ``labels`` (B, K) int64.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgefuse.model.encoders import conv_bn

REG_FIELDS: tuple[str, ...] = ("dx", "dy", "z", "log_l", "log_w", "log_h", "sin", "cos", "vx", "vy")


class Backbone(nn.Module):
    """Two-scale BEV backbone with an FPN-style neck: (B, Cin, H, W) → (B, Cout, H/s, W/s), s = stride."""

    def __init__(self, cin: int, channels: tuple[int, int], cout: int, stride: int):
        super().__init__()
        c1, c2 = channels
        self.stride = stride
        self.block1 = nn.Sequential(conv_bn(cin, c1, 3, stride), conv_bn(c1, c1))
        self.block2 = nn.Sequential(conv_bn(c1, c2, 3, 2), conv_bn(c2, c2))
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 2, 2, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True)
        )
        self.out = conv_bn(2 * c1, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.block1(x)
        b = self.up2(self.block2(a))
        return self.out(torch.cat([a, b], dim=1))


class CenterHead(nn.Module):
    """One shared 3×3 conv, then 1×1 outputs: class heatmap logits and the regression channels."""

    def __init__(self, cin: int, n_classes: int):
        super().__init__()
        self.shared = conv_bn(cin, cin)
        self.heat = nn.Conv2d(cin, n_classes, 1)
        self.reg = nn.Conv2d(cin, len(REG_FIELDS), 1)
        nn.init.constant_(self.heat.bias, -math.log((1 - 0.1) / 0.1))  # CenterNet prior 0.1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.shared(x)
        return self.heat(x), self.reg(x)


class TopKDecode(nn.Module):
    """Head outputs → top-K boxes (exportable: standard ONNX ops only)."""

    def __init__(self, origin_xy: tuple[float, float], cell_m: float, k: int):
        super().__init__()
        self.x0, self.y0 = float(origin_xy[0]), float(origin_xy[1])
        self.cell = float(cell_m)
        self.k = int(k)

    def forward(self, heatmap: torch.Tensor, regression: torch.Tensor):
        B, ncls, Ho, Wo = heatmap.shape
        heat = torch.sigmoid(heatmap)
        peak = F.max_pool2d(heat, 3, 1, 1)
        heat = heat * (heat >= peak).to(heat.dtype)
        k = min(self.k, ncls * Ho * Wo)
        scores, idx = torch.topk(heat.reshape(B, ncls * Ho * Wo), k, dim=1)
        labels = torch.div(idx, Ho * Wo, rounding_mode="floor")
        pix = idx - labels * (Ho * Wo)
        iy = torch.div(pix, Wo, rounding_mode="floor")
        ix = pix - iy * Wo
        reg = torch.gather(
            regression.reshape(B, len(REG_FIELDS), Ho * Wo), 2, pix.unsqueeze(1).expand(B, len(REG_FIELDS), k)
        )  # (B, 10, K)
        x = self.x0 + (ix.to(reg.dtype) + reg[:, 0]) * self.cell
        y = self.y0 + (iy.to(reg.dtype) + reg[:, 1]) * self.cell
        size = torch.exp(reg[:, 3:6].clamp(max=4.0))
        yaw = torch.atan2(reg[:, 6], reg[:, 7])
        boxes = torch.stack(
            [x, y, reg[:, 2], size[:, 0], size[:, 1], size[:, 2], yaw, reg[:, 8], reg[:, 9]], 2
        )
        return boxes, scores, labels
