"""The header section of a SIP message: an ordered, case-insensitive multi-map, plus the
small grammar helpers header values share (comma lists, ``;params``, quoted strings).

Why a class of our own: SIP headers have compact forms (``v`` is ``Via``), list headers
whose values may be split over several lines or joined by commas (but not inside quotes or
``<>``), and an order that matters (Via, Route). ``email.message`` and ``wsgiref.headers``
know none of that. Names are stored canonical (compact forms expanded on parse, known
headers written with their RFC capitalization, unknown ones as received); values are kept
as they arrived (unfolded), so a message serializes back to what was received.

Every mutation bumps ``version``; :class:`sipcore.message.Message` uses it to cache the
typed views (``vias``, ``to``...) and drop them when the headers change.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from sipharness.sipcore.uri import SipParseError

__all__ = ["Headers", "COMPACT_FORMS", "LIST_HEADERS", "canonical_name"]

# RFC 3261 §7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS = {
    "v": "Via", "f": "From", "t": "To", "m": "Contact", "i": "Call-ID", "l": "Content-Length",
    "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}

_KNOWN = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]
_CANON: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANON.update(COMPACT_FORMS)

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1); get_all() splits them.
LIST_HEADERS = frozenset(h.lower() for h in (
    "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
    "Allow-Events", "Path", "Service-Route", "Content-Encoding", "Content-Language",
    "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info", "Warning", "Reason",
    "P-Asserted-Identity", "P-Preferred-Identity",
))

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")


def canonical_name(name: str) -> str:
    """``"v"`` → ``"Via"``, ``"cseq"`` → ``"CSeq"``; unknown names are returned unchanged."""
    return _CANON.get(name.lower(), name)


class Headers:
    """Ordered, case-insensitive multi-map of header name → raw value (one entry per line)."""

    __slots__ = ("_items", "version", "_keys")

    def __init__(self, items: Iterable[tuple[str, str]] | dict[str, str] | None = None) -> None:
        # entries are [lower-case canonical name, canonical name, value]
        self._items: list[tuple[str, str, str]] = []
        self.version = 0
        # the keys present, when known (a parsed block): a lookup of an absent header (Require,
        # Authorization...) answers without walking the lines; any change forgets it. A dict
        # (from sipcore.fastparse, a block with no key twice) maps each key to its only value.
        self._keys: frozenset[str] | set[str] | dict[str, str] | None = None
        if items:
            pairs = items.items() if isinstance(items, dict) else items
            for name, value in pairs:
                self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]],
                     keys: frozenset[str] | set[str] | dict[str, str] | None = None) -> "Headers":
        """Headers over ``items`` as they are (not copied); ``keys``: the keys of ``items``, if known."""
        h = cls.__new__(cls)
        h._items = items
        h.version = 0
        h._keys = keys
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (as it appeared, not split), or ``default``."""
        key = name.lower()
        key = _CANON.get(key, name).lower()
        keys = self._keys
        if keys is not None:
            if type(keys) is dict:  # the parser's fast path: each key's only value
                return keys.get(key, default)
            if key not in keys:
                return default
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers (Via, Contact, Route...) are split at
        commas that are outside quotes and ``<>``; empty elements are dropped."""
        key = _CANON.get(name.lower(), name).lower()
        keys = self._keys
        if keys is not None and key not in keys:
            return []
        values = [v for k, _, v in self._items if k == key]
        if key not in LIST_HEADERS:
            return values
        out: list[str] = []
        for v in values:
            if "," not in v:
                v = v.strip()
                if v:
                    out.append(v)
            else:
                out.extend(e for e in split_list(v, strict=False))
        return out

    def lines(self, name: str) -> list[str]:
        """Every value of ``name`` as separate header lines (never split at commas)."""
        key = _CANON.get(name.lower(), name).lower()
        keys = self._keys
        if keys is not None and key not in keys:
            return []
        return [v for k, _, v in self._items if k == key]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value`` (kept at the first one's place)."""
        canon = _CANON.get(name.lower(), name)
        key = canon.lower()
        items = self._items
        for i, (k, _, _v) in enumerate(items):
            if k == key:
                items[i] = (key, canon, str(value))
                self._items = items[: i + 1] + [e for e in items[i + 1:] if e[0] != key]
                break
        else:
            items.append((key, canon, str(value)))
        self.version += 1
        self._keys = None

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Append a value (or put it before every other header of that name: ``first``)."""
        canon = _CANON.get(name.lower(), name)
        key = canon.lower()
        entry = (key, canon, str(value))
        if first:
            for i, e in enumerate(self._items):
                if e[0] == key:
                    self._items.insert(i, entry)
                    break
            else:
                self._items.append(entry)
        else:
            self._items.append(entry)
        self.version += 1
        self._keys = None

    def remove(self, name: str) -> None:
        """Remove every value of ``name`` (no error when absent)."""
        key = _CANON.get(name.lower(), name).lower()
        self._items = [e for e in self._items if e[0] != key]
        self.version += 1
        self._keys = None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _CANON.get(name.lower(), name).lower()
        keys = self._keys
        if keys is not None:
            return key in keys
        return any(k == key for k, _, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        """``(canonical name, value)`` for each header line, in order."""
        return [(n, v) for _, n, v in self._items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> "Headers":
        return Headers._from_parsed(list(self._items), self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# -- grammar helpers shared by the typed header values --------------------------------------

def split_list(value: str, strict: bool = True) -> list[str]:
    """Split a header value at commas outside quoted strings and ``<>``; elements stripped.
    ``strict``: an empty element or an unbalanced quote / ``<`` raises SipParseError."""
    out: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if strict and (quoted or angle):
        raise SipParseError("unbalanced quote or '<' in header value")
    out.append(value[start:].strip())
    if strict:
        if any(not e for e in out):
            raise SipParseError("empty element in comma-separated list")
        return out
    return [e for e in out if e]


_PVALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+\Z")

# The fast path of parse_params: ``;name=value;flag`` with no whitespace and no quoted value,
# the shape nearly every phone and SIPp send (Via branch/rport, From/To tag, Contact expires).
# One C-level match validates the whole text and findall splits it; the classes are exactly
# those of _TOKEN_RE (names) and _PVALUE_RE (values), so what it accepts the general loop
# below accepts too, with the same result (tests/test_sipcore_fastpath.py compares both).
# Anything else (LWS around ';' or '=', quotes, an empty value) takes the general loop.
_FAST_PARAMS = re.compile(r"(?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)+\Z")
_FAST_PARAM = re.compile(r";([A-Za-z0-9\-.!%*_+`'~]+)(?:=([A-Za-z0-9\-.!%*_+`'~\[\]:]+))?")


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag...`` (LWS allowed around ``;`` and ``=``). Values are kept
    raw (a quoted-string keeps its quotes); names are lower-cased."""
    params: dict[str, str | None] = {}
    if not text or text.isspace():
        return params
    if _FAST_PARAMS.match(text) is not None:
        return _fast_params(text)
    return _parse_params_general(text, what)


def _fast_params(text: str, pos: int = 0) -> dict[str, str | None]:
    """The parameters of ``text[pos:]``, which :data:`_FAST_PARAMS` matched (names lower-cased;
    a flag None: the pattern wants 1+ characters after '='). The fast paths of parameters in
    Via and name-addr read theirs here too."""
    params: dict[str, str | None] = {}
    for name, value in _FAST_PARAM.findall(text, pos):  # (a loop: faster than a comprehension on 3.11)
        params[name.lower()] = value or None
    return params


def _parse_params_general(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if '"' in text:
        items = _split_semicolons(text)
    else:
        items = text.split(";")
    if items[0].strip():
        raise SipParseError(f"unexpected {items[0].strip()[:40]!r} in {what}")
    for item in items[1:]:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"bad parameter {item.strip()[:40]!r} in {what}")
        if eq:
            value = value.strip()
            if value.startswith('"'):
                end = quoted_string_end(value, 0)
                if end != len(value):
                    raise SipParseError(f"bad quoted parameter value in {what}")
            elif not _PVALUE_RE.match(value):
                raise SipParseError(f"bad value for parameter {name!r} in {what}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _split_semicolons(text: str) -> list[str]:
    out = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = quoted_string_end(text, i)
            continue
        if ch == ";":
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def quoted_string_end(text: str, start: int) -> int:
    """Index just past the quoted string starting at ``text[start] == '"'``."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError("unterminated quoted string")


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def is_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))
