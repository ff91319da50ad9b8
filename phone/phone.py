"""The bundled phone: :class:`Phone`, the Twisted face of :class:`phone.agent.UserAgent`.

This is the object the harness's DUT interface (SPEC §10) drives: ``start()``, ``stop()``,
``call()``, ``answer()``, ``hangup()``, and events back in a journal tests wait on with a
deadline on the phone's clock (the last ``keep_events`` are kept; whole-log indices stay stable,
see :class:`phone.events.EventJournal`). It only plugs the real things into the user agent: sockets per
target (:class:`phone.wire.SocketWire` over :mod:`sipcore.transport`), the RFC 3263 resolver
(:class:`phone.dnsclient.Resolver`, one per ``srv_select``; an IP literal needs no DNS) and
the injected clock (SPEC §9). Every rule lives in the sans-I/O parts, which is why a 3600 s
registration cycle on the virtual clock costs milliseconds and every time is exact.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer

from sipharness.phone.agent import UNREGISTER_TIMEOUT, UserAgent
from sipharness.phone.call import Call
from sipharness.phone.events import KEEP_EVENTS, PhoneEvent
from sipharness.phone.dnsrecords import Target, is_ip_literal
from sipharness.phone.rfc3263 import literal_targets
from sipharness.phone.wire import SocketWire
from sipharness.sipcore.journal import Journal

__all__ = ["Phone", "PhoneEvent"]

# One generator for every phone not given its own: a Random holds 2.5 KB of Mersenne Twister
# state, the biggest single object of an idle phone (bench/phone_scale.py); phones need
# unpredictable tags and SRV weights, not independent streams. Pass rng= for reproducibility.
_SHARED_RNG = random.Random()


class Phone:
    """A SIP phone configured by a :class:`phone.config.PhoneConfig` (SPEC §1-§7)."""

    def __init__(self, config: Any, *, clock: Any, reactor: Any = None, dns_server: tuple[str, int] | None = None,
                 local_host: str = "127.0.0.1", tls_context: Any = None, name: str = "phone",
                 rng: random.Random | None = None, keep_events: int = KEEP_EVENTS):
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.config = config
        self.clock = clock
        self.reactor = reactor
        self.name = name
        self.local_host = local_host
        self.rng = rng if rng is not None else _SHARED_RNG
        if dns_server is None and config.dns_server:
            dns_server = (config.dns_server, config.dns_port)
        self.dns_server = dns_server
        self._resolvers: dict[str, Any] = {}
        self.wire = SocketWire(clock=clock, reactor=reactor, local_host=local_host, tls_context=tls_context)
        self.ua = UserAgent(config, clock=clock, wire=self.wire, resolve=self._resolve, name=name,
                            local_host=local_host, keep_events=keep_events)
        self.wire.ua = self.ua
        self.started = False

    # ------------------------------------------------------------------ DUT operations
    @property
    def events(self) -> Journal[PhoneEvent]:
        return self.ua.events

    @property
    def log(self) -> list[str]:
        return self.ua.log

    def start(self) -> defer.Deferred:
        """Start registering every enabled account; fires once the REGISTERs are under way."""
        if self.started:
            return defer.fail(RuntimeError(f"{self.name}: already started"))
        self.started = True
        self.ua.start()
        return defer.succeed(self)

    def stop(self, unregister: bool = False, timeout: float = UNREGISTER_TIMEOUT) -> defer.Deferred:
        """Cancel every timer and close every socket. ``unregister``: first send REGISTER with
        Expires: 0 to every server the phone is registered with, waiting at most ``timeout``
        phone seconds for the answers."""
        d = self.ua.stop(unregister=unregister, timeout=timeout)

        def close(_: Any) -> defer.Deferred:
            for r in self._resolvers.values():
                r.close()
            self._resolvers.clear()
            return self.wire.close()

        d.addCallback(close)
        d.addCallback(lambda _: None)
        return d

    def call(self, uri: str, account: int = 1) -> Call:
        """Place a call (SPEC §7) with the failover / fallback rules (§5, §6)."""
        if account not in self.ua.fallbacks:
            raise ValueError(f"{self.name}: account {account} is not enabled")
        return self.ua.place_call(uri, account)

    def answer(self, call: Call | None = None) -> None:
        self.ua.answer(call)

    def hangup(self, call: Call | None = None) -> None:
        self.ua.hangup(call)

    def wait_for(self, kind: str, timeout: float, *, count: int = 1, since: int | None = 0,
                 **fields: Any) -> defer.Deferred:
        """Deferred of the ``count``-th event of ``kind`` whose fields match (deadline in phone s)."""
        def match(e: PhoneEvent) -> bool:
            return e.kind == kind and all(getattr(e, k) == v for k, v in fields.items())

        what = kind + "".join(f" {k}={v}" for k, v in fields.items())
        return self.events.wait_for(match, timeout, count=count, since=since, what=what)

    def registered(self, account: int, server: int | None = None) -> bool:
        return self.ua.registered(account, server)

    def current_target(self, account: int, server: int) -> Target | None:
        """The target the last answered new request of (account, server) used."""
        return self.ua.current_target(account, server)

    def start_target(self, account: int, server: int) -> Target | None:
        """The target the last new request of (account, server) started at."""
        return self.ua.start_target(account, server)

    # ------------------------------------------------------------------ resolution (SPEC §2)
    def _resolve(self, acct: Any, y: int) -> defer.Deferred:
        srv = acct.servers[y]
        if is_ip_literal(srv.address):  # no DNS server needed; the plan still decides (SPEC §2)
            return defer.succeed(literal_targets(srv.address, srv.port, acct.transport))
        if self.dns_server is None:
            self.ua.decide(f"server {y} {srv.address!r}: a domain but no DNS server configured", account=acct.index,
                           server=y)
            return defer.succeed([])
        resolver = self._resolvers.get(acct.srv_select)
        if resolver is None:
            from sipharness.phone.dnsclient import Resolver

            resolver = self._resolvers[acct.srv_select] = Resolver(
                self.dns_server, clock=self.clock, reactor=self.reactor, srv_select=acct.srv_select, rng=self.rng)
        return resolver.resolve(srv.address, srv.port, acct.transport, acct.naptr_build)
