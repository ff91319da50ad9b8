"""An append-only log that tests wait on, with a deadline in the log's own clock.

Both sides need the same thing: the fakes record every DNS query and SIP message, the
phone records its decisions and events, and a test says "wait until the 4th REGISTER
reached the primary, or fail after 40 phone seconds". Waiting is a ``Deferred`` whose
deadline is set on the injected clock (SPEC §9), so on the virtual clock a wait for
something that never comes costs milliseconds and fails at the exact phone time, and
nothing ever sleeps.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

T = TypeVar("T")

__all__ = ["Journal", "WaitTimeout"]


class WaitTimeout(AssertionError):
    """A wait ran past its deadline. Subclass of AssertionError so pytest shows it as a test failure."""

    def __init__(self, what: str, timeout: float, now: float, seen: int, matched: int):
        self.what, self.timeout, self.now, self.seen, self.matched = what, timeout, now, seen, matched
        super().__init__(
            f"waited {timeout:g} s (until t = {now:.3f} s) for {what}; "
            f"{matched} matching of {seen} recorded"
        )


class _Waiter:
    __slots__ = ("match", "count", "start", "deferred", "timer", "found", "what")

    def __init__(self, match, count, start, deferred, what):
        self.match, self.count, self.start, self.deferred, self.what = match, count, start, deferred, what
        self.timer = None
        self.found = 0


class Journal(Generic[T]):
    """Entries in the order they happened; ``wait_for`` returns a Deferred of a matching one."""

    def __init__(self, clock: IReactorTime):
        self.clock = clock
        self._entries: list[T] = []
        self._waiters: list[_Waiter] = []
        self._listeners: list[Callable[[T], Any]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._entries))

    def __getitem__(self, index):
        return self._entries[index]

    def entries(self, match: Callable[[T], bool] | None = None, since: int = 0) -> list[T]:
        """Entries from index ``since`` on that ``match`` accepts (all when None)."""
        return [e for e in self._entries[since:] if match is None or match(e)]

    def subscribe(self, listener: Callable[[T], Any]) -> Callable[[], None]:
        """Call ``listener(entry)`` for every new entry; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def append(self, entry: T) -> T:
        self._entries.append(entry)
        for listener in list(self._listeners):
            listener(entry)
        self._notify(entry)
        return entry

    def extend(self, entries: list[T]) -> None:
        """Append several entries, then wake the waiters: a waiter woken by the first one finds
        the others already there (a fake's answer and what it caused, recorded as one step)."""
        if type(self).append is not Journal.append:  # a subclass keeps entries its own way (the CLIs' streams)
            for entry in entries:
                self.append(entry)
            return
        start = len(self._entries)
        for entry in entries:
            self._entries.append(entry)
            for listener in list(self._listeners):
                listener(entry)
        for entry in self._entries[start:start + len(entries)]:
            self._notify(entry)

    def _notify(self, entry: T) -> None:
        for w in list(self._waiters):
            if w.deferred.called:
                continue
            try:
                ok = w.match(entry)
            except Exception as e:  # a broken predicate fails its own wait, not the recorder
                self._finish(w, failure=e)
                continue
            if ok:
                w.found += 1
                if w.found >= w.count:
                    self._finish(w, entry)

    def wait_for(
        self,
        match: Callable[[T], bool],
        timeout: float,
        *,
        count: int = 1,
        since: int | None = 0,
        what: str | None = None,
    ) -> "defer.Deferred[T]":
        """Fire with the ``count``-th entry from index ``since`` that ``match`` accepts.

        ``since=None`` means only entries appended from now on. ``timeout`` is in seconds
        of this journal's clock; past it the Deferred fails with :class:`WaitTimeout`
        naming ``what``.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        start = len(self._entries) if since is None else since
        d: defer.Deferred[T] = defer.Deferred()
        w = _Waiter(match, count, start, d, what or getattr(match, "__name__", "a matching entry"))
        for entry in self._entries[start:]:
            if match(entry):
                w.found += 1
                if w.found >= count:
                    d.callback(entry)
                    return d
        self._waiters.append(w)
        w.timer = self.clock.callLater(timeout, self._expire, w, timeout)
        return d

    def _expire(self, w: _Waiter, timeout: float) -> None:
        w.timer = None
        if w.deferred.called:
            return
        matched = len([e for e in self._entries[w.start:] if _safe(w.match, e)])
        self._finish(w, failure=WaitTimeout(w.what, timeout, self.clock.seconds(), len(self._entries), matched))

    def _finish(self, w: _Waiter, entry: Any = None, failure: BaseException | None = None) -> None:
        if w in self._waiters:
            self._waiters.remove(w)
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        w.timer = None
        if failure is not None:
            w.deferred.errback(failure)
        else:
            w.deferred.callback(entry)

    def pending(self) -> list[tuple[str, float | None]]:
        """What is waited for now: (``what``, the deadline in this journal's clock), oldest first.

        For a long run's progress line ("waiting for a 2xx to REGISTER from fallback, until t = 90 s")."""
        out = []
        for w in self._waiters:
            when = w.timer.getTime() if w.timer is not None and w.timer.active() else None
            out.append((w.what, when))
        return out

    def cancel_waits(self) -> None:
        """Cancel every pending wait (used at teardown so nothing fires into a dead test)."""
        for w in list(self._waiters):
            self._waiters.remove(w)
            if w.timer is not None and w.timer.active():
                w.timer.cancel()
            if not w.deferred.called:
                w.deferred.cancel()


def _safe(match, entry) -> bool:
    try:
        return bool(match(entry))
    except Exception:
        return False
