"""The protocol decisions of a fake SIP server, sans-I/O: fed messages, origins and time, returns actions.

:class:`fakes.sip.server.FakeSipServer` is the Twisted adapter around this: it moves bytes,
runs one timer at :attr:`ServerCore.deadline` and carries out the actions. Everything a
fake *decides* is here, fed ``(message, raw bytes, origin, now)``:

- which rule of the script applies (:mod:`fakes.sip.script`) and what it does;
- what the role answers (:mod:`fakes.sip.pbx`: registrar, proxy, UAS);
- the RFC 3261 §17.2 server side (stateless answers of a UDP non-INVITE, server
  transactions, 2xx retransmission until the ACK) is :mod:`fakes.sip.answering`'s;
- the answer to bytes that do not parse (:mod:`fakes.sip.malformed`: 400, or 505);
- the client side of calls the fake originates (:mod:`fakes.sip.originator`, :mod:`fakes.sip.uac`);
- up / blackhole / refused / stopped: :class:`~fakes.sip.state.ServerState`, with the socket
  operation each transition needs in a table (:mod:`fakes.sip.state`); an illegal one raises.

An exception while deciding is a *serving error* (SPEC §10: a harness error, never a finding
against the phone): it gets a PEP 678 note naming the fake and the input ("primary: while
handling REGISTER from 127.0.0.1:40000 over udp"), comes out as a :class:`ServingError`
action, and the request that caused it is answered **500 Server Internal Error** (when it
has no final response yet), so the client is not left retransmitting into silence.

Timers: the core keeps its own (:mod:`fakes.sip.timers`: transactions, 2xx retransmissions,
delayed answers in one heap); ``deadline`` says when ``timer(now)`` must next be called (the
adapter keeps one ``callLater``). Records (:mod:`fakes.sip.recording`) of what came in go to
the ``record`` callable at once; what goes out is recorded by the adapter once the bytes are
sent (:class:`Transmit` carries its record). The actions are :mod:`fakes.sip.actions`.
"""

from __future__ import annotations

from typing import Any, Callable

from sipharness.sipcore.build import make_response
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.message import Response
from sipharness.sipcore.parser import parse
from sipharness.sipcore.transaction import server_key
from sipharness.sipcore.uri import SipParseError

from sipharness.fakes.record import SipRecord
from sipharness.fakes.rules import Action
from sipharness.fakes.ruleset import Installed
from sipharness.fakes.sip.actions import ChangeSockets, Origin, Rejected, Relay, Respond, ServingError, Transmit
from sipharness.fakes.sip.answering import MAX_RECENT, WINDOW, Answering
from sipharness.fakes.sip.malformed import reply_to_malformed
from sipharness.fakes.sip.pbx import Pbx
from sipharness.fakes.sip.recent import RecentMap
from sipharness.fakes.sip.recording import sip_record, status_line
from sipharness.fakes.sip.script import REFUSE_STATUS, Script
from sipharness.fakes.sip.state import TRANSITIONS, ServerState
from sipharness.fakes.sip.originator import Originator
from sipharness.fakes.sip.timers import Timers
from sipharness.fakes.sip.uac import UacCall, UacOp

__all__ = ["ServerCore", "WINDOW"]

Address = tuple[str, int]


def _hostport(a: Address) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


def _describe(message: Any) -> str:
    if message is None:
        return "input"
    try:
        if message.is_request:
            return message.method
        return f"{message.status} {message.reason} ({message.cseq[1]})"
    except Exception:  # an unreadable header: say what we can
        return "a message"


class ServerCore:
    """One fake SIP server's decisions. ``addresses`` (transport → the listener's address) is
    shared with the adapter, which fills it; ``record`` receives the records of what came in."""

    def __init__(self, name: str, logic: Pbx, script: Script, addresses: dict[str, Address],
                 record: Callable[[SipRecord], Any]):
        self.name = name
        self.logic = logic
        self.script = script
        self.addresses = addresses
        self._sink = record
        self.state = ServerState.UP
        self.now = 0.0
        self._out: list = []
        # SPEC §3 counts attempts: a retransmission is marked, not hidden. The memory lasts
        # 64·T1 and is bounded (fakes.sip.recent), whatever a peer sends.
        self._seen = RecentMap(WINDOW, MAX_RECENT)  # (method, Call-ID, CSeq, branch) of requests seen
        self.timers = Timers()
        self._answering = Answering(self)  # how answers travel (RFC 3261 §17.2)
        self._calls = Originator(self.timers, self._send_uac)  # the calls this fake places
        self._rule: Installed | None = None  # the rule being applied (named in an error's note)

    # ------------------------------------------------------------------ feeding
    def receive(self, message: Any, raw: bytes, origin: Origin, now: float) -> list:
        """A parsed message from ``origin`` (``raw``: its bytes as received)."""
        out = self._begin(now)
        if self.state is ServerState.STOPPED:
            return out
        try:
            if message.is_request:
                self._request(message, raw, origin)
            else:
                self._response(message, raw, origin)
        except SipParseError as e:  # a header the logic needed was unreadable: the peer's fault
            self._malformed(raw, e, origin)
        except Exception as e:
            self._failed(e, origin, message)
        self._rule = None
        return out

    def bad_input(self, raw: bytes, error: Exception, origin: Origin, now: float) -> list:
        """Bytes that do not parse (``error``): UDP gets a 400 (or 505) when one can be formed;
        on TCP/TLS the transport closes the connection (framing is lost)."""
        out = self._begin(now)
        if self.state is ServerState.STOPPED:
            return out
        try:
            if origin.transport != "udp":
                self._sink(self.make_record("in", None, raw[:2048], origin, note=f"bad input: {error}; "
                                             "connection closed", summary=f"bad input ({len(raw)} bytes)"))
                out.append(Rejected(f"bad input: {error}; connection closed", origin))
            elif self.state is ServerState.BLACKHOLE:
                self._sink(self.make_record("in", None, raw, origin, note="dropped: down (blackhole)",
                                             summary=f"garbage ({len(raw)} bytes)"))
            else:
                self._malformed(raw, error, origin)
        except Exception as e:
            self._failed(e, origin, None)
        return out

    def transport_error(self, peer: Address, transport: str, reason: str, now: float) -> list:
        """A send or a connection of ours failed: the calls this fake placed to ``peer`` learn it."""
        out = self._begin(now)
        self._calls.transport_error(peer, transport, reason)
        return out

    def timer(self, now: float) -> list:
        """Fire every timer due at ``now``."""
        out = self._begin(now)
        self.timers.fire(now, self._timer_failed)
        return out

    @property
    def deadline(self) -> float | None:
        """When :meth:`timer` must next be called (None: no timer)."""
        return self.timers.deadline

    def transition(self, to: ServerState) -> list:
        """Go to state ``to``; the socket operation it needs comes out as :class:`ChangeSockets`."""
        out = self._begin(self.now)
        if to is self.state:
            return out
        key = (self.state, to)
        if key not in TRANSITIONS:
            raise ValueError(f"fake SIP server {self.name!r}: cannot go from {self.state.value} to {to.value}")
        op = TRANSITIONS[key]
        self.state = to
        if op is not None:
            out.append(ChangeSockets(op))
        if to is ServerState.STOPPED:
            self.timers.clear()
            self._answering.stop()
        return out

    def sizes(self) -> dict[str, int]:
        """How much this core holds (every one of these is bounded; tests check they drain)."""
        return {**self._answering.sizes(), "timers": self.timers.watched, "delayed": self.timers.delayed,
                "seen": len(self._seen), **self._calls.sizes()}

    # ------------------------------------------------------------------ calls this fake places
    def originate(self, call: UacCall, now: float) -> list:
        """Send ``call``'s INVITE through a client transaction (full Timer B: the fake is patient)."""
        out = self._begin(now)
        if self.state is not ServerState.UP:
            raise ValueError(f"fake SIP server {self.name!r} is {self.state.value}: it cannot place a call")
        self._calls.start(call)
        return out

    def uac(self, call: UacCall, op: UacOp, now: float) -> list:
        """A test's request on a call this fake placed: ACK, BYE or CANCEL (UacError if the call's state forbids it)."""
        out = self._begin(now)
        self._calls.op(call, op)
        return out

    # ------------------------------------------------------------------ internals: plumbing
    def _begin(self, now: float) -> list:
        self.now = self.timers.now = now
        self._out = []
        return self._out

    # the AnswerHost of fakes.sip.answering (now, state and timers are attributes; make_record below)
    def emit(self, action: Any) -> None:
        self._out.append(action)

    def is_proxied(self, request: Any) -> bool:
        return self.logic.proxy.knows(request)

    def _later(self, delay: float, origin: Origin | None, fn: Callable, *args: Any) -> None:
        self.timers.later(self.now + delay, fn, *args, context=origin)

    def _timer_failed(self, error: BaseException, origin: Origin | None, first: Any) -> None:
        request = first if getattr(first, "is_request", False) else None
        self._failed(error, origin, request, during="a timer of" if request is not None else "a timer")

    # ------------------------------------------------------------------ internals: errors
    # SPEC §10 [interp]: a fake's own failure is a harness error; the request is answered 500 (RFC 3261
    # §21.5.1) so the DUT is not judged on silence the fake caused
    def _failed(self, error: BaseException, origin: Origin, message: Any, *, during: str = "") -> None:
        what = _describe(message)
        rule = f" (in {self._rule.describe()})" if self._rule is not None else ""
        verb = f"while handling {during + ' ' if during else ''}{what}"
        error.add_note(f"{self.name}: {verb} from {_hostport(origin.peer)} over {origin.transport}{rule}"
                       if origin is not None else f"{self.name}: {verb}{rule}")
        self._out.append(ServingError(error, origin, f"{type(error).__name__}: {error}"[:200]))
        if message is not None and getattr(message, "is_request", False) and message.method != "ACK":
            try:
                self._answer_500(message, origin, error)
            except Exception:  # the 500 itself failed: the error above is what matters
                pass

    def _answer_500(self, request: Any, origin: Origin, error: BaseException) -> None:
        if self.state is not ServerState.UP or self._answering.answered(request, origin):
            return  # (answered before the error)
        reason = f"serving error: {type(error).__name__}".replace('"', "'")
        self._answer_scripted(request, make_response(request, 500, "Server Internal Error", to_tag=new_tag(),
                                                     headers=[("Warning", f'399 fake "{reason}"')]), origin)

    def _malformed(self, raw: bytes, error: Exception, origin: Origin) -> None:
        reply = reply_to_malformed(raw, str(error))
        note = f"bad input: {error}" + ("" if reply else "; dropped (no response can be formed)")
        self._sink(self.make_record("in", None, raw, origin, note=note, summary=f"bad input ({len(raw)} bytes)"))
        self._out.append(Rejected(note, origin))
        if reply is not None and self.state is ServerState.UP:
            try:
                resp = parse(reply)
            except SipParseError:  # e.g. no From: the peer's own fault, sent as it is
                resp = None
            self._out.append(Transmit(reply, origin.transport, origin.peer, origin.flow,
                                      self.make_record("out", resp, reply, origin, summary=status_line(reply))))

    # ------------------------------------------------------------------ internals: requests
    def _request(self, request: Any, raw: bytes, origin: Origin) -> None:
        method = request.method
        now = self.now
        via = request.top_via
        key = (method, request.call_id, request.cseq[0], via.params.get("branch") if via is not None else None)
        retx = self._seen.seen(key, now)
        if self.state is ServerState.BLACKHOLE:
            self._sink(self.make_record("in", request, raw, origin, note="dropped: down (blackhole)",
                                         retransmission=retx, ids=key))
            return
        rule = self.script.decide(method, origin.transport, origin.peer[0], now)
        self._sink(self.make_record("in", request, raw, origin, note=rule.note if rule else "",
                                     retransmission=retx, ids=key))
        if rule is None:
            self._process(request, origin, key)
        else:
            self._apply(rule, request, origin)

    def _apply(self, rule: Installed, request: Any, origin: Origin) -> None:
        self._rule = rule
        r = rule.rule
        action = r.action
        if action is Action.DROP:
            return
        if action is Action.ANSWER:
            self._process(request, origin)
        elif action is Action.DELAY:
            self._later(r.delay, origin, self._process, request, origin)
        elif action is Action.HANDLE:
            self._handled(r.fn(request), rule, request, origin)
        elif request.method != "ACK":  # RESPOND, REFUSE (an ACK is never answered)
            status = r.status if action is Action.RESPOND else REFUSE_STATUS
            response = make_response(request, status, r.reason, to_tag=new_tag(), headers=r.headers)
            if r.delay:
                self._later(r.delay, origin, self._answer_scripted, request, response, origin)
            else:
                self._answer_scripted(request, response, origin)

    def _handled(self, result: Any, rule: Installed, request: Any, origin: Origin) -> None:
        """What a ``handle`` rule's function returned (fakes.sip.script: None, a status, a Response, DROP)."""
        if result is None:
            self._process(request, origin)
        elif result is Action.DROP or request.method == "ACK":
            return
        elif isinstance(result, int) and not isinstance(result, bool) and 100 <= result <= 699:
            self._answer_scripted(request, make_response(request, result, to_tag=new_tag()), origin)
        elif isinstance(result, Response):
            self._answer_scripted(request, result, origin)
        else:
            raise TypeError(f"{rule.describe()}: the function returned {result!r}; expected None, a status "
                            f"code 100..699, a Response or Action.DROP")

    def _process(self, request: Any, origin: Origin, ids: tuple | None = None) -> None:
        """Answer as the role would; :mod:`fakes.sip.answering` carries the answer (``ids``: the
        request's (method, Call-ID, CSeq, branch) when :meth:`_request` has them)."""
        if self.state is not ServerState.UP:
            return
        answering = self._answering
        if request.method == "ACK":
            if not answering.ack(request):  # (the ACK of a non-2xx ends at its transaction)
                self._run(self.logic.handle_request(request, origin, self.now), request, origin)
            return
        lean = origin.transport == "udp" and request.method != "INVITE"
        key = server_key(request)
        if answering.retransmission(key, request, origin, lean):
            return
        actions = self.logic.handle_request(request, origin, self.now)
        if lean and all(type(a) is Respond and a.after <= 0 and a.request is None for a in actions):
            for a in actions:
                answering.stateless(key, request, a.response, origin, ids)
            return
        answering.new_tx(request, origin)
        self._run(actions, request, origin)

    def _answer_scripted(self, request: Any, response: Any, origin: Origin) -> None:
        self._answering.scripted(request, response, origin)

    def _run(self, actions: list, request: Any, origin: Origin) -> None:
        for a in actions:
            if isinstance(a, Respond):
                req = a.request if a.request is not None else request
                if a.after > 0:
                    self._later(a.after, origin, self._answering.respond, req, a.response)
                else:
                    self._answering.respond(req, a.response)
            elif isinstance(a, Relay):
                self._relay(a)

    def _relay(self, a: Relay) -> None:
        if self.state is not ServerState.UP:
            return
        stream = a.transport != "udp" and a.flow is not None
        local = a.flow.local if stream else self.addresses.get(a.transport)
        if local is None:
            return
        data = a.message.to_bytes()
        origin = Origin(a.transport, a.address, local, a.flow if stream else None)
        self._out.append(Transmit(data, a.transport, a.address, origin.flow,
                                  self.make_record("out", a.message, data, origin)))

    # ------------------------------------------------------------------ internals: responses
    def _response(self, response: Any, raw: bytes, origin: Origin) -> None:
        if self.state is ServerState.BLACKHOLE:
            self._sink(self.make_record("in", response, raw, origin, note="dropped: down (blackhole)"))
            return
        if self._calls and self._uac_response(response, raw, origin):
            return
        self._sink(self.make_record("in", response, raw, origin))
        self._run(self.logic.handle_response(response, origin, self.now), None, origin)

    def _uac_response(self, response: Any, raw: bytes, origin: Origin) -> bool:
        """A response to a call this fake placed: fed to it first, then recorded (a test woken
        by the record finds the call's new state)."""
        retransmission = self._calls.response(response)
        if retransmission is None:
            return False
        self._sink(self.make_record("in", response, raw, origin, retransmission=retransmission))
        return True

    def _send_uac(self, request: Any, call: UacCall, retransmission: bool) -> None:
        if self.state is not ServerState.UP:
            return
        t = call.target
        data = request.to_bytes()
        origin = Origin(t.transport, t.peer, t.local, t.flow)
        self._out.append(Transmit(data, t.transport, t.peer, t.flow,
                                  self.make_record("out", request, data, origin, retransmission=retransmission)))

    # ------------------------------------------------------------------ records
    def make_record(self, direction: str, message: Any, raw: bytes, origin: Origin, *, note: str = "",
                    retransmission: bool = False, summary: str | None = None, ids: tuple | None = None,
                    status: int | None = None) -> SipRecord:
        """A record of what was seen, at this core's time (:func:`fakes.sip.recording.sip_record`)."""
        return sip_record(self.now, self.name, direction, message, raw, origin, note=note,
                          retransmission=retransmission, summary=summary, ids=ids, status=status)
