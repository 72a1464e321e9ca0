"""``edgefuse calibrate …``: intrinsics, extrinsics, time offsets, checks, imports."""

from __future__ import annotations

import argparse

from edgefuse.cli.common import add_json


def cmd_calibrate_intrinsics(args) -> dict:
    from edgefuse.calib.commands import run_intrinsics

    return run_intrinsics(
        board=args.board,
        out=args.out,
        images=args.images,
        log=args.log,
        camera=args.camera,
        every=args.every,
        model=args.model,
        calib_path=args.calib,
        progress=not getattr(args, "json", False),
        force=args.force,
        dry_run=args.dry_run,
    )


def _human_calibrate_intrinsics(r: dict) -> None:
    print(
        f"{r['model']} {r['image_size'][0]}x{r['image_size'][1]}: rms {r['rms']:.3f} px, "
        f"{r['views_used']} views used, {len(r['views_rejected'])} rejected, coverage {r['coverage']:.0%}"
    )
    print(f"camera_matrix: {r['camera_matrix']}")
    print(f"distortion:    {r['distortion']}")
    for name, why in r["views_rejected"].items():
        print(f"rejected {name}: {why}")
    if r["written"]:
        print(f"wrote {r['out']}, {r['coverage_png']}, {r['errors_png']}")
    else:  # --dry-run
        print(f"nothing written (--dry-run); reports {r['coverage_png']}, {r['errors_png']}")
        for line in r["failed_gates"]:
            print(f"gate failed: {line}")


def cmd_calibrate_lidar_camera(args) -> dict:
    from edgefuse.calib.commands import run_lidar_camera

    return run_lidar_camera(
        args.log,
        camera=args.camera,
        lidar=args.lidar,
        board=args.board,
        calib_path=args.calib,
        edges=args.edges,
        progress=not getattr(args, "json", False),
        force=args.force,
        dry_run=args.dry_run,
    )


def cmd_calibrate_radar_lidar(args) -> dict:
    from edgefuse.calib.commands import run_radar_lidar

    return run_radar_lidar(
        args.log, radar=args.radar, lidar=args.lidar, calib_path=args.calib, six_dof=args.six_dof,
        force=args.force, dry_run=args.dry_run,
    )  # fmt: skip


def _gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="write the result even when a quality gate fails (recorded in the provenance)")
    p.add_argument("--dry-run", action="store_true", help="compute and print; write nothing")  # fmt: skip


def cmd_calibrate_time(args) -> dict:
    from edgefuse.calib.commands import run_time

    return run_time(args.log, sensor_pair=args.sensors, calib_path=args.calib, max_lag=args.max_lag,
                    force=args.force, dry_run=args.dry_run)  # fmt: skip


def cmd_calibrate_check(args) -> dict:
    from edgefuse.calib.commands import run_check

    return run_check(
        calib_path=args.calib,
        image=args.image,
        cloud=args.cloud,
        log=args.log,
        camera=args.camera,
        lidar=args.lidar,
        every=args.every,
        out=args.out,
    )


def cmd_calibrate_import(args) -> dict:
    from edgefuse.calib.commands import run_import

    return run_import(
        args.files, source=args.source, out=args.out, camera=args.camera, image=args.image,
        width=args.width, height=args.height, force=args.force,
    )  # fmt: skip


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p_cal = sub.add_parser(
        "calibrate", help="calibrate the rig: intrinsics, extrinsics, time offsets; checks"
    )
    cal = p_cal.add_subparsers(dest="calibrate_command", metavar="SUBCOMMAND", required=True)

    p = cal.add_parser("intrinsics", help="camera intrinsics from board images (or a log)")
    p.add_argument("--images", help="image files, a glob such as 'shots/*.png'")
    p.add_argument("--log", help="an MCAP log (with --camera)")
    p.add_argument("--camera", help="camera id (images from --log; the camera updated in --calib)")
    p.add_argument("--every", type=int, default=3, help="with --log: use every Nth frame (default 3)")
    p.add_argument(
        "--board",
        required=True,
        help="chessboard:COLSxROWS:SQUARE_M (inner corners), charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT "
        "(squares) or a target .yaml",
    )
    p.add_argument("--model", choices=("pinhole", "rational", "fisheye"), default="pinhole",
                   help="pinhole: k1 k2 p1 p2 k3; rational: OpenCV's rational model, k1 … k6; fisheye: "
                        "equidistant k1..k4")  # fmt: skip
    p.add_argument(
        "--out", required=True, help="camera_info YAML to write (PNG reports are written beside it)"
    )
    p.add_argument("--calib", help="also update this calibration file in place (backup beside it)")
    _gate_options(p)
    add_json(p)
    p.set_defaults(func=cmd_calibrate_intrinsics, human=_human_calibrate_intrinsics)

    p = cal.add_parser(
        "lidar-camera", help="camera extrinsics from a board seen by a camera and a LiDAR (log)"
    )
    p.add_argument("log", help="an MCAP log")
    p.add_argument("--camera", required=True)
    p.add_argument("--lidar", required=True)
    p.add_argument("--board", required=True, help="board spec or target .yaml (see `calibrate intrinsics`)")
    p.add_argument("--calib", required=True, help="calibration file: initial guess, updated in place")
    p.add_argument("--edges", action="store_true", help="add the plate-outline (edge alignment) term")
    _gate_options(p)
    add_json(p)
    p.set_defaults(func=cmd_calibrate_lidar_camera)

    p = cal.add_parser(
        "radar-lidar", help="radar extrinsics from corner reflectors seen by a radar and a LiDAR (log)"
    )
    p.add_argument("log", help="an MCAP log")
    p.add_argument("--radar", required=True)
    p.add_argument("--lidar", required=True)
    p.add_argument("--calib", required=True, help="calibration file: initial guess, updated in place")
    p.add_argument(
        "--six-dof",
        action="store_true",
        help="fit all six parameters (radars that measure elevation); default x, y, yaw",
    )
    _gate_options(p)
    add_json(p)
    p.set_defaults(func=cmd_calibrate_radar_lidar)

    p = cal.add_parser("time", help="time offset between two sensors of a log from their motion signals")
    p.add_argument("log", help="an MCAP log with motion (turns, speed changes)")
    p.add_argument("--sensors", required=True, help="A,B: B's offset is calibrated against A")
    p.add_argument("--calib", required=True, help="calibration file: B's time offset is updated in place")
    p.add_argument("--max-lag", type=float, default=0.5, help="largest offset searched, s (default 0.5)")
    _gate_options(p)
    add_json(p)
    p.set_defaults(func=cmd_calibrate_time)

    p = cal.add_parser(
        "check", help="project a LiDAR cloud into an image: points in image, edge alignment, overlay"
    )
    p.add_argument("--image", help="an image file")
    p.add_argument("--cloud", help="a point-cloud file: pcd://, kitti://, ply:// or a .pcd/.bin/.ply path")
    p.add_argument("--log", help="check every camera of a log instead (worst frames written to --out DIR)")
    p.add_argument("--calib", required=True, help="calibration file")
    p.add_argument("--camera", help="camera id (default: the only camera)")
    p.add_argument("--lidar", help="LiDAR id (default: the calibration's LiDAR)")
    p.add_argument("--every", type=int, default=5, help="with --log: every Nth sweep (default 5)")
    p.add_argument("--out", help="overlay PNG (or, with --log, a folder)")
    add_json(p)
    p.set_defaults(func=cmd_calibrate_check)

    p = cal.add_parser("import", help="import a KITTI (object, tracking, raw), OpenCalib or ROS camera_info "
                                      "calibration")  # fmt: skip
    p.add_argument("--from", dest="source", choices=("kitti", "kitti-raw", "opencalib", "camera_info"),
                   required=True)  # fmt: skip
    p.add_argument("files", nargs="+",
                   help="the foreign calibration file (opencalib: the camera's intrinsic JSON, then the "
                        "LiDAR-to-camera extrinsic JSON; kitti-raw: the drive's date folder, a drive folder "
                        "below it, or its calib_*.txt files)")  # fmt: skip
    p.add_argument(
        "--out", required=True, help="calibration YAML to write (camera_info: updated if it exists)"
    )
    p.add_argument("--camera", help="camera id for a camera_info import (default: its camera_name)")
    p.add_argument("--image", help="one of the camera's images: its size is the camera's (KITTI object files "
                                   "have none; a declared size that differs is overridden)")  # fmt: skip
    p.add_argument("--width", type=int, default=None, help="KITTI image width, without --image")
    p.add_argument("--height", type=int, default=None, help="KITTI image height, without --image")
    p.add_argument("--force", action="store_true",
                   help="camera_info into an existing camera of another resolution: replace it")  # fmt: skip
    add_json(p)
    p.set_defaults(func=cmd_calibrate_import)
