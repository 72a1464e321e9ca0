"""nuScenes AP and AVE on simple frames: perfect positions score 1, shifted ones lower, hand-derived curves
(the full metric against nuscenes-devkit: tests/test_eval_nuscenes.py)."""

import numpy as np
import pytest

from edgefuse.eval.metrics import evaluate_detections
from edgefuse.types import CLASSES, Box3D, Detection, Detections


def _det(label, x, y, score=1.0, v=(0.0, 0.0)):
    return Detection(label, score, Box3D([x, y, 0.8], [4.0, 1.8, 1.5], 0.3), np.array(v))


def _frames(seed=0, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for f in range(n):
        objs = []
        for label in CLASSES:
            for _ in range(rng.integers(1, 4)):
                objs.append(_det(label, rng.uniform(-40, 40), rng.uniform(-40, 40), 1.0, rng.normal(size=2)))
        out.append(Detections(f, tuple(objs)))
    return out


def _shift(frames, dx, dv=0.0, score_rng=None):
    out = []
    for d in frames:
        objs = []
        for o in d.objects:
            s = float(score_rng.uniform(0.2, 1.0)) if score_rng is not None else 0.9
            objs.append(
                Detection(
                    o.label, s, Box3D(o.box.center + [dx, 0, 0], o.box.size, o.box.yaw), o.velocity + dv
                )
            )
        out.append(Detections(d.stamp_ns, tuple(objs)))
    return out


def test_perfect_positions_score_one():
    gt = _frames()
    r = evaluate_detections(_shift(gt, 0.0, score_rng=np.random.default_rng(1)), gt, CLASSES)
    assert r["mAP"] == pytest.approx(1.0)
    assert r["mATE"] == r["mASE"] == r["mAOE"] == r["mAVE"] == pytest.approx(0.0)
    assert r["mAAE"] == 1.0  # the truth has no attributes: nuScenes scores that 1
    for label in CLASSES:
        assert r["per_class"][label]["AP"] == pytest.approx(1.0)


def test_shifted_prediction_scores_lower():
    gt = _frames()
    # 1.5 m off: misses at 0.5 and 1 m, hits at 2 and 4 m -> AP 0, 0, 1, 1 -> mean 0.5
    r = evaluate_detections(_shift(gt, 1.5), gt, CLASSES)
    assert r["mAP"] == pytest.approx(0.5)
    assert r["per_class"]["car"]["AP@0.5m"] == 0.0
    assert r["per_class"]["car"]["AP@4m"] == pytest.approx(1.0)
    r2 = evaluate_detections(_shift(gt, 0.7), gt, CLASSES)
    assert r2["mAP"] == pytest.approx(0.75)


def test_velocity_error_is_the_mean_speed_error():
    gt = _frames()
    r = evaluate_detections(_shift(gt, 0.0, dv=np.array([0.3, 0.4])), gt, CLASSES)
    assert r["mAVE"] == pytest.approx(0.5)


def test_ap_of_a_false_positive_then_true_positive():
    # 1 ground truth; predictions FP (best score) then TP: recall 0 -> 1, precision 0 -> 0.5, linear
    # interpolation p(r) = r / 2 between them; nuScenes keeps r in 0.11..1.00 and subtracts 0.1.
    expected = sum(max(0.5 * (k / 100) - 0.1, 0.0) for k in range(11, 101)) / 90 / 0.9
    gt = [Detections(0, (_det("car", 10, 0),))]
    pred = [Detections(0, (_det("car", 30, 0, 0.9), _det("car", 10.1, 0, 0.5)))]
    r = evaluate_detections(pred, gt, ("car",))
    assert r["mAP"] == pytest.approx(expected)


def test_missed_objects_and_empty_classes():
    gt = [Detections(0, (_det("car", 5, 5), _det("car", 15, 5)))]
    pred = [Detections(0, (_det("car", 5, 5, 0.8),))]
    r = evaluate_detections(pred, gt, CLASSES)
    # recall stops at 0.5 with precision 1: grid points 0.11..0.50 score 0.9/0.9, the rest 0
    assert r["per_class"]["car"]["AP"] == pytest.approx(40 / 90)
    # no ground truth: AP 0, and (as in nuScenes) still one of the classes mAP averages over
    assert r["per_class"]["pedestrian"]["AP"] == 0.0 and r["per_class"]["pedestrian"]["n_gt"] == 0
    assert r["mAP"] == pytest.approx(40 / 90 / 3)
    # a prediction of the wrong class never matches
    wrong = [Detections(0, (_det("cyclist", 5, 5, 0.8),))]
    assert evaluate_detections(wrong, gt, CLASSES)["mAP"] == 0.0


def test_camera_view_keeps_what_projects_into_the_image():
    """A camera at base_link (0, 0, 1.5) looking along +x, f = 200 px, principal point (200, 112) on a
    400-px-wide image: 90° horizontal field of view, so an object is in view iff |y| < x (base_link y
    left maps to image u decreasing)."""
    from edgefuse.eval.evaluate import in_camera_view

    K = np.array([[200.0, 0, 200.0], [0, 200.0, 112.0], [0, 0, 1]])
    R = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])  # optical ← base_link (x right = −y, y down = −z)
    t = -R @ np.array([0.0, 0.0, 1.5])
    P = (K @ np.c_[R, t])[None]  # (1 camera, 3, 4)
    xs_ys = [(10.0, 0.0), (10.0, 9.9), (10.0, -9.9), (10.0, 10.5), (10.0, -10.5), (-10.0, 0.0), (0.05, 0.0)]
    dets = Detections(0, tuple(_det("car", x, y) for x, y in xs_ys))
    kept = in_camera_view(dets, P, (224, 400))
    assert [tuple(o.box.center[:2]) for o in kept.objects] == [(10.0, 0.0), (10.0, 9.9), (10.0, -9.9)]
    two = np.concatenate([P, _behind(K)])  # a second, rear-facing camera
    kept2 = in_camera_view(dets, two, (224, 400))
    assert len(kept2.objects) == 4  # the rear camera adds (-10, 0)
    assert in_camera_view(Detections(0, ()), P, (224, 400)).objects == ()


def _behind(K):
    R = np.array([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]])  # looking along −x: x right = +y
    t = -R @ np.array([0.0, 0.0, 1.5])
    return (K @ np.c_[R, t])[None]
