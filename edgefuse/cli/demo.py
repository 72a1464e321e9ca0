"""``edgefuse demo``: simulate a drive, run the pipeline on it, score it, write a video and reports."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json


def cmd_demo(args) -> dict:
    from edgefuse.demo import run_demo

    return run_demo(
        args.out, args.scenario, args.seed, args.duration, model=args.model,
        progress=not getattr(args, "json", False),
    )  # fmt: skip


def _human_demo(r: dict) -> None:
    from edgefuse.demo import format_summary

    print(format_summary(r))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "demo", help="simulate a drive, run the fusion pipeline on it, score it, write a video and reports"
    )
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--scenario", default="default", help="simulator scenario (default: default)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    p.add_argument("--duration", type=float, default=10.0, help="simulated seconds (default 10)")
    p.add_argument("--model", default=None, help="model file (default: the bundled INT8 edge.int8.onnx)")
    add_json(p)
    p.set_defaults(func=cmd_demo, human=_human_demo)
