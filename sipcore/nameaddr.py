"""The name-addr header value (RFC 3261 §20.10, §25.1): a From, To, Contact or Route, with its
optional display name, its URI and its header parameters (``tag``, ``expires``...).

Why a module of its own: every request and response carries at least two of them, the
registrar keys its bindings by a Contact's URI and the phone's dialogs by the tags, so the
parsing is the hottest code of the message stack: a fast path (one compiled pattern for the
common shape, checked against the general parser by tests/test_sipcore_fastpath.py) and
the general parser of every other form, which also produces every error. The parser of the
message (:mod:`sipcore.parser`) checks From and To with the fast pattern and leaves them as
:class:`_Checked` text, built into a :class:`NameAddr` when first asked for. What the fast
pattern found in the display name and URI is memoized by their text (bounded; texts past 256
characters not kept): a client repeats its From, To and Contact URIs, and each parse still
hands out new objects.
"""

from __future__ import annotations

import re
from typing import Any

from sipharness.sipcore.fields import _known, delta_seconds
from sipharness.sipcore.headers import _FAST_PARAMS, _fast_params, format_params, parse_params, quoted_string_end, split_list
from sipharness.sipcore.uri import SipParseError, SipUri

__all__ = ["NameAddr"]

_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]*\Z")


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
        recipe = _fast_match(text)
        if recipe is not None:
            return _fast_name_addr(recipe, text)
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
# What the fast pattern found in the display name and URI of a value (its text up to the last
# '>'), read into the parts of a NameAddr: a recipe. A client sends the same Contact, To and
# From URIs in every request of a registration or dialog; the header parameters after the '>'
# (a tag that changes with each call) are checked and read each time, so the memo holds one
# entry per peer's URI, not one per call. Recipes are tuples of strings, ints and pairs
# (immutable); each parse builds new objects from one. Bounded: cleared when full.
_Recipe = tuple  # (display, scheme, user, host, port, URI params as pairs, URI text)
_MATCHED: dict[str, _Recipe] = {}
_MATCHED_MAX = 2048


def _fast_match(text: str) -> "_Recipe | None":
    """The recipe of the name-addr ``text`` when the fast pattern accepts all of it, else None
    (the general parser's turn)."""
    gt = text.rfind(">")
    end = gt + 1
    key = text if end == len(text) else text[:end]
    recipe = _MATCHED.get(key)
    if recipe is not None:
        if end < len(text) and _FAST_PARAMS.match(text, end) is None:  # (group 7 of the pattern, alone)
            return None
        return recipe
    m = _FAST_NAME_ADDR.match(text)
    if m is None:
        return None
    recipe = _recipe(m)
    if recipe is None:
        return None
    return _known(_MATCHED, key, recipe, _MATCHED_MAX)  # (key: the text through the pattern's '>', the last one)


def _recipe(m: "re.Match[str]") -> "_Recipe | None":
    display, scheme, user, host, port, uparams, _ = m.groups()
    # a few hosts come back in every message: one string each (memory a phone keeps per request)
    known = _HOSTS.get(host)
    if known is None:
        known = _known(_HOSTS, host, host, 4096)
    # text: "sip:user@host:port;params" as received, kept as uri_text when str(uri) gives it back
    text: str | None = m.string[m.start(2):m.end(6)]
    number = None
    if port is not None:
        number = int(port)
        if number > 65535:
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
    return (display, "sip" if scheme == "sip" else "sips", user, known, number,  # (the constants, not new strings)
            tuple(up.items()) if up else None, text)


def _fast_name_addr(recipe: "_Recipe", text: str) -> "NameAddr":
    """A new NameAddr of ``text``, which :func:`_fast_match` accepted with ``recipe``."""
    display, scheme, user, host, port, up, uri_text = recipe
    uri = SipUri._of(scheme, user, None, host, port, dict(up) if up else {}, {})
    na = NameAddr.__new__(NameAddr)
    na.display = display
    na.uri = uri
    na.params = _fast_params(text, text.rfind(">") + 1) if text[-1] != ">" else {}  # the header parameters
    na._uri_text = uri_text
    return na


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~ \t")


def _is_utf8_tokens(d: str) -> bool:
    # token display names may carry UTF8-NONASCII in the wild; anything else ASCII is refused
    return all(c in _TOKEN_CHARS or c >= "\x80" for c in d)


def _parse_name_addr(value: str, name: str) -> NameAddr:
    """The From or To value ``value`` (header ``name``), parsed."""
    return NameAddr.parse(value)


def _parse_contacts(lines: list[str]) -> tuple[list[NameAddr], bool]:
    """The Contact values of the Contact header lines ``lines``, and whether they are ``*``."""
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
    if _fast_match(value) is not None:
        return _Checked(value)
    return NameAddr._parse_general(value)
