"""Simulated spinning LiDAR (default: a Velodyne VLP-32C), ray-cast against the scene firing by firing.

The beam layout and firing timing come from :mod:`edgefuse.adapters.velodyne.calibration` (the same
tables the packet codec uses): per-laser elevation, azimuth (rotational) correction and firing offset
within a firing sequence (VLP-32C: lasers fire in pairs in 2.304 µs slots of a 55.296 µs sequence;
1808 sequences × 32 lasers = 57,856 rays per 600 rpm sweep). Other layouts: :func:`velodyne_model`
with any Velodyne calibration, or a :class:`LidarModel` built by hand.

Sweep timing: sequences start every ``sequence_period_ns``; the sweep's last firing is at
``sweep_end_ns`` (the cloud's stamp), when the rotor points at ``cut_azimuth_rad`` (default π: the
seam is behind the vehicle), and the sweep spans one revolution before it. The firing grid relative to
the sweep end is the same for every sweep (computed once per model).

Angles: the rotor azimuth ``α`` is Velodyne's (clockwise seen from above, 0 = the sensor's +x,
forward). A beam fired at ``α`` points at Velodyne azimuth ``α − rot_correction``, i.e. at yaw
``−(α − rot_correction)`` counter-clockwise from +x in the sensor frame (x forward, y left, z up), the
same convention as ROS ``velodyne_pointcloud`` and nebula. The ``ring`` field is the laser's rank by
elevation (0 = lowest), as in ROS.

Physics per ray (``sweep_end_ns`` is the instant of the sweep's last firing, the cloud's stamp):

- every ray is cast at its own firing time ``τ`` with the ego pose and every box pose extrapolated from
  the scene with constant velocity / yaw rate (the ego with its body twist), so motion distorts the
  cloud exactly as on a real sensor; points are reported in the sensor frame at their firing time;
- received power ``P = ρ · cos(incidence) · exp(−2βr) / r²`` (ρ: surface reflectivity, β: fog
  extinction 3.912 / V). A return is detected when ``P · exp(σ·z) ≥ P_min`` (z ~ N(0, 1), σ =
  ``detection_sigma``), ``P_min = ρ_ref / r_ref²`` (a ρ_ref = 10 % target at normal incidence in clear
  air is detected out to ``r_ref``); independently each ray drops out with probability
  ``dropout + rain_dropout · rain``;
- fog backscatter: with probability ``1 − exp(−β · backscatter_length_m)`` a ray returns from the fog
  itself at ``min_range + Exp(backscatter_scale_m)`` when that is nearer than its hard return, with a
  faint intensity (``round(2 · exp(−2βr))``, at least 1);
- range noise N(0, ``range_noise_m``), then quantization to ``distance_resolution_m`` (VLP-32C: 4 mm);
- intensity: Velodyne calibrated reflectivity, ``round(100 · ρ · cos · exp(−2βr))`` clipped to 0..255
  (retro-reflectors, ρ > 1, land above 100 as on the real sensor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgefuse.geometry import Transform
from edgefuse.sim.raycast import (
    GROUND,
    MISS,
    SURFACE_MARKING,
    SURFACE_OFFROAD,
    SURFACE_ROAD,
    cast_rays,
    ego_motion,
    ground_surface,
)
from edgefuse.sim.scene import Scene
from edgefuse.types import POINT_TIME_FIELD, PointCloud

#: Diffuse reflectivity of the ground by surface (see :func:`edgefuse.sim.raycast.ground_surface`).
GROUND_REFLECTIVITY = {SURFACE_OFFROAD: 0.25, SURFACE_ROAD: 0.12, SURFACE_MARKING: 0.7}

#: Fields of the simulated cloud, in column order.
CLOUD_FIELDS = ("x", "y", "z", "intensity", POINT_TIME_FIELD, "ring")


#: Reflectivity of a calibration board's printed squares at 905 nm (matte white paper, black ink).
BOARD_WHITE_REFLECTIVITY, BOARD_BLACK_REFLECTIVITY = 0.8, 0.06


@dataclass(frozen=True, eq=False)
class LidarImperfections:
    """What a real spinning LiDAR does that the calibration tables and an ideal model do not (all off in
    :class:`LidarModel` unless given; the ``calibration-board`` scenario's unit has them).

    - ``range_bias_m``, ``elevation_bias_rad``, ``azimuth_bias_rad`` (L,): per laser, the true beam minus the
      calibration table the driver decodes with (rays are cast along the true beams; points are reported
      along the table's);
    - range walk: a weak echo crosses the detector's threshold later, so it reads long:
      ``walk_m_per_decade · log10(A_ref / A)`` m, clipped to ±3 decades, with A = ρ·cos·exp(−2βr) / r² the
      echo's amplitude and ``walk_reference`` A_ref the amplitude of the factory's range calibration (0 walk
      there; strong echoes read short). A chessboard's black squares read centimetres behind its white ones;
    - beam divergence ``divergence_rad`` (horizontal, vertical; full angle): where a beam's footprint spans
      an edge, 3 × 3 sub-beams over it are cast, their echoes closer than ``merge_m`` merge into one return
      at their power-weighted range (a mixed pixel, between the board and what is behind it), and the
      strongest return is reported (the sensor's "strongest" mode); a beam whose centre misses an edge can
      still return from it. Modelled where the nearer side of the edge is within ``mixed_max_range_m`` (the
      sub-beams cost 9 rays per edge ray; a calibration target stands within it)."""

    range_bias_m: np.ndarray
    elevation_bias_rad: np.ndarray
    azimuth_bias_rad: np.ndarray
    walk_m_per_decade: float = 0.015
    walk_reference: float = 0.5 / 10.0**2
    divergence_rad: tuple[float, float] = (3.0e-3, 1.5e-3)
    merge_m: float = 1.0
    mixed_max_range_m: float = 30.0

    @staticmethod
    def typical(num_lasers: int, seed: int) -> LidarImperfections:
        """One unit's imperfections, drawn from ``seed``: per-laser range bias σ 1 cm (clipped to ±3 cm, the
        VLP-32C's accuracy spec), elevation and azimuth biases σ 0.05°; range walk 1.5 cm per decade of
        amplitude (zero for a 50 % target at 10 m); Velodyne's beam divergence, 3.0 × 1.5 mrad."""
        rng = np.random.default_rng([int(seed), 0x11DA])
        n = int(num_lasers)
        return LidarImperfections(
            range_bias_m=np.clip(rng.normal(0.0, 0.01, n), -0.03, 0.03),
            elevation_bias_rad=np.radians(rng.normal(0.0, 0.05, n)),
            azimuth_bias_rad=np.radians(rng.normal(0.0, 0.05, n)),
        )


@dataclass(frozen=True, eq=False)
class LidarModel:
    """A spinning multi-beam LiDAR.

    Beam layout, L lasers in firing (packet) order: ``vertical_rad`` (L,) elevation, ``azimuth_offset_rad``
    (L,) Velodyne rot_correction (beam azimuth = rotor azimuth − offset), ``firing_offset_ns`` (L,) int64
    firing time within a sequence, ``sequence_period_ns`` one firing sequence. ``rpm`` rotor speed;
    ``cut_azimuth_rad`` the rotor azimuth (Velodyne convention) at the sweep's last firing — π puts the
    seam behind the vehicle. Ranges in metres; noise and detection parameters as in the module doc."""

    name: str
    vertical_rad: np.ndarray
    azimuth_offset_rad: np.ndarray
    firing_offset_ns: np.ndarray
    sequence_period_ns: int
    rpm: float = 600.0
    cut_azimuth_rad: float = float(np.pi)
    min_range_m: float = 1.0
    max_range_m: float = 200.0
    distance_resolution_m: float = 0.004
    range_noise_m: float = 0.02
    dropout: float = 0.005
    rain_dropout: float = 0.25
    reference_reflectivity: float = 0.1
    reference_range_m: float = 120.0
    detection_sigma: float = 0.1
    backscatter_length_m: float = 1.0
    backscatter_scale_m: float = 2.0
    imperfections: LidarImperfections | None = None

    def __post_init__(self) -> None:
        v = np.asarray(self.vertical_rad, dtype=np.float64).reshape(-1)
        n = v.shape[0]
        a = np.asarray(self.azimuth_offset_rad, dtype=np.float64).reshape(-1)
        f = np.asarray(self.firing_offset_ns, dtype=np.int64).reshape(-1)
        if n == 0 or a.shape != (n,) or f.shape != (n,):
            raise ValueError(
                f"LidarModel {self.name!r}: expected vertical_rad, azimuth_offset_rad, firing_offset_ns of "
                f"one shape (L,), got {v.shape}, {a.shape}, {f.shape}"
            )
        if int(self.sequence_period_ns) <= int(f.max()) or f.min() < 0:
            raise ValueError(
                f"LidarModel {self.name!r}: sequence_period_ns: expected > every firing offset "
                f"(0..{int(f.max())}), got {self.sequence_period_ns}"
            )
        if not self.rpm > 0:
            raise ValueError(f"LidarModel {self.name!r}: rpm: expected > 0, got {self.rpm}")
        if not 0 <= self.min_range_m < self.max_range_m:
            raise ValueError(
                f"LidarModel {self.name!r}: expected 0 <= min_range_m < max_range_m, "
                f"got {self.min_range_m}, {self.max_range_m}"
            )
        imp = self.imperfections
        if imp is not None and any(
            np.shape(x) != (n,) for x in (imp.range_bias_m, imp.elevation_bias_rad, imp.azimuth_bias_rad)
        ):
            raise ValueError(
                f"LidarModel {self.name!r}: imperfections: expected per-laser arrays of shape ({n},)"
            )
        object.__setattr__(self, "vertical_rad", v)
        object.__setattr__(self, "azimuth_offset_rad", a)
        object.__setattr__(self, "firing_offset_ns", f)
        object.__setattr__(self, "sequence_period_ns", int(self.sequence_period_ns))

    @property
    def num_lasers(self) -> int:
        return int(self.vertical_rad.shape[0])

    @property
    def rotation_period_ns(self) -> int:
        return int(round(60e9 / self.rpm))

    @property
    def sequences_per_sweep(self) -> int:
        """Firing sequences in one revolution (VLP-32C at 600 rpm: 1808)."""
        return int(self.rotation_period_ns // self.sequence_period_ns)

    @property
    def ring(self) -> np.ndarray:
        """(L,) int: rank of each laser by elevation, 0 = lowest (ROS ``ring``)."""
        r = np.empty(self.num_lasers, np.int64)
        r[np.argsort(self.vertical_rad, kind="stable")] = np.arange(self.num_lasers)
        return r

    @property
    def detection_threshold(self) -> float:
        """P_min = ρ_ref / r_ref² (1/m²)."""
        return self.reference_reflectivity / self.reference_range_m**2


@dataclass(frozen=True)
class Firings:
    """The raw firing grid of one sweep, as the Velodyne packets carry it (F sequences × L lasers).

    ``azimuth_rad`` (F,) float64: rotor azimuth at each sequence's start, Velodyne convention, in
    [0, 2π); ``t_ns`` (F,) int64: each sequence's start in true simulation time (laser l fires at
    ``t_ns + model.firing_offset_ns[l]``); ``range_m`` (F, L) float32: measured range, 0 = no return;
    ``intensity`` (F, L) uint8: calibrated reflectivity.

    Truth, not on the wire: ``box_index`` (F, L) int32, the index into ``scene.boxes`` of the box each
    reported return came from, −1 where there is no return or it is the ground or fog backscatter (with
    mixed returns, :class:`LidarImperfections`, an edge beam is credited to the box its centre ray hits);
    None where not known."""

    azimuth_rad: np.ndarray
    t_ns: np.ndarray
    range_m: np.ndarray
    intensity: np.ndarray
    box_index: np.ndarray | None = None


def velodyne_model(calibration, **overrides) -> LidarModel:
    """A :class:`LidarModel` from a :class:`edgefuse.adapters.velodyne.calibration.VelodyneCalibration`
    (beam layout, firing timing, distance resolution; VLP-16, VLP-32C, HDL-32E or a loaded YAML);
    ``overrides`` set other fields (rpm, ranges, noise, …). Beam origin offsets are not modelled."""
    params = dict(
        name=calibration.model,
        vertical_rad=calibration.vert_angle_rad,
        azimuth_offset_rad=calibration.rot_correction_rad,
        firing_offset_ns=calibration.firing_offset_ns,
        sequence_period_ns=calibration.sequence_period_ns,
        distance_resolution_m=calibration.distance_resolution_m,
    )
    params.update(overrides)
    return LidarModel(**params)


def vlp32c_model(**overrides) -> LidarModel:
    """The VLP-32C from :func:`edgefuse.adapters.velodyne.calibration.vlp32c` (shipped calibration YAML
    and the manual's firing timing), 600 rpm, 1–200 m; ``overrides`` set other :class:`LidarModel`
    fields."""
    from edgefuse.adapters.velodyne.calibration import vlp32c

    return velodyne_model(vlp32c(), **overrides)


def scenario_lidar(scenario: str, seed: int) -> LidarModel:
    """The simulated rig's LiDAR (a VLP-32C) in ``scenario``: in ``calibration-board`` a real unit, with
    :meth:`LidarImperfections.typical` drawn from ``seed``, so that calibration is judged on what its
    solvers do not assume; elsewhere the ideal model (the one the bundled detector was trained on)."""
    if scenario == "calibration-board":
        return vlp32c_model(imperfections=LidarImperfections.typical(32, seed))
    return vlp32c_model()


def firing_grid(sweep_end_ns: int, model: LidarModel) -> tuple[np.ndarray, np.ndarray]:
    """Sequence start times (F,) int64 ns and rotor azimuths (F,) rad (Velodyne, [0, 2π)) of the sweep
    whose last firing is at ``sweep_end_ns`` and where the rotor then points at ``cut_azimuth_rad``."""
    F = model.sequences_per_sweep
    last = int(model.firing_offset_ns.max())
    k = np.arange(F, dtype=np.int64)
    t_seq = int(sweep_end_ns) - last - (F - 1 - k) * model.sequence_period_ns
    omega = model.rpm * 2.0 * np.pi / 60.0  # rad/s, clockwise
    az = np.mod(model.cut_azimuth_rad + omega * (t_seq - int(sweep_end_ns)) * 1e-9, 2.0 * np.pi)
    return t_seq, az


@dataclass(frozen=True)
class SweepRays:
    """Every ray of one sweep, firing order (F sequences × L lasers flattened, laser fastest).

    ``t_fire_ns`` (F·L,) int64 true firing times; ``dir_lidar`` (F·L, 3) unit directions in the sensor
    frame; ``origin_world`` / ``dir_world`` (F·L, 3) the same rays in the world at their firing time;
    ``dt_s`` (F·L,) firing time − ``scene.t_ns`` in seconds; ``t_seq_ns`` / ``azimuth_rad`` (F,) the
    firing grid (see :func:`firing_grid`)."""

    t_fire_ns: np.ndarray
    dir_lidar: np.ndarray
    origin_world: np.ndarray
    dir_world: np.ndarray
    dt_s: np.ndarray
    t_seq_ns: np.ndarray
    azimuth_rad: np.ndarray


def _sweep_geometry(model: LidarModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per model, cached: firing times relative to the sweep end (F·L,) int64, beam directions in the
    sensor frame (F·L, 3), sequence starts relative to the end (F,) int64 and rotor azimuths (F,).
    The grid is the same for every sweep because each sweep ends at the cut azimuth."""
    cached = model.__dict__.get("_geometry")
    if cached is not None:
        return cached
    t_seq, az_seq = firing_grid(0, model)
    F = t_seq.shape[0]
    omega = model.rpm * 2.0 * np.pi / 60.0
    t_fire = (t_seq[:, None] + model.firing_offset_ns[None, :]).reshape(-1)
    beam_az = (
        az_seq[:, None]
        + omega * 1e-9 * model.firing_offset_ns[None, :].astype(np.float64)
        - model.azimuth_offset_rad[None, :]
    )
    yaw = (-beam_az).reshape(-1)
    ce = np.tile(np.cos(model.vertical_rad), F)
    d_lidar = np.stack([np.cos(yaw) * ce, np.sin(yaw) * ce, np.tile(np.sin(model.vertical_rad), F)], axis=1)
    for a in (t_fire, d_lidar, t_seq, az_seq):
        a.setflags(write=False)
    object.__setattr__(model, "_geometry", (t_fire, d_lidar, t_seq, az_seq))
    return t_fire, d_lidar, t_seq, az_seq


def sweep_rays(scene: Scene, sweep_end_ns: int, T_base_lidar: Transform, model: LidarModel) -> SweepRays:
    """The rays of the sweep ending at ``sweep_end_ns``, each placed in the world with the ego pose at
    its own firing time (constant body twist extrapolated from ``scene.t_ns``)."""
    t_rel, d_lidar, t_seq_rel, az_seq = _sweep_geometry(model)
    end = int(sweep_end_ns)
    t_fire = t_rel + end
    dt_s = (t_fire - int(scene.t_ns)) * 1e-9
    th, tr = ego_motion(dt_s, scene.ego_velocity, scene.ego_yaw_rate)
    R_wb, t_wb = scene.T_world_base.rotation, scene.T_world_base.translation
    R_bl, t_bl = T_base_lidar.rotation, T_base_lidar.translation
    if scene.ego_yaw_rate == 0.0:  # no rotation within the sweep: one rotation for all rays
        d_world = d_lidar @ (R_wb @ R_bl).T
        o_world = (tr + t_bl) @ R_wb.T + t_wb
    else:
        d_base = d_lidar @ R_bl.T
        c, s = np.cos(th), np.sin(th)
        d_bend = np.stack(
            [c * d_base[:, 0] - s * d_base[:, 1], s * d_base[:, 0] + c * d_base[:, 1], d_base[:, 2]], axis=1
        )
        o_bend = tr + np.stack(
            [c * t_bl[0] - s * t_bl[1], s * t_bl[0] + c * t_bl[1], np.full_like(c, t_bl[2])], axis=1
        )
        d_world = d_bend @ R_wb.T
        o_world = o_bend @ R_wb.T + t_wb
    return SweepRays(t_fire, d_lidar, o_world, d_world, dt_s, t_seq_rel + end, az_seq)


def _true_beams(model: LidarModel) -> LidarModel:
    """The model whose beam tables are the unit's true beams (its imperfections' angle biases applied),
    cached on ``model``; ``model`` itself when it has no imperfections."""
    imp = model.imperfections
    if imp is None:
        return model
    cached = model.__dict__.get("_true_beams")
    if cached is None:
        cached = replace(
            model,
            vertical_rad=model.vertical_rad + imp.elevation_bias_rad,
            azimuth_offset_rad=model.azimuth_offset_rad - imp.azimuth_bias_rad,
            imperfections=None,
        )
        object.__setattr__(model, "_true_beams", cached)
    return cached


def _reflectivity(
    scene: Scene,
    box_index: np.ndarray,
    points_world: np.ndarray,
    dt_s: np.ndarray,
    ground_wanted: np.ndarray | None = None,
) -> np.ndarray:
    """ρ (K,) of what K rays hit (``box_index`` from :func:`cast_rays`, hits only): the box's material, a
    board's printed squares (:func:`board_face_squares`), the ground by its surface — looked up only where
    ``ground_wanted`` (K,) is True (None: everywhere); other ground rows read 0."""
    box_refl = np.array([b.material.lidar_reflectivity for b in scene.boxes] + [0.0], np.float64)
    refl = box_refl[box_index]  # ground rows (index −1) read the trailing 0
    _board_squares(scene, box_index, points_world, dt_s, refl)
    g = np.flatnonzero(box_index == GROUND)
    if ground_wanted is not None:
        g = g[ground_wanted[g]]
    if g.size:
        surf = ground_surface(points_world[g, :2], scene.lanes, scene.roads)
        lut = np.array([GROUND_REFLECTIVITY[k] for k in (SURFACE_OFFROAD, SURFACE_ROAD, SURFACE_MARKING)])
        refl[g] = lut[surf]
    return refl


def _board_squares(scene: Scene, box_index, points_world, dt_s, refl: np.ndarray) -> None:
    """Set ``refl`` of the rays that hit a board's printed face to its black or white squares' ρ."""
    from edgefuse.sim.camera_board import board_face_squares

    for k, b in enumerate(scene.boxes):
        if b.board is None:
            continue
        rows = np.flatnonzero(box_index == k)
        if rows.size:
            sq = board_face_squares(b, points_world[rows], dt_s[rows])
            refl[rows] = np.where(
                sq == 1, BOARD_BLACK_REFLECTIVITY, np.where(sq == 0, BOARD_WHITE_REFLECTIVITY, refl[rows])
            )


def _edge_rays(box_index: np.ndarray, range_m: np.ndarray, F: int, model: LidarModel) -> np.ndarray:
    """Flat indices of the rays (F·L firing grid) whose neighbour in azimuth (same laser) or in elevation
    (the next laser up or down, same sequence) hit another surface or a range ``merge_m`` away: where a
    beam's footprint may span an edge."""
    L = model.num_lasers
    r = np.where(box_index == MISS, np.inf, range_m).reshape(F, L)
    b = box_index.reshape(F, L)
    order = np.argsort(model.vertical_rad, kind="stable")  # lasers by elevation

    def steps(bb: np.ndarray, rr: np.ndarray) -> np.ndarray:  # (N, M) → (N, M): a step to a row neighbour
        imp = model.imperfections
        near = np.minimum(rr[1:], rr[:-1]) < imp.mixed_max_range_m  # (two misses: inf, never near)
        with np.errstate(invalid="ignore"):
            far = ~(np.abs(rr[1:] - rr[:-1]) < imp.merge_m)
        step = ((bb[1:] != bb[:-1]) | far) & near
        out = np.zeros(bb.shape, bool)
        out[1:] |= step
        out[:-1] |= step
        return out

    edge = steps(b, r)
    edge[:, order] |= steps(b[:, order].T, r[:, order].T).T
    return np.flatnonzero(edge.reshape(-1))


def _mixed_returns(scene: Scene, rays: SweepRays, rows: np.ndarray, model: LidarModel):
    """The strongest return of each beam in ``rows`` (flat ray indices) over its divergence footprint:
    3 × 3 sub-beams cast, echoes within ``merge_m`` merged at their power-weighted range. Returns
    (range (K,) m, echo (K,) ρ·cos·exp(−2βr) of the return, i.e. its amplitude × r², hit (K,) bool)."""
    imp = model.imperfections
    K = rows.size
    d = rays.dir_world[rows]
    up = np.array([0.0, 0.0, 1.0])
    e_h = np.cross(d, up)
    e_h /= np.maximum(np.linalg.norm(e_h, axis=1, keepdims=True), 1e-12)
    e_v = np.cross(e_h, d)
    steps = np.array([-1.0, 0.0, 1.0]) / 3.0
    ah, av = np.meshgrid(steps * imp.divergence_rad[0], steps * imp.divergence_rad[1], indexing="ij")
    ah, av = ah.reshape(-1), av.reshape(-1)  # S = 9 sub-beams
    S = ah.size
    sub = d[:, None, :] + ah[None, :, None] * e_h[:, None, :] + av[None, :, None] * e_v[:, None, :]
    sub = (sub / np.linalg.norm(sub, axis=2, keepdims=True)).reshape(-1, 3)
    o = np.repeat(rays.origin_world[rows], S, axis=0)
    dt = np.repeat(rays.dt_s[rows], S)
    hits = cast_rays(o, sub, scene.boxes, dt_s=dt, max_range=model.max_range_m, min_range=model.min_range_m)
    r = hits.range_m.astype(np.float64)
    hit = hits.box_index != MISS
    power = np.zeros(K * S)
    ih = np.flatnonzero(hit)
    if ih.size:
        pts = o[ih] + r[ih, None] * sub[ih]
        rho = _reflectivity(scene, hits.box_index[ih], pts, dt[ih])
        echo = rho * hits.cos_incidence[ih] * np.exp(-2.0 * scene.weather.extinction * r[ih])
        power[ih] = echo / (r[ih] ** 2) / S  # each sub-beam carries 1/S of the pulse
    r = np.where(hit, r, np.inf).reshape(K, S)
    power = power.reshape(K, S)
    srt = np.argsort(r, axis=1)
    r, power = np.take_along_axis(r, srt, 1), np.take_along_axis(power, srt, 1)
    with np.errstate(invalid="ignore"):  # inf − inf between two misses: NaN, a new cluster
        gap = np.diff(r, axis=1)
    cluster = np.concatenate([np.zeros((K, 1), np.int64), np.cumsum(~(gap < imp.merge_m), axis=1)], axis=1)
    key = (np.arange(K)[:, None] * S + cluster).reshape(-1)
    fin = np.isfinite(r).reshape(-1)
    p_sum = np.bincount(key[fin], power.reshape(-1)[fin], minlength=K * S)
    pr_sum = np.bincount(
        key[fin], (power * np.where(np.isfinite(r), r, 0.0)).reshape(-1)[fin], minlength=K * S
    )
    p_sum, pr_sum = p_sum.reshape(K, S), pr_sum.reshape(K, S)
    best = np.argmax(p_sum, axis=1)
    p_best = p_sum[np.arange(K), best]
    ok = p_best > 0
    r_best = np.where(ok, pr_sum[np.arange(K), best] / np.where(ok, p_best, 1.0), 0.0)
    return r_best, p_best * r_best**2, ok


def simulate_sweep(
    scene: Scene,
    sweep_end_ns: int,
    T_base_lidar: Transform,
    model: LidarModel,
    rng: np.random.Generator,
) -> tuple[PointCloud, Firings]:
    """Simulate one sweep ending at ``sweep_end_ns`` (true time, int64 ns; the cloud's stamp).

    ``scene`` is the scene at (or near) the sweep's end; boxes and ego are extrapolated to each firing
    time from ``scene.t_ns``. Returns the cloud (fields :data:`CLOUD_FIELDS`, sensor frame, ``t_ns``
    float32 ≤ 0 relative to ``sweep_end_ns``, points in firing order) and the raw :class:`Firings`.
    With ``model.imperfections`` the rays follow the unit's true beams and the returns carry its biases,
    range walk and mixed pixels (:class:`LidarImperfections`); the points are placed along the table's
    beams, as the driver decodes them."""
    L = model.num_lasers
    imp = model.imperfections
    rays = sweep_rays(scene, sweep_end_ns, T_base_lidar, _true_beams(model))
    t_seq, az_seq = rays.t_seq_ns, rays.azimuth_rad
    F = t_seq.shape[0]
    o_world, d_world, dt_s = rays.origin_world, rays.dir_world, rays.dt_s
    d_lidar = _sweep_geometry(model)[1]  # the beams as the calibration table has them
    t_fire = rays.t_fire_ns
    hits = cast_rays(
        o_world, d_world, scene.boxes, dt_s=dt_s, max_range=model.max_range_m, min_range=model.min_range_m
    )
    n = F * L
    r = hits.range_m.astype(np.float64)
    hit = hits.box_index != MISS
    beta = scene.weather.extinction
    rain = float(scene.weather.rain)
    # random draws in a fixed order (determinism: same rng state → same sweep)
    z_det = rng.standard_normal(n)
    u_drop = rng.random(n)
    z_range = rng.standard_normal(n)

    # on the rays that hit something: ρ-free part of the received power cos·exp(−2βr) and the
    # detection margin exp(σ·z)/r²
    ih = np.flatnonzero(hit)
    rh = r[ih]
    geo = hits.cos_incidence[ih] * np.exp(-2.0 * beta * rh)
    margin = np.exp(model.detection_sigma * z_det[ih]) / (rh * rh)
    # reflectivity of what each ray hit; only ground hits that the brightest ground surface could return
    # need their surface looked up (the others stay undetected whatever they are painted with): keeps the
    # surface grid local
    pts_h = o_world[ih] + rh[:, None] * d_world[ih]
    could_return = max(GROUND_REFLECTIVITY.values()) * geo * margin >= model.detection_threshold
    refl = _reflectivity(scene, hits.box_index[ih], pts_h, dt_s[ih], could_return)
    echo_h = refl * geo  # ρ·cos·exp(−2βr)
    if imp is not None and max(imp.divergence_rad) > 0:
        edges = _edge_rays(hits.box_index, hits.range_m, F, model)
        r_mix, echo_mix, hit_mix = _mixed_returns(scene, rays, edges, model)
        echo_all = np.zeros(n)
        echo_all[ih] = echo_h
        r[edges], echo_all[edges], hit[edges] = r_mix, echo_mix, hit_mix
        ih = np.flatnonzero(hit)
        rh, echo_h = r[ih], echo_all[ih]
        margin = np.exp(model.detection_sigma * z_det[ih]) / (rh * rh)
    det_h = (echo_h * margin >= model.detection_threshold) & (
        u_drop[ih] >= min(1.0, model.dropout + model.rain_dropout * rain)
    )
    rng_out = np.zeros(n, np.float64)
    inten = np.zeros(n, np.float64)
    keep = ih[det_h]
    rng_out[keep] = rh[det_h] + model.range_noise_m * z_range[keep]
    if imp is not None:
        amplitude = echo_h[det_h] / (rh[det_h] ** 2)
        walk = imp.walk_m_per_decade * np.clip(np.log10(imp.walk_reference / amplitude), -3.0, 3.0)
        rng_out[keep] += walk + imp.range_bias_m[keep % L]
    inten[keep] = np.clip(np.rint(100.0 * echo_h[det_h]), 0, 255)
    detected = np.zeros(n, bool)
    detected[keep] = True

    if beta > 0:
        p_bs = 1.0 - np.exp(-beta * model.backscatter_length_m)
        u_bs = rng.random(n)
        r_bs = model.min_range_m + rng.exponential(model.backscatter_scale_m, n)
        bs = (u_bs < p_bs) & (~detected | (r_bs < rng_out))
        rng_out = np.where(bs, r_bs, rng_out)
        inten = np.where(bs, np.clip(np.rint(100.0 * 0.02 * np.exp(-2.0 * beta * r_bs)), 1, 255), inten)
        detected = detected | bs

    res = model.distance_resolution_m
    rng_out = np.where(detected, np.maximum(np.rint(rng_out / res), 1.0) * res, 0.0)
    valid = detected & (rng_out >= model.min_range_m) & (rng_out <= model.max_range_m)
    rng_out[~valid] = 0.0
    inten[~valid] = 0.0

    from_box = np.zeros(n, bool)  # reported returns of a box surface (not ground, not fog backscatter)
    from_box[keep] = True
    if beta > 0:
        from_box &= ~bs
    box_of = np.where(valid & from_box & (hits.box_index >= 0), hits.box_index, -1).astype(np.int32)

    idx = np.flatnonzero(valid)
    data = np.empty((idx.size, len(CLOUD_FIELDS)), np.float32)
    data[:, 0:3] = d_lidar[idx] * rng_out[idx, None]
    data[:, 3] = inten[idx]
    data[:, 4] = (t_fire.reshape(-1)[idx] - int(sweep_end_ns)).astype(np.float32)
    data[:, 5] = np.tile(model.ring, F)[idx]
    cloud = PointCloud(data, CLOUD_FIELDS)
    firings = Firings(
        azimuth_rad=az_seq,
        t_ns=t_seq,
        range_m=rng_out.reshape(F, L).astype(np.float32),
        intensity=inten.reshape(F, L).astype(np.uint8),
        box_index=box_of.reshape(F, L),
    )
    return cloud, firings
