"""`sim serve`, the simulated rig as a live one: every sensor served on loopback for a few seconds and read
back through `open_source` with the real drivers (velodyne://, ti-mmwave:// on the pty links, the camera's
MJPEG over HTTP, ego-udp://, the truth log through mcap://), compared with the simulator's own messages;
the send plan's pure parts (order, skipping, lateness); the pty link and the TI CLI; the CLI and the kit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _fakes import free_udp_ports

from edgefuse.adapters.base import SourceReader
from edgefuse.logs import LogReader
from edgefuse.rig import load_kit
from edgefuse.sim.rig import ServeEndpoints, sim_serve_kit
from edgefuse.sim.run import Simulator
from edgefuse.sim.serve import Pace, SensorStats, ServeConfig, send_plan, serve
from edgefuse.sim.serve_links import PtyLink
from edgefuse.sources import open_source
from edgefuse.types import CompressedImage, Detections, Imu, Odometry, PointCloud, RadarScan

ROOT = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
SEED = 1
DURATION_S = 2.0
CFG = ROOT / "tests" / "data" / "ti_mmwave" / "iwr6843_3tx.cfg"


def _drain(reader: SourceReader) -> list:
    out = []
    while (m := reader.get(0.05)) is not None:
        out.append(m)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Serve DURATION_S of scenario default / SEED at 320x180 and read every sensor back (module doc)."""
    tmp = tmp_path_factory.mktemp("serve")
    lidar = open_source("velodyne://127.0.0.1:0?model=VLP32C&cut=180", "lidar_top")
    odom = open_source("ego-udp://127.0.0.1:0?type=odometry", "odom")
    imu = open_source("ego-udp://127.0.0.1:0?type=imu", "imu")
    port = {k: s.inner.address[1] for k, s in (("lidar", lidar), ("odom", odom), ("imu", imu))}
    ep = ServeEndpoints("127.0.0.1", port["lidar"], 0, port["odom"], port["imu"], str(tmp / "links"))
    # every frame, however late on a busy CI core (skipping is tested on the plan alone)
    config = ServeConfig("default", SEED, duration_s=DURATION_S, endpoints=ep, camera_size=(320, 180),
                         truth=str(tmp / "truth.mcap"), skip_behind=False)  # fmt: skip
    readers = {sid: SourceReader(s, maxlen=100_000).start() for sid, s in
               (("lidar_top", lidar), ("odom", odom), ("imu", imu))}  # fmt: skip
    ready, info, result = threading.Event(), {}, {}

    def on_ready(i: dict) -> None:
        info.update(i)
        ready.set()

    statuses: list[dict] = []
    th = threading.Thread(
        target=lambda: result.update(serve(config, on_ready=on_ready, on_status=statuses.append))
    )
    th.start()
    try:
        assert ready.wait(60)
        # the radar's CLI answers the cfg; its frames wait in the pty until read, none lost
        radar = open_source(f"{info['uris']['radar_front']}&cfg={CFG}", "radar_front")
        camera = open_source(info["uris"]["cam_front"], "cam_front")
        readers["radar_front"] = SourceReader(radar, maxlen=100_000).start()
        readers["cam_front"] = SourceReader(camera, maxlen=100_000).start()
        links_while_serving = {name: os.path.realpath(p) for name, p in info["links"].items()}
    finally:
        th.join(60)
    time.sleep(0.3)  # the last datagrams and frames reach the readers
    got = {sid: _drain(r) for sid, r in readers.items()}
    stats = {sid: r.source.stats() for sid, r in readers.items()}
    for r in readers.values():
        r.stop()
    return {"info": info, "result": result, "got": got, "stats": stats, "config": config,
            "links": links_while_serving, "tmp": tmp, "statuses": statuses}  # fmt: skip


def _sim_messages(sensors, **kw) -> list:
    sim = Simulator("default", SEED, sensors=sensors, **kw)
    return list(sim.messages(int(DURATION_S * NS)))


def test_ready_info_names_every_uri_and_link(served):
    info, result = served["info"], served["result"]
    assert set(info["uris"]) == {"cam_front", "lidar_top", "radar_front", "odom", "imu"}
    assert info["uris"]["radar_front"] == (
        f"ti-mmwave://{served['tmp']}/links/ti_cli?data={served['tmp']}/links/ti_data"
    )
    assert served["links"]["ti_data"] == info["radar_pty"]
    assert served["links"]["ti_data"].startswith("/dev/pts/")
    assert not os.path.lexists(info["links"]["ti_data"])  # removed when serve ended
    assert info["camera"]["size"] == "320x180" and info["camera"]["full_size"] == "1280x720"
    assert result["stopped"] == "duration" and result["camera_size"] == "320x180"
    assert result["radar_cli_commands"] == sum(
        1 for ln in CFG.read_text().splitlines() if ln.strip() and not ln.startswith("%")
    )
    for sid, s in result["sensors"].items():  # counted, not timed: each frame is late or not
        assert 0 <= s["late"] <= s["frames"] and s["late_ms_max"] >= s["late_ms_p50"], sid
    # a status a second while it runs (a 2 s run has one at 1 s), with every sensor's counts
    assert served["statuses"] and all(st["stopped"] == "running" for st in served["statuses"])
    assert set(served["statuses"][0]["sensors"]) == set(result["sensors"])


def test_lidar_sweeps_decode_to_the_simulated_returns(served):
    sweeps = served["got"]["lidar_top"]
    sent = served["result"]["lidar_sweeps"]
    clouds = [m.payload for m in _sim_messages(("lidar_top",), truth=False)]
    assert sent == len(clouds) == round(DURATION_S * 10)
    assert served["result"]["lidar_packets"] == served["stats"]["lidar_top"]["packets"]
    # the driver ends a sweep where the azimuth passes 0°: every served sweep (the last one maybe not yet)
    assert sent - 1 <= len(sweeps) <= sent and all(isinstance(m.payload, PointCloud) for m in sweeps)
    for m, cloud in zip(sweeps, clouds, strict=False):
        assert len(m.payload) == len(cloud)
        r_got = np.sort(np.linalg.norm(m.payload.xyz, axis=1))
        r_sim = np.sort(np.linalg.norm(cloud.xyz, axis=1))
        assert np.max(np.abs(r_got - r_sim)) < 0.005  # the VLP-32C's 4 mm distance resolution


def test_radar_frames_decode_to_the_simulated_scans(served):
    scans = served["got"]["radar_front"]
    sim = [m for m in _sim_messages(("radar_front",), truth=False)]
    assert served["result"]["radar_frames"] == len(sim) and served["result"]["radar_dropped"] == 0
    # the reader opened the port once serve was up, and pyserial's open flushes what was waiting (as on a
    # real UART): the first frame or two may be gone, the rest arrive in order, none missing
    cycles = [(m.raw_stamp_ns * 200_000_000 // NS) & 0xFFFFFFFF for m in sim]
    first = cycles.index(scans[0].raw_stamp_ns * 200_000_000 // NS)  # the reader's clock starts there
    assert first <= 2 and len(scans) == len(sim) - first
    assert served["stats"]["radar_front"].get("frames_missing", 0) == 0
    for got, want in zip(scans, sim[first:], strict=True):
        g, w = got.payload, want.payload
        assert isinstance(g, RadarScan) and len(g) == len(w)
        for name in ("x", "y", "z", "doppler"):  # SDK 3.x floats: bit exact
            np.testing.assert_array_equal(g.column(name), w.column(name))
        np.testing.assert_allclose(g.column("snr"), w.column("snr"), atol=0.05 + 1e-6)  # 0.1 dB steps
    # the sensor clock: timeCpuCycles at 200 MHz, unwrapped, ticks as the sim's radar clock does
    d_got = np.diff([m.raw_stamp_ns for m in scans])
    d_sim = np.diff([m.raw_stamp_ns for m in sim[first:]])
    assert np.max(np.abs(d_got - d_sim)) <= 10  # 5 ns cycles, floored


def test_camera_frames_decode_and_show_the_simulated_scene(served):
    frames = served["got"]["cam_front"]
    sim = [m.payload.data for m in _sim_messages(("cam_front",), lossless=True, camera_size=(320, 180))]
    assert served["result"]["sensors"]["cam_front"]["frames"] == len(sim)
    assert len(frames) >= 5 and all(isinstance(m.payload, CompressedImage) for m in frames)  # as served
    assert served["result"]["camera_clients"] == 1
    assert served["result"]["camera_frames_to_clients"] >= len(frames)

    def small(img):  # the sensor noise averaged out
        return cv2.resize(img, (80, 45), interpolation=cv2.INTER_AREA).astype(np.float32)

    sims = [small(s) for s in sim]
    for m in frames:
        rgb = cv2.imdecode(np.frombuffer(m.payload.data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert rgb.shape == (180, 320, 3)
        best = min(float(np.abs(small(rgb) - s).mean()) for s in sims)
        assert best < 2.0, best  # JPEG q90 of one of the served frames (RGB, not BGR: that would be ~40)


def test_odometry_and_imu_arrive_exactly(served):
    sim = _sim_messages(("odom", "imu"), truth=False)
    for sid, kind in (("odom", Odometry), ("imu", Imu)):
        want = [m for m in sim if m.sensor_id == sid]
        got = served["got"][sid]
        assert len(got) == len(want) == served["result"]["sensors"][sid]["frames"]
        for g, w in zip(got, want, strict=True):
            assert isinstance(g.payload, kind) and g.raw_stamp_ns == w.raw_stamp_ns
            for name, a in vars(w.payload).items():
                b = getattr(g.payload, name)
                assert a == b if isinstance(a, str) or a is None else np.array_equal(a, b), (sid, name)


def test_ground_truth_log_scores_against_the_served_sweeps(served):
    path = served["result"]["truth"]
    with LogReader(path) as log:
        meta = log.metadata()["sim.serve"]
        assert log.calibration() is not None
    epoch = int(meta["epoch_monotonic_ns"])
    with open_source(f"mcap://{path}") as src:
        msgs = list(src)
    gt = [m for m in msgs if m.sensor_id == "ground_truth"]
    ego = [m for m in msgs if m.sensor_id == "ego_truth"]
    sim = _sim_messages(("lidar_top", "odom"))
    sim_gt = [m for m in sim if m.sensor_id == "ground_truth"]
    assert len(gt) == len(sim_gt) == served["result"]["lidar_sweeps"]
    assert len(ego) == sum(m.sensor_id == "ego_truth" for m in sim) > 0
    for g, w in zip(gt, sim_gt, strict=True):
        assert isinstance(g.payload, Detections) and len(g.payload.objects) == len(w.payload.objects) > 0
        for a, b in zip(g.payload.objects, w.payload.objects, strict=True):
            assert (a.label, a.track_id, a.box.yaw) == (b.label, b.track_id, b.box.yaw)
            for x, y in ((a.box.center, b.box.center), (a.box.size, b.box.size), (a.velocity, b.velocity)):
                np.testing.assert_array_equal(x, y)
        assert g.stamp_ns == epoch + w.stamp_ns == g.payload.stamp_ns  # host monotonic clock
    # each decoded sweep's sensor stamp names its truth (the same sweep end on the LiDAR's clock)
    for sweep, truth in zip(served["got"]["lidar_top"], gt, strict=False):
        assert abs(sweep.raw_stamp_ns - truth.raw_stamp_ns) < 2_000  # µs stamps in the packets


# ---------------------------------------------------------------- the plan, without wires


def test_send_plan_is_in_due_order_and_skips_when_behind():
    config = ServeConfig("default", 2, duration_s=0.3, camera_size=(160, 90), truth=None)
    sim = Simulator("default", 2, truth=False, camera_size=(160, 90))
    stats = {sid: SensorStats() for sid in config.sensors}
    sends = list(send_plan(sim, config, Pace(), stats))
    assert all(a.due_ns <= b.due_ns for a, b in zip(sends, sends[1:], strict=False))
    by = {sid: [s for s in sends if s.sensor == sid] for sid in config.sensors}
    assert [len(by[s]) for s in ("lidar_top", "cam_front", "radar_front", "odom", "imu")] == [
        3 * 151, 9, 6, 15, 60,  # 10 Hz sweeps of 151 packets, 30, 20, 50, 200 Hz over 0.3 s
    ]  # fmt: skip
    assert sum(s.frame_end for s in by["lidar_top"]) == 3
    assert all(len(s.data) == 1206 for s in by["lidar_top"])
    assert all(s.data[:2] == b"\xff\xd8" for s in by["cam_front"])  # JPEG
    # always behind (the clock is an hour in): what can be skipped is, odometry and IMU are not
    late = Pace(clock=lambda: 3600 * NS, epoch_ns=0)
    stats = {sid: SensorStats() for sid in config.sensors}
    sends = list(send_plan(sim, config, late, stats))
    assert {s.sensor for s in sends} == {"odom", "imu"}
    skipped = [stats[s].skipped for s in ("lidar_top", "cam_front", "radar_front", "odom", "imu")]
    assert skipped == [3, 9, 6, 0, 0]
    every = ServeConfig("default", 2, duration_s=0.3, camera_fps=10, truth=None).camera_every
    stats = {sid: SensorStats() for sid in config.sensors}
    cams = [s for s in send_plan(sim, ServeConfig("default", 2, duration_s=0.3, camera_fps=10, truth=None,
                                                  sensors=("cam_front",)), Pace(), stats)]  # fmt: skip
    assert every == 3 and [s.seq for s in cams] == [0, 3, 6]


def test_lateness_is_counted_against_the_threshold():
    st = SensorStats()
    for late_ms, end in ((0.5, True), (12.0, False), (9.0, True), (10.5, True), (-1.0, True)):
        st.record(int(late_ms * 1e6), ok=True, frame_end=end, threshold_ns=10_000_000)
    st.record(0, ok=False, frame_end=True, threshold_ns=10_000_000)
    s = st.summary(1.0)
    # frames: the four frame ends + the dropped one; late: only 10.5 (12.0 was a packet mid-frame)
    assert (s["frames"], s["late"], s["writes"], s["dropped"], s["late_ms_max"]) == (5, 1, 6, 1, 10.5)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"camera_size": (640, 480)}, "16:9"),
        ({"camera_size": (2560, 1440)}, "at most 1280x720"),
        ({"camera_fps": 12}, "30/n"),
        ({"sensors": ("lidar_top", "sonar")}, "--sensors"),
        ({"duration_s": 0}, "--duration"),
        ({"endpoints": ServeEndpoints(link_dir="rel/dir")}, "absolute"),
        ({"endpoints": ServeEndpoints(lidar_port=0)}, "--lidar-port 0: expected 1..65535"),
    ],
)
def test_bad_config_names_the_option(kw, needle):
    with pytest.raises(ValueError, match=needle):
        ServeConfig(**kw)


# ---------------------------------------------------------------- the wires


def test_pty_link_is_a_stable_path_and_overruns_like_a_uart(tmp_path):
    link = tmp_path / "links" / "ti_data"
    link.parent.mkdir()
    os.symlink("/dev/null", link)  # a stale link from an earlier run is replaced
    pty = PtyLink(link)
    try:
        assert os.path.realpath(link) == pty.path
        fd = os.open(link, os.O_RDONLY | os.O_NONBLOCK)
        chunk = bytes(range(256)) * 16
        n = 0
        while pty.overruns == 0 and n < 10_000:  # nobody reads: the pty fills
            assert pty.write(chunk)
            n += 1
        assert pty.write(b"NEWEST")
        data = b""
        while True:
            try:
                part = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not part:
                break
            data += part
        os.close(fd)
        assert data.endswith(b"NEWEST") and len(data) < n * len(chunk)  # the unread backlog was discarded
    finally:
        pty.close()
    assert not os.path.lexists(link)


def test_serve_kit_file_reads_what_serve_serves():
    kit = load_kit(ROOT / "sensors" / "sim-serve.yaml")
    assert {s.id: s.source for s in kit.sensors} == ServeEndpoints().uris()
    assert kit.calibration.name == "sim-serve.yaml" and kit.sensor("cam_front").clock == "sensor"
    assert [s.id for s in kit.sensors] == [s.id for s in sim_serve_kit().sensors]


# ---------------------------------------------------------------- the CLI, and `run` reading the rig


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "edgefuse.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def test_cli_serve_then_run_the_kit_it_wrote_publishes_detections(tmp_path):
    """The newcomer's demo: `sim serve` (CLI, --kit-out) and `run --kit` on what it wrote. A generous
    deadline: on a CI core shared with `sim serve` inference is slow, and the check is that detections
    come out, not how fast."""
    lidar, odom, imu = free_udp_ports(3)
    kit_path = tmp_path / "kit.yaml"
    serve_p = _cli(
        "sim", "serve", "--duration", "12", "--camera-size", "320x180", "--camera-port", "0",
        "--lidar-port", str(lidar), "--odom-port", str(odom), "--imu-port", str(imu),
        "--link-dir", str(tmp_path / "links"), "--kit-out", str(kit_path), "--json",
    )  # fmt: skip
    try:
        ready = json.loads(serve_p.stderr.readline())["ready"]
        assert ready["kit"]["kit"] == str(kit_path)
        kit = load_kit(kit_path)
        assert {s.id: s.source for s in kit.sensors} == ready["uris"]
        run = subprocess.run(
            [sys.executable, "-m", "edgefuse.cli", "run", "--kit", str(kit_path), "--duration", "5",
             "--deadline-ms", "2000", "--out", str(tmp_path / "run"), "--json"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads(run.stdout)
        assert report["frames_published"] > 0
        assert set(report["health"]) - {"backend"} == set(ready["uris"])
    finally:
        out, err = serve_p.communicate(timeout=60)
    result = json.loads(out)
    assert result["stopped"] == "duration" and result["served"]["uris"] == ready["uris"]
