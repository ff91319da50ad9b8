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

The package, by role: ``handler.py`` (Source, the handler call, failures worded),
``udp.py`` (the datagram protocol), ``stream.py`` (the TCP/TLS protocol and its bounds),
``listener.py`` (the server side), ``client.py`` (the phone's side); this module is the
public surface and re-exports what callers use.

Connect timeouts are not on the injected clock: on loopback a connect is answered (accepted
or refused) at once, and "a connection that never answers" (SPEC §3) is a silent server,
timed by the transaction's window on the injected clock.
"""

from sipharness.sipcore.transport.client import (
    Connection,
    UdpConnection,
    connect_tcp,
    connect_tls,
    connect_udp,
)
from sipharness.sipcore.transport.handler import Source, SipTransportError, describe_failure
from sipharness.sipcore.transport.listener import Listener, listen_tcp, listen_tls, listen_udp
from sipharness.sipcore.transport.stream import no_delay

__all__ = [
    "no_delay",
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
