"""FB-PROBE: concurrent registration, after an INVITE fell back (SPEC §6, revised 2026-12-01).

SPEC §6 concurrent [seed: "Phone A sends REGISTER requests to the working server to detect
whether the server is available. When the working server recovers, the phone has ability to
fail back the INVITE request to the working server"; the interval is the successive mode's,
interp]: once an INVITE got no response from server 1 and went to server 2, the phone checks
server 1 with a REGISTER every ``fallback.timeout`` seconds until it answers 2xx; then the
next new INVITE goes to server 1. Before this revision only the normal refresh checked, up to
54 minutes later with the guide's 3600 s.

Both servers are registered with the guide's 3600 s whatever the clock, so no ordinary refresh
falls inside the test and every REGISTER to server 1 seen is a probe.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, expect_gaps, first_attempt, wait_registration
from sipharness.harness.lab import Address

PASSAGE = ("Phone A sends REGISTER requests to the working server to detect whether the server is available. When "
           "the working server recovers, the phone has ability to fail back the INVITE request to the working server.")

ROUND = 4  # a silent server 1 (not the last server: server 2 follows) gets 1 + 3 REGISTERs per probe (SPEC §3)


@pytest.mark.scenario("FB-PROBE", PASSAGE)
@pytest_twisted.ensureDeferred
async def test_after_an_invite_fell_back_server1_is_probed_every_fallback_timeout_until_it_answers(lab):
    timeout = lab.value("fallback.timeout")
    topo = await lab.up(Address("primary"), Address("fallback"),
                        account={"fallback.redundancy_type": 0, "fallback.timeout": timeout,
                                 "sip_server.1.expires": 3600, "sip_server.2.expires": 3600})
    await wait_registration(lab.recorder, "primary", 30)  # server 1, then server 2: the fakes' records say which
    await wait_registration(lab.recorder, "fallback", 30)
    working = topo["primary"]
    rule = working.script.silent()  # server 1 goes down altogether
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"))
    fell_back = first_attempt(lab.recorder, "INVITE", "fallback", since=mark).time
    await lab.hang_up()

    # Three probe rounds while server 1 is still silent: the first REGISTER of each.
    starts = []
    for k in (1, 2, 3):
        rec = await working.wait_for("REGISTER", count=ROUND * (k - 1) + 1, since=mark, timeout=2 * timeout + 60)
        starts.append(rec.time)
    assert starts[0] - fell_back == pytest.approx(timeout, abs=max(8.0, lab.tolerance.absolute)), (
        f"SPEC §6: the first probe of server 1 came {starts[0] - fell_back:.3f} s after the INVITE fell back "
        f"(t = {fell_back:.3f} s); fallback.timeout is {timeout} s")
    expect_gaps(starts, timeout, tolerance=lab.tolerance, what="REGISTER probes of server 1")

    # Server 1 recovers: the next probe gets its 2xx, the probes stop, the next INVITE goes to server 1.
    await working.wait_for("REGISTER", count=3 * ROUND, since=mark, timeout=60)  # the third round ended unanswered
    working.script.remove(rule)
    back = await wait_registration(lab.recorder, "primary", timeout + 60, since=len(lab.recorder))
    expect_gaps([starts[-1], back.time], timeout, tolerance=lab.tolerance,
                what="the last silent probe and the answered one")
    after = len(lab.recorder)
    await lab.at(back.time + 2.5 * timeout)
    assert not attempts(lab.recorder, "REGISTER", "primary", since=after), \
        "SPEC §6: the phone kept probing server 1 after it answered 2xx"
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"), timeout=60)
    assert attempts(lab.recorder, "INVITE", "primary", since=mark), "the next call did not go to server 1"
    assert not attempts(lab.recorder, "INVITE", "fallback", since=mark), "the next call still went to server 2"
    await lab.hang_up()


@pytest.mark.scenario("FB-PROBE", "SPEC §6 concurrent: no probe while no INVITE has fallen back")
@pytest_twisted.ensureDeferred
async def test_no_probe_without_a_fallback(lab):
    timeout = lab.value("fallback.timeout")
    await lab.up(Address("primary"), Address("fallback"),
                 account={"fallback.redundancy_type": 0, "fallback.timeout": timeout,
                          "sip_server.1.expires": 3600, "sip_server.2.expires": 3600})
    await wait_registration(lab.recorder, "primary", 30)
    mark = len(lab.recorder)
    await lab.at(lab.now() + 3 * timeout)
    assert not attempts(lab.recorder, "REGISTER", "primary", since=mark), \
        "the phone sent REGISTERs to server 1 though no INVITE fell back and its registration is fresh"
