"""``edgefuse sim …``: the built-in simulated rig (``sim record``, ``preview``, ``serve``)."""

from __future__ import annotations

import argparse
import os

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


def cmd_sim_export(args) -> dict:
    progress = not getattr(args, "json", False)
    if args.format == "nuscenes":
        from edgefuse.datasets.nuscenes_export import export_nuscenes

        return export_nuscenes(
            args.out, args.scenario, args.seed, args.duration, version=args.version, progress=progress,
            **_sim_params(args.param),
        )  # fmt: skip
    if args.format != "kitti":
        raise InputError(f"sim export --format {args.format}: expected kitti or nuscenes")
    from edgefuse.datasets.sim_export import export_kitti

    return export_kitti(
        args.out, args.scenario, args.seed, args.duration, progress=progress, **_sim_params(args.param)
    )


def cmd_sim_preview(args) -> dict:
    from edgefuse.sim.run import write_preview

    return write_preview(
        args.out, args.scenario, args.seed, args.t, camera_model=args.camera_model, **_sim_params(args.param)
    )


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise InputError(f"sim serve --camera-size {text!r}: expected WIDTHxHEIGHT, e.g. 640x360")
    return int(w), int(h)


def _ready_lines(info: dict, kit: str | None) -> list[str]:
    """What `sim serve` prints at start: each sensor's wire and the URI a kit reads it with (``kit``: a
    kit file that reads exactly these, if there is one)."""
    cam = info["camera"]
    how = f"edgefuse run --kit {kit}" if kit else "--kit-out KIT.yaml writes a kit for these endpoints"
    lines = [f"sim serve: the simulated rig, live (read it with: {how})"]
    wires = {
        "lidar_top": f"VLP-32C UDP → {info['lidar']}",
        "radar_front": f"TI mmWave UART on pty {info['radar_pty']} ({', '.join(info['links'].values())})",
        "cam_front": f"MJPEG over HTTP, {cam['size']} (calibrated {cam['full_size']}) at {cam['fps']:g} Hz",
        "odom": f"ego-motion JSON UDP → {info['odom']}",
        "imu": f"ego-motion JSON UDP → {info['imu']}",
    }
    for sid, uri in info["uris"].items():
        lines.append(f"  {sid:<12} {wires[sid]}\n  {'':<12} {uri}")
    lines.append(
        f"  ground truth → {info['truth'] or 'not written'}; "
        f"late = sent > {info['late_threshold_ms']:g} ms after due"
    )
    return lines


def _status_line(s: dict) -> str:
    parts = [f"{s['wall_s']:7.1f}s"]
    for sid, p in s["sensors"].items():
        skip = f" skip {p['skipped']}" if p["skipped"] else ""
        parts.append(f"{sid} {p['rate_hz']:.1f} Hz late {p['late']}{skip}")
    parts.append(f"cpu {100 * s['cpu_load']:.0f}%")
    return " | ".join(parts)


def cmd_sim_serve(args) -> dict:
    import json
    import signal
    import sys

    from edgefuse.sim.rig import ServeEndpoints, write_serve_kit
    from edgefuse.sim.run import SENSOR_IDS
    from edgefuse.sim.serve import ServeConfig, serve

    as_json = bool(getattr(args, "json", False))
    sensors = [s for s in args.sensors.split(",") if s] if args.sensors else list(ServeConfig().sensors)
    if args.no_radar:
        sensors = [s for s in sensors if s != "radar_front"]
    link_dir = os.path.abspath(args.link_dir)
    ep = ServeEndpoints(args.host, args.lidar_port, args.camera_port, args.odom_port, args.imu_port, link_dir)
    truth = None if args.truth == "none" else os.path.abspath(args.truth) if args.truth else "truth.mcap"
    config = ServeConfig(
        args.scenario, args.seed, _sim_params(args.param), args.duration, tuple(sensors), ep,
        _size(args.camera_size) if args.camera_size else ServeConfig.camera_size, args.camera_fps,
        args.jpeg_quality, truth, args.late_ms, skip_behind=not args.no_skip,
    )  # fmt: skip
    served: dict = {}
    tty = sys.stderr.isatty()

    def ready(info: dict) -> None:
        served.update(info)
        ep_served = ServeEndpoints(**info["endpoints"])
        kit = None
        if args.kit_out:
            info["kit"] = write_serve_kit(args.kit_out, ep_served, config.camera_fps)
            kit = info["kit"]["kit"]
        elif ep_served == ServeEndpoints() and config.camera_fps == 30 and sensors == list(SENSOR_IDS):
            kit = "sensors/sim-serve.yaml"
        if as_json:
            print(json.dumps({"ready": info}), file=sys.stderr, flush=True)
        else:
            print("\n".join(_ready_lines(info, kit)), flush=True)

    def status(s: dict) -> None:
        if not as_json:
            line = ("\r" if tty else "") + _status_line(s)
            print(line, end="" if tty else "\n", file=sys.stderr, flush=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        result = serve(config, on_ready=ready, on_status=status)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if tty and not as_json:
            print(file=sys.stderr)
    result["served"] = served
    return result


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

    p = sim_sub.add_parser(
        "export", help="write a simulated drive as a dataset (KITTI 3D object or nuScenes; docs/datasets.md)"
    )
    _sim_common(p)
    p.add_argument(
        "out", metavar="OUT",
        help="dataset folder (kitti: OUT/training/{image_2,velodyne,calib,label_2}; nuscenes: "
        "OUT/v1.0-NAME/*.json, OUT/samples/…)",
    )  # fmt: skip
    p.add_argument(
        "--format", default="kitti", choices=("kitti", "nuscenes"), help="dataset format (default kitti)"
    )
    p.add_argument("--version", default="v1.0-sim", help="nuscenes: the tables folder (default v1.0-sim)")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of simulated time (default: scenario's)"
    )
    p.set_defaults(func=cmd_sim_export)

    p = sim_sub.add_parser("preview", help="write camera.png (GT boxes) and bev.png (LiDAR + radar + boxes)")
    _sim_common(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--t", type=float, default=3.0, help="simulation time in seconds (default 3)")
    p.add_argument("--camera-model", default="pinhole", choices=("pinhole", "fisheye"))
    p.set_defaults(func=cmd_sim_preview)

    p = sim_sub.add_parser(
        "serve",
        help="serve every sensor live over its real wire: VLP-32C UDP, TI mmWave UART on a pty, MJPEG over "
        "HTTP, odometry/IMU UDP datagrams; ground truth to an MCAP log (docs/sim.md)",
    )
    _sim_common(p)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until interrupted)")
    p.add_argument(
        "--sensors", default=None, metavar="ID[,ID…]",
        help="sensors to serve (default all: cam_front,lidar_top,radar_front,odom,imu)",
    )  # fmt: skip
    p.add_argument("--no-radar", action="store_true", help="leave the radar out")
    p.add_argument("--host", default="127.0.0.1", help="UDP destination and HTTP address (default 127.0.0.1)")
    p.add_argument("--lidar-port", type=int, default=2368, help="VLP-32C UDP port (default 2368)")
    p.add_argument("--camera-port", type=int, default=8080, help="MJPEG HTTP port (default 8080; 0: any)")
    p.add_argument("--odom-port", type=int, default=9871, help="odometry datagram UDP port (default 9871)")
    p.add_argument("--imu-port", type=int, default=9872, help="IMU datagram UDP port (default 9872)")
    p.add_argument(
        "--link-dir", default="/tmp/edgefuse-sim",
        help="where the radar's pty links ti_cli and ti_data go (default /tmp/edgefuse-sim)",
    )  # fmt: skip
    p.add_argument(
        "--camera-size", default=None, metavar="WxH",
        help="camera resolution served: the calibrated 1280x720 sensor scaled (default 640x360, what holds "
        "real time on one core; CI: 320x180)",
    )  # fmt: skip
    p.add_argument("--camera-fps", type=float, default=30.0, help="camera rate, 30/n Hz (default 30)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="camera JPEG quality (default 90)")
    p.add_argument(
        "--truth", default=None, metavar="PATH|none",
        help="ground-truth MCAP log for scoring (default LINK_DIR/truth.mcap; none: not written)",
    )  # fmt: skip
    p.add_argument(
        "--late-ms", type=float, default=10.0,
        help="a frame sent more than this after its due time counts as late (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--no-skip", action="store_true",
        help="send every frame however late (default: a capture already a period late is skipped, counted)",
    )  # fmt: skip
    p.add_argument(
        "--kit-out", default=None, metavar="KIT.yaml",
        help="also write a sensor kit (+ its calibration beside) that reads these endpoints",
    )  # fmt: skip
    p.set_defaults(func=cmd_sim_serve)
