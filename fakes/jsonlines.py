"""What ``sipharness dns`` and ``sipharness registrar`` share as processes: JSON lines on stdout.

Every stdout line is one JSON object with ``t`` (seconds on the process's clock) and ``kind``:
``listening`` per socket, then one line per record unless quiet, then at exit (SIGINT/SIGTERM)
a SIPp-style ``summary`` (:class:`fakes.tally.Tally`), with the same as a table on stderr. A
process keeps no history (a server that runs for hours must not hold every message it saw): its
:class:`StreamingRecorder` hands each record to the writer and the tally, and forgets it.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any, TextIO

from sipharness.fakes.record import Record, Recorder
from sipharness.fakes.tally import Tally

__all__ = ["StreamingRecorder", "write_listening", "run_until_signalled"]


class StreamingRecorder(Recorder):
    """A Recorder that hands each record to its listeners and keeps none (no wait_for, no ladder)."""

    def append(self, entry: Record) -> Record:
        for listener in list(self._listeners):
            listener(entry)
        return entry


def _write(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def write_listening(out: TextIO, clock: Any, transport: str, host: str, port: int, started: float) -> None:
    """The ``listening`` line of one socket; ``started``: the wall time of ``t`` = 0."""
    _write(out, {"t": round(clock.seconds(), 6), "kind": "listening", "transport": transport,
                 "address": f"{host}:{port}", "host": host, "port": port, "unix_time": round(started, 6)})


def run_until_signalled(reactor: Any, clock: Any, recorder: Recorder, out: TextIO, *, quiet: bool,
                        title: str) -> int:
    """Stream ``recorder``'s records to ``out`` (unless ``quiet``) and count them, run ``reactor``
    until SIGINT or SIGTERM, then write the summary line and its table (``title``: its heading,
    before the phone time) on stderr; → the exit status, 0."""
    tally = Tally()
    recorder.subscribe(tally.add)
    if not quiet:
        recorder.subscribe(lambda record: _write(out, record.to_json()))
    stopping = []

    def stop_once(signum, _frame) -> None:  # a second signal while stopping is harmless
        if not stopping:
            stopping.append(signum)
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGINT, stop_once)
    signal.signal(signal.SIGTERM, stop_once)
    reactor.run(installSignalHandlers=False)
    _write(out, tally.to_json(clock.seconds()))
    print("\n".join(tally.table(f"{title}: {clock.seconds():.3f} s")), file=sys.stderr)
    return 0
