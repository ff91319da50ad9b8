"""The fake authoritative DNS server: UDP and TCP on one port, faults, a record of every query.

The answering is :mod:`fakes.dns.authority` (sans-I/O), the fault rules
:mod:`fakes.dns.faults` (the shared grammar of :mod:`fakes.rules`, sans-I/O); this module
wires them to sockets and to the injected clock (SPEC §9): the UDP and TCP protocols are
thin adapters that call ``note_activity(clock)`` for every datagram/segment, a delayed
answer is a ``clock.callLater``.

Every query is recorded into the shared :class:`fakes.record.Recorder` as a
:class:`~fakes.record.DnsRecord`: one ``"in"`` record (``summary="Q NAPTR yealink.pbx.com"``,
``qtype``, ``name``, ``message`` the decoded :class:`~fakes.dns.query.Query`) and one
``"out"`` record (``rcode``, ``summary`` like ``"NOERROR 2 NAPTR +4 add"``, ``message`` the
dnslib answer, ``note`` the rule applied, e.g. ``"dropped: rule 1 drop A *"``; a dropped
query's ``"out"`` record has ``rcode=None`` and says nothing was sent). Garbage is not
recorded there (it is no query); it is logged (python ``logging``, logger ``fakes.dns``,
rate-limited: :mod:`sipcore.ratelog`) and counted in :attr:`FakeDNS.stats`.

Serving errors (SPEC §10: harness errors): an exception while answering (in the authority,
a fault's ``handle`` function, or these adapters) is kept in :attr:`FakeDNS.errors` and in the
recorder (``recorder.errors`` and an error record the ladder draws), with its traceback and
a PEP 678 note naming the fake and the query ("dns: while handling Q A example.com from
127.0.0.1:5353 over udp"); the query is answered **SERVFAIL** (the server failed, RFC 1035).

TCP and its bounds (issue 12: idle, one query's bytes, connections at once) are
:mod:`fakes.dns.tcp`.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Callable, Iterable

from dnslib import RCODE, DNSRecord
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from sipharness.fakes.dns.authority import Authority, Reply
from sipharness.fakes.dns.faults import Faults
from sipharness.fakes.dns.query import Bad, Query, decode
from sipharness.fakes.dns.tcp import TCPFactory
from sipharness.fakes.dns.zone import Zone
from sipharness.fakes.record import DnsRecord, Recorder
from sipharness.fakes.rules import Action
from sipharness.fakes.ruleset import Installed
from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.ratelog import RateLimitedLog

__all__ = ["FakeDNS", "TCP_IDLE_TIMEOUT", "TCP_QUERY_TIMEOUT", "TCP_MAX_CONNECTIONS"]

log = logging.getLogger("sipharness.fakes.dns")

_BIND_TRIES = 10
#: TCP bounds: idle (no complete query), one query's bytes, connections at once
TCP_IDLE_TIMEOUT = 10.0
TCP_QUERY_TIMEOUT = 5.0
TCP_MAX_CONNECTIONS = 128
_HEADER = struct.Struct("!HHHHHH")
_FORCED = {"SERVFAIL": "servfail", "REFUSED": "refused", "NXDOMAIN": "nxdomain"}


class FakeDNS:
    """An authoritative DNS server for ``zones`` on ``host``:``port`` (UDP and TCP, same port).

    ``start()`` binds (UDP first on ``port``, 0 = ephemeral, then TCP on the same number,
    retrying with a new UDP port when that TCP port is taken) and returns an already fired
    ``Deferred`` of ``(host, port)``; :attr:`address` holds the same afterwards. ``clock``
    (default: the reactor) times delays, TCP bounds and the records; ``recorder``
    (default: a new one on ``clock``) receives the query log.
    """

    def __init__(self, zones: Iterable[Zone] | Zone = (), *, clock: Any = None, recorder: Recorder | None = None,
                 host: str = "127.0.0.1", port: int = 0, name: str = "dns", reactor: Any = None,
                 tcp_idle_timeout: float = TCP_IDLE_TIMEOUT, tcp_query_timeout: float = TCP_QUERY_TIMEOUT,
                 tcp_max_connections: int = TCP_MAX_CONNECTIONS, max_udp_payload: int = 4096):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        for what, value in (("tcp_idle_timeout", tcp_idle_timeout), ("tcp_query_timeout", tcp_query_timeout)):
            if not value > 0:
                raise ValueError(f"FakeDNS({what}={value!r}): must be > 0 phone seconds")
        if not isinstance(tcp_max_connections, int) or tcp_max_connections < 1:
            raise ValueError(f"FakeDNS(tcp_max_connections={tcp_max_connections!r}): must be an int >= 1")
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.recorder = recorder if recorder is not None else Recorder(self.clock)
        self.host, self.port, self.name = host, port, name
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_query_timeout = tcp_query_timeout
        self.tcp_max_connections = tcp_max_connections
        self.authority = Authority([zones] if isinstance(zones, Zone) else zones, max_udp_payload=max_udp_payload)
        self.faults = Faults()
        #: every exception this fake hit while serving (harness errors; the plugin raises them)
        self.errors: list[BaseException] = []
        self.stats = {"queries": 0, "answers": 0, "dropped": 0, "bad": 0, "tcp_closed": 0, "tcp_refused": 0}
        self.address: tuple[str, int] | None = None
        self._udp = None
        self._tcp = None
        self.tcp_connections: set[Any] = set()  # the open DNSOverTCP connections (fakes.dns.tcp)
        self._pending: set[Any] = set()
        self.reject_log = RateLimitedLog(log, self.clock)

    # ---- zones ----
    @property
    def zones(self) -> list[Zone]:
        return self.authority.zones

    @property
    def zone(self) -> Zone:
        """The first zone."""
        return self.authority.zones[0]

    def add_zone(self, zone: Zone) -> None:
        self.authority.add_zone(zone)

    def _zone_of(self, name: str) -> Zone:
        zone = self.authority.zone_for(name)
        if zone is None:
            raise ValueError(f"{name!r} is in none of the zones served ({', '.join(str(z.origin) for z in self.zones)})")
        return zone

    def add(self, name: str, rtype: str, rdata: str, ttl: int | None = None):
        """Zone.add on the zone holding the absolute ``name`` (trailing dot optional)."""
        return self._zone_of(name).add(_abs(name), rtype, rdata, ttl)

    def remove(self, name: str, rtype: str | None = None, rdata: str | None = None) -> int:
        return self._zone_of(name).remove(_abs(name), rtype, rdata)

    def replace(self, name: str, rtype: str, rdatas: Iterable[str], ttl: int | None = None):
        return self._zone_of(name).replace(_abs(name), rtype, rdatas, ttl)

    def set_ttl(self, name: str, rtype: str, ttl: int) -> None:
        self._zone_of(name).set_ttl(_abs(name), rtype, ttl)

    # ---- life cycle ----
    def start(self) -> "defer.Deferred[tuple[str, int]]":
        """Bind UDP then TCP on the same port; the Deferred has already fired with (host, port)."""
        if self.address is not None:
            return defer.succeed(self.address)
        last: Exception | None = None
        for _ in range(_BIND_TRIES if self.port == 0 else 1):
            udp = self.reactor.listenUDP(self.port, _DNSOverUDP(self), interface=self.host)
            port = udp.getHost().port
            try:
                tcp = self.reactor.listenTCP(port, TCPFactory(self), interface=self.host)
            except CannotListenError as e:
                last = e
                udp.stopListening()
                continue
            self._udp, self._tcp = udp, tcp
            self.address = (self.host, port)
            log.info("fake DNS %s listening udp+tcp %s:%d", self.name, self.host, port)
            return defer.succeed(self.address)
        raise CannotListenError(self.host, self.port, f"no port free for both UDP and TCP after {_BIND_TRIES} tries: {last}")

    def stop(self) -> "defer.Deferred[None]":
        """Stop listening, close TCP connections, cancel delayed answers."""
        for call in list(self._pending):
            if call.active():
                call.cancel()
        self._pending.clear()
        ds = []
        for port in (self._udp, self._tcp):
            if port is not None:
                d = port.stopListening()
                if d is not None:
                    ds.append(d)
        for conn in list(self.tcp_connections):
            conn.close("server stopping")
        self._udp = self._tcp = None
        self.address = None
        return defer.gatherResults(ds).addCallback(lambda _: None)

    # ---- waiting ----
    def wait_for_query(self, name: str | None = None, qtype: str | int | None = None, timeout: float = 10.0,
                       count: int = 1, since: int | None = 0) -> "defer.Deferred[DnsRecord]":
        """Fire with the ``count``-th query ("in" record) to this server for ``name``/``qtype``
        (None: any), from recorder index ``since``; fails with ``WaitTimeout`` after ``timeout``
        seconds of the recorder's clock."""
        want_name = _abs(name).lower() if name is not None else None
        want_type = (qtype.upper() if isinstance(qtype, str) else _qtype_name(qtype)) if qtype is not None else None
        server = self.name

        def match(r: Any) -> bool:
            return (type(r) is DnsRecord and r.direction == "in" and r.server == server
                    and (want_name is None or _abs(r.name or "").lower() == want_name)
                    and (want_type is None or r.qtype == want_type))

        what = f"DNS query {want_type or '*'} {name or '*'} at {server}" + (f" (x{count})" if count > 1 else "")
        return self.recorder.wait_for(match, timeout, count=count, since=since, what=what)

    # ---- the query path (called by the adapters) ----
    def handle(self, data: bytes, transport: str, peer: tuple[str, int], send: Callable[[bytes], None]) -> Bad | None:
        """One query's bytes (the UDP and TCP adapters call this): answer, record, or reject it;
        returns the Bad verdict for input that is no query (None otherwise)."""
        q = decode(data)
        if isinstance(q, Bad):
            self.reject(f"{transport} from {peer[0]}:{peer[1]}: {q.reason}; "
                      + ("answered FORMERR/NOTIMP" if q.response else "dropped"))
            if q.response is not None:
                send(q.response)
            return q
        self.stats["queries"] += 1
        shown = q.qname[:-1] if q.qname.endswith(".") and len(q.qname) > 1 else q.qname
        qtype = q.type_name
        try:
            self._query(q, data, transport, peer, send, shown, qtype)
        except Exception as e:
            e.add_note(f"{self.name}: while handling Q {qtype} {shown} from {peer[0]}:{peer[1]} over {transport}")
            self._keep(e, transport, peer, f"Q {qtype} {shown}")
            self._servfail(q, transport, peer, send, qtype, shown)
        return None

    def _query(self, q: Query, data: bytes, transport: str, peer: tuple[str, int], send: Callable[[bytes], None],
               shown: str, qtype: str) -> None:
        now = self.clock.seconds()
        key = q.key.lower() if q.key.endswith(".") else q.key.lower() + "."
        rule = self.faults.decide(key, qtype, transport, peer[0], now)
        note = rule.note if rule is not None else ""
        local = self.address or (self.host, self.port)
        self.recorder.append(DnsRecord(time=now, direction="in", server=self.name, transport=transport, local=local,
                                       peer=peer, summary=f"Q {qtype} {shown}", qtype=qtype, name=shown, message=q,
                                       raw=data, note=note))
        reply = self._decide(q, rule, transport)
        if reply is None:  # dropped
            self.stats["dropped"] += 1
            self.recorder.append(DnsRecord(time=now, direction="out", server=self.name, transport=transport,
                                           local=local, peer=peer, summary="no answer (dropped)", qtype=qtype,
                                           name=shown, note=note))
            return
        delay = rule.rule.delay if rule is not None else 0.0
        if delay:
            call = None

            def later() -> None:
                self._pending.discard(call)
                try:
                    self._send(reply, transport, peer, send, qtype, shown, note)
                except Exception as e:
                    e.add_note(f"{self.name}: while sending the delayed answer to Q {qtype} {shown} "
                               f"from {peer[0]}:{peer[1]} over {transport}")
                    self._keep(e, transport, peer, f"Q {qtype} {shown}")

            call = self.clock.callLater(delay, later)
            self._pending.add(call)
            return
        self._send(reply, transport, peer, send, qtype, shown, note)

    def _decide(self, q: Query, rule: Installed | None, transport: str) -> Reply | None:
        """The answer to ``q`` under ``rule`` (None: say nothing)."""
        if rule is None:
            return self.authority.respond(q, transport=transport)
        r = rule.rule
        action = r.action
        if action in (Action.ANSWER, Action.DELAY):
            return self.authority.respond(q, transport=transport)
        if action is Action.DROP:
            return None
        if action is Action.RESPOND:
            return self.authority.forced(q, _FORCED[r.rcode])
        if action is Action.REFUSE:
            return self.authority.forced(q, "refused")
        if action is Action.TRUNCATE:
            return self.authority.forced(q, "truncate")
        return self._handled(r.fn(q), rule, q, transport)  # Action.HANDLE

    def _handled(self, result: Any, rule: Installed, q: Query, transport: str) -> Reply | None:
        """What a ``handle`` rule's function returned (fakes.dns.faults: None, an rcode, a DNSRecord, bytes, DROP)."""
        if result is None:
            return self.authority.respond(q, transport=transport)
        if result is Action.DROP:
            return None
        if isinstance(result, str) and result.upper() in _FORCED:
            return self.authority.forced(q, _FORCED[result.upper()])
        if isinstance(result, DNSRecord):
            result.header.id = q.id
            wire = bytes(result.pack())
            rcode = result.header.rcode
            return Reply(wire, result, rcode, f"{RCODE.get(rcode, rcode)} {len(result.rr)} answer(s) (handled)")
        if isinstance(result, (bytes, bytearray)):
            wire = bytes(result)
            rcode = wire[3] & 0x0F if len(wire) >= 4 else None
            return Reply(wire, None, rcode, f"raw answer ({len(wire)} bytes)")
        raise TypeError(f"{rule.describe()}: the function returned {result!r}; expected None, an rcode "
                        f"({', '.join(_FORCED)}), a DNSRecord, bytes or Action.DROP")

    def _send(self, reply: Reply, transport: str, peer, send, qtype: str, shown: str, note: str) -> None:
        try:
            send(reply.wire)
        except Exception as e:  # a vanished peer must not stop the server
            log.warning("fake DNS %s: could not send answer to %s:%s over %s: %s", self.name, peer[0], peer[1], transport, e)
            return
        self.stats["answers"] += 1
        self.recorder.append(DnsRecord(time=self.clock.seconds(), direction="out", server=self.name,
                                       transport=transport, local=self.address or (self.host, self.port), peer=peer,
                                       summary=reply.summary, qtype=qtype, rcode=reply.rcode, name=shown,
                                       message=reply.record, raw=reply.wire, note=note))

    # SPEC §10 [interp]: the fake failed (a harness error); SERVFAIL is RFC 1035's "the server failed"
    def _servfail(self, q: Query, transport: str, peer, send, qtype: str, shown: str) -> None:
        """SERVFAIL to a query the fake failed on: the authority's if it can build one, else a bare header."""
        try:
            reply = self.authority.forced(q, "servfail")
        except Exception:
            wire = _HEADER.pack(q.id, 0x8000 | (q.flags & 0x7900) | 2, 0, 0, 0, 0)
            reply = Reply(wire, None, 2, "SERVFAIL (the fake failed)")
        self._send(reply, transport, peer, send, qtype, shown, "harness error: the fake failed, answered SERVFAIL")

    def _keep(self, error: BaseException, transport: str, peer: tuple[str, int], summary: str) -> None:
        self.errors.append(error)
        local = self.address or (self.host, self.port)
        self.recorder.record_error(error, server=self.name, protocol="dns", transport=transport, local=local,
                                   peer=tuple(peer), summary=f"{type(error).__name__}: {error} [{summary}]"[:200])
        log.error("fake DNS %s: serving error on %s: %s", self.name, summary, error, exc_info=error)

    def adapter_error(self, error: BaseException, transport: str, peer: tuple[str, int]) -> None:
        """An exception out of the adapters themselves (a bug of this module): keep it too."""
        error.add_note(f"{self.name}: while reading {transport} input from {peer[0]}:{peer[1]}")
        self._keep(error, transport, peer, f"{transport} input")

    def reject(self, what: str) -> None:
        self.stats["bad"] += 1
        self.reject_log("fake DNS %s: bad input #%d: %s", self.name, self.stats["bad"], what)


class _DNSOverUDP(DatagramProtocol):
    def __init__(self, server: FakeDNS):
        self.server = server

    def datagramReceived(self, data: bytes, addr) -> None:
        server = self.server
        note_activity(server.clock)
        write = self.transport.write
        try:
            server.handle(data, "udp", addr[:2], lambda wire: write(wire, addr))
        except Exception as e:
            server.adapter_error(e, "udp", addr[:2])


def _abs(name: str) -> str:
    name = name.strip()
    return name if name.endswith(".") else name + "."


def _qtype_name(qtype: int) -> str:
    from dnslib import QTYPE
    return QTYPE.get(qtype, f"TYPE{qtype}")
