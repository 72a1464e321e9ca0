"""``edgefuse train``, ``eval``, ``eval-kitti``, ``export``, ``quantize``, ``build-engine``,
``build-kernels``, ``compare``: the model and its deployment.

Torch, ONNX and TensorRT are imported inside the handlers, so building the parser stays light.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgefuse.cli.common import add_json


def cmd_train(args) -> dict:
    from edgefuse.model.train import dropout_rates, train_model
    from edgefuse.runtime.feed import parse_modalities

    return train_model(
        args.data, args.out, epochs=args.epochs, fusion=args.fusion,
        modalities=parse_modalities(args.modalities), config=args.config, seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, cache_root=args.cache,
        modality_dropout=dropout_rates(args.modality_dropout), radar_field_dropout=args.radar_field_dropout,
        command=(f"edgefuse train --data {' '.join(args.data)} --out {args.out} --epochs {args.epochs} "
                 f"--fusion {args.fusion} --modalities {args.modalities} --config {args.config} "
                 f"--seed {args.seed} --batch-size {args.batch_size} --lr {args.lr} "
                 f"--modality-dropout {args.modality_dropout} "
                 f"--radar-field-dropout {args.radar_field_dropout}"
                 + (f" --init {args.init}" if args.init else "")),
        progress=not getattr(args, "json", False), init=args.init,
    )  # fmt: skip


def cmd_eval(args) -> dict:
    from edgefuse.eval.evaluate import compare_models, evaluate, predict
    from edgefuse.runtime.bundled import default_for_backend
    from edgefuse.runtime.feed import parse_modalities

    model = args.model or default_for_backend(args.backend)
    run = dict(
        backend=args.backend, cache_root=args.cache, max_frames=args.max_frames,
        progress=not getattr(args, "json", False),
        without_radar_fields=tuple(f.strip() for f in args.without_radar_fields.split(",") if f.strip()),
        scene_s=args.scene_seconds,
    )  # fmt: skip
    mods = parse_modalities(args.modalities)
    mine = predict(model, args.logs, modalities=mods, **run)
    result = evaluate(
        model, args.logs, modalities=mods, out_dir=args.out, n_boot=args.bootstrap, predictions=mine, **run
    )
    if args.against or args.against_modalities:
        other_model = args.against or model
        other_mods = parse_modalities(args.against_modalities or args.modalities)
        other = predict(other_model, args.logs, modalities=other_mods, **run)
        result["against"] = {
            "model": str(other_model),
            "modalities": list(other_mods),
            "difference": compare_models(mine, other, n_boot=max(args.bootstrap, 1)),
        }
    return result


def _human_eval(r: dict) -> None:
    from edgefuse.eval.evaluate import format_comparison, format_eval

    print(format_eval(r))
    if "against" in r:
        print(format_comparison(r["against"]))


def cmd_eval_kitti(args) -> dict:
    from edgefuse.eval.kitti import evaluate_kitti_dirs

    return evaluate_kitti_dirs(args.labels, args.results)


def _human_eval_kitti(r: dict) -> None:
    from edgefuse.eval.kitti import format_kitti

    print(format_kitti(r))


def cmd_export(args) -> dict:
    from edgefuse.engine.export import export_onnx
    from edgefuse.runtime.bundled import bundled_model

    out = export_onnx(args.model or bundled_model("pt"), args.out, plugins=args.plugins)
    return {"out": str(out), "plugins": args.plugins, "bytes": out.stat().st_size}


def cmd_quantize(args) -> dict:
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


def cmd_build_kernels(args) -> dict:
    from edgefuse.runtime import kernels as K

    build = Path(args.build_dir) if args.build_dir else K.default_build_dir()
    lib = K.build_library(build, args.arch, jobs=args.jobs, tensorrt_root=args.tensorrt_root)
    trt = build / K.TRT_PLUGINS_NAME
    return {
        "sources": str(K.PLUGINS_DIR), "build_dir": str(build), "architectures": args.arch,
        "kernels": str(lib), "trt_plugins": str(trt) if trt.is_file() else None,
        "env": {K.ENV_LIBRARY: str(lib), **({K.ENV_TRT_PLUGINS: str(trt)} if trt.is_file() else {})},
    }  # fmt: skip


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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the top-level subparsers ``sub``."""
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
    p.add_argument(
        "--radar-field-dropout", type=float, default=0.0, metavar="P",
        help="per-sample rate at which each optional radar field (RCS, SNR) is masked (default 0)",
    )  # fmt: skip
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default DIR/cache)")
    p.add_argument(
        "--init", default=None, metavar="MODEL",
        help="fine-tune: start from this model's weights (.pt, or 'bundled'); its network is kept",
    )  # fmt: skip
    add_json(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval", help="nuScenes mAP, NDS, mATE … mAAE (and per class) and latency of a model on simulator logs"
    )
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
    p.add_argument(
        "--without-radar-fields", default="", metavar="F,…",
        help="optional radar fields masked as on a radar without them (e.g. rcs: a TI radar)",
    )  # fmt: skip
    p.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N",
        help="95%% intervals from N draws of the scenes with replacement (default 1000; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--scene-seconds", type=float, default=20.0, metavar="S",
        help="a scene, the unit the intervals resample: S seconds of one log (default 20, as nuScenes)",
    )  # fmt: skip
    p.add_argument(
        "--against", default=None, metavar="MODEL",
        help="a second model scored on the same frames: b − a per score with its paired 95%% interval",
    )  # fmt: skip
    p.add_argument(
        "--against-modalities", default=None, metavar="M",
        help="the second run's sensors (default --modalities; alone: this model with other sensors on)",
    )  # fmt: skip
    add_json(p)
    p.set_defaults(func=cmd_eval, human=_human_eval)

    p = sub.add_parser(
        "eval-kitti", help="KITTI 3D AP|R40 (easy/moderate/hard) of result files against labels"
    )
    p.add_argument("labels", metavar="LABEL_DIR", help="KITTI label_2 folder (NNNNNN.txt)")
    p.add_argument("results", metavar="RESULT_DIR", help="result files of the same names (16 fields a line)")
    add_json(p)
    p.set_defaults(func=cmd_eval_kitti, human=_human_eval_kitti)

    p = sub.add_parser("export", help="a .pt model → ONNX (decode included, fixed shapes, manifest embedded)")
    p.add_argument("--model", default=None, help=".pt model (default: the bundled model)")
    p.add_argument("--out", required=True, metavar="MODEL.onnx")
    p.add_argument("--plugins", action="store_true", help="emit the TensorRT plugin nodes (TensorRT only)")
    add_json(p)
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
    add_json(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("build-engine", help="TensorRT engine from ONNX for a deployment profile")
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), default=None, help="default: the profile's"
    )
    p.add_argument("--profile", default="x86-gpu",
                   help="a profile shipped with edgefuse (orin-nano, orin-nx, orin-agx, x86-gpu: "
                        "edgefuse/deploy/profiles/NAME.yaml) or a YAML path")  # fmt: skip
    p.add_argument("--out", required=True, metavar="X.engine")
    p.add_argument("--plugins", default=None, metavar="LIB", help="TensorRT plugin library")
    add_json(p)
    p.set_defaults(func=cmd_build_engine)

    p = sub.add_parser("build-kernels",
                       help="build the CUDA kernels and TensorRT plugins shipped with edgefuse "
                            "(CMake >= 3.22 + nvcc)")  # fmt: skip
    p.add_argument("--arch", default="native", metavar="ARCHS",
                   help="CUDA architectures: native (the local GPU; the default), 87 (Jetson Orin), '87;90', "
                        "all-major (CMake >= 3.23)")  # fmt: skip
    p.add_argument("--build-dir", default=None, metavar="DIR",
                   help="build here (default: a per-install user cache dir, ~/.cache/edgefuse/kernels-…, "
                        "where the libraries are also looked for when no environment variable names "
                        "them)")  # fmt: skip
    p.add_argument("--tensorrt-root", default=None, metavar="DIR",
                   help="TensorRT prefix (include/, lib/) for the plugin library (JetPack: found in /usr)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs")
    add_json(p)
    p.set_defaults(func=cmd_build_kernels)

    p = sub.add_parser("compare", help="per-frame detection agreement and mAP of several models on a log")
    p.add_argument("log", metavar="LOG")
    p.add_argument("--models", required=True, metavar="A,B,…", help="model files; the first is the reference")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--match-m", type=float, default=0.5, help="match distance between models (m)")
    p.add_argument("--cache", default=None, metavar="DIR", help="frame cache (default next to the log)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N")
    add_json(p)
    p.set_defaults(func=cmd_compare, human=_human_compare)
