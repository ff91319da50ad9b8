"""SIP messages (RFC 3261 §7, §20): parse a datagram into a Request or Response, build
requests and responses, serialize them. Sans-I/O: bytes in, objects out.

Written by hand, not built on a library. We read ``sipmessage`` 0.7.1 (PyPI, beta) first:
it is clean and typed, but its parser splits the header block on ``": "`` per line with no
line folding, no Content-Length handling (the body is whatever follows), no required-header
check, no size limit, and it lets ``IndexError``/``UnicodeDecodeError``/``int()`` errors
escape on garbage; its errors name no place. We need all of that (RFC 4475 torture messages,
stream framing by Content-Length in ``sipcore/framing.py``, servers that survive any input
with an error naming the line and header), and the parsing core is a few hundred lines, so
adapting it would mean rewriting it. What we keep from its design: typed views over raw
header strings.

Design for speed (a benchmark pits our registrar against Kamailio): ``parse()`` decodes
and splits the header block once, unfolds only when a continuation line exists, and
parses eagerly only what every consumer needs and what RFC 3261 requires to be valid
(Via, From, To, CSeq, Call-ID, Max-Forwards, Content-Length, Contact); other typed views
are parsed on first use and cached until the headers change (``Headers.version``).

Errors: everything malformed raises :class:`SipParseError` (a ``ValueError``) with
``where`` naming the line and header or the byte offset. Values keep their wire form
(bytes that are not UTF-8 survive through ``surrogateescape``), so a message serializes
back to what was received, except folding (unfolded), compact names (expanded) and
Content-Length (recomputed from the body).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Iterable, TypeVar

from sipharness.sipcore.headers import (
    Headers,
    canonical_name,
    format_params,
    parse_params,
    quoted_string_end,
    split_list,
)
from sipharness.sipcore.uri import SipParseError, SipUri

__all__ = [
    "SipParseError", "Headers", "Via", "NameAddr", "Message", "Request", "Response",
    "parse", "make_response", "make_request", "new_branch", "new_tag", "new_call_id",
    "REASONS", "MAX_SIZE", "is_keepalive", "delta_seconds",
]

MAX_SIZE = 65535

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_HEADER_NAME = _TOKEN
_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)"
    r"(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?\Z",
    re.S,
)
_CSEQ_RE = re.compile(r"\s*([0-9]+)\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*\Z")
_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]*\Z")
_EXPIRES_MAX = 2**32 - 1


def _where_header(name: str, line: int | None = None) -> str:
    return f"line {line}, header '{name}'" if line else f"header '{name}'"


# -- typed header values -----------------------------------------------------------------------

class Via:
    """One Via value: ``SIP/2.0/<transport> <host>[:<port>];params``."""

    __slots__ = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = dict(params) if params else {}

    @classmethod
    def parse(cls, text: str) -> "Via":
        m = _VIA_RE.match(text)
        if m is None:
            raise SipParseError(f"bad Via value {text.strip()[:80]!r}")
        name, version, transport, host, port, ptext = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError(f"Via protocol {name}/{version} is not SIP/2.0")
        if host.startswith("["):
            host = host[1:-1]
            if ":" not in host:
                raise SipParseError(f"bad IPv6 address in Via {text.strip()[:80]!r}")
        v = cls.__new__(cls)
        v.transport = transport.upper()
        v.host = host
        v.port = None
        if port is not None:
            v.port = int(port)
            if v.port > 65535:
                raise SipParseError(f"Via port {port} > 65535")
        v.params = parse_params(ptext, "Via") if ptext else {}
        return v

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        if "received" not in self.params:
            return None
        return self.params["received"] or ""

    @property
    def rport(self) -> str | None:
        """``None`` when absent, ``''`` when present without a value, else the value."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self) -> "Via":
        return Via(self.transport, self.host, self.port, self.params)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.transport, self.host.lower(), self.port, self.params) == (
            other.transport, other.host.lower(), other.port, other.params)


def _unquote_display(q: str) -> str:
    # q includes the surrounding quotes
    inner = q[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _quote_display(d: str) -> str:
    return '"' + d.replace("\\", "\\\\").replace('"', '\\"') + '"'


class NameAddr:
    """A From / To / Contact / Route value: optional display name, URI, header params."""

    __slots__ = ("display", "uri", "params", "_uri_text")

    def __init__(self, uri: SipUri | str, display: str | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        self.uri = SipUri.parse(uri) if isinstance(uri, str) else uri
        self.display = display
        self.params: dict[str, str | None] = dict(params) if params else {}
        self._uri_text: str | None = None

    @property
    def uri_text(self) -> str:
        """``str(self.uri)``, taken from the text parsed when it was already in that form (the
        fast path, lower-case parameter names): a registrar keys every binding by it. A URI
        changed in place after parsing is not seen here: use ``str(na.uri)`` then."""
        text = self._uri_text
        return text if text is not None else str(self.uri)

    @classmethod
    def parse(cls, text: str) -> "NameAddr":
        m = _FAST_NAME_ADDR.match(text)
        if m is not None:
            na = _fast_name_addr(m)
            if na is not None:
                return na
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> "NameAddr":
        """Every form of RFC 3261 §20.10 (the fast path above covers the common one)."""
        s = text.strip()
        display = None
        if s.startswith('"'):
            end = quoted_string_end(s, 0)  # raises on an unbalanced quote
            display = _unquote_display(s[:end])
            rest = s[end:].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"'<' expected after the display name in {s[:80]!r}")
            lt = end + (len(s) - end - len(rest))
        else:
            lt = s.find("<")
            if lt >= 0:
                d = s[:lt].strip()
                if '"' in s[lt:s.find(">", lt) if ">" in s[lt:] else len(s)]:
                    raise SipParseError(f"misplaced quote in {s[:80]!r}")
                if d:
                    if not _DISPLAY_TOKENS.match(d) and not _is_utf8_tokens(d):
                        raise SipParseError(f"bad display name {d[:40]!r}")
                    display = d
        if lt >= 0:
            gt = s.find(">", lt)
            if gt < 0:
                raise SipParseError(f"'<' without '>' in {s[:80]!r}")
            uri = SipUri.parse(s[lt + 1:gt])
            ptext = s[gt + 1:]
        else:
            # addr-spec form: parameters after the URI belong to the header, RFC 3261 §20
            semi = s.find(";")
            utext = s if semi < 0 else s[:semi]
            ptext = "" if semi < 0 else s[semi:]
            utext = utext.rstrip()
            if "," in utext or "?" in utext or not utext:
                raise SipParseError(f"bad addr-spec {s[:80]!r} (use <> around the URI)")
            uri = SipUri.parse(utext)
        na = cls.__new__(cls)
        na.display = display
        na.uri = uri
        na.params = parse_params(ptext, "name-addr") if ptext else {}
        na._uri_text = None
        return na

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """A Contact's ``expires`` parameter (RFC 3261 §20.10: delta-seconds, capped at
        2**32-1), None when absent; a bad value (no value, not ASCII digits, quoted) raises
        SipParseError naming the parameter."""
        if "expires" not in self.params:
            return None
        raw = self.params["expires"]
        if raw is None:
            raise SipParseError("Contact parameter 'expires' has no value", "Contact parameter 'expires'")
        try:
            return delta_seconds(raw, "expires")
        except SipParseError as e:
            raise SipParseError(e.what, "Contact parameter 'expires'") from None

    def with_tag(self, tag: str) -> "NameAddr":
        na = self.copy()
        na.params["tag"] = tag
        return na

    def copy(self) -> "NameAddr":
        return NameAddr(self.uri.copy(), self.display, self.params)

    def __str__(self) -> str:
        d = "" if self.display is None else _quote_display(self.display) + " "
        return f"{d}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.display, self.uri, self.params) == (other.display, other.uri, other.params)


# The fast path of NameAddr.parse: ``["Display" ]<sip:user@host:port;uri-params>;params`` with
# plain characters, the shape of nearly every From, To and Contact a phone or SIPp sends (not
# kept in the URI cache: under load the users differ). One compiled pattern validates and
# splits it; its classes are strict subsets of sipcore.uri's grammar (user: no ';', '?', '/'
# or escapes; host: a name or IPv4 address, no IPv6 reference; URI parameters: no escapes;
# lower-case scheme; no password; header parameters as headers.parse_params' fast path), so
# what it accepts the general parser accepts with the same result (tests/test_sipcore_fastpath.py
# compares both). Anything else, and a port above 65535, takes the general parser, which
# also produces every error.
_FAST_NAME_ADDR = re.compile(
    r'(?:"([^"\\]*)"[ \t]*)?<(sips?):(?:([A-Za-z0-9\-_.!~*\'()&=+$,]+)@)?'
    r"([A-Za-z0-9_][A-Za-z0-9_\-.]*)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)>"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)*)\Z")


_HOSTS: dict[str, str] = {}


def _fast_name_addr(m: "re.Match[str]") -> "NameAddr | None":
    display, scheme, user, host, port, uparams, params = m.groups()
    uri = SipUri.__new__(SipUri)
    uri.scheme = "sip" if scheme == "sip" else "sips"  # the constants, not a new string each time
    uri.user = user
    uri.password = None
    # a few hosts come back in every message: one string each (memory a phone keeps per request)
    known = _HOSTS.get(host)
    if known is None:
        if len(_HOSTS) >= 4096:
            _HOSTS.clear()
        known = _HOSTS[host] = host
    uri.host = known
    text: str | None = m.string[m.start(2):m.end(6)]  # "sip:user@host:port;params" as received
    if port is None:
        uri.port = None
    else:
        uri.port = int(port)
        if uri.port > 65535:
            return None  # the general parser says why
        if port[0] == "0" and len(port) > 1:
            text = None  # str(uri) writes the number without its leading zeros
    up: dict[str, str | None] = {}
    if uparams:
        for item in uparams[1:].split(";"):
            name, eq, value = item.partition("=")
            lower = name.lower()
            if lower != name:
                text = None  # str(uri) writes the names in lower case: not the text received
            up[lower] = value if eq else None
        if len(up) != uparams.count(";"):
            text = None  # a parameter given twice: str(uri) writes it once
    uri.params = up
    uri.headers = {}
    uri.opaque = None
    na = NameAddr.__new__(NameAddr)
    na.display = display
    na.uri = uri
    na.params = parse_params(params, "name-addr") if params else {}
    na._uri_text = text
    return na


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~ \t")


def _is_utf8_tokens(d: str) -> bool:
    # token display names may carry UTF8-NONASCII in the wild; anything else ASCII is refused
    return all(c in _TOKEN_CHARS or c >= "\x80" for c in d)


# -- messages --------------------------------------------------------------------------------

_T = TypeVar("_T")


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    is_request = False

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | dict[str, str] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = bytes(body)
        self.version = version
        self._cache: dict[str, tuple[int, Any]] = {}

    # -- cached typed views ----------------------------------------------------------------

    def _typed(self, key: str, build: Callable[[], _T]) -> _T:
        hit = self._cache.get(key)
        version = self.headers.version
        if hit is not None and hit[0] == version:
            return hit[1]
        value = build()
        self._cache[key] = (version, value)
        return value

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    # The hot views read the cache first without building a closure (a registrar asks
    # Call-ID, CSeq, Via, To and Contact of every request; _typed is the general way).
    @property
    def call_id(self) -> str:
        hit = self._cache.get("call_id")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("call_id", lambda: _parse_call_id(self._single("Call-ID")))

    @call_id.setter
    def call_id(self, value: str) -> None:
        self.headers.set("Call-ID", value)

    @property
    def cseq(self) -> tuple[int, str]:
        hit = self._cache.get("cseq")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("cseq", lambda: _parse_cseq(self._single("CSeq")))

    @cseq.setter
    def cseq(self, value: tuple[int, str]) -> None:
        self.headers.set("CSeq", f"{value[0]} {value[1]}")

    @property
    def vias(self) -> list[Via]:
        hit = self._cache.get("vias")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("vias", lambda: _parse_vias(self.headers.lines("Via")))

    @property
    def top_via(self) -> Via:
        hit = self._cache.get("vias")
        if hit is not None and hit[0] == self.headers.version and hit[1]:
            return hit[1][0]
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via header")
        return vias[0]

    @property
    def from_(self) -> NameAddr:
        hit = self._cache.get("from")
        if hit is not None and hit[0] == self.headers.version:
            value = hit[1]
            if type(value) is _Checked:  # validated at parse time, built now (once)
                value = NameAddr.parse(value.text)
                self._cache["from"] = (hit[0], value)
            return value
        return self._typed("from", lambda: _parse_name_addr(self._single("From"), "From"))

    @from_.setter
    def from_(self, value: NameAddr | str) -> None:
        self.headers.set("From", str(value))

    @property
    def to(self) -> NameAddr:
        hit = self._cache.get("to")
        if hit is not None and hit[0] == self.headers.version:
            value = hit[1]
            if type(value) is _Checked:  # validated at parse time, built now (once)
                value = NameAddr.parse(value.text)
                self._cache["to"] = (hit[0], value)
            return value
        return self._typed("to", lambda: _parse_name_addr(self._single("To"), "To"))

    @to.setter
    def to(self, value: NameAddr | str) -> None:
        self.headers.set("To", str(value))

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (empty for ``Contact: *``, see :attr:`contact_star`)."""
        hit = self._cache.get("contacts")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("contacts", lambda: _parse_contacts(self.headers.lines("Contact"))[0])

    @property
    def contact_star(self) -> bool:
        hit = self._cache.get("contact_star")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("contact_star",
                           lambda: _parse_contacts(self.headers.lines("Contact"))[1])

    @property
    def expires(self) -> int | None:
        """The Expires header (delta-seconds, capped at 2**32-1), None when absent; a bad
        value raises SipParseError naming the header."""
        hit = self._cache.get("expires")
        if hit is not None and hit[0] == self.headers.version:
            return hit[1]
        return self._typed("expires", lambda: _in_header("Expires", _parse_expires, self.headers.get("Expires")))

    @expires.setter
    def expires(self, value: int | None) -> None:
        if value is None:
            self.headers.remove("Expires")
        else:
            self.headers.set("Expires", str(int(value)))

    @property
    def min_expires(self) -> int | None:
        """The Min-Expires header of a 423 (RFC 3261 §20.23, delta-seconds capped at 2**32-1),
        None when absent; a bad value raises SipParseError naming the header."""
        return self._typed("min_expires",
                           lambda: _in_header("Min-Expires", _parse_min_expires, self.headers.get("Min-Expires")))

    @property
    def max_forwards(self) -> int | None:
        return self._typed("max_forwards",
                           lambda: _parse_max_forwards(self.headers.get("Max-Forwards")))

    @property
    def content_length(self) -> int:
        """The body's length (what :meth:`to_bytes` writes)."""
        return len(self.body)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    # -- serialization --------------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is written from the body (in place, or appended)."""
        items = self.headers._items
        cl = f"Content-Length: {len(self.body)}"
        lines = [f"{name}: {value}" if key != "content-length" else cl for key, name, value in items]
        n = sum(1 for key, _, _ in items if key == "content-length") if cl in lines else 0
        if n == 0:
            lines.append(cl)
        elif n > 1:  # several Content-Length lines: the first place only
            first = lines.index(cl)
            lines = lines[:first + 1] + [line for line in lines[first + 1:] if line is not cl]
        return (self.start_line() + "\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes

    def copy(self: Any) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Message)
        # Content-Length is not compared: to_bytes() writes it from the body
        return (self.start_line() == other.start_line() and self.body == other.body
                and _comparable(self.headers) == _comparable(other.headers))

    __hash__ = None  # type: ignore[assignment]


def _comparable(h: Headers) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in h._items if k != "content-length"]


class Request(Message):
    is_request = True

    def __init__(self, method: str, uri: SipUri | str,
                 headers: Headers | Iterable[tuple[str, str]] | dict[str, str] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.method = method
        self.uri = SipUri.parse(uri) if isinstance(uri, str) else uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> "Request":
        return Request(self.method, self.uri.copy(), self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    def __init__(self, status: int, reason: str | None = None,
                 headers: Headers | Iterable[tuple[str, str]] | dict[str, str] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.status = int(status)
        self.reason = REASONS.get(self.status, "") if reason is None else reason

    @property
    def method(self) -> str:
        return self.cseq[1]

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> "Response":
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- typed value parsers (raise SipParseError with what; callers add where) ----------------------

def _parse_call_id(value: str) -> str:
    v = value.strip()
    if not v or " " in v or "\t" in v:
        raise SipParseError(f"bad Call-ID {value[:80]!r}")
    return v


def _parse_cseq(value: str) -> tuple[int, str]:
    m = _CSEQ_RE.match(value)
    if m is None:
        raise SipParseError(f"bad CSeq {value.strip()[:80]!r}")
    digits = m.group(1).lstrip("0") or "0"
    # RFC 3261 §8.1.1.5: below 2**31; the length check comes first, so a number thousands of
    # digits long is refused here, not by int() (ValueError past sys.int_max_str_digits)
    if len(digits) > 10 or int(digits) >= 2**31:
        raise SipParseError(f"CSeq number {_clip(m.group(1))} is not below 2**31")
    return int(digits), m.group(2)


def _parse_vias(lines: list[str]) -> list[Via]:
    vias = []
    for line in lines:
        if "," in line:
            vias.extend(Via.parse(e) for e in split_list(line))
        else:
            vias.append(Via.parse(line))
    return vias


def _parse_name_addr(value: str, name: str) -> NameAddr:
    return NameAddr.parse(value)


def _parse_contacts(lines: list[str]) -> tuple[list[NameAddr], bool]:
    contacts: list[NameAddr] = []
    star = False
    for line in lines:
        if line.strip() == "*":
            star = True
            continue
        if "," in line:
            contacts.extend(NameAddr.parse(e) for e in split_list(line))
        else:
            contacts.append(NameAddr.parse(line))
    if star and (contacts or len(lines) > 1):
        raise SipParseError("Contact: * mixed with other contacts")
    return contacts, star


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
    v = value.strip()
    if not _DIGITS.match(v) or len(v) > 10:
        raise SipParseError(f"bad Content-Length {value[:40]!r}")
    return int(v)


# -- parse -------------------------------------------------------------------------------------

_SINGLE = frozenset(("call-id", "cseq", "from", "to", "max-forwards", "content-length"))
# the values that come back in every message ("1 REGISTER", "70", "0", "3600") parsed once:
# a number written as 1 to 10 ASCII digits without a leading zero is that number for
# Max-Forwards (when <= 255), Content-Length and Expires alike
_NUMBERS: dict[str, int] = {str(n): n for n in (0, 1, 60, 70, 120, 300, 600, 1800, 3600, 7200)}
_CSEQS: dict[str, tuple[int, str]] = {}
_EXPIRES_LATER = object()


def _known(table: dict, value: str, parsed: Any) -> Any:
    """Remember ``parsed`` for ``value`` (a bounded table: cleared when full) and return it."""
    if len(table) >= 1024:
        table.clear()
    table[value] = parsed
    return parsed


def parse(data: bytes, *, max_size: int = MAX_SIZE) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one message cut by the stream framer).

    Content-Length, when present, must not exceed the body; extra bytes after it are
    dropped (RFC 3261 §18.3). Requests and responses must carry Via, From, To, Call-ID
    and CSeq (Max-Forwards may be missing); To, From, Call-ID, CSeq, Max-Forwards and
    Content-Length at most once; a request's CSeq method must be its method (RFC 4475
    mismatch01). Raises SipParseError on anything malformed. A datagram of CRLFs only is
    an RFC 5626 keep-alive: check :func:`is_keepalive` before calling this."""
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"parse() takes bytes, not {type(data).__name__}")
        data = bytes(data)
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the limit of {max_size}",
                            f"byte {max_size}")
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5: ignore CRLFs before the start line
        start += 2
    if start >= len(data):
        raise SipParseError("empty message (only CRLF keep-alives)", "byte 0")
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if data.endswith(b"\r\n") and len(data) > start:
            end = len(data) - 2  # last CRLF present, empty line missing: accept, no body
            body = b""
        else:
            raise SipParseError("no empty line ends the header block", f"byte {len(data)}")
    else:
        body = data[end + 4:]
    msg, cl = _parse_head(data[start:end] if start or end < len(data) else data, start)
    if cl is not None:
        if cl > len(body):
            raise SipParseError(
                f"Content-Length {cl} exceeds the {len(body)} bytes of body",
                f"byte {end + 4}, header 'Content-Length'")
        if cl < len(body):
            body = body[:cl]
    msg.body = body
    return msg


# One header line of a block without folding: the name (everything before the first colon)
# and the value without the SP/HTAB around it. findall over the block does in C what a loop
# over the lines did in Python; a line without a colon matches nothing, which the count of
# lines catches (the general loop then names the line).
_HEADER_LINE = re.compile(r"([^:\r\n]*):[ \t]*((?:[^\r\n]*[^ \t\r\n])?)[ \t]*(?:\r\n|\Z)")  # (greedy: 4x a lazy one)


def _parse_head(head: bytes, offset: int) -> tuple[Request | Response, int | None]:
    """The message of the header block ``head`` and its Content-Length (None when absent)."""
    text = head.decode("utf-8", "surrogateescape")
    n_crlf = text.count("\r\n")
    if n_crlf != text.count("\r") or n_crlf != text.count("\n"):
        pos = _bare_eol(text)
        raise SipParseError("bare CR or LF (lines must end with CRLF)", f"line {pos}")
    eol = text.find("\r\n")
    first = text if eol < 0 else text[:eol]
    msg: Request | Response
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        msg = _parse_status_line(first)
    else:
        msg = _parse_request_line(first)
    where_line = None  # no folding: header i is on line i + 2
    if eol < 0:
        pairs: list[tuple[str, str]] = []
    elif "\r\n " in text or "\r\n\t" in text:
        pairs, where_line = _unfolded(text.split("\r\n"))
    else:
        pairs = _HEADER_LINE.findall(text, eol + 2)
        if len(pairs) != n_crlf:  # some line has no colon: the general loop says which, in order
            _unfolded(text.split("\r\n"))
            raise SipParseError("header line without a name and ':'", "header block")  # (not reached)
    return msg, _validate(msg, pairs, where_line)


def _unfolded(lines: list[str]) -> tuple[list[tuple[str, str]], list[int]]:
    """(raw name, value) of each header of the block ``lines`` (the start line first), with
    continuation lines (starting with SP or HTAB) joined, and the line each header starts
    on. Names are checked in order: the first bad line raises, naming it."""
    pairs: list[tuple[str, str]] = []
    where_line: list[int] = []
    lineno = 1
    for line in lines[1:]:
        lineno += 1
        if line[:1] in (" ", "\t"):
            if not pairs:
                raise SipParseError("continuation line before any header", f"line {lineno}")
            raw, v = pairs[-1]
            pairs[-1] = (raw, (v + " " + line.strip()) if v else line.strip())
            continue
        colon = line.find(":")
        if colon <= 0:
            raise SipParseError("header line without a name and ':'", f"line {lineno}")
        raw = line[:colon]
        if raw not in _NAMES:
            _header_name(raw, lineno)
        pairs.append((raw, line[colon + 1:].strip(" \t")))
        where_line.append(lineno)
    return pairs, where_line


# raw header name (as on the wire, maybe with trailing LWS) → (key, canonical name);
# a cache of names already validated, so the common headers cost one dict lookup
_NAMES: dict[str, tuple[str, str]] = {}


def _header_name(raw: str, lineno: int) -> tuple[str, str]:
    name = raw.rstrip(" \t")
    if not _HEADER_NAME.match(name):
        raise SipParseError(f"bad header name {name[:40]!r}", f"line {lineno}")
    canon = canonical_name(name)
    known = (canon.lower(), canon)
    if len(_NAMES) < 4096:
        _NAMES[raw] = known
    return known


def _bare_eol(text: str) -> int:
    line = 1
    for i, ch in enumerate(text):
        if ch == "\r" and text[i + 1:i + 2] != "\n":
            return line
        if ch == "\n":
            if i == 0 or text[i - 1] != "\r":
                return line
            line += 1
    return line


def _parse_request_line(line: str) -> Request:
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(
            "request line must be 'METHOD SP Request-URI SP SIP/2.0' (single spaces)", "line 1")
    method, uri_text, version = parts
    if not _TOKEN.match(method):
        raise SipParseError(f"bad method {method[:40]!r}", "line 1")
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version[:20]!r}", "line 1")
    try:
        uri = SipUri.parse(uri_text)
    except SipParseError as e:
        raise SipParseError(e.what, "line 1, Request-URI") from None
    if uri.headers:
        raise SipParseError("headers (?...) are not allowed in a Request-URI",
                            "line 1, Request-URI")
    req = Request.__new__(Request)
    req.method = method
    req.uri = uri
    req.version = "SIP/2.0"
    req.body = b""
    req._cache = {}
    return req


def _parse_status_line(line: str) -> Response:
    parts = line.split(" ", 2)
    if parts[0].upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {parts[0][:20]!r}", "line 1")
    if len(parts) < 2 or len(parts[1]) != 3 or not _DIGITS.match(parts[1]) or parts[1] < "100":
        raise SipParseError(f"bad status code {parts[1][:20] if len(parts) > 1 else ''!r}",
                            "line 1")
    if parts[1] >= "700":
        raise SipParseError(f"status code {parts[1]} out of range 100..699", "line 1")
    reason = parts[2] if len(parts) > 2 else ""
    if any(c < " " and c != "\t" for c in reason):
        raise SipParseError("control character in the reason phrase", "line 1")
    resp = Response.__new__(Response)
    resp.status = int(parts[1])
    resp.reason = reason
    resp.version = "SIP/2.0"
    resp.body = b""
    resp._cache = {}
    return resp


def _validate(msg: Request | Response, pairs: list[tuple[str, str]], where_line: list[int] | None) -> int | None:
    """Build the headers of ``msg`` from ``pairs`` (raw name, value) and parse what every
    consumer needs and RFC 3261 requires to be well-formed, in one pass; returns the
    Content-Length (None when absent). ``where_line[i]``: the line header i starts on (None:
    line i + 2, no folding). A bad header name is reported before a bad value, wherever it is."""
    items: list[tuple[str, str, str]] = []
    append = items.append
    names = _NAMES
    vias: list[Via] = []
    contacts: list[NameAddr] = []
    contact_lines: list[str] = []
    first_contact = -1
    frm = to = cseq = call_id = mf = cl = expires = None
    star = False
    name = ""
    try:
        for raw, value in pairs:
            known = names.get(raw)
            if known is None:
                if not raw:
                    raise SipParseError("header line without a name and ':'",
                                        f"line {_line_of(len(items), where_line)}")
                known = _header_name(raw, _line_of(len(items), where_line))
            key, name = known
            append((key, name, value))
            if key == "via":
                if "," in value:
                    vias.extend(Via.parse(e) for e in split_list(value))
                else:
                    vias.append(Via.parse(value))
            elif key in _SINGLE:
                if key == "from":
                    if frm is not None:
                        raise SipParseError(f"{name} appears more than once")
                    frm = _checked_name_addr(value)
                elif key == "to":
                    if to is not None:
                        raise SipParseError(f"{name} appears more than once")
                    to = _checked_name_addr(value)
                elif key == "cseq":
                    if cseq is not None:
                        raise SipParseError(f"{name} appears more than once")
                    cseq = _CSEQS.get(value)
                    if cseq is None:
                        cseq = _known(_CSEQS, value, _parse_cseq(value))
                elif key == "call-id":
                    if call_id is not None:
                        raise SipParseError(f"{name} appears more than once")
                    call_id = _parse_call_id(value)
                elif key == "max-forwards":
                    if mf is not None:
                        raise SipParseError(f"{name} appears more than once")
                    mf = _NUMBERS.get(value)
                    if mf is None or mf > 255:
                        mf = _parse_max_forwards(value)
                else:  # content-length
                    if cl is not None:
                        raise SipParseError(f"{name} appears more than once")
                    cl = _NUMBERS.get(value)
                    if cl is None:
                        cl = _parse_content_length(value)
            elif key == "contact":
                if first_contact < 0:
                    first_contact = len(items) - 1
                contact_lines.append(value)
            elif key == "expires" and expires is None:
                # read now only when plainly valid (a bad one raises when asked for, naming it)
                expires = _NUMBERS.get(value)
                if expires is None:
                    expires = _EXPIRES_LATER
    except SipParseError as e:
        if e.where:  # a bad header name: already placed
            raise
        _check_names(pairs, where_line)  # a bad name anywhere is said first (one pass used to check them first)
        raise SipParseError(e.what, _where_header(name, _line_of(len(items) - 1, where_line))) from None
    headers = msg.headers = Headers._from_parsed(items, {item[0] for item in items})
    version = headers.version
    cache = msg._cache
    for present, name in ((vias, "Via"), (frm, "From"), (to, "To"), (call_id, "Call-ID"), (cseq, "CSeq")):
        if not present:
            raise SipParseError(f"missing {name} header", "header block")
    cache["vias"] = (version, vias)
    cache["from"] = (version, frm)
    cache["to"] = (version, to)
    cache["cseq"] = (version, cseq)
    cache["call_id"] = (version, call_id)
    cache["max_forwards"] = (version, mf)
    if expires is None:
        cache["expires"] = (version, None)
    elif expires is not _EXPIRES_LATER:
        cache["expires"] = (version, expires)
    if contact_lines:
        try:
            contacts, star = _parse_contacts(contact_lines)
        except SipParseError as e:
            raise SipParseError(e.what, _where_header("Contact", _line_of(first_contact, where_line))) from None
    cache["contacts"] = (version, contacts)
    cache["contact_star"] = (version, star)
    if msg.is_request:
        cseq_method = cseq[1]  # type: ignore[index]
        if cseq_method != msg.method:  # type: ignore[union-attr]
            raise SipParseError(
                f"CSeq method {cseq_method[:40]!r} does not match request method "
                f"{msg.method[:40]!r}",  # type: ignore[union-attr]
                _where_header("CSeq", _line_of(next(i for i, it in enumerate(items) if it[0] == "cseq"), where_line)))
    return cl


def _check_names(pairs: list[tuple[str, str]], where_line: list[int] | None) -> None:
    for i, (raw, _) in enumerate(pairs):
        if raw not in _NAMES:
            if not raw:
                raise SipParseError("header line without a name and ':'", f"line {_line_of(i, where_line)}")
            _header_name(raw, _line_of(i, where_line))


class _Checked:
    """A From / To value the fast pattern validated at parse time: the NameAddr is built when
    first asked for (a registrar never reads the From; a request held in a transaction keeps
    a string, not three objects)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _checked_name_addr(value: str) -> Any:
    """A From or To value checked: a :class:`_Checked` when the fast pattern accepts it, else
    the NameAddr of the general parser, which raises on anything malformed."""
    m = _FAST_NAME_ADDR.match(value)
    if m is not None and (m.group(5) is None or int(m.group(5)) <= 65535):
        return _Checked(value)
    return NameAddr._parse_general(value)


def _line_of(idx: int, where_line: list[int] | None) -> int:
    return idx + 2 if where_line is None else where_line[idx]


# -- builders ----------------------------------------------------------------------------------

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: a branch that starts with it is unique (RFC 3261 rules)


# Tags, branches and Call-IDs come from one pool of os.urandom hex digits (what
# secrets.token_hex returns), refilled 1 KiB at a time: one getrandom() call per ~85 tags
# instead of one each (a registrar under load makes a tag per response). A forked child
# starts with an empty pool, so parent and child never hand out the same digits.
_POOL_BYTES = 1024
_pool = ""
_pool_at = 0
_pool_lock = threading.Lock()


def _random_hex(n: int) -> str:
    global _pool, _pool_at
    with _pool_lock:
        end = _pool_at + n
        if end > len(_pool):
            _pool = os.urandom(max(_POOL_BYTES, n)).hex()
            _pool_at, end = 0, n
        start, _pool_at = _pool_at, end
        return _pool[start:end]


def _empty_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = "", 0


os.register_at_fork(after_in_child=_empty_pool)


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 80 random bits)."""
    return MAGIC_COOKIE + _random_hex(20)


def new_tag() -> str:
    """A fresh tag: 48 random bits (RFC 3261 §19.3: at least 32, cryptographically random)."""
    return _random_hex(12)


def new_call_id(host: str) -> str:
    return f"{_random_hex(24)}@{host}"


_DIALOG_METHODS = ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY")
# what a response takes of each request header (RFC 3261 §8.2.6.2, §12.1.1): copied, the To
# (with our tag), Timestamp (for 100), Record-Route (for 101-299 to a dialog-creating request)
_COPY, _TO, _TIMESTAMP, _RECORD_ROUTE = "copy", "to", "timestamp", "record-route"
_COPIED = {"via": _COPY, "from": _COPY, "call-id": _COPY, "cseq": _COPY, "to": _TO, "timestamp": _TIMESTAMP,
           "record-route": _RECORD_ROUTE}


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    if not headers:
        return []
    if isinstance(headers, Headers):
        return headers.items()
    if isinstance(headers, dict):
        return [(k, str(v)) for k, v in headers.items()]
    return [(k, str(v)) for k, v in headers]


def make_response(request: Request, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Any = None,
                  body: bytes = b"") -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6: Via (all, in order), From, To (with
    ``to_tag`` added when the To has none), Call-ID, CSeq copied; Timestamp for 100;
    Record-Route for 101..299 to dialog-creating requests (§12.1.1). ``headers``: dict or
    pairs appended after those."""
    items: list[tuple[str, str, str]] = []
    rr: list[tuple[str, str, str]] = []
    to_done = False
    append = items.append
    copied = _COPIED
    for entry in request.headers._items:
        what = copied.get(entry[0])
        if what is None:
            continue
        if what is _COPY:
            append(entry)
        elif what is _TO:
            if not to_done:
                to_done = True
                value = entry[2]
                if to_tag is not None and request.to.tag is None:
                    value = f"{value};tag={to_tag}"
                append((entry[0], entry[1], value))
        elif what is _TIMESTAMP:
            if status == 100:
                append(entry)
        elif 100 < status < 300 and request.method in _DIALOG_METHODS:  # Record-Route
            rr.append(entry)
    if rr:
        items.extend(rr)
    resp = Response(status, reason, Headers._from_parsed(items), body)
    for name, value in _header_pairs(headers):
        resp.headers.add(name, value)
    return resp


def make_request(method: str, uri: SipUri | str, *, from_: NameAddr | str, to: NameAddr | str,
                 call_id: str, cseq: int | tuple[int, str], via: Via | str | list[Via | str],
                 contact: NameAddr | str | list[NameAddr | str] | None = None,
                 headers: Any = None, body: bytes = b"", max_forwards: int = 70) -> Request:
    """A request with the RFC 3261 §8.1.1 headers in the usual order. ``cseq`` as an int
    takes ``method`` as its method. Typed values or strings are accepted everywhere."""
    if isinstance(cseq, int):
        cseq = (cseq, method)
    vias = via if isinstance(via, list) else [via]
    h = Headers()
    for v in vias:
        h.add("Via", str(v))
    h.add("Max-Forwards", str(max_forwards))
    h.add("From", str(from_))
    h.add("To", str(to))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq[0]} {cseq[1]}")
    if contact is not None:
        for c in (contact if isinstance(contact, list) else [contact]):
            h.add("Contact", str(c))
    for name, value in _header_pairs(headers):
        h.add(name, value)
    return Request(method, uri, h, body)


def is_keepalive(data: bytes) -> bool:
    """True for an RFC 5626 keep-alive datagram (only CRLFs), which parse() refuses."""
    return bool(data) and not data.strip(b"\r\n")

