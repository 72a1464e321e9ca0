"""The nuScenes detection metric against nuscenes-devkit's own values, and its conventions by hand.

``tests/nuscenes_oracle/values.json`` holds random prediction/ground-truth sets and what nuscenes-devkit
computed for them (made by ``make nuscenes-oracle``; see the README there): every number is compared here
within 1e-6, without the devkit installed. The hand-made cases below each break when one nuScenes
convention is broken (yaw period, aligned-box IoU, the recall ≥ 0.1 cut, the ego-distance range, the
boxes without points, ties in score, NaN TP errors in NDS).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgefuse.eval.metrics import CLASS_RULES, NUSCENES_RULES, TP_ERRORS, evaluate_detections
from edgefuse.types import ATTRIBUTES, CLASSES, Box3D, Detection, Detections

ORACLE = json.loads((Path(__file__).parent / "nuscenes_oracle" / "values.json").read_text())
DEVKIT_TP = {"ATE": "trans_err", "ASE": "scale_err", "AOE": "orient_err", "AVE": "vel_err", "AAE": "attr_err"}


def _detection(o: dict) -> Detection:
    return Detection(
        o["label"],
        o["score"],
        Box3D(o["center"], o["size"], o["yaw"]),
        np.array(o["velocity"]),
        attribute=o["attribute"],
        lidar_points=o["lidar_points"],
        radar_points=o["radar_points"],
    )


def _close(ours: float, devkit: float | None, what: str) -> None:
    if devkit is None:
        assert math.isnan(ours), f"{what}: devkit NaN, ours {ours}"
    else:
        assert ours == pytest.approx(devkit, abs=1e-6), what


def test_the_oracle_has_enough_random_sets():
    assert ORACLE["devkit"].startswith("nuscenes-devkit ")
    assert sum(s["name"] != "perfect" for s in ORACLE["sets"]) >= 5
    assert all(len(s["frames"]) >= 4 for s in ORACLE["sets"])


@pytest.mark.parametrize("case", ORACLE["sets"], ids=[s["name"] for s in ORACLE["sets"]])
def test_every_metric_equals_the_devkits(case):
    frames = case["frames"]
    truth = [Detections(f, tuple(_detection(o) for o in fr["truth"])) for f, fr in enumerate(frames)]
    preds = [Detections(f, tuple(_detection(o) for o in fr["predictions"])) for f, fr in enumerate(frames)]
    rules = {label: NUSCENES_RULES[name] for label, name in case["classes"].items()}
    r = evaluate_detections(preds, truth, tuple(case["classes"]), rules)
    dk = case["devkit"]
    for label, name in case["classes"].items():
        row = r["per_class"][label]
        assert row["n_gt"] == dk["n_gt"][name], f"{label}: ground truth after filtering"
        for t, ap in dk["label_aps"][name].items():
            _close(row[f"AP@{float(t):g}m"], ap, f"{label} AP@{t}")
        _close(row["AP"], dk["mean_dist_aps"][name], f"{label} AP")
        for k in TP_ERRORS:
            _close(row[k], dk["label_tp_errors"][name][DEVKIT_TP[k]], f"{label} {k}")
    _close(r["mAP"], dk["mean_ap"], "mAP")
    for k in TP_ERRORS:
        _close(r[f"m{k}"], dk["tp_errors"][DEVKIT_TP[k]], f"m{k}")
    _close(r["NDS"], dk["nd_score"], "NDS")


# ---- hand-made cases ----


def _obj(label="car", x=10.0, y=0.0, score=1.0, yaw=0.0, size=(4.0, 2.0, 1.5), v=(0.0, 0.0), **kw):
    return Detection(label, score, Box3D([x, y, 0.8], size, yaw), np.array(v), **kw)


def _one(objs) -> list[Detections]:
    return [Detections(0, tuple(objs))]


def _score(preds, truth, classes=("car",), rules=None):
    return evaluate_detections(_one(preds), _one(truth), classes, rules)


def test_perfect_predictions_score_one_on_every_metric():
    rng = np.random.default_rng(0)
    truth, preds = [], []
    for f in range(4):
        gt = []
        for label in CLASSES:
            for _ in range(3):
                r, a = rng.uniform(1, 35), rng.uniform(-np.pi, np.pi)
                gt.append(
                    _obj(
                        label,
                        r * np.cos(a),
                        r * np.sin(a),
                        1.0,
                        rng.uniform(-4, 4),
                        rng.uniform(0.5, 4, 3),
                        rng.normal(size=2),
                        attribute=str(rng.choice(ATTRIBUTES[label])),
                        lidar_points=5,
                    )
                )
        truth.append(Detections(f, tuple(gt)))
        preds.append(
            Detections(
                f,
                tuple(
                    Detection(o.label, float(rng.uniform(0.1, 1)), o.box, o.velocity, attribute=o.attribute)
                    for o in gt
                ),
            )
        )
    r = evaluate_detections(preds, truth, CLASSES)
    assert r["mAP"] == pytest.approx(1.0, abs=1e-12) and r["NDS"] == pytest.approx(1.0, abs=1e-12)
    for k in TP_ERRORS:
        assert r[f"m{k}"] == pytest.approx(0.0, abs=1e-12)
    for row in r["per_class"].values():
        assert row["AP"] == pytest.approx(1.0, abs=1e-12) and row["n_gt"] == 12
        assert all(row[k] == pytest.approx(0.0, abs=1e-12) for k in TP_ERRORS)


def test_orientation_error_has_period_two_pi_and_pi_for_barriers():
    gt = _obj(yaw=0.3)
    flipped = _obj(yaw=0.3 + np.pi)
    assert _score([flipped], [gt])["mAOE"] == pytest.approx(np.pi)
    assert _score([_obj(yaw=0.3 - 4 * np.pi + 0.5)], [gt])["mAOE"] == pytest.approx(0.5)  # whole turns
    assert _score([_obj(yaw=0.3 - 2.5)], [gt])["mAOE"] == pytest.approx(2.5)
    barrier = {"car": NUSCENES_RULES["barrier"]}  # front and back alike: period π
    assert _score([flipped], [gt], rules=barrier)["mAOE"] == pytest.approx(0.0, abs=1e-12)
    assert _score([_obj(yaw=0.3 - 2.5)], [gt], rules=barrier)["mAOE"] == pytest.approx(np.pi - 2.5)


def test_scale_error_is_one_minus_iou_of_aligned_boxes():
    gt = _obj(size=(4.0, 2.0, 1.5))
    # half as long: intersection 2·2·1.5 = 6 over union 12 + 6 − 6 = 12
    assert _score([_obj(size=(2.0, 2.0, 1.5))], [gt])["mASE"] == pytest.approx(0.5)
    # shifted 1 m and turned 1 rad, same size: aligned first, so no scale error
    assert _score([_obj(x=11.0, yaw=1.0)], [gt])["mASE"] == pytest.approx(0.0)
    # shorter, wider, lower: the intersection takes the smaller side on each axis, 3·2·1 = 6, over the
    # union 4·2·1.5 + 3·2.5·1 − 6 = 13.5
    assert _score([_obj(size=(3.0, 2.5, 1.0))], [gt])["mASE"] == pytest.approx(1 - 6 / 13.5)


def test_tp_errors_are_the_running_mean_over_recall_from_0_11():
    # 2 truths, two hits: score 0.9 with ATE 0.2, score 0.8 with ATE 0.6. Recall 0.5 then 1, so the
    # confidence at recall r is 0.9 up to 0.5, then falls linearly to 0.8 at 1; the running mean of ATE is
    # 0.2 then 0.4, read at that confidence: 0.2 + 0.4 (r − 0.5) above 0.5. Over r = 0.11 … 1.00:
    # (40 · 0.2 + Σ_{k=51..100} (0.2 + 0.4 (k/100 − 0.5))) / 90 = (8 + 15.1) / 90.
    truth = [_obj(x=10.0), _obj(x=-10.0)]
    preds = [_obj(x=10.2, score=0.9), _obj(x=-10.6, score=0.8)]
    assert _score(preds, truth)["mATE"] == pytest.approx(23.1 / 90)


def test_tp_errors_below_recall_0_11_are_one():
    hit = _obj(x=0.3, y=0.0, score=0.9)
    nine = [_obj(x=0.0, y=float(5 * k)) for k in range(9)]
    assert _score([hit], nine)["mATE"] == pytest.approx(0.3)  # recall 1/9 > 0.1
    ten = [*nine, _obj(x=0.0, y=-5.0)]
    r = _score([hit], ten)  # recall 0.1 exactly: no point above it
    assert all(r[f"m{k}"] == 1.0 for k in TP_ERRORS)


def test_range_is_the_bev_distance_from_the_ego_per_class():
    truth = [
        _obj(x=49.9),
        _obj(x=30.0, y=40.0),  # 50 m: out (scored only below the range)
        Detection("car", 1.0, Box3D([0.0, -49.0, 30.0], [4, 2, 1.5], 0.0)),  # high up, 49 m in BEV: in
        _obj("pedestrian", x=39.9, size=(0.7, 0.7, 1.7)),
        _obj("pedestrian", x=40.0, size=(0.7, 0.7, 1.7)),
        _obj("cyclist", x=-45.0, size=(1.8, 0.6, 1.5)),  # 40 m for bicycles
    ]
    r = _score([], truth, classes=CLASSES)
    assert [r["per_class"][c]["n_gt"] for c in CLASSES] == [2, 1, 0]
    # a prediction beyond the range is not a false positive
    preds = [_obj(x=49.9, score=0.5), _obj(x=60.0, score=0.9), _obj(x=30.0, y=40.0, score=0.8)]
    assert _score(preds, truth)["per_class"]["car"]["AP@4m"] == pytest.approx(
        _score(preds[:1], truth)["per_class"]["car"]["AP@4m"]
    )
    # recall 1/2 at precision 1: 40 of the 90 recall points score 0.9 / 0.9
    assert _score(preds, truth)["per_class"]["car"]["AP@4m"] == pytest.approx(40 / 90)


def test_objects_without_points_are_not_scored():
    truth = [
        _obj(x=5.0, lidar_points=0, radar_points=0),
        _obj(x=10.0, lidar_points=0),  # radar not counted: none of what was counted saw it
        _obj(x=15.0, lidar_points=0, radar_points=2),
        _obj(x=20.0),  # not counted at all: scored
        _obj(x=25.0, lidar_points=3),
    ]
    r = _score([_obj(x=15.0, score=0.9)], truth)
    assert r["per_class"]["car"]["n_gt"] == 3
    # a prediction on an object without points is a false positive
    fp_first = _score([_obj(x=5.0, score=0.9), _obj(x=20.0, score=0.5)], truth[:2] + truth[3:4])
    assert fp_first["per_class"]["car"]["n_gt"] == 1
    assert fp_first["per_class"]["car"]["AP@4m"] == pytest.approx(
        sum(max(0.5 * k / 100 - 0.1, 0.0) for k in range(11, 101)) / 90 / 0.9  # FP then TP
    )


def test_attribute_error():
    gt = _obj(attribute="vehicle.parked")
    assert _score([_obj(attribute="vehicle.parked")], [gt])["mAAE"] == 0.0
    assert _score([_obj(attribute="vehicle.moving")], [gt])["mAAE"] == 1.0
    assert _score([_obj()], [gt])["mAAE"] == 1.0  # no attribute predicted: wrong
    # truth without attributes: every attribute error undefined, and the devkit then scores 1
    assert _score([_obj(attribute="vehicle.parked")], [_obj()])["mAAE"] == 1.0
    # undefined ones are skipped in the running mean: one right, one undefined
    truth = [gt, _obj(x=-10.0)]
    preds = [_obj(score=0.9, attribute="vehicle.parked"), _obj(x=-10.0, score=0.8)]
    assert _score(preds, truth)["mAAE"] == 0.0


def test_a_class_without_truth_scores_zero_and_counts_in_the_means():
    r = _score([_obj(score=0.9)], [_obj()], classes=("car", "pedestrian"))
    assert r["per_class"]["pedestrian"]["AP"] == 0.0 and r["per_class"]["pedestrian"]["n_gt"] == 0
    assert all(r["per_class"]["pedestrian"][k] == 1.0 for k in TP_ERRORS)
    assert r["mAP"] == pytest.approx(0.5)
    assert r["mATE"] == pytest.approx(0.5)  # (0 + 1) / 2
    # a log without pedestrians: skip_absent scores the classes it has
    s = evaluate_detections(_one([_obj(score=0.9)]), _one([_obj()]), ("car", "pedestrian"), skip_absent=True)
    assert list(s["per_class"]) == ["car"] and s["absent"] == ["pedestrian"]
    assert s["mAP"] == pytest.approx(1.0) and s["mATE"] == 0.0
    none = evaluate_detections(_one([_obj()]), _one([]), ("car",), skip_absent=True)
    assert none["absent"] == ["car"] and math.isnan(none["mAP"]) and math.isnan(none["NDS"])


def test_equal_scores_match_the_later_prediction_first():
    # both within 2 m of the one truth, same score: the devkit takes the later one first
    preds = [_obj(x=10.3, score=0.5), _obj(x=11.5, score=0.5)]
    assert _score(preds, [_obj()])["mATE"] == pytest.approx(1.5)
    assert _score(preds[::-1], [_obj()])["mATE"] == pytest.approx(0.3)


def test_unscored_tp_errors_are_nan_and_count_zero_in_nds():
    gt = _obj(attribute="vehicle.parked")
    r = _score([_obj(attribute="vehicle.parked")], [gt], rules={"car": NUSCENES_RULES["barrier"]})
    assert r["mAP"] == pytest.approx(1.0) and r["mATE"] == 0.0 and r["mASE"] == 0.0 and r["mAOE"] == 0.0
    assert math.isnan(r["mAVE"]) and math.isnan(r["mAAE"])
    assert r["NDS"] == pytest.approx((5 * 1.0 + 3) / 10)


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match="1 prediction frames for 2"):
        evaluate_detections(_one([]), _one([]) * 2, ("car",))
    with pytest.raises(ValueError, match=r"rules: expected a ClassRule for \['cyclist'\]"):
        evaluate_detections(_one([]), _one([]), ("car", "cyclist"), {"car": CLASS_RULES["car"]})
    with pytest.raises(ValueError, match="attribute: expected '' or one of"):
        _obj(attribute="pedestrian.moving")
    with pytest.raises(ValueError, match="lidar_points: expected None or a count >= 0"):
        _obj(lidar_points=-1)
