"""KITTI raw: a real drive's calibration (tests/data/kitti_raw_calib, 2011_09_26, CC BY-NC-SA 3.0) imported
with ``calibrate import --from kitti-raw``, checked against the KITTI devkit's published projection of a
Velodyne point into rectified camera i — ``P_rect_0i · R_rect_00 · [R|T]_velo_to_cam · X`` — computed here
from the files themselves; then ``calibrate check`` on the drive's real image and sweep."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.calib.importers import CalibImportError, kitti_raw_to_calibration, parse_kitti_calib
from edgefuse.cli import main
from edgefuse.rig import load_calibration

DATA = Path(__file__).parent / "data" / "kitti_raw_calib"
DRIVE = DATA / "2011_09_26_drive_0013_sync"
IMAGE = DRIVE / "image_02" / "data" / "0000000000.png"
SWEEP = DRIVE / "velodyne_points" / "data" / "0000000000.bin"


def _devkit_matrices() -> dict[str, np.ndarray]:
    """The files read the devkit's way (its readme: every line ``key: values``; ``calib_time`` is a date)."""
    m = {}
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        for line in (DATA / name).read_text().splitlines():
            key, _, values = line.partition(":")
            if key != "calib_time":
                m[f"{name}:{key}"] = np.array(values.split(), float)
    return m


def _homogeneous(R9: np.ndarray, T3: np.ndarray) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R9.reshape(3, 3), T3
    return M


def _devkit_uv(i: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixels and (N,) third homogeneous coordinate of Velodyne points X (N, 3), rectified camera i."""
    m = _devkit_matrices()
    R_rect = np.eye(4)
    R_rect[:3, :3] = m["calib_cam_to_cam.txt:R_rect_00"].reshape(3, 3)
    Tr = _homogeneous(m["calib_velo_to_cam.txt:R"], m["calib_velo_to_cam.txt:T"])
    P = m[f"calib_cam_to_cam.txt:P_rect_0{i}"].reshape(3, 4)
    y = (P @ R_rect @ Tr @ np.column_stack([X, np.ones(len(X))]).T).T
    return y[:, :2] / y[:, 2:], y[:, 2]


def _sweep() -> np.ndarray:
    return np.fromfile(SWEEP, np.float32).reshape(-1, 4)[:, :3].astype(np.float64)


def test_every_rectified_camera_projects_like_the_devkit():
    calib, notes = kitti_raw_to_calibration([DATA])
    assert notes == [] and sorted(calib.cameras) == ["cam0", "cam1", "cam2", "cam3"]
    assert calib.provenance["base_frame"] == "imu (KITTI OXTS)"
    assert calib.provenance["calib_time"]["calib_velo_to_cam.txt"] == "15-Mar-2012 11:37:16"
    X = _sweep()
    X = X[X[:, 0] > 2.0]  # ahead of the car
    for i in range(4):
        cam = calib.cameras[f"cam{i}"]
        assert (cam.width, cam.height) == (1242, 375)  # S_rect_0i
        T_cam_velo = calib.extrinsics[f"cam{i}"].inverse() @ calib.extrinsics["velodyne"]
        uv, z = cam.project(T_cam_velo.apply(X))
        uv_kitti, w = _devkit_uv(i, X)
        np.testing.assert_allclose(z, w, atol=1e-5)
        np.testing.assert_allclose(uv, uv_kitti, atol=0.01)
    # calib_imu_to_velo maps IMU (base_link) points into the Velodyne frame
    m = _devkit_matrices()
    Ti = _homogeneous(m["calib_imu_to_velo.txt:R"], m["calib_imu_to_velo.txt:T"])
    p_imu = np.array([[1.0, 2.0, 0.5], [-3.0, 0.2, 1.5]])
    np.testing.assert_allclose(
        calib.extrinsics["velodyne"].inverse().apply(p_imu), (Ti[:3, :3] @ p_imu.T).T + Ti[:3, 3], atol=1e-5
    )


def test_cli_import_then_check_on_the_drives_image(tmp_path, capsys):
    out = tmp_path / "kitti.yaml"  # DRIVE: a drive folder; its calibration is in the folder above
    rc = main(["calibrate", "import", "--from", "kitti-raw", str(DRIVE), "--image", str(IMAGE),
               "--out", str(out), "--json"])  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["notes"] == [] and r["base_frame"] == "imu (KITTI OXTS)"
    assert r["image_size"] == {f"cam{i}": [1242, 375] for i in range(4)}
    assert r["sensors"] == ["cam0", "cam1", "cam2", "cam3", "imu", "velodyne"]
    P2 = _devkit_matrices()["calib_cam_to_cam.txt:P_rect_02"].reshape(3, 4)
    np.testing.assert_array_equal(load_calibration(out).cameras["cam2"].projection, P2)  # kept as written
    rc = main(["calibrate", "check", "--image", str(IMAGE), "--cloud", str(SWEEP), "--calib", str(out),
               "--camera", "cam2", "--lidar", "velodyne", "--out", str(tmp_path / "overlay.png"),
               "--json"])  # fmt: skip
    chk = json.loads(capsys.readouterr().out)
    assert rc == 0, chk
    uv, w = _devkit_uv(2, _sweep())
    with np.errstate(invalid="ignore"):
        inside = (w > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 1242) & (uv[:, 1] >= 0) & (uv[:, 1] < 375)
    want = int(inside.sum())
    assert want > 10000  # a 64-beam sweep over a 90° image
    assert abs(chk["points_in_image"] - want) <= 2, (chk["points_in_image"], want)  # pixel-border rounding
    assert cv2.imread(str(tmp_path / "overlay.png")).shape == (375, 1242, 3)


def test_an_image_of_another_size_wins_and_is_reported(tmp_path, capsys):
    """Drives differ in size (1224–1242 × 370–376): an image of another drive's size is the camera's, and
    the report names the declared size it overrode; check then runs on images of that size."""
    img = tmp_path / "other.png"
    cv2.imwrite(str(img), np.zeros((370, 1224, 3), np.uint8))
    out = tmp_path / "k.yaml"
    rc = main(["calibrate", "import", "--from", "kitti-raw", str(DATA), "--image", str(img),
               "--out", str(out), "--json"])  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["image_size"]["cam0"] == [1224, 370]
    assert len(r["notes"]) == 1 and "S_rect_00, S_rect_01, S_rect_02, S_rect_03" in r["notes"][0]
    assert "1242×375" in r["notes"][0] and "1224×370" in r["notes"][0]
    rc = main(["calibrate", "check", "--image", str(img), "--cloud", str(SWEEP), "--calib", str(out),
               "--camera", "cam2", "--lidar", "velodyne", "--out", str(tmp_path / "o.png"),
               "--json"])  # fmt: skip
    assert rc == 0 and json.loads(capsys.readouterr().out)["points_in_image"] > 10000


def test_the_files_named_one_by_one_and_without_the_imu(tmp_path):
    cc, vc = DATA / "calib_cam_to_cam.txt", DATA / "calib_velo_to_cam.txt"
    calib, _notes = kitti_raw_to_calibration([cc, vc])
    assert calib.provenance["base_frame"] == "velodyne" and "imu" not in calib.extrinsics
    X = _sweep()[:50]
    T = calib.extrinsics["cam3"].inverse() @ calib.extrinsics["velodyne"]
    X = X[T.apply(X)[:, 2] > 1.0]
    np.testing.assert_allclose(calib.cameras["cam3"].project(T.apply(X))[0], _devkit_uv(3, X)[0], atol=0.01)


@pytest.mark.parametrize(
    "which,edit,match",
    [
        (None, None, "calib_velo_to_cam.txt: missing"),
        ("calib_velo_to_cam.txt", ("R:", "R: 1 0 0 0 1 0 0 0 2"), "R: expected a rotation matrix"),
        ("calib_cam_to_cam.txt", ("S_rect_02:", "S_rect_02: 1242.5 375"), "S_rect_02: expected a size"),
        ("calib_cam_to_cam.txt", ("corner_dist:", "corner_dist: n/a"), r"corner_dist\): expected numbers"),
    ],
)
def test_bad_raw_calibrations_name_the_file_and_key(tmp_path, which, edit, match):
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        text = (DATA / name).read_text()
        if name == which:
            text = "\n".join(edit[1] if line.startswith(edit[0]) else line for line in text.splitlines())
        if which is not None or name != "calib_velo_to_cam.txt":
            (tmp_path / name).write_text(text)
    with pytest.raises(CalibImportError, match=match):
        kitti_raw_to_calibration([tmp_path])


def test_cli_refuses_what_does_not_fit(tmp_path, capsys):
    out = str(tmp_path / "k.yaml")
    rc = main(["calibrate", "import", "--from", "kitti-raw", str(DATA / "README.md"), "--out", out])
    assert rc == 2 and "expected one of KITTI raw's calibration files" in capsys.readouterr().err
    rc = main(["calibrate", "import", "--from", "kitti-raw", str(DATA), "--width", "1242", "--out", out])
    assert rc == 2 and "--width/--height are for KITTI object files" in capsys.readouterr().err


def test_kitti_text_values_and_keys_without_a_colon():
    """Raw files carry ``calib_time: 09-Jan-2012 13:57:47`` (kept as text); the tracking benchmark writes
    ``R_rect 9.999e-01 …`` without the colon."""
    nums, texts = parse_kitti_calib("calib_time: 09-Jan-2012 13:57:47\nR_rect 1 0 0 0 1 0 0 0 1\nT: 1 2 3\n")
    assert texts == {"calib_time": "09-Jan-2012 13:57:47"}
    np.testing.assert_array_equal(nums["R_rect"], np.eye(3).ravel())
    np.testing.assert_array_equal(nums["T"], [1.0, 2.0, 3.0])
    with pytest.raises(CalibImportError, match=r"line 1 \(delta_f\): expected numbers"):
        parse_kitti_calib("delta_f: none", "x.txt")
