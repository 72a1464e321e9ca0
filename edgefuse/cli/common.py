"""What every command shares: the ``--json`` flag, printing a result (JSON or ``key: value``), and
printing an error the user can fix as one line with exit status 2.

Imports no command-group module (they import this one), and nothing heavy at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# ---------------------------------------------------------------- parser helpers


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")


# ---------------------------------------------------------------- output helpers


def to_jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


def print_kv(result: dict, indent: int = 0) -> None:
    pad = "  " * indent
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{pad}{k}:")
            print_kv(v, indent + 1)
        else:
            print(f"{pad}{k}: {v}")


def fail(e: BaseException, as_json: bool) -> int:
    """An error the user can fix: one line (or one JSON object), exit status 2."""
    msg = str(e) if str(e) else type(e).__name__
    if as_json:
        print(json.dumps({"error": msg, "type": type(e).__name__}))
    else:
        print(f"edgefuse: error: {msg}", file=sys.stderr)
    return 2
