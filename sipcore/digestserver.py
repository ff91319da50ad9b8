"""The server side of SIP Digest (RFC 3261 §22, RFC 2617, RFC 7616): issue challenges, check answers.

The server tracks the nonces it issued so a replayed nonce count or an expired nonce is told
apart from a wrong password (``stale=true`` challenge, RFC 2617 §3.2.1), which is what a phone's
re-authentication logic is tested against. Sans-I/O: header values in, a :class:`DigestResult`
out; time from an injected ``IReactorTime`` (never the wall clock). Parsing, writing and the
response computation are ``digest.py``'s, shared with the client side.

Per answer the work is the parse (``digest.py``'s fast path for the usual list), two hashes (H(A2) and
the response: H(user:realm:password) is kept per user and password, bounded like the nonce table) and
a few comparisons; a registrar under load (bench/registrar_rps.py) verifies one answer per REGISTER.

Hostile input is refused as ``digest.py`` says: a malformed ``Authorization`` is a MALFORMED
result naming the parameter (a server answers 400), never an exception from the hash or the
comparison.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Callable

from sipharness.sipcore.digest import ALGORITHMS, Challenge, Credentials, _response_from_ha1, hash_for
from sipharness.sipcore.ids import _random_hex
from sipharness.sipcore.uri import SipParseError, SipUri

__all__ = ["DigestServer", "DigestResult", "OK", "STALE", "BAD_PASSWORD", "UNKNOWN_USER", "MALFORMED"]


OK = "ok"
STALE = "stale"
BAD_PASSWORD = "bad_password"
UNKNOWN_USER = "unknown_user"
MALFORMED = "malformed"


@dataclass
class DigestResult:
    """Outcome of :meth:`DigestServer.verify`. ``status`` is one of OK, STALE (right
    password, nonce expired / unknown / count replayed: challenge again with
    ``stale=True``), BAD_PASSWORD, UNKNOWN_USER, MALFORMED."""

    status: str
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def __bool__(self) -> bool:
        return self.ok


_NONCE_MARK = "\x00nonce\x00"  # where a challenge template takes its nonce (no realm holds a NUL)


class DigestServer:
    """Server side of Digest: issues challenges and checks answers against the nonces it
    issued. ``clock``: an ``IReactorTime`` (its ``seconds()``) for nonce expiry; without a
    clock nonces never expire. Nonce counts must increase (replay → STALE).

    ``algorithms``: what is offered, preferred first (default :data:`ALGORITHMS`: SHA-256
    then MD5); an answer with any of them is accepted. ``algorithm`` (one name) is the
    older spelling of a single offer."""

    def __init__(self, realm: str, clock: Any = None, *, nonce_ttl: float = 300.0,
                 qop: tuple[str, ...] = ("auth",), algorithm: str | None = None,
                 algorithms: tuple[str, ...] | list[str] | None = None,
                 opaque: str | None = None, max_nonces: int = 10000) -> None:
        if algorithms is None:
            algorithms = (algorithm,) if algorithm is not None else ALGORITHMS
        self.algorithms = tuple(algorithms)
        self.realm = realm
        self.clock = clock
        self.nonce_ttl = nonce_ttl
        self.qop = tuple(qop)
        self.opaque = opaque if opaque is not None else secrets.token_hex(8)
        self.max_nonces = max_nonces
        # nonce → (when issued, the highest nonce count seen): a tuple of numbers, replaced when
        # the count moves, which the garbage collector stops tracking (an object per nonce was
        # one more for every full collection to walk, 10 000 of them under load)
        self._nonces: dict[str, tuple[float, int]] = {}
        self._templates: dict[tuple, list[list[str]]] = {}  # make_challenges' values, cut at the nonce
        # H(user:realm:password) per (algorithm, user, realm, password): the same for every answer of a
        # user until the password changes (it is in the key); bounded like the nonce table
        self._ha1: dict[tuple[str, str, str, str], str] = {}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms offered, preferred first (settable; issued nonces stay valid)."""
        return self._algorithms

    @algorithms.setter
    def algorithms(self, names: tuple[str, ...]) -> None:
        names = tuple(names)
        if not names:
            raise ValueError("a DigestServer offers at least one algorithm")
        for name in names:
            hash_for(name)  # ValueError for an algorithm we cannot compute
        self._algorithms = names
        # what verify() accepts, as sent (the usual spelling) and upper-cased: built once, not per answer
        self._offered = frozenset(names) | {name.upper() for name in names}

    @property
    def algorithm(self) -> str:
        """The preferred algorithm (the first offered)."""
        return self._algorithms[0]

    def _now(self) -> float:
        return 0.0 if self.clock is None else float(self.clock.seconds())

    def _new_nonce(self, nonce: str | None) -> str:
        nonce = nonce or _random_hex(32)  # 128 bits from os.urandom, pooled (sipcore.ids)
        if len(self._nonces) >= self.max_nonces:
            # forget the oldest half (dicts keep insertion order)
            for key in list(self._nonces)[: self.max_nonces // 2]:
                del self._nonces[key]
        self._nonces[nonce] = (self._now(), 0)
        return nonce

    def make_challenges(self, *, stale: bool = False, nonce: str | None = None) -> list[str]:
        """One WWW-Authenticate (or Proxy-Authenticate) value per offered algorithm, preferred
        first, all with one fresh (tracked) nonce, as RFC 7616 §3.9.1's example does."""
        nonce = self._new_nonce(nonce)
        key = (self._algorithms, stale, self.realm, self.opaque, self.qop)
        templates = self._templates.get(key)
        if templates is None:  # the values differ by their nonce only: written once, then filled in
            if len(self._templates) > 16:
                self._templates.clear()
            templates = self._templates[key] = [
                str(Challenge(realm=self.realm, nonce=_NONCE_MARK, opaque=self.opaque, algorithm=name,
                              qop=list(self.qop), stale=stale)).split(_NONCE_MARK) for name in self.algorithms]
        return [nonce.join(parts) for parts in templates]

    def make_challenge(self, *, stale: bool = False, nonce: str | None = None) -> str:
        """A challenge value for the preferred algorithm only, with a fresh (tracked) nonce."""
        nonce = self._new_nonce(nonce)
        return str(Challenge(realm=self.realm, nonce=nonce, opaque=self.opaque,
                             algorithm=self.algorithm, qop=list(self.qop), stale=stale))

    def verify(self, authorization: "str | Credentials", *, method: str,
               password_for: Callable[[str], str | None], body: bytes = b"",
               uri: str | None = None) -> DigestResult:
        """Check an Authorization value (or the :class:`Credentials` parsed from it already)
        for a request of ``method`` (and Request-URI ``uri`` if given).
        ``password_for(username)`` returns the password or None.

        ``uri``: the digest ``uri`` must name the Request-URI (RFC 2617 §3.2.2.5, RFC 7616
        §3.4.6: "the server SHOULD return 400 Bad Request" otherwise: MALFORMED); SIP URIs are
        compared by RFC 3261 §19.1.4 equivalence, anything else as text."""
        if isinstance(authorization, Credentials):
            cr = authorization
        else:
            try:
                cr = Credentials.parse(authorization)
            except SipParseError as e:
                return DigestResult(MALFORMED, reason=str(e))
        username = cr.username
        if cr.realm != self.realm:
            return DigestResult(MALFORMED, username, f"realm {cr.realm[:40]!r} is not ours")
        algorithm = cr.algorithm
        if algorithm not in self._offered and algorithm.upper() not in self._offered:
            return DigestResult(MALFORMED, username, f"algorithm {algorithm[:40]!r} was not offered")
        if self.qop and cr.qop not in self.qop:
            return DigestResult(MALFORMED, username, f"qop {cr.qop!r} was not offered")
        if uri is not None and cr.uri != uri and not _same_uri(cr.uri, uri):
            return DigestResult(MALFORMED, username,
                                f"digest uri {cr.uri[:80]!r} is not the Request-URI {uri[:80]!r}")
        password = password_for(username)
        if password is None:
            return DigestResult(UNKNOWN_USER, username, "no such user")
        H = hash_for(algorithm)  # (offered, so computable)
        key = (algorithm, username, cr.realm, password)
        ha1 = self._ha1.get(key)
        if ha1 is None:
            if len(self._ha1) >= self.max_nonces:
                self._ha1.clear()
            ha1 = self._ha1[key] = H(f"{username}:{cr.realm}:{password}")
        expected = _response_from_ha1(H, algorithm, ha1, method=method, uri=cr.uri, nonce=cr.nonce, qop=cr.qop,
                                      nc=cr.nc, cnonce=cr.cnonce, body=body)
        # both ASCII hex (Credentials.parse checked the response), as compare_digest needs
        if not secrets.compare_digest(expected, cr.response.lower()):
            return DigestResult(BAD_PASSWORD, username, "wrong response")
        state = self._nonces.get(cr.nonce)
        if state is None:
            return DigestResult(STALE, username, "nonce not issued by this server")
        issued, last_nc = state
        if self.clock is not None and self._now() - issued > self.nonce_ttl:
            del self._nonces[cr.nonce]
            return DigestResult(STALE, username, "nonce expired")
        if cr.opaque is not None and cr.opaque != self.opaque:
            return DigestResult(MALFORMED, username, "opaque does not match")
        if cr.nc is not None:
            nc = int(cr.nc, 16)  # eight hex digits (Credentials.parse checked)
            if nc <= last_nc:
                return DigestResult(STALE, username, f"nonce count {nc} not above {last_nc}")
            self._nonces[cr.nonce] = (issued, nc)
        return DigestResult(OK, username)


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    if digest_uri == request_uri:
        return True
    try:
        return SipUri.parse(digest_uri) == SipUri.parse(request_uri)
    except SipParseError:
        return False
