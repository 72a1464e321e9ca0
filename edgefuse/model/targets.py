"""Ground truth → CenterPoint training targets (numpy).

For every ground-truth object of a known class whose centre lies inside the head grid: a Gaussian peak
(value 1 at the centre cell) on its class heatmap, with the CenterNet radius for the box's footprint in
cells, and a regression target at the centre cell (:data:`~edgefuse.model.heads.REG_FIELDS`: offset of
the centre inside the cell, z, log l w h, sin/cos yaw, vx vy).

Objects no sensor saw (:attr:`~edgefuse.types.Detection.unseen`: counted with zero LiDAR and zero radar
points) are, as in nuScenes, neither positives nor negatives: no peak, no regression slot, and their
Gaussian's square on their class channel is weighted 0 in ``heat_weight``, which the focal loss applies to
its negative (background) term, so the model is not taught that an unseen object is background either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefuse.types import Detection

N_REG = 10  # len(edgefuse.model.heads.REG_FIELDS), without importing torch


@dataclass(frozen=True)
class HeadGrid:
    """The head's output grid: origin (x_min, y_min) m, cell size m, (Ho, Wo) = (cells along y, x)."""

    origin_xy: tuple[float, float]
    cell_m: float
    hw: tuple[int, int]


def gaussian_radius(length_cells: float, width_cells: float, min_overlap: float = 0.1) -> float:
    """The largest corner displacement r (cells) for which a box of this footprint still has IoU ≥
    ``min_overlap`` with the true box, in CornerNet's three cases (§3.1): both corners shifted the same
    way (diagonal shift by r), the box shrunk by r on every side, the box grown by r on every side. Exact
    roots of the three quadratics; the smallest wins."""
    w, h, o = float(length_cells), float(width_cells), float(min_overlap)
    s, p = w + h, w * h
    r_shift = (s - math.sqrt(s * s - 4 * (p - 2 * o * p / (1 + o)))) / 2
    r_shrink = (2 * s - math.sqrt(4 * s * s - 16 * p * (1 - o))) / 8
    r_grow = (-2 * s + math.sqrt(4 * s * s - 16 * (p - p / o))) / 8
    return min(r_shift, r_shrink, r_grow)


def draw_gaussian(heat: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-paint exp(-d²/(2σ²)), σ = (2r+1)/6, centred on cell (cy, cx) of ``heat`` (Ho, Wo), in place."""
    sigma = (2 * radius + 1) / 6.0
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    H, W = heat.shape
    x0, x1 = max(0, cx - radius), min(W, cx + radius + 1)
    y0, y1 = max(0, cy - radius), min(H, cy + radius + 1)
    if x0 >= x1 or y0 >= y1:
        return
    patch = g[y0 - cy + radius : y1 - cy + radius, x0 - cx + radius : x1 - cx + radius]
    np.maximum(heat[y0:y1, x0:x1], patch, out=heat[y0:y1, x0:x1])


def build_targets(
    objects: tuple[Detection, ...] | list[Detection],
    classes: tuple[str, ...],
    grid: HeadGrid,
    max_objects: int = 128,
    min_radius: int = 2,
) -> dict[str, np.ndarray]:
    """Targets of one frame: ``heatmap`` (K_cls, Ho, Wo) float32 in [0, 1]; ``heat_weight`` (K_cls, Ho, Wo)
    float32, 1 except 0 around unseen objects (module doc); ``index`` (M,) int64 flat cell index
    iy·Wo + ix; ``mask`` (M,) float32 (1 = a real object); ``regression`` (M, 10) float32.
    Objects beyond ``max_objects`` (nearest first) and outside the grid are left out."""
    Ho, Wo = grid.hw
    heat = np.zeros((len(classes), Ho, Wo), np.float32)
    weight = np.ones((len(classes), Ho, Wo), np.float32)
    index = np.zeros(max_objects, np.int64)
    mask = np.zeros(max_objects, np.float32)
    reg = np.zeros((max_objects, N_REG), np.float32)
    objs = sorted(
        (o for o in objects if o.label in classes), key=lambda o: float(np.hypot(*o.box.center[:2]))
    )
    n = 0
    for o in objs:
        if n >= max_objects:
            break
        fx = (o.box.center[0] - grid.origin_xy[0]) / grid.cell_m
        fy = (o.box.center[1] - grid.origin_xy[1]) / grid.cell_m
        ix, iy = int(math.floor(fx)), int(math.floor(fy))
        if not (0 <= ix < Wo and 0 <= iy < Ho):
            continue
        r = max(min_radius, int(gaussian_radius(o.box.size[0] / grid.cell_m, o.box.size[1] / grid.cell_m)))
        if o.unseen:
            weight[classes.index(o.label), max(0, iy - r) : iy + r + 1, max(0, ix - r) : ix + r + 1] = 0.0
            continue
        draw_gaussian(heat[classes.index(o.label)], ix, iy, r)
        index[n] = iy * Wo + ix
        mask[n] = 1.0
        reg[n] = (
            fx - ix,
            fy - iy,
            o.box.center[2],
            *np.log(o.box.size),
            math.sin(o.box.yaw),
            math.cos(o.box.yaw),
            o.velocity[0],
            o.velocity[1],
        )
        n += 1
    return {"heatmap": heat, "heat_weight": weight, "index": index, "mask": mask, "regression": reg}
