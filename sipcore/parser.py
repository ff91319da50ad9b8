"""The SIP message parser (RFC 3261 §7, §20): one datagram, or one message the stream framer
cut, into a :class:`~sipcore.message.Request` or :class:`~sipcore.message.Response`.
Sans-I/O: bytes in, objects out. Also the size limit (:data:`MAX_SIZE`) and the RFC 5626
keep-alive test (:func:`is_keepalive`), which the transports ask before parsing.

Written by hand, not built on a library. We read ``sipmessage`` 0.7.1 (PyPI, beta) first:
it is clean and typed, but its parser splits the header block on ``": "`` per line with no
line folding, no Content-Length handling (the body is whatever follows), no required-header
check, no size limit, and it lets ``IndexError``/``UnicodeDecodeError``/``int()`` errors
escape on garbage; its errors name no place. We need all of that (RFC 4475 torture messages,
stream framing by Content-Length in ``sipcore/framing.py``, servers that survive any input
with an error naming the line and header), and the parsing core is a few hundred lines, so
adapting it would mean rewriting it. What we keep from its design: typed views over raw
header strings (:mod:`sipcore.message`).

Design for speed (a benchmark pits our registrar against Kamailio): ``parse()`` decodes
and splits the header block once, unfolds only when a continuation line exists, and
parses eagerly only what every consumer needs and what RFC 3261 requires to be valid
(Via, From, To, CSeq, Call-ID, Max-Forwards, Content-Length, Contact), filling the
message's cache of typed views with it; other typed views are parsed on first use. A header
block of the common shape (no folding, no header twice, known names, plain values) is read by
the fast path of :mod:`sipcore.fastparse`, about twice as fast; everything else, errors
included, by the general loop here. Start lines are memoized (a client repeats them).

Errors: everything malformed raises :class:`SipParseError` (a ``ValueError``) with
``where`` naming the line and header or the byte offset. Values keep their wire form
(bytes that are not UTF-8 survive through ``surrogateescape``).
"""

from __future__ import annotations

import re
from typing import Any

from sipharness.sipcore.fastparse import _NAMES, _NAMES_MAX, SLOW, _fast_headers
from sipharness.sipcore.fields import (
    _DIGITS,
    _NUMBERS,
    _known,
    _parse_call_id,
    _parse_content_length,
    _parse_cseq,
    _parse_max_forwards,
    _where_header,
)
from sipharness.sipcore.headers import Headers, canonical_name, split_list
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.nameaddr import NameAddr, _checked_name_addr, _parse_contacts
from sipharness.sipcore.uri import _MEMO_TEXT_MAX, SipParseError, SipUri
from sipharness.sipcore.via import Via

__all__ = ["parse", "is_keepalive", "MAX_SIZE"]

#: The default limit on one message's size in bytes: parse(), the stream framer and the transports.
MAX_SIZE = 65535

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_HEADER_NAME = _TOKEN
# the headers a message carries at most once (RFC 3261 §7.3.1 / §20) → the reader of its value
_SINGLE = {"from": _checked_name_addr, "to": _checked_name_addr, "cseq": _parse_cseq, "call-id": _parse_call_id,
           "max-forwards": _parse_max_forwards, "content-length": _parse_content_length}
_EXPIRES_LATER = object()
# start lines already read: a client sends the same few (REGISTER sip:registrar, SIP/2.0 200 OK)
# again and again; each entry is immutable (the Request-URI a prototype handed out as a copy)
_REQUEST_LINES: dict[str, tuple[str, SipUri]] = {}
_STATUS_LINES: dict[str, tuple[int, str]] = {}


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
    lines = text.split("\r\n")
    n_crlf = len(lines) - 1
    if n_crlf != text.count("\r") or n_crlf != text.count("\n"):
        pos = _bare_eol(text)
        raise SipParseError("bare CR or LF (lines must end with CRLF)", f"line {pos}")
    first = lines[0]
    msg: Request | Response
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        msg = _parse_status_line(first)
    else:
        msg = _parse_request_line(first)
    if n_crlf:
        cl = _fast_headers(msg, lines[1:])  # the common shape; SLOW: anything else, errors included
        if cl is not SLOW:
            return msg, cl
    where_line = None  # no folding: header i is on line i + 2
    if not n_crlf:
        pairs: list[tuple[str, str]] = []
    elif "\r\n " in text or "\r\n\t" in text:
        pairs, where_line = _unfolded(lines)
    else:
        pairs = _HEADER_LINE.findall(text, len(first) + 2)
        if len(pairs) != n_crlf:  # some line has no colon: the general loop says which, in order
            _unfolded(lines)
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


def _header_name(raw: str, lineno: int) -> tuple[str, str]:
    name = raw.rstrip(" \t")
    if not _HEADER_NAME.match(name):
        raise SipParseError(f"bad header name {name[:40]!r}", f"line {lineno}")
    canon = canonical_name(name)
    known = (canon.lower(), canon)
    if len(_NAMES) < _NAMES_MAX and len(raw) <= _MEMO_TEXT_MAX:
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
    hit = _REQUEST_LINES.get(line)
    if hit is None:
        hit = _known(_REQUEST_LINES, line, _read_request_line(line))
    req = Request.__new__(Request)
    req.method = hit[0]
    req.uri = hit[1]._clone()
    req.version = "SIP/2.0"
    req.body = b""
    req._cache = {}
    return req


def _read_request_line(line: str) -> tuple[str, SipUri]:
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
    return method, uri


def _parse_status_line(line: str) -> Response:
    hit = _STATUS_LINES.get(line)
    if hit is None:
        hit = _known(_STATUS_LINES, line, _read_status_line(line))
    resp = Response.__new__(Response)
    resp.status, resp.reason = hit
    resp.version = "SIP/2.0"
    resp.body = b""
    resp._cache = {}
    return resp


def _read_status_line(line: str) -> tuple[int, str]:
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
    return int(parts[1]), reason


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
    single: dict[str, Any] = {}  # key of a _SINGLE header → its value, read
    expires = None
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
                if key in single:
                    raise SipParseError(f"{name} appears more than once")
                single[key] = _SINGLE[key](value)
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
    frm, to, cseq, call_id, mf, cl = map(single.get, ("from", "to", "cseq", "call-id", "max-forwards",
                                                      "content-length"))
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


def _line_of(idx: int, where_line: list[int] | None) -> int:
    return idx + 2 if where_line is None else where_line[idx]


def is_keepalive(data: bytes) -> bool:
    """True for an RFC 5626 keep-alive datagram (only CRLFs), which parse() refuses."""
    return bool(data) and not data.strip(b"\r\n")
