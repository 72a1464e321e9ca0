"""PCD reading and writing: edgefuse's decoder side by side with pypcd4, in one run.

For each encoding (ascii, binary, binary_compressed) of the same cloud, times
- ``read``: file → structured array (edgefuse ``read_pcd`` vs ``pypcd4.PointCloud.from_path``),
- ``read+matrix``: file → N×C float32 (``read_pcd`` + ``pcd_columns`` vs ``from_path`` + ``numpy()``),
- ``write`` (edgefuse ``write_pcd`` vs pypcd4 ``save``),
checks the outputs are equal, and times LZF decompression alone: the C module (python-neo-lzf, what
both readers use) vs edgefuse's pure-Python fallback decoder. Best of repeated runs, interleaved.

Run: ``.venv/bin/python benchmarks/pcd_bench.py [--points N] [--repeats K]``; prints a table, writes
docs/pcd_bench.json and replaces the "## PCD files" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pypcd4
from _report import best_of, machine, machine_line, replace_section, write_json

from edgefuse.adapters.files.lzf import lzf_decompress, lzf_decompress_py
from edgefuse.adapters.files.pcd import ENCODINGS, parse_pcd, pcd_columns, read_pcd, write_pcd
from edgefuse.types import PointCloud

SECTION = "PCD files"


def lidar_like_cloud(n: int, seed: int = 0) -> PointCloud:
    """A spinning-LiDAR-like sweep: 32 rings, ranges on a 4 mm grid, 8-bit intensity, per-point time."""
    rng = np.random.default_rng(seed)
    ring = np.arange(n) % 32
    az = np.repeat(np.linspace(0, 2 * np.pi, n // 32 + 1), 32)[:n]
    elev = np.deg2rad(-25 + ring * (40 / 31))
    rng_m = np.round(rng.uniform(1, 80, n) / 0.004) * 0.004
    x, y, z = rng_m * np.cos(elev) * np.cos(az), rng_m * np.cos(elev) * np.sin(az), rng_m * np.sin(elev)
    inten = rng.integers(0, 256, n).astype(np.float64)
    t = -1e8 + np.arange(n) * (1e8 / n)
    mat = np.column_stack([x, y, z, inten, t, ring]).astype(np.float32)
    return PointCloud(mat, ("x", "y", "z", "intensity", "t_ns", "ring"))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    return best_of(fn, repeats)


def pair(ours, theirs, repeats: int) -> tuple[float, float]:
    """Best-of seconds of two callables, measured interleaved (ours, theirs, ours, …): the minimum is
    the run least disturbed by the other jobs on a shared machine."""
    a, b = [], []
    ours()
    theirs()
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs()
        b.append(time.perf_counter() - t0)
    return min(a), min(b)


def run(points: int, repeats: int) -> dict:
    cloud = lidar_like_cloud(points)
    pc4 = pypcd4.PointCloud.from_points(list(cloud.data.T), cloud.fields, [np.float32] * len(cloud.fields))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for enc in ENCODINGS:
            path = write_pcd(tmp / f"ours_{enc}.pcd", cloud, enc)
            reps = max(1, repeats // 3) if enc == "ascii" else repeats
            # outputs must agree before speed means anything
            ours_m = pcd_columns(read_pcd(path))[1]
            theirs_m = pypcd4.PointCloud.from_path(path).numpy()
            assert np.array_equal(ours_m, theirs_m) and np.array_equal(ours_m, cloud.data), enc
            r_ours, r_theirs = pair(
                lambda p=path: read_pcd(p), lambda p=path: pypcd4.PointCloud.from_path(p), reps
            )
            m_ours, m_theirs = pair(
                lambda p=path: pcd_columns(read_pcd(p)),
                lambda p=path: pypcd4.PointCloud.from_path(p).numpy(),
                reps,
            )
            w_ours, w_theirs = pair(
                lambda e=enc: write_pcd(tmp / f"w_{e}.pcd", cloud, e),
                lambda e=enc: pc4.save(tmp / f"p_{e}.pcd", encoding=pypcd4.Encoding(e)),
                reps,
            )
            size = path.stat().st_size
            for op, o, t in (
                ("read", r_ours, r_theirs),
                ("read+matrix", m_ours, m_theirs),
                ("write", w_ours, w_theirs),
            ):
                rows.append(
                    {
                        "encoding": enc,
                        "op": op,
                        "file_bytes": size,
                        "edgefuse_ms": o * 1e3,
                        "pypcd4_ms": t * 1e3,
                        "pypcd4_over_edgefuse": t / o,
                    }
                )
        # LZF alone: C module vs our pure-Python decoder on this cloud's compressed block
        data = (tmp / "ours_binary_compressed.pcd").read_bytes()
        start = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
        csize, usize = np.frombuffer(data, "<u4", 2, start)
        block = data[start + 8 : start + 8 + int(csize)]
        assert lzf_decompress_py(block, int(usize)) == lzf_decompress(block, int(usize))
        c_s = timed(lambda: lzf_decompress(block, int(usize)), repeats)
        py_s = timed(lambda: lzf_decompress_py(block, int(usize)), max(1, repeats // 3))
        full_py = timed(lambda: parse_pcd(data, "x", use_library=False), max(1, repeats // 3))
        full_c = timed(lambda: parse_pcd(data, "x"), repeats)
    lzf = {
        "compressed_bytes": int(csize),
        "uncompressed_bytes": int(usize),
        "c_module_ms": c_s * 1e3,
        "pure_python_ms": py_s * 1e3,
        "python_over_c": py_s / c_s,
        "parse_binary_compressed_c_ms": full_c * 1e3,
        "parse_binary_compressed_python_ms": full_py * 1e3,
    }
    return {
        "machine": machine(pypcd4),
        "points": points,
        "fields": list(cloud.fields),
        "repeats": repeats,
        "rows": rows,
        "lzf": lzf,
    }


def markdown(res: dict) -> str:
    lines = [
        "edgefuse's PCD reader/writer (`edgefuse/adapters/files/pcd.py`) against pypcd4, same files, "
        f"one run (best of {res['repeats']} interleaved runs; ascii a third of that). "
        f"Cloud: {res['points']} points, fields {' '.join(res['fields'])} (F4). "
        f"Machine: {machine_line(res['machine'])}. "
        "Outputs are checked equal before timing.",
        "",
        "Rerun: `.venv/bin/python benchmarks/pcd_bench.py` (JSON: `docs/pcd_bench.json`).",
        "",
        "| encoding | op | file MB | edgefuse ms | pypcd4 ms | pypcd4 / edgefuse |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['encoding']} | {r['op']} | {r['file_bytes'] / 1e6:.2f} | "
            f"{r['edgefuse_ms']:.2f} | {r['pypcd4_ms']:.2f} | {r['pypcd4_over_edgefuse']:.2f}× |"
        )
    z = res["lzf"]
    lines += [
        "",
        f"LZF decompression of the binary_compressed block ({z['compressed_bytes'] / 1e6:.2f} MB → "
        f"{z['uncompressed_bytes'] / 1e6:.2f} MB): C module (python-neo-lzf, used by both readers) "
        f"{z['c_module_ms']:.2f} ms, edgefuse's pure-Python fallback {z['pure_python_ms']:.1f} ms "
        f"({z['python_over_c']:.0f}× slower; whole parse {z['parse_binary_compressed_c_ms']:.2f} ms vs "
        f"{z['parse_binary_compressed_python_ms']:.1f} ms). The C module is a core dependency; the Python "
        "decoder is only the fallback where it cannot be installed.",
        "",
        "Reading: binary is a zero-copy `frombuffer` for both; binary_compressed uses the same LZF module "
        "for both; ascii is numpy's C `loadtxt` for both (typed per column). Ratios within ±15 % of 1 are "
        "noise on this shared 2-core box (other jobs run alongside; runs differ by up to ±30 %). "
        "Writing: ascii is faster than pypcd4 (`%.9g`, which round-trips float32, where pypcd4 writes "
        "`%.10f` and loses small values); binary_compressed writing is dominated by the shared LZF "
        "compressor.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=120_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    args = ap.parse_args()
    res = run(args.points, args.repeats)
    text = markdown(res)
    print(text)
    if not args.no_docs:
        write_json("pcd_bench", res)
        replace_section(SECTION, text)


if __name__ == "__main__":
    main()
