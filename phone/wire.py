"""The phone's sockets: one flow per target over the sipcore transports (SPEC §3).

A *flow* is how the phone talks to one target. Over UDP every flow of a phone shares **one**
unconnected socket (:mod:`sipcore.udpendpoint`): it learns of an ICMP port unreachable per
destination (``IP_RECVERR``), so the target named is given up at once (SPEC §3), and it is
the phone's one SIP address (Via and Contact) whatever the server. One descriptor per phone,
not one per target: 10 000 phones with a primary and a secondary fit a limit of 20 000
descriptors with room for DNS (bench/phone_scale.py). Over TCP / TLS a flow is a connection
(refused, reset or a failed handshake gives it up at once). Flows are opened on first use
and kept; a closed TCP/TLS connection is forgotten so the next request reconnects.

Thin adapter (the project's house style): every decision is in the sans-I/O parts; this
module only opens, caches and closes sockets and forwards what they report.

A TCP connect or TLS handshake in progress counts as activity for the SPEC §9 virtual clock
(for at most :data:`CONNECTING_BUSY` wall seconds): the handshake's segments reach no SIP
adapter that would note them, and a busy machine can take longer than the clock's idle
threshold to finish one, which let virtual time jump past a test's deadline mid-handshake.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from sipharness.sipcore import transport as _t
from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.udpendpoint import UdpEndpoint, open_udp

__all__ = ["SocketWire", "CONNECTING_BUSY"]

CONNECTING_BUSY = 2.0  # wall seconds a connect / handshake in progress holds the virtual clock at most
_BUSY_POLL = 0.002  # wall seconds between two activity notes while connecting


class _Flow:
    def __init__(self, conn: Any, transport: str, target: Any):
        self.conn = conn
        self.transport = transport
        self.reliable = transport != "udp"
        self.local = tuple(conn.local)
        self.peer = (target.host, int(target.port))
        self.target = target

    def send(self, message: Any) -> None:
        self.conn.send(message)

    @property
    def closed(self) -> bool:
        return bool(getattr(self.conn, "closed", False))


class _UdpFlow:
    """A target reached through the phone's one UDP socket."""

    __slots__ = ("endpoint", "peer", "target")
    transport = "udp"
    reliable = False

    def __init__(self, endpoint: UdpEndpoint, target: Any):
        self.endpoint = endpoint
        self.peer = (target.host, int(target.port))
        self.target = target

    @property
    def local(self) -> tuple[str, int]:
        return self.endpoint.local

    def send(self, message: Any) -> None:
        self.endpoint.send(message, self.peer)

    @property
    def closed(self) -> bool:
        return self.endpoint.closed


class SocketWire:
    """Flows to targets for ``ua`` (a :class:`phone.agent.UserAgent`, set after creation)."""

    def __init__(self, *, clock: Any, reactor: Any = None, local_host: str = "127.0.0.1", tls_context: Any = None):
        self.clock = clock
        self.reactor = reactor
        self.local_host = local_host
        self.tls_context = tls_context
        self.ua: Any = None
        self._flows: dict[tuple, Any] = {}  # (host, port, transport) → _UdpFlow or _Flow
        self._udp: UdpEndpoint | None = None  # the phone's UDP socket, opened on first use
        self._pending: dict[tuple, list[defer.Deferred]] = {}
        self.closed = False

    # handler duck type of sipcore.transport
    def sip_received(self, message: Any, source: Any) -> None:
        if self.ua is not None and not self.closed:
            self.ua.sip_received(message, source)

    def sip_bad_input(self, raw: bytes, error: Any, source: Any) -> None:
        if self.ua is not None:
            self.ua.decide(f"ignored bad input from {source.peer}: {error}", limit="bad input")

    def sip_transport_error(self, peer: Any, transport: str, reason: str) -> None:
        if transport != "udp":
            key = (peer[0], int(peer[1]), transport)
            flow = self._flows.get(key)
            if flow is not None and flow.closed:
                del self._flows[key]
        if self.ua is not None and not self.closed:
            self.ua.transport_error(tuple(peer), transport, reason)

    # the wire interface of phone.agent
    def flow(self, target: Any) -> Any:
        if self.closed:
            return defer.fail(RuntimeError("phone stopped"))
        key = (target.host, int(target.port), target.transport)
        flow = self._flows.get(key)
        if flow is not None and not flow.closed:
            return flow
        if target.transport == "udp":
            if self._udp is None or self._udp.closed:
                self._udp = open_udp(self, local_host=self.local_host, clock=self.clock, reactor=self.reactor)
            flow = self._flows[key] = _UdpFlow(self._udp, target)
            return flow
        if key in self._pending:
            return self._wait(key)
        if target.transport == "tcp":
            dc = _t.connect_tcp(self, (target.host, target.port), local_host=self.local_host, clock=self.clock,
                                reactor=self.reactor)
        elif target.transport == "tls":
            if self.tls_context is None:
                return defer.fail(ValueError(f"{target}: TLS target but the phone has no tls_context"))
            dc = _t.connect_tls(self, (target.host, target.port), context=self.tls_context,
                                local_host=self.local_host, clock=self.clock, reactor=self.reactor)
        else:
            return defer.fail(ValueError(f"{target}: unknown transport {target.transport!r}"))
        self._pending[key] = []
        real = self.reactor if self.reactor is not None else _global_reactor()
        self._connecting(real, key, real.seconds() + CONNECTING_BUSY)

        def connected(conn: Any) -> None:
            waiters = self._pending.pop(key, [])
            f = self._flows[key] = _Flow(conn, target.transport, target)
            for w in waiters:
                w.callback(f)

        def failed(f: Any) -> None:
            waiters = self._pending.pop(key, [])
            for w in waiters:
                w.errback(f)

        d = self._wait(key)
        dc.addCallbacks(connected, failed)
        return d

    def _connecting(self, real: Any, key: tuple, until: float) -> None:
        """Note activity now and every _BUSY_POLL wall seconds while ``key`` connects (bounded)."""
        if key not in self._pending or self.closed or real.seconds() > until:
            return
        note_activity(self.clock)
        real.callLater(_BUSY_POLL, self._connecting, real, key, until)

    def _wait(self, key: tuple) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._pending[key].append(d)
        return d

    def close(self) -> defer.Deferred:
        self.closed = True
        ds = []
        for flow in self._flows.values():
            if isinstance(flow, _UdpFlow):
                continue
            try:
                ds.append(defer.maybeDeferred(flow.conn.close))
            except Exception:  # noqa: BLE001 - closing what may already be gone
                pass
        if self._udp is not None:
            ds.append(self._udp.close())
            self._udp = None
        self._flows.clear()
        self._pending.clear()
        return defer.DeferredList(ds, consumeErrors=True)


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor
