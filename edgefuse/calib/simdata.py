"""Calibration data straight from the simulator's sensor models (no log round trip): board views for
intrinsics, camera + LiDAR frames of the ``calibration-board`` scenario's board poses, radar + LiDAR
frames of its corner reflectors. Used by the tests, the benchmark and the docs' examples; the truth is
always :func:`edgefuse.sim.rig.sim_calibration`, never anything computed here.
"""

from __future__ import annotations

import numpy as np

from edgefuse.geometry import CameraModel, Transform, matrix_to_rpy, rotvec_to_matrix
from edgefuse.sim.scene import Material, Scene, Weather, WorldBox
from edgefuse.sim.world import make_world
from edgefuse.sim.world_materials import BOARD_A
from edgefuse.types import PointCloud, RadarScan

_BOARD_MATERIAL = Material("calibration_board", (245, 245, 245), "checker", 0.7, 0.0)
_BOARD_SIZE = np.array([0.02, 0.9, 0.7])  # the calibration-board scenario's plate (l, w, h)
# box axes in a frame whose z looks at the board: box x (the printed face's normal) towards the viewer,
# box y to the viewer's right (image +x), box z up (image −y)
_R_VIEW_BOX = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])


def board_in_view(T_world_cam: Transform, centre_cam: np.ndarray, rotvec_tilt: np.ndarray) -> WorldBox:
    """The board box with its plate centre at ``centre_cam`` (3,) in the camera frame, facing the camera
    along the line of sight, then turned by ``rotvec_tilt`` (3,) rad (camera-frame axis-angle)."""
    z = centre_cam / np.linalg.norm(centre_cam)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_cam_view = np.stack([x, y, z], axis=1)
    R_cam_box = rotvec_to_matrix(rotvec_tilt) @ R_cam_view @ _R_VIEW_BOX
    R_world_box = T_world_cam.rotation @ R_cam_box
    # the printed face is at +x of the box: put the box centre half a thickness behind the face
    face_cam = np.asarray(centre_cam, np.float64)
    centre_world = T_world_cam.apply((face_cam - R_cam_box[:, 0] * _BOARD_SIZE[0] / 2)[None])[0]
    roll, pitch, yaw = matrix_to_rpy(R_world_box)
    return WorldBox(
        "board",
        centre_world,
        _BOARD_SIZE.copy(),
        float(yaw),
        _BOARD_MATERIAL,
        pitch=float(pitch),
        roll=float(roll),
        board=BOARD_A,
    )


def _static_scene(boxes) -> Scene:
    return Scene(0, tuple(boxes), (), Transform.identity(), np.zeros(3), 0.0, Weather())


def intrinsics_views(
    camera_model: str, n: int, seed: int, noise: bool = True
) -> list[tuple[str, np.ndarray]]:
    """``n`` rendered images (name, RGB) of board-a held in random poses in front of the sim camera
    (``camera_model`` "pinhole" or "fisheye"), each with the whole board in the image and spread over it."""
    from edgefuse.sim.camera import NOISE_STD_DN, render_camera
    from edgefuse.sim.camera_board import board_inner_corners
    from edgefuse.sim.rig import sim_calibration

    calib = sim_calibration(camera_model)
    cam: CameraModel = calib.cameras["cam_front"]
    T_base_cam = calib.extrinsics["cam_front"]
    rng = np.random.default_rng(seed)
    out = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise RuntimeError("intrinsics_views: could not place the board")
        m = 0.12 if camera_model == "pinhole" else 0.08
        uv = np.array([[rng.uniform(m, 1 - m) * cam.width, rng.uniform(m, 1 - m) * cam.height]])
        ray = cam.rays(uv)[0]
        d = rng.uniform(1.1, 2.4) if camera_model == "pinhole" else rng.uniform(0.55, 1.2)
        tilt = rng.uniform(-1, 1, 3) * np.array([0.6, 0.6, 0.3])
        box = board_in_view(T_base_cam, ray * d, tilt)
        corners_cam = T_base_cam.inverse().apply(board_inner_corners(box))
        n_face = T_base_cam.inverse().rotation @ box.pose().rotation[:, 0]
        if n_face @ (-ray) < 0.35:
            continue
        # the whole plate inside the image with a margin
        hw, hh = _BOARD_SIZE[1] / 2, _BOARD_SIZE[2] / 2
        plate = np.array([[_BOARD_SIZE[0] / 2, sy * hw, sz * hh] for sy in (-1, 1) for sz in (-1, 1)])
        plate_cam = T_base_cam.inverse().apply(box.pose().apply(plate))
        pts = np.vstack([corners_cam, plate_cam])
        px, z = cam.project(pts)
        ok = (z > 0.2).all() and cam.in_image(px).all()
        ok = ok and (px[:, 0].min() > 8) and (px[:, 1].min() > 8)
        ok = ok and (px[:, 0].max() < cam.width - 8) and (px[:, 1].max() < cam.height - 8)
        if not ok:
            continue
        img = render_camera(
            _static_scene([box]), cam, T_base_cam, rng, noise_std=NOISE_STD_DN if noise else 0.0
        )
        out.append((f"view{len(out):02d}", img))
    return out


def board_hold_times_ns(seed: int) -> list[int]:
    """The middle of every hold of the calibration-board scenario's board (true time, ns), excluding the
    last pose (the board carried away to the side)."""
    world = make_world("calibration-board", seed)
    b = world.board
    ts, _ = b.knots()
    holds = [(ts[2 * k] + ts[2 * k + 1]) / 2 for k in range(len(b.poses) - 1)]
    return [int(round(t * 1e9)) for t in holds]


def lidar_camera_frames(
    seed: int,
    camera_model: str = "pinhole",
    n_poses: int | None = None,
    noise: bool = True,
    frames_per_pose: int = 1,
):
    """(image RGB, cloud, t_ns) at each board hold of the calibration-board scenario (seed ``seed``), the
    camera and LiDAR both captured together (the board and the ego stand still then): ``frames_per_pose``
    captures spread over the middle 1.6 s of each hold, as a log gives many frames of every pose."""
    from edgefuse.sim.camera import NOISE_STD_DN, render_camera
    from edgefuse.sim.lidar import scenario_lidar, simulate_sweep, vlp32c_model
    from edgefuse.sim.rig import sim_calibration

    calib = sim_calibration(camera_model)
    world = make_world("calibration-board", seed)
    lidar = (
        scenario_lidar("calibration-board", seed) if noise else vlp32c_model(range_noise_m=0.0, dropout=0.0)
    )
    rng = np.random.default_rng(seed + 77)
    out: list[tuple[np.ndarray, PointCloud, int]] = []
    offsets = np.linspace(-0.8e9, 0.8e9, frames_per_pose) if frames_per_pose > 1 else np.zeros(1)
    times = [int(t + o) for t in board_hold_times_ns(seed)[:n_poses] for o in offsets]
    for t in times:
        scene = world.scene_at(t)
        img = render_camera(
            scene,
            calib.cameras["cam_front"],
            calib.extrinsics["cam_front"],
            rng,
            noise_std=NOISE_STD_DN if noise else 0.0,
        )
        cloud, _ = simulate_sweep(scene, t, calib.extrinsics["lidar_top"], lidar, rng)
        out.append((img, cloud, t))
    return out


def static_board_frames(
    placements: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    frames_per_pose: int = 1,
    noise: bool = True,
):
    """(image RGB, cloud, t_ns) of board-a alone in front of the standing sim rig, at each of
    ``placements``: (plate centre (3,) m in the camera frame, tilt (3,) rad camera-frame axis-angle from
    facing the camera, see :func:`board_in_view`), ``frames_per_pose`` captures each (t_ns 100 ms apart).
    For poses the calibration-board scenario does not have (e.g. boards nearly facing the camera)."""
    from edgefuse.sim.camera import NOISE_STD_DN, render_camera
    from edgefuse.sim.lidar import simulate_sweep, vlp32c_model
    from edgefuse.sim.rig import sim_calibration

    calib = sim_calibration()
    T_base_cam = calib.extrinsics["cam_front"]
    lidar = vlp32c_model() if noise else vlp32c_model(range_noise_m=0.0, dropout=0.0)
    rng = np.random.default_rng(seed + 55)
    out: list[tuple[np.ndarray, PointCloud, int]] = []
    for centre, tilt in placements:
        scene = _static_scene([board_in_view(T_base_cam, np.asarray(centre, float), np.asarray(tilt, float))])
        for _ in range(frames_per_pose):
            t = len(out) * 100_000_000
            img = render_camera(
                scene, calib.cameras["cam_front"], T_base_cam, rng, noise_std=NOISE_STD_DN if noise else 0.0
            )
            cloud, _ = simulate_sweep(scene, t, calib.extrinsics["lidar_top"], lidar, rng)
            out.append((img, cloud, t))
    return out


def radar_lidar_frames(seed: int, n_radar: int = 20, n_lidar: int = 4, noise: bool = True):
    """Radar scans and LiDAR sweeps of the calibration-board scenario while the ego stands still (the
    board phase): ``(radar_scans, lidar_clouds)`` lists, ``n_radar`` scans at 20 Hz and ``n_lidar`` sweeps
    at 10 Hz from t = 1 s."""
    from edgefuse.sim.lidar import scenario_lidar, simulate_sweep
    from edgefuse.sim.radar import RadarModel, simulate_radar
    from edgefuse.sim.rig import sim_calibration

    calib = sim_calibration()
    world = make_world("calibration-board", seed)
    rng = np.random.default_rng(seed + 99)
    radar = RadarModel() if noise else RadarModel().noiseless()
    lidar = scenario_lidar("calibration-board", seed)
    scans: list[RadarScan] = []
    clouds: list[PointCloud] = []
    for k in range(n_radar):
        t = 1_000_000_000 + k * 50_000_000
        scan, _ = simulate_radar(world.scene_at(t), t, calib.extrinsics["radar_front"], radar, rng)
        scans.append(scan)
    for k in range(n_lidar):
        t = 1_000_000_000 + k * 100_000_000
        cloud, _ = simulate_sweep(world.scene_at(t), t, calib.extrinsics["lidar_top"], lidar, rng)
        clouds.append(cloud)
    return scans, clouds
