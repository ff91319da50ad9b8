"""The phone's resolver against the project's fake authoritative DNS (fakes.dns), SPEC §2 / §8 DNS-*.

The zone is the guide's appendix (suites/data/seed-example.zone): resolution only, its
62.10.1.x addresses are never contacted. Times are phone seconds on the virtual clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from sipharness.fakes.dns import FakeDNS, Zone
from sipharness.phone.dnsclient import Resolver


SEED_ZONE = open(Path(__file__).resolve().parents[1] / "suites" / "data" / "seed-example.zone", encoding="utf-8").read()
D = "yealink.pbx.com"
GUIDE = ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]



@pytest_twisted.async_yield_fixture
async def fake(vclock):
    server = FakeDNS(zones=[Zone.from_text(SEED_ZONE)], clock=vclock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def resolver(fake, vclock):
    r = Resolver(fake.address, clock=vclock)
    yield r
    r.close()


def asked(fake, transport=None):
    """(transport, qtype, name) of every query the fake received."""
    return [(r.transport, r.qtype, r.name) for r in fake.recorder.dns(direction="in") if transport in (None, r.transport)]


def hosts(targets):
    return [str(t) for t in targets]


@pytest_twisted.ensureDeferred
async def test_dns1_guide_example(fake, resolver, vclock):
    targets = await resolver.resolve(D, 0, 3, 0)
    assert hosts(targets) == GUIDE
    assert asked(fake) == [
        ("udp", "NAPTR", D),
        ("udp", "SRV", "_sip._tcp." + D),
        ("udp", "A", "server2." + D),
        ("udp", "A", "server1." + D),
    ]
    assert [t.source for t in targets] == [
        "NAPTR 90 50 SIP+D2T → SRV 0 2 5060 server2.yealink.pbx.com → A 62.10.1.20",
        "NAPTR 90 50 SIP+D2T → SRV 0 1 5060 server1.yealink.pbx.com → A 62.10.1.10",
    ]
    assert vclock.seconds() == 0.0


@pytest_twisted.ensureDeferred
async def test_dns2_explicit_port_is_a_only(fake, resolver):
    fake.add(D, "A", "62.10.1.10")
    assert hosts(await resolver.resolve(D, 5060, 3, 0)) == ["udp:62.10.1.10:5060"]
    assert asked(fake) == [("udp", "A", D)]


@pytest.mark.parametrize("naptr_build,srv", [(0, "_sip._udp."), (1, "_sip._tcp.")])
@pytest_twisted.ensureDeferred
async def test_dns3_no_naptr_srv_by_naptr_build(fake, resolver, naptr_build, srv):
    fake.remove(D, "NAPTR")
    fake.add("_sip._udp." + D, "SRV", "0 0 5070 server1.yealink.pbx.com.")
    targets = await resolver.resolve(D, 0, 3, naptr_build)
    assert asked(fake)[:2] == [("udp", "NAPTR", D), ("udp", "SRV", srv + D)]
    assert hosts(targets) == (["udp:62.10.1.10:5070"] if naptr_build == 0 else GUIDE)


@pytest_twisted.ensureDeferred
async def test_dns4_empty_flags_naptr_again(fake, resolver):
    fake.remove(D, "NAPTR")
    fake.add(D, "NAPTR", '10 10 "" "" "" step.yealink.pbx.com.')
    fake.add("step." + D, "NAPTR", '10 10 "s" "SIP+D2T" "" _sip._tcp.yealink.pbx.com.')
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == GUIDE
    assert asked(fake)[:3] == [("udp", "NAPTR", D), ("udp", "NAPTR", "step." + D), ("udp", "SRV", "_sip._tcp." + D)]


@pytest_twisted.ensureDeferred
async def test_dns5_no_srv_no_naptr_a_with_5060(fake, resolver):
    fake.remove(D, "NAPTR")
    fake.remove("_sip._tcp." + D, "SRV")
    fake.add(D, "A", "62.10.1.10")
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == ["udp:62.10.1.10:5060"]
    assert asked(fake)[-1] == ("udp", "A", D)


@pytest_twisted.ensureDeferred
async def test_dns6_priority_beats_weight_and_several_a(fake, resolver):
    fake.replace("_sip._tcp." + D, "SRV", ["1 100 5060 server1.yealink.pbx.com.", "0 1 5062 server2.yealink.pbx.com."])
    fake.add("server2." + D, "A", "62.10.1.21")
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == ["tcp:62.10.1.20:5062", "tcp:62.10.1.21:5062", "tcp:62.10.1.10:5060"]


@pytest_twisted.ensureDeferred
async def test_dns7_tcp_only_answer_is_retried_over_tcp(fake, resolver):
    fake.faults.tcp_only(name="_sip._tcp." + D, qtype="SRV")
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == GUIDE
    assert [a for a in asked(fake) if a[1] == "SRV"] == [("udp", "SRV", "_sip._tcp." + D), ("tcp", "SRV", "_sip._tcp." + D)]
    assert resolver.truncated == 1


@pytest_twisted.ensureDeferred
async def test_dns7_truncated_everywhere_skips_that_target(fake, resolver):
    fake.faults.truncate(name="server2." + D, qtype="A")
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == ["tcp:62.10.1.10:5060"]
    assert ("tcp", "A", "server2." + D) in asked(fake)
    assert resolver.resolutions[-1].faults[0][1].value == "truncated"


@pytest_twisted.ensureDeferred
async def test_dns7_timeout_on_naptr_is_two_tries_of_two_phone_seconds(fake, resolver, vclock):
    fake.faults.drop(name=D, qtype="NAPTR")
    targets = await resolver.resolve(D, 0, 3, 1)
    assert hosts(targets) == GUIDE
    naptr = [r.time for r in fake.recorder.dns(qtype="NAPTR", direction="in")]
    assert naptr == [0.0, 2.0]
    assert vclock.seconds() == 4.0  # NAPTR given up at 4 s, then SRV and A answered at once
    assert [t.expires_at for t in targets] == [3604.0, 3604.0]


@pytest_twisted.ensureDeferred
async def test_dns7_one_lost_datagram_costs_one_try(fake, resolver, vclock):
    fake.faults.drop(name="server2." + D, qtype="A", count=1)
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == GUIDE
    assert vclock.seconds() == 2.0


@pytest_twisted.ensureDeferred
async def test_slow_answer_is_waited_for(fake, resolver, vclock):
    fake.faults.delay(1.5, name="_sip._tcp." + D, qtype="SRV")
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == GUIDE
    assert vclock.seconds() == 1.5


@pytest.mark.parametrize("fault", ["servfail", "refuse", "nxdomain", "drop"])
@pytest_twisted.ensureDeferred
async def test_dns7_faults_on_each_step(fake, resolver, vclock, fault):
    # on NAPTR: next step as if empty (naptr_build 1 → TCP SRV)
    getattr(fake.faults, fault)(name=D, qtype="NAPTR")
    # on the A step: that target is skipped
    getattr(fake.faults, fault)(name="server2." + D, qtype="A")
    targets = await resolver.resolve(D, 0, 3, 1)
    assert hosts(targets) == ["tcp:62.10.1.10:5060"]
    assert vclock.seconds() == (8.0 if fault == "drop" else 0.0)
    # on SRV: next step (the domain's A with 5060)
    fake.faults.clear()
    getattr(fake.faults, fault)(name="_sip._udp." + D, qtype="SRV")
    fake.add(D, "A", "62.10.1.30")
    assert hosts(await resolver.resolve(D, 0, 0, 0)) == ["udp:62.10.1.30:5060"]


@pytest_twisted.ensureDeferred
async def test_all_dns_down_gives_empty_list_and_no_cache(fake, resolver, vclock):
    fake.faults.servfail()
    assert await resolver.resolve(D, 0, 3, 0) == []
    n = len(asked(fake))
    fake.faults.clear()
    assert hosts(await resolver.resolve(D, 0, 3, 0)) == GUIDE  # retried at the next attempt
    assert len(asked(fake)) == n + 4


@pytest_twisted.ensureDeferred
async def test_cache_for_ttl_then_new_records(fake, resolver, vclock):
    # SPEC §2: cached for the TTL, re-resolved on first use after expiry; the A TTL is on the target (§5 DNSTTL)
    fake.set_ttl("server2." + D, "A", 30)
    first = await resolver.resolve(D, 0, 3, 0)
    assert [(t.a_ttl, t.expires_at) for t in first] == [(30, 30.0), (3600, 3600.0)]
    fake.replace("server2." + D, "A", ["62.10.1.22"], ttl=30)
    n = len(asked(fake))
    vclock.advance(29)
    assert await resolver.resolve(D, 0, 3, 0) == first
    assert len(asked(fake)) == n
    vclock.advance(1)
    again = await resolver.resolve(D, 0, 3, 0)
    assert hosts(again) == ["tcp:62.10.1.22:5060", "tcp:62.10.1.10:5060"]
    assert again[0].expires_at == 60.0
    assert len(asked(fake)) == n + 4
