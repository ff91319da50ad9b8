"""DNS over TCP for the fake DNS (RFC 1035 §4.2.2, RFC 7766): framing and the bounds (issue 12).

A connection is closed after ``tcp_idle_timeout`` phone seconds with no complete query (the
timer does *not* restart on every byte: a client sending a byte a second is no longer
"active", which let a slowloris hold a connection for hours), a query must arrive whole
within ``tcp_query_timeout`` of its first byte, and at most ``tcp_max_connections`` are
open at once (more are closed as soon as they exist, with a rate-limited log line). The
answering is the server's (:meth:`FakeDNS.handle <fakes.dns.server.FakeDNS.handle>`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol as Interface

from twisted.internet.protocol import Factory, Protocol

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.transport import no_delay

__all__ = ["DNSOverTCP", "TCPFactory", "QueryServer"]

log = logging.getLogger("sipharness.fakes.dns")

_MAX_TCP_QUERY = 16384  # a length prefix above this is garbage, not a query


class QueryServer(Interface):
    """What the TCP adapter needs of its server (:class:`fakes.dns.server.FakeDNS`)."""

    name: str
    clock: Any
    stats: dict[str, int]
    tcp_idle_timeout: float
    tcp_query_timeout: float
    tcp_max_connections: int
    tcp_connections: set
    reject_log: Callable[..., None]

    def handle(self, data: bytes, transport: str, peer: tuple[str, int], send: Callable[[bytes], None]) -> Any: ...

    def reject(self, what: str) -> None: ...

    def adapter_error(self, error: BaseException, transport: str, peer: tuple[str, int]) -> None: ...


class DNSOverTCP(Protocol):
    """RFC 1035 §4.2.2 / RFC 7766 framing: 2-byte length, several queries per connection.

    Bounds: ``idle`` runs from the connect and from each complete query (a byte does not
    restart it); ``query`` runs from the first byte of a query until it is whole."""

    def __init__(self, server: QueryServer):
        self.server = server
        self.buf = bytearray()
        self.idle = None
        self.query = None
        self.last = 0.0  # when the last complete query arrived (or the connect)
        self.peer: tuple[str, int] = ("?", 0)
        self.closed = False

    def connectionMade(self) -> None:
        p = self.transport.getPeer()
        self.peer = (p.host, p.port)
        no_delay(self.transport)
        self.server.tcp_connections.add(self)
        self.last = self.server.clock.seconds()
        self.idle = self.server.clock.callLater(self.server.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        self.idle = None
        server = self.server
        quiet = server.clock.seconds() - self.last
        if quiet < server.tcp_idle_timeout - 1e-9:
            self.idle = server.clock.callLater(server.tcp_idle_timeout - quiet, self._idle)
            return
        state = f"with {len(self.buf)} byte(s) of an unfinished query" if self.buf else "idle"
        self.close(f"{state} for {server.tcp_idle_timeout:g} s (no complete query)")

    def _slow(self) -> None:
        self.query = None
        self.close(f"a query not whole {self.server.tcp_query_timeout:g} s after its first byte "
                   f"({len(self.buf)} byte(s) so far)", bad=True)

    def close(self, why: str, *, bad: bool = False, flush: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if bad:
            self.server.reject(f"tcp from {self.peer[0]}:{self.peer[1]}: {why}; connection closed")
        else:
            log.info("fake DNS %s: closing TCP connection from %s:%s: %s", self.server.name, self.peer[0], self.peer[1], why)
        self.server.stats["tcp_closed"] += 1
        if flush:
            self.transport.loseConnection()  # after the FORMERR already written
        else:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        server = self.server
        note_activity(server.clock)
        if self.closed:
            return
        try:
            self._data(data)
        except Exception as e:
            server.adapter_error(e, "tcp", self.peer)
            self.close("the fake failed on this stream")

    def _data(self, data: bytes) -> None:
        server = self.server
        self.buf += data
        while len(self.buf) >= 2:
            length = (self.buf[0] << 8) | self.buf[1]
            if length < 12 or length > _MAX_TCP_QUERY:
                self.close(f"length prefix {length} is no DNS query (12..{_MAX_TCP_QUERY} bytes)", bad=True)
                return
            if len(self.buf) < 2 + length:
                break
            msg = bytes(self.buf[2:2 + length])
            del self.buf[:2 + length]
            self.last = server.clock.seconds()
            self._cancel_query()
            if server.handle(msg, "tcp", self.peer, self._write) is not None:
                self.close("bad query on the stream (answered FORMERR if its id was readable)", flush=True)
                return
            if self.closed:
                return
        if self.buf and self.query is None:  # a query has begun: it must be whole in time
            self.query = server.clock.callLater(server.tcp_query_timeout, self._slow)

    def _cancel_query(self) -> None:
        if self.query is not None and self.query.active():
            self.query.cancel()
        self.query = None

    def _write(self, wire: bytes) -> None:
        if self.closed:
            raise ConnectionError("TCP connection already closed")
        self.transport.write(len(wire).to_bytes(2, "big") + wire)

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self.server.tcp_connections.discard(self)
        self._cancel_query()
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None


class _Refused(Protocol):
    """A connection over the cap: closed as soon as it exists."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class TCPFactory(Factory):
    def __init__(self, server: QueryServer):
        self.server = server

    def buildProtocol(self, addr) -> Protocol:
        server = self.server
        if len(server.tcp_connections) >= server.tcp_max_connections:
            server.stats["tcp_refused"] += 1
            server.reject_log("fake DNS %s: tcp connection from %s:%s refused: %d open (tcp_max_connections %d)",
                            server.name, getattr(addr, "host", "?"), getattr(addr, "port", 0), len(server.tcp_connections),
                            server.tcp_max_connections)
            return _Refused()
        return DNSOverTCP(server)
