"""The simulator as a live source, opened through :func:`edgefuse.sources.open_source`.

``sim://SCENARIO?seed=N[&sensor=ID[,ID…]][&duration=SEC][&rate=realtime|max][&<world param>=…]`` —
:func:`edgefuse.sim.run.sim_source`: messages released at their receive time on the host clock
(``rate=max``: no waiting), forever unless ``duration`` (simulated seconds) is given. Every other
query parameter is the simulator's own (``seed``, ``sensor``, world parameters).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

from edgefuse.adapters.base import Source, SourceUriError
from edgefuse.types import Message


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
