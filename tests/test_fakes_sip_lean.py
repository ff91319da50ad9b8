"""The fake registrar's lean UDP path: retransmissions absorbed from a bounded response cache
(RFC 3261 §17.2.2, Timer J = 64·T1) instead of a ServerTransaction and a timer per request,
and the bounded memories behind it (fakes.sip.recent)."""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.fakes.jsonlines import StreamingRecorder
from sipharness.fakes.sip.recent import RecentMap
from tests.test_fakes_sip_server import Peer, register


def test_recent_map_window_and_batches():
    m = RecentMap(32.0, max_entries=1000)
    m.put("a", 1, 0.0)
    assert m.get("a", 31.9) == 1
    m.put("b", 2, 10.0)
    assert m.get("a", 33.0) is None and m.get("b", 33.0) == 2  # a's bucket swept, b's kept
    assert m.get("b", 43.0) is None and len(m) == 0
    assert m.seen("k", 50.0) is False and m.seen("k", 60.0) is True
    # seen again at 60: remembered until 60 + 32, not 50 + 32
    assert m.get("k", 85.0, "gone") is None and "k" in m
    assert m.get("k", 93.0, "gone") == "gone"


def test_recent_map_is_bounded_under_a_flood():
    m = RecentMap(32.0, max_entries=100)
    for i in range(10_000):
        m.put(i, i, i * 0.001)  # 10 000 keys within 10 s: far more than the bound
        assert len(m) <= 100
    assert m.get(9_999, 10.0) == 9_999  # the newest survive


def test_recent_map_entries_do_not_load_the_garbage_collector():
    # a registrar under load keeps 100 000+ answers for 64·T1: an entry the collector tracks is one
    # more for every full collection to walk (130 ms pauses at 2 500 registrations/s before)
    m = RecentMap(32.0, max_entries=200_000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(20_000):
        m.put(("REGISTER", f"call-{i}", 1, f"z9hG4bK{i}"), b"SIP/2.0 200 OK\r\n", i * 0.001)
    gc.collect()
    assert len(m) == 20_000
    assert len(gc.get_objects()) - before < 200  # the buckets' key lists, not an object per entry


def test_recent_map_refuses_bad_bounds():
    with pytest.raises(ValueError, match="window"):
        RecentMap(0)
    with pytest.raises(ValueError, match="max_entries"):
        RecentMap(1.0, max_entries=0)


@pytest.fixture
def lab(vclock):
    made = []
    rec = Recorder(vclock)

    def server(**kw):
        s = FakeSipServer("reg", clock=vclock, recorder=rec, **kw)
        made.append(s)
        return s

    p = Peer(vclock).start()
    yield server, p, rec
    rec.cancel_waits()
    for s in made:
        s.stop()
    p.port.stopListening()


@pytest_twisted.inlineCallbacks
def test_udp_register_retransmission_gets_the_same_answer_without_a_transaction(lab, vclock):
    server, p, rec = lab
    s = server()
    addr = yield s.listen("udp")
    calls_before = len(vclock.getDelayedCalls())
    req = register(p, addr)
    p.send(req, addr)
    first = yield p.wait(200)
    # no transaction object and no timer left behind by a REGISTER over UDP
    assert s.core.sizes()["transactions"] == 0 and s.core.sizes()["timers"] == 0
    assert len(vclock.getDelayedCalls()) <= calls_before
    vclock.advance(4.0)
    s.logic.registrar._bindings.clear()  # proves the logic does not run again for a retransmission
    p.send(req, addr)
    again = yield p.wait(200, count=2)
    assert again.to.tag == first.to.tag and again.to_bytes() == first.to_bytes()
    assert s.bindings("alice") == []
    outs = [r for r in s.records if r.direction == "out"]
    assert [(r.status, r.retransmission) for r in outs] == [(200, False), (200, True)]
    assert outs[1].method == "REGISTER" and outs[1].call_id == req.call_id and outs[1].branch == req.top_via.branch
    assert (outs[1].summary, outs[1].cseq, outs[1].raw) == (outs[0].summary, outs[0].cseq, outs[0].raw)
    assert outs[1].summary == "200 OK"
    ins = [r for r in s.records if r.direction == "in"]
    assert [r.retransmission for r in ins] == [False, True]
    # past Timer J (64·T1 = 32 s) the request is new again: the logic answers it afresh
    vclock.advance(40.0)
    p.send(req, addr)
    third = yield p.wait(200, count=3)
    assert third.to.tag != first.to.tag and len(s.bindings("alice")) == 1
    assert [r.retransmission for r in s.records if r.direction == "in"] == [False, True, False]


@pytest_twisted.inlineCallbacks
def test_scripted_answer_is_absorbed_too_and_memories_are_swept(lab, vclock):
    server, p, rec = lab
    s = server()
    addr = yield s.listen("udp")
    s.script.respond("REGISTER", 503, headers={"Retry-After": "5"}, count=1)
    req = register(p, addr)
    p.send(req, addr)
    r = yield p.wait(503)
    p.send(req, addr)  # a retransmission of the 503'd request: the same 503, the rule is not run twice
    r2 = yield p.wait(503, count=2)
    assert r2.to.tag == r.to.tag and r2.headers.get("Retry-After") == "5"
    assert (s.core.sizes()["seen"], s.core.sizes()["answered"]) == (1, 1)
    vclock.advance(40.0)
    p.send(register(p, addr), addr)
    yield p.wait(200)
    assert (s.core.sizes()["seen"], s.core.sizes()["answered"]) == (1, 1)  # the old entries were swept on the way


def test_cli_recorder_hands_records_on_and_keeps_none():
    rec = StreamingRecorder(reactor)
    got = []
    rec.subscribe(got.append)
    for i in range(5):
        rec.append(i)
    rec.extend([5, 6])  # the servers hand a message's records on as one batch
    assert got == [0, 1, 2, 3, 4, 5, 6] and len(rec) == 0
