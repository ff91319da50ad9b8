"""The client side of the calls a fake SIP server places (the UAC role), sans-I/O.

:class:`fakes.sip.uac.UacCall` knows a call's dialog and state; this runs its requests
through sipcore's client transactions (RFC 3261 §17.1: INVITE with Timer A/B, BYE and CANCEL
with E/F, a full Timer B: a fake is patient, SPEC §3's retry_counts are the phone's) on the
core's :class:`~fakes.sip.timers.Timers`, ACKs a 2xx at once unless the test asked not to,
and ACKs again every retransmission of that 2xx (§13.2.2.4) for 64·T1 after the INVITE
transaction ended. What it sends goes to the ``send`` callable the core gives it.
"""

from __future__ import annotations

from typing import Any, Callable

from sipharness.sipcore.transaction import ClientTransaction, Deliver, Send, Terminated, TimedOut, TransportFailed

from sipharness.fakes.sip.actions import Origin
from sipharness.fakes.sip.timers import Timers
from sipharness.fakes.sip.uac import UacCall, UacOp, UacState

__all__ = ["Originator"]

Address = tuple[str, int]
KEEP = 64 * 0.5  # 64·T1: how long a callee may retransmit its 2xx after the INVITE transaction ended


class Originator:
    """Calls placed by one fake: ``start``, ``op`` (ACK, BYE, CANCEL), ``response``, ``transport_error``."""

    def __init__(self, timers: Timers, send: Callable[[Any, UacCall, bool], None]):
        self._timers = timers
        self._send = send  # (request, call, retransmission)
        self._calls: dict[str, UacCall] = {}  # by Call-ID, until 64·T1 after the INVITE transaction
        self._tx: dict[tuple, tuple[ClientTransaction, UacCall]] = {}  # (branch, method) → its transaction

    def __bool__(self) -> bool:
        return bool(self._calls) or bool(self._tx)

    def sizes(self) -> dict[str, int]:
        return {"calls": len(self._calls), "call_transactions": len(self._tx)}

    def start(self, call: UacCall) -> None:
        """Send ``call``'s INVITE (times: the core's ``Timers.now``)."""
        self._calls[call.call_id] = call
        self._start_tx(call.invite, call)

    def op(self, call: UacCall, op: UacOp) -> None:
        """A test's request on the call (UacError if its state forbids it)."""
        if op is UacOp.ACK:
            self._send(call.ack(), call, False)
        elif op is UacOp.BYE:
            if call.state is UacState.ANSWERED:
                self._send(call.ack(), call, False)  # RFC 3261 §13.2.2.4: a 2xx is ACKed before anything else
            self._start_tx(call.bye(), call)
        elif op is UacOp.CANCEL:
            self._start_tx(call.cancel(), call)

    def response(self, response: Any) -> bool | None:
        """A response that may be one of ours: None if not, else whether it is a retransmission."""
        via = response.top_via
        found = self._tx.get((via.branch if via is not None else None, response.method))
        if found is not None:
            tx, call = found
            self._events(tx, call, tx.receive(response, self._timers.now))
            return False
        call = self._calls.get(response.call_id)
        if call is None or response.method != "INVITE" or not 200 <= response.status < 300:
            return None
        if call.ack_request is not None:  # RFC 3261 §13.2.2.4: a retransmitted 2xx is ACKed again
            self._send(call.ack_request, call, True)
        return True

    def transport_error(self, peer: Address, transport: str, reason: str) -> None:
        for tx, call in list(self._tx.values()):
            if tuple(call.target.peer) == tuple(peer) and call.target.transport == transport:
                self._events(tx, call, tx.transport_error(reason, self._timers.now))

    def _start_tx(self, request: Any, call: UacCall) -> None:
        tx = ClientTransaction(request, reliable=call.target.transport != "udp")
        self._tx[(request.top_via.branch, request.method)] = (tx, call)
        t = call.target
        self._timers.watch(tx, lambda events, tx=tx, call=call: self._events(tx, call, events),
                           Origin(t.transport, t.peer, t.local, t.flow))
        self._events(tx, call, tx.start(self._timers.now))

    def _events(self, tx: ClientTransaction, call: UacCall, events: list) -> None:
        method = tx.request.method
        for ev in events:
            if isinstance(ev, Send):
                self._send(ev.message, call, ev.retransmission)
            elif isinstance(ev, Deliver):
                if method == "INVITE":
                    call.invite_response(ev.message)
                    if 200 <= ev.message.status < 300 and call.auto_ack and call.ack_request is None:
                        self._send(call.ack(), call, False)
                elif method == "BYE":
                    call.bye_response(ev.message)
            elif isinstance(ev, (TimedOut, TransportFailed)):
                if method in ("INVITE", "BYE"):
                    call.timed_out(ev.reason)
            elif isinstance(ev, Terminated):
                self._tx.pop((tx.request.top_via.branch, method), None)
                self._timers.unwatch(tx)
                if method == "INVITE":
                    self._timers.later(self._timers.now + KEEP, self._forget, call)
        self._timers.poke(tx)

    def _forget(self, call: UacCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
