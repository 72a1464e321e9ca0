"""On a real simulator log with a briefly trained model: torch vs onnxruntime FP32 (acceptance: head tensors
within 1e-4 abs + 1e-3 rel, decoded boxes one to one within 1 cm), the CLI (export, quantize from logs,
compare, eval --backend), and detection matching on hand-made detections."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _specs import TINY_SPEC as SPEC
from scipy.optimize import linear_sum_assignment

from edgefuse.cli import main
from edgefuse.dataset import CachedFrames, build_cache
from edgefuse.engine.compare import match_detections
from edgefuse.engine.quantize import head_outputs
from edgefuse.models import open_backend
from edgefuse.sim.run import record
from edgefuse.types import Box3D, Detection, Detections


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from edgefuse.model.train import train_model

    d = tmp_path_factory.mktemp("rt")
    log = d / "sim.mcap"
    record(log, "urban", 5, 1.2, progress=False)
    train_model([log], d / "train", epochs=2, batch_size=2, lr=5e-3, seed=0, spec=SPEC, progress=False,
                modality_dropout=0.0, cache_root=d / "cache")  # fmt: skip
    return d, log, d / "train" / "model.pt"


@pytest.fixture(scope="module")
def fp32(work):
    d, _, pt = work
    assert main(["export", "--model", str(pt), "--out", str(d / "m.onnx"), "--json"]) == 0
    return d / "m.onnx"


def _frames(d):
    data = CachedFrames([build_cache(d / "sim.mcap", SPEC, d / "cache").directory], SPEC)
    return [{k: v[None] for k, v in data.load(i)[0].items()} for i in range(len(data))]


def test_torch_and_onnxruntime_fp32_agree(work, fp32):
    d, _, pt = work
    feeds = _frames(d)
    assert len(feeds) >= 8
    torch_b, ort_b = open_backend(pt), open_backend(fp32)
    assert (torch_b.name, ort_b.name) == ("torch", "onnxruntime")
    ort_heads = head_outputs(fp32, feeds)
    n_boxes = 0
    for feed, oh in zip(feeds, ort_heads, strict=True):
        th = np.concatenate([h.ravel() for h in torch_b.heads(feed)])
        np.testing.assert_allclose(oh, th, atol=1e-4, rtol=1e-3)
        a, b = torch_b.infer(feed), ort_b.infer(feed)
        # boxes whose score is within 1e-4 of the K-th score may swap in or out of the top-K: left out
        kth = min(a["scores"][0].min(), b["scores"][0].min())
        ka = a["scores"][0] > kth + 1e-4
        kb = b["scores"][0] > kth + 1e-4
        assert abs(int(ka.sum()) - int(kb.sum())) == 0
        ca, cb = a["boxes"][0][ka, :2], b["boxes"][0][kb, :2]
        la, lb = a["labels"][0][ka], b["labels"][0][kb]
        cost = np.hypot(*(ca[:, None] - cb[None]).transpose(2, 0, 1)) + 1e3 * (la[:, None] != lb[None])
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == len(ca) == len(cb)
        assert cost[rows, cols].max() < 0.01  # same class, centre within 1 cm
        np.testing.assert_allclose(b["scores"][0][kb][cols], a["scores"][0][ka][rows], atol=1e-4)
        n_boxes += len(rows)
    assert n_boxes > 100


def test_quantize_from_logs_and_compare_cli(work, fp32, capsys):
    d, log, pt = work
    capsys.readouterr()
    rc = main(["quantize", str(fp32), "--calib", str(log), "--out", str(d / "m8.onnx"), "--frames", "6",
               "--cache", str(d / "cache"), "--json"])  # fmt: skip
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["calibration_frames"] == 6 and r["method"] == "percentile" and (d / "m8.onnx").is_file()
    rc = main(["compare", str(log), "--models", f"{fp32},{pt},{d / 'm8.onnx'}", "--score-threshold", "0.1",
               "--cache", str(d / "cache"), "--json"])  # fmt: skip
    assert rc == 0
    c = json.loads(capsys.readouterr().out)
    ref, torch_row, int8 = c["models"]
    assert [m["backend"] for m in c["models"]] == ["onnxruntime", "torch", "onnxruntime"]
    assert ref["matched"] > 0 and ref["only_reference"] == ref["only_model"] == 0
    assert ref["centre_error_m"]["max"] == 0.0  # the reference against itself
    # torch vs onnxruntime FP32: the same detections (1 cm, 1e-4)
    assert torch_row["matched"] >= ref["matched"] - 1
    assert torch_row["centre_error_m"]["max"] < 0.01 and torch_row["score_error"]["max"] < 1e-4
    assert torch_row["mAP"] == pytest.approx(ref["mAP"], abs=0.02)
    # INT8 against FP32 (a 2-epoch model: measured mAP 0.202 vs 0.198, 1181 of 1200 boxes matched)
    assert int8["matched"] >= 0.9 * ref["matched"] and int8["mAP"] == pytest.approx(ref["mAP"], abs=0.05)
    # the human table names each model
    models = f"{fp32},{d / 'm8.onnx'}"
    assert main(["compare", str(log), "--models", models, "--cache", str(d / "cache")]) == 0
    out = capsys.readouterr().out
    assert "m.onnx" in out and "m8.onnx" in out and "mAP" in out


def test_eval_backend_follows_the_file(work, fp32, capsys, tmp_path):
    d, log, _ = work
    capsys.readouterr()
    rc = main(["eval", str(log), "--model", str(fp32), "--backend", "onnxruntime", "--out", str(tmp_path),
               "--cache", str(d / "cache"), "--json"])  # fmt: skip
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "onnxruntime"
    rc = main(["eval", str(log), "--model", str(fp32), "--backend", "tensorrt", "--cache", str(d / "cache")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "m.onnx" in err and ".engine" in err and len(err.strip().splitlines()) == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"garbage")
    rc = main(["quantize", str(tmp_path / "m.onnx"), "--calib", "x.mcap", "--out", str(tmp_path / "q.onnx")])
    assert rc == 2
    assert "m.onnx" in capsys.readouterr().err
    rc = main(["build-engine", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "m.engine")])
    assert rc == 2
    assert "m.onnx" in capsys.readouterr().err
    rc = main(["compare", "x.mcap", "--models", str(tmp_path / "m.onnx")])
    assert rc == 2
    assert "at least two" in capsys.readouterr().err


def _det(label, x, y, score):
    return Detection(label, score, Box3D(np.array([x, y, 0.0]), np.array([4.0, 2.0, 1.5]), 0.0), np.zeros(2))


def test_match_detections_one_to_one_by_class_and_distance():
    ref = Detections(0, (_det("car", 0, 0, 0.9), _det("car", 5, 0, 0.8), _det("pedestrian", 10, 0, 0.7)))
    other = Detections(
        0,
        (
            _det("car", 0.3, 0, 0.5),  # matches ref 0
            _det("car", 0.1, 0, 0.6),  # closer to ref 0: taken by it
            _det("pedestrian", 5, 0, 0.8),  # wrong class for ref 1
            _det("pedestrian", 10.2, 0.1, 0.7),  # matches ref 2
        ),
    )
    pairs = match_detections(ref, other, match_m=0.5)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 1), (2, 3)]
    d = {i: dist for i, _, dist in pairs}
    assert d[0] == pytest.approx(0.1) and d[2] == pytest.approx(np.hypot(0.2, 0.1))
    assert match_detections(ref, other, match_m=0.05) == []


# ---------------------------------------------------------------- onnxruntime execution providers


def test_provider_choice_and_fallback_order():
    from edgefuse.runtime.backends import BackendError, ort_providers

    cpu, cuda, trt = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
    assert ort_providers(None, [cpu]) == ([cpu], [])  # the PyPI wheel
    assert ort_providers(None, [trt, cuda, cpu]) == ([trt, cuda, cpu], [])  # onnxruntime-gpu on a Jetson
    assert ort_providers(["cuda"], [trt, cuda, cpu]) == ([cuda, cpu], [])  # CPU always the fallback
    assert ort_providers(["cpu", "cuda"], [cuda, cpu]) == ([cpu, cuda], [])  # the order asked for
    assert ort_providers([cuda, "CUDA"], [cuda, cpu]) == ([cuda, cpu], [])  # full names, once
    chosen, notes = ort_providers(["tensorrt", "cuda"], [cpu])
    assert chosen == [cpu] and len(notes) == 2 and trt in notes[0] and "not in this onnxruntime" in notes[0]
    with pytest.raises(BackendError, match="--providers gpu: expected some of tensorrt, cuda, cpu"):
        ort_providers(["gpu"], [cpu])


def test_a_gpu_provider_asked_for_on_a_cpu_onnxruntime_falls_back_to_cpu(fp32, work):
    """The PyPI onnxruntime has no CUDA provider: asking for it runs on the CPU, says so, and gives the
    same outputs as the default."""
    d, _, _ = work
    feed = _frames(d)[0]
    a = open_backend(fp32, providers=["cuda", "cpu"])
    b = open_backend(fp32)
    assert a.providers == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in n for n in a.provider_notes)
    ra, rb = a.infer(feed), b.infer(feed)
    assert all(np.array_equal(ra[k], rb[k]) for k in rb)


def _fake_cuda_onnxruntime(monkeypatch, cuda_fails_with: str, cpu_fails_with: str | None = None):
    """onnxruntime as onnxruntime-gpu would look on a machine where a CUDA session cannot be made: CUDA
    listed, and a session whose first provider is CUDA raises ``cuda_fails_with`` (onnxruntime's own
    failure, at the real constructor's boundary); CPU sessions are real unless ``cpu_fails_with``."""
    import onnxruntime as ort

    real = ort.InferenceSession
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"

    def session(path, so=None, providers=None, provider_options=None):
        if providers and providers[0] == cuda:
            raise RuntimeError(cuda_fails_with)
        if cpu_fails_with is not None:
            raise RuntimeError(cpu_fails_with)
        return real(path, so, providers=providers, provider_options=provider_options)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [cuda, cpu])
    monkeypatch.setattr(ort, "InferenceSession", session)


def test_a_gpu_provider_that_cannot_run_is_left_out_with_its_reason(fp32, monkeypatch):
    _fake_cuda_onnxruntime(monkeypatch, "libcublasLt.so.12: cannot open shared object file")
    b = open_backend(fp32)
    assert b.providers == ["CPUExecutionProvider"]
    assert b.provider_notes == [
        "CUDAExecutionProvider left out: the session could not be made with it "
        "(libcublasLt.so.12: cannot open shared object file)"
    ]


def test_a_model_that_fails_on_every_provider_is_one_error_naming_the_model(fp32, monkeypatch):
    """Not a misleading 'CUDA failed' note followed by a CPU error: one error that says the model fails
    with every provider tried, with the CPU's reason."""
    from edgefuse.runtime.backends import BackendError

    _fake_cuda_onnxruntime(
        monkeypatch, "Could not find an implementation for Foo", "Foo(42) is not a registered op"
    )
    with pytest.raises(BackendError) as e:
        open_backend(fp32)
    msg = str(e.value)
    assert msg.startswith(f"{fp32}: onnxruntime cannot load it (also with CUDAExecutionProvider: the model, "
                          "not those providers): Foo(42) is not a registered op")  # fmt: skip
    assert len(msg.splitlines()) == 1


def test_providers_are_for_onnxruntime_models_only(work, tmp_path, capsys):
    from edgefuse.runtime.backends import BackendError

    _, log, pt = work
    with pytest.raises(BackendError, match="--providers: onnxruntime's execution providers"):
        open_backend(pt, providers=["cpu"])
    rc = main(["replay", str(log), "--providers", "gpu", "--out", str(tmp_path / "r")])
    assert rc == 2 and "expected some of tensorrt, cuda, cpu" in capsys.readouterr().err
