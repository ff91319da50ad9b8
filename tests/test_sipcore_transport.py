"""UDP / TCP / TLS adapters over loopback: round trips, failures, keep-alives, a fake going down."""

from __future__ import annotations

import warnings

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.clock import ScaledClock
from sipharness.sipcore.ids import new_branch
from sipharness.sipcore.journal import Journal
from sipharness.sipcore.tls import TestPKI
from sipharness.sipcore.transport import (
    SipTransportError,
    connect_tcp,
    connect_tls,
    connect_udp,
    listen_tcp,
    listen_tls,
    listen_udp,
)

WAIT = 5.0  # seconds of the (real) clock a wait may take before the test fails


class Recorder:
    """A handler that records everything; ``echo`` answers every request with 200."""

    def __init__(self, clock, echo=False, reply_bad=False):
        self.journal = Journal(clock)
        self.echo = echo
        self.reply_bad = reply_bad

    def sip_received(self, message, source):
        self.journal.append(("msg", message, source))
        if self.echo and message.is_request:
            source.send(make_response(message, 200, to_tag="srv"))

    def sip_bad_input(self, raw, error, source):
        self.journal.append(("bad", raw, error, source))
        if self.reply_bad:
            source.send_raw(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def sip_transport_error(self, peer, transport, reason):
        self.journal.append(("error", peer, transport, reason))

    def sip_connection_closed(self, source, reason):
        self.journal.append(("closed", source, reason))

    def wait(self, kind, count=1, since=0, what=None):
        return self.journal.wait_for(lambda e: e[0] == kind, WAIT, count=count, since=since, what=what or kind)


def options(transport="UDP", host="127.0.0.1", port=5060, method="OPTIONS"):
    return make_request(
        method, "sip:bob@127.0.0.1", from_="<sip:alice@127.0.0.1>;tag=a1", to="<sip:bob@127.0.0.1>",
        call_id="c1@127.0.0.1", cseq=1, via=f"SIP/2.0/{transport} {host}:{port};branch={new_branch()}",
    )


@pytest.fixture
def clock():
    return ScaledClock(reactor, 1.0)


# ------------------------------------------------------------------ UDP


@pytest_twisted.inlineCallbacks
def test_udp_round_trip_and_server_initiated_request(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock, echo=True)
    listener = listen_udp(server, clock=clock)
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        req = options(port=conn.local[1])
        conn.send(req)
        _, resp, src = yield phone.wait("msg")
        assert resp.status == 200 and resp.cseq == (1, "OPTIONS")
        assert src.transport == "udp" and src.peer == listener.address
        _, got, ssrc = server.journal[0]
        assert got == req and ssrc.peer == conn.local and ssrc.local == listener.address
        # the server sends a request to the phone's address (its Contact) on its listening socket
        listener.send(options(method="INVITE"), conn.local)
        _, inv, _ = yield phone.wait("msg", count=2)
        assert inv.method == "INVITE"
        _, answer, _ = yield server.wait("msg", count=2)
        assert answer.status == 200 and answer.cseq[1] == "INVITE"
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_udp_icmp_unreachable_and_fake_down_then_up_on_same_port(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock)
    listener = listen_udp(server, clock=clock)
    address = listener.address
    conn = connect_udp(phone, address, clock=clock)
    try:
        yield listener.close_refusing()
        assert not listener.listening
        assert listener.send(options(), conn.local) is False  # a fake that is down sends nothing
        conn.send(options())
        _, peer, transport, reason = yield phone.wait("error")
        assert (peer, transport, reason) == (address, "udp", "ICMP port unreachable")
        listener.reopen()
        assert listener.address == address
        conn.send(options())
        _, resp, _ = yield phone.wait("msg")
        assert resp.status == 200
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_udp_garbage_is_reported_and_server_keeps_serving(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock)
    listener = listen_udp(server, clock=clock, max_size=2000)
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        conn.send_raw(b"\x00\x01 not SIP at all\r\n\r\n")
        conn.send_raw(b"\r\n\r\n")  # a keep-alive: neither a message nor bad input
        big = options()
        big.body = b"x" * 3000
        conn.send(big)
        _, raw, err, src = yield server.wait("bad", count=2)
        assert server.journal[0][1].startswith(b"\x00\x01")
        assert "datagram" in str(err) or "size" in str(err) or "2000" in str(err)
        assert src.peer == conn.local
        conn.send(options())
        _, resp, _ = yield phone.wait("msg")
        assert resp.status == 200
        assert [e[0] for e in server.journal] == ["bad", "bad", "msg"]
    finally:
        yield conn.close()
        yield listener.stop()


# ------------------------------------------------------------------ TCP


@pytest_twisted.inlineCallbacks
def test_tcp_round_trip_and_request_back_on_the_same_connection(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock, echo=True)
    listener = listen_tcp(server, clock=clock)
    conn = yield connect_tcp(phone, listener.address, clock=clock)
    try:
        assert conn.peer == listener.address and conn.transport == "tcp"
        conn.send(options("TCP", port=conn.local[1]))
        _, resp, _ = yield phone.wait("msg")
        assert resp.status == 200
        _, _, ssrc = server.journal[0]
        assert ssrc.transport == "tcp" and ssrc.peer == conn.local
        # the server reaches the phone over the phone's own connection (no new connection)
        listener.send(options("TCP", method="INVITE"), conn.local)
        _, inv, psrc = yield phone.wait("msg", count=2)
        assert inv.method == "INVITE" and psrc.peer == listener.address
        _, answer, _ = yield server.wait("msg", count=2)
        assert answer.status == 200
        assert len(listener.connections) == 1
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_tcp_refused_goes_to_handler_and_deferred(clock):
    server, phone = Recorder(clock), Recorder(clock)
    listener = listen_tcp(server, clock=clock)
    address = listener.address
    yield listener.close_refusing()
    with pytest.raises(SipTransportError, match="connection refused"):
        yield connect_tcp(phone, address, clock=clock)
    assert phone.journal[0] == ("error", address, "tcp", "connection refused")


@pytest_twisted.inlineCallbacks
def test_tcp_fake_down_as_refused_resets_connections_and_comes_back(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock)
    listener = listen_tcp(server, clock=clock)
    address = listener.address
    conn = yield connect_tcp(phone, address, clock=clock)
    try:
        yield listener.close_refusing()
        _, peer, transport, reason = yield phone.wait("error")
        assert (peer, transport) == (address, "tcp") and reason == "connection reset by peer"
        with pytest.raises(SipTransportError, match="refused"):
            yield connect_tcp(phone, address, clock=clock)
        listener.reopen()
        conn2 = yield connect_tcp(phone, address, clock=clock)
        conn2.send(options("TCP"))
        _, resp, _ = yield phone.wait("msg")
        assert resp.status == 200
        yield conn2.close()
        assert conn2.send(options("TCP")) is False
        assert phone.journal[-1] == ("error", address, "tcp", "connection closed")
    finally:
        yield conn.close()
        yield listener.stop()


class _RawClient(protocol.Protocol):
    def __init__(self, journal):
        self.journal = journal

    def dataReceived(self, data):
        self.journal.append(("data", data))

    def connectionLost(self, reason):
        self.journal.append(("lost", reason.value))


@pytest_twisted.inlineCallbacks
def test_tcp_garbage_closes_connection_listener_keeps_serving_and_crlf_keepalive(clock):
    server, phone = Recorder(clock, echo=True, reply_bad=True), Recorder(clock)
    listener = listen_tcp(server, clock=clock)
    raw = Journal(clock)
    try:
        cc = protocol.ClientCreator(reactor, _RawClient, raw)
        client = yield cc.connectTCP(*listener.address)
        client.transport.write(b"\r\n\r\n")  # RFC 5626 ping
        _, pong = yield raw.wait_for(lambda e: e[0] == "data", WAIT, what="pong")
        assert pong == b"\r\n"
        client.transport.write(b"GARBAGE \x00\xff no sip here\r\n\r\n")
        _, data, err, src = yield server.wait("bad")
        assert b"GARBAGE" in data and src.transport == "tcp"
        yield raw.wait_for(lambda e: e[0] == "lost", WAIT, what="connection closed by the listener")
        received = b"".join(e[1] for e in raw if e[0] == "data")
        assert received == b"\r\nSIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"  # the 400 got out first
        assert server.journal.entries(lambda e: e[0] == "closed")[0][2].startswith("closed after bad input")
        conn = yield connect_tcp(phone, listener.address, clock=clock)
        conn.send(options("TCP"))
        _, resp, _ = yield phone.wait("msg")
        assert resp.status == 200
        yield conn.close()
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_tcp_split_and_pipelined_segments(clock):
    server = Recorder(clock)
    listener = listen_tcp(server, clock=clock)
    raw = Journal(clock)
    try:
        client = yield protocol.ClientCreator(reactor, _RawClient, raw).connectTCP(*listener.address)
        a, b = options("TCP").to_bytes(), options("TCP", method="REGISTER").to_bytes()
        client.transport.write(a[:10])
        client.transport.write(a[10:] + b[:30])
        client.transport.write(b[30:])
        yield server.wait("msg", count=2)
        assert [e[1].method for e in server.journal] == ["OPTIONS", "REGISTER"]
        client.transport.loseConnection()
        yield server.wait("closed")
    finally:
        yield listener.stop()


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def pki():
    return TestPKI()


@pytest_twisted.inlineCallbacks
def test_tls_round_trip(clock, pki, tmp_path):
    server, phone = Recorder(clock, echo=True), Recorder(clock, echo=True)
    listener = listen_tls(server, clock=clock, context_factory=pki.server_context())
    conn = yield connect_tls(phone, listener.address, context=pki.client_context("127.0.0.1"), clock=clock)
    try:
        conn.send(options("TLS", port=conn.local[1]))
        _, resp, src = yield phone.wait("msg")
        assert resp.status == 200 and src.transport == "tls"
        listener.send(options("TLS", method="INVITE"), conn.local)
        _, inv, _ = yield phone.wait("msg", count=2)
        assert inv.method == "INVITE"
        assert pki.export_ca(tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    finally:
        yield conn.close()
        yield listener.stop()


def test_tls_server_context_builds_without_deprecation_warnings(pki):
    # pyOpenSSL >= 24.3 deprecates its own X509/PKey: every TLS listener of `pytest suites/` printed two warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        context = pki.server_context().getContext()
    context.check_privatekey()  # the key that was loaded is the certificate's


def test_tls_server_context_on_a_pyopenssl_that_takes_only_its_own_objects(pki, monkeypatch):
    # before pyOpenSSL 24.3 a Context took only its X509 and PKey: the same chain and key, converted
    from sipharness.sipcore import tls

    monkeypatch.setattr(tls, "_TAKES_CRYPTOGRAPHY", [False])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (this pyOpenSSL deprecates them)
        context = pki.server_context().getContext()
    context.check_privatekey()


@pytest_twisted.inlineCallbacks
def test_tls_handshake_failure_with_untrusted_certificate(clock, pki):
    server, phone = Recorder(clock), Recorder(clock)
    listener = listen_tls(server, clock=clock, context_factory=pki.server_context())
    other_ca = TestPKI()
    try:
        with pytest.raises(SipTransportError, match="TLS handshake failed") as info:
            yield connect_tls(phone, listener.address, context=other_ca.client_context("127.0.0.1"), clock=clock)
        assert "certificate verify failed" in info.value.reason
        kind, peer, transport, reason = phone.journal[0]
        assert (kind, peer, transport) == ("error", listener.address, "tls") and reason == info.value.reason
        assert server.journal.entries(lambda e: e[0] == "msg") == []
    finally:
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_tls_refused(clock, pki):
    phone = Recorder(clock)
    listener = listen_tls(Recorder(clock), clock=clock, context_factory=pki.server_context())
    address = listener.address
    yield listener.close_refusing()
    with pytest.raises(SipTransportError, match="connection refused"):
        yield connect_tls(phone, address, context=pki.client_context(), clock=clock)


def test_listener_parameters_are_checked(clock):
    with pytest.raises(ValueError, match="context_factory"):
        listen_tls(Recorder(clock), clock=clock, context_factory=None)


@pytest_twisted.inlineCallbacks
def test_tls_listener_opens_a_verified_connection_to_a_peer(clock, pki):
    a_rec, b_rec = Recorder(clock), Recorder(clock, echo=True)
    a = listen_tls(a_rec, clock=clock, context_factory=pki.server_context(), client_context=pki.client_context())
    b = listen_tls(b_rec, clock=clock, context_factory=pki.server_context())
    try:
        a.send(options("TLS", method="NOTIFY"), b.address)
        _, resp, src = yield a_rec.wait("msg")
        assert resp.status == 200 and src.transport == "tls" and src.peer == b.address
        assert b_rec.journal[0][1].method == "NOTIFY"
    finally:
        yield a.stop()
        yield b.stop()
