"""SIP messages (RFC 3261 §7): :class:`Request` and :class:`Response`, their headers, body and
typed views, and their wire form. Sans-I/O: objects in, bytes out.

Why a module of its own: this is what every other part holds and passes around (the
transaction layer, the fakes, the phone), while only the transports read bytes into it
(:func:`sipcore.parser.parse`) and only the UAs build one from nothing
(:mod:`sipcore.build`). The typed views (``call_id``, ``cseq``, ``vias``, ``from_``,
``to``, ``contacts``, ``expires``...) parse their header on first use and are cached until
the headers change (``Headers.version``); the parser fills that cache with what it has
already checked, so a parsed message never parses a header twice. The value grammars live
below this module (:mod:`sipcore.fields`, :mod:`sipcore.via`, :mod:`sipcore.nameaddr`).
A message serializes back to what was received, except folding (unfolded), compact names
(expanded) and Content-Length (written from the body).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from sipharness.sipcore.fields import (
    _in_header,
    _parse_call_id,
    _parse_cseq,
    _parse_expires,
    _parse_max_forwards,
    _parse_min_expires,
)
from sipharness.sipcore.headers import Headers
from sipharness.sipcore.nameaddr import NameAddr, _Checked, _parse_contacts, _parse_name_addr
from sipharness.sipcore.uri import SipParseError, SipUri
from sipharness.sipcore.via import Via, _parse_vias

__all__ = ["Message", "Request", "Response", "REASONS"]

#: RFC 3261 §21: the reason phrase a Response gets when none is given.
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

    def _name_addr(self, key: str, name: str) -> NameAddr:
        """From or To: the object built on first use from the text the parse validated (or parsed now)."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.headers.version:
            value = hit[1]
            if type(value) is _Checked:  # validated at parse time, built now (once)
                value = NameAddr.parse(value.text)
                self._cache[key] = (hit[0], value)
            return value
        return self._typed(key, lambda: _parse_name_addr(self._single(name), name))

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("from", "From")

    @from_.setter
    def from_(self, value: NameAddr | str) -> None:
        self.headers.set("From", str(value))

    @property
    def to(self) -> NameAddr:
        return self._name_addr("to", "To")

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
        cl = f"Content-Length: {len(self.body)}"
        lines = [self.start_line()]
        append = lines.append
        written = False
        for key, name, value in self.headers._items:
            if key != "content-length":
                append(f"{name}: {value}")
            elif not written:  # several Content-Length lines: the first place only
                written = True
                append(cl)
        if not written:
            append(cl)
        append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

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

    @classmethod
    def _make(cls, status: int, reason: str | None, headers: Headers, body: bytes = b"") -> "Response":
        """What ``Response(status, reason, headers, body)`` makes, its fields set directly (as the
        parser does for requests): :func:`sipcore.build.make_response` makes one per answer."""
        r = cls.__new__(cls)
        r.headers = headers
        r.body = body if type(body) is bytes else bytes(body)
        r.version = "SIP/2.0"
        r._cache = {}
        r.status = status = status if type(status) is int else int(status)
        r.reason = REASONS.get(status, "") if reason is None else reason
        return r

    @property
    def method(self) -> str:
        return self.cseq[1]

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> "Response":
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
