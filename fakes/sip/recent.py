"""``RecentMap``: keys remembered for a window of phone time, and never more than a bound.

A fake SIP server must remember two things for a short while only: which requests it has
already seen (to mark retransmissions in the record) and, for a non-INVITE over UDP, the
response it gave (to absorb retransmissions, RFC 3261 §17.2.2: the server transaction stays
"completed" for Timer J = 64·T1 and answers every retransmission with its last response).
Both only matter for as long as a client may retransmit (Timer B/F = 64·T1), so both are
windows in time; and both must stay bounded whatever a peer sends.

Why not a ServerTransaction and a ``callLater`` per request: at thousands of REGISTERs a
second, 32 s of live transactions (each holding its parsed request and response) and one
reactor timer each made the registrar spend most of its time in the garbage collector and
the timer heap (bench/registrar_rps.py). Here an entry is one dict slot and its value; keys
are grouped in time buckets of ``window / 32`` and a whole bucket is dropped at once when it
has aged past the window (the "expiry swept in batches" RFC 3261 leaves room for), lazily,
on the next access: no timer at all. When ``max_entries`` is exceeded the oldest bucket goes
first (under a flood, even the current one), so the bound holds whatever comes in.
Sans-I/O: the caller passes ``now``.

Written by hand: ``functools.lru_cache`` and ``collections.OrderedDict`` bound the count but
know nothing of time; the TTL caches on PyPI (cachetools) expire per entry with a timer
object or a linked list per key, which is the cost this avoids.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Hashable

__all__ = ["RecentMap"]

_MISSING = object()


class RecentMap:
    """``key → value`` kept for at least ``window`` and at most ``window + window/32`` phone
    seconds after it was last put, and at most ``max_entries`` keys (oldest dropped first)."""

    __slots__ = ("window", "max_entries", "_width", "_data", "_buckets", "_current", "_current_end")

    def __init__(self, window: float, max_entries: int = 100_000):
        if window <= 0:
            raise ValueError(f"RecentMap(window={window!r}): the window must be > 0 seconds")
        if max_entries < 1:
            raise ValueError(f"RecentMap(max_entries={max_entries!r}): must be >= 1")
        self.window = float(window)
        self.max_entries = int(max_entries)
        self._width = self.window / 32
        # key → (value, the end time of the bucket holding it): a bucket is named by its end time
        # (strictly increasing) rather than referred to, so an entry holding bytes or None is a
        # tuple of atoms, which the garbage collector stops tracking. A registrar under load
        # keeps 100 000+ entries for 64·T1; tracked, each full collection walked them all
        # (130 ms pauses at 2 500 registrations/s, bench/registrar_rps.py).
        self._data: dict[Hashable, tuple[Any, float]] = {}
        self._buckets: deque[tuple[float, list]] = deque()  # (end time, keys put in it), oldest first
        self._current: list | None = None
        self._current_end = float("-inf")

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def get(self, key: Hashable, now: float, default: Any = None) -> Any:
        """The value of ``key`` if it was put within the window, else ``default``."""
        self._sweep(now)
        entry = self._data.get(key, _MISSING)
        return default if entry is _MISSING else entry[0]

    def put(self, key: Hashable, value: Any, now: float) -> None:
        """Remember ``key`` (again) from ``now`` on."""
        self._sweep(now)
        self._put_swept(key, value, now)

    def _put_swept(self, key: Hashable, value: Any, now: float) -> None:
        if now >= self._current_end:
            self._current = []
            self._current_end = now + self._width
            self._buckets.append((self._current_end, self._current))
        self._current.append(key)  # type: ignore[union-attr]
        self._data[key] = (value, self._current_end)
        if len(self._data) > self.max_entries:
            self._trim()

    def seen(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` was seen within the window; remembers it from ``now`` on either way."""
        known = self.get(key, now, _MISSING) is not _MISSING
        self._put_swept(key, None, now)
        return known

    def _drop_bucket(self) -> None:
        end, keys = self._buckets.popleft()
        data = self._data
        for key in keys:
            entry = data.get(key)
            if entry is not None and entry[1] == end:  # not put again since
                del data[key]
        if keys is self._current:
            self._current, self._current_end = None, float("-inf")

    def _sweep(self, now: float) -> None:
        buckets = self._buckets
        if buckets and buckets[0][0] <= now - self.window:  # (the common case: nothing to drop)
            limit = now - self.window
            while buckets and buckets[0][0] <= limit:
                self._drop_bucket()

    def _trim(self) -> None:
        # whole buckets, oldest first (even the current one under a flood: the bound wins)
        while len(self._data) > self.max_entries and self._buckets:
            self._drop_bucket()
