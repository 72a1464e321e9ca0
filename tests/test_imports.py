"""The runtime packages never import torch (DESIGN §1: torch is for training and export only)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed, nothing to prove"
)
def test_runtime_imports_do_not_pull_torch():
    code = (
        "import sys, edgefuse, edgefuse.logs, edgefuse.rig, edgefuse.logs.info\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(len(bad)); print(bad[:5])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "0", p.stdout
    # the check itself can fail: importing torch in the same way is seen
    p = subprocess.run(
        [sys.executable, "-c", "import torch, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.stdout.strip() == "True"
