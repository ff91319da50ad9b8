"""The TCP/TLS stream protocol: one connection, cut into messages by
:class:`sipcore.framing.StreamFramer`, with RFC 5626 keep-alive pongs, the listener's bounds
(``header_timeout``, ``idle_timeout``) and every failure worded for the handler.

Why a module of its own: a listener's accepted connections, the connections it opens to
send, and the phone's own connections (:mod:`.client`) are the same protocol; only their
owner differs (a :class:`~sipcore.transport.Listener` or a client ``_Dialer``), which the
protocol calls back through ``_reply_path``, ``_connection_ready``, ``_connection_lost``
and ``_connect_failed``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.framing import StreamFramer
from sipharness.sipcore.transport.handler import Address, Source, _addr, _call, describe_failure
from sipharness.sipcore.uri import SipParseError

__all__ = ["no_delay"]


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
