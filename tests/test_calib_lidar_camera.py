"""LiDAR → camera extrinsics on the simulator's calibration-board scenario, against sim_calibration()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefuse.calib.boards import load_target
from edgefuse.calib.common import CalibrationError
from edgefuse.calib.lidar_camera import (
    fit_plane_rays,
    group_holds,
    solve_lidar_camera,
    transform_error,
)
from edgefuse.calib.lidar_camera_board import BoardObservation, board_observation, fit_plane_ransac
from edgefuse.calib.simdata import lidar_camera_frames, static_board_frames
from edgefuse.cli import main
from edgefuse.geometry import Transform, matrix_to_rotvec
from edgefuse.logs import Recorder
from edgefuse.rig import load_calibration, save_calibration
from edgefuse.sim.rig import sim_calibration
from edgefuse.types import Image, Message

BOARD = "calibration/targets/board-a.yaml"
FRAMES_PER_POSE = 6  # camera image + LiDAR sweep pairs per board hold (a log gives ~6-20)


def _truth() -> Transform:
    c = sim_calibration()
    return c.extrinsics["cam_front"].inverse() @ c.extrinsics["lidar_top"]


def _initial() -> Transform:
    """The truth disturbed by 5 cm and ~2°: what a tape measure and a CAD drawing give."""
    return Transform.from_rpy([0.05, -0.04, 0.03], 0.02, -0.03, 0.03) @ _truth()


def _observations(frames):
    calib = sim_calibration()
    board = load_target(BOARD)
    obs = []
    for k, (img, cloud, _t) in enumerate(frames):
        o = board_observation(f"f{k}", img, cloud, board, calib.cameras["cam_front"], _initial())
        assert not isinstance(o, str), o
        obs.append(o)
    return obs


@pytest.fixture(scope="module")
def frames_seed0():
    return lidar_camera_frames(0, frames_per_pose=FRAMES_PER_POSE)


def test_plane_ransac_recovers_a_plane_with_outliers():
    rng = np.random.default_rng(0)
    n = np.array([0.3, -0.2, 0.93])
    n /= np.linalg.norm(n)
    u = np.cross(n, [1.0, 0, 0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    a, b = rng.uniform(-1, 1, (2, 400))
    pts = 2.0 * n + a[:, None] * u + b[:, None] * v + rng.normal(0, 0.005, (400, 1)) * n
    pts = np.vstack([pts, rng.uniform(-2, 2, (150, 3))])
    n_est, d, inl = fit_plane_ransac(pts, threshold_m=0.02)
    assert abs(abs(n_est @ n) - 1) < 1e-4 and abs(abs(d) - 2.0) < 2e-3
    assert inl[:400].mean() > 0.99 and inl[400:].mean() < 0.1


def _range_noise_plane(rng, n_points: int, tilt_deg: float, sigma_m: float):
    """Points of a 0.9 × 0.7 m plate 4 m in front of a LiDAR at the origin, turned ``tilt_deg`` about
    the vertical, with Gaussian range noise (along each ray): (points (K, 3), true n, true d)."""
    a = np.radians(tilt_deg)
    n = np.array([-np.cos(a), np.sin(a), 0.0])  # facing the sensor (x forward), turned
    centre = np.array([4.0, 0.3, 0.2])
    u = np.cross(n, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    s, h = rng.uniform(-0.45, 0.45, n_points), rng.uniform(-0.35, 0.35, n_points)
    p = centre + s[:, None] * u + h[:, None] * np.array([0.0, 0.0, 1.0])
    rho = np.linalg.norm(p, axis=1)
    p = p * ((rho + rng.normal(0, sigma_m, n_points)) / rho)[:, None]
    return p, n, float(n @ centre)


def test_ray_plane_fit_is_unbiased_where_point_to_plane_is_not():
    """2 cm range noise on a board turned 40°: the SVD (point-to-plane) normal is tilted towards the
    rays by ~σ²·sin·cos/var(in-plane) ≈ 0.17°; the range-residual fit is not, and its covariance holds."""
    rng = np.random.default_rng(3)
    p, n, d = _range_noise_plane(rng, 40000, 40.0, 0.02)
    c = p.mean(axis=0)
    n_svd = np.linalg.svd(p - c, full_matrices=False)[2][2]
    start = n + np.array([0.0, 0.02, 0.02])  # ~1.6° off, as from the camera and an initial calibration
    fit = fit_plane_rays(p, start / np.linalg.norm(start), d + 0.03)
    ang = lambda m: float(np.degrees(np.arccos(min(1.0, abs(m @ n)))))  # noqa: E731
    assert ang(n_svd) > 0.1, ang(n_svd)
    assert ang(fit.n) < 0.04, ang(fit.n)
    assert abs(fit.d - d) < 0.002 and abs(fit.sigma_m - 0.02) < 0.001
    # the covariance: normalized errors over repeated fits are χ² with 3 degrees of freedom (mean 3)
    chi2 = []
    for _ in range(40):
        p, n, d = _range_noise_plane(rng, 2000, 40.0, 0.02)
        f = fit_plane_rays(p, n, d)
        off = (f.d - f.n @ f.centre) - (d - n @ f.centre)  # offset error at the fit's centre
        e = np.array([f.basis[0] @ n, f.basis[1] @ n, off])
        e[:2] *= -1.0  # the true normal's tilt seen from the fit: the fit's error has the opposite sign
        chi2.append(float(e @ np.linalg.solve(f.cov, e)))
    assert 2.0 < np.mean(chi2) < 4.2, np.mean(chi2)


def _check_accuracy(r, where: str) -> None:
    dt, dr = transform_error(r.T_cam_lidar, _truth())
    # issue 19's target on the realistic simulator (per-laser biases, range walk, mixed returns, sway)
    assert dt < 0.02, (where, dt)
    assert dr < 0.2, (where, dr)
    # the reported 1-σ are honest: each axis' error within 4 σ
    err_rot = np.degrees(matrix_to_rotvec(r.T_cam_lidar.rotation @ _truth().rotation.T))
    assert np.all(np.abs(err_rot) < 4 * r.std_rotation_deg), (where, err_rot, r.std_rotation_deg)


def test_lidar_camera_accuracy_seed0(frames_seed0):
    r = solve_lidar_camera(_observations(frames_seed0), load_target(BOARD))
    # 16 holds; the swaying board splits a hold into sub-poses where it moved by more than 0.2°
    assert len(r.used) >= 16 and r.frames >= 15 * FRAMES_PER_POSE
    _check_accuracy(r, "seed 0")
    assert r.rms_m < 0.03 and np.all(r.std_translation_m < 0.015) and np.all(r.std_rotation_deg < 0.15)
    from edgefuse.calib.lidar_camera import lidar_camera_gates

    failed = [g.line() for g in lidar_camera_gates(r, _initial(), 1.0) if not g.ok]
    assert not failed, failed  # the documented session passes every gate
    # leave one pose out: each pose predicted by the others about as well as it fits in the full solve
    loo = r.leave_one_out_m
    assert set(loo) == set(r.used)
    assert max(loo.values()) < 0.06 and np.median(list(loo.values())) < 1.5 * np.median(
        list(r.per_pose_rms_m.values())
    ), (loo, r.per_pose_rms_m)


@pytest.mark.slow
def test_lidar_camera_median_over_seeds_on_the_realistic_simulator(frames_seed0):
    """Issue 19: with the calibration scenario's LiDAR imperfections and the swaying board (on by default),
    the documented procedure (16 holds × 6 frames) stays within 2 cm / 0.2° in the median over 5 seeds.
    The simulator no longer shares the solver's old assumption (pure range noise): solved without the
    range model (per-laser offsets, range walk), the same data give a clearly worse result."""
    board = load_target(BOARD)
    errs, old = [], []
    for seed in range(5):
        frames = frames_seed0 if seed == 0 else lidar_camera_frames(seed, frames_per_pose=FRAMES_PER_POSE)
        obs = _observations(frames)
        r = solve_lidar_camera(obs, board, leave_one_out=False)
        errs.append(transform_error(r.T_cam_lidar, _truth()))
        if seed < 2:
            r = solve_lidar_camera(obs, board, leave_one_out=False, range_model=False)
            old.append(transform_error(r.T_cam_lidar, _truth()))
    dt, dr = np.median(np.array(errs), axis=0)
    assert dt <= 0.02 and dr <= 0.2, errs
    assert min(e[1] for e in old) > 0.2, (old, errs[:2])  # the old solver misses the target on both


def test_boards_facing_the_camera_leave_the_line_of_sight_weak():
    """Boards tilted only 10° (five, spread over the image), an ideal LiDAR, no range model: the roll about
    the line of sight is the weak axis, and the result says so (with what to capture). With the range model
    (per-laser offsets) such boards leave the pitch weak too, and that is said as well."""
    a = np.radians(10.0)
    placements = [
        ([-1.2, -0.3, 4.0], [0.0, a, 0.0]),
        ([1.2, -0.3, 4.5], [0.0, -a, 0.0]),
        ([0.0, 0.4, 3.5], [a, 0.0, 0.0]),
        ([-0.8, 0.5, 5.0], [-a, 0.0, 0.0]),
        ([0.9, 0.3, 4.0], [0.7 * a, 0.7 * a, 0.0]),
    ]
    obs = _observations(static_board_frames(placements, 0, 3))
    with_offsets = solve_lidar_camera(obs, load_target(BOARD))
    assert any("line of sight" in w for w in with_offsets.warnings), with_offsets.warnings
    assert any("image right" in w for w in with_offsets.warnings), with_offsets.warnings
    r = solve_lidar_camera(obs, load_target(BOARD), range_model=False)
    assert len(r.used) == 5
    std = r.std_rotation_deg
    assert std[2] > 2 * max(std[0], std[1]) and std[2] > 0.2, std
    assert any("line of sight" in w for w in r.warnings), r.warnings
    err_rot = np.degrees(matrix_to_rotvec(r.T_cam_lidar.rotation @ _truth().rotation.T))
    assert np.all(np.abs(err_rot) < 4 * std), (err_rot, std)


def test_frames_of_a_hold_are_grouped(frames_seed0):
    obs = _observations(frames_seed0[: 2 * FRAMES_PER_POSE])  # two holds
    o = obs[0]
    # the same board with its corners found in the other order (turned by π about its normal)
    flipped = BoardObservation(
        "flipped",
        Transform(o.T_cam_board.rotation @ np.diag([-1.0, -1.0, 1.0]), o.T_cam_board.translation),
        o.points_lidar,
        o.pnp_rms_px,
        o.pose_cov,
    )
    groups = group_holds([*obs, flipped])
    F = FRAMES_PER_POSE
    assert groups == [[*range(F), 2 * F], list(range(F, 2 * F))], groups


def test_too_few_poses(frames_seed0):
    obs = _observations(frames_seed0[: 2 * FRAMES_PER_POSE])  # the frames of two holds
    with pytest.raises(CalibrationError, match=r"only 2 usable board pose\(s\); need at least 3"):
        solve_lidar_camera(obs, load_target(BOARD))


def test_parallel_poses_are_degenerate(frames_seed0):
    o = _observations(frames_seed0[:1])[0]
    # the same board plane, slid along itself: three poses, one normal
    shifted = [
        BoardObservation(
            f"p{k}",
            Transform(o.T_cam_board.rotation, o.T_cam_board.translation + k * o.T_cam_board.rotation[:, 0]),
            o.points_lidar,
            o.pnp_rms_px,
            o.pose_cov,
        )
        for k in range(3)
    ]
    with pytest.raises(CalibrationError, match=r"nearly parallel"):
        solve_lidar_camera(shifted, load_target(BOARD))


def _board_log(path, frames):
    """An MCAP log of (image, cloud, stamp) frames as the rig records them, with the true calibration."""
    with Recorder(path, clock=lambda: 0) as rec:
        rec.write_calibration(sim_calibration())
        for k, (img, cloud, t) in enumerate(frames):
            rec.write(Message("lidar_top", t, cloud, raw_stamp_ns=t, recv_ns=t + 1_000_000, frame="lidar_top",
                              seq=k))  # fmt: skip
            rec.write(Message("cam_front", t + 2_000_000, Image(img), raw_stamp_ns=t, recv_ns=t + 25_000_000,
                              frame="cam_front_optical", seq=k))  # fmt: skip
    return path


def test_cli_lidar_camera_updates_the_calibration_in_place(tmp_path, frames_seed0, capsys):
    truth = sim_calibration()
    # 5 holds: the scenario's 4th to 8th, turned left/right and pitched up/down in turn
    log = _board_log(tmp_path / "board.mcap", frames_seed0[3 * FRAMES_PER_POSE : 8 * FRAMES_PER_POSE])
    start = sim_calibration()
    start.extrinsics["cam_front"] = start.extrinsics["lidar_top"] @ _initial().inverse()
    calib = tmp_path / "calib.yaml"
    save_calibration(start, calib)
    rc = main(
        [
            "calibrate",
            "lidar-camera",
            str(log),
            "--camera",
            "cam_front",
            "--lidar",
            "lidar_top",
            "--board",
            BOARD,
            "--calib",
            str(calib),
            "--json",
            "--force",  # 5 poses (a plumbing test) are below the 10 the gate asks for
        ]
    )
    r = json.loads(capsys.readouterr().out)
    assert rc == 0, r
    failed = {g["name"] for g in r["gates"] if not g["ok"]}
    assert "poses used" in failed and r["written"] and any(f.startswith("poses used 5") for f in r["forced"])
    assert Path(r["poses_png"]).is_file() and r["poses_png"].endswith("calib.lidar-camera.cam_front.png")
    # each hold: its first frame is "moving" (the board came from elsewhere), the next ones still, and
    # every sweep recorded within the still run (all but the first) joins the hold's pose; the board
    # sways in the hand, and a frame where it moved more than 2 px since the last is "moving" too
    assert r["poses_used"] == 5 and 5 <= r["skipped"]["moving"] <= 8, r
    assert 5 * (FRAMES_PER_POSE - 2) <= r["frames_used"] <= 5 * (FRAMES_PER_POSE - 1), r
    new = load_calibration(calib)
    dt, dr = transform_error(new.extrinsics["cam_front"], truth.extrinsics["cam_front"])
    dt0, dr0 = transform_error(start.extrinsics["cam_front"], truth.extrinsics["cam_front"])
    # 5 poses only (a plumbing test; accuracy is tested above): far better than the 6 cm / 2° start
    assert dt < 0.3 * dt0 and dr < 0.4 * dr0, (dt, dr, dt0, dr0)
    np.testing.assert_allclose(new.extrinsics["lidar_top"].matrix(), truth.extrinsics["lidar_top"].matrix())
    prov = new.provenance["extrinsics.cam_front"]
    assert prov["inputs"]["log"]["sha256"] and prov["residuals"]["rms_m"] > 0 and prov["forced"]
    before = load_calibration(tmp_path / "calib.yaml.bak")
    assert transform_error(before.extrinsics["cam_front"], start.extrinsics["cam_front"])[0] < 1e-9


def test_cli_lidar_camera_unknown_sensor(tmp_path, capsys):
    calib = tmp_path / "calib.yaml"
    save_calibration(sim_calibration(), calib)
    log = tmp_path / "empty.mcap"
    with Recorder(log, clock=lambda: 0):
        pass
    rc = main(
        [
            "calibrate",
            "lidar-camera",
            str(log),
            "--camera",
            "cam_rear",
            "--lidar",
            "lidar_top",
            "--board",
            BOARD,
            "--calib",
            str(calib),
        ]
    )
    assert rc == 2
    assert "cam_rear" in capsys.readouterr().err


def test_cli_lidar_camera_refuses_a_start_too_far_off(tmp_path, frames_seed0, capsys):
    """The issue's case: the documented 16 holds, but a start 46 cm / 10° off the truth: the segmentation
    finds the board in the LiDAR in fewer than half the views and the fit lands far off. Nothing written,
    exit 2, one line naming a gate; ``--dry-run`` lists every failed gate."""
    log = _board_log(tmp_path / "board.mcap", frames_seed0)
    start = sim_calibration()
    far = Transform.from_rpy([0.3, -0.25, 0.1], 0.1, -0.12, 0.08) @ _truth()
    assert transform_error(far, _truth())[0] > 0.4 and transform_error(far, _truth())[1] > 10
    start.extrinsics["cam_front"] = start.extrinsics["lidar_top"] @ far.inverse()
    calib = tmp_path / "calib.yaml"
    save_calibration(start, calib)
    before = calib.read_bytes()
    args = ["calibrate", "lidar-camera", str(log), "--camera", "cam_front", "--lidar", "lidar_top",
            "--board", BOARD, "--calib", str(calib)]  # fmt: skip
    rc = main([*args, "--json", "--dry-run"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and not r["written"] and calib.read_bytes() == before
    failed = {line.split(" ")[0] for line in r["failed_gates"]}
    assert {"poses", "board", "worst", "translation", "rotation"} <= failed, r["failed_gates"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and "not written: poses used" in err and calib.read_bytes() == before, err


def test_target_files_describe_charuco_boards_and_a_pattern_off_the_plate_centre(tmp_path):
    """A ChArUco target printed 0.25 m left of its plate's centre: the target file says so, and the LiDAR
    segmentation looks for the plate where it is (a hand-made plate of points, 2 cm apart, 5 m ahead)."""
    from dataclasses import replace

    from edgefuse.calib.boards import load_target
    from edgefuse.calib.lidar_camera_board import board_points_in_cloud

    (tmp_path / "c.yaml").write_text(
        "kind: charuco\nsquares: [7, 5]\nsquare_m: 0.08\nmarker_m: 0.06\ndictionary: DICT_5X5_100\n"
        "legacy: true\nplate_m: [1.2, 0.6]\npattern_offset_m: [-0.25, 0.0]\n"
    )
    b = load_target(tmp_path / "c.yaml")
    assert (b.kind, b.cols, b.rows, b.legacy, b.plate_offset_m) == ("charuco", 7, 5, True, (0.25, 0.0))
    # the board 5 m ahead of a camera at the LiDAR (board frame: x right, y down; camera: z ahead)
    T_cam_board = Transform(np.eye(3), np.array([0.0, 0.0, 5.0]))
    u, v = np.meshgrid(np.arange(-0.6, 0.6, 0.02), np.arange(-0.3, 0.3, 0.02))
    plate = np.column_stack([u.ravel() + 0.25, v.ravel(), np.zeros(u.size)])  # around the plate centre
    xyz = T_cam_board.apply(plate)
    found = board_points_in_cloud(xyz, T_cam_board, Transform.identity(), b)
    assert found is not None and len(found) == len(xyz)  # every plate point
    centred = board_points_in_cloud(xyz, T_cam_board, Transform.identity(), replace(b, plate_offset_m=(0, 0)))
    assert centred is not None and len(centred) < len(xyz)  # the plate's far edge lost
    assert xyz[centred, 0].max() < xyz[:, 0].max() - 0.05
