"""In-graph top-K decode and the numpy post-processing return the boxes of a hand-made heatmap."""

import math

import numpy as np
import pytest
import torch

from edgefuse.model.heads import REG_FIELDS, TopKDecode
from edgefuse.runtime.decode import OutputError, to_detections

ORIGIN = (-10.0, -20.0)
CELL = 0.8


def _outputs():
    ncls, H, W = 3, 16, 24
    heat = torch.full((1, ncls, H, W), -10.0)
    reg = torch.zeros((1, len(REG_FIELDS), H, W))
    # object A: class 0 (car) at cell (iy 5, ix 7), logit 3; a weaker neighbour that is not a peak
    heat[0, 0, 5, 7] = 3.0
    heat[0, 0, 5, 8] = 2.5
    reg[0, :, 5, 7] = torch.tensor(
        [0.3, 0.6, 0.9, math.log(4.5), math.log(1.9), math.log(1.6), math.sin(0.7), math.cos(0.7), 3.0, -1.0]
    )
    # object B: class 2 (cyclist) at cell (iy 10, ix 2), logit 2
    heat[0, 2, 10, 2] = 2.0
    reg[0, :, 10, 2] = torch.tensor(
        [0.5, 0.5, 0.7, math.log(1.8), math.log(0.6), math.log(1.7), math.sin(-2.5), math.cos(-2.5), 0.0, 4.0]
    )
    return heat, reg


def test_decode_returns_the_hand_made_boxes():
    heat, reg = _outputs()
    boxes, scores, labels = TopKDecode(ORIGIN, CELL, k=5)(heat, reg)
    assert boxes.shape == (1, 5, 9) and boxes.dtype == torch.float32
    assert scores.shape == (1, 5) and labels.shape == (1, 5) and labels.dtype == torch.int64
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert scores[0, 0].item() == pytest.approx(sig(3.0), rel=1e-6)
    assert scores[0, 1].item() == pytest.approx(sig(2.0), rel=1e-6)
    assert scores[0, 2].item() < 1e-3  # the neighbour (2.5) is suppressed by the 3x3 peak test
    a = boxes[0, 0].numpy()
    assert labels[0, 0].item() == 0
    np.testing.assert_allclose(
        a, [-10 + 7.3 * 0.8, -20 + 5.6 * 0.8, 0.9, 4.5, 1.9, 1.6, 0.7, 3.0, -1.0], rtol=1e-5, atol=1e-5
    )
    b = boxes[0, 1].numpy()
    assert labels[0, 1].item() == 2
    np.testing.assert_allclose(
        b, [-10 + 2.5 * 0.8, -20 + 10.5 * 0.8, 0.7, 1.8, 0.6, 1.7, -2.5, 0.0, 4.0], rtol=1e-5, atol=1e-5
    )


def test_to_detections_thresholds_and_labels():
    heat, reg = _outputs()
    boxes, scores, labels = TopKDecode(ORIGIN, CELL, k=5)(heat, reg)
    dets = to_detections(
        boxes[0].numpy(),
        scores[0].numpy(),
        labels[0].numpy(),
        123,
        ("car", "pedestrian", "cyclist"),
        score_threshold=0.5,
    )
    assert dets.stamp_ns == 123 and dets.frame == "base_link"
    assert [o.label for o in dets.objects] == ["car", "cyclist"]
    np.testing.assert_allclose(dets.objects[1].box.center, [-8.0, -11.6, 0.7], atol=1e-5)
    np.testing.assert_allclose(dets.objects[1].velocity, [0.0, 4.0], atol=1e-6)


def test_to_detections_rejects_bad_shapes():
    with pytest.raises(OutputError, match="boxes"):
        to_detections(np.zeros((5, 7), np.float32), np.zeros(5), np.zeros(5), 0, ("car",))
