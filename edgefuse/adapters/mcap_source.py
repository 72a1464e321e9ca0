"""Logs and the simulator as sources: ``mcap://`` (an edgefuse MCAP log) and ``sim://`` (the built-in
simulated rig, live).

``mcap://LOG.mcap[?topic=/lidar_top/points][&topic=…][&rate=max|R]`` — the messages of the log's
edgefuse topics (all of them, or the ``topic`` ones) in log-time order, from
:class:`~edgefuse.logs.LogReader`. ``rate=max`` (default) as fast as they decode; ``rate=R`` paced by
:func:`~edgefuse.logs.replay` at R× real time (by receive stamps). The messages keep the log's three
stamps. ``mcap://rel/log.mcap`` is relative (to ``base_dir`` when given), ``mcap:///abs/log.mcap``
absolute. Damage the reader skips (corrupt chunks, undecodable messages) is counted in ``stats()`` as
``error.bad_chunk`` / ``error.bad_message`` / ``error.other``; a truncated log sets ``truncated``.

``sim://SCENARIO?seed=N[&sensor=ID[,ID…]][&duration=SEC][&rate=realtime|max][&<world param>=…]`` —
:func:`edgefuse.sim.run.sim_source`: messages released at their receive time on the host clock
(``rate=max``: no waiting), forever unless ``duration`` (simulated seconds) is given. Every other
query parameter is the simulator's own (``seed``, ``sensor``, world parameters).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from edgefuse.adapters.source import Source, SourceUriError
from edgefuse.errors import InputError
from edgefuse.types import Message

_KIND_OF_PAYLOAD = {
    "Image": "camera",
    "CompressedImage": "camera",
    "PointCloud": "lidar",
    "RadarScan": "radar",
    "Odometry": "odometry",
    "Imu": "imu",
    "Detections": "detections",
}


def _rate(uri: str, value: str) -> float | None:
    """``max`` → None (as fast as possible); a positive number → that rate."""
    if value == "max":
        return None
    try:
        r = float(value)
    except ValueError:
        r = float("nan")
    if not (r > 0 and r < float("inf")):
        raise SourceUriError(f"{uri}: rate: expected 'max' or a positive number, got {value!r}")
    return r


class McapSource(Source):
    """An MCAP log as a source (module doc). ``sleep`` and ``clock`` pace ``rate=R`` (injectable)."""

    live = False

    def __init__(
        self,
        uri: str,
        path: Path,
        topics: list[str] | None = None,
        rate: float | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        from edgefuse.logs import LogReader

        self.uri, self.path, self.rate = uri, path, rate
        if not path.is_file():
            raise SourceUriError(f"{uri}: path {path}: expected an existing MCAP log")
        self.reader = LogReader(path)
        known = self.reader.topics()
        data_topics = [t for t, info in known.items() if info.payload in _KIND_OF_PAYLOAD]
        for t in topics or []:
            if t not in data_topics:
                raise SourceUriError(f"{uri}: topic {t!r}: expected one of the log's topics {data_topics}")
        self.topics = list(topics) if topics else data_topics
        kinds = {_KIND_OF_PAYLOAD[known[t].payload] for t in self.topics}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"
        try:
            self.calibration = self.reader.calibration()
        except InputError:
            self.calibration = None
        self._clock = clock
        self._stop = threading.Event()
        self._messages = 0

    def __iter__(self) -> Iterator[Message]:
        from edgefuse.logs import replay

        pairs = self.reader.messages(topics=self.topics)
        for _topic, msg in replay(pairs, self.rate, clock=self._clock, sleep=self._stop.wait):
            if self._stop.is_set():
                return
            self._messages += 1
            yield msg

    def stats(self) -> dict[str, int]:
        out = {"messages": self._messages, "truncated": int(bool(self.reader.truncated))}
        for e in self.reader.errors:
            where = getattr(e, "where", "")
            reason = "bad_chunk" if "chunk" in where else "bad_message" if "topic" in where else "other"
            out[f"error.{reason}"] = out.get(f"error.{reason}", 0) + 1
        return out

    def close(self) -> None:
        self._stop.set()


def open_mcap(uri: str, base_dir: Path | None = None) -> McapSource:
    """Open ``mcap://LOG.mcap?topic=…&rate=…`` (module doc)."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    if not path:
        raise SourceUriError(f"{uri}: path: expected mcap://LOG.mcap")
    topics: list[str] = []
    rate: float | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "topic":
            topics.append(value)
        elif key == "rate":
            rate = _rate(uri, value)
        else:
            raise SourceUriError(f"{uri}: parameter {key!r}: expected topic= or rate=")
    p = Path(path)
    if base_dir is not None and not p.is_absolute():
        p = Path(base_dir) / p
    return McapSource(uri, p, topics or None, rate)


class SimSource(Source):
    """The simulator's live source (module doc); ``close()`` ends the iteration even while it waits."""

    live = True

    def __init__(self, uri: str, sim_uri: str, duration_s: float | None, realtime: bool):
        from edgefuse.sim.rig import SENSORS, sim_calibration
        from edgefuse.sim.run import parse_sim_uri

        self.uri, self._sim_uri = uri, sim_uri
        _scenario, _seed, _params, sensors = parse_sim_uri(sim_uri)
        kinds = {kind for sid, kind, *_ in SENSORS if sensors is None or sid in sensors}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"
        self.calibration = sim_calibration()
        self.duration_s, self.realtime = duration_s, realtime
        self._stop = threading.Event()
        self._messages = 0

    def _sleep(self, seconds: float) -> None:
        if self.realtime:
            self._stop.wait(seconds)

    def __iter__(self) -> Iterator[Message]:
        from edgefuse.sim.run import sim_source

        for msg in sim_source(self._sim_uri, self.duration_s, sleep=self._sleep):
            if self._stop.is_set():
                return
            self._messages += 1
            yield msg

    def stats(self) -> dict[str, int]:
        return {"messages": self._messages}

    def close(self) -> None:
        self._stop.set()


def open_sim(uri: str) -> SimSource:
    """Open ``sim://SCENARIO?…`` (module doc); the scenario, seed, sensors and world parameters are
    checked now (InputError), the world is built when iteration starts."""
    parts = urlsplit(uri)
    rest: list[tuple[str, str]] = []
    duration_s: float | None = None
    realtime = True
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "duration":
            try:
                duration_s = float(value)
            except ValueError:
                duration_s = float("nan")
            if not (duration_s > 0 and duration_s < float("inf")):
                raise SourceUriError(f"{uri}: duration: expected a positive number of seconds, got {value!r}")
        elif key == "rate":
            if value not in ("realtime", "max"):
                raise SourceUriError(f"{uri}: rate: expected 'realtime' or 'max', got {value!r}")
            realtime = value == "realtime"
        else:
            rest.append((key, value))
    sim_uri = f"sim://{parts.netloc}{parts.path}" + (f"?{urlencode(rest, safe=',')}" if rest else "")
    from edgefuse.sim.run import SENSOR_IDS, parse_sim_uri
    from edgefuse.sim.world import make_world

    scenario, seed, params, sensors = parse_sim_uri(sim_uri)
    unknown = [s for s in sensors or () if s not in SENSOR_IDS]
    if unknown:
        raise SourceUriError(f"{uri}: sensor: unknown {unknown}; expected some of {list(SENSOR_IDS)}")
    make_world(scenario, seed, **params)  # checks the world parameters here, not in a reader thread
    return SimSource(uri, sim_uri, duration_s, realtime)


__all__ = ["McapSource", "SimSource", "open_mcap", "open_sim"]
