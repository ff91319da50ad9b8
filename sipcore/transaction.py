"""RFC 3261 §17 transactions as sans-I/O state machines, with the SPEC §3 give-up window.

Why written by hand: the Python SIP stacks that exist either own the sockets and the clock
(so they cannot run on the SPEC §9 virtual clock, nor be fed a packet a fake crafted) or do
not implement the retry_counts rule of SPEC §3, which cuts a client transaction short after
``1 + N`` sends. Here every object is fed messages and the current time (``now``, a float in
phone seconds) and answers with a list of events; nothing here reads a clock or touches a
socket. Each object exposes ``deadline`` (when ``on_timer(now)`` must next be called, or None)
and :class:`TimerDriver` is the one place where that meets an ``IReactorTime``.

Events (small frozen dataclasses): :class:`Send` (hand this message to the transport),
:class:`Deliver` (a response for the TU), :class:`TimedOut`, :class:`TransportFailed` and
:class:`Terminated` (emitted exactly once, when the object reaches state ``terminated``).

States are a :class:`TxState` (``StrEnum``) moved only through a transition table per machine
(RFC 3261 figures 5-8, as h11's ``_state.py`` keeps its tables): an event the table does not
allow raises :class:`TransactionStateError` (answering twice, starting twice). What the wire
may legitimately repeat or bring late (a retransmitted request, a second final response, a
response after termination) has its explicit absorbing row, so no input from a peer raises.

Choices where RFC 3261 leaves room:

- A server INVITE transaction does not send 100 Trying by itself: the TU (a fake scripted to
  stay silent, or the phone) decides. A fake that must look alive sends 100 itself.
- On ``now`` past several timers at once, all due timers fire in time order in one call;
  when two fall on the same instant the give-up (B, F, H, the SPEC §3 window) wins over a
  retransmission, so "N = 3: give up at 7.5 s" never also sends a 5th time at 7.5 s.
- Timer D / K / I / J of 0 (reliable transports) terminate at once, in the same event list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from sipharness.sipcore.message import MAGIC_COOKIE  # re-exported; its one home is sipcore.message
from sipharness.sipcore.uri import default_port

__all__ = [
    "TxState",
    "TransactionStateError",
    "Send",
    "Deliver",
    "TimedOut",
    "TransportFailed",
    "Terminated",
    "ClientTransaction",
    "ServerTransaction",
    "TwoXXRetransmitter",
    "TransactionTable",
    "TimerDriver",
    "send_offsets",
    "give_up_offset",
    "MAGIC_COOKIE",
]

_EPSILON = 1e-9


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Send:
    """Pass ``message`` to the transport (``retransmission`` for ladders and counts)."""

    message: Any
    retransmission: bool = False


@dataclass(frozen=True)
class Deliver:
    """A message for the transaction user (a response on the client side)."""

    message: Any


@dataclass(frozen=True)
class TimedOut:
    """The transaction gave up waiting; ``reason`` is human-readable (ends up in ladders)."""

    reason: str


@dataclass(frozen=True)
class TransportFailed:
    """The transport reported a failure (ICMP unreachable, refused, reset, TLS failure)."""

    reason: str


@dataclass(frozen=True)
class Terminated:
    """The object reached state ``terminated`` and can be dropped from its table."""


# --------------------------------------------------------------------------- schedules


def send_offsets(invite: bool, count: int, t1: float = 0.5, t2: float = 4.0) -> list[float]:
    """Offsets from the first send of the first ``count`` sends on an unreliable transport.

    INVITE (Timer A): intervals T1, 2·T1, 4·T1 … uncapped; non-INVITE (Timer E): the same
    capped at T2. ``send_offsets(True, 5)`` → [0, 0.5, 1.5, 3.5, 7.5].
    """
    out: list[float] = []
    t, interval = 0.0, t1
    for _ in range(count):
        out.append(t)
        t += interval
        interval = interval * 2 if invite else min(interval * 2, t2)
    return out


def give_up_offset(invite: bool, max_sends: int | None, t1: float = 0.5, t2: float = 4.0) -> float:
    """When (from the first send) a target is given up: SPEC §3.

    The (max_sends+1)-th send's due time, or 64·T1 (Timer B / F) if that comes first;
    ``max_sends=None`` → 64·T1 (plain RFC 3261).
    """
    timeout = 64 * t1
    if max_sends is None:
        return timeout
    return min(send_offsets(invite, max_sends + 1, t1, t2)[-1], timeout)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------- states


class TxState(enum.StrEnum):
    """Where a transaction (or a 2xx retransmitter) is, RFC 3261 §17 figures 5-8.

    A ``StrEnum``: a member *is* its text, so ``tx.state == "terminated"`` keeps working."""

    CALLING = "calling"  # client INVITE, before any response
    TRYING = "trying"  # non-INVITE, before any response (client) or any TU response (server)
    PROCEEDING = "proceeding"  # a provisional response was received / sent
    COMPLETED = "completed"  # a final response (non-2xx for INVITE) was received / sent
    CONFIRMED = "confirmed"  # server INVITE: the ACK of the non-2xx final arrived
    WAITING = "waiting"  # 2xx retransmitter: waiting for the ACK
    TERMINATED = "terminated"


class _Ev(enum.Enum):
    """What a state machine is fed (its own API calls, the wire, its timers)."""

    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FINAL = "final response received"  # 300-699 (client INVITE); 200-699 (client non-INVITE)
    RETRANSMIT = "retransmission timer (A/E/G)"
    TIMEOUT = "timeout (B/F/H or the SPEC §3 window)"
    WAIT_END = "wait timer (D/K/I/J)"
    TRANSPORT_ERROR = "transport error"
    REQUEST = "request retransmission received"
    ACK = "ACK received"
    RESPOND_1XX = "TU sends a 1xx"
    RESPOND_2XX = "TU sends a 2xx"
    RESPOND_FINAL = "TU sends a final response"


class TransactionStateError(ValueError):
    """An event the transition table does not allow in the current state (a caller's bug)."""


_C, _T, _P, _D, _F, _W, _X = (TxState.CALLING, TxState.TRYING, TxState.PROCEEDING, TxState.COMPLETED,
                              TxState.CONFIRMED, TxState.WAITING, TxState.TERMINATED)
_E = _Ev

#: Transition tables: state → {event: next state}. What is not here raises TransactionStateError.
#: Input from the wire that RFC 3261 says to absorb (a late response, a retransmitted request,
#: anything after termination) has its explicit row, so hostile input never raises.
_LATE = {_E.PROVISIONAL: _X, _E.SUCCESS: _X, _E.FINAL: _X, _E.TRANSPORT_ERROR: _X}
CLIENT_INVITE: dict[TxState, dict[_Ev, TxState]] = {  # RFC 3261 §17.1.1, figure 5
    _C: {_E.PROVISIONAL: _P, _E.SUCCESS: _X, _E.FINAL: _D, _E.RETRANSMIT: _C, _E.TIMEOUT: _X,
         _E.TRANSPORT_ERROR: _X},
    _P: {_E.PROVISIONAL: _P, _E.SUCCESS: _X, _E.FINAL: _D, _E.TRANSPORT_ERROR: _X},
    _D: {_E.PROVISIONAL: _D, _E.SUCCESS: _D, _E.FINAL: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _LATE,
}
CLIENT_NON_INVITE: dict[TxState, dict[_Ev, TxState]] = {  # RFC 3261 §17.1.2, figure 6
    _T: {_E.PROVISIONAL: _P, _E.FINAL: _D, _E.RETRANSMIT: _T, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _P: {_E.PROVISIONAL: _P, _E.FINAL: _D, _E.RETRANSMIT: _P, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _D: {_E.PROVISIONAL: _D, _E.FINAL: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _LATE,
}
_ABSORB = {_E.REQUEST: _X, _E.ACK: _X, _E.TRANSPORT_ERROR: _X}
SERVER_INVITE: dict[TxState, dict[_Ev, TxState]] = {  # RFC 3261 §17.2.1, figure 7
    _P: {_E.RESPOND_1XX: _P, _E.RESPOND_2XX: _X, _E.RESPOND_FINAL: _D, _E.REQUEST: _P, _E.ACK: _P,
         _E.TRANSPORT_ERROR: _X},
    _D: {_E.REQUEST: _D, _E.ACK: _F, _E.RETRANSMIT: _D, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _F: {_E.REQUEST: _F, _E.ACK: _F, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _ABSORB,
}
SERVER_NON_INVITE: dict[TxState, dict[_Ev, TxState]] = {  # RFC 3261 §17.2.2, figure 8
    _T: {_E.RESPOND_1XX: _P, _E.RESPOND_FINAL: _D, _E.REQUEST: _T, _E.ACK: _T, _E.TRANSPORT_ERROR: _X},
    _P: {_E.RESPOND_1XX: _P, _E.RESPOND_FINAL: _D, _E.REQUEST: _P, _E.ACK: _P, _E.TRANSPORT_ERROR: _X},
    _D: {_E.REQUEST: _D, _E.ACK: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _ABSORB,
}
TWO_XX: dict[TxState, dict[_Ev, TxState]] = {  # RFC 3261 §13.3.1.4
    _W: {_E.RETRANSMIT: _W, _E.ACK: _X, _E.TIMEOUT: _X},
    _X: {_E.ACK: _X},
}

#: timer name → the event it feeds (lower priority value fires first on the same instant)
_TIMER_EVENT = {"A": _E.RETRANSMIT, "E": _E.RETRANSMIT, "G": _E.RETRANSMIT, "B": _E.TIMEOUT, "F": _E.TIMEOUT,
                "H": _E.TIMEOUT, "window": _E.TIMEOUT, "D": _E.WAIT_END, "K": _E.WAIT_END, "I": _E.WAIT_END,
                "J": _E.WAIT_END}


# --------------------------------------------------------------------------- base


class _Machine:
    """A state, its transition table, and named timers (name → due time) with the
    ``deadline`` / ``on_timer`` plumbing."""

    # lower fires first when two timers fall due at the same instant: the give-up (B, F, H, the
    # SPEC §3 window) wins over a retransmission
    _PRIORITY = {"window": 0, "B": 0, "F": 0, "H": 0, "D": 1, "K": 1, "I": 1, "J": 1, "L": 1,
                 "A": 2, "E": 2, "G": 2}
    _TABLE: dict[TxState, dict[_Ev, TxState]] = {}

    def __init__(self, state: TxState) -> None:
        self.state = state
        self._timers: dict[str, float] = {}

    def _move(self, event: _Ev) -> TxState:
        """Take the transition the table gives for ``event``; return the state left."""
        before = self.state
        try:
            self.state = self._TABLE[before][event]
        except KeyError:
            raise TransactionStateError(f"{self!r}: {event.value} is not allowed in state {before}") from None
        if self.state is TxState.TERMINATED:
            self._timers.clear()
        return before

    @property
    def deadline(self) -> float | None:
        """When ``on_timer(now)`` must next be called (None: no timer running)."""
        return min(self._timers.values()) if self._timers else None

    def on_timer(self, now: float) -> list:
        """Fire every timer due at ``now`` (in time order); return the events."""
        events: list = []
        while self._timers and self.state is not TxState.TERMINATED:
            name, due = min(self._timers.items(), key=lambda kv: (kv[1], self._PRIORITY.get(kv[0], 9)))
            if due > now + _EPSILON:  # a clock's float sum may land 1 ulp short of ``due``
                break
            del self._timers[name]
            before = self._move(_TIMER_EVENT[name])
            events.extend(self._fire(name, due, before))
        return events

    def _fire(self, name: str, due: float, before: TxState) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ended(self, before: TxState) -> list:
        """[Terminated()] when the last move ended the machine (exactly once)."""
        return [Terminated()] if self.state is TxState.TERMINATED and before is not TxState.TERMINATED else []


def _branch(message: Any) -> str:
    via = message.top_via
    if via is None:
        raise ValueError(f"{_describe(message)}: no Via header, cannot key a transaction")
    return via.branch or ""


def _describe(message: Any) -> str:
    if getattr(message, "is_request", False):
        return f"{message.method} request"
    return f"{getattr(message, 'status', '?')} response"


# --------------------------------------------------------------------------- client


class ClientTransaction(_Machine):
    """RFC 3261 §17.1 client transaction; INVITE or non-INVITE by ``request.method``.

    ``max_sends`` is SPEC §3's ``1 + retry_counts``: the target is given up (TimedOut) when
    send number ``max_sends + 1`` would be due, or at Timer B/F, whichever comes first. On a
    reliable transport nothing is resent (RFC 3261 §17.1) and the same window applies.
    ``None`` gives plain RFC 3261 behaviour (the last target gets the full 64·T1).
    """

    def __init__(
        self,
        request: Any,
        *,
        reliable: bool,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        max_sends: int | None = None,
    ):
        if request.method == "ACK":
            raise ValueError("ACK has no client transaction (RFC 3261 §17): send it directly")
        if max_sends is not None and max_sends < 1:
            raise ValueError(f"max_sends must be >= 1 (1 + retry_counts), got {max_sends!r}")
        if t1 <= 0 or t2 < t1 or t4 < 0:
            raise ValueError(f"timers must satisfy 0 < t1 <= t2 and t4 >= 0, got t1={t1}, t2={t2}, t4={t4}")
        self.invite = request.method == "INVITE"
        super().__init__(TxState.CALLING if self.invite else TxState.TRYING)
        self._TABLE = CLIENT_INVITE if self.invite else CLIENT_NON_INVITE
        self.request = request
        self.reliable = bool(reliable)
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.max_sends = max_sends
        self.sends = 0
        self.started_at: float | None = None
        self.ack: Any = None  # the ACK built for a non-2xx final (INVITE only)
        self.final: Any = None  # the final response received, if any
        self._retransmit_interval = t1
        self.key = (_branch(request), request.method)

    # -- API
    def start(self, now: float) -> list:
        """Send the request; start Timer A/E (unreliable), B/F and the SPEC §3 window."""
        if self.started_at is not None:
            raise TransactionStateError(f"{self.request.method} client transaction {self.key[0]!r} already started")
        self.started_at = now
        self.sends = 1
        if not self.reliable:
            self._timers["A" if self.invite else "E"] = now + self.t1
        self._timers["B" if self.invite else "F"] = now + 64 * self.t1
        # SPEC §3: 1 + N sends, then give the target up (same window on reliable transports)
        if self.max_sends is not None:
            window = give_up_offset(self.invite, self.max_sends, self.t1, self.t2)
            if window < 64 * self.t1:
                self._timers["window"] = now + window
        return [Send(self.request)]

    def answers(self, response: Any) -> bool:
        """Is ``response`` an answer to this request: same Call-ID and CSeq (number and method)?

        The table matches on the branch and the method (RFC 3261 §17.1.3); SPEC §4 adds that a
        response whose Call-ID or CSeq number differs is not an answer, whatever its branch."""
        try:
            return response.call_id == self.request.call_id and tuple(response.cseq) == tuple(self.request.cseq)
        except ValueError:  # SipParseError: a header the parser left for later is malformed
            return False

    def receive(self, response: Any, now: float) -> list:
        """Feed a response matched to this transaction."""
        if self.started_at is None:
            return []
        status = response.status
        if 100 <= status < 200:
            event = _E.PROVISIONAL
        elif self.invite and 200 <= status < 300:
            event = _E.SUCCESS
        elif 200 <= status < 700:
            event = _E.FINAL
        else:
            return []  # not a status code: nothing to do
        before = self._move(event)
        if before is TxState.TERMINATED:
            return []  # a late response: the transaction is over
        if self.invite:
            return self._invite_moved(before, event, response, now)
        return self._non_invite_moved(before, event, response, now)

    def transport_error(self, reason: str, now: float) -> list:
        """The transport failed to deliver (ICMP unreachable, refused, reset, TLS failure)."""
        before = self._move(_E.TRANSPORT_ERROR)
        if before is TxState.TERMINATED:
            return []
        if before is TxState.COMPLETED:  # only an ACK (or nothing) was at stake
            return self._ended(before)
        return [TransportFailed(reason)] + self._ended(before)

    # -- INVITE (§17.1.1)
    def _invite_moved(self, before: TxState, event: _Ev, response: Any, now: float) -> list:
        if before is TxState.COMPLETED:
            if event is _E.FINAL:
                return [Send(self.ack, retransmission=True)]  # the final again: ACK again
            return []
        if event is _E.PROVISIONAL:
            # SPEC §3 [RFC]: a provisional ends retransmission and the failure window
            for name in ("A", "B", "window"):
                self._timers.pop(name, None)
            return [Deliver(response)]
        self.final = response
        if event is _E.SUCCESS:
            return [Deliver(response)] + self._ended(before)
        self.ack = self._build_ack(response)
        self._timers.clear()
        events: list = [Send(self.ack), Deliver(response)]
        if self.reliable:  # Timer D = 0
            return events + self._ended(self._move(_E.WAIT_END))
        self._timers["D"] = now + 32.0
        return events

    def _build_ack(self, response: Any) -> Any:
        """RFC 3261 §17.1.1.3: ACK for a non-2xx final, in this transaction."""
        req = self.request
        ack = req.copy()
        ack.method = "ACK"
        ack.body = b""
        h = ack.headers
        keep = {"via", "from", "to", "call-id", "cseq", "route", "max-forwards"}
        names = {name for name, _ in h.items()}
        for name in names:
            if name.lower() not in keep:
                h.remove(name)
        vias = req.headers.get_all("Via")
        h.set("Via", vias[0])
        to = response.headers.get("To")
        if to is not None:
            h.set("To", to)
        h.set("CSeq", f"{req.cseq[0]} ACK")
        h.set("Content-Length", "0")
        return ack

    # -- non-INVITE (§17.1.2)
    def _non_invite_moved(self, before: TxState, event: _Ev, response: Any, now: float) -> list:
        if before is TxState.COMPLETED:
            return []  # retransmissions of the final: absorbed
        if event is _E.PROVISIONAL:
            # SPEC §3 [interp]: the server is alive: cancel the retry_counts window, keep Timer F
            self._timers.pop("window", None)
            return [Deliver(response)]
        self.final = response
        self._timers.clear()
        if self.reliable:  # Timer K = 0
            return [Deliver(response)] + self._ended(self._move(_E.WAIT_END))
        self._timers["K"] = now + self.t4
        return [Deliver(response)]

    # -- timers
    def _fire(self, name: str, due: float, before: TxState) -> list:
        if name in ("A", "E"):
            self.sends += 1
            if name == "A":
                self._retransmit_interval *= 2
            elif self.state is TxState.PROCEEDING:
                self._retransmit_interval = self.t2
            else:
                self._retransmit_interval = min(self._retransmit_interval * 2, self.t2)
            self._timers[name] = due + self._retransmit_interval
            return [Send(self.request, retransmission=True)]
        if name == "window":
            retries = self.max_sends - 1
            how = "reliable transport, " if self.reliable else ""
            reason = (f"no response after {_plural(self.sends, 'send')} in {due - self.started_at:.2f} s "
                      f"({how}retry_counts {retries})")
            return [TimedOut(reason)] + self._ended(before)
        if name in ("B", "F"):
            if before is TxState.PROCEEDING:
                reason = f"no final response within {due - self.started_at:.2f} s (Timer {name})"
            else:
                reason = f"no response after {_plural(self.sends, 'send')} in {due - self.started_at:.2f} s (Timer {name})"
            return [TimedOut(reason)] + self._ended(before)
        return self._ended(before)  # D, K

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.key[1]} {self.key[0]} {self.state} sends={self.sends}>"


# --------------------------------------------------------------------------- server


class ServerTransaction(_Machine):
    """RFC 3261 §17.2 server transaction; INVITE or non-INVITE by ``request.method``.

    States: INVITE proceeding → completed → confirmed → terminated (2xx: terminated at once;
    the TU retransmits it, see :class:`TwoXXRetransmitter`); non-INVITE trying → proceeding →
    completed → terminated. Responding after the final response raises TransactionStateError.
    """

    def __init__(self, request: Any, *, reliable: bool, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0):
        if request.method == "ACK":
            raise ValueError("ACK creates no server transaction (RFC 3261 §17.2.3): hand it to the TU")
        self.invite = request.method == "INVITE"
        super().__init__(TxState.PROCEEDING if self.invite else TxState.TRYING)
        self._TABLE = SERVER_INVITE if self.invite else SERVER_NON_INVITE
        self.request = request
        self.reliable = bool(reliable)
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.last_response: Any = None
        self.ack: Any = None
        self._g_interval = t1
        self._completed_at: float | None = None
        self.key = server_key(request)

    def respond(self, response: Any, now: float) -> list:
        """Send a response from the TU through this transaction."""
        status = response.status
        if 100 <= status < 200:
            event = _E.RESPOND_1XX
        elif self.invite and 200 <= status < 300:
            event = _E.RESPOND_2XX
        else:
            event = _E.RESPOND_FINAL
        if event not in self._TABLE[self.state]:
            raise TransactionStateError(
                f"cannot send {status} in {self.request.method} server transaction {self.key[0]!r}: "
                f"state is {self.state} (a final response was already sent)")
        before = self._move(event)
        self.last_response = response
        if event is _E.RESPOND_1XX:
            return [Send(response)]
        if event is _E.RESPOND_2XX:
            return [Send(response)] + self._ended(before)  # §17.2.1: the TU retransmits 2xx
        self._completed_at = now
        events: list = [Send(response)]
        if self.invite:
            if not self.reliable:
                self._timers["G"] = now + self.t1
            self._timers["H"] = now + 64 * self.t1
            return events
        if self.reliable:  # Timer J = 0
            return events + self._ended(self._move(_E.WAIT_END))
        self._timers["J"] = now + 64 * self.t1
        return events

    def receive(self, request: Any, now: float) -> list:
        """Feed a request matched to this transaction (retransmission, or ACK for INVITE)."""
        is_ack = request.method == "ACK"
        before = self._move(_E.ACK if is_ack else _E.REQUEST)
        if before is TxState.TERMINATED:
            return []
        if is_ack:
            if before is TxState.COMPLETED and self.state is TxState.CONFIRMED:
                self.ack = request
                self._timers.clear()
                if self.reliable:  # Timer I = 0
                    return self._ended(self._move(_E.WAIT_END))
                self._timers["I"] = now + self.t4
            return []
        # a retransmission of the request: answer with the last response, if any
        if before in (TxState.PROCEEDING, TxState.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response, retransmission=True)]
        return []

    def transport_error(self, reason: str, now: float) -> list:
        before = self._move(_E.TRANSPORT_ERROR)
        if before is TxState.TERMINATED:
            return []
        return [TransportFailed(reason)] + self._ended(before)

    def _fire(self, name: str, due: float, before: TxState) -> list:
        if name == "G":
            self._g_interval = min(self._g_interval * 2, self.t2)
            self._timers["G"] = due + self._g_interval
            return [Send(self.last_response, retransmission=True)]
        if name == "H":
            reason = f"no ACK for {self.last_response.status} after {due - self._completed_at:.2f} s (Timer H)"
            return [TimedOut(reason)] + self._ended(before)
        return self._ended(before)  # I, J

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.key[-1]} {self.key[0]} {self.state}>"


# --------------------------------------------------------------------------- 2xx


class TwoXXRetransmitter(_Machine):
    """RFC 3261 §13.3.1.4: the UAS core retransmits a 2xx to INVITE until the ACK comes.

    Intervals T1, 2·T1 … capped at T2, whatever the transport; gives up after 64·T1
    (TimedOut: the TU should then end the dialog with BYE). ``matches_ack(ack)`` says whether an
    ACK is the one for this 2xx (same Call-ID and CSeq number: the ACK has a new branch).
    States: ``waiting`` → ``terminated`` (``acked`` tells how).
    """

    _TABLE = TWO_XX

    def __init__(self, response: Any, *, t1: float = 0.5, t2: float = 4.0):
        if not 200 <= response.status < 300:
            raise ValueError(f"TwoXXRetransmitter is for 2xx responses, got {response.status}")
        super().__init__(TxState.WAITING)
        self.response = response
        self.t1, self.t2 = t1, t2
        self.acked = False
        self.sends = 0
        self.started_at: float | None = None
        self._interval = t1

    def start(self, now: float) -> list:
        if self.started_at is not None:
            raise TransactionStateError("2xx retransmitter already started")
        self.started_at = now
        self.sends = 1
        self._timers["G"] = now + self.t1
        self._timers["H"] = now + 64 * self.t1
        return [Send(self.response)]

    def matches_ack(self, ack: Any) -> bool:
        return (
            ack.method == "ACK"
            and ack.call_id == self.response.call_id
            and ack.cseq[0] == self.response.cseq[0]
        )

    def ack_received(self, now: float) -> list:
        before = self._move(_E.ACK)
        if before is TxState.TERMINATED:
            return []
        self.acked = True
        return self._ended(before)

    def _fire(self, name: str, due: float, before: TxState) -> list:
        if name == "G":
            self.sends += 1
            self._interval = min(self._interval * 2, self.t2)
            self._timers["G"] = due + self._interval
            return [Send(self.response, retransmission=True)]
        reason = (f"no ACK for {self.response.status} after {_plural(self.sends, 'send')} "
                  f"in {due - self.started_at:.2f} s")
        return [TimedOut(reason)] + self._ended(before)  # H

    def __repr__(self) -> str:
        return f"<TwoXXRetransmitter {self.response.call_id} {self.state}>"


# --------------------------------------------------------------------------- matching


def server_key(request: Any) -> tuple:
    """RFC 3261 §17.2.3 key of the server transaction a request belongs to.

    RFC 3261 branch: (branch, sent-by host, sent-by port, method) with ACK → INVITE.
    RFC 2543 peers (no magic cookie): (Call-ID, CSeq number, From tag, top Via, method),
    a simplification of §17.2.3's legacy rules that is enough for fakes and the phone.
    """
    method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    if via is None:
        raise ValueError(f"{request.method} request without Via: cannot match a transaction")
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        port = via.port if via.port is not None else default_port(via.transport)
        return (branch, via.host.lower(), port, method)
    from_tag = request.from_.tag if request.from_ is not None else None
    return ("rfc2543", request.call_id, request.cseq[0], from_tag, str(via), method)


def client_key(response: Any) -> tuple:
    """RFC 3261 §17.1.3: (top Via branch, CSeq method)."""
    return (_branch(response), response.cseq[1])


class TransactionTable:
    """Client and server transactions by their RFC 3261 §17.1.3 / §17.2.3 keys.

    ``match_response`` finds the client transaction of a response; ``match_request`` the
    server transaction of a request (a retransmission, or the ACK of a non-2xx final; an ACK
    for a 2xx matches nothing and goes to the TU). CANCEL has its own transaction (its key
    carries the method); ``match_cancelled`` finds the INVITE a CANCEL targets (§9.2).
    """

    def __init__(self) -> None:
        self._client: dict[tuple, ClientTransaction] = {}
        self._server: dict[tuple, ServerTransaction] = {}

    def add(self, tx: ClientTransaction | ServerTransaction) -> None:
        table = self._client if isinstance(tx, ClientTransaction) else self._server
        old = table.get(tx.key)
        if old is not None and old is not tx and old.state is not TxState.TERMINATED:
            raise ValueError(f"a live transaction with key {tx.key!r} already exists: {old!r}")
        table[tx.key] = tx

    def remove(self, tx: ClientTransaction | ServerTransaction) -> None:
        table = self._client if isinstance(tx, ClientTransaction) else self._server
        if table.get(tx.key) is tx:
            del table[tx.key]

    def match_response(self, response: Any) -> ClientTransaction | None:
        """The client transaction ``response`` answers: same branch and CSeq method (RFC 3261
        §17.1.3), and the same Call-ID and CSeq number as its request (SPEC §4: a response
        that differs there is no answer, whatever its branch)."""
        if response.top_via is None:
            return None
        tx = self._client.get(client_key(response))
        if tx is None or not tx.answers(response):
            return None
        return tx

    def match_request(self, request: Any) -> ServerTransaction | None:
        if request.top_via is None:
            return None
        return self.match_key(server_key(request), request)

    def match_key(self, key: tuple, request: Any) -> ServerTransaction | None:
        """:meth:`match_request` when the caller has ``server_key(request)`` already."""
        tx = self._server.get(key)
        if tx is not None and request.method == "ACK" and not tx.invite:
            return None
        return tx

    def match_cancelled(self, cancel: Any) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL request targets (RFC 3261 §9.2)."""
        key = server_key(cancel)
        return self._server.get(key[:-1] + ("INVITE",))

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    def __iter__(self):
        return iter(list(self._client.values()) + list(self._server.values()))


# --------------------------------------------------------------------------- clock adapter


class TimerDriver:
    """Runs sans-I/O objects (``deadline`` / ``on_timer(now)``) on an injected IReactorTime.

    ``watch(obj, on_events)`` arms ``clock.callLater`` at ``obj.deadline``; when it fires,
    ``on_events(obj.on_timer(clock.seconds()))`` is called and the call re-armed. After any
    other interaction (start, receive, respond) call ``poke(obj)`` so the call follows the new
    deadline. An object whose deadline becomes None is forgotten once it is terminated.
    This is the only place where transactions meet a clock (SPEC §9).
    """

    def __init__(self, clock: Any):
        self.clock = clock
        self._watched: dict[int, tuple[Any, Callable[[list], Any], Any]] = {}

    def watch(self, obj: Any, on_events: Callable[[list], Any]) -> None:
        self._watched[id(obj)] = (obj, on_events, None)
        self.poke(obj)

    def unwatch(self, obj: Any) -> None:
        entry = self._watched.pop(id(obj), None)
        if entry is not None and entry[2] is not None and entry[2].active():
            entry[2].cancel()

    def poke(self, obj: Any) -> None:
        entry = self._watched.get(id(obj))
        if entry is None:
            return
        _, on_events, call = entry
        deadline = obj.deadline
        if call is not None and call.active():
            call.cancel()
        call = None
        if deadline is not None:
            call = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._fire, obj)
        elif getattr(obj, "state", None) == TxState.TERMINATED:
            self._watched.pop(id(obj), None)
            return
        self._watched[id(obj)] = (obj, on_events, call)

    def _fire(self, obj: Any) -> None:
        entry = self._watched.get(id(obj))
        if entry is None:
            return
        self._watched[id(obj)] = (obj, entry[1], None)
        events = obj.on_timer(self.clock.seconds())
        if events:
            entry[1](events)
        self.poke(obj)

    def __len__(self) -> int:
        return len(self._watched)
