"""Radar → LiDAR extrinsics from corner reflectors (or other strong point targets) seen by both.

- LiDAR: retro-reflectors return calibrated reflectivity > 100 (Velodyne), so the targets are clusters of
  points with ``intensity ≥ min_intensity`` (:func:`lidar_targets`), one centroid each.
- Radar: every detection is a candidate; each is paired with the nearest LiDAR target (mapped into the radar
  frame with the current extrinsics) within a gate that shrinks as the fit converges.
- Fit (:func:`solve_radar_lidar`): robust least squares (``scipy.optimize.least_squares``, Huber loss) of
  the radar's ``T_base_radar`` — **x, y, yaw** (horizontal residuals only) for a radar that measures no
  elevation (z, roll and pitch stay as in the kit's calibration), or all six parameters for one that does.

The result is expressed as ``T_base_radar`` (the LiDAR's ``T_base_lidar`` is kept), so that the fitted
parameters are the ones the issue names: x, y, yaw in the vehicle frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgefuse.calib.common import CalibrationError, Gate, require_scipy
from edgefuse.geometry import Transform, matrix_to_rpy, rpy_to_matrix
from edgefuse.types import PointCloud, RadarScan


def lidar_targets(
    cloud: PointCloud, min_intensity: float = 100.0, radius_m: float = 0.4, min_points: int = 3
) -> np.ndarray:
    """(K, 3) centroids (sensor frame) of the clusters of retro-reflective points (intensity ≥
    ``min_intensity``, linked within ``radius_m``, at least ``min_points`` each)."""
    require_scipy()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if not cloud.has("intensity"):
        raise CalibrationError("LiDAR cloud has no intensity field: reflectors cannot be found")
    pts = cloud.xyz[cloud.column("intensity") >= min_intensity].astype(np.float64)
    if len(pts) < min_points:
        return np.zeros((0, 3))
    pairs = cKDTree(pts).query_pairs(radius_m, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts), len(pts)))
    n, labels = connected_components(graph, directed=False)
    out = [pts[labels == k].mean(axis=0) for k in range(n) if np.sum(labels == k) >= min_points]
    return np.array(out).reshape(-1, 3)


def _pose(x: np.ndarray, base: Transform, six_dof: bool) -> Transform:
    if six_dof:
        r, p, y = x[3:]
        return Transform(rpy_to_matrix(r, p, y), x[:3])
    r0, p0, _ = matrix_to_rpy(base.rotation)
    return Transform(rpy_to_matrix(r0, p0, x[2]), [x[0], x[1], base.translation[2]])


@dataclass
class RadarLidarResult:
    """``T_base_radar``; ``params``: names of the fitted parameters; ``std``: their 1-σ (m, deg);
    ``rms_m``: RMS residual of the inlier pairs; ``pairs``/``inliers``: counts; ``reflectors``: distinct
    target positions among the inlier pairs (base frame, 0.4 m apart), ``azimuth_spread_deg``: the spread of
    their bearings from the radar; ``leave_one_out_m``: each reflector's RMS (m) under the fit of the others
    (base-frame "x,y" of the reflector → m; with ≥ 3 reflectors)."""

    T_base_radar: Transform
    params: tuple[str, ...]
    std: np.ndarray
    rms_m: float
    pairs: int
    inliers: int
    reflectors: int = 0
    azimuth_spread_deg: float = 0.0
    leave_one_out_m: dict[str, float] = field(default_factory=dict)  # "x,y" of a reflector → its RMS (m)

    def to_dict(self) -> dict:
        rpy = np.degrees(self.T_base_radar.rpy)
        t = self.T_base_radar.translation
        return {
            "T_base_radar": {"translation": np.round(t, 4).tolist(), "rpy_deg": np.round(rpy, 4).tolist()},
            "fitted": list(self.params),
            "std": {k: round(float(s), 5) for k, s in zip(self.params, self.std, strict=True)},
            "rms_m": round(self.rms_m, 4),
            "pairs": self.pairs,
            "inliers": self.inliers,
            "reflectors": self.reflectors,
            "azimuth_spread_deg": round(self.azimuth_spread_deg, 2),
            "leave_one_out_m": {k: round(v, 4) for k, v in self.leave_one_out_m.items()},
        }


def distinct_targets(points: np.ndarray, radius_m: float = 0.4) -> np.ndarray:
    """(K, 3) centres of the distinct targets among (N, 3) positions: greedy clusters of ``radius_m`` (a
    corner reflector is ~0.3 m across; the LiDAR's target centres scatter by a few cm)."""
    centres: list[np.ndarray] = []
    members: list[list[np.ndarray]] = []
    for p in points:
        for i, c in enumerate(centres):
            if np.linalg.norm(p[:2] - c[:2]) < radius_m:
                members[i].append(p)
                centres[i] = np.mean(members[i], axis=0)
                break
        else:
            centres.append(np.asarray(p, np.float64))
            members.append([p])
    return np.array(centres).reshape(-1, 3)


#: Quality gates of a radar → LiDAR result (:func:`radar_lidar_gates`): ≥ 3 distinct reflectors spread
#: ≥ 20° in azimuth (one reflector seen in 80 scans, or two 0.6 m apart, fit x, y and yaw badly while the
#: pair count looks large), σ ≤ 5 cm / 0.5° (the simulator's good sessions: ≤ 1.6 cm / 0.04°), RMS ≤ 0.3 m
#: (radar range and azimuth noise: 0.15 m on the simulator).
MIN_REFLECTORS = 3
MIN_AZIMUTH_SPREAD_DEG = 20.0
MAX_STD_M, MAX_STD_DEG, MAX_RMS_M = 0.05, 0.5, 0.3


def radar_lidar_gates(r: RadarLidarResult) -> list[Gate]:
    sd = dict(zip(r.params, r.std, strict=True))
    worst_m = max(float(v) for k, v in sd.items() if not k.endswith("_deg"))
    worst_deg = max(float(v) for k, v in sd.items() if k.endswith("_deg"))
    return [
        Gate("reflectors", r.reflectors, MIN_REFLECTORS, True, "",
             "distinct reflectors matched (not pairs): place ≥ 3 corner reflectors in view of both sensors"),
        Gate("azimuth spread", r.azimuth_spread_deg, MIN_AZIMUTH_SPREAD_DEG, True, "°",
             "the reflectors sit in one direction: spread them across the radar's field of view"),
        Gate("translation σ", worst_m, MAX_STD_M, False, " m", "add reflectors or scans at other ranges"),
        Gate("rotation σ", worst_deg, MAX_STD_DEG, False, "°", "add reflectors farther apart in azimuth"),
        Gate("rms", r.rms_m, MAX_RMS_M, False, " m",
             "residuals too large: check the reflectors are the strongest returns and the sensors' sync"),
    ]  # fmt: skip


def _level(p: np.ndarray, dz: float) -> np.ndarray:
    """A 2D radar's detection (x, y, 0) of a target ``dz`` m above (or below) the radar: the radar measures
    the slant range, so the horizontal range is √(r² − dz²); returns the point at that range and height.
    (Unchanged where the target is within |dz| of the radar: no horizontal solution.)"""
    r = float(np.hypot(p[0], p[1]))
    if r <= abs(dz) or r == 0:
        return p
    s = np.sqrt(r * r - dz * dz) / r
    return np.array([p[0] * s, p[1] * s, dz])


def solve_radar_lidar(
    frames: list[tuple[RadarScan, np.ndarray]],
    T_base_lidar: Transform,
    T_base_radar_init: Transform,
    six_dof: bool = False,
    gates_m: tuple[float, ...] = (1.5, 0.8, 0.5),
) -> RadarLidarResult:
    """Fit ``T_base_radar`` from ``frames``: (radar scan, (K, 3) LiDAR targets in the LiDAR frame taken at
    the same time). ``six_dof``: fit all six parameters (radars that measure elevation); otherwise x, y, yaw
    with horizontal residuals; a 2D radar (every detection at z = 0) measures slant range, so each matched
    detection is brought to the horizontal range of its target's height above the radar first (a
    reflector 1 m above a radar at 10 m reads 5 cm long). Each gate of ``gates_m`` is one round of
    association + robust fit."""
    require_scipy()
    T = T_base_radar_init
    names = ("x", "y", "z", "roll_deg", "pitch_deg", "yaw_deg") if six_dof else ("x", "y", "yaw_deg")
    targets_base = [T_base_lidar.apply(t) if len(t) else np.zeros((0, 3)) for _s, t in frames]
    sol = None
    pr = pb = np.zeros((0, 3))
    for gate in gates_m:
        pr_list, pb_list = [], []
        for (scan, _t), tb in zip(frames, targets_base, strict=True):
            if not len(tb) or not len(scan):
                continue
            det_base = T.apply(scan.xyz.astype(np.float64))
            d = np.linalg.norm((det_base[:, None, :2] - tb[None, :, :2]), axis=2)
            j = np.argmin(d, axis=1)
            ok = d[np.arange(len(j)), j] < gate
            # one detection per target per scan: the nearest
            flat = not six_dof and bool(np.all(scan.xyz[:, 2] == 0))  # a 2D radar: slant ranges
            for k in np.unique(j[ok]):
                cand = np.flatnonzero(ok & (j == k))
                best = cand[np.argmin(d[cand, k])]
                p = scan.xyz[best].astype(np.float64)
                if flat:
                    p = _level(p, tb[k][2] - T.translation[2])
                pr_list.append(p)
                pb_list.append(tb[k])
        if len(pr_list) < 3:
            raise CalibrationError(
                f"only {len(pr_list)} radar detection(s) near a LiDAR reflector (gate {gate} m); need ≥ 3: "
                "place "
                "corner reflectors (≥ 3, spread in azimuth, 5–40 m) in view of both sensors, or check the "
                "initial "
                "radar extrinsics (within ~1 m / 5°)"
            )
        pr, pb = np.array(pr_list), np.array(pb_list)
        sol, T = _fit_pairs(pr, pb, T, six_dof)
    assert sol is not None
    r = sol.fun.reshape(len(pr), -1)
    dist = np.linalg.norm(r, axis=1)
    inl = dist < 3 * max(np.median(dist) * 1.4826, 0.02)
    J = sol.jac
    s2 = float(np.sum(r[inl] ** 2)) / max(1, inl.sum() * r.shape[1] - len(sol.x))
    try:
        std = np.sqrt(np.clip(np.diag(np.linalg.inv(J.T @ J)) * s2, 0, None))
    except np.linalg.LinAlgError:
        std = np.full(len(sol.x), np.nan)
    if six_dof:
        std[3:] = np.degrees(std[3:])
    else:
        std[2] = np.degrees(std[2])
    refl = distinct_targets(pb[inl])
    bearings = np.degrees(np.arctan2(*(refl[:, :2] - T.translation[:2]).T[::-1]))
    spread = float(np.ptp(bearings)) if len(bearings) else 0.0
    # leave one reflector out: its pairs' RMS under the fit of the others
    loo = {}
    if len(refl) >= 3:
        own = np.argmin(np.linalg.norm(pb[:, None, :2] - refl[None, :, :2], axis=2), axis=1)
        for k, c in enumerate(refl):
            out_k = (own == k) & inl
            _s, T_k = _fit_pairs(pr[~out_k & inl], pb[~out_k & inl], T, six_dof)
            r_k = T_k.apply(pr[out_k]) - pb[out_k]
            r_k = r_k if six_dof else r_k[:, :2]
            loo[f"{c[0]:.1f},{c[1]:.1f}"] = float(np.sqrt(np.mean(np.sum(r_k**2, axis=1))))
    return RadarLidarResult(T, names, std, float(np.sqrt(np.mean(dist[inl] ** 2))), len(pr), int(inl.sum()),
                            len(refl), spread, loo)  # fmt: skip


def _fit_pairs(pr: np.ndarray, pb: np.ndarray, T: Transform, six_dof: bool):
    """One robust fit (Huber, 0.2 m) of T_base_radar to matched pairs from ``T``: (solution, transform)."""
    from scipy.optimize import least_squares

    rpy = matrix_to_rpy(T.rotation)
    x0 = np.concatenate([T.translation, rpy]) if six_dof else np.array([*T.translation[:2], rpy[2]])

    def residuals(x):
        r = _pose(x, T, six_dof).apply(pr) - pb
        return (r if six_dof else r[:, :2]).ravel()

    sol = least_squares(residuals, x0, loss="huber", f_scale=0.2)
    return sol, _pose(sol.x, T, six_dof)


def frames_from_log(
    log: str, radar: str, lidar: str, max_dt_ns: int = 60_000_000, min_intensity: float = 100.0
) -> list[tuple[RadarScan, np.ndarray]]:
    """(radar scan, LiDAR targets) pairs from a log: each radar scan with the LiDAR sweep nearest in time
    (within ``max_dt_ns``; use a log where the vehicle stands still or moves slowly: no motion
    compensation is applied)."""
    from edgefuse.calib.common import sensor_messages

    sweeps = [(m.stamp_ns, lidar_targets(m.payload, min_intensity)) for m in sensor_messages(log, lidar)]
    if not sweeps:
        return []
    st = np.array([s for s, _ in sweeps], dtype=np.int64)
    out = []
    for m in sensor_messages(log, radar):
        i = int(np.argmin(np.abs(st - m.stamp_ns)))
        if abs(int(st[i]) - m.stamp_ns) <= max_dt_ns:
            out.append((m.payload, sweeps[i][1]))
    return out
