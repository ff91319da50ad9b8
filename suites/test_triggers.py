"""TRIG: what makes the phone give a target up, and what does not (SPEC §3)."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, expect_attempts, expect_times, first_attempt, spec_send_offsets
from sipharness.harness.lab import Domain


@pytest.mark.scenario("TRIG", "SPEC §3: silence, 503, 408, ICMP port unreachable and TCP refused give the target up")
@pytest.mark.parametrize("trigger,transport,give_up,sends", [
    ("silence", "udp", 7.5, 4),
    ("silence", "tcp", 7.5, 1),
    ("503", "udp", 0.0, 1),
    ("408", "udp", 0.0, 1),
    ("icmp", "udp", 0.0, 0),
    ("refused", "tcp", 0.0, 0),
])
@pytest_twisted.ensureDeferred
async def test_register_trigger_moves_to_secondary(lab, trigger, transport, give_up, sends):
    topo = await lab.up(Domain(("primary", "secondary")), transport=transport, start=False)
    primary = topo["primary"]
    if trigger == "silence":
        primary.script.silent()
    elif trigger in ("503", "408"):
        primary.script.respond("REGISTER", int(trigger), headers={"Retry-After": "30"} if trigger == "503" else None)
    else:
        await primary.down(mode="refused")  # UDP: ICMP port unreachable; TCP: connection refused
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=60)
    # The phone's own t = 0 is its first DNS query (a real phone boots and provisions first).
    queries = lab.recorder.dns(direction="in")
    assert queries, "the phone made no DNS query for its domain server"
    t0 = queries[0].time
    assert len(attempts(lab.recorder, "REGISTER", "primary")) == sends
    first = first_attempt(lab.recorder, "REGISTER", "secondary")
    expect_times([first], [give_up], origin=t0, tolerance=lab.tolerance,
                 what=f"the first REGISTER to the secondary after {trigger}")


@pytest.mark.scenario("TRIG", "SPEC §3: 403, 404, 486 are answers, not failures: no failover")
@pytest.mark.parametrize("status", [403, 404, 486])
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
