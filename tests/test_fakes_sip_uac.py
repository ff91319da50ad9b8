"""The UAC role of a fake SIP server (issue 11): it calls a registered peer and records the answer.

A hand-driven UDP peer registers, then plays the callee; the fake's INVITE goes to the
registered Contact from the fake's own socket, on the fake's clock (virtual here), and every
message lands in the recorder. The state machine refuses steps its state does not allow.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.fakes.ladder import render_ladder
from sipharness.fakes.sip import UacState
from sipharness.fakes.sip.uac import UacError
from sipharness.sipcore.build import make_response
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.journal import WaitTimeout
from tests.test_fakes_sip_server import clock, lab, register  # noqa: F401 (fixtures)


def _reply(p, request, status, reason=None, *, tag=None, contact=True):
    headers = [("Contact", f"<sip:alice@{p.address[0]}:{p.address[1]}>")] if contact and status < 300 else None
    resp = make_response(request, status, reason, to_tag=tag, headers=headers)
    p.send(resp, request_source(request))
    return resp


def request_source(request):
    via = request.top_via
    return (via.host, via.port)


@pytest.fixture
def registered(lab):
    server, peer, rec = lab

    @pytest_twisted.inlineCallbacks
    def make(**kw):
        s = server("pbx", **kw)
        addr = yield s.listen("udp")
        p = peer()
        p.send(register(p, addr, expires=3600), addr)
        yield p.wait(200)
        return s, p, rec

    return make


@pytest_twisted.inlineCallbacks
def test_originate_rings_the_registered_contact_and_acks_the_200(registered, clock):
    s, p, rec = yield registered()
    call = s.originate("alice", from_user="2000")
    inv = yield p.got.wait_for(lambda m: m.is_request and m.method == "INVITE", 5)
    assert inv.uri.host == "127.0.0.1" and inv.uri.port == p.address[1]  # the registered Contact
    assert inv.top_via.host == s.address[0] and b"m=audio" in inv.body and inv.from_.uri.user == "2000"
    assert call.state is UacState.CALLING
    tag = new_tag()
    _reply(p, inv, 180, tag=tag)
    yield rec.wait_for(lambda r: r.kind == "sip" and r.status == 180, 5)
    assert call.state is UacState.PROCEEDING
    _reply(p, inv, 200, tag=tag)
    final = yield call.final(timeout=5)
    assert final.status == 200 and call.state is UacState.CONFIRMED
    ack = yield p.got.wait_for(lambda m: m.is_request and m.method == "ACK", 5)
    assert ack.call_id == inv.call_id and ack.to.tag == tag and ack.top_via.branch != inv.top_via.branch
    assert ack.uri.port == p.address[1]  # to the Contact of the 200
    # the callee retransmits its 200 (it missed the ACK): the fake ACKs again
    _reply(p, inv, 200, tag=tag)
    yield p.got.wait_for(lambda m: m.is_request and m.method == "ACK", 5, count=2)
    call.bye()
    bye = yield p.got.wait_for(lambda m: m.is_request and m.method == "BYE", 5)
    assert bye.cseq == (2, "BYE") and bye.to.tag == tag
    _reply(p, bye, 200)
    ok = yield call.final(method="BYE", timeout=5)
    assert ok.status == 200 and call.state is UacState.ENDED
    ladder = render_ladder(list(rec))
    for label in ("INVITE", "180 Ringing", "200 OK", "ACK", "BYE"):
        assert label in ladder
    assert [r.method for r in rec.sip(server="pbx", direction="out") if r.status is None] == \
        ["INVITE", "ACK", "ACK", "BYE"]
    assert s.errors == []


@pytest_twisted.inlineCallbacks
def test_a_busy_callee_and_a_cancel(registered, clock):
    s, p, rec = yield registered()
    busy = s.originate("alice")
    inv = yield p.got.wait_for(lambda m: m.is_request and m.method == "INVITE", 5)
    _reply(p, inv, 486, "Busy Here", tag=new_tag())
    final = yield busy.final(timeout=5)
    assert final.status == 486 and busy.state is UacState.REJECTED
    yield p.got.wait_for(lambda m: m.is_request and m.method == "ACK", 5)  # the transaction's ACK
    with pytest.raises(UacError, match="cannot bye in state rejected"):
        busy.bye()
    ringing = s.originate("alice")
    with pytest.raises(UacError, match="cannot cancel in state calling"):
        ringing.cancel()  # RFC 3261 §9.1: not before a provisional
    inv2 = yield p.got.wait_for(lambda m: m.is_request and m.method == "INVITE", 5, count=2)
    tag = new_tag()
    _reply(p, inv2, 180, tag=tag)
    yield rec.wait_for(lambda r: r.kind == "sip" and r.status == 180 and r.call_id == inv2.call_id, 5)
    ringing.cancel()
    cancel = yield p.got.wait_for(lambda m: m.is_request and m.method == "CANCEL", 5)
    assert cancel.top_via.branch == inv2.top_via.branch and cancel.cseq == (1, "CANCEL")
    _reply(p, cancel, 200)
    _reply(p, inv2, 487, "Request Terminated", tag=tag)
    final = yield ringing.final(timeout=5)
    assert final.status == 487 and ringing.state is UacState.REJECTED


@pytest_twisted.inlineCallbacks
def test_a_silent_callee_times_out_on_the_fakes_clock_and_final_has_a_deadline(registered, clock):
    s, p, rec = yield registered()
    call = s.originate("alice")
    start = clock.seconds()
    with pytest.raises(WaitTimeout, match="the final response to its INVITE"):
        yield call.final(timeout=10)
    yield rec.wait_for(lambda r: call.state is UacState.TIMED_OUT, 40, since=None).addErrback(lambda _: None)
    sends = [r for r in rec.sip(server="pbx", method="INVITE", direction="out")]
    assert [round(r.time - start, 3) for r in sends] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A, until B
    assert call.state is UacState.TIMED_OUT and "Timer B" in call.reason


@pytest_twisted.inlineCallbacks
def test_originate_needs_a_registration_or_a_contact_and_auto_ack_can_be_off(registered, clock):
    s, p, rec = yield registered()
    with pytest.raises(LookupError, match="'bob' has no live registration"):
        s.originate("bob")
    with pytest.raises(ValueError, match="not an IP address"):
        s.originate("bob", contact="sip:bob@phone.example.com")
    call = s.originate("bob", contact=f"sip:bob@{p.address[0]}:{p.address[1]}", auto_ack=False)
    inv = yield p.got.wait_for(lambda m: m.is_request and m.method == "INVITE" and m.uri.user == "bob", 5)
    _reply(p, inv, 200, tag=new_tag())
    yield call.final(timeout=5)
    assert call.state is UacState.ANSWERED  # not ACKed: the test decides
    call.ack()
    yield p.got.wait_for(lambda m: m.is_request and m.method == "ACK", 5)
    assert call.state is UacState.CONFIRMED
