"""``edgefuse sim serve``: the simulated rig as a live one — every sensor over the wire a real one uses,
paced in real time, with the ground truth logged beside for scoring (docs/sim.md, "sim serve").

| sensor | wire (default endpoint) | a kit reads it with |
| --- | --- | --- |
| lidar_top | VLP-32C data packets, UDP to 127.0.0.1:2368 | ``velodyne://127.0.0.1:2368?model=VLP32C`` |
| radar_front | TI mmWave SDK 3.x UART frames on a pty, link ``/tmp/edgefuse-sim/ti_data`` (config port
  ``ti_cli`` answers ``Done``) | ``ti-mmwave:///tmp/edgefuse-sim/ti_cli?data=/tmp/edgefuse-sim/ti_data`` |
| cam_front | JPEG frames, MJPEG over HTTP | ``http://127.0.0.1:8080/cam_front.mjpg`` |
| odom / imu | ego-motion JSON datagrams, UDP to 127.0.0.1:9871 / :9872 |
  ``ego-udp://127.0.0.1:9871?type=odometry`` (``9872?type=imu``) |
| ground truth | an MCAP log, ``/tmp/edgefuse-sim/truth.mcap`` | ``mcap://…`` / ``LogReader`` |

Structure: the **send plan** is pure — per sensor a lazy stream of :class:`Send` (due time from the start
in ns, the bytes of the wire), made from :class:`~edgefuse.sim.run.Simulator` captures, merged in due
order. The **shell** (:func:`serve`) computes the plan ahead of real time (at most ``lookahead``) in the
calling thread, and a sender thread puts each send on its wire when it is due and times it: a frame is
**late** when it goes out more than ``late_ms`` after its due time (LiDAR: a sweep, by its last packet). A
capture whose due time has already passed by one period when its turn to be computed comes is **skipped**
(counted), so a rig that cannot keep up stays real time instead of falling further behind (odometry and
IMU, which integrate, are never skipped).

Times: simulation time 0 is the host monotonic clock at the start (``epoch_ns``, after the first captures
are computed). Each message is due at the simulator's receive time (capture + the sensor's latency
model); a LiDAR packet when its last firing is done plus the LiDAR's latency.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import InputError
from edgefuse.sim.rig import ServeEndpoints
from edgefuse.sim.run import SENSOR_IDS, Simulator
from edgefuse.sim.serve_links import TruthLog, Wires

NS = 1_000_000_000
MS = 1_000_000
HOUR_NS = 3600 * NS
#: The camera's calibrated size; ``--camera-size`` renders the whole sensor at another size.
FULL_CAMERA_SIZE = (1280, 720)
#: What holds real time on one core with every sensor (docs/benchmarks.md, sim_serve_bench); the bundled
#: model reads 400×224.
DEFAULT_CAMERA_SIZE = (640, 360)
CAMERA_FPS = 30.0
#: TI SDK 3.x stamps frames with the 200 MHz R4F cycle counter (uint32).
TI_CPU_HZ = 200_000_000
_ORDER = {sid: i for i, sid in enumerate(SENSOR_IDS)}


@dataclass(frozen=True)
class ServeConfig:
    """What ``sim serve`` serves and how (docs/sim.md). ``camera_size``: (width, height) rendered, the
    calibrated 16:9 sensor scaled; ``camera_fps``: 30 / n; ``truth``: the ground-truth MCAP path, a
    relative one in ``endpoints.link_dir`` (None: none); ``late_ms``: the lateness threshold;
    ``lookahead_ms``: how far ahead of real time the plan is computed; ``skip_behind``: skip captures
    already a period late (False: send every frame, however late — a complete, reproducible stream on a
    machine too slow for real time)."""

    scenario: str = "default"
    seed: int = 0
    params: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    sensors: tuple[str, ...] = SENSOR_IDS
    endpoints: ServeEndpoints = ServeEndpoints()
    camera_size: tuple[int, int] = DEFAULT_CAMERA_SIZE
    camera_fps: float = CAMERA_FPS
    jpeg_quality: int = 90
    truth: str | None = "truth.mcap"
    late_ms: float = 10.0
    lookahead_ms: float = 250.0
    skip_behind: bool = True

    def __post_init__(self) -> None:
        unknown = [s for s in self.sensors if s not in SENSOR_IDS]
        if unknown or not self.sensors:
            raise InputError(
                f"sim serve --sensors: expected some of {list(SENSOR_IDS)}, got {list(self.sensors)}"
            )
        w, h = self.camera_size
        fw, fh = FULL_CAMERA_SIZE
        if not (16 <= w <= fw and 16 <= h <= fh) or abs(w / h - fw / fh) > 0.01 * fw / fh:
            raise InputError(
                f"sim serve --camera-size {w}x{h}: expected at most {fw}x{fh} with its 16:9 aspect, "
                "e.g. 640x360"
            )
        n = CAMERA_FPS / self.camera_fps if self.camera_fps > 0 else 0
        if not (n >= 1 and abs(n - round(n)) < 1e-6):
            raise InputError(
                f"sim serve --camera-fps {self.camera_fps:g}: expected 30/n (30, 15, 10, 7.5, 6, 5, …)"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"sim serve --jpeg-quality {self.jpeg_quality}: expected 1..100")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(
                f"sim serve --duration: expected a positive number of seconds, got {self.duration_s}"
            )
        if not self.late_ms > 0 or not self.lookahead_ms > 0:
            raise InputError(
                f"sim serve: expected --late-ms > 0 and lookahead_ms > 0, "
                f"got {self.late_ms}, {self.lookahead_ms}"
            )
        ep = self.endpoints
        if not Path(ep.link_dir).is_absolute():
            raise InputError(f"sim serve --link-dir {ep.link_dir}: expected an absolute path")
        for name in ("lidar_port", "odom_port", "imu_port", "camera_port"):
            low = 0 if name == "camera_port" else 1  # the camera's server may take any free port
            if not low <= getattr(ep, name) <= 65535:
                raise InputError(
                    f"sim serve --{name.replace('_', '-')} {getattr(ep, name)}: expected {low}..65535"
                )

    @property
    def truth_path(self) -> str | None:
        """Where the ground truth goes (None: nowhere)."""
        return None if self.truth is None else str(Path(self.endpoints.link_dir, self.truth))

    @property
    def camera_every(self) -> int:
        """Serve every n-th frame of the 30 Hz camera."""
        return int(round(CAMERA_FPS / self.camera_fps))


# ================================================================ the send plan (pure)


@dataclass(frozen=True)
class Send:
    """One write to a wire: ``due_ns`` after the start, ``sensor``, its capture index ``seq``, the bytes,
    ``frame_end`` (the last write of its frame: always, but a LiDAR sweep's last packet) and the sensor's
    own stamp ``raw_ns``."""

    due_ns: int
    sensor: str
    seq: int
    data: bytes
    frame_end: bool = True
    raw_ns: int = 0


@dataclass
class SensorStats:
    """Per sensor: ``frames`` sent (LiDAR: sweeps; ``writes``: its packets), ``late`` (sent more than the
    threshold after due), ``skipped`` (not computed: already behind), ``dropped`` (writes the wire
    refused: a full pty, a UDP error), compute time (thread CPU) and recent lateness."""

    frames: int = 0
    writes: int = 0
    late: int = 0
    skipped: int = 0
    dropped: int = 0
    computed: int = 0
    compute_ns: int = 0
    max_late_ns: int = 0
    recent_late_ns: deque = field(default_factory=lambda: deque(maxlen=4096))

    def record(self, late_ns: int, ok: bool, frame_end: bool, threshold_ns: int) -> None:
        """One write done ``late_ns`` after its due time (negative: early)."""
        self.writes += 1
        if not ok:
            self.dropped += 1
        if frame_end:
            self.frames += 1
            self.recent_late_ns.append(late_ns)
            self.max_late_ns = max(self.max_late_ns, late_ns)
            if late_ns > threshold_ns:
                self.late += 1

    def summary(self, wall_s: float) -> dict[str, Any]:
        lat = np.array(self.recent_late_ns, dtype=np.float64) / MS if self.recent_late_ns else np.zeros(1)
        return {
            "frames": self.frames,
            "rate_hz": round(self.frames / wall_s, 2) if wall_s > 0 else 0.0,
            "late": self.late,
            "skipped": self.skipped,
            "dropped": self.dropped,
            "writes": self.writes,
            "late_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "late_ms_p99": round(float(np.percentile(lat, 99)), 3),
            "late_ms_max": round(self.max_late_ns / MS, 3),
            "compute_ms_mean": round(self.compute_ns / MS / self.computed, 3) if self.computed else 0.0,
        }


@dataclass
class Pace:
    """The plan's view of time: ``clock`` (host monotonic ns), ``epoch_ns`` (simulation time 0 on it;
    None before the start: nothing is skipped while warming up), ``cpu`` (thread CPU ns, for compute
    time), ``truth`` (gets every ground-truth message, in simulation time) and ``skip`` (whether captures
    that are behind are skipped)."""

    clock: Callable[[], int] = time.monotonic_ns
    epoch_ns: int | None = None
    cpu: Callable[[], int] = time.thread_time_ns
    truth: Callable[[Any], None] = lambda msg: None
    skip: bool = True

    def behind(self, limit_ns: int) -> bool:
        """True (when skipping) once the run is more than ``limit_ns`` of simulation time in."""
        return self.skip and self.epoch_ns is not None and self.clock() - self.epoch_ns > limit_ns


def _captures(sim: Simulator, sid: str, horizon_ns: int, pace: Pace, st: SensorStats, every: int = 1,
              skippable: bool = True, odom=None) -> Iterator[tuple[int, int, list]]:  # fmt: skip
    """(capture time, index, captures) of sensor ``sid`` in [0, horizon) — every ``every``-th capture,
    skipped (counted) when already a period behind. ``captures[0]`` is the sensor's, the rest truth. The
    simulation's thread CPU time goes into ``st`` (the caller adds its encoding with :func:`_timed`)."""
    c = sim.clocks[sid]
    k = 0
    while (t := c.capture_time(k)) < horizon_ns:
        if k % every == 0:
            period = c.capture_time(k + every) - t
            if skippable and pace.behind(t + period):
                st.skipped += 1
            else:
                t0 = pace.cpu()
                caps = sim.capture(sid, t, k, odom)
                st.computed += 1
                st.compute_ns += pace.cpu() - t0
                yield t, k, caps
        k += 1


def _timed(pace: Pace, st: SensorStats, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, its thread CPU time added to ``st``."""
    t0 = pace.cpu()
    out = fn(*args, **kwargs)
    st.compute_ns += pace.cpu() - t0
    return out


def lidar_sends(sim: Simulator, horizon_ns: int, pace: Pace, st: SensorStats) -> Iterator[Send]:
    """Every VLP-32C packet (strongest return, the LiDAR's own clock in µs past the hour): due when its
    last firing is done plus the LiDAR's latency, so a sweep's ≈ 151 packets go spread over it. The
    ground truth of sweep k goes to ``pace.truth`` with the LiDAR's raw stamp of its last firing."""
    from edgefuse.adapters.velodyne.calibration import vlp32c
    from edgefuse.adapters.velodyne.packet import encode_packets

    vcal = vlp32c()
    c = sim.clocks["lidar_top"]
    per_packet = 12 * vcal.sequences_per_block
    last_firing = int(sim.lidar_model.firing_offset_ns.max())
    for t, k, caps in _captures(sim, "lidar_top", horizon_ns, pace, st):
        f = caps[0].raw
        first = int(c.offset_ns + f.t_ns[0] * (1.0 + c.drift_ppm * 1e-6))
        raw_end = (first + int(t - f.t_ns[0])) % HOUR_NS
        for cap in caps[1:]:  # with the raw stamp a velodyne:// reader gives this sweep
            pace.truth(dataclasses.replace(cap.message, raw_stamp_ns=raw_end))
        packets = _timed(pace, st, encode_packets, f.azimuth_rad, f.range_m, f.intensity, first, vcal)
        for p, pkt in enumerate(packets):
            done = int(f.t_ns[min((p + 1) * per_packet, len(f.t_ns)) - 1]) + last_firing
            yield Send(max(done, 0) + c.latency_ns, "lidar_top", k, pkt, p == len(packets) - 1, raw_end)


def radar_sends(sim: Simulator, horizon_ns: int, pace: Pace, st: SensorStats) -> Iterator[Send]:
    """TI mmWave SDK 3.x UART frames (points + SNR side info, ``timeCpuCycles`` = the radar's clock at
    200 MHz, uint32), due at their receive time."""
    from edgefuse.adapters.ti_mmwave.protocol import encode_frame

    for _t, k, caps in _captures(sim, "radar_front", horizon_ns, pace, st):
        m = caps[0].message
        scan = m.payload
        frame = _timed(
            pace,
            st,
            encode_frame,
            scan,
            frame_number=k + 1,
            snr_db=scan.column("snr"),
            noise_db=np.zeros(len(scan), np.float32),
            time_cpu_cycles=(m.raw_stamp_ns * TI_CPU_HZ // NS) & 0xFFFFFFFF,
        )
        yield Send(m.recv_ns, "radar_front", k, frame, True, m.raw_stamp_ns)


def camera_sends(
    sim: Simulator, horizon_ns: int, pace: Pace, st: SensorStats, every: int = 1
) -> Iterator[Send]:
    """JPEG frames (every ``every``-th of the 30 Hz camera, at the simulator's camera size), due at their
    receive time."""
    for _t, k, caps in _captures(sim, "cam_front", horizon_ns, pace, st, every):
        m = caps[0].message
        yield Send(m.recv_ns, "cam_front", k, m.payload.data, True, m.raw_stamp_ns)


def ego_sends(sim: Simulator, sid: str, horizon_ns: int, pace: Pace, st: SensorStats) -> Iterator[Send]:
    """Odometry or IMU samples as ego-motion JSON datagrams (:mod:`edgefuse.adapters.ego_udp.protocol`),
    stamped with the sensor's clock, due at their receive time; never skipped (odometry integrates)."""
    from edgefuse.adapters.ego_udp.protocol import encode_datagram
    from edgefuse.sim.ego import OdometryIntegrator

    odom = OdometryIntegrator(sim.ego_noise) if sid == "odom" else None
    for _t, k, caps in _captures(sim, sid, horizon_ns, pace, st, skippable=False, odom=odom):
        for cap in caps[1:]:
            pace.truth(cap.message)
        m = caps[0].message
        data = _timed(pace, st, encode_datagram, m.payload, m.raw_stamp_ns, k, m.frame)
        yield Send(m.recv_ns, sid, k, data, True, m.raw_stamp_ns)


def send_plan(
    sim: Simulator, config: ServeConfig, pace: Pace, stats: dict[str, SensorStats]
) -> Iterator[Send]:
    """Every send of ``config.sensors`` in [0, duration) (forever when None), in due order (ties: sensor
    order), computed lazily: a stream computes its next capture when its previous one is taken."""
    horizon = int(round(config.duration_s * NS)) if config.duration_s is not None else 2**62
    streams = []
    for sid in config.sensors:
        if sid == "lidar_top":
            streams.append(lidar_sends(sim, horizon, pace, stats[sid]))
        elif sid == "radar_front":
            streams.append(radar_sends(sim, horizon, pace, stats[sid]))
        elif sid == "cam_front":
            streams.append(camera_sends(sim, horizon, pace, stats[sid], config.camera_every))
        else:
            streams.append(ego_sends(sim, sid, horizon, pace, stats[sid]))
    return heapq.merge(*streams, key=lambda s: (s.due_ns, _ORDER[s.sensor]))


# ================================================================ the shell


class _Sender(threading.Thread):
    """Puts each queued :class:`Send` on its wire at ``epoch_ns + due_ns`` and records its lateness."""

    def __init__(self, wires: Wires, stats: dict[str, SensorStats], late_ns: int, clock: Callable[[], int]):
        super().__init__(name="sim-serve-sender", daemon=True)
        self.wires, self.stats, self.late_ns, self.clock = wires, stats, late_ns, clock
        self.queue: deque[Send] = deque()
        self.cond = threading.Condition()
        self.epoch_ns = 0
        self.finished = False  # no more sends will be queued
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def put(self, s: Send) -> None:
        with self.cond:
            self.queue.append(s)
            self.cond.notify()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.cond:
                    while not self.queue and not self.finished and not self.stop.is_set():
                        self.cond.wait(0.1)
                    if not self.queue:
                        return
                    s = self.queue.popleft()
                due = self.epoch_ns + s.due_ns
                wait = due - self.clock()
                if wait > 100_000 and self.stop.wait(wait / NS):
                    return
                ok = self.wires.send(s)
                self.stats[s.sensor].record(self.clock() - due, ok, s.frame_end, self.late_ns)
        except BaseException as e:  # reported by serve()
            self.error = e


def serve(
    config: ServeConfig = ServeConfig(),
    *,
    on_ready: Callable[[dict], None] | None = None,
    on_status: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> dict:
    """Serve the simulated rig live (module doc) until ``config.duration_s`` of simulation time is sent,
    ``stop`` is set or Ctrl-C. ``on_ready`` gets :func:`_ready_info` (endpoints, URIs, camera settings)
    once the first captures are computed and the wires are open; ``on_status`` a :func:`_summary` once a
    second. Returns the summary: per-sensor frames, late, skipped, dropped, lateness percentiles and
    compute time, the CPU load and the real-time factors."""
    stop = stop or threading.Event()
    sim = Simulator(
        config.scenario,
        config.seed,
        truth=config.truth_path is not None,
        jpeg_quality=config.jpeg_quality,
        camera_size=tuple(config.camera_size),
        **config.params,
    )
    stats = {sid: SensorStats() for sid in config.sensors}
    truth = TruthLog(config.truth_path, sim) if config.truth_path is not None else None
    pace = Pace(clock=clock, skip=config.skip_behind)
    if truth is not None:
        pace.truth = truth.add
    wires = sender = None
    stopped = "duration"
    cpu0, wall0 = time.process_time(), clock()
    try:
        wires = Wires(config.endpoints, config.sensors)
        info = _ready_info(config, wires, truth)
        plan = send_plan(sim, config, pace, stats)
        first = next(plan, None)  # computes the first capture of every sensor: a warm start
        sender = _Sender(wires, stats, int(config.late_ms * MS), clock)
        epoch = clock()
        pace.epoch_ns = sender.epoch_ns = epoch
        if truth is not None:
            truth.start(epoch, info)
        sender.start()
        cpu0, wall0 = time.process_time(), epoch
        if on_ready is not None:
            on_ready(info)
        lookahead = int(config.lookahead_ms * MS)
        next_status = epoch + NS
        s = first
        while s is not None:
            sender.put(s)
            while True:  # hold the plan until this send is within the lookahead (and report status)
                now = clock()
                if sender.error is not None:
                    raise sender.error
                if now >= next_status:
                    if on_status is not None:
                        on_status(_summary(config, stats, wires, truth, epoch, now, cpu0, "running"))
                    while next_status <= now:
                        next_status += NS
                wait = epoch + s.due_ns - lookahead - now
                if wait <= 0 or stop.is_set():
                    break
                stop.wait(min(wait, next_status - now) / NS)
            if stop.is_set():
                stopped = "stopped"
                break
            s = next(plan, None)
        with sender.cond:
            sender.finished = True
            sender.cond.notify()
        while sender.is_alive() and not stop.is_set():
            sender.join(0.1)
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if sender is not None:
            sender.stop.set()
            if sender.is_alive():
                sender.join(2.0)
        if wires is not None:
            wires.close()
        if truth is not None:
            truth.close()
    if sender is not None and sender.error is not None:
        raise sender.error
    return _summary(config, stats, wires, truth, pace.epoch_ns or wall0, clock(), cpu0, stopped)


def _ready_info(config: ServeConfig, wires: Wires, truth: TruthLog | None) -> dict:
    """Where each sensor is served and the URI a kit reads it with (the camera's real port included)."""
    ep = config.endpoints
    if wires.camera is not None:
        ep = ServeEndpoints(
            ep.host,
            ep.lidar_port,
            int(wires.camera.url.rsplit(":", 1)[1].split("/")[0]),
            ep.odom_port,
            ep.imu_port,
            ep.link_dir,
        )
    uris = {sid: uri for sid, uri in ep.uris().items() if sid in config.sensors}
    cli, data = ep.radar_links
    return {
        "uris": uris,
        "lidar": f"{ep.host}:{ep.lidar_port}" if "lidar_top" in config.sensors else None,
        "radar_pty": wires.radar.path if wires.radar is not None else None,
        "links": {"ti_cli": cli, "ti_data": data} if wires.radar is not None else {},
        "camera": {
            "url": wires.camera.url if wires.camera is not None else None,
            "size": f"{config.camera_size[0]}x{config.camera_size[1]}",
            "full_size": f"{FULL_CAMERA_SIZE[0]}x{FULL_CAMERA_SIZE[1]}",
            "fps": config.camera_fps,
            "jpeg_quality": config.jpeg_quality,
        },
        "odom": f"{ep.host}:{ep.odom_port}" if "odom" in config.sensors else None,
        "imu": f"{ep.host}:{ep.imu_port}" if "imu" in config.sensors else None,
        "truth": truth.path if truth is not None else None,
        "late_threshold_ms": config.late_ms,
        "endpoints": dataclasses.asdict(ep),
    }


def _summary(
    config: ServeConfig,
    stats: dict[str, SensorStats],
    wires: Wires | None,
    truth: TruthLog | None,
    epoch_ns: int,
    now_ns: int,
    cpu0: float,
    stopped: str,
) -> dict:
    wall = max(1e-9, (now_ns - epoch_ns) / NS)
    cpu = time.process_time() - cpu0
    sim_s = wall if config.duration_s is None else min(wall, config.duration_s)
    per = {sid: st.summary(wall) for sid, st in stats.items()}
    out: dict[str, Any] = {
        "scenario": config.scenario,
        "seed": config.seed,
        "stopped": stopped,
        "wall_s": round(wall, 3),
        "sim_s": round(sim_s, 3),
        "cpu_s": round(cpu, 3),
        "cpu_load": round(cpu / wall, 3),
        "realtime_factor": round(sim_s / wall, 3),
        "realtime_factor_cpu": round(sim_s / cpu, 3) if cpu > 0 else None,
        "late_threshold_ms": config.late_ms,
        "camera_size": f"{config.camera_size[0]}x{config.camera_size[1]}",
        "camera_fps": config.camera_fps,
        "late": sum(p["late"] for p in per.values()),
        "skipped": sum(p["skipped"] for p in per.values()),
        "sensors": per,
    }
    # the keys of the first `sim serve` (LiDAR + radar only), kept
    if "lidar_top" in stats:
        out["lidar_packets"] = stats["lidar_top"].writes
        out["lidar_sweeps"] = stats["lidar_top"].frames
    if "radar_front" in stats:
        out["radar_frames"] = stats["radar_front"].writes - stats["radar_front"].dropped
        out["radar_dropped"] = stats["radar_front"].dropped
    if wires is not None and wires.camera is not None:
        out["camera_clients"] = wires.camera.clients
        out["camera_frames_to_clients"] = wires.camera.sent
        out["camera_skipped_by_clients"] = wires.camera.skipped
    if wires is not None and wires.responder is not None:
        out["radar_cli_commands"] = len(wires.responder.commands)
    if truth is not None:
        out["truth"] = truth.path
        out["truth_messages"] = truth.messages
    return out
