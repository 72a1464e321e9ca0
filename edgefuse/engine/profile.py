"""``edgefuse profile``: the same frames through every backend × precision × threads combination
(:func:`~edgefuse.pipeline.deterministic.run_deterministic`, one frame at a time, so per-stage times
compare like for like); INT8 models are quantized on the fly from the log's first frames."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgefuse.errors import InputError
from edgefuse.frames import FrameCore, PipelineConfig
from edgefuse.models import backend_for, load_backend
from edgefuse.pipeline.deterministic import run_deterministic
from edgefuse.pipeline.replay import kit_for_log


@dataclass(frozen=True)
class ProfilePair:
    """One backend × precision of a profile, checked before anything is measured: ``backend`` runs
    ``model``; ``quantize``: ``model`` is the fp32 ``.onnx`` that :func:`int8_model` quantizes first."""

    backend: str
    precision: str
    model: Path
    quantize: bool = False


def plan_pairs(model: str | Path | None, backends: Iterable[str | None], precisions: Iterable[str]) -> list:
    """Every backend × precision pair of a profile, checked up front (:class:`InputError`, one line naming
    the pair, for one that cannot run: a ``.pt`` with onnxruntime, int8 on something not an ``.onnx``,
    a backend whose library is missing). ``model`` None: the bundled model — ``edge.onnx`` (fp32) and
    ``edge.int8.onnx`` (int8) for onnxruntime, the default backend; ``edge.pt`` for torch."""
    import importlib.util

    from edgefuse.runtime.bundled import bundled_model

    bundled = {("torch", "fp32"): "pt", ("onnxruntime", "fp32"): "onnx", ("onnxruntime", "int8"): "int8"}

    pairs = []
    for precision in precisions:
        if precision not in ("fp32", "int8"):
            raise InputError(f"profile --precision: expected fp32 or int8, got {precision!r}")
        for name in backends:
            what = f"profile --backend {name or '(from the model)'} --precision {precision}"
            if model is None:
                name = name or "onnxruntime"
                if (name, precision) not in bundled:
                    have = ", ".join(f"{b} {p}" for b, p in bundled)
                    raise InputError(f"{what}: no bundled model for {name} {precision} (bundled: {have}); "
                                     "pass --model")  # fmt: skip
                path, quantize = bundled_model(bundled[name, precision]), False
            else:
                path = Path(model)
                if not path.is_file():
                    raise InputError(f"profile --model {path}: no such model file")
                name = backend_for(path, name)
                quantize = precision == "int8"
                if quantize and name != "onnxruntime":
                    raise InputError(f"{what}: --model {path}: int8 here quantizes an .onnx model for "
                                     "onnxruntime; for TensorRT build an INT8 engine (edgefuse build-engine "
                                     "--precision int8) and profile it as fp32")  # fmt: skip
            lib = {"torch": "torch", "tensorrt": "tensorrt"}.get(name)
            if lib is not None and importlib.util.find_spec(lib) is None:
                raise InputError(f"{what}: {path} needs {lib}, which is not installed here")
            pairs.append(ProfilePair(name, precision, path, quantize))
    return pairs


def _measure(pair: ProfilePair, path: Path, threads: int, reader, kit, calib, frames: int) -> dict:
    backend = load_backend(path, pair.backend, threads=threads)
    try:
        report, _ = run_deterministic((m for _t, m in reader.messages()), kit, calib, backend,
                                      max_frames=frames)  # fmt: skip
    finally:
        backend.close()
    if report["frames_published"] == 0 and report["last_error"]:
        raise RuntimeError(f"every frame failed; the last: {report['last_error']}")
    st = report["stages"]
    return {
        "frames": report["frames_published"], "frames_failed": report["frames_dropped"].get("error", 0),
        "preprocess_ms": st["preprocess"]["p50"], "inference_ms": st["inference"]["p50"],
        "inference_p99_ms": st["inference"]["p99"], "decode_ms": st["decode"]["p50"],
        "e2e_p50_ms": report["e2e_p50_ms"], "e2e_p99_ms": report["e2e_p99_ms"],
        "fps": report["throughput_fps"],
    }  # fmt: skip


def profile_model(
    model: str | Path | None,
    out_dir: str | Path,
    *,
    backends: Iterable[str | None] = (None,),
    precisions: Iterable[str] = ("fp32",),
    threads: Iterable[int] | None = None,
    frames: int = 30,
    log_path: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """``edgefuse profile``: the same ``frames`` frames (of ``log_path``, or of a short simulator log
    recorded into ``out_dir``) through every backend × precision × threads combination, one thread per
    frame in stamp order (:func:`run_deterministic`), so the per-stage times compare like for like.

    ``model`` None: the bundled model (:func:`plan_pairs`); ``threads`` None: CPU cores − 1
    (:func:`~edgefuse.runtime.backends.inference_threads`). Every pair is checked before anything is
    measured (:func:`plan_pairs`). ``int8`` of a given ``.onnx``: quantized (static QDQ,
    :func:`edgefuse.engine.quantize.quantize_int8`) on the first 8 of those frames, written next to the
    outputs. A combination that fails while measuring becomes a row with its ``error`` (numbers None)
    and the others go on; Ctrl-C stops with the rows measured so far (``interrupted``). Writes
    ``profile.json`` (after every row) and ``profile.png``; returns ``{"rows": [...], ...}``."""
    from edgefuse.logs import LogReader
    from edgefuse.profiling import machine_info, write_report
    from edgefuse.runtime.backends import inference_threads

    out = Path(out_dir)
    if frames < 1:
        raise InputError(f"profile --frames: expected ≥ 1, got {frames}")
    counts = [int(n) for n in threads] if threads is not None else [inference_threads()]
    if not counts or min(counts) < 1:
        raise InputError(f"profile --threads: expected thread counts ≥ 1, got {counts}")
    pairs = plan_pairs(model, list(backends), list(precisions))
    out.mkdir(parents=True, exist_ok=True)
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
    rows: list[dict] = []
    result = {"log": str(log_path), "model": str(model) if model is not None else "bundled",
              "frames": frames, "rows": rows, "machine": machine_info(), "interrupted": False}  # fmt: skip
    numbers = ("frames", "frames_failed", "preprocess_ms", "inference_ms", "inference_p99_ms", "decode_ms",
               "e2e_p50_ms", "e2e_p99_ms", "fps")  # fmt: skip
    try:
        for pair in pairs:
            for n in counts:
                row = {"backend": pair.backend, "precision": pair.precision, "threads": n,
                       "model": str(pair.model), "error": None}  # fmt: skip
                try:
                    path = int8_model(pair.model, out, reader, kit, calib) if pair.quantize else pair.model
                    row["model"] = str(path)
                    row.update(_measure(pair, path, n, reader, kit, calib, frames))
                except Exception as e:  # noqa: BLE001 - keep the rows measured; this one carries its error
                    row.update({k: None for k in numbers}, error=f"{type(e).__name__}: {e}")
                rows.append(row)
                write_report(out / "profile.json", result)
                if progress:
                    print(format_row(row), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        result["interrupted"] = True
    png = write_profile_png(out / "profile.png", result)
    result["outputs"] = {"json": str(out / "profile.json"), "png": str(png)}
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


_HEAD = (f"{'backend':12s} {'prec':5s} {'thr':>3s} {'pre ms':>7s} {'infer ms':>8s} {'inf p99':>8s} "
         f"{'dec ms':>7s} {'e2e p99':>8s} {'fps':>6s}")  # fmt: skip


def format_row(w: dict) -> str:
    """One row of the profile table (a failed row: its error)."""
    head = f"{w['backend']:12s} {w['precision']:5s} {w['threads']:3d} "
    if w.get("error"):
        return head + f"failed: {w['error']}"

    def f(x, width, digits=1):
        return f"{'-':>{width}s}" if x is None else f"{x:{width}.{digits}f}"

    return head + (f"{f(w['preprocess_ms'], 7)} {f(w['inference_ms'], 8)} {f(w['inference_p99_ms'], 8)} "
                   f"{f(w['decode_ms'], 7)} {f(w['e2e_p99_ms'], 8)} {f(w['fps'], 6, 2)}")  # fmt: skip


def format_profile(r: dict) -> str:
    """The profile table (failed rows with their error), and where the outputs are."""
    lines = [f"{r['frames']} frames of {r['log']}", _HEAD, *(format_row(w) for w in r["rows"])]
    if r.get("interrupted"):
        lines.append("interrupted: the rows above were measured")
    if r.get("outputs"):
        lines.append(f"outputs: {', '.join(r['outputs'].values())}")
    return "\n".join(lines)


def write_profile_png(path: str | Path, r: dict) -> Path:
    """``profile.png``: one bar per backend × precision × threads — the per-frame p50 of preprocess,
    inference and decode stacked (ms; int8 hatched), e2e p99 as a diamond, the numbers beside; a failed
    row shows its error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = r["rows"]
    fig, ax = plt.subplots(figsize=(10, 1.9 + 0.5 * max(1, len(rows))))
    stages = {"preprocess_ms": ("preprocess p50", "#4C72B0"), "inference_ms": ("inference p50", "#DD8452"),
              "decode_ms": ("decode p50", "#55A868")}  # fmt: skip
    hi = max([w["e2e_p99_ms"] or 0 for w in rows] + [sum(w[k] or 0 for k in stages) for w in rows] + [1.0])
    for i, w in enumerate(rows):
        if w.get("error"):
            ax.text(0.01 * hi, i, f"failed: {w['error']}"[:100], va="center", color="#C44E52", fontsize=8)
            continue
        left = 0.0
        for key, (_label, color) in stages.items():
            v = w[key] or 0.0
            ax.barh(i, v, left=left, color=color, height=0.6, edgecolor="white",
                    hatch="//" if w["precision"] == "int8" else None)  # fmt: skip
            left += v
        end = left
        if w["e2e_p99_ms"] is not None:
            ax.plot([w["e2e_p99_ms"]], [i], "D", color="black", ms=5)
            end = max(end, w["e2e_p99_ms"])
        ax.text(end + 0.015 * hi, i,
                f"p50 {left:.1f} ms, e2e p99 {w['e2e_p99_ms'] or 0:.1f} ms, {w['fps'] or 0:.1f} fps",
                va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{w['backend']} {w['precision']}, {w['threads']} thr" for w in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    ax.set_xlim(0, hi * 1.6)
    ax.set_xlabel("ms per frame")
    handles = [Patch(color=c, label=lab) for lab, c in stages.values()]
    handles += [Patch(facecolor="white", edgecolor="grey", hatch="//", label="int8"),
                plt.Line2D([], [], marker="D", color="black", ls="none", ms=5, label="e2e p99")]  # fmt: skip
    fig.legend(handles=handles, fontsize=8, ncol=len(handles), loc="lower center", frameon=False)
    ax.set_title(f"edgefuse profile: {r['frames']} frames of {Path(r['log']).name} (one frame at a time)",
                 fontsize=10)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0.3 / fig.get_figheight(), 1, 1))  # room for the legend below
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
