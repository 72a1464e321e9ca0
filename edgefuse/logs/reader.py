"""Read MCAP logs back as :class:`edgefuse.types.Message` objects, tolerating damage.

- A complete file is read through its summary (the ``mcap`` library parses it): chunk indexes pick the
  chunks that hold the wanted topics and time range; message indexes give counts and times without
  decompressing anything.
- A file without summary/footer (a recording that was killed) is scanned record by record from the start;
  every closed chunk is recovered, the partial tail is skipped, and a warning names the file.
- A corrupt chunk (bad compression, CRC mismatch, bad record length) becomes a :class:`McapReadError`
  ``"<file>: chunk at offset N: <what>"`` in :attr:`LogReader.errors` and reading goes on with the next
  chunk; ``strict=True`` raises it instead. A file that is not MCAP raises at once, naming offset 0, the
  bytes found and the magic expected.

Messages come in ``log_time`` (= ``recv_ns``) order. Decoded arrays are read-only views of the chunk buffer
(copies where the bytes are not aligned for float32); ``.copy()`` to modify.
"""

from __future__ import annotations

import heapq
import io
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.reader import SeekingReader
from mcap.records import Attachment, Channel, Metadata, Schema

from edgefuse.errors import InputError
from edgefuse.logs import ros2
from edgefuse.logs.cdr import CdrError
from edgefuse.logs.recorder import CALIBRATION_ATTACHMENT
from edgefuse.rig import Calibration, RigFileError, load_calibration
from edgefuse.types import Message

MAGIC = b"\x89MCAP0\r\n"
_OPCODES = {int(o) for o in Opcode}
_REC = struct.Struct("<BQ")  # opcode, length
_MSG = struct.Struct("<HIQQ")  # channel_id, sequence, log_time, publish_time
_CHUNK_HEAD = struct.Struct("<QQQI")  # start, end, uncompressed size, uncompressed crc
_FOOTER_LEN = 9 + 20


class McapReadError(InputError):
    """A log that cannot be read (or a part of it): names the file, the offset and what was wrong."""

    def __init__(self, path: str, where: str, message: str):
        self.path = path
        self.where = where
        super().__init__(f"{path}: {where}: {message}")


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a log: ``schema`` (ROS 2 type), ``payload`` (edgefuse type name, "" for calibration
    topics), ``sensor_id``, message ``count``, first and last ``log_time`` (ns)."""

    topic: str
    schema: str
    payload: str
    sensor_id: str
    count: int
    first_ns: int
    last_ns: int


class RawMessage(NamedTuple):
    """An undecoded message: ``(topic, schema, log_time, publish_time, data)``; ``data`` is the CDR bytes."""

    topic: str
    schema: str
    log_time: int
    publish_time: int
    data: bytes


@dataclass
class _ChunkRef:
    offset: int
    length: int  # whole record, opcode and length field included
    start_ns: int
    end_ns: int
    compression: str
    channel_ids: frozenset[int] | None  # None: unknown until decompressed
    index_offset: int = 0  # message-index records after the chunk (complete files)
    index_length: int = 0


@dataclass
class _Rec:
    channel_id: int
    sequence: int
    log_time: int
    publish_time: int
    data: memoryview


def _parse(record_type, body) -> object:
    return record_type.read(ReadDataStream(io.BytesIO(body)))


class LogReader:
    """An MCAP log, opened for reading (see the module doc). ``strict``: raise on the first damaged part
    instead of recording it in :attr:`errors` and going on. ``check_crc``: verify each chunk's CRC-32 (the
    only check that catches a damaged uncompressed chunk; costs ~0.4 ms per MB)."""

    def __init__(self, path: str | os.PathLike, strict: bool = False, check_crc: bool = True):
        self.path = str(path)
        self.strict = strict
        self.check_crc = check_crc
        self.errors: list[McapReadError] = []
        self.truncated = False
        self._f = open(self.path, "rb")  # noqa: SIM115 (closed by close()/__del__)
        self._size = os.fstat(self._f.fileno()).st_size
        head = self._f.read(8)
        if head != MAGIC:
            self._f.close()
            raise McapReadError(
                self.path, "offset 0", f"not an MCAP file: found {head!r}, expected the MCAP magic {MAGIC!r}"
            )
        self._schemas: dict[int, Schema] = {}
        self._channels: dict[int, Channel] = {}
        self._chunks: list[_ChunkRef] = []
        self._attachments: list[Attachment] | None = None
        self._metadata: list[Metadata] | None = None
        self._summary = None
        self._times: dict[int, np.ndarray] | None = None
        self._unknown_channels: set[int] = set()
        self._load_summary() or self._scan()

    # ---------------------------------------------------------------- lifetime

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()

    # ---------------------------------------------------------------- errors

    def _error(self, where: str, message: str) -> None:
        err = McapReadError(self.path, where, message)
        if self.strict:
            raise err
        if all(str(e) != str(err) for e in self.errors):  # reading a chunk twice reports it once
            self.errors.append(err)

    # ---------------------------------------------------------------- index

    def _load_summary(self) -> bool:
        """Read the summary of a complete file; False when there is none (then we scan)."""
        if self._size < 8 + _FOOTER_LEN + 8:
            return False
        self._f.seek(self._size - 8)
        if self._f.read(8) != MAGIC:
            return False
        self._f.seek(0)
        try:
            summary = SeekingReader(self._f).get_summary()
        except Exception as e:  # a damaged summary: fall back to scanning, and say so
            what = f"{type(e).__name__}: {e}".rstrip(": ")
            self._error(
                f"summary before offset {self._size - 8 - _FOOTER_LEN}",
                f"unreadable ({what}); scanned instead",
            )
            return False
        if summary is None:
            return False
        stats = summary.statistics
        if not summary.chunk_indexes and (stats is None or stats.message_count):
            return False  # messages outside chunks (or no statistics to say there are none): scan
        self._summary = summary
        self._schemas = dict(summary.schemas)
        self._channels = dict(summary.channels)
        for ci in summary.chunk_indexes:
            ids = frozenset(ci.message_index_offsets) if ci.message_index_offsets else None
            self._chunks.append(
                _ChunkRef(
                    ci.chunk_start_offset,
                    ci.chunk_length,
                    ci.message_start_time,
                    ci.message_end_time,
                    ci.compression,
                    ids,
                    ci.chunk_start_offset + ci.chunk_length,
                    ci.message_index_length,
                )
            )
        return True

    def _scan(self) -> None:
        """Walk the records from the start: chunk headers, schemas/channels, metadata, attachments."""
        self._attachments, self._metadata = [], []
        off = 8
        f = self._f
        ended = ""
        loose = False
        while True:
            f.seek(off)
            head = f.read(9)
            if len(head) < 9:
                ended = f"the file ends at offset {off}" + (
                    f" inside a record header ({len(head)} bytes)" if head else ""
                )
                break
            opcode, length = _REC.unpack(head)
            if opcode not in _OPCODES:
                self._error(
                    f"offset {off}",
                    f"bad record: opcode 0x{opcode:02x} is not an MCAP record; stopped reading",
                )
                ended = f"a bad record at offset {off}"
                break
            if off + 9 + length > self._size:
                ended = (
                    f"the last record (opcode 0x{opcode:02x} at offset {off}) is incomplete: "
                    f"{self._size - off - 9} of {length} bytes"
                )
                break
            if opcode == Opcode.FOOTER:
                f.seek(off + 9 + length)
                if f.read(8) == MAGIC:
                    return  # a complete file without summary
                ended = f"the closing magic after the footer at offset {off} is missing"
                break
            if opcode == Opcode.CHUNK:
                body = f.read(min(length, _CHUNK_HEAD.size + 4 + 64))
                start, end, _, _ = _CHUNK_HEAD.unpack_from(body)
                (n,) = struct.unpack_from("<I", body, _CHUNK_HEAD.size)
                comp = body[_CHUNK_HEAD.size + 4 : _CHUNK_HEAD.size + 4 + n].decode("utf-8", "replace")
                self._chunks.append(_ChunkRef(off, 9 + length, start, end, comp, None))
            elif opcode == Opcode.MESSAGE and not loose:
                loose = True
                self._error(f"offset {off}", "messages outside chunks are not supported; skipped")
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.ATTACHMENT, Opcode.METADATA):
                try:
                    self._add_record(opcode, f.read(length))
                except Exception as e:
                    self._error(f"offset {off}", f"bad {Opcode(opcode).name.lower()} record ({e})")
            off += 9 + length
        self.truncated = True
        warnings.warn(
            f"{self.path}: no summary/footer (truncated recording?): {ended}; recovered the "
            f"{len(self._chunks)} complete chunks before it",
            stacklevel=3,
        )

    def _add_record(self, opcode: int, body) -> None:
        if opcode == Opcode.SCHEMA:
            s = _parse(Schema, body)
            self._schemas[s.id] = s
        elif opcode == Opcode.CHANNEL:
            c = _parse(Channel, body)
            self._channels[c.id] = c
        elif opcode == Opcode.ATTACHMENT and self._attachments is not None:
            self._attachments.append(_parse(Attachment, body))
        elif opcode == Opcode.METADATA and self._metadata is not None:
            self._metadata.append(_parse(Metadata, body))

    # ---------------------------------------------------------------- chunks

    def _read_chunk(self, c: _ChunkRef) -> list[_Rec]:
        """The messages of one chunk (schemas/channels in it are registered). Damage → error, []."""
        where = f"chunk at offset {c.offset}"
        self._f.seek(c.offset)
        raw = self._f.read(c.length)
        if len(raw) < c.length:
            self._error(where, f"bad record length: {c.length} bytes, the file has {len(raw)} left")
            return []
        opcode, length = _REC.unpack_from(raw)
        if opcode != Opcode.CHUNK or 9 + length != c.length:
            self._error(
                where,
                f"bad record length or opcode: expected a chunk of {c.length - 9} bytes, "
                f"found opcode 0x{opcode:02x} with length {length}",
            )
            return []
        mv = memoryview(raw)
        try:
            _, _, usize, crc = _CHUNK_HEAD.unpack_from(raw, 9)
            p = 9 + _CHUNK_HEAD.size
            (n,) = struct.unpack_from("<I", raw, p)
            comp = bytes(mv[p + 4 : p + 4 + n]).decode()
            p += 4 + n
            (dlen,) = struct.unpack_from("<Q", raw, p)
            p += 8
            if p + dlen > len(raw):
                raise ValueError(f"records length {dlen} runs past the chunk's end")
        except (struct.error, ValueError) as e:
            self._error(where, f"bad chunk header ({e})")
            return []
        payload = mv[p : p + dlen]
        try:
            if comp == "zstd":
                import zstandard

                data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=usize)
            elif comp == "lz4":
                import lz4.frame

                data = lz4.frame.decompress(payload)
            elif comp == "":
                data = payload
            else:
                self._error(where, f"compression {comp!r}: expected 'zstd', 'lz4' or none")
                return []
        except Exception as e:
            self._error(where, f"bad {comp} compression ({type(e).__name__}: {e})")
            return []
        if len(data) != usize:
            self._error(where, f"uncompressed size {len(data)}, expected {usize}")
            return []
        if self.check_crc and crc and zlib.crc32(data) != crc:
            self._error(where, f"CRC mismatch: computed 0x{zlib.crc32(data):08x}, expected 0x{crc:08x}")
            return []
        return self._chunk_records(memoryview(data), where)

    def _chunk_records(self, d: memoryview, where: str) -> list[_Rec]:
        out: list[_Rec] = []
        p = 0
        while p < len(d):
            if p + 9 > len(d):
                self._error(where, f"bad record length: {len(d) - p} stray bytes at record offset {p}")
                break
            opcode, length = _REC.unpack_from(d, p)
            body = p + 9
            if body + length > len(d):
                self._error(
                    where,
                    f"bad record length: record at offset {p} has length {length}, "
                    f"{len(d) - body} bytes left",
                )
                break
            if opcode == Opcode.MESSAGE:
                if length < _MSG.size:
                    self._error(where, f"bad record length: message at offset {p} has length {length}")
                    break
                cid, seq, lt, pt = _MSG.unpack_from(d, body)
                out.append(_Rec(cid, seq, lt, pt, d[body + _MSG.size : body + length]))
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL):
                try:
                    self._add_record(opcode, bytes(d[body : body + length]))
                except Exception as e:
                    self._error(where, f"bad {Opcode(opcode).name.lower()} record at offset {p} ({e})")
            p = body + length
        return out

    def _select(self, topics: Iterable[str] | None, start_ns: int | None, end_ns: int | None):
        want_ids = None
        if topics is not None:
            topics = {topics} if isinstance(topics, str) else set(topics)
            want_ids = {cid for cid, ch in self._channels.items() if ch.topic in topics}
        chunks = []
        for c in self._chunks:
            if start_ns is not None and c.end_ns < start_ns:
                continue
            if end_ns is not None and c.start_ns >= end_ns:
                continue
            if want_ids is not None and c.channel_ids is not None and not (c.channel_ids & want_ids):
                continue
            chunks.append(c)
        chunks.sort(key=lambda c: (c.start_ns, c.offset))
        return topics, chunks

    def _records(self, topics, start_ns, end_ns) -> Iterator[tuple[Channel, _Rec]]:
        """Records of the wanted topics/time range in log_time order (file order among equal times)."""
        topics, chunks = self._select(topics, start_ns, end_ns)
        heap: list = []
        n = 0
        for c in chunks:
            while heap and heap[0][0] < c.start_ns:
                yield heapq.heappop(heap)[2:]
            for rec in self._read_chunk(c):
                if (start_ns is not None and rec.log_time < start_ns) or (
                    end_ns is not None and rec.log_time >= end_ns
                ):
                    continue
                ch = self._channels.get(rec.channel_id)
                if ch is None:
                    if rec.channel_id not in self._unknown_channels:
                        self._unknown_channels.add(rec.channel_id)
                        self._error(
                            f"chunk at offset {c.offset}",
                            f"messages on channel {rec.channel_id}, whose Channel record is missing (lost "
                            "with a damaged chunk?); skipped",
                        )
                    continue
                if topics is not None and ch.topic not in topics:
                    continue
                heapq.heappush(heap, (rec.log_time, n, ch, rec))
                n += 1
        while heap:
            yield heapq.heappop(heap)[2:]

    # ---------------------------------------------------------------- public API

    def raw_messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Undecoded messages (CDR bytes) of the wanted topics with ``start_ns <= log_time < end_ns``."""
        for ch, rec in self._records(topics, start_ns, end_ns):
            schema = self._schemas.get(ch.schema_id)
            yield RawMessage(
                ch.topic,
                schema.name if schema else "",
                rec.log_time,
                rec.publish_time,
                bytes(rec.data),
            )

    def messages(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, end_ns: int | None = None
    ) -> Iterator[tuple[str, Message]]:
        """``(topic, Message)`` for the wanted topics with ``start_ns <= log_time < end_ns``, in log_time
        order. Topics without an edgefuse payload (``/tf_static``, camera_info, foreign types) are skipped
        unless asked for by name, in which case they are an error; see :meth:`calibration` instead.
        A message that does not decode is an error (recorded or raised) and is skipped."""
        for ch, rec in self._records(topics, start_ns, end_ns):
            schema = self._schemas.get(ch.schema_id)
            sname = schema.name if schema else ""
            payload = ch.metadata.get("edgefuse.payload", "")
            if sname not in ros2.DECODABLE or (payload and payload not in ros2.PAYLOAD_TYPES):
                if topics is not None:
                    self._error(f"topic {ch.topic}", f"schema {sname!r} has no edgefuse payload type")
                continue
            try:
                obj, stamp, frame = ros2.decode(sname, rec.data, payload)
            except CdrError as e:
                self._error(f"topic {ch.topic} log_time {rec.log_time}", f"bad {sname} message: {e}")
                continue
            sensor = ch.metadata.get("edgefuse.sensor_id") or ch.topic.strip("/").split("/")[0] or "unknown"
            frame = (
                ch.metadata.get("edgefuse.frame", frame)
                if sname in (ros2.ODOMETRY, ros2.DETECTIONS)
                else frame
            )
            yield (
                ch.topic,
                Message(
                    sensor,
                    stamp,
                    obj,
                    raw_stamp_ns=rec.publish_time,
                    recv_ns=rec.log_time,
                    frame=frame,
                    seq=rec.sequence,
                ),
            )

    def log_times(self) -> dict[str, np.ndarray]:
        """topic → sorted int64 log_times of its messages (from message indexes where the file has them)."""
        if self._times is None:
            acc: dict[int, list[np.ndarray]] = {}
            for c in self._chunks:
                got = self._index_times(c) if c.index_length and c.channel_ids else None
                if got is None:
                    got = {}
                    for rec in self._read_chunk(c):
                        got.setdefault(rec.channel_id, []).append(rec.log_time)
                    got = {k: np.asarray(v, dtype=np.int64) for k, v in got.items()}
                for cid, t in got.items():
                    acc.setdefault(cid, []).append(t)
            self._times = {cid: np.sort(np.concatenate(v)) for cid, v in acc.items()}
        out: dict[str, list[np.ndarray]] = {}
        for cid, t in self._times.items():
            ch = self._channels.get(cid)
            if ch is not None:
                out.setdefault(ch.topic, []).append(t)
        return {k: np.sort(np.concatenate(v)) if len(v) > 1 else v[0] for k, v in out.items()}

    def _index_times(self, c: _ChunkRef) -> dict[int, np.ndarray] | None:
        """log_times per channel from the message-index records after a chunk; None if they are damaged."""
        self._f.seek(c.index_offset)
        raw = self._f.read(c.index_length)
        out: dict[int, np.ndarray] = {}
        p = 0
        try:
            while p < len(raw):
                opcode, length = _REC.unpack_from(raw, p)
                if opcode != Opcode.MESSAGE_INDEX or p + 9 + length > len(raw):
                    return None
                cid, n = struct.unpack_from("<HI", raw, p + 9)
                if n % 16 or 6 + n > length:
                    return None
                out[cid] = np.frombuffer(raw, dtype="<u8", count=n // 8, offset=p + 15)[0::2].astype(np.int64)
                p += 9 + length
        except struct.error:
            return None
        return out

    def topics(self) -> dict[str, TopicInfo]:
        """topic → :class:`TopicInfo`, sorted by topic."""
        times = self.log_times()
        out = {}
        for ch in sorted(self._channels.values(), key=lambda c: c.topic):
            if ch.topic in out:
                continue
            schema = self._schemas.get(ch.schema_id)
            t = times.get(ch.topic, np.zeros(0, dtype=np.int64))
            out[ch.topic] = TopicInfo(
                ch.topic,
                schema.name if schema else "",
                ch.metadata.get("edgefuse.payload", ""),
                ch.metadata.get("edgefuse.sensor_id", ""),
                int(len(t)),
                int(t[0]) if len(t) else 0,
                int(t[-1]) if len(t) else 0,
            )
        return out

    @property
    def chunk_count(self) -> int:
        return len(self._chunks)

    @property
    def compression(self) -> list[str]:
        """The chunk compressions found ("" = none)."""
        return sorted({c.compression for c in self._chunks})

    @property
    def size_bytes(self) -> int:
        return self._size

    def _summary_records(self, indexes, record_type) -> list:
        out = []
        for ix in indexes:
            self._f.seek(ix.offset)
            raw = self._f.read(ix.length)
            try:
                out.append(_parse(record_type, raw[9:]))
            except Exception as e:
                self._error(f"offset {ix.offset}", f"bad {record_type.__name__.lower()} record ({e})")
        return out

    def attachments(self) -> list[Attachment]:
        if self._attachments is None:
            self._attachments = self._summary_records(self._summary.attachment_indexes, Attachment)
        return self._attachments

    def metadata(self) -> dict[str, dict[str, str]]:
        """MCAP metadata records: name → key/value strings."""
        if self._metadata is None:
            self._metadata = self._summary_records(self._summary.metadata_indexes, Metadata)
        return {m.name: dict(m.metadata) for m in self._metadata}

    def calibration(self) -> Calibration | None:
        """The calibration recorded with the log (its ``calibration.yaml`` attachment), or None."""
        found = [a for a in self.attachments() if a.name == CALIBRATION_ATTACHMENT]
        if not found:
            return None
        with tempfile.TemporaryDirectory() as d:
            tmp = os.path.join(d, CALIBRATION_ATTACHMENT)
            with open(tmp, "wb") as f:
                f.write(found[-1].data)
            try:
                return load_calibration(tmp)
            except RigFileError as e:
                detail = str(e)[len(tmp) + 2 :]
                raise McapReadError(self.path, f"attachment {CALIBRATION_ATTACHMENT}", detail) from None
