"""Any subset of sensors, bad input and a hung backend, through the pipeline on the simulator's log:
a log without the camera replays with the default settings; a camera that goes silent mid-run and comes
back (frames keep the reference rate, health and the status line show it, its data is used again);
sensor clocks that jump by ±1 s and garbage messages (counted, never a traceback); a backend that hangs
(reported by the watchdog in health, status line and report; the run keeps serving or stops with an
error)."""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest
from _fakes import FakeBackend, HangingBackend

from edgefuse.adapters.base import Source
from edgefuse.frames import PipelineConfig
from edgefuse.logs import LogReader
from edgefuse.logs.info import log_info
from edgefuse.logs.source import McapSource
from edgefuse.pipeline import DETECTIONS_TOPIC, Pipeline, Timebase, run_replay
from edgefuse.pipeline.deterministic import run_deterministic
from edgefuse.pipeline.sinks import McapSink
from edgefuse.sim.rig import sim_kit
from edgefuse.types import Image, Message, PointCloud

MS = 1_000_000
NS = 1_000_000_000


class RecordingSink:
    """A realtime sink that keeps what it was given: (reference stamp, sensors missing, matched stamps)."""

    realtime = True

    def __init__(self):
        self.frames: list[tuple[int, tuple[str, ...], dict[str, int]]] = []

    def publish(self, frame) -> None:
        fs = frame.frameset
        got = {s: m.stamp_ns for s, m in fs.messages.items() if m is not None}
        self.frames.append((fs.stamp_ns, tuple(fs.missing), got))

    def close(self) -> None:
        pass


class Edited(Source):
    """A source passed through ``edit(message, seconds since the first message) -> message or None``."""

    def __init__(self, inner, edit):
        self.inner, self.edit = inner, edit
        self.uri, self.live = inner.uri, False

    def __iter__(self):
        t0 = None
        for m in self.inner:
            t0 = m.recv_ns if t0 is None else t0
            out = self.edit(m, (m.recv_ns - t0) / NS)
            if out is not None:
                yield out

    def stats(self):
        return self.inner.stats()

    def close(self):
        self.inner.close()


def _lidar_count(log) -> int:
    return LogReader(log).topics()["/lidar_top/points"].count


# ---------------------------------------------------------------- a sensor that is not there


def test_a_log_without_the_camera_replays_with_the_default_settings(sim_log, tmp_path):
    """The issue's case: with the camera topic absent, the synchronizer waited its whole budget for it on
    every frame and the deadline (equal to that budget) dropped almost every frame. Now the camera is
    waited for only until it counts as silent, and the default deadline outlasts the wait."""
    from edgefuse.cli import main

    no_cam = tmp_path / "no_camera.mcap"
    keep = ("/lidar_top/points", "/radar_front/points", "/odom/odom", "/imu/imu")
    topics = "&".join(f"topic={t}" for t in keep)
    assert main(["convert", f"mcap://{sim_log}?{topics}", "--out", str(no_cam), "--json"]) == 0
    assert "/cam_front/image_raw/compressed" not in LogReader(no_cam).topics()
    r = run_replay(no_cam, FakeBackend(delay_s=0.05), tmp_path / "r", handle_signals=False)  # defaults
    n = _lidar_count(no_cam)
    assert r["frames_published"] >= 0.95 * n, (r["frames_published"], n, r["frames_dropped"])
    assert r["health"]["cam_front"]["status"] == "never"
    assert r["frames_missing"]["cam_front"] == r["frames_emitted"]
    # only the frames of the first second (silence_ns) waited the whole budget for the camera
    assert 0 < r["budget_waits"]["cam_front"] <= 10


def test_a_camera_that_goes_silent_and_comes_back(sim_log):
    """The camera stops for 1 s mid-run (log time 0.8–1.8 s) and comes back: frames keep the reference
    rate with it missing, health and the status line show it silent and then back, and frames after its
    return use its data again."""

    def gap(m, t):
        return None if m.sensor_id == "cam_front" and 0.8 <= t < 1.8 else m

    src = Edited(McapSource(f"mcap://{sim_log}", sim_log, rate=1.0), gap)
    sink, status = RecordingSink(), io.StringIO()
    cfg = PipelineConfig(silence_ns=300 * MS, status_period_ns=50 * MS)
    pipe = Pipeline({"log": src}, sim_kit(), LogReader(sim_log).calibration(), FakeBackend(), config=cfg,
                    timebase=Timebase("paced", 1.0), sinks=[sink], status=status)  # fmt: skip
    r = pipe.run()
    assert r["frames_published"] == _lidar_count(sim_log)  # not one frame lost to the gap
    stamps = np.array([f[0] for f in sink.frames])
    t0 = stamps[0]
    assert np.diff(stamps).max() < 150 * MS  # the reference rate throughout (10 Hz)
    rel = (stamps - t0) / NS
    missing = {round(t, 1) for t, f in zip(rel, sink.frames, strict=True) if "cam_front" in f[1]}
    assert {1.0, 1.2, 1.4, 1.6} <= missing  # inside the gap: marked missing
    after = [f for t, f in zip(rel, sink.frames, strict=True) if t >= 1.95]
    assert after and all("cam_front" not in f[1] for f in after)  # used again once it is back
    for _stamp, _missing, got in after:
        assert abs(got["cam_front"] - _stamp) <= 17 * MS  # its nearest frame, within its tolerance
    h = r["health"]["cam_front"]
    assert h["status"] == "ok" and h["silences"] == 1 and 0.9 < h["longest_silence_s"] < 1.2
    lines = status.getvalue().splitlines()
    silent = [i for i, line in enumerate(lines) if re.search(r"cam_front:\d+Hz\(SILENT[ \d.s]*\)", line)]
    assert silent, lines
    assert any(re.search(r"cam_front:\d+Hz ", line) for line in lines[silent[-1] :])  # back


# ---------------------------------------------------------------- clock jumps and garbage


def test_clock_jumps_and_garbage_are_counted_and_the_pipeline_keeps_going(sim_log, tmp_path):
    """The radar's clock jumps +1 s at 0.6 s and back (−1 s) at 1.5 s, the LiDAR's (the reference) −1 s
    at 1.2 s; garbage messages come in between: an unknown sensor, a radar message holding a point cloud,
    a sweep of NaN points repeating the last sweep's stamp, an image of the wrong size with a stamp an
    hour off. Each is counted by reason (or harmless); frames after every jump use the sensor again;
    nothing raises; the log of the run (inputs included) is complete: every detection, every input it
    says it wrote."""
    reader = LogReader(sim_log)
    cloud = PointCloud(np.full((50, 4), np.nan, np.float32), ("x", "y", "z", "intensity"))

    def jumped(m: Message, by_ns: int) -> Message:
        return Message(m.sensor_id, m.stamp_ns, m.payload, raw_stamp_ns=m.raw_stamp_ns + by_ns,
                       recv_ns=m.recv_ns, frame=m.frame, seq=m.seq)  # fmt: skip

    def edits():
        t0, last = None, {}
        for _topic, m in reader.messages():
            t0 = m.recv_ns if t0 is None else t0
            t = (m.recv_ns - t0) / NS
            if m.sensor_id == "radar_front" and 0.6 <= t < 1.5:
                m = jumped(m, NS)
            if m.sensor_id == "lidar_top" and t >= 1.2:
                m = jumped(m, -NS)
            last[m.sensor_id] = m.raw_stamp_ns
            yield m
            if m.sensor_id == "lidar_top" and 0.3 < t < 0.4:
                r = m.recv_ns + 1
                yield Message("ghost", m.stamp_ns, cloud, recv_ns=r)
                yield Message("radar_front", 0, cloud, raw_stamp_ns=last["radar_front"] + MS, recv_ns=r)
                yield Message("lidar_top", 0, cloud, raw_stamp_ns=m.raw_stamp_ns, recv_ns=r)
                yield Message("cam_front", 0, Image(np.zeros((3, 5, 3), np.uint8)),
                              raw_stamp_ns=last["cam_front"] + 3600 * NS, recv_ns=r)  # fmt: skip

    sink = RecordingSink()
    log = McapSink(tmp_path / "run.mcap", reader.calibration(), sim_kit(), inputs=True)
    report, _ = run_deterministic(edits(), sim_kit(), reader.calibration(), FakeBackend(), sinks=[sink],
                                  log=log)  # fmt: skip
    info = log_info(tmp_path / "run.mcap")
    assert not info["truncated"] and not info["errors"]
    counts = {t: v["count"] for t, v in info["topics"].items() if v["payload"]}
    written = report["logging"]["written"]
    assert counts.pop(DETECTIONS_TOPIC) == report["frames_published"] == written["detections"]
    assert sum(counts.values()) == written["inputs"] > 0
    assert report["messages_rejected"] == {
        "radar_front": {"stamp_far_from_recv": 2 * 4},  # 4 a jump, until the estimator confirms it
        "lidar_top": {"stamp_far_from_recv": 4},
        "cam_front": {"stamp_far_from_recv": 1},  # the stamp an hour off
    }
    clocks = {s: report["health"][s]["clock"] for s in ("radar_front", "lidar_top", "cam_front")}
    assert [c["jumps"] for c in clocks.values()] == [2, 1, 0]
    assert report["messages_ignored"]["ghost"] == 1
    # the reference's 4 rejected sweeps never became frames; the NaN sweep repeated a stamp
    assert report["frames_dropped"]["reference_gap"] == 4
    assert report["frames_dropped"]["reference_out_of_order"] == 1
    assert sum(report["errors"].values()) == report["frames_dropped"].get("error", 0)  # any error: counted
    stamps = np.array([f[0] for f in sink.frames])
    rel = (stamps - stamps[0]) / NS
    late = [f for t, f in zip(rel, sink.frames, strict=True) if t > 2.0]
    assert late and all(not f[1] for f in late)  # after the last jump every sensor is used again
    assert np.all(np.diff(stamps) > 0)


class _Ticker(Source):
    """A live source of one sensor: a message every ``period_s`` until closed, received on the host
    monotonic clock — or, ``wall_clock=True``, stamped the way the Velodyne adapter used to (wall clock)."""

    live = True

    def __init__(self, sensor: str, payload, period_s: float, wall_clock: bool = False):
        self.uri, self.sensor, self.payload, self.period_s = f"tick://{sensor}", sensor, payload, period_s
        self.wall_clock = wall_clock
        self._stop = threading.Event()

    def __iter__(self):
        seq = 0
        while not self._stop.wait(self.period_s):
            host = time.monotonic_ns()
            recv = time.time_ns() if self.wall_clock else host
            yield Message(self.sensor, recv, self.payload, raw_stamp_ns=host, recv_ns=recv, seq=seq)
            seq += 1

    def stats(self):
        return {}

    def close(self):
        self._stop.set()


def test_an_adapter_on_another_clock_is_rejected_not_mixed_in(tmp_path):
    """The issue's symptom: one adapter stamping receive times with the wall clock. Its messages are
    rejected and counted (``recv_far_from_host_clock``), never logged or matched; the others run on."""
    from edgefuse.sim.rig import sim_calibration
    from edgefuse.types import RadarScan

    cloud = PointCloud(np.array([[10, 0, 0, 50], [12, 1, 0, 60]], np.float32), ("x", "y", "z", "intensity"))
    scan = RadarScan(np.array([[10, 0, 0, 1.0]], np.float32), ("x", "y", "z", "doppler"))
    sources = {"lidar_top": _Ticker("lidar_top", cloud, 0.1),
               "radar_front": _Ticker("radar_front", scan, 0.05, wall_clock=True)}  # fmt: skip
    calib = sim_calibration()
    log = McapSink(tmp_path / "run.mcap", calib, sim_kit(), inputs=True)
    host0 = time.monotonic_ns()
    pipe = Pipeline(sources, sim_kit(), calib, FakeBackend(), timebase=Timebase("live"), log=log)
    r = pipe.run(duration_s=1.5)
    host1 = time.monotonic_ns()
    assert r["messages_rejected"]["radar_front"]["recv_far_from_host_clock"] >= 10
    assert "lidar_top" not in r["messages_rejected"] and r["frames_published"] >= 8
    assert r["health"]["radar_front"]["messages"] == 0  # nothing of it reached the frames
    out = LogReader(tmp_path / "run.mcap")
    assert "/radar_front/points" not in out.topics()  # nor the log: one timeline
    t = out.log_times()["/lidar_top/points"]
    assert host0 <= t.min() and t.max() <= host1


# ---------------------------------------------------------------- a backend that hangs


def _wait(cond, timeout_s: float = 30.0) -> bool:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_a_hung_backend_is_reported_and_the_pipeline_serves_again_when_it_returns(sim_log):
    backend = HangingBackend(hang_on=6)  # the warm-up is call 1
    status = io.StringIO()
    cfg = PipelineConfig(watchdog_deadlines=1, backend_stop_ns=None, status_period_ns=50 * MS)
    src = McapSource(f"mcap://{sim_log}", sim_log, rate=1.0)
    pipe = Pipeline({"log": src}, sim_kit(), LogReader(sim_log).calibration(), backend, config=cfg,
                    timebase=Timebase("paced", 1.0), status=status)  # fmt: skip
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(pipe.run()), daemon=True)
    t.start()
    try:
        assert _wait(lambda: pipe.health()["backend"]["status"] == "hung")
        assert _wait(lambda: "BACKEND HUNG" in status.getvalue())
    finally:
        backend.release()
    t.join(timeout=60)
    r = out
    assert r["stopped"] == "end of input" and r["watchdog"]["hangs"] == 1 and not r["watchdog"]["hung"]
    assert r["health"]["backend"]["status"] == "ok" and r["health"]["backend"]["hangs"] == 1
    assert r["watchdog"]["longest_hang_s"] >= 0.2
    published = [rec for rec in pipe.records if rec.publish_ns is not None]
    assert published and max(rec.infer_start_ns for rec in published) > backend.released_ns  # serving again


def test_a_backend_hung_past_its_limit_stops_the_run_with_an_error_and_a_complete_log(sim_log, tmp_path):
    backend = HangingBackend(hang_on=4)
    status = io.StringIO()
    cfg = PipelineConfig(watchdog_deadlines=1, backend_stop_ns=400 * MS)
    calib = LogReader(sim_log).calibration()
    log = McapSink(tmp_path / "run.mcap", calib, sim_kit(), inputs=True)
    src = McapSource(f"mcap://{sim_log}", sim_log, rate=1.0)
    pipe = Pipeline({"log": src}, sim_kit(), calib, backend, config=cfg, timebase=Timebase("paced", 1.0),
                    log=log, status=status)  # fmt: skip
    try:
        r = pipe.run()
        calls, hanging = backend.calls, backend.hanging.is_set()
    finally:
        backend.release()  # let the abandoned call end
    assert r["stopped"] == "backend hung"
    assert r["watchdog"]["error"] == r["last_error"] and "has not returned" in r["last_error"]
    assert "fake" in r["last_error"] and "edgefuse: error: backend fake" in status.getvalue()
    out = LogReader(tmp_path / "run.mcap")
    assert not out.truncated and not out.errors  # closed with its summary: nothing recorded is lost
    topics = out.topics()
    assert topics["/lidar_top/points"].count > 0
    assert hanging and calls == 3  # warm-up and two frames returned; the 4th call still hangs
    n = topics[DETECTIONS_TOPIC].count if DETECTIONS_TOPIC in topics else 0
    assert n == r["frames_published"] <= 2


@pytest.mark.parametrize("field", ["max_clock_skew_ns", "max_stamp_offset_ns", "watchdog_deadlines"])
def test_pipeline_config_names_a_bad_bound(field):
    from edgefuse.errors import InputError

    with pytest.raises(InputError, match=f"PipelineConfig.{field}: expected > 0"):
        PipelineConfig(**{field: 0})


def test_a_gnss_fix_does_not_become_the_ego_trajectory():
    """A kit with GNSS (the Jetson kit): its fixes are Odometry payloads in an ENU plane with NaN where
    the receiver measures nothing (yaw rate, heading at standstill). The ego trajectory (LiDAR de-skew,
    radar doppler compensation) comes from the kit's vehicle odometry only, so frames keep being built."""
    import dataclasses

    from edgefuse.frames import FrameCore, PipelineConfig
    from edgefuse.sim.rig import sim_calibration, sim_kit
    from edgefuse.sim.run import Simulator
    from edgefuse.types import Odometry

    kit = sim_kit()
    odom = next(s for s in kit.sensors if s.id == "odom")
    gnss = dataclasses.replace(odom, id="gnss", kind="gnss", frame="gnss")
    kit = dataclasses.replace(kit, sensors=(*kit.sensors, gnss))
    core = FrameCore(kit, sim_calibration(), PipelineConfig())
    fix = Odometry(position=np.array([1.0, 2.0, 0.0]), orientation=np.full(4, np.nan),
                   linear_velocity=np.array([np.nan, 0.0, 0.0]), angular_velocity=np.full(3, np.nan),
                   frame="enu", child_frame="gnss")  # fmt: skip
    frames = []
    for m in Simulator("default", 0).messages(int(1.5 * NS)):
        if m.sensor_id == "odom":  # a GNSS fix beside every vehicle odometry message
            g = Message("gnss", m.stamp_ns, fix, raw_stamp_ns=m.raw_stamp_ns, recv_ns=m.recv_ns, frame="enu")
            frames += core.update(m.recv_ns, [(g, m.recv_ns)])
        frames += core.update(m.recv_ns, [(m, m.recv_ns)])
    assert len(frames) >= 10 and core.sensors["gnss"].messages > 0
    egos = [f.ego for f in frames if f.ego is not None]
    assert egos and all(np.isfinite(e.twist_at(f.frameset.stamp_ns)[1]).all() for e, f in
                        zip(egos, [f for f in frames if f.ego is not None], strict=True))  # fmt: skip
