"""Several MCAP logs read as one: the files of a split log (:class:`~edgefuse.logs.recorder.SplitRecorder`:
``run_000.mcap``, ``run_001.mcap`` …), given as files or as the directory that holds them.

    logs = LogSet(log_files(["run-output/"]))      # every *.mcap in the directory, by name
    for topic, msg in logs.messages(): ...         # merged by log_time, as one file would give them

:class:`LogSet` offers the part of :class:`~edgefuse.logs.LogReader`'s interface that replay needs
(``topics``, ``messages``, ``calibration``, ``errors``, ``truncated``, ``path``); each file is read by its
own LogReader, so damage in one file is reported (in :attr:`LogSet.errors`) and the others still read.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from edgefuse.errors import InputError
from edgefuse.logs.reader import LogReader, McapReadError, TopicInfo
from edgefuse.rig import Calibration
from edgefuse.types import Message


def log_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The MCAP files ``paths`` name, in order: a file as it is; a directory → its ``*.mcap`` files
    sorted by name (a split log's ``run_000.mcap``, ``run_001.mcap`` … in recording order).
    :class:`InputError` naming the path for one that does not exist or a directory without logs."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.glob("*.mcap") if f.is_file())
            if not found:
                raise InputError(f"{p}: a directory without *.mcap files; expected an MCAP log or a "
                                 "directory of split log files (run_000.mcap …)")  # fmt: skip
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such log; expected an MCAP log (edgefuse sim record / record) or a "
                             "directory of split log files")  # fmt: skip
    if not out:
        raise InputError("log: expected at least one MCAP file or directory")
    return out


class LogSet:
    """Several MCAP files read as one log (module doc): messages merged by ``log_time`` (ties: the
    earlier file first, as within a file), topic counts summed, the first calibration found."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError("LogSet: expected at least one MCAP file")
        self.readers: list[LogReader] = []
        try:
            for p in self.paths:
                self.readers.append(LogReader(p))
        except Exception:
            self.close()
            raise
        more = len(self.paths) - 1
        self.path = str(self.paths[0]) + (f" (+{more} more)" if more else "")

    @property
    def errors(self) -> list[McapReadError]:
        return [e for r in self.readers for e in r.errors]

    @property
    def truncated(self) -> bool:
        return any(r.truncated for r in self.readers)

    def topics(self) -> dict[str, TopicInfo]:
        """topic → :class:`TopicInfo` over every file (counts summed, first/last over all), by topic."""
        out: dict[str, TopicInfo] = {}
        for r in self.readers:
            for name, t in r.topics().items():
                have = out.get(name)
                if have is None or have.count == 0:
                    out[name] = t
                elif t.count:
                    out[name] = TopicInfo(
                        name, have.schema, have.payload, have.sensor_id, have.count + t.count,
                        min(have.first_ns, t.first_ns), max(have.last_ns, t.last_ns),
                    )  # fmt: skip
        return dict(sorted(out.items()))

    def messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[tuple[str, Message]]:
        """:meth:`LogReader.messages` of every file, merged by log_time (= ``recv_ns``). A topic asked
        for by name is read from the files that have it."""
        wanted = None if topics is None else list(topics)
        streams = []
        for r in self.readers:
            mine = None if wanted is None else [t for t in wanted if t in r.topics()]
            if mine is None or mine:
                streams.append(r.messages(mine, start_ns, end_ns))
        return heapq.merge(*streams, key=lambda tm: tm[1].recv_ns)

    def calibration(self) -> Calibration | None:
        """The first file's calibration that has one (every split file carries it), else None."""
        for r in self.readers:
            calib = r.calibration()
            if calib is not None:
                return calib
        return None

    def metadata(self) -> dict[str, dict[str, str]]:
        """MCAP metadata records, name → key/value strings: the first file's record of each name (every
        split file carries the run's records)."""
        out: dict[str, dict[str, str]] = {}
        for r in self.readers:
            for name, data in r.metadata().items():
                out.setdefault(name, data)
        return out

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def __enter__(self) -> LogSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
