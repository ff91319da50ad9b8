"""The one place where transactions meet a clock (SPEC §9): sans-I/O machines run on an IReactorTime."""

from __future__ import annotations

from typing import Any, Callable

from sipharness.sipcore.transaction.states import TxState

__all__ = ["TimerDriver"]


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
