"""The bundled model scores above stated floors on a fixed simulator log, on every backend it ships for,
through the path ``edgefuse eval`` takes (:func:`edgefuse.eval.evaluate.evaluate`); and deliberately
broken decodes (the predictions post-processed, no library code touched) cross those floors, so the
floors tell a working model from a broken one.

The log: the ``sim_log`` fixture (``tests/conftest.py``), 2.5 s of the simulator's default scenario,
seed 0: 25 frames, 465 cars and 72 pedestrians in the grid (116 and 29 in the camera's view), no
cyclists. Measured on it with this commit's bundled weights (``grid``: the whole BEV grid; ``fov``: in
the cameras' view; torch and onnxruntime fp32 equal to the third decimal)::

    backend            mAP grid / fov   mATE grid / fov   mASE        mAOE        mAVE
    torch (.pt)        0.974 / 0.979    0.113 / 0.109     0.199/0.205 0.186/0.368 0.737/0.980
    onnxruntime fp32   0.974 / 0.979    0.113 / 0.109     0.199/0.205 0.186/0.368 0.737/0.980
    onnxruntime INT8   0.972 / 0.977    0.112 / 0.110     0.201/0.206 0.190/0.372 0.759/0.997

Floors and ceilings, the same for every backend, grid and fov (:data:`MAP_FLOOR`, :data:`CEILINGS`):
mAP > 0.85 (measured − 12 points); mATE < 0.25 m, mASE < 0.35, mAOE < 0.8 rad, mAVE < 1.6 m/s.

Broken decodes of the fp32 predictions, measured (grid / fov), each crossing its bound
(:data:`BROKEN`): x and y swapped → mAP 0.000 / 0.000; class indices shifted by one → mAP 0.000 /
0.000; the offset taken from the cell's centre (+½ cell in x and y) → mATE 0.473 / 0.448 (mAP 0.819 /
0.828); yaw from atan2(cos, sin) → mAOE 1.571 / 1.571; velocity negated → mAVE 5.60 / 8.40; vx and vy
swapped → mAVE 4.10 / 6.18; length and width swapped → mASE 0.588 / 0.603. A negated yaw does not
show: the default scenario's traffic runs along x (yaw 0 or π, where −yaw ≡ yaw up to the metric), so
``tests/test_model_conventions.py`` pins the yaw sign by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgefuse.runtime.bundled import FILES

pytestmark = pytest.mark.skipif(
    not all(p.is_file() for p in FILES.values()), reason="no bundled model (python -m edgefuse.recipe)"
)

KINDS = ("pt", "onnx", "int8")  # the bundled files (edgefuse.runtime.bundled.FILES)
#: mAP floor, grid and camera view, every backend (measured values: module doc).
MAP_FLOOR = 0.85
#: TP-error ceilings, grid and camera view, every backend (measured values: module doc).
CEILINGS: dict[str, float] = {"mATE": 0.25, "mASE": 0.35, "mAOE": 0.8, "mAVE": 1.6}
#: The head's cell (m): pillar 0.32 m × bev_downsample 2 × head_stride 1 of the edge configuration.
HEAD_CELL_M = 0.64


@dataclass
class Run:
    """One backend's evaluation: the result dict, and the raw model outputs of each frame (in the order
    :func:`evaluate` ran them) with the manifest and backend name, to score post-processed variants."""

    result: dict
    outputs: list
    manifest: object
    backend: str
    work: Path


def _evaluate_with(monkeypatch_load, model, log: Path, work: Path) -> dict:
    import edgefuse.eval.evaluate as ev

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev, "load_predictor", monkeypatch_load)
        return ev.evaluate(
            model, [log], cache_root=work / "cache", out_dir=work / "eval", progress=False, worst=0
        )


def _score(kind: str, log: Path, work: Path) -> Run:
    """Evaluate the bundled ``kind`` file on ``log``, recording the raw outputs."""
    import edgefuse.eval.evaluate as ev

    real = ev.load_predictor
    run = Run({}, [], None, "", work)

    def load(model, backend=None):
        infer, manifest, name = real(model, backend)
        run.manifest, run.backend = manifest, name

        def recording(feed):
            out = infer(feed)
            run.outputs.append(tuple(np.array(a, copy=True) for a in out))
            return out

        return recording, manifest, name

    run.result = _evaluate_with(load, FILES[kind], log, work)
    return run


def _rescore(run: Run, post, log: Path) -> dict:
    """Score ``run``'s recorded outputs after ``post(boxes, scores, labels, classes)`` (arrays with the
    batch axis, copies) through :func:`evaluate`, the model not run again."""

    def load(model, backend=None):
        frames = iter(run.outputs)

        def replay(feed):
            boxes, scores, labels = (a.copy() for a in next(frames))
            return post(boxes, scores, labels, tuple(run.manifest.classes))

        return replay, run.manifest, run.backend

    return _evaluate_with(load, FILES["onnx"], log, run.work)


def _summary(r: dict) -> dict:
    keys = ("mAP", *CEILINGS)
    return {
        **{k: round(r[k], 3) for k in keys},
        **{f"fov_{k}": round(r["camera_fov"][k], 3) for k in keys},
    }


# --- deliberately broken decodes (post-processing of correct predictions) ---------------------------


def _xy_swapped(b, s, lab, classes):
    b[..., [0, 1]] = b[..., [1, 0]]
    return b, s, lab


def _classes_rolled(b, s, lab, classes):
    return b, s, (lab + 1) % len(classes)


def _sin_cos_swapped(b, s, lab, classes):  # atan2(cos, sin) instead of atan2(sin, cos)
    b[..., 6] = np.arctan2(np.cos(b[..., 6]), np.sin(b[..., 6]))
    return b, s, lab


def _velocity_negated(b, s, lab, classes):
    b[..., 7:9] = -b[..., 7:9]
    return b, s, lab


def _velocity_swapped(b, s, lab, classes):
    b[..., [7, 8]] = b[..., [8, 7]]
    return b, s, lab


def _length_width_swapped(b, s, lab, classes):
    b[..., [3, 4]] = b[..., [4, 3]]
    return b, s, lab


def _cell_centre_added(b, s, lab, classes):  # decoding as if the offset were from the cell's centre
    b[..., 0:2] += HEAD_CELL_M / 2
    return b, s, lab


#: broken decode → (post-processing, the score it must push across its bound: "mAP" below
#: :data:`MAP_FLOOR`, a TP error above its :data:`CEILINGS`), in the grid and in the cameras' view.
BROKEN = {
    "xy_swapped": (_xy_swapped, "mAP"),
    "classes_rolled": (_classes_rolled, "mAP"),
    "cell_centre_added": (_cell_centre_added, "mATE"),
    "sin_cos_swapped": (_sin_cos_swapped, "mAOE"),
    "velocity_negated": (_velocity_negated, "mAVE"),
    "velocity_swapped": (_velocity_swapped, "mAVE"),
    "length_width_swapped": (_length_width_swapped, "mASE"),
}


def _within_bounds(r: dict) -> dict[str, bool]:
    """Score → whether it keeps its bound, for the grid and (``fov_…``) the cameras' view."""
    out = {}
    for prefix, s in (("", r), ("fov_", r["camera_fov"])):
        out[prefix + "mAP"] = s["mAP"] > MAP_FLOOR
        out.update({prefix + k: s[k] < c for k, c in CEILINGS.items()})
    return out


@pytest.fixture(scope="module")
def runs(sim_log, tmp_path_factory):
    """kind → :class:`Run`, each evaluated on first use (so each backend's cost lands in its own test)."""
    work = tmp_path_factory.mktemp("floors")
    done: dict[str, Run] = {}

    def get(kind: str) -> Run:
        if kind not in done:
            done[kind] = _score(kind, sim_log, work)
        return done[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_bundled_model_scores_above_its_floor(runs, kind):
    run = runs(kind)
    r = run.result
    assert run.backend == ("torch" if kind == "pt" else "onnxruntime")
    assert r["frames"] == 25 and sum(v["n_gt"] for v in r["per_class"].values()) >= 400
    assert sum(v["n_gt"] for v in r["camera_fov"]["per_class"].values()) >= 100
    bounds = _within_bounds(r)
    assert all(bounds.values()), (kind, [k for k, ok in bounds.items() if not ok], _summary(r))


def test_fp32_onnx_and_torch_agree(runs):
    a, b = runs("onnx").result, runs("pt").result
    for ra, rb in ((a, b), (a["camera_fov"], b["camera_fov"])):
        assert ra["mAP"] == pytest.approx(rb["mAP"], abs=0.005)
        for k in CEILINGS:
            assert ra[k] == pytest.approx(rb[k], abs=0.01), k
        for c, row in ra["per_class"].items():
            assert row["n_gt"] == rb["per_class"][c]["n_gt"]
            assert row["AP"] == pytest.approx(rb["per_class"][c]["AP"], abs=0.01), c
    # frame by frame: each confident detection of one has its twin in the other (same class, centre
    # within 2 cm, score within 1e-3; the twin may sit just under the cut)
    n = 0
    for one, other in ((runs("onnx"), runs("pt")), (runs("pt"), runs("onnx"))):
        for (ba, sa, la), (bb, sb, lb) in zip(one.outputs, other.outputs, strict=True):
            for box, score, label in zip(ba[0], sa[0], la[0], strict=True):
                if score < 0.3:
                    continue
                d = np.hypot(*(bb[0][:, :2] - box[:2]).T) + 1e3 * (lb[0] != label)
                j = int(np.argmin(d))
                assert d[j] < 0.02 and abs(sb[0][j] - score) < 1e-3
                n += 1
    assert n >= 400


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_decode_crosses_the_floor(runs, name, sim_log):
    """The fp32 predictions post-processed by a broken decode convention, scored the same way: the score
    the break touches crosses its bound, in the grid and in the cameras' view."""
    post, key = BROKEN[name]
    r = _rescore(runs("onnx"), post, sim_log)
    bounds = _within_bounds(r)
    assert not bounds[key] and not bounds["fov_" + key], (name, _summary(r))
