"""Transactions over real loopback sockets on the SPEC §9 virtual clock: exact phone times.

What the fakes and the phone do, in miniature: a client transaction (TimerDriver on a
VirtualClock) sends over a transport to a listener that stays silent, answers 100, or is
down. The listener stamps each request with the virtual time, so the SPEC §3 schedule is
asserted to the tick over real sockets.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.clock import VirtualClock
from sipharness.sipcore.ids import new_branch
from sipharness.sipcore.journal import Journal
from sipharness.sipcore.transaction import (
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    TimedOut,
    TimerDriver,
    TransactionTable,
    TransportFailed,
)
from sipharness.sipcore.transport import connect_tcp, connect_udp, listen_tcp, listen_udp


@pytest.fixture
def clock():
    c = VirtualClock(reactor)
    c.advance(1000.0)  # phone time does not start at 0: offsets are what count
    yield c
    c.stop()


class Server:
    """A fake in miniature: records (time, method); ``mode`` silent | trying | ok."""

    def __init__(self, clock, mode):
        self.clock, self.mode = clock, mode
        self.seen = Journal(clock)
        self.table = TransactionTable()

    def sip_received(self, message, source):
        now = self.clock.seconds()
        self.seen.append((now, message.method if message.is_request else message.status))
        if not message.is_request or self.mode == "silent":
            return
        tx = self.table.match_request(message)
        if tx is not None:
            events = tx.receive(message, now)
        else:
            tx = ServerTransaction(message, reliable=source.transport != "udp")
            self.table.add(tx)
            status = 100 if self.mode == "trying" else 200
            events = tx.respond(make_response(message, status, to_tag="t"), now)
        for e in events:
            if isinstance(e, Send):
                source.send(e.message)

    def sip_bad_input(self, raw, error, source):
        self.seen.append((self.clock.seconds(), "bad"))

    def sip_transport_error(self, peer, transport, reason):
        pass


class Phone:
    """Runs one client transaction over a connection, logging (time, event)."""

    def __init__(self, clock):
        self.clock = clock
        self.log = Journal(clock)
        self.driver = TimerDriver(clock)
        self.tx = None
        self.conn = None

    def start(self, conn, request, **kw):
        self.conn = conn
        self.tx = ClientTransaction(request, reliable=conn.transport != "udp", **kw)
        self.driver.watch(self.tx, self.handle)
        self.handle(self.tx.start(self.clock.seconds()))
        self.driver.poke(self.tx)
        self.t0 = self.clock.seconds()

    def handle(self, events):
        for e in events:
            if isinstance(e, Send):
                self.conn.send(e.message)
            self.log.append((self.clock.seconds(), e))

    # handler
    def sip_received(self, message, source):
        if self.tx is not None:
            self.handle(self.tx.receive(message, self.clock.seconds()))
            self.driver.poke(self.tx)

    def sip_transport_error(self, peer, transport, reason):
        if self.tx is not None:
            self.handle(self.tx.transport_error(reason, self.clock.seconds()))
            self.driver.poke(self.tx)

    def sip_bad_input(self, raw, error, source):
        pass

    def ended(self):
        return self.log.wait_for(lambda e: isinstance(e[1], (TimedOut, TransportFailed)), 60.0,
                                 what="the transaction to give up")


def request(method, transport, port):
    return make_request(
        method, "sip:bob@127.0.0.1", from_="<sip:alice@127.0.0.1>;tag=a1", to="<sip:bob@127.0.0.1>",
        call_id="v1@127.0.0.1", cseq=1, via=f"SIP/2.0/{transport} 127.0.0.1:{port};branch={new_branch()}",
    )


@pytest_twisted.inlineCallbacks
def test_udp_invite_retry_counts_3_to_a_silent_server(clock):
    server, phone = Server(clock, "silent"), Phone(clock)
    listener = listen_udp(server, clock=clock)
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        phone.start(conn, request("INVITE", "UDP", conn.local[1]), max_sends=4)
        t_end, ev = yield phone.ended()
        assert [t - phone.t0 for t, _ in server.seen] == [0.0, 0.5, 1.5, 3.5]
        assert t_end - phone.t0 == 7.5
        assert ev == TimedOut("no response after 4 sends in 7.50 s (retry_counts 3)")
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_udp_register_retry_counts_10_fits_11_sends(clock):
    server, phone = Server(clock, "silent"), Phone(clock)
    listener = listen_udp(server, clock=clock)
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        phone.start(conn, request("REGISTER", "UDP", conn.local[1]), max_sends=11)
        t_end, _ = yield phone.ended()
        assert [t - phone.t0 for t, _ in server.seen] == [0, .5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        assert t_end - phone.t0 == 32.0
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_udp_trying_stops_the_window_then_timer_b_does_not_apply(clock):
    server, phone = Server(clock, "trying"), Phone(clock)
    listener = listen_udp(server, clock=clock)
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        phone.start(conn, request("INVITE", "UDP", conn.local[1]), max_sends=4)
        yield phone.log.wait_for(lambda e: isinstance(e[1], Deliver), 10.0, what="100 Trying")
        assert phone.tx.state == "proceeding" and phone.tx.deadline is None
        assert [m for _, m in server.seen] == ["INVITE"]
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_udp_icmp_unreachable_fails_the_transaction_at_once(clock):
    server, phone = Server(clock, "silent"), Phone(clock)
    listener = listen_udp(server, clock=clock)
    yield listener.close_refusing()
    conn = connect_udp(phone, listener.address, clock=clock)
    try:
        phone.start(conn, request("REGISTER", "UDP", conn.local[1]), max_sends=4)
        t_end, ev = yield phone.ended()
        assert ev == TransportFailed("ICMP port unreachable") and t_end == phone.t0
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_tcp_silent_server_same_window_as_udp(clock):
    server, phone = Server(clock, "silent"), Phone(clock)
    listener = listen_tcp(server, clock=clock)
    conn = yield connect_tcp(phone, listener.address, clock=clock)
    try:
        phone.start(conn, request("INVITE", "TCP", conn.local[1]), max_sends=4)
        t_end, ev = yield phone.ended()
        assert [t - phone.t0 for t, _ in server.seen] == [0.0]
        assert t_end - phone.t0 == 7.5
        assert ev.reason == "no response after 1 send in 7.50 s (reliable transport, retry_counts 3)"
    finally:
        yield conn.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_tcp_listener_opens_a_connection_to_a_peer_listener(clock):
    """A fake reaching the phone's TCP Contact when no connection is open (§18.2.2)."""
    server, phone_side = Server(clock, "silent"), Server(clock, "ok")
    a = listen_tcp(server, clock=clock)
    b = listen_tcp(phone_side, clock=clock, host="127.0.0.2")
    try:
        a.send(request("OPTIONS", "TCP", a.address[1]), b.address)
        yield server.seen.wait_for(lambda e: e[1] == 200, 10.0, what="200 back over the new connection")
        assert [m for _, m in phone_side.seen] == ["OPTIONS"]
        assert list(a.connections) == [b.address]
    finally:
        yield a.stop()
        yield b.stop()
