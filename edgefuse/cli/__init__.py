"""``edgefuse …``: the command line. Thin: parse, call one module function, print its result.

Every command function takes the parsed arguments and returns a JSON-able dict. ``--json`` (accepted
before or after the subcommand) prints that dict as one JSON object; otherwise the command's own
``human`` formatter prints it for people. Errors the user can fix (bad files, bad arguments) are
raised as :class:`edgefuse.errors.InputError` and printed as one line naming the input, with exit
status 2 — never a traceback.

This package holds the top-level parser and :func:`main`; each command group adds its subcommands
and handlers from its own module (``add_parsers``), and what they share is in :mod:`.common`:

- ``demo.py``: demo
- ``logs.py``: log info
- ``sources.py``: inspect, convert, record
- ``sync.py``: sync report
- ``model.py``: train, eval, export, quantize, build-engine, build-kernels, compare
- ``run.py``: replay, run, profile
- ``sim.py``: sim record / preview / serve
- ``calib.py``: calibrate intrinsics / lidar-camera / radar-lidar / time / check / import

Heavy modules (torch, onnx, the pipeline, …) are imported inside the handlers, so ``edgefuse --help``
stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import edgefuse
from edgefuse.cli import calib, demo, logs, model, run, sim, sources, sync
from edgefuse.cli.common import fail, print_kv, to_jsonable
from edgefuse.errors import InputError


def cmd_version(args) -> dict:
    return {"version": edgefuse.__version__}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefuse",
        description="camera + LiDAR + radar fusion on the edge: "
        "sensors, logs, sync, calibration, model, deployment, pipeline",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # the order here is the order `edgefuse --help` lists the commands in
    demo.add_parsers(sub)
    logs.add_parsers(sub)
    sources.add_parsers(sub)
    sync.add_parsers(sub)
    model.add_parsers(sub)
    run.add_parsers(sub)
    sim.add_parsers(sub)
    calib.add_parsers(sub)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    func: Callable | None = getattr(args, "func", None)
    if args.version and func is None:
        func = cmd_version
        args.human = lambda r: print(f"edgefuse {r['version']}")
    if func is None:
        parser.print_help()
        return 0
    try:
        result = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (InputError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        return fail(e, as_json)
    try:
        if as_json:
            print(json.dumps(to_jsonable(result), sort_keys=False))
        else:
            human = getattr(args, "human", None)
            human(result) if human else print_kv(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `edgefuse … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
