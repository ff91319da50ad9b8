"""What every transaction machine shares: the events it answers with, and a state moved through a
table by its API calls, the wire and its named timers (``deadline`` / ``on_timer``).

Events are small frozen dataclasses: :class:`Send` (hand this message to the transport),
:class:`Deliver` (a response for the TU), :class:`TimedOut`, :class:`TransportFailed` and
:class:`Terminated` (emitted exactly once, when the machine reaches state ``terminated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipharness.sipcore.transaction.states import TIMER_EVENT, Table, TransactionStateError, TxEvent, TxState

__all__ = ["Send", "Deliver", "TimedOut", "TransportFailed", "Terminated", "Machine", "plural"]

_EPSILON = 1e-9


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


class Machine:
    """A state, its transition table, and named timers (name → due time) with the
    ``deadline`` / ``on_timer`` plumbing. A subclass sets ``_TABLE`` and says in ``_fire``
    what a timer that fell due does."""

    # lower fires first when two timers fall due at the same instant: the give-up (B, F, H, the
    # SPEC §3 window) wins over a retransmission
    _PRIORITY = {"window": 0, "B": 0, "F": 0, "H": 0, "D": 1, "K": 1, "I": 1, "J": 1, "L": 1,
                 "A": 2, "E": 2, "G": 2}
    _TABLE: Table = {}

    def __init__(self, state: TxState) -> None:
        self.state = state
        self._timers: dict[str, float] = {}

    def _move(self, event: TxEvent) -> TxState:
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
            before = self._move(TIMER_EVENT[name])
            events.extend(self._fire(name, due, before))
        return events

    def _fire(self, name: str, due: float, before: TxState) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ended(self, before: TxState) -> list:
        """[Terminated()] when the last move ended the machine (exactly once)."""
        return [Terminated()] if self.state is TxState.TERMINATED and before is not TxState.TERMINATED else []


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
