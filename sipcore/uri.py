"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), parsed and serialized by hand.

Why by hand: the URI is the piece of a SIP message every other part leans on (Request-URI,
From/To/Contact, Route), and the parser must be strict where RFC 4475 says so (no LWS, no
``<>`` in a Request-URI, escaped headers refused there), lenient where real phones are
sloppy, fast (a registrar parses several per message) and raise :class:`SipParseError`
(never ``IndexError`` or ``UnicodeError``) on any input. ``urllib.parse`` knows none of the
SIP rules (``;params`` before ``?headers``, user parts with ``;`` and ``?``), and the PyPI
SIP libraries either lack error positions or are regex monsters; see ``sipcore/parser.py``.

:class:`SipParseError` lives here, the lowest layer of the message stack (fields, via,
nameaddr, message, parser above it): the rest of the project imports it from here.

Values are kept as they appeared on the wire (``%``-escapes are not decoded in ``user``,
``password`` or parameter values) so a URI serializes back byte for byte; comparison
(``==``) follows RFC 3261 §19.1.4 and decodes escapes first.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

__all__ = ["SipParseError", "SipUri"]


#: RFC 3261 §19.1.2 / §26.2: the port a SIP URI or a target means when it names none, by transport.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "sctp": 5060}


def default_port(transport: str) -> int:
    """5061 for TLS (sips), 5060 otherwise (RFC 3261 §19.1.2; SPEC §2 "port 0 → 5060, 5061 for TLS")."""
    return DEFAULT_PORTS.get(transport.lower(), 5060)


class SipParseError(ValueError):
    """Malformed SIP input. ``what`` says what is wrong, ``where`` names the place
    (``"line 3, header 'Via'"``, ``"byte 120"``); ``str()`` is ``"where: what"``."""

    def __init__(self, what: str, where: str = "") -> None:
        self.what = what
        self.where = where
        super().__init__(f"{where}: {what}" if where else what)

    def __reduce__(self) -> Any:  # keep both fields across pickling (xdist, multiprocessing)
        return (type(self), (self.what, self.where))


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
_PASSWORD = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")
# hostname, IPv4 (lenient: underscores are seen in the wild)
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*)\Z")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
# paramchar = param-unreserved / unreserved / escaped
_PARAMCHARS = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+\Z")
# hname / hvalue = *( hnv-unreserved / unreserved / escaped )
_HCHARS = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*\Z")
# telephone-subscriber (RFC 3966), lenient: digits, visual separators, *#, hex for local numbers
_TEL = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+\Z")
# absoluteURI chars (RFC 3261 uric): no whitespace, no <>", no control characters
_OPAQUE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:@&=+$,;%#]+\Z")

_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")

# Parsed sip/sips URIs by text: the same few URIs (Request-URI, AOR, contacts) come back in
# every message of a registration or dialog. Entries are immutable snapshots; parse()
# hands out fresh objects with copied dicts.
_CACHE: dict[str, tuple[Any, ...]] = {}
_CACHE_MAX = 4096
#: The longest text a memo of parsed values keeps (this one and those of the message stack
#: above it; longer texts are parsed each time): a memo holds a few thousand entries at most,
#: so it stays under a few MB whatever a peer sends.
_MEMO_TEXT_MAX = 256


class SipUri:
    """A URI: ``sip:``/``sips:`` fully parsed, ``tel:`` as number (``user``) + params, any
    other scheme kept opaque (``opaque``). ``host`` holds an IPv6 address without brackets;
    ``params`` maps lower-cased names to values (``None`` for a flag such as ``lr``)."""

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        password: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = dict(params) if params else {}
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self.opaque = opaque

    # -- parsing -------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        """Parse ``text`` (no surrounding ``<>`` or whitespace) or raise SipParseError."""
        colon = text.find(":")
        if colon <= 0 or not _SCHEME.match(text, 0, colon):
            raise SipParseError(f"URI {text[:80]!r} does not start with a scheme")
        scheme = text[:colon].lower()
        rest = text[colon + 1:]
        if scheme == "sip" or scheme == "sips":
            hit = _CACHE.get(text)
            if hit is None:
                uri = cls._parse_sip(scheme, rest, text)
                if len(text) > _MEMO_TEXT_MAX:
                    return uri
                if len(_CACHE) >= _CACHE_MAX:
                    _CACHE.clear()
                _CACHE[text] = (uri.user, uri.password, uri.host, uri.port, uri.params,
                                uri.headers)
                uri.params = dict(uri.params)
                uri.headers = dict(uri.headers)
                return uri
            user, password, host, port, params, headers = hit
            return cls._of(scheme, user, password, host, port, params.copy(), headers.copy() if headers else {})
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not _TEL.match(number):
                raise SipParseError(f"tel URI {text[:80]!r} has a bad number")
            return cls(scheme, number, "", None, _parse_uri_params(ptext, text) if ptext else None)
        if not rest or not _OPAQUE.match(rest):
            raise SipParseError(f"URI {text[:80]!r} has characters not allowed in a URI")
        return cls(scheme, opaque=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str, text: str) -> "SipUri":
        user = password = None
        at = rest.find("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1:]
            c = userinfo.find(":")
            if c >= 0:
                user, password = userinfo[:c], userinfo[c + 1:]
                if not _PASSWORD.match(password):
                    raise SipParseError(f"URI {text[:80]!r} has a bad password part")
            else:
                user = userinfo
            if not _USER.match(user):
                raise SipParseError(f"URI {text[:80]!r} has a bad user part")
        headers = None
        q = rest.find("?")
        if q >= 0:
            headers = _parse_uri_headers(rest[q + 1:], text)
            rest = rest[:q]
        params = None
        semi = rest.find(";")
        if semi >= 0:
            params = _parse_uri_params(rest[semi + 1:], text)
            rest = rest[:semi]
        port = None
        if rest.startswith("["):
            end = rest.find("]")
            host = rest[1:end] if end > 0 else ""
            if end < 0 or not _IPV6.match(host):
                raise SipParseError(f"URI {text[:80]!r} has a bad IPv6 reference")
            tail = rest[end + 1:]
            if tail:
                if tail[0] != ":" or not _PORT.match(tail, 1):
                    raise SipParseError(f"URI {text[:80]!r} has a bad port")
                port = int(tail[1:])
        else:
            host, c, ptext = rest.partition(":")
            if not _HOSTNAME.match(host):
                raise SipParseError(f"URI {text[:80]!r} has a bad host")
            if c:
                if not _PORT.match(ptext):
                    raise SipParseError(f"URI {text[:80]!r} has a bad port")
                port = int(ptext)
        if port is not None and port > 65535:
            raise SipParseError(f"URI {text[:80]!r} has port {port} > 65535")
        return cls._of(scheme, user, password, host, port, params if params is not None else {},
                       headers if headers is not None else {})

    @classmethod
    def _of(cls, scheme: str, user: str | None, password: str | None, host: str, port: int | None,
            params: dict, headers: dict, opaque: str | None = None) -> "SipUri":
        """A SipUri of parts already checked and owned by it (the parsers, their memos, copies):
        without ``__init__``'s checks and copies, which the hot paths pay per message otherwise."""
        uri = cls.__new__(cls)
        uri.scheme = scheme
        uri.user = user
        uri.password = password
        uri.host = host
        uri.port = port
        uri.params = params
        uri.headers = headers
        uri.opaque = opaque
        return uri

    # -- conveniences --------------------------------------------------------------------

    @property
    def transport(self) -> str | None:
        return self.params.get("transport")

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def _clone(self) -> "SipUri":
        """A copy without the checks of ``__init__`` (the parts are already as parsed)."""
        return SipUri._of(self.scheme, self.user, self.password, self.host, self.port, self.params.copy(),
                          self.headers.copy() if self.headers else {}, self.opaque)

    def copy(self) -> "SipUri":
        return SipUri(self.scheme, self.user, self.host, self.port, self.params, self.headers,
                      self.password, self.opaque)

    def replace(self, **fields: Any) -> "SipUri":
        """A copy with the given attributes replaced (``replace(port=5070, user=None)``)."""
        uri = self.copy()
        for name, value in fields.items():
            if name not in SipUri.__slots__:
                raise TypeError(f"SipUri has no attribute {name!r}")
            setattr(uri, name, value)
        return uri

    def with_params(self, **params: str | None) -> "SipUri":
        """A copy with URI parameters added or replaced (``None`` = flag parameter)."""
        uri = self.copy()
        for name, value in params.items():
            uri.params[name.lower()] = value
        return uri

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    # -- serialization and comparison ----------------------------------------------------

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts.append(":" + self.password)
                parts.append("@")
            parts.append(self.hostport)
        for name, value in self.params.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """RFC 3261 §19.1.4 comparison (sip/sips); other schemes compare their parts."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme or self.opaque != other.opaque:
            return False
        if self.scheme not in ("sip", "sips"):
            return self.user == other.user and _params_equal(self.params, other.params)
        if _unq(self.user) != _unq(other.user) or _unq(self.password) != _unq(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        if not _params_equal(self.params, other.params):
            return False
        h1 = {k.lower(): _unq(v) for k, v in self.headers.items()}
        h2 = {k.lower(): _unq(v) for k, v in other.headers.items()}
        return h1 == h2

    def __hash__(self) -> int:
        return hash((self.scheme, self.host.lower(), self.port))


def _unq(value: str | None) -> str | None:
    if value is None or "%" not in value:
        return value
    return unquote(value, errors="surrogateescape")


def _params_equal(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    for name in a.keys() | b.keys():
        in_a, in_b = name in a, name in b
        if in_a and in_b:
            va, vb = a[name], b[name]
            if (va is None) != (vb is None):
                return False
            if va is not None and _unq(va).lower() != _unq(vb).lower():  # type: ignore[union-attr]
                return False
        elif name in _MUST_MATCH:
            return False
    return True


def _parse_uri_params(ptext: str, text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in ptext.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAMCHARS.match(name) or (eq and not _PARAMCHARS.match(value)):
            raise SipParseError(f"URI {text[:80]!r} has a bad parameter {item[:40]!r}")
        params[name.lower()] = value if eq else None
    return params


def _parse_uri_headers(htext: str, text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in htext.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq or not _HCHARS.match(name) or not _HCHARS.match(value):
            raise SipParseError(f"URI {text[:80]!r} has a bad header {item[:40]!r}")
        headers[name] = value
    return headers
