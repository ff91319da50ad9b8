"""A phone that runs in another process (baresip, the emulated vendor phone): its life and its end.

Why one module: such a process must never outlive the harness, whatever happens to a test.
Every DUT that spawns one registers the process here (an ``atexit`` SIGKILL reaps what a
crashed run left), learns when it ended and with what status, and bounds every wait for it
by wall time (a phone in another process runs on the real clock, not on the test's).
"""

from __future__ import annotations

import atexit
import os
import signal
from typing import Any

from twisted.internet import defer, protocol

__all__ = ["ChildProcess", "LineChild", "deadline", "track", "running"]

_LIVE: dict[int, tuple[str, Any]] = {}  # pid → (kind, process transport) of every child not yet reaped


def track(pid: int, process_transport: Any, kind: str) -> None:
    """Remember a spawned child until it ends, so it is killed if the harness exits first."""
    _LIVE[pid] = (kind, process_transport)


def running(kind: str | None = None) -> list[int]:
    """Pids of the children of ``kind`` (all when None) that have not ended yet."""
    return [pid for pid, (k, _) in _LIVE.items() if kind is None or k == kind]


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - at the end of a session or an abrupt teardown
    for pid in list(_LIVE):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class ChildProcess(protocol.ProcessProtocol):
    """Keeps the child's pid, exit status and stderr tail; ``when_ended()`` fires once it is gone.

    Subclasses read stdout their own way and may override :meth:`ended` (called once, after
    the status is known and before the ``when_ended`` waiters fire).
    """

    ERR_KEEP = 16384

    def __init__(self) -> None:
        self.err = b""
        self.status: int | None = None  # exit code, or -signal
        self.ended = False
        self.pid: int | None = None
        self._end_waiters: list[defer.Deferred] = []
        #: called with this protocol once it has ended (after :meth:`on_end`): its owner's bookkeeping
        self.exit_callbacks: list[Any] = []

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def errReceived(self, data: bytes) -> None:
        self.err = (self.err + data)[-self.ERR_KEEP:]

    def processEnded(self, reason: Any) -> None:
        self.ended = True
        self.status = getattr(reason.value, "exitCode", None)
        if self.status is None:
            self.status = -(getattr(reason.value, "signal", 0) or 0)
        _LIVE.pop(self.pid or -1, None)
        self.on_end()
        for callback in self.exit_callbacks:
            callback(self)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(True)

    def on_end(self) -> None:
        """Hook: the child has ended (``status`` is set)."""

    def when_ended(self) -> defer.Deferred:
        if self.ended:
            return defer.succeed(True)
        d: defer.Deferred = defer.Deferred()
        self._end_waiters.append(d)
        return d


class LineChild(ChildProcess):
    """A child that speaks in lines on stdout (and, optionally, on other descriptors it is given):
    each complete line goes to ``on_line(fd, text)``; the last ``KEEP`` lines are kept for reports.

    A line longer than ``MAX_LINE`` is cut there (a misbehaving child cannot grow the harness)."""

    KEEP = 400
    MAX_LINE = 65536

    def __init__(self, on_line: Any = None) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._bufs: dict[int, bytes] = {}
        self._on_line = on_line

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 2:
            self.errReceived(data)
            return
        buf = self._bufs.get(fd, b"") + data
        *lines, rest = buf.split(b"\n")
        if len(rest) > self.MAX_LINE:
            lines.append(rest[:self.MAX_LINE])
            rest = b""
        self._bufs[fd] = rest
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if fd == 1:
                self.lines.append(text)
                if len(self.lines) > self.KEEP:
                    del self.lines[:len(self.lines) - self.KEEP]
            if self._on_line is not None:
                self._on_line(fd, text)

    def output(self, limit: int = 40) -> str:
        err = self.err.decode("utf-8", "replace").strip()
        return "\n".join(self.lines[-limit:] + ([f"[stderr] {err[-1500:]}"] if err else [])) or "(no output)"


def deadline(reactor: Any, d: defer.Deferred, seconds: float) -> defer.Deferred:
    """Fires True when ``d`` fires (its value is not consumed), False after ``seconds`` of wall time."""
    out: defer.Deferred = defer.Deferred()
    timer = reactor.callLater(seconds, lambda: out.called or out.callback(False))

    def done(value: Any) -> Any:
        if timer.active():
            timer.cancel()
        if not out.called:
            out.callback(True)
        return value
    d.addBoth(done)
    return out
