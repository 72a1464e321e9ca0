"""The real-time pipeline: latency stamps of the pure core, deterministic replay, sinks, and the fault
cases (a sensor stops, a slow backend, SIGTERM during a run) on short simulator logs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _fakes import FakeBackend

from edgefuse.adapters.base import Source
from edgefuse.frames import FrameCore, PipelineConfig
from edgefuse.logs import LogReader
from edgefuse.logs.source import McapSource
from edgefuse.pipeline import DETECTIONS_TOPIC, Pipeline, Timebase, UdpSink, run_replay
from edgefuse.rig import SensorKit, SensorSpec
from edgefuse.sim.rig import sim_kit
from edgefuse.types import Image, Message, PointCloud

MS = 1_000_000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from edgefuse.engine.export import export_onnx
    from edgefuse.model.checkpoint import new_model, save_model
    from edgefuse.model.config import ModelConfig, edge_spec

    d = tmp_path_factory.mktemp("model")
    net, manifest = new_model(edge_spec(), ModelConfig(), seed=0)
    save_model(d / "m.pt", net, manifest)
    return export_onnx(d / "m.pt", d / "m.onnx")


# ---------------------------------------------------------------- the pure core's stamps


def _kit() -> SensorKit:
    return SensorKit(
        "t",
        (SensorSpec("lidar", "lidar", "x://", 10.0, "lidar", 0, "host"),
         SensorSpec("cam", "camera", "x://", 10.0, "cam", 0, "host")),  # fmt: skip
        reference="lidar",
        calibration=None,
    )


def _cloud() -> PointCloud:
    return PointCloud(np.zeros((3, 4), np.float32), ("x", "y", "z", "intensity"))


def test_frame_core_latency_stamps_follow_the_definitions():
    """e2e starts at the host receive of the last input; data age at the reference stamp on the host."""
    core = FrameCore(_kit(), None, PipelineConfig(latency_budget_ns=50 * MS, deadline_ns=80 * MS))
    # message clock: the camera arrives after the lidar; host clock = message clock + 7 ms (a replay offset)
    lidar = Message("lidar", 1_000 * MS, _cloud(), recv_ns=1_003 * MS)
    cam = Message("cam", 1_002 * MS, Image(np.zeros((4, 4, 3), np.uint8)), recv_ns=1_010 * MS)
    assert core.update(1_003 * MS, [(lidar, 1_010 * MS)]) == []
    later = Message("cam", 1_102 * MS, Image(np.zeros((4, 4, 3), np.uint8)), recv_ns=1_110 * MS)
    frames = core.update(1_110 * MS, [(cam, 1_017 * MS), (later, 1_117 * MS)])
    assert len(frames) == 1
    rec = frames[0].record
    assert rec.stamp_ns == 1_000 * MS
    assert rec.receive_ns == 1_017 * MS  # the camera's host receive: the last input the frame used
    assert rec.reference_ns == 1_000 * MS + 7 * MS  # the lidar stamp moved by its host − log offset
    assert rec.deadline_ns == 1_017 * MS + 80 * MS
    rec.publish_ns = 1_050 * MS
    assert rec.e2e_ns == 33 * MS and rec.data_age_ns == 43 * MS
    h = core.health(1_110 * MS)
    assert h["lidar"]["messages"] == 1 and h["cam"]["messages"] == 2
    assert core.health(1_110 * MS + 2_000 * MS)["cam"]["status"] == "silent"


# ---------------------------------------------------------------- deterministic replay


def _detection_bytes(path: Path) -> list[bytes]:
    return [r.data for r in LogReader(path).raw_messages(topics=[DETECTIONS_TOPIC])]


def test_deterministic_replay_gives_identical_detection_bytes(sim_log, onnx_model, tmp_path):
    from edgefuse.models import open_backend

    backend = open_backend(onnx_model)
    cfg = PipelineConfig(score_threshold=0.0)  # untrained weights: keep every box so there is content
    reports = [run_replay(sim_log, backend, tmp_path / f"r{i}", deterministic=True, config=cfg,
                          handle_signals=False) for i in (0, 1)]  # fmt: skip
    a, b = (_detection_bytes(tmp_path / f"r{i}" / "detections.mcap") for i in (0, 1))
    lidar_frames = LogReader(sim_log).topics()["/lidar_top/points"].count
    assert len(a) == lidar_frames == reports[0]["frames_published"]  # every frame, none dropped
    assert reports[0]["frames_dropped_total"] == 0
    assert a == b
    out0 = LogReader(tmp_path / "r0" / "detections.mcap")
    dets = [m.payload for _t, m in out0.messages([DETECTIONS_TOPIC])]
    assert sum(len(d.objects) for d in dets) > 0
    # the outputs are there and the trace is chrome trace-event JSON
    trace = json.loads((tmp_path / "r0" / "trace.json").read_text())
    assert any(e.get("ph") == "X" and e["name"] == "inference" for e in trace["traceEvents"])
    assert (tmp_path / "r0" / "latency_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_udp_sink_sends_what_the_log_holds(sim_log, tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    run_replay(sim_log, FakeBackend(), tmp_path, deterministic=True, udp=f"127.0.0.1:{port}",
               handle_signals=False)  # fmt: skip
    logged = [m.payload for _t, m in LogReader(tmp_path / "detections.mcap").messages([DETECTIONS_TOPIC])]
    got = [json.loads(rx.recv(65536)) for _ in logged]
    rx.close()
    assert [g["stamp_ns"] for g in got] == [d.stamp_ns for d in logged]
    for g, d in zip(got, logged, strict=True):
        assert len(g["detections"]) == len(d.objects) == 1  # the 0.05 box is below the 0.1 threshold
        np.testing.assert_allclose(g["detections"][0]["center"], d.objects[0].box.center, atol=1e-3)


# ---------------------------------------------------------------- faults


class StopsAfter(Source):
    """Passes a source through, except ``sensor``'s messages after log time ``after_ns`` (it dies)."""

    def __init__(self, inner, sensor: str, after_ns: int):
        self.inner, self.sensor, self.after_ns = inner, sensor, after_ns
        self.uri, self.live = inner.uri, False

    def __iter__(self):
        t0 = None
        for m in self.inner:
            t0 = m.recv_ns if t0 is None else t0
            if m.sensor_id == self.sensor and m.recv_ns - t0 > self.after_ns:
                continue
            yield m

    def stats(self):
        return self.inner.stats()

    def close(self):
        self.inner.close()


def _pipeline(sim_log, backend, config, source=None, rate=4.0):
    reader = LogReader(sim_log)
    src = source or McapSource(f"mcap://{sim_log}", sim_log, rate=rate)
    return Pipeline({"log": src}, sim_kit(), reader.calibration(), backend, config=config,
                    timebase=Timebase("paced", rate))  # fmt: skip


def test_sensor_stopping_mid_run_keeps_frames_coming_and_health_reports_it(sim_log):
    src = StopsAfter(McapSource(f"mcap://{sim_log}", sim_log, rate=4.0), "cam_front", 800 * MS)
    cfg = PipelineConfig(deadline_ns=2_000 * MS, silence_ns=500 * MS)
    pipe = _pipeline(sim_log, FakeBackend(), cfg, source=src)
    r = pipe.run()
    lidar_frames = LogReader(sim_log).topics()["/lidar_top/points"].count
    assert r["frames_published"] == r["frames"] == lidar_frames  # no frame lost to the dead camera
    late = [rec for rec in pipe.records if rec.stamp_ns > pipe.records[0].stamp_ns + 1_200 * MS]
    assert late and all(rec.publish_ns is not None for rec in late)
    assert r["health"]["cam_front"]["status"] == "silent"
    assert r["health"]["lidar_top"]["status"] == "ok"
    assert r["frames_missing"].get("cam_front", 0) >= len(late)


def test_slow_backend_misses_deadlines_and_queues_stay_bounded(sim_log):
    cfg = PipelineConfig(deadline_ns=60 * MS, frame_queue=2, out_queue=3)
    backend = FakeBackend(delay_s=0.12)
    pipe = _pipeline(sim_log, backend, cfg, rate=2.0)
    r = pipe.run()
    assert r["deadline_misses"] > 0
    assert r["frames_dropped"]["deadline"] == r["deadline_misses"]
    assert 0 < r["frames_published"] < r["frames"]
    # every frame is accounted for: published or dropped with a reason
    pipeline_drops = sum(v for k, v in r["frames_dropped"].items() if k not in ("reference_gap",))
    assert r["frames_published"] + pipeline_drops == r["frames"]
    for name, q in r["queues"].items():
        assert q["max_depth"] <= q["bound"], name
    # stale work was skipped, not queued: the backend ran only for published frames (+1 warm-up)
    assert backend.calls == r["frames_published"] + 1


@pytest.mark.parametrize("delay_s", [0.0, 1.5], ids=["during-warm-up", "while-running"])
def test_sigterm_during_replay_leaves_a_complete_log(sim_log, onnx_model, tmp_path, delay_s):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgefuse.cli", "replay", str(sim_log), "--model", str(onnx_model),
           "--out", str(out), "--rate", "0.5", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    t0 = time.monotonic()
    log = out / "detections.mcap"
    while not log.exists() and time.monotonic() - t0 < 60 and p.poll() is None:
        time.sleep(0.1)
    time.sleep(delay_s)  # 0: the signal comes while the model warms up; 1.5 s: a few frames in
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr[-2000:]
    report = json.loads(stdout)
    assert report["stopped"] == "SIGTERM"
    reader = LogReader(log)
    assert not reader.truncated and not reader.errors
    topics = reader.topics()
    n = topics[DETECTIONS_TOPIC].count if DETECTIONS_TOPIC in topics else 0  # no channel before a detection
    assert n == report["frames_published"]
    assert n < LogReader(sim_log).topics()["/lidar_top/points"].count  # it did stop early
    assert reader.calibration() is not None


def test_replay_without_model_names_the_flag(sim_log, capsys, monkeypatch, tmp_path):
    from edgefuse.cli import main
    from edgefuse.runtime import bundled

    monkeypatch.setitem(bundled.FILES, "int8", tmp_path / "missing.int8.onnx")  # a package without weights
    assert main(["replay", str(sim_log)]) == 2
    assert "--model" in capsys.readouterr().err


def test_udp_sink_rejects_bad_address():
    from edgefuse.errors import InputError
    from edgefuse.pipeline.sinks import make_sinks

    with pytest.raises(InputError, match="--udp"):
        make_sinks("localhost", False)
    s = UdpSink("127.0.0.1", 9)
    s.close()


def test_replay_runs_without_torch_and_a_pt_model_is_refused_by_name(sim_log, tmp_path):
    """The robot side needs no torch: ``edgefuse replay`` with the bundled ONNX model in a process where
    ``import torch`` fails publishes every frame; a ``.pt`` model there is refused with one line naming
    the file and the way out."""
    from edgefuse.runtime.bundled import FILES

    if not FILES["int8"].is_file():
        pytest.skip("no bundled model (python -m edgefuse.recipe)")
    code = (
        "import sys, json\n"
        "sys.modules['torch'] = None  # import torch raises ImportError from here on\n"
        "from edgefuse.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('TORCH', [m for m in sys.modules if m.startswith('torch.')])\n"
        "sys.exit(rc)\n"
    )
    out = str(tmp_path / "r")
    args = [sys.executable, "-c", code, "replay", str(sim_log), "--deterministic", "--out", out]
    p = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout.splitlines()[0])
    assert report["frames_published"] > 0 and "TORCH []" in p.stdout
    p = subprocess.run([*args, "--model", str(FILES["pt"])], capture_output=True, text=True, timeout=240)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "edge.pt" in p.stderr and "needs torch" in p.stderr and "Traceback" not in p.stderr


def test_names_that_moved_off_the_pipeline_still_resolve_with_a_warning():
    """``from edgefuse.pipeline import load_backend, profile_model`` (docs before the robot/workstation split)
    still gives the moved functions, and says where they are now."""
    import edgefuse.pipeline as pipeline
    from edgefuse.engine.profile import profile_model
    from edgefuse.models import load_backend

    with pytest.warns(DeprecationWarning, match=r"edgefuse\.models\.load_backend"):
        assert pipeline.load_backend is load_backend
    with pytest.warns(DeprecationWarning, match=r"edgefuse\.engine\.profile\.profile_model"):
        assert pipeline.profile_model is profile_model
    with pytest.raises(AttributeError, match="nope"):
        pipeline.nope  # noqa: B018 - the attribute access is the test
