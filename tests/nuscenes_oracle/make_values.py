"""Score random detection sets with nuscenes-devkit and write inputs and the devkit's values to values.json.

Runs in the oracle environment only (``make nuscenes-oracle``: ``.venv-nuscenes`` with nuscenes-devkit,
which pins numpy < 2); edgefuse is not imported. ``tests/test_eval_nuscenes.py`` scores the same inputs
with :mod:`edgefuse.eval.metrics` and compares every number. See README.md beside this file.

Each set is a few frames of ground truth and predictions in the ego frame (base_link: the ego pose is the
origin), made from a fixed seed: objects inside, near, exactly at and beyond the class range, with 0 LiDAR
and radar points, uncounted, with and without attributes; predictions with centre/size/yaw/velocity
noise, flipped headings, duplicates, false positives and, in one set, tied scores. The devkit's own code
does the rest, unmodified: ``add_center_dist`` and ``filter_eval_boxes`` (range, points, bike racks — a
stand-in for the nuScenes tables gives the ego pose and no racks), then ``DetectionEval.evaluate``
(``accumulate``, ``calc_ap``, ``calc_tp``, ``DetectionMetrics``) on a ``DetectionEval`` made without its
dataset loading, with ``cfg.class_names`` narrowed to the set's classes.
"""

from __future__ import annotations

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.data_classes import EvalBoxes
from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes
from nuscenes.eval.detection.data_classes import DetectionBox
from nuscenes.eval.detection.evaluate import DetectionEval
from pyquaternion import Quaternion

OUT = Path(__file__).with_name("values.json")

# edgefuse's classes: typical size (length, width, height) m, speed scale m/s, attributes (nuScenes names)
KINDS = {
    "car": ((4.5, 1.9, 1.6), 6.0, ("vehicle.moving", "vehicle.parked", "vehicle.stopped")),
    "pedestrian": (
        (0.7, 0.7, 1.75),
        1.2,
        ("pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"),
    ),
    "cyclist": ((1.8, 0.6, 1.5), 4.0, ("cycle.with_rider", "cycle.without_rider")),
}
DEFAULT_CLASSES = {"car": "car", "pedestrian": "pedestrian", "cyclist": "bicycle"}

FLIPS = {"p_flip": 0.4}  # barriers: a heading off by π is no error
# name, seed, frames, {edgefuse label: nuScenes name}, options
SETS = [
    ("mixed_a", 1, 6, DEFAULT_CLASSES, {}),
    ("mixed_b", 2, 8, DEFAULT_CLASSES, {"noise_m": 0.3}),
    ("noisy", 3, 5, DEFAULT_CLASSES, {"noise_m": 1.2, "n_fp": 6}),
    ("tied_scores", 4, 6, DEFAULT_CLASSES, {"score_decimals": 1, "p_duplicate": 0.3}),
    ("a_class_without_truth", 5, 5, DEFAULT_CLASSES, {"no_truth": ("cyclist",)}),
    ("a_class_without_predictions", 6, 5, DEFAULT_CLASSES, {"no_predictions": ("pedestrian",)}),
    ("low_recall", 7, 6, DEFAULT_CLASSES, {"p_detect": 0.08, "n_fp": 2}),
    ("barrier_and_cone", 8, 6, {"car": "barrier", "pedestrian": "traffic_cone", "cyclist": "bicycle"}, FLIPS),
    ("only_barrier_and_cone", 9, 4, {"car": "barrier", "pedestrian": "traffic_cone"}, FLIPS),
    ("perfect", 10, 4, DEFAULT_CLASSES, {"perfect": True}),
]
TP_NAMES = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")


def random_truth(rng: np.random.Generator, label: str, range_m: float) -> dict:
    size, speed, attrs = KINDS[label]
    u = rng.uniform()
    if u < 0.08:  # exactly at the range limit (the devkit keeps distance < range)
        x, y = [(range_m, 0.0), (0.0, -range_m), (-range_m, 0.0)][int(rng.integers(3))]
        x, y = float(x), float(y)
    else:
        r = rng.uniform(range_m - 0.5, range_m + 0.5) if u < 0.25 else rng.uniform(0.0, 1.2 * range_m)
        a = rng.uniform(-math.pi, math.pi)
        x, y = r * math.cos(a), r * math.sin(a)
    p = rng.uniform()
    lidar = None if p < 0.15 else 0 if p < 0.35 else int(rng.integers(1, 300))
    radar = None if rng.uniform() < 0.5 else int(rng.integers(0, 4))
    return {
        "label": label,
        "center": [x, y, float(rng.uniform(0.2, 1.5))],
        "size": [float(s * rng.uniform(0.8, 1.25)) for s in size],
        "yaw": float(rng.uniform(-math.pi, math.pi)),
        "velocity": [float(v) for v in rng.normal(0.0, speed, 2)],
        "score": 1.0,
        "attribute": str(rng.choice(attrs)) if rng.uniform() < 0.8 else "",
        "lidar_points": lidar,
        "radar_points": radar,
    }


def prediction_of(
    rng: np.random.Generator, gt: dict, label: str, noise_m: float, perfect: bool, p_flip: float
) -> dict:
    if perfect:
        return {**gt, "score": float(rng.uniform(0.1, 1.0))}  # same point counts: filtered alike
    _, speed, attrs = KINDS[label]
    yaw = gt["yaw"] + rng.normal(0.0, 0.3) + (math.pi if rng.uniform() < p_flip else 0.0)
    if rng.uniform() < 0.1:
        yaw += 2 * math.pi * int(rng.integers(-2, 3))  # same heading, other turn
    attr = gt["attribute"] if gt["attribute"] and rng.uniform() < 0.7 else str(rng.choice([*attrs, ""]))
    return {
        "label": label,
        "center": [float(c + rng.normal(0.0, noise_m)) for c in gt["center"]],
        "size": [float(s * math.exp(rng.normal(0.0, 0.1))) for s in gt["size"]],
        "yaw": float(yaw),
        "velocity": [float(v + rng.normal(0.0, 0.3 * speed)) for v in gt["velocity"]],
        "score": float(rng.uniform(0.05, 1.0)),
        "attribute": attr,
        "lidar_points": None,
        "radar_points": None,
    }


def false_positive(rng: np.random.Generator, label: str, range_m: float) -> dict:
    fp = prediction_of(rng, random_truth(rng, label, range_m), label, 0.0, False, 0.0)
    return {**fp, "score": float(rng.uniform(0.05, 0.9))}


def make_frames(rng: np.random.Generator, n_frames: int, classes: dict, ranges: dict, opt: dict) -> list:
    perfect = opt.get("perfect", False)
    noise_m = opt.get("noise_m", 0.6)
    p_flip = opt.get("p_flip", 0.1)  # heading turned by π
    frames = []
    for _ in range(n_frames):
        truth, preds = [], []
        for label in classes:
            range_m = ranges[classes[label]]
            predicted = label not in opt.get("no_predictions", ())
            n = 0 if label in opt.get("no_truth", ()) else int(rng.integers(0, 7))
            for _ in range(n):
                gt = random_truth(rng, label, range_m)
                truth.append(gt)
                if predicted and (perfect or rng.uniform() < opt.get("p_detect", 0.8)):
                    preds.append(prediction_of(rng, gt, label, noise_m, perfect, p_flip))
                    if not perfect and rng.uniform() < opt.get("p_duplicate", 0.15):
                        preds.append(prediction_of(rng, gt, label, noise_m, False, p_flip))
            if predicted and not perfect:
                n_fp = int(rng.integers(0, opt.get("n_fp", 3) + 1))
                preds += [false_positive(rng, label, range_m) for _ in range(n_fp)]
        if "score_decimals" in opt:
            for p in preds:
                p["score"] = max(round(p["score"], opt["score_decimals"]), 0.1)
        order = rng.permutation(len(preds))
        frames.append({"truth": truth, "predictions": [preds[i] for i in order]})
    return frames


def detection_box(token: str, o: dict, name: str) -> DetectionBox:
    counts = [c for c in (o["lidar_points"], o["radar_points"]) if c is not None]
    length, width, height = o["size"]
    return DetectionBox(
        sample_token=token,
        translation=tuple(o["center"]),
        size=(width, length, height),  # the devkit's w, l, h
        rotation=tuple(Quaternion(axis=[0.0, 0.0, 1.0], radians=o["yaw"]).elements),
        velocity=tuple(o["velocity"]),
        num_pts=sum(counts) if counts else -1,
        detection_name=name,
        detection_score=float(o["score"]),
        attribute_name=o["attribute"],
    )


class Tables:
    """The nuScenes tables add_center_dist and filter_eval_boxes read: each frame's ego pose is the origin
    and no frame has a bicycle rack."""

    def get(self, table: str, token: str) -> dict:
        if table == "sample":
            return {"data": {"LIDAR_TOP": token}, "anns": []}
        if table == "sample_data":
            return {"ego_pose_token": token}
        if table == "ego_pose":
            return {"translation": [0.0, 0.0, 0.0]}
        raise KeyError(f"Tables.get: no table {table!r}")


def devkit_scores(frames: list, classes: dict) -> dict:
    cfg = config_factory("detection_cvpr_2019")
    tables = Tables()
    boxes = {}
    for key in ("truth", "predictions"):
        eb = EvalBoxes()
        for f, frame in enumerate(frames):
            token = f"frame{f}"
            eb.add_boxes(token, [detection_box(token, o, classes[o["label"]]) for o in frame[key]])
        boxes[key] = filter_eval_boxes(tables, add_center_dist(tables, eb), cfg.class_range)
    cfg.class_names = list(classes.values())
    ev = DetectionEval.__new__(DetectionEval)  # the scoring loop without the dataset loading
    ev.cfg, ev.gt_boxes, ev.pred_boxes, ev.verbose = cfg, boxes["truth"], boxes["predictions"], False
    metrics, _ = ev.evaluate()
    m = metrics.serialize()
    return {
        "label_aps": {c: {str(t): v for t, v in d.items()} for c, d in m["label_aps"].items()},
        "mean_dist_aps": m["mean_dist_aps"],
        "mean_ap": m["mean_ap"],
        "label_tp_errors": {c: {k: d[k] for k in TP_NAMES} for c, d in m["label_tp_errors"].items()},
        "tp_errors": m["tp_errors"],
        "tp_scores": m["tp_scores"],
        "nd_score": m["nd_score"],
        "n_gt": {c: sum(b.detection_name == c for b in boxes["truth"].all) for c in classes.values()},
    }


def nan_to_none(x):
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def main() -> int:
    cfg = config_factory("detection_cvpr_2019")
    sets = []
    for name, seed, n_frames, classes, opt in SETS:
        rng = np.random.default_rng(seed)
        frames = make_frames(rng, n_frames, classes, cfg.class_range, opt)
        scores = devkit_scores(frames, classes)
        sets.append({"name": name, "seed": seed, "classes": classes, "frames": frames, "devkit": scores})
        print(f"{name}: mAP {scores['mean_ap']:.4f}  NDS {scores['nd_score']:.4f}")
    out = {
        "devkit": f"nuscenes-devkit {version('nuscenes-devkit')}",
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "config": "detection_cvpr_2019",
        "sets": sets,
    }
    OUT.write_text(json.dumps(nan_to_none(out), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
