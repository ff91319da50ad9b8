"""The UDP protocol: one datagram in, one parsed message (or a bad-input report) out to the
handler, keep-alives dropped, ICMP errors of a connected socket reported as transport errors.

Why a module of its own: the same protocol serves a listening socket (:mod:`.listener`), the
phone's connected socket (:mod:`.client`) and its one unconnected socket
(:mod:`sipcore.udpendpoint`); :class:`_ConnectedUdpPort` is the Twisted port a connected
socket needs to survive an ICMP port unreachable on poll-style reactors.
"""

from __future__ import annotations

import errno
import re
import socket
from typing import Any

from twisted.internet import protocol, udp

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.fields import _known
from sipharness.sipcore.parser import is_keepalive, parse
from sipharness.sipcore.transport.handler import Address, Source, _addr, _call
from sipharness.sipcore.uri import SipParseError

_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\Z")
# peer host text -> is it an IPv4 literal (the _IPV4 match of every send, remembered); bounded:
# emptied when full, so a flood of new peers costs a match each, never memory
_IS_IPV4: dict[str, bool] = {}
_IS_IPV4_MAX = 1024


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
        host = peer[0]
        ipv4 = _IS_IPV4.get(host)
        if ipv4 is None:
            ipv4 = _known(_IS_IPV4, host, _IPV4.match(host) is not None, _IS_IPV4_MAX)
        if sock is not None and ipv4:
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
