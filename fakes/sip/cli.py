"""``sipharness registrar``: a PBX-like fake SIP server as a process (lab use, benchmarks).

Every stdout line is one JSON object (so ``jq`` reads the stream), each with ``t`` (seconds since
the process started: the same time base as ``sipharness dns`` and ``sipharness phone``) and
``kind``: first one ``{"t", "kind": "listening", "transport", "address": "HOST:PORT", "host",
"port", "unix_time"}`` per listener (so a parent process can read the bound ports; ``unix_time``
is the wall time of ``t`` = 0), then every message (``Record.to_json()``, ``kind`` ``"sip"``) unless
``--quiet``, and at exit (SIGINT/SIGTERM, status 0) a SIPp-style summary ``{"kind": "summary",
"messages": [...]}``: per request method and per response status, the count, the retransmissions
seen and what a fault dropped (:class:`fakes.tally.Tally`; the same as a table on stderr). Real
clock: a process on its own has nobody to share a virtual clock with. ``--script FILE``
(repeatable) loads fault rules (TOML, or JSON for ``*.json``: :mod:`fakes.rules`) into the
server's ``script`` before it listens; an error names ``FILE:LINE`` and nothing listens.

Every message is still recorded (a :class:`fakes.record.Record` built and handed on), with or
without ``--quiet``; ``--quiet`` only skips writing the JSON lines. The process's recorder
does not keep the records, unlike a test's: a server that runs for hours (or under
bench/registrar_rps.py) must not hold every message it ever saw.

Credentials: ``--user NAME:PASSWORD`` shows the password to anyone who can list processes,
so users may also come from ``--users-file FILE`` (one ``NAME:PASSWORD`` per line, ``#``
comments) or the environment variable ``SIPHARNESS_USERS`` (same format, one user per line);
a user given by two sources is an error, and errors name the file and line, never a password.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "parse_users", "users_from", "USERS_ENV"]


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


USERS_ENV = "SIPHARNESS_USERS"
_MAX_USERS_FILE = 1024 * 1024  # a users file is a few lines; refuse a runaway one with its size


def _user_spec(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--user {text!r}: expected NAME:PASSWORD")
    return name, password


def parse_users(text: str, where: str) -> dict[str, str]:
    """``NAME:PASSWORD`` per line (blank lines and ``#`` comments skipped; the password is
    everything after the first colon). Raises ValueError naming ``where:line`` (never the password)."""
    users: dict[str, str] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, password = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{where}:{lineno}: expected NAME:PASSWORD")
        if any(c < " " or c == "\x7f" for c in name + password):
            raise ValueError(f"{where}:{lineno}: control character in the user {name[:40]!r} or its password")
        if name in users:
            raise ValueError(f"{where}:{lineno}: user {name[:40]!r} given twice")
        users[name] = password
    return users


def _users_file(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_USERS_FILE + 1)
    except OSError as e:
        raise ValueError(f"{path}:0: cannot read the users file: {e.strerror or e}") from None
    if len(data) > _MAX_USERS_FILE:
        raise ValueError(f"{path}:0: larger than {_MAX_USERS_FILE} bytes: not a users file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte offset {e.start})") from None
    return parse_users(text, path)


def _algorithms(text: str) -> tuple[str, ...]:
    from sipharness.sipcore.digestserver import DigestServer

    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    try:
        DigestServer("check", algorithms=names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--digest {text!r}: {e} (known: SHA-256, MD5)") from None
    return names


def users_from(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    """Every user of ``--user``, ``--users-file`` and ``$SIPHARNESS_USERS`` (a name given twice is an error)."""
    sources: list[tuple[str, dict[str, str]]] = []
    if environ.get(USERS_ENV):
        sources.append((f"${USERS_ENV}", parse_users(environ[USERS_ENV], f"${USERS_ENV}")))
    for path in args.users_file:
        sources.append((path, _users_file(path)))
    sources.append(("--user", dict(args.user)))
    users: dict[str, str] = {}
    seen: dict[str, str] = {}
    for where, found in sources:
        for name, password in found.items():
            if name in users:
                raise ValueError(f"user {name[:40]!r} is given by both {seen[name]} and {where}")
            users[name], seen[name] = password, where
    return users


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sipharness registrar", description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", type=_listen_spec, default=[],
                    help="udp|tcp|tls:HOST:PORT (repeatable; port 0 picks one); default udp:127.0.0.1:5060")
    ap.add_argument("--user", action="append", type=_user_spec, default=[],
                    help="NAME:PASSWORD: require digest (visible in the process list: prefer --users-file "
                         f"or ${USERS_ENV})")
    ap.add_argument("--users-file", action="append", default=[], metavar="FILE",
                    help="users file: one NAME:PASSWORD per line, # comments (repeatable)")
    ap.add_argument("--digest", type=_algorithms, default=None, metavar="ALG[,ALG]",
                    help="digest algorithms offered, preferred first (default SHA-256,MD5; "
                         "SIPp 3.6 answers only the first challenge and only MD5: --digest MD5)")
    ap.add_argument("--domain", default=None, help="domain (digest realm, and a host name meaning us)")
    ap.add_argument("--min-expires", type=int, default=None, help="answer 423 below this expiry")
    ap.add_argument("--answer-delay", type=float, default=0.0, help="UAS answer delay in seconds")
    ap.add_argument("--unknown-user", choices=("uas", "404"), default="uas")
    ap.add_argument("--name", default="registrar", help="server name in the JSON lines")
    ap.add_argument("--quiet", action="store_true", help="no JSON lines (benchmarks)")
    ap.add_argument("--script", action="append", default=[], metavar="FILE",
                    help="fault rules (TOML, or JSON for FILE.json: fakes/rules.py), first match wins; "
                         "repeatable, in order")
    args = ap.parse_args(argv)

    from twisted.internet import reactor

    from sipharness.fakes.jsonlines import StreamingRecorder, run_until_signalled, write_listening
    from sipharness.fakes.rulefiles import load_rules_into
    from sipharness.fakes.sip.server import FakeSipServer
    from sipharness.sipcore.clock import make_clock

    try:
        users = users_from(args, dict(os.environ))
    except ValueError as e:
        print(f"sipharness registrar: {e}", file=sys.stderr)
        return 2
    listens = args.listen or [("udp", "127.0.0.1", 5060)]
    hosts = {h for _, h, _ in listens}
    if len(hosts) > 1:
        print(f"sipharness registrar: all --listen must use one host, got {sorted(hosts)}", file=sys.stderr)
        return 2
    clock = make_clock("real", reactor)  # t = 0 now (bindings expire on it too)
    started = reactor.seconds()
    recorder = StreamingRecorder(clock)
    server = FakeSipServer(args.name, clock=clock, recorder=recorder, reactor=reactor, host=listens[0][1],
                           domain=args.domain,
                           users=users or None, min_expires=args.min_expires,
                           answer_delay=args.answer_delay, unknown_user=args.unknown_user)
    if args.digest and server.logic.registrar.auth is not None:
        server.logic.registrar.auth.algorithms = args.digest
    try:
        for path in args.script:
            load_rules_into(server.script, path)
    except ValueError as e:  # (RuleError too)
        print(f"sipharness registrar: {e}", file=sys.stderr)
        return 2
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
        write_listening(sys.stdout, clock, transport, h, p, started)
    return run_until_signalled(reactor, clock, recorder, sys.stdout, quiet=args.quiet,
                               title=f"sipharness registrar {args.name}")

if __name__ == "__main__":
    sys.exit(main())
