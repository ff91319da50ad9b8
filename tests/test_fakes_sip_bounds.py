"""Bounded growth of the fake SIP servers: the UAS's calls waiting for a CANCEL, the origins
of answered INVITEs, and the retransmission memories, whatever the load."""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.fakes.sip.actions import Origin
from sipharness.fakes.sip.uas import KEEP, Uas
from sipharness.sipcore.build import make_request
from sipharness.sipcore.ids import new_branch, new_tag
from tests.test_fakes_sip_server import Peer, invite

ORIGIN = Origin("udp", ("127.0.0.1", 5062), ("127.0.0.1", 5060))


def _invite(i):
    return make_request("INVITE", "sip:bob@127.0.0.1", from_=f"<sip:a@x>;tag={new_tag()}", to="<sip:bob@x>",
                        call_id=f"call{i}@t", cseq=1, via=f"SIP/2.0/UDP 127.0.0.1:5062;branch={new_branch()}",
                        contact="<sip:a@127.0.0.1:5062>")


def _cancel(inv):
    return make_request("CANCEL", inv.uri, from_=str(inv.from_), to=str(inv.to), call_id=inv.call_id,
                        cseq=(1, "CANCEL"), via=str(inv.top_via))


def test_uas_forgets_answered_calls_after_their_transaction_and_is_capped():
    uas = Uas(answer_delay=2.0, max_pending=500)
    for i in range(20_000):  # 100 calls a second for 200 s
        uas.handle(_invite(i), ORIGIN, i / 100)
        assert len(uas._pending) <= 2 * (100 * (2.0 + KEEP)) + 64
    assert len(uas._pending) <= 500
    # one call a millisecond: the cap holds even inside the window
    burst = Uas(answer_delay=2.0, max_pending=500)
    for i in range(5_000):
        burst.handle(_invite(i), ORIGIN, 0.001 * i)
    assert len(burst._pending) <= 1000 and len(burst._pending) <= 2 * burst.max_pending


def test_uas_cancel_within_and_after_the_transaction_life():
    uas = Uas(answer_delay=10.0)
    early, late = _invite(1), _invite(2)
    uas.handle(early, ORIGIN, 0.0)
    uas.handle(late, ORIGIN, 0.0)
    statuses = [a.response.status for a in uas.handle(_cancel(early), ORIGIN, 5.0)]
    assert statuses == [200, 487]
    # answered at 10 s, its transaction over at 10 + 64·T1: a CANCEL then finds nothing
    assert [a.response.status for a in uas.handle(_cancel(late), ORIGIN, 10.0 + KEEP + 1)] == [481]
    assert uas._pending == {}
    with pytest.raises(ValueError, match="max_pending"):
        Uas(max_pending=0)


@pytest_twisted.inlineCallbacks
def test_server_keeps_no_origin_or_transaction_per_finished_call(vclock):
    s = FakeSipServer("uas", role="uas", clock=vclock, recorder=Recorder(vclock))
    addr = yield s.listen("udp")
    p = Peer(vclock).start()
    try:
        for n in range(1, 6):
            p.send(invite(p, addr), addr)
            yield p.wait(200, count=n)  # (the peer's copy: the server has finished sending it)
        vclock.advance(64 * 0.5 + 1)  # the 2xx retransmissions give up (no ACK), Timer H/J pass
        held = s.core.sizes()
        assert held["origins"] == held["transactions"] == held["retransmitters"] == held["timers"] == 0
        assert len(s.logic.uas._pending) == 5  # swept at the next calls, see the Uas tests
    finally:
        p.port.stopListening()
        yield s.stop()
