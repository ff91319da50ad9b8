"""Sans-I/O authoritative answering: bytes (or a dnslib query) in, answer out; no sockets, no clock.

Why written here: the Python authoritative servers at hand fall short of what a phone
test needs. twisted.names puts no SRV glue in the additional section, answers NXDOMAIN
without AA and without the SOA (PEERS.md); dnslib's ``ZoneResolver`` is a matcher, not an
authority (no NODATA/NXDOMAIN distinction, no truncation). This module answers like BIND
for the subset a SIP phone uses: exact TTLs, AA, NXDOMAIN/NODATA with the SOA in the
authority section (TTL = min(SOA TTL, SOA minimum), RFC 2308 §3), in-zone CNAME chasing,
additional-section glue for SRV/NAPTR/MX/NS (NAPTR → its SRV → their A/AAAA, as BIND does),
REFUSED outside our zones, EDNS0 payload size (512 without EDNS) and truncation (additional
dropped first, then TC=1 with the answer emptied, RFC 2181 §9).

Hot path: :func:`decode` reads the header and the single question by hand (dnslib's full
parse is the fallback for anything unusual, e.g. a compressed question name) and
:meth:`Authority.respond` caches the encoded answer per (question as sent, RD, EDNS, size
limit) until a zone changes; a cached answer costs one dict lookup and an id splice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from sipharness.fakes.dns.zone import Zone

__all__ = ["Authority", "Query", "Reply", "Bad", "decode"]

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_RCODE_NAME = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_A, _NS, _CNAME, _SOA, _MX, _AAAA, _SRV, _NAPTR, _OPT, _ANY = 1, 2, 5, 6, 15, 28, 33, 35, 41, 255
# encoded answers kept (each ~3.5 KB with its dnslib record): a lab's zones ask a few dozen questions;
# 20 000 let a flood of distinct garbage questions grow the fake by ~70 MB (bench/fuzz.py), 2048 keep
# it flat at ~7 MB
_MAX_CACHE = 2048
_HEADER = struct.Struct("!HHHHHH")


def _rcode_name(rcode: int) -> str:
    return _RCODE_NAME.get(rcode) or RCODE.get(rcode, f"RCODE{rcode}")


def _qtype_name(qtype: int) -> str:
    return QTYPE.get(qtype, f"TYPE{qtype}")


class Query:
    """One decoded query: the single question, the header bits we need, EDNS payload size.

    ``qname`` is the name as sent (case kept), ``key`` its lower-case absolute form;
    ``payload`` is the EDNS0 UDP size the client offered, None without EDNS (RFC 6891).
    ``record`` parses the raw bytes with dnslib on demand (kept off the hot path).
    """

    __slots__ = ("id", "flags", "qname", "key", "qtype", "qclass", "payload", "raw", "labels", "_question", "_record")

    def __init__(self, id, flags, qname, key, qtype, qclass, payload, raw, question, labels):
        self.id, self.flags, self.qname, self.key, self.labels = id, flags, qname, key, tuple(labels)
        self.qtype, self.qclass, self.payload, self.raw = qtype, qclass, payload, raw
        self._question = question  # the question's wire bytes (name, type, class) as sent
        self._record = None

    @property
    def rd(self) -> bool:
        return bool(self.flags & 0x0100)

    @property
    def type_name(self) -> str:
        return _qtype_name(self.qtype)

    @property
    def record(self) -> DNSRecord:
        if self._record is None:
            self._record = DNSRecord.parse(self.raw)
        return self._record

    def __repr__(self) -> str:
        return f"<Query id={self.id} {self.type_name} {self.qname}{' edns=%d' % self.payload if self.payload is not None else ''}>"

    @classmethod
    def from_record(cls, rec: DNSRecord, raw: bytes = b"") -> "Query":
        """A query from a dnslib record; ValueError when it is not one we can answer (not one
        question, or a name dnslib read but cannot write back: a label over 63 octets, a
        name over 255, RFC 1035 §2.3.4)."""
        if len(rec.questions) != 1:
            raise ValueError(f"a query has exactly one question, got {len(rec.questions)}")
        q = rec.questions[0]
        _check_name(q.qname.label)
        payload = None
        for rr in rec.ar:
            if rr.rtype == _OPT:
                payload = rr.rclass
        flags = (rec.header.bitmap if hasattr(rec.header, "bitmap") else 0) & 0xFFFF
        name = str(q.qname)
        question = _encode_name(q.qname) + struct.pack("!HH", q.qtype, q.qclass)
        query = cls(rec.header.id, flags, name, name.lower() if name.endswith(".") else name.lower() + ".",
                    q.qtype, q.qclass, payload, raw, question, q.qname.label)
        query._record = rec
        return query


@dataclass(frozen=True)
class Bad:
    """Input that is not a query we can answer: why, and what to send back (None: nothing)."""

    reason: str
    response: bytes | None
    id: int | None = None


@dataclass(frozen=True)
class Reply:
    """An answer: the bytes to send, the dnslib view of it, its rcode and a one-line summary.

    ``record`` may be shared between cached replies to equal questions (its header id is
    the first query's); ``wire`` always carries the right id.
    """

    wire: bytes
    record: DNSRecord
    rcode: int
    summary: str


def _check_name(labels: tuple[bytes, ...]) -> None:
    """RFC 1035 §2.3.4: labels of 63 octets or less, a name of 255 octets or less (on the wire)."""
    for lb in labels:
        if len(lb) > 63:
            raise ValueError(f"a label of {len(lb)} octets in the question name (at most 63, RFC 1035 §2.3.4)")
    if sum(len(lb) + 1 for lb in labels) + 1 > 255:
        raise ValueError("question name longer than 255 octets (RFC 1035 §2.3.4)")


def _encode_name(label: DNSLabel) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in label.label) + b"\x00"


def _error_wire(id: int, flags: int, rcode: int) -> bytes:
    """A header-only answer (FORMERR, NOTIMP) to a query whose id we could read."""
    return _HEADER.pack(id, 0x8000 | (flags & 0x7900) | rcode, 0, 0, 0, 0)


def decode(data: bytes) -> Query | Bad:
    """Bytes from the network → :class:`Query`, or :class:`Bad` saying why and what to answer.

    Policy (like BIND): fewer than 12 bytes or QR=1 (a response: answering it could loop)
    → drop; a readable header with an unreadable question → FORMERR; opcode ≠ QUERY →
    NOTIMP; zone transfers → NOTIMP.
    """
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < 12:
        return Bad(f"short packet: {n} byte(s), no DNS header", None)
    id, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0x8000:
        return Bad(f"id {id}: a response (QR=1), not a query", None, id)
    opcode = (flags >> 11) & 0xF
    if opcode != 0:
        return Bad(f"id {id}: opcode {opcode} is not QUERY", _error_wire(id, flags, NOTIMP), id)
    if qd != 1:
        return Bad(f"id {id}: {qd} questions (a query has one)", _error_wire(id, flags, FORMERR), id)
    i, labels, total = 12, [], 1
    while True:
        if i >= n:
            return Bad(f"id {id}: question name runs past the end of the packet", _error_wire(id, flags, FORMERR), id)
        length = data[i]
        if length == 0:
            i += 1
            break
        if length & 0xC0 and length & 0xC0 != 0xC0:
            # 0x40 / 0x80: the extended label types of RFC 2671 (obsoleted by RFC 6891): a bad name
            return Bad(f"id {id}: label type 0x{length & 0xC0:02x} in the question name (a label is at most 63 "
                       "octets)", _error_wire(id, flags, FORMERR), id)
        if length & 0xC0 or an or ns:
            return _decode_slow(data, id, flags)  # compression or odd sections: let dnslib judge
        total += length + 1
        if total > 255 or i + 1 + length > n:
            return Bad(f"id {id}: bad question name (too long or truncated)", _error_wire(id, flags, FORMERR), id)
        labels.append(data[i + 1:i + 1 + length])
        i += 1 + length
    if i + 4 > n:
        return Bad(f"id {id}: question truncated (no type/class)", _error_wire(id, flags, FORMERR), id)
    qtype, qclass = struct.unpack_from("!HH", data, i)
    question = data[12:i + 4]
    i += 4
    payload = None
    for _ in range(ar):
        # Only the OPT pseudo-record (root owner) is expected in a query's additional section.
        if i + 11 > n or data[i] != 0:
            return _decode_slow(data, id, flags)
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, i + 1)
        i += 11 + rdlen
        if i > n:
            return Bad(f"id {id}: additional record runs past the end of the packet", _error_wire(id, flags, FORMERR), id)
        if rtype == _OPT:
            if payload is not None:
                return Bad(f"id {id}: two OPT records", _error_wire(id, flags, FORMERR), id)
            payload = rclass
    if i != n:
        return Bad(f"id {id}: {n - i} byte(s) of garbage after the query", _error_wire(id, flags, FORMERR), id)
    try:
        text = ".".join(lb.decode("ascii") for lb in labels) + "."
        if any(b"." in lb or any(c <= 32 or c >= 127 for c in lb) for lb in labels):
            raise UnicodeError
    except UnicodeError:
        text = str(DNSLabel(labels))
    if text == "..":
        text = "."
    if qtype in (251, 252):
        return Bad(f"id {id}: zone transfer ({_qtype_name(qtype)}) not offered", _error_wire(id, flags, NOTIMP), id)
    return Query(id, flags, text, text.lower(), qtype, qclass, payload, data, question, labels)


def _decode_slow(data: bytes, id: int, flags: int) -> Query | Bad:
    try:
        rec = DNSRecord.parse(data)
        return Query.from_record(rec, data)
    except Exception as e:  # dnslib raises DNSError, but garbage can reach other paths
        return Bad(f"id {id}: unparseable query: {e}", _error_wire(id, flags, FORMERR), id)


class Authority:
    """Answers queries for ``zones`` (a name goes to the zone with the longest matching apex).

    ``max_udp_payload`` is the largest UDP answer we send even if the client offers more
    (BIND's ``max-udp-size``), and the payload size we advertise in our own OPT record.
    """

    def __init__(self, zones: Iterable[Zone] = (), *, max_udp_payload: int = 4096):
        self.zones: list[Zone] = []
        self.max_udp_payload = max_udp_payload
        self._cache: dict[tuple, tuple[bytes, DNSRecord, int, str]] = {}
        for zone in zones:
            self.add_zone(zone)

    def add_zone(self, zone: Zone) -> None:
        if any(z.origin == zone.origin for z in self.zones):
            raise ValueError(f"zone {zone.origin} is served twice")
        self.zones.append(zone)
        zone.on_change(self._invalidate)
        self._cache.clear()

    def zone_for(self, name: str | DNSLabel) -> Zone | None:
        key = str(name).lower()
        key = key if key.endswith(".") else key + "."
        best = None
        for z in self.zones:
            if z.contains(key) and (best is None or len(str(z.origin)) > len(str(best.origin))):
                best = z
        return best

    def _invalidate(self, _zone: Zone) -> None:
        self._cache.clear()

    # ---- public answering API ----
    def answer(self, query: DNSRecord, *, transport: str = "udp", udp_limit: int | None = None) -> DNSRecord:
        """dnslib query → dnslib answer. ``udp_limit`` None: the size the query allows
        (its EDNS0 payload, 512 without EDNS, capped at ``max_udp_payload``); ignored over TCP."""
        q = Query.from_record(query, b"")
        return self.respond(q, transport=transport, udp_limit=udp_limit).record

    def handle(self, data: bytes, *, transport: str = "udp") -> tuple[bytes | None, str]:
        """The whole wire path without faults: bytes in → (bytes to send or None, what happened)."""
        q = decode(data)
        if isinstance(q, Bad):
            return q.response, f"bad: {q.reason} -> {'FORMERR/NOTIMP' if q.response else 'dropped'}"
        reply = self.respond(q, transport=transport)
        return reply.wire, reply.summary

    def respond(self, q: Query, *, transport: str = "udp", udp_limit: int | None = None) -> Reply:
        """The answer to a decoded query (cached until a zone changes)."""
        if transport == "udp":
            limit = udp_limit or min(max(512, q.payload or 512), self.max_udp_payload)
        else:
            limit = 65535
        ck = (q._question, q.flags & 0x0110, q.payload is not None, limit)
        hit = self._cache.get(ck)
        if hit is None:
            rec = self._build(q, limit)
            wire = bytes(rec.pack())
            hit = (wire[2:], rec, rec.header.rcode, _summary(rec))
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[ck] = hit
        return Reply(struct.pack("!H", q.id) + hit[0], hit[1], hit[2], hit[3])

    def forced(self, q: Query, action: str) -> Reply:
        """The answer a scripted fault sends: ``servfail``, ``refused``, ``nxdomain`` or ``truncate``."""
        rec = self._header(q)
        zone = self.zone_for(q.key)
        if action == "servfail":
            rec.header.rcode = SERVFAIL
        elif action == "refused":
            rec.header.rcode = REFUSED
        elif action == "nxdomain":
            rec.header.rcode = NXDOMAIN
            if zone is not None:
                rec.header.aa = 1
                rec.add_auth(self._negative_soa(zone))
        elif action == "truncate":
            rec.header.aa = 1 if zone is not None else 0
            rec.header.tc = 1
        else:
            raise ValueError(f"no forced answer for fault action {action!r}")
        self._add_opt(q, rec)
        wire = bytes(rec.pack())
        return Reply(wire, rec, rec.header.rcode, _summary(rec))

    # ---- building ----
    def _header(self, q: Query) -> DNSRecord:
        rec = DNSRecord(DNSHeader(id=q.id, qr=1, aa=0, rd=1 if q.rd else 0, ra=0))
        rec.add_question(DNSQuestion(DNSLabel(list(q.labels)), q.qtype, q.qclass))  # the bytes as asked
        return rec

    def _add_opt(self, q: Query, rec: DNSRecord) -> None:
        if q.payload is not None:
            rec.add_ar(EDNS0(udp_len=self.max_udp_payload))

    def _negative_soa(self, zone: Zone) -> RR:
        soa = zone.soa
        return RR(soa.rname, QTYPE.SOA, CLASS.IN, min(soa.ttl, soa.rdata.times[4]), soa.rdata)  # RFC 2308 §3

    def _build(self, q: Query, limit: int) -> DNSRecord:
        rec = self._header(q)
        zone = self.zone_for(q.key)
        if q.qclass not in (1, 255) or zone is None:
            rec.header.rcode = REFUSED  # not ours: no AA, like BIND for a zone it does not serve
            self._add_opt(q, rec)
            return rec
        rec.header.aa = 1
        rcode, answer, auth = self._resolve(zone, q.key, q.qtype)
        rec.header.rcode = rcode
        rec.rr.extend(answer)
        rec.auth.extend(auth)
        rec.ar.extend(self._additional(answer))
        self._add_opt(q, rec)
        if len(rec.pack()) > limit:  # RFC 2181 §9: drop the additional section first ...
            rec.ar = [rr for rr in rec.ar if rr.rtype == _OPT]
            if len(rec.pack()) > limit:  # ... then signal truncation with the answer emptied
                rec.rr, rec.auth = [], []
                rec.header.tc = 1
        return rec

    def _resolve(self, zone: Zone, key: str, qtype: int) -> tuple[int, list[RR], list[RR]]:
        answer: list[RR] = []
        seen = {key}
        for _ in range(16):
            if qtype == _ANY:
                rrs = [rr for t in zone.types_at(key) for rr in zone.lookup(key, t)]
            else:
                rrs = zone.lookup(key, qtype)
            if rrs:
                answer.extend(rrs)
                return NOERROR, answer, []
            cname = zone.lookup(key, _CNAME) if qtype != _CNAME else []
            if cname:
                answer.extend(cname)
                target = str(cname[0].rdata.label).lower()
                target = target if target.endswith(".") else target + "."
                if target in seen or self.zone_for(target) is not zone:
                    return NOERROR, answer, []  # loop, or out of zone: the client chases it
                seen.add(target)
                key = target
                continue
            if zone.name_exists(key):
                return NOERROR, answer, [self._negative_soa(zone)]  # NODATA (RFC 2308 §2.2)
            return NXDOMAIN, answer, [self._negative_soa(zone)]
        return NOERROR, answer, []

    def _additional(self, answer: list[RR]) -> list[RR]:
        """Glue the client will ask for next: SRV/MX/NS targets' addresses; NAPTR → SRV → addresses."""
        out: list[RR] = []
        have = {(str(rr.rname).lower(), rr.rtype, str(rr.rdata)) for rr in answer}

        def put(name, rtype: int) -> list[RR]:
            key = str(name).lower()
            key = key if key.endswith(".") else key + "."
            zone = self.zone_for(key)
            found = zone.lookup(key, rtype) if zone is not None else []
            for rr in found:
                ident = (key, rtype, str(rr.rdata))
                if ident not in have:
                    have.add(ident)
                    out.append(rr)
            return found

        def addresses(name) -> None:
            put(name, _A)
            put(name, _AAAA)

        for rr in answer:
            t = rr.rtype
            if t == _SRV:
                addresses(rr.rdata.target)
            elif t in (_MX, _NS):
                addresses(rr.rdata.label)
            elif t == _NAPTR:
                flags = bytes(rr.rdata.flags).lower()
                if b"s" in flags:
                    for srv in put(rr.rdata.replacement, _SRV):
                        addresses(srv.rdata.target)
                elif b"a" in flags:
                    addresses(rr.rdata.replacement)
        return out


def _summary(rec: DNSRecord) -> str:
    """``NOERROR 2 NAPTR +3 add``, ``NXDOMAIN``, ``NOERROR 0 (NODATA)``, ``NOERROR 0 TC``."""
    rcode = rec.header.rcode
    parts = [_rcode_name(rcode)]
    if rcode == NOERROR:
        types: list[str] = []
        for rr in rec.rr:
            name = _qtype_name(rr.rtype)
            if name not in types:
                types.append(name)
        parts.append(str(len(rec.rr)))
        if types:
            parts.append(",".join(types))
        elif not rec.header.tc:
            parts.append("(NODATA)")
    add = sum(1 for rr in rec.ar if rr.rtype != _OPT)
    if add:
        parts.append(f"+{add} add")
    if rec.header.tc:
        parts.append("TC")
    return " ".join(parts)
