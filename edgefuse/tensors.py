"""FrameSet → FusionInputs: the model's input tensors, numpy only (numba for pillar voxelization; never
torch). Every shape and dtype is fixed by a :class:`TensorSpec` (the model manifest's tensor spec, DESIGN
§1), so an engine is built once. The shape of every input: docs/tensors.md.

- points (LiDAR, radar) into the vehicle frame with the calibration's extrinsics, LiDAR de-skewed and radar
  doppler ego-compensated when an ego trajectory is given (:mod:`edgefuse.motion`);
- pillar voxelization (:class:`PillarVoxelizer`) into fixed-size padded arrays with counts. **Overflow
  rule**: points outside the grid or with a non-finite coordinate are dropped; pillars are ordered by their
  total point count, descending, ties by linear index ``iy · nx + ix`` ascending, and the first
  ``max_pillars`` are kept; inside a pillar points keep their input order and the first
  ``max_points_per_pillar`` are kept;
- images undistorted and resized in one ``cv2.remap`` (the table is built once per camera model and
  source size), RGB-normalized ``(v/255 − mean)/std``, stacked on a camera axis as NCHW; the matching
  intrinsics and the 3×4 projection ``K' · [R | t]`` of base_link → image;
- sensors missing from the frame give zero tensors and a 0 in their ``*_valid`` flag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from edgefuse._kernels import pillarize
from edgefuse.errors import InputError
from edgefuse.geometry import CameraModel
from edgefuse.types import CLASSES, CompressedImage, FrameSet, Image, PointCloud, RadarScan

SPEC_VERSION = 1
#: ImageNet RGB statistics on a 0..1 scale (the default normalization).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TensorSpecError(InputError):
    """A tensor spec or an input that does not fit it (names the field and what was expected)."""


@dataclass(frozen=True)
class TensorSpec:
    """The model's input contract (carried by the model manifest).

    ``cameras``/``lidars``/``radars``: sensor ids, in tensor order (several LiDARs or radars share one
    pillar grid); ``image_size`` (H, W) of each camera tensor; ``x_range``/``y_range``/``z_range`` (min,
    max) m of the BEV grid in base_link; ``pillar_size`` (dx, dy) m; ``max_pillars`` /
    ``max_points_per_pillar`` for LiDAR and ``radar_max_pillars`` / ``radar_max_points_per_pillar`` for
    radar; ``lidar_features``/``radar_features``: per-point features every sensor of the kind must give
    (names of the cloud's fields; x y z are base_link coordinates, always first);
    ``radar_optional_features``: radar fields used where the radar measures them (a power measure: RCS,
    SNR — different quantities, never one standing in for the other), each fed as two channels, the value
    and a 0/1 flag saying whether the point has it (:attr:`radar_channels`); ``classes``;
    ``image_mean``/``image_std`` RGB on 0..1."""

    cameras: tuple[str, ...] = ("cam_front",)
    lidars: tuple[str, ...] = ("lidar_top",)
    radars: tuple[str, ...] = ("radar_front",)
    image_size: tuple[int, int] = (352, 640)
    x_range: tuple[float, float] = (-51.2, 51.2)
    y_range: tuple[float, float] = (-51.2, 51.2)
    z_range: tuple[float, float] = (-3.0, 5.0)
    pillar_size: tuple[float, float] = (0.32, 0.32)
    max_pillars: int = 12000
    max_points_per_pillar: int = 32
    radar_max_pillars: int = 1024
    radar_max_points_per_pillar: int = 8
    lidar_features: tuple[str, ...] = ("x", "y", "z", "intensity")
    radar_features: tuple[str, ...] = ("x", "y", "z", "doppler")
    radar_optional_features: tuple[str, ...] = ()
    classes: tuple[str, ...] = CLASSES
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for name in ("cameras", "lidars", "radars", "lidar_features", "radar_features",
                     "radar_optional_features", "classes"):  # fmt: skip
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("image_size", "x_range", "y_range", "z_range", "pillar_size", "image_mean", "image_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.version != SPEC_VERSION:
            raise TensorSpecError(f"TensorSpec.version: expected {SPEC_VERSION}, got {self.version}")
        h, w = self.image_size
        if int(h) <= 0 or int(w) <= 0:
            raise TensorSpecError(f"TensorSpec.image_size: expected positive (H, W), got {self.image_size}")
        for name in ("x_range", "y_range", "z_range"):
            lo, hi = getattr(self, name)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise TensorSpecError(
                    f"TensorSpec.{name}: expected finite (min, max) with max > min, got {(lo, hi)}"
                )
        if min(self.pillar_size) <= 0:
            raise TensorSpecError(
                f"TensorSpec.pillar_size: expected positive (dx, dy), got {self.pillar_size}"
            )
        for name in (
            "max_pillars",
            "max_points_per_pillar",
            "radar_max_pillars",
            "radar_max_points_per_pillar",
        ):
            if int(getattr(self, name)) < 1:
                raise TensorSpecError(f"TensorSpec.{name}: expected ≥ 1, got {getattr(self, name)}")
        for name in ("lidar_features", "radar_features"):
            if getattr(self, name)[:3] != ("x", "y", "z"):
                raise TensorSpecError(f"TensorSpec.{name}: expected x y z first, got {getattr(self, name)}")
        both = set(self.radar_features) & set(self.radar_optional_features)
        if both or len(set(self.radar_optional_features)) != len(self.radar_optional_features):
            raise TensorSpecError(
                "TensorSpec.radar_optional_features: expected distinct names not in radar_features, got "
                f"{self.radar_optional_features} beside {self.radar_features}"
            )
        if min(self.image_std) <= 0:
            raise TensorSpecError(f"TensorSpec.image_std: expected positive values, got {self.image_std}")

    @property
    def radar_channels(self) -> tuple[str, ...]:
        """The radar pillar points' channels: the required features, then per optional feature its value
        and ``<name>_valid`` (1 where the point has it, else 0 with the value 0)."""
        opt = tuple(c for f in self.radar_optional_features for c in (f, f"{f}_valid"))
        return self.radar_features + opt

    @property
    def grid_size(self) -> tuple[int, int]:
        """(ny, nx): BEV grid rows (y) and columns (x)."""
        nx = int(round((self.x_range[1] - self.x_range[0]) / self.pillar_size[0]))
        ny = int(round((self.y_range[1] - self.y_range[0]) / self.pillar_size[1]))
        return ny, nx

    def to_dict(self) -> dict:
        """JSON-able form (the manifest's ``tensor_spec``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(d: dict, source: str = "tensor spec") -> TensorSpec:
        allowed = set(TensorSpec.__dataclass_fields__)
        extra = sorted(set(d) - allowed)
        if extra:
            raise TensorSpecError(f"{source}: unknown key {extra[0]!r}; allowed: {sorted(allowed)}")
        try:
            return TensorSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (TypeError, ValueError) as e:
            raise TensorSpecError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# ================================================================ pillar voxelization


@dataclass
class Pillars:
    """Padded pillars: ``points`` (P, N, F) float32 (rows beyond ``counts`` are 0), ``coords`` (P, 2)
    int32 (iy, ix) grid cell (rows beyond ``num_pillars`` are 0), ``counts`` (P,) int32 points kept per
    pillar, ``num_pillars`` int."""

    points: np.ndarray
    coords: np.ndarray
    counts: np.ndarray
    num_pillars: int


class PillarVoxelizer:
    """Pillar voxelization with fixed output sizes (overflow rule: module doc). Holds two int grid
    scratch arrays of ny·nx cells, so keep one per grid; not for concurrent use from two threads.

    ``x_range``/``y_range``/``z_range``: (min, max) m, half-open; ``pillar_size`` (dx, dy) m."""

    def __init__(self, x_range, y_range, z_range, pillar_size, max_pillars: int, max_points_per_pillar: int):
        self.lo = np.array([x_range[0], y_range[0], z_range[0]], np.float32)
        self.hi = np.array([x_range[1], y_range[1], z_range[1]], np.float32)
        self.size = np.array(pillar_size, np.float32)
        self.nx = int(round((x_range[1] - x_range[0]) / pillar_size[0]))
        self.ny = int(round((y_range[1] - y_range[0]) / pillar_size[1]))
        self.max_pillars, self.max_points = int(max_pillars), int(max_points_per_pillar)
        self._count = np.zeros(self.ny * self.nx, np.int32)
        self._slot = np.full(self.ny * self.nx, -1, np.int32)

    @staticmethod
    def for_spec(spec: TensorSpec, radar: bool = False) -> PillarVoxelizer:
        if radar:
            return PillarVoxelizer(
                spec.x_range,
                spec.y_range,
                spec.z_range,
                spec.pillar_size,
                spec.radar_max_pillars,
                spec.radar_max_points_per_pillar,
            )
        return PillarVoxelizer(
            spec.x_range,
            spec.y_range,
            spec.z_range,
            spec.pillar_size,
            spec.max_pillars,
            spec.max_points_per_pillar,
        )

    def __call__(self, points: np.ndarray) -> Pillars:
        """``points`` (M, F) float32 with x y z first (metres, the grid's frame) → :class:`Pillars`."""
        p = np.asarray(points)
        if p.ndim != 2 or p.shape[1] < 3:
            raise TensorSpecError(f"PillarVoxelizer: points: expected shape (M, F ≥ 3), got {p.shape}")
        p = np.ascontiguousarray(p, dtype=np.float32)
        out = np.zeros((self.max_pillars, self.max_points, p.shape[1]), np.float32)
        coords = np.zeros((self.max_pillars, 2), np.int32)
        counts = np.zeros(self.max_pillars, np.int32)
        lin = np.empty(p.shape[0], np.int64)
        kept = pillarize()(
            p,
            self.lo,
            self.hi,
            self.size,
            self.nx,
            self.max_pillars,
            self.max_points,
            out,
            coords,
            counts,
            self._count,
            self._slot,
            lin,
        )
        return Pillars(out, coords, counts, int(kept))


# ================================================================ images


@dataclass(frozen=True)
class _CameraTable:
    map1: np.ndarray
    map2: np.ndarray
    K: np.ndarray  # intrinsics of the output image (3, 3)


class ImagePreprocessor:
    """Undistort + resize in one remap (tables cached per camera model and source size), then RGB
    normalization to a (3, H, W) float32 tensor. JPEG frames are decoded at 1/2, 1/4 or 1/8 size when
    that still covers the output size (libjpeg's DCT scaling), which is the expensive part saved."""

    def __init__(self, size_hw: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.h, self.w = int(size_hw[0]), int(size_hw[1])
        std = np.asarray(std, np.float32)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)
        self.offset = (-np.asarray(mean, np.float32) / std).astype(np.float32)
        self._tables: dict[tuple, _CameraTable] = {}

    def output_K(self, cam: CameraModel) -> np.ndarray:
        """Intrinsics of the output image: the camera's K scaled to (W, H) (pixel centres preserved)."""
        return cam.resized(self.w, self.h).K

    def table(self, cam: CameraModel, src_w: int, src_h: int) -> _CameraTable:
        key = (cam.model, cam.width, cam.height, cam.K.tobytes(), cam.distortion.tobytes(), src_w, src_h)
        t = self._tables.get(key)
        if t is not None:
            return t
        # intrinsics of the source image as it was decoded (a reduced JPEG decode scales them)
        K_src = cam.resized(src_w, src_h).K
        K_out = self.output_K(cam)
        if cam.model == "fisheye":
            m1, m2 = cv2.fisheye.initUndistortRectifyMap(
                K_src, cam.distortion.reshape(4, 1), np.eye(3), K_out, (self.w, self.h), cv2.CV_16SC2
            )
        else:  # pinhole (5 coefficients) or rational (8): OpenCV takes the model from the count
            m1, m2 = cv2.initUndistortRectifyMap(
                K_src, cam.distortion, None, K_out, (self.w, self.h), cv2.CV_16SC2
            )
        t = _CameraTable(m1, m2, K_out)
        self._tables[key] = t
        return t

    def decode(self, payload, cam: CameraModel) -> tuple[np.ndarray, bool]:
        """An Image or CompressedImage payload → (H×W×3 uint8, possibly a reduced size; True when the
        channels are BGR as OpenCV decodes them — the swap is folded into the normalization)."""
        if isinstance(payload, Image):
            return payload.data, False
        if isinstance(payload, CompressedImage):
            flag = cv2.IMREAD_COLOR
            for r, f in (
                (8, cv2.IMREAD_REDUCED_COLOR_8),
                (4, cv2.IMREAD_REDUCED_COLOR_4),
                (2, cv2.IMREAD_REDUCED_COLOR_2),
            ):
                if payload.format == "jpeg" and cam.width // r >= self.w and cam.height // r >= self.h:
                    flag = f
                    break
            bgr = cv2.imdecode(np.frombuffer(payload.data, np.uint8), flag)
            if bgr is None:
                raise TensorSpecError(
                    f"image: could not decode the {payload.format} frame ({len(payload.data)} B)"
                )
            return bgr, True
        raise TensorSpecError(
            f"image: expected an Image or CompressedImage payload, got {type(payload).__name__}"
        )

    def __call__(self, payload, cam: CameraModel, out: np.ndarray | None = None) -> np.ndarray:
        """→ (3, H, W) float32 normalized RGB (written into ``out`` when given)."""
        img, bgr = self.decode(payload, cam)
        sh, sw = img.shape[:2]
        if abs(sw / sh - cam.width / cam.height) > 0.02:
            raise TensorSpecError(
                f"image: {sw}x{sh} does not match the calibrated {cam.width}x{cam.height} camera"
            )
        t = self.table(cam, sw, sh)
        small = cv2.remap(img, t.map1, t.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if out is None:
            out = np.empty((3, self.h, self.w), np.float32)
        planes = cv2.split(small)
        for c in range(3):
            o = out[c]
            o[...] = planes[2 - c if bgr else c]
            o *= self.scale[c]
            o += self.offset[c]
        return out


# ================================================================ FusionInputs


@dataclass
class FusionInputs:
    """The model inputs of one frame (shapes with C cameras, P/R max LiDAR/radar pillars, N/M points
    per pillar, F/G point features; see docs/tensors.md):

    ``images`` (C, 3, H, W) float32; ``intrinsics`` (C, 3, 3) float32 of the resized undistorted images;
    ``projection`` (C, 3, 4) float32 base_link → pixel (``K'·[R|t]`` of ``T_cam_base``); ``camera_valid``
    (C,) uint8; ``lidar_pillars`` (P, N, F) float32; ``lidar_coords`` (P, 2) int32 (iy, ix);
    ``lidar_counts`` (P,) int32; ``lidar_num_pillars`` (1,) int32; ``radar_*`` the same with R, M, G;
    ``lidar_valid``/``radar_valid`` (1,) uint8; ``stamp_ns`` (1,) int64 (the frame's reference stamp)."""

    images: np.ndarray
    intrinsics: np.ndarray
    projection: np.ndarray
    camera_valid: np.ndarray
    lidar_pillars: np.ndarray
    lidar_coords: np.ndarray
    lidar_counts: np.ndarray
    lidar_num_pillars: np.ndarray
    lidar_valid: np.ndarray
    radar_pillars: np.ndarray
    radar_coords: np.ndarray
    radar_counts: np.ndarray
    radar_num_pillars: np.ndarray
    radar_valid: np.ndarray
    stamp_ns: np.ndarray
    dropped_points: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Name → array, for a backend's ``infer``."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}


def input_shapes(spec: TensorSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name → (shape, dtype) of every :class:`FusionInputs` array for ``spec`` (what an engine declares)."""
    C = len(spec.cameras)
    H, W = spec.image_size
    F, G = len(spec.lidar_features), len(spec.radar_channels)
    P, N = spec.max_pillars, spec.max_points_per_pillar
    R, M = spec.radar_max_pillars, spec.radar_max_points_per_pillar
    return {
        "images": ((C, 3, H, W), "float32"),
        "intrinsics": ((C, 3, 3), "float32"),
        "projection": ((C, 3, 4), "float32"),
        "camera_valid": ((C,), "uint8"),
        "lidar_pillars": ((P, N, F), "float32"),
        "lidar_coords": ((P, 2), "int32"),
        "lidar_counts": ((P,), "int32"),
        "lidar_num_pillars": ((1,), "int32"),
        "lidar_valid": ((1,), "uint8"),
        "radar_pillars": ((R, M, G), "float32"),
        "radar_coords": ((R, 2), "int32"),
        "radar_counts": ((R,), "int32"),
        "radar_num_pillars": ((1,), "int32"),
        "radar_valid": ((1,), "uint8"),
        "stamp_ns": ((1,), "int64"),
    }


def _features(payload, features: tuple[str, ...], sensor: str, optional: tuple[str, ...] = ()):
    """(N, len(features) + 2·len(optional)) float32 array (a new one): the required fields, then per
    optional field its value and a 0/1 "measured" flag (both 0 where the payload lacks the field)."""
    missing = [f for f in features[3:] if not payload.has(f)]
    if missing:
        raise TensorSpecError(
            f"{sensor}: fields {payload.fields}: missing feature {missing[0]!r} the tensor spec asks for"
        )
    cols = [payload.fields.index(f) for f in features]
    if not optional:
        return payload.data[:, cols]
    out = np.zeros((payload.data.shape[0], len(features) + 2 * len(optional)), np.float32)
    out[:, : len(features)] = payload.data[:, cols]
    for i, f in enumerate(optional):
        if payload.has(f):
            out[:, len(features) + 2 * i] = payload.data[:, payload.fields.index(f)]
            out[:, len(features) + 2 * i + 1] = 1.0
    return out


class TensorBuilder:
    """Builds :class:`FusionInputs` for one spec and calibration; keeps the remap tables and voxelizer
    scratch between frames. ``build(frameset, ego=None)``: ``ego`` an
    :class:`~edgefuse.motion.EgoTrajectory` to de-skew LiDAR sweeps (clouds need ``t_ns``) and
    ego-compensate radar doppler; None = points as measured. ``absent``: radars of the spec the source does
    not have (a dataset without radar: KITTI): no calibration needed, their input always empty (valid 0)."""

    def __init__(self, spec: TensorSpec, calibration, absent: tuple[str, ...] = ()):
        self.spec, self.calib = spec, calibration
        for s in spec.cameras:
            calibration.camera(s)
        for s in spec.cameras + spec.lidars + tuple(r for r in spec.radars if r not in absent):
            calibration.T_base(s)
        self.images = ImagePreprocessor(spec.image_size, spec.image_mean, spec.image_std)
        self.lidar_vox = PillarVoxelizer.for_spec(spec)
        self.radar_vox = PillarVoxelizer.for_spec(spec, radar=True)
        C = len(spec.cameras)
        self._K = np.zeros((C, 3, 3), np.float32)
        self._P = np.zeros((C, 3, 4), np.float32)
        for i, s in enumerate(spec.cameras):
            K = self.images.output_K(calibration.camera(s))
            T_cam_base = calibration.T_base(s).inverse().matrix()[:3]
            self._K[i] = K
            self._P[i] = K @ T_cam_base

    def _points(self, frameset: FrameSet, ids, features, kind, ego, optional=()) -> tuple[np.ndarray, bool]:
        from edgefuse.motion import compensate_doppler, deskewed_xyz

        parts = []
        for s in ids:
            m = frameset.messages.get(s)
            if m is None:
                continue
            p = m.payload
            want = PointCloud if kind == "lidar" else RadarScan
            if not isinstance(p, want):
                raise TensorSpecError(f"{s}: expected a {want.__name__} payload, got {type(p).__name__}")
            T = self.calib.T_base(s)
            if ego is not None and kind == "radar" and p.has("doppler"):
                v, w = ego.twist_at(m.stamp_ns)
                p = compensate_doppler(p, T, v, w)
            f = _features(p, features, s, optional)  # a new array
            if ego is not None and kind == "lidar":
                f[:, :3] = deskewed_xyz(p, m.stamp_ns, T, ego, reference_ns=frameset.stamp_ns, in_base=True)
            else:
                f[:, :3] = T.apply(f[:, :3])
            parts.append(f)
        if not parts:
            return np.zeros((0, len(features) + 2 * len(optional)), np.float32), False
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), True

    def build(self, frameset: FrameSet, ego=None) -> FusionInputs:
        spec = self.spec
        C = len(spec.cameras)
        H, W = spec.image_size
        images = np.zeros((C, 3, H, W), np.float32)
        cam_valid = np.zeros(C, np.uint8)
        for i, s in enumerate(spec.cameras):
            m = frameset.messages.get(s)
            if m is not None:
                self.images(m.payload, self.calib.camera(s), out=images[i])
                cam_valid[i] = 1
        lid_pts, lid_ok = self._points(frameset, spec.lidars, spec.lidar_features, "lidar", ego)
        rad_pts, rad_ok = self._points(
            frameset, spec.radars, spec.radar_features, "radar", ego, spec.radar_optional_features
        )
        lp = self.lidar_vox(lid_pts)
        rp = self.radar_vox(rad_pts)
        return FusionInputs(
            images=images,
            intrinsics=self._K.copy(),
            projection=self._P.copy(),
            camera_valid=cam_valid,
            lidar_pillars=lp.points,
            lidar_coords=lp.coords,
            lidar_counts=lp.counts,
            lidar_num_pillars=np.array([lp.num_pillars], np.int32),
            lidar_valid=np.array([lid_ok], np.uint8),
            radar_pillars=rp.points,
            radar_coords=rp.coords,
            radar_counts=rp.counts,
            radar_num_pillars=np.array([rp.num_pillars], np.int32),
            radar_valid=np.array([rad_ok], np.uint8),
            stamp_ns=np.array([frameset.stamp_ns], np.int64),
            dropped_points={
                "lidar": int(lid_pts.shape[0] - lp.counts.sum()),
                "radar": int(rad_pts.shape[0] - rp.counts.sum()),
            },
        )


def build_inputs(frameset: FrameSet, calibration, spec: TensorSpec, ego=None) -> FusionInputs:
    """One-off :class:`FusionInputs` (a loop keeps a :class:`TensorBuilder` for its cached tables)."""
    return TensorBuilder(spec, calibration).build(frameset, ego)
