"""``FakeSipServer``: the Twisted adapter of a scriptable fake SIP server.

Every decision is sans-I/O in :class:`fakes.sip.core.ServerCore` (transactions, stateless
answers, retransmissions, the script, the role logic, the answer to garbage, calls the fake
places); this module moves bytes and time. It listens on UDP/TCP/TLS through sipcore's
transports (the same adapters the bundled phone uses: this server is their *handler*),
feeds each message with its origin and the clock's time to the core, runs one timer at the
core's deadline, and carries out the actions: send (UDP through the listener to the peer's
address, so a response due after a down/up cycle leaves from the reopened socket; TCP/TLS on
the connection the request came on), record, keep a serving error, change the sockets for a
state change (going down as *refused* closes them: ICMP port unreachable for UDP, RST for
TCP/TLS), log a rejected input (rate-limited, :mod:`sipcore.ratelog`).

Serving errors (SPEC §10: harness errors): an exception in the core, in a script's
``handle`` function, or in this adapter is kept in :attr:`FakeSipServer.errors` and in the
shared recorder (``recorder.errors``, and an error record the ladder draws), with its
traceback and a PEP 678 note naming this fake and the input; the request is answered 500.
The transports hand any exception that escapes to :meth:`FakeSipServer.sip_handler_error`.

Measured under SIPp load (5000 REGISTER/s, server CPU per message, two runs each, same box):
the former own socket code 169 and 172 µs, sipcore's transports 167 and 182 µs: within the
noise, so the one transport layer it is.
"""

from __future__ import annotations

import logging
import resource
from typing import Any

from twisted.internet import defer

from sipharness.sipcore.ratelog import RateLimitedLog
from sipharness.sipcore.transport import Listener, listen_tcp, listen_tls, listen_udp
from sipharness.sipcore.uri import SipUri

from sipharness.fakes.record import Recorder, SipRecord
from sipharness.fakes.sip.actions import ChangeSockets, Origin, Rejected, ServingError, SocketOp, Transmit
from sipharness.fakes.sip.core import ServerCore
from sipharness.fakes.sip.state import ServerState
from sipharness.fakes.sip.pbx import Pbx
from sipharness.fakes.sip.script import Script
from sipharness.fakes.sip.uac import OutgoingCall, UacCall, UacOp, target_for

__all__ = ["FakeSipServer", "default_max_connections"]

log = logging.getLogger("sipharness.fakes.sip")

Address = tuple[str, int]
_TRANSPORTS = ("udp", "tcp", "tls")
MAX_MESSAGE = 65535

# Socket buffers of a UDP listener. The default (~200 KB) holds ~150 queued datagrams: under
# thousands of requests a second, a pause of a few tens of milliseconds (a garbage collection)
# overflowed it and the kernel dropped requests, which the client retransmitted 500 ms later.
# Real servers do the same (Kamailio probes up to its maxbuffer, SIPp has -buff_size).
UDP_BUFFER = 4 * 1024 * 1024

#: TCP/TLS bounds (issue 12). A message must arrive whole within HEADER_TIMEOUT of its first
#: byte (the first one of the connect): 64·T1, the time a transaction lasts. A connection
#: with no message nor keep-alive for IDLE_TIMEOUT is closed: two hours, twice the guide's
#: default expiry, so a phone that refreshes its registration (at 90 %) over its connection
#: is never cut, while a connection that never said anything goes after HEADER_TIMEOUT.
HEADER_TIMEOUT = 32.0
IDLE_TIMEOUT = 7200.0


def default_max_connections() -> int:
    """The connection cap of a listener by default: an eighth of the process's file
    descriptors (a test runs a handful of fakes), between 16 and 1024. With 256 descriptors
    that is 32, so a flood of idle connections meets the cap, not the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 8))


class FakeSipServer:
    """A scriptable fake SIP server (registrar, proxy, UAS or all three) on the injected clock.

    ``clock`` (IReactorTime, default ``reactor``) gives all times; ``reactor`` does the I/O
    (default: the global reactor); ``recorder`` is the shared :class:`fakes.record.Recorder`
    (one is made when None). ``users`` (name → password) turns digest on for REGISTER.
    TCP/TLS bounds: ``header_timeout``, ``idle_timeout`` (phone seconds), ``max_connections``
    per listener (defaults: :data:`HEADER_TIMEOUT`, :data:`IDLE_TIMEOUT`,
    :func:`default_max_connections`).
    """

    def __init__(self, name: str = "sip", *, role: str = "pbx", clock: Any = None, recorder: Recorder | None = None,
                 reactor: Any = None, host: str = "127.0.0.1", domain: str | None = None,
                 users: dict[str, str] | None = None, min_expires: int | None = None, answer_delay: float = 0.0,
                 unknown_user: str = "uas", header_timeout: float = HEADER_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, max_connections: int | None = None):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.name = name
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.recorder = recorder if recorder is not None else Recorder(self.clock)
        self.host = host
        self.addresses: dict[str, Address] = {}
        self.logic = Pbx(role, addresses=self.addresses, domain=domain, users=users, min_expires=min_expires,
                         answer_delay=answer_delay, unknown_user=unknown_user)
        self.script = Script()
        #: every exception this fake hit while serving (harness errors; the plugin raises them)
        self.errors: list[BaseException] = []
        # records wait here until the bytes of the same feed are out (see _do)
        self._records: list = []
        self._flushing = False
        self.core = ServerCore(name, self.logic, self.script, self.addresses, self._records.append)
        self.bounds = {"header_timeout": header_timeout, "idle_timeout": idle_timeout,
                       "max_connections": max_connections if max_connections is not None
                       else default_max_connections()}
        self._listeners: dict[str, Listener] = {}
        self._timer: Any = None
        self._timer_due: float | None = None
        self._flap: Any = None
        self._rejects = RateLimitedLog(log, self.clock)

    # ------------------------------------------------------------------ public API
    @property
    def role(self) -> str:
        return self.logic.role

    @property
    def state(self) -> ServerState:
        """UP, BLACKHOLE, REFUSED or STOPPED (a StrEnum: compares equal to "up" ...)."""
        return self.core.state

    @property
    def stopped(self) -> bool:
        return self.core.state is ServerState.STOPPED

    @property
    def address(self) -> Address:
        """The first listener's (host, port)."""
        if not self.addresses:
            raise RuntimeError(f"fake SIP server {self.name!r} is not listening yet: call listen() first")
        return next(iter(self.addresses.values()))

    @property
    def records(self) -> list[SipRecord]:
        return self.recorder.sip(server=self.name)

    def listen(self, transport: str = "udp", port: int = 0, *, context: Any = None,
               reuse_port: int | None = None) -> "defer.Deferred[Address]":
        """Listen on ``transport`` ("udp", "tcp", "tls"; tls needs ``context``, an OpenSSL context factory).
        ``reuse_port`` (UDP): this server is one of that many worker processes sharing ``port``
        (sipcore.reuseport: a client always meets the same worker, with its bindings and nonces)."""
        transport = transport.lower()
        if transport not in _TRANSPORTS:
            raise ValueError(f"listen(transport={transport!r}): expected one of {', '.join(_TRANSPORTS)}")
        if transport in self._listeners:
            raise ValueError(f"fake SIP server {self.name!r} already listens on {transport}")
        if transport == "tls" and context is None:
            raise ValueError("listen('tls') needs context= (a server context factory, e.g. from sipcore.tls)")
        common = dict(host=self.host, port=port, clock=self.clock, reactor=self.reactor, max_size=MAX_MESSAGE)
        if transport == "udp":
            listener = listen_udp(self, buffer_size=UDP_BUFFER, reuse_port=reuse_port, **common)
        elif reuse_port is not None:
            raise ValueError(f"listen({transport!r}, reuse_port=...): worker processes share a UDP port only")
        elif transport == "tcp":
            listener = listen_tcp(self, **self.bounds, **common)
        else:
            listener = listen_tls(self, context_factory=context, **self.bounds, **common)
        self._listeners[transport] = listener
        self.addresses[transport] = listener.address
        if self.state is ServerState.REFUSED:  # listening while down: stay refused
            listener.close_refusing()
        return defer.succeed(listener.address)

    def bindings(self, aor: str) -> list[tuple[str, float]]:
        """Live bindings of ``aor`` ("sip:alice@host", "alice@host" or "alice") as (contact, expires_at)."""
        return self.logic.registrar.bindings(aor, self.clock.seconds())

    def wait_for(self, method: str | None = None, direction: str | None = "in", status: int | None = None,
                 count: int = 1, timeout: float = 60.0, *, since: int | None = 0) -> "defer.Deferred[SipRecord]":
        """Deferred of the ``count``-th record of this server matching; fails with WaitTimeout after
        ``timeout`` phone seconds."""
        name = self.name

        def match(r: Any) -> bool:
            return (type(r) is SipRecord and r.server == name and (method is None or r.method == method)
                    and (direction is None or r.direction == direction) and (status is None or r.status == status))
        what = (f"{self.name}: {count} × {direction or 'any'} {method or 'message'}"
                + (f" {status}" if status is not None else ""))
        return self.recorder.wait_for(match, timeout, count=count, since=since, what=what)

    def originate(self, user: str, *, from_user: str = "2000", contact: str | None = None, sdp: bool = True,
                  auto_ack: bool = True, headers: Any = None) -> OutgoingCall:
        """Call the DUT: an INVITE to the Contact ``user`` registered here (or to ``contact``, a
        SIP URI), from ``from_user``; returns the :class:`~fakes.sip.uac.OutgoingCall`. A 2xx is
        ACKed at once unless ``auto_ack=False`` (then ``call.ack()``)."""
        now = self.clock.seconds()
        origin, aor = None, None
        if contact is None:
            found = self.logic.registrar.lookup(user, now)
            if not found:
                raise LookupError(f"fake SIP server {self.name!r}: {user!r} has no live registration here "
                                  f"(give contact= to call an address)")
            uri, origin, aor = found[0].uri, found[0].origin, found[0].aor
        else:
            uri = SipUri.parse(contact)
        call = UacCall(uri, target_for(uri, self.addresses, origin), user=user, from_user=from_user, aor=aor,
                       sdp=sdp, headers=headers, auto_ack=auto_ack)
        self._do(self.core.originate(call, now))
        return OutgoingCall(call, recorder=self.recorder, server=self.name, act=self._uac_op)

    def down(self, mode: str = "blackhole") -> "defer.Deferred[None]":
        """Go down: ``blackhole`` drops everything with sockets open; ``refused`` closes them (ICMP/RST)."""
        if mode not in ("blackhole", "refused"):
            raise ValueError(f"down(mode={mode!r}): expected 'blackhole' or 'refused'")
        return self._transition(ServerState(mode))

    def up(self) -> "defer.Deferred[None]":
        """Come up again on the same addresses (also stops a flap)."""
        self._stop_flap()
        return self._transition(ServerState.UP)

    def flap(self, down_for: float, up_for: float, *, mode: str = "blackhole", cycles: int | None = None) -> None:
        """Go down now for ``down_for`` phone seconds, up for ``up_for``, repeat (``cycles`` times, or until up()/stop())."""
        if down_for <= 0 or up_for <= 0:
            raise ValueError(f"flap: down_for and up_for must be > 0 phone seconds, got {down_for!r}, {up_for!r}")
        self._stop_flap()
        state = {"left": cycles, "at": self.clock.seconds()}

        def schedule(after: float, fn: Any) -> None:
            # absolute times, so a big jump of the clock does not make the schedule drift
            state["at"] += after
            self._flap = self.clock.callLater(max(0.0, state["at"] - self.clock.seconds()), fn)

        def go_down() -> None:
            if state["left"] is not None:
                if state["left"] <= 0:
                    self._flap = None
                    return
                state["left"] -= 1
            self.down(mode)
            schedule(down_for, go_up)

        def go_up() -> None:
            self._transition(ServerState.UP)
            schedule(up_for, go_down)

        go_down()

    def stop(self) -> "defer.Deferred[None]":
        """Close every socket and cancel every timer of this server."""
        self._stop_flap()
        d = self._transition(ServerState.STOPPED) if not self.stopped else defer.succeed(None)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timer_due = None
        return d

    # ------------------------------------------------------------------ the transports' handler
    def sip_received(self, message: Any, source: Any) -> None:
        """sipcore.transport: a parsed message (``source.raw``: the datagram, UDP only)."""
        raw = source.raw or message.to_bytes()
        self._do(self.core.receive(message, raw, Origin(source.transport, source.peer, source.local, source),
                                   self.clock.seconds()))

    def sip_bad_input(self, raw: bytes, error: Exception, source: Any) -> None:
        """sipcore.transport: bytes that do not parse."""
        self._do(self.core.bad_input(raw, error, Origin(source.transport, source.peer, source.local, source),
                                     self.clock.seconds()))

    def sip_transport_error(self, peer: Address, transport: str, reason: str) -> None:
        """sipcore.transport: a send or a connection we opened failed."""
        self._do(self.core.transport_error(tuple(peer), transport, reason, self.clock.seconds()))

    def sip_connection_limited(self, peer: Address, transport: str, reason: str) -> None:
        """sipcore.transport: a listener bound refused or cut a connection."""
        self._rejects("fake SIP server %s: %s connection from %s:%s: %s", self.name, transport, peer[0], peer[1],
                      reason)

    def sip_handler_error(self, error: BaseException, where: str) -> None:
        """sipcore.transport: one of the methods above raised (a bug of this adapter): keep it."""
        error.add_note(f"{self.name}: {where}")
        self._keep(error, None, f"{type(error).__name__}: {error}")

    # ------------------------------------------------------------------ carrying out actions
    def _do(self, actions: list) -> None:
        """Carry the actions out, then hand the feed's records to the recorder, in order.

        The records come last so that whoever waits on one (a test woken by the 200 its call
        got) finds everything that answer caused already on the wire (the fake's ACK). A
        waiter that acts at once (``call.bye()``) feeds the core again: its records join the
        queue being handed on, so the recorder keeps the order of the wire."""
        records = self._records
        for a in actions:
            kind = type(a)
            if kind is Transmit:
                if self._send(a):
                    records.append(a.record)
            elif kind is ServingError:
                self._keep(a.error, a.origin, a.summary)
            elif kind is Rejected:
                self._rejects("fake SIP server %s: %s from %s:%s: %s", self.name, a.origin.transport,
                              a.origin.peer[0], a.origin.peer[1], a.what)
        self._arm()
        if self._flushing:
            return  # the outer _do hands these on
        self._flushing = True
        try:
            while records:
                batch = records[:]
                records.clear()
                self.recorder.extend(batch)
        finally:
            self._flushing = False

    def _send(self, t: Transmit) -> bool:
        """UDP through the listener (the socket open now, after a down/up); TCP/TLS on the flow
        given (sipcore reconnects if it is gone), else from the listener (a new connection)."""
        if t.transport == "udp":
            lst = self._listeners.get("udp")
            return lst is not None and lst.send_raw(t.data, t.peer)
        if t.flow is not None:
            t.flow.send_raw(t.data)
            return True
        lst = self._listeners.get(t.transport)
        return lst is not None and lst.send_raw(t.data, t.peer)

    def _keep(self, error: BaseException, origin: Origin | None, summary: str) -> None:
        self.errors.append(error)
        if origin is not None:
            where = dict(transport=origin.transport, local=tuple(origin.local), peer=tuple(origin.peer))
        else:
            addr = next(iter(self.addresses.values()), (self.host, 0))
            where = dict(transport=next(iter(self.addresses), "udp"), local=addr, peer=addr)
        self.recorder.record_error(error, server=self.name, protocol="sip", summary=summary, **where)
        log.error("fake SIP server %s: serving error: %s", self.name, summary, exc_info=error)

    def _arm(self) -> None:
        """One timer at the core's deadline."""
        due = self.core.deadline
        if due == self._timer_due:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._timer_due = None, due
        if due is not None:
            self._timer = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_due = None
        self._do(self.core.timer(self.clock.seconds()))

    def _uac_op(self, call: UacCall, op: UacOp) -> None:
        self._do(self.core.uac(call, op, self.clock.seconds()))

    def _transition(self, to: ServerState) -> "defer.Deferred[None]":
        ds = []
        for a in self.core.transition(to):
            if type(a) is ChangeSockets:
                for lst in self._listeners.values():
                    if a.op is SocketOp.CLOSE_REFUSING and lst.listening:
                        ds.append(lst.close_refusing())  # UDP: ICMP port unreachable; TCP/TLS: RST, open ones reset
                    elif a.op is SocketOp.REOPEN and not lst.listening:
                        lst.reopen()
        if to is ServerState.STOPPED:
            self._arm()
        return defer.DeferredList(ds).addCallback(lambda _: None)

    def _stop_flap(self) -> None:
        if self._flap is not None and self._flap.active():
            self._flap.cancel()
        self._flap = None
