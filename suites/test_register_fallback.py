"""REG-FB: REGISTER fallback with successive registration (SPEC §6, guide "REGISTER Fallback")."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import (attempts, expect_attempts, expect_gaps, expect_times, first_attempt,
                                           spec_send_offsets, wait_registration)
from sipharness.harness.lab import Address

PASSAGE = ("1. The phone sends a REGISTER request to the working server. 2. The phone retries REGISTER requests to "
           "the working server (three times by default). 3. After no response from the working server, the phone "
           "sends a REGISTER request to the fallback server. 4. The fallback server responds with 200 OK. The phone "
           "sends REGISTER requests to the working server to detect whether the server is available at intervals "
           "defined by the account.1.fallback.timeout parameter ... When the working server recovers, the phone has "
           "ability to fail back next REGISTER request to the working server.")

SUCCESSIVE = {"fallback.redundancy_type": 1}


@pytest.mark.scenario("REG-FB", PASSAGE)
@pytest.mark.parametrize("retry_counts", [0, 3, 20])
@pytest_twisted.ensureDeferred
async def test_register_falls_back_after_retries(lab, retry_counts):
    """1 + N REGISTERs to the working server in the RFC 3261 schedule, then the fallback server's 200."""
    topo = await lab.up(Address("primary"), Address("fallback"), start=False,
                        account={**SUCCESSIVE, "sip_server.1.retry_counts": retry_counts})
    topo["primary"].script.silent()
    await lab.dut.start()
    ok = await topo["fallback"].wait_for("REGISTER", direction="out", status=200, timeout=60)
    offsets, give_up = spec_send_offsets("REGISTER", retry_counts)
    sends = expect_attempts(lab.recorder, "REGISTER", "primary", len(offsets), then="fallback")
    expect_times(sends, offsets, origin=sends[0].time, tolerance=lab.tolerance, what="REGISTERs to the working server")
    first_fb = first_attempt(lab.recorder, "REGISTER", "fallback")
    expect_times([first_fb], [give_up], origin=sends[0].time, tolerance=lab.tolerance,
                 what="the first REGISTER to the fallback server")
    assert ok.status == 200  # the fallback server's 2xx: the fakes' records say which server (SPEC §10)


@pytest.mark.scenario("REG-FB", PASSAGE)
@pytest.mark.parametrize("fallback_timeout", [120, 10])
@pytest_twisted.ensureDeferred
async def test_probes_every_fallback_timeout_then_fails_back(lab, fallback_timeout):
    """Probing REGISTERs to the working server every fallback.timeout; on its 200 the phone uses it again."""
    topo = await lab.up(Address("primary"), Address("fallback"), start=False,
                        account={**SUCCESSIVE, "fallback.timeout": fallback_timeout})
    working = topo["primary"]
    rule = working.script.silent()
    await lab.dut.start()
    registered_fb = (await wait_registration(lab.recorder, "fallback", 60)).time
    # Three probe rounds while the working server is still down.
    first_of_round = []
    for k in (1, 2, 3):
        probe_index = 4 * k + 1  # each silent round costs 1 + 3 attempts
        rec = await working.wait_for("REGISTER", count=probe_index, timeout=fallback_timeout * 2 + 60)
        first_of_round.append(rec.time)
    expect_gaps(first_of_round, fallback_timeout, tolerance=lab.tolerance, what="probe rounds to the working server")
    assert first_of_round[0] - registered_fb == pytest.approx(fallback_timeout, abs=max(8.0, lab.tolerance.absolute)), \
        f"first probe at t = {first_of_round[0]:.3f} s, {first_of_round[0] - registered_fb:.3f} s after falling back"
    # The working server recovers: the next probe gets a 200 and service moves back.
    await working.wait_for("REGISTER", count=16, timeout=60)  # the third probe round has ended unanswered
    working.script.remove(rule)
    back = await wait_registration(lab.recorder, "primary", fallback_timeout + 60, since=len(lab.recorder))
    expect_gaps([first_of_round[-1], back.time], fallback_timeout, tolerance=lab.tolerance,
                what="the last silent probe and the answered one")
    await lab.at(back.time + 1.0)  # the user dials a second after the working server answered
    call_mark = len(lab.recorder)
    await lab.call(topo.uri("2000"), timeout=60)
    assert attempts(lab.recorder, "INVITE", "primary", since=call_mark), "the new call did not go to the working server"
    assert not attempts(lab.recorder, "INVITE", "fallback", since=call_mark), "the new call went to the fallback server"


@pytest.mark.scenario("REG-FB", "SPEC §6 successive: on fail-back stop refreshing server 2 and un-REGISTER from it")
@pytest.mark.interp("SPEC §6: un-REGISTER (Expires: 0) from the fallback server on fail-back")
@pytest_twisted.ensureDeferred
async def test_failback_unregisters_from_fallback_server(lab):
    topo = await lab.up(Address("primary"), Address("fallback"), start=False,
                        account={**SUCCESSIVE, "fallback.timeout": lab.value("fallback.timeout"),
                                 "sip_server.2.expires": lab.value("expires")})
    working = topo["primary"]
    rule = working.script.silent()
    await lab.dut.start()
    await wait_registration(lab.recorder, "fallback", 60)
    working.script.remove(rule)
    mark = len(lab.recorder)
    await working.wait_for("REGISTER", direction="out", status=200, since=mark,
                           timeout=lab.value("fallback.timeout") + 60)

    def unregister(r):
        # RFC 3261 §10.2.2: Expires: 0, or expires=0 on every Contact
        if not (r.method == "REGISTER" and r.direction == "in" and r.server == "fallback" and r.message is not None):
            return False
        contacts = [c.params.get("expires") for c in r.message.contacts]
        return r.message.expires == 0 or (bool(contacts) and all(e == "0" for e in contacts))
    await lab.recorder.wait_for(unregister, 60, since=mark, what="REGISTER with Expires: 0 to the fallback server")
    # And no refresh of the fallback registration afterwards, though its expiry passes.
    later = len(lab.recorder)
    await lab.at(lab.now() + lab.value("expires") + 10)
    assert not [r for r in attempts(lab.recorder, "REGISTER", "fallback", since=later)], \
        "the phone kept refreshing the fallback server after failing back"
