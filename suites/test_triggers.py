"""TRIG: what makes the phone give a target up, and what does not (SPEC §3).

Revised 2026-12-01: a received 408 is an answer (RFC 3263 §4.3 names only the transaction
timeout, a transport error and 503), so it joins the non-triggers; over TCP/TLS the phone
sends a request once (RFC 3261 §17.1) and gives the target up after the UDP window, and a
phone that re-sends over a reliable transport is accepted too: 1 or 1 + N sends, the give-up
time is what is judged.
"""

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, expect_attempts, expect_times, first_attempt, spec_send_offsets
from sipharness.harness.lab import Domain

RETRY_COUNTS = 3  # the default (SPEC §1)


def _sends_ok(transport: str, seen: int, udp_sends: int) -> bool:
    """SPEC §3: UDP sends 1 + N times; TCP/TLS once (RFC 3261 §17.1), or 1 + N (accepted too)."""
    if transport == "udp":
        return seen == udp_sends
    return seen in (1, 1 + RETRY_COUNTS) if udp_sends else seen == udp_sends


@pytest.mark.scenario("TRIG", "SPEC §3: silence, 503, ICMP port unreachable and TCP refused give the target up")
@pytest.mark.parametrize("trigger,transport,give_up,sends", [
    ("silence", "udp", 7.5, 4),
    ("silence", "tcp", 7.5, 4),  # over TCP/TLS: 1 send (or 4), given up at the same 7.5 s
    ("silence", "tls", 7.5, 4),
    ("503", "udp", 0.0, 1),
    ("icmp", "udp", 0.0, 0),
    ("refused", "tcp", 0.0, 0),
])
@pytest_twisted.ensureDeferred
async def test_register_trigger_moves_to_secondary(lab, trigger, transport, give_up, sends):
    topo = await lab.up(Domain(("primary", "secondary")), transport=transport, start=False)
    primary = topo["primary"]
    if trigger == "silence":
        primary.script.silent()
    elif trigger == "503":
        primary.script.respond("REGISTER", 503, headers={"Retry-After": "30"})
    else:
        await primary.down(mode="refused")  # UDP: ICMP port unreachable; TCP: connection refused
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=60)
    # The phone's own t = 0 is its first DNS query (a real phone boots and provisions first).
    queries = lab.recorder.dns(direction="in")
    assert queries, "the phone made no DNS query for its domain server"
    t0 = queries[0].time
    seen = len(attempts(lab.recorder, "REGISTER", "primary"))
    assert _sends_ok(transport, seen, sends), \
        f"{seen} REGISTER send(s) to the primary over {transport} (SPEC §3: {sends} over UDP; 1 or {sends} over TCP/TLS)"
    # SPEC §3: the window runs from the first send to the target (a TLS handshake comes before it);
    # with nothing sent (ICMP, refused) the phone must move on at once.
    origin = attempts(lab.recorder, "REGISTER", "primary")[0].time if seen else t0
    first = first_attempt(lab.recorder, "REGISTER", "secondary")
    expect_times([first], [give_up], origin=origin, tolerance=lab.tolerance,
                 what=f"the first REGISTER to the secondary after {trigger} over {transport}")


@pytest.mark.scenario("TRIG", "SPEC §3: over TCP/TLS an INVITE is sent once (or 1 + N) and given up at the UDP window")
@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_invite_over_a_reliable_transport_gives_up_at_the_udp_window(lab, transport):
    topo = await lab.up(Domain(("primary", "secondary")), transport=transport)
    await lab.dut.wait_registered(account=1, timeout=30)
    topo["primary"].script.silent("INVITE")
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"), timeout=60)
    sends = attempts(lab.recorder, "INVITE", "primary", since=mark)
    assert _sends_ok(transport, len(sends), 1 + RETRY_COUNTS), \
        f"{len(sends)} INVITE send(s) to the primary over {transport} (SPEC §3: 1, or 1 + {RETRY_COUNTS})"
    _, give_up = spec_send_offsets("INVITE", RETRY_COUNTS)
    expect_times([first_attempt(lab.recorder, "INVITE", "secondary", since=mark)], [give_up], origin=sends[0].time,
                 tolerance=lab.tolerance, what=f"the INVITE to the secondary (primary silent over {transport})")
    await lab.hang_up()


@pytest.mark.scenario("TRIG", "SPEC §3: 403, 404, 408, 486 are answers, not failures: no failover")
@pytest.mark.parametrize("status", [403, 404, 408, 486])
@pytest_twisted.ensureDeferred
async def test_final_answers_do_not_fail_over(lab, status):
    topo = await lab.up(Domain(("primary", "secondary")))
    await lab.dut.wait_registered(account=1, timeout=30)
    topo["primary"].script.respond("INVITE", status)
    mark, events = len(lab.recorder), len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    await lab.dut.wait_for("call_state", 60, state="failed", since=events)
    await lab.at(lab.now() + 40)
    assert len(attempts(lab.recorder, "INVITE", "primary", since=mark)) == 1
    assert not attempts(lab.recorder, "INVITE", "secondary", since=mark), f"a {status} made the phone fail over"


@pytest.mark.scenario("TRIG", "SPEC §3 revised: a 408 to REGISTER is an answer: no REGISTER to the secondary")
@pytest_twisted.ensureDeferred
async def test_a_408_to_register_does_not_fail_over(lab):
    topo = await lab.up(Domain(("primary", "secondary")), start=False)
    topo["primary"].script.respond("REGISTER", 408)
    await lab.dut.start()
    await lab.dut.wait_for("register_failed", 60, account=1)
    await lab.at(lab.now() + 10)  # well past the 7.5 s a failover would have taken
    assert attempts(lab.recorder, "REGISTER", "primary")
    assert not attempts(lab.recorder, "REGISTER", "secondary"), "a 408 made the phone fail over"


@pytest.mark.scenario("TRIG", "SPEC §3: the last target gets the full RFC 3261 timeout (32 s), not retry_counts")
@pytest_twisted.ensureDeferred
async def test_last_target_gets_full_transaction_timeout(lab):
    topo = await lab.up(Domain(("primary", "secondary")), start=False)
    topo["primary"].script.silent()
    topo["secondary"].script.silent()
    await lab.dut.start()
    events = len(lab.dut.events)
    await lab.dut.wait_for("register_failed", 120, account=1, since=events)
    offsets, _ = spec_send_offsets("REGISTER", None)
    expect_attempts(lab.recorder, "REGISTER", "primary", 4, then="secondary")
    last = attempts(lab.recorder, "REGISTER", "secondary")
    expect_times(last, offsets, origin=last[0].time, tolerance=lab.tolerance, what="REGISTERs to the last target")
