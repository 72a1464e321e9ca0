"""What each sensor sees of the simulator's ground truth: LiDAR/radar point counts and camera visibility,
through the log, the dataset cache, the nuScenes filter and the training targets."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.geometry import Transform
from edgefuse.logs import LogReader
from edgefuse.sim.lidar import simulate_sweep, vlp32c_model
from edgefuse.sim.rig import sim_calibration
from edgefuse.sim.run import Simulator, record
from edgefuse.sim.scene import Material, Scene, Weather, WorldBox
from edgefuse.sim.truth import camera_visibility, count_by_track, lidar_track_ids
from edgefuse.types import Box3D, Detection, Detections

NS = 1_000_000_000
GREY = Material("grey", (128, 128, 128), lidar_reflectivity=0.5, radar_rcs_dbsm=10.0)
GRID_M = 40.96  # the default model's BEV grid: ±40.96 m (edgefuse.model.config.edge_spec)


def _scene(boxes) -> Scene:
    return Scene(0, tuple(boxes), (), Transform.identity(), np.zeros(3), 0.0, Weather())


def _box(x, y, track, size=(0.7, 0.7, 1.8), label="pedestrian") -> WorldBox:
    c = np.array([x, y, size[2] / 2])
    return WorldBox(label or "wall", c, np.array(size, float), 0.0, GREY, track_id=track, label=label)


def _gt(b: WorldBox) -> Detection:
    return Detection(b.label, 1.0, Box3D(b.center, b.size, b.yaw), track_id=b.track_id)


def test_lidar_counts_are_the_points_inside_each_box():
    """A still scene, so the sweep's points sit where they hit: the per-box count (from the ray-cast) is
    the number of points inside the box (grown 5 cm; range noise moves a few across: 1 % slack), and a
    pedestrian hidden behind a wall has none."""
    T = Transform.from_rpy([0.0, 0.0, 1.8], 0.0, 0.0, 0.0)
    wall = WorldBox("wall", np.array([8.0, -6.0, 1.5]), np.array([0.3, 3.0, 3.0]), 0.0, GREY)
    boxes = [_box(10.0, 2.0, 1), _box(-6.0, -3.0, 2), _box(12.0, -7.2, 3), wall]  # 3: behind the wall
    scene = _scene(boxes)
    cloud, firings = simulate_sweep(scene, 0, T, vlp32c_model(), np.random.default_rng(0))
    counts = count_by_track(lidar_track_ids(scene, firings.box_index))
    pts = T.apply(cloud.xyz.astype(np.float64))
    for b in boxes[:3]:
        inside = np.all(np.abs(pts - b.center) <= b.size / 2 + 0.05, axis=1).sum()
        assert abs(counts.get(b.track_id, 0) - inside) <= 0.01 * inside
    assert counts[1] > 20 and counts[2] > 20 and 3 not in counts


def test_camera_visibility_in_view_occluded_and_behind():
    """Whole and in view → 1; behind a wall → 0; behind the camera → 0; half behind a wall → between."""
    cal = sim_calibration()
    cam, T_cam = cal.cameras["cam_front"], cal.extrinsics["cam_front"]
    # seen from the camera (about 1.5 m forward of base_link) the walls at x = 10 m hide the pedestrian at
    # y = -5 m (rays at y ≈ -2.3 m) and the wide one's +y half (rays at y ≈ 3.1 … 4.3 m)
    wall = WorldBox("wall", np.array([10.0, -2.5, 2.0]), np.array([0.3, 4.0, 4.0]), 0.0, GREY)
    half = WorldBox("wall", np.array([10.0, 4.15, 2.0]), np.array([0.3, 1.7, 4.0]), 0.0, GREY)
    wide = _box(20.0, 8.0, 4, size=(0.7, 3.0, 1.8))
    peds = [_box(15.0, 0.0, 1), _box(20.0, -5.0, 2), _box(-10.0, 0.0, 3), wide]
    scene = _scene([*peds, wall, half])
    vis = camera_visibility(scene, [_gt(p) for p in peds], cam, T_cam)
    assert vis[0] == 1.0 and vis[1] == 0.0 and vis[2] == 0.0
    assert 0.0 < vis[3] < 1.0


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "default.mcap"
    record(path, "default", 0, 1.5, progress=False)
    return path


def test_counts_survive_the_log_and_match_the_sensors(sim_log):
    """Every ground-truth box of a recorded log has its counts and visibility; the radar count is the
    number of detections of the last radar scan at or before the LiDAR stamp with the box's track id."""
    sim = Simulator("default", 0)
    gts = [m.payload for _, m in LogReader(sim_log).messages(["/ground_truth/detections"])]
    assert len(gts) >= 10
    clock = sim.clocks["radar_front"]
    for gt in gts[::4]:
        objs = gt.objects
        assert all(o.lidar_points is not None and o.radar_points is not None for o in objs)
        assert all(o.visibility is not None and 0.0 <= o.visibility <= 1.0 for o in objs)
        k = max(j for j in range(100) if clock.capture_time(j) <= gt.stamp_ns)
        ids = sim.capture("radar_front", clock.capture_time(k), k)[0].raw
        assert [o.radar_points for o in objs] == [int(np.sum(ids == o.track_id)) for o in objs]
    every = [o for gt in gts for o in gt.objects]
    assert any(o.radar_points > 0 for o in every) and any(o.visibility == 1.0 for o in every)


def test_some_in_grid_pedestrians_have_no_lidar_point(sim_log):
    """The issue's finding: the simulator labels pedestrians no LiDAR ray reaches (prints the share)."""
    gts = [m.payload for _, m in LogReader(sim_log).messages(["/ground_truth/detections"])]
    peds = [
        o
        for gt in gts
        for o in gt.objects
        if o.label == "pedestrian" and abs(o.box.center[0]) < GRID_M and abs(o.box.center[1]) < GRID_M
    ]
    zero = sum(o.lidar_points == 0 for o in peds)
    unseen = sum(o.unseen for o in peds)
    print(f"in-grid pedestrians: {len(peds)}, zero LiDAR points: {zero / len(peds):.1%}, "
          f"no LiDAR or radar point: {unseen / len(peds):.1%}")
    assert len(peds) > 20 and zero > 0 and 0 < unseen <= zero


def test_eval_and_training_skip_boxes_no_sensor_saw(sim_log, tmp_path):
    """Through the dataset cache that ``eval`` and ``train`` read: the counts arrive, the nuScenes score
    counts only the boxes some sensor saw, and the targets make no peak for the others."""
    from edgefuse.dataset import CachedFrames, build_cache
    from edgefuse.eval.evaluate import in_grid
    from edgefuse.eval.metrics import evaluate_detections
    from edgefuse.model.config import edge_spec
    from edgefuse.model.targets import HeadGrid, build_targets

    spec = edge_spec()
    data = CachedFrames([build_cache(sim_log, spec, tmp_path / "cache").directory], spec)
    gts = [in_grid(data.load(i)[1], spec) for i in range(len(data))]
    assert all(o.lidar_points is not None for gt in gts for o in gt.objects)
    peds = [[o for o in gt.objects if o.label == "pedestrian" and np.hypot(*o.box.center[:2]) < 40.0]
            for gt in gts]
    seen = sum(not o.unseen for p in peds for o in p)
    assert sum(o.unseen for p in peds for o in p) > 0
    preds = [Detections(gt.stamp_ns, ()) for gt in gts]
    r = evaluate_detections(preds, gts, spec.classes, skip_absent=True)
    assert r["per_class"]["pedestrian"]["n_gt"] == seen
    grid = HeadGrid((spec.x_range[0], spec.y_range[0]), 0.64, (128, 128))
    i = next(j for j, p in enumerate(peds) if any(o.unseen for o in p))
    t = build_targets(gts[i].objects, spec.classes, grid, max_objects=256)
    assert t["mask"].sum() == sum(not o.unseen for o in gts[i].objects if o.label in spec.classes)
    assert (t["heat_weight"] == 0).any()
