"""RFC 3261 §17.1 client transactions, cut short by the SPEC §3 retry_counts window.

SPEC §3: a target gets ``1 + retry_counts`` sends and is given up when the next would be due
(:func:`give_up_offset`), or at Timer B/F if that comes first; a provisional response ends
retransmission and the window (INVITE) or only the window (non-INVITE, Timer F still runs).
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.transaction.keys import branch
from sipharness.sipcore.transaction.machine import Deliver, Machine, Send, TimedOut, TransportFailed, plural
from sipharness.sipcore.transaction.states import (CLIENT_INVITE, CLIENT_NON_INVITE, TransactionStateError, TxEvent,
                                                   TxState)

__all__ = ["ClientTransaction", "send_offsets", "give_up_offset"]


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


class ClientTransaction(Machine):
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
        self.key = (branch(request), request.method)

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
            event = TxEvent.PROVISIONAL
        elif self.invite and 200 <= status < 300:
            event = TxEvent.SUCCESS
        elif 200 <= status < 700:
            event = TxEvent.FINAL
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
        before = self._move(TxEvent.TRANSPORT_ERROR)
        if before is TxState.TERMINATED:
            return []
        if before is TxState.COMPLETED:  # only an ACK (or nothing) was at stake
            return self._ended(before)
        return [TransportFailed(reason)] + self._ended(before)

    # -- INVITE (§17.1.1)
    def _invite_moved(self, before: TxState, event: TxEvent, response: Any, now: float) -> list:
        if before is TxState.COMPLETED:
            if event is TxEvent.FINAL:
                return [Send(self.ack, retransmission=True)]  # the final again: ACK again
            return []
        if event is TxEvent.PROVISIONAL:
            # SPEC §3 [RFC]: a provisional ends retransmission and the failure window
            for name in ("A", "B", "window"):
                self._timers.pop(name, None)
            return [Deliver(response)]
        self.final = response
        if event is TxEvent.SUCCESS:
            return [Deliver(response)] + self._ended(before)
        self.ack = self._build_ack(response)
        self._timers.clear()
        events: list = [Send(self.ack), Deliver(response)]
        if self.reliable:  # Timer D = 0
            return events + self._ended(self._move(TxEvent.WAIT_END))
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
    def _non_invite_moved(self, before: TxState, event: TxEvent, response: Any, now: float) -> list:
        if before is TxState.COMPLETED:
            return []  # retransmissions of the final: absorbed
        if event is TxEvent.PROVISIONAL:
            # SPEC §3 [interp]: the server is alive: cancel the retry_counts window, keep Timer F
            self._timers.pop("window", None)
            return [Deliver(response)]
        self.final = response
        self._timers.clear()
        if self.reliable:  # Timer K = 0
            return [Deliver(response)] + self._ended(self._move(TxEvent.WAIT_END))
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
            reason = (f"no response after {plural(self.sends, 'send')} in {due - self.started_at:.2f} s "
                      f"({how}retry_counts {retries})")
            return [TimedOut(reason)] + self._ended(before)
        if name in ("B", "F"):
            if before is TxState.PROCEEDING:
                reason = f"no final response within {due - self.started_at:.2f} s (Timer {name})"
            else:
                reason = f"no response after {plural(self.sends, 'send')} in {due - self.started_at:.2f} s (Timer {name})"
            return [TimedOut(reason)] + self._ended(before)
        return self._ended(before)  # D, K

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.key[1]} {self.key[0]} {self.state} sends={self.sends}>"
