"""``edgefuse sync …``: clock mapping and synchronization of logs (``sync report``)."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json


def cmd_sync_report(args) -> dict:
    from edgefuse.rig import load_kit
    from edgefuse.sync.report import sync_report

    kit = load_kit(args.kit) if args.kit else None
    budget = int(round(args.latency_budget_ms * 1e6))
    return sync_report(args.log, kit=kit, policy=args.policy, latency_budget_ns=budget, png=args.png)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p_sync = sub.add_parser("sync", help="clock mapping and synchronization of logs")
    sync_sub = p_sync.add_subparsers(dest="sync_command", metavar="SUBCOMMAND", required=True)
    p = sync_sub.add_parser("report", help="per-sensor clock offset/drift/residuals, frames, drops, PNG")
    p.add_argument("log", help="an MCAP log")
    p.add_argument("--kit", default=None, help="sensor-kit YAML (default: sim kit or the log's topics)")
    p.add_argument("--policy", default="reference", choices=("reference", "approximate"))
    p.add_argument("--latency-budget-ms", type=float, default=100.0, help="reference wait, ms (default 100)")
    p.add_argument("--png", default=None, help="residual histogram PNG (default: LOG.sync.png)")
    add_json(p)
    p.set_defaults(func=cmd_sync_report)
