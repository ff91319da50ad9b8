"""Worker processes sharing one UDP port (sipcore.reuseport): a client always meets the same
worker, chosen by its source port, so a registrar's nonces and bindings are where its next
request arrives. Two listeners of one process stand for two workers here."""

from __future__ import annotations

import socket
import sys

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.sipcore.clock import ScaledClock
from sipharness.sipcore.transport import listen_udp
from tests.test_sipcore_transport import Recorder, options

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT steering is Linux only")


def _client_on(port_parity: int) -> socket.socket:
    """A UDP socket on 127.0.0.1 whose port has the given parity."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if s.getsockname()[1] % 2 == port_parity:
            return s
        s.close()
    raise RuntimeError("no port of that parity")


@pytest_twisted.inlineCallbacks
def test_each_client_always_meets_the_worker_its_source_port_names():
    clock = ScaledClock(reactor, 1.0)
    first, second = Recorder(clock, echo=True), Recorder(clock, echo=True)
    w0 = listen_udp(first, clock=clock, reuse_port=2)
    w1 = listen_udp(second, clock=clock, port=w0.address[1], reuse_port=2)  # joins second: worker 1
    clients = {parity: _client_on(parity) for parity in (0, 1)}
    try:
        assert w1.address == w0.address and w0._port_obj.steered and w1._port_obj.steered
        for _ in range(3):
            for parity, c in clients.items():
                c.sendto(options(port=c.getsockname()[1]).to_bytes(), w0.address)
        yield first.wait("msg", count=3)
        yield second.wait("msg", count=3)
        assert {src.peer[1] % 2 for _, _, src in (e for e in first.journal if e[0] == "msg")} == {0}
        assert {src.peer[1] % 2 for _, _, src in (e for e in second.journal if e[0] == "msg")} == {1}
    finally:
        for c in clients.values():
            c.close()
        yield w0.stop()
        yield w1.stop()


def test_reuse_port_is_for_udp_and_a_count_of_workers():
    clock = ScaledClock(reactor, 1.0)
    with pytest.raises(ValueError, match="reuse_port"):
        listen_udp(Recorder(clock), clock=clock, reuse_port=0)
