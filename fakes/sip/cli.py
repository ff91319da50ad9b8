"""``sipharness registrar``: a PBX-like fake SIP server as a process (lab use, benchmarks).

Prints one ``listening TRANSPORT HOST:PORT`` line per listener first (so a parent process
can read the bound ports), then every message as a JSON line (``Record.to_json()``), unless
``--quiet``. Exits 0 on SIGINT/SIGTERM. Real clock: a process on its own has nobody to
share a virtual clock with.

Every message is still recorded (a :class:`fakes.record.Record` built and handed on), with or
without ``--quiet``; ``--quiet`` only skips writing the JSON lines. The process's recorder
does not keep the records, unlike a test's: a server that runs for hours (or under
bench/registrar_rps.py) must not hold every message it ever saw.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

__all__ = ["main"]


def _listen_spec(text: str) -> tuple[str, str, int]:
    try:
        transport, rest = text.split(":", 1)
        host, port = rest.rsplit(":", 1)
        transport = transport.lower()
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError
        return transport, host.strip("[]"), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: expected udp|tcp|tls:HOST:PORT, e.g. udp:127.0.0.1:5060")


def _streaming_recorder(clock):
    from sipharness.fakes.record import Recorder

    class StreamingRecorder(Recorder):
        """Hands each record to the subscribers and forgets it (no wait_for, no ladder)."""

        def append(self, entry):
            for listener in self._listeners:
                listener(entry)
            return entry

    return StreamingRecorder(clock)


def _user_spec(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--user {text!r}: expected NAME:PASSWORD")
    return name, password


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sipharness registrar", description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", type=_listen_spec, default=[],
                    help="udp|tcp|tls:HOST:PORT (repeatable; port 0 picks one); default udp:127.0.0.1:5060")
    ap.add_argument("--user", action="append", type=_user_spec, default=[], help="NAME:PASSWORD: require digest")
    ap.add_argument("--domain", default=None, help="domain (digest realm, and a host name meaning us)")
    ap.add_argument("--min-expires", type=int, default=None, help="answer 423 below this expiry")
    ap.add_argument("--answer-delay", type=float, default=0.0, help="UAS answer delay in seconds")
    ap.add_argument("--unknown-user", choices=("uas", "404"), default="uas")
    ap.add_argument("--name", default="registrar", help="server name in the JSON lines")
    ap.add_argument("--quiet", action="store_true", help="no JSON lines (benchmarks)")
    args = ap.parse_args(argv)

    from twisted.internet import reactor

    from sipharness.fakes.sip.server import FakeSipServer

    listens = args.listen or [("udp", "127.0.0.1", 5060)]
    hosts = {h for _, h, _ in listens}
    if len(hosts) > 1:
        print(f"sipharness registrar: all --listen must use one host, got {sorted(hosts)}", file=sys.stderr)
        return 2
    recorder = _streaming_recorder(reactor)
    server = FakeSipServer(args.name, recorder=recorder, reactor=reactor, host=listens[0][1], domain=args.domain,
                           users=dict(args.user) or None, min_expires=args.min_expires,
                           answer_delay=args.answer_delay, unknown_user=args.unknown_user)
    pki = None
    for transport, host, port in listens:
        context = None
        if transport == "tls":
            from sipharness.sipcore.tls import TestPKI
            pki = pki or TestPKI((host, "localhost"))
            context = pki.server_context()
        try:
            server.listen(transport, port, context=context)
        except Exception as e:
            print(f"sipharness registrar: cannot listen on {transport}:{host}:{port}: {e}", file=sys.stderr)
            return 1
        h, p = server.addresses[transport]
        print(f"listening {transport} {h}:{p}", flush=True)
    if not args.quiet:
        out = sys.stdout
        recorder.subscribe(lambda r: (out.write(json.dumps(r.to_json()) + "\n"), out.flush()))

    def shutdown(signum, frame):
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
