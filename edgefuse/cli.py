"""``edgefuse …``: the command line. Thin: parse, call one module function, print its result.

Every command function takes the parsed arguments and returns a JSON-able dict. ``--json`` (accepted
before or after the subcommand) prints that dict as one JSON object; otherwise the command's own
``human`` formatter prints it for people. Errors the user can fix (bad files, bad arguments) are
raised as :class:`edgefuse.errors.InputError` and printed as one line naming the input, with exit
status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import edgefuse
from edgefuse.errors import InputError


# ---------------------------------------------------------------- output helpers


def _to_jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    return obj


def _print_kv(result: dict, indent: int = 0) -> None:
    pad = "  " * indent
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{pad}{k}:")
            _print_kv(v, indent + 1)
        else:
            print(f"{pad}{k}: {v}")


# ---------------------------------------------------------------- commands


def cmd_version(args) -> dict:
    return {"version": edgefuse.__version__}


def cmd_log_info(args) -> dict:
    from edgefuse.logs.info import log_info

    return log_info(args.file)


def cmd_demo(args) -> dict:
    from edgefuse.demo import run_demo

    return run_demo(args.out, args.scenario, args.seed, args.duration, progress=not getattr(args, "json", False))


def _human_demo(r: dict) -> None:
    from edgefuse.demo import format_summary

    print(format_summary(r))


def _human_log_info(r: dict) -> None:
    from edgefuse.logs.info import format_log_info

    print(format_log_info(r))


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


# ---------------------------------------------------------------- parser


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgefuse", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate a short drive, record it, summarize it, write pictures")
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--scenario", default="default", help="simulator scenario (default: default)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    p.add_argument("--duration", type=float, default=6.0, help="simulated seconds (default 6)")
    _add_json(p)
    p.set_defaults(func=cmd_demo, human=_human_demo)

    p_log = sub.add_parser("log", help="inspect MCAP logs")
    log_sub = p_log.add_subparsers(dest="log_command", metavar="SUBCOMMAND", required=True)
    p = log_sub.add_parser("info", help="topics, counts, rates, duration and time gaps of a log")
    p.add_argument("file", help="an MCAP log")
    _add_json(p)
    p.set_defaults(func=cmd_log_info, human=_human_log_info)

    p = sub.add_parser("inspect", help="kind, count, rate, fields, points, stamps, decode errors of a source")
    p.add_argument("uri", help="a source URI, e.g. pcap://x.pcap?model=VLP32C, mcap://log.mcap, sim://default")
    p.add_argument("--max-messages", type=int, default=None, metavar="N", help="stop after N messages")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    _add_json(p)
    p.set_defaults(func=cmd_inspect, human=_human_inspect)

    p = sub.add_parser("convert", help="a source → one PCD/PNG per message in DIR, or one MCAP log")
    p.add_argument("uri", help="a source URI")
    p.add_argument("--out", required=True, metavar="DIR|FILE.mcap", help="output directory or .mcap log")
    p.add_argument("--max-messages", type=int, default=None, metavar="N", help="stop after N messages")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    _add_json(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("record", help="record every sensor of a kit into one MCAP log (Ctrl-C stops)")
    p.add_argument("--kit", required=True, help="sensor-kit YAML, e.g. sensors/sim-default.yaml")
    p.add_argument("--out", required=True, help="output .mcap log")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    _add_json(p)
    p.set_defaults(func=cmd_record)

    from edgefuse.sim.run import add_cli as _add_sim_cli  # `edgefuse sim record|preview|serve`

    _add_sim_cli(sub)

    from edgefuse.calib.cli import add_cli as _add_calib_cli  # `edgefuse calibrate …`

    _add_calib_cli(sub)

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
        return _fail(e, as_json)
    try:
        if as_json:
            print(json.dumps(_to_jsonable(result), sort_keys=False))
        else:
            human = getattr(args, "human", None)
            human(result) if human else _print_kv(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `edgefuse … | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fail(e: BaseException, as_json: bool) -> int:
    msg = str(e) if str(e) else type(e).__name__
    if as_json:
        print(json.dumps({"error": msg, "type": type(e).__name__}))
    else:
        print(f"edgefuse: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
