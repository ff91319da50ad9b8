"""One unconnected UDP socket that learns ICMP errors per peer (sipcore.udpendpoint, IP_RECVERR).

What a phone needs of it (SPEC §3): an ICMP port unreachable from one target is reported at
once and names that target, while the socket keeps talking to the others (no datagram to the
next target is lost to the pending error), and a server's request to the phone's address
arrives on the same socket.
"""

from __future__ import annotations

import select
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.sipcore.clock import ScaledClock
from sipharness.sipcore.transport import listen_udp
from sipharness.sipcore.udpendpoint import RECVERR, open_udp
from tests.test_sipcore_transport import Recorder, options

pytestmark = pytest.mark.skipif(not RECVERR, reason="IP_RECVERR is Linux only")


@pytest.fixture
def clock():
    return ScaledClock(reactor, 1.0)


def _closed_port() -> tuple[str, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    address = s.getsockname()
    s.close()  # nobody listens there now: the kernel answers ICMP port unreachable
    return address


@pytest_twisted.inlineCallbacks
def test_icmp_from_one_peer_is_named_and_the_next_send_to_another_arrives(clock):
    server, phone = Recorder(clock, echo=True), Recorder(clock, echo=True)
    listener = listen_udp(server, clock=clock)
    dead = _closed_port()
    ep = open_udp(phone, clock=clock)
    try:
        assert ep.send(options(port=ep.local[1]), dead)
        _, peer, transport, reason = yield phone.wait("error")
        assert (peer, transport, reason) == (dead, "udp", "ICMP port unreachable")
        # failover from inside the error report is what a phone does: it must get through
        assert ep.send(options(port=ep.local[1]), listener.address)
        _, resp, src = yield phone.wait("msg")
        assert resp.status == 200 and src.peer == listener.address and src.local == ep.local
        # the server reaches the phone's address (its Contact) on the same socket
        listener.send(options(method="INVITE"), ep.local)
        _, inv, _ = yield phone.wait("msg", count=2)
        assert inv.method == "INVITE"
        _, answer, _ = yield server.wait("msg", count=2)
        assert answer.status == 200 and answer.cseq[1] == "INVITE"
        # a second ICMP error is reported again, for the same peer, once per datagram refused
        ep.send(options(port=ep.local[1]), dead)
        _, peer2, _, _ = yield phone.wait("error", count=2)
        assert peer2 == dead
        assert [e[0] for e in phone.journal].count("error") == 2
    finally:
        yield ep.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_an_error_pending_while_sending_elsewhere_loses_no_datagram(clock):
    """An ICMP error that arrives before the reactor read it fails the next send on the socket
    (whatever its destination); the endpoint sends that datagram again."""
    server, phone = Recorder(clock, echo=True), Recorder(clock)
    listener = listen_udp(server, clock=clock)
    dead = _closed_port()
    ep = open_udp(phone, clock=clock)
    try:
        ep.send_raw(b"OPTIONS sip:x SIP/2.0\r\n\r\n", dead)  # to a closed port: ICMP back
        # on loopback the ICMP is queued during the send itself: the error is pending now,
        # before the reactor had a chance to read it (poll() sees it without consuming it)
        poller = select.poll()
        poller.register(ep._port.fileno(), select.POLLERR)
        assert poller.poll(1000) and poller.poll(0)[0][1] & select.POLLERR
        for _ in range(3):
            assert ep.send(options(port=ep.local[1]), listener.address)
        yield server.wait("msg", count=3)
        _, peer, _, reason = yield phone.wait("error")
        assert peer == dead and reason == "ICMP port unreachable"
    finally:
        yield ep.close()
        yield listener.stop()


@pytest_twisted.inlineCallbacks
def test_closed_endpoint_says_so(clock):
    phone = Recorder(clock)
    ep = open_udp(phone, clock=clock)
    yield ep.close()
    assert ep.closed and ep.send(options(), ("127.0.0.1", 9)) is False
    assert phone.journal[0][1:] == (("127.0.0.1", 9), "udp", "socket closed")
