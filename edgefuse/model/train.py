"""Training (torch): a deterministic, resumable loop over a sample set, with modality dropout.

A sample set is any object with ``__len__`` and ``get(i) -> (feed, target)``: ``feed`` the model inputs
of one frame (:data:`~edgefuse.model.network.INPUT_NAMES`, no batch axis, numpy), ``target`` the arrays
of :func:`~edgefuse.model.targets.build_targets`. :mod:`edgefuse.dataset` builds them from logs.

Determinism: the weights are initialised from ``seed``; epoch ``e`` shuffles and drops modalities with
``numpy.random.default_rng((seed, e))``, so a resumed run (from ``last.pt``, written after every epoch)
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgefuse.model.checkpoint import read_checkpoint, save_model
from edgefuse.model.losses import total_loss
from edgefuse.model.network import INPUT_NAMES, FusionNet
from edgefuse.model.targets import HeadGrid, build_targets
from edgefuse.runtime.feed import MODALITIES, apply_modalities, mask_radar_fields, stack
from edgefuse.runtime.manifest import Manifest
from edgefuse.tensors import TensorSpec


@dataclass(frozen=True)
class TrainConfig:
    """``modality_dropout``: per sample, each present modality is dropped with its probability (one rate
    for all, or a rate per modality name — absent names are never dropped; never all of them);
    ``radar_field_dropout``: per sample, each optional radar field (RCS, SNR: the tensor spec's
    ``radar_optional_features``) is masked with this probability, so the model works on radars that lack
    it; ``max_grad_norm``: gradient clipping."""

    epochs: int = 20
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    modality_dropout: float | dict[str, float] = 0.15
    radar_field_dropout: float = 0.0
    max_grad_norm: float = 10.0
    seed: int = 0
    threads: int = 2


def dropout_rates(p: float | dict[str, float] | str) -> dict[str, float]:
    """Per-modality drop probabilities from one rate for all (``0.15``), a mapping, or the CLI text
    ``"camera=0.15,lidar=0.4,radar=0.15"`` (names not given are never dropped). Names and the range
    [0, 1) are checked."""
    from edgefuse.errors import InputError

    if isinstance(p, str):
        if "=" not in p:
            try:
                p = float(p)
            except ValueError:
                raise InputError(f"--modality-dropout: expected P or NAME=P,…, got {p!r}") from None
        else:
            pairs = [kv.split("=", 1) for kv in p.split(",") if kv.strip()]
            try:
                p = {k.strip(): float(v) for k, v in pairs}
            except ValueError:
                raise InputError(f"--modality-dropout: expected NAME=P,… with numbers, got {p!r}") from None
    rates = {m: float(p) for m in MODALITIES} if isinstance(p, (int, float)) else dict(p)
    for m, r in rates.items():
        if m not in MODALITIES:
            raise InputError(f"modality_dropout: unknown modality {m!r}; expected some of {list(MODALITIES)}")
        if not 0.0 <= r < 1.0:
            raise InputError(f"modality_dropout[{m}]: expected a probability in [0, 1), got {r}")
    return rates


def drop_modalities(
    rng: np.random.Generator, p: float | dict[str, float], present: tuple[str, ...]
) -> tuple[str, ...]:
    """The modalities kept for one sample: each of ``present`` dropped with its probability (``p`` as
    :func:`dropout_rates` reads it; one draw per present modality, always); if that would drop all of
    them, one (uniformly chosen) is kept."""
    rates = dropout_rates(p)
    keep = tuple(m for m in present if rng.random() >= rates.get(m, 0.0))
    if not keep:
        keep = (present[int(rng.integers(len(present)))],)
    return keep


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class TrainingSamples:
    """Cached frames as a sample set for :func:`fit`: ``get(i) -> (feed, head targets)``, the targets drawn
    from the frame's ground truth on the head grid (:func:`~edgefuse.model.targets.build_targets`)."""

    def __init__(self, frames, grid, max_objects: int = 128):
        self.frames, self.grid, self.max_objects = frames, grid, max_objects

    def __len__(self) -> int:
        return len(self.frames)

    def get(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        feed, gt = self.frames.load(i)
        return feed, build_targets(gt.objects, self.frames.spec.classes, self.grid, self.max_objects)


def fit(
    net: FusionNet,
    samples,
    out_dir: str | Path,
    manifest: Manifest,
    cfg: TrainConfig = TrainConfig(),
    *,
    resume: bool = True,
    progress: bool = True,
    clock=time.monotonic,
) -> dict:
    """Train ``net`` on ``samples``; writes ``out_dir/last.pt`` after every epoch and
    ``out_dir/model.pt`` (weights + manifest) at the end. Returns {"losses": per-epoch mean loss,
    "epochs", "resumed_from", "wall_s", "model"}."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    n = len(samples)
    if n == 0:
        raise ValueError("fit: the sample set is empty")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.3
    )
    losses: list[float] = []
    start_epoch = 0
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = read_checkpoint(last)
        net.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch = int(ckpt["epoch"])
        losses = [float(x) for x in ckpt["losses"]]
    present = tuple(m for m in MODALITIES if m in net.config.modalities)
    rates = dropout_rates(cfg.modality_dropout)
    dropping = any(rates.get(m, 0.0) > 0 for m in present)
    p_field = cfg.radar_field_dropout
    if not 0.0 <= p_field < 1.0:
        raise ValueError(f"TrainConfig.radar_field_dropout: expected a probability in [0, 1), got {p_field}")
    spec = TensorSpec.from_dict(manifest.tensor_spec, "manifest tensor_spec") if p_field > 0 else None
    optional = spec.radar_optional_features if spec is not None else ()
    t0 = clock()
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        rng = np.random.default_rng((cfg.seed, epoch))
        order = rng.permutation(n)
        total, count = 0.0, 0
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False
        )
        for s in bar:
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            feeds, targets = [], []
            for i in idx:
                feed, target = samples.get(int(i))
                keep = drop_modalities(rng, rates, present) if dropping else present
                feed = apply_modalities(feed, keep)
                if optional:
                    feed = mask_radar_fields(
                        feed, spec, [f for f in optional if rng.random() < p_field]
                    )
                feeds.append(feed)
                targets.append(target)
            x = _to_torch(stack(feeds))
            y = _to_torch(stack(targets))
            heat, reg = net(*[x[k] for k in INPUT_NAMES])
            loss, parts = total_loss(heat, reg, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", hm=f"{parts['heatmap']:.3f}")
        bar.close()
        losses.append(total / count)
        manifest.training = {
            **manifest.training,
            "train_config": asdict(cfg),
            "epochs_done": epoch + 1,
            "losses": losses,
        }
        save_model(
            last,
            net,
            manifest,
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            epoch=epoch + 1,
            losses=losses,
        )
    net.eval()
    save_model(out / "model.pt", net, manifest)
    return {
        "losses": losses,
        "epochs": cfg.epochs,
        "resumed_from": start_epoch,
        "wall_s": round(clock() - t0, 3),
        "model": str(out / "model.pt"),
    }


def train_model(
    data: list[str | Path],
    out_dir: str | Path,
    *,
    epochs: int = 20,
    fusion: str = "gated",
    modalities: tuple[str, ...] = MODALITIES,
    config: str = "edge",
    seed: int = 0,
    batch_size: int = 4,
    lr: float = 2e-3,
    modality_dropout: float | dict[str, float] = 0.15,
    radar_field_dropout: float = 0.0,
    cache_root: str | Path | None = None,
    command: str = "",
    progress: bool = True,
    spec=None,
    frame_step: int = 1,
    threads: int = 2,
    init: str | Path | None = None,
) -> dict:
    """``edgefuse train``: cache the frames of the simulator logs ``data`` (ground-truth topic), build the
    ``config`` network with ``fusion`` and ``modalities``, and :func:`fit` it into ``out_dir`` (resumes
    from ``out_dir/last.pt``). ``spec``: the tensor spec (default
    :func:`~edgefuse.model.config.edge_spec`); ``frame_step``: train on every n-th cached frame
    (consecutive 10 Hz frames are nearly alike; 2 halves the epoch time); ``threads``: torch intra-op
    threads. ``init``: fine-tune — start from that model's weights (a ``.pt``, or ``"bundled"``); its
    network and tensor spec are kept, and a ``config``/``fusion``/``modalities``/``spec`` that asks for
    another network is refused. Returns the fit summary plus the dataset size."""
    from dataclasses import replace

    from edgefuse.dataset import CachedFrames, build_cache, is_dataset_uri
    from edgefuse.errors import InputError
    from edgefuse.model.checkpoint import new_model
    from edgefuse.model.config import CONFIGS, edge_spec
    from edgefuse.runtime.manifest import files_hash

    if not data:
        raise InputError("train --data: expected at least one simulator log")
    if config not in CONFIGS:
        raise InputError(f"train --config: expected one of {sorted(CONFIGS)}, got {config!r}")
    for p in data:
        if not is_dataset_uri(p) and not Path(p).is_file():
            raise FileNotFoundError(f"{p}: no such log")
    cfg = replace(CONFIGS[config], fusion=fusion, modalities=tuple(modalities))
    start = None
    if init is not None:
        start = _init_model(init, cfg, spec)
        spec = start[2]
    spec = edge_spec() if spec is None else spec
    out = Path(out_dir)
    cache_root = Path(cache_root) if cache_root else out / "cache"
    dirs = [build_cache(p, spec, cache_root, progress=progress).directory for p in data]
    net, manifest = new_model(spec, cfg, seed) if start is None else start[:2]
    grid = HeadGrid(net.geometry.origin_xy, net.head_cell_m, net.head_hw)
    samples = TrainingSamples(CachedFrames(dirs, spec), grid)
    if frame_step < 1:
        raise InputError(f"train frame_step: expected ≥ 1, got {frame_step}")
    samples.frames.files = samples.frames.files[::frame_step]
    if len(samples) == 0:
        raise InputError(f"train --data: no frames with ground truth in {[str(p) for p in data]}")
    manifest.training = {
        "data": [str(p) for p in data],
        "data_sha256": files_hash(data),
        "frames": len(samples),
        "frame_step": frame_step,
        "seed": seed,
        "command": command,
    }
    if start is not None:  # what it was fine-tuned from
        manifest.training["init"] = {"model": str(start[3]), "data_sha256": start[4]}
    tcfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, modality_dropout=modality_dropout,
        radar_field_dropout=radar_field_dropout, threads=threads,
    )  # fmt: skip
    r = fit(net, samples, out, manifest, tcfg, progress=progress)
    return {**r, "frames": len(samples), "fusion": fusion, "modalities": list(modalities), "config": config}


def _init_model(init: str | Path, cfg, spec):
    """(net, manifest, tensor spec, path, its training data hash) of the model fine-tuning starts from;
    refuses a requested network (``cfg``, ``spec``) other than the init's."""
    from edgefuse.errors import InputError
    from edgefuse.model.checkpoint import load_model
    from edgefuse.runtime.bundled import FILES
    from edgefuse.tensors import TensorSpec

    path = FILES["pt"] if str(init) == "bundled" else Path(init)
    if not path.is_file():
        raise InputError(f"train --init {init}: no such model file (a .pt, or 'bundled')")
    net, manifest = load_model(path)
    if manifest.model_config != cfg.to_dict():
        diff = {k: v for k, v in manifest.model_config.items() if cfg.to_dict().get(k) != v}
        raise InputError(
            f"train --init {path}: its network is {diff}, the options ask for "
            f"{ {k: cfg.to_dict().get(k) for k in diff} }: fine-tuning keeps the init's network "
            "(pass its --config/--fusion/--modalities, or train from scratch without --init)"
        )
    init_spec = TensorSpec.from_dict(manifest.tensor_spec, f"{path}: manifest tensor_spec")
    if spec is not None and spec.to_dict() != init_spec.to_dict():
        raise InputError(f"train --init {path}: its tensor spec differs from the one asked for")
    init_data = (manifest.training or {}).get("data_sha256")
    manifest.training, manifest.metrics = {}, {}  # the fine-tuned model's own are recorded after
    return net.train(), manifest, init_spec, path, init_data
