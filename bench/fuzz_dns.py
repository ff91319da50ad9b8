"""The fake DNS as a fuzz target (bench/fuzz.py): its query path ``FakeDNS._handle``, in process.

Wrong answers are judged with dnspython, another implementation than the fake's dnslib: an id
that differs, an answer to a response (QR=1), a NOERROR/NXDOMAIN answer dnspython cannot read,
a UDP answer larger than the query allows, a question that is not the query's.
"""

from __future__ import annotations

import random
import struct

from twisted.internet import task

from fuzz_core import Target, streaming_recorder  # bench/ is on sys.path (bench/fuzz.py puts it there)

_ZONE = """$ORIGIN pbx.test.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 60
@ IN NS ns
ns IN A 127.0.0.53
@ IN NAPTR 90 50 "s" "SIP+D2T" "" _sip._tcp
@ IN NAPTR 100 50 "s" "SIP+D2U" "" _sip._udp
_sip._udp IN SRV 0 1 5060 server1
_sip._udp IN SRV 0 2 5060 server2
_sip._tcp IN SRV 0 1 5060 server1
server1 IN A 127.0.0.10
server2 IN A 127.0.0.20
server2 IN AAAA ::1
alias IN CNAME server1
loop1 IN CNAME loop2
loop2 IN CNAME loop1
txt IN TXT "v=1" "two strings"
"""


class DnsTarget(Target):
    name = "dns"
    component = "fakes/dns"
    kind = "dns"

    def __init__(self, rng: random.Random, report: Report):
        super().__init__(rng, report)
        from sipharness.fakes.dns.server import FakeDNS
        from sipharness.fakes.dns.zone import Zone

        self.clock = task.Clock()
        self.fake = FakeDNS([Zone.from_text(_ZONE, filename="fuzz.zone")], clock=self.clock,
                            recorder=streaming_recorder(self.clock), reactor=self.clock)
        import logging
        logging.getLogger("sipharness.fakes.dns").setLevel(logging.CRITICAL)  # garbage is logged: not here
        self.sent: list[bytes] = []
        names = ["pbx.test", "_sip._udp.pbx.test", "_sip._tcp.pbx.test", "server1.pbx.test", "server2.pbx.test",
                 "alias.pbx.test", "loop1.pbx.test", "txt.pbx.test", "nx.pbx.test", "other.example", "."]
        qtypes = [1, 28, 33, 35, 5, 16, 255, 6, 2, 252, 99]
        for i, name in enumerate(names):
            for qtype in qtypes[i % 3::3] + [1]:
                self.seeds.append(_dns_query(name, qtype, edns=(i + qtype) % 2 == 0, id=i * 100 + qtype))

    def feed(self, data: bytes) -> None:
        self.sent = []
        handle = getattr(self.fake, "_handle", None)
        if handle is not None:
            handle(data, "udp", ("127.0.0.1", 40000), self.sent.append)
        else:  # the query path moved: the sans-I/O answer at least
            reply, _ = self.fake.authority.handle(data)
            if reply is not None:
                self.sent.append(reply)
        self.clock.advance(0.001)
        for reply in self.sent:
            self._check(data, reply)

    def _check(self, query: bytes, reply: bytes) -> None:
        """Wrong answers, judged with dnspython (another implementation than the fake's dnslib)."""
        import dns.exception
        import dns.message

        if len(query) >= 2 and reply[:2] != query[:2]:
            self.wrong("answer id differs from the query id", query)
        if len(query) >= 3 and query[2] & 0x80:
            self.wrong("answered a response (QR=1): a loop waiting to happen", query)
        if len(reply) < 12 or not reply[2] & 0x80:
            self.wrong("answer without QR=1", query)
            return
        if reply[3] & 0x0F not in (0, 3):
            return  # FORMERR, NOTIMP, REFUSED...: a header is all it needs
        try:
            answer = dns.message.from_wire(reply)
        except dns.exception.DNSException as e:
            self.wrong("NOERROR/NXDOMAIN answer dnspython cannot read", query, f"{type(e).__name__}: {e}")
            return
        try:
            asked = dns.message.from_wire(query)
        except dns.exception.DNSException:
            return  # a query dnspython cannot read: the fake may still have read its question
        limit = max(512, min(4096, asked.payload)) if asked.edns >= 0 else 512  # RFC 6891 §6.2.5
        if len(reply) > limit:
            self.wrong(f"UDP answer over the {limit} bytes the query allows", query, f"{len(reply)} bytes")
        if [(q.name, q.rdtype) for q in answer.question] != [(q.name, q.rdtype) for q in asked.question]:
            self.wrong("answer's question differs from the query's", query)

    def health(self) -> str | None:
        self.sent = []
        q = _dns_query("_sip._udp.pbx.test", 33, id=4242)
        self.feed(q)
        from dnslib import DNSRecord

        if not self.sent:
            return "no answer to SRV _sip._udp.pbx.test"
        rec = DNSRecord.parse(self.sent[0])
        if rec.header.rcode != 0 or len(rec.rr) != 2:
            return f"SRV _sip._udp.pbx.test answered {rec.header.rcode} with {len(rec.rr)} records"
        return None

    def sizes(self) -> dict[str, int]:
        return {"answer cache": len(self.fake.authority._cache)}


def _dns_query(name: str, qtype: int, *, edns: bool = False, id: int = 1) -> bytes:
    labels = [lb.encode() for lb in name.strip(".").split(".") if lb]
    qname = b"".join(bytes([len(lb)]) + lb for lb in labels) + b"\x00"
    head = struct.pack("!HHHHHH", id & 0xFFFF, 0x0100, 1, 0, 0, 1 if edns else 0)
    opt = b"\x00" + struct.pack("!HHIH", 41, 4096, 0, 0) if edns else b""
    return head + qname + struct.pack("!HH", qtype, 1) + opt


