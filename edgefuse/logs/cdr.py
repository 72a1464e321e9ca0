"""A small CDR (XCDR1, little-endian) writer and reader for ROS 2 messages.

ROS 2 serializes messages as plain CDR: a 4-byte encapsulation header (``00 01 00 00`` = CDR
little-endian), then the fields in order, each primitive aligned to its own size (8 at most) counted
from the end of the encapsulation header; strings are ``uint32`` length (terminating NUL included) +
bytes + NUL; sequences are ``uint32`` count + elements; fixed arrays are just the elements.

Big byte arrays (image pixels, point-cloud data) go through as buffers: the writer keeps a reference and
joins once at the end (one copy); the reader hands out memoryview slices of the message (zero copy).
"""

from __future__ import annotations

import struct

import numpy as np

CDR_LE_HEADER = b"\x00\x01\x00\x00"

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class CdrError(ValueError):
    """Malformed CDR bytes: ``offset`` (bytes from the start of the message) and what was expected."""

    def __init__(self, offset: int, message: str):
        self.offset = offset
        super().__init__(f"CDR offset {offset}: {message}")


class CdrWriter:
    """Appends CDR fields. ``getvalue()`` returns the whole message (encapsulation header included)."""

    def __init__(self) -> None:
        self._parts: list = []
        self._buf = bytearray(CDR_LE_HEADER)
        self._done = 0  # bytes in _parts already

    def _pos(self) -> int:
        return self._done + len(self._buf) - 4

    def _align(self, n: int) -> None:
        pad = -self._pos() % n
        if pad:
            self._buf += b"\x00" * pad

    def u8(self, v: int) -> None:
        self._buf.append(v)

    def boolean(self, v: bool) -> None:
        self._buf.append(1 if v else 0)

    def u32(self, v: int) -> None:
        self._align(4)
        self._buf += _U32.pack(v)

    def i32(self, v: int) -> None:
        self._align(4)
        self._buf += _I32.pack(v)

    def i64(self, v: int) -> None:
        self._align(8)
        self._buf += _I64.pack(v)

    def f32(self, v: float) -> None:
        self._align(4)
        self._buf += _F32.pack(v)

    def f64(self, v: float) -> None:
        self._align(8)
        self._buf += _F64.pack(v)

    def f64s(self, values: np.ndarray) -> None:
        """Fixed-size float64 array (no length prefix)."""
        self._align(8)
        self._buf += np.ascontiguousarray(values, dtype="<f8").tobytes()

    def f64_seq(self, values: np.ndarray) -> None:
        self.u32(len(values))
        if len(values):
            self.f64s(values)

    def string(self, s: str) -> None:
        b = s.encode("utf-8")
        self.u32(len(b) + 1)
        self._buf += b
        self._buf.append(0)

    def u8_seq(self, data) -> None:
        """A ``uint8[]`` from any C-contiguous buffer (bytes, memoryview, numpy array); kept by reference."""
        mv = memoryview(data)
        self.u32(mv.nbytes)
        if mv.nbytes == 0:
            return
        mv = mv.cast("B")
        if mv.nbytes > 4096:
            self._parts.append(self._buf)
            self._parts.append(mv)
            self._done += len(self._buf) + mv.nbytes
            self._buf = bytearray()
        else:
            self._buf += mv

    def getvalue(self) -> bytes:
        if not self._parts:
            return bytes(self._buf)
        return b"".join([*self._parts, self._buf])


class CdrReader:
    """Reads CDR fields from one message (``data`` starts with the encapsulation header)."""

    def __init__(self, data) -> None:
        self._mv = memoryview(data).cast("B")
        if self._mv.nbytes < 4:
            raise CdrError(0, f"expected a 4-byte encapsulation header, got {self._mv.nbytes} bytes")
        head = bytes(self._mv[:4])
        if head[:2] != CDR_LE_HEADER[:2]:
            kind = "big-endian CDR" if head[:2] == b"\x00\x00" else f"encapsulation {head[:2].hex()}"
            raise CdrError(0, f"expected little-endian CDR (encapsulation 0001), got {kind}")
        self._off = 4

    @property
    def offset(self) -> int:
        return self._off

    @property
    def remaining(self) -> int:
        """Bytes left after the read position (a message written before fields were appended to its type
        ends early: nothing, or at most 3 bytes of alignment padding, left)."""
        return self._mv.nbytes - self._off

    def _take(self, n: int, align: int, what: str) -> int:
        off = self._off
        off += -(off - 4) % align
        end = off + n
        if end > self._mv.nbytes:
            raise CdrError(off, f"{what}: expected {n} more bytes, message has {self._mv.nbytes - off}")
        self._off = end
        return off

    def u8(self, what: str = "uint8") -> int:
        return self._mv[self._take(1, 1, what)]

    def boolean(self, what: str = "bool") -> bool:
        return self._mv[self._take(1, 1, what)] != 0

    def u32(self, what: str = "uint32") -> int:
        return _U32.unpack_from(self._mv, self._take(4, 4, what))[0]

    def i32(self, what: str = "int32") -> int:
        return _I32.unpack_from(self._mv, self._take(4, 4, what))[0]

    def i64(self, what: str = "int64") -> int:
        return _I64.unpack_from(self._mv, self._take(8, 8, what))[0]

    def f32(self, what: str = "float32") -> float:
        return _F32.unpack_from(self._mv, self._take(4, 4, what))[0]

    def f64(self, what: str = "float64") -> float:
        return _F64.unpack_from(self._mv, self._take(8, 8, what))[0]

    def f64s(self, n: int, what: str = "float64[]") -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        off = self._take(8 * n, 8, what)
        return np.frombuffer(self._mv, dtype="<f8", count=n, offset=off).astype(np.float64)

    def f64_seq(self, what: str = "float64[]") -> np.ndarray:
        return self.f64s(self.u32(what + " length"), what)

    def string(self, what: str = "string") -> str:
        n = self.u32(what + " length")
        if n == 0:  # tolerated: some writers emit an empty string as length 0
            return ""
        off = self._take(n, 1, what)
        raw = self._mv[off : off + n]
        if raw[n - 1] != 0:
            raise CdrError(off + n - 1, f"{what}: expected a NUL-terminated string")
        try:
            return str(raw[: n - 1], "utf-8")
        except UnicodeDecodeError as e:
            raise CdrError(off + e.start, f"{what}: not UTF-8 ({e.reason})") from None

    def u8_seq(self, what: str = "uint8[]") -> memoryview:
        """A ``uint8[]`` as a read-only memoryview slice of the message (no copy)."""
        n = self.u32(what + " length")
        off = self._take(n, 1, what)
        return self._mv[off : off + n]

    def seq_len(self, what: str, min_elem_bytes: int = 1) -> int:
        """A sequence length, checked against the bytes left (so garbage cannot ask for 4 G elements)."""
        n = self.u32(what + " length")
        left = self._mv.nbytes - self._off
        if n * min_elem_bytes > left:
            raise CdrError(self._off, f"{what}: {n} elements cannot fit in the {left} bytes left")
        return n
