"""MCAP logs with ROS 2 schemas: record (:class:`Recorder`), read (:class:`LogReader`), replay
(:func:`replay`).

Design and formats: docs/logs.md. This package imports numpy, yaml and mcap only (never torch).
"""

from edgefuse.logs.reader import LogReader, McapReadError, RawMessage, TopicInfo
from edgefuse.logs.recorder import Recorder
from edgefuse.logs.replay import replay

__all__ = ["LogReader", "McapReadError", "RawMessage", "Recorder", "TopicInfo", "replay"]
