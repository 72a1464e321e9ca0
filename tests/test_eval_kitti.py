"""KITTI 3D AP|R40: box overlaps and AP values computed by hand, and the devkit's conventions (difficulty,
neighbouring classes, small detections, DontCare, per-class IoU thresholds)."""

import math

import numpy as np
import pytest

from edgefuse.errors import InputError
from edgefuse.eval.kitti import (
    KittiObject,
    ap_r40,
    convex_intersection_area,
    evaluate_kitti,
    iou_3d,
    parse_kitti_objects,
)


def _box(
    x=0.0, z=20.0, ry=0.0, *, kind="Car", y=1.5, hwl=(1.5, 2.0, 4.0), score=1.0, px=60.0, occ=0, trunc=0.0
):
    """A KITTI object at (x, y, z) camera-2 whose 2D box is ``px`` pixels high."""
    return KittiObject(kind, trunc, occ, 0.0, (100.0, 100.0, 200.0, 100.0 + px), hwl, (x, y, z), ry, score)


def test_iou_of_boxes_computed_on_paper():
    a = _box()  # 4 m long along x, 2 m wide along z, 1.5 m high: 12 m³
    assert iou_3d(a, a) == pytest.approx(1.0)
    # 1 m along its length: 3 × 2 × 1.5 = 9 shared, union 24 − 9
    assert iou_3d(a, _box(x=1.0)) == pytest.approx(9 / 15)
    # 0.5 m lower (y down): 1 m of height shared, 4 × 2 × 1 = 8 over 24 − 8
    assert iou_3d(a, _box(y=2.0)) == pytest.approx(8 / 16)
    # turned a quarter: 2 m (x) by 2 m (z) shared, × 1.5 = 6 over 24 − 6
    assert iou_3d(a, _box(ry=np.pi / 2)) == pytest.approx(6 / 18)
    # a 2 × 2 square and itself turned 45°: the shared octagon is 8 (√2 − 1) m², the IoU 1/√2
    sq = _box(hwl=(1.0, 2.0, 2.0))
    assert iou_3d(sq, _box(hwl=(1.0, 2.0, 2.0), ry=np.pi / 4)) == pytest.approx(1 / math.sqrt(2))
    assert iou_3d(a, _box(x=5.0)) == 0.0 and iou_3d(a, _box(y=3.0)) == 0.0


def test_rotation_follows_kittis_convention():
    # rotation_y π/4 points the length along (x, z) = (1, −1)/√2 (x' = x cos + z sin, z' = −x sin + z cos):
    # a 4 × 1 box moved by (1, −1) slides √2 along its own length, sharing (4 − √2) × 1 of its 4 × 1
    # footprint. Turned the other way, that move would be across its 1 m width: nothing shared.
    hwl = (1.0, 1.0, 4.0)
    a, b = _box(ry=np.pi / 4, hwl=hwl), _box(x=1.0, z=19.0, ry=np.pi / 4, hwl=hwl)
    assert iou_3d(a, b) == pytest.approx((4 - math.sqrt(2)) / (4 + math.sqrt(2)))
    mirrored = _box(x=1.0, z=21.0, ry=np.pi / 4, hwl=hwl)
    assert iou_3d(a, mirrored) == 0.0


def test_polygon_intersection_either_winding():
    sq = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    shifted = sq + [1.0, 1.0]
    assert convex_intersection_area(sq, shifted) == pytest.approx(1.0)
    assert convex_intersection_area(sq[::-1], shifted) == pytest.approx(1.0)
    assert convex_intersection_area(sq, shifted[::-1]) == pytest.approx(1.0)
    assert convex_intersection_area(sq, sq + [3.0, 0.0]) == 0.0


def _four_cars():
    return [_box(x) for x in (-12.0, -4.0, 4.0, 12.0)]


def test_ap_r40_of_a_curve_computed_by_hand():
    # 4 cars; detections by score: hit (0.9), false (0.8), hit (0.7), hit (0.6); one car missed.
    # Thresholds at the hits: recall/precision 1/4 → 1, 2/4 → 2/3, 3/4 → 3/4. Interpolated (max to the
    # right): 1 for r ≤ 0.25 (10 positions), 3/4 for 0.25 < r ≤ 0.75 (20), 0 above (10): 25 / 40.
    assert ap_r40(np.array([0.25, 0.5, 0.75]), np.array([1.0, 2 / 3, 0.75])) == pytest.approx(25 / 40)
    gt = _four_cars()
    det = [
        _box(-12.0, score=0.9),
        _box(0.0, z=40.0, score=0.8),
        _box(-4.0, score=0.7),
        _box(4.0, score=0.6),
    ]
    r = evaluate_kitti([gt], [det], ("car",))
    for d in ("easy", "moderate", "hard"):
        assert r["car"][d] == {"AP": pytest.approx(25 / 40), "n_gt": 4}


def test_a_perfect_detector_scores_one_even_on_few_objects():
    gt = _four_cars()
    det = [_box(o.location[0], score=s) for o, s in zip(gt, (0.9, 0.8, 0.7, 0.6), strict=True)]
    assert evaluate_kitti([gt], [det], ("car",))["car"]["moderate"]["AP"] == pytest.approx(1.0)


def test_difficulty_levels_from_height_occlusion_truncation():
    cases = {  # truth → counted in (easy, moderate, hard)
        _box(px=40.0): (1, 1, 1),
        _box(px=39.5): (0, 1, 1),  # under 40 px
        _box(px=24.9): (0, 0, 0),
        _box(occ=1): (0, 1, 1),
        _box(occ=2): (0, 0, 1),
        _box(trunc=0.2): (0, 1, 1),
        _box(trunc=0.4): (0, 0, 1),
        _box(trunc=0.6): (0, 0, 0),
    }
    for g, counted in cases.items():
        r = evaluate_kitti([[g]], [[]], ("car",))["car"]
        assert tuple(r[d]["n_gt"] for d in ("easy", "moderate", "hard")) == counted, g


def test_harder_truth_is_neither_found_nor_missed():
    gt = [_box(-5.0), _box(5.0, px=30.0)]  # the second is too small for easy
    found_both = evaluate_kitti([gt], [[_box(-5.0, score=0.5), _box(5.0, score=0.9)]], ("car",))["car"]
    assert found_both["easy"] == {"AP": pytest.approx(1.0), "n_gt": 1}  # the hit on it is no false positive
    missed_small = evaluate_kitti([gt], [[_box(-5.0, score=0.5)]], ("car",))["car"]
    assert missed_small["easy"]["AP"] == pytest.approx(1.0)
    assert missed_small["moderate"]["AP"] == pytest.approx(20 / 40)  # recall 1/2: 20 positions at 1


def test_neighbouring_classes_are_ignored_not_false():
    car, van = _box(-5.0), _box(5.0, kind="Van")
    dets = [_box(-5.0, score=0.5), _box(5.0, score=0.9)]  # a "car" on the van
    assert evaluate_kitti([[car, van]], [dets], ("car",))["car"]["moderate"] == {
        "AP": pytest.approx(1.0),
        "n_gt": 1,
    }
    truck = _box(5.0, kind="Truck")  # not a neighbour of Car: that detection is false
    # at threshold 0.5: one hit, one false → precision 1/2 at recall 1
    assert evaluate_kitti([[car, truck]], [dets], ("car",))["car"]["moderate"]["AP"] == pytest.approx(0.5)
    ped_hwl = (1.7, 0.6, 0.8)
    ped = _box(-5.0, kind="Pedestrian", hwl=ped_hwl)
    sitting = _box(5.0, kind="Person_sitting", hwl=ped_hwl)
    pdets = [
        _box(-5.0, kind="Pedestrian", hwl=ped_hwl, score=0.5),
        _box(5.0, kind="Pedestrian", hwl=ped_hwl, score=0.9),
    ]
    assert evaluate_kitti([[ped, sitting]], [pdets], ("pedestrian",))["pedestrian"]["hard"][
        "AP"
    ] == pytest.approx(1.0)


def test_small_detections_are_ignored():
    gt = [_box(-5.0)]
    dets = [_box(-5.0, score=0.5), _box(8.0, score=0.9, px=24.0)]  # 24 px: under every difficulty's height
    assert evaluate_kitti([gt], [dets], ("car",))["car"]["hard"]["AP"] == pytest.approx(1.0)
    dets[1] = _box(8.0, score=0.9, px=25.0)  # big enough for moderate and hard: a false positive there
    r = evaluate_kitti([gt], [dets], ("car",))["car"]
    assert r["easy"]["AP"] == pytest.approx(1.0) and r["hard"]["AP"] == pytest.approx(0.5)


def test_iou_threshold_per_class():
    # 1 m along the length: IoU 0.6 — under the car's 0.7, over the pedestrian's and cyclist's 0.5
    for kind, ap in (("Car", 0.0), ("Pedestrian", 1.0), ("Cyclist", 1.0)):
        r = evaluate_kitti([[_box(kind=kind)]], [[_box(x=1.0, kind=kind, score=0.9)]], (kind.lower(),))
        assert r[kind.lower()]["moderate"]["AP"] == pytest.approx(ap), kind


def test_dontcare_regions_change_nothing_in_3d():
    labels = parse_kitti_objects(
        "Car 0.00 0 -1.57 100.00 100.00 200.00 160.00 1.50 2.00 4.00 -5.00 1.50 20.00 0.00\n"
        "DontCare -1 -1 -10 300.00 100.00 400.00 160.00 -1 -1 -1 -1000 -1000 -1000 -10\n",
        "000000.txt",
    )
    results = parse_kitti_objects(
        "Car -1 -1 0 100 100 200 160 1.5 2.0 4.0 -5.0 1.5 20.0 0.0 0.5\n"
        "Car -1 -1 0 310 105 390 155 1.5 2.0 4.0 9.0 1.5 30.0 0.0 0.9\n",  # inside the DontCare box
    )
    assert (
        labels[1].type == "DontCare" and results[1].score == 0.9 and labels[0].dimensions == (1.5, 2.0, 4.0)
    )
    assert evaluate_kitti([labels], [results], ("car",))["car"]["moderate"]["AP"] == pytest.approx(0.5)


def test_no_counted_truth_is_nan_and_bad_input_says_where():
    assert math.isnan(evaluate_kitti([[]], [[_box()]], ("car",))["car"]["easy"]["AP"])
    with pytest.raises(InputError, match=r"000001.txt:2: expected 15 \(label\) or 16"):
        parse_kitti_objects("Car 0 0 0 1 2 3 4 1 1 1 0 0 0 0\nCar 0 0\n", "000001.txt")
    with pytest.raises(ValueError, match="classes: expected some of"):
        evaluate_kitti([[]], [[]], ("truck",))


def test_eval_kitti_command_reads_label_and_result_folders(tmp_path, capsys):
    import json

    from edgefuse.cli import main

    labels, results = tmp_path / "label_2", tmp_path / "results" / "data"
    labels.mkdir()
    results.mkdir(parents=True)
    car = "Car 0.00 0 0 100 100 200 160 1.5 2.0 4.0 {x} 1.5 20.0 0.0"
    (labels / "000000.txt").write_text(car.format(x=-5.0) + "\n" + car.format(x=5.0) + "\n")
    (labels / "000001.txt").write_text("")
    (results / "000000.txt").write_text(car.format(x=-5.0) + " 0.8\n")  # one of the two found
    (results / "000001.txt").write_text(car.format(x=9.0) + " 0.9\n")  # a false positive
    assert main(["eval-kitti", str(labels), str(tmp_path / "results"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    # the false positive scores above the hit: recall 1/2 at precision 1/2 → 20 positions at 0.5
    assert r["frames"] == 2 and r["AP"]["car"]["moderate"] == pytest.approx(10 / 40)
    assert r["n_gt"]["car"] == {"easy": 2, "moderate": 2, "hard": 2} and r["AP"]["pedestrian"]["easy"] is None
    assert main(["eval-kitti", str(labels), str(tmp_path / "results")]) == 0
    assert "KITTI 3D AP|R40 (2 frames)" in capsys.readouterr().out
    (results / "000002.txt").write_text("")
    assert main(["eval-kitti", str(labels), str(results)]) == 2
    assert "no label file for ['000002.txt']" in capsys.readouterr().err
