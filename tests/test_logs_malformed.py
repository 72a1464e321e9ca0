"""Malformed logs: not MCAP, corrupt chunks, bad record lengths, truncation anywhere. Each gives a clear
error naming the file and the offset; the rest of the file stays readable; the CLI prints one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from mcap.data_stream import ReadDataStream
from mcap.reader import make_reader
from mcap.records import Chunk
from mcap.records import Message as McapMessage
from mcap.stream_reader import breakup_chunk

from edgefuse.logs import LogReader, McapReadError, Recorder
from edgefuse.types import Message, PointCloud

ROOT = Path(__file__).resolve().parents[1]
N = 24


class FakeClock:
    t = 0

    def __call__(self) -> int:
        return self.t


def make_log(path: Path, compression: str = "zstd") -> list:
    """N clouds, a chunk every 4 messages; returns the chunk indexes as the mcap library reads them."""
    clock = FakeClock()
    with Recorder(path, compression=compression, chunk_interval_ns=10, clock=clock) as rec:
        for i in range(N):
            clock.t = i * 4
            data = np.full((30, 4), i, dtype=np.float32)
            rec.write(Message("lidar", 100 + i, PointCloud(data), recv_ns=1000 + i, seq=i))
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) == 6
    return chunks


def seqs(reader: LogReader) -> list[int]:
    return [m.seq for _, m in reader.messages()]


def chunk_seqs(path: Path, ci) -> list[int]:
    """The messages of one chunk, as the mcap library itself reads them."""
    with open(path, "rb") as f:
        f.seek(ci.chunk_start_offset + 9)
        chunk = Chunk.read(ReadDataStream(f))
    return [r.sequence for r in breakup_chunk(chunk) if isinstance(r, McapMessage)]


@pytest.mark.parametrize(
    "content", [b"", b"hello", b"this is a text file, not a log\n" * 3, b"\x89PNG\r\n\x1a\n" + bytes(100)]
)
def test_not_mcap(tmp_path, content):
    path = tmp_path / "not.mcap"
    path.write_bytes(content)
    with pytest.raises(McapReadError) as e:
        LogReader(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: offset 0: not an MCAP file: found {content[:8]!r}")
    assert "expected the MCAP magic" in msg


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_corrupt_chunk_is_reported_and_skipped(tmp_path, compression):
    path = tmp_path / "c.mcap"
    chunks = make_log(path, compression)
    bad = chunks[2]
    data = bytearray(path.read_bytes())
    data[bad.chunk_start_offset + bad.chunk_length - 20] ^= 0x5A  # inside the records: CRC or zstd fails
    path.write_bytes(bytes(data))
    lost = set(chunk_seqs(tmp_path / "c.mcap", bad)) if compression == "none" else set(range(8, 12))
    r = LogReader(path)
    assert seqs(r) == [i for i in range(N) if i not in lost]
    assert len(r.errors) == 1
    assert str(r.errors[0]).startswith(f"{path}: chunk at offset {bad.chunk_start_offset}: ")
    with pytest.raises(McapReadError, match=f"chunk at offset {bad.chunk_start_offset}"):
        list(LogReader(path, strict=True).messages())


def test_bad_chunk_length_is_reported_and_skipped(tmp_path):
    path = tmp_path / "l.mcap"
    chunks = make_log(path)
    bad = chunks[1]
    data = bytearray(path.read_bytes())
    data[bad.chunk_start_offset + 1 : bad.chunk_start_offset + 9] = (10**12).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    r = LogReader(path)
    assert seqs(r) == [i for i in range(N) if not 4 <= i < 8]
    assert len(r.errors) == 1 and "bad record length" in str(r.errors[0])
    assert f"chunk at offset {bad.chunk_start_offset}" in str(r.errors[0])


def test_truncated_anywhere_recovers_complete_chunks(tmp_path):
    """Cut the file at many points: every chunk that ends before the cut comes back whole, nothing else."""
    full = tmp_path / "full.mcap"
    chunks = make_log(full)
    blob = full.read_bytes()
    ends = [c.chunk_start_offset + c.chunk_length for c in chunks]
    cuts = sorted(
        {
            9,
            30,
            *(e - 1 for e in ends),
            *(e + 5 for e in ends),
            len(blob) - 8,
            len(blob) - 1,
            chunks[3].chunk_start_offset + 40,
        }
    )
    for cut in cuts:
        path = tmp_path / f"cut{cut}.mcap"
        path.write_bytes(blob[:cut])
        with pytest.warns(UserWarning, match="no summary/footer"):
            r = LogReader(path)
        assert r.truncated
        n_complete = sum(1 for e in ends if e <= cut)
        want = [s for c in chunks[:n_complete] for s in chunk_seqs(full, c)]
        assert seqs(r) == want, cut
        assert r.errors == []
        assert sum(t.count for t in r.topics().values()) == len(want)


def test_garbage_after_chunks_stops_the_scan_with_an_error(tmp_path):
    full = tmp_path / "full.mcap"
    chunks = make_log(full)
    end = chunks[2].chunk_start_offset
    path = tmp_path / "g.mcap"
    path.write_bytes(full.read_bytes()[:end] + b"\xee" * 64)
    with pytest.warns(UserWarning):
        r = LogReader(path)
    assert seqs(r) == list(range(8))
    assert len(r.errors) == 1 and f"offset {end}: bad record: opcode 0xee" in str(r.errors[0])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgefuse.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=60,
    )


def test_cli_log_info_on_bad_files(tmp_path):
    path = tmp_path / "text.mcap"
    path.write_text("not a log")
    p = run_cli("log", "info", str(path))
    assert p.returncode == 2 and p.stdout == ""
    assert (
        p.stderr.strip() == f"edgefuse: error: {path}: offset 0: not an MCAP file: found b'not a lo', "
        "expected the MCAP magic b'\\x89MCAP0\\r\\n'"
    )
    assert "Traceback" not in p.stderr
    p = run_cli("log", "info", str(path), "--json")
    assert p.returncode == 2 and json.loads(p.stdout)["type"] == "McapReadError"
    p = run_cli("log", "info", str(tmp_path / "missing.mcap"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "missing.mcap" in p.stderr


def test_cli_log_info_reports_damage(tmp_path):
    path = tmp_path / "c.mcap"
    chunks = make_log(path)
    data = bytearray(path.read_bytes())
    data[chunks[1].chunk_start_offset + chunks[1].chunk_length - 20] ^= 0x5A
    path.write_bytes(bytes(data[: chunks[4].chunk_start_offset + 3]))  # and truncate inside chunk 4
    p = run_cli("log", "info", str(path), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["truncated"] is True and r["chunks"] == 4
    assert r["topics"]["/lidar/points"]["count"] == 12  # chunks 0, 2, 3 (truncated files are decompressed)
    assert len(r["errors"]) == 1 and f"chunk at offset {chunks[1].chunk_start_offset}" in r["errors"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert seqs(LogReader(path)) == [*range(4), *range(8, 16)]


def test_unchunked_file_says_what_it_cannot_read(tmp_path):
    """An MCAP written without chunks (valid, from other tools) is reported, not silently empty."""
    from mcap.writer import Writer

    path = tmp_path / "u.mcap"
    with open(path, "wb") as f:
        w = Writer(f, use_chunking=False)
        w.start()
        cid = w.register_channel("/x", "cdr", 0)
        w.add_message(cid, log_time=1, data=b"\x00\x01\x00\x00", publish_time=1)
        w.finish()
    r = LogReader(path)
    assert list(r.messages()) == []
    assert len(r.errors) == 1 and "messages outside chunks are not supported" in str(r.errors[0])
