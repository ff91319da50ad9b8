"""INV-FB: INVITE fallback with concurrent registration (SPEC §6, guide "INVITE Fallback")."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import (attempts, expect_attempts, expect_times, first_attempt, spec_send_offsets,
                                           wait_registration)
from sipharness.harness.lab import Address

PASSAGE = ("Phone A sends an INVITE request to the working server. Phone A retries INVITE requests to the working "
           "server (three times by default). After no response from the working server, the phone sends an INVITE "
           "request to the fallback server. The fallback server responds with 200 OK to the INVITE request. ... When "
           "the working server recovers, the phone has ability to fail back the INVITE request to the working server.")

CONCURRENT = {"fallback.redundancy_type": 0}


@pytest.mark.scenario("INV-FB", "concurrent registration: registers to both servers at the same time")
@pytest_twisted.ensureDeferred
async def test_concurrent_registers_with_both_servers(lab):
    await lab.up(Address("primary"), Address("fallback"), account=CONCURRENT)
    await wait_registration(lab.recorder, "primary", 30)  # which server: the fakes' records say (SPEC §10)
    await wait_registration(lab.recorder, "fallback", 30)
    reg1 = first_attempt(lab.recorder, "REGISTER", "primary")
    reg2 = first_attempt(lab.recorder, "REGISTER", "fallback")
    expect_times([reg2], [reg1.time], tolerance=lab.tolerance, what="the REGISTER to the fallback server (concurrent)")


@pytest.mark.scenario("INV-FB", PASSAGE)
@pytest.mark.parametrize("retry_counts", [0, 3, 6])
@pytest_twisted.ensureDeferred
async def test_invite_falls_back_then_returns_to_working_server(lab, retry_counts):
    topo = await lab.up(Address("primary"), Address("fallback"),
                        account={**CONCURRENT, "sip_server.1.retry_counts": retry_counts,
                                 "sip_server.1.expires": lab.value("expires")})
    await wait_registration(lab.recorder, "primary", 30)
    await wait_registration(lab.recorder, "fallback", 30)
    working = topo["primary"]
    rule = working.script.silent("INVITE")
    mark = len(lab.recorder)
    est = await lab.call(topo.uri("2000"))
    offsets, give_up = spec_send_offsets("INVITE", retry_counts)
    sends = expect_attempts(lab.recorder, "INVITE", "primary", len(offsets), then="fallback", since=mark)
    expect_times(sends, offsets, origin=sends[0].time, tolerance=lab.tolerance, what="INVITEs to the working server")
    expect_times(attempts(lab.recorder, "INVITE", "fallback", since=mark)[:1], [give_up], origin=sends[0].time,
                 tolerance=lab.tolerance, what="the INVITE to the fallback server")
    assert est.server == 2 or est.server is None
    await lab.hang_up()
    # The working server recovers; once it answers a REGISTER again, the next INVITE goes to it.
    working.script.remove(rule)
    back = await wait_registration(lab.recorder, "primary", lab.value("expires") + 60, since=len(lab.recorder))
    await lab.at(back.time + 1.0)  # the user dials a second after server 1 answered (the phone has read it)
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"))
    assert attempts(lab.recorder, "INVITE", "primary", since=mark), "the next call did not go to the working server"
    assert not attempts(lab.recorder, "INVITE", "fallback", since=mark), "the next call still went to the fallback"
    await lab.hang_up()


@pytest.mark.scenario("INV-FB", "SPEC §6 concurrent: new calls go to server 1 while it is registered")
@pytest_twisted.ensureDeferred
async def test_working_server_used_while_registered(lab):
    topo = await lab.up(Address("primary"), Address("fallback"), account=CONCURRENT)
    await wait_registration(lab.recorder, "primary", 30)
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"))
    assert attempts(lab.recorder, "INVITE", "primary", since=mark)
    assert not attempts(lab.recorder, "INVITE", "fallback", since=mark)
    await lab.hang_up()
