"""Target (training) and decode (graph) conventions, each pinned twice: by hand-computed values on each
side (a box at a known position lands in a known cell with a known offset; a known head output decodes
to a known box), and by a round trip target → head maps → top-K decode → detections, which fails when
the two sides disagree. A round trip alone passes when both sides share a mistake; the hand values alone
miss a side that drifts from the other — hence both.

The conventions (``edgefuse.model.heads``, ``edgefuse.model.targets``, ``edgefuse.model.config``):
heatmap (K_cls, Ho, Wo) with row ``iy`` along base_link y and column ``ix`` along x, flat index
iy·Wo + ix; cell (iy, ix) covers [x0 + ix·cell, x0 + (ix+1)·cell) (its corner at the origin side); the
offset is from that corner, in cells, in [0, 1) (a box on the cell's centre has offset 0.5); z in metres;
log of l w h; sin(yaw) before cos(yaw); velocity vx vy in base_link, as is; class channel k is
``classes[k]``.
"""

import math

import numpy as np
import pytest
import torch

from edgefuse.model.heads import REG_FIELDS, TopKDecode
from edgefuse.model.targets import HeadGrid, build_targets
from edgefuse.runtime.decode import to_detections
from edgefuse.types import Box3D, Detection

CLASSES = ("car", "pedestrian", "cyclist")
# a non-square grid whose origin is not the ego: x and y, rows and columns cannot be confused
GRID = HeadGrid((-10.0, -20.0), 0.8, (40, 50))


def _det(label, center, size, yaw, velocity):
    return Detection(label, 1.0, Box3D(center, size, yaw), np.array(velocity, dtype=np.float64))


def test_target_of_a_known_box_by_hand():
    """A cyclist at (1.0, 2.0, 0.9): x − x0 = 11.0 m = 13.75 cells → column 13, offset 0.75; y − y0 =
    22.0 m = 27.5 cells → row 27, offset 0.5 (the cell's centre). Flat index 27·50 + 13 = 1363."""
    o = _det("cyclist", [1.0, 2.0, 0.9], [1.8, 0.6, 1.7], 2.0, [1.5, -0.5])
    t = build_targets([o], CLASSES, GRID, max_objects=2)
    assert t["heatmap"].shape == (3, 40, 50)
    assert t["heatmap"][2, 27, 13] == 1.0  # class channel 2 = "cyclist", row = y, column = x
    assert (t["heatmap"] == 1.0).sum() == 1
    assert t["heatmap"][0].max() == 0.0 and t["heatmap"][1].max() == 0.0
    assert t["index"].tolist() == [1363, 0] and t["mask"].tolist() == [1.0, 0.0]
    want = [
        0.75,  # dx: from the cell's corner, in cells
        0.5,  # dy
        0.9,  # z (m)
        0.5877866649,  # log 1.8 (length)
        -0.5108256238,  # log 0.6 (width)
        0.5306282511,  # log 1.7 (height)
        0.9092974268,  # sin 2.0
        -0.4161468365,  # cos 2.0
        1.5,  # vx (base_link)
        -0.5,  # vy
    ]
    np.testing.assert_allclose(t["regression"][0], want, atol=1e-6)
    assert not t["regression"][1].any()


def test_target_cell_edges_by_hand():
    """A box exactly on a cell's lower corner has offset 0 in that cell; one half a cell below the grid's
    x origin is outside (floor, not rounding towards zero). Binary-exact numbers: cell 0.5 m."""
    grid = HeadGrid((-8.0, -16.0), 0.5, (40, 50))
    on_corner = _det("car", [-6.0, -12.5, 0.0], [4.0, 1.8, 1.5], 0.0, [0, 0])  # column 4, row 7
    below = _det("car", [-8.25, -10.0, 0.0], [4.0, 1.8, 1.5], 0.0, [0, 0])
    t = build_targets([on_corner, below], CLASSES, grid, max_objects=2)
    assert t["mask"].tolist() == [1.0, 0.0]
    assert t["index"][0] == 7 * 50 + 4
    np.testing.assert_allclose(t["regression"][0, :2], [0.0, 0.0], atol=1e-5)


def test_decode_of_known_head_outputs_by_hand():
    """Head outputs written by hand at row 3, column 11 of class channel 1 decode to the hand-computed
    box: x = −10 + (11 + 0.25)·0.8 = −1.0, y = −20 + (3 + 0.75)·0.8 = −17.0; size e^log; yaw from
    (sin, cos) = (−0.6, −0.8): atan2 → −2.4981 rad (third quadrant: neither a negated yaw nor swapped
    sin/cos reproduces it); velocity as is."""
    H, W = GRID.hw
    heat = torch.full((1, 3, H, W), -8.0)
    reg = torch.zeros((1, len(REG_FIELDS), H, W))
    heat[0, 1, 3, 11] = 4.0
    reg[0, :, 3, 11] = torch.tensor(
        [0.25, 0.75, -0.4, 0.0, math.log(0.5), math.log(2.0), -0.6, -0.8, -2.0, 0.5]
    )
    boxes, scores, labels = TopKDecode(GRID.origin_xy, GRID.cell_m, k=3)(heat, reg)
    dets = to_detections(boxes[0].numpy(), scores[0].numpy(), labels[0].numpy(), 7, CLASSES, 0.5)
    assert [o.label for o in dets.objects] == ["pedestrian"]
    o = dets.objects[0]
    np.testing.assert_allclose(o.box.center, [-1.0, -17.0, -0.4], atol=1e-5)
    np.testing.assert_allclose(o.box.size, [1.0, 0.5, 2.0], rtol=1e-6)
    assert o.box.yaw == pytest.approx(-2.4980915448, abs=1e-6)
    np.testing.assert_allclose(o.velocity, [-2.0, 0.5], atol=1e-6)
    assert o.score == pytest.approx(1 / (1 + math.exp(-4.0)), rel=1e-6)


OBJECTS = [  # yaws in all four quadrants, velocities of every sign, every class, off-centre offsets
    _det("car", [12.3, -7.9, 0.8], [4.5, 1.9, 1.6], 0.4, [6.0, 1.0]),
    _det("pedestrian", [-3.05, 5.7, 0.9], [0.7, 0.6, 1.8], 2.2, [-1.2, 0.4]),
    _det("cyclist", [20.6, 4.15, 0.7], [1.8, 0.6, 1.7], -2.6, [-3.0, -4.0]),
    _det("car", [-8.2, -17.3, 1.1], [5.0, 2.1, 1.9], -0.9, [0.5, -7.5]),
]


def _head_maps(t: dict, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The head outputs a perfect network would give for targets ``t``: heatmap logits of the targets'
    Gaussians, the regression written at each object's cell."""
    H, W = hw
    p = np.clip(t["heatmap"], 1e-4, 1 - 1e-4)
    heat = torch.from_numpy(np.log(p / (1 - p)))[None]
    reg = np.zeros((len(REG_FIELDS), H * W), np.float32)
    for i, m, r in zip(t["index"], t["mask"], t["regression"], strict=True):
        if m:
            reg[:, i] = r
    return heat, torch.from_numpy(reg.reshape(1, len(REG_FIELDS), H, W))


def test_targets_decode_back_to_their_boxes():
    t = build_targets(OBJECTS, CLASSES, GRID, max_objects=8)
    assert t["mask"].sum() == len(OBJECTS)
    heat, reg = _head_maps(t, GRID.hw)
    boxes, scores, labels = TopKDecode(GRID.origin_xy, GRID.cell_m, k=10)(heat, reg)
    dets = to_detections(boxes[0].numpy(), scores[0].numpy(), labels[0].numpy(), 0, CLASSES, 0.5)
    assert len(dets.objects) == len(OBJECTS)  # one peak per object (the Gaussians' maxima)
    for want in OBJECTS:
        got = min(dets.objects, key=lambda o: np.hypot(*(o.box.center[:2] - want.box.center[:2])))
        assert got.label == want.label
        np.testing.assert_allclose(got.box.center, want.box.center, atol=1e-4)
        np.testing.assert_allclose(got.box.size, want.box.size, rtol=1e-5)
        dyaw = (got.box.yaw - want.box.yaw + math.pi) % (2 * math.pi) - math.pi
        assert abs(dyaw) < 1e-5
        np.testing.assert_allclose(got.velocity, want.velocity, atol=1e-5)
        assert got.score == pytest.approx(1 - 1e-4, rel=1e-6)  # the peak is the object's own cell


def test_bundled_model_grid_and_classes():
    """The bundled model's manifest: its class order is the one the simulator's truth is labelled with
    and the three files agree; its head grid is the edge spec's ±40.96 m at 0.64 m (0.32 m pillars,
    max-pooled by 2): 128 × 128 cells from (−40.96, −40.96)."""
    from edgefuse.model.checkpoint import load_model
    from edgefuse.runtime.bundled import FILES
    from edgefuse.runtime.manifest import read_onnx_manifest

    if not all(p.is_file() for p in FILES.values()):
        pytest.skip("no bundled model (python -m edgefuse.recipe)")
    net, manifest = load_model(FILES["pt"])
    for kind in ("onnx", "int8"):
        assert read_onnx_manifest(FILES[kind]).classes == manifest.classes
    assert tuple(manifest.classes) == CLASSES
    assert net.geometry.origin_xy == (-40.96, -40.96)
    assert net.head_hw == (128, 128) and net.head_cell_m == pytest.approx(0.64)
    assert net.decode.x0 == -40.96 and net.decode.y0 == -40.96 and net.decode.cell == pytest.approx(0.64)
