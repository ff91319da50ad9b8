"""RFC 3261 §17.2 server transactions, and the UAS core's 2xx retransmission (§13.3.1.4).

A server INVITE transaction does not send 100 Trying by itself: the TU (a fake scripted to stay
silent, or the phone) decides. A 2xx to INVITE ends the transaction at once (§17.2.1): the TU
retransmits it with a :class:`TwoXXRetransmitter` until the ACK comes.
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.transaction.keys import server_key
from sipharness.sipcore.transaction.machine import Machine, Send, TimedOut, TransportFailed, plural
from sipharness.sipcore.transaction.states import (SERVER_INVITE, SERVER_NON_INVITE, TWO_XX, TransactionStateError,
                                                   TxEvent, TxState)

__all__ = ["ServerTransaction", "TwoXXRetransmitter"]


class ServerTransaction(Machine):
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
            event = TxEvent.RESPOND_1XX
        elif self.invite and 200 <= status < 300:
            event = TxEvent.RESPOND_2XX
        else:
            event = TxEvent.RESPOND_FINAL
        if event not in self._TABLE[self.state]:
            raise TransactionStateError(
                f"cannot send {status} in {self.request.method} server transaction {self.key[0]!r}: "
                f"state is {self.state} (a final response was already sent)")
        before = self._move(event)
        self.last_response = response
        if event is TxEvent.RESPOND_1XX:
            return [Send(response)]
        if event is TxEvent.RESPOND_2XX:
            return [Send(response)] + self._ended(before)  # §17.2.1: the TU retransmits 2xx
        self._completed_at = now
        events: list = [Send(response)]
        if self.invite:
            if not self.reliable:
                self._timers["G"] = now + self.t1
            self._timers["H"] = now + 64 * self.t1
            return events
        if self.reliable:  # Timer J = 0
            return events + self._ended(self._move(TxEvent.WAIT_END))
        self._timers["J"] = now + 64 * self.t1
        return events

    def receive(self, request: Any, now: float) -> list:
        """Feed a request matched to this transaction (retransmission, or ACK for INVITE)."""
        is_ack = request.method == "ACK"
        before = self._move(TxEvent.ACK if is_ack else TxEvent.REQUEST)
        if before is TxState.TERMINATED:
            return []
        if is_ack:
            if before is TxState.COMPLETED and self.state is TxState.CONFIRMED:
                self.ack = request
                self._timers.clear()
                if self.reliable:  # Timer I = 0
                    return self._ended(self._move(TxEvent.WAIT_END))
                self._timers["I"] = now + self.t4
            return []
        # a retransmission of the request: answer with the last response, if any
        if before in (TxState.PROCEEDING, TxState.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response, retransmission=True)]
        return []

    def transport_error(self, reason: str, now: float) -> list:
        before = self._move(TxEvent.TRANSPORT_ERROR)
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


class TwoXXRetransmitter(Machine):
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
        before = self._move(TxEvent.ACK)
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
        reason = (f"no ACK for {self.response.status} after {plural(self.sends, 'send')} "
                  f"in {due - self.started_at:.2f} s")
        return [TimedOut(reason)] + self._ended(before)  # H

    def __repr__(self) -> str:
        return f"<TwoXXRetransmitter {self.response.call_id} {self.state}>"
