"""nuScenes (v1.0 JSON tables) as samples of the frame cache, read with plain ``json`` (no devkit needed).

Layout: ``DIR/v1.0-NAME/*.json`` (the 13 tables of nuScenes' schema), ``DIR/samples/CHANNEL/*`` (keyframe
files) and ``DIR/sweeps/CHANNEL/*`` (the others). URI: ``nuscenes://DIR?version=v1.0-NAME``.

- **Samples**: one per ``sample`` record (a keyframe), scenes in table order, each scene's samples along
  its ``first_sample_token``/``next`` chain. A sample's sensors are its keyframe ``sample_data`` records;
  the non-keyframe sweeps are not read (the frame cache holds one frame per annotated sample).
- **Sensors**: the channel in lower case is the sensor id (``LIDAR_TOP`` → ``lidar_top``, ``CAM_FRONT`` →
  ``cam_front``, ``RADAR_FRONT_LEFT`` → ``radar_front_left``), so the six cameras and five radars of a real
  set and a model's tensor spec name the same sensors. LiDAR: ``.pcd.bin`` float32 × 5 (x y z intensity
  ring, LiDAR frame); cameras: the JPEG/PNG, RGB; radars: nuScenes' radar PCD
  (:mod:`edgefuse.adapters.files.nuscenes_radar`) plus a ``doppler`` column, the radial component of the
  radar's ``vx vy`` (m/s, sensor frame: ``(vx, vy) · (x, y) / |(x, y)|``; the ARS 408 measures in the
  horizontal plane), because a model's radar input needs doppler (DESIGN §4).
- **Calibration** from ``calibrated_sensor`` (translation m, rotation w x y z: sensor → ego = base_link;
  nuScenes' cameras are undistorted pinholes, ``camera_intrinsic`` = K, image size from ``sample_data``).
  Samples with the same calibrated_sensor records share one :class:`Calibration` object.
- **Stamps**: each message its own ``sample_data.timestamp`` (µs → ns), raw = receive = stamp; the
  truth's stamp is the sample's ``timestamp``.
- **Truth**: ``sample_annotation`` (global frame: centre, size w l h, rotation w x y z) → base_link with the
  ego pose of the sample's LiDAR keyframe (the first LiDAR channel; else the sample's first sample_data), as
  ``Box3D`` (centre, l w h, yaw). Velocity over ground, as the devkit's ``box_velocity``: the centred
  difference of the previous and next annotations (one-sided at a track's ends; 0 for a lone box or more
  than 1.5 s apart), turned into base_link. ``num_lidar_pts``/``num_radar_pts`` → ``lidar_points`` /
  ``radar_points``; ``visibility_token`` (levels 1–4: 0–40 … 80–100 %) → ``visibility`` = the bin's middle
  (0.2, 0.5, 0.7, 0.9); ``instance_token`` → ``track_id`` (its index in the instance table). Classes
  (:data:`NUSCENES_CLASSES`): vehicle.car → car, human.pedestrian.{adult, child, construction_worker,
  police_officer} → pedestrian, vehicle.bicycle → cyclist; nuScenes' other categories
  (:data:`NUSCENES_OTHER_CATEGORIES`) are skipped and counted.
- **Bad samples** are skipped with one line each (``problems``, also logged) and the rest loads: a sample
  whose file is missing or unreadable, an annotation whose category is not nuScenes', a record missing a
  field or naming a token no table has.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from edgefuse.adapters.files.nuscenes_radar import read_nuscenes_radar
from edgefuse.errors import InputError
from edgefuse.geometry import CameraModel, Transform, matrix_to_quat, quat_to_matrix
from edgefuse.rig import Calibration, SensorKit, SensorSpec
from edgefuse.types import ATTRIBUTES, Box3D, Detection, Detections, Image, Message, PointCloud, RadarScan

log = logging.getLogger(__name__)

#: nuScenes category → edgefuse class (types.CLASSES)
NUSCENES_CLASSES: dict[str, str] = {
    "vehicle.car": "car",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "vehicle.bicycle": "cyclist",
}
#: nuScenes' other categories: skipped (counted) when read
NUSCENES_OTHER_CATEGORIES: tuple[str, ...] = (
    "animal",
    "human.pedestrian.personal_mobility",
    "human.pedestrian.stroller",
    "human.pedestrian.wheelchair",
    "movable_object.barrier",
    "movable_object.debris",
    "movable_object.pushable_pullable",
    "movable_object.trafficcone",
    "static_object.bicycle_rack",
    "vehicle.bus.bendy",
    "vehicle.bus.rigid",
    "vehicle.construction",
    "vehicle.emergency.ambulance",
    "vehicle.emergency.police",
    "vehicle.motorcycle",
    "vehicle.trailer",
    "vehicle.truck",
)
#: nuScenes' visibility levels (token = level) and the fraction each gives back (the bin's middle)
VISIBILITY_LEVELS: dict[str, tuple[str, float]] = {
    "1": ("v0-40", 0.2),
    "2": ("v40-60", 0.5),
    "3": ("v60-80", 0.7),
    "4": ("v80-100", 0.9),
}
#: nuScenes' ``.pcd.bin`` LiDAR columns
LIDAR_FIELDS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
NUSCENES_TABLES: tuple[str, ...] = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)
GROUND_TRUTH_ID = "ground_truth"
_MAX_VELOCITY_DT_US = 1_500_000  # the devkit's box_velocity max_time_diff


class NuScenesDatasetError(InputError):
    """A nuScenes folder, table or sample that cannot be read (names the file, the field, the expectation)."""


# ================================================================ conventions


def quat_wxyz_to_matrix(q) -> np.ndarray:
    """nuScenes' quaternion (w x y z) → (3, 3) rotation."""
    w, x, y, z = (float(v) for v in q)
    return quat_to_matrix([x, y, z, w])


def matrix_to_quat_wxyz(R: np.ndarray) -> list[float]:
    """(3, 3) rotation → nuScenes' quaternion [w, x, y, z] (w ≥ 0)."""
    x, y, z, w = matrix_to_quat(R)
    q = [float(w), float(x), float(y), float(z)]
    return q if q[0] >= 0 else [-v for v in q]


def nuscenes_transform(record: dict) -> Transform:
    """A record's ``translation`` (3,) m and ``rotation`` (w x y z) as a Transform (calibrated_sensor:
    T_ego_sensor; ego_pose: T_global_ego)."""
    return Transform(quat_wxyz_to_matrix(record["rotation"]), np.asarray(record["translation"], np.float64))


def box_to_global(box: Box3D, T_global_base: Transform) -> tuple[list[float], list[float], list[float]]:
    """A base_link box → nuScenes (translation (3,) m, size [w, l, h] m, rotation [w x y z]), global frame."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    R_base_box = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    centre = T_global_base.apply(box.center[None])[0]
    l, w, h = (float(v) for v in box.size)
    return [float(v) for v in centre], [w, l, h], matrix_to_quat_wxyz(T_global_base.rotation @ R_base_box)


def global_to_box(translation, size, rotation, T_global_base: Transform) -> Box3D:
    """nuScenes (translation, size w l h, rotation w x y z; global frame) → a base_link box (the yaw of its
    length axis; an ego pose tilted from the global frame would tilt the box, which Box3D cannot hold)."""
    T_base_global = T_global_base.inverse()
    centre = T_base_global.apply(np.asarray(translation, np.float64)[None])[0]
    heading = T_base_global.rotation @ quat_wxyz_to_matrix(rotation)[:, 0]
    w, l, h = (float(v) for v in size)
    return Box3D(centre, np.array([l, w, h]), math.atan2(heading[1], heading[0]))


def radar_doppler(scan: RadarScan) -> RadarScan:
    """The scan with a ``doppler`` column added: ``(vx, vy) · (x, y) / |(x, y)|`` m/s (0 at the origin)."""
    x, y = scan.column("x").astype(np.float64), scan.column("y").astype(np.float64)
    r = np.hypot(x, y)
    vr = scan.column("vx") * x + scan.column("vy") * y
    d = np.divide(vr, r, out=np.zeros_like(r), where=r > 1e-9).astype(np.float32)
    return RadarScan(np.hstack([scan.data, d[:, None]]), (*scan.fields, "doppler"))


def read_lidar_bin(path: Path) -> PointCloud:
    """A nuScenes ``.pcd.bin``: float32 × 5 (x y z intensity ring) per point, LiDAR frame."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % len(LIDAR_FIELDS):
        raise NuScenesDatasetError(
            f"{path}: {raw.size * 4} bytes: expected a multiple of {4 * len(LIDAR_FIELDS)} (float32 x y z "
            "intensity ring per point)"
        )
    data = raw.reshape(-1, len(LIDAR_FIELDS))
    return PointCloud(np.ascontiguousarray(data[np.isfinite(data).all(axis=1)]), LIDAR_FIELDS)


# ================================================================ reader


@dataclass(frozen=True)
class NuScenesSample:
    """One keyframe: ``images`` (camera id → H × W × 3 RGB uint8), ``clouds`` (LiDAR id → N × 5 x y z
    intensity ring, LiDAR frame), ``radars`` (radar id → M × 19, radar frame, nuScenes' fields + doppler),
    ``stamps_ns`` (sensor id → its sample_data time), ``truth`` (base_link), ``calibration``, ``stamp_ns``
    (the sample's time), ``ego`` (T_global_base at the LiDAR keyframe)."""

    index: int
    token: str
    stamp_ns: int
    images: dict[str, Image]
    clouds: dict[str, PointCloud]
    radars: dict[str, RadarScan]
    stamps_ns: dict[str, int]
    truth: Detections
    calibration: Calibration
    ego: Transform = field(default_factory=Transform.identity)


def parse_nuscenes_uri(uri: str) -> tuple[Path, str]:
    """``nuscenes://DIR?version=v1.0-NAME`` → (DIR, version); without ``version``, DIR must hold exactly one
    ``v1.0-*`` folder."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    if parts.scheme != "nuscenes" or not path:
        raise NuScenesDatasetError(f"{uri}: expected nuscenes://DIR?version=v1.0-NAME")
    version = None
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k != "version" or not v:
            raise NuScenesDatasetError(f"{uri}: query {k}={v!r}: expected only version=v1.0-NAME (non-empty)")
        version = v
    root = Path(path)
    if version is None:
        found = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())
        if len(found) != 1:
            raise NuScenesDatasetError(
                f"{uri}: {len(found)} version folders ({', '.join(found) or 'none'}): expected one, or "
                "?version=v1.0-NAME"
            )
        version = found[0]
    return root, version


def _get(rec: dict, key: str, table: str):
    try:
        return rec[key]
    except (KeyError, TypeError):
        raise NuScenesDatasetError(
            f"{table}.json: record {rec.get('token', '?') if isinstance(rec, dict) else rec!r}: field "
            f"{key!r} missing (expected nuScenes' {table} schema)"
        ) from None


class NuScenesDataset:
    """The keyframe samples of a nuScenes folder (module doc). ``problems``: one line per skipped sample
    (reset by each pass); ``skipped_objects``: nuScenes' other categories by name."""

    def __init__(self, root: str | Path, version: str):
        self.root, self.version = Path(root), version
        self.table_dir = self.root / version
        if not self.table_dir.is_dir():
            raise NuScenesDatasetError(f"{self.table_dir}: missing (expected the {version} tables folder)")
        self.tables: dict[str, dict[str, dict]] = {}
        for name in NUSCENES_TABLES:
            path = self.table_dir / f"{name}.json"
            try:
                records = json.loads(path.read_text())
            except OSError as e:
                raise NuScenesDatasetError(
                    f"{path}: cannot read ({e.strerror}); expected nuScenes' table"
                ) from None
            except json.JSONDecodeError as e:
                raise NuScenesDatasetError(f"{path}: not JSON ({e})") from None
            if not isinstance(records, list):
                raise NuScenesDatasetError(f"{path}: expected a JSON list of records")
            self.tables[name] = {_get(r, "token", name): r for r in records}
        self.by_sample: dict[str, list[dict]] = {}
        for sd in self.tables["sample_data"].values():
            if _get(sd, "is_key_frame", "sample_data"):
                self.by_sample.setdefault(_get(sd, "sample_token", "sample_data"), []).append(sd)
        self.anns: dict[str, list[dict]] = {}
        for a in self.tables["sample_annotation"].values():
            self.anns.setdefault(_get(a, "sample_token", "sample_annotation"), []).append(a)
        self.instance_index = {t: i for i, t in enumerate(self.tables["instance"])}
        self.tokens = self._sample_order()
        self.problems: list[str] = []
        self.skipped_objects: dict[str, int] = {}
        self._calibs: dict[tuple[str, ...], Calibration] = {}

    def _sample_order(self) -> list[str]:
        out: list[str] = []
        for scene in self.tables["scene"].values():
            token = _get(scene, "first_sample_token", "scene")
            while token:
                if token not in self.tables["sample"]:
                    raise NuScenesDatasetError(
                        f"{self.table_dir / 'scene.json'}: scene {scene['token']}: sample {token} is not in "
                        "sample.json (expected its first_sample_token/next chain there)"
                    )
                out.append(token)
                token = _get(self.tables["sample"][token], "next", "sample")
        return out

    def __len__(self) -> int:
        return len(self.tokens)

    def _rec(self, table: str, token: str) -> dict:
        rec = self.tables[table].get(token)
        if rec is None:
            raise NuScenesDatasetError(f"{self.table_dir / (table + '.json')}: token {token}: missing")
        return rec

    def channel(self, sd: dict) -> tuple[str, str]:
        """(channel, modality) of a sample_data record."""
        cs = self._rec("calibrated_sensor", _get(sd, "calibrated_sensor_token", "sample_data"))
        sensor = self._rec("sensor", _get(cs, "sensor_token", "calibrated_sensor"))
        return _get(sensor, "channel", "sensor"), _get(sensor, "modality", "sensor")

    def sensors(self) -> list[tuple[str, str]]:
        """(sensor id, kind) of every channel with keyframes, LiDARs first, then cameras, then radars."""
        kinds = {}
        for sds in self.by_sample.values():
            for sd in sds:
                ch, modality = self.channel(sd)
                kinds[ch.lower()] = {"lidar": "lidar", "camera": "camera", "radar": "radar"}.get(modality, "")
        order = {"lidar": 0, "camera": 1, "radar": 2}
        return sorted(((s, k) for s, k in kinds.items() if k), key=lambda sk: (order[sk[1]], sk[0]))

    def kit(self) -> SensorKit:
        """The set's sensors (host clock: the table stamps pass through unmapped); reference = the LiDAR."""
        rates = {"lidar": 20.0, "camera": 12.0, "radar": 13.0}
        uri = f"nuscenes://{self.root}?version={self.version}"
        specs = tuple(SensorSpec(s, k, uri, rates[k], s, 0, "host") for s, k in self.sensors())
        lidars = [s.id for s in specs if s.kind == "lidar"]
        return SensorKit("nuscenes", specs, reference=lidars[0] if lidars else specs[0].id, calibration=None)

    def _calibration(self, sds: list[dict]) -> Calibration:
        key = tuple(sorted(_get(sd, "calibrated_sensor_token", "sample_data") for sd in sds))
        if key not in self._calibs:
            calib = Calibration(provenance={"source": f"nuscenes {self.table_dir}/calibrated_sensor.json"})
            for sd in sds:
                ch, modality = self.channel(sd)
                sid = ch.lower()
                cs = self._rec("calibrated_sensor", sd["calibrated_sensor_token"])
                calib.extrinsics[sid] = nuscenes_transform(cs)
                calib.time_offsets_ns[sid] = 0
                if modality == "camera":
                    K = np.asarray(_get(cs, "camera_intrinsic", "calibrated_sensor"), np.float64)
                    if K.shape != (3, 3):
                        raise NuScenesDatasetError(
                            f"{self.table_dir / 'calibrated_sensor.json'}: {cs['token']} ({ch}): "
                            f"camera_intrinsic shape {K.shape}: expected 3 × 3"
                        )
                    w, h = int(_get(sd, "width", "sample_data")), int(_get(sd, "height", "sample_data"))
                    calib.cameras[sid] = CameraModel(w, h, K, np.zeros(5))
            self._calibs[key] = calib
        return self._calibs[key]

    def _velocity(self, ann: dict) -> np.ndarray:
        """(3,) m/s in the global frame, as the devkit's ``box_velocity`` (0 where it gives NaN)."""
        prev, nxt = ann.get("prev", ""), ann.get("next", "")
        first = self._rec("sample_annotation", prev) if prev else ann
        last = self._rec("sample_annotation", nxt) if nxt else ann
        t0 = self._rec("sample", first["sample_token"])["timestamp"]
        t1 = self._rec("sample", last["sample_token"])["timestamp"]
        dt = t1 - t0
        if first is last or dt <= 0 or dt > _MAX_VELOCITY_DT_US * (2 if prev and nxt else 1):
            return np.zeros(3)
        return (np.asarray(last["translation"], float) - np.asarray(first["translation"], float)) / (
            dt * 1e-6
        )

    def _truth(self, sample: dict, T_global_base: Transform) -> Detections:
        objs, skipped = [], {}
        path = self.table_dir / "sample_annotation.json"
        for a in self.anns.get(sample["token"], []):
            inst = self._rec("instance", _get(a, "instance_token", "sample_annotation"))
            cat = _get(self._rec("category", _get(inst, "category_token", "instance")), "name", "category")
            if cat in NUSCENES_OTHER_CATEGORIES:
                skipped[cat] = skipped.get(cat, 0) + 1
                continue
            if cat not in NUSCENES_CLASSES:
                raise NuScenesDatasetError(
                    f"{path}: annotation {a['token']} (sample {sample['token']}): category {cat!r}: expected "
                    f"one of {', '.join(NUSCENES_CLASSES)} (read) or nuScenes' other categories (skipped)"
                )
            label = NUSCENES_CLASSES[cat]
            box = global_to_box(
                _get(a, "translation", "sample_annotation"),
                _get(a, "size", "sample_annotation"),
                _get(a, "rotation", "sample_annotation"),
                T_global_base,
            )
            v = T_global_base.rotation.T @ self._velocity(a)
            attrs = [self._rec("attribute", t)["name"] for t in a.get("attribute_tokens", [])]
            attribute = next((n for n in attrs if n in ATTRIBUTES[label]), "")
            vis = VISIBILITY_LEVELS.get(str(a.get("visibility_token", "")))
            objs.append(
                Detection(
                    label,
                    1.0,
                    box,
                    v[:2],
                    self.instance_index[a["instance_token"]],
                    attribute,
                    int(a["num_lidar_pts"]) if "num_lidar_pts" in a else None,
                    int(a["num_radar_pts"]) if "num_radar_pts" in a else None,
                    vis[1] if vis else None,
                )
            )
        for k, v in skipped.items():
            self.skipped_objects[k] = self.skipped_objects.get(k, 0) + v
        return Detections(int(sample["timestamp"]) * 1000, tuple(objs), "base_link")

    def load(self, index: int) -> NuScenesSample:
        """Sample ``index`` (:attr:`tokens` order); :class:`NuScenesDatasetError` naming the file if not."""
        import cv2

        token = self.tokens[index]
        sample = self._rec("sample", token)
        sds = self.by_sample.get(token, [])
        if not sds:
            raise NuScenesDatasetError(
                f"{self.table_dir / 'sample.json'}: sample {token}: no keyframe sample_data"
            )
        images, clouds, radars, stamps = {}, {}, {}, {}
        ego = None
        for sd in sorted(sds, key=lambda r: self.channel(r)[0]):
            ch, modality = self.channel(sd)
            sid = ch.lower()
            path = self.root / _get(sd, "filename", "sample_data")
            if not path.is_file():
                raise NuScenesDatasetError(
                    f"{path}: missing (sample {token}, channel {ch}; expected the file sample_data names)"
                )
            stamps[sid] = int(_get(sd, "timestamp", "sample_data")) * 1000
            if modality == "camera":
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise NuScenesDatasetError(f"{path}: not an image OpenCV reads (expected a JPEG)")
                images[sid] = Image(np.ascontiguousarray(bgr[:, :, ::-1]))
            elif modality == "lidar":
                clouds[sid] = read_lidar_bin(path)
                if ego is None:
                    ego = nuscenes_transform(self._rec("ego_pose", _get(sd, "ego_pose_token", "sample_data")))
            elif modality == "radar":
                scan, _dropped = read_nuscenes_radar(path)
                radars[sid] = radar_doppler(scan)
        if ego is None:
            ego = nuscenes_transform(self._rec("ego_pose", sds[0]["ego_pose_token"]))
        calib = self._calibration(sds)
        truth = self._truth(sample, ego)
        return NuScenesSample(
            index, token, int(sample["timestamp"]) * 1000, images, clouds, radars, stamps, truth, calib, ego
        )

    def samples(self) -> Iterator[NuScenesSample]:
        """Every sample that loads, in scene order; the others give one line in ``problems`` each."""
        self.problems, self.skipped_objects = [], {}
        for i in range(len(self.tokens)):
            try:
                yield self.load(i)
            except (InputError, OSError, ValueError) as e:
                self.problems.append(str(e).replace("\n", " "))
                log.warning("nuscenes: skipped sample %s: %s", self.tokens[i], e)

    def sample_messages(self, s: NuScenesSample) -> list[Message]:
        """A sample's LiDAR, camera and radar messages (each at its own stamp), then its ground truth."""
        out = []
        for group in (s.clouds, s.images, s.radars):
            for sid, payload in group.items():
                t = s.stamps_ns[sid]
                out.append(Message(sid, t, payload, t, t, frame=sid, seq=s.index))
        out.append(
            Message(
                GROUND_TRUTH_ID, s.stamp_ns, s.truth, s.stamp_ns, s.stamp_ns, frame="base_link", seq=s.index
            )
        )
        return out

    def __iter__(self) -> Iterator[Message]:
        """Every sample's messages (:meth:`sample_messages`), for ``open_source``."""
        for s in self.samples():
            yield from self.sample_messages(s)

    def source_id(self) -> str:
        """Names this set's content for cache keys: path, version, table sizes and modification times."""
        stats = [p.stat() for p in sorted(self.table_dir.glob("*.json"))]
        newest = max((st.st_mtime_ns for st in stats), default=0)
        size = sum(st.st_size for st in stats)
        return f"nuscenes:{self.root.resolve()}:{self.version}:{len(self.tokens)}:{size}:{newest}"

    def stats(self) -> dict[str, int]:
        out = {"samples": len(self.tokens), "error.bad_sample": len(self.problems)}
        out.update({f"skipped_objects.{k}": v for k, v in self.skipped_objects.items()})
        return out
