"""The emulated vendor phone's process: ``python -m sipharness.phone.daemon --provision ...`` on loopback.

Why its own module: ``--phone-ip emulate`` must behave as a lab phone that stays powered on for the
whole session, yet it is a child of the harness that must never outlive it. This module spawns it
with ``reactor.spawnProcess`` (the reactor is never blocked), reads its JSON lines (kept, bounded)
for the address its web server listens on, and ends it (quit on stdin, TERM, KILL, each with a
wall-time deadline). Starting, tracking and ending the process are the process-DUT base's
(:func:`harness.process_dut.spawn_child`, :func:`~harness.process_dut.reap_child`), as for baresip,
PJSIP and liblinphone; what is this phone's own is its output and its polite ``quit``. Everything the driver learns about the phone's state comes from the phone's
own means (provisioning fetches, Action URL callbacks), not from these lines: they are evidence
for a failure report only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from twisted.internet import defer

from .child import ChildProcess, deadline
from .process_dut import module_env, reap_child, spawn_child
from .vendor_errors import VendorError

__all__ = ["EmulatedPhone", "spawn_emulated"]

KIND = "vendor emulation"  # its name in harness.child's registry of live children
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

    def _quit(self) -> None:
        self.ptransport.write(b"quit\n")

    async def reap(self, reactor: Any) -> None:
        """quit on stdin, then TERM, then KILL, with deadlines: the process is gone when this returns."""
        steps = [(self._quit, self.QUIT_GRACE), (signal.SIGTERM, self.TERM_GRACE), (signal.SIGKILL, self.KILL_GRACE)]
        await reap_child(reactor, self, self.ptransport, steps, kind=KIND, error=VendorError)


async def spawn_emulated(reactor: Any, args: list[str], on_end: Any = None) -> EmulatedPhone:
    """Start the daemon with ``args`` (after ``-m sipharness.phone.daemon``) and wait until its web server listens.

    Raises :class:`VendorError` naming the step when it exits or does not listen in time."""
    argv = [sys.executable, "-m", "sipharness.phone.daemon", *args]
    proc = EmulatedPhone(on_end)
    proc.argv = argv
    proc.ptransport = spawn_child(reactor, proc, argv, kind=KIND, error=VendorError, env=module_env(),
                                  path=_ROOT)
    ok = await deadline(reactor, proc.listening, proc.SPAWN_TIMEOUT)
    address = proc.listening.result if proc.listening.called else None
    if not ok or proc.ended or not address:
        what = f"exited with status {proc.status}" if proc.ended else f"did not listen within {proc.SPAWN_TIMEOUT:g} s"
        await proc.reap(reactor)
        raise VendorError(f"step 'start the emulated phone': {' '.join(argv[1:])} {what}:\n{proc.output()}")
    return proc
