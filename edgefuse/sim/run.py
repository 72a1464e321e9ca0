"""The simulator's message generator and its shells: record to MCAP and the live ``sim://`` source
(``sim serve``, the whole rig over real sensor wires, is :mod:`edgefuse.sim.serve`).

Core: :class:`Simulator` walks the capture schedule of every sensor in true-time order (camera 30 Hz,
LiDAR 10 Hz stamped at sweep end, radar 20 Hz, odometry 50 Hz, IMU 200 Hz, each on its own drifting
clock, see :mod:`edgefuse.sim.clocks`) and yields :class:`~edgefuse.types.Message` s in host-receive
order. For every message:

- ``stamp_ns`` = the true capture time (LiDAR: the sweep's last firing), true simulation ns from 0;
- ``raw_stamp_ns`` = the sensor's own clock (offset + drift + jitter, stamp delay);
- ``recv_ns`` = true capture time + transport latency + latency jitter;
- ``seq`` = the sensor's capture index.

Ground truth rides along: ``ground_truth`` (:class:`~edgefuse.types.Detections` in base_link) at every
LiDAR stamp, each box with its LiDAR and radar point counts and camera visibility
(:mod:`edgefuse.sim.truth`), and ``ego_truth`` (the exact :class:`~edgefuse.types.Odometry` of base_link
in the world) at every odometry stamp; both have raw = recv = stamp = true time. Everything is a pure
function of (scenario, seed, params): every message draws its randomness from its own (seed, stream, index)
generator, except the odometry, which integrates (as a real one does) from the first sample.

The shells take the clock and the sleep as arguments, so replay = live and tests need no waiting.
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from edgefuse.errors import InputError
from edgefuse.sim.clocks import clock_truth, message_rng, sim_clocks
from edgefuse.sim.ego import EgoNoise, OdometryIntegrator, imu_sample, true_odometry
from edgefuse.sim.rig import SENSORS, sim_calibration
from edgefuse.sim.truth import annotate, camera_visibility, count_by_track, lidar_track_ids
from edgefuse.sim.world import SCENARIOS, ground_truth, make_world
from edgefuse.types import CompressedImage, Detections, Image, Message

_NS = 1_000_000_000
_EGO_BLOCK = 256
SENSOR_IDS: tuple[str, ...] = tuple(s[0] for s in SENSORS)
GROUND_TRUTH_ID = "ground_truth"
EGO_TRUTH_ID = "ego_truth"


@dataclass(frozen=True)
class Capture:
    """One sensor capture before it becomes a message: the message, and the raw sensor output the
    ``serve`` shell encodes (LiDAR: :class:`~edgefuse.sim.lidar.Firings`; radar: truth track ids)."""

    message: Message
    raw: object = None


class Simulator:
    """The deterministic message generator for ``scenario`` / ``seed`` / ``params`` (see module doc).

    ``sensors``: the sensor ids to simulate (default all of :data:`SENSOR_IDS`); ``lossless``: camera
    frames as rgb8 :class:`~edgefuse.types.Image` instead of JPEG; ``truth``: emit the ground-truth
    messages; ``camera_model``: "pinhole" or "fisheye"; ``camera_size``: (width, height) to render the
    camera at instead of its calibrated size (the whole sensor scaled, :meth:`CameraModel.resized`; the
    calibration keeps the full size, which is how a binned camera is calibrated)."""

    def __init__(
        self,
        scenario: str = "default",
        seed: int = 0,
        *,
        sensors=None,
        lossless: bool = False,
        truth: bool = True,
        camera_model: str = "pinhole",
        jpeg_quality: int = 90,
        camera_size: tuple[int, int] | None = None,
        **params,
    ):
        from edgefuse.sim.lidar import scenario_lidar
        from edgefuse.sim.radar import RadarModel

        self.world = make_world(scenario, seed, **params)
        self.scenario, self.seed = scenario, int(seed)
        self.calibration = sim_calibration(camera_model)
        self.clocks = sim_clocks(self.seed)
        self.frames = {sid: frame for sid, _kind, _rate, frame, _lat in SENSORS}
        wanted = SENSOR_IDS if sensors is None else tuple(sensors)
        unknown = [s for s in wanted if s not in SENSOR_IDS]
        if unknown:
            raise InputError(f"sim sensors: unknown {unknown}; expected some of {list(SENSOR_IDS)}")
        self.sensors = wanted
        self.lossless = lossless
        self.truth = truth
        self.jpeg_quality = int(jpeg_quality)
        cam = self.calibration.cameras["cam_front"]
        self.rendered_camera = cam if camera_size is None else cam.resized(*camera_size)
        self.lidar_model = scenario_lidar(scenario, self.seed)
        self.radar_model = RadarModel()
        self.ego_noise = EgoNoise.for_seed(self.seed)
        self._ego_cache: dict[str, tuple[int, list]] = {}
        self._radar_cache: tuple[int, np.ndarray] | None = None  # (scan index, its truth track ids)

    # ---------------------------------------------------------------- schedule

    def schedule(self, end_ns: int) -> Iterator[tuple[int, str, int]]:
        """(true capture time, sensor id, index) of every capture in [0, end_ns), in time order (ties by
        sensor order)."""
        order = {sid: i for i, sid in enumerate(SENSOR_IDS)}
        heap = []
        for sid in self.sensors:
            c = self.clocks[sid]
            if c.capture_time(0) < end_ns:
                heapq.heappush(heap, (c.capture_time(0), order[sid], sid, 0))
        while heap:
            t, o, sid, k = heapq.heappop(heap)
            yield t, sid, k
            nxt = self.clocks[sid].capture_time(k + 1)
            if nxt < end_ns:
                heapq.heappush(heap, (nxt, o, sid, k + 1))

    # ---------------------------------------------------------------- one capture

    def _rng(self, sid: str, k: int) -> np.random.Generator:
        """Message k of sensor sid draws its stamps, then its sensor noise, from this generator."""
        return message_rng(self.seed, self.clocks[sid].stream, k)

    def _ego(self, sid: str, k: int):
        """The true ego state at capture k of sensor sid (evaluated in vectorized blocks of 256)."""
        block, n = divmod(k, _EGO_BLOCK)
        cached = self._ego_cache.get(sid)
        if cached is None or cached[0] != block:
            c = self.clocks[sid]
            ts = [c.capture_time(j) for j in range(block * _EGO_BLOCK, (block + 1) * _EGO_BLOCK)]
            cached = (block, self.world.ego_states(np.array(ts, dtype=np.int64)))
            self._ego_cache[sid] = cached
        return cached[1][n]

    def sweep(self, t: int, k: int):
        """LiDAR sweep ``k`` ending at ``t``: (PointCloud, Firings), the same as its message carries."""
        from edgefuse.sim.lidar import simulate_sweep

        rng = self._rng("lidar_top", k)
        c = self.clocks["lidar_top"]
        c.raw_stamp(t, rng), c.recv_time(t, rng)  # the message's stamp draws come first, as in capture()
        T = self.calibration.extrinsics["lidar_top"]
        return simulate_sweep(self.world.scene_at(t), t, T, self.lidar_model, rng)

    def radar_track_ids(self, t: int) -> np.ndarray:
        """(M,) truth track ids of the last radar scan captured at or before true time ``t`` (empty before
        the first): the scan its ``radar_front`` message carries, simulated again from its own generator
        unless it is the one last asked for (a pure function of the seed: no other draw moves)."""
        from edgefuse.sim.radar import simulate_radar

        c = self.clocks["radar_front"]
        k = c.first_index_at_or_after(t + 1) - 1
        while c.capture_time(k + 1) <= t:  # the index formula rounds in float: settle on the exact times
            k += 1
        while k >= 0 and c.capture_time(k) > t:
            k -= 1
        if k < 0:
            return np.zeros(0, np.int64)
        if self._radar_cache is None or self._radar_cache[0] != k:
            rng = self._rng("radar_front", k)
            tk = c.capture_time(k)
            c.raw_stamp(tk, rng), c.recv_time(tk, rng)  # the message's stamp draws come first
            T = self.calibration.extrinsics["radar_front"]
            _scan, ids = simulate_radar(self.world.scene_at(tk), tk, T, self.radar_model, rng)
            self._radar_cache = (k, ids)
        return self._radar_cache[1]

    def annotated_truth(self, scene, t: int, firings) -> list:
        """:func:`~edgefuse.sim.world.ground_truth` of the sweep ending at ``t`` with what each sensor sees
        of each box (:mod:`edgefuse.sim.truth`: LiDAR points of this sweep, radar detections of
        :meth:`radar_track_ids`, camera visibility at ``t``)."""
        gt = ground_truth(scene)
        lidar = count_by_track(lidar_track_ids(scene, firings.box_index))
        radar = count_by_track(self.radar_track_ids(t))
        cam = self.calibration.cameras["cam_front"]
        vis = camera_visibility(scene, gt, cam, self.calibration.extrinsics["cam_front"])
        return annotate(gt, lidar, radar, vis)

    def capture(self, sid: str, t: int, k: int, odom: OdometryIntegrator | None = None) -> list[Capture]:
        """The messages of capture ``k`` of sensor ``sid`` at true time ``t`` (plus ground truth)."""
        rng = self._rng(sid, k)
        raw, recv = self.clocks[sid].raw_stamp(t, rng), self.clocks[sid].recv_time(t, rng)
        frame = self.frames[sid]
        T = self.calibration.extrinsics[sid]
        out: list[Capture] = []

        def msg(payload, sensor_id=sid, raw_ns=raw, recv_ns=recv, frame_id=frame) -> Message:
            return Message(sensor_id, t, payload, raw_stamp_ns=raw_ns, recv_ns=recv_ns, frame=frame_id, seq=k)

        if sid == "cam_front":
            from edgefuse.sim.camera import render_camera

            img = render_camera(self.world.scene_at(t), self.rendered_camera, T, rng)
            if self.lossless:
                out.append(Capture(msg(Image(img))))
            else:
                ok, buf = cv2.imencode(
                    ".jpg",
                    cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality],
                )
                out.append(Capture(msg(CompressedImage(buf.tobytes(), "jpeg"))))
        elif sid == "lidar_top":
            from edgefuse.sim.lidar import simulate_sweep

            scene = self.world.scene_at(t)
            cloud, firings = simulate_sweep(scene, t, T, self.lidar_model, rng)
            out.append(Capture(msg(cloud), firings))
            if self.truth:
                dets = Detections(t, tuple(self.annotated_truth(scene, t, firings)), "base_link")
                out.append(Capture(msg(dets, GROUND_TRUTH_ID, t, t, "base_link")))
        elif sid == "radar_front":
            from edgefuse.sim.radar import simulate_radar

            scene = self.world.scene_at(t)
            scan, track_ids = simulate_radar(scene, t, T, self.radar_model, rng)
            self._radar_cache = (k, track_ids)
            out.append(Capture(msg(scan), track_ids))
        elif sid == "odom":
            ego = self._ego(sid, k)
            if odom is None:
                raise ValueError("Simulator.capture: odometry needs its integrator")
            out.append(Capture(msg(odom.step(t, ego, rng))))
            if self.truth:
                out.append(Capture(msg(true_odometry(ego), EGO_TRUTH_ID, t, t, "base_link")))
        elif sid == "imu":
            ego = self._ego(sid, k)
            t_prev = self.clocks[sid].capture_time(k - 1)  # the gyro averages over its sample period
            prev = self._ego(sid, k - 1) if k > 0 else self.world.ego_state(t_prev)
            dyaw = (ego.yaw - prev.yaw + math.pi) % (2 * math.pi) - math.pi
            w_mean = dyaw * _NS / (t - t_prev)
            out.append(Capture(msg(imu_sample(ego, T, self.ego_noise, rng, mean_yaw_rate=w_mean))))
        return out

    # ---------------------------------------------------------------- streams

    def captures(self, duration_ns: int) -> Iterator[Capture]:
        """Every capture in [0, duration_ns) in host-receive order (ties: capture order)."""
        odom = OdometryIntegrator(self.ego_noise)
        pending: list[tuple[int, int, Capture]] = []
        n = 0
        for t, sid, k in self.schedule(int(duration_ns)):
            # everything received by now can go: later captures are received at or after their capture
            while pending and pending[0][0] <= t:
                yield heapq.heappop(pending)[2]
            for cap in self.capture(sid, t, k, odom):
                heapq.heappush(pending, (cap.message.recv_ns, n, cap))
                n += 1
        while pending:
            yield heapq.heappop(pending)[2]

    def messages(self, duration_ns: int) -> Iterator[Message]:
        """Every message of [0, duration_ns) of true time, in host-receive order."""
        for cap in self.captures(duration_ns):
            yield cap.message

    def metadata(self) -> dict[str, dict[str, str]]:
        """MCAP metadata records: ``sim`` (scenario, seed, params), ``sim.clocks`` (clock truth, see
        :func:`~edgefuse.sim.clocks.clock_truth`), ``sim.ego_noise`` (odometry/IMU error truth)."""
        return {
            "sim": {
                "scenario": self.scenario,
                "seed": str(self.seed),
                "params": ",".join(f"{k}={v}" for k, v in sorted(self.world.params.items())),
                "stamp_ns": "true capture time (LiDAR: sweep end), ns from simulation start",
                "weather": repr(self.world.weather),
            },
            "sim.clocks": clock_truth({s: self.clocks[s] for s in self.sensors}),
            "sim.ego_noise": self.ego_noise.truth(),
        }


# ================================================================ record


def record(
    out,
    scenario: str = "default",
    seed: int = 0,
    duration_s: float | None = None,
    *,
    lossless: bool = False,
    camera_model: str = "pinhole",
    progress: bool = True,
    compression: str = "lz4",
    clock: Callable[[], int] = time.monotonic_ns,
    **params,
) -> dict:
    """Record a simulated log to ``out`` (MCAP; chunks compressed with ``compression``, see
    :class:`~edgefuse.logs.Recorder` — lz4 by default: zstd's level 3, the only level the ``mcap``
    writer offers, alone costs ~7 % of real time on one core, and a simulated log can be made again from
    its seed), streamed: chunks close every second of wall time, so a killed recording keeps what it made
    until then. Returns a summary dict."""
    from tqdm import tqdm

    from edgefuse.logs import Recorder

    sim = Simulator(scenario, seed, lossless=lossless, camera_model=camera_model, **params)
    if duration_s is None:
        duration_s = sim.world.duration_hint_ns / _NS
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"sim record --duration: expected a positive number of seconds, got {duration_s!r}")
    duration_ns = int(round(duration_s * _NS))
    counts: dict[str, int] = {}
    t0 = clock()
    with Recorder(out, compression=compression, clock=clock) as rec:
        rec.write_calibration(sim.calibration, frames=sim.frames)
        for name, data in sim.metadata().items():
            rec.write_metadata(name, data)
        bar = tqdm(
            total=round(duration_s, 3),
            unit="sim s",
            disable=not progress,
            leave=False,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} sim s [{elapsed}<{remaining}]",
        )
        done = 0.0
        for msg in sim.messages(duration_ns):
            topic = rec.write(msg)
            counts[topic] = counts.get(topic, 0) + 1
            t = min(msg.stamp_ns / _NS, duration_s)
            if t - done >= 0.1:
                bar.update(t - done)
                done = t
        bar.update(max(duration_s - done, 0.0))
        bar.close()
    wall = (clock() - t0) / _NS
    return {
        "out": str(out),
        "scenario": scenario,
        "seed": int(seed),
        "duration_s": duration_s,
        "messages": sum(counts.values()),
        "topics": dict(sorted(counts.items())),
        "wall_s": round(wall, 3),
        "realtime_factor": round(duration_s / wall, 3) if wall > 0 else None,
        "size_bytes": os.path.getsize(out),
        "compression": compression,
    }


# ================================================================ live source


def parse_sim_uri(uri: str) -> tuple[str, int, dict[str, str], tuple[str, ...] | None]:
    """``sim://SCENARIO?seed=N&sensor=ID[,ID…]&visibility=…`` → (scenario, seed, params, sensors)."""
    parts = urlsplit(uri)
    if parts.scheme != "sim":
        raise InputError(f"{uri}: expected a sim:// URI such as 'sim://default?seed=0'")
    scenario = (parts.netloc + parts.path).strip("/") or "default"
    if scenario not in SCENARIOS:
        raise InputError(f"{uri}: scenario {scenario!r}: expected one of {list(SCENARIOS)}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        seed = int(query.pop("seed", "0"))
    except ValueError:
        raise InputError(f"{uri}: seed: expected an integer") from None
    sensors = tuple(s for s in query.pop("sensor", "").split(",") if s) or None
    return scenario, seed, query, sensors


def sim_source(
    uri: str = "sim://default",
    duration_s: float | None = None,
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], None] = time.sleep,
    lossless: bool = False,
    epoch_ns: int | None = None,
) -> Iterator[Message]:
    """The live ``sim://`` source: messages paced in real time by ``clock``/``sleep``. Each message is
    released at its receive time; ``stamp_ns`` and ``recv_ns`` are shifted onto ``clock`` by ``epoch_ns``
    (the clock reading that is simulation time 0; default: the clock at start), raw stamps stay on the
    sensor clocks. Several per-sensor sources of one rig (``sim://default?sensor=imu`` …) share one world
    when given the same seed and ``epoch_ns``. ``duration_s`` None = forever."""
    scenario, seed, params, sensors = parse_sim_uri(uri)
    sim = Simulator(scenario, seed, sensors=sensors, lossless=lossless, **params)
    start = clock() if epoch_ns is None else int(epoch_ns)
    horizon = int(round(duration_s * _NS)) if duration_s is not None else 2**62
    for msg in sim.messages(horizon):
        due = start + msg.recv_ns
        now = clock()
        if due > now:
            sleep((due - now) / _NS)
        yield Message(
            msg.sensor_id,
            start + msg.stamp_ns,
            msg.payload,
            raw_stamp_ns=msg.raw_stamp_ns,
            recv_ns=due,
            frame=msg.frame,
            seq=msg.seq,
        )


# ================================================================ preview


def write_preview(
    out_dir,
    scenario: str = "default",
    seed: int = 0,
    t_s: float = 3.0,
    *,
    camera_model: str = "pinhole",
    **params,
) -> dict:
    """Write ``camera.png`` (the camera image with the projected ground-truth boxes) and ``bev.png``
    (LiDAR + radar + boxes from above, base_link) for the scene at ``t_s`` seconds into ``out_dir``."""
    from pathlib import Path

    from edgefuse.sim.camera import render_camera
    from edgefuse.sim.lidar import simulate_sweep
    from edgefuse.sim.preview import bev_image, camera_overlay
    from edgefuse.sim.radar import simulate_radar

    if not (math.isfinite(t_s) and t_s >= 0):
        raise InputError(f"sim preview --t: expected a time ≥ 0 s, got {t_s}")
    sim = Simulator(scenario, seed, camera_model=camera_model, **params)
    t = int(round(t_s * _NS))
    scene = sim.world.scene_at(t)
    cal = sim.calibration
    cam, T_cam = cal.cameras["cam_front"], cal.extrinsics["cam_front"]
    gt = ground_truth(scene)
    img = render_camera(scene, cam, T_cam, sim._rng("cam_front", 0))
    cloud, _ = simulate_sweep(
        scene, t, cal.extrinsics["lidar_top"], sim.lidar_model, sim._rng("lidar_top", 0)
    )
    scan, _ = simulate_radar(
        scene, t, cal.extrinsics["radar_front"], sim.radar_model, sim._rng("radar_front", 0)
    )
    pts = cal.extrinsics["lidar_top"].apply(cloud.xyz.astype(np.float64))
    rad = cal.extrinsics["radar_front"].apply(scan.xyz.astype(np.float64))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cam_png, bev_png = out / "camera.png", out / "bev.png"
    cv2.imwrite(str(cam_png), cv2.cvtColor(camera_overlay(img, gt, cam, T_cam), cv2.COLOR_RGB2BGR))
    bev = bev_image(pts, rad, gt, radar_doppler=scan.column("doppler") if scan.has("doppler") else None)
    cv2.imwrite(str(bev_png), cv2.cvtColor(bev, cv2.COLOR_RGB2BGR))
    return {
        "camera": str(cam_png),
        "bev": str(bev_png),
        "scenario": scenario,
        "seed": int(seed),
        "t_s": t_s,
        "lidar_points": len(cloud),
        "radar_detections": len(scan),
        "ground_truth_boxes": len(gt),
    }
