"""Shared plumbing of the benchmark scripts: machine description, one-core pinning, best-of timing,
docs/<name>.json and the script's own ``## section`` of docs/benchmarks.md.

Scripts run as ``.venv/bin/python benchmarks/<name>.py`` (which puts this folder on ``sys.path``) and
``from _report import ...``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BENCHMARKS_MD = DOCS / "benchmarks.md"

# how machine_line() names a library whose import name differs from what people call it
_DISPLAY_NAMES = {"cv2": "OpenCV", "velodyne_decoder": "velodyne-decoder"}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform's processor or machine string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(*libraries: ModuleType) -> dict:
    """This machine and process: CPU model, architecture, logical CPUs (and how many this process may
    run on, 1 after :func:`pin_to_one_core`), OS, 1-min load average, Python, numpy and the given
    library modules' versions (``{module.__name__: module.__version__ or "?"}``)."""
    import numpy as np

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "cpus_used": usable,
        "os": f"{platform.system()} {platform.release()}",
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "libraries": {m.__name__: str(getattr(m, "__version__", "?")) for m in libraries},
    }


def machine_line(info: dict | str, with_load: bool = False) -> str:
    """One line of Markdown for a :func:`machine` dict, with its load average when ``with_load`` (a
    string, as older JSON files hold, is returned as it is)."""
    if isinstance(info, str):
        return info
    used = info["cpus_used"]
    pinned = f"pinned to {used}" if used != info["logical_cpus"] else "not pinned"
    libs = "".join(f", {_DISPLAY_NAMES.get(k, k)} {v}" for k, v in info["libraries"].items())
    load = info["load_average_1min"]
    return (
        f"{info['cpu']} ({info['arch']}), {info['logical_cpus']} logical CPUs ({pinned}), {info['os']}, "
        f"Python {info['python']}, numpy {info['numpy']}{libs}"
        + (f", load average {load:.1f}" if with_load and load is not None else "")
    )


def pin_to_one_core(highest: bool = False) -> int | None:
    """Pin this process to one of the CPUs it may run on (the lowest-numbered, or the highest); returns
    that CPU, or None where ``os.sched_setaffinity`` is not supported."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[-1] if highest else cpus[0]
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return None
    return cpu


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest wall time in seconds of ``repeats`` (≥ 1) calls of ``fn()``: the run least disturbed by
    other jobs on the machine."""
    if repeats < 1:
        raise ValueError(f"best_of: repeats must be >= 1, got {repeats}")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _jsonable(x):
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return x.tolist()
    raise TypeError(f"write_json: {type(x).__name__} is not JSON-serializable")


def write_json(name: str, data: dict, path: str | Path | None = None) -> Path:
    """Write ``data`` as indented JSON to docs/<name>.json (or to ``path`` when given); returns the path."""
    out = Path(path) if path is not None else DOCS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return out


def replace_section(title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``## title`` section of docs/benchmarks.md (from its heading line up to the next
    ``## `` heading) with ``## title``, a blank line and ``body``; append it where the file has none
    (creating the file with a ``# Benchmarks`` title). Every other byte of the file stays as it was;
    sections are separated by one blank line and the file ends with one newline."""
    if title.startswith("#") or "\n" in title:
        raise ValueError(f"replace_section: title must be the bare heading text, got {title!r}")
    heading = f"## {title}\n"
    section = heading + "\n" + body.strip("\n") + "\n"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if old.startswith(heading):
        start = 0
    else:
        start = old.find("\n" + heading)
        start = start + 1 if start >= 0 else -1
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        nxt = old.find("\n## ", start)
        new = old[:start] + section + ("" if nxt < 0 else "\n" + old[nxt + 1 :])
    path.write_text(new, encoding="utf-8")


def untrained_edge_onnx(work: Path) -> Path:
    """An ONNX file of the default edge model with fresh weights (seed 0): the same cost as a trained one,
    for the latency benchmarks while no bundled model exists."""
    from edgefuse.engine.export import export_onnx
    from edgefuse.model.checkpoint import new_model, save_model
    from edgefuse.model.config import ModelConfig, edge_spec

    net, manifest = new_model(edge_spec(), ModelConfig(), seed=0)
    save_model(work / "m.pt", net, manifest)
    return export_onnx(work / "m.pt", work / "m.onnx")
