"""PCD (PCL's Point Cloud Data) files: a pure decoder and writer, plus thin file shells.

:func:`parse_pcd` takes the file's bytes and returns a :class:`PcdData`: the header and the points as a
numpy structured array (one field per PCD field, ``COUNT > 1`` fields as sub-arrays of that length,
``_`` padding fields skipped). It reads ``DATA ascii``, ``binary`` and ``binary_compressed`` (LZF, PCL's
layout: the non-padding fields one after the other, each a block of N × COUNT values) and every
``TYPE``/``SIZE`` pair PCL writes (F4 F8 I1 I2 I4 I8 U1 U2 U4 U8). Organized clouds (``HEIGHT > 1``)
keep their N = WIDTH × HEIGHT points in row-major order (:meth:`PcdData.grid`).

A header that lies — POINTS more than the data holds, WIDTH × HEIGHT ≠ POINTS, no DATA line, an unknown
TYPE — raises :class:`PcdError` (an :class:`~edgefuse.errors.InputError`) naming the file, the header
key and what was expected, before anything the size of the claim is allocated. Bytes after the last
point (nuScenes pads its radar files) are ignored and counted in ``PcdData.trailing_bytes``.

:func:`pcd_columns` flattens the points to an N×C float32 matrix with names (``name_i`` for element i
of a ``COUNT > 1`` field); :func:`pointcloud_from_pcd` makes a :class:`~edgefuse.types.PointCloud` of
it, dropping points with NaN/inf values (counted by reason). Intensity is kept as the file gives it;
a file without an ``intensity`` field gets a zero column (PointCloud requires one).
:func:`format_pcd`/:func:`write_pcd` write a PointCloud (or RadarScan) as F4 columns.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from edgefuse.adapters.files.common import pointcloud_from_columns
from edgefuse.adapters.files.lzf import MAX_EXPANSION, LzfError, lzf_compress, lzf_decompress
from edgefuse.errors import InputError
from edgefuse.types import PointCloud, RadarScan

#: (TYPE, SIZE) → little-endian numpy dtype, every pair PCL defines.
PCD_TYPES: dict[tuple[str, int], str] = {
    ("F", 4): "<f4",
    ("F", 8): "<f8",
    ("I", 1): "i1",
    ("I", 2): "<i2",
    ("I", 4): "<i4",
    ("I", 8): "<i8",
    ("U", 1): "u1",
    ("U", 2): "<u2",
    ("U", 4): "<u4",
    ("U", 8): "<u8",
}
ENCODINGS = ("ascii", "binary", "binary_compressed")
#: The header ends within this many bytes or the file is not a PCD.
MAX_HEADER_BYTES = 1 << 16
#: Larger points (sum of SIZE × COUNT) are rejected as a lying header (real ones are < 1 KiB).
MAX_POINT_BYTES = 1 << 20
PADDING_FIELD = "_"
DEFAULT_VIEWPOINT = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


class PcdError(InputError):
    """A malformed PCD file: names the file, the header key or data offset and what was expected."""


@dataclass(frozen=True)
class PcdData:
    """A decoded PCD file.

    ``fields``/``sizes``/``types``/``counts``: the header's lists as written (padding ``_`` included);
    ``width``, ``height`` (N = width × height points), ``viewpoint`` (tx ty tz qw qx qy qz, PCD order),
    ``encoding`` (``ascii``/``binary``/``binary_compressed``), ``version``; ``points``: structured array
    of shape (N,), one field per non-padding PCD field (sub-array of length COUNT where COUNT > 1),
    values in the file's types (for DATA binary a read-only view of the input bytes);
    ``trailing_bytes``: bytes after the last point that were ignored (binary encodings; ascii rows
    after POINTS are ignored uncounted)."""

    fields: tuple[str, ...]
    sizes: tuple[int, ...]
    types: tuple[str, ...]
    counts: tuple[int, ...]
    width: int
    height: int
    viewpoint: tuple[float, ...]
    encoding: str
    version: str
    points: np.ndarray
    trailing_bytes: int = 0

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def grid(self) -> np.ndarray:
        """The points as an organized (height, width) structured array (a view)."""
        return self.points.reshape(self.height, self.width)


# ---------------------------------------------------------------- header


def _header_ints(name: str, key: str, values: list[str], minimum: int) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except ValueError:
        raise PcdError(f"{name}: header {key}: expected integers, got {' '.join(values)!r}") from None
    if any(v < minimum for v in out):
        raise PcdError(f"{name}: header {key}: expected integers ≥ {minimum}, got {' '.join(values)!r}")
    return out


def _one_int(name: str, key: str, values: list[str], minimum: int) -> int:
    if len(values) != 1:
        raise PcdError(f"{name}: header {key}: expected one integer, got {' '.join(values)!r}")
    return _header_ints(name, key, values, minimum)[0]


def _split_header(data: bytes, name: str) -> tuple[dict[str, list[str]], int]:
    """Header key → value tokens, and the offset where the data starts (after the DATA line)."""
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        if pos >= min(len(data), MAX_HEADER_BYTES):
            where = "the file ends" if pos >= len(data) else f"the first {MAX_HEADER_BYTES} bytes end"
            raise PcdError(
                f"{name}: header DATA: expected a 'DATA ascii|binary|binary_compressed' line; "
                f"{where} without one"
            )
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        line = data[pos:end].decode("latin-1").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        key = key.upper()
        if key in header:
            raise PcdError(f"{name}: header {key}: expected once, given twice")
        header[key] = values
        if key == "DATA":
            return header, min(pos, len(data))


def _parse_header(data: bytes, name: str) -> tuple[dict, int]:
    raw, start = _split_header(data, name)
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH"):
        if key not in raw:
            raise PcdError(f"{name}: header {key}: expected a {key} line before DATA, found none")
    fields = tuple(raw["FIELDS"])
    if not fields:
        raise PcdError(f"{name}: header FIELDS: expected at least one field name")
    nf = len(fields)
    sizes = _header_ints(name, "SIZE", raw["SIZE"], 1)
    types = tuple(t.upper() for t in raw["TYPE"])
    counts = _header_ints(name, "COUNT", raw["COUNT"], 1) if "COUNT" in raw else (1,) * nf
    for key, vals in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(vals) != nf:
            raise PcdError(
                f"{name}: header {key}: expected {nf} values (one per FIELDS entry), got {len(vals)}"
            )
    for f, t, s in zip(fields, types, sizes, strict=True):
        if (t, s) not in PCD_TYPES:
            known = " ".join(f"{a}{b}" for a, b in PCD_TYPES)
            raise PcdError(f"{name}: header TYPE/SIZE of field {f!r}: expected one of {known}, got {t}{s}")
    point_bytes = sum(s * c for s, c in zip(sizes, counts, strict=True))
    if point_bytes > MAX_POINT_BYTES:
        raise PcdError(
            f"{name}: header SIZE × COUNT: a point of {point_bytes} bytes, expected at most {MAX_POINT_BYTES}"
        )
    named = [f for f in fields if f != PADDING_FIELD]
    if len(set(named)) != len(named):
        raise PcdError(f"{name}: header FIELDS: expected distinct names, got {' '.join(fields)}")
    width = _one_int(name, "WIDTH", raw["WIDTH"], 0)
    height = _one_int(name, "HEIGHT", raw["HEIGHT"], 1) if "HEIGHT" in raw else 1
    points = _one_int(name, "POINTS", raw["POINTS"], 0) if "POINTS" in raw else width * height
    if width * height != points:
        raise PcdError(
            f"{name}: header POINTS: expected WIDTH × HEIGHT = {width} × {height} = "
            f"{width * height}, got {points}"
        )
    viewpoint = DEFAULT_VIEWPOINT
    if "VIEWPOINT" in raw:
        try:
            viewpoint = tuple(float(v) for v in raw["VIEWPOINT"])
        except ValueError:
            viewpoint = ()
        if len(viewpoint) != 7:
            raise PcdError(
                f"{name}: header VIEWPOINT: expected 7 numbers (tx ty tz qw qx qy qz), "
                f"got {' '.join(raw['VIEWPOINT'])!r}"
            )
    encoding = raw["DATA"][0].lower() if raw["DATA"] else ""
    if encoding not in ENCODINGS:
        raise PcdError(f"{name}: header DATA: expected one of {', '.join(ENCODINGS)}, got {encoding!r}")
    version = raw.get("VERSION", ["0.7"])[0] if raw.get("VERSION") else "0.7"
    hdr = dict(
        fields=fields,
        sizes=sizes,
        types=types,
        counts=counts,
        width=width,
        height=height,
        points=points,
        viewpoint=viewpoint,
        encoding=encoding,
        version=version,
    )
    return hdr, start


def _field_dtype(t: str, s: int, count: int):
    return np.dtype(PCD_TYPES[(t, s)]) if count == 1 else np.dtype((PCD_TYPES[(t, s)], (count,)))


def _packed_dtype(hdr: dict) -> np.dtype:
    """Structured dtype of the non-padding fields, packed."""
    return np.dtype(
        [
            (f, _field_dtype(t, s, c))
            for f, t, s, c in zip(hdr["fields"], hdr["types"], hdr["sizes"], hdr["counts"], strict=True)
            if f != PADDING_FIELD
        ]
    )


def _file_dtype(hdr: dict) -> np.dtype:
    """Structured dtype of one point as stored in DATA binary: padding fields are skipped by offset."""
    names, formats, offsets = [], [], []
    off = 0
    for f, t, s, c in zip(hdr["fields"], hdr["types"], hdr["sizes"], hdr["counts"], strict=True):
        if f != PADDING_FIELD:
            names.append(f)
            formats.append(_field_dtype(t, s, c))
            offsets.append(off)
        off += s * c
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": off})


# ---------------------------------------------------------------- data


def _parse_binary(body: memoryview, hdr: dict, name: str) -> tuple[np.ndarray, int]:
    dtype = _file_dtype(hdr)
    n = hdr["points"]
    need = n * dtype.itemsize
    if len(body) < need:
        raise PcdError(
            f"{name}: header POINTS: {n} points × {dtype.itemsize} bytes = {need} bytes expected "
            f"after the header, only {len(body)} there"
        )
    return np.frombuffer(body, dtype=dtype, count=n), len(body) - need


def _parse_compressed(body: memoryview, hdr: dict, name: str, use_library: bool) -> tuple[np.ndarray, int]:
    dtype = _packed_dtype(hdr)
    n = hdr["points"]
    if len(body) < 8:
        raise PcdError(
            f"{name}: DATA binary_compressed: expected 8 bytes of sizes after the header, got {len(body)}"
        )
    csize, usize = struct.unpack_from("<II", body, 0)
    if usize != n * dtype.itemsize:
        raise PcdError(
            f"{name}: DATA binary_compressed: uncompressed size {usize} disagrees with header "
            f"POINTS {n} × {dtype.itemsize} bytes = {n * dtype.itemsize}"
        )
    if csize > len(body) - 8:
        raise PcdError(
            f"{name}: DATA binary_compressed: compressed size {csize} bytes, only "
            f"{len(body) - 8} after the header (truncated)"
        )
    if usize > MAX_EXPANSION * csize:
        raise PcdError(
            f"{name}: header POINTS: {n} points ({usize} bytes) cannot come from {csize} "
            f"compressed bytes (LZF expands at most {MAX_EXPANSION}×)"
        )
    try:
        raw = lzf_decompress(bytes(body[8 : 8 + csize]), usize, use_library=use_library)
    except LzfError as exc:
        raise PcdError(f"{name}: DATA binary_compressed at byte 8 of the data: {exc}") from None
    out = np.empty(n, dtype=dtype)
    off = 0
    for f in dtype.names:
        sub = dtype[f]
        nbytes = n * sub.itemsize
        out[f] = np.frombuffer(
            raw, dtype=sub.base, count=n * max(1, sub.itemsize // sub.base.itemsize), offset=off
        ).reshape(out[f].shape)
        off += nbytes
    return out, len(body) - 8 - csize


def _parse_ascii(data: bytes, start: int, hdr: dict, name: str) -> tuple[np.ndarray, int]:
    """numpy's C text parser, one typed column per value; rows after POINTS are ignored (not counted)."""
    n = hdr["points"]
    dtype = _packed_dtype(hdr)
    if n == 0:
        return np.empty(0, dtype=dtype), 0
    size = len(data) - start  # the rows are data[start:], read in place (no copy)
    lines = data.count(b"\n", start) + (0 if data.endswith(b"\n") or not size else 1)
    if lines < n:  # loadtxt allocates max_rows up front: check the claim first
        raise PcdError(f"{name}: header POINTS: expected {n} ascii rows, at most {lines} there")
    values = n * sum(hdr["counts"])
    if 2 * values - 1 > size:  # each value takes a digit, and all but the last a separator
        raise PcdError(
            f"{name}: header POINTS × COUNT: {values} ascii values cannot fit in {size} bytes"
        )
    usecols, col = [], 0
    for f, c in zip(hdr["fields"], hdr["counts"], strict=True):
        if f != PADDING_FIELD:
            usecols.extend(range(col, col + c))
        col += c
    # usecols and max_rows cost loadtxt 10-20 % each: pass them only where needed (padding; more lines)
    kwargs = {"usecols": usecols} if len(usecols) < col else {}
    if lines > n:
        kwargs["max_rows"] = n
    try:
        with warnings.catch_warnings():  # blank lines / no data: handled by the row count below
            warnings.simplefilter("ignore", UserWarning)
            rows = io.BytesIO(data)
            rows.seek(start)
            out = np.loadtxt(rows, dtype=dtype, comments=None, ndmin=1, **kwargs)
    except ValueError as exc:
        raise PcdError(
            f"{name}: DATA ascii: expected {col} values per row (FIELDS × COUNT) of the header's types: {exc}"
        ) from None
    if len(out) < n:
        raise PcdError(f"{name}: header POINTS: expected {n} ascii rows after the header, found {len(out)}")
    return out, 0


def parse_pcd(data: bytes, name: str = "<pcd>", use_library: bool = True) -> PcdData:
    """Decode a PCD file's bytes. ``name`` names the input in errors; ``use_library=False`` forces our
    own LZF decoder for ``binary_compressed`` (tests, benchmarks). Raises :class:`PcdError`."""
    hdr, start = _parse_header(data, name)
    if hdr["encoding"] == "ascii":
        points, trailing = _parse_ascii(data, start, hdr, name)
    else:  # a view: the binary points are not copied
        body = memoryview(data)[start:]
        if hdr["encoding"] == "binary":
            points, trailing = _parse_binary(body, hdr, name)
        else:
            points, trailing = _parse_compressed(body, hdr, name, use_library)
    return PcdData(
        fields=hdr["fields"],
        sizes=hdr["sizes"],
        types=hdr["types"],
        counts=hdr["counts"],
        width=hdr["width"],
        height=hdr["height"],
        viewpoint=hdr["viewpoint"],
        encoding=hdr["encoding"],
        version=hdr["version"],
        points=points,
        trailing_bytes=trailing,
    )


def read_pcd(path: str | os.PathLike) -> PcdData:
    """Read and decode one PCD file (thin shell around :func:`parse_pcd`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PcdError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_pcd(data, str(path))


# ---------------------------------------------------------------- to float32 columns


def pcd_columns(pcd: PcdData) -> tuple[tuple[str, ...], np.ndarray]:
    """The points as (names, N×C float32, a new writable array): one column per value, ``name_i`` for
    element i of a ``COUNT > 1`` field, padding dropped, in header order."""
    pts = pcd.points
    names: list[str] = []
    for f in pts.dtype.names:
        k = pts.dtype[f].itemsize // pts.dtype[f].base.itemsize
        names.extend([f] if k == 1 else [f"{f}_{i}" for i in range(k)])
    if not names:  # only padding fields
        return (), np.empty((len(pts), 0), dtype=np.float32)
    mat = structured_to_unstructured(pts, dtype=np.float32)  # a view where the fields allow it
    return tuple(names), np.array(mat, dtype=np.float32, order="C", copy=True)


def pointcloud_from_pcd(pcd: PcdData, name: str = "<pcd>") -> tuple[PointCloud, dict[str, int]]:
    """A PointCloud of a decoded PCD, and the points dropped by reason (``nan``, ``inf``).

    Needs x y z (:class:`PcdError` naming FIELDS otherwise); all other fields are kept as float32
    columns; ``intensity`` is appended as zeros when the file has none."""
    return pointcloud_from_columns(*pcd_columns(pcd), name, "header FIELDS")


# ---------------------------------------------------------------- writing


def _encode_pcd(cloud: PointCloud | RadarScan, encoding: str, viewpoint: tuple[float, ...]) -> list:
    """The file as a list of byte chunks (header, then data) so that writing needs no joined copy."""
    if encoding not in ENCODINGS:
        raise ValueError(f"format_pcd encoding: expected one of {ENCODINGS}, got {encoding!r}")
    if len(viewpoint) != 7:
        raise ValueError(f"format_pcd viewpoint: expected 7 numbers (tx ty tz qw qx qy qz), got {viewpoint}")
    mat = np.ascontiguousarray(cloud.data, dtype="<f4")
    n, c = mat.shape
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\n"
        f"FIELDS {' '.join(cloud.fields)}\n"
        f"SIZE {' '.join(['4'] * c)}\n"
        f"TYPE {' '.join(['F'] * c)}\n"
        f"COUNT {' '.join(['1'] * c)}\n"
        f"WIDTH {n}\nHEIGHT 1\n"
        f"VIEWPOINT {' '.join(f'{v:.9g}' for v in viewpoint)}\n"
        f"POINTS {n}\nDATA {encoding}\n"
    ).encode("ascii")
    if encoding == "binary":
        return [header, mat.reshape(-1).view(np.uint8)]  # no copy
    if encoding == "binary_compressed":
        raw = mat.T.tobytes()  # PCL's layout: each field's N values in turn
        packed = lzf_compress(raw)
        return [header, struct.pack("<II", len(packed), len(raw)), packed]
    rows = [" ".join(f"{v:.9g}" for v in row) for row in mat.tolist()]
    return [header, ("\n".join(rows) + ("\n" if rows else "")).encode("ascii")]


def format_pcd(
    cloud: PointCloud | RadarScan, encoding: str = "binary", viewpoint: tuple[float, ...] = DEFAULT_VIEWPOINT
) -> bytes:
    """Encode a PointCloud/RadarScan as PCD v0.7 bytes: one F4 field per column (names as the
    cloud's fields), WIDTH = N, HEIGHT = 1. ``encoding``: ascii, binary or binary_compressed;
    ``viewpoint``: tx ty tz qw qx qy qz. Float text is ``%.9g`` (float32 round-trips exactly)."""
    return b"".join(_encode_pcd(cloud, encoding, viewpoint))


def write_pcd(
    path: str | os.PathLike,
    cloud: PointCloud | RadarScan,
    encoding: str = "binary",
    viewpoint: tuple[float, ...] = DEFAULT_VIEWPOINT,
) -> Path:
    """Write ``cloud`` to ``path`` as PCD (see :func:`format_pcd`); returns the path."""
    path = Path(path)
    chunks = _encode_pcd(cloud, encoding, viewpoint)
    with path.open("wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    return path
