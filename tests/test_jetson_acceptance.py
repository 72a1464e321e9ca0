"""deploy/jetson/acceptance.sh, the script a person with an Orin runs, cannot run here (no TensorRT, no
Jetson); what can drift from the code is checked: its bash parses, and every ``edgefuse`` command and
option it uses exists in the CLI (asked from the parser, not copied)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from edgefuse.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "jetson" / "acceptance.sh"


def test_the_script_parses():
    p = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def _uses(text: str) -> list[tuple[list[str], list[str]]]:
    """(sub-command words, options) of every ``"${EF[@]}" …`` command, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = []
    for m in re.finditer(r'"\$\{EF\[@\]\}"\s+([^\n;|&]*)', text):
        words = m.group(1).split()
        sub = []
        for w in words:
            if w.startswith("-") or w.startswith('"') or w.startswith("$"):
                break
            sub.append(w)
        opts = sorted({w.split("=")[0] for w in words if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", w)})
        out.append((sub, opts))
    return out


def _options(parser, words: list[str]) -> set[str]:
    for w in words:  # walk the sub-command tree
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[w]
    return {o for a in parser._actions for o in a.option_strings}


def test_every_edgefuse_command_and_option_it_uses_exists():
    uses = _uses(SCRIPT.read_text())
    assert len(uses) >= 8  # record, export ×2, quantize, build-engine, replay ×2, compare
    parser = build_parser()
    for words, opts in uses:
        try:
            have = _options(parser, words)
        except (KeyError, StopIteration):
            pytest.fail(f"acceptance.sh: `edgefuse {' '.join(words)}` is not a command")
        missing = [o for o in opts if o not in have]
        assert not missing, f"acceptance.sh: `edgefuse {' '.join(words)}` has no option {missing}"
