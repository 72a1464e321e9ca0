"""``edgefuse profile``: the same frames through every backend × precision × threads combination
(:func:`~edgefuse.pipeline.deterministic.run_deterministic`, one frame at a time, so per-stage times
compare like for like); INT8 models are quantized on the fly from the log's first frames."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgefuse.errors import InputError
from edgefuse.frames import FrameCore, PipelineConfig
from edgefuse.models import load_backend
from edgefuse.pipeline.deterministic import run_deterministic
from edgefuse.pipeline.replay import kit_for_log


def profile_model(
    model: str | Path,
    out_dir: str | Path,
    *,
    backends: Iterable[str | None] = (None,),
    precisions: Iterable[str] = ("fp32",),
    threads: Iterable[int] = (2,),
    frames: int = 30,
    log_path: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """``edgefuse profile``: the same ``frames`` frames (of ``log_path``, or of a short simulator log
    recorded into ``out_dir``) through every backend × precision × threads combination, one thread per
    frame in stamp order (:func:`run_deterministic`), so the per-stage times compare like for like.
    ``int8``: the ``.onnx`` model quantized (static QDQ, :func:`edgefuse.engine.quantize.quantize_int8`)
    on the first 8 of those frames, written next to the outputs. Returns ``{"rows": [...], ...}``."""
    from edgefuse.logs import LogReader

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if frames < 1:
        raise InputError(f"profile --frames: expected ≥ 1, got {frames}")
    if log_path is None:
        from edgefuse.sim.run import record

        log_path = out / "profile_sim.mcap"
        if not log_path.is_file():
            record(log_path, "default", 0, frames / 10 + 1.0, progress=progress)
    reader = LogReader(log_path)
    kit = kit_for_log(reader, None)
    calib = reader.calibration()
    if calib is None:
        raise InputError(f"{log_path}: no calibration attachment; expected an edgefuse log")
    model = Path(model)
    rows = []
    for precision in precisions:
        if precision not in ("fp32", "int8"):
            raise InputError(f"profile --precision: expected fp32 or int8, got {precision!r}")
        path = model
        if precision == "int8":
            path = int8_model(model, out, reader, kit, calib)
        for name in backends:
            for n in threads:
                backend = load_backend(path, name, threads=int(n))
                try:
                    report, _ = run_deterministic((m for _t, m in reader.messages()), kit, calib, backend,
                                                  max_frames=frames)  # fmt: skip
                finally:
                    backend.close()
                st = report["stages"]
                rows.append({
                    "backend": backend.name, "precision": precision, "threads": int(n), "model": str(path),
                    "frames": report["frames_published"],
                    "preprocess_ms": st["preprocess"]["p50"], "inference_ms": st["inference"]["p50"],
                    "inference_p99_ms": st["inference"]["p99"], "decode_ms": st["decode"]["p50"],
                    "e2e_p50_ms": report["e2e_p50_ms"], "e2e_p99_ms": report["e2e_p99_ms"],
                    "fps": report["throughput_fps"],
                })  # fmt: skip
    from edgefuse.profiling import machine_info, write_report

    result = {"log": str(log_path), "frames": frames, "rows": rows, "machine": machine_info()}
    write_report(out / "profile.json", result)
    return result


def int8_model(model: Path, out: Path, reader, kit, calib) -> Path:
    """``model`` (.onnx) quantized to INT8 on the log's first 8 frames, cached as ``out/STEM.int8.onnx``."""
    from edgefuse.engine.quantize import quantize_int8
    from edgefuse.runtime.feed import feed_from_inputs
    from edgefuse.runtime.manifest import read_onnx_manifest
    from edgefuse.tensors import TensorBuilder, TensorSpec

    if model.suffix != ".onnx":
        raise InputError(f"profile --precision int8: --model {model}: expected an .onnx model to quantize")
    q = out / f"{model.stem}.int8.onnx"
    if q.is_file() and q.stat().st_mtime_ns >= model.stat().st_mtime_ns:
        return q
    manifest = read_onnx_manifest(model)
    builder = TensorBuilder(TensorSpec.from_dict(manifest.tensor_spec), calib)
    core = FrameCore(kit, calib, PipelineConfig())
    feeds = []
    for _t, m in reader.messages():
        for f in core.update(m.recv_ns, [(m, 0)]):
            feeds.append({k: v[None] for k, v in feed_from_inputs(builder.build(f.frameset, f.ego)).items()})
        if len(feeds) >= 8:
            break
    quantize_int8(model, q, feeds)
    return q


def format_profile(r: dict) -> str:
    """The profile table."""
    head = f"{'backend':12s} {'prec':5s} {'thr':>3s} {'pre ms':>7s} {'infer ms':>8s} {'inf p99':>8s} "
    head += f"{'dec ms':>7s} {'e2e p99':>8s} {'fps':>6s}"
    lines = [f"{r['frames']} frames of {r['log']}", head]
    for w in r["rows"]:
        lines.append(
            f"{w['backend']:12s} {w['precision']:5s} {w['threads']:3d} {w['preprocess_ms']:7.1f} "
            f"{w['inference_ms']:8.1f} {w['inference_p99_ms']:8.1f} {w['decode_ms']:7.1f} "
            f"{w['e2e_p99_ms']:8.1f} {w['fps']:6.2f}"
        )
    return "\n".join(lines)
