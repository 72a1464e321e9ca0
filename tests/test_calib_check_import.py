"""`calibrate check` (points in image, edge alignment, overlays); `calibrate import` (KITTI, camera_info)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgefuse.calib.check import check_frame
from edgefuse.calib.importers import CalibImportError, camera_info_to_camera, kitti_to_calibration
from edgefuse.calib.simdata import lidar_camera_frames
from edgefuse.cli import main
from edgefuse.geometry import Transform, rotvec_to_matrix
from edgefuse.logs import Recorder
from edgefuse.rig import load_calibration, save_calibration
from edgefuse.sim.rig import sim_calibration
from edgefuse.types import Image, Message


@pytest.fixture(scope="module")
def frames():
    return lidar_camera_frames(0, n_poses=3)


def _T_cam_lidar(calib) -> Transform:
    return calib.extrinsics["cam_front"].inverse() @ calib.extrinsics["lidar_top"]


def test_points_in_image_matches_opencv(frames):
    calib = sim_calibration()
    cam = calib.cameras["cam_front"]
    T = _T_cam_lidar(calib)
    img, cloud, _t = frames[0]
    r = check_frame(img, cloud.xyz, cam, T)
    pc = T.apply(cloud.xyz.astype(np.float64))
    front = pc[:, 2] > 0
    uv, _ = cv2.projectPoints(pc[front], np.zeros(3), np.zeros(3), cam.K, cam.distortion)
    uv = uv.reshape(-1, 2)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    assert r.points_in_image == int(inside.sum()) > 1000


def test_edge_alignment_drops_with_a_rotation_error(frames):
    calib = sim_calibration()
    cam = calib.cameras["cam_front"]
    T = _T_cam_lidar(calib)
    off = Transform(rotvec_to_matrix([0.0, 0.035, 0.0]), np.zeros(3)) @ T  # 2° of yaw in the camera
    for img, cloud, _t in frames:
        good = check_frame(img, cloud.xyz, cam, T)
        bad = check_frame(img, cloud.xyz, cam, off)
        assert good.edge_points > 50
        assert good.edge_alignment > bad.edge_alignment + 0.03, (good.to_dict(), bad.to_dict())


def test_cli_check_image_and_cloud(tmp_path, frames, capsys):
    img, cloud, _t = frames[0]
    cv2.imwrite(str(tmp_path / "img.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    xyzi = np.zeros((len(cloud), 4), np.float32)
    xyzi[:, :3] = cloud.xyz
    xyzi[:, 3] = cloud.column("intensity") / 255.0
    xyzi.tofile(tmp_path / "cloud.bin")  # a KITTI .bin: x y z reflectance float32
    save_calibration(sim_calibration(), tmp_path / "calib.yaml")
    rc = main(
        [
            "calibrate",
            "check",
            "--image",
            str(tmp_path / "img.png"),
            "--cloud",
            str(tmp_path / "cloud.bin"),
            "--calib",
            str(tmp_path / "calib.yaml"),
            "--camera",
            "cam_front",
            "--out",
            str(tmp_path / "ov.png"),
            "--json",
        ]
    )
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["lidar"] == "lidar_top" and r["points"] == len(cloud)
    expected = check_frame(
        img, cloud.xyz, sim_calibration().cameras["cam_front"], _T_cam_lidar(sim_calibration())
    )
    assert r["points_in_image"] == expected.points_in_image
    assert cv2.imread(str(tmp_path / "ov.png")).shape == (720, 1280, 3)


def test_cli_check_log_writes_worst_frames(tmp_path, frames, capsys):
    log = tmp_path / "l.mcap"
    with Recorder(log, clock=lambda: 0) as rec:
        for k, (img, cloud, t) in enumerate(frames):
            rec.write(Message("lidar_top", t, cloud, raw_stamp_ns=t, recv_ns=t, frame="lidar_top", seq=k))
            rec.write(Message("cam_front", t, Image(img), raw_stamp_ns=t, recv_ns=t + 1, frame="cam", seq=k))
    save_calibration(sim_calibration(), tmp_path / "calib.yaml")
    rc = main(
        [
            "calibrate",
            "check",
            "--log",
            str(log),
            "--calib",
            str(tmp_path / "calib.yaml"),
            "--every",
            "1",
            "--out",
            str(tmp_path / "worst"),
            "--json",
        ]
    )
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    c = r["cameras"]["cam_front"]
    assert c["frames"] == 3 and len(c["worst"]) == 3
    assert all((tmp_path / "worst" / p.split("/")[-1]).is_file() for p in c["worst"])
    assert c["worst_edge_alignment"] == sorted(c["worst_edge_alignment"])


def test_check_log_moves_each_sweep_to_the_frame_time_while_driving(tmp_path):
    """A highway drive (~30 m/s): a sweep and the camera frames around it see the scene from places up to
    a metre apart. With the log's odometry each sweep is de-skewed and moved to the frame's time, and the
    edges line up better than without (the calibration is the simulator's truth in both)."""
    from edgefuse.calib.check import check_log
    from edgefuse.logs import LogReader
    from edgefuse.sim.run import record

    log = tmp_path / "hw.mcap"
    record(log, "highway", 3, 2.0, progress=False)
    calib = LogReader(log).calibration()
    raw = check_log(str(log), calib, tmp_path / "a", every=1, compensate=False, max_dt_ns=60_000_000)
    comp = check_log(str(log), calib, tmp_path / "b", every=1, max_dt_ns=60_000_000)
    a, b = raw["cam_front"], comp["cam_front"]
    assert not a["motion_compensated"] and b["motion_compensated"] and b["odometry"] == "odom"
    assert a["frames"] == b["frames"] > 40
    assert b["mean_edge_alignment"] > a["mean_edge_alignment"] + 0.03, (a, b)


# ---------------------------------------------------------------- import


def _kitti_text(rng) -> tuple[str, dict]:
    """A KITTI-style calibration made from known matrices (values of the usual magnitude)."""
    K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
    P = {
        f"P{i}": np.hstack([K, (K @ np.array([b, rng.normal(0, 0.003), rng.normal(0, 0.003)]))[:, None]])
        for i, b in enumerate([0.0, -0.54, 0.06, -0.47])
    }
    R0 = rotvec_to_matrix(rng.normal(0, 0.01, 3))
    Tr = np.hstack(
        [
            rotvec_to_matrix([1.2, -1.2, 1.2]) @ rotvec_to_matrix(rng.normal(0, 0.01, 3)),
            np.array([[-0.004], [-0.076], [-0.27]]),
        ]
    )
    Ti = np.hstack([rotvec_to_matrix(rng.normal(0, 0.01, 3)), np.array([[-0.81], [0.32], [-0.80]])])
    lines = [f"{k}: " + " ".join(f"{v:.12e}" for v in m.ravel()) for k, m in P.items()]
    lines += [
        "R0_rect: " + " ".join(f"{v:.12e}" for v in R0.ravel()),
        "Tr_velo_to_cam: " + " ".join(f"{v:.12e}" for v in Tr.ravel()),
        "Tr_imu_to_velo: " + " ".join(f"{v:.12e}" for v in Ti.ravel()),
    ]
    return "\n".join(lines) + "\n", {"P2": P["P2"], "R0": R0, "Tr": Tr, "Ti": Ti}


def test_kitti_import_projects_like_the_kitti_formula():
    rng = np.random.default_rng(0)
    text, m = _kitti_text(rng)
    calib = kitti_to_calibration(text, "000000.txt", (1242, 375))
    # KITTI devkit: y = P2 · R0_rect · Tr_velo_to_cam · x (homogeneous)
    R0 = np.eye(4)
    R0[:3, :3] = m["R0"]
    Tr = np.vstack([m["Tr"], [0, 0, 0, 1]])
    X = np.column_stack(
        [rng.uniform(5, 40, 50), rng.uniform(-8, 8, 50), rng.uniform(-1.5, 1.0, 50), np.ones(50)]
    )
    y = (m["P2"] @ R0 @ Tr @ X.T).T
    uv_kitti = y[:, :2] / y[:, 2:]
    # ours: base_link is the IMU; Velodyne points → base → camera
    T_cam_velo = calib.extrinsics["cam2"].inverse() @ calib.extrinsics["velodyne"]
    uv, z = calib.cameras["cam2"].project(T_cam_velo.apply(X[:, :3]))
    np.testing.assert_allclose(uv, uv_kitti, atol=1e-6)
    # the IMU is base_link and Tr_imu_to_velo maps IMU points into the Velodyne frame
    Ti = np.vstack([m["Ti"], [0, 0, 0, 1]])
    p_imu = X[:5, :3]
    np.testing.assert_allclose(
        calib.extrinsics["velodyne"].inverse().apply(p_imu), (Ti @ X[:5].T).T[:, :3], atol=1e-9
    )


def test_cli_import_kitti_then_check_loads(tmp_path, capsys):
    text, _m = _kitti_text(np.random.default_rng(1))
    (tmp_path / "000001.txt").write_text(text)
    out = tmp_path / "kitti.yaml"
    args = ["calibrate", "import", "--from", "kitti", str(tmp_path / "000001.txt"), "--out", str(out)]
    rc = main(args)  # no size: KITTI's files have none, and it is not invented
    assert rc == 2 and "carry no image size" in capsys.readouterr().err and not out.exists()
    for w, h in ((1242, 375), (1224, 370)):  # two drives' image sizes, read from an image of each
        cv2.imwrite(str(tmp_path / "img.png"), np.zeros((h, w, 3), np.uint8))
        rc = main([*args, "--image", str(tmp_path / "img.png"), "--json"])
        r = json.loads(capsys.readouterr().out)
        assert rc == 0, r
        c = load_calibration(out)
        assert r["cameras"] == ["cam0", "cam1", "cam2", "cam3"]
        assert set(c.extrinsics) == {"cam0", "cam1", "cam2", "cam3", "velodyne", "imu"}
        assert all((cam.width, cam.height) == (w, h) for cam in c.cameras.values())


@pytest.mark.parametrize(
    "line,match",
    [
        ("P2: 1 2 3", "P2: expected 12 numbers"),
        ("P2 1 2", "P2: expected 12 numbers"),  # no colon, as the tracking files write R_rect: read as P2
        ("P2:", "expected 'KEY: numbers'"),
        ("P2: a b", "expected numbers"),
    ],
)
def test_kitti_bad_files(line, match):
    text, _m = _kitti_text(np.random.default_rng(2))
    bad = "\n".join(line if t.startswith("P2") else t for t in text.splitlines())
    with pytest.raises(CalibImportError, match=match):
        kitti_to_calibration(bad, "bad.txt", (1242, 375))


def test_camera_info_import_into_existing_calibration(tmp_path, capsys):
    info = {
        "image_width": 640,
        "image_height": 480,
        "camera_name": "narrow_stereo",
        "camera_matrix": {"rows": 3, "cols": 3, "data": [430.2, 0, 306.7, 0, 429.9, 247.1, 0, 0, 1]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [-0.33, 0.11, 0.001, -0.0005, 0.0]},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
        "projection_matrix": {
            "rows": 3,
            "cols": 4,
            "data": [430.2, 0, 306.7, 0, 0, 429.9, 247.1, 0, 0, 0, 1, 0],
        },
    }
    (tmp_path / "info.yaml").write_text(yaml.safe_dump(info))
    cam, name = camera_info_to_camera(tmp_path / "info.yaml")
    assert name == "narrow_stereo" and cam.K[0, 2] == 306.7 and cam.distortion[0] == -0.33
    out = tmp_path / "calib.yaml"
    save_calibration(sim_calibration(), out)
    rc = main(
        [
            "calibrate",
            "import",
            "--from",
            "camera_info",
            str(tmp_path / "info.yaml"),
            "--out",
            str(out),
            "--camera",
            "cam_rear",
            "--json",
        ]
    )
    assert rc == 0
    c = load_calibration(out)
    assert set(c.cameras) == {"cam_front", "cam_rear"} and c.cameras["cam_rear"].width == 640
    assert (tmp_path / "calib.yaml.bak").is_file()
    info["distortion_model"] = "kannala_brandt"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(info))
    rc = main(["calibrate", "import", "--from", "camera_info", str(tmp_path / "bad.yaml"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "distortion_model: expected one of ['plumb_bob', 'rational_polynomial'" in err
    info["distortion_model"] = "rational_polynomial"  # with plumb bob's 5 coefficients
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(info))
    rc = main(["calibrate", "import", "--from", "camera_info", str(tmp_path / "bad.yaml"), "--out", str(out)])
    assert rc == 2 and "distortion_coefficients.data: expected a list of 8 numbers" in capsys.readouterr().err


def test_camera_info_never_silently_changes_an_existing_cameras_resolution(tmp_path, capsys):
    info = {
        "image_width": 640, "image_height": 480,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [430.2, 0, 306.7, 0, 429.9, 247.1, 0, 0, 1]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [-0.33, 0.11, 0.001, -0.0005, 0.0]},
    }  # fmt: skip
    (tmp_path / "info.yaml").write_text(yaml.safe_dump(info))
    out = tmp_path / "calib.yaml"
    save_calibration(sim_calibration(), out)  # cam_front is 1280×720
    before = out.read_bytes()
    args = ["calibrate", "import", "--from", "camera_info", str(tmp_path / "info.yaml"), "--out", str(out),
            "--camera", "cam_front"]  # fmt: skip
    rc = main(args)
    assert rc == 2 and "is 1280×720 there, the import is 640×480" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--force"]) == 0
    assert load_calibration(out).cameras["cam_front"].width == 640


CAMERA_INFO = Path(__file__).parent / "data" / "camera_info"


@pytest.mark.parametrize("name", ["tier4_edge_auto_camera0.yaml", "handwritten_rational_stereo_right.yaml"])
def test_camera_info_round_trip_keeps_p_and_r(tmp_path, name, capsys):
    """camera_info → ``calibrate import`` → calibration file → load → camera_info again: P, R, K, the
    distortion model and its coefficients come back exactly as the file wrote them (the real file's P is
    not [K | 0]; the hand-written stereo right camera's R is a rotation and its P holds the baseline)."""
    src = yaml.safe_load((CAMERA_INFO / name).read_text())
    keys = ("camera_matrix", "distortion_coefficients", "rectification_matrix", "projection_matrix")
    data = {k: np.array(src[k]["data"], float) for k in keys}
    P, K = data["projection_matrix"].reshape(3, 4), data["camera_matrix"].reshape(3, 3)
    assert not np.array_equal(P[:, :3], K)
    out = tmp_path / "calib.yaml"
    rc = main(["calibrate", "import", "--from", "camera_info", str(CAMERA_INFO / name), "--out", str(out),
               "--camera", "cam", "--json"])  # fmt: skip
    assert rc == 0, capsys.readouterr()
    cam = load_calibration(out).cameras["cam"]
    np.testing.assert_array_equal(cam.projection, P)
    np.testing.assert_array_equal(cam.rectification, data["rectification_matrix"].reshape(3, 3))
    block = yaml.safe_load(out.read_text())["cameras"]["cam"]
    assert block["distortion_model"] == src["distortion_model"]
    for key, want in data.items():
        np.testing.assert_array_equal(block[key]["data"], want, err_msg=key)
    assert (block["projection_matrix"]["rows"], block["projection_matrix"]["cols"]) == (3, 4)
    save_calibration(load_calibration(out), tmp_path / "again.yaml")  # and once more through the loader
    assert yaml.safe_load((tmp_path / "again.yaml").read_text())["cameras"]["cam"] == block


def test_rational_camera_info_projects_like_opencv():
    """The hand-written rational_polynomial file: our projection of points through its K and 8 coefficients
    is OpenCV's (``cv2.projectPoints`` with the file's numbers, read by PyYAML here)."""
    name = "handwritten_rational_stereo_right.yaml"
    cam, cam_name = camera_info_to_camera(CAMERA_INFO / name)
    assert (cam.model, cam_name) == ("rational", "wide_stereo/right")
    src = yaml.safe_load((CAMERA_INFO / name).read_text())
    K = np.array(src["camera_matrix"]["data"], float).reshape(3, 3)
    D = np.array([float(v) for v in src["distortion_coefficients"]["data"]])
    pts = np.column_stack([np.linspace(-8, 8, 9), np.linspace(-3, 4, 9), np.linspace(4, 20, 9)])
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, D)
    np.testing.assert_allclose(cam.project(pts)[0], ref.reshape(-1, 2), atol=1e-6)


def test_camera_info_without_p_and_r_writes_k_and_the_identity(tmp_path):
    info = {"image_width": 640, "image_height": 480, "distortion_model": "plumb_bob",
            "camera_matrix": {"rows": 3, "cols": 3, "data": [430.2, 0, 306.7, 0, 429.9, 247.1, 0, 0, 1]},
            "distortion_coefficients": {"rows": 1, "cols": 5, "data": [-0.33, 0.11, 0.001, -5e-4, 0.0]},
            }  # fmt: skip
    (tmp_path / "info.yaml").write_text(yaml.safe_dump(info))
    out = tmp_path / "calib.yaml"
    assert main(["calibrate", "import", "--from", "camera_info", str(tmp_path / "info.yaml"),
                 "--out", str(out)]) == 0  # fmt: skip
    block = yaml.safe_load(out.read_text())["cameras"]["info"]
    assert block["projection_matrix"]["data"] == [430.2, 0, 306.7, 0, 0, 429.9, 247.1, 0, 0, 0, 1, 0]
    assert block["rectification_matrix"]["data"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
