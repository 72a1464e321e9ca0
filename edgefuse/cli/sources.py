"""``edgefuse inspect``, ``convert``, ``record``: read a source URI or a sensor kit."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json


def cmd_inspect(args) -> dict:
    from edgefuse.inspect import inspect_uri

    return inspect_uri(args.uri, args.max_messages, args.duration, progress=not getattr(args, "json", False))


def _human_inspect(r: dict) -> None:
    from edgefuse.inspect import format_inspect

    print(format_inspect(r))


def cmd_convert(args) -> dict:
    from edgefuse.inspect import convert_uri

    return convert_uri(
        args.uri, args.out, args.max_messages, args.duration, progress=not getattr(args, "json", False)
    )


def cmd_record(args) -> dict:
    from edgefuse.record import record_kit

    return record_kit(args.kit, args.out, args.duration)


def _human_record(r: dict) -> None:
    from edgefuse.record import format_record

    print(format_record(r))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p = sub.add_parser("inspect", help="kind, count, rate, fields, points, stamps, decode errors of a source")
    p.add_argument(
        "uri", help="a source URI, e.g. pcap://x.pcap?model=VLP32C, mcap://log.mcap, sim://default"
    )
    p.add_argument("--max-messages", type=int, default=None, metavar="N", help="stop after N messages")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    add_json(p)
    p.set_defaults(func=cmd_inspect, human=_human_inspect)

    p = sub.add_parser("convert", help="a source → one PCD/PNG per message in DIR, or one MCAP log")
    p.add_argument("uri", help="a source URI")
    p.add_argument("--out", required=True, metavar="DIR|FILE.mcap", help="output directory or .mcap log")
    p.add_argument("--max-messages", type=int, default=None, metavar="N", help="stop after N messages")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    add_json(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("record", help="record every sensor of a kit into one MCAP log (Ctrl-C stops)")
    p.add_argument("--kit", required=True, help="sensor-kit YAML, e.g. sensors/sim-default.yaml")
    p.add_argument("--out", required=True, help="output .mcap log")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    add_json(p)
    p.set_defaults(func=cmd_record, human=_human_record)
