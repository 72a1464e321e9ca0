"""KITTI 3D object benchmark folders as samples of the frame cache, and KITTI's label conventions both ways.

Layout: ``DIR/training/{image_2/NNNNNN.png, velodyne/NNNNNN.bin, calib/NNNNNN.txt, label_2/NNNNNN.txt}``
(``DIR`` may also be the ``training`` or ``testing`` folder itself; without ``label_2`` the samples carry
no truth). URI: ``kitti-object://DIR[?camera=ID&lidar=ID]``.

- **Sensors**: the rectified camera 2 (``image_2``) as ``cam2`` and the Velodyne as ``velodyne`` (the
  names of :func:`edgefuse.calib.importers.kitti_to_calibration`; ``camera=``/``lidar=`` rename them, e.g.
  to a model's ``cam_front``/``lidar_top``). No radar: the kit (:func:`kitti_kit`) has none, and the frame
  cache feeds a model's radar input empty (``radar_valid`` 0).
- **Calibration**: per sample, from its calib file (:func:`~edgefuse.calib.importers.kitti_to_calibration`,
  image size from its image): base_link = the IMU frame when ``Tr_imu_to_velo`` is given, else the
  Velodyne frame. Samples with the same calib text share one :class:`Calibration` object.
- **Stamps**: KITTI object samples carry none; synthesized as sample index × 100 ms (KITTI's 10 Hz),
  camera = LiDAR = truth stamp, raw = receive = stamp.
- **Truth**: ``label_2`` objects in the rectified camera-0 frame (x right, y down, z forward; location =
  bottom centre; dimensions h w l; ``rotation_y`` about y, 0 = length along +x) → :class:`Detections` in
  base_link (``Box3D`` centre, l w h, yaw about +z; velocity 0: KITTI has none). Car / Pedestrian /
  Cyclist → car / pedestrian / cyclist; KITTI's other classes (:data:`KITTI_OTHER_CLASSES`) are skipped and
  counted; a KITTI label holds only objects in the image.
- **Bad samples** are skipped with one line each (``problems``, also logged), and the rest loads: a sample
  missing one of its files; a label that does not parse or names a class that is not KITTI's (file, line,
  the expected classes); a calibration that does not parse, or whose P2 principal point lies outside the
  middle half of its image — KITTI calib files carry no image size, so a calibration made for another
  image size (e.g. a 1242 × 375 KITTI drive's, cy ≈ 172 px, beside a 1280 × 720 image) shows there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from edgefuse.adapters.files.kitti import read_kitti_bin
from edgefuse.calib.importers import kitti_to_calibration
from edgefuse.errors import InputError
from edgefuse.geometry import Transform
from edgefuse.rig import Calibration, SensorKit, SensorSpec
from edgefuse.types import Box3D, Detection, Detections, Image, Message, PointCloud

log = logging.getLogger(__name__)

#: KITTI type → edgefuse class (types.CLASSES)
KITTI_CLASSES: dict[str, str] = {"Car": "car", "Pedestrian": "pedestrian", "Cyclist": "cyclist"}
#: KITTI's other types: skipped (counted) when read
KITTI_OTHER_CLASSES: tuple[str, ...] = ("Van", "Truck", "Person_sitting", "Tram", "Misc", "DontCare")
#: (folder, suffix) of a sample's files; label_2 only where the folder exists
KITTI_FILES: tuple[tuple[str, str], ...] = (
    ("image_2", ".png"), ("velodyne", ".bin"), ("calib", ".txt"), ("label_2", ".txt"),
)  # fmt: skip
KITTI_PERIOD_NS = 100_000_000
#: The frame cache's ground-truth sensor id (:data:`edgefuse.dataset.GROUND_TRUTH_ID`).
GROUND_TRUTH_ID = "ground_truth"
_DOWN = np.array([0.0, 1.0, 0.0])  # a KITTI box's bottom is at +h along the camera's y (down)


class KittiDatasetError(InputError):
    """A KITTI object folder or sample that cannot be read (names the file and what was expected)."""


# ================================================================ conventions


@dataclass(frozen=True)
class KittiObject:
    """One object of a KITTI label or result file: ``type`` (e.g. Car, Van, Pedestrian, DontCare; compared
    without case), ``truncated`` 0..1, ``occluded`` 0..3, ``alpha`` rad, ``bbox`` (4,) px x1 y1 x2 y2,
    ``dimensions`` (3,) m height width length, ``location`` (3,) m bottom centre in camera-2,
    ``rotation_y`` rad, ``score`` (detections; 1 for ground truth)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float = 1.0


def parse_kitti_objects(text: str, name: str = "<kitti>") -> list[KittiObject]:
    """The objects of a KITTI label (15 fields a line) or result file (16: with the score)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) not in (15, 16):
            raise InputError(f"{name}:{n}: expected 15 (label) or 16 (result) fields, got {len(f)}")
        try:
            v = [float(x) for x in f[1:]]
        except ValueError as e:
            raise InputError(f"{name}:{n}: expected numbers after the type: {e}") from None
        out.append(
            KittiObject(
                f[0], v[0], int(v[1]), v[2], tuple(v[3:7]), tuple(v[7:10]), tuple(v[10:13]), v[13],
                v[14] if len(v) == 15 else 1.0,
            )
        )  # fmt: skip
    return out


def box_to_kitti(box: Box3D, T_rect_base: Transform) -> tuple[np.ndarray, np.ndarray, float]:
    """A base_link box → KITTI (location (3,) m bottom centre in the rectified camera frame, dimensions
    (3,) m h w l, rotation_y rad). Exact only where the rectified frame's y axis is base_link's −z (a
    KITTI box turns about y alone): the exporter's rectification makes it so."""
    centre = T_rect_base.apply(box.center[None])[0]
    l, w, h = box.size
    heading = T_rect_base.rotation @ np.array([math.cos(box.yaw), math.sin(box.yaw), 0.0])
    return centre + _DOWN * h / 2.0, np.array([h, w, l]), math.atan2(-heading[2], heading[0])


def kitti_to_box(location, dimensions, rotation_y: float, T_base_rect: Transform) -> Box3D:
    """KITTI (location bottom centre, dimensions h w l, rotation_y) in the rectified frame → base_link box."""
    h, w, l = (float(v) for v in dimensions)
    centre = T_base_rect.apply((np.asarray(location, np.float64) - _DOWN * h / 2.0)[None])[0]
    heading = T_base_rect.rotation @ np.array([math.cos(rotation_y), 0.0, -math.sin(rotation_y)])
    return Box3D(centre, np.array([l, w, h]), math.atan2(heading[1], heading[0]))


def box_corners_rect(location, dimensions, rotation_y: float) -> np.ndarray:
    """(8, 3) corners of a KITTI box in the rectified camera frame (the devkit's box)."""
    h, w, l = dimensions
    x = np.array([l, l, -l, -l, l, l, -l, -l]) / 2.0
    z = np.array([w, -w, -w, w, w, -w, -w, w]) / 2.0
    y = np.array([0, 0, 0, 0, -h, -h, -h, -h], np.float64)
    c, s = math.cos(rotation_y), math.sin(rotation_y)
    return np.stack([c * x + s * z, y, -s * x + c * z], axis=1) + np.asarray(location, np.float64)


def image_box(
    corners_rect: np.ndarray, P: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, float] | None:
    """The 2D box (x1 y1 x2 y2 px, clipped to the image) of a 3D box's corners projected with ``P``
    (3 × 4), and KITTI's truncation (the fraction of the unclipped 2D box outside the image); None where a
    corner is less than 0.1 m in front of the camera or the box misses the image (KITTI labels only objects
    in the image)."""
    uvw = np.hstack([corners_rect, np.ones((8, 1))]) @ P.T
    if np.any(uvw[:, 2] < 0.1):
        return None
    uv = uvw[:, :2] / uvw[:, 2:3]
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    w, h = size
    clo = np.maximum(lo, 0.0)
    chi = np.minimum(hi, [w - 1.0, h - 1.0])
    if np.any(chi <= clo):
        return None
    area = float(np.prod(hi - lo))
    return np.concatenate([clo, chi]), float(1.0 - np.prod(chi - clo) / area) if area > 0 else 0.0


def format_kitti_object(o: KittiObject) -> str:
    """One ``label_2`` line (15 fields, as KITTI writes them: truncation with 2 decimals, the occlusion
    level an integer; the rest with 8 decimals, so values of a float32 survive the text)."""
    nums = [o.alpha, *o.bbox, *o.dimensions, *o.location, o.rotation_y]
    return " ".join([o.type, f"{o.truncated:.2f}", str(int(o.occluded)), *(f"{v:.8f}" for v in nums)])


def calib_text(
    P: np.ndarray, R0_rect: np.ndarray, T_cam_velo: Transform, T_velo_imu: Transform | None
) -> str:
    """A KITTI object calib file: P0–P3 = ``P`` (3 × 4; the one camera), R0_rect, Tr_velo_to_cam,
    Tr_imu_to_velo (when given), 12 significant digits."""

    def row(m) -> str:
        return " ".join(f"{v:.12e}" for v in np.asarray(m, np.float64).reshape(-1))

    lines = [f"P{i}: {row(P)}" for i in range(4)]
    lines += [f"R0_rect: {row(R0_rect)}", f"Tr_velo_to_cam: {row(T_cam_velo.matrix()[:3])}"]
    if T_velo_imu is not None:
        lines.append(f"Tr_imu_to_velo: {row(T_velo_imu.matrix()[:3])}")
    return "\n".join(lines) + "\n"


# ================================================================ reader


@dataclass(frozen=True)
class KittiSample:
    """One KITTI object sample: ``image`` (H × W × 3 RGB uint8), ``cloud`` (N × 4 x y z intensity float32,
    Velodyne frame, intensity = 255 × reflectance), ``truth`` (base_link; None without ``label_2``),
    ``calibration`` (its calib file), ``stamp_ns`` = index × 100 ms (synthesized)."""

    index: int
    stamp_ns: int
    image: Image
    cloud: PointCloud
    truth: Detections | None
    calibration: Calibration


def kitti_kit(camera: str = "cam2", lidar: str = "velodyne", uri: str = "kitti-object://") -> SensorKit:
    """The kit of a KITTI object folder: one camera, one LiDAR (the reference), both 10 Hz on the host
    clock (the synthesized stamps pass through unmapped), no radar."""
    return SensorKit(
        "kitti-object",
        (SensorSpec(camera, "camera", uri, 10.0, camera, 0, "host"),
         SensorSpec(lidar, "lidar", uri, 10.0, lidar, 0, "host")),
        reference=lidar,
        calibration=None,
    )  # fmt: skip


def parse_kitti_object_uri(uri: str) -> tuple[Path, str, str]:
    """``kitti-object://DIR[?camera=ID&lidar=ID]`` → (DIR, camera id, lidar id)."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    if parts.scheme != "kitti-object" or not path:
        raise KittiDatasetError(f"{uri}: expected kitti-object://DIR[?camera=ID&lidar=ID]")
    ids = {"camera": "cam2", "lidar": "velodyne"}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k not in ids or not v:
            raise KittiDatasetError(
                f"{uri}: query {k}={v!r}: expected only camera=ID and lidar=ID (non-empty)"
            )
        ids[k] = v
    return Path(path), ids["camera"], ids["lidar"]


def _split_dir(root: Path) -> Path:
    for d in (root, root / "training"):
        if (d / "velodyne").is_dir() or (d / "image_2").is_dir():
            return d
    raise KittiDatasetError(
        f"{root}: expected a KITTI object folder (training/ with image_2, velodyne, calib)"
    )


def _renamed(calib: Calibration, old: str, new: str) -> None:
    if old != new:
        calib.extrinsics[new] = calib.extrinsics.pop(old)
        calib.time_offsets_ns[new] = calib.time_offsets_ns.pop(old)
        if old in calib.cameras:
            calib.cameras[new] = calib.cameras.pop(old)


class KittiObjectDataset:
    """The samples of a KITTI object folder (module doc), in index order. ``problems``: one line per
    skipped sample (reset by each pass); ``skipped_objects``: KITTI's other types by name."""

    def __init__(self, root: str | Path, camera: str = "cam2", lidar: str = "velodyne"):
        self.root = _split_dir(Path(root))
        self.camera, self.lidar = camera, lidar
        self.has_labels = (self.root / "label_2").is_dir()
        folders = [(f, s) for f, s in KITTI_FILES if f != "label_2" or self.has_labels]
        self.files = {f: {p.stem: p for p in (self.root / f).glob(f"*{s}")} for f, s in folders
                      if (self.root / f).is_dir()}  # fmt: skip
        names = sorted(set().union(*(set(v) for v in self.files.values())))
        self.names = [n for n in names if n.isdigit()]
        self.problems: list[str] = []
        self.skipped_objects: dict[str, int] = {}
        self._calibs: dict[tuple[str, tuple[int, int]], Calibration] = {}

    def __len__(self) -> int:
        return len(self.names)

    def kit(self) -> SensorKit:
        return kitti_kit(self.camera, self.lidar, f"kitti-object://{self.root}")

    def _path(self, folder: str, name: str) -> Path:
        p = self.files.get(folder, {}).get(name)
        if p is None:
            suffix = dict(KITTI_FILES)[folder]
            have = [f for f in self.files if name in self.files[f]]
            raise KittiDatasetError(
                f"{self.root / folder / (name + suffix)}: missing (sample {name} has {', '.join(have)}; "
                f"expected {', '.join(f + '/' + name + dict(KITTI_FILES)[f] for f in self.files)})"
            )
        return p

    def _calibration(self, name: str, size: tuple[int, int]) -> Calibration:
        path = self._path("calib", name)
        text = path.read_text()
        key = (text, size)
        if key not in self._calibs:
            calib = kitti_to_calibration(text, str(path), size)
            if "cam2" not in calib.cameras:
                raise KittiDatasetError(f"{path}: P2: missing (image_2 is camera 2)")
            cx, cy = calib.cameras["cam2"].K[:2, 2]
            w, h = size
            if abs(cx - w / 2) > w / 4 or abs(cy - h / 2) > h / 4:
                raise KittiDatasetError(
                    f"{path}: P2 principal point ({cx:.1f}, {cy:.1f}) px is outside the middle half of the "
                    f"{w}×{h} image image_2/{name}.png: expected a calibration made for this image size"
                )
            _renamed(calib, "cam2", self.camera)
            _renamed(calib, "velodyne", self.lidar)
            self._calibs[key] = calib
        return self._calibs[key]

    def _truth(self, name: str, stamp_ns: int, calib: Calibration) -> Detections | None:
        if not self.has_labels:
            return None
        path = self._path("label_2", name)
        lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.split()]
        cam = calib.cameras[self.camera]
        P2 = cam.projection_matrix()
        t2 = np.linalg.solve(cam.K, P2[:, 3])  # rectified camera 0 → camera 2 (labels are in camera 0)
        T_base_rect0 = calib.extrinsics[self.camera] @ Transform(np.eye(3), t2)
        objs, skipped = [], {}
        for n, o in zip(lines, parse_kitti_objects(path.read_text(), str(path)), strict=True):
            if o.type in KITTI_CLASSES:
                box = kitti_to_box(o.location, o.dimensions, o.rotation_y, T_base_rect0)
                objs.append(Detection(KITTI_CLASSES[o.type], 1.0, box))
            elif o.type in KITTI_OTHER_CLASSES:
                skipped[o.type] = skipped.get(o.type, 0) + 1
            else:
                raise KittiDatasetError(
                    f"{path}:{n}: type {o.type!r}: expected one of {', '.join(KITTI_CLASSES)} (read) or "
                    f"{', '.join(KITTI_OTHER_CLASSES)} (skipped)"
                )
        for k, v in skipped.items():
            self.skipped_objects[k] = self.skipped_objects.get(k, 0) + v
        return Detections(stamp_ns, tuple(objs), "base_link")

    def load(self, name: str) -> KittiSample:
        """One sample by its name (``000007``); :class:`KittiDatasetError` naming the file otherwise."""
        import cv2

        index = int(name)
        stamp = index * KITTI_PERIOD_NS
        paths = {f: self._path(f, name) for f in self.files}
        bgr = cv2.imread(str(paths["image_2"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise KittiDatasetError(f"{paths['image_2']}: not an image OpenCV reads (expected a PNG)")
        image = Image(np.ascontiguousarray(bgr[:, :, ::-1]))
        calib = self._calibration(name, (image.width, image.height))
        cloud, _dropped = read_kitti_bin(paths["velodyne"])
        return KittiSample(index, stamp, image, cloud, self._truth(name, stamp, calib), calib)

    def samples(self) -> Iterator[KittiSample]:
        """Every sample that loads, in name order; the others give one line in ``problems`` each."""
        self.problems, self.skipped_objects = [], {}
        for name in self.names:
            try:
                yield self.load(name)
            except (InputError, OSError) as e:
                self.problems.append(str(e))
                log.warning("kitti-object: skipped sample %s: %s", name, e)

    def sample_messages(self, s: KittiSample) -> list[Message]:
        """A sample's camera and LiDAR messages, then its ground truth (if any); stamp = raw = receive."""
        out = []
        for sid, payload in ((self.camera, s.image), (self.lidar, s.cloud), (GROUND_TRUTH_ID, s.truth)):
            if payload is not None:
                frame = sid if sid != GROUND_TRUTH_ID else "base_link"
                m = Message(sid, s.stamp_ns, payload, s.stamp_ns, s.stamp_ns, frame=frame, seq=s.index)
                out.append(m)
        return out

    def __iter__(self) -> Iterator[Message]:
        """Every sample's messages (:meth:`sample_messages`), for ``open_source``."""
        for s in self.samples():
            yield from self.sample_messages(s)

    def source_id(self) -> str:
        """Names this folder's content for cache keys: path, files, newest modification time."""
        stats = [p.stat() for files in self.files.values() for p in files.values()]
        newest = max((st.st_mtime_ns for st in stats), default=0)
        return f"kitti-object:{self.root.resolve()}:{self.camera}:{self.lidar}:{len(stats)}:{newest}"

    def stats(self) -> dict[str, int]:
        out = {"samples": len(self.names), "error.bad_sample": len(self.problems)}
        out.update({f"skipped_objects.{k}": v for k, v in self.skipped_objects.items()})
        return out
