"""TI mmWave .cfg parsing (derived values checked against hand computation) and the config-port driver
against a fake radar CLI on a real pty pair."""

from __future__ import annotations

import os
import pty
import threading
import tty
from pathlib import Path

import pytest
import serial

from edgefuse.adapters.ti_mmwave import CfgError, load_cfg, parse_cfg, send_cfg
from edgefuse.errors import InputError

DATA = Path(__file__).parent / "data" / "ti_mmwave"
IWR6843 = DATA / "iwr6843_3tx.cfg"


def test_iwr6843_profile_against_hand_computation():
    c = load_cfg(IWR6843)
    # the numbers below are worked out by hand in the comment block of the cfg file
    assert (c.num_tx, c.num_rx, c.num_loops) == (3, 4, 32)
    assert (c.num_adc_samples, c.num_range_bins, c.num_doppler_bins) == (200, 256, 32)
    assert c.range_bin_m == pytest.approx(0.05859375, rel=1e-12)
    assert c.range_resolution_m == pytest.approx(0.075, rel=1e-12)
    assert c.max_range_m == pytest.approx(13.5, rel=1e-12)
    assert c.doppler_resolution_mps == pytest.approx(0.388681592039801, rel=1e-12)
    assert c.max_velocity_mps == pytest.approx(6.218905472636816, rel=1e-12)
    # the Doppler spectrum spans ±v_max: bins × resolution = 2 v_max
    assert c.num_doppler_bins * c.doppler_resolution_mps == pytest.approx(2 * c.max_velocity_mps)
    assert c.frame_period_ns == 100_000_000
    assert c.commands[0] == (10, "sensorStop") and c.commands[-1][1] == "sensorStart"
    assert all(not line.startswith("%") for _, line in c.commands)


def test_xwr16xx_profile_and_power_of_two_rounding():
    c = load_cfg(DATA / "xwr16xx_2tx.cfg")
    assert c.doppler_resolution_mps == pytest.approx(3e8 / (2 * 77e9 * 65e-6 * 16 * 2), rel=1e-12)
    assert c.range_bin_m == pytest.approx(0.047392003676470, rel=1e-12)
    text = "profileCfg 0 77 7 7 58 0 0 68 1 100 5500 0 0 30\nframeCfg 0 0 24 0 50 1 0\nchannelCfg 1 1 0\n"
    c = parse_cfg(text, "one-tx.cfg")
    assert (c.num_tx, c.num_range_bins, c.num_doppler_bins, c.num_rx) == (1, 128, 32, 1)


@pytest.mark.parametrize(
    "text, match",
    [
        ("frameCfg 0 0 16 0 50 1 0\nchannelCfg 15 1 0\n", r"bad\.cfg: missing command profileCfg"),
        ("profileCfg 0 77 7 x 58 0 0 68 1 256 5500 0 0 30\nframeCfg 0 0 16 0 50 1 0\nchannelCfg 1 1 0\n",
         r"bad\.cfg:1: profileCfg: argument 4 \(adcStartTime\): expected a number, got 'x'"),
        ("% c\nprofileCfg 0 77 7\n", r"bad\.cfg:2: profileCfg: expected 14 arguments, got 3"),
        ("profileCfg 0 77 7 7 58 0 0 0 1 256 5500 0 0 30\nframeCfg 0 0 16 0 50 1 0\nchannelCfg 1 1 0\n",
         r"bad\.cfg:1: profileCfg: freqSlopeConst: expected a positive value"),
        ("profileCfg 0 77 7 7 58 0 0 68 1 256 5500 0 0 30\nframeCfg 2 1 16 0 50 1 0\nchannelCfg 1 1 0\n",
         r"bad\.cfg:2: frameCfg: expected 0 <= chirpStartIdx <= chirpEndIdx"),
        ("advFrameCfg 2 0 0 1 0\n", r"bad\.cfg:1: advFrameCfg: advanced frame"),
    ],
)
def test_bad_cfg_names_file_line_and_field(text, match):
    with pytest.raises(CfgError, match=match) as e:
        parse_cfg(text, "bad.cfg")
    assert isinstance(e.value, InputError)


def test_missing_cfg_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such cfg file"):
        load_cfg(tmp_path / "nope.cfg")


# ---------------------------------------------------------------- config port over a pty


class FakeCli:
    """The radar's CLI UART on the master side of a pty: echoes each command, prints an info line
    for sensorStop, then ``Done`` — or refuses the commands named in ``refuse`` / stays silent on
    those in ``mute``."""

    def __init__(self, refuse=(), mute=()):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.refuse, self.mute = set(refuse), set(mute)
        self.received: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        pending = b""
        while not self._stop.is_set():
            try:
                chunk = os.read(self.master, 1024)
            except OSError:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                cmd = line.decode().strip()
                if not cmd:
                    continue
                self.received.append(cmd)
                name = cmd.split()[0]
                if name in self.mute:
                    continue
                reply = f"{cmd}\r\n"
                if name == "sensorStop":
                    reply += "Ignored: Sensor is already stopped\r\n"
                if name in self.refuse:
                    reply += "Error -1\r\n"
                elif name == "bogus":
                    reply += f"'{cmd}' is not recognized as a CLI command\r\n"
                else:
                    reply += "Done\r\n"
                try:
                    os.write(self.master, (reply + "\nmmwDemo:/>").encode())
                except OSError:
                    return

    def close(self):
        self._stop.set()
        os.close(self.slave)  # the fake's read on the master then fails and its thread ends
        self._thread.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def fake_cli(request):
    clis = []

    def make(**kw):
        clis.append(FakeCli(**kw))
        return clis[-1]

    yield make
    for c in clis:
        c.close()


def test_send_cfg_waits_for_each_done(fake_cli):
    cli = fake_cli()
    cfg = load_cfg(IWR6843)
    with serial.Serial(cli.port, 115200, timeout=0.05) as port:
        replies = send_cfg(port, cfg, cli.port, timeout_s=5)
    assert cli.received == [line for _, line in cfg.commands]
    assert replies.count("Done") == len(cfg.commands)


def test_refused_command_names_file_line_and_command(fake_cli):
    cli = fake_cli(refuse={"cfarCfg"})
    cfg = load_cfg(IWR6843)
    with serial.Serial(cli.port, 115200, timeout=0.05) as port, pytest.raises(CfgError) as e:
        send_cfg(port, cfg, cli.port, timeout_s=5)
    msg = str(e.value)
    assert f"{IWR6843}:23:" in msg and "cfarCfg -1 0 2 8 4 3 0 15 1" in msg and "Error -1" in msg
    assert cli.received[-1].startswith("cfarCfg")  # nothing sent after the refused line


def test_unknown_command_and_silence(fake_cli):
    cfg = parse_cfg("sensorStop\nbogus 1 2\nprofileCfg 0 60 7 6 60 0 0 50 1 200 5000 0 0 30\n"
                    "frameCfg 0 0 16 0 50 1 0\nchannelCfg 1 1 0\n", "t.cfg")
    cli = fake_cli()
    with serial.Serial(cli.port, 115200, timeout=0.05) as port:
        with pytest.raises(CfgError, match=r"t\.cfg:2: .*bogus.*not recognized"):
            send_cfg(port, cfg, cli.port, timeout_s=5)
    cli = fake_cli(mute={"bogus"})
    with serial.Serial(cli.port, 115200, timeout=0.05) as port:
        with pytest.raises(CfgError, match=r"no 'Done' within 0\.3 s after t\.cfg:2 'bogus 1 2'"):
            send_cfg(port, cfg, cli.port, timeout_s=0.3)
