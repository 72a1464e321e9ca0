"""Simulated automotive radar: sparse detections on object surfaces with doppler, RCS and SNR.

One scan at time ``t_ns``:

1. probe rays on a grid over the field of view (``probe_step_rad`` in azimuth × ``probe_elevations_rad``)
   plus one ray at every box centre in view are cast against the scene (:func:`edgefuse.sim.raycast.
   cast_rays`; occlusion included; ground hits give nothing — ground returns are part of the clutter);
2. each box's total RCS (``material.radar_rcs_dbsm``) is shared equally by the rays that hit it; with
   ``swerling`` each share fluctuates (Swerling I: exponential power);
3. doppler = radial velocity of the hit point relative to the sensor, ``(v_point − v_sensor) · u``
   (positive = moving away), with the box's velocity and yaw rate and the ego's body twist;
4. hits are merged into resolution cells (range × azimuth × doppler, cells centred on 0): a cell
   reports the position and doppler of its strongest hit and the summed RCS of all its hits — the
   radar's lower resolution;
5. radar equation: ``snr_db = rcs_dbsm + snr_1m_db − 40·log10(r)`` (a 0 dBsm target at 1 m has
   ``snr_1m_db``); cells under ``snr_threshold_db`` are not detected;
6. measurement noise on range, azimuth, elevation and doppler;
7. false alarms, truth track id −1: double-bounce multipath ghosts (same direction, twice the range and
   doppler, ``multipath_loss_db`` weaker) with probability ``multipath_prob`` per detection, and
   Poisson(``clutter_rate``) clutter detections from static surroundings (doppler of a static point);
8. the sensor reports at most ``max_detections``, the strongest by SNR (order otherwise kept: real
   detections by cell, then ghosts, then clutter).

Fog, rain and night do not change the scan (millimetre waves pass fog; radar needs no light).
Sensor frame: x forward, y left, z up (the TI adapter converts its y-forward frame at the edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefuse.geometry import Transform
from edgefuse.sim.raycast import cast_rays, ego_motion
from edgefuse.sim.scene import Scene
from edgefuse.types import RadarScan

#: Fields of the simulated scan, in column order.
RADAR_FIELDS = ("x", "y", "z", "doppler", "rcs", "snr")


@dataclass(frozen=True)
class RadarModel:
    """A 77 GHz automotive radar (angles in rad, ranges in m, velocities in m/s, dB values in dB).

    Defaults resemble a mid-range front radar: ±60° × ±10° field of view, 150 m, 0.5 m × 2° × 0.1 m/s
    resolution cells, at most 250 detections a scan (as Continental's ARS 408 cluster list)."""

    name: str = "radar"
    fov_azimuth_rad: float = float(np.deg2rad(120.0))
    fov_elevation_rad: float = float(np.deg2rad(20.0))
    min_range_m: float = 0.5
    max_range_m: float = 150.0
    range_resolution_m: float = 0.5
    azimuth_resolution_rad: float = float(np.deg2rad(2.0))
    doppler_resolution_mps: float = 0.1
    probe_step_rad: float = float(np.deg2rad(0.5))
    probe_elevations_rad: tuple[float, ...] = tuple(np.deg2rad([-4.0, -2.0, 0.0, 2.0, 4.0]).tolist())
    snr_1m_db: float = 95.0
    snr_threshold_db: float = 12.0
    swerling: bool = True
    range_noise_m: float = 0.05
    azimuth_noise_rad: float = float(np.deg2rad(0.5))
    elevation_noise_rad: float = float(np.deg2rad(1.5))
    doppler_noise_mps: float = 0.05
    multipath_prob: float = 0.03
    multipath_loss_db: float = 10.0
    clutter_rate: float = 3.0
    max_detections: int = 250

    def __post_init__(self) -> None:
        positive = (
            "fov_azimuth_rad",
            "fov_elevation_rad",
            "max_range_m",
            "range_resolution_m",
            "azimuth_resolution_rad",
            "doppler_resolution_mps",
            "probe_step_rad",
        )
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"RadarModel {self.name!r}: {name}: expected > 0, got {getattr(self, name)}")
        if not 0 <= self.min_range_m < self.max_range_m:
            raise ValueError(
                f"RadarModel {self.name!r}: expected 0 <= min_range_m < max_range_m, "
                f"got {self.min_range_m}, {self.max_range_m}"
            )
        if not 0 <= self.multipath_prob <= 1 or self.clutter_rate < 0 or self.max_detections < 0:
            raise ValueError(
                f"RadarModel {self.name!r}: expected multipath_prob in [0, 1], clutter_rate >= 0, "
                f"max_detections >= 0, got {self.multipath_prob}, {self.clutter_rate}, {self.max_detections}"
            )

    def noiseless(self) -> RadarModel:
        """This model with every random element off (no fluctuation, noise, ghosts or clutter)."""
        from dataclasses import replace

        return replace(
            self,
            swerling=False,
            range_noise_m=0.0,
            azimuth_noise_rad=0.0,
            elevation_noise_rad=0.0,
            doppler_noise_mps=0.0,
            multipath_prob=0.0,
            clutter_rate=0.0,
        )


def _empty(n: int = 0) -> np.ndarray:
    return np.zeros((n, len(RADAR_FIELDS)), np.float32)


def simulate_radar(
    scene: Scene,
    t_ns: int,
    T_base_radar: Transform,
    model: RadarModel,
    rng: np.random.Generator,
) -> tuple[RadarScan, np.ndarray]:
    """One radar scan at true time ``t_ns`` (int64 ns); ``scene`` at or near ``t_ns`` (boxes and ego are
    extrapolated from ``scene.t_ns`` with constant velocity / twist).

    Returns ``(scan, truth_track_ids)``: the scan (fields :data:`RADAR_FIELDS`, sensor frame; doppler
    m/s positive = moving away, rcs dBsm, snr dB) and (M,) int64 the track id of the box behind each
    detection (−1: a structure without ground truth, clutter or a multipath ghost)."""
    dt = (int(t_ns) - int(scene.t_ns)) * 1e-9
    th, tr = ego_motion(np.array([dt]), scene.ego_velocity, scene.ego_yaw_rate)
    T_b0_bt = Transform.from_rpy(tr[0], 0.0, 0.0, float(th[0]))
    T_w_bt = scene.T_world_base @ T_b0_bt
    T_w_r = T_w_bt @ T_base_radar
    T_r_w = T_w_r.inverse()
    origin = T_w_r.translation
    # sensor velocity in the world: body twist at the radar's lever arm
    v_b = np.asarray(scene.ego_velocity, np.float64)
    lever = T_base_radar.translation
    v_sensor_b = v_b + np.cross([0.0, 0.0, scene.ego_yaw_rate], lever)
    v_sensor = T_w_bt.rotation @ v_sensor_b

    half_az, half_el = 0.5 * model.fov_azimuth_rad, 0.5 * model.fov_elevation_rad
    n_az = int(np.floor(2 * half_az / model.probe_step_rad)) + 1
    az = -half_az + model.probe_step_rad * np.arange(n_az)
    el = np.asarray(model.probe_elevations_rad, np.float64)
    A, E = np.meshgrid(az, el, indexing="ij")
    dirs_r = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)
    # one ray at each box centre in view, so small or distant objects are not lost between probes
    nb = len(scene.boxes)
    box_vel = np.array([b.velocity for b in scene.boxes], np.float64).reshape(nb, 3)
    box_cen = np.array([b.center for b in scene.boxes], np.float64).reshape(nb, 3) + box_vel * dt
    box_yaw_rate = np.array([b.yaw_rate for b in scene.boxes], np.float64)
    box_rcs = np.array([10.0 ** (b.material.radar_rcs_dbsm / 10.0) for b in scene.boxes], np.float64)
    box_track = np.array([b.track_id for b in scene.boxes], np.int64)
    if nb:
        centres = box_cen
        c_r = T_r_w.apply(centres)
        rc = np.linalg.norm(c_r, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a_c = np.arctan2(c_r[:, 1], c_r[:, 0])
            e_c = np.arcsin(np.clip(c_r[:, 2] / rc, -1, 1))
        ok = (np.abs(a_c) <= half_az) & (np.abs(e_c) <= half_el) & (rc > model.min_range_m)
        ok &= rc <= model.max_range_m
        if ok.any():
            dirs_r = np.concatenate([dirs_r, c_r[ok] / rc[ok, None]])
    dirs_w = dirs_r @ T_w_r.rotation.T
    origins = np.broadcast_to(origin, dirs_w.shape)
    hits = cast_rays(
        origins,
        dirs_w,
        scene.boxes,
        dt_s=np.full(dirs_w.shape[0], dt),
        max_range=model.max_range_m,
        min_range=model.min_range_m,
    )
    on = np.flatnonzero(hits.box_index >= 0)
    real = _empty()
    real_ids = np.zeros(0, np.int64)
    if on.size:
        bidx = hits.box_index[on]
        r = hits.range_m[on].astype(np.float64)
        p_w = origin + r[:, None] * dirs_w[on]
        n_per_box = np.bincount(bidx, minlength=nb)
        rcs_lin = box_rcs[bidx] / n_per_box[bidx]
        if model.swerling:
            rcs_lin = rcs_lin * rng.exponential(1.0, on.size)
        # true radial velocity of each hit point relative to the moving sensor
        vel, yaw_rate, cen = box_vel[bidx], box_yaw_rate[bidx], box_cen[bidx]
        lever_p = p_w - cen
        v_point = vel + np.stack([-yaw_rate * lever_p[:, 1], yaw_rate * lever_p[:, 0], np.zeros_like(r)], 1)
        u = (p_w - origin) / r[:, None]
        doppler = np.einsum("ij,ij->i", v_point - v_sensor, u)
        p_r = T_r_w.apply(p_w)
        az_h = np.arctan2(p_r[:, 1], p_r[:, 0])
        # resolution cells centred on 0; the strongest hit of a cell speaks for it
        key = np.stack(
            [
                np.rint(r / model.range_resolution_m),
                np.rint(az_h / model.azimuth_resolution_rad),
                np.rint(doppler / model.doppler_resolution_mps),
            ],
            1,
        ).astype(np.int64)
        order = np.lexsort((-rcs_lin, key[:, 2], key[:, 1], key[:, 0]))
        ks = key[order]
        first = np.ones(order.size, bool)
        first[1:] = np.any(ks[1:] != ks[:-1], axis=1)
        starts = np.flatnonzero(first)
        cell_rcs = np.add.reduceat(rcs_lin[order], starts)
        lead = order[starts]
        rr = r[lead]
        rcs_db = 10.0 * np.log10(np.maximum(cell_rcs, 1e-30))
        snr = rcs_db + model.snr_1m_db - 40.0 * np.log10(rr)
        keep = snr >= model.snr_threshold_db
        lead, rr, rcs_db, snr = lead[keep], rr[keep], rcs_db[keep], snr[keep]
        m = lead.size
        pr = p_r[lead]
        az_d = np.arctan2(pr[:, 1], pr[:, 0])
        el_d = np.arcsin(np.clip(pr[:, 2] / rr, -1.0, 1.0))
        dop = doppler[lead]
        rr = rr + model.range_noise_m * rng.standard_normal(m)
        az_d = az_d + model.azimuth_noise_rad * rng.standard_normal(m)
        el_d = el_d + model.elevation_noise_rad * rng.standard_normal(m)
        dop = dop + model.doppler_noise_mps * rng.standard_normal(m)
        real = _pack(rr, az_d, el_d, dop, rcs_db, snr)
        real_ids = box_track[bidx[lead]]

    # double-bounce multipath ghosts: same direction, twice the range and doppler
    ghost = _empty()
    if model.multipath_prob > 0 and len(real):
        g = rng.random(len(real)) < model.multipath_prob
        gr = 2.0 * np.linalg.norm(real[g, :3], axis=1)
        gsnr = real[g, 5] - model.multipath_loss_db - 40.0 * np.log10(2.0)
        ok = (gr <= model.max_range_m) & (gsnr >= model.snr_threshold_db)
        ghost = real[g][ok].copy()
        ghost[:, :3] *= 2.0
        ghost[:, 3] *= 2.0
        ghost[:, 5] = gsnr[ok]
        ghost[:, 4] = gsnr[ok] - model.snr_1m_db + 40.0 * np.log10(gr[ok])

    # clutter from static surroundings: uniform in the field of view, doppler of a static point
    clutter = _empty()
    if model.clutter_rate > 0:
        k = int(rng.poisson(model.clutter_rate))
        cr = rng.uniform(model.min_range_m, model.max_range_m, k)
        ca = rng.uniform(-half_az, half_az, k)
        ce = rng.uniform(-half_el, half_el, k)
        csnr = model.snr_threshold_db + rng.exponential(3.0, k)
        u_r = np.stack([np.cos(ce) * np.cos(ca), np.cos(ce) * np.sin(ca), np.sin(ce)], 1)
        cdop = -(u_r @ T_w_r.rotation.T) @ v_sensor
        crcs = csnr - model.snr_1m_db + 40.0 * np.log10(cr)
        clutter = _pack(cr, ca, ce, cdop, crcs, csnr)

    data = np.concatenate([real, ghost, clutter]).astype(np.float32)
    ids = np.concatenate([real_ids, np.full(len(ghost) + len(clutter), -1, np.int64)])
    if len(data) > model.max_detections:  # the sensor reports its strongest detections only
        keep = np.sort(np.argsort(-data[:, 5], kind="stable")[: model.max_detections])
        data, ids = data[keep], ids[keep]
    return RadarScan(data, RADAR_FIELDS), ids


def _pack(r, az, el, dop, rcs, snr) -> np.ndarray:
    out = np.empty((np.size(r), len(RADAR_FIELDS)), np.float32)
    out[:, 0] = r * np.cos(el) * np.cos(az)
    out[:, 1] = r * np.cos(el) * np.sin(az)
    out[:, 2] = r * np.sin(el)
    out[:, 3] = dop
    out[:, 4] = rcs
    out[:, 5] = snr
    return out
