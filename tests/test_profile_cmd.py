"""``edgefuse profile``: the bundled model and cores − 1 threads by default, backend × model pairs checked
before anything is measured, the rows measured kept when a later one fails, and profile.png."""

from __future__ import annotations

import json

import cv2
import pytest

from edgefuse.cli import main
from edgefuse.runtime.backends import inference_threads
from edgefuse.runtime.bundled import FILES


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "{tmp}/m.pt", "--backend", "onnxruntime"], ["m.pt", "onnxruntime", ".onnx"]),
        (["--model", "{tmp}/m.pt", "--precision", "fp32,int8"], ["int8", "m.pt", ".onnx"]),
        (["--backend", "torch", "--precision", "int8"], ["no bundled model for torch int8"]),
        (["--precision", "fp16"], ["--precision", "fp16"]),
        (["--threads", "1,x"], ["--threads", "1,x"]),
    ],
    ids=["pt-with-onnxruntime", "int8-of-a-pt", "no-bundled-torch-int8", "bad-precision", "bad-threads"],
)
def test_pairs_that_cannot_run_are_refused_before_anything_is_measured(tmp_path, capsys, args, words):
    (tmp_path / "m.pt").write_bytes(b"not measured")
    out = tmp_path / "out"
    rc = main(["profile", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not (out / "profile_sim.mcap").exists() and not (out / "profile.json").exists()  # nothing ran


def test_bundled_model_default_threads_and_a_failing_row_keeps_the_others(tmp_path, capsys, monkeypatch):
    """No ``--model``, no ``--threads``: the bundled edge.onnx / edge.int8.onnx with cores − 1 threads. The
    int8 row's backend fails (every inference raises); the fp32 row, measured before it, stays, and
    profile.png shows both."""
    if not (FILES["onnx"].is_file() and FILES["int8"].is_file()):
        pytest.skip("no bundled model (python -m edgefuse.recipe)")
    import edgefuse.engine.profile as prof

    real = prof.load_backend

    def load(path, name=None, threads=2):
        backend = real(path, name, threads=threads)
        if str(path).endswith(".int8.onnx"):
            def broken(feed):
                raise RuntimeError("device lost")

            backend.infer = broken
        return backend

    monkeypatch.setattr(prof, "load_backend", load)
    out = tmp_path / "out"
    assert main(["profile", "--precision", "fp32,int8", "--frames", "3", "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    fp32, int8 = r["rows"]
    assert (fp32["precision"], fp32["backend"], fp32["model"]) == ("fp32", "onnxruntime", str(FILES["onnx"]))
    assert fp32["threads"] == int8["threads"] == inference_threads()
    assert fp32["error"] is None and fp32["frames"] == 3 and fp32["inference_ms"] > 0
    assert int8["model"] == str(FILES["int8"]) and "device lost" in int8["error"] and int8["fps"] is None
    assert json.loads((out / "profile.json").read_text())["rows"] == r["rows"]
    img = cv2.imread(r["outputs"]["png"])
    assert img is not None and img.shape[1] >= 800 and img.shape[0] >= 200
