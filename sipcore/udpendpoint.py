"""One unconnected UDP socket that still learns of ICMP errors, per destination (``IP_RECVERR``).

Why: SPEC §3 gives a UDP target up at once on an ICMP port unreachable. Linux tells user space
of one only on a *connected* socket (``connect_udp`` in :mod:`sipcore.transport`), so a
phone used to hold a connected socket per target: two descriptors for a primary and a
secondary, and 10 000 phones did not fit a hard limit of 20 000 descriptors
(bench/phone_scale.py). With ``IP_RECVERR`` (ip(7)) an *unconnected* socket gets every ICMP
error on its error queue, with the original destination of the datagram that caused it in
``msg_name``: one socket per phone serves every target and still hears "port unreachable"
from each of them, named. It also receives from anyone, like a real phone's SIP port: a
server's INVITE to our Contact arrives on the same socket the REGISTERs left from.

What Twisted does not do and this module adds: Twisted's UDP port never reads the error
queue. A pending error makes epoll report ``EPOLLERR`` (without ``EPOLLIN`` when no datagram
waits), which Twisted's poll-style reactors treat as a lost connection, and a ``recvfrom``
fails once with ``ECONNREFUSED``, which Twisted ignores on an unconnected port. Here the
port drains the error queue (``recvmsg(MSG_ERRQUEUE)``) before each read and instead of
dying, and hands each error to the handler as ``sip_transport_error(peer, "udp", reason)``
(the same call and the same texts as the connected socket's). Elsewhere than Linux (no
``IP_RECVERR``) the socket works, unconnected, without learning of ICMP errors: a silent
target is then given up after the transaction's window instead.

The handler is the duck type of :mod:`sipcore.transport` (``sip_received``,
``sip_bad_input``, ``sip_transport_error``); datagrams are parsed and dispatched by that
module's UDP protocol, so both sockets behave alike.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from typing import Any

from twisted.internet import defer, udp

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.parser import MAX_SIZE
from sipharness.sipcore.transport.handler import _call, _reactor
from sipharness.sipcore.transport.udp import _UdpProtocol

__all__ = ["UdpEndpoint", "open_udp", "RECVERR"]

Address = tuple[str, int]

_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)  # <linux/in.h>; Python's socket module lacks it
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_SO_EE_ORIGIN_ICMP = 2  # <linux/errqueue.h>: the error came in an ICMP message
_EXTENDED_ERR = struct.Struct("=IBBBBII")  # struct sock_extended_err: errno, origin, type, code, pad, info, data
#: whether this platform can tell an unconnected socket of ICMP errors
RECVERR = sys.platform.startswith("linux")
_REASONS = {
    errno.ECONNREFUSED: "ICMP port unreachable",
    errno.EHOSTUNREACH: "ICMP host unreachable",
    errno.ENETUNREACH: "ICMP network unreachable",
}
_ERRQUEUE_BATCH = 64  # errors read per wake-up at most (a flood of ICMP cannot hold the reactor)


class _RecvErrPort(udp.Port):
    """A Twisted UDP port that reads its socket's error queue (see the module docstring)."""

    _stopping = False
    handler: Any = None

    def createInternetSocket(self):  # noqa: N802 - Twisted's name
        sock = super().createInternetSocket()
        if RECVERR:
            try:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            except OSError:
                pass  # not Linux after all: no ICMP news, the socket still works
        return sock

    def stopListening(self):  # noqa: N802
        self._stopping = True
        return super().stopListening()

    def doRead(self):  # noqa: N802
        self._drain_errors()
        super().doRead()

    def connectionLost(self, reason=None):  # noqa: N802
        # EPOLLERR alone (an ICMP error, no datagram waiting): the reactor took it for a lost
        # connection and stopped reading; read the errors and listen on
        if not self._stopping and getattr(self, "socket", None) is not None:
            self._drain_errors()
            self.reactor.addReader(self)
            return
        super().connectionLost(reason)

    def _drain_errors(self) -> None:
        sock = self.socket
        errors: list[tuple[Address, str]] = []
        for _ in range(_ERRQUEUE_BATCH):
            try:
                _data, ancdata, _flags, peer = sock.recvmsg(1, 512, _MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:  # EAGAIN: the queue is empty
                break
            code = None
            for level, kind, data in ancdata:
                if level == socket.IPPROTO_IP and kind == _IP_RECVERR and len(data) >= _EXTENDED_ERR.size:
                    ee_errno, origin = _EXTENDED_ERR.unpack_from(data)[:2]
                    if origin == _SO_EE_ORIGIN_ICMP:
                        code = ee_errno
            reason = _REASONS.get(code) if code is not None else None
            if reason is not None and isinstance(peer, tuple):
                errors.append(((peer[0], peer[1]), reason))
        if not errors:
            return
        # The same error is also pending on the socket (sk_err), and the kernel fails the next
        # send with it, whatever its destination: clear it *before* the handler reacts (a
        # phone fails over at once and sends to the next target from inside the call).
        try:
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            pass
        note_activity(self.protocol.clock)
        for peer, reason in errors:
            if self.protocol.closing:
                return
            _call(self.handler, "sip_transport_error", peer, "udp", reason)


class _Protocol(_UdpProtocol):
    """sipcore.transport's UDP protocol, replying through the endpoint's send (see send_raw)."""

    endpoint: "UdpEndpoint | None" = None

    def _write_to(self, data: bytes, peer: Address) -> None:
        if self.closing or self.endpoint is None:
            return
        self.endpoint.send_raw(data, peer)


class UdpEndpoint:
    """One UDP socket bound to ``local_host``: sends to any peer, receives from any, and tells
    the handler of each ICMP error with the peer it concerns."""

    transport = "udp"

    def __init__(self, handler: Any, *, local_host: str = "127.0.0.1", local_port: int = 0, clock: Any,
                 reactor: Any = None, max_size: int = MAX_SIZE):
        self.handler = handler
        self.clock = clock
        self._proto = _Protocol(handler, clock, max_size)
        self._proto.endpoint = self
        r = _reactor(reactor)
        if hasattr(r, "addReader"):  # a real posix reactor
            port = _RecvErrPort(local_port, self._proto, local_host, max_size + 1, r)
            port.handler = handler
            port.startListening()
            self._port = port
        else:  # a test double without file descriptors
            self._port = r.listenUDP(local_port, self._proto, interface=local_host, maxPacketSize=max_size + 1)
        host = self._port.getHost()
        self.local: Address = (host.host, host.port)

    @property
    def closed(self) -> bool:
        return self._proto.closing

    def send(self, message: Any, peer: Address) -> bool:
        return self.send_raw(message.to_bytes(), peer)

    def send_raw(self, data: bytes, peer: Address) -> bool:
        """Send to ``peer`` (an IP address); on a closed socket or a failed send the handler is
        told and False returned."""
        peer = (peer[0], int(peer[1]))
        if self._proto.closing:
            _call(self.handler, "sip_transport_error", peer, "udp", "socket closed")
            return False
        sock = getattr(self._port, "socket", None)
        if sock is None:  # a test double's port
            self._port.write(data, peer)
            return True
        # sendto() directly, not Twisted's write(): that one drops ECONNREFUSED silently, and
        # on a socket with IP_RECVERR a pending ICMP error (about any peer) fails the next send
        # with it. The error itself is on the error queue and reported from there; this
        # datagram is sent again.
        for _ in range(3):
            try:
                sock.sendto(data, peer)
                return True
            except (InterruptedError, ConnectionRefusedError):
                continue
            except OSError as e:  # EMSGSIZE, no route...
                _call(self.handler, "sip_transport_error", peer, "udp", f"send failed: {e}")
                return False
        _call(self.handler, "sip_transport_error", peer, "udp", "send failed: interrupted three times")
        return False

    def close(self) -> defer.Deferred:
        if self._proto.closing:
            return defer.succeed(None)
        self._proto.closing = True
        return defer.maybeDeferred(self._port.stopListening)

    def __repr__(self) -> str:
        return f"<UdpEndpoint {self.local[0]}:{self.local[1]}>"


def open_udp(handler: Any, *, local_host: str = "127.0.0.1", local_port: int = 0, clock: Any, reactor: Any = None,
             max_size: int = MAX_SIZE) -> UdpEndpoint:
    """An unconnected UDP socket on ``local_host`` that reports ICMP errors per peer (Linux)."""
    return UdpEndpoint(handler, local_host=local_host, local_port=local_port, clock=clock, reactor=reactor,
                       max_size=max_size)
