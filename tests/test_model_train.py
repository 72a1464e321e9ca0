"""A tiny training run lowers the loss; resuming from last.pt continues exactly; modality handling."""

import numpy as np
import pytest
import torch

from edgefuse.model.checkpoint import load_model
from edgefuse.model.config import ModelConfig
from edgefuse.model.network import OUTPUT_NAMES, FusionNet, NetGeometry
from edgefuse.model.targets import HeadGrid, build_targets
from edgefuse.model.train import TrainConfig, drop_modalities, fit
from edgefuse.runtime.feed import INPUT_NAMES, apply_modalities, parse_modalities
from edgefuse.runtime.manifest import Manifest
from edgefuse.types import CLASSES, Box3D, Detection

GEOM = NetGeometry((0.0, -8.0), 0.5, (32, 32), 4, 3, (32, 48), 1, 3)


class TinySet:
    """Frames with 1-3 objects; LiDAR pillars on each object's footprint carry its height as a feature."""

    def __init__(self, n=6, seed=0):
        rng = np.random.default_rng(seed)
        self.items = []
        P, N = 64, 4
        grid = HeadGrid(GEOM.origin_xy, GEOM.cell_m * 2, (16, 16))
        for _ in range(n):
            objs, cells = [], []
            for _ in range(rng.integers(1, 4)):
                x, y = rng.uniform(2, 14), rng.uniform(-6, 6)
                label = CLASSES[int(rng.integers(3))]
                objs.append(Detection(label, 1.0, Box3D([x, y, 0.8], [2.0, 1.0, 1.6], 0.0)))
                ix, iy = int(x / 0.5), int((y + 8) / 0.5)
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        cells.append((iy + dy, ix + dx, 1.0 + CLASSES.index(label)))
            pts = np.zeros((P, N, 4), np.float32)
            coords = np.zeros((P, 2), np.int32)
            counts = np.zeros(P, np.int32)
            for p, (iy, ix, f) in enumerate(cells[:P]):
                pts[p, :2] = [f, 1.0, 0.5, 0.2]
                coords[p] = (iy, ix)
                counts[p] = 2
            feed = {
                "images": rng.normal(size=(1, 3, 32, 48)).astype(np.float32),
                "projection": np.zeros((1, 3, 4), np.float32),
                "camera_valid": np.ones(1, np.uint8),
                "lidar_pillars": pts,
                "lidar_coords": coords,
                "lidar_counts": counts,
                "lidar_valid": np.ones(1, np.uint8),
                "radar_pillars": np.zeros((8, 2, 3), np.float32),
                "radar_coords": np.zeros((8, 2), np.int32),
                "radar_counts": np.zeros(8, np.int32),
                "radar_valid": np.ones(1, np.uint8),
            }
            self.items.append((feed, build_targets(objs, CLASSES, grid, max_objects=8)))

    def __len__(self):
        return len(self.items)

    def get(self, i):
        return self.items[i]


def _manifest():
    return Manifest(
        {},
        GEOM.to_dict(),
        ModelConfig(top_k=10).to_dict(),
        list(CLASSES),
        list(INPUT_NAMES),
        list(OUTPUT_NAMES),
    )


def _net():
    torch.manual_seed(0)
    return FusionNet(GEOM, ModelConfig(top_k=10))


def test_tiny_training_run_lowers_the_loss(tmp_path):
    cfg = TrainConfig(epochs=8, batch_size=2, lr=5e-3, seed=1, modality_dropout=0.0)
    r = fit(_net(), TinySet(), tmp_path, _manifest(), cfg, progress=False)
    assert len(r["losses"]) == 8
    assert r["losses"][-1] < 0.6 * r["losses"][0]
    net, manifest = load_model(tmp_path / "model.pt")
    assert manifest.training["epochs_done"] == 8
    assert not net.training


def test_training_is_deterministic(tmp_path):
    data = TinySet(n=4)
    cfg = TrainConfig(epochs=2, batch_size=2, seed=3, modality_dropout=0.3)
    a = fit(_net(), data, tmp_path / "a", _manifest(), cfg, progress=False)
    b = fit(_net(), data, tmp_path / "b", _manifest(), cfg, progress=False)
    assert a["losses"] == b["losses"]  # same seed, same data: bit-identical
    again = fit(_net(), data, tmp_path / "a", _manifest(), cfg, progress=False)  # finished: nothing to do
    assert again["resumed_from"] == 2 and again["losses"] == a["losses"]


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    data = TinySet(n=4)
    cfg = TrainConfig(epochs=3, batch_size=2, seed=5, modality_dropout=0.3)
    full = fit(_net(), data, tmp_path / "full", _manifest(), cfg, progress=False)

    class Stop(Exception):
        pass

    calls = {"n": 0}

    class Interrupting(TinySet):
        def get(self, i):
            calls["n"] += 1
            if calls["n"] > 5:  # 2 steps of 2 samples per epoch: dies inside epoch 2
                raise Stop
            return super().get(i)

    part = Interrupting(n=4)
    with pytest.raises(Stop):
        fit(_net(), part, tmp_path / "cut", _manifest(), cfg, progress=False)
    resumed = fit(_net(), data, tmp_path / "cut", _manifest(), cfg, progress=False)
    assert resumed["resumed_from"] == 1
    assert resumed["losses"] == full["losses"]


def test_apply_modalities_zeroes_inputs_and_flags():
    feed, _ = TinySet(n=1).get(0)
    out = apply_modalities(feed, ("camera",))
    assert out["camera_valid"][0] == 1 and out["lidar_valid"][0] == 0 and out["radar_valid"][0] == 0
    assert out["lidar_counts"].sum() == 0 and out["lidar_pillars"].sum() == 0
    np.testing.assert_array_equal(out["images"], feed["images"])
    assert feed["lidar_valid"][0] == 1 and feed["lidar_counts"].sum() > 0  # the input is not modified
    assert parse_modalities("radar, camera") == ("camera", "radar")
    with pytest.raises(ValueError, match="--modalities"):
        parse_modalities("lidar,sonar")


def test_modality_dropout_never_drops_everything():
    rng = np.random.default_rng(0)
    kept = [drop_modalities(rng, 0.9, ("camera", "lidar", "radar")) for _ in range(200)]
    assert all(len(k) >= 1 for k in kept)
    assert any(
        len(k) == 3 for k in [drop_modalities(rng, 0.1, ("camera", "lidar", "radar")) for _ in range(50)]
    )


def test_modality_dropout_rates_per_modality():
    from edgefuse.errors import InputError
    from edgefuse.model.train import dropout_rates

    assert dropout_rates(0.2) == {"camera": 0.2, "lidar": 0.2, "radar": 0.2}
    assert dropout_rates("0.2") == dropout_rates(0.2)
    assert dropout_rates("lidar=0.5, radar=0.1") == {"lidar": 0.5, "radar": 0.1}
    for bad in ("sonar=0.1", "lidar=1.0", "lidar=x", "many"):
        with pytest.raises(InputError, match="modality_dropout|--modality-dropout"):
            dropout_rates(bad)
    rng = np.random.default_rng(0)
    kept = [drop_modalities(rng, {"lidar": 0.6}, ("camera", "lidar", "radar")) for _ in range(2000)]
    lidar_dropped = sum("lidar" not in k for k in kept) / len(kept)
    assert 0.55 < lidar_dropped < 0.65  # binomial sd ≈ 0.011
    assert all("camera" in k and "radar" in k for k in kept)  # rate 0 (not named): never dropped
