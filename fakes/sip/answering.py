"""How a fake SIP server's answers reach the wire: the RFC 3261 §17.2 server side, sans-I/O.

:class:`fakes.sip.core.ServerCore` decides *what* to answer (script, role); this decides *how*
the answer travels, and what a retransmission of the request gets:

- a non-INVITE over UDP answered at once is answered **statelessly**: from its first response
  on it is "completed" (§17.2.2) and for Timer J (64·T1) a retransmission gets the last
  response again from a bounded :class:`~fakes.sip.recent.RecentMap` -- no transaction object,
  no timer (why: a registrar under load, see :mod:`fakes.sip.recent`);
- anything else (an INVITE, TCP/TLS, a request answered later: a delay, a relayed BYE) goes
  through a :class:`~sipcore.transaction.ServerTransaction`, watched by the core's timers;
- a 2xx to an INVITE that this fake generated (not a proxied callee's) is retransmitted
  until the ACK (§13.3.1.4, :class:`~sipcore.transaction.TwoXXRetransmitter`); a callee's
  2xx retransmission after the transaction ended is relayed statelessly for 64·T1.

Why a module of its own: the core had grown to 500 lines mixing the two concerns; the state
here (transactions, their origins, the retransmission memories) is touched by nothing else.
The core is this object's :class:`AnswerHost`: it gives the time, the server state, the
timers, the records and where the :class:`~fakes.sip.actions.Transmit` actions go.
"""

from __future__ import annotations

from typing import Any, Protocol

from sipharness.sipcore.transaction import Send, ServerTransaction, Terminated, TransactionTable, TwoXXRetransmitter, server_key

from sipharness.fakes.record import SipRecord
from sipharness.fakes.sip.actions import Origin, Transmit
from sipharness.fakes.sip.recent import RecentMap
from sipharness.fakes.sip.recording import status_line
from sipharness.fakes.sip.state import ServerState
from sipharness.fakes.sip.timers import Timers

__all__ = ["AnswerHost", "Answering", "WINDOW", "MAX_RECENT"]

WINDOW = 64 * 0.5  # 64·T1: how long a client may retransmit (Timer B/F) and Timer J lasts
MAX_RECENT = 200_000  # bound of the retransmission memories (requests seen, responses given)


class AnswerHost(Protocol):
    """What :class:`Answering` needs of the server core it serves."""

    now: float
    state: ServerState
    timers: Timers

    def emit(self, action: Transmit) -> None:
        """Queue ``action`` among the actions of the current feed."""

    def make_record(self, direction: str, message: Any, raw: bytes, origin: Origin, *,
                    retransmission: bool = False, summary: str | None = None, ids: tuple | None = None,
                    status: int | None = None) -> SipRecord:
        """A record of a message sent, at the core's time."""

    def is_proxied(self, request: Any) -> bool:
        """Whether ``request`` is one the proxy role relayed (its 2xx is the callee's)."""


def _ids(request: Any) -> tuple:
    """The (method, Call-ID, CSeq number, branch) a record of the answer to ``request`` names."""
    return (request.method, request.call_id, request.cseq[0], request.top_via.branch)


def _open(tx: ServerTransaction) -> bool:
    """No final response sent yet (RFC 3261 §17.2: states trying/proceeding)."""
    last = tx.last_response
    return last is None or last.status < 200


class Answering:
    """Server transactions and stateless answers of one fake SIP server (module docstring)."""

    def __init__(self, host: AnswerHost):
        self._host = host
        self._table = TransactionTable()
        self._origins: dict[tuple, Origin] = {}  # live server transaction key → where its request came from
        # an INVITE answered 2xx here by a proxied callee: its origin, for the callee's 2xx
        # retransmissions, for 64·T1 after the transaction ended (then forgotten; bounded)
        self._answered_2xx = RecentMap(WINDOW, MAX_RECENT)
        self._twoxx: list[tuple[TwoXXRetransmitter, Origin]] = []
        self._answered = RecentMap(WINDOW, MAX_RECENT)  # UDP non-INVITE server key → last response bytes

    def sizes(self) -> dict[str, int]:
        """How much is held (every one bounded or drained when its transaction ends)."""
        return {"transactions": len(self._table), "origins": len(self._origins), "retransmitters": len(self._twoxx),
                "answered": len(self._answered), "answered_2xx": len(self._answered_2xx)}

    def stop(self) -> None:
        """The server stopped: no 2xx is retransmitted any more."""
        self._twoxx = []

    # ------------------------------------------------------------------ requests coming in
    def ack(self, request: Any) -> bool:
        """An ACK: to its INVITE transaction (a non-2xx's ACK ends there: True) and to the 2xx
        retransmitters it stops. False: the role sees it too (the ACK of a 2xx)."""
        host = self._host
        tx = self._table.match_request(request)
        if tx is not None:
            self._tx_events(tx, tx.receive(request, host.now))
            if tx.invite and tx.last_response is not None and tx.last_response.status >= 300:
                return True
        for r, o in list(self._twoxx):
            if r.matches_ack(request):
                r.ack_received(host.now)
                host.timers.unwatch(r)
                self._twoxx.remove((r, o))
        return False

    def retransmission(self, key: tuple, request: Any, origin: Origin, lean: bool) -> bool:
        """Whether ``request`` (server transaction ``key``) was answered or is being answered:
        then its last response went out again (or its transaction absorbed it). ``lean``: a
        UDP non-INVITE, which may have been answered statelessly."""
        if lean and self._absorb(key, request, origin):
            return True
        tx = self._table.match_key(key, request)
        if tx is None:  # (terminated transactions leave the table)
            return False
        self._tx_events(tx, tx.receive(request, self._host.now))
        return True

    def answered(self, request: Any, origin: Origin) -> bool:
        """Whether ``request`` already has a final response (a 500 for an error must not follow it)."""
        if origin.transport == "udp" and request.method != "INVITE":
            return self._answered.get(server_key(request), self._host.now) is not None
        tx = self._table.match_request(request)
        return tx is not None and not _open(tx)

    # ------------------------------------------------------------------ answers going out
    def stateless(self, key: tuple, request: Any, response: Any, origin: Origin, ids: tuple | None = None) -> None:
        """Answer a UDP non-INVITE at once, without a transaction (remembered for Timer J).
        ``ids``: the request's (method, Call-ID, CSeq, branch) if the caller has them."""
        host = self._host
        data = response.to_bytes()
        self._answered.put(key, data, host.now)
        if ids is None:
            ids = _ids(request)
        host.emit(Transmit(data, origin.transport, origin.peer, origin.flow,
                           host.make_record("out", response, data, origin, ids=ids)))

    def scripted(self, request: Any, response: Any, origin: Origin) -> None:
        """A response a script rule (or an error) chose: statelessly for a UDP non-INVITE,
        else through the request's transaction (made if missing)."""
        host = self._host
        if host.state is not ServerState.UP:
            return
        if origin.transport == "udp" and request.method not in ("INVITE", "ACK"):
            key = server_key(request)
            if not self._absorb(key, request, origin):
                self.stateless(key, request, response, origin)
            return
        tx = self._table.match_request(request)
        if tx is None:
            tx = self.new_tx(request, origin)
        if _open(tx):
            self._tx_events(tx, tx.respond(response, host.now))
        else:  # already answered: repeat the last response (a retransmission)
            self._tx_events(tx, tx.receive(request, host.now))

    def new_tx(self, request: Any, origin: Origin) -> ServerTransaction:
        """A server transaction for ``request`` (the role answers it later, or not at once)."""
        tx = ServerTransaction(request, reliable=origin.transport != "udp")
        self._table.add(tx)
        self._origins[tx.key] = origin
        self._host.timers.watch(tx, lambda events, tx=tx: self._tx_events(tx, events), origin)
        return tx

    def respond(self, request: Any, response: Any) -> None:
        """The role's response to ``request`` through its transaction; a 2xx to an INVITE of
        ours is then retransmitted until the ACK."""
        host = self._host
        if host.state is not ServerState.UP:
            return
        now = host.now
        tx = self._table.match_request(request)
        if tx is None or not _open(tx):
            if tx is None and request.method == "INVITE" and 200 <= response.status < 300:
                origin = self._answered_2xx.get(server_key(request), now)
                if origin is not None:  # a 2xx retransmission relayed by the proxy: stateless
                    self._transmit(response, origin, retransmission=True)
            return  # e.g. the 200 of a call cancelled meanwhile
        local_2xx = tx.invite and 200 <= response.status < 300 and not host.is_proxied(request)
        origin = self._origins.get(tx.key)  # (a 2xx ends the transaction: its origin moves on)
        self._tx_events(tx, tx.respond(response, now))
        if local_2xx and not tx.reliable and origin is not None:
            r = TwoXXRetransmitter(response)
            r.start(now)  # its first send is the one the transaction just made
            self._twoxx.append((r, origin))
            host.timers.watch(r, lambda events, r=r, o=origin: self._twoxx_events(r, o, events), origin)

    # ------------------------------------------------------------------ internals
    def _absorb(self, key: tuple, request: Any, origin: Origin) -> bool:
        """Whether ``request`` (UDP non-INVITE) was answered statelessly: then the answer goes again."""
        host = self._host
        data = self._answered.get(key, host.now)
        if data is None:
            return False
        if host.state is ServerState.UP:
            # its record says what the answer is from the status line and the request's ids, not
            # from our own answer parsed back: that made each retransmission cost as much as a new
            # request, the spiral of a registrar under more load than it takes
            summary = status_line(data)  # "200 OK"
            host.emit(Transmit(data, origin.transport, origin.peer, origin.flow,
                               host.make_record("out", None, data, origin, retransmission=True, summary=summary,
                                                ids=_ids(request), status=int(summary[:3]))))
        return True

    def _twoxx_events(self, r: TwoXXRetransmitter, origin: Origin, events: list) -> None:
        for ev in events:
            if isinstance(ev, Send) and self._host.state is ServerState.UP:
                self._transmit(ev.message, origin, retransmission=ev.retransmission)
            elif isinstance(ev, Terminated):
                self._host.timers.unwatch(r)
                if (r, origin) in self._twoxx:
                    self._twoxx.remove((r, origin))

    def _tx_events(self, tx: ServerTransaction, events: list) -> None:
        host = self._host
        origin = self._origins.get(tx.key)
        for ev in events:
            if isinstance(ev, Send):
                if origin is not None and host.state is ServerState.UP:
                    self._transmit(ev.message, origin, retransmission=ev.retransmission)
            elif isinstance(ev, Terminated):
                self._table.remove(tx)
                host.timers.unwatch(tx)
                origin_ = self._origins.pop(tx.key, None)
                if tx.invite and tx.last_response is not None and tx.last_response.status < 300 and origin_:
                    self._answered_2xx.put(tx.key, origin_, host.now)
        host.timers.poke(tx)

    def _transmit(self, message: Any, origin: Origin, *, retransmission: bool = False) -> None:
        data = message.to_bytes()
        self._host.emit(Transmit(data, origin.transport, origin.peer, origin.flow,
                                 self._host.make_record("out", message, data, origin, retransmission=retransmission)))
