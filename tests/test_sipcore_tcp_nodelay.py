"""Regression: a second small message on a TCP connection is not held back by Nagle.

With Nagle on, an INVITE sent after one the server left unanswered waited ~40 ms for the
server's delayed ACK; the virtual clock (SPEC §9) saw an idle process and jumped past it,
so the server "never" got the request. Every SIP and DNS stream now sets TCP_NODELAY.
"""

import socket

import pytest_twisted
from twisted.internet import defer, reactor

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.sipcore import transport as T
from sipharness.sipcore.build import make_request
from sipharness.sipcore.clock import VirtualClock
from sipharness.sipcore.ids import new_branch
from sipharness.sipcore.via import Via


class _Handler:
    def sip_received(self, message, source):
        pass

    def sip_bad_input(self, raw, error, source):
        pass

    def sip_transport_error(self, peer, transport, reason):
        pass


def _request(method, conn, cseq, call_id):
    return make_request(method, "sip:2000@example.com", from_="<sip:a@example.com>;tag=1",
                        to="<sip:2000@example.com>", call_id=call_id, cseq=cseq,
                        via=Via("TCP", conn.local[0], conn.local[1], {"branch": new_branch()}),
                        contact="<sip:a@127.0.0.1;transport=tcp>")


@pytest_twisted.ensureDeferred
async def test_second_request_after_unanswered_one_arrives_before_a_jump():
    clock = VirtualClock(reactor)
    server = FakeSipServer("primary", clock=clock, recorder=Recorder(clock), host="127.0.0.10")
    await server.listen("tcp")
    conn = await T.connect_tcp(_Handler(), server.addresses["tcp"], clock=clock, local_host="127.0.0.1")
    try:
        sock = conn._proto.transport.getHandle()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        conn.send(_request("REGISTER", conn, 1, "r1"))
        await server.wait_for("REGISTER", direction="out", timeout=5)
        server.script.silent("INVITE")
        conn.send(_request("INVITE", conn, 1, "c1"))
        await server.wait_for("INVITE", timeout=5)
        later = defer.Deferred()
        clock.callLater(7.5, later.callback, None)
        await later
        server.script.clear()
        conn.send(_request("INVITE", conn, 2, "c2"))
        second = await server.wait_for("INVITE", count=2, timeout=10)
        assert second.time == 7.5
    finally:
        await conn.close()
        await server.stop()
        clock.stop()
