"""What each ``edgefuse calibrate …`` command does, over :mod:`edgefuse.calib`: read the inputs, solve, write
the reports, update the calibration file in place. Each returns a JSON-able dict (the CLI parses, then calls
these)."""

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


def run_intrinsics(
    *,
    board: str,
    out: str,
    images: str | None = None,
    log: str | None = None,
    camera: str | None = None,
    every: int = 3,
    model: str = "pinhole",
    calib_path: str | None = None,
    progress: bool = True,
    force: bool = False,
    dry_run: bool = False,
) -> dict:
    """`calibrate intrinsics`: board views from an image glob or a log → camera_info YAML + PNG reports;
    optionally updates ``calib_path`` in place. The YAML and the calibration are written when the result
    passes :func:`~edgefuse.calib.intrinsics.intrinsics_gates` (see :func:`_gated_write`); the PNG reports
    always."""
    from edgefuse.calib.boards import parse_board
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.intrinsics import (
        calibrate_intrinsics,
        camera_info_yaml,
        coverage_png,
        detect_views,
        error_plot_png,
        intrinsics_gates,
    )

    board = parse_board(board)
    if images:
        frames, total = _images_from_glob(images)
        source = images
    elif log and camera:
        frames, total = _images_from_log(log, camera, max(1, every))
        source = log
    else:
        raise InputError("calibrate intrinsics: expected --images GLOB, or --log LOG with --camera ID")
    if calib_path and not camera:
        raise InputError("calibrate intrinsics --calib: expected --camera ID (which camera to update)")
    views, missing, size = detect_views(
        frames, board, progress=progress, total=total, min_shift_px=5.0 if log else 0.0
    )
    result = calibrate_intrinsics(views, board, size, model, missing=missing)
    out = Path(out)
    cov_path = out.with_name(out.stem + ".coverage.png")
    err_path = out.with_name(out.stem + ".errors.png")
    covered = coverage_png(views, size, cov_path, rejected=set(result.rejected))  # reports: always written
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

    def write(forced) -> dict:
        out.write_text(camera_info_yaml(result.camera, camera or out.stem), encoding="utf-8")
        if not calib_path:
            return {}
        inputs = {"log": log} if log else {}

        def update(calib):
            from edgefuse.geometry import Transform

            calib.cameras[camera] = result.camera
            calib.extrinsics.setdefault(camera, Transform.identity())

        rec = provenance(
            "intrinsics",
            inputs,
            {"rms_px": round(result.rms, 4)},
            board=board.describe(),
            source=source,
            views_used=len(result.used),
            views_rejected=len(result.rejected),
            forced=forced or None,
        )
        backup = update_calibration_file(calib_path, update, rec, f"intrinsics.{camera}")
        return {"backup": str(backup), "calib": calib_path}

    gates = intrinsics_gates(result, covered)
    return _gated_write(f"calibrate intrinsics {camera or out.stem}", gates, report, force=force,
                        dry_run=dry_run, write=write)  # fmt: skip


def run_lidar_camera(
    log: str,
    *,
    camera: str,
    lidar: str,
    board: str,
    calib_path: str,
    edges: bool = False,
    progress: bool = True,
    force: bool = False,
    dry_run: bool = False,
) -> dict:
    """`calibrate lidar-camera`: T_base_camera from board views in a log; updates ``calib_path`` in place
    when the result passes :func:`~edgefuse.calib.lidar_camera.lidar_camera_gates` (see
    :func:`_gated_write`)."""
    from edgefuse.calib.boards import parse_board
    from edgefuse.calib.common import CalibrationError, provenance, update_calibration_file
    from edgefuse.calib.lidar_camera import (
        lidar_camera_gates,
        pose_error_png,
        solve_lidar_camera,
        transform_error,
    )
    from edgefuse.calib.lidar_camera_board import observations_from_log
    from edgefuse.rig import load_calibration

    board = parse_board(board)
    calib = load_calibration(calib_path)
    try:
        cam = calib.camera(camera)
        T_base_cam, T_base_lidar = calib.T_base(camera), calib.T_base(lidar)
    except KeyError as e:
        raise InputError(f"{calib_path}: {e.args[0]}") from None
    T_init = T_base_cam.inverse() @ T_base_lidar
    obs, counts = observations_from_log(log, camera, lidar, board, cam, T_init, progress=progress)
    if len(obs) < 3:
        raise CalibrationError(
            f"{log}: only {len(obs)} still board view(s) seen by both {camera} and {lidar} "
            f"(skipped: {counts}); need ≥ 3: hold the board still for ≥ 1 s in at least 3 differently tilted "
            "poses in view of both sensors"
        )
    result = solve_lidar_camera(obs, board, use_edges=edges)
    T_base_cam_new = T_base_lidar @ result.T_cam_lidar.inverse()
    report = result.to_dict()
    report["skipped"] = counts
    png = Path(calib_path).with_name(f"{Path(calib_path).stem}.lidar-camera.{camera}.png")
    pose_error_png(result, png)  # the report: written whether or not the result is
    report["poses_png"] = str(png)
    dt, dr = transform_error(T_base_cam_new, T_base_cam)
    report["change"] = {"translation_m": round(dt, 5), "rotation_deg": round(dr, 4)}
    report["calib"] = calib_path
    found = len(obs) / (len(obs) + counts.get("no_lidar_board", 0))

    def update(c):
        c.set_T_base(camera, T_base_cam_new)

    def write(forced):
        rec = provenance(
            "lidar-camera",
            {"log": log},
            {
                "rms_m": round(result.rms_m, 5),
                "std_translation_m": report["std_translation_m"],
                "std_rotation_deg": report["std_rotation_deg"],
            },
            camera=camera,
            lidar=lidar,
            board=board.describe(),
            poses=len(result.used),
            forced=forced or None,
        )
        return {"backup": str(update_calibration_file(calib_path, update, rec, f"extrinsics.{camera}"))}

    return _gated_write(f"calibrate lidar-camera {camera}", lidar_camera_gates(result, T_init, found), report,
                        force=force, dry_run=dry_run, write=write)  # fmt: skip


def _gated_write(what: str, gates, report: dict, *, force: bool, dry_run: bool, write) -> dict:
    """The one way a calibration result is written: ``report`` gets its ``gates``; with ``dry_run`` the
    failed gates are listed and nothing is written; otherwise a failed gate raises (one line, see
    :func:`~edgefuse.calib.common.gate_verdict`) unless ``force``, and ``write(forced)`` (the failed gates'
    lines, recorded in the provenance) writes and returns what it wrote (report keys)."""
    from edgefuse.calib.common import gate_verdict

    report.update(gates=[g.to_dict() for g in gates], written=False)
    if dry_run:
        report["failed_gates"] = [g.line() for g in gates if not g.ok]
        return report
    forced = gate_verdict(what, gates, force=force)
    report.update(write(forced))
    report["written"] = True
    if forced:
        report["forced"] = forced
    return report


def run_radar_lidar(
    log: str,
    *,
    radar: str,
    lidar: str,
    calib_path: str,
    six_dof: bool = False,
    force: bool = False,
    dry_run: bool = False,
) -> dict:
    """`calibrate radar-lidar`: T_base_radar from corner reflectors in a log; updates ``calib_path`` when
    the result passes :func:`~edgefuse.calib.radar_lidar.radar_lidar_gates` (see :func:`_gated_write`)."""
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.lidar_camera import transform_error
    from edgefuse.calib.radar_lidar import frames_from_log, radar_lidar_gates, solve_radar_lidar
    from edgefuse.rig import load_calibration

    calib = load_calibration(calib_path)
    try:
        T_base_lidar, T_base_radar = calib.T_base(lidar), calib.T_base(radar)
    except KeyError as e:
        raise InputError(f"{calib_path}: {e.args[0]}") from None
    frames = frames_from_log(log, radar, lidar)
    result = solve_radar_lidar(frames, T_base_lidar, T_base_radar, six_dof=six_dof)
    report = result.to_dict()
    report["frames"] = len(frames)
    dt, dr = transform_error(result.T_base_radar, T_base_radar)
    report["change"] = {"translation_m": round(dt, 4), "rotation_deg": round(dr, 4)}
    report["calib"] = calib_path

    def update(c):
        c.set_T_base(radar, result.T_base_radar)

    def write(forced):
        rec = provenance(
            "radar-lidar",
            {"log": log},
            {"rms_m": report["rms_m"], "std": report["std"]},
            radar=radar,
            lidar=lidar,
            fitted=report["fitted"],
            pairs=result.pairs,
            reflectors=result.reflectors,
            forced=forced or None,
        )
        return {"backup": str(update_calibration_file(calib_path, update, rec, f"extrinsics.{radar}"))}

    return _gated_write(f"calibrate radar-lidar {radar}", radar_lidar_gates(result), report, force=force,
                        dry_run=dry_run, write=write)  # fmt: skip


def run_time(
    log: str,
    *,
    sensor_pair: str,
    calib_path: str,
    max_lag: float = 0.5,
    force: bool = False,
    dry_run: bool = False,
) -> dict:
    """`calibrate time`: the time offset of B against A (``sensor_pair`` "A,B"); updates ``calib_path``
    when the result passes its quality gates (:func:`~edgefuse.calib.time_offset.offset_gates`; ``force``:
    anyway, recorded in the provenance), never with ``dry_run``."""
    from edgefuse.calib.common import provenance, update_calibration_file
    from edgefuse.calib.time_offset import offset_from_log, offset_gates
    from edgefuse.rig import load_calibration

    sensors = [s for s in sensor_pair.split(",") if s]
    if len(sensors) != 2:
        raise InputError(f"--sensors {sensor_pair!r}: expected two sensor ids A,B")
    a, b = sensors
    calib = load_calibration(calib_path)
    result, info = offset_from_log(log, a, b, calib, max_lag)
    old = calib.time_offsets_ns.get(b, 0)
    new = old - result.offset_ns
    report = result.to_dict()
    report.update(reference=a, sensor=b, kinds=info["kinds"], time_offset_ns={"before": old, "after": new},
                  calib=calib_path)  # fmt: skip

    def update(c):
        c.time_offsets_ns[b] = int(new)

    def write(forced):
        rec = provenance(
            "time",
            {"log": log},
            {"correlation": report["correlation"], "std_ms": report["std_ms"]},
            reference=a,
            sensor=b,
            signal=result.signal,
            offset_ns=result.offset_ns,
            forced=forced or None,
        )
        return {"backup": str(update_calibration_file(calib_path, update, rec, f"time_offsets_ns.{b}"))}

    return _gated_write(f"calibrate time {a},{b}", offset_gates(result), report, force=force,
                        dry_run=dry_run, write=write)  # fmt: skip


def run_check(
    *,
    calib_path: str,
    image: str | None = None,
    cloud: str | None = None,
    log: str | None = None,
    camera: str | None = None,
    lidar: str | None = None,
    every: int = 5,
    out: str | None = None,
) -> dict:
    """`calibrate check`: project a cloud into an image (or every camera of a log) and score it."""
    from edgefuse.calib.check import check_frame, check_log, overlay_png, read_cloud
    from edgefuse.calib.common import read_image_file
    from edgefuse.rig import load_calibration

    calib = load_calibration(calib_path)
    if log:
        cams = [camera] if camera else None
        out_dir = out or "calib-check"
        return {
            "log": log,
            "out": out_dir,
            "cameras": check_log(log, calib, out_dir, cams, lidar, every=max(1, every)),
        }
    if not (image and cloud and out):
        raise InputError("calibrate check: expected --image IMG --cloud URI --out overlay.png, or --log LOG")
    cam_id = camera or (next(iter(calib.cameras)) if len(calib.cameras) == 1 else None)
    if cam_id is None:
        raise InputError(f"{calib_path}: several cameras {sorted(calib.cameras)}: pass --camera ID")
    lidars = [k for k in calib.extrinsics if k not in calib.cameras]
    lidar_id = lidar or next((k for k in lidars if "lidar" in k or "velo" in k), None)
    if lidar_id is None:
        raise InputError(f"{calib_path}: which sensor is the LiDAR? pass --lidar ID (one of {lidars})")
    try:
        cam = calib.camera(cam_id)
        T = calib.T_base(cam_id).inverse() @ calib.T_base(lidar_id)
    except KeyError as e:
        raise InputError(f"{calib_path}: {e.args[0]}") from None
    pixels = read_image_file(image)
    points = read_cloud(cloud)
    try:
        r = check_frame(pixels, points.xyz, cam, T)
    except InputError as e:
        raise InputError(f"{image}: {e}") from None
    overlay_png(pixels, r, out, cam_id)
    report = r.to_dict()
    report.update(camera=cam_id, lidar=lidar_id, points=len(points), out=out)
    return report


def run_import(
    files: list[str],
    *,
    source: str,
    out: str,
    camera: str | None = None,
    image: str | None = None,
    width: int | None = None,
    height: int | None = None,
    force: bool = False,
) -> dict:
    """`calibrate import`: a KITTI (object/tracking or raw), OpenCalib or ROS camera_info calibration → our
    calibration YAML. ``image``: one of the camera's images, whose size the camera takes (KITTI object
    files have none; where a file declares one and the image differs, the image wins and the report says
    so). ``kitti-raw``: a raw drive's calibration folder (or a drive folder below it), or its files."""
    from edgefuse.calib.common import update_calibration_file
    from edgefuse.calib.importers import (
        camera_info_to_camera,
        image_size,
        kitti_raw_to_calibration,
        kitti_to_calibration,
        opencalib_to_calibration,
    )
    from edgefuse.geometry import Transform
    from edgefuse.rig import Calibration, load_calibration, save_calibration

    srcs = [Path(f) for f in files]
    for src in srcs:
        if not (src.is_file() or (source == "kitti-raw" and src.is_dir())):
            raise InputError(f"{src}: file not found")
    fewest, most = {"kitti": (1, 1), "camera_info": (1, 1), "opencalib": (2, 2), "kitti-raw": (1, 3)}[source]
    if not fewest <= len(srcs) <= most:
        what = {"opencalib": "INTRINSIC.json EXTRINSIC.json", "kitti-raw": "the calibration folder or its "
                "calib_*.txt files"}.get(source, "one file")  # fmt: skip
        raise InputError(f"calibrate import --from {source}: expected {what}, got {len(srcs)} file(s)")
    if source != "kitti" and (width or height):
        raise InputError(f"calibrate import --from {source}: --width/--height are for KITTI object files, "
                         "which carry no image size; --image gives one of the camera's images")  # fmt: skip
    out = Path(out)
    if source in ("kitti", "kitti-raw", "opencalib"):
        notes: list[str] = []
        if source == "kitti":
            if image is not None:
                size = image_size(image)
            elif width and height:
                size = (width, height)
            else:
                raise InputError(
                    f"calibrate import --from kitti {srcs[0]}: KITTI files carry no image size and it varies "
                    "per drive (1224–1242 × 370–376): pass --image with one of the drive's images (or "
                    "--width/--height)"
                )
            calib = kitti_to_calibration(srcs[0].read_text(encoding="utf-8"), str(srcs[0]), size)
        elif source == "kitti-raw":
            calib, notes = kitti_raw_to_calibration(srcs, image)
        else:
            calib, notes = opencalib_to_calibration(srcs[0], srcs[1], image)
        if out.exists():
            out.with_name(out.name + ".bak").write_bytes(out.read_bytes())
        save_calibration(calib, out)
        load_calibration(out)  # what we wrote must load
        return {
            "out": str(out),
            "cameras": sorted(calib.cameras),
            "image_size": {k: [c.width, c.height] for k, c in calib.cameras.items()},
            "sensors": sorted(calib.extrinsics),
            "base_frame": calib.provenance["base_frame"],
            "notes": notes,
        }
    src = srcs[0]
    cam, name = camera_info_to_camera(src)
    cam_id = camera or name or src.stem
    rec = {"imported_from": f"ROS camera_info {src}"}
    if out.exists():
        old = load_calibration(out).cameras.get(cam_id)
        if old is not None and (old.width, old.height) != (cam.width, cam.height) and not force:
            raise InputError(
                f"calibrate import {src} → {out}: camera {cam_id!r} is {old.width}×{old.height} there, the "
                f"import is {cam.width}×{cam.height}: not changed (--camera NEW_ID imports it beside it, "
                "--force replaces it)"
            )

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
