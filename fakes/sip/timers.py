"""The timers of a fake SIP server's core, sans-I/O: one heap, one deadline for the adapter.

The core (:mod:`fakes.sip.core`) has two kinds of timed work: delayed calls (an answer a
script or the UAS delays, a memory to forget) and *watched* objects, sipcore's transactions
and 2xx retransmitters, which expose ``deadline`` and ``on_timer(now)``. Both go into one
heap here; :attr:`Timers.deadline` is when :meth:`Timers.fire` must next run, so the Twisted
adapter keeps a single ``callLater`` however many transactions are live (the registrar's
stateless REGISTERs make none at all). Why not sipcore's ``TimerDriver``: it arms one
``IDelayedCall`` per object on a clock, which is I/O this core must not do.

A watched object is re-armed lazily: :meth:`poke` pushes a new entry only when its deadline
moved earlier; an entry that fires early for an object whose deadline moved later is pushed
again; entries of forgotten objects are skipped.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable

__all__ = ["Timers"]

_EPSILON = 1e-9  # a clock's float sum may land 1 ulp short of a due time


class Timers:
    """Delayed calls and watched objects in one heap (times are phone seconds the caller passes)."""

    def __init__(self) -> None:
        #: the phone time of the current feed or firing (the core sets it; its parts read it)
        self.now = 0.0
        # entries: (due, seq, context, fn, args) for a delayed call; (due, seq, context, None, (obj,)) for a watched one
        self._heap: list = []
        self._seq = 0
        self._watched: dict[int, tuple[Any, Callable[[list], Any], Any]] = {}
        self._armed: dict[int, float] = {}

    def later(self, due: float, fn: Callable, *args: Any, context: Any = None) -> None:
        """Call ``fn(*args)`` at ``due``; ``context`` comes back with an error it raises."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, context, fn, args))

    def watch(self, obj: Any, on_events: Callable[[list], Any], context: Any = None) -> None:
        """Run ``obj``'s timers: ``on_events(obj.on_timer(now))`` whenever its deadline is due."""
        self._watched[id(obj)] = (obj, on_events, context)
        self.poke(obj)

    def unwatch(self, obj: Any) -> None:
        self._watched.pop(id(obj), None)
        self._armed.pop(id(obj), None)

    def poke(self, obj: Any) -> None:
        """Follow ``obj``'s deadline after it changed (fed a message, responded)."""
        oid = id(obj)
        entry = self._watched.get(oid)
        if entry is None:
            return
        due = obj.deadline
        if due is None:
            self._armed.pop(oid, None)
            return
        armed = self._armed.get(oid)
        if armed is not None and armed <= due:
            return  # the entry in the heap fires first; _fire_watched re-arms for the rest
        self._armed[oid] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry[2], None, (obj,)))

    @property
    def deadline(self) -> float | None:
        """When :meth:`fire` must next run (None: nothing pending)."""
        heap = self._heap
        while heap and heap[0][3] is None and self._armed.get(id(heap[0][4][0])) != heap[0][0]:
            heapq.heappop(heap)  # a stale entry: that object was re-armed or forgotten
        return heap[0][0] if heap else None

    def fire(self, now: float, on_error: Callable[[BaseException, Any, Any], None]) -> None:
        """Run everything due at ``now``; an exception goes to ``on_error(error, context, first_arg)``
        (``first_arg``: the delayed call's first argument, None for a watched object) and the rest runs."""
        self.now = now
        heap = self._heap
        while heap and heap[0][0] <= now + _EPSILON:
            due, _, context, fn, args = heapq.heappop(heap)
            try:
                if fn is None:
                    self._fire_watched(args[0], due, now)
                else:
                    fn(*args)
            except Exception as e:
                on_error(e, context, args[0] if fn is not None and args else None)

    def _fire_watched(self, obj: Any, due: float, now: float) -> None:
        oid = id(obj)
        entry = self._watched.get(oid)
        if entry is None or self._armed.get(oid) != due:
            return  # forgotten, or re-armed earlier (that entry fired) / later
        del self._armed[oid]
        events = obj.on_timer(now)
        if events:
            entry[1](events)
        self.poke(obj)

    def clear(self) -> None:
        self._heap.clear()
        self._watched.clear()
        self._armed.clear()

    @property
    def watched(self) -> int:
        return len(self._watched)

    @property
    def delayed(self) -> int:
        return sum(1 for e in self._heap if e[3] is not None)
