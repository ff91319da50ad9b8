"""Hanging up an outgoing call before any response (RFC 3261 §9.1, SPEC §7), on a task.Clock.

A CANCEL must not be sent before a provisional response: the phone ends the call for the user
at once, lets the INVITE transaction run on, CANCELs when a 1xx arrives, or ACKs then BYEs a
2xx; and never carries the INVITE to another target or server after the hang-up.
"""

from __future__ import annotations

from sipharness.sipcore.build import make_response
from tests.test_phone_fakewire import make_ua, ok, run_until, silent, tgt

P, S = tgt("127.0.0.10"), tgt("127.0.0.20")
DOMAIN = "account.1.sip_server.1.address = pbx.example.com\n"


def states(ua, call):
    return [(round(e.time, 3), e.state) for e in ua.events if e.kind == "call_state" and e.call_id == call.call_id]


def sent(wire, host="127.0.0.10"):
    return [(round(t, 3), m.method) for t, tg, m in wire.requests() if tg.host == host]


def _ua(responder):
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    ua.running = True
    wire.responders = {"127.0.0.10": responder, "127.0.0.20": silent}
    return clock, wire, ua


def test_hangup_before_provisional_cancels_when_the_180_arrives():
    invites = []

    def late_ringing(req):
        if req.method == "INVITE":
            invites.append(req)
            return ok(req, 180, delay=1.0)  # one second after each send
        if req.method == "CANCEL":  # 200 to the CANCEL, 487 to the INVITE
            return ok(req) + [(0.0, make_response(invites[0], 487, to_tag="srv"))]
        return []

    clock, wire, ua = _ua(late_ringing)
    call = ua.place_call("2002")
    run_until(clock, 0.2)
    ua.hangup(call)
    assert states(ua, call) == [(0, "calling"), (0.2, "terminated")]  # ended for the user at once
    assert sent(wire) == [(0, "INVITE")]  # no CANCEL before a provisional (RFC 3261 §9.1)
    run_until(clock, 60)
    # INVITE retransmitted at 0.5 until the 180 at 1.0; then one CANCEL; the 487 is ACKed
    assert sent(wire) == [(0, "INVITE"), (0.5, "INVITE"), (1.0, "CANCEL"), (1.0, "ACK")]
    cancel = [m for _, _, m in wire.requests("CANCEL")][0]
    assert cancel.top_via.branch == invites[0].top_via.branch and cancel.cseq[0] == invites[0].cseq[0]
    assert sent(wire, "127.0.0.20") == []  # never to the next target
    assert states(ua, call) == [(0, "calling"), (0.2, "terminated")]  # nothing more for the user


def test_hangup_before_any_response_then_2xx_is_acked_and_byed():
    def answers_late(req):
        if req.method == "INVITE":
            return ok(req, 200, delay=1.0, headers=[("Contact", "<sip:uas@127.0.0.10:5060>")])
        if req.method == "BYE":
            return ok(req)
        return []

    clock, wire, ua = _ua(answers_late)
    call = ua.place_call("2002")
    run_until(clock, 0.2)
    ua.hangup(call)
    run_until(clock, 60)
    assert sent(wire)[:4] == [(0, "INVITE"), (0.5, "INVITE"), (1.0, "ACK"), (1.0, "BYE")]
    assert "CANCEL" not in [m for _, m in sent(wire)]
    assert states(ua, call) == [(0, "calling"), (0.2, "terminated")]
    assert any("after the user hung up → ACK, BYE" in e.detail for e in ua.events if e.kind == "decision")


def test_hangup_before_any_response_from_a_silent_target_goes_nowhere_else():
    clock, wire, ua = _ua(silent)
    call = ua.place_call("2002")
    run_until(clock, 0.2)
    ua.hangup(call)
    run_until(clock, 100)
    assert sent(wire) == [(0, "INVITE"), (0.5, "INVITE"), (1.5, "INVITE"), (3.5, "INVITE")]  # its own budget
    assert sent(wire, "127.0.0.20") == []
    assert states(ua, call) == [(0, "calling"), (0.2, "terminated")]
    assert ua.fallbacks[1].s1_usable  # the hang-up, not the server, stopped the walk


def test_hangup_after_provisional_sends_one_cancel_even_with_more_1xx():
    def ringing_twice(req):
        if req.method == "INVITE":
            return ok(req, 180) + ok(req, 183, delay=2.0)
        if req.method == "CANCEL":
            return ok(req)
        return []

    clock, wire, ua = _ua(ringing_twice)
    call = ua.place_call("2002")
    run_until(clock, 1)
    ua.hangup(call)
    ua.hangup(call)
    run_until(clock, 5)
    assert [m for _, m in sent(wire)].count("CANCEL") == 1
