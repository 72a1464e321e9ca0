"""Pure sweep assembly and time mapping for Velodyne packets (no I/O; the clock comes in as data).

Time: a packet carries µs past the top of the hour (the sensor's clock, GPS/PTP-disciplined or free
running). :func:`unwrap_hour_stamps` puts consecutive packets on one continuous sensor axis (each takes
the hour count that puts it nearest the packet before), so a sweep that crosses the top of the hour keeps
its per-point times. A sweep's ``raw_stamp_ns`` is its last firing in the sensor's own clock, ns past its
hour (``[0, HOUR_NS)``); the pipeline's stamp mapping (:class:`~edgefuse.sync.clock.StampMapper`, wrap
= one hour) unwraps it across sweeps and maps it onto the host clock. ``stamp_ns`` before that mapping
depends on what the receive times are (``hour_from_recv``):

- host monotonic receive times (live UDP): ``stamp_ns = recv_ns`` of the sweep's last packet (as every
  live adapter does until the stamp mapping);
- wall-clock receive times (a pcap's record times, ns since the Unix epoch): the last firing with the
  hour taken from the receive time (:func:`map_hour_stamps`: the hour that puts the stamp nearest the
  receive time, so a packet stamped 59:59.9 but received at 00:00.1 — or the reverse — lands in the
  right hour; this holds while sensor and recorder clocks agree within ±30 minutes).

Sweeps: :class:`SweepAssembler` collects whole packets and closes a sweep with the packet in which the
block azimuth passes ``cut_angle`` (as the ROS and Autoware drivers do), or when the azimuth jumps past
the cut between packets (a sensor with a restricted field of view, or lost packets). A sweep is a
:class:`edgefuse.types.Message` stamped at its last firing, ``recv_ns`` the receive time of its last
packet, whose payload is a :class:`PointCloud` with fields x y z intensity t_ns ring (``t_ns`` ≤ 0,
relative to the last firing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefuse.adapters.velodyne.packet import DecodedPoints
from edgefuse.rig import HOUR_NS
from edgefuse.types import POINT_TIME_FIELD, Message, PointCloud

__all__ = ["HOUR_NS", "SWEEP_FIELDS", "SweepAssembler", "map_hour_stamps", "unwrap_hour_stamps"]
_JITTER_CDEG = 100  # azimuth steps back by less than 1° are encoder jitter, not a wrap
SWEEP_FIELDS = ("x", "y", "z", "intensity", POINT_TIME_FIELD, "ring")


def map_hour_stamps(stamp_us: np.ndarray, recv_ns: np.ndarray) -> np.ndarray:
    """Full time (int64 ns since the epoch) of packets stamped ``stamp_us`` (P,) µs past the hour and
    received at ``recv_ns`` (P,) int64 ns since the epoch (a wall clock): the candidate hour (receive
    hour −1, 0, +1) that puts the stamp nearest the receive time."""
    return _nearest_hour(np.asarray(stamp_us, np.int64) * 1000, recv_ns)


def _nearest_hour(past_hour_ns, recv_ns) -> np.ndarray:
    recv = np.asarray(recv_ns, np.int64)
    t = (recv // HOUR_NS) * HOUR_NS + np.asarray(past_hour_ns, np.int64)
    t = np.where(t - recv > HOUR_NS // 2, t - HOUR_NS, t)
    return np.where(recv - t > HOUR_NS // 2, t + HOUR_NS, t)


def unwrap_hour_stamps(stamp_us: np.ndarray, prev: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple]:
    """Packets stamped ``stamp_us`` (P,) µs past the hour, in arrival order, on one continuous axis
    (int64 ns, hour 0 = the first packet's hour): each takes the hour count that puts it nearest the
    packet before. ``prev``: the state returned for the previous batch (None at the start). Returns
    (P,) ns and the state for the next batch."""
    t = np.asarray(stamp_us, np.int64).reshape(-1) * 1000
    if t.shape[0] == 0:
        return t, prev
    last, hours = prev if prev is not None else (int(t[0]), 0)
    d = np.diff(t, prepend=last)
    step = (d < -HOUR_NS // 2).astype(np.int64) - (d > HOUR_NS // 2).astype(np.int64)
    h = hours + np.cumsum(step)
    return t + h * HOUR_NS, (int(t[-1]), int(h[-1]))


@dataclass
class _Pending:
    xyz: list
    intensity: list
    abs_ns: list
    ring: list
    last_recv_ns: int = 0
    last_packet_ns: int = 0  # the last packet's stamp on the continuous sensor axis
    packets: int = 0


class SweepAssembler:
    """Collects decoded packets into sweeps cut at ``cut_angle_rad`` (Velodyne azimuth: clockwise seen
    from above, 0 = forward). Pure: ``update`` gets the points and the packets' receive times and
    returns the sweeps it completed. ``max_packets`` bounds a sweep (a stopped rotor never cuts): a
    sweep that reaches it is emitted as is and counted in ``forced_cuts``. ``hour_from_recv``: the
    receive times are a wall clock (ns since the epoch, a pcap's), so ``stamp_ns`` is the last firing
    with the hour taken from them; False: they are the host monotonic clock and ``stamp_ns = recv_ns``
    (module doc)."""

    def __init__(
        self,
        sensor_id: str,
        cut_angle_rad: float = 0.0,
        frame: str = "",
        max_packets: int = 4000,
        hour_from_recv: bool = True,
    ) -> None:
        if not np.isfinite(cut_angle_rad):
            raise ValueError(f"cut_angle_rad: expected a finite angle, got {cut_angle_rad}")
        self.sensor_id = sensor_id
        self.frame = frame or sensor_id
        self.cut_cdeg = int(round(np.rad2deg(cut_angle_rad % (2 * np.pi)) * 100)) % 36000
        self.max_packets = int(max_packets)
        self.hour_from_recv = bool(hour_from_recv)
        self._unwrap: tuple[int, int] | None = None
        self.seq = 0
        self.forced_cuts = 0
        self._prev_rel: int | None = None
        self._pending = _Pending([], [], [], [])

    def update(self, points: DecodedPoints, recv_ns) -> list[Message]:
        """Add the packets in ``points`` (in arrival order); ``recv_ns``: receive time of each of them,
        (P,) int64 ns (see ``hour_from_recv``), indexed like ``points.stamp_us``. Returns completed
        sweeps."""
        recv = np.asarray(recv_ns, np.int64).reshape(-1)
        P = points.stamp_us.shape[0]
        if recv.shape[0] != P:
            raise ValueError(f"recv_ns: expected {P} receive times (one per packet), got {recv.shape[0]}")
        if P == 0:
            return []
        full_ns, self._unwrap = unwrap_hour_stamps(points.stamp_us, self._unwrap)
        rel = (points.block_azimuth.astype(np.int64) - self.cut_cdeg) % 36000  # (P, 12)
        wraps_inside = np.any(np.diff(rel, axis=1) < -_JITTER_CDEG, axis=1)  # (P,)
        # sweep boundaries, vectorized: before packet p when the azimuth jumped back past the cut since
        # the previous packet; after packet p when it wrapped inside p
        prev_last = np.concatenate([[self._prev_rel if self._prev_rel is not None else -1], rel[:-1, -1]])
        cut_before = set(np.flatnonzero(rel[:, 0] < prev_last - _JITTER_CDEG).tolist())
        cut_before |= set((np.flatnonzero(wraps_inside) + 1).tolist())
        self._prev_rel = int(rel[-1, -1])
        bounds = points.packet_bounds()  # points are in packet order
        abs_ns = full_ns[points.packet] + points.t_ns
        ring = points.ring
        edges = sorted(cut_before | {0, P})
        out: list[Message] = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            if a in cut_before and self._pending.packets:
                out.append(self._emit())
            while a < b:  # add packets a..b-1, at most up to max_packets per sweep
                take = min(b - a, self.max_packets - self._pending.packets)
                s, e = bounds[a], bounds[a + take]
                pend = self._pending
                pend.xyz.append(points.xyz[s:e])
                pend.intensity.append(points.intensity[s:e])
                pend.abs_ns.append(abs_ns[s:e])
                pend.ring.append(ring[s:e])
                pend.last_recv_ns = int(recv[a + take - 1])
                pend.last_packet_ns = int(full_ns[a + take - 1])
                pend.packets += take
                a += take
                if pend.packets >= self.max_packets and not (a == b and b in cut_before):
                    self.forced_cuts += 1
                    out.append(self._emit())
        if P in cut_before:
            out.append(self._emit())
        return out

    def flush(self) -> Message | None:
        """The partial sweep collected so far (end of a file), or None."""
        return self._emit() if self._pending.packets else None

    def _emit(self) -> Message:
        pend = self._pending
        self._pending = _Pending([], [], [], [])
        abs_ns = np.concatenate(pend.abs_ns) if pend.abs_ns else np.zeros(0, np.int64)
        n = abs_ns.shape[0]
        data = np.empty((n, len(SWEEP_FIELDS)), np.float32)
        last = int(abs_ns.max()) if n else pend.last_packet_ns  # no returns at all: the last packet's stamp
        if n:
            data[:, 0:3] = np.concatenate(pend.xyz)
            data[:, 3] = np.concatenate(pend.intensity)
            data[:, 4] = (abs_ns - last).astype(np.float32)
            data[:, 5] = np.concatenate(pend.ring)
        raw = last % HOUR_NS
        stamp = int(_nearest_hour(raw, pend.last_recv_ns)) if self.hour_from_recv else pend.last_recv_ns
        msg = Message(
            sensor_id=self.sensor_id,
            stamp_ns=stamp,
            payload=PointCloud(data, SWEEP_FIELDS),
            raw_stamp_ns=raw,
            recv_ns=pend.last_recv_ns,
            frame=self.frame,
            seq=self.seq,
        )
        self.seq += 1
        return msg
