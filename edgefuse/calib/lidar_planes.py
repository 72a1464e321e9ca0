"""Planes measured by a LiDAR: fitted on range residuals, and how they move when each laser's range
offset changes (the LiDAR → camera solver estimates the offsets of the lasers that cross its boards).

A real spinning LiDAR's lasers each read ranges a little long or short (VLP-32C: ±3 cm), and weak echoes
(a chessboard's black squares) read longer than strong ones (range walk). Only the 10-25 lasers that cross
a board measure it, each along one line: per-laser offsets tilt the board's fitted plane by up to a degree
while its covariance, from thousands of points, claims a hundredth of that. So the offsets are solved for
with the extrinsics: :func:`offset_sensitivity` gives each pose's plane change per metre of each laser's
offset (linear: the plane fit's Gauss-Newton step for ranges shifted by the offsets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefuse.calib.common import CalibrationError


def tangent_basis(n: np.ndarray) -> np.ndarray:
    """(2, 3) orthonormal vectors perpendicular to the unit vector ``n``."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1)])


@dataclass(frozen=True)
class RayPlane:
    """A plane n·x = d fitted to points measured along rays from the origin: ``centre`` (3,) the plane's
    point nearest the points' centroid, ``basis`` (2, 3) in-plane directions, ``cov`` (3, 3) of (tilt of n
    towards basis[0], towards basis[1] (rad), offset along n at ``centre`` (m)), ``sigma_m`` the RMS range
    residual (m)."""

    n: np.ndarray
    d: float
    centre: np.ndarray
    basis: np.ndarray
    cov: np.ndarray
    sigma_m: float


def fit_plane_rays(
    points: np.ndarray,
    n0: np.ndarray,
    d0: float,
    iterations: int = 8,
    sigma_floor_m: float = 0.005,
) -> RayPlane:
    """The plane through (K, 3) points measured along rays from the origin (a LiDAR's frame), starting
    from n0·x = d0, by Gauss-Newton on the range residuals ρ_j − d / (n·u_j) (u_j = p_j / ρ_j): the
    maximum-likelihood plane for range noise. A point-to-plane fit (SVD) is biased there: the noise along
    the rays has an in-plane part correlated with its normal part, which tilts the fitted plane towards the
    rays by about σ²·sin·cos / var(in-plane), ~0.2° for 2 cm of noise on a board turned 40° from face-on.
    The covariance is σ²(JᵀJ)⁻¹ with σ the RMS range residual (at least ``sigma_floor_m``)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) < 3:
        raise CalibrationError(f"ray plane fit: expected (K ≥ 3, 3) points, got shape {p.shape}")
    rho = np.linalg.norm(p, axis=1)
    u = p / rho[:, None]
    n = np.asarray(n0, dtype=np.float64) / np.linalg.norm(n0)
    centroid = p.mean(axis=0)
    d = float(d0)
    for it in range(iterations + 1):
        c = centroid + (d - n @ centroid) * n  # the plane's point nearest the centroid
        E = tangent_basis(n)
        r = rho - d / (u @ n)
        # x = (a, b, o): n ← normalize(n + a e1 + b e2), plane through c + o n; Jacobian at x = 0
        J = _jacobian(p, n, d, c, E)
        x = -np.linalg.lstsq(J, r, rcond=None)[0]
        if it == iterations or np.abs(x).max() < 1e-9:
            break
        c = c + x[2] * n
        n = n + x[0] * E[0] + x[1] * E[1]
        n /= np.linalg.norm(n)
        d = float(n @ c)
    sig = max(float(np.sqrt(np.mean(r**2))), sigma_floor_m)
    cov = np.linalg.inv(J.T @ J) * sig**2
    return RayPlane(n, d, c, E, cov, float(np.sqrt(np.mean(r**2))))


def _jacobian(p: np.ndarray, n: np.ndarray, d: float, c: np.ndarray, E: np.ndarray) -> np.ndarray:
    """(K, 3) d(range residual)/d(tilt towards E[0], tilt towards E[1], offset along n) at the plane
    n·x = d through c, for points ``p`` (K, 3) measured along rays from the origin."""
    rho = np.linalg.norm(p, axis=1)
    u = p / rho[:, None]
    nu = u @ n
    J = np.empty((len(p), 3))
    for k in range(2):
        J[:, k] = -(E[k] @ c) / nu + d * (u @ E[k]) / nu**2
    J[:, 2] = -1.0 / nu
    return J


def offset_sensitivity(fit: RayPlane, points: np.ndarray, features: np.ndarray) -> np.ndarray:
    """(3, M): how the plane ``fit`` of ``points`` (K, 3) moves, in (tilt towards basis[0], tilt towards
    basis[1] (rad), offset along n (m)), per unit of each of M range corrections: the corrected range of
    point k is ρ_k − Σ_m features[k, m]·b_m (``features`` (K, M), e.g. a one-hot laser indicator)."""
    J = _jacobian(np.asarray(points, np.float64), fit.n, fit.d, fit.centre, fit.basis)
    return np.linalg.lstsq(J, np.asarray(features, np.float64), rcond=None)[0]


def moved_plane(fit: RayPlane, x: np.ndarray) -> RayPlane:
    """``fit`` moved by x = (tilt towards basis[0], tilt towards basis[1], offset along n) (3,)."""
    c = fit.centre + x[2] * fit.n
    n = fit.n + x[0] * fit.basis[0] + x[1] * fit.basis[1]
    n = n / np.linalg.norm(n)
    return RayPlane(n, float(n @ c), c, fit.basis, fit.cov, fit.sigma_m)


def range_residuals(fit: RayPlane, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's range residual against the plane ``fit`` (K,) m and its Jacobian (K, 3) (as in
    :func:`offset_sensitivity`): with ranges corrected by features·θ and the plane refitted (moved by
    G·θ), the residuals become r − features·θ + J·G·θ, which measure how the lasers (and bright and dark
    points) disagree on one plane."""
    p = np.asarray(points, np.float64)
    rho = np.linalg.norm(p, axis=1)
    r = rho - fit.d / ((p / rho[:, None]) @ fit.n)
    return r, _jacobian(p, fit.n, fit.d, fit.centre, fit.basis)


def range_features(
    rings: np.ndarray | None,
    intensity: np.ndarray | None,
    points: np.ndarray,
    lasers: np.ndarray,
    walk_centre: float,
    plane: tuple[np.ndarray, float],
) -> np.ndarray:
    """(K, 3M + 1) the range model's features of K points (columns: per laser in ``lasers`` its range offset,
    the range walk, per laser its elevation error, per laser its azimuth error). The corrected range of a
    point is ρ − features·θ:

    - range offset: 1 on the laser's points (θ in m);
    - range walk: −log10(intensity / ρ²) − ``walk_centre`` (the echo's weakness in decades; 0 without
      intensities; θ in m per decade);
    - elevation and azimuth errors (θ in rad): a beam aimed δ off its table hits the board elsewhere and
      reads the range along its true direction while its point is placed along the table's; against the
      board's plane n·x = d (``plane``, the LiDAR frame) that reads as a range error of −d (n·∂u) / (n·u)²
      per radian, ∂u the beam's direction change per radian of elevation or azimuth."""
    p = np.asarray(points, np.float64)
    M = len(lasers)
    out = np.zeros((len(p), 3 * M + 1))
    if rings is not None and M:
        m = np.searchsorted(lasers, rings.astype(np.int64))
        ok = (m < M) & (lasers[np.minimum(m, M - 1)] == rings)
        k, m = np.flatnonzero(ok), m[ok]
        out[k, m] = 1.0
        n, d = plane
        u = p[k] / np.linalg.norm(p[k], axis=1, keepdims=True)
        horiz = np.hypot(u[:, 0], u[:, 1])
        ca, sa = u[:, 0] / horiz, u[:, 1] / horiz
        du_elev = np.stack([-u[:, 2] * ca, -u[:, 2] * sa, horiz], axis=1)
        du_azim = horiz[:, None] * np.stack([-sa, ca, np.zeros_like(ca)], axis=1)
        nu2 = (u @ n) ** 2
        out[k, M + 1 + m] = -d * (du_elev @ n) / nu2
        out[k, 2 * M + 1 + m] = -d * (du_azim @ n) / nu2
    if intensity is not None:
        out[:, M] = walk_feature(intensity, p) - walk_centre
    return out


def walk_feature(intensity: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K,) −log10(intensity / ρ²): an echo's weakness in decades of amplitude (intensity is a calibrated
    reflectivity, range-compensated; the echo's amplitude falls as 1/ρ²)."""
    rho2 = np.einsum("ij,ij->i", points, points)
    return -np.log10(np.maximum(np.asarray(intensity, np.float64), 1.0) / rho2)
