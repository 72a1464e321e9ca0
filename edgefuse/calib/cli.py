"""``edgefuse calibrate …``: thin shells over :mod:`edgefuse.calib` (each returns a JSON-able dict)."""

from __future__ import annotations

import glob as _glob
from pathlib import Path

from edgefuse.errors import InputError

_NS = 1_000_000_000


def _images_from_glob(pattern: str):
    from edgefuse.calib.common import read_image_file

    paths = sorted(_glob.glob(pattern))
    if not paths:
        raise InputError(f"--images {pattern!r}: no files match")
    return ((Path(p).name, read_image_file(p)) for p in paths), len(paths)


def _images_from_log(log: str, camera: str, every: int):
    from edgefuse.calib.common import image_rgb, sensor_messages

    def gen():
        for k, msg in enumerate(sensor_messages(log, camera)):
            if k % every == 0:
                yield f"{camera}@{msg.stamp_ns}", image_rgb(msg, f"{log}: {camera} stamp {msg.stamp_ns}")

    return gen(), None


def cmd_intrinsics(args) -> dict:
    from edgefuse.calib.boards import parse_board
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.intrinsics import (
        calibrate_intrinsics,
        camera_info_yaml,
        coverage_png,
        detect_views,
        error_plot_png,
    )

    board = parse_board(args.board)
    if args.images:
        images, total = _images_from_glob(args.images)
        source = args.images
    elif args.log and args.camera:
        images, total = _images_from_log(args.log, args.camera, max(1, args.every))
        source = args.log
    else:
        raise InputError("calibrate intrinsics: expected --images GLOB, or --log LOG with --camera ID")
    if args.calib and not args.camera:
        raise InputError("calibrate intrinsics --calib: expected --camera ID (which camera to update)")
    views, missing, size = detect_views(
        images, board, progress=not args.json, total=total, min_shift_px=5.0 if args.log else 0.0
    )
    result = calibrate_intrinsics(views, board, size, args.model, missing=missing)
    out = Path(args.out)
    out.write_text(camera_info_yaml(result.camera, args.camera or out.stem), encoding="utf-8")
    cov_path = out.with_name(out.stem + ".coverage.png")
    err_path = out.with_name(out.stem + ".errors.png")
    covered = coverage_png(views, size, cov_path, rejected=set(result.rejected))
    error_plot_png(result, err_path)
    report = result.to_dict()
    report.update(
        board=board.describe(),
        images_without_board=len(missing),
        coverage=round(covered, 3),
        out=str(out),
        coverage_png=str(cov_path),
        errors_png=str(err_path),
    )
    if args.calib:
        inputs = {"log": args.log} if args.log else {}

        def update(calib):
            from edgefuse.geometry import Transform

            calib.cameras[args.camera] = result.camera
            calib.extrinsics.setdefault(args.camera, Transform.identity())

        rec = provenance(
            "intrinsics",
            inputs,
            {"rms_px": round(result.rms, 4)},
            board=board.describe(),
            source=source,
            views_used=len(result.used),
            views_rejected=len(result.rejected),
        )
        report["backup"] = str(update_calibration_file(args.calib, update, rec, f"intrinsics.{args.camera}"))
        report["calib"] = args.calib
    return report


def _human_intrinsics(r: dict) -> None:
    print(
        f"{r['model']} {r['image_size'][0]}x{r['image_size'][1]}: rms {r['rms']:.3f} px, "
        f"{r['views_used']} views used, {len(r['views_rejected'])} rejected, coverage {r['coverage']:.0%}"
    )
    print(f"camera_matrix: {r['camera_matrix']}")
    print(f"distortion:    {r['distortion']}")
    for name, why in r["views_rejected"].items():
        print(f"rejected {name}: {why}")
    print(f"wrote {r['out']}, {r['coverage_png']}, {r['errors_png']}")


def cmd_lidar_camera(args) -> dict:
    from edgefuse.calib.boards import parse_board
    from edgefuse.calib.common import CalibrationError, provenance, update_calibration_file
    from edgefuse.calib.lidar_camera import observations_from_log, solve_lidar_camera
    from edgefuse.rig import load_calibration

    board = parse_board(args.board)
    calib = load_calibration(args.calib)
    try:
        cam = calib.camera(args.camera)
        T_base_cam, T_base_lidar = calib.T_base(args.camera), calib.T_base(args.lidar)
    except KeyError as e:
        raise InputError(f"{args.calib}: {e.args[0]}") from None
    T_init = T_base_cam.inverse() @ T_base_lidar
    obs, counts = observations_from_log(
        args.log, args.camera, args.lidar, board, cam, T_init, progress=not args.json
    )
    if len(obs) < 3:
        raise CalibrationError(
            f"{args.log}: only {len(obs)} still board view(s) seen by both {args.camera} and {args.lidar} "
            f"(skipped: {counts}); need ≥ 3: hold the board still for ≥ 1 s in at least 3 differently tilted "
            "poses in view of both sensors"
        )
    result = solve_lidar_camera(obs, board, use_edges=args.edges)
    T_base_cam_new = T_base_lidar @ result.T_cam_lidar.inverse()
    report = result.to_dict()
    report["skipped"] = counts
    from edgefuse.calib.lidar_camera import transform_error

    dt, dr = transform_error(T_base_cam_new, T_base_cam)
    report["change"] = {"translation_m": round(dt, 5), "rotation_deg": round(dr, 4)}

    def update(c):
        c.extrinsics[args.camera] = T_base_cam_new

    rec = provenance(
        "lidar-camera",
        {"log": args.log},
        {
            "rms_m": round(result.rms_m, 5),
            "std_translation_m": report["std_translation_m"],
            "std_rotation_deg": report["std_rotation_deg"],
        },
        camera=args.camera,
        lidar=args.lidar,
        board=board.describe(),
        poses=len(result.used),
    )
    report["backup"] = str(update_calibration_file(args.calib, update, rec, f"extrinsics.{args.camera}"))
    report["calib"] = args.calib
    return report


def cmd_radar_lidar(args) -> dict:
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.lidar_camera import transform_error
    from edgefuse.calib.radar_lidar import frames_from_log, solve_radar_lidar
    from edgefuse.rig import load_calibration

    calib = load_calibration(args.calib)
    try:
        T_base_lidar, T_base_radar = calib.T_base(args.lidar), calib.T_base(args.radar)
    except KeyError as e:
        raise InputError(f"{args.calib}: {e.args[0]}") from None
    frames = frames_from_log(args.log, args.radar, args.lidar)
    result = solve_radar_lidar(frames, T_base_lidar, T_base_radar, six_dof=args.six_dof)
    report = result.to_dict()
    report["frames"] = len(frames)
    dt, dr = transform_error(result.T_base_radar, T_base_radar)
    report["change"] = {"translation_m": round(dt, 4), "rotation_deg": round(dr, 4)}

    def update(c):
        c.extrinsics[args.radar] = result.T_base_radar

    rec = provenance(
        "radar-lidar",
        {"log": args.log},
        {"rms_m": report["rms_m"], "std": report["std"]},
        radar=args.radar,
        lidar=args.lidar,
        fitted=report["fitted"],
        pairs=result.pairs,
    )
    report["backup"] = str(update_calibration_file(args.calib, update, rec, f"extrinsics.{args.radar}"))
    report["calib"] = args.calib
    return report


def cmd_time(args) -> dict:
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.time_offset import offset_from_log
    from edgefuse.rig import load_calibration

    sensors = [s for s in args.sensors.split(",") if s]
    if len(sensors) != 2:
        raise InputError(f"--sensors {args.sensors!r}: expected two sensor ids A,B")
    a, b = sensors
    calib = load_calibration(args.calib)
    result, info = offset_from_log(args.log, a, b, calib, args.max_lag)
    old = calib.time_offsets_ns.get(b, 0)
    new = old - result.offset_ns
    report = result.to_dict()
    report.update(reference=a, sensor=b, kinds=info["kinds"], time_offset_ns={"before": old, "after": new})

    def update(c):
        c.time_offsets_ns[b] = int(new)

    rec = provenance(
        "time",
        {"log": args.log},
        {"correlation": report["correlation"], "std_ms": report["std_ms"]},
        reference=a,
        sensor=b,
        signal=result.signal,
        offset_ns=result.offset_ns,
    )
    report["backup"] = str(update_calibration_file(args.calib, update, rec, f"time_offsets_ns.{b}"))
    report["calib"] = args.calib
    return report


def cmd_check(args) -> dict:
    from edgefuse.calib.check import check_frame, check_log, overlay_png, read_cloud
    from edgefuse.calib.common import read_image_file
    from edgefuse.rig import load_calibration

    calib = load_calibration(args.calib)
    if args.log:
        cams = [args.camera] if args.camera else None
        out_dir = args.out or "calib-check"
        return {
            "log": args.log,
            "out": out_dir,
            "cameras": check_log(args.log, calib, out_dir, cams, args.lidar, every=max(1, args.every)),
        }
    if not (args.image and args.cloud and args.out):
        raise InputError("calibrate check: expected --image IMG --cloud URI --out overlay.png, or --log LOG")
    cam_id = args.camera or (next(iter(calib.cameras)) if len(calib.cameras) == 1 else None)
    if cam_id is None:
        raise InputError(f"{args.calib}: several cameras {sorted(calib.cameras)}: pass --camera ID")
    lidars = [k for k in calib.extrinsics if k not in calib.cameras]
    lidar_id = args.lidar or next((k for k in lidars if "lidar" in k or "velo" in k), None)
    if lidar_id is None:
        raise InputError(f"{args.calib}: which sensor is the LiDAR? pass --lidar ID (one of {lidars})")
    try:
        cam = calib.camera(cam_id)
        T = calib.T_base(cam_id).inverse() @ calib.T_base(lidar_id)
    except KeyError as e:
        raise InputError(f"{args.calib}: {e.args[0]}") from None
    image = read_image_file(args.image)
    cloud = read_cloud(args.cloud)
    try:
        r = check_frame(image, cloud.xyz, cam, T)
    except InputError as e:
        raise InputError(f"{args.image}: {e}") from None
    overlay_png(image, r, args.out, cam_id)
    out = r.to_dict()
    out.update(camera=cam_id, lidar=lidar_id, points=len(cloud), out=args.out)
    return out


def cmd_import(args) -> dict:
    from edgefuse.calib.common import update_calibration_file
    from edgefuse.calib.importers import camera_info_to_camera, kitti_to_calibration
    from edgefuse.geometry import Transform
    from edgefuse.rig import Calibration, load_calibration, save_calibration

    src = Path(args.file)
    if not src.is_file():
        raise InputError(f"{src}: file not found")
    out = Path(args.out)
    if args.source == "kitti":
        calib = kitti_to_calibration(src.read_text(encoding="utf-8"), str(src), args.width, args.height)
        if out.exists():
            out.with_name(out.name + ".bak").write_bytes(out.read_bytes())
        save_calibration(calib, out)
        load_calibration(out)  # what we wrote must load
        return {
            "out": str(out),
            "cameras": sorted(calib.cameras),
            "sensors": sorted(calib.extrinsics),
            "base_frame": calib.provenance["base_frame"],
        }
    cam, name = camera_info_to_camera(src)
    cam_id = args.camera or name or src.stem
    rec = {"imported_from": f"ROS camera_info {src}"}
    if out.exists():

        def update(c):
            c.cameras[cam_id] = cam
            c.extrinsics.setdefault(cam_id, Transform.identity())

        update_calibration_file(out, update, rec, f"intrinsics.{cam_id}")
    else:
        calib = Calibration(
            cameras={cam_id: cam},
            extrinsics={cam_id: Transform.identity()},
            provenance={
                f"intrinsics.{cam_id}": rec,
                "note": f"extrinsics of {cam_id} are a placeholder (identity)",
            },
        )
        save_calibration(calib, out)
    return {"out": str(out), "camera": cam_id, "model": cam.model, "image_size": [cam.width, cam.height]}


def add_cli(sub) -> None:
    """Add the ``calibrate`` command group to the top-level subparsers ``sub``."""
    from edgefuse.cli import _add_json

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
    p.add_argument("--model", choices=("pinhole", "fisheye"), default="pinhole")
    p.add_argument(
        "--out", required=True, help="camera_info YAML to write (PNG reports are written beside it)"
    )
    p.add_argument("--calib", help="also update this calibration file in place (backup beside it)")
    _add_json(p)
    p.set_defaults(func=cmd_intrinsics, human=_human_intrinsics)

    p = cal.add_parser(
        "lidar-camera", help="camera extrinsics from a board seen by a camera and a LiDAR (log)"
    )
    p.add_argument("log", help="an MCAP log")
    p.add_argument("--camera", required=True)
    p.add_argument("--lidar", required=True)
    p.add_argument("--board", required=True, help="board spec or target .yaml (see `calibrate intrinsics`)")
    p.add_argument("--calib", required=True, help="calibration file: initial guess, updated in place")
    p.add_argument("--edges", action="store_true", help="add the plate-outline (edge alignment) term")
    _add_json(p)
    p.set_defaults(func=cmd_lidar_camera)

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
    _add_json(p)
    p.set_defaults(func=cmd_radar_lidar)

    p = cal.add_parser("time", help="time offset between two sensors of a log from their motion signals")
    p.add_argument("log", help="an MCAP log with motion (turns, speed changes)")
    p.add_argument("--sensors", required=True, help="A,B: B's offset is calibrated against A")
    p.add_argument("--calib", required=True, help="calibration file: B's time offset is updated in place")
    p.add_argument("--max-lag", type=float, default=0.5, help="largest offset searched, s (default 0.5)")
    _add_json(p)
    p.set_defaults(func=cmd_time)

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
    _add_json(p)
    p.set_defaults(func=cmd_check)

    p = cal.add_parser("import", help="import a KITTI or ROS camera_info calibration")
    p.add_argument("--from", dest="source", choices=("kitti", "camera_info"), required=True)
    p.add_argument("file", help="the foreign calibration file")
    p.add_argument(
        "--out", required=True, help="calibration YAML to write (camera_info: updated if it exists)"
    )
    p.add_argument("--camera", help="camera id for a camera_info import (default: its camera_name)")
    p.add_argument(
        "--width", type=int, default=1242, help="KITTI image width (not in its files; default 1242)"
    )
    p.add_argument("--height", type=int, default=375, help="KITTI image height (default 375)")
    _add_json(p)
    p.set_defaults(func=cmd_import)
