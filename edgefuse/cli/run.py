"""``edgefuse replay``, ``run``, ``profile``: the real-time pipeline on a log or a live kit, and its
per-stage timing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgefuse.cli.common import add_json
from edgefuse.errors import InputError


def _pipeline_config(args):
    from edgefuse.frames import MS, PipelineConfig

    return PipelineConfig(
        deadline_ns=int(round(args.deadline_ms * MS)), score_threshold=args.score_threshold,
        frame_queue=args.queue,
    )  # fmt: skip


def _log_policy(args, command: str):
    """The ``--split-size``/``--split-duration``/``--min-free-mb`` options as a LogPolicy (checked)."""
    from edgefuse.frames import NS
    from edgefuse.pipeline.sinks import MB, LogPolicy

    for opt, v in (("--split-size", args.split_size), ("--split-duration", args.split_duration)):
        if v is not None and not v > 0:
            raise InputError(f"{command} {opt}: expected a positive number, got {v}")
    if not args.min_free_mb >= 0:
        raise InputError(f"{command} --min-free-mb: expected a number ≥ 0, got {args.min_free_mb}")
    return LogPolicy(
        split_size_bytes=None if args.split_size is None else int(args.split_size * MB),
        split_duration_ns=None if args.split_duration is None else int(round(args.split_duration * NS)),
        min_free_bytes=int(args.min_free_mb * MB),
    )  # fmt: skip


def _backend(args):
    """The model of ``run`` / ``replay`` opened with its backend; what onnxruntime left out goes to stderr."""
    from edgefuse.models import load_backend
    from edgefuse.runtime.backends import inference_threads

    backend = load_backend(args.model, args.backend, threads=args.threads or inference_threads(),
                           providers=args.providers, plugins=args.plugins,
                           trust_engine=args.trust_engine)  # fmt: skip
    for note in getattr(backend, "provider_notes", []):
        print(f"edgefuse: onnxruntime: {note}", file=sys.stderr)
    return backend


def cmd_replay(args) -> dict:
    from edgefuse.logs.logset import log_files
    from edgefuse.pipeline.replay import run_replay

    rate = None if args.rate == "max" else float(args.rate)
    if rate is not None and not rate > 0:
        raise InputError(f"replay --rate: expected 'max' or a positive number, got {args.rate!r}")
    logs = log_files(args.log)  # before the model loads: a wrong path fails at once
    policy = _log_policy(args, "replay")
    first = Path(args.log[0])
    backend = _backend(args)
    return run_replay(
        logs, backend, args.out or first.with_name(first.name + ".replay"), rate=rate,
        deterministic=args.deterministic, kit_path=args.kit, calib_path=args.calib,
        config=_pipeline_config(args), udp=args.udp, console=args.console, log_inputs=args.log_inputs,
        log_policy=policy, status=None if getattr(args, "json", False) else sys.stderr,
    )  # fmt: skip


def cmd_run(args) -> dict:
    from edgefuse.pipeline.live import run_live

    policy = _log_policy(args, "run")
    backend = _backend(args)
    return run_live(
        args.kit, backend, args.out, calib_path=args.calib, duration_s=args.duration,
        config=_pipeline_config(args), udp=args.udp, console=args.console, log_inputs=args.log_inputs,
        log_policy=policy, status=None if getattr(args, "json", False) else sys.stderr,
    )  # fmt: skip


def _human_pipeline(r: dict) -> None:
    from edgefuse.profiling import format_report

    print(format_report(r))
    files: list[str] = []
    for v in r.get("outputs", {}).values():
        for f in v if isinstance(v, list) else [v]:
            if str(f) not in files:
                files.append(str(f))
    print(f"  outputs: {', '.join(files)}")


def cmd_profile(args) -> dict:
    from edgefuse.engine.profile import profile_model

    def split(text, conv=str):
        return [conv(x.strip()) for x in text.split(",") if x.strip()]

    try:
        threads = split(args.threads, int) if args.threads else None
    except ValueError:
        why = f"profile --threads: expected comma-separated integers (1,2), got {args.threads!r}"
        raise InputError(why) from None
    return profile_model(
        args.model, args.out, backends=split(args.backend) if args.backend else [None],
        precisions=split(args.precision), threads=threads, frames=args.frames,
        log_path=args.log, progress=not getattr(args, "json", False),
    )  # fmt: skip


def _human_profile(r: dict) -> None:
    from edgefuse.engine.profile import format_profile

    print(format_profile(r))


def _pipeline_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None, help=".pt/.onnx/.engine (default: the bundled INT8 model edge.int8.onnx)"
    )
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                   help="default: from the model file")  # fmt: skip
    p.add_argument("--plugins", default=None, metavar="LIB",
                   help="the TensorRT plugin library for an engine with plugin nodes (edgefuse export "
                        "--plugins); default: $EDGEFUSE_TRT_PLUGINS_LIB, else edgefuse build-kernels' "
                        "default build")  # fmt: skip
    p.add_argument("--trust-engine", action="store_true",
                   help="run a version-compatible TensorRT engine's embedded host code (engines you built; "
                        "refused without this flag)")  # fmt: skip
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="backend threads (default: CPU cores − 1, at least 1)",
    )
    p.add_argument("--providers", default=None, type=lambda v: v.split(","), metavar="LIST",
                   help="onnxruntime execution providers in order, e.g. tensorrt,cuda,cpu (default: those "
                        "this onnxruntime has; CPU is always the fallback)")  # fmt: skip
    p.add_argument("--calib", default=None, help="calibration YAML (default: the kit's / the log's)")
    p.add_argument("--deadline-ms", type=float, default=200.0,
                   help="per-frame deadline from the last input's receive (default 200: longer than the "
                        "synchronizer's 100 ms wait for a late sensor)")  # fmt: skip
    p.add_argument("--queue", type=int, default=2, help="frames queued for inference (default 2)")
    p.add_argument("--score-threshold", type=float, default=0.1, help="detection score cut (default 0.1)")
    p.add_argument("--udp", default=None, metavar="HOST:PORT", help="send detections as JSON datagrams")
    p.add_argument("--console", action="store_true", help="print one line per frame")
    add_json(p)


def _log_options(p: argparse.ArgumentParser, log_inputs: bool) -> None:
    on = "on" if log_inputs else "off"
    p.add_argument("--log-inputs", action=argparse.BooleanOptionalAction, default=log_inputs,
                   help=f"also log the inputs (default {on}; detections are always logged; the log writes "
                        "on its own thread, and a full queue drops inputs, counted)")
    p.add_argument("--split-size", type=float, default=None, metavar="MB",
                   help="start a new log file at this size (LOG_000.mcap, LOG_001.mcap …; default: one file)")
    p.add_argument("--split-duration", type=float, default=None, metavar="S",
                   help="start a new log file after this many seconds of log time (default: one file)")
    p.add_argument("--min-free-mb", type=float, default=512.0, metavar="MB",
                   help="stop logging inputs below this much free disk; the log closes cleanly below 16 MB "
                        "(default 512)")  # fmt: skip


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
    p = sub.add_parser("replay", help="a log through the real-time pipeline: detections, latency report")
    p.add_argument("log", nargs="+",
                   help="an MCAP log (e.g. edgefuse sim record), or the files of a split log (run_000.mcap "
                        "run_001.mcap …) or their directory, replayed as one log")  # fmt: skip
    p.add_argument("--rate", default="1.0", help="replay rate × real time, or max (default 1.0)")
    p.add_argument("--deterministic", action="store_true", help="every frame in stamp order, one thread")
    p.add_argument("--kit", default=None, help="sensor-kit YAML (default: the simulator's)")
    p.add_argument("--out", default=None, metavar="DIR", help="outputs (default LOG.replay/)")
    _log_options(p, log_inputs=False)
    _pipeline_common(p)
    p.set_defaults(func=cmd_replay, human=_human_pipeline)

    p = sub.add_parser("run", help="the real-time pipeline on a live sensor kit (Ctrl-C stops)")
    p.add_argument("--kit", required=True, help="sensor-kit YAML, e.g. sensors/sim-default.yaml")
    p.add_argument("--out", default="run-output", metavar="DIR", help="log + report (default run-output/)")
    p.add_argument("--duration", type=float, default=None, metavar="SEC", help="stop after SEC seconds")
    _log_options(p, log_inputs=True)
    _pipeline_common(p)
    p.set_defaults(func=cmd_run, human=_human_pipeline)

    p = sub.add_parser("profile", help="per-stage latency of backends × precisions × threads, same frames; "
                                       "profile.json + profile.png")  # fmt: skip
    p.add_argument("--model", default=None,
                   help=".pt/.onnx/.engine model (default: the bundled model: edge.onnx, edge.int8.onnx for "
                        "int8, edge.pt for --backend torch)")  # fmt: skip
    p.add_argument("--backend", default=None,
                   help="comma-separated: torch,onnxruntime,tensorrt (default: the model file's; onnxruntime "
                        "for the bundled model)")  # fmt: skip
    p.add_argument("--precision", default="fp32",
                   help="comma-separated fp32,int8 (int8 quantizes an .onnx --model; the bundled one is "
                        "edge.int8.onnx)")  # fmt: skip
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: CPU cores − 1, at least 1)")
    p.add_argument("--frames", type=int, default=30, help="frames per combination (default 30)")
    p.add_argument("--log", default=None, help="MCAP log (default: a short simulator log recorded in --out)")
    p.add_argument("--out", default="profile-output", metavar="DIR", help="outputs (default profile-output/)")
    add_json(p)
    p.set_defaults(func=cmd_profile, human=_human_profile)
