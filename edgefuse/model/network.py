"""The whole network (torch): encoders → fusion → backbone → heads (→ decode).

:class:`FusionNet` takes the :class:`~edgefuse.tensors.FusionInputs` arrays by name
(:data:`~edgefuse.runtime.feed.INPUT_NAMES`) with a leading batch axis B:

- ``images`` (B, C, 3, Hi, Wi) float32 normalized; ``projection`` (B, C, 3, 4) float32 base_link →
  input-image pixels; ``camera_valid`` (B, C) uint8;
- ``lidar_pillars`` (B, P, N, F) float32 (x y z first, base_link), ``lidar_coords`` (B, P, 2) int32
  (iy, ix), ``lidar_counts`` (B, P) int32, ``lidar_valid`` (B, 1) uint8;
- ``radar_pillars``, ``radar_coords``, ``radar_counts``, ``radar_valid`` likewise.

A modality's validity (camera: any camera valid) is its weight switch in the fusion layer.
``forward`` returns the raw head outputs (training); ``forward_decoded`` (what is exported) returns
``boxes`` (B, K, 9) x y z l w h yaw vx vy, ``scores`` (B, K), ``labels`` (B, K) int64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgefuse.model.config import ModelConfig
from edgefuse.model.encoders import CameraLift, ImageEncoder, PillarEncoder
from edgefuse.model.fusion import make_fusion
from edgefuse.model.heads import Backbone, CenterHead, TopKDecode
from edgefuse.runtime.feed import INPUT_NAMES, MODALITIES, OUTPUT_NAMES, ModelConfigError  # noqa: F401 - re-exported


@dataclass(frozen=True)
class NetGeometry:
    """The input geometry the network is built for, from the tensor spec
    (:func:`edgefuse.runtime.feed.geometry_from_spec`): pillar grid origin (x_min, y_min) m, pillar size m,
    pillar grid (H, W) = (cells along y, cells along x); point features of LiDAR and radar; image
    (Hi, Wi) and camera count; number of classes."""

    origin_xy: tuple[float, float]
    cell_m: float
    grid_hw: tuple[int, int]
    lidar_features: int
    radar_features: int
    image_hw: tuple[int, int]
    n_cameras: int
    n_classes: int

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: dict) -> NetGeometry:
        return NetGeometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class FusionNet(nn.Module):
    def __init__(self, geometry: NetGeometry, config: ModelConfig):
        super().__init__()
        g, c = geometry, config
        self.geometry, self.config = g, c
        ds = c.bev_downsample
        step = ds * 2 * c.head_stride
        if g.grid_hw[0] % step or g.grid_hw[1] % step:
            raise ModelConfigError(
                f"model geometry: grid {g.grid_hw} must be divisible by {step} "
                f"(bev_downsample {ds} × backbone 2 × head_stride {c.head_stride})"
            )
        self.fusion_hw = (g.grid_hw[0] // ds, g.grid_hw[1] // ds)
        self.mod_index = [MODALITIES.index(m) for m in c.modalities]
        chans = []
        if "camera" in c.modalities:
            self.image_encoder = ImageEncoder(c.image_channels)
            self.lift = CameraLift(g.origin_xy, g.cell_m * ds, self.fusion_hw, c.lift_heights_m, g.image_hw)
            chans.append(c.image_channels)
        if "lidar" in c.modalities:
            self.lidar_encoder = PillarEncoder(
                g.lidar_features, c.lidar_channels, g.grid_hw, g.origin_xy, g.cell_m
            )
            chans.append(c.lidar_channels)
        if "radar" in c.modalities:
            self.radar_encoder = PillarEncoder(
                g.radar_features, c.radar_channels, g.grid_hw, g.origin_xy, g.cell_m
            )
            chans.append(c.radar_channels)
        self.fusion = make_fusion(c.fusion, chans, c.fused_channels)
        self.backbone = Backbone(c.fused_channels, c.backbone_channels, c.head_channels, c.head_stride)
        self.head = CenterHead(c.head_channels, g.n_classes)
        self.decode = TopKDecode(g.origin_xy, g.cell_m * ds * c.head_stride, c.top_k)

    @property
    def head_hw(self) -> tuple[int, int]:
        s = self.config.head_stride
        return self.fusion_hw[0] // s, self.fusion_hw[1] // s

    @property
    def head_cell_m(self) -> float:
        return self.geometry.cell_m * self.config.bev_downsample * self.config.head_stride

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        ds = self.config.bev_downsample
        return F.max_pool2d(x, ds, ds) if ds > 1 else x

    def forward(
        self,
        images, projection, camera_valid,
        lidar_pillars, lidar_coords, lidar_counts, lidar_valid,
        radar_pillars, radar_coords, radar_counts, radar_valid,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        feats = []
        mods = self.config.modalities
        if "camera" in mods:
            B, ncam = images.shape[:2]
            f = self.image_encoder(images.reshape(B * ncam, *images.shape[2:]))
            feats.append(self.lift(f, projection, camera_valid))
        if "lidar" in mods:
            feats.append(self._pool(self.lidar_encoder(lidar_pillars, lidar_coords, lidar_counts)))
        if "radar" in mods:
            feats.append(self._pool(self.radar_encoder(radar_pillars, radar_coords, radar_counts)))
        valid = torch.cat(
            [
                camera_valid.to(torch.float32).amax(dim=1, keepdim=True),
                lidar_valid.to(torch.float32),
                radar_valid.to(torch.float32),
            ],
            dim=1,
        )[:, self.mod_index]
        fused = self.fusion(feats, valid)
        return self.head(self.backbone(fused))

    def forward_decoded(self, *inputs):
        heat, reg = self.forward(*inputs)
        return self.decode(heat, reg)


class DecodedNet(nn.Module):
    """The export/inference view: inputs as :class:`FusionNet`, outputs ``boxes, scores, labels``."""

    def __init__(self, net: FusionNet):
        super().__init__()
        self.net = net
        self.train(net.training)

    def forward(self, *inputs):
        return self.net.forward_decoded(*inputs)
