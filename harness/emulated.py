"""The emulated vendor phone's process: ``python -m sipharness.phone.daemon --provision ...`` on loopback.

Why its own module: ``--phone-ip emulate`` must behave as a lab phone that stays powered on for the
whole session, yet it is a child of the harness that must never outlive it. This module spawns it
with ``reactor.spawnProcess`` (the reactor is never blocked), reads its JSON lines (kept, bounded)
for the address its web server listens on, and ends it (quit on stdin, TERM, KILL, each with a
wall-time deadline). Everything the driver learns about the phone's state comes from the phone's
own means (provisioning fetches, Action URL callbacks), not from these lines: they are evidence
for a failure report only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from twisted.internet import defer, error

from .child import ChildProcess, deadline, track
from .vendor_errors import VendorError

__all__ = ["EmulatedPhone", "spawn_emulated"]


class EmulatedPhone(ChildProcess):
    """The process: its output lines (the last :attr:`KEEP`), its web address, its end."""

    KEEP = 400
    ERR_KEEP = 8192
    SPAWN_TIMEOUT = 20.0  # wall seconds to listen
    QUIT_GRACE, TERM_GRACE, KILL_GRACE = 3.0, 2.0, 5.0

    def __init__(self, on_end: Any = None):
        super().__init__()
        self.lines: list[str] = []
        self._line_waiters: list[tuple[str, defer.Deferred]] = []
        self._buf = b""
        self.listening: defer.Deferred = defer.Deferred()  # fires with "host:port" of its HTTP server (or None)
        self.on_end_cb = on_end
        self.ptransport: Any = None
        self.argv: list[str] = []

    def outReceived(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            self.lines = (self.lines + [line])[-self.KEEP:]
            for waiter in [w for w in self._line_waiters if w[0] in line]:
                self._line_waiters.remove(waiter)
                waiter[1].callback(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            detail = str(obj.get("detail") or "")
            if obj.get("kind") == "daemon" and detail.startswith("http listening on ") and not self.listening.called:
                self.listening.callback(detail.rsplit(" ", 1)[1])

    def on_end(self) -> None:
        if not self.listening.called:
            self.listening.callback(None)
        if self.on_end_cb is not None:
            self.on_end_cb(self)

    def next_line(self, text: str) -> defer.Deferred:
        """Fires with the next output line containing ``text`` (bound it with :func:`harness.child.deadline`)."""
        d: defer.Deferred = defer.Deferred()
        self._line_waiters.append((text, d))
        return d

    def output(self, limit: int = 12) -> str:
        err = self.err.decode("utf-8", "replace").strip()
        return "\n".join(self.lines[-limit:] + ([f"[stderr] {err[-1500:]}"] if err else [])) or "(no output)"

    async def reap(self, reactor: Any) -> None:
        """quit on stdin, then TERM, then KILL, with deadlines: the process is gone when this returns."""
        for step, grace in (("quit", self.QUIT_GRACE), (signal.SIGTERM, self.TERM_GRACE),
                            (signal.SIGKILL, self.KILL_GRACE)):
            if self.ended:
                return
            try:
                if step == "quit":
                    self.ptransport.write(b"quit\n")
                else:
                    self.ptransport.signalProcess(step)
            except (error.ProcessExitedAlready, OSError):
                pass
            await deadline(reactor, self.when_ended(), grace)
        if not self.ended:
            raise VendorError(f"the emulated phone (pid {self.pid}) did not exit after quit, TERM, KILL")


async def spawn_emulated(reactor: Any, args: list[str], on_end: Any = None) -> EmulatedPhone:
    """Start the daemon with ``args`` (after ``-m sipharness.phone.daemon``) and wait until its web server listens.

    Raises :class:`VendorError` naming the step when it exits or does not listen in time."""
    argv = [sys.executable, "-m", "sipharness.phone.daemon", *args]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = EmulatedPhone(on_end)
    proc.argv = argv
    proc.ptransport = reactor.spawnProcess(proc, sys.executable, argv, env=env, path=root)
    if proc.pid is not None and not proc.ended:
        track(proc.pid, proc.ptransport, "vendor emulation")
    ok = await deadline(reactor, proc.listening, proc.SPAWN_TIMEOUT)
    address = proc.listening.result if proc.listening.called else None
    if not ok or proc.ended or not address:
        what = f"exited with status {proc.status}" if proc.ended else f"did not listen within {proc.SPAWN_TIMEOUT:g} s"
        await proc.reap(reactor)
        raise VendorError(f"step 'start the emulated phone': {' '.join(argv[1:])} {what}:\n{proc.output()}")
    return proc
