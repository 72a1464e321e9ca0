"""The architecture's rules (docs/architecture.md) hold and are enforced.

- The import-linter contracts of ``pyproject.toml`` (no circles; the robot side never reaches the
  workstation side or torch; drivers know neither the pipeline, the simulator nor the logs; training data
  comes from the frame assembler) are kept by the tree, and ``lint-imports`` fails when one is broken on a
  temporary copy of the package (so the check itself can fail).
- Independently of import-linter, an AST walk over every import (also those inside functions): the live
  run loop and everything it reaches include no module from a folder where any file imports torch at
  module level, and frame assembly and the run loop are different files.
- No module is over about 600 lines unless docs/architecture.md names it and says why.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgefuse"
LINT = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 600
SLACK = 30  # "about 600": a module may run a screenful over before the doc must explain it

pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed (the dev extra)")


def _lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``tree`` (its own copy first on the path)."""
    args = [str(LINT), "--no-cache", "--no-logo", str(tree / "pyproject.toml")]
    for c in contracts:
        args += ["--contract", c]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=240)


def test_the_tree_keeps_every_import_contract():
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "4 kept, 0 broken" in p.stdout, p.stdout[-2000:]


@pytest.fixture(scope="module")
def copy_tree(tmp_path_factory) -> Path:
    """The package and pyproject.toml copied to a temporary folder, to break rules in."""
    tree = tmp_path_factory.mktemp("arch")
    skip = shutil.ignore_patterns("__pycache__", "weights", "data")
    shutil.copytree(PACKAGE, tree / "edgefuse", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _append(path: Path, code: str) -> str:
    old = path.read_text()
    path.write_text(old + "\n\n" + code + "\n")
    return old


@pytest.mark.parametrize(
    ("contract", "file", "code", "named"),
    [
        # a function-level import closes a circle: types → pipeline → … → types
        ("no-circles", "types.py", "def _late():\n    import edgefuse.pipeline.loop  # noqa",
         "No cycles are allowed"),
        # the robot side reaches into training code
        ("robot-side", "runtime/feed.py",
         "def _cfg():\n    from edgefuse.model.config import CONFIGS  # noqa", "edgefuse.model.config"),
        # ... or imports torch itself
        ("robot-side", "pipeline/stages.py", "def _t():\n    import torch  # noqa", "torch"),
        # a driver imports the simulator
        ("drivers", "adapters/velodyne/sweep.py",
         "def _w():\n    from edgefuse.sim.rig import sim_kit  # noqa", "edgefuse.sim.rig"),
        # training data taken from the run loop
        ("training-data", "dataset.py", "def _p():\n    from edgefuse.pipeline.loop import Pipeline  # noqa",
         "edgefuse.pipeline.loop"),
    ],
)  # fmt: skip
def test_a_broken_rule_fails_lint_imports(copy_tree, contract, file, code, named):
    target = copy_tree / "edgefuse" / file
    old = _append(target, code)
    try:
        p = _lint(copy_tree, contract)
    finally:
        target.write_text(old)
    assert p.returncode != 0, p.stdout[-2000:]
    assert "BROKEN" in p.stdout and named in p.stdout, p.stdout[-3000:]
    assert _lint(copy_tree, contract).returncode == 0  # restored: the same contract is kept again


# ---------------------------------------------------------------- an independent AST walk


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_of(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, module: str, modules: dict[str, Path]) -> tuple[set[str], bool]:
    """(edgefuse modules ``path`` imports anywhere in the file, whether it imports torch at module level)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    torch_top = False
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package itself
            names = subs + ([base] if any(s not in modules for s in subs) else [])
        for n in names:
            if n == "torch" or n.startswith("torch."):
                torch_top |= node in tree.body
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != module:
                found.add(n)
    return found, torch_top


def _graph() -> tuple[dict[str, Path], dict[str, set[str]], set[Path]]:
    """(modules, module → the edgefuse modules it imports, folders with a module-level torch import)."""
    modules = _modules()
    graph, torch_folders = {}, set()
    for m, p in modules.items():
        graph[m], top = _imports(p, m, modules)
        if top:
            torch_folders.add(p.parent)
    return modules, graph, torch_folders


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_two_modules_import_each_other_round_a_circle():
    """Every module, package ``__init__`` modules included, every import (also inside functions)."""
    _, graph, _ = _graph()
    assert _circles(graph) == []
    # the check can fail: one added import closes a circle
    broken = {k: set(v) for k, v in graph.items()}
    broken["edgefuse.types"].add("edgefuse.frames")
    assert any({"edgefuse.frames", "edgefuse.types"} <= set(c) for c in _circles(broken))


def test_live_run_loop_reaches_no_folder_with_a_module_level_torch_import():
    modules, graph, torch_folders = _graph()
    assert PACKAGE / "model" in torch_folders  # the walk sees torch where it is (it can fail)
    seen, todo = set(), ["edgefuse.pipeline.loop", "edgefuse.pipeline.live"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    # the walk follows imports (it reaches what the loop really uses)
    assert {"edgefuse.frames", "edgefuse.sources", "edgefuse.pipeline.stages"} <= seen
    bad = sorted(m for m in seen if modules[m].parent in torch_folders)
    assert not bad, f"the live run loop reaches modules in torch folders: {bad}"
    # frame assembly and the run loop are different files
    assert "class FrameCore" in (PACKAGE / "frames.py").read_text()
    assert "class FrameCore" not in (PACKAGE / "pipeline" / "loop.py").read_text()


def test_no_module_over_about_600_lines_unless_the_architecture_doc_says_why():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES + SLACK
    }
    unexplained = {f: n for f, n in long.items() if f"`{f}`" not in doc}
    assert not unexplained, f"over {MAX_LINES} lines, not explained in docs/architecture.md: {unexplained}"
