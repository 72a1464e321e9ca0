"""One clock domain on a live rig: the real VLP-32C capture looped over UDP on 127.0.0.1 at its own packet
timing, re-stamped so it crosses the top of the hour, beside the simulator's radar (``sim://``), through
``run_live``; the Velodyne hour unwrapped by the stamp mapping (UDP and pcap); kernel receive stamps on
the host monotonic clock; the source surviving its interface going down and up (a network namespace)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from _fakes import FakeBackend, free_udp_ports
from mcap.reader import make_reader

from edgefuse.adapters.velodyne import open_velodyne
from edgefuse.adapters.velodyne.pcap import read_udp_payloads
from edgefuse.adapters.velodyne.source import kernel_receive_ns
from edgefuse.frames import FrameCore, PipelineConfig
from edgefuse.logs import LogReader
from edgefuse.logs.clock import CLOCK_METADATA, wall_time_ns
from edgefuse.pipeline import DETECTIONS_TOPIC, run_live
from edgefuse.rig import HOUR_NS, SensorKit, SensorSpec, load_kit, save_calibration
from edgefuse.sim.rig import sim_calibration
from edgefuse.types import POINT_TIME_FIELD

DATA = Path(__file__).parent / "data" / "velodyne_vlp32c"
PCAP = DATA / "DERIVED_vlp32c_from_rosbag2.pcap"
MS = 1_000_000
NS = 1_000_000_000
STAMP_AT = 1200  # byte offset of the µs-past-the-hour stamp in a 1206-byte packet


def capture() -> tuple[list[bytes], np.ndarray, int]:
    """The capture's payloads, their stamps (µs past the hour) and the loop period (µs): the last scan's
    end to the first scan's start again is the gap between two scans (the sensor sends only its front
    half), so the looped stream keeps the sensor's own rhythm (≈ 10 Hz)."""
    payloads = [p for _, p in read_udp_payloads(PCAP, 2368)]
    us = np.array([struct.unpack_from("<I", p, STAMP_AT)[0] for p in payloads], np.int64)
    gaps = np.diff(us)
    return payloads, us - us[0], int(us[-1] - us[0] + gaps.max())


def restamp(payload: bytes, us: int) -> bytes:
    return payload[:STAMP_AT] + struct.pack("<I", int(us) % (3600 * 10**6)) + payload[STAMP_AT + 4 :]


class LoopedVelodyne:
    """Sends the capture again and again to ``port`` on 127.0.0.1 at its packet timing (host monotonic
    clock), each packet re-stamped ``start_us`` + its offset in the endless stream (µs past the hour, so
    the stream crosses the top of the hour when ``start_us`` is near 3600 s); every ``garbage_every``-th
    datagram is followed by one of garbage (a wrong length)."""

    def __init__(self, port: int, start_us: int, garbage_every: int = 0):
        self.payloads, self.offsets, self.loop_us = capture()
        self.port, self.start_us, self.garbage_every = port, start_us, garbage_every
        self.sent = self.garbage = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoopedVelodyne:
        self._thread.start()
        return self

    def _run(self) -> None:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0 = time.monotonic_ns()
        i = 0
        n = len(self.payloads)
        while not self._stop.is_set():
            k, j = divmod(i, n)
            offset_us = k * self.loop_us + int(self.offsets[j])
            due = t0 + offset_us * 1000
            wait = (due - time.monotonic_ns()) / NS
            if wait > 0.002:  # send in small bursts: sleeping per packet (1.8 kHz) is not reliable
                self._stop.wait(wait)
            tx.sendto(restamp(self.payloads[j], self.start_us + offset_us), ("127.0.0.1", self.port))
            self.sent += 1
            if self.garbage_every and i % self.garbage_every == self.garbage_every - 1:
                tx.sendto(b"\x00" * 300, ("127.0.0.1", self.port))
                self.garbage += 1
            i += 1
        tx.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _kit_files(tmp_path: Path, port: int) -> Path:
    """A kit of the VLP-32C on UDP (reference) and the simulator's radar, with the sim calibration."""
    save_calibration(sim_calibration(), tmp_path / "calib.yaml")
    kit = {
        "version": 1,
        "name": "udp-vlp32c-sim-radar",
        "calibration": "calib.yaml",
        "reference": "lidar_top",
        "sensors": [
            {"id": "lidar_top", "kind": "lidar", "rate_hz": 10, "frame": "lidar_top",
             "source": f"velodyne://127.0.0.1:{port}?model=VLP32C&cut=180", "nominal_latency_ms": 0.2},
            {"id": "radar_front", "kind": "radar", "rate_hz": 20, "frame": "radar_front",
             "source": "sim://default?seed=0&sensor=radar_front", "nominal_latency_ms": 4},
        ],
    }  # fmt: skip
    path = tmp_path / "kit.yaml"
    path.write_text(yaml.safe_dump(kit, sort_keys=False))
    return path


def test_vlp32c_looped_over_udp_beside_the_sim_radar_lands_in_published_frames(tmp_path):
    """The acceptance run: 10 s of the real capture at its packet timing, crossing the top of the hour
    after 3 s, with garbage datagrams in between, next to a live simulated radar: ≥ 90 % of the sweeps
    are published frames, their stamps run on without a 3600 s step, the garbage is counted, and the
    log has one timeline (log times of every topic on the host clock, in order within jitter) with the
    wall-clock offset to recover absolute time."""
    (port,) = free_udp_ports(1)
    kit = _kit_files(tmp_path, port)
    sender = LoopedVelodyne(port, start_us=3_597_000_000, garbage_every=97)
    wall0, host0 = time.time_ns(), time.monotonic_ns()
    sender.start()
    try:
        report = run_live(kit, FakeBackend(delay_s=0.02), tmp_path / "out", duration_s=10.0, status=None)
    finally:
        sender.stop()
    host1 = time.monotonic_ns()
    h = report["health"]["lidar_top"]
    assert report["errors"] == {} and report["stopped"] == "duration", report.get("last_error")
    assert h["decode_errors"].get("bad_length", 0) > 0  # the garbage: counted, never a traceback
    assert h["clock"]["wraps"] == 1  # the top of the hour, unwrapped by the stamp mapping
    assert report["messages_rejected"] == {}

    log = LogReader(tmp_path / "out" / "run.mcap")
    assert not log.truncated and not log.errors
    sweeps = [m for _t, m in log.messages(["/lidar_top/points"])]
    frames = [m.payload for _t, m in log.messages([DETECTIONS_TOPIC])]
    assert len(sweeps) >= 80  # ≈ 10 Hz for 10 s (the first ones go to the sockets before the bind)
    assert len(frames) >= 0.9 * len(sweeps), (len(frames), len(sweeps), report["frames_dropped"])
    stamps = np.array([d.stamp_ns for d in frames])
    steps = np.diff(stamps)
    assert steps.min() > 0 and steps.max() < 350 * MS  # continuous through the hour: no 3600 s step
    assert host0 < stamps[0] and stamps[-1] < host1  # mapped onto the host clock of this run

    # one timeline: every log time of every topic is host-clock receive time, within this run
    times = log.log_times()
    for topic, t in times.items():
        if len(t) and topic not in ("/tf_static", "/cam_front/camera_info"):
            assert host0 <= t.min() and t.max() <= host1, topic
    with open(tmp_path / "out" / "run.mcap", "rb") as f:  # file order, as written
        written = [(c.topic, m.log_time) for _s, c, m in make_reader(f).iter_messages(log_time_order=False)]
    for topic in {t for t, _ in written}:  # each topic in receive order
        assert np.all(np.diff([t for name, t in written if name == topic]) >= 0), topic
    order = np.array([t for _, t in written])
    back = np.maximum.accumulate(order) - order
    # across topics: back only by how far the input log lags the published detections (a loaded box)
    assert back.max() < 2 * NS
    # absolute time is recoverable from the metadata: the first sweep was received after wall0
    meta = log.metadata()
    assert CLOCK_METADATA in meta
    first_wall = wall_time_ns(sweeps[0].recv_ns, meta)
    assert abs(first_wall - (wall0 + (sweeps[0].recv_ns - host0))) < 5 * MS


# ---------------------------------------------------------------- the hour, unwrapped by the stamp mapping


def _lidar_kit(uri: str) -> SensorKit:
    return SensorKit("t", (SensorSpec("lidar_top", "lidar", uri, 10.0, "lidar_top"),), "lidar_top", None)


def _mapped_frames(msgs) -> list[int]:
    core = FrameCore(_lidar_kit(msgs.uri), None, PipelineConfig())
    stamps = []
    for m in msgs:
        stamps += [f.frameset.stamp_ns for f in core.update(m.recv_ns, [(m, m.recv_ns)])]
    stamps += [f.frameset.stamp_ns for f in core.flush(stamps[-1] if stamps else 0)]
    assert core.rejected() == {}
    return stamps


class _Uri(list):
    uri = ""


def _hour_crossing_packets(loops: int = 3) -> tuple[list[bytes], list[int]]:
    """The capture looped ``loops`` times, re-stamped to start 0.6 s before the top of the hour."""
    payloads, offsets, loop_us = capture()
    start = 3_600_000_000 - 600_000
    out, off = [], []
    for k in range(loops):
        for p, o in zip(payloads, offsets, strict=True):
            out.append(restamp(p, start + k * loop_us + int(o)))
            off.append(k * loop_us + int(o))
    return out, off


def _check_continuous(msgs, stamps) -> None:
    raw = np.array([m.raw_stamp_ns for m in msgs])
    assert (np.diff(raw) < -HOUR_NS // 2).sum() == 1  # the sweeps' raw stamps do wrap at the hour
    d = np.diff(stamps)
    assert len(stamps) == len(msgs) and d.min() > 40 * MS and d.max() < 160 * MS
    for m in msgs:  # the sweep across the top of the hour keeps its per-point times
        t = m.payload.column(POINT_TIME_FIELD)
        assert t.max() == 0 and t.min() > -110 * MS


def test_velodyne_over_udp_crossing_the_top_of_the_hour_maps_continuously():
    """1.6 s of the capture at its packet timing, stamped from 0.6 s before the top of the hour."""
    src = open_velodyne("velodyne://127.0.0.1:0?model=VLP32C&cut=180&sensor_id=lidar_top")
    sender = LoopedVelodyne(src.address[1], start_us=3_600_000_000 - 600_000).start()
    msgs = _Uri()
    try:
        deadline = time.monotonic() + 20
        while len(msgs) < 16 and time.monotonic() < deadline:
            m = src.read(0.5)
            if m is not None:
                msgs.append(m)
    finally:
        sender.stop()
        src.close()
    msgs.uri = "velodyne://127.0.0.1:0"
    _check_continuous(msgs, _mapped_frames(msgs))


def _write_pcap(path: Path, packets: list[bytes], times_ns: list[int]) -> None:
    """A classic pcap (ns resolution, Ethernet/IPv4/UDP to port 2368) of ``packets`` at ``times_ns``."""
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for p, t in zip(packets, times_ns, strict=True):
        udp = struct.pack(">HHHH", 2368, 2368, 8 + len(p), 0) + p
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), bytes(4)) + udp
        frame = bytes(12) + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", t // NS, t % NS, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_velodyne_pcap_crossing_the_top_of_the_hour_maps_continuously(tmp_path):
    packets, offsets = _hour_crossing_packets()
    top = 1_713_495_600 * NS  # a top of the hour, UTC; the recorder's clock is 0.3 s ahead of the sensor's
    times = [top - 600 * MS + 300 * MS + o * 1000 for o in offsets]
    _write_pcap(tmp_path / "hour.pcap", packets, times)
    uri = f"pcap://{tmp_path / 'hour.pcap'}?model=VLP32C&cut=180&sensor_id=lidar_top"
    msgs = _Uri(open_velodyne(uri))
    msgs.uri = uri
    _check_continuous(msgs, _mapped_frames(msgs))
    # a pcap keeps absolute time: stamp = the last firing with the hour from the record time
    assert all(abs(m.recv_ns - m.stamp_ns - 300 * MS) < 2 * MS for m in msgs)


def test_the_kit_gives_velodyne_sources_the_hour_wrap(tmp_path):
    (tmp_path / "k.yaml").write_text(yaml.safe_dump({"version": 1, "name": "k", "sensors": [
        {"id": "l", "kind": "lidar", "source": "velodyne://0.0.0.0:2368?model=VLP32C", "rate_hz": 10},
        {"id": "p", "kind": "lidar", "source": "pcap://x.pcap?model=VLP32C", "rate_hz": 10, "clock": "gps"},
        {"id": "r", "kind": "radar", "source": "ti-mmwave-file://x", "rate_hz": 20, "clock_wrap_s": 21.47},
        {"id": "c", "kind": "camera", "source": "v4l2:///dev/video0", "rate_hz": 30, "clock": "host"},
    ]}))  # fmt: skip
    core = FrameCore(load_kit(tmp_path / "k.yaml"), None, PipelineConfig())
    est = core.mapper.estimators
    assert est["l"].wrap_ns == est["p"].wrap_ns == HOUR_NS and est["r"].wrap_ns == 21_470_000_000
    assert est["c"].wrap_ns is None and est["c"].passthrough
    assert not est["p"].passthrough  # GPS time is another domain than the host clock: mapped


# ---------------------------------------------------------------- receive stamps


def test_udp_receive_stamps_are_kernel_times_on_the_host_monotonic_clock():
    assert kernel_receive_ns(1_000_000, 1_250_000, 90_000_000) == 89_750_000
    assert kernel_receive_ns(2 * NS, 1 * NS, 5 * NS) is None  # from the future: the wall clock stepped
    assert kernel_receive_ns(0, 2 * NS, 5 * NS) is None  # too old to trust
    payloads = [p for _, p in read_udp_payloads(PCAP, 2368)][:160]
    src = open_velodyne("velodyne://127.0.0.1:0?model=VLP32C&cut=180&timeout=0.3")
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    before = time.monotonic_ns()
    try:
        for p in payloads:
            tx.sendto(p, src.address)
        time.sleep(0.3)  # the packets wait in the socket: their kernel stamps are from before this
        middle = time.monotonic_ns()
        msgs = list(src)
    finally:
        tx.close()
        src.close()
    assert msgs and "kernel_stamp_unused" not in src.stats.counts
    assert all(before <= m.recv_ns < middle for m in msgs)


# ---------------------------------------------------------------- interface down and up


NETNS_SCRIPT = r"""
import socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from edgefuse.adapters.velodyne import open_velodyne
from edgefuse.adapters.velodyne.pcap import read_udp_payloads

def ip(*a):
    subprocess.run(["ip", *a], check=True)

payloads = [p for _, p in read_udp_payloads(sys.argv[2], 2368)]
ip("link", "set", "lo", "up")
# the lidar's address is not up yet when the source opens: it binds once the address appears
src = open_velodyne("velodyne://10.9.9.1:2368?model=VLP32C&cut=180")
ip("addr", "add", "10.9.9.1/32", "dev", "lo")
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

def burst():
    sent = 0
    for p in payloads:
        try:
            tx.sendto(p, ("10.9.9.1", 2368))
            sent += 1
        except OSError:
            pass
        time.sleep(0.0003)
    return sent

def sweeps(timeout):
    n, t = 0, time.monotonic()
    while time.monotonic() - t < timeout:
        if src.read(0.2) is not None:
            n += 1
    return n

deadline = time.monotonic() + 10
while src.sock is None and time.monotonic() < deadline:
    time.sleep(0.05)
first = burst(); a = sweeps(1.0)
ip("link", "set", "lo", "down")
down = burst(); b = sweeps(0.6)
ip("link", "set", "lo", "up")
ip("addr", "del", "10.9.9.1/32", "dev", "lo")
ip("addr", "add", "10.9.9.1/32", "dev", "lo")
again = burst(); c = sweeps(1.0)
src.close()
print(first, a, down, b, again, c, src.stats.counts.get("rebinds", 0))
"""


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None, reason="no unshare/ip")
def test_udp_source_survives_its_interface_going_down_and_up(tmp_path):
    """In a network namespace of its own (``unshare -rn``, no privileges needed): the source opens before
    its address exists and binds when it appears; the interface goes down (nothing arrives) and up, the
    address is removed and added again: sweeps come again, from the same source object."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -rn not permitted here: {probe.stderr.decode().strip()}")
    script = tmp_path / "netns.py"
    script.write_text(NETNS_SCRIPT)
    repo = str(Path(__file__).resolve().parents[1])
    p = subprocess.run(["unshare", "-rn", sys.executable, str(script), repo, str(PCAP)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    first, a, down, b, again, c, rebinds = map(int, p.stdout.split())
    assert first == 379  # the capture's packets, all sent while the interface is up
    assert a >= 4  # 5 scans → 5 sweeps with the cut in the field-of-view gap (the last waits for more)
    assert b == 0  # down: nothing arrives (sending to a down loopback does not fail, it is just lost)
    assert again > 300 and c >= 4  # back: the same source decodes again
    assert rebinds == 1  # the bind that waited for the address
