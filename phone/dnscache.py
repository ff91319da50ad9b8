"""A vendor phone's DNS cache, as the emulated phone keeps it: answers reused for their TTL, negative ones too.

Why: the vendor documents a per-account DNS cache that is **on by default** and outlives a
re-provisioning (Administrator's Guide for SIP-T2/T3/T4/T5/CP920 IP Phones, "Static DNS Cache"):

    account.X.dns_cache_type — It configures whether the phone uses the DNS cache for domain name
    resolution of the SIP server and caches the additional DNS records.
    0-Perform real-time DNS query rather than using DNS cache.
    1-Use DNS cache, but do not record the additional records.
    2-Use DNS cache and cache the additional DNS records.
    Default 1

    "Support for negative caching of DNS queries as described in RFC 2308 is also provided to
    allow faster failover when prior DNS queries have returned no results from the DNS server."

A lab phone that keeps this cache answers the second test's names (the same names, new ports)
from the first test's records: stale targets. The emulation must do the same, so the harness
proves it turns the cache off (``account.X.dns_cache_type = 0``).

Two parts, as the house wants them:

- :class:`DnsCache`, sans-I/O: fed the phone's query bytes and the server's response bytes and
  the time; answers a query from the cache (its ID, TTLs counted down) or says it cannot.
  Positive answers live for the smallest TTL of their records; NXDOMAIN and NODATA answers for
  the SOA's ``min(TTL, MINIMUM)`` (RFC 2308 §5), and not at all without an SOA; SERVFAIL,
  REFUSED and truncated answers are never cached (RFC 2308 §7, RFC 1035 §7.4). Mode 1 serves
  cached answers without their additional section; mode 2 keeps it. Bounded (:data:`MAX_ENTRIES`).
- :class:`CachingRelay`, a thin Twisted adapter: the phone's DNS server is this relay (UDP and
  TCP on loopback); a query the cache cannot answer goes upstream **as it came** (same bytes,
  same transport, one upstream query per phone query, no retry of its own), so every timing and
  every fault of the fake DNS still reaches the phone unchanged.

Written by hand on dnslib (the project's DNS wire library): twisted.names' ``CacheResolver``
rebuilds messages, caches no negative answer, and would stand between the phone and the fake
DNS with retries and timeouts of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dnslib
from twisted.internet import defer, protocol
from twisted.protocols.basic import Int16StringReceiver

__all__ = ["DnsCache", "CachingRelay", "MAX_ENTRIES"]

MAX_ENTRIES = 1024  # distinct (name, type) answers kept; the oldest goes first
UPSTREAM_TIMEOUT = 10.0  # wall seconds a relayed UDP query waits for its answer before its socket closes


@dataclass
class _Entry:
    response: dnslib.DNSRecord
    stored: float
    expires: float


class DnsCache:
    """Answers by (name, type, class), for their TTL on ``clock`` (an ``IReactorTime``)."""

    def __init__(self, clock: Any, *, mode: int = 1, max_entries: int = MAX_ENTRIES):
        self.clock = clock
        self.mode = mode
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.hits = 0
        self.stored = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget everything (the phone rebooted)."""
        self._entries.clear()

    @staticmethod
    def _key(msg: dnslib.DNSRecord) -> tuple | None:
        if len(msg.questions) != 1:
            return None
        q = msg.q
        return (str(q.qname).lower(), q.qtype, q.qclass)

    def lookup(self, query: bytes) -> bytes | None:
        """The cached answer to ``query`` with its ID and counted-down TTLs, or None (ask upstream)."""
        if self.mode == 0:
            return None
        try:
            msg = dnslib.DNSRecord.parse(query)
        except Exception:  # noqa: BLE001 - garbage is the upstream's to answer (or ignore)
            return None
        key = self._key(msg)
        entry = self._entries.get(key) if key is not None else None
        if entry is None:
            return None
        now = self.clock.seconds()
        if now >= entry.expires:
            del self._entries[key]
            return None
        age = int(now - entry.stored)
        out = dnslib.DNSRecord(dnslib.DNSHeader(id=msg.header.id, qr=1, aa=entry.response.header.aa,
                                                 ra=entry.response.header.ra, rd=msg.header.rd,
                                                 rcode=entry.response.header.rcode), q=msg.q)
        for section, add in ((entry.response.rr, out.add_answer), (entry.response.auth, out.add_auth),
                             (entry.response.ar if self.mode == 2 else [], out.add_ar)):
            for rr in section:
                copy = dnslib.RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - age), rr.rdata)
                add(copy)
        self.hits += 1
        return out.pack()

    def store(self, query: bytes, response: bytes) -> None:
        """Keep ``response`` to ``query`` for as long as RFC 2308 / its TTLs allow (maybe not at all)."""
        if self.mode == 0:
            return
        try:
            msg = dnslib.DNSRecord.parse(response)
        except Exception:  # noqa: BLE001 - an answer we cannot read is not kept
            return
        key = self._key(msg)
        if key is None or msg.header.tc or not msg.header.qr:
            return
        ttl = _cache_ttl(msg)
        if ttl is None or ttl <= 0:
            return
        now = self.clock.seconds()
        self._entries[key] = _Entry(msg, now, now + ttl)
        self._entries.move_to_end(key)
        self.stored += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _cache_ttl(msg: dnslib.DNSRecord) -> int | None:
    """How long an answer may be kept (None: never)."""
    rcode = msg.header.rcode
    if rcode == dnslib.RCODE.NOERROR and msg.rr:
        return min(rr.ttl for rr in msg.rr + msg.auth + msg.ar)
    if rcode in (dnslib.RCODE.NXDOMAIN, dnslib.RCODE.NOERROR):  # negative: NXDOMAIN or NODATA
        soas = [rr for rr in msg.auth if rr.rtype == dnslib.QTYPE.SOA]
        if not soas:
            return None  # RFC 2308 §5: without an SOA, not cached
        return min(soas[0].ttl, soas[0].rdata.times[-1])
    return None  # SERVFAIL, REFUSED, FORMERR...: RFC 2308 §7 allows at most 5 minutes; never here


class CachingRelay:
    """The phone's DNS server on loopback: answers from :class:`DnsCache`, else relays to ``upstream``.

    ``upstream`` (host, port) may change at any time (a re-provisioned phone's DNS server) or be
    None (no DNS server: queries go unanswered, as a phone without one fares)."""

    def __init__(self, reactor: Any, cache: DnsCache, *, host: str = "127.0.0.1"):
        self.reactor, self.cache, self.host = reactor, cache, host
        self.upstream: tuple[str, int] | None = None
        self._udp: Any = None
        self._tcp: Any = None
        self._relays: set[Any] = set()

    def start(self) -> tuple[str, int]:
        """Listen on UDP and TCP, one port for both; (host, port)."""
        for _ in range(20):
            udp = self.reactor.listenUDP(0, _UdpFront(self), interface=self.host)
            port = udp.getHost().port
            try:
                self._tcp = self.reactor.listenTCP(port, _TcpFrontFactory(self), interface=self.host)
            except Exception:  # noqa: BLE001 - that TCP port is taken: another UDP port
                udp.stopListening()
                continue
            self._udp = udp
            return self.host, port
        raise OSError(f"DNS cache relay: no port free for both UDP and TCP on {self.host}")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self._udp.getHost().port

    def stop(self) -> defer.Deferred:
        stops = [defer.maybeDeferred(p.stopListening) for p in (self._udp, self._tcp) if p is not None]
        self._udp = self._tcp = None
        for relay in list(self._relays):
            relay.close()
        return defer.DeferredList(stops, consumeErrors=True)

    # -- UDP: one upstream socket per phone query, closed at the answer or after UPSTREAM_TIMEOUT
    def _udp_query(self, data: bytes, client: tuple[str, int], front: Any) -> None:
        cached = self.cache.lookup(data)
        if cached is not None:
            front.transport.write(cached, client)
            return
        if self.upstream is None:
            return
        relay = _UdpRelay(self, data, client, front)
        self._relays.add(relay)
        relay.port = self.reactor.listenUDP(0, relay, interface=self.host)
        relay.transport.write(data, self.upstream)
        relay.timer = self.reactor.callLater(UPSTREAM_TIMEOUT, relay.close)


class _UdpFront(protocol.DatagramProtocol):
    def __init__(self, relay: CachingRelay):
        self.relay = relay

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._udp_query(data, addr, self)


class _UdpRelay(protocol.DatagramProtocol):
    def __init__(self, owner: CachingRelay, query: bytes, client: tuple[str, int], front: _UdpFront):
        self.owner, self.query, self.client, self.front = owner, query, client, front
        self.port: Any = None
        self.timer: Any = None

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.owner.upstream:
            return
        self.owner.cache.store(self.query, data)
        if self.front.transport is not None:
            self.front.transport.write(data, self.client)
        self.close()

    def close(self) -> None:
        self.owner._relays.discard(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()


# -- TCP: one upstream connection per phone connection, messages relayed in order
class _TcpFront(Int16StringReceiver):
    MAX_LENGTH = 65535

    def __init__(self, owner: CachingRelay):
        self.owner = owner
        self.upstream: _TcpBack | None = None
        self.pending: list[bytes] = []  # queries sent before the upstream connection was up
        self.asked: list[bytes] = []  # queries upstream has not answered yet (answers come in order)

    def connectionMade(self) -> None:
        self.owner._relays.add(self)
        if self.owner.upstream is None:
            return
        host, port = self.owner.upstream
        protocol.ClientCreator(self.owner.reactor, _TcpBack, self).connectTCP(host, port, timeout=5).addErrback(
            lambda _: self.transport.loseConnection())

    def stringReceived(self, data: bytes) -> None:
        cached = self.owner.cache.lookup(data)
        if cached is not None:
            self.sendString(cached)
        elif self.upstream is not None:
            self.asked.append(data)
            self.upstream.sendString(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.owner._relays.discard(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class _TcpBack(Int16StringReceiver):
    MAX_LENGTH = 65535

    def __init__(self, front: _TcpFront):
        self.front = front

    def connectionMade(self) -> None:
        self.front.upstream = self
        pending, self.front.pending = self.front.pending, []
        for data in pending:
            self.front.asked.append(data)
            self.sendString(data)

    def stringReceived(self, data: bytes) -> None:
        if self.front.asked:
            self.front.owner.cache.store(self.front.asked.pop(0), data)
        self.front.sendString(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.front.transport is not None:
            self.front.transport.loseConnection()


class _TcpFrontFactory(protocol.Factory):
    def __init__(self, owner: CachingRelay):
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _TcpFront:
        return _TcpFront(self.owner)
