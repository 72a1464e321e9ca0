"""Capture reader: the real pcap against dpkt, and hand-built classic pcap (both byte orders, µs and ns)
and pcapng files (both byte orders, if_tsresol) with non-UDP, other-port, VLAN, IPv6 and truncated records."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

from edgefuse.adapters.velodyne.pcap import PcapError, PcapStats, read_udp_payloads
from edgefuse.errors import InputError

PCAP = Path(__file__).parent / "data" / "velodyne_vlp32c" / "DERIVED_vlp32c_from_rosbag2.pcap"


def test_real_capture_matches_dpkt():
    ours = list(read_udp_payloads(PCAP, 2368))
    with PCAP.open("rb") as f:
        theirs = [(ts, dpkt.ethernet.Ethernet(buf).data.data.data) for ts, buf in dpkt.pcap.Reader(f)]
    assert len(ours) == len(theirs) == 379
    for (t1, p1), (t2, p2) in zip(ours, theirs, strict=True):
        assert p1 == bytes(p2)
        assert abs(t1 - round(float(t2) * 1e9)) < 1000  # dpkt gives float seconds
    assert ours[0][0] == 1713492677327771000


def udp4(payload: bytes, dport: int, proto: int = 17, vlan: bool = False) -> bytes:
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, proto, 0, bytes(4), bytes(4)) + udp
    eth = b"\x01" * 6 + b"\x02" * 6
    if vlan:
        eth += struct.pack(">HH", 0x8100, 7)
    return eth + struct.pack(">H", 0x0800) + ip


def udp6(payload: bytes, dport: int) -> bytes:
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip6 = struct.pack(">IHBB16s16s", 6 << 28, len(udp), 17, 64, bytes(16), bytes(16)) + udp
    return b"\x01" * 6 + b"\x02" * 6 + struct.pack(">H", 0x86DD) + ip6


FRAMES = [
    (1_700_000_000_123_456_000, udp4(b"first", 2368)),
    (1_700_000_000_223_456_000, udp4(b"other port", 9999)),
    (1_700_000_000_323_456_000, udp4(b"tcp", 2368, proto=6)),
    (1_700_000_000_423_456_000, udp4(b"vlan", 2368, vlan=True)),
    (1_700_000_001_000_000_000, udp6(b"six", 2368)),
]
EXPECT = [(FRAMES[0][0], b"first"), (FRAMES[3][0], b"vlan"), (FRAMES[4][0], b"six")]


def classic(endian: str, nanos: bool) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for t, frame in FRAMES:
        frac = t % 10**9 if nanos else (t % 10**9) // 1000
        out += struct.pack(endian + "IIII", t // 10**9, frac, len(frame), len(frame)) + frame
    return out


def block(endian: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def pcapng(endian: str, tsresol: int | None) -> bytes:
    shb = block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = (
            struct.pack(endian + "HH", 9, 1)
            + bytes([tsresol])
            + b"\x00" * 3
            + struct.pack(endian + "HH", 0, 0)
        )
    idb = block(endian, 1, struct.pack(endian + "HHI", 1, 0, 65535) + opts)
    tick = 10 ** (9 - tsresol) if tsresol is not None else 1000
    out = shb + idb
    for t, frame in FRAMES:
        ts = t // tick
        epb = struct.pack(endian + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
        out += block(endian, 6, epb)
    return out


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_both_byte_orders_and_resolutions(tmp_path, endian, nanos):
    path = tmp_path / "c.pcap"
    path.write_bytes(classic(endian, nanos))
    stats = PcapStats()
    assert list(read_udp_payloads(path, 2368, stats)) == EXPECT
    assert stats.counts == {"other_port": 1, "not_udp": 1}
    assert [p for _, p in read_udp_payloads(path, None)] == [b"first", b"other port", b"vlan", b"six"]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("tsresol", [None, 9])
def test_pcapng_sections(tmp_path, endian, tsresol):
    path = tmp_path / "c.pcapng"
    path.write_bytes(pcapng(endian, tsresol))
    assert list(read_udp_payloads(path, 2368)) == EXPECT


def test_truncated_last_record_is_counted(tmp_path):
    data = classic("<", False)
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:-3])
    stats = PcapStats()
    assert list(read_udp_payloads(path, 2368, stats)) == EXPECT[:2]
    assert stats.counts["truncated_record"] == 1
    ng = pcapng("<", None)
    path.write_bytes(ng[:-10])
    stats = PcapStats()
    assert list(read_udp_payloads(path, 2368, stats)) == EXPECT[:2]
    assert stats.counts["truncated_record"] == 1


def test_malformed_headers_raise_input_error_with_offset(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(InputError, match=r"x.pcap: at byte 0: expected pcap or pcapng magic"):
        list(read_udp_payloads(path))
    ng = bytearray(pcapng("<", None))
    ng[28 + 4 : 28 + 8] = struct.pack("<I", 13)  # IDB length not a multiple of 4
    path.write_bytes(bytes(ng))
    with pytest.raises(PcapError, match="at byte 32: expected a block length"):
        list(read_udp_payloads(path))
    with pytest.raises(PcapError, match="file not found"):
        list(read_udp_payloads(tmp_path / "missing.pcap"))
