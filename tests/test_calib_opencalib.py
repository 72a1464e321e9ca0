"""A real calibration from another tool: OpenCalib's camera + LiDAR sample (tests/data/opencalib_lidar2camera,
Apache-2.0). ``calibrate import --from opencalib`` then ``calibrate check``: the points it puts in the image
agree (±1 %) with an independent projection — pypcd4 reads the sweep, OpenCV's ``projectPoints`` projects it
with the JSON files' own K, distortion and 4 × 4 transform — and an overlay is written. The file declares
1920 × 1080 for a 1920 × 1200 image: the image wins, and the import says so."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefuse.cli import main
from edgefuse.rig import load_calibration

DATA = Path(__file__).parent / "data" / "opencalib_lidar2camera"
INTR, EXTR = DATA / "center_camera-intrinsic.json", DATA / "top_center_lidar-to-center_camera-extrinsic.json"


def _independent_points_in_image() -> int:
    pypcd4 = pytest.importorskip("pypcd4")
    xyz = pypcd4.PointCloud.from_path(DATA / "0.pcd").numpy(("x", "y", "z")).astype(np.float64)
    intr = json.loads(INTR.read_text())["center_camera-intrinsic"]["param"]
    K = np.array(intr["cam_K"]["data"], np.float64)
    dist = np.array(intr["cam_dist"]["data"], np.float64).ravel()
    M = np.array(json.loads(EXTR.read_text())["top_center_lidar-to-center_camera-extrinsic"]["param"]
                 ["sensor_calib"]["data"], np.float64)  # fmt: skip
    cam = xyz @ M[:3, :3].T + M[:3, 3]
    front = cam[:, 2] > 0
    uv, _ = cv2.projectPoints(cam[front], np.zeros(3), np.zeros(3), K, dist)
    uv = uv.reshape(-1, 2)
    h, w = cv2.imread(str(DATA / "0.png")).shape[:2]
    return int(((uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)).sum())


def test_opencalib_import_then_check_agrees_with_an_independent_projection(tmp_path, capsys):
    out = tmp_path / "calib.yaml"
    rc = main(["calibrate", "import", "--from", "opencalib", str(INTR), str(EXTR),
               "--image", str(DATA / "0.png"), "--out", str(out), "--json"])  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["image_size"] == {"center_camera": [1920, 1200]}
    assert any("1920×1080" in n and "1920×1200" in n for n in r["notes"]), r["notes"]
    c = load_calibration(out)
    assert c.parents == {"center_camera": "top_center_lidar"}  # the camera hangs off its LiDAR
    rc = main(["calibrate", "check", "--image", str(DATA / "0.png"), "--cloud", str(DATA / "0.pcd"),
               "--calib", str(out), "--camera", "center_camera", "--lidar", "top_center_lidar",
               "--out", str(tmp_path / "overlay.png"), "--json"])  # fmt: skip
    chk = json.loads(capsys.readouterr().out)
    assert rc == 0, chk
    want = _independent_points_in_image()
    assert want > 5000  # poles, trees, the car (the data's README: about 9,900)
    assert abs(chk["points_in_image"] - want) <= 0.01 * want, (chk["points_in_image"], want)
    assert cv2.imread(str(tmp_path / "overlay.png")).shape == (1200, 1920, 3)


def test_opencalib_files_swapped_or_mismatched_are_refused(tmp_path, capsys):
    out = tmp_path / "c.yaml"
    rc = main(["calibrate", "import", "--from", "opencalib", str(EXTR), str(INTR), "--out", str(out)])
    assert rc == 2 and "param_type: expected 'intrinsic'" in capsys.readouterr().err
    rc = main(["calibrate", "import", "--from", "opencalib", str(INTR), "--out", str(out)])
    assert rc == 2 and "expected INTRINSIC.json EXTRINSIC.json" in capsys.readouterr().err
