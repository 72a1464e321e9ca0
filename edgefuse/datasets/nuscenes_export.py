"""``edgefuse sim export --format nuscenes``: a simulated drive written as a nuScenes (v1.0) dataset.

``OUT/v1.0-NAME/*.json``: the 13 tables of nuScenes' schema (scene, sample, sample_data, ego_pose,
calibrated_sensor, sensor, sample_annotation, instance, category, attribute, visibility, log, map), and the
keyframe files under ``OUT/samples/CHANNEL/``. One scene, one log, one map record.

- **Keyframes**: every LiDAR sweep is one sample (10 Hz; nuScenes' keyframes are 2 Hz out of a 20 Hz LiDAR,
  but the simulator's truth comes with every sweep, so every sweep is annotated). No ``sweeps/`` are written:
  the camera frame and radar scan of each sample are the ones whose true capture time is nearest the sweep's
  end (the camera within half a camera period, 1/60 s, else the sweep is left out and counted); the other
  camera frames and radar scans are not written.
- **Sensors**: the sim rig's ``lidar_top`` → ``LIDAR_TOP``, ``cam_front`` → ``CAM_FRONT``, ``radar_front`` →
  ``RADAR_FRONT`` (one camera and one radar; a real set has six and five). ``calibrated_sensor`` = the sim's
  exact T_base_sensor (translation, rotation w x y z; the ego frame is the sim's base_link).
- **Stamps**: ``timestamp`` = true capture time in µs from the simulation's start (LiDAR: the sweep's end),
  rounded to the µs; every sample_data has its own ``ego_pose`` at its own time (the sim's exact pose).
- ``LIDAR_TOP``: the sweep in the LiDAR frame, x y z intensity ring float32 (``.pcd.bin``; per-point time
  is not in the format). ``CAM_FRONT``: nuScenes' cameras are undistorted pinholes, so the sim frame is
  undistorted to an ideal pinhole with the sim's own K (OpenCV ``initUndistortRectifyMap``, no rotation),
  ``camera_intrinsic`` = K, JPEG quality 95. ``RADAR_FRONT``: nuScenes' 18-field radar PCD, every field
  F4 (nuScenes writes some as integers; readers take the header's types): x y z as simulated, ``rcs``,
  ``vx vy`` = doppler × (x, y) / |(x, y)| (the radial velocity as a vector in the horizontal plane, what an
  ARS 408 reports), ``vx_comp vy_comp`` the same of the ground-relative doppler
  (:func:`edgefuse.motion.compensate_doppler`), ``id`` = the point's index, the state fields 0 (valid), the
  RMS codes 0. The sim's SNR is not in the format.
- **Annotations**: every truth box of the sweep (range 120 m, with its point counts, even 0), in the global
  frame (the LiDAR keyframe's ego pose × the base_link box), size w l h, rotation w x y z; ``num_lidar_pts``
  / ``num_radar_pts`` from the truth's ``lidar_points``/``radar_points``; ``visibility_token`` = nuScenes'
  level of the truth's camera ``visibility`` (:func:`edgefuse.types.visibility_bin`; level 1 when unknown);
  one ``instance`` per track id. car → vehicle.car, pedestrian → human.pedestrian.adult, cyclist →
  vehicle.bicycle with attribute cycle.with_rider (the truth's attribute, where it has one, is written).
- **Map**: one ``map`` record with a 1 × 1 PNG (``maps/``): the devkit's ``NuScenes()`` needs a map record
  naming the log and a file that exists at its ``filename`` (it opens it only when asked for the mask).
Numbers are written by ``json`` (shortest repr: float64 exact); tokens are deterministic (md5 of a name).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgefuse.adapters.files.nuscenes_radar import NUSCENES_RADAR_FIELDS
from edgefuse.adapters.files.pcd import format_pcd
from edgefuse.datasets.nuscenes import VISIBILITY_LEVELS, box_to_global, matrix_to_quat_wxyz
from edgefuse.datasets.sim_export import export_simulator
from edgefuse.errors import InputError
from edgefuse.geometry import Transform
from edgefuse.types import ATTRIBUTES, RadarScan, visibility_bin

_NS = 1_000_000_000
CAMERA, LIDAR, RADAR = "cam_front", "lidar_top", "radar_front"
#: sim sensor id → (nuScenes channel, modality)
CHANNELS: dict[str, tuple[str, str]] = {
    LIDAR: ("LIDAR_TOP", "lidar"),
    CAMERA: ("CAM_FRONT", "camera"),
    RADAR: ("RADAR_FRONT", "radar"),
}
#: edgefuse class → nuScenes category
NUSCENES_CATEGORIES: dict[str, str] = {
    "car": "vehicle.car",
    "pedestrian": "human.pedestrian.adult",
    "cyclist": "vehicle.bicycle",
}
_DEFAULT_ATTRIBUTE = {"cyclist": "cycle.with_rider"}
_ONE_PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63600000000200015d0ba5bb0000000049454e44ae426082"
)


def token(*parts) -> str:
    """A deterministic 32-hex-digit token (nuScenes' form) for a name."""
    return hashlib.md5(":".join(str(p) for p in parts).encode()).hexdigest()


def _pose(T: Transform) -> tuple[list[float], list[float]]:
    return [float(v) for v in T.translation], matrix_to_quat_wxyz(T.rotation)


def nuscenes_radar_scan(scan: RadarScan, T_base_radar: Transform, v_base, w_base) -> RadarScan:
    """A sim radar scan (x y z doppler rcs snr, sensor frame) → nuScenes' 18 fields (module doc)."""
    from edgefuse.motion import compensate_doppler

    x, y = scan.column("x").astype(np.float64), scan.column("y").astype(np.float64)
    r = np.hypot(x, y)
    ux = np.divide(x, r, out=np.zeros_like(r), where=r > 1e-9)
    uy = np.divide(y, r, out=np.zeros_like(r), where=r > 1e-9)
    d = scan.column("doppler").astype(np.float64)
    dc = compensate_doppler(scan, T_base_radar, v_base, w_base).column("doppler").astype(np.float64)
    cols = dict.fromkeys(NUSCENES_RADAR_FIELDS, np.zeros(len(r)))
    cols.update(
        x=scan.column("x"),
        y=scan.column("y"),
        z=scan.column("z"),
        rcs=scan.column("rcs"),
        id=np.arange(len(r)),
        vx=d * ux,
        vy=d * uy,
        vx_comp=dc * ux,
        vy_comp=dc * uy,
    )
    data = np.stack([np.asarray(cols[f], np.float32) for f in NUSCENES_RADAR_FIELDS], axis=1)
    return RadarScan(data.reshape(-1, len(NUSCENES_RADAR_FIELDS)), NUSCENES_RADAR_FIELDS)


def _pairs(sim, duration_ns: int) -> tuple[list[tuple[int, int, int, int, int, int]], int]:
    """[(LiDAR t, k, camera t, k, radar t, k)] by the module doc's rule; sweeps left without a camera."""
    sched = list(sim.schedule(duration_ns))
    by = {sid: [(t, k) for t, s, k in sched if s == sid] for sid in (CAMERA, LIDAR, RADAR)}
    cams = np.array([t for t, _ in by[CAMERA]], np.int64)
    radars = np.array([t for t, _ in by[RADAR]], np.int64)
    out, unpaired = [], 0
    for t, k in by[LIDAR]:
        j = int(np.argmin(np.abs(cams - t))) if len(cams) else -1
        if j < 0 or abs(int(cams[j]) - t) > _NS / 60.0 or not len(radars):
            unpaired += 1
            continue
        m = int(np.argmin(np.abs(radars - t)))
        out.append((t, k, *by[CAMERA][j], *by[RADAR][m]))
    return out, unpaired


def _static_tables(version: str, scene_name: str, calib, cam) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {}
    tables["category"] = [
        {"token": token("category", n), "name": n, "description": f"edgefuse sim {c}", "index": i}
        for i, (c, n) in enumerate(NUSCENES_CATEGORIES.items())
    ]
    names = [a for label in NUSCENES_CATEGORIES for a in ATTRIBUTES[label]]
    tables["attribute"] = [{"token": token("attribute", n), "name": n, "description": n} for n in names]
    tables["visibility"] = [
        {
            "token": lv,
            "level": name,
            "description": f"visibility of whole object is between {name[1:].replace('-', ' and ')} %",
        }
        for lv, (name, _mid) in VISIBILITY_LEVELS.items()
    ]
    tables["sensor"] = [
        {"token": token("sensor", ch), "channel": ch, "modality": mod} for ch, mod in CHANNELS.values()
    ]
    tables["calibrated_sensor"] = []
    for sid, (ch, _mod) in CHANNELS.items():
        t, q = _pose(calib.extrinsics[sid])
        K = cam.K.tolist() if sid == CAMERA else []
        tables["calibrated_sensor"].append(
            {
                "token": token("calibrated_sensor", ch),
                "sensor_token": token("sensor", ch),
                "translation": t,
                "rotation": q,
                "camera_intrinsic": K,
            }
        )
    log_token = token("log", scene_name)
    tables["log"] = [
        {
            "token": log_token,
            "logfile": scene_name,
            "vehicle": "edgefuse-sim",
            "date_captured": "2026-01-01",
            "location": "edgefuse-sim",
        }
    ]
    tables["map"] = [
        {
            "token": token("map", scene_name),
            "log_tokens": [log_token],
            "category": "semantic_prior",
            "filename": f"maps/{token('map', scene_name)}.png",
        }
    ]
    return tables


def _annotations(
    truth, T_global_base: Transform, scene: str, sample_token: str, tables: dict, tracks: dict
) -> None:
    """Append a sweep's truth to ``sample_annotation``, linking each to its track's previous annotation;
    ``tracks``: track id → {"last": record, "first": token, "n": count, "label": class}."""
    for o in truth.objects:
        if o.label not in NUSCENES_CATEGORIES:
            raise InputError(f"sim export: class {o.label!r}: expected one of {list(NUSCENES_CATEGORIES)}")
        translation, size, rotation = box_to_global(o.box, T_global_base)
        inst = token("instance", scene, o.track_id)
        ann = token("sample_annotation", sample_token, o.track_id)
        attribute = o.attribute or _DEFAULT_ATTRIBUTE.get(o.label, "")
        vis = visibility_bin(o.visibility) if o.visibility is not None else 1
        prev = tracks.get(o.track_id)
        tables["sample_annotation"].append(
            {
                "token": ann,
                "sample_token": sample_token,
                "instance_token": inst,
                "visibility_token": str(vis),
                "attribute_tokens": [token("attribute", attribute)] if attribute else [],
                "translation": translation,
                "size": size,
                "rotation": rotation,
                "prev": prev["last"]["token"] if prev else "",
                "next": "",
                "num_lidar_pts": int(o.lidar_points or 0),
                "num_radar_pts": int(o.radar_points or 0),
            }
        )
        if prev:
            prev["last"]["next"] = ann
        first, n = (prev["first"], prev["n"]) if prev else (ann, 0)
        tracks[o.track_id] = {
            "last": tables["sample_annotation"][-1],
            "first": first,
            "n": n + 1,
            "label": o.label,
        }


def export_nuscenes(
    out: str | Path,
    scenario: str = "default",
    seed: int = 0,
    duration_s: float | None = None,
    *,
    version: str = "v1.0-sim",
    progress: bool = False,
    **params,
) -> dict:
    """Write a simulated drive as ``out/{version}/*.json`` + ``out/samples/…`` + ``out/maps/…`` (module doc);
    returns a summary (samples, sweeps without a camera frame, annotations, instances)."""
    import cv2
    from tqdm import tqdm

    from edgefuse.sim.ego import true_odometry

    if not version.startswith("v1.0-") or "/" in version:
        raise InputError(f"sim export --version {version!r}: expected v1.0-NAME")
    sim, duration_s = export_simulator("nuscenes", scenario, seed, duration_s, (CAMERA, LIDAR, RADAR), params)
    cal = sim.calibration
    cam = cal.cameras[CAMERA]
    root = Path(out)
    scene_name = f"edgefuse-sim-{scenario}-{int(seed)}"
    size = (cam.width, cam.height)
    maps = cv2.initUndistortRectifyMap(cam.K, cam.distortion, None, cam.K, size, cv2.CV_32FC1)
    tables = _static_tables(version, scene_name, cal, cam)
    for name in ("ego_pose", "sample", "sample_data", "sample_annotation", "instance", "scene"):
        tables[name] = []
    for ch, _mod in CHANNELS.values():
        (root / "samples" / ch).mkdir(parents=True, exist_ok=True)
    (root / "maps").mkdir(parents=True, exist_ok=True)
    (root / tables["map"][0]["filename"]).write_bytes(_ONE_PIXEL_PNG)
    pairs, unpaired = _pairs(sim, int(round(duration_s * _NS)))
    tracks: dict[int, dict] = {}
    last_sd: dict[str, dict] = {}
    samples: list[dict] = []
    for i, (t, k, tc, kc, tr, kr) in enumerate(
        tqdm(pairs, desc="sim export nuscenes", disable=not progress, leave=False)
    ):
        ts = round(t / 1000)
        s_tok = token("sample", scene_name, i)
        samples.append(
            {
                "token": s_tok,
                "timestamp": ts,
                "scene_token": token("scene", scene_name),
                "prev": samples[-1]["token"] if samples else "",
                "next": "",
            }
        )
        if i:
            samples[-2]["next"] = s_tok
        caps = {c.message.sensor_id: c.message.payload for c in sim.capture(LIDAR, t, k)}
        image = sim.capture(CAMERA, tc, kc)[0].message.payload.data
        scan = sim.capture(RADAR, tr, kr)[0].message.payload
        files = {}
        for sid, tt in ((LIDAR, t), (CAMERA, tc), (RADAR, tr)):
            ch, _mod = CHANNELS[sid]
            us = round(tt / 1000)
            ext = {LIDAR: "pcd.bin", CAMERA: "jpg", RADAR: "pcd"}[sid]
            files[sid] = f"samples/{ch}/{scene_name}__{ch}__{us}.{ext}"
            odo = true_odometry(sim.world.ego_state(tt))
            T_world_base = Transform.from_quat(odo.position, odo.orientation)
            e_tok = token("ego_pose", scene_name, ch, i)
            tr_, q_ = _pose(T_world_base)
            tables["ego_pose"].append({"token": e_tok, "timestamp": us, "rotation": q_, "translation": tr_})
            sd_tok = token("sample_data", scene_name, ch, i)
            prev = last_sd.get(ch)
            sd = {
                "token": sd_tok,
                "sample_token": s_tok,
                "ego_pose_token": e_tok,
                "calibrated_sensor_token": token("calibrated_sensor", ch),
                "timestamp": us,
                "fileformat": ext.split(".")[0],
                "is_key_frame": True,
                "height": cam.height if sid == CAMERA else 0,
                "width": cam.width if sid == CAMERA else 0,
                "filename": files[sid],
                "prev": prev["token"] if prev else "",
                "next": "",
            }
            if prev:
                prev["next"] = sd_tok
            last_sd[ch] = sd
            tables["sample_data"].append(sd)
            if sid == LIDAR:
                T_lidar_pose = T_world_base
            if sid == RADAR:
                v_base, w_base = odo.linear_velocity, odo.angular_velocity
        cloud = caps[LIDAR]
        xyzir = np.stack([cloud.column(f) for f in ("x", "y", "z", "intensity", "ring")], axis=1)
        xyzir.astype("<f4").tofile(root / files[LIDAR])
        rect = cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cv2.imwrite(
            str(root / files[CAMERA]), cv2.cvtColor(rect, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        radar = nuscenes_radar_scan(scan, cal.extrinsics[RADAR], v_base, w_base)
        (root / files[RADAR]).write_bytes(format_pcd(radar))
        _annotations(caps["ground_truth"], T_lidar_pose, scene_name, s_tok, tables, tracks)
    tables["sample"] = samples
    for tid, tr in tracks.items():
        tables["instance"].append(
            {
                "token": token("instance", scene_name, tid),
                "category_token": token("category", NUSCENES_CATEGORIES[tr["label"]]),
                "nbr_annotations": tr["n"],
                "first_annotation_token": tr["first"],
                "last_annotation_token": tr["last"]["token"],
            }
        )
    tables["scene"] = [
        {
            "token": token("scene", scene_name),
            "log_token": tables["log"][0]["token"],
            "nbr_samples": len(samples),
            "first_sample_token": samples[0]["token"] if samples else "",
            "last_sample_token": samples[-1]["token"] if samples else "",
            "name": scene_name,
            "description": f"edgefuse sim {scenario} seed {int(seed)}",
        }
    ]
    (root / version).mkdir(parents=True, exist_ok=True)
    for name, records in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(records, indent=0))
    return {
        "out": str(root),
        "format": "nuscenes",
        "version": version,
        "scenario": scenario,
        "seed": int(seed),
        "duration_s": duration_s,
        "samples": len(samples),
        "sweeps_without_camera": unpaired,
        "annotations": len(tables["sample_annotation"]),
        "instances": len(tables["instance"]),
    }
