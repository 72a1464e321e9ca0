"""Builds the hand-made TI mmWave data-port captures in this folder (run: python make_captures.py).

Independent of edgefuse: every packet is packed field by field with ``struct`` from the SDK's published
layout (see docs/adapters.md, "TI mmWave"), and ``expected.json`` holds the values a correct decoder
must give, in our sensor frame (x = y_ti, y = -x_ti, z = z_ti), computed here by hand.

capture_3x.dat (SDK 3.5, IWR6843, 40-byte header, float points + side info):
    5 garbage bytes (ending in a partial magic word), frame 10 (3 points + side info + a skipped
    stats TLV), 13 garbage bytes, the first 30 bytes of frame 11 (truncated), frame 12 (no TLVs),
    frame 13 (2 points, no side info). Expected: frames 10, 12, 13; 18 garbage bytes; 1 truncated.
capture_2x.dat (SDK 2.1): frame 5 from an xWR16xx (40-byte header, Q9 points, one doppler index
    written unsigned as 14 = -2 of 16 bins), frame 6 from an xWR14xx (36-byte header, Q10). With
    xwr16xx_2tx.cfg: doppler = index x 0.9365634365634365 m/s.
"""

import json
import struct
from pathlib import Path

MAGIC = struct.pack("<4H", 0x0102, 0x0304, 0x0506, 0x0708)
HERE = Path(__file__).parent


def pad32(b: bytes) -> bytes:
    return b + bytes(-len(b) % 32)


def packet(version, platform, frame, cycles, n_obj, tlvs, sub_frame=True):
    body = b"".join(struct.pack("<II", t, len(v)) + v for t, v in tlvs)
    hlen = 40 if sub_frame else 36
    total = hlen + len(body)
    total += -total % 32
    hdr = MAGIC + struct.pack("<7I", version, total, platform, frame, cycles, n_obj, len(tlvs))
    if sub_frame:
        hdr += struct.pack("<I", 0)
    return pad32(hdr + body)


def pts_3x(points_ti):
    return b"".join(struct.pack("<4f", *p) for p in points_ti)


def sensor_frame(points_ti):
    return [[y, -x, z] for x, y, z, *_ in points_ti]


def main():
    v3, v2 = 0x03050004, 0x02010004
    # ---- 3.x
    f10 = [(1.5, 4.0, 0.25, -1.0), (-2.0, 8.5, 0.5, 0.75), (0.0, 12.0, -0.125, 2.5)]
    side10 = [(153, 402), (88, 395), (251, 410)]  # 0.1 dB
    stats_tlv = struct.pack("<6I", 1, 2, 3, 4, 5, 6)
    p10 = packet(v3, 0xA6843, 10, 2_000_000_000, 3,
                 [(1, pts_3x(f10)), (7, b"".join(struct.pack("<2h", *s) for s in side10)), (6, stats_tlv)])
    p11 = packet(v3, 0xA6843, 11, 2_020_000_000, 1, [(1, pts_3x([(1.0, 1.0, 1.0, 1.0)]))])
    p12 = packet(v3, 0xA6843, 12, 2_040_000_000, 0, [])
    f13 = [(3.0, 5.0, 1.0, 0.0), (-4.0, 6.0, -1.0, -3.25)]
    p13 = packet(v3, 0xA6843, 13, 60_000_000, 2, [(1, pts_3x(f13))])  # cycles wrapped around 2^32
    cap3 = bytes([0x00, 0xFF, 0x02, 0x01, 0x04]) + p10 + bytes(range(100, 113)) + p11[:30] + p12 + p13
    (HERE / "capture_3x.dat").write_bytes(cap3)

    # ---- 2.x
    def objs(rows, q):
        return struct.pack("<HH", len(rows), q) + b"".join(struct.pack("<HhHhhh", *r) for r in rows)

    # (rangeIdx, dopplerIdx, peak, x, y, z) with x y z in Q9 (1/512 m)
    rows5 = [(105, 3, 1200, 512, 2432, 64), (60, 14, 800, -768, 1280, -128)]
    rows6 = [(40, -1, 500, 1024, 3072, 0)]  # Q10
    p5 = packet(v2, 0xA1642, 5, 600_000_000, 2, [(1, objs(rows5, 9))])
    p6 = packet(v2, 0xA1443, 6, 700_000_000, 1, [(1, objs(rows6, 10))], sub_frame=False)
    (HERE / "capture_2x.dat").write_bytes(p5 + p6)

    def q(rows, qf):
        return [[r[4] / 2**qf, -r[3] / 2**qf, r[5] / 2**qf] for r in rows]

    expected = {
        "capture_3x.dat": {
            "frames": [
                {"frame_number": 10, "xyz": sensor_frame(f10), "doppler": [p[3] for p in f10],
                 "snr": [s[0] / 10 for s in side10], "noise": [s[1] / 10 for s in side10],
                 "raw_stamp_ns": 2_000_000_000 * 5},  # 200 MHz R4F: 5 ns per cycle
                {"frame_number": 12, "xyz": [], "doppler": [], "snr": [], "noise": [],
                 "raw_stamp_ns": 2_040_000_000 * 5},
                {"frame_number": 13, "xyz": sensor_frame(f13), "doppler": [p[3] for p in f13],
                 "snr": [None, None], "noise": [None, None],
                 "raw_stamp_ns": (2**32 + 60_000_000) * 5},
            ],
            "garbage_bytes": 18, "truncated": 1, "truncated_bytes": 30,
        },
        "capture_2x.dat": {
            "frames": [
                {"frame_number": 5, "xyz": q(rows5, 9), "doppler_idx": [3, -2], "peak": [1200, 800],
                 "raw_stamp_ns": 1_000_000_000},  # 600 MHz DSP
                {"frame_number": 6, "xyz": q(rows6, 10), "doppler_idx": [-1], "peak": [500],
                 "raw_stamp_ns": 3_500_000_000},  # 200 MHz R4F on xWR14xx
            ],
            "doppler_resolution_mps": 3e8 / (2 * 77e9 * 65e-6 * 16 * 2),
        },
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
