"""What a run leaves behind. The log (``McapSink``): split files (``SplitRecorder``) read back as one
(``LogSet``, ``replay DIR``), a disk that fills up (an injected free-space probe; a real write failure
through RLIMIT_FSIZE), a slow disk, logging switched off. The status line and the report: synchronizer
drops, unmatched messages, silent sensors and the last error, and runs with nothing to report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import REPO, FakeBackend  # pytest puts tests/ on sys.path

from edgefuse.adapters.base import Source
from edgefuse.frames import PipelineConfig
from edgefuse.logs import LogReader
from edgefuse.logs.info import log_info
from edgefuse.logs.logset import LogSet, log_files
from edgefuse.logs.recorder import SplitRecorder
from edgefuse.logs.source import McapSource
from edgefuse.pipeline import DETECTIONS_TOPIC, Pipeline, Timebase, run_replay
from edgefuse.pipeline.sinks import MB, LogPolicy, McapSink
from edgefuse.sim.rig import sim_kit
from edgefuse.types import Message, PointCloud

MS = 1_000_000


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory) -> Path:
    from edgefuse.sim.run import record

    path = tmp_path_factory.mktemp("logging") / "sim.mcap"
    record(path, "default", 0, 1.2, progress=False)
    return path


def _cloud_msg(i: int, n_points: int = 2000) -> Message:
    data = np.full((n_points, 4), i, np.float32)
    t = i * 100 * MS  # 10 Hz
    return Message("lidar_top", 1_000 * MS + t, PointCloud(data), recv_ns=5_000 * MS + t, raw_stamp_ns=i,
                   frame="lidar_top", seq=i)  # fmt: skip


# ---------------------------------------------------------------- split files


def test_split_by_duration_gives_complete_files_that_read_back_as_the_whole_log(sim_log, tmp_path):
    calib = LogReader(sim_log).calibration()
    msgs = [_cloud_msg(i) for i in range(50)]  # 10 Hz for 5 s
    with SplitRecorder(tmp_path / "run.mcap", split_duration_ns=2_000 * MS) as rec:
        rec.write_calibration(calib)
        rec.write_metadata("run", {"vehicle": "car1"})
        for m in msgs:
            rec.write(m)
    # log time 0–1.9 s, 2.0–3.9 s, 4.0–4.9 s from the first message
    assert [p.name for p in rec.files] == ["run_000.mcap", "run_001.mcap", "run_002.mcap"]
    assert not (tmp_path / "run.mcap").exists()
    counts = []
    for f in rec.files:
        info = log_info(f)
        assert not info["truncated"] and not info["errors"], f
        assert info["metadata"] == ["run"]
        assert LogReader(f).calibration() is not None  # each file replays on its own
        counts.append(info["topics"]["/lidar_top/points"]["count"])
    assert counts == [20, 20, 10]
    got = [m for _t, m in LogSet(log_files([tmp_path])).messages()]
    assert [m.seq for m in got] == list(range(50))
    assert [m.recv_ns for m in got] == [m.recv_ns for m in msgs]
    np.testing.assert_array_equal(got[37].payload.data, msgs[37].payload.data)


def test_split_by_size_keeps_each_file_near_the_limit(tmp_path):
    one = 2000 * 4 * 4  # bytes of one message's points
    limit = 200_000
    with SplitRecorder(tmp_path / "run.mcap", split_size=limit, compression="none", chunk_size=50_000) as rec:
        for i in range(60):
            rec.write(_cloud_msg(i))
    assert len(rec.files) >= 60 * one // (limit + one + 20_000)
    sizes = [f.stat().st_size for f in rec.files]
    assert all(s <= limit + one + 20_000 for s in sizes), sizes  # one message + summary over at most
    assert all(s >= limit for s in sizes[:-1]), sizes
    assert sum(log_info(f)["messages"] for f in rec.files) == 60


def test_log_files_names_what_is_missing(tmp_path):
    from edgefuse.errors import InputError

    with pytest.raises(InputError, match="no such log"):
        log_files([tmp_path / "nope.mcap"])
    with pytest.raises(InputError, match="without \\*.mcap"):
        log_files([tmp_path])


def test_replay_of_a_split_log_gives_the_same_detections_as_the_original(sim_log, tmp_path, monkeypatch):
    """``replay --deterministic --log-inputs --split-duration 0.5`` logs every input into split files;
    replaying that directory gives byte-identical detections to replaying the original log (the fake
    backend's boxes follow the LiDAR points, so any input lost or reordered shows)."""
    import edgefuse.models
    from edgefuse.cli import main

    monkeypatch.setattr(edgefuse.models, "load_backend", lambda *a, **k: FakeBackend())

    assert main(["replay", str(sim_log), "--deterministic", "--log-inputs", "--split-duration", "0.5",
                 "--out", str(tmp_path / "a"), "--json"]) == 0  # fmt: skip
    files = sorted((tmp_path / "a").glob("detections_*.mcap"))
    assert len(files) == 3  # a 1.2 s log in 0.5 s files
    logged: dict[str, int] = {}
    for f in files:
        info = log_info(f)
        assert not info["truncated"] and not info["errors"]
        assert info["topics"]["/tf_static"]["count"] == 1  # the calibration in every file
        for t, v in info["topics"].items():
            logged[t] = logged.get(t, 0) + v["count"]
    original = LogReader(sim_log)
    for t, info in original.topics().items():  # every input is in the split log, once
        if info.payload:
            assert logged[t] == info.count, t

    def detections(path: Path) -> list[bytes]:
        return [r.data for r in LogReader(path).raw_messages(topics=[DETECTIONS_TOPIC])]

    run_replay(sim_log, FakeBackend(), tmp_path / "b", deterministic=True, handle_signals=False)
    run_replay(tmp_path / "a", FakeBackend(), tmp_path / "c", deterministic=True, handle_signals=False)
    assert detections(tmp_path / "c" / "detections.mcap") == detections(tmp_path / "b" / "detections.mcap")
    assert len(detections(tmp_path / "b" / "detections.mcap")) == original.topics()["/lidar_top/points"].count


# ---------------------------------------------------------------- a filling disk


class ShrinkingDisk:
    """A free-space probe for a disk of ``capacity`` bytes: free = capacity − bytes of the files in the
    log's directory (what this run wrote), optionally dropping to ``after_calls_free`` after ``calls``."""

    def __init__(self, capacity: int, calls: int | None = None, after_calls_free: int = 0):
        self.capacity, self.calls, self.after = capacity, calls, after_calls_free
        self.n = 0

    def __call__(self, directory: str) -> int:
        self.n += 1
        if self.calls is not None and self.n > self.calls:
            return self.after
        return self.capacity - sum(f.stat().st_size for f in Path(directory).iterdir() if f.is_file())


def _run(sim_log, log: McapSink):
    """The log as fast as it reads through the pipeline, no frame lost to load (a long deadline, a deep
    queue): what changes between the tests is the log's disk only."""
    reader = LogReader(sim_log)
    src = McapSource(f"mcap://{sim_log}", sim_log)
    config = PipelineConfig(deadline_ns=60_000 * MS, frame_queue=100, out_queue=100)
    pipe = Pipeline({"log": src}, sim_kit(), reader.calibration(), FakeBackend(), log=log, config=config,
                    timebase=Timebase("event"))  # fmt: skip
    return pipe, pipe.run()


def test_disk_low_stops_inputs_but_detections_keep_being_logged(sim_log, tmp_path):
    policy = LogPolicy(split_size_bytes=1 * MB, min_free_bytes=100 * MB)
    probe = ShrinkingDisk(capacity=104 * MB)  # about 4 MB of room for the inputs
    log = McapSink(tmp_path / "run.mcap", LogReader(sim_log).calibration(), sim_kit(), inputs=True,
                   policy=policy, free_bytes=probe)  # fmt: skip
    pipe, r = _run(sim_log, log)
    lg = r["logging"]
    frames = LogReader(sim_log).topics()["/lidar_top/points"].count
    assert r["frames_published"] == frames  # the pipeline never noticed
    assert lg["inputs_stopped"] and "disk low" in lg["inputs_stopped"] and lg["stopped"] is None
    assert lg["dropped"]["inputs"]["disk_low"] > 0
    assert lg["written"]["detections"] == frames and lg["dropped"]["detections"] == {}
    assert len(lg["files"]) >= 2
    total_inputs = total_det = 0
    for f in lg["files"]:  # every file, the last one included, is complete
        info = log_info(f)
        assert not info["truncated"] and not info["errors"], f
        total_det += info["topics"].get(DETECTIONS_TOPIC, {}).get("count", 0)
        total_inputs += sum(v["count"] for t, v in info["topics"].items() if v["payload"] and
                            t != DETECTIONS_TOPIC)  # fmt: skip
    assert total_det == frames and total_inputs == lg["written"]["inputs"]
    line = pipe.status_line()
    assert "INPUTS OFF: disk low" in line and f"log {len(lg['files'])} files" in line


def test_disk_nearly_full_closes_the_log_cleanly_and_the_run_goes_on(sim_log, tmp_path):
    probe = ShrinkingDisk(capacity=10_000 * MB, calls=40, after_calls_free=5 * MB)  # another job fills it
    log = McapSink(tmp_path / "run.mcap", LogReader(sim_log).calibration(), sim_kit(), inputs=True,
                   free_bytes=probe)  # fmt: skip
    pipe, r = _run(sim_log, log)
    lg = r["logging"]
    frames = LogReader(sim_log).topics()["/lidar_top/points"].count
    assert r["frames_published"] == frames
    assert "disk nearly full" in lg["stopped"] and "5.0 MB free" in lg["stopped"]
    assert lg["written"]["inputs"] + lg["written"]["detections"] == 40  # the 41st write found it full
    info = log_info(tmp_path / "run.mcap")
    assert not info["truncated"] and not info["errors"]
    assert sum(t["count"] for t in info["topics"].values() if t["payload"]) == 40
    lost = lg["dropped"]["detections"].get("log_stopped", 0)
    assert lost == frames - lg["written"]["detections"] > 0
    assert "STOPPED: disk nearly full" in pipe.status_line()


def test_a_write_that_fails_ends_the_log_without_a_traceback(sim_log, tmp_path):
    """A real write failure (the file size limit, EFBIG, standing in for ENOSPC) in ``edgefuse replay``
    (deterministic: every frame, so the count is exact): exit 0, the report explains, every frame is still
    published, and the log's closed chunks read."""
    out = tmp_path / "out"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))\n"
        "import edgefuse.models\n"
        "from test_pipeline import FakeBackend\n"
        "edgefuse.models.load_backend = lambda *a, **k: FakeBackend()  # the log is under test, not a model\n"
        "from edgefuse.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = [sys.executable, "-c", code, "replay", str(sim_log), "--out", str(out), "--deterministic",
           "--log-inputs", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    r = json.loads(p.stdout)
    lg = r["logging"]
    assert "write failed" in lg["stopped"] and lg["dropped"]["inputs"].get("write_error") == 1
    assert r["frames_published"] == r["frames"] > 0
    with pytest.warns(UserWarning, match="no summary/footer"):
        reader = LogReader(out / "detections.mcap")
    assert reader.truncated  # no summary: the disk refused it; the complete chunks read
    got = list(reader.messages())
    assert 0 < len(got) <= lg["written"]["inputs"] + lg["written"]["detections"]
    assert (out / "report.json").is_file()


def test_inputs_off_logs_detections_only(sim_log, tmp_path):
    log = McapSink(tmp_path / "run.mcap", LogReader(sim_log).calibration(), sim_kit(), inputs=False)
    _pipe, r = _run(sim_log, log)
    topics = LogReader(tmp_path / "run.mcap").topics()
    assert {t for t, i in topics.items() if i.payload} == {DETECTIONS_TOPIC}
    assert topics[DETECTIONS_TOPIC].count == r["frames_published"] == r["logging"]["written"]["detections"]
    assert r["queues"]["log_inputs"]["max_depth"] == 0


def test_a_slow_disk_drops_inputs_counted_and_keeps_every_detection(sim_log, tmp_path):
    """A writer that cannot keep up (a disk taking 20 ms a write, a queue of 8 inputs) loses inputs,
    counted, and no detection; the pipeline does not wait for it."""

    def slow_disk(directory: str) -> int:
        time.sleep(0.02)
        return 10_000 * MB

    policy = LogPolicy(queue_messages=8)
    log = McapSink(tmp_path / "run.mcap", LogReader(sim_log).calibration(), sim_kit(), inputs=True,
                   policy=policy, free_bytes=slow_disk)  # fmt: skip
    _pipe, r = _run(sim_log, log)
    lg = r["logging"]
    sent = sum(t.count for t in LogReader(sim_log).topics().values() if t.payload)
    assert lg["dropped"]["inputs"].get("queue_full", 0) > 0
    assert lg["written"]["inputs"] + lg["dropped"]["inputs"]["queue_full"] == sent
    assert r["queues"]["log_inputs"]["max_depth"] <= 8
    assert lg["written"]["detections"] == r["frames_published"]


# ---------------------------------------------------------------- status line and report


class Faults(Source):
    """The log's messages, less LiDAR sweeps number ``lidar_gaps`` (the synchronizer sees a reference gap)
    and the camera after ``camera_until_ns`` of log time (it falls silent)."""

    live = False

    def __init__(self, inner, lidar_gaps: set[int], camera_until_ns: int):
        self.inner, self.gaps, self.until = inner, lidar_gaps, camera_until_ns
        self.uri = inner.uri

    def __iter__(self):
        t0, n = None, 0
        for m in self.inner:
            t0 = m.recv_ns if t0 is None else t0
            if m.sensor_id == "lidar_top":
                n += 1
                if n - 1 in self.gaps:
                    continue
            if m.sensor_id == "cam_front" and m.recv_ns - t0 > self.until:
                continue
            yield m

    def stats(self):
        return self.inner.stats()

    def close(self):
        self.inner.close()


class FailsOnce(FakeBackend):
    """The fake backend, raising on its 4th call (the 3rd frame after the warm-up)."""

    def infer(self, feed):
        if self.calls == 3:
            self.calls += 1
            raise ValueError("bad tensor in frame 3")
        return super().infer(feed)


def test_report_and_status_line_show_sync_drops_unmatched_silent_sensors_and_last_error(sim_log, tmp_path):
    from edgefuse.pipeline.report import write_outputs
    from edgefuse.profiling import format_report

    reader = LogReader(sim_log)
    topics = reader.topics()
    lidar = topics["/lidar_top/points"].count
    src = Faults(McapSource(f"mcap://{sim_log}", sim_log), lidar_gaps={4, 5, 6}, camera_until_ns=400 * MS)
    config = PipelineConfig(deadline_ns=60_000 * MS, frame_queue=100, out_queue=100, silence_ns=300 * MS)
    pipe = Pipeline({"log": src}, sim_kit(), reader.calibration(), FailsOnce(), config=config,
                    timebase=Timebase("event"))  # fmt: skip
    r = pipe.run()
    # three sweeps missing: three frames the synchronizer could not make; one frame lost to the backend
    assert r["frames_dropped_by"] == {"sync": {"reference_gap": 3}, "pipeline": {"inference_error": 1}}
    assert r["frames"] == lidar - 3 and r["frames_published"] == lidar - 4
    assert r["last_error"] == "inference: ValueError: bad tensor in frame 3"
    assert r["silent_sensors"] == {"cam_front": "silent"}
    # every camera message went into one frame or is counted unmatched with its reason
    cam_used = r["frames"] - r["frames_missing"].get("cam_front", 0)
    cam_sent = sum(1 for m in Faults(McapSource(f"mcap://{sim_log}", sim_log), set(), 400 * MS)
                   if m.sensor_id == "cam_front")  # fmt: skip
    assert sum(r["messages_unmatched"]["cam_front"].values()) == cam_sent - cam_used > 0
    assert r["messages_unmatched_total"] == sum(sum(v.values()) for v in r["messages_unmatched"].values())
    line = pipe.status_line()
    n, unmatched = r["frames"], r["messages_unmatched_total"]
    assert f"frames {n} dropped 4 (reference_gap 3, inference_error 1) unmatched {unmatched} " in line
    assert re.search(r"cam_front:\d+Hz\(SILENT \d+\.\ds\)", line) and re.search(r"lidar_top:\d+Hz ", line)
    assert line.endswith("last error: inference: ValueError: bad tensor in frame 3")
    human = format_report(r)
    assert "by the synchronizer: reference_gap 3; by the pipeline: inference_error 1" in human
    assert "silent sensors: cam_front (silent)" in human
    assert "last error: inference: ValueError: bad tensor in frame 3" in human
    write_outputs(tmp_path, r, list(pipe.records))
    assert json.loads((tmp_path / "report.json").read_text())["silent_sensors"] == {"cam_front": "silent"}


class Nothing(Source):
    """A source that ends at once: every sensor stays silent."""

    live, uri = False, "nothing://"

    def __iter__(self):
        return iter(())

    def stats(self):
        return {}

    def close(self):
        pass


def test_a_run_where_no_sensor_speaks_still_writes_its_report(sim_log, tmp_path):
    from edgefuse.cli.common import to_jsonable
    from edgefuse.pipeline.report import write_outputs
    from edgefuse.profiling import format_report

    log = McapSink(tmp_path / "run.mcap", LogReader(sim_log).calibration(), sim_kit(), inputs=True)
    pipe = Pipeline({"log": Nothing()}, sim_kit(), LogReader(sim_log).calibration(), FakeBackend(), log=log,
                    timebase=Timebase("live"))  # fmt: skip
    r = pipe.run()
    assert r["frames"] == r["frames_published"] == 0 and r["e2e_p99_ms"] is None
    assert r["silent_sensors"] == {s.id: "never" for s in sim_kit().sensors}
    files = write_outputs(tmp_path, r, list(pipe.records))
    for f in files.values():
        assert Path(f).stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text())["frames"] == 0
    json.dumps(to_jsonable(r))
    assert "NEVER" in format_report(r) and "NEVER" in pipe.status_line()
    info = log_info(tmp_path / "run.mcap")
    assert not info["truncated"] and LogReader(tmp_path / "run.mcap").calibration() is not None
