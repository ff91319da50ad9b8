"""FBK-1/2/3: when new requests go back to the primary after a failover (SPEC §5 failback modes)."""

import pytest
import pytest_twisted

from sipharness.harness.assertions import first_attempt, wait_registration
from sipharness.harness.lab import Domain

MODES = ("0-newRequests: all requests are sent to the primary server first, regardless of the last server that was "
         "used. 1-DNSTTL: the IP phone will retry to send requests to the primary server after the timeout equal to "
         "the DNSTTL ... 2-registration: ... retry to send REGISTER requests to the primary server when registration "
         "renewal. 3-duration: ... after the timeout defined by the account.x.sip_server.y.failback_timeout parameter.")


async def _fail_over_registration(lab, mode, extra=None):
    """Register while the primary is silent (→ secondary at 7.5 s), then let the primary recover."""
    topo = await lab.up(Domain(("primary", "secondary"), a_ttl=lab.value("a_ttl")), start=False,
                        account={"sip_server.1.failback_mode": mode, **(extra or {})})
    rule = topo["primary"].script.silent("REGISTER")
    await lab.dut.start()
    reg = await lab.dut.wait_registered(account=1, timeout=60)
    topo["primary"].script.remove(rule)
    return topo, reg


async def _first_invite_of_call_at(lab, topo, t):
    """Place a call at phone time ``t``; the server its first INVITE went to."""
    await lab.at(t)
    mark = len(lab.recorder)
    await lab.call(topo.uri("2000"))
    first = first_attempt(lab.recorder, "INVITE", since=mark)
    await lab.hang_up()
    return first.server


@pytest.mark.scenario("FBK-1", MODES)
@pytest_twisted.ensureDeferred
async def test_dnsttl_stays_until_a_record_ttl_runs_out(lab):
    topo, reg = await _fail_over_registration(lab, 1)
    ttl = lab.value("a_ttl")
    # The TTL runs from the answer that gave the secondary's address (SPEC §5 DNSTTL): the last DNS answer
    # before the phone first used it (an A answer, or an SRV answer's glue for a phone that reads it).
    first_use = first_attempt(lab.recorder, "REGISTER", "secondary").time
    answers = [r.time for r in lab.recorder.dns(direction="out") if r.time <= first_use]
    answered = answers[-1] if answers else first_use
    assert await _first_invite_of_call_at(lab, topo, answered + ttl - 20) == "secondary", \
        "DNSTTL: a call before the A record's TTL ran out left the secondary"
    assert await _first_invite_of_call_at(lab, topo, answered + ttl + 10) == "primary", \
        f"DNSTTL: a call after the A record's TTL ({ttl} s) ran out did not start at the primary"


@pytest.mark.scenario("FBK-2", MODES)
@pytest_twisted.ensureDeferred
async def test_registration_mode_returns_at_next_refresh(lab):
    topo, reg = await _fail_over_registration(lab, 2, {"sip_server.1.expires": lab.value("expires")})
    assert await _first_invite_of_call_at(lab, topo, reg.time + lab.value("expires") * 0.5) == "secondary", \
        "registration mode: a call before the next refresh left the secondary"
    mark = len(lab.recorder)
    # the refresh, from the fakes' records: whether a refresh fires a phone's "registered" is not documented
    refreshed = await wait_registration(lab.recorder, ("primary", "secondary"), lab.value("expires") + 60, since=mark)
    refresh = first_attempt(lab.recorder, "REGISTER", since=mark)
    assert refresh.server == "primary", f"the registration refresh at t = {refresh.time:.3f} s went to {refresh.server}"
    assert await _first_invite_of_call_at(lab, topo, refreshed.time + 10) == "primary"


@pytest.mark.scenario("FBK-3", MODES)
@pytest.mark.parametrize("failback_timeout", [120, 60])  # the seed's value and the smallest legal one
@pytest_twisted.ensureDeferred
async def test_duration_returns_after_failback_timeout(lab, failback_timeout):
    topo, reg = await _fail_over_registration(lab, 3, {"sip_server.1.failback_timeout": failback_timeout})
    assert await _first_invite_of_call_at(lab, topo, reg.time + failback_timeout - 30) == "secondary", \
        "duration: a call before failback_timeout left the secondary"
    assert await _first_invite_of_call_at(lab, topo, reg.time + failback_timeout + 10) == "primary", \
        f"duration: a call {failback_timeout + 10} s after the failover did not start at the primary"


@pytest.mark.scenario("FBK-3", "If you set the parameter to 0, the IP phone will not send requests to the primary "
                               "server until a failover event occurs with the current working server.")
@pytest_twisted.ensureDeferred
async def test_duration_zero_stays_until_current_target_fails(lab):
    topo, reg = await _fail_over_registration(lab, 3, {"sip_server.1.failback_timeout": 0})
    later = reg.time + 3 * lab.value("failback_timeout")  # well past any timeout the phone might apply
    assert await _first_invite_of_call_at(lab, topo, later) == "secondary", \
        "duration 0: the phone left the secondary although it never failed"
    topo["secondary"].script.silent("INVITE")
    await _first_invite_of_call_at(lab, topo, later + 10)  # fails over from the secondary
    topo["secondary"].script.clear()
    assert await _first_invite_of_call_at(lab, topo, later + 60) == "primary", \
        "duration 0: after the secondary failed, new requests did not go to the primary"


@pytest.mark.scenario("FBK-1", "mode 0 for contrast: newRequests goes back at once")
@pytest_twisted.ensureDeferred
async def test_new_requests_mode_returns_at_once(lab):
    topo, reg = await _fail_over_registration(lab, 0)
    assert await _first_invite_of_call_at(lab, topo, reg.time + 10) == "primary"
