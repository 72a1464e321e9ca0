"""The real-time pipeline: sources → stamp mapping + synchronizer → preprocess → backend → decode → sinks.

One module per part (docs/architecture.md):

- :mod:`edgefuse.frames` (beside this package, shared with training and INT8 calibration):
  :class:`~edgefuse.frames.FrameCore`, the pure frame assembler, and :class:`~edgefuse.frames.PipelineConfig`;
- :mod:`~edgefuse.pipeline.stages`: preprocess, infer, decode (pure functions of a frame and a clock);
- :mod:`~edgefuse.pipeline.sinks`: UDP, console and the MCAP log;
- :mod:`~edgefuse.pipeline.queue`: the bounded drop-oldest queue between threads;
- :mod:`~edgefuse.pipeline.timebase`: host clock ↔ message clock (live, paced replay, as fast as possible);
- :mod:`~edgefuse.pipeline.loop`: :class:`Pipeline`, the threaded shell;
- :mod:`~edgefuse.pipeline.deterministic`: one thread, every frame, the same bytes for the same log;
- :mod:`~edgefuse.pipeline.replay` / :mod:`~edgefuse.pipeline.live`: the ``replay`` and ``run`` commands;
- :mod:`~edgefuse.pipeline.report`, :mod:`~edgefuse.pipeline.signals`: the run's report files, graceful stop.

Backends follow the :mod:`edgefuse.runtime.backends` contract (``manifest``, ``name``,
``infer(feed) -> dict``, ``close()``) and are passed in (:func:`edgefuse.models.load_backend` opens one);
the pipeline imports no torch and nothing of the workstation side. The names below are the package's
public API (``from edgefuse.pipeline import run_replay``); code inside edgefuse imports the defining module.

``load_backend``, ``profile_model`` and ``format_profile`` lived here before the robot side was separated
from the workstation side; they are now :func:`edgefuse.models.load_backend` and
:mod:`edgefuse.engine.profile`. The old names still work, looked up when first asked for, with a
``DeprecationWarning`` (docs/architecture.md, "Moved names").
"""

import importlib
import warnings

from edgefuse.frames import MS, NS, Frame, FrameCore, PipelineConfig
from edgefuse.pipeline.deterministic import run_deterministic
from edgefuse.pipeline.live import run_live
from edgefuse.pipeline.loop import Pipeline
from edgefuse.pipeline.queue import DropQueue
from edgefuse.pipeline.replay import run_replay
from edgefuse.pipeline.report import write_outputs
from edgefuse.pipeline.sinks import DETECTIONS_SENSOR, DETECTIONS_TOPIC, ConsoleSink, McapSink, UdpSink
from edgefuse.pipeline.stages import decode, infer, preprocess
from edgefuse.pipeline.timebase import Timebase
from edgefuse.runtime.backends import inference_threads

__all__ = [
    "DETECTIONS_SENSOR", "DETECTIONS_TOPIC", "MS", "NS", "ConsoleSink", "DropQueue", "Frame", "FrameCore",
    "McapSink", "Pipeline", "PipelineConfig", "Timebase", "UdpSink", "decode", "infer", "preprocess",
    "inference_threads", "run_deterministic", "run_live", "run_replay", "write_outputs",
]  # fmt: skip

#: Names that moved above the robot side: name → the module that defines them now.
_MOVED = {
    "load_backend": "edgefuse.models",
    "profile_model": "edgefuse.engine.profile",
    "format_profile": "edgefuse.engine.profile",
}


def __getattr__(name: str):
    """The moved names (module doc), forwarded — not imports of this package: the pipeline never opens a
    model file or quantizes one itself."""
    if name in _MOVED:
        where = f"{_MOVED[name]}.{name}"
        warnings.warn(f"edgefuse.pipeline.{name} moved to {where}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'edgefuse.pipeline' has no attribute {name!r}")
