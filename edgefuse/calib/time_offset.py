"""Time offset between two sensors from their motion signals, by cross-correlation with sub-sample refinement.

Motion signals (each a pair of arrays: stamps int64 ns, values float64), all in the vehicle frame:

- **yaw rate** (rad/s) — IMU gyro rotated into base_link (:func:`imu_yaw_rate`), odometry twist
  (:func:`odometry_yaw_rate`), camera rotation between consecutive frames from tracked corners and the
  epipolar geometry of planar ego motion (:func:`camera_yaw_rate`), LiDAR rotation between consecutive
  sweeps by 2D ICP
  (:func:`lidar_motion`);
- **speed** (m/s) — radar ego speed from the doppler of static detections (:func:`radar_speed`), LiDAR
  ICP translation, odometry.

:func:`estimate_offset` resamples both signals on a common grid, finds the lag of the normalized
cross-correlation peak, refines it to a fraction of a sample (parabola through the peak, then a golden
section search on the continuous lag) and reports the peak correlation and a 1-σ from the peak's curvature.

Sign: ``offset_ns = d`` means an event stamped ``t`` by sensor A is stamped ``t + d`` by sensor B (B's stamps
are late by d). The calibration's time offsets are *added* to stamps (DESIGN §3), so B's offset is
lowered by d to align it with A.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from edgefuse.calib.common import CalibrationError, Gate, image_rgb, require_scipy
from edgefuse.geometry import CameraModel, Transform
from edgefuse.types import POINT_TIME_FIELD, Message

#: (stamps int64 ns, values float64) of instantaneous samples, or (stamps, values, start stamps) of means
#: over [start, stamp]
Signal = tuple


# ---------------------------------------------------------------- signals


def imu_yaw_rate(msgs: Iterable[Message], T_base_imu: Transform) -> Signal:
    """Yaw rate (rad/s about base_link z) of IMU messages."""
    t, w = [], []
    for m in msgs:
        t.append(m.stamp_ns)
        w.append((T_base_imu.rotation @ m.payload.angular_velocity)[2])
    return np.array(t, np.int64), np.array(w)


def odometry_yaw_rate(msgs: Iterable[Message]) -> tuple[Signal, Signal]:
    """(yaw rate, speed) of odometry messages (twist in the child frame, base_link)."""
    t, w, v = [], [], []
    for m in msgs:
        t.append(m.stamp_ns)
        w.append(m.payload.angular_velocity[2])
        v.append(float(np.linalg.norm(m.payload.linear_velocity[:2])))
    ts = np.array(t, np.int64)
    return (ts, np.array(w)), (ts, np.array(v))


def _planar_rotation(
    B0: np.ndarray,
    B1: np.ndarray,
    c: np.ndarray,
    max_yaw: float,
    tol: float,
    max_move_m: float = 1.5,
    min_move_m: float = 0.05,
) -> float | None:
    """Yaw ψ (rad) of the vehicle between two views from matched unit bearings (N, 3) expressed in
    base_link-aligned axes at the camera centre, for a camera at ``c`` (3,) in base_link. Motion model: planar
    and non-holonomic — base_link turns by ψ and moves by s ≥ 0 along the chord (cos ψ/2, sin ψ/2, 0) — so
    the camera centre moves by t(s) = s·h(ψ) + (Rz(ψ) − I)c. Residual of a track: the angle (rad) of B0 from
    the epipolar plane through t and Rz(ψ)·B1 — a geometric error, so ``tol`` is an image distance (the
    algebraic t̂·(Rz(ψ)B1 × B0) shrinks near the epipole, which the baseline's direction moves with ψ and s,
    and its least-squares s is pulled to 0). The truncated (at ``tol``) sum of squares is minimized over s
    on a grid (0, then 1 cm to ``max_move_m`` geometrically; 1.5 m is one 30 Hz frame at 45 m/s) for each
    ψ of a grid, then over ψ by golden section. The epipolar constraint says nothing without translation,
    so where the best s is below ``min_move_m`` a standing-still model (B0 = Rz(ψ) B1) competes with it."""
    c = np.asarray(c, np.float64)
    s_grid = np.concatenate([[0.0], np.geomspace(0.01, max(max_move_m, 0.02), 31)])

    def cost(psi: np.ndarray) -> np.ndarray:
        cs, sn = np.cos(psi)[:, None], np.sin(psi)[:, None]
        z = np.broadcast_to(B1[:, 2], (len(psi), len(B1)))
        C = np.stack([cs * B1[:, 0] - sn * B1[:, 1], sn * B1[:, 0] + cs * B1[:, 1], z], axis=2)  # (G, N, 3)
        m = np.cross(C, B0[None])  # (G, N, 3)
        h = np.stack([np.cos(psi / 2), np.sin(psi / 2), np.zeros_like(psi)], axis=1)  # (G, 3)
        lever = np.stack(
            [
                np.cos(psi) * c[0] - np.sin(psi) * c[1] - c[0],
                np.sin(psi) * c[0] + np.cos(psi) * c[1] - c[1],
                np.zeros_like(psi),
            ],
            axis=1,
        )
        t = s_grid[None, :, None] * h[:, None, :] + lever[:, None, :]  # (G, S, 3)
        t_norm = np.linalg.norm(t, axis=2)
        t_hat = t / np.maximum(t_norm, 1e-12)[..., None]
        # sin of the angle between B0 and the plane spanned by t̂ and C: (t̂·(C × B0)) / |t̂ × C|
        e = np.einsum("gni,gsi->gsn", m, t_hat)
        e = e / np.maximum(np.linalg.norm(np.cross(t_hat[:, :, None, :], C[:, None, :, :]), axis=3), 1e-6)
        moving = np.where(t_norm > 1e-9, np.minimum(e**2, tol**2).sum(axis=2), np.inf)  # (G, S)
        k = np.argmin(moving, axis=1)
        moving = moving[np.arange(len(psi)), k]
        # standing still (the epipolar constraint is void without translation): B0 = Rz(ψ) B1
        still = np.minimum(np.sum((C - B0[None]) ** 2, axis=2), tol**2).sum(axis=1)
        return np.where(s_grid[k] > min_move_m, moving, np.minimum(moving, still))

    if len(B0) < 12:
        return None
    grid = np.linspace(-max_yaw, max_yaw, 161)
    k = int(np.argmin(cost(grid)))
    step = grid[1] - grid[0]
    lo, hi = grid[k] - step, grid[k] + step
    g = (np.sqrt(5) - 1) / 2
    for _ in range(25):
        c1, c2 = hi - g * (hi - lo), lo + g * (hi - lo)
        f = cost(np.array([c1, c2]))
        if f[0] < f[1]:
            hi = c2
        else:
            lo = c1
    return float((lo + hi) / 2)


def camera_yaw_rate(
    msgs: Iterable[Message],
    cam: CameraModel,
    T_base_cam: Transform,
    max_features: int = 600,
    max_yaw_rate: float = 3.0,
    max_speed: float = 40.0,
    min_corner_eig: float = 1e-3,
) -> Signal:
    """Yaw rate from consecutive camera frames: corners (``cv2.goodFeaturesToTrack``, keeping those whose
    structure tensor's smaller eigenvalue, ``cv2.cornerMinEigenVal`` over 7 × 7 px, is at least
    ``min_corner_eig``: on an edge — a horizon, a roof line — a track slides along it and reads no motion;
    a view of sky and grass then gives no sample instead of a false zero) → KLT tracks (forward-backward
    checked) → unit bearings rotated into base_link axes → planar non-holonomic ego motion
    (:func:`_planar_rotation`, travel up to ``max_speed`` m/s) → ψ / Δt, the mean yaw rate over each frame
    pair: ``(stamps, values, previous stamps)``. Pairs with too few tracks are skipped."""
    out_t, out_w, out_t0 = [], [], []
    prev_gray, prev_t = None, None
    for m in msgs:
        gray = cv2.cvtColor(image_rgb(m, f"{m.sensor_id} stamp {m.stamp_ns}"), cv2.COLOR_RGB2GRAY)
        if prev_gray is not None:
            dt = (m.stamp_ns - prev_t) * 1e-9
            p0 = cv2.goodFeaturesToTrack(prev_gray, max_features, 0.03, 10)
            if p0 is not None and min_corner_eig > 0:
                eig = cv2.cornerMinEigenVal(prev_gray, 7, 3)
                xy = np.round(p0.reshape(-1, 2)).astype(int)
                p0 = p0[eig[xy[:, 1], xy[:, 0]] >= min_corner_eig]
            if p0 is not None and len(p0) >= 20 and dt > 0:
                p1, st, _err = cv2.calcOpticalFlowPyrLK(
                    prev_gray, gray, p0, None, winSize=(21, 21), maxLevel=3
                )
                back, st2, _err = cv2.calcOpticalFlowPyrLK(
                    gray, prev_gray, p1, None, winSize=(21, 21), maxLevel=3
                )
                fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)  # forward-backward check
                ok = (st.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < 0.3)
                if ok.sum() >= 20:
                    B0 = cam.rays(p0.reshape(-1, 2)[ok].astype(np.float64)) @ T_base_cam.rotation.T
                    B1 = cam.rays(p1.reshape(-1, 2)[ok].astype(np.float64)) @ T_base_cam.rotation.T
                    psi = _planar_rotation(
                        B0,
                        B1,
                        T_base_cam.translation,
                        max_yaw_rate * dt,
                        tol=2.0 / cam.K[0, 0],
                        max_move_m=max_speed * dt,
                    )
                    if psi is not None:
                        out_t0.append(prev_t)
                        out_t.append(m.stamp_ns)
                        out_w.append(psi / dt)
        prev_gray, prev_t = gray, m.stamp_ns
    return np.array(out_t, np.int64), np.array(out_w), np.array(out_t0, np.int64)


def _icp_2d(
    src: np.ndarray, dst_tree, dst: np.ndarray, yaw0: float = 0.0, t0=(0.0, 0.0), iterations: int = 40
):
    """Point-to-point 2D ICP from the guess (``yaw0``, ``t0``): (yaw, (2,) translation) mapping src onto
    dst; the correspondence distance shrinks from 3 m to 0.3 m over the iterations."""
    c, s_ = np.cos(yaw0), np.sin(yaw0)
    R = np.array([[c, -s_], [s_, c]])
    t = np.asarray(t0, np.float64).copy()
    for it in range(iterations):
        max_dist = max(0.3, 3.0 * (1 - it / (0.6 * iterations)))
        p = src @ R.T + t
        d, j = dst_tree.query(p, distance_upper_bound=max_dist)
        ok = np.isfinite(d)
        if ok.sum() < 10:
            break
        a, b = p[ok], dst[j[ok]]
        ca, cb = a.mean(axis=0), b.mean(axis=0)
        H = (a - ca).T @ (b - cb)
        U, _S, Vt = np.linalg.svd(H)
        dR = Vt.T @ U.T
        if np.linalg.det(dR) < 0:
            Vt[1] *= -1
            dR = Vt.T @ U.T
        R = dR @ R
        t = dR @ (t - ca) + cb
    return float(np.arctan2(R[1, 0], R[0, 0])), t


def lidar_motion(
    msgs: Iterable[Message], T_base_lidar: Transform, voxel_m: float = 0.25, max_range_m: float = 40.0
) -> tuple[Signal, Signal]:
    """(yaw rate, speed) from consecutive LiDAR sweeps: points above the ground (base z > 0.3 m) within
    ``max_range_m``, voxel-downsampled, registered by 2D ICP (previous sweep onto the current one): mean
    rates over each sweep pair, ``(stamps, values, previous stamps)``, each sweep dated at its points' mean
    time (per-point ``t_ns``; the stamp when absent): registering two motion-distorted sweeps relates their
    mean-time poses. (De-skewing with a first-pass motion breaks down at sudden changes of yaw rate, which
    are what dates the signal.)"""
    require_scipy()
    from scipy.spatial import cKDTree

    sweeps = []
    for m in msgs:
        c = m.payload
        p = T_base_lidar.apply(c.xyz.astype(np.float64))
        keep = (p[:, 2] > 0.3) & (np.hypot(p[:, 0], p[:, 1]) < max_range_m)
        xy = p[keep, :2]
        tau = (
            c.column(POINT_TIME_FIELD)[keep].astype(np.float64) * 1e-9
            if c.has(POINT_TIME_FIELD)
            else np.zeros(len(xy))
        )
        _, idx = np.unique(np.floor(xy / voxel_m).astype(np.int64), axis=0, return_index=True)
        sweeps.append((m.stamp_ns, xy[idx], tau[idx]))

    def register(points: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        t_out, w_out, v_out, t0_out = [], [], [], []
        guess = (0.0, np.zeros(2))
        for k in range(1, len(sweeps)):
            (t0, _, _), (t1, _, _) = sweeps[k - 1], sweeps[k]
            if len(points[k]) < 50 or len(points[k - 1]) < 50 or t1 <= t0:
                continue
            yaw, tr = _icp_2d(points[k - 1], cKDTree(points[k]), points[k], *guess)
            guess = (yaw, tr)  # constant velocity: the next pair starts from this motion
            dt = (t1 - t0) * 1e-9
            t_out.append(t1)
            t0_out.append(t0)
            # previous points mapped into the current frame: the vehicle turned by −yaw
            w_out.append(-yaw / dt)
            v_out.append(float(np.linalg.norm(tr)) / dt)
        return np.array(t_out, np.int64), np.array(w_out), np.array(v_out), np.array(t0_out, np.int64)

    ts, w, v, t0s = register([s[1] for s in sweeps])
    # registering distorted sweeps relates their mean-time poses: date each sweep by its points' mean time
    shift = {stamp: int(np.mean(tau) * 1e9) if len(tau) else 0 for stamp, _xy, tau in sweeps}
    ts = np.array([t + shift[int(t)] for t in ts], np.int64)
    t0s = np.array([t + shift[int(t)] for t in t0s], np.int64)
    return (ts, w, t0s), (ts, v, t0s)


def radar_speed(
    msgs: Iterable[Message],
    T_base_radar: Transform,
    min_detections: int = 6,
    rng: np.random.Generator | None = None,
) -> Signal:
    """Ego speed (m/s) per radar scan from the doppler of static detections: doppler_i = −u_i · v_sensor
    (u_i the unit direction), solved by RANSAC over pairs then least squares on the inliers; the speed is
    the sensor velocity's base_link x component (a turn adds ω × r, which is lateral for a radar on the
    centre line)."""
    rng = rng or np.random.default_rng(0)
    t_out, v_out = [], []
    for m in msgs:
        s = m.payload
        if len(s) < min_detections or not s.has("doppler"):
            continue
        xyz = s.xyz.astype(np.float64)
        u = xyz[:, :2] / np.maximum(np.linalg.norm(xyz[:, :2], axis=1, keepdims=True), 1e-6)
        dop = s.column("doppler").astype(np.float64)
        best = None
        for _ in range(60):
            i = rng.choice(len(u), 2, replace=False)
            A = -u[i]
            if abs(np.linalg.det(A)) < 1e-3:
                continue
            v = np.linalg.solve(A, dop[i])
            inl = np.abs(-u @ v - dop) < 0.25
            if best is None or inl.sum() > best.sum():
                best = inl
        if best is None or best.sum() < min_detections:
            continue
        v = np.linalg.lstsq(-u[best], dop[best], rcond=None)[0]
        t_out.append(m.stamp_ns)
        v_out.append(float((T_base_radar.rotation[:2, :2] @ v)[0]))
    return np.array(t_out, np.int64), np.array(v_out)


def despike(sig: Signal, window: int = 5, k: float = 3.0) -> Signal:
    """Replace samples that deviate from the running median (``window`` samples) by more than ``k`` robust
    standard deviations (MAD of the deviations) with that median: one bad frame pair or sweep
    registration must not move the correlation peak."""
    t, v = sig
    if len(v) < window:
        return sig
    pad = window // 2
    vp = np.pad(v, pad, mode="edge")
    med = np.median(np.lib.stride_tricks.sliding_window_view(vp, window), axis=1)
    dev = v - med
    mad = 1.4826 * np.median(np.abs(dev)) + 1e-9
    return t, np.where(np.abs(dev) > k * mad, med, v)


# ---------------------------------------------------------------- correlation


@dataclass
class OffsetResult:
    """``offset_ns``: B's stamps minus A's for the same event; ``correlation``: peak normalized
    cross-correlation in [−1, 1]; ``std_ns``: 1-σ from the peak's curvature; ``overlap_s``; ``signal``."""

    offset_ns: int
    correlation: float
    std_ns: float
    overlap_s: float
    signal: str
    motion: float = 0.0  # the weaker signal's std over the overlap (rad/s for yaw rate, m/s for speed)
    max_lag_ns: int = 0  # the search window: ±max_lag_ns

    def to_dict(self) -> dict:
        return {
            "motion": round(self.motion, 4),
            "max_lag_ms": round(self.max_lag_ns / 1e6, 3),
            "offset_ms": round(self.offset_ns / 1e6, 3),
            "offset_ns": int(self.offset_ns),
            "correlation": round(self.correlation, 4),
            "std_ms": round(self.std_ns / 1e6, 3),
            "overlap_s": round(self.overlap_s, 2),
            "signal": self.signal,
        }


def _predict(
    tA: np.ndarray,
    sA: np.ndarray,
    tI: np.ndarray,
    IA: np.ndarray,
    tB: np.ndarray,
    tB0: np.ndarray | None,
    lag: float,
) -> np.ndarray:
    """A's value at B's samples shifted by ``lag`` s: instantaneous (``tB0`` None, from A's samples ``tA``,
    ``sA``) or the mean of A over each interval [tB0, tB] (exact for interval averages, from A's cumulative
    integral ``IA`` at the times ``tI``)."""
    if tB0 is None:
        return np.interp(tB - lag, tA, sA)
    i1 = np.interp(tB - lag, tI, IA)
    i0 = np.interp(tB0 - lag, tI, IA)
    return (i1 - i0) / (tB - tB0)


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else 0.0


def estimate_offset(
    a: Signal, b: Signal, max_lag_s: float = 0.5, step_s: float = 0.005, signal: str = "yaw_rate"
) -> OffsetResult:
    """The offset d (ns) such that B's stamps are A's plus d for the same event (``b(t + d) ≈ a(t)``; see
    the module doc), searched within ±``max_lag_s`` on a ``step_s`` grid and refined to a fraction of a
    sample. A should be the denser signal (it is swapped otherwise). A signal is ``(stamps, values)`` of
    instantaneous samples, or ``(stamps, values, start_stamps)`` of averages over [start, stamp] (frame-pair
    and sweep-pair rates): those are compared with A's mean over the same shifted interval, so sparse
    samples still give a sub-sample offset. A's mean comes from its cumulative integral: trapezoids between
    instantaneous samples (a step of the rate between two samples is dated only to within their spacing), or
    exact at the sample boundaries when A itself is interval means that tile the time line (a gyro that
    averages over each sample period)."""
    if len(a[0]) < len(b[0]):
        r = estimate_offset(b, a, max_lag_s, step_s, signal)
        r.offset_ns = -r.offset_ns
        return r
    # A as interval means (an IMU's samples are its rate averaged over each sample period): where the
    # intervals tile the time line, A's integral is known exactly at their ends; else use their centres
    tiled = None
    if len(a) == 3:
        a_end, a_start = np.asarray(a[0], np.int64), np.asarray(a[2], np.int64)
        if len(a_end) > 1 and np.all(a_start[1:] == a_end[:-1]) and np.all(a_end > a_start):
            tiled = (np.concatenate([a_start[:1], a_end]), np.asarray(a[1], np.float64))
        a = ((a_end + a_start) // 2, a[1])
    tA = np.asarray(a[0], np.int64)
    tB = np.asarray(b[0], np.int64)
    if len(tA) < 10 or len(tB) < 10:
        raise CalibrationError(
            f"time offset: too few motion samples ({len(tA)} and {len(tB)}); record ≥ 10 s of driving with "
            "turns "
            "(or rotate the rig by hand) so both sensors see the motion"
        )
    t0 = int(min(tA[0], tB[0]))
    tA_s = (tA - t0) * 1e-9
    tB_s = (tB - t0) * 1e-9
    tB0_s = (np.asarray(b[2], np.int64) - t0) * 1e-9 if len(b) == 3 else None
    sA, sB = np.asarray(a[1], np.float64), np.asarray(b[1], np.float64)
    IA = np.concatenate([[0.0], np.cumsum(np.diff(tA_s) * (sA[1:] + sA[:-1]) / 2)])
    tI_s = tA_s  # the nodes of A's cumulative integral IA
    if tiled is not None:
        tI_s = (tiled[0] - t0) * 1e-9
        IA = np.concatenate([[0.0], np.cumsum(np.diff(tI_s) * tiled[1])])
    first = tB0_s if tB0_s is not None else tB_s
    use = (first - max_lag_s >= tA_s[0]) & (tB_s + max_lag_s <= tA_s[-1])
    if use.sum() < 10:
        raise CalibrationError(
            f"time offset: only {int(use.sum())} samples of one signal fall inside the other (after "
            f"±{max_lag_s} s of "
            "lag margin): record a longer stretch with both sensors running"
        )
    tB_s, sB = tB_s[use], sB[use]
    tB0_s = tB0_s[use] if tB0_s is not None else None
    overlap = float(tB_s[-1] - tB_s[0])
    motion = float(min(np.std(sB), np.std(np.interp(tB_s, tA_s, sA))))
    if motion < 1e-3:
        raise CalibrationError(
            f"time offset: no motion in the {signal} signal: drive with turns and speed changes (or rotate "
            "the "
            "rig) while recording"
        )

    keep = np.ones(len(sB), bool)

    def ncc(lag: float) -> float:
        return _ncc(
            _predict(tA_s, sA, tI_s, IA, tB_s[keep], tB0_s[keep] if tB0_s is not None else None, lag),
            sB[keep],
        )

    def search(lags: np.ndarray) -> float:
        cc = np.array([ncc(lag) for lag in lags])
        k = int(np.argmax(cc))
        lag = lags[k]
        if 0 < k < len(lags) - 1:
            y0, y1, y2 = cc[k - 1], cc[k], cc[k + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                lag += 0.5 * (y0 - y2) / den * step_s
        # golden-section search on the continuous lag around the parabola's vertex
        lo, hi = lag - step_s, lag + step_s
        g = (np.sqrt(5) - 1) / 2
        c_, d_ = hi - g * (hi - lo), lo + g * (hi - lo)
        fc, fd = ncc(c_), ncc(d_)
        for _ in range(30):
            if fc > fd:
                hi, d_, fd = d_, c_, fc
                c_ = hi - g * (hi - lo)
                fc = ncc(c_)
            else:
                lo, c_, fc = c_, d_, fd
                d_ = lo + g * (hi - lo)
                fd = ncc(d_)
        return (lo + hi) / 2

    lag = search(np.arange(-max_lag_s, max_lag_s + step_s / 2, step_s))
    # robust pass: drop samples that disagree with A (a bad frame pair, a sweep registered across a sudden
    # change of motion) by more than 3 robust σ after a linear fit, then search again near the peak
    pred = _predict(tA_s, sA, tI_s, IA, tB_s, tB0_s, lag)
    A_ = np.stack([pred, np.ones_like(pred)], axis=1)
    coef = np.linalg.lstsq(A_, sB, rcond=None)[0]
    res = sB - A_ @ coef
    mad = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-9
    keep = np.abs(res - np.median(res)) < 3 * mad
    if keep.sum() >= 10 and not keep.all():
        lag = search(lag + np.arange(-4, 5) * step_s)
    peak = ncc(lag)
    h = step_s
    curv = (ncc(lag - h) - 2 * peak + ncc(lag + h)) / h**2
    std = np.sqrt(max(1 - peak, 1e-6) / (keep.sum() * -curv)) if curv < 0 else float("inf")
    return OffsetResult(
        int(round(lag * 1e9)), peak, float(std * 1e9), overlap, signal, motion, int(round(max_lag_s * 1e9))
    )


#: Quality gates of a time offset (:func:`offset_gates`). Motion: a consumer MEMS gyro's noise alone gives
#: a yaw-rate std of ~0.005 rad/s and a drive straight ahead little more, so the floor (0.03 rad/s, 1.7°/s)
#: asks for turns; speed: 0.2 m/s of speed changes. Correlation: the good sessions of the tests give > 0.9,
#: a straight drive 0.08. Peak margin: a peak within two search steps of ±max_lag is the window's edge,
#: not a maximum. σ: 10 ms is a third of a camera frame.
MIN_MOTION = {"yaw_rate": (0.03, " rad/s"), "speed": (0.2, " m/s")}
MIN_CORRELATION = 0.7
MIN_PEAK_MARGIN_MS = 10.0
MAX_STD_MS = 10.0


def offset_gates(r: OffsetResult) -> list[Gate]:
    """The quality gates of one time-offset estimate (see :data:`MIN_MOTION` …)."""
    floor, unit = MIN_MOTION[r.signal]
    margin_ms = (r.max_lag_ns - abs(r.offset_ns)) / 1e6
    return [
        Gate("motion", r.motion, floor, True, unit,
             f"too little {r.signal.replace('_', ' ')}: record turns and speed changes both sensors see"),
        Gate("correlation", r.correlation, MIN_CORRELATION, True, "",
             "the two signals do not agree at any lag: check the sensor pair, its extrinsics and the motion"),
        Gate("peak margin", margin_ms, MIN_PEAK_MARGIN_MS, True, " ms",
             f"the best lag is at the edge of ±{r.max_lag_ns / 1e6:g} ms: rerun with a larger --max-lag"),
        Gate("offset σ", r.std_ns / 1e6, MAX_STD_MS, False, " ms",
             "the correlation peak is too flat: record longer, with sharper turns"),
    ]  # fmt: skip


# ---------------------------------------------------------------- log shell


def _kind(msg: Message) -> str:
    from edgefuse.types import CompressedImage, Image, Imu, Odometry, PointCloud, RadarScan

    for t, k in (
        (Image, "camera"),
        (CompressedImage, "camera"),
        (PointCloud, "lidar"),
        (RadarScan, "radar"),
        (Imu, "imu"),
        (Odometry, "odometry"),
    ):
        if isinstance(msg.payload, t):
            return k
    raise CalibrationError(
        f"time offset: sensor {msg.sensor_id!r} carries {type(msg.payload).__name__}, which "
        "gives no motion signal"
    )


def sensor_signals(log: str, sensor: str, calib) -> tuple[str, dict[str, Signal]]:
    """(kind, {"yaw_rate": …, "speed": …}) of one sensor of a log (the signals its kind gives)."""
    import itertools

    from edgefuse.calib.common import sensor_messages

    msgs = sensor_messages(log, sensor)
    first = next(msgs, None)
    if first is None:
        raise CalibrationError(f"{log}: no messages of sensor {sensor!r}")
    kind = _kind(first)
    msgs = itertools.chain([first], msgs)

    def T(sid: str) -> Transform:
        try:
            return calib.T_base(sid)
        except KeyError as e:
            raise CalibrationError(f"time offset: {e.args[0]}") from None

    if kind == "imu":
        return kind, {"yaw_rate": imu_yaw_rate(msgs, T(sensor))}
    if kind == "odometry":
        w, v = odometry_yaw_rate(msgs)
        return kind, {"yaw_rate": w, "speed": v}
    if kind == "camera":
        try:
            cam = calib.camera(sensor)
        except KeyError as e:
            raise CalibrationError(f"time offset: {e.args[0]}") from None
        return kind, {"yaw_rate": camera_yaw_rate(msgs, cam, T(sensor))}
    if kind == "lidar":
        w, v = lidar_motion(msgs, T(sensor))
        return kind, {"yaw_rate": w, "speed": v}
    return kind, {"speed": radar_speed(msgs, T(sensor))}


def offset_from_log(log: str, a: str, b: str, calib, max_lag_s: float = 0.5) -> tuple[OffsetResult, dict]:
    """The time offset of sensor ``b`` relative to ``a`` in a log, from the motion signal both give (yaw
    rate where both have it, else speed)."""
    ka, sa = sensor_signals(log, a, calib)
    kb, sb = sensor_signals(log, b, calib)
    common = [k for k in ("yaw_rate", "speed") if k in sa and k in sb]
    if not common:
        raise CalibrationError(
            f"time offset: {a} ({ka}) and {b} ({kb}) share no motion signal (a camera gives yaw rate, a "
            "radar speed): "
            "calibrate each against an IMU, odometry or LiDAR instead"
        )
    name = common[0]
    return estimate_offset(
        despike(sa[name]) if len(sa[name]) == 2 else sa[name], sb[name], max_lag_s, signal=name
    ), {"kinds": [ka, kb]}
