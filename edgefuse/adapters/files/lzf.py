"""LZF (liblzf) decompression for PCD ``binary_compressed`` data.

The C library ``lzf`` (PyPI ``python-neo-lzf``, the module pypcd4 uses) does the work where it is
installed; :func:`lzf_decompress_py` is our own pure-Python decoder, used only where that module is
missing and kept as the reference the tests compare against (benchmarks/pcd_bench.py measures both).

LZF stream (liblzf ``lzf_d.c``): a sequence of tokens; control byte ``c``:

- ``c < 32``: a literal run, the next ``c + 1`` bytes are copied to the output;
- otherwise a back reference: length ``c >> 5`` (7 means "7 + next byte"), distance
  ``((c & 31) << 8) + next byte + 1``; ``length + 2`` bytes are copied from ``distance`` bytes back in
  the output (the source may overlap the bytes being written, which repeats a pattern).

A back reference emits at most 264 bytes from 3 input bytes, so a stream can expand at most
:data:`MAX_EXPANSION` times: this bounds what a header may claim before anything is allocated.
"""

from __future__ import annotations

try:  # the C library (python-neo-lzf); optional at import time, a core dependency in pyproject
    import lzf as _lzf_c
except ImportError:  # pragma: no cover - exercised by forcing use_library=False in the tests
    _lzf_c = None

#: The most bytes one input byte of an LZF stream can expand to (264 output bytes per 3-byte token).
MAX_EXPANSION = 88


class LzfError(ValueError):
    """A corrupt or truncated LZF stream; the message gives the offset and what was expected."""


def lzf_library_available() -> bool:
    """True where the C ``lzf`` module is importable."""
    return _lzf_c is not None


def lzf_decompress_py(src: bytes, out_len: int) -> bytes:
    """Decompress an LZF stream that must expand to exactly ``out_len`` bytes (pure Python).

    Raises :class:`LzfError` naming the input offset when the stream is truncated, refers back before
    the start of the output, or expands to a size other than ``out_len``."""
    out = bytearray()
    i = 0
    n = len(src)
    while i < n:
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            run = ctrl + 1
            if i + run > n:
                raise LzfError(f"offset {i - 1}: literal run of {run} bytes, only {n - i} left (truncated)")
            out += src[i : i + run]
            i += run
        else:
            length = ctrl >> 5
            if length == 7:
                if i >= n:
                    raise LzfError(f"offset {i - 1}: back reference length byte missing (truncated)")
                length += src[i]
                i += 1
            if i >= n:
                raise LzfError(f"offset {i - 1}: back reference distance byte missing (truncated)")
            back = ((ctrl & 0x1F) << 8) + src[i] + 1
            i += 1
            length += 2
            start = len(out) - back
            if start < 0:
                raise LzfError(
                    f"offset {i - 3}: back reference {back} bytes before the start of the output "
                    f"({len(out)} bytes written)"
                )
            if back >= length:
                out += out[start : start + length]
            else:  # overlapping copy: the last `back` bytes repeat
                pattern = bytes(out[start:])
                out += (pattern * (length // back + 1))[:length]
        if len(out) > out_len:
            raise LzfError(f"offset {i}: output exceeds the expected {out_len} bytes")
    if len(out) != out_len:
        raise LzfError(f"stream ends after {len(out)} output bytes, expected {out_len} (truncated)")
    return bytes(out)


def lzf_decompress(src: bytes, out_len: int, use_library: bool = True) -> bytes:
    """Decompress an LZF stream to exactly ``out_len`` bytes: the C module where installed (and
    ``use_library``), else :func:`lzf_decompress_py`. Raises :class:`LzfError` on a bad stream."""
    if out_len == 0:
        if src:
            raise LzfError(f"expected an empty stream for 0 output bytes, got {len(src)} bytes")
        return b""
    if out_len > MAX_EXPANSION * len(src):
        raise LzfError(
            f"{len(src)} compressed bytes cannot expand to {out_len} bytes (at most {MAX_EXPANSION}×)"
        )
    if not (use_library and _lzf_c is not None):
        return lzf_decompress_py(src, out_len)
    try:
        out = _lzf_c.decompress(src, out_len)
    except ValueError as exc:
        raise LzfError(f"corrupt stream ({exc})") from None
    if out is None or len(out) != out_len:
        got = "more" if out is None else str(len(out))
        raise LzfError(f"stream expands to {got} bytes, expected {out_len} (corrupt or truncated)")
    return out


def lzf_compress(raw: bytes) -> bytes:
    """Compress ``raw`` to an LZF stream. With the C module: its compressor; where it is missing, or
    where the data does not compress, a valid stream of literal runs (``raw`` plus one byte in 32)."""
    if _lzf_c is not None and raw:
        packed = _lzf_c.compress(raw)
        if packed is not None:
            return packed
    out = bytearray()
    for i in range(0, len(raw), 32):
        chunk = raw[i : i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)
