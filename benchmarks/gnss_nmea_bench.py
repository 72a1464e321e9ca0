"""NMEA GNSS decoding speed: edgefuse's parser/decoder side by side with pynmea2 (+ pymap3d for ENU).

Three comparisons, each on the same input in the same run:
1. one sentence → typed values: ``parse_nmea_sentence`` vs ``pynmea2.parse(check=True)`` plus reading the
   same fields as numbers (latitude, longitude, altitude / speed, course, date);
2. a byte stream (64-byte reads, as a UART delivers) → ENU fixes: ``NmeaDecoder.feed`` vs
   ``pynmea2.NMEAStreamReader`` + ``pymap3d.geodetic2enu`` per GGA;
3. one geodetic → ENU conversion: ``LocalTangentPlane.enu`` vs ``pymap3d.geodetic2enu`` (and their largest
   difference).
The table also says how many times faster than a 10 Hz receiver on a 115 200-baud port each one is.

Run: .venv/bin/python benchmarks/gnss_nmea_bench.py  (writes docs/gnss_nmea_bench.json)
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import pymap3d
import pynmea2
from _report import best_of, machine, write_json

from edgefuse.adapters.gnss import LocalTangentPlane, NmeaDecoder, parse_nmea_sentence

LINE_BYTES_PER_S = 115200 / 10  # 8N1


def nmea(body: str) -> bytes:
    cs = reduce(lambda a, b: a ^ b, body.encode(), 0)
    return f"${body}*{cs:02X}\r\n".encode()


def make_epochs(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        lat = 48.1 + 1e-5 * k + rng.normal(0, 1e-7)
        lon = 11.5 + 2e-5 * k
        la = f"{int(lat):02d}{(lat - int(lat)) * 60:010.7f}"
        lo = f"{int(lon):03d}{(lon - int(lon)) * 60:010.7f}"
        s = k % 86400
        t = f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}.{k % 10}0"
        kn = 20 + rng.normal(0, 0.1)
        out.append(
            nmea(f"GNRMC,{t},A,{la},N,{lo},E,{kn:.3f},63.43,010124,,,A")
            + nmea(f"GNVTG,63.43,T,,M,{kn:.3f},N,{kn * 1.852:.3f},K,A")
            + nmea(f"GNGGA,{t},{la},N,{lo},E,4,24,0.6,{520 + 0.01 * k:.3f},M,47.0,M,1.0,0000")
        )
    return out


def main() -> None:
    epochs = make_epochs(2000)
    lines = [ln for e in epochs for ln in e.split(b"\r\n") if ln]
    texts = [ln.decode() for ln in lines]
    stream = b"".join(epochs)

    def ours_parse():
        for ln in lines:
            parse_nmea_sentence(ln)

    def ref_parse():
        for t in texts:
            m = pynmea2.parse(t, check=True)
            if m.sentence_type == "GGA":
                (m.latitude, m.longitude, float(m.altitude), float(m.geo_sep), m.timestamp)
            elif m.sentence_type == "RMC":
                (m.latitude, m.longitude, float(m.spd_over_grnd), float(m.true_course), m.datestamp)
            else:
                (float(m.spd_over_grnd_kts), float(m.true_track))

    def ours_stream():
        d = NmeaDecoder()
        fixes = []
        for i in range(0, len(stream), 64):
            fixes += d.feed(stream[i : i + 64], i)
        return fixes

    def ref_stream():
        reader = pynmea2.NMEAStreamReader(errors="ignore")
        origin = None
        fixes = []
        for i in range(0, len(stream), 64):
            for m in reader.next(stream[i : i + 64].decode("ascii", "replace")):
                if m.sentence_type == "GGA":
                    h = float(m.altitude) + float(m.geo_sep)
                    if origin is None:
                        origin = (m.latitude, m.longitude, h)
                    fixes.append(pymap3d.geodetic2enu(m.latitude, m.longitude, h, *origin))
        return fixes

    ltp = LocalTangentPlane(48.1, 11.5, 567.0)
    pts = [(48.1 + 1e-4 * k, 11.5 + 2e-4 * k, 560.0 + k) for k in range(2000)]

    def ours_enu():
        return [ltp.enu(*p) for p in pts]

    def ref_enu():
        return [pymap3d.geodetic2enu(*p, 48.1, 11.5, 567.0) for p in pts]

    assert len(ours_stream()) == len(ref_stream()) == len(epochs)
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(ours_enu(), ref_enu(), strict=True)
    )
    stream_diff = max(
        float(np.max(np.abs(f.enu - np.asarray(r)))) for f, r in zip(ours_stream(), ref_stream(), strict=True)
    )

    t = {name: best_of(fn, 3) for name, fn in [
        ("ours_parse", ours_parse), ("ref_parse", ref_parse), ("ours_stream", ours_stream),
        ("ref_stream", ref_stream), ("ours_enu", ours_enu), ("ref_enu", ref_enu),
    ]}  # fmt: skip
    # a 10 Hz receiver sending these three sentences: bytes/s and epochs/s it needs
    epoch_bytes = len(stream) / len(epochs)
    needed_epochs_per_s = min(10.0, LINE_BYTES_PER_S / epoch_bytes)
    rows = [
        {
            "what": "parse one sentence (µs)",
            "edgefuse": 1e6 * t["ours_parse"] / len(lines),
            "library": 1e6 * t["ref_parse"] / len(lines),
            "library_name": "pynmea2",
        },
        {
            "what": "stream → ENU fix, per epoch (µs)",
            "edgefuse": 1e6 * t["ours_stream"] / len(epochs),
            "library": 1e6 * t["ref_stream"] / len(epochs),
            "library_name": "pynmea2 + pymap3d",
        },
        {
            "what": "geodetic → ENU, per point (µs)",
            "edgefuse": 1e6 * t["ours_enu"] / len(pts),
            "library": 1e6 * t["ref_enu"] / len(pts),
            "library_name": "pymap3d",
        },
    ]
    for r in rows:
        r["speedup"] = r["library"] / r["edgefuse"]
    result = {
        "machine": machine(pynmea2, pymap3d),
        "epochs": len(epochs),
        "sentences": len(lines),
        "epoch_bytes": epoch_bytes,
        "rows": rows,
        "edgefuse_x_10hz_receiver": 1.0 / (needed_epochs_per_s * t["ours_stream"] / len(epochs)),
        "max_abs_diff_enu_m": diff,
        "max_abs_diff_stream_enu_m": stream_diff,
    }
    print(f"{'':36s} {'edgefuse':>10s} {'library':>10s} {'speedup':>8s}  library")
    for r in rows:
        print(
            f"{r['what']:36s} {r['edgefuse']:10.2f} {r['library']:10.2f} {r['speedup']:8.2f}  "
            f"{r['library_name']}"
        )
    print(f"ENU max |edgefuse − pymap3d|: {diff:.2e} m (stream: {stream_diff:.2e} m)")
    print(f"decoder headroom over a 10 Hz receiver: {result['edgefuse_x_10hz_receiver']:.0f}x")
    out = write_json("gnss_nmea_bench", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
