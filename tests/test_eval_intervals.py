"""95 % intervals by scene bootstrap (edgefuse.eval.intervals): scenes cut by stamp, a draw of every scene
once equals the point estimate and any draw equals evaluate_detections on the explicitly built frames
(hence per-frame matching equals the metric's global matching), hand-derived intervals, paired
comparisons that separate a clear difference and not a noise one, intervals narrowing with more scenes,
determinism, and the eval text view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefuse.eval.evaluate import format_eval
from edgefuse.eval.intervals import bootstrap, compare_intervals, draw_scores, prepare, scene_ids
from edgefuse.eval.metrics import TP_ERRORS, evaluate_detections
from edgefuse.types import Box3D, Detection, Detections

CLASSES = ("car", "pedestrian")
SIZE = {"car": [4.0, 1.8, 1.5], "pedestrian": [0.7, 0.7, 1.8]}
FRAME_NS = 500_000_000  # 2 Hz
SCENE_S = 2.0  # 4 frames a scene


def _obj(label, xy, score=1.0, yaw=0.0, v=(0.0, 0.0)):
    return Detection(label, score, Box3D([xy[0], xy[1], 0.8], SIZE[label], yaw), np.array(v, np.float64))


def _drive(n_scenes, seed, miss=0.2, sd=0.4, fp=1, quantize=None, frames=4):
    """(preds, gts, stamps): ``n_scenes`` scenes of ``frames`` frames; each frame 2 cars and 2 pedestrians,
    each found with probability 1 − miss (per scene: miss × U(0.5, 1.5)) at N(0, sd) m off, plus ``fp``
    false positives. ``quantize``: scores rounded to this step (equal scores)."""
    rng = np.random.default_rng(seed)
    preds, gts, stamps = [], [], []
    for s in range(n_scenes):
        scene_miss = min(1.0, miss * rng.uniform(0.5, 1.5))
        for f in range(frames):
            stamp = (s * frames + f) * FRAME_NS
            truth, found = [], []
            for label in CLASSES:
                for _ in range(2):
                    xy = rng.uniform(-25, 25, 2)
                    truth.append(_obj(label, xy, yaw=rng.uniform(-3, 3), v=rng.normal(size=2)))
                    if rng.uniform() > scene_miss:
                        score = rng.uniform(0.3, 1.0)
                        found.append((label, xy + rng.normal(0, sd, 2), score))
            for _ in range(fp):
                found.append((CLASSES[rng.integers(2)], rng.uniform(-25, 25, 2), rng.uniform(0.0, 0.8)))
            objs = []
            for label, xy, score in found:
                if quantize:
                    score = round(score / quantize) * quantize
                objs.append(_obj(label, xy, score, yaw=rng.uniform(-3, 3), v=rng.normal(size=2)))
            preds.append(Detections(stamp, tuple(objs)))
            gts.append(Detections(stamp, tuple(truth)))
            stamps.append(stamp)
    return preds, gts, np.array(stamps, np.int64)


def _flat(r: dict, classes=CLASSES) -> dict:
    out = {k: r[k] for k in ("mAP", "NDS", *(f"m{e}" for e in TP_ERRORS))}
    for c in classes:
        for k in ("AP", *TP_ERRORS):
            out[f"{c}/{k}"] = r["per_class"][c][k] if c in r["per_class"] else math.nan
    return out


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], (k, a[k], b[k])


def test_scene_ids_cut_each_log_by_stamp():
    s = 1_000_000_000
    stamps = np.array([0, 5 * s, 19 * s, 20 * s, 41 * s, 100 * s, 121 * s, 119 * s])
    logs = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    # log 0 from 0 s: [0, 20) → scene 0, [20, 40) → 1, [40, 60) → 2; log 1 from 100 s: 100, 119 → 3; 121 → 4
    assert scene_ids(stamps, logs, 20.0).tolist() == [0, 0, 0, 1, 2, 3, 4, 3]
    assert scene_ids(stamps[:5], None, 10.0).tolist() == [0, 0, 1, 2, 3]  # the 10 s segment [30, 40) is empty
    with pytest.raises(ValueError, match="scene_s"):
        scene_ids(stamps, logs, 0.0)


@pytest.mark.parametrize("quantize", [None, 0.1])
@pytest.mark.parametrize("skip_absent", [False, True])
def test_every_scene_once_is_the_point_estimate(quantize, skip_absent):
    preds, gts, stamps = _drive(6, seed=1, quantize=quantize)
    classes = (*CLASSES, "cyclist")  # no cyclist in the data: scored 0, or left out with skip_absent
    p = prepare(preds, gts, classes, scene_ids(stamps, None, SCENE_S), skip_absent=skip_absent)
    assert p.n_scenes == 6
    point = evaluate_detections(preds, gts, classes, skip_absent=skip_absent)
    _same(draw_scores(p, np.ones(6, np.int64)), _flat(point, classes))


@pytest.mark.parametrize("quantize", [None, 0.1])
def test_a_draw_is_the_metric_of_its_frames(quantize):
    """Scenes 0 twice, 2 and 3 once, 1 never: the metric on those frames built by hand (the copies after
    one pass over the drawn scenes) — matching per frame gives the metric's global matching."""
    preds, gts, stamps = _drive(4, seed=2, quantize=quantize)
    scenes = scene_ids(stamps, None, SCENE_S)
    p = prepare(preds, gts, CLASSES, scenes)
    counts = np.array([2, 0, 1, 1])
    order = [i for i in range(len(gts)) if scenes[i] != 1] + [i for i in range(len(gts)) if scenes[i] == 0]
    want = evaluate_detections([preds[i] for i in order], [gts[i] for i in order], CLASSES)
    _same(draw_scores(p, counts), _flat(want))
    assert draw_scores(p, counts)["mAP"] != draw_scores(p, np.ones(4, np.int64))["mAP"]


def test_one_perfect_and_one_empty_scene_span_zero_to_one():
    """Scene A: one car found exactly (AP 1); scene B: one car missed (AP 0). A draw of two scenes is AA
    (AP 1) a quarter of the time, BB (AP 0) a quarter: the 2.5 and 97.5 percentiles are 0 and 1."""
    car = _obj("car", (10.0, 0.0))
    gts = [Detections(0, (car,)), Detections(30 * 10**9, (car,))]
    preds = [Detections(0, (_obj("car", (10.0, 0.0), 0.9),)), Detections(30 * 10**9, ())]
    p = prepare(preds, gts, ("car",), scene_ids(np.array([g.stamp_ns for g in gts]), None, 20.0))
    assert p.n_scenes == 2
    assert draw_scores(p, np.array([2, 0]))["car/AP"] == pytest.approx(1.0)
    assert draw_scores(p, np.array([0, 2]))["car/AP"] == 0.0
    ci = bootstrap(p, n_boot=400, seed=0)
    assert ci["car/AP"] == pytest.approx((0.0, 1.0))
    assert ci["mAP"] == pytest.approx((0.0, 1.0))


def test_paired_comparison_separates_a_clear_difference_and_not_noise():
    _, gts, stamps = _drive(12, seed=3)
    scenes = scene_ids(stamps, None, SCENE_S)
    rng_seeds = (10, 11, 12)
    # the same truth (seed 3); predictions of three models from their own seeds, rebuilt on that truth
    weak, same_a, same_b = (_predict(gts, seed=s, miss=m, sd=sd) for s, (m, sd) in
                            zip(rng_seeds, [(0.5, 1.2), (0.15, 0.3), (0.15, 0.3)], strict=True))  # fmt: skip
    pw, pa, pb = (prepare(x, gts, CLASSES, scenes) for x in (weak, same_a, same_b))
    clear = compare_intervals(pw, pa, n_boot=300, seed=0)
    want = evaluate_detections(same_a, gts, CLASSES)["mAP"] - evaluate_detections(weak, gts, CLASSES)["mAP"]
    assert clear["mAP"].delta == pytest.approx(want, abs=1e-12)
    assert clear["mAP"].separated and clear["mAP"].ci95[0] > 0
    assert clear["NDS"].separated
    noise = compare_intervals(pa, pb, n_boot=300, seed=0)
    assert not noise["mAP"].separated
    assert noise["mAP"].ci95[0] < noise["mAP"].delta < noise["mAP"].ci95[1]
    itself = compare_intervals(pa, pa, n_boot=50, seed=0)
    assert itself["mAP"].ci95 == (0.0, 0.0) and not itself["mAP"].separated


def _predict(gts, seed, miss, sd):
    """Predictions on given truth: each object found with probability 1 − miss at N(0, sd) m off, one
    false positive a frame."""
    rng = np.random.default_rng(seed)
    out = []
    for g in gts:
        objs = [
            _obj(o.label, o.box.center[:2] + rng.normal(0, sd, 2), rng.uniform(0.3, 1.0), o.box.yaw)
            for o in g.objects
            if rng.uniform() > miss
        ]
        objs.append(_obj(CLASSES[rng.integers(2)], rng.uniform(-25, 25, 2), rng.uniform(0.0, 0.8)))
        out.append(Detections(g.stamp_ns, tuple(objs)))
    return out


def test_intervals_narrow_with_more_scenes():
    """Drives of 4 and of 16 scenes of the same statistics, 6 of each: the mean width goes as
    1/sqrt(scenes) (a ratio of about 0.56 with the bootstrap's (S−1)/S variance); well under 3/4."""
    widths: dict[int, list] = {4: [], 16: []}
    for n in widths:
        for seed in range(6):
            preds, gts, stamps = _drive(n, seed=40 + seed)
            p = prepare(preds, gts, CLASSES, scene_ids(stamps, None, SCENE_S))
            ci = bootstrap(p, n_boot=200, seed=0)
            widths[n].append([ci[k][1] - ci[k][0] for k in ("mAP", "NDS", "car/AP")])
    ratio = np.mean(widths[16], axis=0) / np.mean(widths[4], axis=0)
    assert np.all(ratio < 0.75), ratio


def test_same_seed_same_interval():
    preds, gts, stamps = _drive(6, seed=5)
    p = prepare(preds, gts, CLASSES, scene_ids(stamps, None, SCENE_S))
    a, b, c = bootstrap(p, 200, seed=7), bootstrap(p, 200, seed=7), bootstrap(p, 200, seed=8)
    assert a == b
    assert a != c
    point = evaluate_detections(preds, gts, CLASSES)["mAP"]
    assert a["mAP"][0] <= point <= a["mAP"][1]


def test_bad_input_is_named():
    preds, gts, stamps = _drive(2, seed=6)
    with pytest.raises(ValueError, match="scenes"):
        prepare(preds, gts, CLASSES, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="scenes"):
        prepare(preds, gts, CLASSES, np.full(len(gts), 1))  # id 0 unused
    p = prepare(preds, gts, CLASSES, scene_ids(stamps, None, SCENE_S))
    q = prepare(preds[:4], gts[:4], CLASSES, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="same frames"):
        compare_intervals(p, q)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(p, 0)


def test_one_scene_gives_no_interval():
    preds, gts, _ = _drive(1, seed=7)
    p = prepare(preds, gts, CLASSES, np.zeros(len(gts), np.int64))
    ci = bootstrap(p, 100)
    assert set(ci) == set(draw_scores(p, np.ones(1, np.int64))) and all(math.isnan(v) for v in ci["mAP"])
    d = compare_intervals(p, p, 100)["mAP"]
    assert d.delta == 0.0 and math.isnan(d.ci95[0]) and not d.separated


def test_text_view_shows_intervals():
    scores = {"mAP": 0.718, "NDS": 0.6, **{f"m{k}": 0.25 for k in TP_ERRORS}}
    row = {"AP": 0.5, **dict.fromkeys(TP_ERRORS, 0.25), "n_gt": 10}
    ci = {"mAP": [0.682, 0.75], "NDS": [0.55, 0.65], "car/AP": [0.4, 0.6], "mATE": [0.2, 0.3]}
    region = {**scores, "per_class": {"car": row}, "absent": [], "ci95": ci}
    r = {**region, "frames": 80, "scenes": 4, "scene_s": 20.0, "bootstrap": 1000, "backend": "torch",
         "modalities": ["camera", "lidar"], "camera_fov": region, "latency_ms": {"p50": 1.0, "p99": 2.0},
         "pngs": []}  # fmt: skip
    text = format_eval(r)
    assert "mAP 71.8 [68.2, 75.0]  NDS 60.0 [55.0, 65.0]  mATE 0.25 [0.20, 0.30] m  mASE 0.25  " in text
    assert "(80 frames, 4 scenes, torch, camera+lidar)" in text
    assert " 50.0 [40.0, 60.0]" in text.splitlines()[2]
    assert "1000 draws of the 4 scenes (20 s each)" in text
    plain = format_eval({**r, "ci95": None, "camera_fov": {**region, "ci95": None}})
    assert "mAP 71.8  NDS 60.0" in plain and "[" not in plain
