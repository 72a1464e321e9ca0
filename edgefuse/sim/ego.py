"""Ego-motion sensors of the simulated car: wheel odometry (50 Hz) and an IMU (200 Hz).

Pure cores: every function takes the world's true :class:`~edgefuse.sim.world_motion.EgoState` (and the
random generator of that message) and returns the payload.

- **Odometry** (:class:`OdometryIntegrator`): what a wheel-odometry node publishes — the twist it measures
  (speed with a wheel-scale error and noise, yaw rate with a gyro bias and noise) and the pose it gets by
  integrating that twist from the identity at the first sample (frame ``odom``), so its pose drifts
  like a real one.
- **IMU** (:func:`imu_sample`): angular velocity and specific force (gravity included, +9.81 up when at rest)
  at the IMU's mount (lever arm: ω×(ω×r) + α×r), in the IMU frame, with a constant per-seed bias and
  white noise.
- :func:`true_odometry`: the exact pose/twist of base_link in the world frame (ground truth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgefuse.geometry import Transform
from edgefuse.types import Imu, Odometry

GRAVITY = 9.80665
_RNG_EGO = 3000


@dataclass(frozen=True)
class EgoNoise:
    """Error model of the ego sensors (per seed): odometry speed scale error (fraction), speed noise std
    m/s, yaw-rate bias rad/s and noise std rad/s; IMU gyro/accel bias (3,) and white noise std."""

    speed_scale: float
    speed_std: float
    yaw_rate_bias: float
    yaw_rate_std: float
    gyro_bias: np.ndarray
    gyro_std: float
    accel_bias: np.ndarray
    accel_std: float

    @staticmethod
    def for_seed(seed: int) -> EgoNoise:
        rng = np.random.default_rng(seed + _RNG_EGO)
        return EgoNoise(
            speed_scale=float(rng.uniform(-0.01, 0.01)),
            speed_std=0.02,
            yaw_rate_bias=float(rng.uniform(-0.002, 0.002)),
            yaw_rate_std=0.003,
            gyro_bias=rng.uniform(-0.004, 0.004, 3),
            gyro_std=0.0025,
            accel_bias=rng.uniform(-0.06, 0.06, 3),
            accel_std=0.03,
        )

    def truth(self) -> dict[str, str]:
        return {k: str(v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def _quat_yaw(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def true_odometry(ego) -> Odometry:
    """The exact pose of base_link in the world frame and its twist (base_link), from an EgoState."""
    return Odometry(
        position=np.array([ego.xy[0], ego.xy[1], 0.0]),
        orientation=_quat_yaw(ego.yaw),
        linear_velocity=ego.velocity_base,
        angular_velocity=np.array([0.0, 0.0, ego.yaw_rate]),
        frame="world",
    )


@dataclass
class OdometryIntegrator:
    """Dead-reckons the measured twist (mid-point rule) from the identity pose at its first sample."""

    noise: EgoNoise
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    last_t_ns: int | None = None
    last: tuple[float, float] = field(default=(0.0, 0.0))

    def step(self, t_ns: int, ego, rng: np.random.Generator) -> Odometry:
        """One odometry message for the true ego state ``ego`` at true time ``t_ns``."""
        moving = ego.speed > 0.01  # a standing wheel reads 0
        v = ego.speed * (1.0 + self.noise.speed_scale) + rng.normal(0.0, self.noise.speed_std) * moving
        w = ego.yaw_rate + self.noise.yaw_rate_bias + rng.normal(0.0, self.noise.yaw_rate_std)
        if self.last_t_ns is not None:
            dt = (t_ns - self.last_t_ns) * 1e-9
            v_m, w_m = (v + self.last[0]) / 2, (w + self.last[1]) / 2
            yaw_mid = self.yaw + w_m * dt / 2
            self.x += v_m * dt * math.cos(yaw_mid)
            self.y += v_m * dt * math.sin(yaw_mid)
            self.yaw += w_m * dt
        self.last_t_ns, self.last = t_ns, (v, w)
        return Odometry(
            position=np.array([self.x, self.y, 0.0]),
            orientation=_quat_yaw(self.yaw),
            linear_velocity=np.array([v, 0.0, 0.0]),
            angular_velocity=np.array([0.0, 0.0, w]),
        )


def imu_sample(
    ego, T_base_imu: Transform, noise: EgoNoise, rng: np.random.Generator, mean_yaw_rate: float | None = None
) -> Imu:
    """The IMU reading for the true ego state at mount ``T_base_imu``.

    Gyro: ``mean_yaw_rate`` (rad/s) when given — the true yaw rate averaged over the sample period, i.e.
    the heading change since the previous sample over its duration, as a MEMS gyro's anti-alias filter
    and decimation deliver it (the path's curvature steps where arcs begin, and a point sample would
    date such a step only to ± half a period) — else the instantaneous ``ego.yaw_rate``.

    Specific force at the mount, in base_link, for a car on flat ground turning at ω about z with
    angular acceleration α = dω/dt = a·κ (κ piecewise constant along the path):
    (a_x, v·ω, g) + α×r + ω×(ω×r), with α×r = α(−r_y, r_x, 0) and ω×(ω×r) = −ω²(r_x, r_y, 0)."""
    w, alpha = ego.yaw_rate, ego.accel * ego.curvature
    rx, ry, _ = T_base_imu.translation
    f_base = np.array([ego.accel - alpha * ry - w * w * rx, ego.speed * w + alpha * rx - w * w * ry, GRAVITY])
    R = T_base_imu.rotation.T  # base → imu
    w_gyro = w if mean_yaw_rate is None else float(mean_yaw_rate)
    gyro = R[:, 2] * w_gyro + noise.gyro_bias + rng.normal(0.0, noise.gyro_std, 3)
    acc = R @ f_base + noise.accel_bias + rng.normal(0.0, noise.accel_std, 3)
    return Imu(angular_velocity=gyro, linear_acceleration=acc)
