"""SPEC §2 rules of the bundled phone's RFC 3263 planner, on canned answers (no sockets, no clock)."""

import gc
import random
import tracemalloc

import pytest

from sipharness.phone.dnsrecords import Address, Cname, Fault, Naptr, Query, Srv, Target
from sipharness.phone.rfc3263 import NAPTR_LOOP_GUARD, Resolution

D = "yealink.pbx.com"


def guide_zone(over=None):
    """The guide's appendix records (SPEC §8 DNS-1), keyed (name, qtype)."""
    z = {
        (D, "NAPTR"): [
            Naptr(100, 50, "s", "SIP+D2U", "", "_sip._udp.yealink.pbx.com.", 3600),
            Naptr(90, 50, "s", "SIP+D2T", "", "_sip._tcp.yealink.pbx.com.", 3600),
        ],
        ("_sip._tcp." + D, "SRV"): [
            Srv(0, 1, 5060, "server1.yealink.pbx.com.", 3600),
            Srv(0, 2, 5060, "server2.yealink.pbx.com.", 3600),
        ],
        ("_sip._udp." + D, "SRV"): [Srv(0, 0, 5070, "server3.yealink.pbx.com.", 3600)],
        ("server1." + D, "A"): [Address("62.10.1.10", 3600)],
        ("server2." + D, "A"): [Address("62.10.1.20", 3600)],
        ("server3." + D, "A"): [Address("62.10.1.30", 3600)],
    }
    z.update(over or {})
    return z


def run(res: Resolution, zone: dict, step: float = 0.0) -> Resolution:
    """Drive ``res`` with answers from ``zone`` (missing → empty); each answer ``step`` s later."""
    t = res.now
    while (q := res.next_query()) is not None:
        t += step
        res.feed(q.name, q.qtype, zone.get(tuple(q), []), now=t)
    assert res.done
    return res


def addrs(res):
    return [str(t) for t in res.targets]


def test_guide_example_naptr_srv_a():
    res = run(Resolution(D, 0, 3, 0), guide_zone())
    # SPEC §8 DNS-1: NAPTR order 90 → TCP; SRV weight 2 → server2 first.
    assert addrs(res) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert res.queries == [
        Query(D, "NAPTR"),
        Query("_sip._tcp." + D, "SRV"),
        Query("server2." + D, "A"),
        Query("server1." + D, "A"),
    ]
    assert res.targets[0].source == "NAPTR 90 50 SIP+D2T → SRV 0 2 5060 server2.yealink.pbx.com → A 62.10.1.20"
    assert res.targets[0].a_ttl == 3600 and res.targets[0].expires_at == 3600.0
    assert res.cacheable and res.expires_at == 3600.0
    assert any("SRV order: 0 2 5060 server2" in line for line in res.log)


def test_naptr_sorted_by_order_then_preference():
    zone = guide_zone()
    zone[(D, "NAPTR")] = [
        Naptr(50, 20, "s", "SIP+D2T", "", "_sip._tcp." + D, 60),
        Naptr(50, 10, "s", "SIP+D2U", "", "_sip._udp." + D, 60),
    ]
    res = run(Resolution(D, 0, 3, 0), zone)
    assert addrs(res) == ["udp:62.10.1.30:5070"]  # port from SRV


def test_naptr_services_sctp_and_unknown_skipped_sips_is_tls():
    zone = guide_zone()
    zone[(D, "NAPTR")] = [
        Naptr(10, 10, "s", "SIP+D2S", "", "_sip._sctp." + D, 60),
        Naptr(20, 10, "s", "E2U+sip", "", "_sip._tcp." + D, 60),
        Naptr(25, 10, "u", "SIP+D2T", "!^.*$!sip:x@y!", ".", 60),
        Naptr(30, 10, "s", "SIPS+D2T", "", "_sips._tcp." + D, 60),
    ]
    zone[("_sips._tcp." + D, "SRV")] = [Srv(0, 0, 5061, "server1." + D, 60)]
    res = run(Resolution(D, 0, 3, 0), zone)
    assert addrs(res) == ["tls:62.10.1.10:5061"]
    assert [q.name for q in res.queries] == [D, "_sips._tcp." + D, "server1." + D]


def test_explicit_port_with_naptr_transport_is_a_only():
    # SPEC §8 DNS-2
    res = run(Resolution(D, 5060, 3, 0), guide_zone({(D, "A"): [Address("62.10.1.10", 600)]}))
    assert res.queries == [Query(D, "A")]
    assert addrs(res) == ["udp:62.10.1.10:5060"]
    assert res.targets[0].source == "A yealink.pbx.com → 62.10.1.10"


@pytest.mark.parametrize("transport,proto", [(0, "udp"), (1, "tcp"), (2, "tls")])
def test_explicit_port_any_transport_is_a_only(transport, proto):
    res = run(Resolution(D, 5080, transport), {(D, "A"): [Address("62.10.1.10", 60)]})
    assert res.queries == [Query(D, "A")]
    assert addrs(res) == [f"{proto}:62.10.1.10:5080"]


@pytest.mark.parametrize(
    "address,port,transport,expect",
    [
        ("127.0.0.10", 0, 0, "udp:127.0.0.10:5060"),
        ("127.0.0.10", 0, 2, "tls:127.0.0.10:5061"),
        ("127.0.0.10", 5070, 1, "tcp:127.0.0.10:5070"),
        ("127.0.0.10", 0, 3, "udp:127.0.0.10:5060"),
        ("[::1]", 0, 0, "udp:[::1]:5060"),
        ("::1", 5062, 1, "tcp:[::1]:5062"),
    ],
)
def test_ip_literal_needs_no_dns(address, port, transport, expect):
    res = Resolution(address, port, transport)
    assert res.done and res.next_query() is None and res.queries == []
    assert addrs(res) == [expect]
    assert res.targets[0].a_ttl is None and res.targets[0].expires_at is None
    assert res.expires_at is None and res.cacheable


@pytest.mark.parametrize("transport,srv", [(0, "_sip._udp"), (1, "_sip._tcp"), (2, "_sips._tcp")])
def test_transport_picks_srv_name(transport, srv):
    zone = {(f"{srv}.{D}", "SRV"): [Srv(1, 0, 6000, "h." + D, 60)], ("h." + D, "A"): [Address("62.10.1.10", 60)]}
    res = run(Resolution(D, 0, transport), zone)
    assert res.queries == [Query(f"{srv}.{D}", "SRV"), Query("h." + D, "A")]
    assert addrs(res) == [f"{['udp', 'tcp', 'tls'][transport]}:62.10.1.10:6000"]


def test_empty_flags_query_naptr_again_on_replacement():
    # SPEC §8 DNS-4
    zone = guide_zone()
    zone[(D, "NAPTR")] = [Naptr(10, 10, "", "", "", "next.example.net.", 300)]
    zone[("next.example.net", "NAPTR")] = [Naptr(10, 10, "s", "SIP+D2T", "", "_sip._tcp." + D, 300)]
    res = run(Resolution(D, 0, 3, 0), zone)
    assert [tuple(q) for q in res.queries[:3]] == [(D, "NAPTR"), ("next.example.net", "NAPTR"), ("_sip._tcp." + D, "SRV")]
    assert addrs(res) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert res.targets[0].source.startswith("NAPTR 10 10 (no service) → NAPTR 10 10 SIP+D2T → SRV 0 2")


def test_empty_flags_dead_end_continues_with_next_record():
    zone = guide_zone()
    zone[(D, "NAPTR")] = [
        Naptr(10, 10, "", "", "", "dead.example.net.", 300),
        Naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp." + D, 300),
    ]
    res = run(Resolution(D, 0, 3, 1), zone)
    assert [tuple(q) for q in res.queries[:3]] == [(D, "NAPTR"), ("dead.example.net", "NAPTR"), ("_sip._udp." + D, "SRV")]
    assert addrs(res) == ["udp:62.10.1.30:5070"]


@pytest.mark.parametrize("naptr_build,expect", [(0, ["udp:62.10.1.30:5070"]), (1, ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"])])
def test_naptr_loop_guard(naptr_build, expect):
    zone = guide_zone()
    zone[(D, "NAPTR")] = [Naptr(10, 10, "", "", "", "l1.example.net.", 300)]
    for i in range(1, 20):  # a chain longer than the guard, each a new name
        zone[(f"l{i}.example.net", "NAPTR")] = [Naptr(10, 10, "", "", "", f"l{i + 1}.example.net.", 300)]
    res = run(Resolution(D, 0, 3, naptr_build), zone)
    naptrs = [q for q in res.queries if q.qtype == "NAPTR"]
    assert len(naptrs) == NAPTR_LOOP_GUARD == 8
    assert any("loop guard" in line for line in res.log)
    assert addrs(res) == expect  # then as "NAPTR gave nothing": SRV by naptr_build


def test_naptr_self_loop_stops_at_guard():
    zone = guide_zone({(D, "NAPTR"): [Naptr(10, 10, "", "", "", D, 300)]})
    res = run(Resolution(D, 0, 3, 0), zone)
    assert [q for q in res.queries if q.qtype == "NAPTR"] == [Query(D, "NAPTR")]  # answered from this lookup
    assert any("loop guard" in line for line in res.log)
    assert addrs(res) == ["udp:62.10.1.30:5070"]


def test_naptr_empty_naptr_build_0_udp_srv():
    # SPEC §8 DNS-3
    res = run(Resolution(D, 0, 3, 0), guide_zone({(D, "NAPTR"): []}))
    assert res.queries[:2] == [Query(D, "NAPTR"), Query("_sip._udp." + D, "SRV")]
    assert addrs(res) == ["udp:62.10.1.30:5070"]


def test_naptr_empty_naptr_build_1_tcp_srv_first():
    res = run(Resolution(D, 0, 3, 1), guide_zone({(D, "NAPTR"): []}))
    assert res.queries[:2] == [Query(D, "NAPTR"), Query("_sip._tcp." + D, "SRV")]
    assert addrs(res) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]


def test_naptr_empty_naptr_build_1_then_sips():
    zone = guide_zone({(D, "NAPTR"): [], ("_sip._tcp." + D, "SRV"): []})
    zone[("_sips._tcp." + D, "SRV")] = [Srv(0, 0, 5061, "server1." + D, 60)]
    res = run(Resolution(D, 0, 3, 1), zone)
    assert res.queries[:3] == [Query(D, "NAPTR"), Query("_sip._tcp." + D, "SRV"), Query("_sips._tcp." + D, "SRV")]
    assert addrs(res) == ["tls:62.10.1.10:5061"]


@pytest.mark.parametrize("transport,naptr_build,proto,port", [(3, 0, "udp", 5060), (3, 1, "tcp", 5060), (0, 0, "udp", 5060), (1, 0, "tcp", 5060), (2, 0, "tls", 5061)])
def test_no_srv_no_naptr_a_on_domain(transport, naptr_build, proto, port):
    # SPEC §8 DNS-5
    res = run(Resolution(D, 0, transport, naptr_build), {(D, "A"): [Address("62.10.1.10", 120), Address("62.10.1.11", 120)]})
    assert res.queries[-1] == Query(D, "A")
    assert addrs(res) == [f"{proto}:62.10.1.10:{port}", f"{proto}:62.10.1.11:{port}"]


def test_srv_priority_beats_weight_and_several_a_per_target():
    # SPEC §8 DNS-6
    zone = {
        ("_sip._udp." + D, "SRV"): [
            Srv(10, 100, 5060, "heavy." + D, 60),
            Srv(5, 2, 5062, "light." + D, 60),
            Srv(5, 1, 5064, "light2." + D, 60),
        ],
        ("heavy." + D, "A"): [Address("62.10.1.30", 60)],
        ("light." + D, "A"): [Address("62.10.1.10", 60), Address("62.10.1.11", 60)],
        ("light2." + D, "A"): [Address("62.10.1.12", 60)],
    }
    res = run(Resolution(D, 0, 0), zone)
    assert addrs(res) == ["udp:62.10.1.10:5062", "udp:62.10.1.11:5062", "udp:62.10.1.12:5064", "udp:62.10.1.30:5060"]


def test_srv_dot_target_means_no_service_no_a_fallback():
    res = run(Resolution(D, 0, 0), {("_sip._udp." + D, "SRV"): [Srv(0, 0, 0, ".", 60)], (D, "A"): [Address("62.10.1.10", 60)]})
    assert res.targets == []
    assert Query(D, "A") not in res.queries
    assert any("no service" in line for line in res.log)


def test_srv_dot_in_naptr_chain_goes_to_next_naptr():
    zone = guide_zone({("_sip._tcp." + D, "SRV"): [Srv(0, 0, 0, ".", 60)]})
    res = run(Resolution(D, 0, 3, 0), zone)
    assert addrs(res) == ["udp:62.10.1.30:5070"]


def test_no_target_at_all_is_empty_list():
    res = run(Resolution(D, 0, 3, 1), {})
    assert res.targets == [] and not res.cacheable
    assert res.queries == [Query(D, "NAPTR"), Query("_sip._tcp." + D, "SRV"), Query("_sips._tcp." + D, "SRV"), Query(D, "A")]


def test_same_address_from_two_srv_records_kept_once():
    zone = {
        ("_sip._udp." + D, "SRV"): [Srv(0, 0, 5060, "a." + D, 60), Srv(1, 0, 5060, "b." + D, 60)],
        ("a." + D, "A"): [Address("62.10.1.10", 60)],
        ("b." + D, "A"): [Address("62.10.1.10", 60), Address("62.10.1.20", 60)],
    }
    assert addrs(run(Resolution(D, 0, 0), zone)) == ["udp:62.10.1.10:5060", "udp:62.10.1.20:5060"]


def test_ipv6_also_queries_aaaa():
    zone = {
        ("_sip._udp." + D, "SRV"): [Srv(0, 0, 5060, "a." + D, 60)],
        ("a." + D, "A"): [Address("62.10.1.10", 60)],
        ("a." + D, "AAAA"): [Address("2001:db8::1", 60)],
    }
    res = run(Resolution(D, 0, 0, ipv6=True), zone)
    assert res.queries[1:] == [Query("a." + D, "A"), Query("a." + D, "AAAA")]
    assert addrs(res) == ["udp:62.10.1.10:5060", "udp:[2001:db8::1]:5060"]
    res4 = run(Resolution(D, 0, 0), zone)
    assert Query("a." + D, "AAAA") not in res4.queries


def test_ttls_and_expiry_follow_answer_times():
    zone = guide_zone()
    zone[("server2." + D, "A")] = [Address("62.10.1.20", 30)]
    zone[("_sip._tcp." + D, "SRV")] = [Srv(0, 1, 5060, "server1." + D, 500), Srv(0, 2, 5060, "server2." + D, 500)]
    res = run(Resolution(D, 0, 3, 0, now=100.0), zone, step=1.0)  # answers at 101, 102, 103, 104
    t2, t1 = res.targets
    assert (t2.a_ttl, t2.expires_at) == (30, 133.0)
    assert (t1.a_ttl, t1.expires_at) == (3600, 3704.0)
    assert res.expires_at == 133.0  # smallest of the chain


def test_a_fleet_resolving_one_domain_shares_its_texts_and_keeps_no_plan():
    # a phone keeps its last lookups for the log, and a process runs 10 000 phones
    # (bench/phone_scale.py): the same notes and target sources are one object for all of them,
    # and a finished lookup keeps its result and log, not the answers it memoized per query
    zone = guide_zone()
    one, two = (run(Resolution(D, 0, 3, 0), zone) for _ in range(2))
    assert one.log == two.log and all(a is b for a, b in zip(one.log, two.log))
    assert one.targets == two.targets and all(a.source is b.source for a, b in zip(one.targets, two.targets))
    assert one.expires_at == 3600.0 and one.cacheable
    gc.collect()
    tracemalloc.start()
    try:
        kept = [run(Resolution(D, 0, 3, 0), zone) for _ in range(200)]
        gc.collect()
        per_lookup = tracemalloc.get_traced_memory()[0] / len(kept)
    finally:
        tracemalloc.stop()
    assert per_lookup < 5500  # ~4 650 bytes here (Python 3.11); ~6 600 when the plan's memo stayed


def test_the_shared_texts_stay_bounded_whatever_dns_answers():
    from sipharness.phone import dnsrecords

    for i in range(3 * dnsrecords._TEXTS_MAX):  # a hostile server answering every lookup with new names
        assert dnsrecords.shared_text(f"SRV 0 0 5060 h{i}.example → A 10.0.0.1") == f"SRV 0 0 5060 h{i}.example → A 10.0.0.1"
    assert len(dnsrecords._TEXTS) <= dnsrecords._TEXTS_MAX


def test_srv_ttl_bounds_result_expiry():
    zone = guide_zone()
    zone[("_sip._tcp." + D, "SRV")] = [Srv(0, 2, 5060, "server2." + D, 10)]
    res = run(Resolution(D, 0, 3, 0), zone)
    assert res.targets[0].expires_at == 3600.0 and res.expires_at == 10.0


# --- faults -----------------------------------------------------------------------------

FAULTS = [Fault.SERVFAIL, Fault.REFUSED, Fault.TIMEOUT, Fault.NXDOMAIN, Fault.TRUNCATED, Fault.ERROR]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_on_naptr_goes_to_srv_by_naptr_build(fault):
    res = run(Resolution(D, 0, 3, 1), guide_zone({(D, "NAPTR"): fault}))
    assert res.queries[1] == Query("_sip._tcp." + D, "SRV")
    assert addrs(res) == ["tcp:62.10.1.20:5060", "tcp:62.10.1.10:5060"]
    assert res.cacheable == (fault is Fault.NXDOMAIN)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_on_srv_goes_to_next_step(fault):
    zone = guide_zone({("_sip._tcp." + D, "SRV"): fault, (D, "A"): [Address("62.10.1.40", 60)]})
    res = run(Resolution(D, 0, 3, 0), zone)
    # the NAPTR's TCP SRV failed → next NAPTR record (UDP)
    assert addrs(res) == ["udp:62.10.1.30:5070"]
    res = run(Resolution(D, 0, 1, 0), zone)  # TCP SRV fails → A on the domain
    assert addrs(res) == ["tcp:62.10.1.40:5060"]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_on_a_skips_that_target(fault):
    res = run(Resolution(D, 0, 3, 0), guide_zone({("server2." + D, "A"): fault}))
    assert addrs(res) == ["tcp:62.10.1.10:5060"]
    assert res.cacheable == (fault is Fault.NXDOMAIN)
    if fault is not Fault.NXDOMAIN:
        assert res.faults == [(Query("server2." + D, "A"), fault)]
        assert f"A server2.yealink.pbx.com: {fault.value} → as empty" in res.log


def test_every_step_failing_is_empty_list():
    zone = {(D, "NAPTR"): Fault.TIMEOUT, ("_sip._udp." + D, "SRV"): Fault.SERVFAIL, (D, "A"): Fault.REFUSED}
    res = run(Resolution(D, 0, 3, 0), zone)
    assert res.targets == [] and len(res.faults) == 3


def test_bad_records_are_skipped_not_fatal():
    zone = {
        ("_sip._udp." + D, "SRV"): [
            Srv(0, 9, 5060, "bad target!", 60),
            Srv(0, 8, 70000, "a." + D, 60),
            Srv(0, 7, 5060, "a." + D, -5),
            "garbage",
            Srv(1, 0, 5062, "a." + D, 60),
        ],
        ("a." + D, "A"): [Address("300.1.2.3", 60), Address("2001:db8::1", 60), Address("62.10.1.10", 60), None],
    }
    res = run(Resolution(D, 0, 0), zone)
    assert addrs(res) == ["udp:62.10.1.10:5062"]
    skipped = [line for line in res.log if "bad record(s) skipped" in line]
    assert [line.split(": ")[1] for line in skipped] == ["4 bad record(s) skipped", "3 bad record(s) skipped"]


def test_bad_naptr_records_skipped():
    zone = guide_zone()
    zone[(D, "NAPTR")] = [Naptr(-1, 0, "s", "SIP+D2T", "", "_sip._tcp." + D, 60), Naptr(5, 5, "s", "SIP+D2U", "", "no good..name", 60)]
    res = run(Resolution(D, 0, 3, 1), zone)
    assert res.queries[1] == Query("_sip._tcp." + D, "SRV")  # both bad → NAPTR empty → naptr_build 1


# --- SRV selection ----------------------------------------------------------------------


def _equal_pair_zone(first="b", second="a"):
    return {
        ("_sip._udp." + D, "SRV"): [Srv(0, 5, 5060, first + "." + D, 60), Srv(0, 5, 5060, second + "." + D, 60),
                                    Srv(0, 6, 5060, "c." + D, 60)],
        ("a." + D, "A"): [Address("62.10.1.1", 60)],
        ("b." + D, "A"): [Address("62.10.1.2", 60)],
        ("c." + D, "A"): [Address("62.10.1.3", 60)],
    }


class _ScriptedRng:
    """An injected rng whose shuffles are given: exact, no statistics (SPEC §2 load balance)."""

    def __init__(self, *swaps):
        self.swaps = list(swaps)

    def shuffle(self, items):
        if self.swaps.pop(0):
            items.reverse()


def test_seed_equal_priority_and_weight_order_is_drawn_from_the_rng_per_resolution():
    """SPEC §2 revised 2026-12-01: equal priority and weight → the order among them is drawn at
    random per resolution (it was the answer's order); heavier weight still comes first."""
    zone = _equal_pair_zone()
    rng = _ScriptedRng(False, True)
    first = [t.host for t in run(Resolution(D, 0, 0, rng=rng), zone).targets]
    second = [t.host for t in run(Resolution(D, 0, 0, rng=rng), zone).targets]
    assert first == ["62.10.1.3", "62.10.1.2", "62.10.1.1"]  # weight 6 first, then the pair as drawn
    assert second == ["62.10.1.3", "62.10.1.1", "62.10.1.2"]
    # the answer's order does not decide: the same draw gives the same hosts, whatever the DNS listed first
    assert [t.host for t in run(Resolution(D, 0, 0, rng=_ScriptedRng(False)), _equal_pair_zone("a", "b")).targets] \
        == ["62.10.1.3", "62.10.1.1", "62.10.1.2"]


def test_seed_equal_pair_each_first_at_least_once_in_10_and_half_the_time_overall():
    """DNS-8 on the plan with a seeded rng (deterministic): each of two equal records comes first
    at least once in the first 10 resolutions, and about half of 2 000."""
    zone = {("_sip._udp." + D, "SRV"): [Srv(0, 5, 5060, "a." + D, 60), Srv(0, 5, 5060, "b." + D, 60)],
            ("a." + D, "A"): [Address("62.10.1.1", 60)], ("b." + D, "A"): [Address("62.10.1.2", 60)]}
    rng = random.Random(8)
    firsts = [run(Resolution(D, 0, 0, rng=rng), zone).targets[0].host for _ in range(2000)]
    assert set(firsts[:10]) == {"62.10.1.1", "62.10.1.2"}, firsts[:10]
    assert 900 <= firsts.count("62.10.1.1") <= 1100


def test_rfc2782_weighted_random_statistics():
    zone = {
        ("_sip._udp." + D, "SRV"): [Srv(0, 1, 5060, "a." + D, 60), Srv(0, 3, 5060, "b." + D, 60), Srv(1, 100, 5060, "c." + D, 60)],
        ("a." + D, "A"): [Address("62.10.1.1", 60)],
        ("b." + D, "A"): [Address("62.10.1.2", 60)],
        ("c." + D, "A"): [Address("62.10.1.3", 60)],
    }
    rng = random.Random(1234)
    firsts = {"62.10.1.1": 0, "62.10.1.2": 0}
    n = 4000
    for _ in range(n):
        res = run(Resolution(D, 0, 0, srv_select="rfc2782", rng=rng), zone)
        hosts = [t.host for t in res.targets]
        assert hosts[2] == "62.10.1.3"  # priority still first
        firsts[hosts[0]] += 1
    # RFC 2782 as written draws 0..total inclusive: running sums 1, 4 → a wins draws 0, 1 (2/5),
    # b wins 2, 3, 4 (3/5).
    assert abs(firsts["62.10.1.2"] / n - 3 / 5) < 0.03
    # seed mode on the same zone is deterministic: heavier first
    assert [t.host for t in run(Resolution(D, 0, 0), zone).targets] == ["62.10.1.2", "62.10.1.1", "62.10.1.3"]


def test_rfc2782_zero_weight_rarely_first():
    zone = {
        ("_sip._udp." + D, "SRV"): [Srv(0, 0, 5060, "z." + D, 60), Srv(0, 9, 5060, "w." + D, 60)],
        ("z." + D, "A"): [Address("62.10.1.1", 60)],
        ("w." + D, "A"): [Address("62.10.1.2", 60)],
    }
    rng = random.Random(7)
    n = 2000
    z_first = sum(run(Resolution(D, 0, 0, srv_select="rfc2782", rng=rng), zone).targets[0].host == "62.10.1.1" for _ in range(n))
    assert abs(z_first / n - 1 / 10) < 0.03  # only the 0 draw of 0..9


# --- API errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,kw,word",
    [
        (("",), {}, "address"),
        (("bad name!",), {}, "address"),
        ((D, 70000), {}, "port"),
        ((D, 0, 4), {}, "transport"),
        ((D, 0, 3, 2), {}, "naptr_build"),
        ((D,), {"srv_select": "random"}, "srv_select"),
    ],
)
def test_bad_arguments_are_named(args, kw, word):
    with pytest.raises(ValueError, match=word):
        Resolution(*args, **kw)


def test_feed_must_match_pending_query():
    res = Resolution(D, 0, 3, 0)
    with pytest.raises(ValueError, match="pending query is NAPTR"):
        res.feed(D, "SRV", [])
    res.feed(D + ".", "naptr", [])  # trailing dot and case are normalised
    res = Resolution("127.0.0.1")
    with pytest.raises(RuntimeError, match="no query is pending"):
        res.feed(D, "A", [])


def test_target_str_and_key():
    t = Target("127.0.0.10", 5060, "udp", 60, 61.0, "x")
    assert str(t) == "udp:127.0.0.10:5060" and t.key == ("127.0.0.10", 5060, "udp")


def test_same_query_is_not_asked_twice_in_one_lookup():
    # NAPTR's UDP SRV is empty; naptr_build 0 would ask it again: answered from this lookup
    zone = guide_zone({("_sip._tcp." + D, "SRV"): Fault.TIMEOUT, ("_sip._udp." + D, "SRV"): [], (D, "A"): [Address("62.10.1.40", 60)]})
    res = run(Resolution(D, 0, 3, 0), zone)
    assert res.queries == [Query(D, "NAPTR"), Query("_sip._tcp." + D, "SRV"), Query("_sip._udp." + D, "SRV"), Query(D, "A")]
    assert addrs(res) == ["udp:62.10.1.40:5060"]


# ------------------------------------------------------------------ only records that answer the question (SPEC §2)

def test_a_record_owned_by_another_name_is_ignored_and_logged():
    """Issue 12: an SRV for another name, in the answer to _sip._udp.pbx.test, was used."""
    name = "_sip._udp." + D
    zone = {
        (name, "SRV"): [Srv(0, 0, 5999, "evil.attacker.test", 60, owner="_sip._udp.attacker.test"),
                        Srv(1, 0, 5062, "good." + D, 60, owner=name + ".")],
        ("good." + D, "A"): [Address("62.10.1.10", 60, owner="good." + D),
                             Address("6.6.6.6", 60, owner="evil.attacker.test")],
    }
    res = run(Resolution(D, 0, 0), zone)
    assert addrs(res) == ["udp:62.10.1.10:5062"]
    assert Query("evil.attacker.test", "A") not in res.queries
    ignored = [line for line in res.log if "do not answer the question" in line]
    assert len(ignored) == 2 and "attacker" in ignored[0] and "6.6.6.6" in ignored[1]


def test_records_reached_by_a_cname_of_the_same_answer_are_used_others_not():
    name = "_sip._udp." + D
    zone = {
        (name, "SRV"): [Cname(name, "_sip._udp.real.example.net", 60),
                        Srv(0, 0, 5070, "host.real.example.net", 60, owner="_sip._udp.real.example.net"),
                        Cname("elsewhere.example.net", "_sip._udp.evil.test", 60),
                        Srv(0, 0, 5999, "evil.test", 60, owner="_sip._udp.evil.test")],
        ("host.real.example.net", "A"): [Address("62.10.1.20", 60, owner="host.real.example.net")],
    }
    res = run(Resolution(D, 0, 0), zone)
    assert addrs(res) == ["udp:62.10.1.20:5070"]
    assert any("CNAME → _sip._udp.real.example.net" in line for line in res.log)
    assert any("2 record(s) that do not answer the question" in line for line in res.log)


def test_a_cname_loop_in_an_answer_ends():
    name = "_sip._udp." + D
    zone = {(name, "SRV"): [Cname(name, "x." + D, 60), Cname("x." + D, name, 60)], (D, "A"): [Address("62.10.1.1", 60)]}
    assert addrs(run(Resolution(D, 0, 0), zone)) == ["udp:62.10.1.1:5060"]  # no SRV: A on the domain


def test_additional_records_that_are_not_glue_of_the_answer_are_logged_and_never_used():
    name = "_sip._udp." + D
    res = Resolution(D, 0, 0)
    q = res.next_query()
    res.feed(q.name, q.qtype, [Srv(0, 0, 5060, "s1." + D, 60, owner=name)],
             additional=[Address("62.10.1.10", 60, owner="s1." + D), Address("6.6.6.6", 60, owner="www.evil.test")])
    q = res.next_query()
    assert q == Query("s1." + D, "A")  # glue is not used: the phone asks A itself [seed]
    res.feed(q.name, q.qtype, [Address("62.10.1.11", 60, owner="s1." + D)])
    assert addrs(res) == ["udp:62.10.1.11:5060"]
    stray = [line for line in res.log if "additional record(s)" in line]
    assert len(stray) == 1 and "www.evil.test" in stray[0] and "s1." not in stray[0]


def test_records_used_per_answer_are_capped_the_most_preferred_kept():
    """Issue 12: 1 000 SRV records cost ~850 A queries for one lookup."""
    from sipharness.phone.rfc3263 import MAX_QUERIES_PER_LOOKUP, MAX_RECORDS_PER_ANSWER

    name = "_sip._udp." + D
    srvs = [Srv(1000 - i, 0, 5060, f"h{i}." + D, 60) for i in range(1000)]  # best priority last in the answer
    zone = {(name, "SRV"): srvs}
    zone.update({(f"h{i}." + D, "A"): [Address(f"10.0.{i // 250}.{i % 250 + 1}", 60)] for i in range(1000)})
    res = run(Resolution(D, 0, 0), zone)
    a_queries = [q for q in res.queries if q.qtype == "A"]
    assert len(a_queries) == MAX_RECORDS_PER_ANSWER <= MAX_QUERIES_PER_LOOKUP
    assert a_queries[0] == Query("h999." + D, "A")  # priority 1: the most preferred kept
    assert any(f"1000 usable records, the first {MAX_RECORDS_PER_ANSWER} used, 984 cut" in line for line in res.log)
    many_a = {(name, "SRV"): [Srv(0, 0, 5060, "big." + D, 60)],
              ("big." + D, "A"): [Address(f"10.1.{i // 250}.{i % 250 + 1}", 60) for i in range(500)]}
    assert len(run(Resolution(D, 0, 0), many_a).targets) == MAX_RECORDS_PER_ANSWER


def test_a_lookup_makes_at_most_max_queries():
    """NAPTR records each leading to SRV records whose hosts have no address: bounded work."""
    from sipharness.phone.rfc3263 import MAX_QUERIES_PER_LOOKUP

    zone = {(D, "NAPTR"): [Naptr(i, 0, "s", "SIP+D2U", "", f"_sip._udp.n{i}." + D, 60) for i in range(16)]}
    for i in range(16):
        zone[(f"_sip._udp.n{i}." + D, "SRV")] = [Srv(0, 0, 5060, f"h{i}-{j}." + D, 60) for j in range(16)]
    res = run(Resolution(D, 0, 3), zone)
    assert len(res.queries) == MAX_QUERIES_PER_LOOKUP
    assert res.targets == [] and not res.cacheable
    assert Fault.BUDGET in {f for _, f in res.faults}
    assert any("not asked" in line for line in res.log)


def test_a_hostile_answer_logs_a_bounded_text():
    name = "_sip._udp." + D
    zone = {(name, "SRV"): [Srv(0, 0, 5060, f"x{i}.evil.test", 60, owner=f"n{i}.evil.test") for i in range(3000)]
            + ["garbage"] * 3000, (D, "A"): [Address("62.10.1.1", 60)]}
    res = run(Resolution(D, 0, 0), zone)
    assert addrs(res) == ["udp:62.10.1.1:5060"]
    assert sum(len(line) for line in res.log) < 4000


def test_literal_targets_is_the_one_home_of_an_ip_literals_target():
    """SPEC §2: an IP literal is one target, no DNS; transport 3 has no NAPTR to ask → UDP
    [RFC 3263 §4.1], whatever naptr_build says; port 0 → 5060, 5061 for TLS."""
    from sipharness.phone.rfc3263 import literal_targets

    assert [str(t) for t in literal_targets("62.10.1.15", 0, 3)] == ["udp:62.10.1.15:5060"]
    assert [str(t) for t in literal_targets("62.10.1.15", 0, 2)] == ["tls:62.10.1.15:5061"]
    assert [str(t) for t in literal_targets("[2001:db8::1]", 5070, 1)] == ["tcp:[2001:db8::1]:5070"]
