"""KITTI 3D object: a simulated drive exported and loaded back equals the simulator's own truth; bad samples
give one line each and the rest loads; the samples go through the frame cache."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from edgefuse.calib.importers import parse_kitti_calib
from edgefuse.dataset import CachedFrames, build_cache
from edgefuse.datasets.kitti import KittiObjectDataset
from edgefuse.datasets.sim_export import export_kitti
from edgefuse.sim.run import Simulator
from edgefuse.tensors import TensorSpec

DURATION_S = 2.5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("kitti")
    info = export_kitti(out, "default", 3, DURATION_S)
    return out, info


def _sim_sweeps():
    """The simulator's own LiDAR sweeps and truth, in time order (one sample each)."""
    sim = Simulator("default", 3, sensors=("cam_front", "lidar_top"), lossless=True)
    for t, sid, k in sim.schedule(int(DURATION_S * 1e9)):
        if sid == "lidar_top":
            caps = {c.message.sensor_id: c.message.payload for c in sim.capture(sid, t, k)}
            yield sim, caps["lidar_top"], caps["ground_truth"]


def _in_view(sim, box) -> bool:
    """Wholly in front of the sim camera, its centre projecting ≥ 60 px inside the image."""
    cal = sim.calibration
    cam, T = cal.cameras["cam_front"], cal.extrinsics["cam_front"]
    corners = T.inverse().apply(box.corners())
    if corners[:, 2].min() < 1.0:
        return False
    uv, _ = cam.project(T.inverse().apply(box.center[None]))
    return bool(60 <= uv[0, 0] <= cam.width - 60 and 60 <= uv[0, 1] <= cam.height - 60)


def test_round_trip_equals_the_simulator(exported):
    out, info = exported
    ds = KittiObjectDataset(out)
    samples = list(ds.samples())
    sweeps = list(_sim_sweeps())
    assert info["sweeps_without_camera"] == 0 and ds.problems == []
    assert len(samples) == len(sweeps) == 25
    n_boxes, hidden = 0, []
    for s, (sim, cloud, truth) in zip(samples, sweeps, strict=True):
        assert s.stamp_ns == s.index * 100_000_000
        assert s.image.data.shape == (720, 1280, 3)
        # points: the sweep's own, in the LiDAR frame, within float32
        np.testing.assert_array_equal(s.cloud.xyz, cloud.xyz.astype(np.float32))
        np.testing.assert_allclose(
            s.cloud.column("intensity"), cloud.column("intensity"), rtol=1e-6, atol=1e-4
        )
        # boxes: each loaded one is one of the simulator's, exactly; each clearly visible one is loaded
        gt = list(truth.objects)
        used = set()
        for d in s.truth.objects:
            j = min(range(len(gt)), key=lambda i: np.linalg.norm(gt[i].box.center - d.box.center))
            g = gt[j]
            assert j not in used and d.label == g.label
            used.add(j)
            np.testing.assert_allclose(d.box.center, g.box.center, atol=1e-5)
            np.testing.assert_allclose(d.box.size, g.box.size, atol=1e-6)
            assert abs((d.box.yaw - g.box.yaw + math.pi) % (2 * math.pi) - math.pi) < 1e-6
        visible = {i for i, g in enumerate(gt) if _in_view(sim, g.box)}
        assert visible <= used
        n_boxes += len(used)
        hidden += [gt[i].visibility < 0.4 for i in used if gt[i].visibility is not None]
    assert n_boxes > 100
    # KITTI's occlusion levels (0 fully visible, 1 partly, 2 largely occluded) come from the truth's camera
    # visibility: largely hidden boxes exist in this drive, so level 2 is written, and level 0 too
    levels = [
        int(line.split()[2])
        for f in sorted((out / "training" / "label_2").glob("*.txt"))
        for line in f.read_text().splitlines()
    ]
    assert 0 in levels and (2 in levels) == any(hidden), (sorted(set(levels)), sum(hidden))


def test_calibration_round_trip(exported):
    out, _ = exported
    sim_cal = Simulator("default", 3).calibration
    s = next(KittiObjectDataset(out).samples())
    cal = s.calibration
    K = sim_cal.cameras["cam_front"].K
    np.testing.assert_allclose(cal.cameras["cam2"].K, K, atol=1e-9)
    cam2 = cal.cameras["cam2"]
    assert not cam2.distortion.any() and (cam2.width, cam2.height) == (1280, 720)
    T_base_lidar = sim_cal.extrinsics["lidar_top"]
    np.testing.assert_allclose(cal.extrinsics["velodyne"].matrix(), T_base_lidar.matrix(), atol=1e-6)
    # the rectified camera is the sim camera turned by R0_rect: undoing it gives the sim's T_cam_lidar
    d, _ = parse_kitti_calib((out / "training" / "calib" / "000000.txt").read_text())
    R0 = d["R0_rect"].reshape(3, 3)
    T_rect_lidar = (cal.extrinsics["cam2"].inverse() @ cal.extrinsics["velodyne"]).matrix()
    T_cam_lidar = (sim_cal.extrinsics["cam_front"].inverse() @ T_base_lidar).matrix()
    np.testing.assert_allclose(R0.T @ T_rect_lidar[:3], T_cam_lidar[:3], atol=1e-6)
    # and it is level: its y axis is base_link's −z (KITTI boxes turn about y alone)
    np.testing.assert_allclose(cal.extrinsics["cam2"].rotation[:, 1], [0, 0, -1], atol=1e-9)


def test_frame_cache_reads_kitti(exported, tmp_path):
    out, _ = exported
    spec = TensorSpec()  # cam_front, lidar_top and a radar the dataset does not have
    uri = f"kitti-object://{out}?camera=cam_front&lidar=lidar_top"
    info = build_cache(uri, spec, tmp_path / "cache")
    assert info.frames == info.frames_with_truth == 25
    data = CachedFrames([info.directory], spec)
    feed, gt = data.load(3)
    assert feed["camera_valid"].tolist() == [1] and feed["lidar_valid"].tolist() == [1]
    assert feed["radar_valid"].tolist() == [0] and not feed["radar_counts"].any()
    want = [o for o in list(KittiObjectDataset(out).samples())[3].truth.objects]
    assert len(gt.objects) == len(want) > 0
    np.testing.assert_allclose(gt.objects[0].box.center, want[0].box.center, atol=1e-5)
    assert build_cache(uri, spec, tmp_path / "cache").directory == info.directory  # reused


def test_bad_samples_one_line_each_rest_loads(exported, tmp_path, caplog):
    src, _ = exported
    root = tmp_path / "bad" / "training"
    shutil.copytree(src / "training", root)
    (root / "velodyne" / "000001.bin").unlink()
    line = (root / "label_2" / "000002.txt").read_text().splitlines()[0]
    fields = line.split()
    with open(root / "label_2" / "000002.txt", "a") as f:  # KITTI's own other class: skipped, counted
        f.write(" ".join(["Tram", *fields[1:]]) + "\n")
    with open(root / "label_2" / "000003.txt", "a") as f:  # not a KITTI class: the sample is reported
        f.write(" ".join(["Bus", *fields[1:]]) + "\n")
    n3 = len((root / "label_2" / "000003.txt").read_text().splitlines())
    # a real KITTI drive's calibration (1242 × 375 images) beside a 1280 × 720 image
    kitti_p2 = "7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 " \
               "2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03"  # fmt: skip
    calib = (root / "calib" / "000004.txt").read_text().splitlines()
    (root / "calib" / "000004.txt").write_text(
        "\n".join(f"P2: {kitti_p2}" if c.startswith("P2:") else c for c in calib) + "\n")  # fmt: skip
    ds = KittiObjectDataset(tmp_path / "bad")
    names = [s.index for s in ds.samples()]
    assert names == [i for i in range(25) if i not in (1, 3, 4)]
    assert len(ds.problems) == 3
    missing, unknown, size = ds.problems
    assert "velodyne/000001.bin: missing" in missing
    assert f"label_2/000003.txt:{n3}: type 'Bus'" in unknown and "Car, Pedestrian, Cyclist" in unknown
    assert "calib/000004.txt: P2 principal point" in size and "1280×720" in size
    assert ds.skipped_objects == {"Tram": 1}
    assert all("\n" not in p for p in ds.problems)
