"""TI mmWave data-port decoding speed: edgefuse's FrameDecoder (numpy) side by side with a per-point
``struct`` loop (how TI's Python example parsers decode), and against the UART's line rate.

No maintained library on PyPI decodes the SDK demo's UART stream, so the baseline is the plain-Python
loop written here. Both decode the same stream in the same run; the table gives their ratio and how
many times faster than the 921 600-baud data UART (8N1: 92 160 bytes/s) each one is.

Run: .venv/bin/python benchmarks/ti_mmwave_bench.py  (writes docs/ti_mmwave_bench.json)
"""

from __future__ import annotations

import struct

import numpy as np
from _report import best_of, machine, write_json

from edgefuse.adapters.ti_mmwave import FrameDecoder, encode_frame

UART_BYTES_PER_S = 921600 / 10  # 8N1: 10 bits on the wire per byte
MAGIC = bytes.fromhex("0201040306050807")


def baseline_decode(data: bytes) -> list[tuple[int, list[tuple[float, ...]]]]:
    """Per-point struct decoding of SDK 3.x packets (no validation beyond lengths)."""
    out = []
    pos = data.find(MAGIC)
    while 0 <= pos and pos + 40 <= len(data):
        version, total, plat, frame, cycles, n_obj, n_tlv, sub = struct.unpack_from("<8I", data, pos + 8)
        if pos + total > len(data):
            break
        p = pos + 40
        pts: list[tuple[float, ...]] = []
        side: list[tuple[int, int]] = []
        for _ in range(n_tlv):
            t, length = struct.unpack_from("<II", data, p)
            p += 8
            if t == 1:
                pts = [struct.unpack_from("<4f", data, p + 16 * i) for i in range(length // 16)]
            elif t == 7:
                side = [struct.unpack_from("<2h", data, p + 4 * i) for i in range(length // 4)]
            p += length
        rows = [(y, -x, z, v, s[0] / 10, s[1] / 10) for (x, y, z, v), s in zip(pts, side, strict=False)]
        out.append((frame, rows))
        pos = data.find(MAGIC, pos + total)
    return out


def make_stream(n_frames: int, n_points: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return b"".join(
        encode_frame(
            rng.uniform(-30, 30, (n_points, 4)),
            i,
            snr_db=rng.integers(0, 400, n_points) / 10,
            noise_db=rng.integers(0, 400, n_points) / 10,
            time_cpu_cycles=i * 10_000_000,
        )
        for i in range(n_frames)
    )


def main() -> None:
    rows = []
    for n_points in (10, 100, 500):
        n_frames = 400
        data = make_stream(n_frames, n_points)

        def ours(data=data, n_frames=n_frames):
            d = FrameDecoder()
            frames = []
            for i in range(0, len(data), 4096):  # UART-sized reads
                frames += d.feed(data[i : i + 4096])
            assert len(frames) == n_frames
            return frames

        ref = baseline_decode(data)
        got = ours()
        assert len(ref) == n_frames
        np.testing.assert_allclose(got[-1].to_scan().data, np.array(ref[-1][1], dtype=np.float32), rtol=1e-6)
        t_ours, t_base = best_of(ours, 3), best_of(lambda data=data: baseline_decode(data), 3)
        mb = len(data) / 1e6
        rows.append(
            {
                "points_per_frame": n_points,
                "frames": n_frames,
                "bytes": len(data),
                "edgefuse_MBps": mb / t_ours,
                "struct_loop_MBps": mb / t_base,
                "edgefuse_us_per_frame": t_ours / n_frames * 1e6,
                "struct_loop_us_per_frame": t_base / n_frames * 1e6,
                "speedup_vs_struct_loop": t_base / t_ours,
                "edgefuse_x_uart_rate": len(data) / t_ours / UART_BYTES_PER_S,
                "struct_loop_x_uart_rate": len(data) / t_base / UART_BYTES_PER_S,
            }
        )
    print(
        f"{'pts/frame':>9} {'ours MB/s':>10} {'loop MB/s':>10} {'ours µs/fr':>11} {'loop µs/fr':>11} "
        f"{'speedup':>8} {'ours×UART':>10} {'loop×UART':>10}"
    )
    for r in rows:
        print(
            f"{r['points_per_frame']:>9} {r['edgefuse_MBps']:>10.1f} {r['struct_loop_MBps']:>10.1f} "
            f"{r['edgefuse_us_per_frame']:>11.1f} {r['struct_loop_us_per_frame']:>11.1f} "
            f"{r['speedup_vs_struct_loop']:>8.1f} {r['edgefuse_x_uart_rate']:>10.0f} "
            f"{r['struct_loop_x_uart_rate']:>10.0f}"
        )
    path = write_json("ti_mmwave_bench", {"machine": machine(), "results": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
