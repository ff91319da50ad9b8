"""INV-IN: calls arriving at the phone (SPEC §6, §7, revised 2026-12-01).

A fake server plays the PBX that brings a call from elsewhere: it originates an INVITE to the
Contact the phone registered with it (``topo[name].originate(user)``), the phone is told to
answer through the DUT interface, and the suite judges what the fakes saw: 180 and 200 back
from the phone, the fake's ACK, a BYE answered. Calls through server 1 (UDP, TCP and TLS: over
TCP/TLS the fake reaches the phone over the connection it registered on), through server 2 of
a concurrent registration, and from the secondary of a failover are accepted; a call beyond
the phone's lines gets 486 Busy Here.
"""

import pytest
import pytest_twisted

from sipharness.harness.assertions import wait_registration
from sipharness.harness.lab import USER, Address, Domain

PASSAGE_6 = ("SPEC §6 concurrent [seed]: register with server 1 and server 2 at the same time ... Calls arriving "
             "through either server are accepted")
PASSAGE_7 = ("SPEC §7 [interp]: incoming INVITEs beyond the phone's lines (the bundled phone: 2 calls at once) get "
             "486 Busy Here")
CONCURRENT = {"fallback.redundancy_type": 0}
FINAL = 64 * 0.5  # Timer B: how long a fake waits for the phone's final response


async def _incoming_call_is_accepted(lab, server):
    """``server`` calls the phone; the phone rings, is told to answer, the fake ACKs and hangs up."""
    events = len(lab.dut.events)
    mark = len(lab.recorder)
    call = server.originate(USER, from_user="2000")
    await lab.dut.wait_for("incoming_call", FINAL, since=events)
    lab.dut.answer()
    final = await call.final(timeout=FINAL)
    assert final.status == 200, (f"{server.name} called the phone ({USER}); expected 200 once the phone was told "
                                 f"to answer, got {final.status} {final.reason}")
    seen = [r.status for r in lab.recorder.sip(server=server.name, method="INVITE", direction="in")
            if r.call_id == call.call_id and r.status is not None]
    assert 180 in seen, f"expected the phone to ring (180) before its 200; {server.name} saw {seen}"
    sent = [r.method for r in lab.recorder.entries(since=mark)
            if r.kind == "sip" and r.server == server.name and r.direction == "out" and r.call_id == call.call_id]
    assert sent[:2] == ["INVITE", "ACK"], f"{server.name} sent {sent}"
    await lab.dut.wait_for("call_state", FINAL, state="established", since=events)
    call.bye()
    bye = await call.final(method="BYE", timeout=FINAL)
    assert bye.status == 200, f"the phone answered the BYE with {bye.status} {bye.reason}"
    await lab.dut.wait_for("call_state", FINAL, state="terminated", since=events)
    return call


@pytest.mark.scenario("INV-IN", "SPEC §6/§7: a call arriving through server 1 is accepted")
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_call_through_server_1_is_accepted(lab, transport):
    topo = await lab.up(Address("primary"), transport=transport)
    await lab.dut.wait_registered(account=1, timeout=30)
    await _incoming_call_is_accepted(lab, topo["primary"])


@pytest.mark.scenario("INV-IN", PASSAGE_6)
@pytest_twisted.ensureDeferred
async def test_calls_through_either_server_of_a_concurrent_registration_are_accepted(lab):
    topo = await lab.up(Address("primary"), Address("fallback"), account=CONCURRENT)
    await wait_registration(lab.recorder, "primary", 30)  # both servers: from the fakes' records (SPEC §10)
    await wait_registration(lab.recorder, "fallback", 30)
    await _incoming_call_is_accepted(lab, topo["fallback"])
    await _incoming_call_is_accepted(lab, topo["primary"])


@pytest.mark.scenario("INV-IN", "SPEC §5/§6: a call from the secondary the phone failed over to is accepted")
@pytest_twisted.ensureDeferred
async def test_call_from_the_secondary_of_a_failover_is_accepted(lab):
    topo = await lab.up(Domain(("primary", "secondary")), start=False)
    topo["primary"].script.silent()  # the phone registers with the secondary
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=60)
    assert topo["secondary"].bindings(USER), "the phone did not register with the secondary"
    await _incoming_call_is_accepted(lab, topo["secondary"])


@pytest.mark.scenario("INV-IN", PASSAGE_7)
@pytest.mark.interp(PASSAGE_7)
@pytest_twisted.ensureDeferred
async def test_a_call_beyond_the_phones_lines_gets_486(lab):
    topo = await lab.up(Address("primary"))
    await lab.dut.wait_registered(account=1, timeout=30)
    server = topo["primary"]
    ringing = []
    for _ in range(2):  # the lines: each call rings
        call = server.originate(USER, from_user="2000")
        await lab.recorder.wait_for(lambda r, c=call: r.kind == "sip" and r.direction == "in" and
                                    r.call_id == c.call_id and r.status is not None and r.status >= 180, FINAL)
        ringing.append(call)
    extra = server.originate(USER, from_user="2001")
    final = await extra.final(timeout=FINAL)
    assert final.status == 486, (f"with {len(ringing)} calls ringing, a third got {final.status} {final.reason}; "
                                 f"expected 486 Busy Here")
    assert all(c.responses and c.responses[-1].status == 180 for c in ringing), \
        "the calls within the phone's lines must keep ringing"
    for call in ringing:
        call.cancel()
        await call.final(timeout=FINAL)
