"""``edgefuse sim …``: the built-in simulated rig (``sim record``, ``preview``, ``serve``)."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json
from edgefuse.errors import InputError


def _sim_params(pairs: list[str] | None) -> dict[str, str]:
    """``--param NAME=VALUE`` (repeatable) → world parameters."""
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise InputError(f"sim --param {p!r}: expected NAME=VALUE, e.g. visibility=30")
        out[k] = v
    return out


def cmd_sim_record(args) -> dict:
    from edgefuse.sim.run import record

    return record(
        args.out,
        args.scenario,
        args.seed,
        args.duration,
        lossless=args.lossless,
        camera_model=args.camera_model,
        compression=args.compression,
        progress=not getattr(args, "json", False),
        **_sim_params(args.param),
    )


def cmd_sim_preview(args) -> dict:
    from edgefuse.sim.run import write_preview

    return write_preview(
        args.out, args.scenario, args.seed, args.t, camera_model=args.camera_model, **_sim_params(args.param)
    )


def cmd_sim_serve(args) -> dict:
    from edgefuse.sim.run import serve

    def ready(info: dict) -> None:
        print(
            f"sim serve: LiDAR (VLP-32C UDP) → {info['lidar']}; radar (TI mmWave UART) on pty "
            f"{info['radar_pty']}",
            flush=True,
        )

    try:
        return serve(
            args.scenario,
            args.seed,
            args.duration,
            lidar_port=args.lidar_port,
            radar=not args.no_radar,
            on_ready=ready,
            **_sim_params(args.param),
        )
    except KeyboardInterrupt:
        return {"stopped": "interrupted"}


def _sim_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        default="default",
        help="scenario name (default: default; an unknown name lists them)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same bytes")
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="world parameter, e.g. visibility=30 or rain=0.5 (repeatable)",
    )
    add_json(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p_sim = sub.add_parser("sim", help="the built-in simulated rig: record logs, preview, serve live packets")
    sim_sub = p_sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    p = sim_sub.add_parser("record", help="record a simulated MCAP log (streamed to disk)")
    _sim_common(p)
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of simulated time (default: scenario's)"
    )
    p.add_argument("--out", required=True, help="output .mcap path")
    p.add_argument("--lossless", action="store_true", help="camera frames as rgb8 instead of JPEG")
    p.add_argument("--camera-model", default="pinhole", choices=("pinhole", "fisheye"))
    p.add_argument(
        "--compression", default="lz4", choices=("lz4", "zstd", "none"),
        help="MCAP chunk compression (default lz4: fastest; zstd: ~20%% smaller)",
    )  # fmt: skip
    p.set_defaults(func=cmd_sim_record)

    p = sim_sub.add_parser("preview", help="write camera.png (GT boxes) and bev.png (LiDAR + radar + boxes)")
    _sim_common(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--t", type=float, default=3.0, help="simulation time in seconds (default 3)")
    p.add_argument("--camera-model", default="pinhole", choices=("pinhole", "fisheye"))
    p.set_defaults(func=cmd_sim_preview)

    p = sim_sub.add_parser(
        "serve", help="emit VLP-32C UDP packets to 127.0.0.1 and TI mmWave frames on a pty"
    )
    _sim_common(p)
    p.add_argument("--lidar-port", type=int, default=2368, help="UDP port on 127.0.0.1 (default 2368)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until interrupted)")
    p.add_argument("--no-radar", action="store_true", help="LiDAR only")
    p.set_defaults(func=cmd_sim_serve)
