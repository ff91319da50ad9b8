"""The bundled phone's user agent, without sockets: accounts, registrations, calls, events.

:class:`UserAgent` is everything the phone decides, wired to two injected things only: a
clock (``IReactorTime``: ``task.Clock`` in unit tests, the SPEC §9 clocks otherwise) and a
*wire* that hands out flows per target (``wire.flow(target) -> Deferred[flow]``; a flow has
``local`` (host, port), ``reliable``, ``transport`` and ``send(message)``). Messages come back
through :meth:`UserAgent.sip_received` and transport failures through
:meth:`UserAgent.transport_error`. :mod:`phone.phone` plugs in real sockets and the resolver;
the unit tests plug in an in-memory wire and canned target lists, so every rule is checked to
the exact phone second without a socket.

Per account it keeps one :class:`phone.failback.Failback` per server, one
:class:`phone.fallback.Fallback`, one :class:`phone.registration.Registration` per server and
the calls. Every decision is a "decision" event and a line in ``log``.
"""

from __future__ import annotations

import functools
import random
from typing import Any, Callable

from twisted.internet import defer

from sipharness.sipcore.journal import Journal
from sipharness.sipcore.message import NameAddr, SipUri, Via, make_request, make_response, new_branch, new_call_id, new_tag
from sipharness.sipcore.uri import default_port
from sipharness.sipcore.transaction import (ClientTransaction, Send, ServerTransaction, TimedOut, TimerDriver, TransactionTable,
                                 TwoXXRetransmitter)

from sipharness.phone.call import Call, sdp
from sipharness.phone.events import KEEP_EVENTS, EventJournal, PhoneEvent
from sipharness.phone.failback import Failback
from sipharness.phone.fallback import Fallback
from sipharness.phone.registration import Registration
from sipharness.phone.rfc3263 import is_ip_literal
from sipharness.phone.sender import ServerRequest

__all__ = ["UserAgent", "UNREGISTER_TIMEOUT"]

UNREGISTER_TIMEOUT = 5.0  # phone seconds stop(unregister=True) waits for the Expires: 0 answers [interp]


class UserAgent:
    user_agent = "sip-redundancy-harness bundled phone"

    def __init__(self, config: Any, *, clock: Any, wire: Any, resolve: Callable[[Any, int], Any],
                 name: str = "phone", rng: random.Random | None = None, local_host: str = "127.0.0.1",
                 keep_events: int = KEEP_EVENTS):
        self.config = config
        self.clock = clock
        self.wire = wire
        self._resolve = resolve
        self.name = name
        self.rng = rng or random.Random()
        self.local_host = local_host
        self.events: Journal[PhoneEvent] = EventJournal(clock, keep_events)  # the last keep_events
        self.driver = TimerDriver(clock)
        self.table = TransactionTable()
        self._handlers: dict[tuple, tuple[Any, Any, Callable]] = {}  # client key → (tx, flow, on_events)
        self._timers: list[Any] = []
        self.calls: dict[str, Call] = {}
        self.failbacks: dict[tuple[int, int], Failback] = {}
        self.fallbacks: dict[int, Fallback] = {}
        self.registrations: dict[tuple[int, int], Registration] = {}
        self._start_target: dict[tuple[int, int], Any] = {}
        self._working: dict[tuple[int, int], Any] = {}
        self._probe_timers: dict[int, Any] = {}
        self._server_tx: dict[tuple, ServerTransaction] = {}
        self.running = False
        self._halted = False
        for x, acct in config.accounts.items():
            if not acct.enable:
                continue
            s2 = acct.servers[2].configured
            self.fallbacks[x] = Fallback(acct.fallback_redundancy_type, acct.fallback_timeout, has_server2=s2)
            for y in (1, 2):
                srv = acct.servers[y]
                if not srv.configured:
                    continue
                self.failbacks[(x, y)] = Failback(srv.failback_mode, srv.failback_timeout,
                                                  is_domain=not is_ip_literal(srv.address))
                # partials, not closures: a few hundred bytes less per registration (10 000 phones)
                self.registrations[(x, y)] = Registration(
                    self, x, y, on_registered=functools.partial(self._on_registered, x),
                    on_failed=functools.partial(self._on_register_failed, x),
                    retry_on_failure=functools.partial(self._may_retry, x, y))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.running = True
        for x, fb in self.fallbacks.items():
            for y in fb.servers_to_register():
                if (x, y) in self.registrations:
                    self.registrations[(x, y)].start()

    def stop(self, unregister: bool = False, timeout: float = UNREGISTER_TIMEOUT) -> defer.Deferred:
        """Cancel everything; with ``unregister`` first send Expires: 0 (with our Contact) to every
        server the phone is registered with, and wait for the answers at most ``timeout`` phone
        seconds [interp: a phone going down does not hang on a silent server for 32 s]."""
        pending = []
        if unregister:
            for reg in self.registrations.values():
                if reg.registered:
                    d: defer.Deferred = defer.Deferred()
                    reg.unregister(lambda d=d: d.called or d.callback(None))
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
        for reg in self.registrations.values():
            reg.stop()
        for call in self.calls.values():
            if call.sender is not None:
                call.sender.cancel()
            if call.retransmitter is not None:
                self.driver.unwatch(call.retransmitter)
        for tx, _, _ in list(self._handlers.values()):
            self.driver.unwatch(tx)
        self._handlers.clear()
        for tx in list(self._server_tx.values()):
            self.driver.unwatch(tx)
        self._server_tx.clear()
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers.clear()
        self.events.cancel_waits()

    @property
    def log(self) -> list[str]:
        """One line per event, made from ``events`` when asked (not kept twice: 10 000 phones)."""
        return [str(e) for e in self.events]

    # ------------------------------------------------------------------ services for the parts
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
        ev = PhoneEvent(time=self.now(), kind=kind, **fields)
        return self.events.append(ev)

    def decide(self, text: str, *, account: int | None = None, server: int | None = None, target: Any = None) -> None:
        self.emit("decision", account=account, server=server, target=None if target is None else str(target),
                  detail=text)

    def account_cfg(self, x: int) -> Any:
        return self.config.accounts[x]

    def server_cfg(self, x: int, y: int) -> Any:
        return self.config.accounts[x].servers[y]

    def is_final_server(self, x: int, y: int) -> bool:
        """SPEC §3: the last target a request can go to is the last of server 2's list, or of
        server 1's when no server 2 is configured."""
        return y == 2 or not self.config.accounts[x].servers[2].configured

    def failback(self, x: int, y: int) -> Failback:
        return self.failbacks[(x, y)]

    def resolve(self, x: int, y: int) -> defer.Deferred:
        return defer.maybeDeferred(self._resolve, self.config.accounts[x], y)

    def flow(self, target: Any) -> defer.Deferred:
        return defer.maybeDeferred(self.wire.flow, target)

    def call_up(self, x: int) -> bool:
        return any(c.account == x and c.active and c.state in ("established",) for c in self.calls.values())

    def new_call_id(self) -> str:
        return new_call_id(self.local_host)

    def new_tag(self) -> str:
        return new_tag()

    def next_cseq(self, sender: ServerRequest) -> int:
        owner = getattr(sender, "owner", None)
        if sender.method == "REGISTER":
            reg = self.registrations[(sender.account, sender.server)]
            reg.cseq += 1
            return reg.cseq
        if owner is not None:
            owner.local_cseq += 1
            owner.invite_cseq = owner.local_cseq
            return owner.local_cseq
        return 1

    def via(self, flow: Any) -> Via:
        host, port = flow.local
        return Via(flow.transport.upper(), host, port, {"branch": new_branch(), "rport": None})

    def contact_uri(self, x: int, flow: Any) -> SipUri:
        host, port = flow.local
        params = {} if flow.transport == "udp" else {"transport": flow.transport}
        return SipUri(scheme="sip", user=self.account_cfg(x).user_name or None, host=host, port=port, params=params)

    def registrar_uri(self, x: int, y: int, target: Any) -> SipUri:
        srv = self.server_cfg(x, y)
        port = srv.port if (is_ip_literal(srv.address) and srv.port not in (0, 5060)) else None
        return SipUri(scheme="sip", host=srv.address, port=port)

    def can_authenticate(self, x: int) -> bool:
        return bool(self.account_cfg(x).password)

    def authorize(self, x: int, resp: Any, request: Any) -> str:
        from sipharness.sipcore import digest  # lands with the message layer

        acct = self.account_cfg(x)
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        value = resp.headers.get(name)
        if value is None:
            raise ValueError(f"{resp.status} without {name}")
        challenge = digest.Challenge.parse(value)
        return digest.authorize(challenge, method=request.method, uri=str(request.uri),
                                username=acct.auth_name or acct.user_name, password=acct.password)

    def note_start(self, x: int, y: int, target: Any) -> None:
        prev = self._start_target.get((x, y))
        if prev is None or getattr(prev, "key", prev) != getattr(target, "key", target):
            self._start_target[(x, y)] = target
            if prev is not None:
                self.emit("target", account=x, server=y, target=str(target),
                          detail=f"new requests start at {target} (was {prev})")

    def note_working(self, x: int, y: int, target: Any) -> None:
        self._working[(x, y)] = target

    def current_target(self, x: int, y: int) -> Any:
        return self._working.get((x, y))

    def start_target(self, x: int, y: int) -> Any:
        return self._start_target.get((x, y))

    def registered_with(self, x: int, y: int, target: Any) -> bool:
        """The registration of (x, y) is up and on ``target`` (SPEC §1 only_signal_with_registered)."""
        reg = self.registrations.get((x, y))
        if reg is None or not reg.registered or reg.target is None:
            return False
        return getattr(reg.target, "key", reg.target) == getattr(target, "key", target)

    def register_at(self, x: int, y: int, target: Any, done: Callable[[bool, str], Any]) -> None:
        self.registrations[(x, y)].register_at(target, done)

    # ------------------------------------------------------------------ transactions
    def run_transaction(self, request: Any, flow: Any, max_sends: int | None, on_events: Callable[[list], Any]) -> Any:
        if self._halted:
            return None
        tx = ClientTransaction(request, reliable=flow.reliable, max_sends=max_sends)
        self.table.add(tx)
        self._handlers[tx.key] = (tx, flow, on_events)

        def handle(events: list) -> None:
            self._tx_events(tx, flow, on_events, events)

        self.driver.watch(tx, handle)
        handle(tx.start(self.now()))
        self.driver.poke(tx)
        return tx

    def _tx_events(self, tx: Any, flow: Any, on_events: Callable, events: list) -> None:
        out = []
        for ev in events:
            if isinstance(ev, Send):
                flow.send(ev.message)
            else:
                out.append(ev)
        if tx.state == "terminated":
            self.drop_transaction(tx)
        if out:
            on_events(out)

    def drop_transaction(self, tx: Any) -> None:
        self.driver.unwatch(tx)
        self.table.remove(tx)
        self._handlers.pop(tx.key, None)

    # ------------------------------------------------------------------ input from the wire
    def sip_received(self, message: Any, reply: Any) -> None:
        if not self.running:
            return
        if not message.is_request:
            tx = self.table.match_response(message)
            if tx is not None and tx.key in self._handlers:
                _, flow, on_events = self._handlers[tx.key]
                events = tx.receive(message, self.now())
                self._tx_events(tx, flow, on_events, events)
                self.driver.poke(tx)
                return
            call = self.calls.get(message.call_id)
            if call is not None and message.method == "INVITE" and 200 <= message.status < 300 and call.ack is not None:
                call.flow.send(call.ack)  # a 2xx retransmission: ACK again (RFC 3261 §13.2.2.4)
            return
        self._request(message, reply)

    def transport_error(self, peer: tuple[str, int], transport: str, reason: str) -> None:
        """A flow to ``peer`` failed (ICMP unreachable, refused, reset, TLS failure)."""
        for tx, flow, on_events in list(self._handlers.values()):
            if getattr(flow, "peer", None) == tuple(peer) and flow.transport == transport:
                events = tx.transport_error(reason, self.now())
                self._tx_events(tx, flow, on_events, events)

    # ------------------------------------------------------------------ account logic (SPEC §6)
    def _may_retry(self, x: int, y: int) -> bool:
        """May a failed registration of (x, y) retry after reg_fail_retry_interval? (SPEC §4, §6)"""
        fb = self.fallbacks[x]
        if fb.successive and y == 1 and fb.active == 2:
            return False  # probes every fallback.timeout replace the retry
        if fb.successive and y == 2 and fb.active == 1:
            return False
        return True

    def _on_registered(self, x: int, y: int, now: float) -> None:
        fb = self.fallbacks[x]
        for action in fb.registered(y, now):
            if action == "unregister:2" and (x, 2) in self.registrations:
                self.decide(f"account {x}: server 1 answered the probe → use server 1, un-REGISTER server 2",
                            account=x, server=1)
                self._cancel_probe(x)
                self.registrations[(x, 2)].unregister()

    def _on_register_failed(self, x: int, y: int, now: float) -> None:
        fb = self.fallbacks[x]
        for action in fb.register_failed(y, now):
            if action == "register:2" and (x, 2) in self.registrations:
                self.decide(f"account {x}: server 1 failed → REGISTER with server 2 (successive), "
                            f"probe server 1 every {fb.timeout:g} s", account=x, server=2)
                self.registrations[(x, 2)].start()
        if fb.successive and fb.active == 2 and y == 1:
            self._schedule_probe(x)

    def _schedule_probe(self, x: int) -> None:
        fb = self.fallbacks[x]
        at = fb.next_probe_at(self.now())
        if at is None:
            return
        self._cancel_probe(x)
        self._probe_timers[x] = self.call_later(at - self.now(), self._probe, x)

    def _cancel_probe(self, x: int) -> None:
        t = self._probe_timers.pop(x, None)
        if t is not None and t.active():
            t.cancel()

    def _probe(self, x: int) -> None:
        self._probe_timers.pop(x, None)
        self.decide(f"account {x}: probe server 1 with a REGISTER (fallback.timeout)", account=x, server=1)
        self.registrations[(x, 1)].start()

    # ------------------------------------------------------------------ calls (SPEC §7)
    def place_call(self, uri: str, account: int = 1) -> Call:
        acct = self.account_cfg(account)
        fb = self.fallbacks[account]
        srv1 = acct.servers[1]
        if "@" not in uri and not uri.startswith("sip:"):
            uri = f"sip:{uri}@{srv1.address}"
        elif uri.startswith("sip:") and "@" not in uri:
            uri = f"{uri}@{srv1.address}"
        elif not uri.startswith(("sip:", "sips:")):
            uri = f"sip:{uri}"  # "2002@pbx.example.com"
        ruri = SipUri.parse(uri)
        local = NameAddr(f"sip:{acct.user_name}@{srv1.address}", display=acct.display_name or None,
                         params={"tag": new_tag()})
        call = Call(call_id=self.new_call_id(), account=account, direction="out", local=local, remote=NameAddr(ruri))
        call.request_uri = ruri
        call.servers_left = [y for y in fb.request_order() if (account, y) in self.registrations]
        self.calls[call.call_id] = call
        self._call_state(call, "calling", detail=f"to {ruri}")
        self._invite_next_server(call)
        return call

    def _invite_next_server(self, call: Call) -> None:
        if not call.servers_left:
            self._call_state(call, "failed", detail="no server left")
            return
        y = call.servers_left.pop(0)
        call.server = y

        def build(flow, target, cseq, extra):
            call.flow, call.target = flow, target
            req = make_request(
                "INVITE", call.request_uri, from_=call.local, to=call.remote, call_id=call.call_id, cseq=cseq,
                via=self.via(flow), contact=NameAddr(self.contact_uri(call.account, flow)),
                headers=[*extra.items(), ("User-Agent", self.user_agent), ("Content-Type", "application/sdp")],
                body=sdp(flow.local[0], 1),
            )
            call.invite = req
            return req

        def failed(reason: str) -> None:
            if call.hangup_requested:  # the walk stopped at the user's hang-up: says nothing of the server
                if call.active:
                    self._call_state(call, "terminated", detail="cancelled")
                return
            self.fallbacks[call.account].request_failed(y, self.now())
            if call.servers_left:
                self.decide(f"INVITE {call.call_id}: server {y} gave no response → server {call.servers_left[0]}",
                            account=call.account, server=y)
            self._invite_next_server(call) if call.servers_left else self._call_state(call, "failed", detail=reason)

        sender = ServerRequest(self, call.account, y, "INVITE", build,
                               on_provisional=lambda resp, t: self._invite_provisional(call, resp),
                               on_answer=lambda resp, t, i: self._invite_answered(call, resp),
                               on_failed=failed,
                               final_list=not call.servers_left)  # SPEC §3: last server tried
        sender.owner = call
        call.sender = sender
        sender.start()

    def _invite_provisional(self, call: Call, resp: Any) -> None:
        if call.hangup_requested:
            if not call.cancel_sent and call.state != "established":
                self._send_cancel(call)  # RFC 3261 §9.1: the hang-up waited for this provisional
            return
        state = "proceeding" if resp.status == 100 else "ringing"
        if call.state != state and call.active:
            self._call_state(call, state, detail=f"{resp.status} {resp.reason}")

    def _invite_answered(self, call: Call, resp: Any) -> None:
        if 200 <= resp.status < 300:
            call.remote = resp.to
            call.learn_dialog(resp, uac=True)
            self._send_ack(call)
            if call.hangup_requested:
                if call.active:
                    self._call_state(call, "established", detail="200 OK after hangup")
                else:  # the call already ended for the user: end the dialog the 2xx made (RFC 3261 §15)
                    self.decide(f"INVITE {call.call_id}: {resp.status} after the user hung up → ACK, BYE",
                                account=call.account, server=call.server)
                self._send_bye(call)
                return
            self._call_state(call, "established", detail=f"{resp.status} {resp.reason} via server {call.server}")
            return
        if call.state == "terminated":
            return
        if resp.status == 487 and call.hangup_requested:
            self._call_state(call, "terminated", detail="cancelled (487)")
            return
        self._call_state(call, "failed", detail=f"{resp.status} {resp.reason}")

    def _in_dialog_flow(self, call: Call) -> defer.Deferred:
        host, port, transport = call.next_hop()
        tgt = call.target
        transport = (transport or call.flow.transport).lower()
        port = port or default_port(transport)
        if tgt is not None and (tgt.host, tgt.port, tgt.transport) == (host, port, transport):
            return defer.succeed(call.flow)
        from sipharness.phone.rfc3263 import Target

        return self.flow(Target(host, port, transport, source="in-dialog next hop"))

    def _in_dialog_request(self, call: Call, method: str, cseq: int, flow: Any) -> Any:
        uri = call.remote_target or call.request_uri
        return make_request(method, uri, from_=call.local, to=call.remote, call_id=call.call_id,
                            cseq=(cseq, method), via=self.via(flow),
                            headers=[("Route", r) for r in call.route_set] + [("User-Agent", self.user_agent)])

    def _send_ack(self, call: Call) -> None:
        def send(flow):
            call.ack = self._in_dialog_request(call, "ACK", call.invite_cseq, flow)
            call.ack_flow = flow
            flow.send(call.ack)
        self._in_dialog_flow(call).addCallbacks(send, lambda f: self.decide(f"ACK not sent: {f.getErrorMessage()}"))

    def _send_bye(self, call: Call) -> None:
        def send(flow):
            call.local_cseq += 1
            req = self._in_dialog_request(call, "BYE", call.local_cseq, flow)
            self.run_transaction(req, flow, None, lambda evs: self._call_state(call, "terminated", detail="BYE sent")
                                 if call.active else None)
        self._in_dialog_flow(call).addCallbacks(
            send, lambda f: self._call_state(call, "terminated", detail=f"BYE not sent: {f.getErrorMessage()}"))

    def _send_cancel(self, call: Call) -> None:
        tx = call.sender.tx if call.sender is not None else None
        if tx is None or call.invite is None:
            return
        inv = call.sender.request
        # RFC 3261 §9.1: same Request-URI, Call-ID, To, From, CSeq number, top Via and Route set.
        routes = [("Route", r) for r in inv.headers.get_all("Route")]
        cancel = make_request("CANCEL", inv.uri, from_=inv.from_, to=inv.to, call_id=inv.call_id,
                              cseq=(inv.cseq[0], "CANCEL"), via=inv.top_via, headers=routes)
        call.cancel_sent = True
        self.run_transaction(cancel, call.sender.flow, None, lambda evs: None)

    def hangup(self, call: Call | None = None) -> None:
        call = call or self._latest_call()
        if call is None or not call.active:
            return
        call.hangup_requested = True
        if call.direction == "out":
            if call.state == "established":
                self._send_bye(call)
            elif call.sender is not None and call.sender.got_provisional:
                if not call.cancel_sent:
                    self._send_cancel(call)
            elif call.sender is not None and call.sender.tx is not None:
                # RFC 3261 §9.1: no CANCEL before a provisional. The INVITE transaction runs on:
                # a 1xx gets the CANCEL, a 2xx gets ACK then BYE, silence ends it; the user's
                # call ends now.
                call.sender.abandon()
                self._call_state(call, "terminated",
                                 detail="hung up before any response (CANCEL once a provisional arrives)")
            elif call.sender is not None:  # nothing on the wire yet (DNS, connecting, REGISTER first)
                call.sender.cancel()
                self._call_state(call, "terminated", detail="hung up before any request was sent")
            return
        # incoming
        if call.state == "established":
            self._send_bye(call)
            return
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        self._server_respond(call, 486, "Busy Here")
        self._call_state(call, "terminated", detail="declined (486)")

    def answer(self, call: Call | None = None) -> None:
        call = call or self._latest_call(direction="in")
        if call is None or call.direction != "in" or call.state != "ringing":
            return
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        inv = call.invite
        body = sdp(call.reply_local[0], 2)
        resp = make_response(inv, 200, "OK", to_tag=call.local.tag,
                             headers=[("Contact", str(NameAddr(self.contact_uri(call.account, call.reply_flow)))),
                                      ("Content-Type", "application/sdp"), ("User-Agent", self.user_agent)],
                             body=body)
        if call.server_tx is not None:
            for ev in call.server_tx.respond(resp, self.now()):
                pass  # the 2xx goes out through the retransmitter below (RFC 3261 §13.3.1.4)
            self.driver.poke(call.server_tx)
            self._server_tx.pop(call.server_tx.key, None)
        rt = TwoXXRetransmitter(resp)
        call.retransmitter = rt

        def on_events(events: list) -> None:
            for ev in events:
                if isinstance(ev, Send):
                    call.reply.send(ev.message)
                elif isinstance(ev, TimedOut):
                    self.decide(f"call {call.call_id}: {ev.reason} → BYE", account=call.account)
                    self._send_bye(call)

        self.driver.watch(rt, on_events)
        on_events(rt.start(self.now()))
        self.driver.poke(rt)

    def _latest_call(self, direction: str | None = None) -> Call | None:
        for call in reversed(list(self.calls.values())):
            if call.active and (direction is None or call.direction == direction):
                return call
        return None

    def _call_state(self, call: Call, state: str, detail: str = "") -> None:
        call.state = state
        self.emit("call_state", account=call.account, server=call.server,
                  target=None if call.target is None else str(call.target), state=state, call_id=call.call_id,
                  detail=detail)

    # ------------------------------------------------------------------ incoming requests
    def _request(self, req: Any, reply: Any) -> None:
        method = req.method
        now = self.now()
        if method == "ACK":
            call = self.calls.get(req.call_id)
            if call is not None and call.retransmitter is not None and call.retransmitter.matches_ack(req):
                self.driver.unwatch(call.retransmitter)
                call.retransmitter.ack_received(now)
                if call.state == "ringing":
                    self._call_state(call, "established", detail="ACK received")
            tx = self.table.match_request(req)
            if tx is not None:
                tx.receive(req, now)
                self.driver.poke(tx)
            return
        tx = self.table.match_request(req)
        if tx is not None:  # a retransmission
            self._server_send(tx, reply, tx.receive(req, now))
            return
        if method == "INVITE" and req.to.tag is None:
            self._incoming_invite(req, reply)
            return
        if method == "CANCEL":
            inv_tx = self.table.match_cancelled(req)
            self._respond(req, reply, 200 if inv_tx is not None else 481)
            call = self.calls.get(req.call_id)
            if call is not None and call.direction == "in" and call.state == "ringing":
                if call.timer is not None and call.timer.active():
                    call.timer.cancel()
                self._server_respond(call, 487, "Request Terminated")
                self._call_state(call, "terminated", detail="cancelled by the caller")
            return
        if method == "BYE":
            call = self.calls.get(req.call_id)
            if call is None:
                self._respond(req, reply, 481)
                return
            self._respond(req, reply, 200)
            if call.retransmitter is not None:
                self.driver.unwatch(call.retransmitter)
            if call.active:
                self._call_state(call, "terminated", detail="BYE received")
            return
        if method in ("OPTIONS", "NOTIFY", "INFO", "UPDATE"):
            self._respond(req, reply, 200)
            return
        if method == "INVITE":  # re-INVITE: accept with the same SDP
            self._respond(req, reply, 200, body=sdp(self.local_host, 3))
            return
        self._respond(req, reply, 405)

    def _respond(self, req: Any, reply: Any, status: int, body: bytes = b"") -> None:
        tx = ServerTransaction(req, reliable=_reliable(reply))
        self.table.add(tx)
        headers = [("User-Agent", self.user_agent)]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        resp = make_response(req, status, to_tag=new_tag() if req.to.tag is None else None, headers=headers, body=body)
        self.driver.watch(tx, lambda evs, tx=tx, reply=reply: self._server_send(tx, reply, evs))
        self._server_send(tx, reply, tx.respond(resp, self.now()))

    def _server_send(self, tx: Any, reply: Any, events: list) -> None:
        for ev in events:
            if isinstance(ev, Send):
                reply.send(ev.message)
        self.driver.poke(tx)
        if tx.state == "terminated":
            self.table.remove(tx)

    def _server_respond(self, call: Call, status: int, reason: str) -> None:
        tx = call.server_tx
        if tx is None or tx.state not in ("proceeding", "trying"):
            return
        resp = make_response(call.invite, status, reason, to_tag=call.local.tag)
        self._server_send(tx, call.reply, tx.respond(resp, self.now()))

    def _incoming_invite(self, req: Any, reply: Any) -> None:
        x = self._account_for(req)
        if x is None:
            self._respond(req, reply, 404)
            return
        tx = ServerTransaction(req, reliable=_reliable(reply))
        self.table.add(tx)
        local = req.to.with_tag(new_tag())
        call = Call(call_id=req.call_id, account=x, direction="in", local=local, remote=req.from_)
        call.invite, call.server_tx, call.reply = req, tx, reply
        call.reply_flow = getattr(reply, "flow", None) or reply
        call.reply_local = getattr(call.reply_flow, "local", (self.local_host, 0))
        call.flow = call.reply_flow
        call.server = self._server_for(x, reply)
        call.learn_dialog(req, uac=False)
        call.local_cseq = 0
        self.calls[call.call_id] = call
        self.driver.watch(tx, lambda evs: self._server_send(tx, reply, evs))
        self._server_send(tx, reply, tx.respond(make_response(req, 100, "Trying"), self.now()))
        self._server_send(tx, reply, tx.respond(make_response(req, 180, "Ringing", to_tag=local.tag), self.now()))
        self.emit("incoming_call", account=x, server=call.server, call_id=call.call_id, detail=f"from {req.from_}")
        self._call_state(call, "ringing", detail="incoming, 180 sent")
        if self.account_cfg(x).auto_answer:
            call.timer = self.call_later(self.config.auto_answer_delay, self.answer, call)

    def _account_for(self, req: Any) -> int | None:
        user = req.uri.user
        enabled = [x for x in self.fallbacks]
        for x in enabled:
            if self.account_cfg(x).user_name and self.account_cfg(x).user_name == user:
                return x
        return enabled[0] if enabled else None

    def _server_for(self, x: int, reply: Any) -> int | None:
        peer = getattr(reply, "peer", None)
        for y in (1, 2):
            reg = self.registrations.get((x, y))
            if reg is not None and reg.target is not None and peer is not None:
                if (reg.target.host, reg.target.port) == tuple(peer)[:2]:
                    return y
        return None

    # ------------------------------------------------------------------ queries
    def registered(self, x: int, y: int | None = None) -> bool:
        if y is None:
            return any(r.registered for (a, _), r in self.registrations.items() if a == x)
        reg = self.registrations.get((x, y))
        return reg is not None and reg.registered


def _reliable(reply: Any) -> bool:
    return str(getattr(reply, "transport", "udp")).lower() != "udp"


class _NoCall:
    """What ``call_later`` returns once the agent has stopped: never fires."""

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass
