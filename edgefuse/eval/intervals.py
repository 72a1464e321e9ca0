"""95 % confidence intervals of the nuScenes detection metric by bootstrapping scenes (numpy only).

One evaluation drive gives one number; how far that number would move on other drives of the same kind
is what decides whether a difference between two models is a finding or noise. Frames of one drive are
strongly correlated (the same objects seen 10 times a second), so frames are not the unit to resample:
**scenes** are.

- **Scene**: a contiguous segment of one log, ``scene_s`` long (default 20 s, the length of a nuScenes
  scene). A log is cut by its frames' ground-truth stamps (int64 ns): frame stamp ``t`` of a log whose
  first frame is at ``t0`` belongs to that log's segment ``(t − t0) // scene_ns``. Segments without frames
  do not count; the last segment of a log may be shorter. Scenes are numbered 0 … S−1 in the order
  of their first frame (:func:`scene_ids`).
- **Bootstrap by scene**: draw S scenes out of the S with replacement, ``n_boot`` times (default 1000,
  ``numpy.random.default_rng(seed)``, so the same seed gives the same intervals), score the frames of the
  drawn scenes with the metric of :func:`edgefuse.eval.metrics.evaluate_detections`, and report the 2.5th
  and 97.5th percentiles (numpy's linear interpolation) of each score over the draws.
- **Speed**: the metric is not a sum over scenes (AP ranks every prediction by score, globally), but the
  matching is per frame (:class:`edgefuse.eval.metrics.Matches`: a prediction only takes truth of its own
  frame, in score order), so the true-positive flags and TP errors of every prediction at every distance
  threshold are computed once (:func:`prepare`). A draw then only repeats each prediction as many times as
  its scene was drawn, keeps the global score order and reads AP and the TP errors off the flags with the
  metric's own :func:`~edgefuse.eval.metrics.class_row` and :func:`~edgefuse.eval.metrics.summarize`.
  The result equals :func:`~edgefuse.eval.metrics.evaluate_detections` on the drawn frames in this
  order: the frames of every drawn scene in their original order, then again those of the scenes drawn
  twice or more, and so on (the order only matters where scores are equal: the metric ranks the later
  frame first). Drawing every scene once reproduces the point estimate exactly.
- **Paired comparison** (:func:`compare_intervals`): two models scored on the same frames are resampled
  with the *same* draws, and the interval is that of the difference b − a of each score. A difference is
  *separated* (a claim holds) only where that interval excludes 0.

One scene says nothing of the spread between scenes: with fewer than 2 scenes every interval is NaN
(``--json``: null), as is that of a difference.

Score keys: ``mAP``, ``NDS``, ``mATE`` … ``mAAE`` and ``<class>/AP``, ``<class>/ATE`` … (a draw in which
a class is not scored, or in which a score is NaN, is left out of that score's percentiles; all left out →
NaN).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgefuse.eval.metrics import (
    CLASS_RULES,
    THRESHOLDS_M,
    TP_ERRORS,
    TP_THRESHOLD_M,
    ClassRule,
    Matches,
    class_row,
    evaluate_detections,
    match_class,
    scored_objects,
    summarize,
)
from edgefuse.types import Detections

SCENE_S = 20.0  # seconds: a nuScenes scene
N_BOOT = 1000
PERCENTILES = (2.5, 97.5)


def scene_ids(
    stamps_ns: np.ndarray, log_ids: np.ndarray | None = None, scene_s: float = SCENE_S
) -> np.ndarray:
    """The scene of each frame (module doc): ``stamps_ns`` (N,) int64 ground-truth stamps, ``log_ids`` (N,)
    int the log of each frame (default: one log), ``scene_s`` the scene length in seconds. Returns (N,)
    int64 in 0 … S−1, numbered in the order of each scene's first frame."""
    stamps = np.asarray(stamps_ns, np.int64).reshape(-1)
    logs = np.zeros(len(stamps), np.int64) if log_ids is None else np.asarray(log_ids, np.int64).reshape(-1)
    if len(logs) != len(stamps):
        raise ValueError(f"scene_ids: {len(logs)} log ids for {len(stamps)} stamps")
    if not scene_s > 0:
        raise ValueError(f"scene_ids: scene_s: expected > 0 s, got {scene_s}")
    scene_ns = int(round(scene_s * 1e9))
    segment = np.zeros(len(stamps), np.int64)
    for log in np.unique(logs):
        sel = logs == log
        segment[sel] = (stamps[sel] - stamps[sel].min()) // scene_ns
    keys = list(zip(logs.tolist(), segment.tolist(), strict=True))
    first: dict[tuple[int, int], int] = {}
    for k in keys:
        first.setdefault(k, len(first))
    return np.array([first[k] for k in keys], np.int64)


@dataclass(frozen=True)
class ClassRows:
    """One class at one distance threshold: every prediction of every frame, in the metric's matching
    order (score descending, the later prediction first on equal scores): ``scores`` (Np,), ``tp`` (Np,)
    bool, ``scene`` (Np,) int, ``errors`` {TP error: (Np,)} (NaN on false positives), and ``n_gt`` (S,)
    the class's ground-truth objects per scene."""

    scores: np.ndarray
    tp: np.ndarray
    scene: np.ndarray
    errors: dict[str, np.ndarray]
    n_gt: np.ndarray
    ties: bool  # some predictions share a score: the exact order of a draw needs a sort


@dataclass(frozen=True)
class Prepared:
    """Frames matched once, ready to be resampled by scene: ``rows`` {class: {threshold m: ClassRows}},
    ``rules`` {class: ClassRule}, ``n_scenes`` S, ``frames`` and ``skip_absent`` (as in
    :func:`~edgefuse.eval.metrics.evaluate_detections`)."""

    rows: dict[str, dict[float, ClassRows]]
    rules: dict[str, ClassRule]
    n_scenes: int
    frames: int
    skip_absent: bool


def prepare(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    classes: Sequence[str],
    scenes: np.ndarray,
    rules: Mapping[str, ClassRule] | None = None,
    thresholds_m: Sequence[float] = THRESHOLDS_M,
    skip_absent: bool = False,
) -> Prepared:
    """Match frame-aligned ``preds`` and ``gts`` once per class and threshold (arguments as
    :func:`~edgefuse.eval.metrics.evaluate_detections`; ``scenes`` (N,) the scene of each frame, 0 … S−1,
    e.g. from :func:`scene_ids`)."""
    # the checks and messages of the metric itself (a few frames: cheap)
    evaluate_detections(preds[:1], gts[:1], classes, rules, thresholds_m, skip_absent)
    if len(preds) != len(gts):
        raise ValueError(f"prepare: {len(preds)} prediction frames for {len(gts)} ground-truth frames")
    scenes = np.asarray(scenes, np.int64).reshape(-1)
    if len(scenes) != len(gts):
        raise ValueError(f"prepare: scenes: expected {len(gts)} scene ids (one a frame), got {len(scenes)}")
    n_scenes = int(scenes.max()) + 1 if len(scenes) else 0
    if len(scenes) and (scenes.min() < 0 or len(np.unique(scenes)) != n_scenes):
        raise ValueError("prepare: scenes: expected ids 0 … S-1, each used")
    rules = dict(CLASS_RULES if rules is None else rules)
    preds = [scored_objects(d, rules) for d in preds]
    gts = [scored_objects(d, rules) for d in gts]
    rows: dict[str, dict[float, ClassRows]] = {}
    for label in classes:
        n_gt = np.bincount(
            scenes, weights=[sum(o.label == label for o in g.objects) for g in gts], minlength=n_scenes
        ).astype(np.int64)
        rows[label] = {}
        for t in thresholds_m:
            m = match_class(preds, gts, label, t, rules[label].yaw_period)
            errors = {}
            if t == TP_THRESHOLD_M:
                for k, v in m.errors.items():
                    errors[k] = np.full(len(m.tp), np.nan)
                    errors[k][m.tp] = v
            ties = len(np.unique(m.scores)) < len(m.scores)
            rows[label][t] = ClassRows(m.scores, m.tp, scenes[m.frame], errors, n_gt, ties)
    return Prepared(rows, {c: rules[c] for c in classes}, n_scenes, len(gts), skip_absent)


def _drawn_matches(r: ClassRows, counts: np.ndarray) -> Matches:
    """The matching of the frames of scenes drawn ``counts`` (S,) times each (module doc)."""
    reps = counts[r.scene]
    idx = np.repeat(np.arange(len(r.scores)), reps)
    if r.ties:  # copy j of every frame comes after copy j - 1 of all: on equal scores, the later copy first
        start = np.cumsum(reps) - reps  # where each row's copies begin in idx
        copy = reps[idx] - 1 - (np.arange(len(idx)) - start[idx])
        idx = idx[np.lexsort((np.arange(len(idx)), -copy, -r.scores[idx]))]
    tp = r.tp[idx]
    return Matches(
        scores=r.scores[idx],
        tp=tp,
        n_gt=int(counts @ r.n_gt),
        errors={k: v[idx][tp] for k, v in r.errors.items()},
        frame=r.scene[idx],
    )


def draw_scores(p: Prepared, counts: np.ndarray) -> dict[str, float]:
    """The flat scores (module doc) of the frames of scene ``s`` taken ``counts[s]`` times; ``counts``
    (S,) int. All ones → :func:`~edgefuse.eval.metrics.evaluate_detections` on every frame."""
    counts = np.asarray(counts, np.int64).reshape(-1)
    if len(counts) != p.n_scenes:
        raise ValueError(f"draw_scores: counts: expected {p.n_scenes} (one a scene), got {len(counts)}")
    per_class = {}
    for label, by_t in p.rows.items():
        if p.skip_absent and int(counts @ next(iter(by_t.values())).n_gt) == 0:
            continue
        per_class[label] = class_row({t: _drawn_matches(r, counts) for t, r in by_t.items()}, p.rules[label])
    out = summarize(per_class)
    for label in p.rows:
        for k in ("AP", *TP_ERRORS):
            out[f"{label}/{k}"] = per_class[label][k] if label in per_class else math.nan
    return out


def draws(n_scenes: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, S) int: how many times each scene is taken in each draw (S draws with replacement)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_scenes, size=(n_boot, n_scenes))
    if n_boot == 0:
        return np.zeros((0, n_scenes), np.int64)
    return np.stack([np.bincount(row, minlength=n_scenes) for row in picks])


def _percentiles(x: np.ndarray) -> tuple[float, float]:
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(x, PERCENTILES)
    return (float(lo), float(hi))


def _all_draws(p: Prepared, counts: np.ndarray) -> dict[str, np.ndarray]:
    rows = [draw_scores(p, c) for c in counts]
    return {k: np.array([r[k] for r in rows], np.float64) for k in rows[0]} if rows else {}


def bootstrap(p: Prepared, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % intervals {score: (lo, hi)} of every flat score (module doc) over ``n_boot`` scene draws (NaN
    with fewer than 2 scenes)."""
    if n_boot < 1 or p.n_scenes == 0:
        raise ValueError(f"bootstrap: expected n_boot ≥ 1 and ≥ 1 scene, got {n_boot} and {p.n_scenes}")
    if p.n_scenes < 2:
        return dict.fromkeys(draw_scores(p, np.ones(1, np.int64)), (math.nan, math.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw without a scored class: NaN means
        samples = _all_draws(p, draws(p.n_scenes, n_boot, seed))
    return {k: _percentiles(v) for k, v in samples.items()}


@dataclass(frozen=True)
class Difference:
    """One score of a paired comparison: ``delta`` = b − a on all frames, ``ci95`` (lo, hi) of b − a over
    the scene draws, ``separated``: the interval excludes 0 (NaN interval → False)."""

    delta: float
    ci95: tuple[float, float]
    separated: bool


def compare_intervals(a: Prepared, b: Prepared, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Difference]:
    """The paired bootstrap of model b against model a on the same frames and scenes (module doc):
    {score: Difference}."""
    if (a.n_scenes, a.frames, list(a.rows)) != (b.n_scenes, b.frames, list(b.rows)):
        raise ValueError(
            f"compare_intervals: expected the same frames, scenes and classes, got {a.frames} frames / "
            f"{a.n_scenes} scenes / {list(a.rows)} and {b.frames} / {b.n_scenes} / {list(b.rows)}"
        )
    for label, by_t in a.rows.items():
        if any(not np.array_equal(r.n_gt, b.rows[label][t].n_gt) for t, r in by_t.items()):
            raise ValueError(f"compare_intervals: {label}: the two models were scored on different truth")
    if n_boot < 1 or a.n_scenes == 0:
        raise ValueError(f"compare_intervals: expected n_boot ≥ 1 and ≥ 1 scene, got {n_boot}, {a.n_scenes}")
    ones = np.ones(a.n_scenes, np.int64)
    point_a, point_b = draw_scores(a, ones), draw_scores(b, ones)
    counts = draws(a.n_scenes, n_boot, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sa, sb = _all_draws(a, counts), _all_draws(b, counts)
    out = {}
    for k in point_a:
        lo, hi = _percentiles(sb[k] - sa[k]) if a.n_scenes > 1 else (math.nan, math.nan)
        out[k] = Difference(float(point_b[k] - point_a[k]), (lo, hi), bool(lo > 0 or hi < 0))
    return out
