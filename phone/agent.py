"""The bundled phone's user agent, without sockets: it wires the parts and routes what arrives.

:class:`UserAgent` decides nothing itself. It builds, per enabled account, one SPEC §6
controller (:class:`phone.fallback.Fallback`) and per configured server an
:class:`phone.accountserver.AccountServer` with its :class:`phone.registration.Registration`;
the calls are :class:`phone.calls.CallControl`'s and :class:`phone.incoming.Incoming`'s, the
transactions :class:`phone.transactions.TransactionLayer`'s. It carries out the fallback
controller's actions, routes what the wire brings (responses to the transaction layer, the
rest to call control) and gives the parts what their declared Protocols ask for
(:class:`phone.sender.RequestHost`, :class:`phone.registration.RegistrationHost`,
:class:`phone.calls.CallHost`): the clock, the events, resolution and flows.

Two things are injected: a clock (``IReactorTime``: ``task.Clock`` in unit tests, the SPEC §9
clocks otherwise) and a *wire* that hands out flows per target (``wire.flow(target) ->
Deferred[flow]`` or a flow; see :class:`phone.sender.Flow`). Messages come back through
:meth:`UserAgent.sip_received`, transport failures through :meth:`UserAgent.transport_error`.
:mod:`phone.phone` plugs in real sockets and the resolver; the unit tests plug in an in-memory
wire and canned target lists, so every rule is checked to the exact phone second.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from twisted.internet import defer

from sipharness.sipcore.events import EventKind
from sipharness.sipcore.journal import Journal

from sipharness.phone.accountserver import AccountServer
from sipharness.phone.call import Call
from sipharness.phone.calls import CallControl
from sipharness.phone.events import KEEP_EVENTS, EventJournal, PhoneEvent
from sipharness.phone.fallback import CancelProbe, Fallback, ProbeAt, Register, Unregister
from sipharness.phone.incoming import Incoming
from sipharness.phone.registration import Registration
from sipharness.phone.transactions import TransactionLayer

__all__ = ["UserAgent", "UNREGISTER_TIMEOUT", "QUIET_WINDOW"]

UNREGISTER_TIMEOUT = 5.0  # phone seconds stop(unregister=True) waits for the Expires: 0 answers [interp]
QUIET_WINDOW = 1.0  # phone seconds: a flood of the same rejection is one log line per window (issue 12)


class UserAgent:
    def __init__(self, config: Any, *, clock: Any, wire: Any, resolve: Callable[[Any, int], Any],
                 name: str = "phone", local_host: str = "127.0.0.1", keep_events: int = KEEP_EVENTS):
        self.config = config
        self.clock = clock
        self.wire = wire
        self._resolve = resolve
        self.name = name
        self.local_host = local_host
        self.events: Journal[PhoneEvent] = EventJournal(clock, keep_events)  # the last keep_events
        self.transactions = TransactionLayer(clock)
        self.call_control = CallControl(self)
        self.incoming = Incoming(self, self.call_control)
        self.servers: dict[tuple[int, int], AccountServer] = {}
        self.fallbacks: dict[int, Fallback] = {}  # enabled accounts → their SPEC §6 controller
        self._timers: list[Any] = []
        self._probe_timers: dict[int, Any] = {}
        self._quiet: dict[str, list] | None = None  # rate-limited log lines: key → [window start, suppressed]
        self.running = False
        self._halted = False
        for x, acct in config.accounts.items():
            if not acct.enable:
                continue
            fb = self.fallbacks[x] = Fallback(acct.fallback_redundancy_type, acct.fallback_timeout,
                                              has_server2=acct.servers[2].configured)
            for y in (1, 2):
                if not acct.servers[y].configured:
                    continue
                srv = self.servers[(x, y)] = AccountServer(acct, y)
                # partials, not closures: a few hundred bytes less per registration (10 000 phones)
                srv.registration = Registration(self, srv, on_registered=functools.partial(self._registered, x),
                                                on_failed=functools.partial(self._register_failed, x),
                                                retry_on_failure=functools.partial(fb.may_retry, y))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.running = True
        for x, fb in self.fallbacks.items():
            self._carry_out(x, fb.start())

    def stop(self, unregister: bool = False, timeout: float = UNREGISTER_TIMEOUT) -> defer.Deferred:
        """Cancel everything; with ``unregister`` first send Expires: 0 (with our Contact) to every
        server the phone is registered with, and wait for the answers at most ``timeout`` phone
        seconds [interp: a phone going down does not hang on a silent server for 32 s]."""
        pending = []
        if unregister:
            for srv in self.servers.values():
                if srv.registration.registered:
                    d: defer.Deferred = defer.Deferred()
                    srv.registration.unregister(lambda d=d: d.called or d.callback(None))
                    pending.append(d)
        if not pending:
            self._halt()
            return defer.succeed(None)
        finished: defer.Deferred = defer.Deferred()

        def finish(why: str | None) -> None:
            if finished.called:
                return
            if why:
                self.decide(why)
            if deadline.active():
                deadline.cancel()
            self._halt()
            finished.callback(None)

        deadline = self.clock.callLater(
            timeout, finish, f"stop: un-REGISTER not all answered within {timeout:g} s → closing anyway")
        defer.DeferredList(pending).addCallback(lambda _: finish(None))
        return finished

    def _halt(self) -> None:
        self.running = False
        self._halted = True
        for srv in self.servers.values():
            srv.registration.stop()
        self.call_control.halt()
        self.transactions.halt()
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers.clear()
        self._probe_timers.clear()
        self.events.cancel_waits()

    @property
    def log(self) -> list[str]:
        """One line per event, made from ``events`` when asked (not kept twice: 10 000 phones)."""
        return [str(e) for e in self.events]

    # ------------------------------------------------------------------ what the parts ask for (their Protocols)
    def now(self) -> float:
        return self.clock.seconds()

    def call_later(self, delay: float, fn: Callable, *args: Any) -> Any:
        if self._halted:  # stop() may run inside an event callback: schedule nothing after it
            return _NoCall()
        self._timers = [t for t in self._timers if t.active()]
        t = self.clock.callLater(max(0.0, delay), fn, *args)
        self._timers.append(t)
        return t

    def emit(self, kind: str, **fields: Any) -> PhoneEvent:
        return self.events.append(PhoneEvent(time=self.now(), kind=kind, **fields))

    def decide(self, text: str, *, account: int | None = None, server: int | None = None, target: Any = None,
               limit: str | None = None) -> None:
        """A "decision" event. ``limit``: a key; lines of one key are one per QUIET_WINDOW, the
        next one saying how many were left out (a flood of rejected input, issue 12)."""
        if limit is not None:
            now = self.now()
            quiet = self._quiet if self._quiet is not None else {}
            self._quiet = quiet
            window = quiet.get(limit)
            if window is not None and now - window[0] < QUIET_WINDOW:
                window[1] += 1
                return
            if window is not None and window[1]:
                text += f" ({window[1]} more like it in the last {now - window[0]:.1f} s not logged)"
            quiet[limit] = [now, 0]
        self.emit(EventKind.DECISION, account=account, server=server, target=None if target is None else str(target),
                  detail=text)

    def server(self, account: int, index: int) -> AccountServer | None:
        return self.servers.get((account, index))

    def resolve(self, server: AccountServer) -> defer.Deferred:
        return defer.maybeDeferred(self._resolve, server.account, server.index)

    def flow(self, target: Any) -> defer.Deferred:
        return defer.maybeDeferred(self.wire.flow, target)

    def run_transaction(self, request: Any, flow: Any, max_sends: int | None, on_events: Callable[[list], Any]) -> Any:
        return self.transactions.run(request, flow, max_sends, on_events)

    def drop_transaction(self, tx: Any) -> None:
        self.transactions.drop(tx)

    def call_up(self, account: int) -> bool:
        return self.call_control.call_up(account)

    def request_order(self, account: int) -> list[int]:
        return self.fallbacks[account].request_order()

    def invite_failed(self, account: int, server: int) -> None:
        self._carry_out(account, self.fallbacks[account].request_failed(server, self.now()))

    # ------------------------------------------------------------------ SPEC §6: the controller's actions, carried out
    def _registered(self, x: int, y: int, now: float) -> None:
        self._carry_out(x, self.fallbacks[x].registered(y, now))

    def _register_failed(self, x: int, y: int, now: float) -> None:
        self._carry_out(x, self.fallbacks[x].register_failed(y, now))

    def _probe(self, x: int) -> None:
        self._probe_timers.pop(x, None)
        self._carry_out(x, self.fallbacks[x].probe_due(self.now()))

    def _carry_out(self, x: int, actions: list) -> None:
        for action in actions:
            if isinstance(action, (Register, Unregister)):
                srv = self.servers.get((x, action.server))
                if srv is None:
                    continue
                if action.why:
                    self.decide(f"account {x}: {action.why}", account=x, server=action.server)
                if isinstance(action, Register):
                    srv.registration.start()
                else:
                    srv.registration.unregister()
            elif isinstance(action, (ProbeAt, CancelProbe)):
                t = self._probe_timers.pop(x, None)
                if t is not None and t.active():
                    t.cancel()
                if isinstance(action, ProbeAt):
                    self._probe_timers[x] = self.call_later(action.at - self.now(), self._probe, x)

    # ------------------------------------------------------------------ input from the wire
    def sip_received(self, message: Any, reply: Any) -> None:
        if not self.running:
            return
        if message.is_request:
            self.incoming.request(message, reply)
        elif not self.transactions.response(message):
            self.call_control.stray_response(message)

    def transport_error(self, peer: tuple[str, int], transport: str, reason: str) -> None:
        """A flow to ``peer`` failed (ICMP unreachable, refused, reset, TLS failure)."""
        self.transactions.transport_error(peer, transport, reason)

    # ------------------------------------------------------------------ the user's commands
    @property
    def calls(self) -> dict[str, Call]:
        """The calls by Call-ID (ended ones only for a while, see phone.calls.KEEP_ENDED)."""
        return self.call_control.calls

    def place_call(self, uri: str, account: int = 1) -> Call:
        return self.call_control.place(uri, account)

    def answer(self, call: Call | None = None) -> None:
        self.incoming.answer(call)

    def hangup(self, call: Call | None = None) -> None:
        self.call_control.hangup(call)

    # ------------------------------------------------------------------ queries
    def registered(self, x: int, y: int | None = None) -> bool:
        if y is None:
            return any(srv.registration.registered for (a, _), srv in self.servers.items() if a == x)
        srv = self.servers.get((x, y))
        return srv is not None and srv.registration.registered

    def current_target(self, x: int, y: int) -> Any:
        """The target the last answered new request of (x, y) used."""
        srv = self.servers.get((x, y))
        return None if srv is None else srv.working_target

    def start_target(self, x: int, y: int) -> Any:
        """The target the last new request of (x, y) started at."""
        srv = self.servers.get((x, y))
        return None if srv is None else srv.start_target


class _NoCall:
    """What ``call_later`` returns once the agent has stopped: never fires."""

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass
