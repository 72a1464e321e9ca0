"""Sensor adapters: one package per source family, and :func:`open_source` that picks one from a URI.

``open_source(uri, sensor_id=None, base_dir=None) -> Source`` (see :mod:`.source` and docs/adapters.md,
"Sources and URIs"). Importing this package is light: each family is imported when its scheme is opened.
"""

from edgefuse.adapters.source import (
    SCHEMES,
    AdaptedSource,
    Backoff,
    Source,
    SourceReader,
    SourceUriError,
    decode_errors,
    drops,
    open_source,
    payload_kind,
    read_messages,
)

__all__ = [
    "SCHEMES",
    "AdaptedSource",
    "Backoff",
    "Source",
    "SourceReader",
    "SourceUriError",
    "decode_errors",
    "drops",
    "open_source",
    "payload_kind",
    "read_messages",
]
