"""``edgefuse log …``: inspect MCAP logs (``log info``)."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json


def cmd_log_info(args) -> dict:
    from edgefuse.logs.info import log_info

    return log_info(args.file)


def _human_log_info(r: dict) -> None:
    from edgefuse.logs.info import format_log_info

    print(format_log_info(r))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p_log = sub.add_parser("log", help="inspect MCAP logs")
    log_sub = p_log.add_subparsers(dest="log_command", metavar="SUBCOMMAND", required=True)
    p = log_sub.add_parser("info", help="topics, counts, rates, duration and time gaps of a log")
    p.add_argument("file", help="an MCAP log")
    add_json(p)
    p.set_defaults(func=cmd_log_info, human=_human_log_info)
