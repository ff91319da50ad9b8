"""What every fuzz target shares (bench/fuzz.py): the seeded mutator and the target interface.

A target is fed bytes (``feed``), reports what it finds through ``report.add(kind, key, owner,
input, detail)``, answers a health check (``health`` → None or what went wrong) and says what it
keeps (``sizes``). Targets: bench/fuzz_dns.py, bench/fuzz_sip.py, bench/fuzz_phone.py.
"""

from __future__ import annotations

import random
import re
import struct
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python3 bench/fuzz.py from a checkout
    sys.path.insert(0, str(ROOT))

__all__ = ["Mutator", "Target", "ROOT", "streaming_recorder", "torture"]

TORTURE = ROOT / "tests" / "data" / "rfc4475"

# -- mutation ------------------------------------------------------------------------------------

_INTERESTING = [0x00, 0xFF, 0x7F, 0x80, 0x0D, 0x0A, 0x20, 0x3A, 0x3B, 0x2C, 0x22, 0x3C, 0x3E, 0x25, 0x5C, 0x3D,
                0x40, 0x3F, 0xC0, 0x01]
_SIP_VALUES = [b"9" * 5000, b"4294967296", b"2147483648", b"-1", b"0", b"", b" ", b"abc", b"\xff\xfe",
               b"\xc3\xa9", b"\x00", b"\r", b"\"", b"<sip:a@b", b"sip:", b"z9hG4bK", b"%", b"%zz", b";;;", b",,,",
               b"Digest", b"\xe2\x80\xae", b"SIP/2.0/UDP", b"[::1", b"99999", b"1" * 70]
_SIP_HEADERS = [b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Max-Forwards", b"Contact", b"Expires", b"Min-Expires",
                b"Content-Length", b"Authorization", b"WWW-Authenticate", b"Proxy-Authenticate", b"Require",
                b"Proxy-Require", b"Route", b"Record-Route", b"Content-Type", b"v", b"f", b"t", b"i", b"m", b"l"]


class Mutator:
    """Seeded mutations of ``seeds`` (bytes); ``sip``/``dns`` add the format-aware operations."""

    def __init__(self, rng: random.Random, kind: str):
        self.rng = rng
        self.kind = kind
        ops: list[Callable[[bytes, list[bytes]], bytes]] = [
            self.flip, self.flip, self.interesting, self.truncate, self.insert, self.delete, self.duplicate,
            self.splice]
        if kind == "sip":
            ops += [self.header_value, self.header_value, self.number, self.duplicate_line, self.drop_line,
                    self.swap_lines, self.non_utf8, self.identity, self.identity]
        else:
            ops += [self.dns_label, self.dns_label, self.dns_counts, self.dns_pointer]
        self.ops = ops

    def mutate(self, seeds: list[bytes]) -> bytes:
        rng = self.rng
        data = rng.choice(seeds)
        for _ in range(1 + min(6, int(rng.expovariate(0.8)))):
            data = rng.choice(self.ops)(data, seeds)
        return data[:70000]

    # generic
    def flip(self, d: bytes, _s: list[bytes]) -> bytes:
        if not d:
            return d
        b = bytearray(d)
        for _ in range(self.rng.choice((1, 1, 2, 4, 8))):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def interesting(self, d: bytes, _s: list[bytes]) -> bytes:
        if not d:
            return d
        b = bytearray(d)
        b[self.rng.randrange(len(b))] = self.rng.choice(_INTERESTING)
        return bytes(b)

    def truncate(self, d: bytes, _s: list[bytes]) -> bytes:
        return d[:self.rng.randrange(len(d) + 1)]

    def insert(self, d: bytes, _s: list[bytes]) -> bytes:
        i = self.rng.randrange(len(d) + 1)
        if self.rng.random() < 0.5:
            chunk = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 16)))
        else:
            chunk = self.rng.choice(_SIP_VALUES if self.kind == "sip" else [b"\x00", b"\x3f", b"\x40", b"\xc0\x0c"])
        return d[:i] + chunk + d[i:]

    def delete(self, d: bytes, _s: list[bytes]) -> bytes:
        if not d:
            return d
        i = self.rng.randrange(len(d))
        return d[:i] + d[i + self.rng.randrange(1, 32):]

    def duplicate(self, d: bytes, _s: list[bytes]) -> bytes:
        if not d:
            return d
        i = self.rng.randrange(len(d))
        j = min(len(d), i + self.rng.randrange(1, 200))
        return d[:j] + d[i:j] * self.rng.choice((1, 2, 10)) + d[j:]

    def splice(self, d: bytes, seeds: list[bytes]) -> bytes:
        other = self.rng.choice(seeds)
        return d[:self.rng.randrange(len(d) + 1)] + other[self.rng.randrange(len(other) + 1):]

    # SIP
    def _lines(self, d: bytes) -> tuple[list[bytes], bytes]:
        head, sep, body = d.partition(b"\r\n\r\n")
        return head.split(b"\r\n"), sep + body

    def header_value(self, d: bytes, _s: list[bytes]) -> bytes:
        lines, rest = self._lines(d)
        if len(lines) < 2:
            return d
        i = self.rng.randrange(1, len(lines))
        name = lines[i].split(b":", 1)[0] if b":" in lines[i] else self.rng.choice(_SIP_HEADERS)
        value = self.rng.choice(_SIP_VALUES)
        if self.rng.random() < 0.3 and b":" in lines[i]:  # keep the value, poison a part of it
            old = lines[i].split(b":", 1)[1]
            k = self.rng.randrange(len(old) + 1)
            value = old[:k] + value + old[k:]
        lines[i] = name + b": " + value
        return b"\r\n".join(lines) + rest

    def number(self, d: bytes, _s: list[bytes]) -> bytes:
        spans = [m.span() for m in re.finditer(rb"\d+", d)]
        if not spans:
            return d
        a, b = self.rng.choice(spans)
        return d[:a] + self.rng.choice([b"9" * 5000, b"0" * 300 + b"1", b"4294967296", b"2147483648", b"-5",
                                        b"65536", b"0", b"\xd9\xa3"]) + d[b:]

    def duplicate_line(self, d: bytes, _s: list[bytes]) -> bytes:
        lines, rest = self._lines(d)
        i = self.rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return b"\r\n".join(lines) + rest

    def drop_line(self, d: bytes, _s: list[bytes]) -> bytes:
        lines, rest = self._lines(d)
        if len(lines) > 1:
            del lines[self.rng.randrange(1, len(lines))]
        return b"\r\n".join(lines) + rest

    def swap_lines(self, d: bytes, _s: list[bytes]) -> bytes:
        lines, rest = self._lines(d)
        if len(lines) > 2:
            i, j = self.rng.randrange(len(lines)), self.rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return b"\r\n".join(lines) + rest

    def identity(self, d: bytes, _s: list[bytes]) -> bytes:
        """Digest attacks: another user in To/From (someone's credentials for another AOR), another
        digest uri=, another Request-URI; the rest of the message (and its digest) kept."""
        who = self.rng.choice([b"alice", b"bob", b"carol", b"1001", b"mallory"])
        choice = self.rng.randrange(4)
        if choice == 0:
            return re.sub(rb"(\r\n(?:To|t): <?sips?:)[^@>;\r]*@", rb"\g<1>" + who + b"@", d, count=1)
        if choice == 1:
            return re.sub(rb"(\r\n(?:From|f): <?sips?:)[^@>;\r]*@", rb"\g<1>" + who + b"@", d, count=1)
        if choice == 2:
            return re.sub(rb'uri="[^"]*"', b'uri="sip:' + who + b'@elsewhere.test"', d, count=1)
        return re.sub(rb"^([A-Z]+ )\S+", rb"\g<1>sip:" + who + b"@127.0.0.10:5060", d, count=1)

    def non_utf8(self, d: bytes, _s: list[bytes]) -> bytes:
        i = self.rng.randrange(len(d) + 1)
        return d[:i] + self.rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80"]) + d[i:]

    # DNS
    def dns_label(self, d: bytes, _s: list[bytes]) -> bytes:
        if len(d) <= 12:
            return d
        b = bytearray(d)
        i = self.rng.randrange(12, len(b))
        b[i] = self.rng.choice([0, 1, 62, 63, 64, 65, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF])
        if self.rng.random() < 0.3:  # a long label or a long name
            b[12:12] = bytes([63]) + b"a" * 63 if self.rng.random() < 0.5 else bytes([64]) + b"b" * 64
        return bytes(b)

    def dns_counts(self, d: bytes, _s: list[bytes]) -> bytes:
        if len(d) < 12:
            return d
        b = bytearray(d)
        i = self.rng.choice((2, 3, 4, 5, 6, 7, 8, 9, 10, 11))
        b[i] = self.rng.choice((0, 1, 2, 0x80, 0xFF))
        return bytes(b)

    def dns_pointer(self, d: bytes, _s: list[bytes]) -> bytes:
        if len(d) < 14:
            return d
        i = self.rng.randrange(12, len(d) - 1)
        target = self.rng.choice((0, 12, i, i + 2, len(d), 0x3FFF, self.rng.randrange(len(d))))
        return d[:i] + struct.pack("!H", 0xC000 | (target & 0x3FFF)) + d[i + 2:]


# -- targets -------------------------------------------------------------------------------------

class Target:
    """A thing fed inputs: ``feed(data)`` (its findings are reported through ``report``),
    ``health()`` → None or what went wrong, ``sizes()`` → what it keeps."""

    name = "?"
    component = "?"  # the part of the project a wrong answer is charged to
    kind = "sip"

    def __init__(self, rng: random.Random, report: Report):
        self.rng = rng
        self.report = report
        self.seeds: list[bytes] = []

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def health(self) -> str | None:
        raise NotImplementedError

    def sizes(self) -> dict[str, int]:
        return {}

    def wrong(self, rule: str, data: bytes, detail: str = "", owner: str | None = None) -> None:
        self.report.add("wrong", rule, owner or self.component, data, detail)


def streaming_recorder(clock: Any) -> Any:
    from sipharness.fakes.record import Recorder

    class Streaming(Recorder):
        def append(self, entry: Any) -> Any:  # keeps nothing: a run of 10^6 inputs must not grow
            return entry

    return Streaming(clock)


def torture() -> list[bytes]:
    return [p.read_bytes() for p in sorted(TORTURE.glob("*/*.dat"))]
