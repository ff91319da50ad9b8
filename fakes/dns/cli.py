"""``sipharness dns``: the fake DNS as a process, for a phone or tool outside the test process.

Every stdout line is one JSON object (so ``jq`` reads the stream), each with ``t`` (seconds since
the process started: the same time base as ``sipharness registrar`` and ``sipharness phone``) and
``kind``:

- first ``{"t", "kind": "listening", "transport": "udp+tcp", "address": "HOST:PORT", "host",
  "port", "unix_time"}`` (port 0 = ephemeral, so a caller reads the port from there; ``unix_time``
  is the wall time of ``t`` = 0);
- ``--script FILE`` (repeatable) loads fault rules (TOML, or JSON for ``*.json``; the grammar of
  :mod:`fakes.rules`) into the fake's ``faults`` before it listens; an error names ``FILE:LINE``;
- then one line per query and answer (``Record.to_json()``, ``kind`` ``"dns"``), unless ``--quiet``;
- at exit (SIGINT/SIGTERM, status 0) a summary, SIPp-style: ``{"kind": "summary", "messages": [...]}``
  with the queries per type and the answers per rcode (:class:`fakes.tally.Tally`), and the same
  as a table on stderr.

A zone file with an error is refused with ``FILE:LINE: reason`` on stderr and exit status 2
before anything listens. The process keeps no query history (a long-running server would grow
without bound): its recorder streams each record to stdout and the tally, and forgets it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from sipharness.fakes.record import Record, Recorder
from sipharness.fakes.tally import Tally

__all__ = ["main"]


class _StreamingRecorder(Recorder):
    """A Recorder that passes records to its listeners and keeps none."""

    def append(self, entry: Record) -> Record:
        for listener in list(self._listeners):
            listener(entry)
        return entry


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:0 or [::1]:5353")
    return host, int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sipharness dns", description="fake authoritative DNS server (UDP+TCP)")
    parser.add_argument("--zone", action="append", required=True, metavar="FILE",
                        help="RFC 1035 master file (repeat for several zones)")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="address for UDP and TCP (default 127.0.0.1:0, an ephemeral port)")
    parser.add_argument("--quiet", action="store_true", help="do not print the query log")
    parser.add_argument("--clock", default="real", help="virtual | real | scaled:FACTOR (default real)")
    parser.add_argument("--script", action="append", default=[], metavar="FILE",
                        help="fault rules (TOML, or JSON for FILE.json: fakes/rules.py), first match wins; "
                             "repeatable, in order")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)

    from sipharness.fakes.dns.zone import Zone, ZoneError

    zones = []
    try:
        host, port = _parse_listen(args.listen)
        for path in args.zone:
            zones.append(Zone.from_file(path))
    except (ZoneError, ValueError) as e:
        print(f"sipharness dns: {e}", file=sys.stderr)
        return 2

    from twisted.internet import reactor
    from twisted.internet.error import CannotListenError

    from sipharness.fakes.dns.server import FakeDNS
    from sipharness.fakes.rulefiles import load_rules_into
    from sipharness.sipcore.clock import make_clock

    try:
        clock = make_clock(args.clock, reactor)
        started = reactor.seconds()  # the wall time of t = 0
    except ValueError as e:
        print(f"sipharness dns: {e}", file=sys.stderr)
        return 2
    recorder = _StreamingRecorder(clock)
    fake = FakeDNS(zones, clock=clock, recorder=recorder, host=host, port=port, reactor=reactor)
    try:
        for path in args.script:
            load_rules_into(fake.faults, path)
    except ValueError as e:  # (RuleError too)
        print(f"sipharness dns: {e}", file=sys.stderr)
        return 2
    try:
        fake.start()
    except CannotListenError as e:
        print(f"sipharness dns: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    out = sys.stdout
    host, bound = fake.address
    out.write(json.dumps({"t": round(clock.seconds(), 6), "kind": "listening", "transport": "udp+tcp",
                          "address": f"{host}:{bound}", "host": host, "port": bound,
                          "unix_time": round(started, 6)}) + "\n")
    out.flush()
    tally = Tally()
    recorder.subscribe(tally.add)
    if not args.quiet:
        def emit(record: Record) -> None:
            line = record.to_json()
            out.write(json.dumps(line) + "\n")
            out.flush()
        recorder.subscribe(emit)
    stopping = []

    def stop_once(signum, _frame) -> None:  # a second signal while stopping is harmless
        if not stopping:
            stopping.append(signum)
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGINT, stop_once)
    signal.signal(signal.SIGTERM, stop_once)
    reactor.run(installSignalHandlers=False)
    out.write(json.dumps(tally.to_json(clock.seconds())) + "\n")
    out.flush()
    print("\n".join(tally.table(f"sipharness dns: {clock.seconds():.3f} s")), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
