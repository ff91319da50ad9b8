"""A fake SIP server's own faults are harness errors (issue 10), over real sockets on the virtual clock.

An exception while serving (in a script's ``handle`` function, the role logic, a timer, the
adapter) is kept in ``srv.errors`` and ``recorder.errors`` with its traceback and a PEP 678
note naming the fake and the input, drawn in the ladder, and the request is answered 500; the
server keeps serving. ``script.handle`` results, ``refuse``, and the RFC 4475 invalid messages
that used to be dropped over UDP without an answer.
"""

from __future__ import annotations

import glob
import os

import pytest
import pytest_twisted

from sipharness.fakes.ladder import render_ladder
from sipharness.fakes.record import ErrorRecord
from sipharness.fakes.rules import Action
from sipharness.sipcore.build import make_response
from sipharness.sipcore.journal import Journal
from sipharness.sipcore.transport import listen_udp
from tests.test_fakes_sip_server import Peer, clock, invite, lab, register  # noqa: F401 (fixtures)

RFC4475 = os.path.join(os.path.dirname(__file__), "data", "rfc4475", "invalid")


@pytest_twisted.inlineCallbacks
def test_an_exception_in_a_handle_function_is_kept_noted_drawn_and_answered_500(lab, clock):
    server, peer, rec = lab
    s = server("primary")
    addr = yield s.listen("udp")
    p = peer()

    def broken(request):
        return {}["no such binding"]

    s.script.handle("REGISTER", broken, first=1)
    p.send(register(p, addr), addr)
    r = yield p.wait(500)
    assert r.headers.get("Warning").startswith('399 fake "serving error: KeyError')
    assert s.errors == rec.errors and len(s.errors) == 1
    error = s.errors[0]
    assert isinstance(error, KeyError) and error.__traceback__ is not None
    assert error.__notes__ == [f"primary: while handling REGISTER from 127.0.0.1:{p.address[1]} over udp "
                               f"(in rule 1 handle REGISTER first=1 {broken.__qualname__})"]
    (mark,) = rec.error_records()
    assert isinstance(mark, ErrorRecord) and mark.server == "primary" and mark.peer == p.address
    assert "✱" in render_ladder(list(rec)) and "harness error: primary: while handling REGISTER" in render_ladder(list(rec))
    # the server keeps serving: the next REGISTER (the rule is spent) gets its 200
    p.send(register(p, addr), addr)
    yield p.wait(200)
    assert len(s.errors) == 1


@pytest_twisted.inlineCallbacks
def test_handle_returns_a_status_a_response_drop_or_none(lab, clock):
    server, peer, rec = lab
    s = server("uas", role="uas")
    addr = yield s.listen("udp")
    p = peer()
    seen = []

    def decide(request):
        seen.append(request.method)
        return [486, None, Action.DROP][len(seen) - 1] if len(seen) <= 3 else make_response(request, 603, "Nope")

    s.script.handle("INVITE", decide)
    p.send(invite(p, addr), addr)
    yield p.wait(486)
    p.send(invite(p, addr), addr)
    yield p.wait(200)  # None: answered as the UAS would
    p.send(invite(p, addr), addr)  # dropped
    p.send(invite(p, addr), addr)
    r = yield p.wait(603)
    assert r.reason == "Nope" and seen == ["INVITE"] * 4 and s.errors == []
    notes = [x.note for x in s.records if x.direction == "in" and x.method == "INVITE"]
    assert notes[2].startswith("handled: rule 1 handle INVITE")


@pytest_twisted.inlineCallbacks
def test_a_wrong_handle_result_and_an_error_in_a_timer_are_serving_errors_too(lab, clock):
    server, peer, rec = lab
    s = server("uas", role="uas", answer_delay=2.0)
    addr = yield s.listen("udp")
    p = peer()
    s.script.handle("OPTIONS", lambda request: "busy")
    opts = register(p, addr)
    opts.method = "OPTIONS"
    opts.headers.set("CSeq", "1 OPTIONS")
    p.send(opts, addr)
    yield p.wait(500)
    assert isinstance(s.errors[0], TypeError) and "expected None, a status code" in str(s.errors[0])
    # an error on the core's timer: the INVITE delayed by a rule meets a broken role logic 2 s later
    s.script.delay("INVITE", 2.0)

    def explode(request, origin, now):
        raise RuntimeError("the role logic failed")

    s.logic.handle_request = explode
    p.send(invite(p, addr), addr)
    yield p.wait(500, count=2, timeout=5)
    assert len(s.errors) == 2 and isinstance(s.errors[1], RuntimeError)
    assert s.errors[1].__notes__[0].startswith(f"uas: while handling a timer of INVITE from 127.0.0.1:{p.address[1]}")
    assert clock.seconds() == 2.0


@pytest_twisted.inlineCallbacks
def test_the_transport_hands_an_escaping_exception_to_sip_handler_error(clock):
    kept = Journal(clock)

    class Handler:
        def sip_received(self, message, source):
            raise ValueError("adapter bug")

        def sip_handler_error(self, error, where):
            kept.append((error, where))

    lst = listen_udp(Handler(), clock=clock)
    p = Peer(clock).start()
    try:
        p.send(register(p, lst.address), lst.address)
        error, where = yield kept.wait_for(lambda e: True, 5)
        assert isinstance(error, ValueError) and where == f"while handling REGISTER from 127.0.0.1:{p.address[1]} over udp"
    finally:
        p.port.stopListening()
        yield lst.stop()


@pytest_twisted.inlineCallbacks
def test_refuse_is_403_and_the_first_rule_added_wins(lab, clock):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    s.script.refuse("REGISTER", count=1)
    s.script.respond("REGISTER", 503)
    p.send(register(p, addr), addr)
    yield p.wait(403)
    p.send(register(p, addr), addr)
    yield p.wait(503)


# dropped without an answer before issue 12: badvers, insuf, lwsruri, lwsstart, scalar02, trws


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("name", sorted(os.path.basename(f)[:-4] for f in glob.glob(os.path.join(RFC4475, "*.dat"))))
def test_every_rfc4475_invalid_request_over_udp_gets_400_or_505(lab, clock, name):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    got = []
    p.datagramReceived = lambda data, a: got.append(data)
    data = open(os.path.join(RFC4475, name + ".dat"), "rb").read()
    p.send(data, addr)
    yield s.wait_for(None, direction="in")
    if name in ("bigcode", "scalarlg"):  # responses: never answered
        assert rec.sip(direction="out") == []
        return
    (out,) = yield s.wait_for(None, direction="out").addCallback(lambda r: [r])
    want = "505 Version Not Supported" if name == "badvers" else "400 Bad Request"
    assert out.summary == want, f"{name}: {out.summary}"
    assert out.raw.startswith(b"SIP/2.0 " + want.encode()) and b"\r\nVia: " in out.raw and b"\r\nCSeq: " in out.raw
    assert s.errors == []
