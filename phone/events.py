"""What the bundled phone reports: one :class:`PhoneEvent` per thing that happened.

The harness's DUT interface (SPEC §10) needs the same events from every kind of phone
(registered, register failed, call state); the bundled phone adds "target" and "decision"
events so a failed suite can show *why* the phone did what it did. The words are
:mod:`sipcore.events` (``EventKind``, ``CallState``: StrEnum, so a member is its text in a JSON
line or an Action URL). Events go into a :class:`sipcore.journal.Journal`, so tests wait on
them with a deadline on the phone's clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

from sipharness.sipcore.events import CallState, EventKind
from sipharness.sipcore.journal import Journal

__all__ = ["PhoneEvent", "EventJournal", "KEEP_EVENTS"]

# Events a phone keeps (at least; up to a quarter more between trims). A registered phone adds
# a few events per refresh for ever: 10 000 phones running for days cannot keep them all.
KEEP_EVENTS = 1000


@dataclass(frozen=True, slots=True)  # slots: a phone keeps every event; 10 000 phones in one process
class PhoneEvent:
    time: float
    kind: EventKind
    account: int | None = None
    server: int | None = None
    target: str | None = None
    state: CallState | None = None  # for EventKind.CALL_STATE
    call_id: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = "".join(
            f" {k}={v}" for k, v in (("account", self.account), ("server", self.server), ("target", self.target),
                                     ("state", self.state), ("call_id", self.call_id)) if v is not None
        )
        return f"t={self.time:.3f} {self.kind}{where}" + (f": {self.detail}" if self.detail else "")


class _Window:
    """The last entries of a log, addressed by their index in the whole log (what
    :class:`sipcore.journal.Journal` stores in ``_entries``: ``len`` is the count ever appended,
    ``[i]`` and ``[i:]`` take whole-log indices; dropped entries are simply not there)."""

    __slots__ = ("_items", "_offset", "keep")

    def __init__(self, keep: int):
        self._items: list[Any] = []
        self._offset = 0  # whole-log index of _items[0]
        self.keep = keep

    def append(self, entry: Any) -> None:
        items = self._items
        items.append(entry)
        if len(items) > self.keep + self.keep // 4:  # trim in batches: amortised O(1)
            drop = len(items) - self.keep
            del items[:drop]
            self._offset += drop

    @property
    def offset(self) -> int:
        return self._offset

    def __len__(self) -> int:
        return self._offset + len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __getitem__(self, index: Any) -> Any:
        total = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(total)
            if step != 1:
                return [self[i] for i in range(start, stop, step) if i >= self._offset]
            return list(itertools.islice(self._items, max(start - self._offset, 0), max(stop - self._offset, 0)))
        i = index + total if index < 0 else index
        if not 0 <= i < total:
            raise IndexError(f"event index {index} out of range (0..{total - 1})")
        if i < self._offset:
            raise IndexError(f"event {index} was dropped: a phone keeps its last {self.keep} events")
        return self._items[i - self._offset]


class EventJournal(Journal):
    """The phone's events: a :class:`sipcore.journal.Journal` that keeps only the last ``keep``.

    Indices stay those of the whole log: ``len()`` counts every event ever emitted, so
    ``wait_for(..., since=len(journal))`` and ``since=`` indices taken earlier mean what they
    meant; ``journal[i]`` of a dropped event raises IndexError. Iteration, ``entries()`` and a
    ``wait_for`` reaching back before the kept window see only the kept events (a wait for
    something new, or recent, is unaffected). Listeners (``subscribe``) see every event.
    """

    def __init__(self, clock: Any, keep: int = KEEP_EVENTS):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 event, got {keep!r}")
        super().__init__(clock)
        self._entries = _Window(keep)  # type: ignore[assignment]

    @property
    def keep(self) -> int:
        return self._entries.keep  # type: ignore[attr-defined]

    @property
    def dropped(self) -> int:
        """Events no longer kept (the whole-log index of the oldest kept one)."""
        return self._entries.offset  # type: ignore[attr-defined]
