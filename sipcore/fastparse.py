"""The fast path of :func:`sipcore.parser.parse` over a header block of the common shape.

Why a module of its own: a registrar parses every REGISTER, and the general header loop
(:func:`sipcore.parser._validate`) pays Python steps for every header line and every place an
error could be named. Nearly every message a phone, SIPp or Kamailio sends has the same shape:
no folded lines, header names seen before, no header given twice, Via, From, To and Contact in
their plain form. This module reads that shape with C-level steps (``str.partition`` over the
lines, one dict of the values, one compiled pattern per value) and builds the typed views from
it directly.

The contract: the fast path never refuses a message and never names an error. Whenever the
block is not of the common shape, or anything in it is malformed, :func:`_fast_headers`
answers :data:`SLOW` and the general loop reads the block from its start, producing the same
result or the error naming the line and header. What the fast path accepts, the general loop
accepts with the same message (tests/test_parser_fastpath.py compares both on generated
messages, the RFC 4475 ones and the tests' own). It leaves ``msg`` untouched unless it succeeds.
"""

from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any

from sipharness.sipcore.fields import (
    _NUMBERS,
    _parse_call_id,
    _parse_content_length,
    _parse_cseq,
    _parse_max_forwards,
)
from sipharness.sipcore.headers import _CANON, Headers, canonical_name, split_list
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.nameaddr import _checked_name_addr, _fast_match, _fast_name_addr, _parse_contacts
from sipharness.sipcore.uri import SipParseError
from sipharness.sipcore.via import Via

#: The answer of :func:`_fast_headers` for a block the general loop must read.
SLOW: Any = object()

# raw header name (as on the wire, maybe with trailing LWS) → (key, canonical name): names
# already validated (the known ones in their usual spellings from the start; the general loop
# adds every other valid one it meets, up to the bound), so a header name costs one dict lookup
_NAMES: dict[str, tuple[str, str]] = {}
_NAMES_MAX = 4096
for _lower, _canon in _CANON.items():
    for _spelling in (_canon, _lower, _canon.upper(), _lower.title()):
        _NAMES[_spelling] = (_canon.lower(), _canon)
assert all(canonical_name(raw) == known[1] for raw, known in _NAMES.items())

_KEY_VALUE = itemgetter(0, 2)
_COLON = ":"


def _fast_headers(msg: Request | Response, lines: list[str]) -> Any:
    """The Content-Length of the header block ``lines`` (the lines after the start line, no
    folding, no bare CR or LF), None when absent, with ``msg.headers`` and the typed views
    set; :data:`SLOW` (and ``msg`` untouched) when the general loop must read it."""
    names = _NAMES
    try:
        items = [names[raw] + (value.strip(" \t"),)
                 for raw, colon, value in map(str.partition, lines, repeat(_COLON)) if colon]
    except KeyError:  # a name not seen before (or not valid): the general loop checks it
        return SLOW
    if len(items) != len(lines):  # a line without ':'
        return SLOW
    values = dict(map(_KEY_VALUE, items))
    if len(values) != len(items):  # some header given twice (Via, Route, Contact...): the general loop
        return SLOW
    get = values.get
    try:
        via = values["via"]
        vias = [Via.parse(e) for e in split_list(via)] if "," in via else [Via.parse(via)]
        frm = _checked_name_addr(values["from"])
        to = _checked_name_addr(values["to"])
        cseq = _parse_cseq(values["cseq"])
        if msg.is_request and cseq[1] != msg.method:  # type: ignore[union-attr]
            return SLOW
        call_id = _parse_call_id(values["call-id"])
        mf = _parse_max_forwards(get("max-forwards"))
        text = get("content-length")
        cl = None if text is None else _parse_content_length(text)
        text = get("contact")
        star = False
        if text is None:
            contacts = []
        else:
            recipe = _fast_match(text) if "," not in text else None  # (a list: the general way)
            if recipe is not None:
                contacts = [_fast_name_addr(recipe, text)]
            else:
                contacts, star = _parse_contacts([text])
    except (KeyError, SipParseError):  # a required header missing, or something malformed
        return SLOW
    msg.headers = Headers._from_parsed(items, values)
    cache = msg._cache = {
        "vias": (0, vias), "from": (0, frm), "to": (0, to), "cseq": (0, cseq), "call_id": (0, call_id),
        "max_forwards": (0, mf), "contacts": (0, contacts), "contact_star": (0, star)}
    text = get("expires")
    if text is None:
        cache["expires"] = (0, None)
    else:  # read now only when plainly valid (a bad one raises when asked for, naming it)
        expires = _NUMBERS.get(text)
        if expires is not None:
            cache["expires"] = (0, expires)
    return cl
