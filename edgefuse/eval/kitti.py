"""KITTI's 3D object detection AP at 40 recall positions (AP|R40), numpy only.

Inputs are KITTI label/result objects (:class:`KittiObject`, one line of a ``label_2`` or result file) in
KITTI's camera-2 frame: x right, y down, z forward; ``location`` is the bottom centre of the box, which
spans ``y − h … y``; ``rotation_y`` turns the box about the camera's y axis (0: length along +x).

What is scored, as in the official devkit's ``evaluate_object.cpp`` (3D boxes):

- Per class and difficulty (easy, moderate, hard), ground truth of the class counts only if its 2D box is
  at least 40 / 25 / 25 px high, its occlusion at most 0 / 1 / 2 and its truncation at most
  0.15 / 0.3 / 0.5; a harder one is *ignored* (neither found nor missed). The neighbouring classes (Van for
  Car, Person_sitting for Pedestrian) are ignored too. A detection whose 2D box is less than the
  difficulty's height is ignored whatever its class.
- Overlap: 3D IoU of the rotated boxes (bird's-eye polygons in x/z times the overlap in y); a match needs
  more than 0.7 for cars, 0.5 for pedestrians and cyclists.
- Matching per frame and score threshold: each ground truth (in file order) takes, among the unassigned
  detections at or above the threshold with enough overlap, the one of greatest overlap (an ignored
  detection only if no other overlaps). A counted truth so matched is a true positive, else a false
  negative; a match that involves an ignored truth or detection counts nothing; every other counted
  detection at or above the threshold is a false positive. The thresholds are the scores of the true
  positives found when each truth takes its highest-scoring candidate.
- DontCare regions: the devkit discounts detections in them by the overlap of the two boxes in the
  metric's own space; a DontCare label's 3D box is a placeholder (size −1 at −1000 m) that overlaps
  nothing, so for 3D AP they change nothing, and here they are ignored.

AP|R40 (Simonelli et al., "Disentangling Monocular 3D Object Detection", 2019, which KITTI adopted):
(1/40) Σ_{r ∈ {1/40, 2/40, …, 1}} max{precision(t) : recall(t) ≥ r} over the thresholds t (0 where no
threshold reaches r), recall = TP / (TP + FN), precision = TP / (TP + FP). The devkit approximates the
recall positions by the true positives whose recall is nearest each r; with many objects the two agree
closely, with few they do not (it gives a perfect detector of 4 objects 3/40), so the definition is
used here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefuse.datasets.kitti import KittiObject, parse_kitti_objects
from edgefuse.errors import InputError

DIFFICULTIES: tuple[str, ...] = ("easy", "moderate", "hard")
MIN_HEIGHT_PX: tuple[int, ...] = (40, 25, 25)
MAX_OCCLUSION: tuple[int, ...] = (0, 1, 2)
MAX_TRUNCATION: tuple[float, ...] = (0.15, 0.3, 0.5)
MIN_OVERLAP_3D: dict[str, float] = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
NEIGHBOUR: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
N_RECALL = 40


def bev_corners(o: KittiObject) -> np.ndarray:
    """(4, 2) bird's-eye corners (x, z) m, counter-clockwise in the x/z plane; length along x at
    ``rotation_y`` 0, turned as KITTI's devkit does: x' = x cos ry + z sin ry, z' = −x sin ry + z cos ry."""
    _h, w, length = o.dimensions
    c, s = math.cos(o.rotation_y), math.sin(o.rotation_y)
    local = np.array([[length, w], [-length, w], [-length, -w], [length, -w]]) / 2.0
    x = c * local[:, 0] + s * local[:, 1] + o.location[0]
    z = -s * local[:, 0] + c * local[:, 1] + o.location[2]
    return np.stack([x, z], axis=1)


def _area(poly: np.ndarray) -> float:
    """Signed shoelace area of a polygon (N, 2) (positive counter-clockwise)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def convex_intersection_area(p: np.ndarray, q: np.ndarray) -> float:
    """Area of the intersection of two convex polygons (N, 2), (M, 2), either winding
    (Sutherland–Hodgman: ``p`` clipped by each edge of ``q``)."""
    if _area(q) < 0:
        q = q[::-1]
    out = [tuple(v) for v in p]
    for a, b in zip(q, np.roll(q, -1, axis=0), strict=True):
        if not out:
            break

        def side(v, a=a, b=b):  # > 0: left of a→b, inside a counter-clockwise polygon
            return (b[0] - a[0]) * (v[1] - a[1]) - (b[1] - a[1]) * (v[0] - a[0])

        clipped = []
        for i, cur in enumerate(out):
            prev = out[i - 1]
            s_cur, s_prev = side(cur), side(prev)
            if s_cur >= 0:
                if s_prev < 0:
                    clipped.append(_cross_point(prev, cur, s_prev, s_cur))
                clipped.append(cur)
            elif s_prev >= 0:
                clipped.append(_cross_point(prev, cur, s_prev, s_cur))
        out = clipped
    return abs(_area(np.array(out, np.float64).reshape(-1, 2)))


def _cross_point(u, v, su: float, sv: float) -> tuple[float, float]:
    t = su / (su - sv)
    return (u[0] + t * (v[0] - u[0]), u[1] + t * (v[1] - u[1]))


def iou_3d(a: KittiObject, b: KittiObject) -> float:
    """3D IoU of two KITTI boxes: bird's-eye intersection area × overlap along y, over the union."""
    ha, hb = a.dimensions[0], b.dimensions[0]
    dy = min(a.location[1], b.location[1]) - max(a.location[1] - ha, b.location[1] - hb)
    if dy <= 0:
        return 0.0
    inter = convex_intersection_area(bev_corners(a), bev_corners(b)) * dy
    vol_a, vol_b = float(np.prod(a.dimensions)), float(np.prod(b.dimensions))
    return inter / (vol_a + vol_b - inter)


def _is(o: KittiObject, name: str) -> bool:
    return o.type.lower() == name


def _flags(gts, dets, cls: str, d: int) -> tuple[list[int], list[int]]:
    """Per truth: 0 counted, 1 ignored (harder, neighbouring class), −1 not this class; per detection:
    0 this class, 1 too small (any class), −1 other class."""
    g_flags = []
    for g in gts:
        valid = 1 if _is(g, cls) else 0 if _is(g, NEIGHBOUR.get(cls, "")) else -1
        hard = (
            g.occluded > MAX_OCCLUSION[d]
            or g.truncated > MAX_TRUNCATION[d]
            or g.bbox[3] - g.bbox[1] < MIN_HEIGHT_PX[d]
        )
        g_flags.append(0 if valid == 1 and not hard else 1 if valid == 0 or valid == 1 else -1)
    d_flags = []
    for o in dets:
        if abs(o.bbox[1] - o.bbox[3]) < MIN_HEIGHT_PX[d]:
            d_flags.append(1)
        else:
            d_flags.append(0 if _is(o, cls) else -1)
    return g_flags, d_flags


def _frame_counts(
    g_flags, d_flags, scores: np.ndarray, overlaps: np.ndarray, min_overlap: float, threshold: float | None
) -> tuple[int, int, int, list[float]]:
    """(TP, FP, FN, TP scores) of one frame (module doc). ``threshold`` None: each truth takes its
    highest-scoring candidate (the pass that finds the thresholds); else the greatest overlap among the
    detections scoring ≥ threshold. ``overlaps`` (D, G) 3D IoU."""
    assigned = np.zeros(len(d_flags), bool)
    below = np.zeros(len(d_flags), bool) if threshold is None else scores < threshold
    tp = fn = 0
    tp_scores = []
    for i, gf in enumerate(g_flags):
        if gf == -1:
            continue
        best, best_key, took_ignored = -1, -math.inf, False
        for j, df in enumerate(d_flags):
            if df == -1 or assigned[j] or below[j] or not overlaps[j, i] > min_overlap:
                continue
            if threshold is None:
                if scores[j] > best_key:
                    best, best_key = j, scores[j]
            elif df == 0 and (overlaps[j, i] > best_key or took_ignored):
                best, best_key, took_ignored = j, overlaps[j, i], False
            elif df == 1 and best == -1:
                best, took_ignored = j, True
        if best == -1:
            fn += gf == 0
        elif gf == 1 or d_flags[best] == 1:
            assigned[best] = True
        else:
            tp += 1
            tp_scores.append(float(scores[best]))
            assigned[best] = True
    fp = int(sum(1 for j, df in enumerate(d_flags) if df == 0 and not assigned[j] and not below[j]))
    return tp, fp, fn, tp_scores


def _counts_at(
    thresholds: np.ndarray, g_flags, d_flags, scores: np.ndarray, overlaps: np.ndarray, min_overlap: float
) -> np.ndarray:
    """(T, 3) TP, FP, FN of one frame at each of ``thresholds`` (T,) descending. They change only where a
    threshold passes one of the frame's scores, so each distinct score is matched once."""
    levels = np.unique(scores)[::-1]  # descending
    at_level = [_frame_counts(g_flags, d_flags, scores, overlaps, min_overlap, t)[:3] for t in levels]
    nothing = (0, 0, sum(1 for g in g_flags if g == 0))  # no detection at or above the threshold
    table = np.array([nothing, *at_level], np.int64).reshape(-1, 3)
    # the number of this frame's scores >= each threshold picks the row
    return table[np.searchsorted(-levels, -thresholds, side="right")]


def ap_r40(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP|R40 from a curve's points (recall, precision) (N,) each (module doc)."""
    rec, prec = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    total = 0.0
    for k in range(1, N_RECALL + 1):
        reached = prec[rec >= k / N_RECALL]
        total += float(reached.max()) if len(reached) else 0.0
    return total / N_RECALL


def evaluate_kitti(
    gts: Sequence[Sequence[KittiObject]],
    dets: Sequence[Sequence[KittiObject]],
    classes: Sequence[str] = ("car", "pedestrian", "cyclist"),
) -> dict[str, dict[str, dict]]:
    """KITTI 3D AP|R40 of frame-aligned ground truth and detections (module doc):
    {class: {easy|moderate|hard: {"AP": 0..1 (NaN without counted truth), "n_gt": counted truth}}}."""
    if len(gts) != len(dets):
        raise ValueError(f"evaluate_kitti: {len(dets)} detection frames for {len(gts)} ground-truth frames")
    unknown = [c for c in classes if c not in MIN_OVERLAP_3D]
    if unknown:
        raise ValueError(f"evaluate_kitti: classes: expected some of {tuple(MIN_OVERLAP_3D)}, got {unknown}")
    overlaps = [
        np.array([[iou_3d(o, g) for g in gt] for o in det], np.float64).reshape(len(det), len(gt))
        for gt, det in zip(gts, dets, strict=True)
    ]  # (D, G) per frame
    scores = [np.array([o.score for o in det], np.float64) for det in dets]
    out: dict[str, dict[str, dict]] = {}
    for cls in classes:
        out[cls] = {}
        for d, name in enumerate(DIFFICULTIES):
            flags = [_flags(gt, det, cls, d) for gt, det in zip(gts, dets, strict=True)]
            n_gt = sum(f[0].count(0) for f in flags)
            found = [
                _frame_counts(*f, s, ov, MIN_OVERLAP_3D[cls], None)[3]
                for f, s, ov in zip(flags, scores, overlaps, strict=True)
            ]
            thresholds = np.array(sorted({s for frame in found for s in frame}, reverse=True))
            counts = np.zeros((len(thresholds), 3), np.int64)  # TP, FP, FN at each threshold
            for f, s, ov in zip(flags, scores, overlaps, strict=True):
                counts += _counts_at(thresholds, *f, s, ov, MIN_OVERLAP_3D[cls])
            tp, fp, fn = counts.T
            rec = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=tp + fn > 0)
            prec = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=tp + fp > 0)
            ap = ap_r40(rec, prec) if n_gt else float("nan")
            out[cls][name] = {"AP": ap, "n_gt": n_gt}
    return out


def evaluate_kitti_dirs(
    labels: str | Path, results: str | Path, classes: Sequence[str] = ("car", "pedestrian", "cyclist")
) -> dict:
    """KITTI 3D AP|R40 of a result folder (``NNNNNN.txt`` per frame, 16 fields a line; or its ``data/``
    subfolder, as the devkit reads it) against a ``label_2`` folder holding the same names:
    ``{"frames": n, "AP": {class: {difficulty: 0..1 or None (no counted truth)}}, "n_gt": {…}}``."""
    labels, results = Path(labels), Path(results)
    if (results / "data").is_dir():
        results = results / "data"
    files = sorted(results.glob("*.txt"))
    if not files:
        raise InputError(f"{results}: expected KITTI result files (NNNNNN.txt), found none")
    missing = [f.name for f in files if not (labels / f.name).is_file()]
    if missing:
        raise InputError(f"{labels}: no label file for {missing[:5]}{' …' if len(missing) > 5 else ''}")
    gts = [parse_kitti_objects((labels / f.name).read_text(), str(labels / f.name)) for f in files]
    dets = [parse_kitti_objects(f.read_text(), str(f)) for f in files]
    r = evaluate_kitti(gts, dets, classes)
    return {
        "frames": len(files),
        "AP": {
            c: {d: None if math.isnan(v["AP"]) else v["AP"] for d, v in row.items()} for c, row in r.items()
        },
        "n_gt": {c: {d: v["n_gt"] for d, v in row.items()} for c, row in r.items()},
    }


def format_kitti(r: dict) -> str:
    """The human view of :func:`evaluate_kitti_dirs`' result: AP|R40 in % per class and difficulty."""
    lines = [
        f"KITTI 3D AP|R40 ({r['frames']} frames)",
        f"{'class':<12}" + "".join(f"{d:>10}" for d in DIFFICULTIES),
    ]
    for c, row in r["AP"].items():
        cells = "".join("         –" if row[d] is None else f"{100 * row[d]:10.2f}" for d in DIFFICULTIES)
        lines.append(f"{c:<12}{cells}")
    return "\n".join(lines)
