"""TCP bounds of the fake SIP server (issue 12), with real sockets, on the virtual clock where
time matters: a message must arrive whole within ``header_timeout`` of its first byte (the first
one of the connect), a quiet connection goes after ``idle_timeout``, and connections beyond
``max_connections`` are closed at once with a (rate-limited) log line while the memory of the
fake stays flat."""

from __future__ import annotations

import logging

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.fakes.sip.server import default_max_connections
from tests.flood import bytes_grown, flood
from tests.test_fakes_sip_server import _TcpClient, clock, register  # noqa: F401 (fixture)


def _connect(addr, clock):
    return connectProtocol(TCP4ClientEndpoint(reactor, *addr), _TcpClient(clock))


def _later(clock, seconds):
    d = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


def _as_peer(c):
    h = c.transport.getHost()
    return type("P", (), {"address": (h.host, h.port)})


@pytest_twisted.inlineCallbacks
def test_slowloris_is_cut_off_after_the_header_timeout(clock, caplog):
    caplog.set_level(logging.WARNING, logger="sipharness.fakes.sip")
    s = FakeSipServer("tcp", clock=clock, recorder=Recorder(clock), header_timeout=10.0)
    addr = yield s.listen("tcp")
    try:
        c = yield _connect(addr, clock)
        start = clock.seconds()
        data = register(_as_peer(c), addr, transport="TCP").to_bytes()
        for byte in data[:60]:  # a byte a phone second: it would take minutes to finish
            if c.closed:
                break
            c.transport.write(bytes([byte]))
            yield _later(clock, 1.0)
        yield c.closed.wait_for(lambda x: True, 5)
        assert clock.seconds() - start <= 11.0 and len(c.got) == 0
        assert any("no complete SIP message within 10 s" in r.getMessage() for r in caplog.records)
    finally:
        yield s.stop()


@pytest_twisted.inlineCallbacks
def test_a_connection_that_says_nothing_goes_after_the_header_timeout_a_quiet_one_after_idle(clock):
    s = FakeSipServer("tcp", clock=clock, recorder=Recorder(clock), header_timeout=10.0, idle_timeout=100.0)
    addr = yield s.listen("tcp")
    try:
        mute = yield _connect(addr, clock)
        start = clock.seconds()
        yield mute.closed.wait_for(lambda x: True, 20)
        assert clock.seconds() - start == 10.0
        talker = yield _connect(addr, clock)
        yield _later(clock, 5.0)
        talker.transport.write(register(_as_peer(talker), addr, transport="TCP").to_bytes())
        yield talker.got.wait_for(lambda m: m.status == 200, 5)
        said = clock.seconds()
        yield talker.closed.wait_for(lambda x: True, 200)
        assert clock.seconds() - said == 100.0  # idle counts from the last message, not the connect
    finally:
        yield s.stop()


@pytest_twisted.inlineCallbacks
def test_connections_over_the_cap_are_refused_with_a_log_line_and_memory_stays_flat(caplog):
    caplog.set_level(logging.WARNING, logger="sipharness.fakes.sip")
    s = FakeSipServer("tcp", recorder=Recorder(reactor), max_connections=8)  # real time: nothing waits here
    addr = yield s.listen("tcp")
    listener = s._listeners["tcp"]
    held = []
    try:
        for _ in range(8):
            held.append((yield _connect(addr, reactor)))
        assert listener.accepted == 8

        def refused():
            return _connect(addr, reactor).addCallbacks(lambda c: c.closed.wait_for(lambda x: True, 5),
                                                        lambda f: None)

        yield flood(refused, 50)
        grown = yield bytes_grown(lambda: flood(refused, 200), ("fakes/", "sipcore/transport"))
        assert listener.accepted == 8 and len(listener.connections) == 8
        assert grown < 8192, f"the fake grew {grown} bytes for 200 refused connections"
        refusals = [r for r in caplog.records if "max_connections 8" in r.getMessage()]
        assert refusals and len(refusals) <= 10  # one line per refusal, rate-limited
        # the held connections are served
        c = held[0]
        c.transport.write(register(_as_peer(c), addr, transport="TCP").to_bytes())
        yield c.got.wait_for(lambda m: m.status == 200, 5)
    finally:
        for c in held:
            c.transport.loseConnection()
        yield s.stop()


def test_the_default_cap_follows_the_descriptor_limit():
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = default_max_connections()
    assert 16 <= cap <= 1024 and (soft == resource.RLIM_INFINITY or cap <= max(16, soft // 8))
