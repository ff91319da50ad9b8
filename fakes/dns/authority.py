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

Hot path: the query arrives decoded (``query.py`` reads it by hand) and :meth:`Authority.respond`
caches the encoded answer per (question as sent, RD, EDNS, size limit) until a zone changes; a
cached answer costs one dict lookup and an id splice.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from sipharness.fakes.dns.query import OPT, Bad, Query, decode, qtype_name
from sipharness.fakes.dns.zone import Zone

__all__ = ["Authority", "Reply"]

NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
_RCODE_NAME = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_A, _NS, _CNAME, _MX, _AAAA, _SRV, _NAPTR, _ANY = 1, 2, 5, 15, 28, 33, 35, 255
# encoded answers kept (each ~3.5 KB with its dnslib record): a lab's zones ask a few dozen questions;
# 20 000 let a flood of distinct garbage questions grow the fake by ~70 MB (bench/fuzz.py), 2048 keep
# it flat at ~7 MB
_MAX_CACHE = 2048


def _rcode_name(rcode: int) -> str:
    return _RCODE_NAME.get(rcode) or RCODE.get(rcode, f"RCODE{rcode}")


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
            rec.ar = [rr for rr in rec.ar if rr.rtype == OPT]
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
            name = qtype_name(rr.rtype)
            if name not in types:
                types.append(name)
        parts.append(str(len(rec.rr)))
        if types:
            parts.append(",".join(types))
        elif not rec.header.tc:
            parts.append("(NODATA)")
    add = sum(1 for rr in rec.ar if rr.rtype != OPT)
    if add:
        parts.append(f"+{add} add")
    if rec.header.tc:
        parts.append("TC")
    return " ".join(parts)
