"""The fake authoritative DNS server: UDP and TCP on one port, faults, a record of every query.

The answering is :mod:`fakes.dns.authority` (sans-I/O), the fault table
:mod:`fakes.dns.faults` (sans-I/O); this module only wires them to sockets and to the
injected clock (SPEC §9): the UDP and TCP protocols are thin adapters that call
``note_activity(clock)`` for every datagram/segment, a ``delay`` fault is a
``clock.callLater``, an idle or half-open TCP connection is closed after
``tcp_idle_timeout`` phone seconds.

Every query is recorded into the shared :class:`fakes.record.Recorder` (kind ``"dns"``): one
``"in"`` record (``summary="Q NAPTR yealink.pbx.com"``, ``method`` the query type, ``name``
the query name, ``message`` the decoded :class:`~fakes.dns.authority.Query`) and one
``"out"`` record (``status`` the rcode, ``summary`` like ``"NOERROR 2 NAPTR +4 add"``,
``message`` the dnslib answer, ``note`` the fault applied, e.g. ``"fault: drop"``; a dropped
query's ``"out"`` record has ``status=None`` and says nothing was sent). Garbage is
not recorded there (it is no query); it is logged (python ``logging``, logger
``fakes.dns``) and counted in :attr:`FakeDNS.stats`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from sipharness.fakes.dns.authority import Authority, Bad, Reply, decode
from sipharness.fakes.dns.faults import Faults
from sipharness.fakes.dns.zone import Zone
from sipharness.fakes.record import Record, Recorder
from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.transport import no_delay

__all__ = ["FakeDNS"]

log = logging.getLogger("sipharness.fakes.dns")

_MAX_TCP_QUERY = 16384  # a length prefix above this is garbage, not a query
_BIND_TRIES = 10


class FakeDNS:
    """An authoritative DNS server for ``zones`` on ``host``:``port`` (UDP and TCP, same port).

    ``start()`` binds (UDP first on ``port``, 0 = ephemeral, then TCP on the same number,
    retrying with a new UDP port when that TCP port is taken) and returns an already fired
    ``Deferred`` of ``(host, port)``; :attr:`address` holds the same afterwards. ``clock``
    (default: the reactor) times delays, idle TCP connections and the records; ``recorder``
    (default: a new one on ``clock``) receives the query log.
    """

    def __init__(self, zones: Iterable[Zone] | Zone = (), *, clock: Any = None, recorder: Recorder | None = None,
                 host: str = "127.0.0.1", port: int = 0, name: str = "dns", reactor: Any = None,
                 tcp_idle_timeout: float = 10.0, max_udp_payload: int = 4096):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.recorder = recorder if recorder is not None else Recorder(self.clock)
        self.host, self.port, self.name = host, port, name
        self.tcp_idle_timeout = tcp_idle_timeout
        self.authority = Authority([zones] if isinstance(zones, Zone) else zones, max_udp_payload=max_udp_payload)
        self.faults = Faults()
        self.stats = {"queries": 0, "answers": 0, "dropped": 0, "bad": 0, "tcp_closed": 0}
        self.address: tuple[str, int] | None = None
        self._udp = None
        self._tcp = None
        self._conns: set[_DNSOverTCP] = set()
        self._pending: set[Any] = set()

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
                tcp = self.reactor.listenTCP(port, _TCPFactory(self), interface=self.host)
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
        for conn in list(self._conns):
            conn.close("server stopping")
        self._udp = self._tcp = None
        self.address = None
        return defer.gatherResults(ds).addCallback(lambda _: None)

    # ---- waiting ----
    def wait_for_query(self, name: str | None = None, qtype: str | int | None = None, timeout: float = 10.0,
                       count: int = 1, since: int | None = 0) -> "defer.Deferred[Record]":
        """Fire with the ``count``-th query ("in" record) to this server for ``name``/``qtype``
        (None: any), from recorder index ``since``; fails with ``WaitTimeout`` after ``timeout``
        seconds of the recorder's clock."""
        want_name = _abs(name).lower() if name is not None else None
        want_type = (qtype.upper() if isinstance(qtype, str) else _qtype_name(qtype)) if qtype is not None else None
        server = self.name

        def match(r: Record) -> bool:
            return (r.kind == "dns" and r.direction == "in" and r.server == server
                    and (want_name is None or _abs(r.name or "").lower() == want_name)
                    and (want_type is None or r.method == want_type))

        what = f"DNS query {want_type or '*'} {name or '*'} at {server}" + (f" (x{count})" if count > 1 else "")
        return self.recorder.wait_for(match, timeout, count=count, since=since, what=what)

    # ---- the query path (called by the adapters) ----
    def _handle(self, data: bytes, transport: str, peer: tuple[str, int], send: Callable[[bytes], None]) -> Bad | None:
        q = decode(data)
        if isinstance(q, Bad):
            self._bad(f"{transport} from {peer[0]}:{peer[1]}: {q.reason}; "
                      + ("answered FORMERR/NOTIMP" if q.response else "dropped"))
            if q.response is not None:
                send(q.response)
            return q
        self.stats["queries"] += 1
        fault = self.faults.match(q.key, q.qtype, transport) if len(self.faults) else None
        note = fault.note if fault is not None else ""
        local = self.address or (self.host, self.port)
        now = self.clock.seconds()
        shown = q.qname[:-1] if q.qname.endswith(".") and len(q.qname) > 1 else q.qname
        qtype = q.type_name
        self.recorder.append(Record(now, "dns", "in", self.name, transport, local, peer, f"Q {qtype} {shown}",
                                    method=qtype, name=shown, message=q, raw=data, note=note))
        if fault is None:
            reply = self.authority.respond(q, transport=transport)
        elif fault.action == "drop":
            self.stats["dropped"] += 1
            self.recorder.append(Record(now, "dns", "out", self.name, transport, local, peer,
                                        "no answer (dropped)", method=qtype, name=shown, note=note))
            return None
        elif fault.action == "delay":
            reply = self.authority.respond(q, transport=transport)
        elif fault.action == "tcp_only":
            reply = self.authority.forced(q, "truncate")
        else:
            reply = self.authority.forced(q, fault.action)
        if fault is not None and fault.delay:
            call = None

            def later() -> None:
                self._pending.discard(call)
                self._send(reply, transport, peer, send, qtype, shown, note)

            call = self.clock.callLater(fault.delay, later)
            self._pending.add(call)
            return None
        self._send(reply, transport, peer, send, qtype, shown, note)
        return None

    def _send(self, reply: Reply, transport: str, peer, send, qtype: str, shown: str, note: str) -> None:
        try:
            send(reply.wire)
        except Exception as e:  # a vanished peer must not stop the server
            log.warning("fake DNS %s: could not send answer to %s:%s over %s: %s", self.name, peer[0], peer[1], transport, e)
            return
        self.stats["answers"] += 1
        self.recorder.append(Record(self.clock.seconds(), "dns", "out", self.name, transport,
                                    self.address or (self.host, self.port), peer, reply.summary, method=qtype,
                                    status=reply.rcode, name=shown, message=reply.record, raw=reply.wire, note=note))

    def _bad(self, what: str) -> None:
        self.stats["bad"] += 1
        n = self.stats["bad"]
        if n <= 10 or n % 1000 == 0:
            log.warning("fake DNS %s: bad input #%d: %s", self.name, n, what)
        else:
            log.debug("fake DNS %s: bad input #%d: %s", self.name, n, what)


class _DNSOverUDP(DatagramProtocol):
    def __init__(self, server: FakeDNS):
        self.server = server

    def datagramReceived(self, data: bytes, addr) -> None:
        server = self.server
        note_activity(server.clock)
        write = self.transport.write
        server._handle(data, "udp", addr[:2], lambda wire: write(wire, addr))


class _DNSOverTCP(Protocol):
    """RFC 1035 §4.2.2 / RFC 7766 framing: 2-byte length, several queries per connection."""

    def __init__(self, server: FakeDNS):
        self.server = server
        self.buf = bytearray()
        self.timer = None
        self.peer: tuple[str, int] = ("?", 0)
        self.closed = False

    def connectionMade(self) -> None:
        p = self.transport.getPeer()
        self.peer = (p.host, p.port)
        no_delay(self.transport)
        self.server._conns.add(self)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.reset(self.server.tcp_idle_timeout)
        else:
            self.timer = self.server.clock.callLater(self.server.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        self.timer = None
        state = f"with {len(self.buf)} byte(s) of an unfinished query" if self.buf else "idle"
        self.close(f"{state} for {self.server.tcp_idle_timeout:g} s")

    def close(self, why: str, *, bad: bool = False, flush: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if bad:
            self.server._bad(f"tcp from {self.peer[0]}:{self.peer[1]}: {why}; connection closed")
        else:
            log.info("fake DNS %s: closing TCP connection from %s:%s: %s", self.server.name, self.peer[0], self.peer[1], why)
        self.server.stats["tcp_closed"] += 1
        if flush:
            self.transport.loseConnection()  # after the FORMERR already written
        else:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        server = self.server
        note_activity(server.clock)
        if self.closed:
            return
        self.buf += data
        self._arm()
        while len(self.buf) >= 2:
            length = (self.buf[0] << 8) | self.buf[1]
            if length < 12 or length > _MAX_TCP_QUERY:
                self.close(f"length prefix {length} is no DNS query (12..{_MAX_TCP_QUERY} bytes)", bad=True)
                return
            if len(self.buf) < 2 + length:
                return
            msg = bytes(self.buf[2:2 + length])
            del self.buf[:2 + length]
            if server._handle(msg, "tcp", self.peer, self._write) is not None:
                self.close("bad query on the stream (answered FORMERR if its id was readable)", flush=True)
                return

    def _write(self, wire: bytes) -> None:
        if self.closed:
            raise ConnectionError("TCP connection already closed")
        self.transport.write(len(wire).to_bytes(2, "big") + wire)

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self.server._conns.discard(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class _TCPFactory(Factory):
    def __init__(self, server: FakeDNS):
        self.server = server

    def buildProtocol(self, addr) -> _DNSOverTCP:
        return _DNSOverTCP(self.server)


def _abs(name: str) -> str:
    name = name.strip()
    return name if name.endswith(".") else name + "."


def _qtype_name(qtype: int) -> str:
    from dnslib import QTYPE
    return QTYPE.get(qtype, f"TYPE{qtype}")
