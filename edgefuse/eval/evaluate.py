"""Evaluation: run a model over simulator logs and score it (the nuScenes detection metric: mAP, NDS,
mATE, mASE, mAOE, mAVE, mAAE and each class's AP and TP errors, :mod:`edgefuse.eval.metrics`; plus
latency), with a PR-curve PNG and BEV PNGs of the worst frames.

Backends (:mod:`edgefuse.runtime.backends`): ``torch`` (``.pt``), ``onnxruntime`` (``.onnx``, the
manifest from the ONNX metadata) and ``tensorrt`` (``.engine`` + sidecar); all run batch 1 on the cached
fixed-shape inputs, so ``latency_ms`` is the model alone (decode and top-K included, preprocessing not).
``modalities`` switches sensors off at run time (their inputs and
validity flags zeroed: the sensor-failure case). Ground truth is scored inside the model's BEV grid
(centres within the tensor spec's x/y ranges): what lies outside is out of the model's reach; inside it,
nuScenes' class ranges apply too. A class with no ground truth in the scored region is not scored (listed
under ``absent``): nuScenes would score it 0, but a log without cyclists says nothing of cyclists. The same
predictions are also scored inside the cameras' field of view (``camera_fov``: truth and predictions
whose centre projects into a camera image), the region where every sensor of the rig overlaps: the
simulated rig's one front camera (≈ 77°) and front radar (±60°) see about a third of the 360° grid, so
only there can a camera or radar failure, or a fusion gain, be judged (KITTI scores its front camera's
view the same way).

95 % intervals (:mod:`edgefuse.eval.intervals`): the frames are cut into scenes (``scene_s`` seconds of
one log, by ground-truth stamp) and every score, in both regions, gets the interval of ``n_boot`` scene
draws (``ci95`` {score: [lo, hi]}, ``scenes`` the number of scenes; ``n_boot`` 0: no intervals).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.eval.intervals import N_BOOT, SCENE_S, bootstrap, compare_intervals, prepare, scene_ids
from edgefuse.eval.metrics import TP_ERRORS, TP_THRESHOLD_M, evaluate_detections, match_class, pr_curve
from edgefuse.runtime.decode import to_detections
from edgefuse.runtime.feed import MIN_CAMERA_DEPTH_M, MODALITIES, apply_modalities, mask_radar_fields
from edgefuse.runtime.manifest import Manifest
from edgefuse.types import Detections

Infer = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray]]

#: The units of the TP errors, as the text view shows them.
TP_UNITS = {"ATE": " m", "ASE": "", "AOE": " rad", "AVE": " m/s", "AAE": ""}
#: The scores :func:`evaluate` gives for the whole evaluation (and again under ``camera_fov``).
SUMMARY_KEYS: tuple[str, ...] = ("mAP", "NDS", *(f"m{k}" for k in TP_ERRORS))


def load_predictor(model: str | Path, backend: str | None = None) -> tuple[Infer, Manifest, str]:
    """(infer, manifest, backend name) for a model file through :func:`edgefuse.models.open_backend`
    (the backend follows the file unless given). ``infer`` takes a batch-1 feed and returns (boxes,
    scores, labels) with the batch axis."""
    from edgefuse.models import open_backend

    b = open_backend(model, backend)

    def infer(feed):
        out = b.infer(feed)
        return out["boxes"], out["scores"], out["labels"]

    return infer, b.manifest, b.name


def in_grid(dets: Detections, spec) -> Detections:
    """The objects whose BEV centre lies inside the spec's x/y ranges."""
    (x0, x1), (y0, y1) = spec.x_range, spec.y_range
    keep = tuple(o for o in dets.objects if x0 <= o.box.center[0] < x1 and y0 <= o.box.center[1] < y1)
    return Detections(dets.stamp_ns, keep, dets.frame)


def in_camera_view(dets: Detections, projection: np.ndarray, image_hw: tuple[int, int]) -> Detections:
    """The objects whose box centre projects into any camera's image: ``projection`` (Ncam, 3, 4)
    base_link → input-image pixels, ``image_hw`` (Hi, Wi) of that image. Horizontal bounds only (a near
    object's centre may sit below the image's bottom edge and still be in view) and depth
    > ``MIN_CAMERA_DEPTH_M``."""
    if not dets.objects:
        return dets
    c = np.array([o.box.center for o in dets.objects], dtype=np.float64)  # (n, 3)
    uvw = np.einsum("kij,nj->kni", projection.astype(np.float64), np.c_[c, np.ones(len(c))])  # (Ncam, n, 3)
    depth = uvw[..., 2]
    u = uvw[..., 0] / np.where(depth > MIN_CAMERA_DEPTH_M, depth, 1.0)
    seen = ((depth > MIN_CAMERA_DEPTH_M) & (u >= 0) & (u <= image_hw[1] - 1)).any(axis=0)
    kept = tuple(o for o, k in zip(dets.objects, seen, strict=True) if k)
    return Detections(dets.stamp_ns, kept, dets.frame)


def frame_errors(pred: Detections, gt: Detections, classes, score_threshold: float) -> int:
    """False positives + misses at the 2 m threshold among predictions above ``score_threshold``."""
    p = Detections(pred.stamp_ns, tuple(o for o in pred.objects if o.score >= score_threshold))
    err = 0
    for label in classes:
        m = match_class([p], [gt], label, TP_THRESHOLD_M)
        tp = int(m.tp.sum())
        err += (len(m.tp) - tp) + (m.n_gt - tp)
    return err


@dataclass
class Predictions:
    """One model's detections on the cached frames of some logs, frame-aligned with the ground truth:
    ``preds``/``gts`` inside the BEV grid, ``fov_preds``/``fov_gts`` inside the cameras' view, ``scenes``
    (N,) int64 scene of each frame, ``latency_ms`` per frame (model only)."""

    preds: list[Detections]
    gts: list[Detections]
    fov_preds: list[Detections]
    fov_gts: list[Detections]
    scenes: np.ndarray
    latency_ms: list[float]
    classes: tuple[str, ...]
    backend: str
    data: object  # the CachedFrames read (the worst frames' PNGs load their feeds again)
    spec: object


def predict(
    model: str | Path,
    logs: Sequence[str | Path],
    *,
    backend: str | None = None,
    modalities: Sequence[str] = MODALITIES,
    cache_root: str | Path | None = None,
    score_threshold: float = 0.05,
    max_frames: int | None = None,
    progress: bool = True,
    without_radar_fields: Sequence[str] = (),
    scene_s: float = SCENE_S,
) -> Predictions:
    """Run ``model`` over the cached frames of ``logs`` (built on first use) with ``modalities`` on."""
    from tqdm import tqdm

    from edgefuse.dataset import CachedFrames, build_cache, default_cache_root
    from edgefuse.tensors import TensorSpec

    if not logs:
        raise InputError("eval: expected at least one log")
    infer, manifest, backend = load_predictor(model, backend)
    spec = TensorSpec.from_dict(manifest.tensor_spec, f"{model}: manifest tensor_spec")
    classes = tuple(manifest.classes)
    cache_root = Path(cache_root) if cache_root else default_cache_root(logs[0])
    dirs = [build_cache(p, spec, cache_root, progress=progress).directory for p in logs]
    data = CachedFrames(dirs, spec)
    n = len(data) if max_frames is None else min(len(data), max_frames)
    if n == 0:
        raise InputError(f"eval: no frames with ground truth in {[str(p) for p in logs]}")
    log_of = {Path(d): k for k, d in enumerate(dirs)}
    preds, gts, lat, stamps, log_ids = [], [], [], [], []
    fov_preds, fov_gts = [], []
    for i in tqdm(range(n), desc="eval", unit="frame", disable=not progress, leave=False):
        feed, gt = data.load(i)
        projection = feed["projection"]  # the view is the rig's, whichever sensors are switched off
        feed = mask_radar_fields(apply_modalities(feed, modalities), spec, without_radar_fields)
        batch = {k: v[None] for k, v in feed.items()}
        t0 = time.perf_counter()
        boxes, scores, labels = infer(batch)
        lat.append((time.perf_counter() - t0) * 1e3)
        preds.append(to_detections(boxes[0], scores[0], labels[0], gt.stamp_ns, classes, score_threshold))
        gts.append(in_grid(gt, spec))
        stamps.append(gt.stamp_ns)
        log_ids.append(log_of[data.files[i].parent])
        fov_preds.append(in_camera_view(preds[-1], projection, spec.image_size))
        fov_gts.append(in_camera_view(gts[-1], projection, spec.image_size))
    scenes = scene_ids(np.array(stamps, np.int64), np.array(log_ids), scene_s)
    return Predictions(preds, gts, fov_preds, fov_gts, scenes, lat, classes, backend, data, spec)


def evaluate(
    model: str | Path,
    logs: Sequence[str | Path],
    *,
    backend: str | None = None,
    modalities: Sequence[str] = MODALITIES,
    out_dir: str | Path | None = None,
    cache_root: str | Path | None = None,
    score_threshold: float = 0.05,
    worst: int = 3,
    max_frames: int | None = None,
    progress: bool = True,
    without_radar_fields: Sequence[str] = (),
    scene_s: float = SCENE_S,
    n_boot: int = N_BOOT,
    seed: int = 0,
    predictions: Predictions | None = None,
) -> dict:
    """Score ``model`` on ``logs`` (see module doc). Writes ``pr_curve.png`` and ``worst_<i>.png`` to
    ``out_dir`` (default: next to the first log, ``<log>.eval/``). ``scene_s``, ``n_boot`` and ``seed``:
    the scenes and draws of the intervals. ``predictions``: the model's :func:`predict` run on these
    logs, when the caller has it already (a paired comparison)."""
    pr = predictions or predict(
        model, logs, backend=backend, modalities=modalities, cache_root=cache_root,
        score_threshold=score_threshold, max_frames=max_frames, progress=progress,
        without_radar_fields=without_radar_fields, scene_s=scene_s,
    )  # fmt: skip
    preds, gts, fov_preds, fov_gts = pr.preds, pr.gts, pr.fov_preds, pr.fov_gts
    classes, scenes, data, spec = pr.classes, pr.scenes, pr.data, pr.spec
    lat, n = pr.latency_ms, len(pr.preds)
    result = evaluate_detections(preds, gts, classes, skip_absent=True)
    fov = evaluate_detections(fov_preds, fov_gts, classes, skip_absent=True)
    out = Path(out_dir) if out_dir else Path(str(logs[0]) + ".eval")
    out.mkdir(parents=True, exist_ok=True)
    errors = [frame_errors(p, g, classes, 0.3) for p, g in zip(preds, gts, strict=True)]
    order = np.argsort(errors, kind="stable")[::-1][:worst]
    pngs = [str(write_pr_png(out / "pr_curve.png", preds, gts, classes))]
    for rank, i in enumerate(order):
        feed, _ = data.load(int(i))
        pngs.append(str(write_bev_png(out / f"worst_{rank}.png", feed, preds[i], gts[i], spec, errors[i])))
    lat_a = np.array(lat[1:] if len(lat) > 1 else lat)

    def num(x: float) -> float | None:  # NaN (undefined for the class, no class with truth) → null in JSON
        return None if x != x else float(x)

    def scores(r: dict, p: Sequence[Detections], g: Sequence[Detections]) -> dict:
        ci = None
        if n_boot > 0:
            ci = bootstrap(prepare(p, g, classes, scenes, skip_absent=True), n_boot, seed)
        return {
            **{k: num(r[k]) for k in SUMMARY_KEYS},
            "per_class": {
                k: {**{e: num(v[e]) for e in ("AP", *TP_ERRORS)}, "n_gt": v["n_gt"]}
                for k, v in r["per_class"].items()
            },
            "absent": r["absent"],
            "ci95": None if ci is None else {k: [num(lo), num(hi)] for k, (lo, hi) in ci.items()},
        }

    return {
        "model": str(model),
        "backend": pr.backend,
        "modalities": list(modalities),
        "without_radar_fields": list(without_radar_fields),
        "frames": n,
        "scenes": int(scenes.max()) + 1,
        "scene_s": scene_s,
        "bootstrap": n_boot,
        **scores(result, preds, gts),
        "camera_fov": scores(fov, fov_preds, fov_gts),
        "latency_ms": {"p50": float(np.median(lat_a)), "p99": float(np.percentile(lat_a, 99))},
        "pngs": pngs,
    }


def compare_models(
    a: Predictions, b: Predictions, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, dict[str, dict]]:
    """Model b against model a on the same frames (two :func:`predict` runs over the same logs): for each
    region (``grid``, ``camera_fov``) and score, ``delta`` = b − a, its paired bootstrap ``ci95`` (the same
    scene draws for both) and ``separated`` (the interval excludes 0: the difference holds)."""
    if len(a.preds) != len(b.preds) or not np.array_equal(a.scenes, b.scenes) or a.classes != b.classes:
        raise InputError(
            f"eval --against: the two models were run on different frames or classes ({len(a.preds)} frames, "
            f"{list(a.classes)} vs {len(b.preds)}, {list(b.classes)}): compare models of one tensor spec"
        )
    out = {}
    for region, (pa, ga, pb, gb) in {
        "grid": (a.preds, a.gts, b.preds, b.gts),
        "camera_fov": (a.fov_preds, a.fov_gts, b.fov_preds, b.fov_gts),
    }.items():
        d = compare_intervals(
            prepare(pa, ga, a.classes, a.scenes, skip_absent=True),
            prepare(pb, gb, b.classes, b.scenes, skip_absent=True),
            n_boot,
            seed,
        )
        num = lambda x: None if x != x else float(x)  # noqa: E731  (NaN → null in JSON)
        out[region] = {
            k: {"delta": num(v.delta), "ci95": [num(v.ci95[0]), num(v.ci95[1])], "separated": v.separated}
            for k, v in d.items()
        }
    return out


def format_comparison(c: dict) -> str:
    """The human view of an ``--against`` comparison: b − a per score, its paired interval, and whether the
    difference holds (the interval excludes 0)."""
    lines = [
        f"compared: {c['model']} ({'+'.join(c['modalities'])}) minus this run, paired over the same scenes "
        "(holds: its 95 % interval excludes 0)"
    ]
    for region, title in (("grid", "whole grid"), ("camera_fov", "cameras' view")):
        cells = []
        for k, v in c["difference"][region].items():
            if "/" in k and not k.endswith("/AP"):
                continue  # per-class TP errors: in the JSON
            scale = 100.0 if k in ("mAP", "NDS") or k.endswith("/AP") else 1.0
            lo, hi = v["ci95"]
            ci = "[–, –]" if lo is None else f"[{scale * lo:+.2f}, {scale * hi:+.2f}]"
            d = "–" if v["delta"] is None else f"{scale * v['delta']:+.2f}"
            cells.append(f"{k} {d} {ci}{' holds' if v['separated'] else ''}")
        lines.append(f"  {title}: " + "; ".join(cells))
    return "\n".join(lines)


def write_pr_png(path: Path, preds, gts, classes) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label in classes:
        m = match_class(preds, gts, label, TP_THRESHOLD_M)
        if m.n_gt == 0:
            continue
        rec, prec = pr_curve(m.tp, m.n_gt)
        ax.plot(rec, prec, label=f"{label} (n={m.n_gt})")
    ax.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR at 2 m centre distance"
    )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_bev_png(path: Path, feed, pred: Detections, gt: Detections, spec, errors: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    counts = feed["lidar_counts"]
    keep = np.arange(feed["lidar_pillars"].shape[1])[None, :] < counts[:, None]
    pts = feed["lidar_pillars"][keep]
    ax.scatter(pts[:, 0], pts[:, 1], s=0.2, c="0.6", linewidths=0)
    rc = feed["radar_counts"]
    rkeep = np.arange(feed["radar_pillars"].shape[1])[None, :] < rc[:, None]
    rp = feed["radar_pillars"][rkeep]
    ax.scatter(rp[:, 0], rp[:, 1], s=6, c="tab:blue", marker="x", linewidths=0.8)
    for dets, colour, thr in ((gt, "tab:green", 0.0), (pred, "tab:red", 0.3)):
        for o in dets.objects:
            if o.score < thr:
                continue
            c = o.box.corners()[:4]
            ax.plot(np.r_[c[:, 0], c[0, 0]], np.r_[c[:, 1], c[0, 1]], c=colour, lw=1)
    ax.set(
        xlim=spec.x_range,
        ylim=spec.y_range,
        aspect="equal",
        xlabel="x (m)",
        ylabel="y (m)",
        title=f"{errors} errors at 2 m (green truth, red ≥ 0.3)",
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_eval(r: dict) -> str:
    """The human view of :func:`evaluate`'s result: each score with its 95 % interval where there is one,
    ``mAP 71.8 [68.2, 75.0]`` (percent for mAP, NDS and AP; the TP errors in their units)."""

    def pct(x):
        return "  –  " if x is None else f"{100 * x:5.1f}"

    def err(x):
        return "  –  " if x is None else f"{x:5.2f}"

    def ci(s: dict, key: str, fmt) -> str:
        if not s.get("ci95") or key not in s["ci95"]:
            return ""
        lo, hi = s["ci95"][key]
        return f" [{fmt(lo).strip()}, {fmt(hi).strip()}]"

    def summary(s: dict) -> str:
        errors = "  ".join(
            f"m{k} {err(s[f'm{k}']).strip()}{ci(s, f'm{k}', err)}{TP_UNITS[k]}" for k in TP_ERRORS
        )
        m_ap = f"{pct(s['mAP']).strip()}{ci(s, 'mAP', pct)}"
        return f"mAP {m_ap}  NDS {pct(s['NDS']).strip()}{ci(s, 'NDS', pct)}  {errors}"

    ap_w = 19 if r.get("ci95") else 6
    head = "".join(f" {k + TP_UNITS[k]:>9}" for k in TP_ERRORS)
    scenes = f", {r['scenes']} scenes" if "scenes" in r else ""
    lines = [
        f"{summary(r)}   ({r['frames']} frames{scenes}, {r['backend']}, {'+'.join(r['modalities'])})",
        f"{'class':<12} {'AP':>{ap_w}}{head} {'n_gt':>6}",
    ]
    for k, v in r["per_class"].items():
        errors = "".join(f" {err(v[e]):>9}" for e in TP_ERRORS)
        ap = pct(v["AP"]) + ci(r, f"{k}/AP", pct)
        lines.append(f"{k:<12} {ap:>{ap_w}}{errors} {v['n_gt']:>6}")
    if r["absent"]:
        lines.append(f"not scored (no ground truth): {', '.join(r['absent'])}")
    fov = r["camera_fov"]
    lines.append(
        f"in the cameras' view: {summary(fov)}   "
        + ", ".join(
            f"{k} {pct(v['AP']).strip()}{ci(fov, f'{k}/AP', pct)} (n={v['n_gt']})"
            for k, v in fov["per_class"].items()
        )
    )
    if r.get("ci95"):
        lines.append(
            f"[lo, hi]: 95 % interval, {r['bootstrap']} draws of the {r['scenes']} scenes "
            f"({r['scene_s']:g} s each) with replacement; a difference holds only where the paired "
            "interval excludes 0"
        )
    lines.append(
        f"latency (model, batch 1): p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms"
    )
    lines.append("pictures: " + ", ".join(r["pngs"]))
    return "\n".join(lines)
