"""Training targets: Gaussian radius against a bisection of the IoU conditions, peaks, regression."""

import math

import numpy as np
import pytest

from edgefuse.model.targets import HeadGrid, build_targets, gaussian_radius
from edgefuse.types import Box3D, Detection


def _iou_cases(w, h, r):
    shifted = (w - r) * (h - r)
    return (
        shifted / (2 * w * h - shifted),  # both corners shifted the same way
        (w - 2 * r) * (h - 2 * r) / (w * h),  # shrunk on every side
        w * h / ((w + 2 * r) * (h + 2 * r)),  # grown on every side
    )


@pytest.mark.parametrize("w,h", [(5.6, 2.4), (1.0, 1.0), (12.0, 3.0)])
def test_gaussian_radius_is_the_largest_shift_keeping_the_overlap(w, h):
    lo, hi = 0.0, min(w, h) / 2
    for _ in range(60):  # bisection on the smallest IoU of the three cases
        mid = (lo + hi) / 2
        if min(_iou_cases(w, h, mid)) >= 0.1:
            lo = mid
        else:
            hi = mid
    assert gaussian_radius(w, h, 0.1) == pytest.approx(lo, rel=1e-6)


def test_targets_of_one_object():
    grid = HeadGrid((-10.0, -20.0), 0.8, (40, 50))
    o = Detection("pedestrian", 1.0, Box3D([1.0, 2.0, 0.9], [0.7, 0.6, 1.8], 0.4), np.array([1.0, -0.5]))
    far = Detection("car", 1.0, Box3D([100.0, 2.0, 0.9], [4.0, 1.8, 1.5], 0.0))
    t = build_targets([o, far], ("car", "pedestrian", "cyclist"), grid, max_objects=4)
    assert t["heatmap"].shape == (3, 40, 50) and t["heatmap"].dtype == np.float32
    ix, iy = math.floor(11.0 / 0.8), math.floor(22.0 / 0.8)
    assert t["heatmap"][1, iy, ix] == 1.0
    assert t["heatmap"][1].max() == 1.0 and (t["heatmap"][1] == 1.0).sum() == 1
    assert t["heatmap"][0].max() == 0.0  # the car is outside the grid
    assert t["mask"].tolist() == [1, 0, 0, 0]
    assert t["index"][0] == iy * 50 + ix
    r = t["regression"][0]
    assert -10 + (ix + r[0]) * 0.8 == pytest.approx(1.0, abs=1e-5)
    assert -20 + (iy + r[1]) * 0.8 == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(np.exp(r[3:6]), [0.7, 0.6, 1.8], rtol=1e-6)
    assert math.atan2(r[6], r[7]) == pytest.approx(0.4, abs=1e-6)
    np.testing.assert_allclose(r[8:10], [1.0, -0.5])


def test_losses_by_hand():
    import torch

    from edgefuse.model.losses import focal_loss, regression_loss

    # one peak with logit 0 (p = 0.5): -(log 0.5 · 0.5²) / 1 peak
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.5]]]])
    # the second cell is a negative with target 0.5: -log(1 - 0.5) · 0.5² · (1 - 0.5)⁴
    want = -(math.log(0.5) * 0.25) - (math.log(0.5) * 0.25 * 0.5**4)
    assert focal_loss(logits, target).item() == pytest.approx(want, rel=1e-5)
    reg = torch.zeros(1, 10, 2, 2)
    reg[0, :, 1, 0] = 1.0  # flat cell 2
    index = torch.tensor([[2, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    tgt = torch.zeros(1, 2, 10)
    # |1 - 0| per channel, weights 1 × 8 + 0.2 × 2, one object; the masked second row adds nothing
    assert regression_loss(reg, index, mask, tgt).item() == pytest.approx(8.4, rel=1e-6)


def _ped(x: float, y: float, **counts) -> Detection:
    return Detection("pedestrian", 1.0, Box3D([x, y, 0.9], [0.7, 0.6, 1.8], 0.0), track_id=int(x), **counts)


def test_boxes_no_sensor_saw_are_neither_positive_nor_negative():
    """Counted with zero LiDAR and zero radar points (or zero LiDAR, radar not counted): no peak, no
    regression slot, and the negatives around it weigh 0; any point, or no count at all, makes a positive."""
    grid = HeadGrid((0.0, 0.0), 1.0, (40, 40))
    classes = ("car", "pedestrian", "cyclist")
    objs = [
        _ped(5.5, 5.5, lidar_points=0, radar_points=0),  # unseen
        _ped(15.5, 5.5, lidar_points=0),  # unseen (radar not counted)
        _ped(25.5, 5.5, lidar_points=0, radar_points=1),  # a radar point: seen
        _ped(5.5, 25.5, lidar_points=3, radar_points=0),  # LiDAR points: seen
        _ped(25.5, 25.5),  # not counted: kept, as before counts existed
    ]
    t = build_targets(objs, classes, grid, max_objects=8)
    peaks = {(int(i) % 40, int(i) // 40) for i, m in zip(t["index"], t["mask"], strict=True) if m}
    assert peaks == {(25, 5), (5, 25), (25, 25)}
    assert (t["heatmap"][1] == 1.0).sum() == 3
    assert t["heatmap"][1, 5, 5] == 0.0 and t["heatmap"][1, 5, 15] == 0.0
    w = t["heat_weight"]
    assert w.shape == t["heatmap"].shape and w.dtype == np.float32
    assert w[1, 5, 5] == 0.0 and w[1, 5, 15] == 0.0  # ignored where the unseen boxes stand
    assert w[1, 5, 25] == 1.0 and w[1, 25, 5] == 1.0 and w[1, 25, 25] == 1.0 and w[1, 20, 20] == 1.0
    assert w[0].min() == 1.0 and w[2].min() == 1.0  # other classes untouched
    assert 0 < (w[1] == 0).sum() < 2 * 11 * 11  # a small square around each, not the whole map


def test_focal_loss_ignores_what_the_weight_masks():
    """The loss does not change with the logits where ``heat_weight`` is 0 (an unseen box's cells), and
    still does elsewhere."""
    import torch

    from edgefuse.model.losses import total_loss

    grid = HeadGrid((0.0, 0.0), 1.0, (20, 20))
    objs = [_ped(5.5, 5.5, lidar_points=0, radar_points=0), _ped(15.5, 15.5)]
    t = build_targets(objs, ("car", "pedestrian", "cyclist"), grid)
    batch = {k: torch.from_numpy(v[None]) for k, v in t.items()}
    reg = torch.zeros(1, 10, 20, 20)

    def loss(logits):
        return float(total_loss(logits, reg, batch)[0])

    base = torch.full((1, 3, 20, 20), -2.0)
    hot_unseen, hot_bg = base.clone(), base.clone()
    hot_unseen[0, 1, 5, 5] = 3.0  # a confident detection of the unseen pedestrian
    hot_bg[0, 1, 10, 2] = 3.0  # a confident false positive on plain background
    assert loss(hot_unseen) == pytest.approx(loss(base), rel=1e-6)
    assert loss(hot_bg) > loss(base) + 0.1
    del batch["heat_weight"]  # without the weight the unseen pedestrian is background
    assert loss(hot_unseen) > loss(base) + 0.1
