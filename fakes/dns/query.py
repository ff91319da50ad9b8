"""A DNS query off the wire: :func:`decode` reads it into a :class:`Query`, or says why not (:class:`Bad`).

Hot path: :func:`decode` reads the header and the single question by hand (dnslib's full parse
is the fallback for anything unusual, e.g. a compressed question name), so a fake answering
thousands of queries a second spends no time building dnslib objects for them; ``Query.record``
parses with dnslib only when something asks. What to answer to input that is not a query we
can serve is decided here too, as BIND does (:func:`decode`): drop, FORMERR or NOTIMP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dnslib import QTYPE, DNSLabel, DNSRecord

__all__ = ["Query", "Bad", "decode", "qtype_name", "OPT"]

FORMERR, NOTIMP = 1, 4
OPT = 41  # the EDNS0 pseudo-record type (RFC 6891)
_HEADER = struct.Struct("!HHHHHH")


def qtype_name(qtype: int) -> str:
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
        return qtype_name(self.qtype)

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
            if rr.rtype == OPT:
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
        if rtype == OPT:
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
        return Bad(f"id {id}: zone transfer ({qtype_name(qtype)}) not offered", _error_wire(id, flags, NOTIMP), id)
    return Query(id, flags, text, text.lower(), qtype, qclass, payload, data, question, labels)


def _decode_slow(data: bytes, id: int, flags: int) -> Query | Bad:
    try:
        rec = DNSRecord.parse(data)
        return Query.from_record(rec, data)
    except Exception as e:  # dnslib raises DNSError, but garbage can reach other paths
        return Bad(f"id {id}: unparseable query: {e}", _error_wire(id, flags, FORMERR), id)
