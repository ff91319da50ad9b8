"""The client side (the phone): :func:`connect_udp` (a connected UDP socket,
:class:`UdpConnection`), :func:`connect_tcp` / :func:`connect_tls` (a Deferred firing with a
:class:`Connection` once connected, TLS once the handshake completed).

Why a module of its own: a client connection reports a failure twice, to the handler (where
failover logic looks) and to the Deferred (for callers sequencing on it), which the
``_Dialer`` owning the stream protocol does; a listener has neither need.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer

from sipharness.sipcore.parser import MAX_SIZE
from sipharness.sipcore.transport.handler import Address, SipTransportError, _addr, _call, _reactor
from sipharness.sipcore.transport.stream import _OutboundFactory, _StreamProtocol
from sipharness.sipcore.transport.udp import _ConnectedUdpPort, _UdpProtocol

__all__ = ["UdpConnection", "Connection", "connect_udp", "connect_tcp", "connect_tls"]


class UdpConnection:
    """A connected UDP socket to one peer (the phone's side); see :mod:`sipcore.transport`."""

    transport = "udp"

    def send(self, message: Any) -> bool:
        return self.send_raw(message.to_bytes())

    def __init__(self, handler: Any, peer: Address, local_host: str, clock: Any, reactor: Any,
                 max_size: int, local_port: int = 0):
        self.handler = handler
        self.peer: Address = (peer[0], int(peer[1]))
        self.clock = clock
        self._proto = _UdpProtocol(handler, clock, max_size)
        r = _reactor(reactor)
        if hasattr(r, "addReader"):  # a real posix reactor: use the ICMP-surviving port
            self._port = _ConnectedUdpPort(local_port, self._proto, local_host, max_size + 1, r)
            self._port.startListening()
        else:
            self._port = r.listenUDP(local_port, self._proto, interface=local_host, maxPacketSize=max_size + 1)
        self._proto.connected_peer = self.peer
        self._port.connect(self.peer[0], self.peer[1])
        self.local: Address = _addr(self._port.getHost())

    @property
    def closed(self) -> bool:
        return self._proto.closing

    def send_raw(self, data: bytes) -> bool:
        """Send; on a closed socket nothing is sent, the handler is told, False is returned."""
        if self._proto.closing:
            _call(self.handler, "sip_transport_error", self.peer, "udp", "socket closed")
            return False
        try:
            self._port.write(data)
        except OSError as e:
            _call(self.handler, "sip_transport_error", self.peer, "udp", f"send failed: {e}")
            return False
        return True

    def close(self) -> defer.Deferred:
        if self._proto.closing:
            return defer.succeed(None)
        self._proto.closing = True
        return defer.maybeDeferred(self._port.stopListening)

    def __repr__(self) -> str:
        return f"<UdpConnection {self.local[0]}:{self.local[1]} → {self.peer[0]}:{self.peer[1]}>"


class Connection:
    """A TCP or TLS connection the phone opened to a server (``send``, ``close``, ``local``)."""

    def __init__(self, proto: _StreamProtocol, transport: str):
        self._proto = proto
        self.transport = transport
        self.peer: Address = proto.peer
        self.local: Address = proto.local

    @property
    def closed(self) -> bool:
        return self._proto.closing or self._proto.closed.called

    def send(self, message: Any) -> bool:
        return self.send_raw(message.to_bytes())

    def send_raw(self, data: bytes) -> bool:
        """Send; on a closed connection nothing is sent, the handler is told, False is returned."""
        if self.closed:
            _call(self._proto.owner.handler, "sip_transport_error", self.peer, self.transport, "connection closed")
            return False
        self._proto.write(data)
        return True

    def close(self) -> defer.Deferred:
        """Close gracefully; the Deferred fires when the connection is gone."""
        if not self._proto.closed.called:
            self._proto.close()
        done: defer.Deferred = defer.Deferred()
        self._proto.closed.addBoth(lambda result: (done.callback(None), result)[1])
        return done

    def __repr__(self) -> str:
        return f"<Connection {self.transport} {self.local[0]}:{self.local[1]} → {self.peer[0]}:{self.peer[1]}>"


class _Dialer:
    """Owner of one outbound client connection: reports to the handler and the Deferred."""

    def __init__(self, handler: Any, peer: Address, name: str, clock: Any, max_size: int):
        self.handler, self.peer, self.name, self.clock, self.max_size = handler, peer, name, clock, max_size
        self.deferred: defer.Deferred = defer.Deferred()
        self.connection: Connection | None = None

    def _reply_path(self, conn: _StreamProtocol) -> Callable[[bytes], None]:
        return conn.write

    def _connection_ready(self, conn: _StreamProtocol) -> None:
        self.connection = Connection(conn, self.name)
        if not self.deferred.called:
            self.deferred.callback(self.connection)

    def _fail(self, reason: str) -> None:
        _call(self.handler, "sip_transport_error", self.peer, self.name, reason)
        if not self.deferred.called:
            self.deferred.errback(SipTransportError(self.peer, self.name, reason))

    def _connection_lost(self, conn: _StreamProtocol, reason: str) -> None:
        if conn.closing and conn.failed_reason is None:
            return  # closed on purpose by Connection.close()
        self._fail(reason)

    def _connect_failed(self, factory: _OutboundFactory, reason: str) -> None:
        self._fail(reason)


def connect_udp(handler: Any, peer: Address, *, local_host: str = "127.0.0.1", local_port: int = 0, clock: Any,
                reactor: Any = None, max_size: int = MAX_SIZE) -> UdpConnection:
    """A connected UDP socket to ``peer`` (an IP literal); ICMP unreachable → handler error."""
    return UdpConnection(handler, peer, local_host, clock, reactor, max_size, local_port)


def connect_tcp(handler: Any, peer: Address, *, local_host: str | None = None, clock: Any, reactor: Any = None,
                max_size: int = MAX_SIZE) -> defer.Deferred:
    """Open TCP to ``peer``; Deferred[Connection]; failures also go to the handler."""
    peer = (peer[0], int(peer[1]))
    dialer = _Dialer(handler, peer, "tcp", clock, max_size)
    factory = _OutboundFactory(dialer, "tcp", peer)
    bind = (local_host, 0) if local_host else None
    _reactor(reactor).connectTCP(peer[0], peer[1], factory, bindAddress=bind)
    return dialer.deferred


def connect_tls(handler: Any, peer: Address, *, context: Any, local_host: str | None = None, clock: Any,
                reactor: Any = None, max_size: int = MAX_SIZE) -> defer.Deferred:
    """Open TLS to ``peer`` with ``context`` (e.g. ``TestPKI().client_context()``).

    The Deferred fires once the handshake completed; a refused connect or a failed handshake
    (untrusted certificate, wrong name) errbacks it and goes to ``handler.sip_transport_error``.
    """
    peer = (peer[0], int(peer[1]))
    dialer = _Dialer(handler, peer, "tls", clock, max_size)
    factory = _OutboundFactory(dialer, "tls", peer)
    bind = (local_host, 0) if local_host else None
    _reactor(reactor).connectSSL(peer[0], peer[1], factory, context, bindAddress=bind)
    return dialer.deferred
