"""FakeDNS proven by dnspython: RFC 3263 resolution step by step, TCP fallback, every fault.

dnspython's calls block, so they run in a thread (``deferToThread``) while the reactor serves.
"""

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from sipharness.fakes.dns import FakeDNS
from sipharness.fakes.record import Recorder
from sipharness.sipcore.clock import ScaledClock, VirtualClock
from tests.test_dns_zone import seed_zone

D = "yealink.pbx.com"


@pytest.fixture
def fake():
    server = FakeDNS([seed_zone()])
    server.start()
    yield server
    pytest_twisted.blockon(server.stop())


def resolver_for(fake) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [fake.address[0]]
    r.port = fake.address[1]
    r.timeout = r.lifetime = 2.0
    return r


def query(fake, name, rdtype, *, tcp=False, timeout=2.0, fallback=False, payload=None):
    q = dns.message.make_query(name, rdtype, use_edns=payload is not None, payload=payload or 512)
    host, port = fake.address
    if fallback:
        return deferToThread(dns.query.udp_with_fallback, q, host, port=port, timeout=timeout)
    return deferToThread(dns.query.tcp if tcp else dns.query.udp, q, host, port=port, timeout=timeout)


@pytest_twisted.ensureDeferred
async def test_rfc3263_naptr_srv_a_step_by_step(fake):
    """SPEC §8 DNS-1 by a real resolver: NAPTR order 90 (TCP) → SRV, weight 2 first → A of server2."""
    res = resolver_for(fake)
    naptr = await deferToThread(res.resolve, D, "NAPTR")
    assert naptr.rrset.ttl == 3600 and naptr.response.flags & dns.flags.AA
    best = sorted(naptr, key=lambda r: (r.order, r.preference))[0]
    assert (best.flags, best.service) == (b"s", b"SIP+D2T")
    srv = await deferToThread(res.resolve, best.replacement, "SRV")
    first = sorted(srv, key=lambda r: (r.priority, -r.weight))[0]
    assert (str(first.target), first.port) == (f"server2.{D}.", 5060)
    a = await deferToThread(res.resolve, first.target, "A")
    assert [r.address for r in a] == ["62.10.1.20"]
    asked = [(r.qtype, r.name) for r in fake.recorder.dns(direction="in")]
    assert asked == [("NAPTR", D), ("SRV", f"_sip._tcp.{D}"), ("A", f"server2.{D}")]
    # The NAPTR answer already carried what the next steps ask (additional section, as BIND does).
    glue = {(str(rrset.name), dns.rdatatype.to_text(rrset.rdtype)) for rrset in naptr.response.additional}
    assert glue == {(f"_sip._tcp.{D}.", "SRV"), (f"server1.{D}.", "A"), (f"server2.{D}.", "A")}


@pytest_twisted.ensureDeferred
async def test_truncated_udp_answer_is_retried_over_tcp(fake):
    for i in range(40):
        fake.add(f"big.{D}", "A", f"127.0.1.{i}")
    response, used_tcp = await query(fake, f"big.{D}", "A", fallback=True)
    assert used_tcp and len(response.answer[0]) == 40 and not response.flags & dns.flags.TC
    assert [r.transport for r in fake.recorder.dns(direction="out")] == ["udp", "tcp"]
    assert fake.recorder.dns(direction="out")[0].summary == "NOERROR 0 TC"
    response, used_tcp = await query(fake, f"big.{D}", "A", fallback=True, payload=1232)
    assert not used_tcp and len(response.answer[0]) == 40  # EDNS0 payload honoured


@pytest_twisted.ensureDeferred
async def test_fault_drop_for_the_next_k_queries(fake):
    fault = fake.faults.drop(name=f"server1.{D}", qtype="A", count=2)
    for _ in range(2):
        with pytest.raises(dns.exception.Timeout):
            await query(fake, f"server1.{D}", "A", timeout=0.3)
    assert not fault.active and fault.applied == 2
    response = await query(fake, f"server1.{D}", "A")
    assert response.answer[0][0].address == "62.10.1.10"
    notes = [r.note for r in fake.recorder.dns(direction="out")]
    assert notes == [f"dropped: rule 1 drop A server1.{D} count=2"] * 2 + [""]


@pytest_twisted.ensureDeferred
async def test_fault_per_name_and_type_leaves_others_alone_and_is_removable(fake):
    fault = fake.faults.servfail(name=D, qtype="NAPTR")
    assert (await query(fake, D, "NAPTR")).rcode() == dns.rcode.SERVFAIL
    assert (await query(fake, f"server1.{D}", "A")).rcode() == dns.rcode.NOERROR
    assert (await query(fake, D, "NS")).rcode() == dns.rcode.NOERROR
    with pytest.raises(dns.resolver.NoNameservers):
        await deferToThread(resolver_for(fake).resolve, D, "NAPTR")
    fault.remove()
    assert len(await deferToThread(resolver_for(fake).resolve, D, "NAPTR")) == 2


@pytest_twisted.ensureDeferred
async def test_fault_refused_and_nxdomain(fake):
    fake.faults.refuse(qtype="SRV", count=1)
    r = await query(fake, f"_sip._tcp.{D}", "SRV")
    assert r.rcode() == dns.rcode.REFUSED and not r.answer
    fake.faults.nxdomain(name=f"server2.{D}")
    with pytest.raises(dns.resolver.NXDOMAIN):
        await deferToThread(resolver_for(fake).resolve, f"server2.{D}", "A")
    r = await query(fake, f"server2.{D}", "A")
    assert r.flags & dns.flags.AA and r.authority[0].rdtype == dns.rdatatype.SOA
    assert fake.recorder.dns(direction="out")[-1].note == f"scripted: rule 2 respond NXDOMAIN * server2.{D}"


@pytest_twisted.ensureDeferred
async def test_fault_truncate_and_tcp_only(fake):
    fake.faults.tcp_only(name=f"server1.{D}")
    response, used_tcp = await query(fake, f"server1.{D}", "A", fallback=True)
    assert used_tcp and response.answer[0][0].address == "62.10.1.10"
    fake.faults.clear()
    fake.faults.truncate(name=f"server2.{D}")  # broken server: TC even over TCP
    response, used_tcp = await query(fake, f"server2.{D}", "A", fallback=True)
    assert used_tcp and response.flags & dns.flags.TC and not response.answer
    assert [r.note for r in fake.recorder.dns(name=f"server2.{D}", direction="out")] == [f"truncated: rule 2 truncate * server2.{D}"] * 2


@pytest_twisted.ensureDeferred
async def test_fault_delay_is_in_phone_seconds_on_the_injected_clock():
    clock = VirtualClock(reactor)
    server = FakeDNS([seed_zone()], clock=clock, recorder=Recorder(clock))
    server.start()
    try:
        server.faults.delay(2.5, name=D, qtype="NAPTR")
        response = await query(server, D, "NAPTR")  # 2.5 phone s cost milliseconds: answered
        assert len(response.answer[0]) == 2
        q, a = server.recorder.dns(name=D)
        assert a.time - q.time == 2.5 and a.note == f"delayed: rule 1 delay NAPTR {D} by=2.5s"
    finally:
        clock.stop()
        await server.stop()
    scaled = ScaledClock(reactor, speed=10.0)  # 3 phone s = 0.3 wall s: a 0.1 s client gives up
    server = FakeDNS([seed_zone()], clock=scaled)
    server.start()
    try:
        server.faults.delay(3.0)
        with pytest.raises(dns.exception.Timeout):
            await query(server, D, "NAPTR", timeout=0.1)
    finally:
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_wait_for_query_with_deadline_on_the_clock(fake):
    d = fake.wait_for_query(f"server1.{D}", "A", timeout=5, count=2)
    await query(fake, f"server1.{D}", "A")
    assert not d.called
    await query(fake, f"server1.{D}", "A", tcp=True)
    record = await d
    assert (record.transport, record.qtype, record.direction) == ("tcp", "A", "in")
    clock = VirtualClock(reactor)
    server = FakeDNS([seed_zone()], clock=clock)
    server.start()
    try:
        with pytest.raises(AssertionError, match=r"waited 30 s .*DNS query NAPTR"):
            await server.wait_for_query(D, "NAPTR", timeout=30)
        assert clock.seconds() == 30.0
    finally:
        clock.stop()
        await server.stop()
