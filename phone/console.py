"""The bundled phone daemon's pipe protocol (``sipharness phone``, :mod:`phone.daemon`): events out
as JSON lines, commands in, one per line.

Why a module of its own: it is the contract a harness in another process (or language) codes
against (our own reads it in :mod:`harness.emulated`); the daemon's wiring (clock, configuration,
vendor emulation, shutdown) is a different concern that changes for other reasons.

- an event line: every key of :data:`FIELDS` present, ``null`` when empty, ``detail`` ``""``
  (:func:`event_json`);
- a command line: ``call URI [ACCOUNT]``, ``answer [CALL_ID]``, ``hangup [CALL_ID]``, ``quit``
  (:func:`parse_command`, a ValueError with the reason for anything else);
- :class:`Console`: the Twisted stdio protocol carrying both (EOF on stdin reported, a line too
  long reported as an unknown command, the daemon keeps going).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

__all__ = ["COMMANDS", "FIELDS", "Console", "event_json", "parse_command"]

COMMANDS = "call URI [ACCOUNT], answer [CALL_ID], hangup [CALL_ID], quit"
FIELDS = ("account", "server", "target", "state", "call_id", "detail")


def event_json(kind: str, t: float, **fields: Any) -> str:
    """One output line (without the newline): every key present, ``null`` when not given."""
    obj = {"t": round(float(t), 6), "kind": kind}
    for name in FIELDS:
        obj[name] = fields.get(name)
    if obj["detail"] is None:
        obj["detail"] = ""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def parse_command(line: str) -> tuple[str, list[str]]:
    """``(verb, args)`` of one stdin line; ValueError with the reason for a bad one."""
    words = line.split()
    if not words:
        return "", []
    verb, args = words[0].lower(), words[1:]
    if verb == "call":
        if len(args) not in (1, 2):
            raise ValueError(f"{line.strip()!r}: expected 'call URI [ACCOUNT]'")
        if len(args) == 2 and not (args[1].isdigit() and 1 <= int(args[1]) <= 6):
            raise ValueError(f"{line.strip()!r}: ACCOUNT must be 1..6, got {args[1]!r}")
        return verb, args
    if verb in ("answer", "hangup"):
        if len(args) > 1:
            raise ValueError(f"{line.strip()!r}: expected '{verb} [CALL_ID]'")
        return verb, args
    if verb == "quit":
        if args:
            raise ValueError(f"{line.strip()!r}: 'quit' takes no argument")
        return verb, args
    raise ValueError(f"unknown command {line.strip()!r}: expected {COMMANDS}")


@implementer(IHalfCloseableProtocol)
class Console(LineOnlyReceiver):
    """stdin lines → ``on_line``; ``write_line`` → stdout. EOF on stdin → ``on_eof``."""

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self, on_line: Callable[[str], None], on_eof: Callable[[], None]):
        self.on_line, self.on_eof = on_line, on_eof
        self.closed: defer.Deferred = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.on_line(line.decode("utf-8", "replace").rstrip("\r"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.on_line("\x00too long")  # reported as an unknown command; the daemon keeps going

    def write_line(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(text.encode("utf-8") + b"\n")

    def readConnectionLost(self) -> None:
        self.on_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)
