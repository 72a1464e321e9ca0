"""replay(): original timing at 1×, N× and as fast as possible, on a fake clock."""

from __future__ import annotations

import pytest

from edgefuse.logs import LogReader, Recorder, replay
from edgefuse.types import Imu, Message


class FakeTime:
    """A clock that only moves when someone sleeps (or a consumer 'works')."""

    def __init__(self, start: int = 5_000_000_000) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> int:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += round(s * 1e9)


RECV = [1_000_000_000, 1_010_000_000, 1_010_000_000, 1_050_000_000, 1_250_000_000, 2_000_000_000]


def msgs():
    return [
        ("/imu/imu", Message("imu", t - 7, Imu([0, 0, i], [0, 0, 9.81]), recv_ns=t, seq=i))
        for i, t in enumerate(RECV)
    ]


@pytest.mark.parametrize("rate", [1.0, 2.0, 0.5, 10.0])
def test_paces_by_recv_ns(rate):
    ft = FakeTime()
    start = ft.now
    out = []
    for _topic, m in replay(msgs(), rate=rate, clock=ft.clock, sleep=ft.sleep):
        out.append((ft.now - start, m.seq))
    assert [s for _, s in out] == list(range(len(RECV)))
    want = [round((t - RECV[0]) / rate) for t in RECV]
    assert [t for t, _ in out] == want
    assert len(ft.sleeps) == len(set(RECV)) - 1  # no sleep for equal stamps


def test_slow_consumer_does_not_accumulate_drift():
    ft = FakeTime()
    start = ft.now
    times = []
    for _ in replay(msgs(), rate=1.0, clock=ft.clock, sleep=ft.sleep):
        times.append(ft.now - start)
        ft.now += 30_000_000  # the consumer takes 30 ms per message
    # due times are relative to the start: late messages go at once, later ones are back on schedule
    assert times == [0, 30_000_000, 60_000_000, 90_000_000, 250_000_000, 1_000_000_000]


def test_as_fast_as_possible_never_sleeps():
    ft = FakeTime()
    got = list(replay(msgs(), rate=None, clock=ft.clock, sleep=ft.sleep))
    assert [m.seq for _, m in got] == list(range(len(RECV))) and ft.sleeps == []


def test_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        list(replay(msgs(), rate=0))


def test_replay_of_a_recorded_log_keeps_stamps(tmp_path):
    path = tmp_path / "r.mcap"
    with Recorder(path) as rec:
        for _topic, m in msgs():
            rec.write(m)
    ft = FakeTime()
    start = ft.now
    got = []
    for _topic, m in replay(LogReader(path).messages(), rate=4.0, clock=ft.clock, sleep=ft.sleep):
        got.append((ft.now - start, m.recv_ns, m.stamp_ns))
    assert got == [(round((t - RECV[0]) / 4), t, t - 7) for t in RECV]
