"""The model's input/output contract (numpy only, robot side): :class:`~edgefuse.tensors.FusionInputs` →
the network's named inputs, the network geometry from a tensor spec, the modality switch used by modality
dropout and ``--modalities``, batching.

The network's inputs are FusionInputs arrays by name (:data:`INPUT_NAMES`), with a batch axis in front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefuse.errors import InputError

#: A camera sees a point only beyond this depth (m, along its optical axis): the camera lift, the CUDA
#: lift kernel and the evaluation's field-of-view region share it.
MIN_CAMERA_DEPTH_M = 0.1
#: The modality axis of every per-modality tensor (validity flags, dropout, ``--modalities``).
MODALITIES: tuple[str, ...] = ("camera", "lidar", "radar")


class ModelConfigError(InputError):
    """A model configuration value is wrong (names the field and what was expected)."""


INPUT_NAMES: tuple[str, ...] = (
    "images", "projection", "camera_valid",
    "lidar_pillars", "lidar_coords", "lidar_counts", "lidar_valid",
    "radar_pillars", "radar_coords", "radar_counts", "radar_valid",
)  # fmt: skip
OUTPUT_NAMES: tuple[str, ...] = ("boxes", "scores", "labels")
#: The inputs that carry each modality's data and flags (zeroed when the modality is switched off).
MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "camera": ("images", "camera_valid"),
    "lidar": ("lidar_pillars", "lidar_counts", "lidar_valid"),
    "radar": ("radar_pillars", "radar_counts", "radar_valid"),
}


def geometry_from_spec(spec):
    """:class:`~edgefuse.model.network.NetGeometry` (as its constructor kwargs dict) of a
    :class:`~edgefuse.tensors.TensorSpec`. Pillars must be square."""
    dx, dy = spec.pillar_size
    if abs(dx - dy) > 1e-9:
        raise ModelConfigError(f"tensor spec pillar_size: expected square pillars, got {spec.pillar_size}")
    return {
        "origin_xy": (float(spec.x_range[0]), float(spec.y_range[0])),
        "cell_m": float(dx),
        "grid_hw": tuple(spec.grid_size),
        "lidar_features": len(spec.lidar_features),
        "radar_features": len(spec.radar_channels),
        "image_hw": tuple(int(v) for v in spec.image_size),
        "n_cameras": len(spec.cameras),
        "n_classes": len(spec.classes),
    }


def feed_from_inputs(inputs) -> dict[str, np.ndarray]:
    """One frame's FusionInputs → the network's inputs (no batch axis)."""
    d = inputs.as_dict()
    return {k: d[k] for k in INPUT_NAMES}


def parse_modalities(text: str, where: str = "--modalities") -> tuple[str, ...]:
    """ "camera,lidar" → ("camera", "lidar") in :data:`MODALITIES` order; names checked."""
    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    bad = [m for m in names if m not in MODALITIES]
    if bad or not names:
        raise ModelConfigError(
            f"{where}: expected a comma-separated subset of {list(MODALITIES)}, got {text!r}"
        )
    return tuple(m for m in MODALITIES if m in names)


def apply_modalities(feed: dict[str, np.ndarray], keep: Sequence[str]) -> dict[str, np.ndarray]:
    """A copy of one frame's (or batch's) inputs with every modality not in ``keep`` removed: its data
    and validity inputs zeroed (point counts 0 = no pillars, valid flags 0)."""
    out = dict(feed)
    for m in MODALITIES:
        if m not in keep:
            for name in MODALITY_INPUTS[m]:
                out[name] = np.zeros_like(feed[name])
    return out


def mask_radar_fields(feed: dict[str, np.ndarray], spec, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """A copy of one frame's (or batch's) inputs as if the radar had not measured the optional ``fields``
    (names in ``spec.radar_optional_features``): their value and ``<name>_valid`` channels of
    ``radar_pillars`` (…, M, G) zeroed — what a kit whose radar lacks the measure feeds."""
    bad = [f for f in fields if f not in spec.radar_optional_features]
    if bad:
        raise ModelConfigError(
            f"radar field {bad[0]!r}: expected one of the model's optional radar fields "
            f"{list(spec.radar_optional_features)}"
        )
    if not fields:
        return feed
    channels = spec.radar_channels
    idx = [channels.index(c) for f in fields for c in (f, f"{f}_valid")]
    pts = feed["radar_pillars"].copy()
    pts[..., idx] = 0.0
    return {**feed, "radar_pillars": pts}


def stack(items: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-frame dicts → one batch dict (new leading axis)."""
    return {k: np.stack([it[k] for it in items]) for k in items[0]}
