"""The values of SIP's single-valued header fields: Call-ID, CSeq, Max-Forwards, Expires and
Min-Expires (RFC 3261 §25.1 ``delta-seconds``) and Content-Length, each parsed from its text.

Why a module of its own: two layers read these values, the message classes
(:mod:`sipcore.message`, whose typed views parse them on first use) and the parser
(:mod:`sipcore.parser`, which checks them eagerly while it reads the header block); the
parser builds the classes, so the value grammar sits below both. Each parser raises
:class:`SipParseError` saying *what* is wrong; the caller adds *where* (line and header):
:func:`_where_header` and :func:`_in_header` say it the same way everywhere. Numbers are
length-checked before ``int()``, so a value thousands of digits long is refused (or capped,
for delta-seconds), never raised as ``ValueError``.

The underscored parsers are shared by the sibling modules of the message stack only;
:func:`delta_seconds` is public (a Contact's ``expires`` parameter reads it too).
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

from sipharness.sipcore.uri import _MEMO_TEXT_MAX, SipParseError

__all__ = ["delta_seconds"]

_DIGITS = re.compile(r"[0-9]+\Z")
_CSEQ_RE = re.compile(r"\s*([0-9]+)\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*\Z")
_EXPIRES_MAX = 2**32 - 1
_T = TypeVar("_T")

# the values that come back in every message ("1 REGISTER", "70", "0", "3600") parsed once:
# a number written as 1 to 10 ASCII digits without a leading zero is that number for
# Max-Forwards (when <= 255), Content-Length and Expires alike
_NUMBERS: dict[str, int] = {str(n): n for n in (0, 1, 60, 70, 120, 300, 600, 1800, 3600, 7200)}
_CSEQS: dict[str, tuple[int, str]] = {}  # CSeq text → (number, method): immutable, shared


def _known(table: dict, value: str, parsed: Any, limit: int = 1024) -> Any:
    """Remember ``parsed`` for ``value`` (a table of ``limit`` entries at most: cleared when full;
    texts past :data:`~sipcore.uri._MEMO_TEXT_MAX` not kept) and return it. Every memo of the
    message stack that can use it does (CSeq, start lines, Via parameters, name-addr recipes, hosts)."""
    if len(value) <= _MEMO_TEXT_MAX:
        if len(table) >= limit:
            table.clear()
        table[value] = parsed
    return parsed


def _where_header(name: str, line: int | None = None) -> str:
    """The place of an error in header ``name`` (on ``line`` when known), as SipParseError.where says it."""
    return f"line {line}, header '{name}'" if line else f"header '{name}'"


def _parse_call_id(value: str) -> str:
    v = value.strip()
    if not v or " " in v or "\t" in v:
        raise SipParseError(f"bad Call-ID {value[:80]!r}")
    return v


def _parse_cseq(value: str) -> tuple[int, str]:
    known = _CSEQS.get(value)  # ("1 REGISTER": read once)
    if known is not None:
        return known
    m = _CSEQ_RE.match(value)
    if m is None:
        raise SipParseError(f"bad CSeq {value.strip()[:80]!r}")
    digits = m.group(1).lstrip("0") or "0"
    # RFC 3261 §8.1.1.5: below 2**31; the length check comes first, so a number thousands of
    # digits long is refused here, not by int() (ValueError past sys.int_max_str_digits)
    if len(digits) > 10 or int(digits) >= 2**31:
        raise SipParseError(f"CSeq number {_clip(m.group(1))} is not below 2**31")
    return _known(_CSEQS, value, (int(digits), m.group(2)))


def delta_seconds(value: str, what: str = "value") -> int:
    """RFC 3261 §25.1 ``delta-seconds`` (1*DIGIT, ASCII only): the number, capped at 2**32-1
    (§20.19: a larger value means 2**32-1), so a number of any length is read without
    converting it whole. Raises SipParseError naming ``what`` otherwise."""
    v = value.strip(" \t")
    if not _DIGITS.match(v):
        raise SipParseError(f"bad {what} {_clip(value)} (delta-seconds expected: ASCII digits)")
    digits = v.lstrip("0") or "0"
    if len(digits) > 10:
        return _EXPIRES_MAX
    return min(int(digits), _EXPIRES_MAX)


def _parse_expires(value: str | None) -> int | None:
    if value is None:
        return None
    return delta_seconds(value, "Expires")


def _parse_min_expires(value: str | None) -> int | None:
    return None if value is None else delta_seconds(value, "Min-Expires")


def _in_header(name: str, parse_value: Callable[[Any], _T], value: Any) -> _T:
    """``parse_value(value)``, its SipParseError located at the header ``name``."""
    try:
        return parse_value(value)
    except SipParseError as e:
        if e.where:
            raise
        raise SipParseError(e.what, _where_header(name)) from None


def _parse_max_forwards(value: str | None) -> int | None:
    if value is None:
        return None
    known = _NUMBERS.get(value)  # ("70")
    if known is not None and known <= 255:
        return known
    v = value.strip(" \t")
    digits = v.lstrip("0") or "0"
    # RFC 3261 §20.22: 0..255; length first (int() of thousands of digits raises ValueError)
    if not _DIGITS.match(v) or len(digits) > 3 or int(digits) > 255:
        raise SipParseError(f"bad Max-Forwards {_clip(value)} (0..255 expected)")
    return int(digits)


def _clip(text: str, n: int = 40) -> str:
    """Peer text quoted for an error message: at most ``n`` characters, and the length when cut."""
    return repr(text) if len(text) <= n else f"{text[:n]!r}... ({len(text)} characters)"


def _parse_content_length(value: str) -> int:
    known = _NUMBERS.get(value)  # ("0")
    if known is not None:
        return known
    v = value.strip()
    if not _DIGITS.match(v) or len(v) > 10:
        raise SipParseError(f"bad Content-Length {value[:40]!r}")
    return int(v)
