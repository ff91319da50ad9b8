"""The fake SIP servers on sipcore.transport: the hooks added for them (Source.raw,
listen_udp(buffer_size=)) and the socket-level faults played through Listener."""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.sipcore.journal import Journal
from sipharness.sipcore.transport import listen_udp
from tests.test_fakes_sip_server import Peer, register


class _Collect:
    def __init__(self, clock):
        self.got = Journal(clock)

    def sip_received(self, message, source):
        self.got.append((message, source))


@pytest_twisted.inlineCallbacks
def test_source_raw_is_the_datagram_and_buffer_size_is_applied(vclock):
    h = _Collect(vclock)
    lst = listen_udp(h, clock=vclock, buffer_size=1 << 20)
    try:
        sock = lst._port_obj.socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 1 << 20  # Linux doubles it
        p = Peer(vclock).start()
        data = register(p, lst.address).to_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards:   70")
        p.send(data, lst.address)
        message, source = yield h.got.wait_for(lambda e: True, 5)
        assert source.raw == data and message.max_forwards == 70
        p.port.stopListening()
    finally:
        yield lst.stop()
    # default: no buffer asked for, raw still given
    lst2 = listen_udp(h, clock=vclock)
    assert lst2._port_obj.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 1 << 20
    yield lst2.stop()


@pytest_twisted.inlineCallbacks
def test_fake_records_the_wire_bytes_and_keeps_big_buffers_after_refused_and_up(vclock):
    s = FakeSipServer("s", clock=vclock, recorder=Recorder(vclock))
    addr = yield s.listen("udp")
    p = Peer(vclock).start()
    try:
        data = register(p, addr).to_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards:   70")
        p.send(data, addr)
        yield p.wait(200)
        assert s.records[0].raw == data  # what the peer sent, not a re-serialisation
        yield s.down("refused")
        yield s.up()
        sock = s._listeners["udp"]._port_obj.socket
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 4 * 1024 * 1024
        assert s.address == addr
    finally:
        p.port.stopListening()
        yield s.stop()


@pytest_twisted.inlineCallbacks
def test_delayed_answer_after_down_up_leaves_from_the_reopened_socket(vclock):
    s = FakeSipServer("s", clock=vclock, recorder=Recorder(vclock))
    addr = yield s.listen("udp")
    p = Peer(vclock).start()
    try:
        s.script.delay("REGISTER", 5.0)
        p.send(register(p, addr), addr)
        yield s.wait_for("REGISTER")
        yield s.down("refused")
        yield s.up()
        ok = yield p.wait(200, timeout=10)
        assert vclock.seconds() >= 5.0 and ok.cseq[1] == "REGISTER"
    finally:
        p.port.stopListening()
        yield s.stop()


class _Tcp(protocol.Protocol):
    def __init__(self, clock):
        self.lost = Journal(clock)

    def connectionLost(self, reason=None):
        self.lost.append(reason.value)


@pytest_twisted.inlineCallbacks
def test_refused_resets_an_open_tcp_connection(vclock):
    from twisted.internet.error import ConnectionLost
    s = FakeSipServer("s", clock=vclock, recorder=Recorder(vclock))
    addr = yield s.listen("tcp")
    c = _Tcp(reactor)
    yield connectProtocol(TCP4ClientEndpoint(reactor, *addr), c)
    h = c.transport.getHost()
    me = type("P", (), {"address": (h.host, h.port)})
    c.transport.write(register(me, addr, transport="TCP").to_bytes())
    yield s.wait_for("REGISTER", timeout=5)  # the server has the connection
    yield s.down("refused")
    reason = yield c.lost.wait_for(lambda e: True, 5)
    assert isinstance(reason, ConnectionLost)  # RST, not a clean FIN (ConnectionDone)
    yield s.stop()

