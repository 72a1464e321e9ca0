"""nuScenes-style detection metrics (numpy only).

- Matching: per class, predictions of all frames sorted by score (descending); each takes the nearest
  still-unmatched ground-truth object of its frame whose BEV centre distance is below the threshold
  (true positive) or is a false positive.
- AP per class and threshold: precision interpolated at 101 recall points (0, 0.01, …, 1; 0 beyond the
  highest recall reached), the part with recall > 0.1 kept, precision − 0.1 clipped at 0, averaged and
  divided by 0.9 (nuScenes ``calc_ap`` with min_recall = min_precision = 0.1). A perfect detector scores
  1.0. ``mAP``: the mean over classes (with ground truth) and the thresholds 0.5, 1, 2, 4 m.
- AVE per class: mean ‖v_pred − v_gt‖ (m/s, BEV) over the true positives at 2 m (nuScenes' TP threshold);
  ``mAVE``: the mean over classes that have true positives. (nuScenes averages TP errors over the
  recall range ≥ 0.1 on its interpolated curve; we average over all true positives.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefuse.types import Detections

THRESHOLDS_M: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TP_THRESHOLD_M = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1


def _arrays(dets: Detections, label: str, with_scores: bool):
    objs = [o for o in dets.objects if o.label == label]
    xy = np.array([o.box.center[:2] for o in objs], np.float64).reshape(-1, 2)
    v = np.array([o.velocity for o in objs], np.float64).reshape(-1, 2)
    s = np.array([o.score for o in objs], np.float64) if with_scores else None
    return xy, v, s


def match_class(
    preds: Sequence[Detections], gts: Sequence[Detections], label: str, threshold_m: float
) -> dict[str, np.ndarray]:
    """Greedy nuScenes matching for one class: returns ``scores`` (Np,) descending, ``tp`` (Np,) bool,
    ``vel_err`` (Np,) m/s (NaN for false positives), ``frame`` (Np,) and ``n_gt``."""
    g = [_arrays(d, label, False) for d in gts]
    n_gt = int(sum(len(x[0]) for x in g))
    rows = []
    for f, d in enumerate(preds):
        xy, v, s = _arrays(d, label, True)
        rows += [(s[i], f, xy[i], v[i]) for i in range(len(s))]
    rows.sort(key=lambda r: -r[0])
    taken = [np.zeros(len(x[0]), bool) for x in g]
    tp = np.zeros(len(rows), bool)
    err = np.full(len(rows), np.nan)
    for i, (_s, f, xy, v) in enumerate(rows):
        gxy, gv, _ = g[f]
        if len(gxy) == 0:
            continue
        dist = np.hypot(gxy[:, 0] - xy[0], gxy[:, 1] - xy[1])
        dist[taken[f]] = np.inf
        j = int(np.argmin(dist))
        if dist[j] < threshold_m:
            taken[f][j] = True
            tp[i] = True
            err[i] = float(np.hypot(*(v - gv[j])))
    return {
        "scores": np.array([r[0] for r in rows], np.float64),
        "tp": tp,
        "vel_err": err,
        "frame": np.array([r[1] for r in rows], np.int64),
        "n_gt": n_gt,
    }


def pr_curve(tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) after each prediction, in score order."""
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    return ctp / max(n_gt, 1), ctp / np.maximum(ctp + cfp, 1)


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """nuScenes AP (see module doc) from the score-ordered TP flags; NaN without ground truth."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    rec, prec = pr_curve(tp, n_gt)
    grid = np.linspace(0.0, 1.0, 101)
    p = np.interp(grid, rec, prec, right=0.0)
    p = p[int(round(100 * MIN_RECALL)) + 1 :] - MIN_PRECISION
    return float(np.clip(p, 0.0, None).mean() / (1.0 - MIN_PRECISION))


def evaluate_detections(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    classes: tuple[str, ...],
    thresholds_m: tuple[float, ...] = THRESHOLDS_M,
) -> dict:
    """``mAP``, ``per_class`` {label: {AP (mean over thresholds), AP@t, AVE, n_gt}}, ``mAVE`` for
    frame-aligned lists of predictions and ground truth."""
    if len(preds) != len(gts):
        raise ValueError(
            f"evaluate_detections: {len(preds)} prediction frames for {len(gts)} ground-truth frames"
        )
    per_class: dict[str, dict] = {}
    aps, aves = [], []
    for label in classes:
        row: dict = {}
        ap_t = []
        for t in thresholds_m:
            m = match_class(preds, gts, label, t)
            ap = average_precision(m["tp"], m["n_gt"])
            row[f"AP@{t:g}m"] = ap
            ap_t.append(ap)
            row["n_gt"] = m["n_gt"]
        m = match_class(preds, gts, label, TP_THRESHOLD_M)
        errs = m["vel_err"][m["tp"]]
        row["AVE"] = float(errs.mean()) if len(errs) else float("nan")
        row["AP"] = float(np.mean(ap_t)) if row["n_gt"] else float("nan")
        if row["n_gt"]:
            aps.append(row["AP"])
        if len(errs):
            aves.append(row["AVE"])
        per_class[label] = row
    return {
        "mAP": float(np.mean(aps)) if aps else float("nan"),
        "mAVE": float(np.mean(aves)) if aves else float("nan"),
        "per_class": per_class,
        "frames": len(gts),
    }
