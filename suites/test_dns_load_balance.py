"""DNS-8: equal priority and equal weight → load balance; only records that answer the question (SPEC §2).

SPEC §2 revised 2026-12-01 [seed: "When priorities are equal, weight is used to differentiate
the preference ... Again, keep the same to load balance"]: among SRV records of equal priority
and equal weight the order is drawn at random for each resolution, so a fleet of phones
spreads over those hosts whatever order the DNS server answers in. The fake DNS always answers
in the zone's order; a phone that takes the answer's order sends every first REGISTER to the
same host. Ten starts of the phone (each a fresh resolution) must each see both hosts first at
least once (chance of a false finding 2 in 1 024 = 0.2 %; the bundled phone's draws are seeded
per start by the harness, so it never flakes).

The other half of DNS-8, "records that do not answer the question are ignored", needs a DNS
server that answers with records of other names, which an authoritative zone cannot be made
to do: the suite checks its positive side (records reached by a CNAME of the same answer are
used); the bundled phone's refusal of foreign records is checked against a hostile server in
``tests/test_phone_resolver_dns.py``.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, wait_registration
from sipharness.harness.lab import PASSWORD, USER

PASSAGE = ("Weight: When priorities are equal, weight is used to differentiate the preference. The preference is "
           "from highest to lowest. Again, keep the same to load balance.")
STARTS = 10  # SPEC §2: each of two equal records comes first at least once in 10


def _account(domain: str) -> dict:
    return {"enable": 1, "label": USER, "display_name": USER, "auth_name": USER, "user_name": USER,
            "password": PASSWORD, "sip_server.1.address": domain, "sip_server.1.port": 0, "transport": 0}


def _zone(lab, origin: str, records: list[str]) -> str:
    return lab.soa(origin) + "\n".join(records) + "\n"


async def _two_hosts(lab, *, weight_a: int, weight_b: int):
    """The fake DNS of pbx.example.com: two SRV records of priority 0, host-a (server1) listed first."""
    a = await lab.server("server1")
    b = await lab.server("server2")
    records = [f"_sip._udp 3600 IN SRV 0 {weight_a} {a.addresses['udp'][1]} host-a",
               f"_sip._udp 3600 IN SRV 0 {weight_b} {b.addresses['udp'][1]} host-b",
               f"host-a 3600 IN A {a.addresses['udp'][0]}",
               f"host-b 3600 IN A {b.addresses['udp'][0]}"]
    return await lab.dns(_zone(lab, "pbx.example.com", records))


async def _first_register_of_each_start(lab, dns, servers, starts: int) -> list[str]:
    """Start the DUT ``starts`` times; the fake each start's first REGISTER reached."""
    firsts = []
    for _ in range(starts):
        mark = len(lab.recorder)
        await lab.dut.apply_config(lab.write_cfg(dns, _account("pbx.example.com")))
        await lab.dut.start()
        await wait_registration(lab.recorder, servers, 60, since=mark)
        sent = [r for r in attempts(lab.recorder, "REGISTER", since=mark) if r.server in servers]
        assert sent, "the phone registered without a REGISTER reaching either equal host"
        firsts.append(sent[0].server)
        await lab.dut.stop()
    return firsts


@pytest.mark.scenario("DNS-8", PASSAGE)
@pytest_twisted.ensureDeferred
async def test_equal_priority_and_weight_spread_over_both_hosts(lab):
    dns = await _two_hosts(lab, weight_a=10, weight_b=10)
    firsts = await _first_register_of_each_start(lab, dns, ("server1", "server2"), STARTS)
    assert set(firsts) == {"server1", "server2"}, (
        f"SPEC §2 load balance: in {STARTS} starts the first REGISTER went to {firsts}; with two SRV records of "
        f"equal priority and weight each must come first at least once (the fake DNS always lists host-a first)")


@pytest.mark.scenario("DNS-8", "SPEC §2: heavier weight still first; the draw is only among equal weights")
@pytest_twisted.ensureDeferred
async def test_a_heavier_weight_is_always_first(lab):
    dns = await _two_hosts(lab, weight_a=10, weight_b=20)
    firsts = await _first_register_of_each_start(lab, dns, ("server1", "server2"), 3)
    assert firsts == ["server2"] * 3, f"SPEC §2 [seed]: equal priority → heavier weight first; saw {firsts}"


@pytest.mark.scenario("DNS-8", "SPEC §2: owner = the name queried, or reached from it by a CNAME in the same answer")
@pytest_twisted.ensureDeferred
async def test_records_reached_by_a_cname_of_the_same_answer_are_used(lab):
    real = await lab.server("server2")
    port = real.addresses["udp"][1]
    records = ["_sip._udp 3600 IN CNAME _sip._udp.real",
               f"_sip._udp.real 3600 IN SRV 0 10 {port} host-real",
               f"host-real 3600 IN A {real.addresses['udp'][0]}"]
    dns = await lab.dns(_zone(lab, "pbx.example.com", records))
    await lab.dut.apply_config(lab.write_cfg(dns, _account("pbx.example.com")))
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=60)
    assert attempts(lab.recorder, "REGISTER", "server2"), "the SRV reached by the CNAME was not used"
