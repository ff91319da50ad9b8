"""DNS-1 … DNS-7: from ``sip_server.1.address`` to the server the first REGISTER reaches (SPEC §2).

A DUT exposes no resolver, so every check here is made on the wire: the fake DNS records
the queries (name, type, transport, phone time) and the fake SIP servers record which of
them the REGISTER reached, over which transport and port. Each zone carries decoys where a
wrong reading of the rules would lead the phone elsewhere (a NAPTR/SRV pointing to another
fake when only an A query is allowed, an SRV of the other transport, ...), so a phone that
resolves wrongly sends its REGISTER to the wrong fake and the test fails on that.

The zones are written here, in the test, rather than by :meth:`Lab.up`, because the shape
of the zone *is* what these scenarios test. Addresses are the SPEC §8 loopback mapping of
the guide's example; ports are the fakes' ephemeral ones (carried by SRV records), except
DNS-5 (no SRV: the phone must use 5060), which gives its fake a host of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempt_runs, attempts, expect_no_request, expect_times
from sipharness.harness.lab import PASSWORD, USER

DATA = Path(__file__).resolve().parent / "data"
SEED_ZONE = DATA / "seed-example.zone"

#: SPEC §8: the guide's example addresses → the fakes that stand for them (127.0.0.10 / .20 on loopback).
SEED_ADDRESS_MAP = {"62.10.1.10": "server1", "62.10.1.20": "server2"}
WAIT = 60.0  # phone seconds: cheap on the virtual clock, generous on the real one

# The guide's passages each scenario checks (seed/000_b0c8ec5742f7e148.txt).
P_DNS1 = ("The IP phone picks the first record, because its order of 90 is lower than 100. [...] TCP will be used, "
          "targeted to a host determined by an SRV query of \"_sip._tcp.yealink.pbx.com\". [...] The weight of the "
          "second record is higher than the first one, so the second record will be picked first. [...] The IP phone "
          "picks the IP address \"62.10.1.20\" first.")
P_DNS2 = ("If an explicit port (except 0) is specified and the transport type is set to DNS-NAPTR, A query will be "
          "performed only.")
P_DNS3 = ("SPEC §2: NAPTR gives no usable record → SRV _sip._udp.<domain> if naptr_build = 0, else _sip._tcp.<domain> "
          "then _sips._tcp.<domain> [seed: account.X.naptr_build]")
P_DNS4 = ("If the flag of the NAPTR record returned is empty, the IP phone will perform NAPTR query again according "
          "to the previous NAPTR query result.")
P_DNS5 = ("If a SIP server port is set to 0 and the transport type is set to DNS-NAPTR, NAPTR and SRV queries will be "
          "tried before falling to A query. If no port is found through the DNS query, 5060 will be used.")
P_DNS6 = ("Priority: Lower priority is more preferred. Weight: When priorities are equal, weight is used to "
          "differentiate the preference. [...] The IP phone performs an A query for the IP address of each target "
          "host name.")
P_DNS7 = ("SPEC §2 DNS faults [interp]: SERVFAIL, REFUSED, timeout (2 s, 2 tries) or a truncated UDP answer (retry "
          "over TCP) on the NAPTR or SRV step → go on to the next step as if empty; on the A step → that target is "
          "skipped.")
I_FAULTS = "SPEC §2: DNS faults on the NAPTR/SRV step → next step as if empty; on the A step → target skipped"


# ---------------------------------------------------------------------------------------------- helpers

def _account(address: str, port: int, transport: int, **extra) -> dict:
    acc = {"enable": 1, "label": USER, "display_name": USER, "auth_name": USER, "user_name": USER,
           "password": PASSWORD, "sip_server.1.address": address, "sip_server.1.port": port,
           "transport": transport}
    acc.update(extra)
    return acc


async def _start(lab, dns, account: dict) -> float:
    """Configure and start the DUT on ``dns``; returns the phone time it was started at."""
    await lab.dut.apply_config(lab.write_cfg(dns, account))
    t0 = lab.now()
    await lab.dut.start()
    return t0


def _queries(lab) -> list[tuple[str, str]]:
    """(qtype, name) of every query the fake DNS received, in order (names lower case, no trailing dot)."""
    return [(r.qtype, (r.name or "").rstrip(".").lower()) for r in lab.recorder.entries()
            if r.kind == "dns" and r.direction == "in"]


def _first_register(lab, *, server: str | None = None):
    regs = attempts(lab.recorder, "REGISTER", server)
    assert regs, f"no REGISTER reached {server or 'any fake'}"
    return regs[0]


def _queries_before(lab, record) -> list[tuple[str, str]]:
    """The DNS queries recorded before ``record`` (a SIP record)."""
    out = []
    for r in lab.recorder.entries():
        if r is record:
            break
        if r.kind == "dns" and r.direction == "in":
            out.append((r.qtype, (r.name or "").rstrip(".").lower()))
    return out


def _expect_order(seen: list[tuple[str, str]], expected: list[tuple[str, str]], what: str) -> None:
    """``expected`` occurs in ``seen`` in this order (other queries may come in between)."""
    it = iter(seen)
    missing = [q for q in expected if not any(s == q for s in it)]
    assert not missing, f"{what}: expected the queries {expected} in this order; saw {seen}"


def _seed_zone(lab, port: int) -> str:
    """The guide's appendix zone, addresses mapped to the lab's (SPEC §8), SRV port 5060 → ``port``."""
    text = SEED_ZONE.read_text(encoding="utf-8")
    for guide, name in SEED_ADDRESS_MAP.items():
        text = text.replace(guide, lab.host(name))
    text, n = re.subn(r"^(_sip\._tcp\s+IN\s+SRV\s+\d+\s+\d+\s+)5060(\s)", rf"\g<1>{port}\g<2>", text, flags=re.M)
    assert n == 2, f"{SEED_ZONE}: expected the guide's two _sip._tcp SRV records with port 5060, replaced {n}"
    assert "62.10." not in text, "a guide address is left in the zone: it must never be contacted"
    return text


async def _udp_and_tcp(lab, name: str, host: str, port: int = 0):
    """A fake listening on UDP and TCP on the same ``port`` (0: any free one) of ``host``."""
    last = None
    for _ in range(10):
        srv = await lab.server(name, "udp", host=host, port=port)
        try:
            await srv.listen("tcp", srv.addresses["udp"][1])
            return srv
        except Exception as e:  # that TCP port is taken: another UDP port (only when ephemeral)
            last = e
            await srv.stop()  # (stopping twice is harmless: the lab stops it again at the end)
            if port:
                break
    raise RuntimeError(f"could not bind {name} on UDP and TCP on one port of {host}: {last}")


async def _fake_on_5060(lab, name: str, transport: str):
    """A fake on port 5060 of a host of this test's own (``lab.spare_host()``), or skip (the rule fixes 5060)."""
    why = None
    for _ in range(5):
        host = lab.spare_host()
        try:
            return await lab.server(name, transport, host=host, port=5060)
        except Exception as e:  # taken (or the host is not loopback here): another host
            why = e  # (the fake that could not listen holds no socket; the lab stops it at the end)
    pytest.skip(f"cannot bind {transport} port 5060 on a host of this test's own ({why}): the rule needs port 5060")


# ---------------------------------------------------------------------------------------------- DNS-1

async def _seed_lab(lab):
    """The guide's example: server1 (127.0.0.10) and server2 (127.0.0.20) on one TCP port P, the zone's
    SRV records saying P for both, as the guide's say 5060 for both.

    Why one common port rather than one SRV port per target: the guide's two SRV records carry the
    same port, so the zone differs from the guide's only by the number; the targets still differ by
    address, which is what the guide's "picks 62.10.1.20 first" is about.
    """
    s1, s2 = await lab.same_port(["server1", "server2"], "tcp",
                                 {"server1": {"host": lab.host("server1")}, "server2": {"host": lab.host("server2")}})
    port = s1.addresses["tcp"][1]
    dns = await lab.dns(_seed_zone(lab, port))
    return s1, s2, dns, port


@pytest.mark.scenario("DNS-1", P_DNS1)
@pytest_twisted.ensureDeferred
async def test_guide_example_naptr_srv_a_tcp_server2_first(lab):
    s1, s2, dns, port = await _seed_lab(lab)
    await _start(lab, dns, _account("yealink.pbx.com", 0, 3))
    await s2.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "server2" and first.transport == "tcp", (
        f"expected the first REGISTER over TCP at server2 {lab.host('server2')}:{port} (NAPTR order 90 → TCP, SRV weight 2 first); "
        f"it reached {first.server} {first.local[0]}:{first.local[1]} over {first.transport}")
    assert first.local == (lab.host("server2"), port)
    before = _queries_before(lab, first)
    assert before and before[0] == ("NAPTR", "yealink.pbx.com"), f"the first DNS query must be NAPTR yealink.pbx.com; saw {before}"
    _expect_order(before, [("NAPTR", "yealink.pbx.com"), ("SRV", "_sip._tcp.yealink.pbx.com"),
                           ("A", "server2.yealink.pbx.com")], "DNS before the first REGISTER")
    assert ("SRV", "_sip._udp.yealink.pbx.com") not in before, (
        "the order-100 UDP NAPTR record was followed although the order-90 TCP one led to targets")
    await lab.dut.wait_registered(account=1, timeout=WAIT)
    expect_no_request(lab.recorder, "REGISTER", "server1", why="server2 answered")


async def _server2_silent(lab):
    """The guide's example with server2 silent: REGISTER runs per server, and server1's port."""
    s1, s2, dns, port = await _seed_lab(lab)
    s2.script.silent()
    await _start(lab, dns, _account("yealink.pbx.com", 0, 3))
    await s1.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    return attempt_runs(lab.recorder, "REGISTER", ["server1", "server2"]), port


@pytest.mark.scenario("DNS-1", P_DNS1 + " / SPEC §5: on failure to the next target")
@pytest_twisted.ensureDeferred
async def test_guide_example_server2_silent_then_server1(lab):
    runs, port = await _server2_silent(lab)
    assert [name for name, _ in runs] == ["server2", "server1"], (
        f"expected REGISTERs to server2 then server1; saw runs {[(n, len(rs)) for n, rs in runs]}")
    assert all(r.transport == "tcp" for _, rs in runs for r in rs)
    assert runs[1][1][0].local == (lab.host("server1"), port)
    _expect_order(_queries(lab), [("NAPTR", "yealink.pbx.com"), ("SRV", "_sip._tcp.yealink.pbx.com"),
                                  ("A", "server1.yealink.pbx.com")], "DNS queries")
    await lab.dut.wait_registered(account=1, timeout=WAIT)


@pytest.mark.scenario("DNS-1", P_DNS1 + " / SPEC §3: when a TCP target is given up")
@pytest.mark.interp("SPEC §3: a TCP connection that never answers gives the target up after the UDP window (7.5 s)")
@pytest_twisted.ensureDeferred
async def test_guide_example_silent_tcp_target_given_up_after_7_5_s(lab):
    runs, _port = await _server2_silent(lab)
    if runs and runs[0][0] != "server2":  # not this rule's to judge: DNS-1's weight order has its own test
        pytest.skip(f"the TCP give-up time cannot be judged: the phone tried {runs[0][0]} first, not the heavier "
                    f"server2 (the weight order is judged by test_guide_example_naptr_srv_a_tcp_server2_first)")
    assert [name for name, _ in runs] == ["server2", "server1"]
    gap = runs[1][1][0].time - runs[0][1][0].time
    assert lab.tolerance.allows(7.5, gap), (
        f"expected the silent TCP target server2 given up 7.5 s after its first REGISTER (retry_counts 3); "
        f"saw server1's first REGISTER {gap:.3f} s after")


# ---------------------------------------------------------------------------------------------- DNS-2

@pytest.mark.scenario("DNS-2", P_DNS2)
@pytest_twisted.ensureDeferred
async def test_explicit_port_with_dns_naptr_queries_a_only(lab):
    domain = "pbx.example.com"
    target = await _udp_and_tcp(lab, "a-record", lab.host("primary"))
    decoy = await _udp_and_tcp(lab, "decoy", lab.host("tertiary"))
    port, dport = target.addresses["udp"][1], decoy.addresses["udp"][1]
    zone = lab.soa(domain) + "\n".join([
        f'@ IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.{domain}.',
        f'@ IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.{domain}.',
        f"_sip._udp IN SRV 0 10 {dport} decoy.{domain}.",
        f"_sip._tcp IN SRV 0 10 {dport} decoy.{domain}.",
        f"decoy IN A {lab.host('tertiary')}",
        f"@ IN A {lab.host('primary')}"]) + "\n"
    dns = await lab.dns(zone)
    await _start(lab, dns, _account(domain, port, 3))
    await target.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "a-record" and first.local[1] == port, (
        f"expected the first REGISTER at the A record's server {lab.host('primary')}:{port}; it reached "
        f"{first.server} {first.local[0]}:{first.local[1]}")
    seen = _queries(lab)
    assert ("A", domain) in seen, f"no A query on {domain}; saw {seen}"
    wrong = [q for q in seen if q[0] in ("NAPTR", "SRV")]
    assert not wrong, f"explicit port {port} with DNS-NAPTR: A query only, but the phone asked {wrong}"
    expect_no_request(lab.recorder, "REGISTER", "decoy", why="NAPTR/SRV must not be used with an explicit port")


# ---------------------------------------------------------------------------------------------- DNS-3

@pytest.mark.scenario("DNS-3", P_DNS3)
@pytest.mark.parametrize("naptr_build, transport", [(0, "udp"), (1, "tcp"), (1, "tls")])
@pytest_twisted.ensureDeferred
async def test_empty_naptr_falls_back_to_srv_by_naptr_build(lab, naptr_build, transport):
    domain = "pbx.example.com"
    target = await lab.server("target", transport, host=lab.host("primary"))
    host, port = target.addresses[transport]
    # Decoys on the SRV names naptr_build must not lead to.
    decoy_transport = "tcp" if naptr_build == 0 else "udp"
    decoy = await lab.server("decoy", decoy_transport, host=lab.host("tertiary"))
    dport = decoy.addresses[decoy_transport][1]
    srv_name = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}[transport]
    decoy_name = "_sip._tcp" if naptr_build == 0 else "_sip._udp"
    zone = lab.soa(domain) + "\n".join([
        f"{srv_name} IN SRV 0 10 {port} target.{domain}.",
        f"target IN A {host}",
        f"{decoy_name} IN SRV 0 10 {dport} decoy.{domain}.",
        f"decoy IN A {lab.host('tertiary')}"]) + "\n"
    dns = await lab.dns(zone)
    await _start(lab, dns, _account(domain, 0, 3, naptr_build=naptr_build))
    await target.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "target" and first.transport == transport, (
        f"naptr_build {naptr_build}: expected the first REGISTER over {transport} at {host}:{port}; it reached "
        f"{first.server} over {first.transport}")
    seen = _queries(lab)
    expected = [("NAPTR", domain)]
    expected += [("SRV", f"_sip._udp.{domain}")] if naptr_build == 0 else [("SRV", f"_sip._tcp.{domain}")]
    if transport == "tls":
        expected.append(("SRV", f"_sips._tcp.{domain}"))
    expected.append(("A", f"target.{domain}"))
    _expect_order(seen, expected, f"naptr_build {naptr_build}")
    if naptr_build == 0:
        assert ("SRV", f"_sip._tcp.{domain}") not in seen, f"naptr_build 0 asks _sip._udp only; saw {seen}"
    expect_no_request(lab.recorder, "REGISTER", "decoy", why=f"naptr_build {naptr_build} does not lead there")


# ---------------------------------------------------------------------------------------------- DNS-4

@pytest.mark.scenario("DNS-4", P_DNS4)
@pytest_twisted.ensureDeferred
async def test_empty_naptr_flags_query_naptr_again_on_replacement(lab):
    domain, nxt = "pbx.example.com", "sip.pbx.example.com"
    target = await lab.server("target", "tcp", host=lab.host("primary"))
    decoy = await lab.server("decoy", "udp", host=lab.host("tertiary"))
    port, dport = target.addresses["tcp"][1], decoy.addresses["udp"][1]
    zone = lab.soa(domain) + "\n".join([
        f'@ IN NAPTR 10 50 "" "SIP+D2T" "" {nxt}.',
        f'sip IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.{nxt}.',
        f"_sip._tcp.sip IN SRV 0 10 {port} host.{nxt}.",
        f"host.sip IN A {lab.host('primary')}",
        # naptr_build 0 would lead here if the empty-flag record were ignored:
        f"_sip._udp IN SRV 0 10 {dport} decoy.{domain}.",
        f"decoy IN A {lab.host('tertiary')}"]) + "\n"
    dns = await lab.dns(zone)
    await _start(lab, dns, _account(domain, 0, 3))
    await target.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "target" and first.transport == "tcp"
    _expect_order(_queries_before(lab, first),
                  [("NAPTR", domain), ("NAPTR", nxt), ("SRV", f"_sip._tcp.{nxt}"), ("A", f"host.{nxt}")],
                  "empty NAPTR flags")
    expect_no_request(lab.recorder, "REGISTER", "decoy", why="the empty-flag NAPTR record leads on")


# ---------------------------------------------------------------------------------------------- DNS-5

@pytest.mark.scenario("DNS-5", P_DNS5)
@pytest.mark.parametrize("transport_setting, transport", [(3, "udp"), (0, "udp"), (1, "tcp")],
                         ids=["dns-naptr", "udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_no_naptr_no_srv_a_record_port_5060(lab, transport_setting, transport):
    domain = "pbx.example.com"
    target = await _fake_on_5060(lab, "target", transport)
    host = target.addresses[transport][0]
    dns = await lab.dns(lab.soa(domain) + f"@ IN A {host}\n")
    await _start(lab, dns, _account(domain, 0, transport_setting))
    await target.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.local == (host, 5060) and first.transport == transport
    seen = _queries_before(lab, first)
    expected = ([("NAPTR", domain)] if transport_setting == 3 else []) + \
        [("SRV", f"_sip._{transport}.{domain}"), ("A", domain)]
    _expect_order(seen, expected, "no NAPTR, no SRV")


# ---------------------------------------------------------------------------------------------- DNS-6

async def _priority_lab(lab, *, high_listed_first: bool, domain: str = "pbx.example.com"):
    """low: priority 0 weight 1, two A records (low-1, low-2: 127.0.0.11, .12) on one port;
    high: priority 1 weight 100. ``high_listed_first``: the answer order must not matter."""
    a1, a2 = await lab.same_port(["low-1", "low-2"], "udp",
                                 {"low-1": {"host": lab.host("low-1")}, "low-2": {"host": lab.host("low-2")}})
    b = await lab.server("high", "udp", host=lab.host("secondary"))
    lport, hport = a1.addresses["udp"][1], b.addresses["udp"][1]
    srv = [f"_sip._udp IN SRV 0 1 {lport} low.{domain}.", f"_sip._udp IN SRV 1 100 {hport} high.{domain}."]
    zone = lab.soa(domain) + "\n".join((srv[::-1] if high_listed_first else srv) + [
        f"high IN A {lab.host('secondary')}",
        f"low IN A {lab.host('low-1')}",
        f"low IN A {lab.host('low-2')}"]) + "\n"
    return a1, a2, b, await lab.dns(zone)


@pytest.mark.scenario("DNS-6", P_DNS6)
@pytest_twisted.ensureDeferred
async def test_srv_priority_beats_weight_and_every_a_record_is_a_target(lab):
    domain = "pbx.example.com"
    a1, a2, b, dns = await _priority_lab(lab, high_listed_first=True, domain=domain)
    a1.script.silent()
    a2.script.silent()
    await _start(lab, dns, _account(domain, 0, 0))
    await b.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    runs = attempt_runs(lab.recorder, "REGISTER", ["low-1", "low-2", "high"])
    assert [n for n, _ in runs] == ["low-1", "low-2", "high"], (
        "expected REGISTER to low's first address, then its second, then the priority-1 target; saw "
        f"{[(n, len(rs)) for n, rs in runs]}")
    for name, rs in runs[:2]:
        assert len(rs) == 4, f"{name}: expected 1 + retry_counts 3 = 4 attempts; saw {len(rs)}"
        expect_times(rs, [0.0, 0.5, 1.5, 3.5], origin=rs[0].time, tolerance=lab.tolerance, what=f"{name} sends")
    await lab.dut.wait_registered(account=1, timeout=WAIT)


@pytest.mark.scenario("DNS-6", P_DNS6)
@pytest_twisted.ensureDeferred
async def test_second_a_record_of_a_target_before_next_srv_target(lab):
    domain = "pbx.example.com"
    a1, a2, _b, dns = await _priority_lab(lab, high_listed_first=False, domain=domain)
    a1.script.silent()
    await _start(lab, dns, _account(domain, 0, 0))
    await a2.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    runs = attempt_runs(lab.recorder, "REGISTER", ["low-1", "low-2", "high"])
    assert [n for n, _ in runs] == ["low-1", "low-2"], f"saw {[(n, len(rs)) for n, rs in runs]}"
    expect_no_request(lab.recorder, "REGISTER", "high", why="low's second address answered")


# ---------------------------------------------------------------------------------------------- DNS-7

async def _naptr_lab(lab, domain="pbx.example.com"):
    """NAPTR → _sip._tcp (TCP target t-naptr); naptr_build 0's _sip._udp → UDP target t-srv.

    A phone that follows the NAPTR answer registers at t-naptr over TCP; one that went on as if
    the NAPTR step were empty registers at t-srv over UDP.
    """
    via_naptr = await lab.server("t-naptr", "tcp", host=lab.host("primary"))
    via_srv = await lab.server("t-srv", "udp", host=lab.host("secondary"))
    zone = lab.soa(domain) + "\n".join([
        f'@ IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.{domain}.',
        f"_sip._tcp IN SRV 0 10 {via_naptr.addresses['tcp'][1]} n.{domain}.",
        f"n IN A {lab.host('primary')}",
        f"_sip._udp IN SRV 0 10 {via_srv.addresses['udp'][1]} s.{domain}.",
        f"s IN A {lab.host('secondary')}"]) + "\n"
    dns = await lab.dns(zone)
    return via_naptr, via_srv, dns


@pytest.mark.scenario("DNS-7", P_DNS7)
@pytest.mark.interp(I_FAULTS)
@pytest.mark.parametrize("fault", ["servfail", "refuse", "nxdomain", "drop", "truncate"])
@pytest_twisted.ensureDeferred
async def test_naptr_fault_goes_on_to_srv(lab, fault):
    domain = "pbx.example.com"
    via_naptr, via_srv, dns = await _naptr_lab(lab, domain)
    getattr(dns.faults, fault)(name=domain, qtype="NAPTR")
    t0 = await _start(lab, dns, _account(domain, 0, 3, naptr_build=0))
    await via_srv.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "t-srv", (
        f"NAPTR {fault}: expected the phone to go on to SRV _sip._udp (naptr_build 0) and register at t-srv; "
        f"the first REGISTER reached {first.server}")
    _expect_order(_queries_before(lab, first), [("NAPTR", domain), ("SRV", f"_sip._udp.{domain}")],
                  f"NAPTR {fault}")
    expect_no_request(lab.recorder, "REGISTER", "t-naptr", why=f"the NAPTR query got {fault}")
    if fault == "truncate":  # TC over UDP and TCP alike: the TCP retry is made, and fails too
        tcp = [r for r in lab.recorder.dns(name=domain, qtype="NAPTR", direction="in") if r.transport == "tcp"]
        assert tcp, "a truncated UDP answer must be retried over TCP before the step is given up"
    if fault == "drop":
        naptrs = [r for r in lab.recorder.dns(name=domain, qtype="NAPTR", direction="in")]
        # timed from the first NAPTR query: how soon a phone starts asking after it was told to start is
        # no rule of SPEC §2 (a vendor phone is started over HTTP, a softphone as a process)
        origin = naptrs[0].time if naptrs else t0
        expect_times(naptrs, [0.0, 2.0], origin=origin, tolerance=lab.tolerance, what="NAPTR tries (2 s, 2 tries)")
        expect_times([first], [4.0], origin=origin, tolerance=lab.tolerance, what="first REGISTER after the timeout")
    await lab.dut.wait_registered(account=1, timeout=WAIT)


@pytest.mark.scenario("DNS-7", P_DNS7 + " / RFC 1035 §4.2.1: truncated → retry over TCP")
@pytest_twisted.ensureDeferred
async def test_truncated_udp_answer_retried_over_tcp(lab):
    domain = "pbx.example.com"
    via_naptr, via_srv, dns = await _naptr_lab(lab, domain)
    dns.faults.tcp_only()  # every UDP answer truncated, TCP answered
    await _start(lab, dns, _account(domain, 0, 3, naptr_build=0))
    await via_naptr.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "t-naptr", (
        f"the NAPTR answer (over TCP) leads to t-naptr over TCP; the first REGISTER reached {first.server}")
    naptrs = [r.transport for r in lab.recorder.dns(name=domain, qtype="NAPTR", direction="in")]
    assert naptrs[:2] == ["udp", "tcp"], (
        f"expected the NAPTR query over UDP, then (answer truncated) over TCP; saw it over {naptrs}")
    await lab.dut.wait_registered(account=1, timeout=WAIT)


@pytest.mark.scenario("DNS-7", P_DNS7)
@pytest.mark.interp(I_FAULTS)
@pytest_twisted.ensureDeferred
async def test_srv_fault_goes_on_to_a_on_the_domain(lab):
    """SERVFAIL on the SRV step (transport UDP, port 0) → as if no SRV: A on the domain, port 5060."""
    domain = "pbx.example.com"
    decoy = await lab.server("decoy", "udp", host=lab.host("primary"))
    target = await _fake_on_5060(lab, "target", "udp")
    host = target.addresses["udp"][0]
    dns = await lab.dns(lab.soa(domain) + f"_sip._udp IN SRV 0 10 {decoy.addresses['udp'][1]} t.{domain}.\n"
                        f"t IN A {lab.host('primary')}\n@ IN A {host}\n")
    dns.faults.servfail(name=f"_sip._udp.{domain}", qtype="SRV")
    await _start(lab, dns, _account(domain, 0, 0))
    await target.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    _expect_order(_queries(lab), [("SRV", f"_sip._udp.{domain}"), ("A", domain)], "SRV SERVFAIL")
    expect_no_request(lab.recorder, "REGISTER", "decoy", why="the SRV query got SERVFAIL")
    await lab.dut.wait_registered(account=1, timeout=WAIT)


@pytest.mark.scenario("DNS-7", P_DNS7)
@pytest.mark.interp(I_FAULTS)
@pytest_twisted.ensureDeferred
async def test_a_servfail_skips_that_target(lab):
    domain = "pbx.example.com"
    first_t = await lab.server("first", "udp", host=lab.host("primary"))
    second_t = await lab.server("second", "udp", host=lab.host("secondary"))
    zone = lab.soa(domain) + "\n".join([
        f"_sip._udp IN SRV 0 10 {first_t.addresses['udp'][1]} one.{domain}.",
        f"_sip._udp IN SRV 1 10 {second_t.addresses['udp'][1]} two.{domain}.",
        f"one IN A {lab.host('primary')}",
        f"two IN A {lab.host('secondary')}"]) + "\n"
    dns = await lab.dns(zone)
    dns.faults.servfail(name=f"one.{domain}", qtype="A")
    await _start(lab, dns, _account(domain, 0, 0))
    await second_t.wait_for("REGISTER", direction="out", status=200, timeout=WAIT)
    first = _first_register(lab)
    assert first.server == "second", f"A of one.{domain} got SERVFAIL: expected that target skipped; saw {first.server}"
    assert ("A", f"one.{domain}") in _queries(lab)
    expect_no_request(lab.recorder, "REGISTER", "first", why="its A query failed")
    await lab.dut.wait_registered(account=1, timeout=WAIT)
