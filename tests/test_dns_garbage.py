"""Bad input: the server logs it, answers FORMERR where it can read an id, closes bad TCP
streams (and half-open ones on the injected clock) and keeps serving."""

import logging
import random
import struct

import pytest
import pytest_twisted
from dnslib import QTYPE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol

from sipharness.fakes.dns import FakeDNS
from sipharness.sipcore.clock import VirtualClock
from tests.test_dns_zone import seed_zone

D = "yealink.pbx.com"


def good_query(qid: int, name: str = f"server1.{D}") -> bytes:
    return bytes(DNSRecord(DNSHeader(id=qid, rd=0), q=DNSQuestion(name, QTYPE.A)).pack())


@pytest.fixture
def fake():
    server = FakeDNS([seed_zone()])
    server.start()
    yield server
    pytest_twisted.blockon(server.stop())


class _UDPClient(DatagramProtocol):
    def __init__(self):
        self.waiting: dict[int, defer.Deferred] = {}
        self.formerr = 0

    def datagramReceived(self, data, addr):
        qid, flags = struct.unpack("!HH", data[:4])
        if flags & 0xF == 1:
            self.formerr += 1
        d = self.waiting.get(qid)
        if d is not None and not d.called and flags & 0xF == 0:
            try:
                reply = DNSRecord.parse(data)
            except Exception:
                return
            if str(reply.q.qname) == f"server1.{D}." and reply.rr:
                d.callback(str(reply.rr[0].rdata))


@pytest_twisted.inlineCallbacks
def test_ten_thousand_random_udp_packets_then_a_query_is_answered(fake, caplog):
    rng = random.Random(20260101)
    client = _UDPClient()
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    caplog.set_level(logging.WARNING, logger="sipharness.fakes.dns")
    try:
        sent = 0
        for burst in range(100):  # bounded bursts: never more than a socket buffer's worth in flight
            for _ in range(100):
                size = rng.choice([rng.randrange(0, 12), rng.randrange(12, 40), rng.randrange(40, 600)])
                pkt = bytearray(rng.getrandbits(8) for _ in range(size))
                if size >= 4 and rng.random() < 0.5:
                    pkt[2] &= 0x07  # QR=0, opcode QUERY: more of them reach the question parser
                    pkt[4:6] = b"\x00\x01"[: len(pkt) - 4] if size >= 6 else pkt[4:6]
                port.write(bytes(pkt), fake.address)
                sent += 1
            qid = 60000 + burst
            d = client.waiting[qid] = defer.Deferred()
            d.addTimeout(5, reactor)
            port.write(good_query(qid), fake.address)
            assert (yield d) == "62.10.1.10"
        assert sent == 10_000
        assert fake.stats["bad"] > 5_000 and client.formerr > 1_000
        assert fake.stats["answers"] >= 100
        assert any("bad input" in r.getMessage() for r in caplog.records)  # logged, not printed
    finally:
        yield port.stopListening()


class _TCPClient(Protocol):
    def __init__(self):
        self.data = b""
        self.closed = defer.Deferred()
        self.frames: list[bytes] = []
        self.frame_waiters: list[tuple[int, defer.Deferred]] = []

    def dataReceived(self, data):
        self.data += data
        while len(self.data) >= 2 and len(self.data) >= 2 + int.from_bytes(self.data[:2], "big"):
            n = int.from_bytes(self.data[:2], "big")
            self.frames.append(self.data[2:2 + n])
            self.data = self.data[2 + n:]
        for n, d in list(self.frame_waiters):
            if len(self.frames) >= n and not d.called:
                d.callback(self.frames[:n])

    def wait_frames(self, n):
        d = defer.Deferred()
        self.frame_waiters.append((n, d))
        self.dataReceived(b"")
        return d.addTimeout(5, reactor)

    def connectionLost(self, reason=None):
        if not self.closed.called:
            self.closed.callback(None)


def connect(fake):
    return connectProtocol(TCP4ClientEndpoint(reactor, *fake.address), _TCPClient())


def frame(msg: bytes) -> bytes:
    return len(msg).to_bytes(2, "big") + msg


@pytest_twisted.inlineCallbacks
def test_tcp_pipelined_and_split_queries_are_answered_on_one_connection(fake):
    c = yield connect(fake)
    both = frame(good_query(1)) + frame(good_query(2, f"server2.{D}"))
    c.transport.write(both[:5])
    c.transport.write(both[5:31])
    c.transport.write(both[31:])
    frames = yield c.wait_frames(2)
    assert [DNSRecord.parse(f).header.id for f in frames] == [1, 2]
    assert [str(DNSRecord.parse(f).rr[0].rdata) for f in frames] == ["62.10.1.10", "62.10.1.20"]
    c.transport.loseConnection()
    yield c.closed


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("stream, expect_formerr", [
    (b"\xff\xff" + b"x" * 100, False),  # oversized length prefix
    (b"\x00\x05hello", False),  # shorter than a DNS header
    (frame(struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"), True),  # pointer loop
    (frame(struct.pack("!HHHHHH", 78, 0x0100, 1, 0, 0, 0) + b"\x3fabc"), True),  # label past the end
])
def test_bad_tcp_streams_are_closed_and_the_server_keeps_serving(fake, stream, expect_formerr):
    c = yield connect(fake)
    c.transport.write(stream)
    yield c.closed.addTimeout(5, reactor)
    if expect_formerr:
        assert len(c.frames) == 1 and DNSRecord.parse(c.frames[0]).header.rcode == 1
    else:
        assert c.frames == []
    assert fake.stats["bad"] == 1 and fake.stats["tcp_closed"] == 1
    c2 = yield connect(fake)
    c2.transport.write(frame(good_query(5)))
    (answer,) = yield c2.wait_frames(1)
    assert str(DNSRecord.parse(answer).rr[0].rdata) == "62.10.1.10"
    c2.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_half_open_tcp_is_closed_after_the_query_timeout_in_phone_seconds():
    clock = VirtualClock(reactor)
    server = FakeDNS([seed_zone()], clock=clock, tcp_idle_timeout=30.0, tcp_query_timeout=7.0)
    server.start()
    try:
        c = yield connect(server)
        c.transport.write(frame(good_query(9))[:7])  # half a query, then silence
        yield c.closed.addTimeout(5, reactor)
        assert clock.seconds() == 7.0 and server.stats["tcp_closed"] == 1
    finally:
        clock.stop()
        yield server.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), transport=st.sampled_from(["udp", "tcp"]),
       fault=st.sampled_from([None, "drop", "servfail", "refuse", "nxdomain", "truncate", "tcp_only"]))
def test_server_query_path_survives_any_bytes_with_any_fault(data, transport, fault):
    """The server's own path (decode, faults, record, send) on arbitrary bytes, no sockets."""
    server = FakeDNS([seed_zone()], clock=reactor)
    if fault:
        getattr(server.faults, fault)()
    sent: list[bytes] = []
    server.handle(data, transport, ("127.0.0.1", 1), sent.append)
    server.handle(good_query(3), transport, ("127.0.0.1", 1), sent.append)
    assert len(sent) <= 2
    outs = server.recorder.dns(direction="out")
    assert outs and outs[-1].name == f"server1.{D}"
    if fault is None:
        assert DNSRecord.parse(sent[-1]).header.id == 3 and outs[-1].rcode == 0
