"""The emulated phone's DNS cache (phone/dnscache.py): TTLs counted down, negative answers kept for the SOA's
minimum (RFC 2308), failures and truncated answers never kept, the additional section by mode, bounded;
and the relay in front of the fake DNS, proven with a real client (dnspython) over UDP and TCP."""

from __future__ import annotations

import dnslib
import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from sipharness.phone.dnscache import CachingRelay, DnsCache
from sipharness.sipcore.clock import ScaledClock


class Clock:
    def __init__(self):
        self.now = 0.0

    def seconds(self):
        return self.now


def _q(name="a.example.com", qtype="SRV") -> dnslib.DNSRecord:
    return dnslib.DNSRecord.question(name, qtype)


def _srv_answer(q: dnslib.DNSRecord, ttl=60, glue_ttl=30) -> bytes:
    r = q.reply()
    r.add_answer(dnslib.RR(str(q.q.qname), dnslib.QTYPE.SRV, ttl=ttl, rdata=dnslib.SRV(0, 10, 5060, "x.example.com")))
    r.add_ar(dnslib.RR("x.example.com", dnslib.QTYPE.A, ttl=glue_ttl, rdata=dnslib.A("127.0.0.10")))
    return r.pack()


def _negative(q: dnslib.DNSRecord, rcode=dnslib.RCODE.NXDOMAIN, soa=True, soa_ttl=300, minimum=20) -> bytes:
    r = q.reply()
    r.header.rcode = rcode
    if soa:
        r.add_auth(dnslib.RR("example.com", dnslib.QTYPE.SOA, ttl=soa_ttl,
                             rdata=dnslib.SOA("ns.example.com", "h.example.com", (1, 3600, 600, 86400, minimum))))
    return r.pack()


def test_positive_answers_live_for_their_smallest_ttl_counted_down():
    clock = Clock()
    cache = DnsCache(clock, mode=2)
    q = _q()
    assert cache.lookup(q.pack()) is None
    cache.store(q.pack(), _srv_answer(q))
    clock.now = 10.0
    again = _q()
    hit = dnslib.DNSRecord.parse(cache.lookup(again.pack()))
    assert hit.header.id == again.header.id and [rr.ttl for rr in hit.rr + hit.ar] == [50, 20]
    clock.now = 30.0  # the glue's 30 s: the whole answer goes (a cache of answers, not of records)
    assert cache.lookup(_q().pack()) is None and len(cache) == 0


def test_mode_1_serves_without_the_additional_records_mode_0_never():
    clock = Clock()
    one = DnsCache(clock, mode=1)
    q = _q()
    one.store(q.pack(), _srv_answer(q))
    hit = dnslib.DNSRecord.parse(one.lookup(_q().pack()))
    assert hit.rr and not hit.ar
    zero = DnsCache(clock, mode=0)
    zero.store(q.pack(), _srv_answer(q))
    assert zero.lookup(q.pack()) is None and len(zero) == 0


def test_negative_answers_are_kept_for_the_soa_minimum_and_failures_never():
    clock = Clock()
    cache = DnsCache(clock)
    q = _q("gone.example.com", "A")
    cache.store(q.pack(), _negative(q))
    assert dnslib.DNSRecord.parse(cache.lookup(q.pack())).header.rcode == dnslib.RCODE.NXDOMAIN
    clock.now = 21.0
    assert cache.lookup(q.pack()) is None  # min(SOA TTL 300, MINIMUM 20)
    nodata = _q("empty.example.com", "AAAA")
    cache.store(nodata.pack(), _negative(nodata, rcode=dnslib.RCODE.NOERROR))
    assert cache.lookup(nodata.pack()) is not None
    for name, answer in (("nosoa.example.com", lambda q: _negative(q, soa=False)),
                         ("fail.example.com", lambda q: _negative(q, rcode=dnslib.RCODE.SERVFAIL)),
                         ("refused.example.com", lambda q: _negative(q, rcode=dnslib.RCODE.REFUSED))):
        q = _q(name, "A")
        cache.store(q.pack(), answer(q))
        assert cache.lookup(q.pack()) is None, name
    q = _q()
    truncated = dnslib.DNSRecord.parse(_srv_answer(q))
    truncated.header.tc = 1
    cache.store(q.pack(), truncated.pack())
    assert cache.lookup(q.pack()) is None


def test_garbage_and_many_names_stay_bounded():
    clock = Clock()
    cache = DnsCache(clock, max_entries=8)
    cache.store(b"\x00garbage", b"\xff" * 40)
    assert cache.lookup(b"\x00garbage") is None
    for i in range(50):
        q = _q(f"n{i}.example.com")
        cache.store(q.pack(), _srv_answer(q))
    assert len(cache) == 8 and cache.lookup(_q("n49.example.com").pack()) is not None
    assert cache.lookup(_q("n0.example.com").pack()) is None


@pytest.mark.parametrize("tcp", [False, True])
@pytest_twisted.ensureDeferred
async def test_the_relay_answers_a_real_client_from_the_fake_then_from_its_cache(tcp):
    import dns.message
    import dns.query

    from sipharness.fakes.dns import FakeDNS, Zone
    from sipharness.fakes.record import Recorder

    clock = ScaledClock(reactor, 1.0)
    recorder = Recorder(clock)
    zone = Zone.from_text("$ORIGIN example.com.\n$TTL 60\n@ IN SOA ns h 1 3600 600 86400 20\n@ IN NS ns\n"
                          "ns IN A 127.0.0.53\nsip IN A 127.0.0.10\n")
    fake = FakeDNS([zone], clock=clock, recorder=recorder, host="127.0.0.53", port=0, reactor=reactor)
    fake.start()
    relay = CachingRelay(reactor, DnsCache(clock))
    host, port = relay.start()
    relay.upstream = fake.address
    try:
        ask = dns.query.tcp if tcp else dns.query.udp
        for name in ("sip.example.com", "sip.example.com", "nope.example.com", "nope.example.com"):
            answer = await threads.deferToThread(ask, dns.message.make_query(name, "A"), host, port=port, timeout=5)
            assert answer.rcode() == (0 if name.startswith("sip") else 3)
        asked = [r.name for r in recorder.dns(direction="in")]
        assert asked == ["sip.example.com", "nope.example.com"], asked  # the second of each: from the cache
        assert all(r.transport == ("tcp" if tcp else "udp") for r in recorder.dns(direction="in"))
    finally:
        await relay.stop()
        await fake.stop()
