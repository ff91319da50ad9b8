"""FBK-1/2/3 with a call up: failback modes 1-3 never move a call that is up (SPEC §5).

SPEC §5 [vendor extra]: "Modes 1-3 apply only to domain addresses and switch only when no call
is up", and "In-dialog requests (ACK, re-INVITE, BYE) follow the dialog's route, never a
failover [RFC]". The phone registers on the secondary (its primary silent at start), a call is
established there, and the moment the mode would switch back to the primary (the A record's
TTL, the registration refresh, failback_timeout) passes while the call is up. Then:

- the call stays where it is: its BYE goes to the secondary;
- new requests do not switch either while the call is up: a second call, and (mode 2) the
  registration refresh, go to the secondary;
- once no call is up, the switch happens: the next new request starts at the primary.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.harness.assertions import attempts, first_attempt, wait_registration
from sipharness.harness.lab import Domain

RULE = ("SPEC §5 [vendor extra]: modes 1-3 switch only when no call is up; in-dialog requests follow the dialog's "
        "route, never a failover")


async def _registered_on_the_secondary(lab, mode: int, extra: dict):
    topo = await lab.up(Domain(("primary", "secondary"), a_ttl=lab.value("a_ttl")), start=False,
                        account={"sip_server.1.failback_mode": mode, **extra})
    rule = topo["primary"].script.silent("REGISTER")
    await lab.dut.start()
    reg = await lab.dut.wait_registered(account=1, timeout=60)
    topo["primary"].script.remove(rule)
    assert first_attempt(lab.recorder, "REGISTER", "secondary"), "the phone did not fail over"
    return topo, reg


async def _establish(lab, topo):
    mark = len(lab.recorder)
    est = await lab.call(topo.uri("2000"))
    return est, first_attempt(lab.recorder, "INVITE", since=mark).server


async def _hang_up(lab, call_id: str) -> str:
    """End the call ``call_id`` (the latest call first, as a DUT's hang-up key does); where its BYE went."""
    mark = len(lab.recorder)
    await lab.hang_up(call_id=call_id)
    byes = attempts(lab.recorder, "BYE", since=mark)
    assert byes, f"no BYE reached a server when call {call_id} was hung up"
    return byes[0].server


async def _call_up_across_the_switch(lab, topo, switch_at: float, *, check_refresh: bool = False):
    """Call A on the secondary, the switch time passes while it is up, call B during it;
    both hung up; returns where the next call's first INVITE went."""
    call_a, where = await _establish(lab, topo)
    assert where == "secondary", f"the first call went to the {where} before the switch time"
    mark = len(lab.recorder)
    await lab.at(switch_at + 10)
    if check_refresh:
        refreshes = attempts(lab.recorder, "REGISTER", since=mark)
        assert refreshes, "no registration refresh happened while the call was up"
        assert refreshes[0].server == "secondary", \
            f"{RULE}: the registration refresh went to the {refreshes[0].server} while a call was up"
    call_b, where_b = await _establish(lab, topo)
    assert where_b == "secondary", f"{RULE}: a new call placed while a call was up went to the {where_b}"
    assert await _hang_up(lab, call_b.call_id) == "secondary"
    assert await _hang_up(lab, call_a.call_id) == "secondary", f"{RULE}: the call that was up moved"
    _, after = await _establish(lab, topo)
    await lab.hang_up()
    return after


@pytest.mark.scenario("FBK-1", RULE)
@pytest_twisted.ensureDeferred
async def test_dnsttl_never_moves_a_call_that_is_up(lab):
    topo, reg = await _registered_on_the_secondary(lab, 1, {})
    first_use = first_attempt(lab.recorder, "REGISTER", "secondary").time
    answers = [r.time for r in lab.recorder.dns(direction="out") if r.time <= first_use]
    ttl_runs_out = (answers[-1] if answers else first_use) + lab.value("a_ttl")
    assert await _call_up_across_the_switch(lab, topo, ttl_runs_out) == "primary", \
        "DNSTTL: once no call was up, the next call did not start at the primary"


@pytest.mark.scenario("FBK-2", RULE)
@pytest_twisted.ensureDeferred
async def test_registration_mode_never_moves_a_call_that_is_up(lab):
    expires = lab.value("expires")
    topo, reg = await _registered_on_the_secondary(lab, 2, {"sip_server.1.expires": expires})
    refresh_at = reg.time + 0.9 * expires  # SPEC §4 [interp]: refresh at 90 % of the granted expiry
    await _call_up_across_the_switch(lab, topo, refresh_at, check_refresh=True)
    mark = len(lab.recorder)
    await wait_registration(lab.recorder, ("primary", "secondary"), expires + 60, since=mark)  # a refresh
    refresh = first_attempt(lab.recorder, "REGISTER", since=mark)
    assert refresh.server == "primary", \
        f"registration mode: the first refresh with no call up went to the {refresh.server}, not the primary"


@pytest.mark.scenario("FBK-3", RULE)
@pytest_twisted.ensureDeferred
async def test_duration_never_moves_a_call_that_is_up(lab):
    timeout = lab.value("failback_timeout")
    topo, reg = await _registered_on_the_secondary(lab, 3, {"sip_server.1.failback_timeout": timeout})
    assert await _call_up_across_the_switch(lab, topo, reg.time + timeout) == "primary", \
        "duration: once no call was up after failback_timeout, the next call did not start at the primary"
