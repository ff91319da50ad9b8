"""A flood of TCP connections a server must refuse, and what it cost the server's memory.

The TCP bounds tests of the fake DNS and of the fake SIP server make the same measurement: hold
the server at its connection cap, flood it once to warm up, then flood it again under
tracemalloc and count what the server's own files allocated and kept.
"""

from __future__ import annotations

import tracemalloc
from typing import Any, Callable

from twisted.internet import defer


@defer.inlineCallbacks
def flood(attempt: Callable[[], defer.Deferred], n: int, batch: int = 25):
    """``n`` calls of ``attempt`` (a connect that fires when the server closed it, or failed),
    ``batch`` at a time: under the listen backlog, so the kernel never drops a SYN to retry it
    seconds later."""
    for _ in range(n // batch):
        yield defer.gatherResults([attempt() for _ in range(batch)])


@defer.inlineCallbacks
def bytes_grown(action: Callable[[], Any], where: tuple[str, ...]):
    """Bytes allocated and still held after ``action()`` (its Deferred waited for), by files whose
    path contains one of ``where``."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        yield action()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")
               if any(w in s.traceback[0].filename for w in where))
