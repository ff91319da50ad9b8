"""The server side: a :class:`Listener` (a UDP socket or a TCP/TLS port serving one handler)
and :func:`listen_udp`, :func:`listen_tcp`, :func:`listen_tls`.

Why a module of its own: a listener is what the fakes are built on, and it is where going
down and coming back live (``close_refusing()`` / ``reopen()``: UDP closes its socket so
the kernel answers ICMP port unreachable, TCP/TLS stop listening and reset the open
connections so a connect gets RST), with the stream bounds a server needs against hostile
clients (``max_connections``, ``header_timeout``, ``idle_timeout``).
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet import defer, protocol

from sipharness.sipcore.parser import MAX_SIZE
from sipharness.sipcore.transport.handler import Address, _addr, _call, _log, _reactor
from sipharness.sipcore.transport.stream import _OutboundFactory, _StreamProtocol
from sipharness.sipcore.transport.udp import _UdpProtocol

__all__ = ["Listener", "listen_udp", "listen_tcp", "listen_tls"]


class _Refused(protocol.Protocol):
    """A connection over the listener's cap: closed as soon as it exists (nothing kept)."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class _ListenerFactory(protocol.Factory):
    def __init__(self, listener: "Listener"):
        self.listener = listener

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        lst = self.listener
        if lst.max_connections is not None and lst.accepted >= lst.max_connections:
            peer = (getattr(addr, "host", "?"), getattr(addr, "port", 0))
            _call(lst.handler, "sip_connection_limited", peer, lst.transport,
                  f"refused: {lst.accepted} connections already open (max_connections {lst.max_connections})")
            return _Refused()
        lst.accepted += 1
        return _StreamProtocol(lst, lst.transport, outbound=False)


class Listener:
    """A listening UDP socket or TCP/TLS port serving one handler (fakes; the phone's Contact).

    ``send(message, peer)``: UDP to ``peer``; TCP/TLS over a connection from/to that peer if
    one is open, else over a new one (failures go to ``handler.sip_transport_error``).
    """

    def __init__(self, transport: str, handler: Any, host: str, port: int, clock: Any, reactor: Any,
                 max_size: int, context_factory: Any = None, client_context: Any = None,
                 buffer_size: int | None = None, *, idle_timeout: float | None = None,
                 header_timeout: float | None = None, max_connections: int | None = None,
                 reuse_port: int | None = None):
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport must be 'udp', 'tcp' or 'tls', got {transport!r}")
        for name, value in (("idle_timeout", idle_timeout), ("header_timeout", header_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {value!r}")
        if max_connections is not None and (not isinstance(max_connections, int) or max_connections < 1):
            raise ValueError(f"max_connections must be an int >= 1 or None, got {max_connections!r}")
        if reuse_port is not None and (transport != "udp" or not isinstance(reuse_port, int) or reuse_port < 1):
            raise ValueError(f"reuse_port must be a number of workers >= 1, for UDP only; got {reuse_port!r}")
        self.reuse_port = reuse_port
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.accepted = 0  # connections accepted and not yet closed (the cap counts these)
        if transport == "tls" and context_factory is None:
            raise ValueError("listen_tls needs context_factory (e.g. sipcore.tls.TestPKI().server_context())")
        self.transport = transport
        self.handler = handler
        self.clock = clock
        self.max_size = max_size
        self._reactor = _reactor(reactor)
        self._context_factory = context_factory
        self._client_context = client_context  # TLS: for connections this listener opens
        self._host = host
        self._buffer_size = buffer_size  # UDP: SO_RCVBUF / SO_SNDBUF asked for at every open
        self._port_obj: Any = None
        self._udp: _UdpProtocol | None = None
        self.connections: dict[Address, _StreamProtocol] = {}  # by peer, open or opening
        self._open(port)
        self.address: Address = _addr(self._port_obj.getHost())

    # -- listening
    def _open(self, port: int) -> None:
        r = self._reactor
        if self.transport == "udp":
            self._udp = _UdpProtocol(self.handler, self.clock, self.max_size)
            if self.reuse_port:
                from sipharness.sipcore.reuseport import ReusePortUdp

                self._port_obj = ReusePortUdp(port, self._udp, self._host, self.max_size + 1, r, self.reuse_port)
                self._port_obj.startListening()
            else:
                self._port_obj = r.listenUDP(port, self._udp, interface=self._host, maxPacketSize=self.max_size + 1)
            if self._buffer_size:
                _set_buffers(self._port_obj, self._buffer_size)
        elif self.transport == "tcp":
            self._port_obj = r.listenTCP(port, _ListenerFactory(self), interface=self._host)
        else:
            self._port_obj = r.listenSSL(port, _ListenerFactory(self), self._context_factory, interface=self._host)

    @property
    def listening(self) -> bool:
        return self._port_obj is not None

    def close_refusing(self) -> defer.Deferred:
        """Go down as *refused*: UDP → ICMP port unreachable, TCP/TLS → RST on connect.

        Open TCP/TLS connections are reset too (a crashed server). ``reopen()`` comes back up on
        the same port.
        """
        for conn in list(self.connections.values()):
            conn.close(abort=True)
        return self._stop_port()

    def reopen(self) -> None:
        """Listen again on the same address after :meth:`close_refusing`."""
        if self._port_obj is not None:
            raise ValueError(f"{self.transport.upper()} listener {self.address[0]}:{self.address[1]} is already up")
        self._open(self.address[1])

    def stop(self) -> defer.Deferred:
        """Stop for good: close connections gracefully and the socket."""
        closing = []
        for conn in list(self.connections.values()):
            closing.append(conn.closed)
            conn.close()
        return defer.gatherResults(closing + [self._stop_port()], consumeErrors=True)

    def _stop_port(self) -> defer.Deferred:
        port, self._port_obj = self._port_obj, None
        if self._udp is not None:
            self._udp.closing = True
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    # -- sending
    def send(self, message: Any, peer: Address) -> bool:
        """Send to ``peer``; False (nothing sent) while the listener is down."""
        return self.send_raw(message.to_bytes(), peer)

    def send_raw(self, data: bytes, peer: Address) -> bool:
        peer = (peer[0], int(peer[1]))
        if self._port_obj is None:
            # a fake that is down sends nothing (a pending retransmission timer may still fire)
            _log.debug("{listener!r} is down: not sending {n} bytes to {peer}", listener=self, n=len(data), peer=peer)
            return False
        if self.transport == "udp":
            self._udp._write_to(data, peer)
            return True
        conn = self.connections.get(peer)
        if conn is None or conn.closing:
            conn = self._connect(peer)
        conn.write(data)
        return True

    def _connect(self, peer: Address) -> _StreamProtocol:
        factory = _OutboundFactory(self, self.transport, peer)
        proto = factory.buildProtocol(None)
        factory.buildProtocol = lambda addr: proto  # the protocol exists before the connect
        proto._factory = factory
        proto.peer = peer
        self.connections[peer] = proto
        if self.transport == "tcp":
            self._reactor.connectTCP(peer[0], peer[1], factory, bindAddress=(self._host, 0))
        else:
            from twisted.internet.ssl import CertificateOptions

            creator = self._client_context or CertificateOptions()
            self._reactor.connectSSL(peer[0], peer[1], factory, creator, bindAddress=(self._host, 0))
        return proto

    # -- callbacks from protocols
    def _reply_path(self, conn: _StreamProtocol) -> Callable[[bytes], None]:
        peer = conn.peer

        def reply(data: bytes) -> None:
            # RFC 3261 §18.2.2: if the connection is gone, open a new one to the peer
            if conn.closing or conn.transport is None or not conn.transport.connected:
                self.send_raw(data, peer)
            else:
                conn.write(data)

        return reply

    def _connection_made(self, conn: _StreamProtocol) -> None:
        self.connections.setdefault(conn.peer, conn)  # so close_refusing also resets handshaking ones

    def _connection_ready(self, conn: _StreamProtocol) -> None:
        self.connections[conn.peer] = conn

    def _connection_lost(self, conn: _StreamProtocol, reason: str) -> None:
        if not conn.outbound:
            self.accepted -= 1
        if self.connections.get(conn.peer) is conn:
            del self.connections[conn.peer]
        if conn.ready:
            _call(self.handler, "sip_connection_closed", conn.source(), reason)
        elif conn.outbound and not conn.closing:
            _call(self.handler, "sip_transport_error", conn.peer, self.transport, reason)

    def _connect_failed(self, factory: _OutboundFactory, reason: str) -> None:
        proto = factory.protocol_instance
        if proto is not None and self.connections.get(factory.peer) is proto:
            del self.connections[factory.peer]
        _call(self.handler, "sip_transport_error", factory.peer, self.transport, reason)

    def __repr__(self) -> str:
        state = "up" if self.listening else "down"
        return f"<Listener {self.transport} {self.address[0]}:{self.address[1]} {state}>"


def _set_buffers(port: Any, size: int) -> None:
    """Ask the kernel for ``size``-byte receive and send buffers (capped at net.core.rmem_max /
    wmem_max); a reactor without real sockets (a test double) is left alone."""
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass


def listen_udp(handler: Any, *, host: str = "127.0.0.1", port: int = 0, clock: Any, reactor: Any = None,
               max_size: int = MAX_SIZE, buffer_size: int | None = None, reuse_port: int | None = None) -> Listener:
    """Serve SIP over UDP on ``host:port`` (0 = any free port; see ``.address``).

    ``buffer_size``: socket buffers to ask for (bytes). The default ~200 KB queues ~150
    datagrams; a server under load (a benchmarked fake registrar) wants megabytes so that a
    pause of a few milliseconds does not make the kernel drop requests.
    ``reuse_port``: the number of worker processes sharing ``port`` (SO_REUSEPORT; a client
    always meets the same one, see :mod:`sipcore.reuseport`); a real reactor is needed.
    """
    return Listener("udp", handler, host, port, clock, reactor, max_size, buffer_size=buffer_size,
                    reuse_port=reuse_port)


def listen_tcp(handler: Any, *, host: str = "127.0.0.1", port: int = 0, clock: Any, reactor: Any = None,
               max_size: int = MAX_SIZE, idle_timeout: float | None = None, header_timeout: float | None = None,
               max_connections: int | None = None) -> Listener:
    """Serve SIP over TCP on ``host:port``.

    Bounds (None: none): ``header_timeout`` (seconds on ``clock``): a message must arrive
    whole within it of its first byte, the first one within it of the connect (a slowloris
    sending a byte a second is cut off); ``idle_timeout``: a connection with no message nor
    keep-alive for that long is closed; ``max_connections``: accepted connections beyond it
    are closed at once. Each cut or refusal goes to ``handler.sip_connection_limited``.
    """
    return Listener("tcp", handler, host, port, clock, reactor, max_size, idle_timeout=idle_timeout,
                    header_timeout=header_timeout, max_connections=max_connections)


def listen_tls(handler: Any, *, context_factory: Any, host: str = "127.0.0.1", port: int = 0, clock: Any,
               reactor: Any = None, max_size: int = MAX_SIZE, client_context: Any = None,
               idle_timeout: float | None = None, header_timeout: float | None = None,
               max_connections: int | None = None) -> Listener:
    """Serve SIP over TLS on ``host:port`` with ``context_factory`` (e.g. ``TestPKI().server_context()``).

    ``client_context`` is used when ``send`` must open a connection itself (no connection from
    that peer is open); without it such a connection does not verify the peer. Bounds: as
    :func:`listen_tcp` (the header deadline of the first message includes the handshake).
    """
    return Listener("tls", handler, host, port, clock, reactor, max_size, context_factory, client_context,
                    idle_timeout=idle_timeout, header_timeout=header_timeout, max_connections=max_connections)
