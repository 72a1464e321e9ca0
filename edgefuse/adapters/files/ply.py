"""PLY point clouds: the ``vertex`` element as an N×C float32 matrix.

:func:`load_ply` reads through open3d's tensor I/O (``open3d.t.io.read_point_cloud``) where open3d is
installed (the ``calib`` extra), keeping positions and, when present, ``intensity``. Without open3d it
uses our own decoder, :func:`parse_ply` (bytes in, arrays out), which reads ``ascii``,
``binary_little_endian`` and ``binary_big_endian`` files whose first element is ``vertex`` with scalar
properties (x y z and any others — intensity, normals, colours — kept as columns under their names).
Elements after the vertices (faces) are ignored. A file without ``intensity`` gets a zero column
(PointCloud requires one); intensity is kept as the file gives it. NaN/inf points are dropped and
counted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgefuse.adapters.files.common import pointcloud_from_columns
from edgefuse.errors import InputError
from edgefuse.types import PointCloud

#: PLY scalar type names (both spellings) → numpy dtype characters (byte order added per file).
PLY_TYPES: dict[str, str] = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
PLY_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
MAX_HEADER_BYTES = 1 << 16


class PlyError(InputError):
    """A malformed or unsupported PLY file."""


def parse_ply(data: bytes, name: str = "<ply>") -> tuple[tuple[str, ...], np.ndarray]:
    """Decode a PLY file's vertices: (property names, N×C float32). Raises :class:`PlyError`."""
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(
            f"{name}: header: expected 'ply' first and 'end_header' within {MAX_HEADER_BYTES} bytes"
        )
    nl = data.find(b"\n", end)
    body = data[nl + 1 :] if nl >= 0 else b""
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for raw in data[:end].decode("latin-1").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in PLY_FORMATS:
                raise PlyError(
                    f"{name}: header format: expected one of {', '.join(PLY_FORMATS)}, got {raw!r}"
                )
            fmt = tok[1]
        elif tok[0] == "element":
            try:
                count = int(tok[2])
                if count < 0:
                    raise ValueError
            except (IndexError, ValueError):
                raise PlyError(
                    f"{name}: header element: expected 'element NAME COUNT', got {raw!r}"
                ) from None
            elements.append((tok[1], count, []))
        elif tok[0] == "property":
            if not elements or len(tok) < 3:
                raise PlyError(
                    f"{name}: header property: expected 'property TYPE NAME' after an element "
                    f"line, got {raw!r}"
                )
            elements[-1][2].append((tok[1], tok[-1]))
        else:
            raise PlyError(f"{name}: header: unexpected line {raw!r}")
    if fmt is None:
        raise PlyError(f"{name}: header format: expected a 'format' line, found none")
    if not elements or elements[0][0] != "vertex":
        raise PlyError(
            f"{name}: header element: expected 'vertex' as the first element, got {[e[0] for e in elements]}"
        )
    _, n, props = elements[0]
    for ptype, pname in props:
        if ptype not in PLY_TYPES:
            raise PlyError(
                f"{name}: header property {pname!r}: expected a scalar type "
                f"({' '.join(PLY_TYPES)}), got {ptype!r}"
            )
    names = tuple(p for _, p in props)
    if len(set(names)) != len(names):
        raise PlyError(f"{name}: header vertex properties: expected distinct names, got {names}")
    if fmt == "ascii":
        rows = [r for r in body.split(b"\n") if r.strip()]
        if len(rows) < n:
            raise PlyError(f"{name}: header element vertex: expected {n} ascii rows, found {len(rows)}")
        rows = rows[:n]
        tokens = b" ".join(rows).split()
        if len(tokens) != n * len(names):
            raise PlyError(
                f"{name}: ascii vertex data: expected {len(names)} values per row, "
                f"got {len(tokens)} values in {n} rows"
            )
        try:
            mat = np.array(tokens, dtype=np.bytes_).astype(np.float32).reshape(n, len(names))
        except ValueError:
            raise PlyError(f"{name}: ascii vertex data: expected numbers") from None
        return names, mat
    order = PLY_FORMATS[fmt]
    dtype = np.dtype([(p, order + PLY_TYPES[t]) for t, p in props])
    need = n * dtype.itemsize
    if len(body) < need:
        raise PlyError(
            f"{name}: header element vertex: {n} vertices × {dtype.itemsize} bytes = {need} "
            f"bytes expected, only {len(body)} there"
        )
    rec = np.frombuffer(body, dtype=dtype, count=n)
    mat = np.empty((n, len(names)), dtype=np.float32)
    for j, p in enumerate(names):
        mat[:, j] = rec[p]
    return names, mat


def _open3d():
    try:
        import open3d
    except ImportError:
        return None
    return open3d


def load_ply(path: str | os.PathLike, use_open3d: bool = True) -> tuple[PointCloud, dict[str, int]]:
    """Read a PLY file to a PointCloud and the dropped points by reason: open3d where installed (and
    ``use_open3d``), else :func:`parse_ply`."""
    path = Path(path)
    o3d = _open3d() if use_open3d else None
    if o3d is not None:
        if not path.is_file():
            raise PlyError(f"{path}: cannot read (no such file)")
        try:
            pc = o3d.t.io.read_point_cloud(str(path))
        except (RuntimeError, ValueError) as exc:
            raise PlyError(f"{path}: open3d could not read it ({exc})") from None
        if "positions" not in pc.point:
            raise PlyError(f"{path}: vertex properties: expected x y z (open3d found no positions)")
        xyz = pc.point["positions"].numpy().astype(np.float32).reshape(-1, 3)
        cols, names = [xyz], ["x", "y", "z"]
        if "intensity" in pc.point:
            cols.append(pc.point["intensity"].numpy().astype(np.float32).reshape(-1, 1))
            names.append("intensity")
        mat = np.concatenate(cols, axis=1)
        return pointcloud_from_columns(tuple(names), mat, str(path), "vertex properties")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlyError(f"{path}: cannot read ({exc.strerror})") from None
    names, mat = parse_ply(data, str(path))
    return pointcloud_from_columns(names, mat, str(path), "vertex properties")
