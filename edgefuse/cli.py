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
    print(f"wrote {r['out']}, {r['coverage_png']}, {r['errors_png']}")


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
    )


def cmd_calibrate_radar_lidar(args) -> dict:
    from edgefuse.calib.commands import run_radar_lidar

    return run_radar_lidar(
        args.log, radar=args.radar, lidar=args.lidar, calib_path=args.calib, six_dof=args.six_dof
    )


def cmd_calibrate_time(args) -> dict:
    from edgefuse.calib.commands import run_time

    return run_time(args.log, sensor_pair=args.sensors, calib_path=args.calib, max_lag=args.max_lag)


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
        args.file, source=args.source, out=args.out, camera=args.camera, width=args.width, height=args.height
    )


def cmd_demo(args) -> dict:
    from edgefuse.demo import run_demo

    return run_demo(
        args.out, args.scenario, args.seed, args.duration, model=args.model,
        progress=not getattr(args, "json", False),
    )  # fmt: skip


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


def _human_record(r: dict) -> None:
    from edgefuse.record import format_record

    print(format_record(r))


def cmd_sync_report(args) -> dict:
    from edgefuse.rig import load_kit
    from edgefuse.sync.report import sync_report

    kit = load_kit(args.kit) if args.kit else None
    budget = int(round(args.latency_budget_ms * 1e6))
    return sync_report(args.log, kit=kit, policy=args.policy, latency_budget_ns=budget, png=args.png)


def cmd_train(args) -> dict:
    from edgefuse.model.train import dropout_rates, train_model
    from edgefuse.runtime.feed import parse_modalities

    return train_model(
        args.data, args.out, epochs=args.epochs, fusion=args.fusion,
        modalities=parse_modalities(args.modalities), config=args.config, seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, cache_root=args.cache,
        modality_dropout=dropout_rates(args.modality_dropout),
        command=(f"edgefuse train --data {' '.join(args.data)} --out {args.out} --epochs {args.epochs} "
                 f"--fusion {args.fusion} --modalities {args.modalities} --config {args.config} "
                 f"--seed {args.seed} --batch-size {args.batch_size} --lr {args.lr} "
                 f"--modality-dropout {args.modality_dropout}"),
        progress=not getattr(args, "json", False),
    )  # fmt: skip


def cmd_eval(args) -> dict:
    from edgefuse.eval.evaluate import evaluate
    from edgefuse.runtime.bundled import default_for_backend
    from edgefuse.runtime.feed import parse_modalities

    return evaluate(
        args.model or default_for_backend(args.backend), args.logs, backend=args.backend,
        modalities=parse_modalities(args.modalities), out_dir=args.out, cache_root=args.cache,
        max_frames=args.max_frames, progress=not getattr(args, "json", False),
    )  # fmt: skip


def _human_eval(r: dict) -> None:
    from edgefuse.eval.evaluate import format_eval

    print(format_eval(r))


def cmd_export(args) -> dict:
    from edgefuse.engine.export import export_onnx
    from edgefuse.runtime.bundled import bundled_model

    out = export_onnx(args.model or bundled_model("pt"), args.out, plugins=args.plugins)
    return {"out": str(out), "plugins": args.plugins, "bytes": out.stat().st_size}


def cmd_quantize(args) -> dict:
    from pathlib import Path

    from edgefuse.engine.quantize import calibration_feeds, quantize_int8
    from edgefuse.runtime.manifest import read_onnx_manifest

    manifest = read_onnx_manifest(args.model)
    cache = args.cache or Path(args.calib[0]).parent / ".edgefuse-cache"
    feeds = calibration_feeds(
        args.calib, manifest, cache, max_frames=args.frames, progress=not getattr(args, "json", False)
    )
    keep = [n for n in (args.keep_float or "").split(",") if n]
    return quantize_int8(args.model, args.out, feeds, method=args.method, keep_float=keep, sweep=args.sweep)


def cmd_build_engine(args) -> dict:
    from edgefuse.engine.tensorrt import build_engine

    return build_engine(
        args.model, args.out, precision=args.precision, profile=args.profile, plugins=args.plugins
    )


def cmd_compare(args) -> dict:
    from edgefuse.engine.compare import compare

    models = [m for m in args.models.split(",") if m]
    return compare(
        args.log,
        models,
        cache_root=args.cache,
        score_threshold=args.score_threshold,
        match_m=args.match_m,
        max_frames=args.max_frames,
        progress=not getattr(args, "json", False),
    )


def _human_compare(r: dict) -> None:
    from edgefuse.engine.compare import format_compare

    print(format_compare(r))


def _pipeline_config(args):
    from edgefuse.frames import MS, PipelineConfig

    return PipelineConfig(
        deadline_ns=int(round(args.deadline_ms * MS)), score_threshold=args.score_threshold,
        frame_queue=args.queue,
    )  # fmt: skip


def cmd_replay(args) -> dict:
    from edgefuse.models import load_backend
    from edgefuse.pipeline.replay import run_replay
    from edgefuse.runtime.backends import inference_threads

    rate = None if args.rate == "max" else float(args.rate)
    if rate is not None and not rate > 0:
        raise InputError(f"replay --rate: expected 'max' or a positive number, got {args.rate!r}")
    backend = load_backend(args.model, args.backend, threads=args.threads or inference_threads())
    return run_replay(
        args.log, backend, args.out or f"{args.log}.replay", rate=rate, deterministic=args.deterministic,
        kit_path=args.kit, calib_path=args.calib, config=_pipeline_config(args), udp=args.udp,
        console=args.console, log_inputs=args.log_inputs,
        status=None if getattr(args, "json", False) else sys.stderr,
    )  # fmt: skip


def cmd_run(args) -> dict:
    from edgefuse.models import load_backend
    from edgefuse.pipeline.live import run_live
    from edgefuse.runtime.backends import inference_threads

    backend = load_backend(args.model, args.backend, threads=args.threads or inference_threads())
    return run_live(
        args.kit, backend, args.out, calib_path=args.calib, duration_s=args.duration,
        config=_pipeline_config(args), udp=args.udp, console=args.console,
        status=None if getattr(args, "json", False) else sys.stderr,
    )  # fmt: skip


def _human_pipeline(r: dict) -> None:
    from edgefuse.profiling import format_report

    print(format_report(r))
    print(f"  outputs: {', '.join(str(v) for v in r.get('outputs', {}).values())}")


def cmd_profile(args) -> dict:
    from edgefuse.engine.profile import profile_model

    def split(text, conv=str):
        return [conv(x.strip()) for x in text.split(",") if x.strip()]

    return profile_model(
        args.model, args.out, backends=split(args.backend) if args.backend else [None],
        precisions=split(args.precision), threads=split(args.threads, int), frames=args.frames,
        log_path=args.log, progress=not getattr(args, "json", False),
    )  # fmt: skip


def _human_profile(r: dict) -> None:
    from edgefuse.engine.profile import format_profile

    print(format_profile(r))


# ---------------------------------------------------------------- parser


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefuse",
        description="camera + LiDAR + radar fusion on the edge: "
        "sensors, logs, sync, calibration, model, deployment, pipeline",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo", help="simulate a drive, run the fusion pipeline on it, score it, write a video and reports"
    )
    p.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    p.add_argument("--scenario", default="default", help="simulator scenario (default: default)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    p.add_argument("--duration", type=float, default=10.0, help="simulated seconds (default 10)")
    p.add_argument("--model", default=None, help="model file (default: the bundled INT8 edge.int8.onnx)")
    _add_json(p)
    p.set_defaults(func=cmd_demo, human=_human_demo)

    p_log = sub.add_parser("log", help="inspect MCAP logs")
    log_sub = p_log.add_subparsers(dest="log_command", metavar="SUBCOMMAND", required=True)
    p = log_sub.add_parser("info", help="topics, counts, rates, duration and time gaps of a log")
    p.add_argument("file", help="an MCAP log")
    _add_json(p)
    p.set_defaults(func=cmd_log_info, human=_human_log_info)

    p = sub.add_parser("inspect", help="kind, count, rate, fields, points, stamps, decode errors of a source")
    p.add_argument(
        "uri", help="a source URI, e.g. pcap://x.pcap?model=VLP32C, mcap://log.mcap, sim://default"
    )
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
    p.set_defaults(func=cmd_record, human=_human_record)

    p_sync = sub.add_parser("sync", help="clock mapping and synchronization of logs")
    sync_sub = p_sync.add_subparsers(dest="sync_command", metavar="SUBCOMMAND", required=True)
    p = sync_sub.add_parser("report", help="per-sensor clock offset/drift/residuals, frames, drops, PNG")
    p.add_argument("log", help="an MCAP log")
    p.add_argument("--kit", default=None, help="sensor-kit YAML (default: sim kit or the log's topics)")
    p.add_argument("--policy", default="reference", choices=("reference", "approximate"))
    p.add_argument("--latency-budget-ms", type=float, default=100.0, help="reference wait, ms (default 100)")
    p.add_argument("--png", default=None, help="residual histogram PNG (default: LOG.sync.png)")
    _add_json(p)
    p.set_defaults(func=cmd_sync_report)

    p = sub.add_parser("train", help="train the fusion model on simulator logs (resumable)")
    p.add_argument("--data", nargs="+", required=True, metavar="LOG", help="simulator logs with ground truth")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoints and model.pt go here")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--fusion", choices=("concat", "weighted", "gated"), default="gated")
    p.add_argument("--modalities", default="camera,lidar,radar", help="encoders to build (default all)")
    p.add_argument("--config", default="edge", help="edge (default, CPU/Jetson) or large (GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--modality-dropout",
        default="0.15",
        metavar="P|NAME=P,…",
        help="per-sample drop rate: one for all, or per modality (camera=0.15,lidar=0.4,radar=0.15)",
    )
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default DIR/cache)")
    _add_json(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="mAP / per-class AP / mAVE / latency of a model on simulator logs")
    p.add_argument("logs", nargs="+", metavar="LOG", help="held-out simulator logs")
    p.add_argument(
        "--model", default=None,
        help=".pt, .onnx or .engine (default: the bundled edge.pt, or edge.onnx for onnxruntime/no torch)",
    )  # fmt: skip
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None, help="default: from the file"
    )
    p.add_argument("--modalities", default="camera,lidar,radar", help="sensors left on (others zeroed)")
    p.add_argument("--out", default=None, metavar="DIR", help="PNGs (default LOG.eval/)")
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default next to the log)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N")
    _add_json(p)
    p.set_defaults(func=cmd_eval, human=_human_eval)

    p = sub.add_parser("export", help="a .pt model → ONNX (decode included, fixed shapes, manifest embedded)")
    p.add_argument("--model", default=None, help=".pt model (default: the bundled model)")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--plugins", action="store_true", help="emit the TensorRT plugin nodes (TensorRT only)")
    _add_json(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="INT8 QDQ ONNX calibrated on frames from logs")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--calib", nargs="+", required=True, metavar="LOG", help="calibration logs")
    p.add_argument("--out", required=True, metavar="MODEL.int8.onnx")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="percentile")
    p.add_argument("--frames", type=int, default=64, help="calibration frames (default 64)")
    p.add_argument("--sweep", type=int, default=0, metavar="N", help="keep N most sensitive convs float")
    p.add_argument("--keep-float", default=None, metavar="NODE,…", help="node names to keep in float")
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default next to the first log)")
    _add_json(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("build-engine", help="TensorRT engine from ONNX for a deployment profile")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), default=None, help="default: the profile's"
    )
    p.add_argument("--profile", default="x86-gpu", help="deploy/profiles/NAME.yaml or a path")
    p.add_argument("--out", required=True, metavar="X.engine")
    p.add_argument("--plugins", default=None, metavar="LIB", help="TensorRT plugin library")
    _add_json(p)
    p.set_defaults(func=cmd_build_engine)

    p = sub.add_parser("compare", help="per-frame detection agreement and mAP of several models on a log")
    p.add_argument("log", metavar="LOG")
    p.add_argument("--models", required=True, metavar="A,B,…", help="model files; the first is the reference")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--match-m", type=float, default=0.5, help="match distance between models (m)")
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default next to the log)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N")
    _add_json(p)
    p.set_defaults(func=cmd_compare, human=_human_compare)

    def pipeline_common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", default=None, help=".pt/.onnx/.engine (default: the bundled INT8 model edge.int8.onnx)"
        )
        p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                       help="default: from the model file")  # fmt: skip
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="backend threads (default: CPU cores − 1, at least 1)",
        )
        p.add_argument("--calib", default=None, help="calibration YAML (default: the kit's / the log's)")
        p.add_argument("--deadline-ms", type=float, default=100.0, help="per-frame deadline (default 100)")
        p.add_argument("--queue", type=int, default=2, help="frames queued for inference (default 2)")
        p.add_argument("--score-threshold", type=float, default=0.1, help="detection score cut (default 0.1)")
        p.add_argument("--udp", default=None, metavar="HOST:PORT", help="send detections as JSON datagrams")
        p.add_argument("--console", action="store_true", help="print one line per frame")
        _add_json(p)

    p = sub.add_parser("replay", help="a log through the real-time pipeline: detections, latency report")
    p.add_argument("log", help="an MCAP log (e.g. edgefuse sim record)")
    p.add_argument("--rate", default="1.0", help="replay rate × real time, or max (default 1.0)")
    p.add_argument("--deterministic", action="store_true", help="every frame in stamp order, one thread")
    p.add_argument("--kit", default=None, help="sensor-kit YAML (default: the simulator's)")
    p.add_argument("--out", default=None, metavar="DIR", help="outputs (default LOG.replay/)")
    p.add_argument("--log-inputs", action="store_true", help="also write the inputs to the output log")
    pipeline_common(p)
    p.set_defaults(func=cmd_replay, human=_human_pipeline)

    p = sub.add_parser("run", help="the real-time pipeline on a live sensor kit (Ctrl-C stops)")
    p.add_argument("--kit", required=True, help="sensor-kit YAML, e.g. sensors/sim-default.yaml")
    p.add_argument("--out", default="run-output", metavar="DIR", help="log + report (default run-output/)")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    pipeline_common(p)
    p.set_defaults(func=cmd_run, human=_human_pipeline)

    p = sub.add_parser("profile", help="per-stage latency of backends × precisions × threads, same frames")
    p.add_argument("--model", required=True, help=".pt/.onnx/.engine model")
    p.add_argument("--backend", default=None, help="comma-separated: torch,onnxruntime (default: the file's)")
    p.add_argument("--precision", default="fp32", help="comma-separated fp32,int8 (int8 quantizes the .onnx)")
    p.add_argument("--threads", default="2", help="comma-separated thread counts (default 2)")
    p.add_argument("--frames", type=int, default=30, help="frames per combination (default 30)")
    p.add_argument("--log", default=None, help="MCAP log (default: a short simulator log recorded in --out)")
    p.add_argument("--out", default="profile-output", metavar="DIR", help="outputs (default profile-output/)")
    _add_json(p)
    p.set_defaults(func=cmd_profile, human=_human_profile)

    p_sim = sub.add_parser("sim", help="the built-in simulated rig: record logs, preview, serve live packets")
    sim_sub = p_sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    def sim_common(p: argparse.ArgumentParser) -> None:
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
        _add_json(p)

    p = sim_sub.add_parser("record", help="record a simulated MCAP log (streamed to disk)")
    sim_common(p)
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
    sim_common(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--t", type=float, default=3.0, help="simulation time in seconds (default 3)")
    p.add_argument("--camera-model", default="pinhole", choices=("pinhole", "fisheye"))
    p.set_defaults(func=cmd_sim_preview)

    p = sim_sub.add_parser(
        "serve", help="emit VLP-32C UDP packets to 127.0.0.1 and TI mmWave frames on a pty"
    )
    sim_common(p)
    p.add_argument("--lidar-port", type=int, default=2368, help="UDP port on 127.0.0.1 (default 2368)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until interrupted)")
    p.add_argument("--no-radar", action="store_true", help="LiDAR only")
    p.set_defaults(func=cmd_sim_serve)

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
    _add_json(p)
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
    _add_json(p)
    p.set_defaults(func=cmd_calibrate_radar_lidar)

    p = cal.add_parser("time", help="time offset between two sensors of a log from their motion signals")
    p.add_argument("log", help="an MCAP log with motion (turns, speed changes)")
    p.add_argument("--sensors", required=True, help="A,B: B's offset is calibrated against A")
    p.add_argument("--calib", required=True, help="calibration file: B's time offset is updated in place")
    p.add_argument("--max-lag", type=float, default=0.5, help="largest offset searched, s (default 0.5)")
    _add_json(p)
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
    _add_json(p)
    p.set_defaults(func=cmd_calibrate_check)

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
    p.set_defaults(func=cmd_calibrate_import)

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
