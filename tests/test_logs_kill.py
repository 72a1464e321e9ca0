"""A recording killed with SIGKILL keeps every message of its closed chunks, and the reader recovers the
truncated file with a warning (the partial chunk at the end does not break it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgefuse.logs import LogReader

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from edgefuse.logs import Recorder
    from edgefuse.types import Message, PointCloud

    rec = Recorder(sys.argv[1], compression=sys.argv[2], chunk_interval_ns=20_000_000, chunk_size=1 << 30)
    reported = 0
    i = 0
    while True:
        data = (np.arange(400, dtype=np.float32) + 1000 * i).reshape(100, 4)
        rec.write(Message("lidar", 10**9 + i, PointCloud(data), recv_ns=2 * 10**9 + 1000 * i, seq=i))
        if rec.flushed_count != reported:
            reported = rec.flushed_count
            print(reported, flush=True)
        i += 1
        time.sleep(0.002)
    """
)


def expected(i: int) -> np.ndarray:
    return (np.arange(400, dtype=np.float32) + 1000 * i).reshape(100, 4)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_sigkill_keeps_closed_chunks(tmp_path, compression):
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), compression],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        flushed = [int(proc.stdout.readline()) for _ in range(4)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert flushed == sorted(flushed) and flushed[-1] > 0
    with pytest.warns(UserWarning, match=f"{path}: no summary/footer"):
        reader = LogReader(path)
    assert reader.truncated and reader.errors == []
    got = list(reader.messages())
    assert len(got) >= flushed[-1]  # a chunk may have closed after the last line was read
    for i, (topic, m) in enumerate(got):
        assert topic == "/lidar/points"
        assert (m.seq, m.stamp_ns, m.recv_ns) == (i, 10**9 + i, 2 * 10**9 + 1000 * i)
        assert m.payload.data.tobytes() == expected(i).tobytes()
    assert reader.topics()["/lidar/points"].count == len(got)
