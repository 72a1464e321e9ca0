"""ApproximateTime policy against the expected outputs of ROS message_filters' own unit tests
(test_approximate_time_policy.cpp, Willow Garage: inputs and expected pairs written out by hand there,
re-typed here as timelines), plus invariants on random streams."""

from __future__ import annotations

import numpy as np
import pytest

from edgefuse.sync import Synchronizer, SyncSpec
from edgefuse.types import Message, Odometry

S = 1_000_000_000
_ODO = Odometry(np.zeros(3), np.array([0, 0, 0, 1.0]), np.zeros(3), np.zeros(3))


def _run(topics, inputs, queue_size=10):
    """inputs: (t_seconds, topic index); returns the emitted frames as tuples of stamps (s)."""
    spec = SyncSpec(
        sensors=topics, reference=topics[0], policy="approximate", queue_size=queue_size, silence_ns=10**15
    )
    sync = Synchronizer(spec)
    out = []
    for i, (t, k) in enumerate(inputs):
        msg = Message(topics[k], int(t * S), _ODO, seq=i)
        for fs in sync.update(0, [msg]):
            out.append(tuple(fs.messages[s].stamp_ns / S for s in topics))
    return out, sync


AB = ("a", "b")
ABCD = ("a", "b", "c", "d")


@pytest.mark.parametrize(
    "name, inputs, expected, qs",
    [
        ("exact", [(0, 0), (0, 1), (3, 0), (3, 1), (6, 0), (6, 1)], [(0, 0), (3, 3), (6, 6)], 10),
        ("perfect", [(0, 0), (1, 1), (3, 0), (4, 1), (6, 0), (7, 1)], [(0, 1), (3, 4)], 10),
        ("imperfect", [(0, 0), (1, 1), (2, 0), (3, 0), (5, 1), (6, 0), (7, 1)], [(0, 1), (6, 5)], 10),
        ("acceleration", [(0, 0), (7, 1), (12, 0), (15, 1), (17, 0), (18, 1)], [(12, 7), (17, 18)], 10),
        (
            "dropped_q1",
            [(0, 0), (1, 1), (3, 1), (4, 0), (7, 1), (8, 0), (10, 0), (11, 1), (13, 0), (14, 1)],
            [(4, 3), (10, 11)],
            1,
        ),
        (
            "dropped_q2",
            [(0, 0), (1, 1), (3, 1), (4, 0), (7, 1), (8, 0), (10, 0), (11, 1), (13, 0), (14, 1)],
            [(0, 1), (4, 3), (8, 7), (10, 11)],
            2,
        ),
        (
            "long_queue",
            [(t, 0) for t in range(9)] + [(3, 1)] + [(t, 0) for t in (9, 10, 11, 12)] + [(10, 1), (13, 0)],
            [(10, 10)],
            5,
        ),
        ("double_publish", [(0, 0), (1, 1), (3, 1), (3, 0)], [(0, 1), (3, 3)], 10),
    ],
)
def test_two_topics_match_ros(name, inputs, expected, qs):
    out, _ = _run(AB, inputs, qs)
    assert out == [tuple(float(v) for v in e) for e in expected], name


def test_four_topics_match_ros():
    inputs = [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (5, 0),
        (5, 3),
        (6, 1),
        (6, 2),
        (8, 0),
        (9, 1),
        (10, 2),
        (11, 3),
        (10, 0),
        (13, 0),
        (14, 1),
    ]
    out, _ = _run(ABCD, inputs)
    assert out == [(0, 1, 2, 3), (5, 6, 6, 5), (10, 9, 10, 11)]


def test_early_publish_matches_ros():
    out, _ = _run(ABCD, [(0, 0), (1, 1), (2, 2), (3, 3), (7, 0)])
    assert out == [(0, 1, 2, 3)]


def test_random_streams_use_each_message_once_and_in_order():
    rng = np.random.default_rng(3)
    inputs = []
    for k, rate in enumerate((10.0, 30.0, 20.0)):
        t = np.cumsum(rng.uniform(0.7, 1.3, int(20 * rate)) / rate)
        inputs += [(float(x), k) for x in t]
    inputs.sort()
    out, sync = _run(("a", "b", "c"), inputs)
    assert len(out) > 150  # about one frame per message of the slowest stream (10 Hz over ~20 s)
    for col in range(3):
        stamps = [o[col] for o in out]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # every message is either in a frame or counted as unmatched, never both, never neither
    sync.flush(0)
    unmatched = sum(sum(v.values()) for v in sync.counters.messages_unmatched.values())
    assert unmatched + 3 * len(out) == len(inputs)


def test_silent_sensor_leaves_the_set_and_frames_mark_it_missing():
    spec = SyncSpec(sensors=("lidar", "cam"), reference="lidar", policy="approximate", silence_ns=S // 2)
    sync = Synchronizer(spec)
    frames = []
    for i in range(40):
        t = i * S // 10
        msgs = [Message("lidar", t, _ODO)]
        if t < 2 * S:
            msgs.append(Message("cam", t + 1_000_000, _ODO))
        frames += sync.update(t + 5_000_000, msgs)
    late = [f for f in frames if f.stamp_ns > 3 * S]
    assert late and all(f.missing == ("cam",) for f in late)
    assert len([f for f in frames if f.stamp_ns > 2 * S]) >= 15
