"""The runtime contract (feed, decode, manifest, backends), evaluation (metrics, dataset, evaluate) and the
torch-free model modules import no torch, and the manifest round-trips and refuses bad input."""

import subprocess
import sys

import pytest

from edgefuse.runtime.manifest import Manifest, ManifestError


def test_runtime_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import edgefuse.model.config, edgefuse.model.targets\n"
        "import edgefuse.runtime.feed, edgefuse.runtime.decode, edgefuse.runtime.manifest\n"
        "import edgefuse.runtime.backends, edgefuse.runtime.tensorrt, edgefuse.runtime.kernels\n"
        "import edgefuse.models\n"
        "import edgefuse.eval.metrics, edgefuse.dataset, edgefuse.eval.evaluate\n"
        "import edgefuse.cli; edgefuse.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_manifest_round_trip_and_errors():
    m = Manifest(
        {"image_size": [2, 3]},
        {"cell_m": 0.32},
        {"fusion": "gated"},
        ["car"],
        ["images"],
        ["boxes"],
        training={"seed": 1},
    )
    back = Manifest.from_json(m.to_json())
    assert back == m
    with pytest.raises(ManifestError, match="model.pt.*version"):
        Manifest.from_json('{"version": 99}', "model.pt")
    with pytest.raises(ManifestError, match="missing fields"):
        Manifest.from_json('{"version": 1, "classes": []}', "x.onnx")
    with pytest.raises(ManifestError, match="JSON"):
        Manifest.from_json("not json", "x.onnx")
