"""Build requests and responses: :func:`make_request` with the RFC 3261 §8.1.1 headers in the
usual order, :func:`make_response` with what §8.2.6 copies from the request.

Why a module of its own: building is what a UA does (the phone, the fakes' UAC and UAS, the
registrar answering), parsing what a transport does; neither needs the other, and the
message classes need neither.
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.fields import _known
from sipharness.sipcore.headers import Headers, canonical_name
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.uri import SipUri
from sipharness.sipcore.via import Via

__all__ = ["make_request", "make_response"]

_DIALOG_METHODS = ("INVITE", "SUBSCRIBE", "REFER", "NOTIFY")
# what a response takes of each request header (RFC 3261 §8.2.6.2, §12.1.1): copied, the To
# (with our tag), Timestamp (for 100), Record-Route (for 101-299 to a dialog-creating request)
_COPY, _TO, _TIMESTAMP, _RECORD_ROUTE = "copy", "to", "timestamp", "record-route"
_COPIED = {"via": _COPY, "from": _COPY, "call-id": _COPY, "cseq": _COPY, "to": _TO, "timestamp": _TIMESTAMP,
           "record-route": _RECORD_ROUTE}
# a header name given to make_response -> (key, canonical name), remembered; bounded (emptied
# when full): the names come from our code and the fakes' scripts, never from the wire
_ENTRY_NAMES: dict[str, tuple[str, str]] = {}
_ENTRY_NAMES_MAX = 256


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
    items = _copied(request, request.headers._items, status, to_tag)
    if headers:  # the entries Headers.add would write, without a Headers call (and version bump) per line
        append = items.append
        for name, value in _header_pairs(headers):
            entry = _ENTRY_NAMES.get(name)
            if entry is None:
                canon = canonical_name(name)
                entry = _known(_ENTRY_NAMES, name, (canon.lower(), canon), _ENTRY_NAMES_MAX)
            append((entry[0], entry[1], value))
    return Response._make(status, reason, Headers._from_parsed(items), body)


def _copied(request: Request, src: list[tuple[str, str, str]], status: int,
            to_tag: str | None) -> list[tuple[str, str, str]]:
    """The request's lines a response copies (RFC 3261 §8.2.6.2, §12.1.1), in the request's order."""
    items: list[tuple[str, str, str]] = []
    rr: list[tuple[str, str, str]] = []
    to_done = False
    append = items.append
    copied = _COPIED
    for entry in src:
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
    return items


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
