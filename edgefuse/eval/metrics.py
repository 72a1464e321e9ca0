"""The nuScenes detection metric (numpy only): mAP, the true-positive errors ATE, ASE, AOE, AVE, AAE and NDS,
by the definitions of nuscenes-devkit's detection evaluation (tested against the devkit itself:
``tests/nuscenes_oracle/``).

- Filtering (both predictions and ground truth, before anything else): an object is scored only if its
  BEV centre is closer to the ego origin (base_link) than its class's range (:class:`ClassRule`,
  ``range_m``: 50 m for vehicles, 40 m for pedestrians and bicycles) and, where its LiDAR/radar points
  were counted, at least one point fell inside it.
- Matching, per class and distance threshold: predictions of all frames in descending score (ties: the
  later prediction first, as the devkit sorts); each takes the nearest still-unmatched ground truth of its
  frame by BEV centre distance, a true positive if that distance is below the threshold, else a false
  positive.
- AP per class and threshold: precision interpolated at 101 recall points (0, 0.01, …, 1; 0 beyond the
  highest recall reached); the points with recall > 0.1 kept, precision − 0.1 clipped at 0, averaged and
  divided by 0.9. A class without ground truth (after filtering) or without a true positive scores 0.
  ``mAP``: the mean over classes of the mean over the thresholds 0.5, 1, 2, 4 m.
- TP errors, per class from the 2 m matching: per true positive the BEV centre distance (ATE, m), 1 − IoU
  of the two boxes aligned on centre and heading (ASE), the smallest yaw difference (AOE, rad; the period
  is 2π, π for classes whose front is undefined), ‖v_pred − v_gt‖ (AVE, m/s) and 1 − [attribute right]
  (AAE; undefined where the truth carries no attribute). Each is turned into its running mean in score
  order (undefined values skipped; all undefined → 1), that curve is read at each of the 101 recall
  points' confidence, and the error is its mean over recall 0.11 … the highest recall reached; 1 if that
  is below 0.11. Errors a class's rule leaves out (``unscored``) are NaN.
- ``mATE`` … ``mAAE``: means over classes, NaN classes skipped (NaN if every class is). NDS =
  (5 · mAP + Σ max(0, 1 − mTP)) / 10, a NaN mTP counting 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgefuse.types import Detections

THRESHOLDS_M: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TP_THRESHOLD_M = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
MEAN_AP_WEIGHT = 5.0
N_RECALL = 101  # recall points 0, 0.01, …, 1
TP_ERRORS: tuple[str, ...] = ("ATE", "ASE", "AOE", "AVE", "AAE")


@dataclass(frozen=True)
class ClassRule:
    """How nuScenes scores one class: ``range_m`` (objects whose BEV centre is this far from the ego or
    farther are not scored), ``yaw_period`` (rad; AOE's period, π where a box's front is undefined) and
    ``unscored`` (TP errors, from :data:`TP_ERRORS`, that are undefined for the class: NaN)."""

    range_m: float
    yaw_period: float = 2 * math.pi
    unscored: tuple[str, ...] = ()


#: nuScenes' detection classes (the devkit's detection_cvpr_2019 configuration and evaluation loop).
NUSCENES_RULES: dict[str, ClassRule] = {
    **{name: ClassRule(50.0) for name in ("car", "truck", "bus", "trailer", "construction_vehicle")},
    **{name: ClassRule(40.0) for name in ("pedestrian", "motorcycle", "bicycle")},
    "traffic_cone": ClassRule(30.0, unscored=("AOE", "AVE", "AAE")),
    "barrier": ClassRule(30.0, yaw_period=math.pi, unscored=("AVE", "AAE")),
}
#: edgefuse's classes under their nuScenes names.
NUSCENES_NAMES: dict[str, str] = {"car": "car", "pedestrian": "pedestrian", "cyclist": "bicycle"}
CLASS_RULES: dict[str, ClassRule] = {label: NUSCENES_RULES[n] for label, n in NUSCENES_NAMES.items()}


def scored_objects(dets: Detections, rules: Mapping[str, ClassRule]) -> Detections:
    """The objects nuScenes scores (see module doc): a class in ``rules``, BEV distance to the ego origin
    < the class's ``range_m``, and not counted with zero LiDAR and radar points."""
    keep = []
    for o in dets.objects:
        rule = rules.get(o.label)
        if rule is None or not math.sqrt(o.box.center[0] ** 2 + o.box.center[1] ** 2) < rule.range_m:
            continue
        if o.unseen:
            continue
        keep.append(o)
    return Detections(dets.stamp_ns, tuple(keep), dets.frame)


@dataclass(frozen=True)
class Matches:
    """One class's predictions matched at one threshold, in matching order (score descending):
    ``scores`` (Np,), ``tp`` (Np,) bool, ``n_gt`` ground-truth objects of the class, per true
    positive, in the same order, ``errors`` {ATE, ASE, AOE, AVE, AAE: (Ntp,)} (AAE NaN where the truth
    has no attribute), and ``frame`` (Np,) int: the index of each prediction's frame.

    A prediction only ever takes ground truth of its own frame, so its flag and errors equal those of
    matching its frame alone in score order: they do not depend on the other frames
    (:mod:`edgefuse.eval.intervals` relies on this)."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int
    errors: dict[str, np.ndarray]
    frame: np.ndarray


def _class_objects(dets: Detections, label: str) -> list:
    return [o for o in dets.objects if o.label == label]


def match_class(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    label: str,
    threshold_m: float,
    yaw_period: float = 2 * math.pi,
) -> Matches:
    """Greedy nuScenes matching of ``label`` over frame-aligned predictions and truth (module doc)."""
    gt_objs = [_class_objects(d, label) for d in gts]
    gt_xy = [np.array([o.box.center[:2] for o in g], np.float64).reshape(-1, 2) for g in gt_objs]
    pred_objs = [(f, o) for f, d in enumerate(preds) for o in _class_objects(d, label)]
    scores = np.array([o.score for _, o in pred_objs], np.float64)
    order = np.lexsort((np.arange(len(pred_objs)), scores))[::-1]  # score, then index, descending
    taken = [np.zeros(len(g), bool) for g in gt_objs]
    tp = np.zeros(len(order), bool)
    pairs = []  # (prediction, truth) of each true positive, in order
    for k, i in enumerate(order):
        f, o = pred_objs[i]
        if len(gt_xy[f]) == 0:
            continue
        d = gt_xy[f] - o.box.center[:2]
        dist = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)
        dist[taken[f]] = np.inf
        j = int(np.argmin(dist))
        if dist[j] < threshold_m:
            taken[f][j] = True
            tp[k] = True
            pairs.append((o, gt_objs[f][j]))
    return Matches(
        scores=scores[order],
        tp=tp,
        n_gt=sum(len(g) for g in gt_objs),
        errors=tp_errors_of_pairs(pairs, yaw_period),
        frame=np.array([f for f, _ in pred_objs], np.int64).reshape(-1)[order],
    )


def yaw_difference(yaw_gt: np.ndarray, yaw_pred: np.ndarray, period: float) -> np.ndarray:
    """|smallest angle from ``yaw_pred`` to ``yaw_gt``| (rad) with the given period (2π, or π for boxes
    whose front and back are alike), in [0, π]."""
    diff = np.remainder(yaw_gt - yaw_pred + period / 2, period) - period / 2
    diff = np.where(diff > math.pi, diff - 2 * math.pi, diff)
    return np.abs(diff)


def scale_error(size_gt: np.ndarray, size_pred: np.ndarray) -> np.ndarray:
    """1 − 3D IoU of boxes aligned on centre and heading; ``size_*`` (N, 3) m, any common axis order."""
    inter = np.prod(np.minimum(size_gt, size_pred), axis=-1)
    return 1.0 - inter / (np.prod(size_gt, axis=-1) + np.prod(size_pred, axis=-1) - inter)


def tp_errors_of_pairs(pairs: Sequence, yaw_period: float) -> dict[str, np.ndarray]:
    """The five TP errors (module doc) of (prediction, truth) pairs: {name: (N,)}."""
    p = [a for a, _ in pairs]
    g = [b for _, b in pairs]

    def arr(objs, get, n):
        return np.array([get(o) for o in objs], np.float64).reshape(-1, n)

    dc = arr(p, lambda o: o.box.center[:2], 2) - arr(g, lambda o: o.box.center[:2], 2)
    dv = arr(p, lambda o: o.velocity, 2) - arr(g, lambda o: o.velocity, 2)
    yaw_g, yaw_p = arr(g, lambda o: o.box.yaw, 1)[:, 0], arr(p, lambda o: o.box.yaw, 1)[:, 0]
    attr = [1.0 - float(a.attribute == b.attribute) if b.attribute else np.nan for a, b in pairs]
    return {
        "ATE": np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2),
        "ASE": scale_error(arr(g, lambda o: o.box.size, 3), arr(p, lambda o: o.box.size, 3)),
        "AOE": yaw_difference(yaw_g, yaw_p, yaw_period),
        "AVE": np.sqrt(dv[:, 0] ** 2 + dv[:, 1] ** 2),
        "AAE": np.array(attr, np.float64),
    }


def cumulative_mean(x: np.ndarray) -> np.ndarray:
    """Running mean of ``x`` (N,) skipping NaN (0 before the first value); all NaN → ones."""
    valid = ~np.isnan(x)
    if not valid.any():
        return np.ones(len(x))
    total = np.nancumsum(x)
    count = np.cumsum(valid)
    return np.divide(total, count, out=np.zeros_like(total), where=count != 0)


@dataclass(frozen=True)
class Curves:
    """A class's matching read at the 101 recall points: ``precision``, ``confidence`` (the score reached
    there, 0 past the highest recall) and ``errors`` {TP error: running mean at that confidence}, each
    (101,)."""

    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray]


def no_detection_curves() -> Curves:
    """The curves of a class without ground truth or without a true positive: precision 0, errors 1."""
    zeros = np.zeros(N_RECALL)
    return Curves(zeros, zeros, {k: np.ones(N_RECALL) for k in TP_ERRORS})


def pr_curve(tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each prediction, in score order."""
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    return ctp / max(n_gt, 1), ctp / np.maximum(ctp + cfp, 1)


def accumulate(m: Matches) -> Curves:
    """The 101-point curves of one class's matching (module doc)."""
    if m.n_gt == 0 or not m.tp.any():
        return no_detection_curves()
    rec, prec = pr_curve(m.tp, m.n_gt)
    grid = np.linspace(0.0, 1.0, N_RECALL)
    precision = np.interp(grid, rec, prec, right=0.0)
    confidence = np.interp(grid, rec, m.scores, right=0.0)
    tp_scores = m.scores[m.tp]
    errors = {
        k: np.interp(confidence[::-1], tp_scores[::-1], cumulative_mean(v)[::-1])[::-1]
        for k, v in m.errors.items()
    }
    return Curves(precision, confidence, errors)


def average_precision(c: Curves) -> float:
    """nuScenes AP from a class's curves (module doc)."""
    p = c.precision[round(100 * MIN_RECALL) + 1 :] - MIN_PRECISION
    return float(np.mean(np.clip(p, 0.0, None))) / (1.0 - MIN_PRECISION)


def tp_error(c: Curves, name: str) -> float:
    """A TP error (``name`` from :data:`TP_ERRORS`) from a class's curves: the mean of its curve over
    recall 0.11 … the highest recall reached (the last point with a non-zero confidence); 1 if that is
    below 0.11."""
    first = round(100 * MIN_RECALL) + 1
    nonzero = np.nonzero(c.confidence)[0]
    last = int(nonzero[-1]) if len(nonzero) else 0
    if last < first:
        return 1.0
    return float(np.mean(c.errors[name][first : last + 1]))


def _mean_skipping_nan(values: Sequence[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return float(np.mean(known)) if known else float("nan")


def evaluate_detections(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    classes: Sequence[str],
    rules: Mapping[str, ClassRule] | None = None,
    thresholds_m: Sequence[float] = THRESHOLDS_M,
    skip_absent: bool = False,
) -> dict:
    """The nuScenes detection metric of frame-aligned predictions and ground truth (module doc).

    ``rules`` per class (default :data:`CLASS_RULES`: edgefuse's classes as nuScenes' car, pedestrian,
    bicycle). nuScenes scores a class without ground truth 0 (its class list is fixed and its data has
    every class); ``skip_absent`` leaves such classes out instead, for logs that have none of a class
    (all scores NaN when no class has any). Returns ``mAP``, ``NDS``, ``mATE``, ``mASE``, ``mAOE``,
    ``mAVE``, ``mAAE``, ``per_class`` {label: {AP (mean over thresholds), AP@<t>m, ATE, ASE, AOE, AVE,
    AAE, n_gt (after filtering)}}, ``absent`` (the classes left out) and ``frames``."""
    rules = CLASS_RULES if rules is None else rules
    if len(preds) != len(gts):
        raise ValueError(
            f"evaluate_detections: {len(preds)} prediction frames for {len(gts)} ground-truth frames"
        )
    if not classes:
        raise ValueError("evaluate_detections: classes: expected at least one class")
    missing = [c for c in classes if c not in rules]
    if missing:
        raise ValueError(f"evaluate_detections: rules: expected a ClassRule for {missing}, got {list(rules)}")
    if TP_THRESHOLD_M not in thresholds_m:
        raise ValueError(f"evaluate_detections: thresholds_m: expected {TP_THRESHOLD_M} among {thresholds_m}")
    preds = [scored_objects(d, rules) for d in preds]
    gts = [scored_objects(d, rules) for d in gts]
    present = {o.label for d in gts for o in d.objects}
    absent = [c for c in classes if c not in present] if skip_absent else []
    per_class: dict[str, dict] = {}
    for label in (c for c in classes if c not in absent):
        rule = rules[label]
        matches = {t: match_class(preds, gts, label, t, rule.yaw_period) for t in thresholds_m}
        per_class[label] = class_row(matches, rule)
    return {**summarize(per_class), "per_class": per_class, "absent": absent, "frames": len(gts)}


def class_row(matches: Mapping[float, Matches], rule: ClassRule) -> dict:
    """One class's row of :func:`evaluate_detections` from its matching at each threshold (m → Matches;
    :data:`TP_THRESHOLD_M` among them): AP@<t>m, n_gt, the TP errors (NaN where ``rule`` leaves them
    out) and AP, the mean over the thresholds."""
    row: dict = {}
    for t, m in matches.items():
        c = accumulate(m)
        row[f"AP@{t:g}m"] = average_precision(c)
        row["n_gt"] = m.n_gt
        if t == TP_THRESHOLD_M:
            for k in TP_ERRORS:
                row[k] = float("nan") if k in rule.unscored else tp_error(c, k)
    row["AP"] = float(np.mean([row[f"AP@{t:g}m"] for t in matches]))
    return row


def summarize(per_class: Mapping[str, dict]) -> dict:
    """``mAP``, ``NDS`` and ``mATE`` … ``mAAE`` of the class rows of :func:`class_row` (module doc)."""
    m_ap = float(np.mean([r["AP"] for r in per_class.values()])) if per_class else float("nan")
    means = {k: _mean_skipping_nan([r[k] for r in per_class.values()]) for k in TP_ERRORS}
    tp_scores = [1.0 - v if 1.0 - v > 0.0 else 0.0 for v in means.values()]  # NaN → 0
    nds = (MEAN_AP_WEIGHT * m_ap + sum(tp_scores)) / (MEAN_AP_WEIGHT + len(tp_scores))
    return {"mAP": m_ap, "NDS": float(nds), **{f"m{k}": v for k, v in means.items()}}
