"""The fake DNS's TCP bounds (issue 12) and its serving errors (issue 10), with real sockets
on the virtual clock: a slowloris is cut off after ``tcp_query_timeout`` (not hours), an idle
connection after ``tcp_idle_timeout``, connections over ``tcp_max_connections`` are closed at
once with a log line and the memory of the fake stays flat; an exception while answering is a
harness error (kept, recorded, answered SERVFAIL), and the server keeps serving."""

import logging

import pytest
import pytest_twisted
from dnslib import RCODE, DNSRecord
from twisted.internet import defer, reactor

from sipharness.fakes.dns import FakeDNS
from sipharness.fakes.record import ErrorRecord
from sipharness.fakes.rules import Action
from sipharness.sipcore.clock import VirtualClock
from tests.flood import bytes_grown, flood
from tests.test_dns_garbage import D, _UDPClient, connect, frame, good_query
from tests.test_dns_zone import seed_zone


@pytest.fixture
def vserver():
    clock = VirtualClock(reactor)
    servers = []

    def make(**kw):
        s = FakeDNS([seed_zone()], clock=clock, **kw)
        s.start()
        servers.append(s)
        return s

    yield make, clock
    clock.stop()
    for s in servers:
        pytest_twisted.blockon(s.stop())


def _tick(clock, c, seconds):
    """Let ``seconds`` of phone time pass one at a time (the virtual clock jumps when idle)."""
    d = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


@pytest_twisted.inlineCallbacks
def test_slowloris_one_byte_a_second_is_cut_off_after_the_query_timeout(vserver, caplog):
    make, clock = vserver
    caplog.set_level(logging.WARNING, logger="sipharness.fakes.dns")
    server = make(tcp_idle_timeout=10.0, tcp_query_timeout=5.0)
    c = yield connect(server)
    start = clock.seconds()
    data = frame(good_query(4))
    for i, byte in enumerate(data):  # a byte a phone second: with the old idle timer this never ended
        if c.closed.called:
            break
        c.transport.write(bytes([byte]))
        yield _tick(clock, c, 1.0)
    yield c.closed.addTimeout(5, reactor)
    assert clock.seconds() - start <= 6.0 and c.frames == []
    assert any("not whole 5 s after its first byte" in r.getMessage() for r in caplog.records)


@pytest_twisted.inlineCallbacks
def test_idle_connection_closed_after_the_idle_timeout_and_a_query_restarts_it(vserver):
    make, clock = vserver
    server = make(tcp_idle_timeout=10.0)
    c = yield connect(server)
    start = clock.seconds()
    yield _tick(clock, c, 6.0)
    c.transport.write(frame(good_query(1)))
    (answer,) = yield c.wait_frames(1)
    assert DNSRecord.parse(answer).header.id == 1
    yield c.closed.addTimeout(5, reactor)
    assert clock.seconds() - start == pytest.approx(16.0)  # 10 s after the query, not after the connect


@pytest_twisted.inlineCallbacks
def test_connections_over_the_cap_are_closed_with_a_log_line_and_memory_stays_flat(caplog):
    caplog.set_level(logging.WARNING, logger="sipharness.fakes.dns")
    server = FakeDNS([seed_zone()], tcp_max_connections=8, tcp_idle_timeout=3600.0)  # real time: no waiting here
    server.start()
    held = []
    for _ in range(8):
        held.append((yield connect(server)))
    assert len(server.tcp_connections) == 8

    def refused():  # closed by the server at once: the client sees a close, or a reset while connecting
        return connect(server).addCallbacks(lambda c: c.closed, lambda f: None)

    yield flood(refused, 50)  # every one closed by the server at once
    grown = yield bytes_grown(lambda: flood(refused, 200), ("fakes/dns",))
    assert len(server.tcp_connections) == 8 and server.stats["tcp_refused"] == 250
    assert grown < 4096, f"the fake DNS grew {grown} bytes for 200 refused connections"
    assert any("tcp_max_connections 8" in r.getMessage() for r in caplog.records)
    assert sum("refused" in r.getMessage() for r in caplog.records) <= 11  # rate-limited
    # the held ones are still served
    held[0].transport.write(frame(good_query(7)))
    (answer,) = yield held[0].wait_frames(1)
    assert DNSRecord.parse(answer).header.id == 7
    for c in held:
        c.transport.loseConnection()
    yield server.stop()


@pytest_twisted.inlineCallbacks
def test_an_exception_in_a_handle_rule_is_a_harness_error_answered_servfail(vserver):
    make, clock = vserver
    server = make()

    def broken(query):
        raise KeyError("no such thing")

    server.faults.handle(broken, qtype="A", name=f"server1.{D}")
    client = _UDPClient()
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    got = []
    client.datagramReceived = lambda data, addr: got.append(DNSRecord.parse(data))
    try:
        port.write(good_query(11), server.address)
        yield server.recorder.wait_for(lambda r: r.direction == "out", 5)
        assert [e for e in server.errors] == server.recorder.errors and len(server.errors) == 1
        error = server.errors[0]
        assert isinstance(error, KeyError) and error.__traceback__ is not None
        assert error.__notes__ == [f"dns: while handling Q A server1.{D} from 127.0.0.1:{port.getHost().port} over udp"]
        (rec,) = server.recorder.error_records()
        assert isinstance(rec, ErrorRecord) and rec.protocol == "dns" and rec.note.startswith("harness error: dns:")
        out = server.recorder.dns(direction="out")[-1]
        assert out.rcode == 2  # SERVFAIL
        # other names still answered; a handle returning an rcode or DROP is no error
        server.faults.handle(lambda q: "NXDOMAIN", name=f"server2.{D}", top=True)
        port.write(good_query(12, f"server2.{D}"), server.address)
        yield server.recorder.wait_for(lambda r: r.direction == "out" and r.rcode == 3, 5)
        assert len(server.errors) == 1
    finally:
        yield port.stopListening()


def test_handle_results_and_a_wrong_result_is_an_error():
    server = FakeDNS([seed_zone()], clock=reactor)
    sent = []
    server.faults.handle(lambda q: Action.DROP, name=f"server1.{D}")
    server.faults.handle(lambda q: DNSRecord.question(q.qname).reply(), name=f"server2.{D}")
    server.faults.handle(lambda q: 42, qtype="A")
    server.handle(good_query(1), "udp", ("127.0.0.1", 1), sent.append)
    assert sent == [] and server.recorder.dns(direction="out")[-1].summary == "no answer (dropped)"
    server.handle(good_query(2, f"server2.{D}"), "udp", ("127.0.0.1", 1), sent.append)
    assert DNSRecord.parse(sent[-1]).header.id == 2 and RCODE[DNSRecord.parse(sent[-1]).header.rcode] == "NOERROR"
    server.handle(good_query(3, f"a.{D}"), "udp", ("127.0.0.1", 1), sent.append)
    assert DNSRecord.parse(sent[-1]).header.rcode == 2 and isinstance(server.errors[0], TypeError)
    assert "expected None, an rcode" in str(server.errors[0])
