"""Thin Twisted adapters that move SIP messages over UDP, TCP and TLS, for fakes and phone alike.

The protocol logic lives elsewhere (sans-I/O: :mod:`sipcore.parser`, :mod:`sipcore.framing`,
:mod:`sipcore.transaction`); this module only turns sockets into calls on a duck-typed
*handler* and back. It decides no policy: a malformed packet is reported, never answered.

Handler (any object with these methods):

- ``sip_received(message, source)`` — a parsed :class:`~sipcore.message.Request` or
  ``Response``; ``source.send(message)`` replies on the same socket / connection.
- ``sip_bad_input(raw, error, source)`` — bytes that do not parse (``error`` is a
  ``SipParseError``). The handler may answer 400 through ``source`` when it can form one.
  On TCP/TLS the connection is closed right after (RFC 3261 §18.3: framing is lost).
- ``sip_transport_error(peer, transport, reason)`` — a send or connection failed:
  ``"ICMP port unreachable"``, ``"connection refused"``, ``"connection reset by peer"``,
  ``"connection closed by peer"``, ``"TLS handshake failed: certificate verify failed"``.
- optional ``sip_connection_closed(source, reason)`` — a TCP/TLS connection accepted by a
  listener went away (fakes record it; nothing else needs it).
- optional ``sip_connection_limited(peer, transport, reason)`` — a bound of the listener
  refused or cut a connection (over ``max_connections``, past ``header_timeout`` or
  ``idle_timeout``): the fakes log it, rate-limited.
- optional ``sip_handler_error(error, where)`` — one of the methods above raised. Without
  it the error goes to Twisted's log; with it the handler keeps it (the fakes keep every
  serving error: a harness error, SPEC §10). Either way the transport keeps serving.

Every datagram and every TCP segment received calls :func:`sipcore.clock.note_activity`
first, so the SPEC §9 virtual clock does not jump while a reply is being handled.

Server side: :func:`listen_udp`, :func:`listen_tcp`, :func:`listen_tls` return a
:class:`Listener` (``address``, ``send(message, peer)``, ``stop()``, and ``close_refusing()``
/ ``reopen()`` so a fake can go down as *refused* and come back on the same port: UDP closes
its socket, so the kernel answers ICMP port unreachable; TCP/TLS stop listening and reset the
open connections, so a connect gets RST).

Client side (the phone): :func:`connect_udp` makes a **connected** UDP socket. Linux reports
an ICMP port unreachable to user space only on a connected socket (or with ``IP_RECVERR``,
which Twisted does not read); Twisted's connected UDP port then calls ``connectionRefused()``,
surfaced here as ``sip_transport_error(peer, "udp", "ICMP port unreachable")`` (SPEC §3:
ICMP gives the target up at once). Such a socket only receives from that peer, which is all a
phone needs per server (the server's INVITE to the phone's Contact comes from the same
address). :func:`connect_tcp` / :func:`connect_tls` return a ``Deferred`` firing with a
:class:`Connection` once connected (TLS: once the handshake completed). A failure is reported
to **both** ``handler.sip_transport_error`` (the one place failover logic needs to look) and
the Deferred's errback (a :class:`SipTransportError`, for callers sequencing on it; add an
errback). Requests the server sends over that connection reach ``sip_received`` with a
``Source`` that replies on it.

Connect timeouts are not on the injected clock: on loopback a connect is answered (accepted
or refused) at once, and "a connection that never answers" (SPEC §3) is a silent server,
timed by the transaction's window on the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import errno
import re
import socket

from twisted.internet import defer, error, protocol, udp
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from zope.interface import implementer

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.framing import StreamFramer
from sipharness.sipcore.parser import MAX_SIZE, is_keepalive, parse
from sipharness.sipcore.uri import SipParseError

__all__ = ["no_delay", 
    "Source",
    "Listener",
    "Connection",
    "UdpConnection",
    "SipTransportError",
    "listen_udp",
    "listen_tcp",
    "listen_tls",
    "connect_udp",
    "connect_tcp",
    "connect_tls",
    "describe_failure",
]


def no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off on a stream (SIP signalling wants each message out at once).

    With Nagle on, a second small message on a connection waits for the ACK of the first,
    which the peer delays by ~40 ms when it has nothing to send back (a silent server).
    Besides slowing signalling, that idle gap lets the virtual clock (SPEC §9) jump over a
    message still in flight. TLS transports pass the call down to their TCP transport.
    """
    for t in (transport, getattr(transport, "transport", None)):
        setter = getattr(t, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except OSError:  # already closed
                pass
            return

_log = Logger(namespace="sipharness.sipcore.transport")

Address = tuple[str, int]


class SipTransportError(Exception):
    """A connection could not be made or was lost; ``str`` is the human-readable reason."""

    def __init__(self, peer: Address, transport: str, reason: str):
        self.peer, self.transport, self.reason = peer, transport, reason
        super().__init__(f"{transport.upper()} {peer[0]}:{peer[1]}: {reason}")


@dataclass(frozen=True)
class Source:
    """Where a message came from, and the way back on the same socket / connection."""

    transport: str  # 'udp' | 'tcp' | 'tls'
    local: Address
    peer: Address
    _reply: Callable[[bytes], None] = field(repr=False, compare=False)
    raw: bytes = field(default=b"", repr=False, compare=False)  # UDP: the datagram as received (fakes record it)

    def send(self, message: Any) -> None:
        """Reply with ``message`` (a Request or Response) the way this one came."""
        self._reply(message.to_bytes())

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (fakes sending garbage or keep-alives on purpose)."""
        self._reply(bytes(data))


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


def _addr(a: Any) -> Address:
    return (a.host, a.port)


def describe_failure(reason: Any) -> str:
    """A short human-readable text for a connection failure (a Failure or an exception)."""
    exc = getattr(reason, "value", reason)
    try:
        from OpenSSL import SSL

        if isinstance(exc, SSL.Error):
            parts = []
            for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
                if isinstance(item, tuple) and item:
                    parts.append(str(item[-1]))
            return "TLS handshake failed: " + (", ".join(p for p in parts if p) or str(exc) or "TLS error")
    except ImportError:  # pragma: no cover - twisted[tls] is a dependency
        pass
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.ConnectionDone):
        return "connection closed by peer"
    if isinstance(exc, (error.ConnectionLost, ConnectionResetError)):
        return "connection reset by peer"
    if isinstance(exc, error.TimeoutError):
        return "connect timed out"
    if isinstance(exc, error.DNSLookupError):
        return f"cannot resolve host: {exc}"
    return str(exc) or type(exc).__name__


def _call(handler: Any, name: str, *args: Any) -> None:
    """Call a handler method; an error goes to ``handler.sip_handler_error`` (or Twisted's
    log), the transport keeps serving."""
    method = getattr(handler, name, None)
    if method is None:
        return
    try:
        method(*args)
    except Exception as e:
        keep = getattr(handler, "sip_handler_error", None)
        if keep is not None:
            try:
                keep(e, _where(name, args))
                return
            except Exception:
                pass
        _log.failure("SIP handler {handler!r}.{name} raised", handler=handler, name=name)


def _where(name: str, args: tuple) -> str:
    """What the handler was doing, for the error's note: "while handling REGISTER from 127.0.0.1:5062 over udp"."""
    try:
        if name in ("sip_received", "sip_bad_input"):
            source = args[-1]
            what = "bad input" if name == "sip_bad_input" else (
                args[0].method if args[0].is_request else f"{args[0].status} ({args[0].cseq[1]})")
            return f"while handling {what} from {source.peer[0]}:{source.peer[1]} over {source.transport}"
        if name == "sip_connection_closed":
            source = args[0]
            return f"while handling the close of {source.transport} {source.peer[0]}:{source.peer[1]}"
        peer, transport = args[0], args[1]
        return f"while handling {name} for {transport} {peer[0]}:{peer[1]}"
    except Exception:  # the args themselves are odd: say what was called
        return f"in {name}"


# --------------------------------------------------------------------------- UDP


_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\Z")


class _UdpProtocol(protocol.DatagramProtocol):
    def __init__(self, handler: Any, clock: Any, max_size: int, name: str = "udp"):
        self.handler, self.clock, self.max_size = handler, clock, max_size
        self.connected_peer: Address | None = None
        self.closing = False

    _local: Address | None = None  # our address, asked of the socket once (it is bound for good)

    def _source(self, peer: Address, raw: bytes = b"") -> Source:
        local = self._local
        if local is None:
            local = self._local = _addr(self.transport.getHost())
        if self.connected_peer is not None:
            return Source("udp", local, peer, self._write_connected, raw)
        return Source("udp", local, peer, lambda data: self._write_to(data, peer), raw)

    def _write_connected(self, data: bytes) -> None:
        if self.transport is None or self.closing:
            return
        self.transport.write(data)

    def _write_to(self, data: bytes, peer: Address) -> None:
        t = self.transport
        if t is None or self.closing:
            return
        sock = getattr(t, "socket", None)
        if sock is not None and _IPV4.match(peer[0]) is not None:
            # sendto() itself: Twisted's write() checks the address three ways per datagram
            # (isIPAddress, isIPv6Address), a tenth of a fake registrar's time under load;
            # an IPv4 literal needs none of it. Its error handling, kept: EINTR again,
            # ECONNREFUSED (a pending ICMP error on an unconnected socket) ignored.
            for _ in range(3):
                try:
                    sock.sendto(data, peer)
                    return
                except InterruptedError:
                    continue
                except ConnectionRefusedError:
                    return
                except OSError as e:  # e.g. EMSGSIZE, network unreachable
                    _call(self.handler, "sip_transport_error", peer, "udp", f"send failed: {e}")
                    return
            return
        try:
            t.write(data, peer)
        except OSError as e:  # e.g. EMSGSIZE, network unreachable
            _call(self.handler, "sip_transport_error", peer, "udp", f"send failed: {e}")

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        note_activity(self.clock)
        peer = (addr[0], addr[1])
        if is_keepalive(data):
            return  # RFC 5626 keep-alive: nothing to parse, nothing to answer on UDP
        source = self._source(peer, data)
        try:
            message = parse(data, max_size=self.max_size)
        except SipParseError as e:
            _call(self.handler, "sip_bad_input", data, e, source)
            return
        _call(self.handler, "sip_received", message, source)

    def connectionRefused(self) -> None:
        # connected UDP socket only: the kernel saw ICMP port unreachable for our peer
        note_activity(self.clock)
        if self.connected_peer is not None and not self.closing:
            _call(self.handler, "sip_transport_error", self.connected_peer, "udp", "ICMP port unreachable")

    def icmpError(self, code: int) -> None:
        note_activity(self.clock)
        if self.connected_peer is not None and not self.closing:
            text = "ICMP host unreachable" if code == errno.EHOSTUNREACH else "ICMP network unreachable"
            _call(self.handler, "sip_transport_error", self.connected_peer, "udp", text)


class _ConnectedUdpPort(udp.Port):
    """A connected UDP port that survives an ICMP port unreachable on poll-style reactors.

    On Linux a pending ICMP error makes epoll report EPOLLERR without EPOLLIN; Twisted's
    epoll/poll reactors then treat the UDP port as disconnected and close it instead of
    calling ``doRead`` (where ``recvfrom`` would raise ECONNREFUSED and Twisted would call
    ``connectionRefused()``). Here an unrequested ``connectionLost`` with SO_ERROR =
    ECONNREFUSED is turned back into ``connectionRefused()`` and the port keeps reading.
    """

    _stopping = False

    def stopListening(self):
        self._stopping = True
        return super().stopListening()

    def connectionLost(self, reason=None):
        sock = getattr(self, "socket", None)
        if not self._stopping and sock is not None:
            try:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading clears it
            except OSError:
                code = 0
            if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                self.reactor.addReader(self)
                if code == errno.ECONNREFUSED:
                    self.protocol.connectionRefused()
                else:
                    self.protocol.icmpError(code)
                return
        super().connectionLost(reason)


# --------------------------------------------------------------------------- TCP / TLS


@implementer(IHandshakeListener)
class _StreamProtocol(protocol.Protocol):
    """One TCP or TLS connection: framing, keep-alive pongs, errors to the handler."""

    def __init__(self, owner: Any, name: str, outbound: bool):
        self.owner = owner  # a Listener or a _ClientFactory
        self.name = name
        self.outbound = outbound
        self.framer = StreamFramer(owner.max_size)
        self.ready = False  # connected (and TLS handshake done)
        self.closing = False  # we closed it on purpose
        self.failed_reason: str | None = None
        self.peer: Address | None = None
        self.local: Address | None = None
        self._pending: list[bytes] = []
        self.closed: defer.Deferred = defer.Deferred()
        # the listener's bounds (issue 12): a message must arrive whole within header_timeout of
        # its first byte (of the connect, for the first one); idle_timeout without any
        self._header_call: Any = None
        self._idle_call: Any = None
        self._last_activity = 0.0
        self._spoke = False  # a complete message or keep-alive arrived
        self._pongs = 0

    # -- connection life
    def connectionMade(self) -> None:
        self.peer = _addr(self.transport.getPeer())
        self.local = _addr(self.transport.getHost())
        no_delay(self.transport)
        made = getattr(self.owner, "_connection_made", None)
        if made is not None:
            made(self)
        self._last_activity = self.owner.clock.seconds()
        if not self.outbound:
            self._arm_header()  # the first message is due within header_timeout of the connect
        self._arm_idle(getattr(self.owner, "idle_timeout", None))
        if self.name == "tcp":
            self._ready()

    # -- bounds (only a Listener has them; the phone's own connections have none)
    def _arm_header(self) -> None:
        limit = getattr(self.owner, "header_timeout", None)
        if limit is not None:
            self._header_call = self.owner.clock.callLater(limit, self._header_expired, limit)

    def _cancel_header(self) -> None:
        if self._header_call is not None and self._header_call.active():
            self._header_call.cancel()
        self._header_call = None

    def _arm_idle(self, after: float | None) -> None:
        if after is not None:
            self._idle_call = self.owner.clock.callLater(after, self._idle_expired)

    def _header_expired(self, limit: float) -> None:
        self._header_call = None
        start = "its first byte" if self._spoke or self.outbound else "the connect"
        self._cut(f"no complete SIP message within {limit:g} s of {start} "
                  f"({self.framer.buffered} byte(s) buffered)")

    def _idle_expired(self) -> None:
        self._idle_call = None
        limit = self.owner.idle_timeout
        quiet = self.owner.clock.seconds() - self._last_activity
        if quiet < limit - 1e-9:  # activity since the timer was set: wait for the rest
            self._arm_idle(limit - quiet)
            return
        self._cut(f"idle for {limit:g} s")

    def _cut(self, reason: str) -> None:
        if self.closing or self.transport is None:
            return
        self.failed_reason = f"closed by the listener: {reason}"
        _call(self.owner.handler, "sip_connection_limited", self.peer, self.name, reason)
        self.close(abort=True)

    def handshakeCompleted(self) -> None:
        self._ready()

    def _ready(self) -> None:
        self.ready = True
        pending, self._pending = self._pending, []
        for data in pending:
            self.transport.write(data)
        self.owner._connection_ready(self)

    def connectionLost(self, reason: Any = protocol.connectionDone) -> None:
        note_activity(self.owner.clock)
        self._cancel_header()
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        text = self.failed_reason or describe_failure(reason)
        if self.name == "tls" and self.outbound and not self.ready and not text.startswith("TLS"):
            text = f"TLS handshake failed: {text}"  # e.g. the server refused our certificate
        self.owner._connection_lost(self, text)
        if not self.closed.called:
            self.closed.callback(text)

    # -- I/O
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.ready:
            self._pending.append(data)  # sent once connected (and the TLS handshake is done)
        elif self.transport is not None:
            self.transport.write(data)

    def source(self) -> Source:
        return Source(self.name, self.local, self.peer, self.owner._reply_path(self))

    def dataReceived(self, data: bytes) -> None:
        note_activity(self.owner.clock)
        if self.closing:
            return
        try:
            messages = self.framer.feed(data)
        except SipParseError as e:
            # the handler may still answer 400 on this connection; then it is closed (§18.3)
            _call(self.owner.handler, "sip_bad_input", data, e, self.source())
            self.closing = True
            self.failed_reason = f"closed after bad input: {e}"
            self.transport.loseConnection()
            return
        framer = self.framer
        pings = framer.take_pings()
        for _ in range(pings):
            self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        if messages or pings or framer.pongs != self._pongs:
            self._pongs = framer.pongs
            self._spoke = True
            self._last_activity = self.owner.clock.seconds()
            self._cancel_header()  # the next message's deadline starts with its first byte
        if framer.buffered and self._header_call is None:
            self._arm_header()
        for message in messages:
            if self.closing:
                break
            _call(self.owner.handler, "sip_received", message, self.source())

    def close(self, abort: bool = False) -> None:
        self.closing = True
        if self.transport is not None:
            if abort:
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()


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


class _OutboundFactory(protocol.ClientFactory):
    """Connection attempts; the owner is told of failure before the protocol exists."""

    def __init__(self, owner: Any, name: str, peer: Address):
        self.owner, self.name, self.peer = owner, name, peer
        self.protocol_instance: _StreamProtocol | None = None

    def buildProtocol(self, addr: Any) -> _StreamProtocol:
        self.protocol_instance = _StreamProtocol(self.owner, self.name, outbound=True)
        return self.protocol_instance

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        note_activity(self.owner.clock)
        self.owner._connect_failed(self, describe_failure(reason))


# --------------------------------------------------------------------------- Listener


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


# --------------------------------------------------------------------------- client side


class UdpConnection:
    """A connected UDP socket to one peer (the phone's side); see the module docstring."""

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
