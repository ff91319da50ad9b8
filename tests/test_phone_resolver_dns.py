"""The phone's resolver on the wire, over loopback, against an authoritative DNS (SPEC §2, §8 DNS-*).

Resolution only: the guide's addresses (62.10.1.x) are resolved, never contacted.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import pytest_twisted
from dnslib import QTYPE, RCODE, RR, DNSRecord
from twisted.internet import defer, protocol, task
from twisted.internet.error import CannotListenError
from twisted.protocols.basic import Int16StringReceiver

from sipharness.phone.dnsclient import Resolver
from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.reactor import clocked_reactor

SEED_ZONE = open(Path(__file__).resolve().parents[1] / "suites" / "data" / "seed-example.zone", encoding="utf-8").read()
D = "yealink.pbx.com"


class MiniDNS:
    """A tiny in-test authoritative DNS (UDP + TCP) over dnslib: answers from zone text,
    with per-(name, qtype) faults: drop, servfail, refused, nxdomain, truncate, raw, and
    ("extra", zone text): records of other owners added to the answer (a hostile server).

    Written before fakes.dns.FakeDNS existed (tests/test_phone_resolver_fakedns.py uses that);
    kept for what FakeDNS does not script: raw malformed records and a TCP retry that hangs.
    """

    def __init__(self, zone_text: str, clock):
        self.rrs = RR.fromZone(zone_text)
        self.clock = clock
        self.faults: dict[tuple[str, str], object] = {}
        self.seen: list[tuple[float, str, str, str]] = []  # (time, transport, name, qtype)
        self.udp = self.tcp = None

    def start(self, reactor):
        me = self

        class UDP(protocol.DatagramProtocol):
            def datagramReceived(self, data, addr):
                note_activity(me.clock)
                out = me.answer(data, "udp")
                if out is not None:
                    self.transport.write(out, addr)

        class TCP(Int16StringReceiver):
            def stringReceived(self, data):
                note_activity(me.clock)
                out = me.answer(data, "tcp")
                if out is not None:
                    self.sendString(out)

        for _ in range(10):  # UDP and TCP on the same port number; retry if TCP's is taken
            self.udp = reactor.listenUDP(0, UDP(), interface="127.0.0.1")
            port = self.udp.getHost().port
            try:
                self.tcp = reactor.listenTCP(port, protocol.Factory.forProtocol(TCP), interface="127.0.0.1")
                break
            except CannotListenError:
                self.udp.stopListening()
        else:
            raise CannotListenError("127.0.0.1", 0, "no port free for both UDP and TCP")
        self.address = ("127.0.0.1", port)
        return self

    def stop(self):
        return defer.gatherResults([defer.maybeDeferred(self.udp.stopListening), defer.maybeDeferred(self.tcp.stopListening)])

    def queries(self, transport=None):
        return [(n, t) for (_, tr, n, t) in self.seen if transport in (None, tr)]

    def answer(self, data: bytes, transport: str):
        q = DNSRecord.parse(data)
        name = str(q.q.qname).rstrip(".").lower()
        qtype = QTYPE[q.q.qtype]
        self.seen.append((self.clock.seconds(), transport, name, qtype))
        fault = self.faults.get((name, qtype))
        reply = q.reply()
        reply.header.ra = 0
        if fault == "drop":
            return None
        if fault in ("servfail", "refused", "nxdomain"):
            reply.header.rcode = {"servfail": RCODE.SERVFAIL, "refused": RCODE.REFUSED, "nxdomain": RCODE.NXDOMAIN}[fault]
            return reply.pack()
        if isinstance(fault, bytes):  # raw answer records appended to an empty reply
            head = bytearray(reply.pack())
            n = fault.count(b"\xc0\x0c")  # one compressed owner name per record
            head[6:8] = struct.pack("!H", n)
            return bytes(head) + fault
        for rr in self.rrs:
            if str(rr.rname).rstrip(".").lower() == name and QTYPE[rr.rtype] == qtype:
                reply.add_answer(rr)
        if isinstance(fault, tuple) and fault[0] == "extra":  # records of any owner added to the answer
            for rr in RR.fromZone(fault[1]):
                reply.add_answer(rr)
        if fault == "truncate_hang_tcp" and transport == "tcp":
            return None
        if fault in ("truncate", "truncate_hang_tcp") and transport == "udp":
            reply.rr = []
            reply.header.tc = 1
        return reply.pack()



@pytest_twisted.async_yield_fixture
async def dns(vclock):
    from twisted.internet import reactor

    server = MiniDNS(SEED_ZONE, vclock).start(reactor)
    yield server
    await server.stop()


def make_resolver(server, clock, **kw):
    return Resolver(server.address, clock=clock, **kw)


def hosts(targets):
    return [str(t) for t in targets]


@pytest_twisted.ensureDeferred
async def test_guide_example_over_loopback(dns, vclock):
    # SPEC §8 DNS-1
    r = make_resolver(dns, vclock)
    targets = await r.resolve(D, 0, 3, 0)
    assert hosts(targets) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert dns.queries() == [(D, "NAPTR"), ("_sip._tcp." + D, "SRV"), ("server2." + D, "A"), ("server1." + D, "A")]
    assert targets[0].source == "NAPTR 90 50 SIP+D2T → SRV 0 2 5060 server2.yealink.pbx.com → A 62.10.1.20"
    assert targets[0].a_ttl == 3600 and targets[0].expires_at == 3600.0
    assert vclock.seconds() == 0.0  # loopback answers cost no phone time
    r.close()


@pytest_twisted.ensureDeferred
async def test_explicit_port_a_only_over_loopback(dns, vclock):
    # SPEC §8 DNS-2: the domain itself has no A record in the seed zone → no target, no SIP
    r = make_resolver(dns, vclock)
    assert await r.resolve(D, 5060, 3, 0) == []
    assert dns.queries() == [(D, "A")]
    assert hosts(await r.resolve("server1." + D, 5070, 3, 0)) == ["udp:62.10.1.10:5070"]


@pytest_twisted.ensureDeferred
async def test_truncated_udp_answer_is_asked_again_over_tcp(dns, vclock):
    dns.faults[("_sip._tcp." + D, "SRV")] = "truncate"
    r = make_resolver(dns, vclock)
    targets = await r.resolve(D, 0, 3, 0)
    assert hosts(targets) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert dns.queries("tcp") == [("_sip._tcp." + D, "SRV")]
    assert r.truncated == 1
    r.close()


@pytest_twisted.ensureDeferred
async def test_truncated_answer_whose_tcp_retry_is_refused_skips_the_target(dns, vclock):
    await dns.tcp.stopListening()
    dns.faults[("server2." + D, "A")] = "truncate"
    r = make_resolver(dns, vclock)
    assert hosts(await r.resolve(D, 0, 3, 0)) == ["tcp:62.10.1.10:5060"]
    assert "A server2.yealink.pbx.com: truncated → as empty" in r.resolutions[-1].log
    assert vclock.seconds() == 0.0


@pytest_twisted.ensureDeferred
async def test_truncated_answer_whose_tcp_retry_hangs_times_out_on_phone_time(dns, vclock):
    dns.faults[("server2." + D, "A")] = "truncate_hang_tcp"
    r = make_resolver(dns, vclock)
    assert hosts(await r.resolve(D, 0, 3, 0)) == ["tcp:62.10.1.10:5060"]
    assert dns.queries("tcp") == [("server2." + D, "A")]
    assert vclock.seconds() == 4.0  # the TCP retry gets the same 2 × 2 s as the UDP tries
    assert r.resolutions[-1].faults[0][1].value == "truncated"
    r.close()


@pytest_twisted.ensureDeferred
async def test_timeout_costs_two_tries_of_two_phone_seconds(dns, vclock):
    # SPEC §2 [interp]: timeout = 2 s × 2 tries, then the NAPTR step counts as empty.
    dns.faults[(D, "NAPTR")] = "drop"
    r = make_resolver(dns, vclock)
    targets = await r.resolve(D, 0, 3, 1)
    assert hosts(targets) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert vclock.seconds() == 4.0
    naptr_times = [t for (t, _, n, q) in dns.seen if q == "NAPTR"]
    assert naptr_times == [0.0, 2.0]
    assert targets[0].expires_at == 4.0 + 3600
    # a faulted result is not cached: the next use resolves again
    before = len(dns.seen)
    await r.resolve(D, 0, 3, 1)
    assert len(dns.seen) > before


@pytest.mark.parametrize("fault", ["servfail", "refused", "nxdomain", "drop"])
@pytest_twisted.ensureDeferred
async def test_fault_on_a_skips_that_target(dns, vclock, fault):
    dns.faults[("server2." + D, "A")] = fault
    r = make_resolver(dns, vclock)
    assert hosts(await r.resolve(D, 0, 3, 0)) == ["tcp:62.10.1.10:5060"]
    assert vclock.seconds() == (4.0 if fault == "drop" else 0.0)


@pytest.mark.parametrize("fault", ["servfail", "refused", "nxdomain"])
@pytest_twisted.ensureDeferred
async def test_fault_on_srv_goes_to_next_naptr(dns, vclock, fault):
    dns.faults[("_sip._tcp." + D, "SRV")] = fault
    r = make_resolver(dns, vclock)
    assert await r.resolve(D, 0, 3, 0) == []  # the seed zone has no _sip._udp SRV and no A on the domain
    # NAPTR → TCP SRV fails → next NAPTR (UDP SRV, empty) → naptr_build 0 (UDP SRV, not asked twice) → A
    assert dns.queries() == [(D, "NAPTR"), ("_sip._tcp." + D, "SRV"), ("_sip._udp." + D, "SRV"), (D, "A")]


@pytest_twisted.ensureDeferred
async def test_bad_record_in_answer_is_skipped(dns, vclock):
    # a 3-byte A record between two good ones: only the bad one is lost
    good1 = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([62, 10, 1, 10])
    bad = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 3) + bytes([62, 10, 1])
    good2 = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([62, 10, 1, 11])
    dns.faults[("server1." + D, "A")] = good1 + bad + good2
    r = make_resolver(dns, vclock)
    targets = await r.resolve(D, 0, 3, 0)
    assert hosts(targets) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060", "tcp:62.10.1.11:5060"]


@pytest_twisted.ensureDeferred
async def test_cache_until_ttl_then_resolve_again(dns):
    clock = task.Clock()
    dns.clock = clock
    dns.rrs = RR.fromZone(SEED_ZONE.replace("server2    IN A", "server2 30 IN A"))
    r = make_resolver(dns, clock)
    first = await r.resolve(D, 0, 3, 0)
    assert [t.a_ttl for t in first] == [30, 3600]
    n = len(dns.seen)
    clock.advance(29.9)
    assert await r.resolve(D, 0, 3, 0) == first  # cached: no query
    assert len(dns.seen) == n
    assert r.cached(D, 0, 3, 0) == first
    clock.advance(0.1)  # the smallest TTL of the chain (server2's A, 30 s) has run out
    assert r.cached(D, 0, 3, 0) is None
    again = await r.resolve(D, 0, 3, 0)
    assert len(dns.seen) == n + 4
    assert [t.expires_at for t in again] == [60.0, 3630.0]


@pytest_twisted.ensureDeferred
async def test_concurrent_resolves_share_one_lookup(dns, vclock):
    r = make_resolver(dns, vclock)
    a, b = await defer.gatherResults([r.resolve(D, 0, 3, 0), r.resolve(D, 0, 3, 0)])
    assert a == b and len(dns.seen) == 4


@pytest_twisted.ensureDeferred
async def test_ip_literal_sends_nothing(dns, vclock):
    r = make_resolver(dns, vclock)
    assert hosts(await r.resolve("127.0.0.10", 0, 2, 0)) == ["tls:127.0.0.10:5061"]
    assert dns.seen == []


@pytest_twisted.ensureDeferred
async def test_bad_arguments_fail_the_deferred(dns, vclock):
    r = make_resolver(dns, vclock)
    with pytest.raises(ValueError, match="transport"):
        await r.resolve(D, 0, 7, 0)


# --- sipcore.reactor.clocked_reactor -------------------------------------------------------


def test_clocked_reactor_time_is_the_clock():
    from twisted.internet import reactor

    clock = task.Clock()
    cr = clocked_reactor(reactor, clock)
    fired = []
    cr.callLater(5, fired.append, 1)
    assert cr.seconds() == 0 and len(cr.getDelayedCalls()) == 1 and reactor.getDelayedCalls() is not cr.getDelayedCalls()
    clock.advance(5)
    assert fired == [1]
    assert cr.running == reactor.running  # everything else is the real reactor's


@pytest_twisted.ensureDeferred
async def test_clocked_reactor_notes_activity_on_receive():
    from twisted.internet import reactor

    class Clock(task.Clock):
        notes = 0

        def activity(self):
            self.notes += 1

    clock = Clock()
    cr = clocked_reactor(reactor, clock)
    got = defer.Deferred()

    class P(protocol.DatagramProtocol):
        def datagramReceived(self, data, addr):
            got.callback((data, clock.notes))

    port = cr.listenUDP(0, P(), interface="127.0.0.1")
    sender = reactor.listenUDP(0, protocol.DatagramProtocol(), interface="127.0.0.1")
    sender.write(b"x", ("127.0.0.1", port.getHost().port))
    data, notes = await got
    assert data == b"x" and notes == 1  # noted before the protocol saw it
    await port.stopListening()
    await sender.stopListening()


# ---------------------------------------------------------------- a hostile server (issue 12, SPEC §2)

HOSTILE_ZONE = """$ORIGIN pbx.test.
_sip._udp 60 IN SRV 10 0 5062 good.pbx.test.
good 60 IN A 62.10.1.10
"""


@pytest_twisted.ensureDeferred
async def test_an_srv_for_another_name_in_the_answer_is_not_used(vclock):
    """Issue 12: an SRV for another name, sent in reply to a query for pbx.test, was used and
    the phone registered to its target. SPEC §2: only records that answer the question."""
    from twisted.internet import reactor

    server = MiniDNS(HOSTILE_ZONE, vclock).start(reactor)
    server.faults[("_sip._udp.pbx.test", "SRV")] = (
        "extra", "_sip._udp.evil.test. 60 IN SRV 0 0 5999 trap.evil.test.\n"
                 "trap.evil.test. 60 IN A 62.10.1.66\n")
    r = Resolver(server.address, clock=vclock)
    try:
        assert hosts(await r.resolve("pbx.test", 0, 0, 0)) == ["udp:62.10.1.10:5062"]
        assert ("trap.evil.test", "A") not in server.queries()
        assert any("do not answer the question" in line and "evil.test" in line for line in r.resolutions[-1].log)
    finally:
        r.close()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_a_thousand_srv_records_cost_at_most_the_cap_of_a_queries(vclock):
    """Issue 12: with 1 000 SRV records the phone sent ~850 A queries for one lookup."""
    from twisted.internet import reactor

    from sipharness.phone.rfc3263 import MAX_RECORDS_PER_ANSWER

    lines = ["$ORIGIN pbx.test."] + [f"_sip._udp 60 IN SRV {i} 0 5060 h{i}.pbx.test." for i in range(1000)]
    server = MiniDNS("\n".join(lines) + "\n", vclock).start(reactor)
    server.faults[("_sip._udp.pbx.test", "SRV")] = "truncate"  # the answer comes over TCP, whole
    r = Resolver(server.address, clock=vclock)
    try:
        assert await r.resolve("pbx.test", 0, 0, 0) == []  # no host has an address
        a_queries = [q for q in server.queries() if q[1] == "A"]
        assert len(a_queries) == MAX_RECORDS_PER_ANSWER  # the capped SRV targets (an SRV answer: no A on the domain)
        assert a_queries[0] == ("h0.pbx.test", "A")  # the most preferred kept
    finally:
        r.close()
        await server.stop()
