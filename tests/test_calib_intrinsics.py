"""Intrinsics: accuracy against the sim's true camera, OpenCV reference, view rejection, bad input, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from edgefuse.calib.boards import BoardSpecError, Corners, parse_board
from edgefuse.calib.common import CalibrationError
from edgefuse.calib.intrinsics import View, calibrate_intrinsics, detect_views, intrinsics_gates
from edgefuse.calib.simdata import intrinsics_views
from edgefuse.cli import main
from edgefuse.sim.rig import sim_camera

BOARD = "chessboard:7x5:0.1"  # the simulator's board-a: 8 × 6 squares of 0.1 m


@pytest.fixture(scope="module")
def pinhole_views():
    imgs = intrinsics_views("pinhole", 20, seed=1)
    views, missing, size = detect_views(imgs, parse_board(BOARD), progress=False)
    return imgs, views, missing, size


def _check_accuracy(cam, truth) -> None:
    f_err = np.abs(np.diag(cam.K)[:2] / np.diag(truth.K)[:2] - 1.0)
    c_err = np.abs(cam.K[:2, 2] - truth.K[:2, 2])
    assert f_err.max() < 0.005, f"focal error {f_err * 100} %"
    assert c_err.max() < 1.0, f"principal point error {c_err} px"


def test_pinhole_accuracy_against_sim_truth(pinhole_views):
    _imgs, views, missing, size = pinhole_views
    assert not missing and size == (1280, 720)
    r = calibrate_intrinsics(views, parse_board(BOARD), size, "pinhole")
    _check_accuracy(r.camera, sim_camera("pinhole"))
    assert r.rms < 0.5 and not r.rejected


def test_opencv_reference_gives_the_same_result(pinhole_views):
    """The same corners straight through cv2.calibrateCamera: same K and distortion (no view rejected)."""
    _imgs, views, _missing, size = pinhole_views
    board = parse_board(BOARD)
    r = calibrate_intrinsics(views, board, size, "pinhole")
    assert not r.rejected
    c, rws = 7, 5
    grid = np.zeros((c * rws, 3), np.float32)
    grid[:, 0] = np.tile(np.arange(c), rws) * 0.1  # OpenCV tutorial layout: origin at the first corner
    grid[:, 1] = np.repeat(np.arange(rws), c) * 0.1
    rms, K, dist, _, _ = cv2.calibrateCamera(
        [grid] * len(views), [v.corners.uv.astype(np.float32) for v in views], size, None, None
    )
    np.testing.assert_allclose(r.camera.K, K, rtol=1e-4, atol=0.02)
    np.testing.assert_allclose(r.camera.distortion, dist.ravel()[:5], atol=2e-4)
    assert abs(r.rms - rms) < 1e-3


def test_bad_view_is_rejected_and_refit(pinhole_views):
    _imgs, views, _missing, size = pinhole_views
    bad = views[3]
    rng = np.random.default_rng(0)
    noisy = bad.corners.uv + rng.normal(0, 4.0, bad.corners.uv.shape)
    corrupted = View("corrupt", Corners(bad.corners.ids, noisy))
    r = calibrate_intrinsics(views[:3] + [corrupted] + views[4:], parse_board(BOARD), size, "pinhole")
    assert list(r.rejected) == ["corrupt"]
    assert "corrupt" not in r.used and len(r.used) == len(views) - 1
    _check_accuracy(r.camera, sim_camera("pinhole"))


def test_fisheye_accuracy_against_sim_truth():
    imgs = intrinsics_views("fisheye", 14, seed=2)
    views, _missing, size = detect_views(imgs, parse_board(BOARD), progress=False)
    r = calibrate_intrinsics(views, parse_board(BOARD), size, "fisheye")
    assert r.camera.model == "fisheye"
    _check_accuracy(r.camera, sim_camera("fisheye"))


def test_rational_model_fits_a_wide_lens_like_opencv():
    """``--model rational`` on the simulator's wide (equidistant) lens: the same corners straight through
    cv2.calibrateCamera with CALIB_RATIONAL_MODEL give the same K and 8 coefficients, focal length and
    principal point are the true camera's, and the quality gates pass."""
    imgs = intrinsics_views("fisheye", 14, seed=2)
    views, _missing, size = detect_views(imgs, parse_board(BOARD), progress=False)
    r = calibrate_intrinsics(views, parse_board(BOARD), size, "rational")
    assert r.camera.model == "rational" and r.camera.distortion.shape == (8,) and not r.rejected
    assert set(r.std) == {"fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"}
    c, rws = 7, 5
    grid = np.zeros((c * rws, 3), np.float32)
    grid[:, 0] = np.tile(np.arange(c), rws) * 0.1
    grid[:, 1] = np.repeat(np.arange(rws), c) * 0.1
    _rms, K, dist, _, _ = cv2.calibrateCamera(
        [grid] * len(views), [v.corners.uv.astype(np.float32) for v in views], size, None, None,
        flags=cv2.CALIB_RATIONAL_MODEL,
    )  # fmt: skip
    np.testing.assert_allclose(r.camera.K, K, rtol=1e-4, atol=0.05)
    np.testing.assert_allclose(r.camera.distortion, dist.ravel()[:8], atol=1e-3)
    _check_accuracy(r.camera, sim_camera("fisheye"))
    assert r.rms < 0.5
    assert all(g.ok for g in intrinsics_gates(r, 1.0)), [g.line() for g in intrinsics_gates(r, 1.0)]


def test_rational_fit_of_a_mild_lens_with_a_pole_in_the_image_is_refused(pinhole_views):
    """The simulator's mild plumb-bob lens under-determines the rational model: OpenCV's fit puts a pole
    (numerator and denominator crossing zero together) inside the image, just past the boards' reach.
    Its reprojection error is low, but the undistorted image would fold over there: the gate refuses."""
    _imgs, views, _missing, size = pinhole_views
    r = calibrate_intrinsics(views, parse_board(BOARD), size, "rational")
    assert r.rms < 0.5
    failed = [g.name for g in intrinsics_gates(r, 1.0) if not g.ok]
    assert failed == ["distortion slope to the image corner"]


def test_rational_gate_is_the_lens_not_the_coefficient_size():
    """A rational fit's coefficients may be large and cancel (a depth camera's factory magnitudes): that
    passes; one whose distortion folds back before the image corner does not."""
    from edgefuse.calib.intrinsics import IntrinsicsResult
    from edgefuse.geometry import CameraModel

    K = np.array([[202.6, 0, 124.3], [0, 202.6, 127.3], [0, 0, 1]])
    names = [f"v{k}" for k in range(12)]

    def failed(dist):
        cam = CameraModel(250, 250, K, dist, "rational")
        res = IntrinsicsResult(cam, 0.2, dict.fromkeys(names, 0.2), names, {})
        return {g.name for g in intrinsics_gates(res, 1.0) if not g.ok}

    assert failed([-3.5, -38.6, 3e-4, -1e-4, 286.4, -3.6, -36.7, 279.1]) == set()
    assert failed([-0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) == {"distortion slope to the image corner"}


@pytest.mark.slow
@pytest.mark.parametrize("model,seed", [("pinhole", 5), ("pinhole", 6), ("fisheye", 7)])
def test_accuracy_more_seeds(model, seed):
    imgs = intrinsics_views(model, 18, seed=seed)
    views, _missing, size = detect_views(imgs, parse_board(BOARD), progress=False)
    r = calibrate_intrinsics(views, parse_board(BOARD), size, model)
    _check_accuracy(r.camera, sim_camera(model))


# ---------------------------------------------------------------- bad input


def test_no_board_found_says_what_to_capture():
    blank = [(f"blank{i}.png", np.full((720, 1280, 3), 128, np.uint8)) for i in range(3)]
    views, missing, size = detect_views(blank, parse_board(BOARD), progress=False)
    with pytest.raises(CalibrationError, match=r"no chessboard:7x5:0.1 board found in any of the 3 images"):
        calibrate_intrinsics(views, parse_board(BOARD), size, "pinhole", missing=missing)


def test_too_few_views(pinhole_views):
    _imgs, views, _missing, size = pinhole_views
    with pytest.raises(CalibrationError, match=r"only 3 view\(s\).*capture 2 or more views"):
        calibrate_intrinsics(views[:3], parse_board(BOARD), size, "pinhole")


def test_degenerate_parallel_boards():
    """Boards all facing the camera squarely (made with cv2.projectPoints, not the code under test)."""
    board = parse_board(BOARD)
    K = np.array([[800.0, 0, 640], [0, 800, 360], [0, 0, 1]])
    obj = board.object_points()
    views = []
    for i, (x, y, z) in enumerate(
        [
            (-0.5, -0.2, 2.0),
            (0.4, 0.1, 2.5),
            (0.0, 0.3, 3.0),
            (0.6, -0.3, 2.2),
            (-0.3, 0.2, 1.8),
            (0.2, -0.1, 2.8),
        ]
    ):
        uv, _ = cv2.projectPoints(obj, np.zeros(3), np.array([x, y, z]), K, np.zeros(5))
        views.append(View(f"v{i}", Corners(np.arange(len(obj)), uv.reshape(-1, 2))))
    with pytest.raises(CalibrationError, match=r"nearly parallel.*tilted"):
        calibrate_intrinsics(views, board, (1280, 720), "pinhole")


def test_image_of_wrong_size_is_named(pinhole_views):
    imgs = pinhole_views[0][:2] + [("small.png", np.zeros((480, 640, 3), np.uint8))]
    with pytest.raises(
        CalibrationError, match=r"small.png: image size 640x480 differs from the set's 1280x720"
    ):
        detect_views(imgs, parse_board(BOARD), progress=False)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("chessboard:7x5", "expected 3"),
        ("chessboard:7by5:0.1", "COLSxROWS"),
        ("chessboard:7x5:-1", "positive size"),
        ("charuco:5x7:0.04:0.05:DICT_5X5_100", "less than the square size"),
        ("charuco:5x7:0.04:0.03:NOPE", "ArUco dictionary"),
        ("circles:4x11:0.02", "expected 'chessboard"),
    ],
)
def test_bad_board_specs(spec, match):
    with pytest.raises(BoardSpecError, match=match):
        parse_board(spec)


def test_charuco_board_views():
    """ChArUco: a board image made by OpenCV, warped into views of a known pinhole camera."""
    board = parse_board("charuco:7x5:0.04:0.03:DICT_5X5_100")
    from edgefuse.calib.boards import charuco_board

    ppm = 2500  # pixels per metre of the printed pattern
    art = charuco_board(board).generateImage((int(7 * 0.04 * ppm), int(5 * 0.04 * ppm)), marginSize=0)
    K = np.array([[900.0, 0, 652.0], [0, 900.0, 355.0], [0, 0, 1]])
    rng = np.random.default_rng(3)
    imgs = []
    for i in range(14):
        rv = rng.uniform(-0.5, 0.5, 3) * np.array([1, 1, 0.3])
        t = np.array([rng.uniform(-0.3, 0.15), rng.uniform(-0.18, 0.08), rng.uniform(0.45, 0.7)])
        R = cv2.Rodrigues(rv)[0]
        # pattern pixel (a, b) (its centre; the pattern's edge is at −0.5)
        # → board point ((a + ½)/ppm, (b + ½)/ppm, 0)
        H = K @ np.column_stack([R[:, 0] / ppm, R[:, 1] / ppm, t + (R[:, 0] + R[:, 1]) * 0.5 / ppm])
        img = cv2.warpPerspective(art, H, (1280, 720), flags=cv2.INTER_LINEAR, borderValue=255)
        imgs.append((f"c{i}", img))
    views, missing, size = detect_views(imgs, board, progress=False)
    assert len(views) >= 6, missing
    r = calibrate_intrinsics(views, board, size, "pinhole")
    assert r.rms < 0.5
    assert abs(r.camera.K[0, 0] / 900.0 - 1) < 0.005 and np.abs(r.camera.K[:2, 2] - [652, 355]).max() < 2.0


# ---------------------------------------------------------------- CLI


def test_cli_intrinsics_writes_camera_info_and_reports(tmp_path, pinhole_views, capsys):
    for name, img in pinhole_views[0]:  # all 20 (the first 12 cover 58 % of the image: the gate refuses)
        cv2.imwrite(str(tmp_path / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    calib = tmp_path / "calib.yaml"
    from edgefuse.rig import load_calibration, save_calibration
    from edgefuse.sim.rig import sim_calibration

    save_calibration(sim_calibration(), calib)
    out = tmp_path / "cam.yaml"
    rc = main(
        [
            "calibrate",
            "intrinsics",
            "--images",
            str(tmp_path / "view*.png"),
            "--board",
            BOARD,
            "--out",
            str(out),
            "--calib",
            str(calib),
            "--camera",
            "cam_front",
            "--json",
        ]
    )
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    assert r["views_used"] == len(pinhole_views[1]) and r["rms"] < 0.5 and r["coverage"] > 0.8
    assert r["written"] and all(g["ok"] for g in r["gates"])
    assert (tmp_path / "cam.coverage.png").is_file() and (tmp_path / "cam.errors.png").is_file()
    info = yaml.safe_load(out.read_text())
    assert info["distortion_model"] == "plumb_bob"
    K = np.array(info["camera_matrix"]["data"]).reshape(3, 3)
    np.testing.assert_allclose(K, r["camera_matrix"], atol=1e-3)
    updated = load_calibration(calib)
    np.testing.assert_allclose(updated.cameras["cam_front"].K, K, atol=1e-3)
    assert "intrinsics.cam_front" in updated.provenance
    assert (tmp_path / "calib.yaml.bak").is_file()


def test_cli_no_images_is_one_line_error(tmp_path, capsys):
    rc = main(
        [
            "calibrate",
            "intrinsics",
            "--images",
            str(tmp_path / "*.png"),
            "--board",
            BOARD,
            "--out",
            str(tmp_path / "x.yaml"),
        ]
    )
    assert rc == 2
    assert "no files match" in capsys.readouterr().err


# ---------------------------------------------------------------- quality gates


def test_a_good_session_passes_every_gate(pinhole_views, tmp_path):
    from edgefuse.calib.intrinsics import intrinsics_gates

    _imgs, views, missing, size = pinhole_views
    from edgefuse.calib.intrinsics import coverage_png

    r = calibrate_intrinsics(views, parse_board(BOARD), size, "pinhole", missing=missing)
    covered = coverage_png(views, size, tmp_path / "c.png")
    failed = [g.line() for g in intrinsics_gates(r, covered) if not g.ok]
    assert not failed, failed


def test_gates_catch_a_far_principal_point_and_a_diverged_fisheye():
    """Hand-made results: the principal point 200 px off a 1280-wide image's centre, and a fisheye with
    k4 = −298 (the issue's two cases the tool wrote without a word)."""
    from dataclasses import replace

    from edgefuse.calib.intrinsics import IntrinsicsResult, intrinsics_gates

    cam = sim_camera()
    K = cam.K.copy()
    K[0, 2] = cam.width / 2 + 200
    names = [f"v{k}" for k in range(12)]
    off = IntrinsicsResult(replace(cam, K=K), 0.2, dict.fromkeys(names, 0.2), names, {})
    assert {g.name for g in intrinsics_gates(off, 1.0) if not g.ok} == {"principal point offset"}
    fish = replace(cam, model="fisheye", distortion=np.array([0.1, -0.02, 0.3, -298.0]))
    bad = IntrinsicsResult(fish, 0.2, dict.fromkeys(names, 0.2), names, {})
    assert {g.name for g in intrinsics_gates(bad, 1.0) if not g.ok} == {"largest distortion coefficient"}


def test_cli_refuses_views_that_leave_a_third_of_the_image_empty(tmp_path, pinhole_views, capsys):
    """Only views whose corners stay in the left 60 % of the image (8 views, 52 % of the grid's cells):
    the coverage gate refuses; nothing is written but the PNG reports; ``--force`` writes and records it."""
    _imgs, views, _missing, size = pinhole_views
    left = [v.name for v in views if v.corners.uv[:, 0].max() < 0.6 * size[0]]
    for name, img in pinhole_views[0]:
        if name in left:
            cv2.imwrite(str(tmp_path / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert len(left) >= 4, len(left)
    out = tmp_path / "cam.yaml"
    args = ["calibrate", "intrinsics", "--images", str(tmp_path / "view*.png"), "--board", BOARD,
            "--out", str(out)]  # fmt: skip
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and "not written: " in err and not out.exists(), err
    assert (tmp_path / "cam.coverage.png").is_file()  # the report that shows why
    rc = main([*args, "--dry-run", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and not r["written"] and not out.exists()
    assert any(line.startswith("coverage") for line in r["failed_gates"]), r["failed_gates"]
    rc = main([*args, "--force", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["written"] and out.is_file() and any(f.startswith("coverage") for f in r["forced"])


def test_sigma_per_parameter_is_reported_and_honest(pinhole_views):
    """OpenCV's standard deviations of the intrinsics: every one reported, and the errors against the
    simulator's true camera within 4 σ (the σ are not a decoration)."""
    _imgs, views, missing, size = pinhole_views
    r = calibrate_intrinsics(views, parse_board(BOARD), size, "pinhole", missing=missing)
    assert set(r.std) == {"fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3"}
    assert all(v > 0 for v in r.std.values())
    truth = sim_camera()
    err = {"fx": r.camera.K[0, 0] - truth.K[0, 0], "fy": r.camera.K[1, 1] - truth.K[1, 1],
           "cx": r.camera.K[0, 2] - truth.K[0, 2], "cy": r.camera.K[1, 2] - truth.K[1, 2]}  # fmt: skip
    assert all(abs(e) < 4 * r.std[k] for k, e in err.items()), (err, r.std)
    assert r.to_dict()["std"]["fx"] == round(r.std["fx"], 6)


def test_a_legacy_charuco_board_is_found_and_messages_count_its_squares():
    """A 7 × 6 board (an even number of rows: OpenCV 4.6 moved its markers) printed in the legacy layout,
    as OpenCV < 4.6 and many shops make it: found by the plain spec (both layouts tried) and by
    ``:legacy``, not by ``:new``; same corners either way. A board not found is described in its own
    vocabulary (squares for ChArUco, inner corners for a chessboard)."""
    import cv2 as _cv2

    from edgefuse.calib.boards import charuco_board, detect_corners

    spec = "charuco:7x6:0.04:0.03:DICT_5X5_100"
    legacy_board = charuco_board(parse_board(spec), legacy=True)
    art = legacy_board.generateImage((7 * 100, 6 * 100), marginSize=40)
    img = _cv2.cvtColor(art, _cv2.COLOR_GRAY2RGB)
    auto, old = detect_corners(img, parse_board(spec)), detect_corners(img, parse_board(spec + ":legacy"))
    assert auto is not None and old is not None and len(auto.ids) == 30  # (7 − 1) × (6 − 1) corners
    np.testing.assert_array_equal(auto.ids, old.ids)
    assert detect_corners(img, parse_board(spec + ":new")) is None
    assert parse_board(spec + ":legacy").describe() == spec + ":legacy"
    with pytest.raises(CalibrationError, match="counts the squares"):
        calibrate_intrinsics([], parse_board(spec), (1280, 720), "pinhole", missing=["a.png"])
    with pytest.raises(CalibrationError, match="counts the inner corners"):
        calibrate_intrinsics([], parse_board(BOARD), (1280, 720), "pinhole", missing=["a.png"])


def test_views_and_poses_are_labelled_by_file_name_or_time():
    from edgefuse.calib.intrinsics import view_labels

    assert view_labels(["/data/cam/img_0003.png", "img_0010.png"]) == ["img_0003.png", "img_0010.png"]
    log = ["cam_front@1000000000+lidar_top@999000000", "cam_front@13340000000+lidar_top@13339000000"]
    assert view_labels(log) == ["t+0.00 s", "t+12.34 s"]
