"""Training/evaluation frames from simulator logs (or the in-memory simulator) and datasets (KITTI object:
``kitti-object://DIR``, :mod:`edgefuse.datasets.kitti`; nuScenes: ``nuscenes://DIR?version=v1.0-NAME``,
:mod:`edgefuse.datasets.nuscenes`), cached on disk.

Core: :func:`frames` turns a message stream (host-receive order, as a log or the simulator gives it)
into ``(FrameSet, EgoTrajectory | None, ground truth Detections | None)`` with the frame assembler
:class:`~edgefuse.frames.FrameCore` (stamps mapped onto the rig clock, the reference synchronizer with
LiDAR reference, the ego trajectory from the kit's odometry received so far — for LiDAR de-skew and
radar doppler compensation), plus the ground truth of the frame: the nearest ``ground_truth`` message
within 50 ms of the reference stamp.

:func:`build_cache` runs a log (or a simulator run) through :class:`~edgefuse.tensors.TensorBuilder` once
and stores each frame compactly (real pillar points only, the image as the uint8 it came from, the ground
truth as rows); :class:`CachedFrames` reads them back as fixed-shape inputs + training targets. A cache
is keyed by the log's path, size and mtime and the tensor spec, and completed caches are reused.

Torch-free and outside :mod:`edgefuse.model`: evaluation, the demo, INT8 calibration and training all read
frames through here; the training targets are made in :mod:`edgefuse.model.train`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefuse.errors import InputError
from edgefuse.runtime.feed import INPUT_NAMES
from edgefuse.types import Box3D, Detection, Detections, FrameSet, Message

GROUND_TRUTH_ID = "ground_truth"
GT_TOLERANCE_NS = 50_000_000
#: Bumped whenever cached frames would come out differently (part of every cache key). 2: frames from
#: FrameCore — version 1 let the simulator's ``ego_truth`` odometry (world frame) into the ego
#: trajectory beside the dead-reckoned ``odom``, which scrambled LiDAR de-skew.
CACHE_VERSION = 3  # 3: ground-truth rows carry the LiDAR/radar point counts and camera visibility


class DatasetError(InputError):
    """A log that cannot make training/evaluation frames (names the log and what is missing)."""


def frames(
    messages: Iterable[Message], calibration, kit
) -> Iterator[tuple[FrameSet, object, Detections | None]]:
    """(frame, ego trajectory or None, ground truth or None) for every frame of the stream (module doc).

    The frames are the real-time pipeline's own (:class:`edgefuse.frames.FrameCore`: stamp mapping,
    synchronization, the ego trajectory from the kit's odometry), so training sees exactly what the
    runtime feeds the model; messages of sensors outside the kit (ground truth, the simulator's
    ``ego_truth`` odometry) never reach it."""
    from edgefuse.frames import FrameCore, PipelineConfig

    core = FrameCore(kit, calibration, PipelineConfig())
    truth: dict[int, Detections] = {}
    now = None

    def emit(made):
        for f in made:
            fs, gt = f.frameset, None
            if truth:
                t = min(truth, key=lambda s: abs(s - fs.stamp_ns))
                if abs(t - fs.stamp_ns) <= GT_TOLERANCE_NS:
                    gt = truth[t]
            for old in [s for s in truth if s < fs.stamp_ns - 10 * GT_TOLERANCE_NS]:
                del truth[old]
            yield fs, f.ego, gt

    for msg in messages:
        now = msg.recv_ns
        if msg.sensor_id == GROUND_TRUTH_ID and isinstance(msg.payload, Detections):
            truth[msg.stamp_ns] = msg.payload
            continue
        yield from emit(core.update(now, [(msg, now)]))
    if now is not None:
        yield from emit(core.flush(now))


# ================================================================ compact frames


_GT_COLUMNS = 13


def _gt_rows(dets: Detections | None, classes: tuple[str, ...]) -> np.ndarray:
    """(n, 13) float32: class index, x y z, l w h, yaw, vx vy, LiDAR points, radar points, visibility
    (the last three −1 = not counted / unknown)."""
    rows = []
    for o in dets.objects if dets is not None else ():
        if o.label in classes:
            seen = [-1 if v is None else v for v in (o.lidar_points, o.radar_points, o.visibility)]
            rows.append([classes.index(o.label), *o.box.center, *o.box.size, o.box.yaw, *o.velocity, *seen])
    return np.array(rows, np.float32).reshape(-1, _GT_COLUMNS)


def gt_from_rows(rows: np.ndarray, stamp_ns: int, classes: tuple[str, ...]) -> Detections:
    """The :class:`Detections` of :func:`_gt_rows`' rows (score 1)."""
    objs = tuple(
        Detection(
            classes[int(r[0])],
            1.0,
            Box3D(r[1:4], r[4:7], float(r[7])),
            r[8:10].astype(np.float64),
            lidar_points=int(r[10]) if r[10] >= 0 else None,
            radar_points=int(r[11]) if r[11] >= 0 else None,
            visibility=min(float(r[12]), 1.0) if r[12] >= 0 else None,
        )
        for r in rows
    )
    return Detections(int(stamp_ns), objs)


def compact(inputs, gt: Detections | None, spec) -> dict[str, np.ndarray]:
    """One frame's FusionInputs + ground truth → the arrays the cache stores."""
    out: dict[str, np.ndarray] = {}
    mean = np.asarray(spec.image_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.image_std, np.float32).reshape(1, 3, 1, 1)
    out["images_u8"] = np.clip(np.rint((inputs.images * std + mean) * 255.0), 0, 255).astype(np.uint8)
    for k in ("projection", "camera_valid", "lidar_valid", "radar_valid", "stamp_ns"):
        out[k] = getattr(inputs, k)
    for kind in ("lidar", "radar"):
        n = int(getattr(inputs, f"{kind}_num_pillars")[0])
        counts = getattr(inputs, f"{kind}_counts")[:n]
        pts = getattr(inputs, f"{kind}_pillars")[:n]
        keep = np.arange(pts.shape[1])[None, :] < counts[:, None]
        out[f"{kind}_points"] = pts[keep]  # (sum counts, F)
        out[f"{kind}_coords"] = getattr(inputs, f"{kind}_coords")[:n]
        out[f"{kind}_counts"] = counts
    out["gt"] = _gt_rows(gt, spec.classes)
    return out


def expand(c: dict[str, np.ndarray], spec) -> dict[str, np.ndarray]:
    """Cached arrays → the network's fixed-shape inputs of one frame (no batch axis)."""
    from edgefuse.tensors import input_shapes

    shapes = input_shapes(spec)
    mean = np.asarray(spec.image_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.image_std, np.float32).reshape(1, 3, 1, 1)
    feed = {
        "images": ((c["images_u8"].astype(np.float32) / 255.0 - mean) / std).astype(np.float32),
        "projection": c["projection"],
        "camera_valid": c["camera_valid"],
        "lidar_valid": c["lidar_valid"],
        "radar_valid": c["radar_valid"],
    }
    for kind in ("lidar", "radar"):
        (P, N, F), _ = shapes[f"{kind}_pillars"]
        counts = c[f"{kind}_counts"]
        n = counts.shape[0]
        pts = np.zeros((P, N, F), np.float32)
        keep = np.arange(N)[None, :] < counts[:, None]
        pts[:n][keep] = c[f"{kind}_points"]
        coords = np.zeros((P, 2), np.int32)
        coords[:n] = c[f"{kind}_coords"]
        cnt = np.zeros(P, np.int32)
        cnt[:n] = counts
        feed[f"{kind}_pillars"], feed[f"{kind}_coords"], feed[f"{kind}_counts"] = pts, coords, cnt
    return {k: feed[k] for k in INPUT_NAMES}


# ================================================================ cache


def _key(source: str, spec) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}".encode())
    h.update(source.encode())
    h.update(spec.to_json().encode())
    return h.hexdigest()[:16]


def log_source_id(path: str | Path) -> str:
    p = Path(path).resolve()
    st = p.stat()
    return f"log:{p}:{st.st_size}:{st.st_mtime_ns}"


def _log_messages(path: str | Path):
    """(messages, calibration, kit) of a simulator log; refuses logs without ground truth."""
    from edgefuse.logs import LogReader
    from edgefuse.sim.rig import sim_kit

    reader = LogReader(path)
    calib = reader.calibration()
    if calib is None:
        raise DatasetError(f"{path}: no calibration attachment; expected a log recorded by edgefuse")
    if not any(t.sensor_id == GROUND_TRUTH_ID for t in reader.topics().values()):
        raise DatasetError(f"{path}: no /{GROUND_TRUTH_ID}/detections topic; expected a simulator log")
    return (m for _t, m in reader.messages()), calib, sim_kit()


@dataclass(frozen=True)
class CacheInfo:
    directory: Path
    frames: int
    frames_with_truth: int


def _dataset_frames(uri: str, spec):
    """(source id, label, frames, kit, problems) of a dataset URI (``kitti-object://DIR``,
    ``nuscenes://DIR?version=…``): each sample is one frame already (the dataset pairs its sensors; no
    odometry, so no ego and no de-skew), with its own calibration — ``frames`` yields (FrameSet, None, truth,
    calibration). ``problems``: the dataset's one-line reports of skipped samples, filled while iterating."""
    if uri.startswith("nuscenes://"):
        return _nuscenes_frames(uri, spec)
    from edgefuse.datasets.kitti import KittiObjectDataset, parse_kitti_object_uri

    root, camera, lidar = parse_kitti_object_uri(uri)
    ds = KittiObjectDataset(root, camera, lidar)
    for s in spec.cameras + spec.lidars:
        if s not in (camera, lidar):
            raise DatasetError(
                f"{uri}: the model's sensor {s!r} is not in the dataset (it has camera {camera!r}, LiDAR "
                f"{lidar!r}); expected kitti-object://DIR?camera=ID&lidar=ID naming the model's sensors"
            )

    def gen():
        for sample in ds.samples():
            msgs = {m.sensor_id: m for m in ds.sample_messages(sample) if m.sensor_id != GROUND_TRUTH_ID}
            fs = FrameSet(sample.stamp_ns, msgs, dict.fromkeys(msgs, 0))
            yield fs, None, sample.truth, sample.calibration

    return ds.source_id(), f"kitti-object {root.name}", gen(), ds.kit(), ds.problems


def _nuscenes_frames(uri: str, spec):
    """:func:`_dataset_frames` of ``nuscenes://``: the frame's stamp is the sample's (its LiDAR keyframe's),
    each sensor's residual its own sample_data time minus it; the spec's radars the set lacks are fed
    empty."""
    from edgefuse.datasets.nuscenes import NuScenesDataset, parse_nuscenes_uri

    root, version = parse_nuscenes_uri(uri)
    ds = NuScenesDataset(root, version)
    kit = ds.kit()
    have = [s.id for s in kit.sensors]
    for s in spec.cameras + spec.lidars:
        if s not in have:
            raise DatasetError(
                f"{uri}: the model's sensor {s!r} is not in the dataset (it has {', '.join(have)}); expected "
                "a model whose cameras and LiDARs are nuScenes channels in lower case (cam_front, lidar_top)"
            )
    wanted = set(spec.cameras + spec.lidars + spec.radars)

    def gen():
        for sample in ds.samples():
            msgs = {m.sensor_id: m for m in ds.sample_messages(sample) if m.sensor_id in wanted}
            fs = FrameSet(sample.stamp_ns, msgs, {k: m.stamp_ns - sample.stamp_ns for k, m in msgs.items()})
            yield fs, None, sample.truth, sample.calibration

    return ds.source_id(), f"nuscenes {root.name}/{version}", gen(), kit, ds.problems


def _log_frames(source):
    """(source id, label, frames, kit, problems) of a simulator run ``(sim, duration_ns)`` or a log path:
    frames (FrameSet, ego, truth, calibration) from the frame assembler (:func:`frames`)."""
    if isinstance(source, tuple):
        sim, duration_ns = source
        sid = f"sim:{sim.scenario}:{sim.seed}:{sorted(sim.world.params.items())}:{int(duration_ns)}"
        messages, calib, kit = sim.messages(int(duration_ns)), sim.calibration, _sim_kit()
        label = f"sim {sim.scenario}/{sim.seed}"
    else:
        sid = log_source_id(source)
        messages, calib, kit = _log_messages(source)
        label = Path(source).name
    return sid, label, ((fs, ego, gt, calib) for fs, ego, gt in frames(messages, calib, kit)), kit, []


def is_dataset_uri(source) -> bool:
    """True for the dataset URIs :func:`build_cache` reads (``kitti-object://``, ``nuscenes://``)."""
    return isinstance(source, str) and source.startswith(("kitti-object://", "nuscenes://"))


def default_cache_root(source) -> Path:
    """Where a source's frame cache goes unless told: ``.edgefuse-cache`` beside a log, inside a dataset."""
    if is_dataset_uri(source):
        return Path(source.partition("://")[2].partition("?")[0]) / ".edgefuse-cache"
    return Path(source).parent / ".edgefuse-cache"


def build_cache(source, spec, cache_root: str | Path, progress: bool = False) -> CacheInfo:
    """Cache the frames of ``source`` (a log path, a dataset URI ``kitti-object://DIR`` or
    ``nuscenes://DIR?version=…``, or a
    :class:`~edgefuse.sim.run.Simulator` and duration as ``(sim, duration_ns)``) for ``spec`` under
    ``cache_root``; reuse a completed cache. Frames without ground truth are left out (counted in the
    returned info); frames whose inputs cannot be built (an :class:`~edgefuse.errors.InputError`) and a
    dataset's bad samples are skipped and counted by reason in ``done.json``. A dataset without radar feeds
    the spec's radars empty."""
    from tqdm import tqdm

    from edgefuse.tensors import TensorBuilder

    if is_dataset_uri(source):
        sid, label, made, kit, problems = _dataset_frames(source, spec)
    else:
        sid, label, made, kit, problems = _log_frames(source)
    d = Path(cache_root) / _key(sid, spec)
    done = d / "done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        return CacheInfo(d, info["frames"], info["frames_with_truth"])
    d.mkdir(parents=True, exist_ok=True)
    absent = tuple(r for r in spec.radars if not any(s.id == r for s in kit.sensors))
    builders: dict[int, TensorBuilder] = {}  # by calibration object (a dataset's samples may differ)
    n = n_gt = 0
    skipped: dict[str, int] = {}
    for fs, ego, gt, calib in tqdm(
        made, desc=f"cache {label}", unit="frame", disable=not progress, leave=False
    ):
        n += 1
        if gt is None:
            continue
        try:
            if id(calib) not in builders:
                builders[id(calib)] = TensorBuilder(spec, calib, absent)
            c = compact(builders[id(calib)].build(fs, ego), gt, spec)
        except InputError as e:  # a bad frame (undecodable image, wrong fields) is skipped and counted
            skipped[str(e)[:200]] = skipped.get(str(e)[:200], 0) + 1
            continue
        tmp = d / f"{n_gt:06d}.tmp.npz"
        np.savez(tmp, **c)
        os.replace(tmp, d / f"{n_gt:06d}.npz")
        n_gt += 1
    for line in problems:
        skipped[line[:200]] = skipped.get(line[:200], 0) + 1
    record = {
        "source": sid,
        "frames": n,
        "frames_with_truth": n_gt,
        "skipped": skipped,
        "spec": spec.to_dict(),
    }
    done.write_text(json.dumps(record))
    return CacheInfo(d, n, n_gt)


def _sim_kit():
    from edgefuse.sim.rig import sim_kit

    return sim_kit()


class CachedFrames:
    """The cached frames of several sources: ``load(i) -> (feed, ground truth Detections)`` for evaluation,
    INT8 calibration and (through :class:`edgefuse.model.train.TrainingSamples`, which adds the head
    targets) training."""

    def __init__(self, dirs: Iterable[Path], spec):
        self.spec = spec
        self.files = [f for d in dirs for f in sorted(Path(d).glob("[0-9]*.npz")) if ".tmp" not in f.name]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> tuple[dict[str, np.ndarray], Detections]:
        with np.load(self.files[i]) as z:
            c = {k: z[k] for k in z.files}
        return expand(c, self.spec), gt_from_rows(c["gt"], int(c["stamp_ns"][0]), self.spec.classes)
