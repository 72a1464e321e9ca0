"""nuScenes: a simulated drive exported and loaded back equals the simulator's own truth, points, radar and
calibration; the official devkit reads the same boxes from the export (stored oracle); bad samples give one
line each and the rest loads; the samples go through the frame cache."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.dataset import CachedFrames, build_cache
from edgefuse.datasets.nuscenes import NuScenesDataset
from edgefuse.datasets.nuscenes_export import export_nuscenes
from edgefuse.sim.run import Simulator
from edgefuse.sources import open_source
from edgefuse.tensors import TensorSpec

DURATION_S = 2.5
SEED = 3
ORACLE = Path(__file__).parent / "nuscenes_oracle" / "export_boxes.json"
#: nuScenes' visibility levels by hand: 0-40 % → 1, 40-60 → 2, 60-80 → 3, 80-100 → 4
_LEVEL_BOUNDS = (0.4, 0.6, 0.8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("nuscenes")
    info = export_nuscenes(out, "default", SEED, DURATION_S)
    return out, info


def _sim_sweeps():
    """The simulator's own sweeps, truth, nearest camera frame and nearest radar scan, in time order."""
    sim = Simulator("default", SEED, sensors=("cam_front", "lidar_top", "radar_front"), lossless=True)
    sched = list(sim.schedule(int(DURATION_S * 1e9)))
    cams = [(t, k) for t, s, k in sched if s == "cam_front"]
    radars = [(t, k) for t, s, k in sched if s == "radar_front"]
    for t, sid, k in sched:
        if sid == "lidar_top":
            caps = {c.message.sensor_id: c.message.payload for c in sim.capture(sid, t, k)}
            tc, kc = min(cams, key=lambda c: abs(c[0] - t))
            tr, kr = min(radars, key=lambda r: abs(r[0] - t))
            yield {
                "sim": sim, "t": t, "cloud": caps["lidar_top"], "truth": caps["ground_truth"],
                "camera": (tc, sim.capture("cam_front", tc, kc)[0].message.payload.data),
                "radar": (tr, sim.capture("radar_front", tr, kr)[0].message.payload),
            }  # fmt: skip


def _match(loaded, truth):
    """(loaded, simulated) pairs, each loaded box with the simulator's nearest (one to one)."""
    gt, used, out = list(truth.objects), set(), []
    for d in loaded.objects:
        j = min(range(len(gt)), key=lambda i: np.linalg.norm(gt[i].box.center - d.box.center))
        assert j not in used
        used.add(j)
        out.append((d, gt[j]))
    return out


def _level(v: float) -> int:
    return 1 + sum(v > b for b in _LEVEL_BOUNDS)


def test_round_trip_equals_the_simulator(exported):
    out, info = exported
    ds = NuScenesDataset(out, "v1.0-sim")
    samples = list(ds.samples())
    sweeps = list(_sim_sweeps())
    assert info["sweeps_without_camera"] == 0 and ds.problems == []
    assert len(samples) == len(sweeps) == 25
    n_boxes, moving_err = 0, []
    for s, w in zip(samples, sweeps, strict=True):
        # stamps: the tables' µs, back to ns
        assert s.stamp_ns == s.stamps_ns["lidar_top"] == round(w["t"] / 1000) * 1000
        assert s.stamps_ns["cam_front"] == round(w["camera"][0] / 1000) * 1000
        assert s.stamps_ns["radar_front"] == round(w["radar"][0] / 1000) * 1000
        # points: the sweep's own, LiDAR frame, bit-exact (x y z intensity ring)
        for f in ("x", "y", "z", "intensity", "ring"):
            np.testing.assert_array_equal(s.clouds["lidar_top"].column(f), w["cloud"].column(f))
        # radar: the nearest scan's points; doppler back from nuScenes' vx vy
        scan, sim_scan = s.radars["radar_front"], w["radar"][1]
        for f in ("x", "y", "z", "rcs"):
            np.testing.assert_array_equal(scan.column(f), sim_scan.column(f))
        np.testing.assert_allclose(scan.column("doppler"), sim_scan.column("doppler"), atol=1e-4)
        # camera: the sim frame undistorted to the pinhole K (done here with OpenCV), through JPEG q95
        cam = w["sim"].calibration.cameras["cam_front"]
        maps = cv2.initUndistortRectifyMap(cam.K, cam.distortion, None, cam.K, (cam.width, cam.height), 5)
        want = cv2.remap(w["camera"][1], maps[0], maps[1], cv2.INTER_LINEAR)
        got = s.images["cam_front"].data
        assert got.shape == want.shape == (720, 1280, 3)
        assert np.abs(got.astype(float) - want.astype(float))[40:-40, 40:-40].mean() < 3.0
        # boxes: every one of the simulator's, exactly (JSON float64)
        assert len(s.truth.objects) == len(w["truth"].objects) > 0
        for d, g in _match(s.truth, w["truth"]):
            assert d.label == g.label
            np.testing.assert_allclose(d.box.center, g.box.center, atol=1e-9)
            np.testing.assert_allclose(d.box.size, g.box.size, atol=1e-12)
            assert abs((d.box.yaw - g.box.yaw + math.pi) % (2 * math.pi) - math.pi) < 1e-9
            assert (d.lidar_points, d.radar_points) == (g.lidar_points, g.radar_points)
            assert g.visibility is not None and _level(d.visibility) == _level(g.visibility)
            assert d.attribute == (g.attribute or ("cycle.with_rider" if g.label == "cyclist" else ""))
            if np.linalg.norm(g.velocity) > 1.0:
                moving_err.append(float(np.linalg.norm(d.velocity - g.velocity)))
        n_boxes += len(s.truth.objects)
        # the LiDAR keyframe's ego pose is the simulator's base_link in its world
        T = w["sim"].world.scene_at(w["t"]).T_world_base
        np.testing.assert_allclose(s.ego.matrix(), T.matrix(), atol=1e-9)
    assert n_boxes > 1000
    # velocity: the devkit's finite difference of 0.1 s-apart annotations, against the true velocity
    assert len(moving_err) > 50 and float(np.median(moving_err)) < 0.05, np.percentile(moving_err, [50, 90])


def test_calibration_round_trip(exported):
    out, _ = exported
    sim_cal = Simulator("default", SEED).calibration
    cal = next(NuScenesDataset(out, "v1.0-sim").samples()).calibration
    np.testing.assert_allclose(cal.cameras["cam_front"].K, sim_cal.cameras["cam_front"].K, atol=1e-9)
    cam = cal.cameras["cam_front"]
    assert not cam.distortion.any() and (cam.width, cam.height) == (1280, 720)
    for sid in ("lidar_top", "cam_front", "radar_front"):
        np.testing.assert_allclose(cal.extrinsics[sid].matrix(), sim_cal.extrinsics[sid].matrix(), atol=1e-6)


def test_devkit_reads_the_same_boxes(tmp_path):
    """A fresh export of the oracle's seed and duration, read by our loader and put back in the global frame
    with the sample's ego pose, equals what nuscenes-devkit's NuScenes.get_boxes / box_velocity gave."""
    oracle = json.loads(ORACLE.read_text())
    export_nuscenes(tmp_path, "default", oracle["seed"], oracle["duration_s"], version=oracle["version"])
    samples = list(NuScenesDataset(tmp_path, oracle["version"]).samples())
    assert len(samples) == len(oracle["samples"]) > 0
    names = {"car": "vehicle.car", "pedestrian": "human.pedestrian.adult", "cyclist": "vehicle.bicycle"}
    for s, o in zip(samples, oracle["samples"], strict=True):
        assert s.stamp_ns == o["timestamp"] * 1000
        assert len(s.truth.objects) == len(o["boxes"]) > 0
        R, p = s.ego.rotation, s.ego.translation
        for d, b in zip(s.truth.objects, o["boxes"], strict=True):
            assert names[d.label] == b["name"]
            np.testing.assert_allclose(R @ d.box.center + p, b["center"], atol=1e-5)
            np.testing.assert_allclose(d.box.size[[1, 0, 2]], b["wlh"], atol=1e-5)
            w, x, y, z = b["orientation"]
            yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))  # about +z, global
            ego_yaw = math.atan2(R[1, 0], R[0, 0])
            assert abs((d.box.yaw + ego_yaw - yaw + math.pi) % (2 * math.pi) - math.pi) < 1e-5
            v = [0.0 if c is None else c for c in b["velocity"][:2]]
            np.testing.assert_allclose((R @ np.append(d.velocity, 0.0))[:2], v, atol=1e-5)


def test_frame_cache_and_open_source_read_nuscenes(exported, tmp_path):
    out, _ = exported
    spec = TensorSpec()  # cam_front, lidar_top, radar_front: the export's channels in lower case
    uri = f"nuscenes://{out}?version=v1.0-sim"
    info = build_cache(uri, spec, tmp_path / "cache")
    assert info.frames == info.frames_with_truth == 25
    data = CachedFrames([info.directory], spec)
    feed, gt = data.load(3)
    assert feed["camera_valid"].tolist() == [1] and feed["lidar_valid"].tolist() == [1]
    assert feed["radar_valid"].tolist() == [1] and feed["radar_counts"].any()
    want = list(NuScenesDataset(out, "v1.0-sim").samples())[3].truth.objects
    kept = [o for o in want if not o.unseen]
    assert len(gt.objects) > 0 and len(gt.objects) in (len(want), len(kept))
    assert build_cache(uri, spec, tmp_path / "cache").directory == info.directory  # reused
    ids = {m.sensor_id for m in open_source(f"nuscenes://{out}")}
    assert ids == {"lidar_top", "cam_front", "radar_front", "ground_truth"}


def test_bad_samples_one_line_each_rest_loads(exported, tmp_path):
    src, _ = exported
    root = tmp_path / "bad"
    shutil.copytree(src, root)
    tables = root / "v1.0-sim"
    load = lambda name: json.loads((tables / f"{name}.json").read_text())  # noqa: E731
    samples = {r["token"]: r for r in load("sample")}
    order, tok = [], next(iter(load("scene")))["first_sample_token"]
    while tok:
        order.append(tok)
        tok = samples[tok]["next"]
    sds = load("sample_data")
    cam = next(r for r in sds if r["sample_token"] == order[1] and "CAM_FRONT" in r["filename"])
    (root / cam["filename"]).unlink()
    # an annotation of sample 3 whose instance has a category that is not nuScenes'; one of sample 2 whose
    # category is nuScenes' own vehicle.truck (skipped, counted)
    cats, insts, anns = load("category"), load("instance"), load("sample_annotation")
    for n, (name, sample) in enumerate((("vehicle.spaceship", order[3]), ("vehicle.truck", order[2]))):
        cats.append({"token": f"cat{n}", "name": name, "description": "", "index": 90 + n})
        insts.append({"token": f"inst{n}", "category_token": f"cat{n}", "nbr_annotations": 1,
                      "first_annotation_token": f"ann{n}", "last_annotation_token": f"ann{n}"})  # fmt: skip
        a = dict(next(a for a in anns if a["sample_token"] == sample))
        a.update(token=f"ann{n}", instance_token=f"inst{n}", prev="", next="")
        anns.append(a)
    for name, records in (("category", cats), ("instance", insts), ("sample_annotation", anns)):
        (tables / f"{name}.json").write_text(json.dumps(records))
    ds = NuScenesDataset(root, "v1.0-sim")
    loaded = [s.index for s in ds.samples()]
    assert loaded == [i for i in range(25) if i not in (1, 3)]
    assert len(ds.problems) == 2 and all("\n" not in p for p in ds.problems)
    missing, unknown = ds.problems
    assert f"{cam['filename']}: missing" in missing and "CAM_FRONT" in missing and order[1] in missing
    assert "sample_annotation.json: annotation ann0" in unknown and "'vehicle.spaceship'" in unknown
    assert "vehicle.car" in unknown and order[3] in unknown
    assert ds.skipped_objects == {"vehicle.truck": 1}


def test_several_cameras_and_radars_reach_the_model_inputs(exported, tmp_path):
    """A set with a second camera and a second radar (CAM_FRONT and RADAR_FRONT copied to new channels with
    their own calibration): both of each are loaded, calibrated and fed (camera lift and radar pillars)."""
    src, _ = exported
    root = tmp_path / "multi"
    shutil.copytree(src, root)
    tables = root / "v1.0-sim"
    load = lambda name: json.loads((tables / f"{name}.json").read_text())  # noqa: E731
    sensors, cals, sds = load("sensor"), load("calibrated_sensor"), load("sample_data")
    turn = [math.cos(math.radians(25)), 0.0, 0.0, math.sin(math.radians(25))]  # w x y z: 50° about +z
    for old, new in (("CAM_FRONT", "CAM_FRONT_LEFT"), ("RADAR_FRONT", "RADAR_FRONT_LEFT")):
        s_old = next(s for s in sensors if s["channel"] == old)
        c_old = next(c for c in cals if c["sensor_token"] == s_old["token"])
        sensors.append({**s_old, "token": f"s-{new}", "channel": new})
        # the new sensor sits 0.5 m left of the old one and turned 50° about the ego's z axis
        t = [c_old["translation"][0], c_old["translation"][1] + 0.5, c_old["translation"][2]]
        cals.append({**c_old, "token": f"c-{new}", "sensor_token": f"s-{new}", "translation": t,
                     "rotation": _quat_mul(turn, c_old["rotation"])})  # fmt: skip
        (root / "samples" / new).mkdir()
        for sd in [sd for sd in sds if sd["calibrated_sensor_token"] == c_old["token"]]:
            name = sd["filename"].replace(old, new)
            shutil.copy(root / sd["filename"], root / name)
            sds.append({**sd, "token": sd["token"] + new, "calibrated_sensor_token": f"c-{new}",
                        "filename": name, "prev": "", "next": ""})  # fmt: skip
    for name, records in (("sensor", sensors), ("calibrated_sensor", cals), ("sample_data", sds)):
        (tables / f"{name}.json").write_text(json.dumps(records))
    ds = NuScenesDataset(root, "v1.0-sim")
    assert [s.id for s in ds.kit().sensors] == [
        "lidar_top", "cam_front", "cam_front_left", "radar_front", "radar_front_left",
    ]  # fmt: skip
    s = next(ds.samples())
    assert set(s.images) == {"cam_front", "cam_front_left"}
    assert set(s.radars) == {"radar_front", "radar_front_left"}
    cal = s.calibration
    T0, T1 = cal.extrinsics["cam_front"], cal.extrinsics["cam_front_left"]
    np.testing.assert_allclose(T1.translation - T0.translation, [0.0, 0.5, 0.0], atol=1e-12)
    yaw = lambda T: math.atan2(T.rotation[1, 2], T.rotation[0, 2])  # noqa: E731  optical axis heading
    assert abs(yaw(T1) - yaw(T0) - math.radians(50)) < 1e-9
    spec = TensorSpec(cameras=("cam_front", "cam_front_left"), radars=("radar_front", "radar_front_left"))
    info = build_cache(f"nuscenes://{root}?version=v1.0-sim", spec, tmp_path / "cache")
    assert info.frames_with_truth == 25
    feed, _gt = CachedFrames([info.directory], spec).load(0)
    assert feed["camera_valid"].tolist() == [1, 1] and feed["radar_valid"].tolist() == [1]
    assert feed["images"].shape[0] == 2 and not np.allclose(feed["projection"][0], feed["projection"][1])
    # the radars share one pillar grid: the second radar's points are there beside the first's
    one = TensorSpec(cameras=spec.cameras, radars=("radar_front",))
    info1 = build_cache(f"nuscenes://{root}", one, tmp_path / "cache")
    feed1, _ = CachedFrames([info1.directory], one).load(0)
    assert feed["radar_counts"].sum() > feed1["radar_counts"].sum() > 0


def _quat_mul(a, b):
    """Hamilton product of two w x y z quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return [aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw]  # fmt: skip


def test_sim_export_command_writes_nuscenes(tmp_path, capsys):
    from edgefuse.cli import main

    out = tmp_path / "set"
    args = ["sim", "export", "--format", "nuscenes", "--seed", "5", "--duration", "0.35", str(out), "--json"]
    rc = main(args)
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nuscenes" and info["samples"] == 3
    ds = NuScenesDataset(out, "v1.0-sim")
    assert len(list(ds.samples())) == 3 and ds.problems == []
    assert sorted(p.name for p in (out / "v1.0-sim").glob("*.json")) == sorted(
        f"{t}.json" for t in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor",
                              "sample_annotation", "instance", "category", "attribute", "visibility", "log",
                              "map")
    )  # fmt: skip
