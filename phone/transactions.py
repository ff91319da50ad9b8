"""The phone's transaction layer: sipcore's sans-I/O transactions put on the phone's flows.

:class:`TransactionLayer` keeps the :class:`sipcore.transaction.TransactionTable` and the
:class:`sipcore.transaction.TimerDriver` (the one place transactions meet the clock) of one
phone, hands each client transaction's ``Send`` events to its flow and everything else to the
part that started it, and answers requests through server transactions.

Bounded under a flood (issue 12, SPEC §7 [interp]): at most :data:`MAX_SERVER_TRANSACTIONS`
server transactions live at once; past that, responses are sent statelessly (RFC 3261 §8.2.7:
the same To tag for the same request, no retransmission absorbed), so no burst of requests,
however fast, makes the phone keep more state.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from sipharness.sipcore.build import make_response
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.transaction import (ClientTransaction, Send, ServerTransaction, TimerDriver, TransactionTable,
                                            TxState)

from sipharness.phone.addressing import USER_AGENT

__all__ = ["TransactionLayer", "MAX_SERVER_TRANSACTIONS"]

MAX_SERVER_TRANSACTIONS = 64  # SPEC §7 [interp]: a phone answers a few requests at once, not thousands


class TransactionLayer:
    """Client and server transactions of one phone on ``clock``."""

    __slots__ = ("clock", "driver", "table", "_handlers", "_servers", "halted")

    def __init__(self, clock: Any):
        self.clock = clock
        self.driver = TimerDriver(clock)
        self.table = TransactionTable()
        self._handlers: dict[tuple, tuple[ClientTransaction, Any, Callable[[list], Any]]] = {}
        self._servers = 0  # live server transactions
        self.halted = False

    # -- client side
    def run(self, request: Any, flow: Any, max_sends: int | None, on_events: Callable[[list], Any]) -> Any:
        """Start a client transaction for ``request`` on ``flow``; its events other than ``Send``
        go to ``on_events``. None once the phone has stopped."""
        if self.halted:
            return None
        tx = ClientTransaction(request, reliable=flow.reliable, max_sends=max_sends)
        self.table.add(tx)
        self._handlers[tx.key] = (tx, flow, on_events)
        self.driver.watch(tx, lambda events: self._client_events(tx, flow, on_events, events))
        self._client_events(tx, flow, on_events, tx.start(self.clock.seconds()))
        self.driver.poke(tx)
        return tx

    def drop(self, tx: ClientTransaction) -> None:
        self.driver.unwatch(tx)
        self.table.remove(tx)
        self._handlers.pop(tx.key, None)

    def response(self, message: Any) -> bool:
        """Feed a response to the client transaction it answers; False if it answers none."""
        tx = self.table.match_response(message)
        if tx is None or tx.key not in self._handlers:
            return False
        _, flow, on_events = self._handlers[tx.key]
        self._client_events(tx, flow, on_events, tx.receive(message, self.clock.seconds()))
        self.driver.poke(tx)
        return True

    def transport_error(self, peer: tuple[str, int], transport: str, reason: str) -> None:
        """A flow to ``peer`` failed: every client transaction on it learns it."""
        for tx, flow, on_events in list(self._handlers.values()):
            if getattr(flow, "peer", None) == tuple(peer) and flow.transport == transport:
                self._client_events(tx, flow, on_events, tx.transport_error(reason, self.clock.seconds()))

    def _client_events(self, tx: ClientTransaction, flow: Any, on_events: Callable[[list], Any], events: list) -> None:
        out = []
        for ev in events:
            if isinstance(ev, Send):
                flow.send(ev.message)
            else:
                out.append(ev)
        if tx.state is TxState.TERMINATED:
            self.drop(tx)
        if out:
            on_events(out)

    # -- server side
    def retransmission(self, request: Any, reply: Any) -> bool:
        """A request (or the ACK of a non-2xx) that belongs to a live server transaction is
        absorbed there (the last response resent); False if it starts something new."""
        tx = self.table.match_request(request)
        if tx is None:
            return False
        self._server_events(tx, reply, tx.receive(request, self.clock.seconds()))
        return True

    def respond(self, request: Any, reply: Any, status: int, reason: str | None = None, *,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                to_tag: str | None = None) -> ServerTransaction | None:
        """Answer a new request with a final (or provisional) response through a new server
        transaction; statelessly (and None) when :data:`MAX_SERVER_TRANSACTIONS` are live."""
        hdrs = [("User-Agent", USER_AGENT), *(headers or [])]
        if body:
            hdrs.append(("Content-Type", "application/sdp"))
        if self._servers >= MAX_SERVER_TRANSACTIONS or self.halted:
            tag = to_tag or (_stateless_tag(request) if request.to.tag is None else None)
            reply.send(make_response(request, status, reason, to_tag=tag, headers=hdrs, body=body))
            return None
        tag = to_tag or (new_tag() if request.to.tag is None and status > 100 else None)
        tx = self.server_transaction(request, reply)
        self.send(tx, reply, make_response(request, status, reason, to_tag=tag, headers=hdrs, body=body))
        return tx

    def server_transaction(self, request: Any, reply: Any) -> ServerTransaction | None:
        """A new server transaction for ``request``, answered on ``reply`` (None at the cap)."""
        if self._servers >= MAX_SERVER_TRANSACTIONS or self.halted:
            return None
        tx = ServerTransaction(request, reliable=str(getattr(reply, "transport", "udp")).lower() != "udp")
        self.table.add(tx)
        self._servers += 1
        self.driver.watch(tx, lambda events: self._server_events(tx, reply, events))
        return tx

    def send(self, tx: ServerTransaction | None, reply: Any, response: Any) -> None:
        """Send ``response`` through ``tx`` (statelessly when ``tx`` is None, or already answered)."""
        if tx is None or tx.state not in (TxState.TRYING, TxState.PROCEEDING):
            if tx is None:
                reply.send(response)
            return
        self._server_events(tx, reply, tx.respond(response, self.clock.seconds()))

    def end_with_2xx(self, tx: ServerTransaction | None, response: Any) -> None:
        """An INVITE server transaction ends with the TU's 2xx (RFC 3261 §17.2.1), which the TU
        sends and resends itself (a :class:`sipcore.transaction.TwoXXRetransmitter`)."""
        if tx is not None and tx.state is TxState.PROCEEDING:
            tx.respond(response, self.clock.seconds())  # its Send is the retransmitter's first
            self._server_events(tx, None, [])

    def _server_events(self, tx: ServerTransaction, reply: Any, events: list) -> None:
        for ev in events:
            if isinstance(ev, Send):
                reply.send(ev.message)
        self.driver.poke(tx)
        if tx.state is TxState.TERMINATED and self.table.match_request(tx.request) is tx:
            self.table.remove(tx)
            self.driver.unwatch(tx)
            self._servers -= 1

    # -- life cycle
    def watch(self, obj: Any, on_events: Callable[[list], Any]) -> None:
        """Run another sans-I/O timer object (a 2xx retransmitter) on this layer's driver."""
        self.driver.watch(obj, on_events)

    def halt(self) -> None:
        """The phone stops: no timer of any transaction is left on the clock."""
        self.halted = True
        for tx, _, _ in list(self._handlers.values()):
            self.driver.unwatch(tx)
        self._handlers.clear()
        for tx in list(self.table):
            self.driver.unwatch(tx)
            self.table.remove(tx)
        self._servers = 0

    def __len__(self) -> int:
        return len(self.driver)


def _stateless_tag(request: Any) -> str:
    """RFC 3261 §8.2.7: a stateless UAS gives the same To tag to the same request."""
    try:
        key = f"{request.call_id}|{request.from_.tag}|{request.top_via.branch}"
    except ValueError:
        key = repr(request.start_line)
    return "s" + hashlib.blake2s(key.encode("utf-8", "replace"), digest_size=6).hexdigest()
