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
import sys

from sipharness.fakes.jsonlines import StreamingRecorder, run_until_signalled, write_listening

__all__ = ["main"]


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
    recorder = StreamingRecorder(clock)
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
    host, bound = fake.address
    write_listening(sys.stdout, clock, "udp+tcp", host, bound, started)
    return run_until_signalled(reactor, clock, recorder, sys.stdout, quiet=args.quiet, title="sipharness dns")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
