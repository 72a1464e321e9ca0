"""Model hyper-parameters (torch-free). The input geometry (BEV grid, pillar/point counts, image size,
cameras, classes) is not repeated here: it comes from the tensor spec (:mod:`edgefuse.tensors`) and is
passed to the network next to this config.

The BEV grid convention the network uses: canvas row ``iy`` = index along base_link y, column ``ix`` =
index along x; cell (iy, ix) covers x ∈ [x_min + ix·cell, x_min + (ix+1)·cell), likewise y.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgefuse.runtime.feed import MODALITIES, ModelConfigError

FUSIONS: tuple[str, ...] = ("concat", "weighted", "gated")

@dataclass(frozen=True)
class ModelConfig:
    """Widths and choices of the network. ``fusion``: one of :data:`FUSIONS`; ``modalities``: which of
    :data:`MODALITIES` the model has encoders for; ``lift_heights_m``: heights above base_link's ground
    plane at which each BEV cell is projected into the camera; ``head_stride``: BEV backbone output
    stride relative to the fusion grid (1 or 2); ``bev_downsample``: the fusion grid is the pillar grid
    max-pooled by this factor (1 or 2; the camera is lifted straight to the fusion grid); ``top_k``:
    detections the graph returns."""

    fusion: str = "gated"
    modalities: tuple[str, ...] = MODALITIES
    lidar_channels: int = 32
    radar_channels: int = 16
    image_channels: int = 32
    fused_channels: int = 32
    backbone_channels: tuple[int, int] = (32, 64)
    head_channels: int = 32
    bev_downsample: int = 2
    head_stride: int = 1
    lift_heights_m: tuple[float, ...] = (0.5, 1.25, 2.0)
    top_k: int = 100
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ModelConfigError(f"ModelConfig.fusion: expected one of {FUSIONS}, got {self.fusion!r}")
        mods = tuple(self.modalities)
        object.__setattr__(self, "modalities", mods)
        bad = [m for m in mods if m not in MODALITIES]
        if bad or not mods or len(set(mods)) != len(mods):
            raise ModelConfigError(
                f"ModelConfig.modalities: expected distinct names from {MODALITIES}, got {mods}"
            )
        for name in ("head_stride", "bev_downsample"):
            if getattr(self, name) not in (1, 2):
                raise ModelConfigError(f"ModelConfig.{name}: expected 1 or 2, got {getattr(self, name)}")
        object.__setattr__(self, "backbone_channels", tuple(int(c) for c in self.backbone_channels))
        object.__setattr__(self, "lift_heights_m", tuple(float(h) for h in self.lift_heights_m))
        if self.top_k < 1:
            raise ModelConfigError(f"ModelConfig.top_k: expected ≥ 1, got {self.top_k}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        d["backbone_channels"] = list(self.backbone_channels)
        d["lift_heights_m"] = list(self.lift_heights_m)
        return d

    @staticmethod
    def from_dict(d: dict, where: str = "model config") -> ModelConfig:
        known = set(ModelConfig.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelConfigError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
        d = dict(d)
        for k in ("modalities", "backbone_channels", "lift_heights_m"):
            if k in d:
                d[k] = tuple(d[k])
        return ModelConfig(**d)


def edge_spec():
    """The tensor spec of the default (edge) model: the front camera at 224×400, LiDAR and radar pillars
    of 0.32 m over ±40.96 m (a 256×256 grid), up to 6000 LiDAR pillars of 8 points (simulated urban
    sweeps fill 2400–5400) and 256 radar pillars of 8 points. Radar points need position and doppler (what
    every radar driver gives); RCS and SNR are optional inputs, each masked where the radar lacks it."""
    from edgefuse.tensors import TensorSpec

    return TensorSpec(
        image_size=(224, 400),
        x_range=(-40.96, 40.96),
        y_range=(-40.96, 40.96),
        pillar_size=(0.32, 0.32),
        max_pillars=6000,
        max_points_per_pillar=8,
        radar_max_pillars=256,
        radar_max_points_per_pillar=8,
        radar_features=("x", "y", "z", "doppler"),
        radar_optional_features=("rcs", "snr"),
    )


#: The default (edge) configuration and a larger one for GPUs (``--config large``).
CONFIGS: dict[str, ModelConfig] = {
    "edge": ModelConfig(),
    "large": ModelConfig(
        lidar_channels=64,
        radar_channels=32,
        image_channels=64,
        fused_channels=96,
        backbone_channels=(96, 192),
        head_channels=96,
        bev_downsample=1,
        head_stride=2,
        lift_heights_m=(0.25, 0.75, 1.25, 1.75, 2.5),
    ),
}
