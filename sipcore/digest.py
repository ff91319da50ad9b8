"""HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616): parse and write
challenges and credentials, compute a response, answer a challenge (the client side). The server
side, which issues nonces and checks answers, is ``digestserver.py``. Sans-I/O: header values
in, header values out.

Written by hand: the computation is a few MD5 calls, and the libraries that have it
(``requests``' ``HTTPDigestAuth``, ``httpx``) are tied to HTTP request objects and have no
server side.

Supported: MD5 (default), MD5-sess, SHA-256, SHA-256-sess; qop ``auth`` and ``auth-int``;
the legacy RFC 2069 form without qop. A server may offer several algorithms at once (RFC
8760 §2.4, RFC 7616 §3.7: one challenge per algorithm, preferred first, sharing the nonce):
:meth:`digestserver.DigestServer.make_challenges`; a client picks the first it supports
(:func:`select_challenge`).

Parameter lists are read by one general loop (a pattern per parameter, unescaping, checks); the
list every digest client sends (``k="v",k=v``, nothing to unescape or refuse) is read by one split
of a C pattern instead (``_fast_params``), which a test holds to the loop's reading.

Hostile input: every parameter value must be UTF-8 text without control characters (bytes
that are not UTF-8 reach us as surrogate escapes and cannot be hashed), a parameter may
appear once, ``response`` must be the hex digest of the algorithm's length, ``nc`` eight hex
digits: anything else is a :class:`SipParseError` naming the parameter (a server answers
400), never an exception from the hash or the comparison.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from sipharness.sipcore.uri import SipParseError

__all__ = [
    "Challenge", "Credentials", "authorize", "compute_response", "make_challenge", "select_challenge", "ALGORITHMS",
    "hash_for",
]

# a quoted-string as '"' [^"\\]* (\\. [^"\\]*)* '"': the same strings as '"' ([^"\\] | \\.)* '"', without
# an alternation tried at every character (three times faster on a digest Authorization)
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_PARAM_RE = re.compile(
    r"\s*([A-Za-z0-9\-_.!%*+`'~]+)\s*=\s*(" + _QUOTED + r"|[^\s,\"]*)\s*(?:,|\Z)", re.S)
# the fast path's parameter (_fast_params): no whitespace around "=", nothing to unescape, no character
# a value may not hold (quoted: no backslash; neither: no control character nor surrogate escape,
# as _BAD_VALUE), the separating comma with any whitespace around it taken with the parameter
_NOT_TEXT = "\\x00-\\x08\\x0a-\\x1f\\x7f\\ud800-\\udfff"
_FAST_PARAM = re.compile(
    r"([A-Za-z0-9\-_.!%*+`'~]+)=(?:\"([^\"\\" + _NOT_TEXT + r"]*)\"|([^\s,\"" + _NOT_TEXT + r"]*))\s*(?:,\s*|\Z)")
# the same parameter, uncaptured, repeated over the whole text
_PARAMS_WHOLE = re.compile(
    r"(?:\s*[A-Za-z0-9\-_.!%*+`'~]+\s*=\s*(?:" + _QUOTED + r"|[^\s,\"]*)\s*(?:,|\Z))*\Z", re.S)
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
#: What a server offers by default, preferred first: RFC 8760 SHA-256 (what current phones
#: answer), then MD5 for the phones that know nothing else (RFC 8760 §2.4 / RFC 7616 §3.7).
ALGORITHMS = ("SHA-256", "MD5")
_V = TypeVar("_V")
_HEX_LENGTH = {"MD5": 32, "SHA-256": 64}
# a parameter value must be text a hash can take: no surrogate escapes (bytes that were not
# UTF-8 on the wire), no control characters (RFC 3261 quoted-string / token exclude them)
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_HEX = re.compile(r"[0-9A-Fa-f]+\Z")
# compiled once (re.fullmatch / re.sub with a pattern string look it up in re's cache each call)
_SCHEME = re.compile(r"[A-Za-z0-9\-_.!%*+`'~]+\Z")
_ESCAPED = re.compile(r"\\(.)")
_NC = re.compile(r"[0-9A-Fa-f]{8}\Z")


def _parse_auth(value: str, what: str) -> tuple[str, dict[str, str]]:
    """``Scheme k=v, k="v"`` → (scheme, {lower-case name: unquoted value})."""
    if value.startswith("Digest "):  # what every digest peer sends: no strip, partition, scheme check
        scheme, rest = "Digest", value[7:].strip()
    else:
        value = value.strip()
        scheme, _, rest = value.partition(" ")
        if not scheme or not _SCHEME.match(scheme):
            raise SipParseError(f"{what} has no auth scheme")
        rest = rest.strip()
    fast = _fast_params(rest)
    if fast is not None:
        return scheme, fast
    params: dict[str, str] = {}
    if _PARAMS_WHOLE.match(rest) is not None:
        # the whole list is well-formed: one findall splits it as the loop below would (the
        # separators are forced: commas outside quotes)
        suspicious = _BAD_VALUE.search(rest) is not None  # (else no value can hold a bad character)
        for name, v in _PARAM_RE.findall(rest):
            _add_param(params, name, v, what, suspicious)
        return scheme, params
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            raise SipParseError(f"bad auth parameter near {rest[pos:pos + 40]!r} in {what}")
        _add_param(params, m.group(1), m.group(2), what, True)
        pos = m.end()
    return scheme, params


def _fast_params(rest: str) -> dict[str, str] | None:
    """The parameters of the common list (``k="v",k=v``: nothing to unescape or refuse), as the
    loop of :func:`_parse_auth` reads them; None for anything else (the loop reads it, and names
    what is wrong). A digest server reads one list per request: this is one pass of the C
    pattern engine and no Python call per parameter.

    ``_FAST_PARAM.split`` gives [text before, name, quoted, token, text between, ...]: when every
    text between is empty the parameters follow each other from the first character to the
    last, as the loop's successive matches do; a value the pattern takes, the loop's pattern
    takes alike (same name class, quoted tried first, the token's class and end).
    """
    pieces = _FAST_PARAM.split(rest)
    if any(pieces[::4]):
        return None
    names = pieces[1::4]
    params = {name.lower(): (token if quoted is None else quoted)
              for name, quoted, token in zip(names, pieces[2::4], pieces[3::4])}
    if len(params) != len(names):
        return None  # a name twice: the loop names it
    return params


def _add_param(params: dict[str, str], name: str, v: str, what: str, check_text: bool) -> None:
    """One auth parameter into ``params``: the name lower-cased, a quoted value unquoted; twice, or
    (``check_text``) a value that is not UTF-8 text, is an error naming it."""
    name = name.lower()
    if v.startswith('"'):
        v = v[1:-1]
        if "\\" in v:
            v = _ESCAPED.sub(r"\1", v)
    if name in params:
        raise SipParseError(f"parameter {name[:40]!r} appears twice in {what}")
    if check_text and _BAD_VALUE.search(v):
        raise SipParseError(f"parameter {name[:40]!r} of {what} is not UTF-8 text "
                            "(non-UTF-8 bytes or control characters)")
    params[name] = v


def _q(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _hexer(h: Callable[..., Any]) -> Callable[[str], str]:
    return lambda s: h(s.encode("utf-8")).hexdigest()


# the text → hex digest function of each base algorithm, built once (not a lambda per call)
_HEXERS = {name: _hexer(h) for name, h in _HASHES.items()}


def _by_algorithm(table: dict[str, _V], algorithm: str) -> _V | None:
    """``table``'s entry of ``algorithm`` as usually spelled ("MD5"), else of its base name
    upper-cased ("md5-sess" → "MD5"); None when it has none."""
    known = table.get(algorithm)
    return known if known is not None else table.get(algorithm.upper().removesuffix("-SESS"))


def hash_for(algorithm: str) -> Callable[[str], str]:
    """The text → hex digest function of ``algorithm`` (``-sess`` variants: their base's);
    ValueError for one we cannot compute."""
    h = _by_algorithm(_HEXERS, algorithm)
    if h is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return h


@dataclass
class Challenge:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    stale: bool = False
    domain: str | None = None

    @classmethod
    def parse(cls, value: str) -> "Challenge":
        scheme, p = _parse_auth(value, "challenge")
        if scheme.lower() != "digest":
            raise SipParseError(f"challenge scheme {scheme!r} is not Digest")
        if "realm" not in p or "nonce" not in p:
            raise SipParseError("Digest challenge without realm or nonce")
        qop = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
        return cls(realm=p["realm"], nonce=p["nonce"], opaque=p.get("opaque"),
                   algorithm=p.get("algorithm", "MD5"), qop=qop,
                   stale=p.get("stale", "").lower() == "true", domain=p.get("domain"))

    def __str__(self) -> str:
        parts = [f"realm={_q(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_q(self.domain)}")
        parts.append(f"nonce={_q(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_q(self.opaque)}")
        if self.stale:
            # RFC 7616 §3.3 reads the flag case-insensitively; its ABNF (and RFC 3261 §25.1's)
            # writes the literal "true", which is also what Kamailio and Asterisk send: a client
            # comparing case-sensitively still sees it
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_q(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


@dataclass
class Credentials:
    """An ``Authorization`` / ``Proxy-Authorization`` Digest value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None

    @classmethod
    def parse(cls, value: str) -> "Credentials":
        scheme, p = _parse_auth(value, "credentials")
        if scheme != "Digest" and scheme.lower() != "digest":
            raise SipParseError(f"credentials scheme {scheme!r} is not Digest")
        try:
            username, realm, nonce, uri, response = p["username"], p["realm"], p["nonce"], p["uri"], p["response"]
        except KeyError:
            missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
            raise SipParseError(f"Digest credentials lack {', '.join(missing)}") from None
        get = p.get
        qop, nc, cnonce = get("qop"), get("nc"), get("cnonce")
        if qop is not None and (nc is None or cnonce is None):
            raise SipParseError("Digest credentials with qop lack nc or cnonce")
        if nc is not None and not _NC.match(nc):
            raise SipParseError(f"bad nonce count {nc[:20]!r}")
        algorithm = get("algorithm", "MD5")
        want = _by_algorithm(_HEX_LENGTH, algorithm)
        if (want is not None and len(response) != want) or not _HEX.match(response):
            size = f"{want} " if want else ""
            raise SipParseError(f"parameter 'response' is not {size}hex digits (algorithm {algorithm[:20]!r})")
        return cls(username, realm, nonce, uri, response, algorithm, cnonce, get("opaque"), qop, nc)

    @property
    def nonce_count(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)

    def __str__(self) -> str:
        parts = [f"username={_q(self.username)}", f"realm={_q(self.realm)}",
                 f"nonce={_q(self.nonce)}", f"uri={_q(self.uri)}",
                 f"response={_q(self.response)}", f"algorithm={self.algorithm}"]
        if self.cnonce is not None:
            parts.append(f"cnonce={_q(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_q(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        return "Digest " + ", ".join(parts)


def compute_response(*, algorithm: str, username: str, realm: str, password: str, method: str,
                     uri: str, nonce: str, qop: str | None = None, nc: str | None = None,
                     cnonce: str | None = None, body: bytes = b"") -> str:
    """The ``response`` value of RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1."""
    H = hash_for(algorithm)
    return _response_from_ha1(H, algorithm, H(f"{username}:{realm}:{password}"), method=method, uri=uri,
                              nonce=nonce, qop=qop, nc=nc, cnonce=cnonce, body=body)


def _response_from_ha1(H: Callable[[str], str], algorithm: str, ha1: str, *, method: str, uri: str, nonce: str,
                       qop: str | None, nc: str | None, cnonce: str | None, body: bytes) -> str:
    """:func:`compute_response` from H(user:realm:password), which a server may keep per user."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = H(f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = H(f"{method}:{uri}:{_by_algorithm(_HASHES, algorithm)(body).hexdigest()}")
    else:
        ha2 = H(f"{method}:{uri}")
    if qop:
        return H(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return H(f"{ha1}:{nonce}:{ha2}")


def authorize(challenge: Challenge | str, *, method: str, uri: str, username: str,
              password: str, nc: int = 1, cnonce: str | None = None, body: bytes = b"") -> str:
    """Client side: the Authorization (or Proxy-Authorization) value answering
    ``challenge``. qop ``auth`` is preferred when offered; ``auth-int`` hashes ``body``;
    a challenge without qop gets the RFC 2069 answer (no nc / cnonce)."""
    ch = Challenge.parse(challenge) if isinstance(challenge, str) else challenge
    qop = None
    if ch.qop:
        if "auth" in ch.qop:
            qop = "auth"
        elif "auth-int" in ch.qop:
            qop = "auth-int"
        else:
            raise ValueError(f"no supported qop in {ch.qop!r}")
    nc_text = f"{nc:08x}" if qop else None
    if qop and cnonce is None:
        cnonce = secrets.token_hex(8)
    if not qop:
        cnonce = None
    response = compute_response(algorithm=ch.algorithm, username=username, realm=ch.realm,
                                password=password, method=method, uri=uri, nonce=ch.nonce,
                                qop=qop, nc=nc_text, cnonce=cnonce, body=body)
    return str(Credentials(username=username, realm=ch.realm, nonce=ch.nonce, uri=uri,
                           response=response, algorithm=ch.algorithm, cnonce=cnonce,
                           opaque=ch.opaque, qop=qop, nc=nc_text))


def select_challenge(values: list[str]) -> Challenge:
    """Client side, several challenges (one header line each): the first Digest challenge
    whose algorithm we support (RFC 8760 §2.4: the server lists its preferred first).
    Raises SipParseError when none is usable, naming what was offered."""
    offered = []
    for value in values:
        try:
            ch = Challenge.parse(value)
        except SipParseError as e:
            offered.append(f"unreadable ({e})")
            continue
        if _by_algorithm(_HASHES, ch.algorithm) is not None:
            return ch
        offered.append(ch.algorithm)
    raise SipParseError(f"no usable Digest challenge (offered: {', '.join(offered) or 'none'})")


def make_challenge(realm: str, *, stale: bool = False, nonce: str | None = None,
                   qop: tuple[str, ...] | list[str] = ("auth",), opaque: str | None = None,
                   algorithm: str = "MD5") -> str:
    """A stateless challenge value (random nonce unless given). Servers that verify
    answers use :class:`digestserver.DigestServer`, which remembers its nonces."""
    return str(Challenge(realm=realm, nonce=nonce or secrets.token_hex(16), opaque=opaque,
                         algorithm=algorithm, qop=list(qop), stale=stale))
