"""A small reader for packet captures: classic pcap (both byte orders, µs and ns stamps) and pcapng
(SHB / IDB / EPB / SPB blocks), yielding the UDP payloads of IPv4 / IPv6 packets to one port.

Why our own: the formats are a few fixed headers; the reader is ~150 lines of ``struct`` with no
dependency, and it reports malformed headers by byte offset (:class:`PcapError`, an InputError) and counts
skipped records instead of raising from inside a general library. dpkt (here only as a dependency of the
dev-only velodyne-decoder) would add a core runtime dependency for the same few lines.

Link types handled: Ethernet (1, with 802.1Q VLAN tags), raw IP (101), Linux cooked SLL (113), SLL2 (276).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgefuse.errors import InputError

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, µs
    b"\xa1\xb2\xc3\xd4": (">", 1000),  # big-endian, µs
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, ns
    b"\xa1\xb2\x3c\x4d": (">", 1),  # big-endian, ns
}
_PCAPNG_SHB = 0x0A0D0D0A
_LINK_ETHERNET, _LINK_RAW, _LINK_SLL, _LINK_SLL2 = 1, 101, 113, 276


class PcapError(InputError):
    """A capture file is malformed: names the file, the byte offset and what was expected."""

    def __init__(self, path: str | os.PathLike, offset: int, message: str):
        self.path, self.offset = str(path), offset
        super().__init__(f"{path}: at byte {offset}: {message}")


@dataclass
class PcapStats:
    """What the reader skipped, by reason (non-UDP, other port, unknown link type, truncated record)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n


def _ip_udp_payload(frame: bytes, link: int, port: int | None, stats: PcapStats) -> bytes | None:
    """The UDP payload of one link-layer frame if it is UDP (to ``port`` when given), else None."""
    off = 0
    if link == _LINK_ETHERNET:
        if len(frame) < 14:
            stats.add("truncated_frame")
            return None
        ethertype, off = struct.unpack_from(">H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:  # VLAN tags
            ethertype, off = struct.unpack_from(">H", frame, off + 2)[0], off + 4
    elif link == _LINK_SLL:
        if len(frame) < 16:
            stats.add("truncated_frame")
            return None
        ethertype, off = struct.unpack_from(">H", frame, 14)[0], 16
    elif link == _LINK_SLL2:
        if len(frame) < 20:
            stats.add("truncated_frame")
            return None
        ethertype, off = struct.unpack_from(">H", frame, 0)[0], 20
    elif link == _LINK_RAW:
        ethertype = 0x0800 if frame[:1] and frame[0] >> 4 == 4 else 0x86DD
    else:
        stats.add(f"linktype_{link}")
        return None
    if ethertype == 0x0800:
        if len(frame) < off + 20:
            stats.add("truncated_frame")
            return None
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        total = struct.unpack_from(">H", frame, off + 2)[0]
        end = min(len(frame), off + total) if total else len(frame)
        off += ihl
    elif ethertype == 0x86DD:
        if len(frame) < off + 40:
            stats.add("truncated_frame")
            return None
        proto, end = frame[off + 6], len(frame)
        off += 40
    else:
        stats.add("not_ip")
        return None
    if proto != 17:
        stats.add("not_udp")
        return None
    if len(frame) < off + 8:
        stats.add("truncated_frame")
        return None
    dport, ulen = struct.unpack_from(">2xHH", frame, off)
    if port is not None and dport != port:
        stats.add("other_port")
        return None
    end = min(end, off + ulen) if ulen >= 8 else end
    return frame[off + 8 : end]


def read_udp_payloads(
    path: str | os.PathLike, port: int | None = None, stats: PcapStats | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(timestamp_ns, udp_payload)`` for each UDP packet (to ``port`` if given) in a classic pcap
    or pcapng file, in file order. ``timestamp_ns``: the capture's record time (int, ns since the Unix
    epoch). A malformed header raises :class:`PcapError`; a record cut short at the end of the file is
    counted in ``stats`` (``truncated_record``) and ends the iteration."""
    stats = stats if stats is not None else PcapStats()
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PcapError(path, 0, "file not found") from None
    if len(data) < 4:
        raise PcapError(path, 0, f"expected a pcap/pcapng header, file has {len(data)} bytes")
    if data[:4] in _PCAP_MAGICS:
        yield from _read_classic(path, data, port, stats)
    elif struct.unpack_from("<I", data, 0)[0] == _PCAPNG_SHB:
        yield from _read_pcapng(path, data, port, stats)
    else:
        raise PcapError(path, 0, f"expected pcap or pcapng magic, got {data[:4].hex()}")


def _read_classic(path, data: bytes, port, stats) -> Iterator[tuple[int, bytes]]:
    end_c, ns_per_tick = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise PcapError(path, 0, f"expected a 24-byte global header, file has {len(data)} bytes")
    link = struct.unpack_from(end_c + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(end_c + "IIII")
    off = 24
    while off < len(data):
        if off + 16 > len(data):
            stats.add("truncated_record")
            return
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        if off + 16 + incl > len(data):
            stats.add("truncated_record")
            return
        payload = _ip_udp_payload(data[off + 16 : off + 16 + incl], link, port, stats)
        if payload is not None:
            yield sec * 1_000_000_000 + frac * ns_per_tick, payload
        off += 16 + incl


def _read_pcapng(path, data: bytes, port, stats) -> Iterator[tuple[int, bytes]]:
    off = 0
    end_c = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, ns per tick) per interface of the current section
    while off < len(data):
        if off + 12 > len(data):
            stats.add("truncated_record")
            return
        btype = struct.unpack_from(end_c + "I", data, off)[0]
        if btype == _PCAPNG_SHB:
            bom = data[off + 8 : off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                end_c = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                end_c = ">"
            else:
                raise PcapError(
                    path, off + 8, f"expected the pcapng byte-order magic 1a2b3c4d, got {bom.hex()}"
                )
            interfaces = []
        blen = struct.unpack_from(end_c + "I", data, off + 4)[0]
        if blen < 12 or blen % 4:
            raise PcapError(path, off + 4, f"expected a block length ≥ 12 and a multiple of 4, got {blen}")
        if off + blen > len(data):
            stats.add("truncated_record")
            return
        body = data[off + 8 : off + blen - 4]
        if btype == 1:  # Interface Description Block
            link = struct.unpack_from(end_c + "H", body, 0)[0]
            interfaces.append((link, _if_tsresol(body[8:], end_c)))
        elif btype == 6:  # Enhanced Packet Block
            if_id, ts_hi, ts_lo, cap = struct.unpack_from(end_c + "IIII", body, 0)
            if if_id >= len(interfaces):
                raise PcapError(
                    path, off + 8, f"packet names interface {if_id}, only {len(interfaces)} described"
                )
            link, tick_ns = interfaces[if_id]
            payload = _ip_udp_payload(body[20 : 20 + cap], link, port, stats)
            if payload is not None:
                yield ((ts_hi << 32) | ts_lo) * tick_ns, payload
        elif btype == 3:  # Simple Packet Block: no time stamp
            stats.add("simple_packet_block_without_time")
        off += blen


def _if_tsresol(options: bytes, end_c: str) -> int:
    """ns per time-stamp tick from an IDB's if_tsresol option (default µs). Sub-ns resolutions round to 1."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack_from(end_c + "HH", options, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[off + 4]
            if v & 0x80:
                return max(1, round(1e9 / (2 ** (v & 0x7F))))
            return max(1, 10 ** (9 - v)) if v <= 9 else 1
        off += 4 + length + (-length % 4)
    return 1000
