"""TI mmWave SDK ``.cfg`` files: parse the chirp configuration, send it over the config (CLI) port.

A ``.cfg`` file is the list of CLI commands the mmWave SDK demo accepts on its config UART (115200 baud),
one per line, ``%`` starting a comment. :func:`parse_cfg` reads the commands the decoder needs
(``profileCfg``, ``chirpCfg``, ``frameCfg``, ``channelCfg``) into a :class:`ChirpConfig` with the derived
radar parameters; :func:`send_cfg` sends every command and checks the radar's answer.

Command fields used (SDK 2.x/3.x CLI, ``mmwave_sdk_user_guide``)::

    profileCfg  profileId startFreq[GHz] idleTime[us] adcStartTime[us] rampEndTime[us] txOutPower
                txPhaseShifter freqSlopeConst[MHz/us] txStartTime[us] numAdcSamples digOutSampleRate[ksps]
                hpfCornerFreq1 hpfCornerFreq2 rxGain
    chirpCfg    chirpStartIdx chirpEndIdx profileId startFreqVar freqSlopeVar idleTimeVar adcStartTimeVar
                txEnableMask
    frameCfg    chirpStartIdx chirpEndIdx numLoops numFrames framePeriodicity[ms] triggerSelect
                frameTriggerDelay[ms]
    channelCfg  rxChannelEn txChannelEn cascading

Advanced frames (``advFrameCfg``/``subFrameCfg``, ``dfeDataOutputMode 3``) are not parsed: such a file
raises :class:`CfgError`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgefuse.errors import InputError

#: Speed of light as the mmWave SDK firmware and TI's visualizer use it (m/s). Using the exact
#: 299 792 458 m/s would make our doppler differ from the sensor's own 3.x output by 0.07 %.
SPEED_OF_LIGHT_MPS = 3.0e8


class CfgError(InputError):
    """A ``.cfg`` file is malformed, or the radar refused one of its commands."""


@dataclass(frozen=True)
class ChirpConfig:
    """The chirp and frame configuration of one (legacy, non-advanced) frame, from a ``.cfg`` file.

    Raw values keep the CLI units (GHz, µs, MHz/µs, ksps, ms). The derived properties follow TI's
    mmWave SDK demo and visualizer (``c`` = :data:`SPEED_OF_LIGHT_MPS`, ``Fs`` = sample rate in Hz,
    ``S`` = slope in Hz/s, ``Tc`` = idle + ramp-end time in s, ``f0`` = start frequency in Hz)."""

    name: str
    start_freq_ghz: float
    idle_time_us: float
    adc_start_time_us: float
    ramp_end_time_us: float
    freq_slope_mhz_per_us: float
    num_adc_samples: int
    sample_rate_ksps: float
    chirp_start_idx: int
    chirp_end_idx: int
    num_loops: int
    frame_period_ms: float
    rx_mask: int
    tx_mask: int
    commands: tuple[tuple[int, str], ...] = ()  # (1-based line number, command line) to send

    @property
    def num_tx(self) -> int:
        """TX antennas time-multiplexed in one loop (TDM-MIMO) = chirps per loop
        (``chirpEndIdx − chirpStartIdx + 1`` of ``frameCfg``)."""
        return self.chirp_end_idx - self.chirp_start_idx + 1

    @property
    def num_rx(self) -> int:
        """Enabled RX channels (bits set in ``channelCfg``'s rxChannelEn)."""
        return bin(self.rx_mask).count("1")

    @property
    def num_range_bins(self) -> int:
        """Range FFT size: ``numAdcSamples`` rounded up to a power of two."""
        return _pow2_ceil(self.num_adc_samples)

    @property
    def num_doppler_bins(self) -> int:
        """Doppler FFT size: ``numLoops`` (chirps per TX) rounded up to a power of two."""
        return _pow2_ceil(self.num_loops)

    @property
    def range_resolution_m(self) -> float:
        """Physical range resolution ``c·Fs / (2·S·numAdcSamples)`` = c / (2 · sampled bandwidth), m."""
        return SPEED_OF_LIGHT_MPS * self._fs_hz / (2.0 * self._slope_hz_per_s * self.num_adc_samples)

    @property
    def range_bin_m(self) -> float:
        """Metres per range index (what SDK 2.x ``rangeIdx`` counts): ``c·Fs / (2·S·numRangeBins)``."""
        return SPEED_OF_LIGHT_MPS * self._fs_hz / (2.0 * self._slope_hz_per_s * self.num_range_bins)

    @property
    def doppler_resolution_mps(self) -> float:
        """Radial velocity per doppler index (m/s): ``c / (2·f0·Tc·numDopplerBins·numTx)``."""
        return SPEED_OF_LIGHT_MPS / (
            2.0 * self.start_freq_ghz * 1e9 * self._chirp_time_s * self.num_doppler_bins * self.num_tx
        )

    @property
    def max_range_m(self) -> float:
        """Maximum range with the complex-baseband IF filter (90 % of Fs usable): ``0.9·c·Fs / (2·S)``."""
        return 0.9 * SPEED_OF_LIGHT_MPS * self._fs_hz / (2.0 * self._slope_hz_per_s)

    @property
    def max_velocity_mps(self) -> float:
        """Maximum unambiguous radial velocity (m/s): ``c / (4·f0·Tc·numTx)``."""
        return SPEED_OF_LIGHT_MPS / (4.0 * self.start_freq_ghz * 1e9 * self._chirp_time_s * self.num_tx)

    @property
    def frame_period_ns(self) -> int:
        return int(round(self.frame_period_ms * 1e6))

    @property
    def _fs_hz(self) -> float:
        return self.sample_rate_ksps * 1e3

    @property
    def _slope_hz_per_s(self) -> float:
        return self.freq_slope_mhz_per_us * 1e12

    @property
    def _chirp_time_s(self) -> float:
        return (self.idle_time_us + self.ramp_end_time_us) * 1e-6


def _pow2_ceil(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n))) if n > 0 else 1


# (command, minimum number of arguments, names of the arguments we read, by position)
_FIELDS = {
    "profileCfg": (
        14,
        (
            "profileId",
            "startFreq",
            "idleTime",
            "adcStartTime",
            "rampEndTime",
            "txOutPower",
            "txPhaseShifter",
            "freqSlopeConst",
            "txStartTime",
            "numAdcSamples",
            "digOutSampleRate",
        ),
    ),
    "chirpCfg": (8, ("chirpStartIdx", "chirpEndIdx", "profileId")),
    "frameCfg": (7, ("chirpStartIdx", "chirpEndIdx", "numLoops", "numFrames", "framePeriodicity")),
    "channelCfg": (3, ("rxChannelEn", "txChannelEn")),
}


def cfg_commands(text: str) -> list[tuple[int, str]]:
    """The commands of a ``.cfg`` text: ``(line number from 1, stripped line)``, comments (``%``) and
    blank lines left out."""
    out = []
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("%", 1)[0].strip()
        if line:
            out.append((i, line))
    return out


def parse_cfg(text: str, name: str = "<cfg>") -> ChirpConfig:
    """Parse a ``.cfg`` text (``name`` is used in errors) into a :class:`ChirpConfig`.

    Raises :class:`CfgError` naming the file, the line, the command and the field that is wrong, or
    the command that is missing."""
    commands = cfg_commands(text)
    parsed: dict[str, list[tuple[int, list[float]]]] = {}
    for lineno, line in commands:
        tokens = line.split()
        cmd = tokens[0]
        if cmd in ("advFrameCfg", "subFrameCfg"):
            raise CfgError(
                f"{name}:{lineno}: {cmd}: advanced frame configurations are not supported; "
                "expected a legacy frameCfg"
            )
        if cmd not in _FIELDS:
            continue
        min_args, names = _FIELDS[cmd]
        args = tokens[1:]
        if len(args) < min_args:
            raise CfgError(f"{name}:{lineno}: {cmd}: expected {min_args} arguments, got {len(args)}")
        values = []
        for k, field in enumerate(names):
            try:
                v = float(args[k])
            except ValueError:
                raise CfgError(
                    f"{name}:{lineno}: {cmd}: argument {k + 1} ({field}): expected a number, got {args[k]!r}"
                ) from None
            if not math.isfinite(v):
                raise CfgError(
                    f"{name}:{lineno}: {cmd}: argument {k + 1} ({field}): expected a finite "
                    f"number, got {args[k]!r}"
                )
            values.append(v)
        parsed.setdefault(cmd, []).append((lineno, values))

    for cmd in ("profileCfg", "frameCfg", "channelCfg"):
        if cmd not in parsed:
            raise CfgError(f"{name}: missing command {cmd}: expected one line starting with {cmd!r}")

    f_line, frame = parsed["frameCfg"][-1]
    chirp_start, chirp_end, num_loops, _, period = frame
    if not (0 <= chirp_start <= chirp_end) or num_loops < 1:
        raise CfgError(
            f"{name}:{f_line}: frameCfg: expected 0 <= chirpStartIdx <= chirpEndIdx and "
            f"numLoops >= 1, got {chirp_start:g} {chirp_end:g} {num_loops:g}"
        )
    # the profile used by the frame's first chirp; a file with one profile needs no chirpCfg to say so
    profiles = {int(v[0]): (ln, v) for ln, v in parsed["profileCfg"]}
    profile_id = None
    for _, (c0, c1, pid) in parsed.get("chirpCfg", []):
        if c0 <= chirp_start <= c1:
            profile_id = int(pid)
    if profile_id is None:
        if len(profiles) != 1:
            raise CfgError(
                f"{name}:{f_line}: frameCfg: no chirpCfg covers chirp {chirp_start:g}, so the "
                f"profile is ambiguous among profileCfg ids {sorted(profiles)}"
            )
        profile_id = next(iter(profiles))
    if profile_id not in profiles:
        raise CfgError(
            f"{name}: chirpCfg: refers to profile {profile_id}, expected one of {sorted(profiles)}"
        )
    p_line, p = profiles[profile_id]
    _, f0, idle, adc_start, ramp_end, _, _, slope, _, n_adc, fs = p
    for field, v in (
        ("startFreq", f0),
        ("freqSlopeConst", slope),
        ("numAdcSamples", n_adc),
        ("digOutSampleRate", fs),
        ("rampEndTime", ramp_end),
    ):
        if v <= 0:
            raise CfgError(f"{name}:{p_line}: profileCfg: {field}: expected a positive value, got {v:g}")
    _, channel = parsed["channelCfg"][-1]
    return ChirpConfig(
        name=name,
        start_freq_ghz=f0,
        idle_time_us=idle,
        adc_start_time_us=adc_start,
        ramp_end_time_us=ramp_end,
        freq_slope_mhz_per_us=slope,
        num_adc_samples=int(n_adc),
        sample_rate_ksps=fs,
        chirp_start_idx=int(chirp_start),
        chirp_end_idx=int(chirp_end),
        num_loops=int(num_loops),
        frame_period_ms=period,
        rx_mask=int(channel[0]),
        tx_mask=int(channel[1]),
        commands=tuple(commands),
    )


def load_cfg(path: str | os.PathLike) -> ChirpConfig:
    """Read and parse a ``.cfg`` file (errors name the path)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise CfgError(f"{p}: no such cfg file") from None
    except IsADirectoryError:
        raise CfgError(f"{p}: expected a .cfg file, got a directory") from None
    return parse_cfg(text, str(p))


# ---------------------------------------------------------------- config port


class SerialLike(Protocol):
    """What :func:`send_cfg` needs of a port (a ``serial.Serial`` with a read timeout set)."""

    def write(self, data: bytes) -> int | None: ...

    def readline(self) -> bytes: ...


_REFUSED = ("error", "not recognized", "invalid usage")


def send_cfg(
    port: SerialLike,
    cfg: ChirpConfig,
    port_name: str = "config port",
    timeout_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Send each command of ``cfg`` to the radar's CLI port and wait for its ``Done``.

    The SDK's CLI echoes each command, may print informational lines, and ends with ``Done`` on success
    or a line with ``Error`` / ``not recognized`` / ``Invalid usage`` on failure. ``port.readline`` must
    return within the port's read timeout (``b""`` when nothing came). Returns every line the radar
    printed. Raises :class:`CfgError` naming the cfg file, the line number and the refused command
    (with the radar's answer), or naming the port when no answer comes within ``timeout_s``."""
    replies: list[str] = []
    for lineno, command in cfg.commands:
        port.write(command.encode("ascii", errors="replace") + b"\n")
        deadline = clock() + timeout_s
        got: list[str] = []
        pending = b""
        while True:
            chunk = port.readline()
            if chunk:
                pending += chunk
                parts = pending.replace(b"\r", b"\n").split(b"\n")
                pending = parts.pop()  # an unterminated tail waits for more
                lines = [p.decode("ascii", errors="replace").strip() for p in parts]
                lines = [ln for ln in lines if ln]
                got.extend(lines)
                status = _status(lines, command)
                if status == "done":
                    break
                if status == "refused":
                    raise CfgError(
                        f"{cfg.name}:{lineno}: the radar refused {command!r}: " + " | ".join(got[-3:])
                    )
            if clock() > deadline:
                raise CfgError(
                    f"{port_name}: no 'Done' within {timeout_s:g} s after {cfg.name}:{lineno} "
                    f"{command!r} (got {got[-3:]})"
                )
        replies.extend(got)
    return replies


def _status(lines: list[str], command: str) -> str | None:
    for ln in lines:
        body = ln.split(":/>", 1)[-1].strip()  # drop a "mmwDemo:/>" prompt
        if body == command:
            continue  # the echo
        low = body.lower()
        if any(word in low for word in _REFUSED):
            return "refused"
        if body == "Done" or body.startswith("Done"):
            return "done"
    return None
