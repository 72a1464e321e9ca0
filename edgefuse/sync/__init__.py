"""Time synchronization: per-sensor clock mapping and the synchronizer that turns message streams into
:class:`~edgefuse.types.FrameSet` s. Design notes: docs/sync.md.

- :mod:`edgefuse.sync.clock`: :class:`~edgefuse.sync.clock.ClockEstimator` (one sensor's clock → host
  clock), :class:`~edgefuse.sync.clock.StampMapper` (every message of a kit onto the rig clock), the time
  units and :class:`~edgefuse.sync.clock.SyncInputError`.
- :mod:`edgefuse.sync.synchronizer`: :class:`~edgefuse.sync.synchronizer.SyncSpec`,
  :class:`~edgefuse.sync.synchronizer.Synchronizer` (``reference`` and ``approximate`` policies) and its
  :class:`~edgefuse.sync.synchronizer.SyncCounters`.
- :mod:`edgefuse.sync.report`: :func:`~edgefuse.sync.report.sync_report` (``edgefuse sync report LOG``).

This package re-exports their public names for users (``from edgefuse.sync import Synchronizer``); code
inside edgefuse imports from the defining submodule.
"""

from __future__ import annotations

from edgefuse.sync.clock import (
    HOUR_NS,
    MS,
    NS,
    ClockEstimator,
    ClockStatus,
    StampMapper,
    SyncInputError,
)
from edgefuse.sync.report import sync_report
from edgefuse.sync.synchronizer import (
    APPROXIMATE,
    REFERENCE,
    SyncCounters,
    Synchronizer,
    SyncSpec,
)

__all__ = [
    "APPROXIMATE",
    "HOUR_NS",
    "MS",
    "NS",
    "REFERENCE",
    "ClockEstimator",
    "ClockStatus",
    "StampMapper",
    "SyncCounters",
    "SyncInputError",
    "SyncSpec",
    "Synchronizer",
    "sync_report",
]
