"""fakes/sip/core.py without a reactor: fed messages, origins and times, it returns actions."""

from __future__ import annotations

import pytest

from sipharness.fakes.sip.actions import ChangeSockets, Origin, ServingError, SocketOp, Transmit
from sipharness.fakes.sip.core import ServerCore
from sipharness.fakes.sip.state import TRANSITIONS, ServerState
from sipharness.fakes.sip.pbx import Pbx
from sipharness.fakes.sip.script import Script
from sipharness.sipcore.build import make_request
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.parser import parse

PHONE = Origin("udp", ("127.0.0.1", 5062), ("127.0.0.10", 5060))


def _core(role="pbx", **kw):
    addresses = {"udp": ("127.0.0.10", 5060)}
    records = []
    core = ServerCore("primary", Pbx(role, addresses=addresses, **kw), Script(), addresses, records.append)
    return core, records


def _request(method, user="alice", **kw):
    return make_request(method, "sip:127.0.0.10", from_=f"<sip:{user}@x>;tag={new_tag()}", to=f"<sip:{user}@x>",
                        call_id=new_tag(), cseq=1, via=f"SIP/2.0/UDP 127.0.0.1:5062;branch={new_branch()}",
                        contact=f"<sip:{user}@127.0.0.1:5062>", **kw)


def _feed(core, message, now):
    return core.receive(message, message.to_bytes(), PHONE, now)


def _sent(actions):
    return [parse(a.data) for a in actions if isinstance(a, Transmit)]


def test_a_udp_register_is_answered_statelessly_and_a_retransmission_absorbed():
    core, records = _core()
    reg = _request("REGISTER", headers={"Expires": "60"})
    first = _feed(core, reg, 0.0)
    assert [m.status for m in _sent(first)] == [200] and core.deadline is None  # no transaction, no timer
    again = _feed(core, reg, 1.0)
    assert [a.data for a in again] == [first[0].data] and again[0].record.retransmission
    assert records[1].retransmission and core.sizes()["transactions"] == 0


def test_an_invite_gets_a_transaction_and_its_2xx_is_retransmitted_until_the_ack():
    core, _ = _core("uas")
    inv = _request("INVITE", user="bob")
    answers = _sent(_feed(core, inv, 0.0))
    assert [m.status for m in answers] == [100, 180, 200]
    assert core.deadline == 0.5
    assert [m.status for m in _sent(core.timer(0.5))] == [200]  # T1
    assert core.deadline == 1.5  # then 2·T1
    ack = make_request("ACK", inv.uri, from_=str(inv.from_), to=answers[-1].headers.get("To"), call_id=inv.call_id,
                       cseq=(1, "ACK"), via=f"SIP/2.0/UDP 127.0.0.1:5062;branch={new_branch()}")
    _feed(core, ack, 1.0)
    assert _sent(core.timer(1.5)) == [] and core.sizes()["retransmitters"] == 0


def test_states_follow_the_transition_table_and_blackhole_drops_with_a_note():
    core, records = _core()
    assert core.transition(ServerState.REFUSED) == [ChangeSockets(SocketOp.CLOSE_REFUSING)]
    assert core.transition(ServerState.BLACKHOLE) == [ChangeSockets(SocketOp.REOPEN)]
    assert _feed(core, _request("REGISTER"), 0.0) == [] and records[-1].note == "dropped: down (blackhole)"
    core.transition(ServerState.STOPPED)
    with pytest.raises(ValueError, match="cannot go from stopped to up"):
        core.transition(ServerState.UP)
    assert (ServerState.STOPPED, ServerState.UP) not in TRANSITIONS


def test_a_serving_error_comes_out_as_an_action_and_the_request_gets_500():
    core, _ = _core()

    def broken(request, origin, now):
        raise ZeroDivisionError("oops")

    core.logic.handle_request = broken
    actions = _feed(core, _request("OPTIONS"), 0.0)
    (error,) = [a for a in actions if isinstance(a, ServingError)]
    assert isinstance(error.error, ZeroDivisionError) and error.origin == PHONE
    assert error.error.__notes__ == ["primary: while handling OPTIONS from 127.0.0.1:5062 over udp"]
    assert [m.status for m in _sent(actions)] == [500]
