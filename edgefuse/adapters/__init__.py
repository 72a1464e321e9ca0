"""Sensor drivers: one package per source family (velodyne, ti_mmwave, camera, gnss, files), and the
interface they share (:mod:`edgefuse.adapters.base`). Drivers know neither the pipeline nor the simulator.

Sources are opened by URI with :func:`edgefuse.sources.open_source`, which sits above the drivers, the logs
and the simulator (docs/adapters.md, "Sources and URIs"). Importing this package is light: each family is
imported when its scheme is opened.

``from edgefuse.adapters import open_source`` (and ``SCHEMES``), the path before the dispatcher moved above
the drivers, still works: the name is looked up in :mod:`edgefuse.sources` when first asked for, with a
``DeprecationWarning`` (docs/architecture.md, "Moved names").
"""

import importlib
import warnings

from edgefuse.adapters.base import (
    AdaptedSource,
    Backoff,
    Source,
    SourceReader,
    SourceUriError,
    decode_errors,
    drops,
    payload_kind,
    read_messages,
)

__all__ = [
    "AdaptedSource",
    "Backoff",
    "Source",
    "SourceReader",
    "SourceUriError",
    "decode_errors",
    "drops",
    "payload_kind",
    "read_messages",
]

_MOVED_TO_SOURCES = ("open_source", "SCHEMES")


def __getattr__(name: str):
    """The moved names, forwarded from :mod:`edgefuse.sources` (not an import of this package: the
    dispatcher imports the drivers, never the other way)."""
    if name in _MOVED_TO_SOURCES:
        warnings.warn(
            f"edgefuse.adapters.{name} moved to edgefuse.sources.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module("edgefuse.sources"), name)
    raise AttributeError(f"module 'edgefuse.adapters' has no attribute {name!r}")
