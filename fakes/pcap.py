"""What the fakes saw as a pcap file, stamped in phone time, for Wireshark, tshark and sngrep.

Why: the ladder is the harness's own drawing; a lab also wants its usual tools on the same
evidence. A capture taken with tcpdump during a test on the virtual clock shows four REGISTERs
~11 ms apart where the phone's timers say 0 / 0.5 / 1.5 / 3.5 s. Written from the
:class:`fakes.record.Recorder` instead, each packet carries the *phone time* of its record
(``epoch`` + ``time``: ``epoch`` is 0 on the virtual clock, the wall time of phone time 0 on
a real or scaled one), so Wireshark's flow graph matches the ladder, retransmission gaps included.

Why by hand: the classic pcap format is a 24-byte file header and a 16-byte header per packet
(https://www.tcpdump.org/manpages/pcap-savefile.5.txt); the packets need a synthetic IPv4 or
IPv6 header and a UDP or TCP header, a few ``struct.pack`` calls each. The libraries that
write pcaps (scapy, dpkt) are large dependencies of their own for these hundred lines.

What is written (link type ``LINKTYPE_RAW``, 101: each packet starts at its IP header):

- every SIP message and DNS query/answer a fake received or sent, with its bytes, between the
  record's ``peer`` and ``local`` addresses, in record order (stably sorted by time); a message
  between two fakes once (the receiver's record, as the ladder draws it); nothing for records
  that were never on the wire (a dropped query's "no answer", a serving error);
- UDP as it was; TCP (and TLS, whose records hold the decrypted text the fakes parsed: the pcap
  shows SIP in the clear on the TLS port) as segments of one synthetic connection per address
  pair, opened by a three-way handshake before its first message (from the sender of that
  message), with sequence and acknowledgement numbers that follow the bytes each side sent;
  DNS over TCP gets its two-byte length prefix back.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from typing import Iterable, Sequence

from sipharness.fakes.record import Direction, DnsRecord, Record, SipRecord

__all__ = ["pcap_bytes", "write_pcap", "LINKTYPE_RAW"]

LINKTYPE_RAW = 101
_MAGIC_USEC = 0xA1B2C3D4
_SNAPLEN = 262144
_MSS = 65000  # one segment carries at most this much (an IPv4 packet is at most 65535 bytes)
_TTL = 64
_PROTO_TCP, _PROTO_UDP = 6, 17
_SYN, _ACK, _PSH = 0x02, 0x10, 0x08

Address = tuple[str, int]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    """An IPv4 or IPv6 header (by the addresses) before ``payload``, whose transport checksum is filled."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if a.version != b.version:  # (an IPv4-mapped peer of an IPv6 socket)
        a, b = _as_v6(a), _as_v6(b)
    if a.version == 4:
        pseudo = a.packed + b.packed + struct.pack("!BBH", 0, proto, len(payload))
    else:
        pseudo = a.packed + b.packed + struct.pack("!IxxxB", len(payload), proto)
    offset = 6 if proto == _PROTO_UDP else 16
    csum = _checksum(pseudo + payload[:offset] + b"\0\0" + payload[offset + 2:])
    if proto == _PROTO_UDP and csum == 0:
        csum = 0xFFFF
    payload = payload[:offset] + struct.pack("!H", csum) + payload[offset + 2:]
    if a.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, _TTL, proto, 0,
                             a.packed, b.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, _TTL, a.packed, b.packed) + payload


def _as_v6(a: ipaddress._BaseAddress) -> ipaddress.IPv6Address:
    return a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")


def _udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0,
                       0) + data


class _Flows:
    """Synthetic TCP connections, one per unordered address pair: each side's next sequence number."""

    def __init__(self) -> None:
        self._next: dict[tuple[Address, Address], int] = {}

    def segments(self, src: Address, dst: Address, data: bytes) -> list[tuple[Address, Address, bytes]]:
        out: list[tuple[Address, Address, bytes]] = []
        if (src, dst) not in self._next:  # first bytes of this pair: the sender opens the connection
            isn_src, isn_dst = _isn(src, dst), _isn(dst, src)
            out.append((src, dst, _tcp(src[1], dst[1], isn_src, 0, _SYN)))
            out.append((dst, src, _tcp(dst[1], src[1], isn_dst, isn_src + 1, _SYN | _ACK)))
            out.append((src, dst, _tcp(src[1], dst[1], isn_src + 1, isn_dst + 1, _ACK)))
            self._next[(src, dst)], self._next[(dst, src)] = isn_src + 1, isn_dst + 1
        for i in range(0, max(len(data), 1), _MSS):
            chunk = data[i:i + _MSS]
            seq, ack = self._next[(src, dst)], self._next[(dst, src)]
            out.append((src, dst, _tcp(src[1], dst[1], seq, ack, _PSH | _ACK, chunk)))
            self._next[(src, dst)] = (seq + len(chunk)) & 0xFFFFFFFF
        return out


def _isn(a: Address, b: Address) -> int:
    """A fixed initial sequence number per direction (the same file for the same records)."""
    return zlib.crc32(repr((a, b)).encode()) & 0x0FFFFFFF


def _on_the_wire(records: Sequence[Record]) -> list[Record]:
    fakes = {tuple(r.local) for r in records}
    kept = []
    for r in records:
        if not isinstance(r, (SipRecord, DnsRecord)) or not r.raw:
            continue  # never on the wire (a dropped query's "no answer"), or not a message (a serving error)
        if r.direction == Direction.OUT and tuple(r.peer) in fakes:
            continue  # between two fakes: the receiver's "in" record stands for it
        kept.append(r)
    return sorted(kept, key=lambda r: r.time)  # (stable: same-time records keep their order)


def pcap_bytes(records: Iterable[Record], *, epoch: float = 0.0) -> bytes:
    """The pcap file (LINKTYPE_RAW, microsecond stamps at ``epoch`` + the record's phone time)."""
    out = [struct.pack("<IHHiIII", _MAGIC_USEC, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_RAW)]
    flows = _Flows()
    ident = 0
    for r in _on_the_wire(list(records)):
        src, dst = (tuple(r.peer), tuple(r.local)) if r.direction == Direction.IN else (tuple(r.local), tuple(r.peer))
        data = bytes(r.raw)
        if r.transport == "udp":
            segments = [(src, dst, _PROTO_UDP, _udp(src[1], dst[1], data))]
        else:
            if isinstance(r, DnsRecord):
                data = struct.pack("!H", len(data)) + data  # DNS over TCP: the length prefix (RFC 1035 §4.2.2)
            segments = [(s, d, _PROTO_TCP, seg) for s, d, seg in flows.segments(src, dst, data)]
        stamp = max(0.0, epoch + r.time)
        sec = int(stamp)
        usec = min(999999, int(round((stamp - sec) * 1e6)))
        for s, d, proto, payload in segments:
            ident += 1
            packet = _ip(s[0], d[0], proto, payload, ident)
            out.append(struct.pack("<IIII", sec, usec, len(packet), len(packet)) + packet)
    return b"".join(out)


def write_pcap(path: str, records: Iterable[Record], *, epoch: float = 0.0) -> None:
    """Write :func:`pcap_bytes` to ``path``."""
    data = pcap_bytes(records, epoch=epoch)
    with open(path, "wb") as f:
        f.write(data)
