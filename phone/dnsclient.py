"""The phone's DNS on the wire: runs a :class:`phone.rfc3263.Resolution` with twisted.names (SPEC §2).

The RFC 3263 logic is all in :mod:`phone.rfc3263`; this adapter only makes the queries it
asks for, turns twisted.names answers and errors into records and :class:`Fault` values, and
caches results for their TTL on the injected clock.

Why twisted.names and what is added to it:

- ``twisted.names.client.Resolver`` already does UDP with retries over a timeout sequence
  (``(2, 2)``: two tries of 2 s, SPEC §2 [interp]) and retries a truncated UDP answer over
  TCP (``filterAnswers``). It takes one ``reactor`` for I/O and time, so it is given
  :func:`sipcore.reactor.clocked_reactor`: real sockets, phone time, and every reply noted
  as activity for the virtual clock.
- Its TCP factory builds ``DNSProtocol`` without a reactor (global wall-clock timeouts) and
  its TCP timeout is a fixed 10 s: both are fixed here so TCP runs on phone time too.
- It is shared: one client per (DNS server, clock, reactor, timeouts) for the whole process,
  reference-counted by the :class:`Resolver` objects using it (each keeps its own TTL cache
  and counters). 10 000 phones asking one DNS server then cost one client, not 10 000 (each
  builds a ~2.5 KB method table); its sockets are not ``noisy`` (no log line per query).
- Its message parser trusts each record's payload decoder and ignores RDLENGTH, so one
  record of the wrong length (an A of 3 bytes) shifts every following record or loses the
  whole answer. Here each record is decoded within its RDLENGTH and skipped when it does
  not fit: "a DNS answer with bad records skips those records".
"""

from __future__ import annotations

import random as _random
import socket
from typing import Any

from twisted.internet import defer, error as _ierror
from twisted.names import client, dns, error as dnserror
from twisted.python import failure as _failure

from sipharness.phone.dnsrecords import Address, Cname, Fault, Naptr, Query, Srv, Target
from sipharness.phone.rfc3263 import Resolution
from sipharness.sipcore.reactor import clocked_reactor

__all__ = ["Resolver", "KEEP_RESOLUTIONS"]

KEEP_RESOLUTIONS = 4  # finished lookups a Resolver keeps for the log (was 64: ~8 KB per phone)

_QTYPE = {"NAPTR": dns.NAPTR, "SRV": dns.SRV, "A": dns.A, "AAAA": dns.AAAA}
_RCODE_ERRORS = (
    dnserror.DNSNameError,
    dnserror.DNSServerError,
    dnserror.DNSQueryRefusedError,
    dnserror.DNSFormatError,
    dnserror.DNSNotImplementedError,
    dnserror.DNSUnknownError,
)


class _TcpRetryFailed(Exception):
    """A truncated UDP answer whose TCP retry failed (no connection, timeout)."""


class _LenientMessage(dns.Message):
    """A DNS message that decodes each record within its RDLENGTH and skips bad ones."""

    skipped = 0

    def parseRecords(self, list: list, num: int, strio: Any) -> None:  # noqa: A002 (twisted's name)
        for _ in range(num):
            header = dns.RRHeader(auth=self.auth)
            try:
                header.decode(strio)
            except EOFError:
                return
            start = strio.tell()
            header.payload = self.lookupRecordType(header.type)(ttl=header.ttl)
            try:
                header.payload.decode(strio, header.rdlength)
                ok = strio.tell() == start + header.rdlength
            except Exception:
                ok = False
            strio.seek(start + header.rdlength)
            if ok:
                list.append(header)
            else:
                self.skipped += 1


class _LenientMixin:
    """``DNSMixin._handleResponse`` with :class:`_LenientMessage` (same logic otherwise)."""

    def _handleResponse(self, data, messageSource, notifyController, validate=lambda m: True):
        m = _LenientMessage()
        try:
            m.fromStr(data)
        except (EOFError, ValueError):
            return  # unparsable header/question: as if lost (the query times out)
        if m.id in self.liveMessages:
            if not validate(m):
                return
            d, canceller = self.liveMessages.pop(m.id)
            canceller.cancel()
            d.callback(m)
        else:
            notifyController(m)


class _DatagramProtocol(_LenientMixin, dns.DNSDatagramProtocol):
    noisy = False  # one socket per query: no "Starting protocol" log line for each


class _StreamProtocol(_LenientMixin, dns.DNSProtocol):
    pass


class _TCPFactory(client.DNSClientFactory):
    noisy = False

    def buildProtocol(self, addr):
        p = _StreamProtocol(self.controller, reactor=self.controller._reactor)  # phone-time timeouts
        p.factory = self
        return p


class _Client(client.Resolver):
    """twisted.names' client with the fixes of the module docstring."""

    def __init__(self, servers, reactor, timeout):
        super().__init__(servers=servers, reactor=reactor, timeout=timeout)
        self.factory = _TCPFactory(self, timeout)
        self.tcp_timeout = float(sum(timeout))

    def _connectedProtocol(self, interface=""):
        proto = _DatagramProtocol(self, reactor=self._reactor)
        for _ in range(100):
            try:
                self._reactor.listenUDP(0, proto, interface=interface)
                return proto
            except _ierror.CannotListenError:
                continue
        raise _ierror.CannotListenError(interface, 0, "no free UDP port for a DNS query")

    def queryTCP(self, queries, timeout=None):
        return super().queryTCP(queries, self.tcp_timeout if timeout is None else timeout)

    def _filterTcp(self, message):
        if message.trunc:  # truncated over TCP too: a broken server, as if no answer
            raise _TcpRetryFailed("answer truncated over TCP too")
        return super().filterAnswers(message)

    @staticmethod
    def _tcpFailed(f):
        if f.check(*_RCODE_ERRORS):
            return f
        raise _TcpRetryFailed(f"TCP retry failed: {f.getErrorMessage()}")

    def close(self) -> None:
        for p in list(self.connections):
            if p.transport is not None:
                p.transport.loseConnection()


# One twisted.names client per (DNS server, clock, reactor, timeouts), shared by every Resolver of
# the process that asks that server: a client.Resolver builds a per-instance method table
# (~2.5 KB) and holds the TCP connection, so 10 000 phones asking one fake DNS share one. Each
# Resolver keeps its own cache, in-flight table and counters; the client only moves queries.
_CLIENTS: dict[tuple, list] = {}  # key → [client, users]


def _acquire_client(server: tuple[str, int], reactor: Any, clock: Any, timeout: tuple[float, ...]) -> tuple:
    key = (server, reactor, clock, timeout)
    entry = _CLIENTS.get(key)
    if entry is None:
        entry = _CLIENTS[key] = [_Client([server], clocked_reactor(reactor, clock), timeout), 0]
    entry[1] += 1
    return key, entry[0]


def _release_client(key: tuple) -> None:
    entry = _CLIENTS.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _CLIENTS[key]
        entry[0].close()


def _fault_of(f: _failure.Failure) -> Fault:
    if f.check(dnserror.DNSNameError):
        return Fault.NXDOMAIN
    if f.check(dnserror.DNSServerError):
        return Fault.SERVFAIL
    if f.check(dnserror.DNSQueryRefusedError):
        return Fault.REFUSED
    if f.check(dnserror.DNSQueryTimeoutError, defer.TimeoutError):
        return Fault.TIMEOUT
    if f.check(_TcpRetryFailed):
        return Fault.TRUNCATED
    return Fault.ERROR


def _records(qtype: str, answers: list) -> list:
    """twisted.names RRs → planner records with their owner names: those of ``qtype`` and the
    CNAMEs (the plan keeps only what answers the question, SPEC §2); other types are dropped."""
    out: list = []
    code = _QTYPE[qtype]
    for rr in answers:
        if rr.type != code and rr.type != dns.CNAME:
            continue
        p = rr.payload
        ttl = rr.ttl
        try:
            owner = rr.name.name.decode("ascii") or "."
            if rr.type == dns.CNAME:
                out.append(Cname(owner, p.name.name.decode("ascii") or ".", ttl))
            elif qtype == "NAPTR":
                out.append(Naptr(p.order, p.preference, p.flags.string.decode("ascii"), p.service.string.decode("ascii"),
                                 p.regexp.string.decode("utf-8"), p.replacement.name.decode("ascii") or ".", ttl,
                                 owner))
            elif qtype == "SRV":
                out.append(Srv(p.priority, p.weight, p.port, p.target.name.decode("ascii") or ".", ttl, owner))
            elif qtype == "A":
                out.append(Address(socket.inet_ntop(socket.AF_INET, p.address), ttl, owner))
            else:
                out.append(Address(socket.inet_ntop(socket.AF_INET6, p.address), ttl, owner))
        except (UnicodeDecodeError, ValueError, OSError, AttributeError) as e:
            out.append(f"undecodable {qtype} record ({e})")  # the planner logs and skips it
    return out


def _additional(records: list) -> list:
    """The additional section's A, AAAA and SRV records (the first 64), for the plan's log: it
    never uses them (SPEC §2: the phone asks A for each target itself [seed])."""
    out: list = []
    for rr in records[:64]:
        qtype = {dns.A: "A", dns.AAAA: "AAAA", dns.SRV: "SRV"}.get(rr.type)
        if qtype is not None:
            out.extend(r for r in _records(qtype, [rr]) if not isinstance(r, str))
    return out


class Resolver:
    """SPEC §2 resolution on the wire, with a TTL cache on ``clock``.

    ``dns_server``: (host, port) of the one DNS server the phone asks. ``timeout``: seconds
    per try, one entry per try (SPEC §2: two tries of 2 s). ``srv_select``, ``ipv6``, ``rng``:
    as :class:`phone.rfc3263.Resolution`. ``reactor``: the real reactor for sockets (the
    global one when None). The last :data:`KEEP_RESOLUTIONS` finished :class:`Resolution`
    objects are kept in :attr:`resolutions` (log lines, queries, faults) for the phone's
    structured log. The twisted.names client under it is shared with the other Resolvers of the
    process asking the same server on the same clock (see ``_CLIENTS``).
    """

    def __init__(
        self,
        dns_server: tuple[str, int],
        *,
        clock: Any,
        reactor: Any = None,
        timeout: tuple[float, ...] = (2, 2),
        srv_select: str = "seed",
        ipv6: bool = False,
        rng: _random.Random | None = None,
    ):
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        host, port = dns_server
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"dns_server: port must be 1..65535, got {port!r}")
        if not timeout or any(t <= 0 for t in timeout):
            raise ValueError(f"timeout: expected a non-empty sequence of seconds > 0, got {timeout!r}")
        self.dns_server = (host, port)
        self.clock = clock
        self.timeout = tuple(timeout)
        self.srv_select = srv_select
        self.ipv6 = ipv6
        self.rng = rng if rng is not None else _random.Random()
        self._client_key, self._client = _acquire_client((host, port), reactor, clock, self.timeout)
        self._cache: dict[tuple, tuple[list[Target], float | None]] = {}
        self._inflight: dict[tuple, list[defer.Deferred]] = {}
        # a few, not all: each keeps its log lines, ~1 KB, for every phone of the process
        self.resolutions: list[Resolution] = []  # the last KEEP_RESOLUTIONS (a list: a deque costs 600 B empty)
        self.truncated = 0  # truncated UDP answers retried over TCP, by this resolver

    def resolve(self, address: str, port: int = 0, transport: int = 0, naptr_build: int = 0) -> defer.Deferred:
        """Deferred of the ordered ``list[Target]`` of a server (SPEC §2); [] when none.

        A cached result is returned while its TTL lasts; the first call after expiry resolves
        again (SPEC §2). An empty or faulted result is not cached, so the next attempt
        resolves again. Bad arguments fail the Deferred with ValueError.
        """
        key = (address.strip().lower() if isinstance(address, str) else address, port, transport, naptr_build)
        cached = self._cache.get(key)
        if cached is not None:
            targets, expires = cached
            if expires is None or self.clock.seconds() < expires:
                return defer.succeed(list(targets))
            del self._cache[key]
        d: defer.Deferred = defer.Deferred()
        waiters = self._inflight.get(key)
        if waiters is not None:  # same lookup already on the wire: share its answer
            waiters.append(d)
            return d
        try:
            res = Resolution(address, port, transport, naptr_build, srv_select=self.srv_select,
                             ipv6=self.ipv6, now=self.clock.seconds(), rng=self.rng)
        except ValueError:
            return defer.fail()
        self._inflight[key] = [d]
        defer.Deferred.fromCoroutine(self._run(res)).addBoth(self._finish, key, res)
        return d

    def cached(self, address: str, port: int = 0, transport: int = 0, naptr_build: int = 0) -> list[Target] | None:
        """The cached, unexpired targets of a server, or None (no DNS traffic)."""
        hit = self._cache.get((address.strip().lower(), port, transport, naptr_build))
        if hit is None or (hit[1] is not None and self.clock.seconds() >= hit[1]):
            return None
        return list(hit[0])

    def close(self) -> None:
        """Let go of the shared client; the last user closes its TCP connection, if one was opened."""
        if self._client_key is not None:
            _release_client(self._client_key)
            self._client_key = None

    async def _run(self, res: Resolution) -> None:
        while (q := res.next_query()) is not None:
            answer, additional = await self._ask(q)
            res.feed(q.name, q.qtype, answer, now=self.clock.seconds(), additional=additional)

    async def _ask(self, q: Query) -> tuple[Any, list]:
        query = dns.Query(q.name, _QTYPE[q.qtype], dns.IN)
        try:
            answers, _authority, additional = await self._client.queryUDP([query], self.timeout).addCallback(
                self._filter
            )
        except Exception:
            return _fault_of(_failure.Failure()), []
        return _records(q.qtype, answers), _additional(additional)

    def _filter(self, message: Any) -> Any:
        if message.trunc:
            # SPEC §2 [RFC]: a truncated UDP answer is asked again over TCP.
            self.truncated += 1
            d = self._client.queryTCP(message.queries)
            d.addCallbacks(self._client._filterTcp, self._client._tcpFailed)
            return d
        return self._client.filterAnswers(message)

    def _finish(self, result: Any, key: tuple, res: Resolution) -> None:
        waiters = self._inflight.pop(key, [])
        if isinstance(result, _failure.Failure):
            for d in waiters:
                d.errback(result)
            return None
        self.resolutions.append(res)
        del self.resolutions[:-KEEP_RESOLUTIONS]
        if res.cacheable:
            self._cache[key] = (list(res.targets), res.expires_at)
        for d in waiters:
            d.callback(list(res.targets))
        return None
