"""Run the same logged frames through several models/backends/precisions and compare them: the
regression gate for any precision change (``edgefuse compare LOG --models A,B,… [--json]``).

Per frame, each model's detections (score ≥ ``score_threshold``) are matched one to one with the first
model's (the reference) by :func:`match_detections`: same class, greedy by reference score, nearest BEV
centre within ``match_m``. Reported per model: matched / only-in-reference / only-in-model counts, centre
error and score error of the matched pairs (mean, max), and the mAP against the logs' ground truth (the
evaluation's nuScenes-style mAP, inside the model's BEV grid). numpy + the backends only (no torch unless
a ``.pt`` model is in the list).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.types import Detections


class CompareError(InputError):
    """Bad compare input (names the argument/model and what was expected)."""


def match_detections(ref: Detections, other: Detections, match_m: float) -> list[tuple[int, int, float]]:
    """One-to-one matches (i in ref, j in other, BEV centre distance m): for each reference detection in
    descending score order, the nearest unmatched same-class detection of ``other`` within ``match_m``."""
    used: set[int] = set()
    out = []
    order = sorted(range(len(ref.objects)), key=lambda i: -ref.objects[i].score)
    oc = np.array([o.box.center[:2] for o in other.objects]).reshape(-1, 2)
    for i in order:
        a = ref.objects[i]
        best, best_d = -1, match_m
        d = np.hypot(*(oc - np.asarray(a.box.center[:2])).T) if len(oc) else np.zeros(0)
        for j in np.argsort(d, kind="stable"):
            j = int(j)
            if d[j] > best_d:
                break
            if j not in used and other.objects[j].label == a.label:
                best, best_d = j, float(d[j])
                break
        if best >= 0:
            used.add(best)
            out.append((i, best, best_d))
    return out


def compare(
    log: str | Path,
    models: Sequence[str | Path],
    *,
    cache_root: str | Path | None = None,
    score_threshold: float = 0.3,
    match_m: float = 0.5,
    max_frames: int | None = None,
    threads: int = 2,
    progress: bool = True,
) -> dict:
    from tqdm import tqdm

    from edgefuse.dataset import CachedFrames, build_cache
    from edgefuse.eval.evaluate import in_grid
    from edgefuse.eval.metrics import evaluate_detections
    from edgefuse.models import open_backend
    from edgefuse.runtime.decode import to_detections
    from edgefuse.tensors import TensorSpec

    if len(models) < 2:
        raise CompareError(f"compare --models: expected at least two models, got {list(map(str, models))}")
    backends = [open_backend(m, threads=threads) for m in models]
    try:
        ref_spec = backends[0].manifest.tensor_spec
        for m, b in zip(models, backends, strict=True):
            if b.manifest.tensor_spec != ref_spec:
                raise CompareError(f"{m}: tensor spec differs from {models[0]}'s; models must share inputs")
        spec = TensorSpec.from_dict(ref_spec, f"{models[0]}: manifest tensor_spec")
        classes = tuple(backends[0].manifest.classes)
        cache_root = Path(cache_root) if cache_root else Path(log).parent / ".edgefuse-cache"
        data = CachedFrames([build_cache(log, spec, cache_root, progress=progress).directory], spec)
        n = len(data) if max_frames is None else min(len(data), max_frames)
        if n == 0:
            raise CompareError(f"{log}: no frames with ground truth")
        preds: list[list[Detections]] = [[] for _ in backends]
        gts = []
        for i in tqdm(range(n), desc="compare", unit="frame", disable=not progress, leave=False):
            feed, gt = data.load(i)
            batch = {k: v[None] for k, v in feed.items()}
            gts.append(in_grid(gt, spec))
            for k, b in enumerate(backends):
                o = b.infer(batch)
                preds[k].append(
                    to_detections(o["boxes"][0], o["scores"][0], o["labels"][0], gt.stamp_ns, classes, 0.05)
                )
    finally:
        for b in backends:
            b.close()

    def above(d: Detections) -> Detections:
        return Detections(d.stamp_ns, tuple(o for o in d.objects if o.score >= score_threshold), d.frame)

    rows = []
    for k, m in enumerate(models):
        ev = evaluate_detections(preds[k], gts, classes, skip_absent=True)
        matched = only_ref = only_model = 0
        centre, score = [], []
        for f in range(n):
            a, b = above(preds[0][f]), above(preds[k][f])
            pairs = match_detections(a, b, match_m)
            matched += len(pairs)
            only_ref += len(a.objects) - len(pairs)
            only_model += len(b.objects) - len(pairs)
            centre += [d for _, _, d in pairs]
            score += [abs(a.objects[i].score - b.objects[j].score) for i, j, _ in pairs]
        m_ap = ev["mAP"]
        rows.append(
            {
                "model": str(m),
                "backend": backends[k].name,
                "mAP": None if m_ap != m_ap else float(m_ap),
                "matched": matched,
                "only_reference": only_ref,
                "only_model": only_model,
                "centre_error_m": _stats(centre),
                "score_error": _stats(score),
            }
        )
    return {
        "log": str(log),
        "frames": n,
        "score_threshold": score_threshold,
        "match_m": match_m,
        "models": rows,
    }


def _stats(v: list[float]) -> dict:
    return {"mean": float(np.mean(v)) if v else None, "max": float(np.max(v)) if v else None}


def format_compare(r: dict) -> str:
    def f(x, fmt):
        return "–" if x is None else format(x, fmt)

    lines = [
        f"{r['frames']} frames of {r['log']}; detections ≥ {r['score_threshold']}, "
        f"matched within {r['match_m']} m to the first model",
        f"{'model':<40} {'backend':<12} {'mAP':>6} {'matched':>8} {'ref only':>8} {'own only':>8} "
        f"{'centre mean/max m':>18} {'score mean/max':>16}",
    ]
    for m in r["models"]:
        lines.append(
            f"{Path(m['model']).name[-40:]:<40} {m['backend']:<12} "
            f"{f(None if m['mAP'] is None else 100 * m['mAP'], '6.1f'):>6} "
            f"{m['matched']:>8} {m['only_reference']:>8} {m['only_model']:>8} "
            f"{f(m['centre_error_m']['mean'], '.3f') + '/' + f(m['centre_error_m']['max'], '.3f'):>18} "
            f"{f(m['score_error']['mean'], '.3f') + '/' + f(m['score_error']['max'], '.3f'):>16}"
        )
    return "\n".join(lines)
