"""Where a transaction is, what it is fed, and the transition table of each machine (RFC 3261 §17).

States are a :class:`TxState` (``StrEnum``) moved only through a transition table per machine
(RFC 3261 figures 5-8, as h11's ``_state.py`` keeps its tables): an event the table does not
allow raises :class:`TransactionStateError` (answering twice, starting twice). What the wire
may legitimately repeat or bring late (a retransmitted request, a second final response, a
response after termination) has its explicit absorbing row, so no input from a peer raises.
"""

from __future__ import annotations

import enum

__all__ = ["TxState", "TxEvent", "TransactionStateError", "CLIENT_INVITE", "CLIENT_NON_INVITE",
           "SERVER_INVITE", "SERVER_NON_INVITE", "TWO_XX", "TIMER_EVENT"]


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


class TxEvent(enum.Enum):
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


Table = dict[TxState, dict[TxEvent, TxState]]

_C, _T, _P, _D, _F, _W, _X = (TxState.CALLING, TxState.TRYING, TxState.PROCEEDING, TxState.COMPLETED,
                              TxState.CONFIRMED, TxState.WAITING, TxState.TERMINATED)
_E = TxEvent

# Transition tables: state → {event: next state}. What is not here raises TransactionStateError.
# Input from the wire that RFC 3261 says to absorb (a late response, a retransmitted request,
# anything after termination) has its explicit row, so hostile input never raises. The tables
# look alike on purpose: each is one figure of the RFC, row for row.
_LATE = {_E.PROVISIONAL: _X, _E.SUCCESS: _X, _E.FINAL: _X, _E.TRANSPORT_ERROR: _X}
CLIENT_INVITE: Table = {  # RFC 3261 §17.1.1, figure 5
    _C: {_E.PROVISIONAL: _P, _E.SUCCESS: _X, _E.FINAL: _D, _E.RETRANSMIT: _C, _E.TIMEOUT: _X,
         _E.TRANSPORT_ERROR: _X},
    _P: {_E.PROVISIONAL: _P, _E.SUCCESS: _X, _E.FINAL: _D, _E.TRANSPORT_ERROR: _X},
    _D: {_E.PROVISIONAL: _D, _E.SUCCESS: _D, _E.FINAL: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _LATE,
}
CLIENT_NON_INVITE: Table = {  # RFC 3261 §17.1.2, figure 6
    _T: {_E.PROVISIONAL: _P, _E.FINAL: _D, _E.RETRANSMIT: _T, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _P: {_E.PROVISIONAL: _P, _E.FINAL: _D, _E.RETRANSMIT: _P, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _D: {_E.PROVISIONAL: _D, _E.FINAL: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _LATE,
}
_ABSORB = {_E.REQUEST: _X, _E.ACK: _X, _E.TRANSPORT_ERROR: _X}
SERVER_INVITE: Table = {  # RFC 3261 §17.2.1, figure 7
    _P: {_E.RESPOND_1XX: _P, _E.RESPOND_2XX: _X, _E.RESPOND_FINAL: _D, _E.REQUEST: _P, _E.ACK: _P,
         _E.TRANSPORT_ERROR: _X},
    _D: {_E.REQUEST: _D, _E.ACK: _F, _E.RETRANSMIT: _D, _E.TIMEOUT: _X, _E.TRANSPORT_ERROR: _X},
    _F: {_E.REQUEST: _F, _E.ACK: _F, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _ABSORB,
}
SERVER_NON_INVITE: Table = {  # RFC 3261 §17.2.2, figure 8
    _T: {_E.RESPOND_1XX: _P, _E.RESPOND_FINAL: _D, _E.REQUEST: _T, _E.ACK: _T, _E.TRANSPORT_ERROR: _X},
    _P: {_E.RESPOND_1XX: _P, _E.RESPOND_FINAL: _D, _E.REQUEST: _P, _E.ACK: _P, _E.TRANSPORT_ERROR: _X},
    _D: {_E.REQUEST: _D, _E.ACK: _D, _E.WAIT_END: _X, _E.TRANSPORT_ERROR: _X},
    _X: _ABSORB,
}
TWO_XX: Table = {  # RFC 3261 §13.3.1.4
    _W: {_E.RETRANSMIT: _W, _E.ACK: _X, _E.TIMEOUT: _X},
    _X: {_E.ACK: _X},
}

#: timer name → the event it feeds
TIMER_EVENT = {"A": _E.RETRANSMIT, "E": _E.RETRANSMIT, "G": _E.RETRANSMIT, "B": _E.TIMEOUT, "F": _E.TIMEOUT,
               "H": _E.TIMEOUT, "window": _E.TIMEOUT, "D": _E.WAIT_END, "K": _E.WAIT_END, "I": _E.WAIT_END,
               "J": _E.WAIT_END}
