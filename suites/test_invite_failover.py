"""INV-FO: INVITE failover with failback newRequests (SPEC §5, guide "INVITE Failover")."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, expect_attempts, expect_times, first_attempt, spec_send_offsets
from sipharness.harness.lab import Domain

PASSAGE = ("Phone A sends an INVITE request to the primary server. Phone A retries INVITE requests to the primary "
           "server (three times by default). After no response from the primary server, the phone sends an INVITE "
           "request to the secondary server. The secondary server responds with 200 OK to the INVITE request. When "
           "phone A places a call to Phone B again, the phone sends an INVITE request to the primary server first.")


async def call_and_hangup(lab, uri):
    est = await lab.call(uri)
    await lab.hang_up()
    return est


@pytest.mark.scenario("INV-FO", PASSAGE)
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_invite_fails_over_and_next_call_starts_at_primary(lab, transport):
    topo = await lab.up(Domain(("primary", "secondary")), transport=transport)
    await lab.dut.wait_registered(account=1, timeout=30)
    topo["primary"].script.silent("INVITE")
    mark = len(lab.recorder)
    await call_and_hangup(lab, topo.uri("2000"))
    offsets, give_up = spec_send_offsets("INVITE", 3)
    if transport != "udp":
        offsets = offsets[:1]  # reliable transports do not retransmit; the window is the same (SPEC §3)
    sends = expect_attempts(lab.recorder, "INVITE", "primary", len(offsets), then="secondary", since=mark)
    expect_times(sends, offsets, origin=sends[0].time, tolerance=lab.tolerance, what="INVITEs to the primary")
    expect_times(attempts(lab.recorder, "INVITE", "secondary", since=mark)[:1], [give_up], origin=sends[0].time,
                 tolerance=lab.tolerance, what="the INVITE to the secondary")
    # newRequests: the next call starts at the primary again (which now answers).
    topo["primary"].script.clear()
    mark = len(lab.recorder)
    await call_and_hangup(lab, topo.uri("2000"))
    first = first_attempt(lab.recorder, "INVITE", since=mark)
    assert first.server == "primary", f"the next call's first INVITE went to {first.server} at t = {first.time:.3f} s"


@pytest.mark.scenario("INV-FO", "SPEC §5 newRequests: every new INVITE starts at the primary, even while it is down")
@pytest_twisted.ensureDeferred
async def test_each_new_call_tries_primary_first_while_it_is_down(lab):
    topo = await lab.up(Domain(("primary", "secondary")))
    await lab.dut.wait_registered(account=1, timeout=30)
    topo["primary"].script.silent("INVITE")
    for _ in range(2):
        mark = len(lab.recorder)
        await call_and_hangup(lab, topo.uri("2000"))
        expect_attempts(lab.recorder, "INVITE", "primary", 4, then="secondary", since=mark)


@pytest.mark.scenario("INV-FO", "SPEC §3: a 100 Trying ends INVITE failover; the last target gets the full 32 s")
@pytest_twisted.ensureDeferred
async def test_provisional_response_stops_failover(lab):
    topo = await lab.up(Domain(("primary", "secondary")))
    await lab.dut.wait_registered(account=1, timeout=30)
    topo["primary"].script.respond("INVITE", 100)
    mark = len(lab.recorder)
    lab.dut.call(topo.uri("2000"))
    await topo["primary"].wait_for("INVITE", direction="out", status=100, since=mark, timeout=30)
    await lab.at(lab.now() + 40)
    assert len(attempts(lab.recorder, "INVITE", "primary", since=mark)) == 1, "INVITE retransmitted after 100 Trying"
    assert not attempts(lab.recorder, "INVITE", "secondary", since=mark), "failover after the primary said 100 Trying"
