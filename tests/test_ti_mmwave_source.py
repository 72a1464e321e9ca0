"""TI mmWave sources: the hand-made captures through ``ti-mmwave-file://``, and a fake radar on real pty
pairs (CLI + data port) through ``ti-mmwave://`` decoding to the same arrays as the file path."""

from __future__ import annotations

import json
import os
import pty
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from edgefuse.adapters.base import Backoff
from edgefuse.adapters.ti_mmwave import (
    CfgError,
    RadarFrame,
    encode_frame,
    load_cfg,
    open_ti_mmwave,
    parse_uri,
)
from edgefuse.adapters.ti_mmwave.source import SensorClock, TiMmwaveSerialSource
from edgefuse.errors import InputError
from edgefuse.types import Message, RadarScan

DATA = Path(__file__).parent / "data" / "ti_mmwave"
EXPECTED = json.loads((DATA / "expected.json").read_text())
CFG_3X = DATA / "iwr6843_3tx.cfg"
CFG_2X = DATA / "xwr16xx_2tx.cfg"


def _nan(v):
    return np.array([np.nan if x is None else x for x in v], dtype=np.float64)


# ---------------------------------------------------------------- files


def test_file_capture_3x_matches_hand_built_expectation():
    exp = EXPECTED["capture_3x.dat"]
    src = open_ti_mmwave(f"ti-mmwave-file://{DATA / 'capture_3x.dat'}", sensor_id="front_radar")
    msgs = list(src)
    assert len(msgs) == len(exp["frames"])
    for seq, (m, e) in enumerate(zip(msgs, exp["frames"], strict=True)):
        assert isinstance(m, Message) and isinstance(m.payload, RadarScan)
        assert (m.sensor_id, m.seq, m.raw_stamp_ns) == ("front_radar", seq, e["raw_stamp_ns"])
        assert m.stamp_ns == m.recv_ns == m.raw_stamp_ns  # a file has no host time
        scan = m.payload
        assert scan.fields == ("x", "y", "z", "doppler", "snr", "noise")
        np.testing.assert_allclose(scan.xyz, np.array(e["xyz"]).reshape(-1, 3), rtol=0, atol=0)
        np.testing.assert_array_equal(scan.column("doppler"), e["doppler"])
        np.testing.assert_allclose(scan.column("snr"), _nan(e["snr"]), rtol=1e-6)
        np.testing.assert_allclose(scan.column("noise"), _nan(e["noise"]), rtol=1e-6)
    s = src.stats
    assert s["garbage_bytes"] == exp["garbage_bytes"]
    assert s["skip_truncated"] == exp["truncated"] and s["skipped_bytes"] == exp["truncated_bytes"]
    assert s["frames_missing"] == 1  # frame 11 was the truncated one


def test_file_capture_2x_with_and_without_cfg():
    exp = EXPECTED["capture_2x.dat"]
    with_cfg = list(open_ti_mmwave(f"ti-mmwave-file://{DATA / 'capture_2x.dat'}?cfg={CFG_2X}"))
    for m, e in zip(with_cfg, exp["frames"], strict=True):
        np.testing.assert_array_equal(m.payload.xyz, e["xyz"])
        np.testing.assert_allclose(m.payload.column("doppler"),
                                   np.array(e["doppler_idx"]) * exp["doppler_resolution_mps"], rtol=1e-6)
        np.testing.assert_array_equal(m.payload.column("peak"), e["peak"])
        assert m.raw_stamp_ns == e["raw_stamp_ns"]
    with pytest.warns(UserWarning, match="doppler is NaN"):
        without = list(open_ti_mmwave(f"ti-mmwave-file://{DATA / 'capture_2x.dat'}"))
    assert all(np.isnan(m.payload.column("doppler")).all() for m in without)


def test_relative_paths_resolve_against_base_dir_or_cwd(monkeypatch):
    uri = "ti-mmwave-file://capture_2x.dat?cfg=xwr16xx_2tx.cfg"
    assert not np.isnan(list(open_ti_mmwave(uri, base_dir=DATA))[0].payload.column("doppler")).any()
    monkeypatch.chdir(DATA)
    assert len(list(open_ti_mmwave("ti-mmwave-file://capture_3x.dat"))) == 3


@pytest.mark.parametrize(
    "uri, match",
    [
        ("ti-mmwave:///dev/ttyUSB0", "parameter data: expected the data port"),
        ("ti-mmwave:///dev/ttyUSB0?data=/dev/ttyUSB1&baud=fast", "parameter baud: expected a int"),
        ("ti-mmwave:///dev/ttyUSB0?data=/dev/ttyUSB1&bauds=9600", "parameter 'bauds': expected one of"),
        ("ti-mmwave-file://", "path: expected a file"),
        ("ti-mmwave-file://x.dat?data=/dev/ttyUSB1", "parameter 'data'"),
        ("ti-radar://x", "scheme: expected"),
    ],
)
def test_bad_uris_are_named(uri, match):
    with pytest.raises(InputError, match=match) as e:
        parse_uri(uri)
    assert uri in str(e.value)


def test_missing_capture_and_missing_cfg(tmp_path):
    with pytest.raises(InputError, match="nope.dat"):
        open_ti_mmwave(f"ti-mmwave-file://{tmp_path}/nope.dat")
    with pytest.raises(InputError, match="no such cfg file"):
        open_ti_mmwave(f"ti-mmwave-file://{DATA / 'capture_3x.dat'}?cfg={tmp_path}/none.cfg")


def _frame(cycles: int, version: int = 0x03050004, platform: int = 0xA6843) -> RadarFrame:
    e = np.zeros(0, np.float32)
    return RadarFrame("3.x", version, platform, 0, cycles, 0, 0, e, e, e, e, e, e)


def test_sensor_clock_unwraps_with_and_without_host_time():
    hz = 200_000_000  # SDK 3.x: R4F
    c0 = 4_000_000_000
    pause = 30 * hz  # longer than one wrap period (2^32 / 200 MHz = 21.47 s)
    c1 = (c0 + pause) % 2**32
    live = SensorClock()
    assert live.to_ns(_frame(c0), recv_ns=10**12) == c0 * 5
    assert live.to_ns(_frame(c1), recv_ns=10**12 + 30 * 10**9 + 3_000_000) == (c0 + pause) * 5
    c2 = c1 + 20_000_000
    assert live.to_ns(_frame(c2), recv_ns=10**12 + 30_100_000_000) == (c0 + pause + 20_000_000) * 5
    replay = SensorClock()  # no host time: one wrap at most
    replay.to_ns(_frame(c0))
    assert replay.to_ns(_frame(c1)) == (c0 + pause - 2**32) * 5
    dsp = SensorClock()  # SDK 2.x on xWR16xx stamps with the 600 MHz DSP
    assert dsp.to_ns(_frame(600_000_000, version=0x02010004, platform=0xA1642)) == 10**9
    assert SensorClock(hz=100).to_ns(_frame(7)) == 70_000_000


# ---------------------------------------------------------------- live, over pty pairs


class FakeRadar:
    """Both UARTs of a radar on pty masters: the CLI answers ``Done`` (``Error -1`` to commands named
    in ``refuse``); ``send`` writes
    bytes to the data port in uneven pieces from a thread."""

    def __init__(self):
        self.cli_master, self.cli_slave = pty.openpty()
        self.data_master, self.data_slave = pty.openpty()
        for fd in (self.cli_slave, self.data_slave):
            tty.setraw(fd)
        self.cli_port, self.data_port = os.ttyname(self.cli_slave), os.ttyname(self.data_slave)
        self.commands: list[str] = []
        self.refuse: set[str] = set()
        self._threads = [threading.Thread(target=self._cli, daemon=True)]
        self._threads[0].start()

    def _cli(self):
        pending = b""
        while True:
            try:
                pending += os.read(self.cli_master, 1024)
            except OSError:
                return
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                cmd = line.decode().strip()
                self.commands.append(cmd)
                answer = "Error -1" if cmd.split()[0] in self.refuse else "Done"
                try:
                    os.write(self.cli_master, f"{cmd}\r\n{answer}\r\nmmwDemo:/>".encode())
                except OSError:
                    return

    def send(self, data: bytes, seed: int = 0) -> threading.Thread:
        def run():
            rng = np.random.default_rng(seed)
            pos = 0
            while pos < len(data):
                n = int(rng.integers(1, 700))
                try:
                    os.write(self.data_master, data[pos : pos + n])
                except OSError:
                    return
                pos += n

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def unplug(self):
        """The device vanishes (USB unplugged): masters first, so reads on the ports fail at once."""
        for fd in (self.cli_master, self.data_master, self.cli_slave, self.data_slave):
            _close(fd)
        self.cli_master = self.data_master = self.cli_slave = self.data_slave = -1  # numbers get reused
        for t in self._threads:
            t.join(timeout=5)

    def close(self):
        # slaves first: the fake's reads on the masters then fail and its threads end
        for fd in (self.cli_slave, self.data_slave):
            _close(fd)
        for t in self._threads:
            t.join(timeout=5)
        for fd in (self.cli_master, self.data_master):
            _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@pytest.fixture
def radar():
    r = FakeRadar()
    yield r
    r.close()


def _stream(sdk: str, cfg_path: Path, n: int = 24) -> bytes:
    """Frames from the encoder with garbage and a truncated frame in between."""
    cfg = load_cfg(cfg_path)
    rng = np.random.default_rng(7)
    garbage = rng.integers(0, 256, 301, dtype=np.uint8).tobytes()
    parts = []
    for i in range(n):
        k = int(rng.integers(0, 30))
        pts = np.concatenate([rng.uniform(-15, 15, (k, 3)),
                              rng.integers(-8, 8, (k, 1)) * cfg.doppler_resolution_mps], axis=1)
        snr = (None, None)
        if sdk == "3.x":
            snr = (rng.integers(0, 400, k) / 10.0, rng.integers(200, 500, k) / 10.0)
        frame = encode_frame(pts, 100 + i, sdk=sdk, cfg=cfg, snr_db=snr[0], noise_db=snr[1],
                             time_cpu_cycles=(i * 20_000_000) % 2**32)
        if i == 5:
            frame = frame[: len(frame) // 2]  # cut short
        parts.append(frame)
        if i in (3, 11):
            parts.append(garbage)
    return b"".join(parts)


def _wait_for(cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _read(src, n: int) -> list[Message]:
    out = []
    while len(out) < n:
        m = src.read(timeout_s=10)
        assert m is not None, f"only {len(out)} of {n} messages arrived"
        out.append(m)
    return out


@pytest.mark.parametrize("sdk, cfg_path", [("3.x", CFG_3X), ("2.x", CFG_2X)])
def test_pty_stream_decodes_like_the_file(radar, tmp_path, sdk, cfg_path):
    data = _stream(sdk, cfg_path)
    capture = tmp_path / "capture.dat"
    capture.write_bytes(data)
    ref = list(open_ti_mmwave(f"ti-mmwave-file://{capture}?cfg={cfg_path}"))
    assert len(ref) == 23  # 24 frames, one truncated

    uri = f"ti-mmwave://{radar.cli_port}?data={radar.data_port}&cfg={cfg_path}&timeout=10"
    src = open_ti_mmwave(uri, sensor_id="radar")
    try:
        assert radar.commands == [line for _, line in load_cfg(cfg_path).commands]
        radar.send(data)
        live = _read(src, len(ref))
        stats = src.stats
    finally:
        src.close()
    for a, b in zip(live, ref, strict=True):
        assert a.payload.fields == b.payload.fields and a.seq == b.seq
        np.testing.assert_array_equal(a.payload.data, b.payload.data)
        assert a.raw_stamp_ns == b.raw_stamp_ns
        assert a.stamp_ns == a.recv_ns  # host receive time
    assert stats["garbage_bytes"] == 2 * 301
    assert stats["skip_truncated"] == 1 and stats["dropped_oldest"] == 0
    assert _wait_for(lambda: radar.commands[-1] == "sensorStop")  # sent on close


def test_full_queue_drops_oldest_and_counts(radar):
    frames = b"".join(encode_frame(np.ones((2, 4)), i) for i in range(6))
    src = open_ti_mmwave(f"ti-mmwave://{radar.cli_port}?data={radar.data_port}&queue=2")
    try:
        radar.send(frames).join()
        assert _wait_for(lambda: src.stats["frames"] == 6)
        got = [src.read(0.1), src.read(0.1)]
        assert [m.seq for m in got] == [4, 5]
        assert src.stats["dropped_oldest"] == 4
        assert src.read(0.05) is None
        assert radar.commands == []  # no cfg: nothing sent to the CLI port
    finally:
        src.close()


def test_random_bytes_over_the_serial_port_are_counted(radar):
    noise = np.random.default_rng(5).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    assert bytes.fromhex("0201040306050807") not in noise
    src = open_ti_mmwave(f"ti-mmwave://{radar.cli_port}?data={radar.data_port}")
    try:
        radar.send(noise + encode_frame(np.ones((3, 4)), 9)).join()
        m = src.read(10)
        assert m is not None and len(m.payload) == 3
        assert src.stats["garbage_bytes"] == len(noise) and src.stats["frames"] == 1
    finally:
        src.close()


def test_silence_and_a_lost_port_end_iteration_with_a_named_error(radar):
    src = open_ti_mmwave(f"ti-mmwave://{radar.cli_port}?data={radar.data_port}&timeout=0.2")
    try:
        with pytest.raises(InputError, match=f"{radar.data_port}: no frame within 0.2 s"):
            next(iter(src))
        radar.send(encode_frame(np.ones((1, 4)), 1)).join()
        it = iter(src)
        assert next(it).seq == 0
        os.close(radar.data_slave)  # the device goes away: reads on the port fail
        os.close(radar.data_master)
        radar.data_slave = radar.data_master = -1
        with pytest.raises(InputError, match=f"{radar.data_port}"):
            next(it)
    finally:
        src.close()


def test_refused_cfg_is_named_and_unopenable_port(radar):
    radar.refuse = {"clutterRemoval"}
    with pytest.raises(CfgError, match=rf"{CFG_3X}:26: the radar refused 'clutterRemoval -1 0': .*Error -1"):
        open_ti_mmwave(f"ti-mmwave://{radar.cli_port}?data={radar.data_port}&cfg={CFG_3X}")
    with pytest.raises(InputError, match="/dev/does-not-exist: cannot open the data port"):
        open_ti_mmwave(f"ti-mmwave://{radar.cli_port}?data=/dev/does-not-exist")


class _CountingBackoff(Backoff):
    """The adapters' own :class:`Backoff`, keeping the delays it gave."""

    def __init__(self):
        super().__init__(initial_s=0.05, factor=2.0, max_s=0.4)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        d = super().next_delay()
        self.delays.append(d)
        return d


def test_a_usb_hiccup_reconnects_with_backoff_and_sends_the_cfg_again(tmp_path):
    """The radar's two ports are reached by stable link names (as udev's /dev/serial/by-id/ links):
    both pty pairs go away (the XDS110 drops off USB), the source keeps trying with growing delays while
    nothing is there, the ports come back as new ptys behind the same links, and the source re-opens
    them, sends the cfg again and decodes frames again — one source, no restart."""
    radar = FakeRadar()
    cli_link, data_link = tmp_path / "cli", tmp_path / "data"
    cli_link.symlink_to(radar.cli_port)
    data_link.symlink_to(radar.data_port)
    backoff = _CountingBackoff()
    src = TiMmwaveSerialSource(str(cli_link), str(data_link), cfg=load_cfg(CFG_3X), sensor_id="radar",
                               backoff=backoff)  # fmt: skip
    src.start()
    n_cfg = len(load_cfg(CFG_3X).commands)
    try:
        radar.send(b"".join(encode_frame(np.ones((2, 4)), i, time_cpu_cycles=i * 10**7) for i in range(3)))
        assert [m.seq for m in _read(src, 3)] == [0, 1, 2]
        radar.unplug()  # both ports gone
        cli_link.unlink()
        data_link.unlink()
        assert _wait_for(lambda: src.stats["open_failures"] >= 3)  # retrying while nothing is there
        assert src.stats["outages"] == 1 and src.stats["reconnects"] == 0
        back = FakeRadar()  # plugged in again: new ptys behind the same names
        cli_link.symlink_to(back.cli_port)
        data_link.symlink_to(back.data_port)
        assert _wait_for(lambda: len(back.commands) >= n_cfg)  # the cfg went to the radar again
        frames = [encode_frame(np.ones((3, 4)), 10 + i, time_cpu_cycles=i * 10**7) for i in range(3)]
        back.send(b"".join(frames))
        again = _read(src, 3)
        assert [len(m.payload) for m in again] == [3, 3, 3] and [m.seq for m in again] == [3, 4, 5]
        st = src.stats
        assert st["outages"] == 1 and st["reconnects"] == 1 and st["serial_errors"] == 1
        failures = backoff.delays[: st["open_failures"]]
        assert failures[:3] == [0.05, 0.1, 0.2]  # exponential
        assert src.last_error is not None and "reconnect failed" in src.last_error
    finally:
        src.close()
        radar.close()
    assert _wait_for(lambda: back.commands[-1] == "sensorStop")  # sent on close, on the new port
    back.close()
