"""Who may do what on a fake SIP server: the digest gate (RFC 3261 §22, RFC 7616, RFC 8760), sans-I/O.

Fed a request, the identity it claims and the current phone time; returns None when the
request carries valid credentials of that identity, else the response to send. One gate per
server, shared by its registrar (REGISTER: the identity is the AOR, the To user) and its
router (a new INVITE: the identity is the caller, the From user), so one nonce table and
one ``expire_nonces()`` serve both.

The rules, each a defect a hostile client could use otherwise:

- the digest user must be the identity (``alice``'s password registers no contact for
  ``bob``): 403, as Kamailio's ``auth_check(..., 1)`` does;
- the digest ``uri`` must name the Request-URI (RFC 3261 §22.4; RFC 2617 §3.2.2.5 and RFC
  7616 §3.4.6 say "the server SHOULD return 400 Bad Request" otherwise): 400;
- several challenges are offered, SHA-256 first then MD5 (RFC 8760 §2.4, RFC 7616 §3.7),
  sharing one nonce; an answer with either is accepted. SPEC §3 [interp]: the SPEC names MD5
  for the phone's digest retry; we read it as "MD5 at least": a phone that follows RFC 8760
  picks MD5 from the second challenge, the bundled phone answers the first (SHA-256);
  ``algorithms`` (``--digest``) narrows the offer for a client that takes only the first;
- credentials that cannot be read (non-UTF-8 bytes, a response that is not hex, a realm or
  algorithm not offered) are 400 with the reason; credentials of another scheme, or Digest
  credentials for another realm only, count as no credentials (a challenge), as RFC 4475
  ``regaut01`` expects; a wrong password or an unknown user is 403; right password, old or
  replayed nonce: a new challenge with ``stale=true`` (RFC 7616 §3.3).

401 + WWW-Authenticate / Authorization for a UAS or registrar, 407 + Proxy-Authenticate /
Proxy-Authorization for a proxy (RFC 3261 §22.1, §22.3): the caller says which.
"""

from __future__ import annotations

import re
from typing import Any

from sipharness.sipcore.build import make_response
from sipharness.sipcore.digest import ALGORITHMS, Credentials
from sipharness.sipcore.digestserver import BAD_PASSWORD, OK, STALE, UNKNOWN_USER, DigestServer
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.uri import SipParseError

__all__ = ["DigestGate", "printable"]

_HEADERS = {401: ("Authorization", "WWW-Authenticate"), 407: ("Proxy-Authorization", "Proxy-Authenticate")}
_REASONS = {401: "Unauthorized", 407: "Proxy Authentication Required"}


class _At:
    """The IReactorTime the DigestServer reads, set to the ``now`` each request is handled at
    (the gate stays sans-I/O: time comes in with the request)."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def seconds(self) -> float:
        return self.now


class DigestGate:
    """``users`` (name → password); ``check(request, identity, now, code)`` → None or a response."""

    def __init__(self, realm: str, users: dict[str, str], *, nonce_lifetime: float = 300.0,
                 algorithms: tuple[str, ...] = ALGORITHMS):
        self.realm = realm
        self.users = dict(users)
        self._at = _At()
        self._digest = DigestServer(realm, self._at, nonce_ttl=nonce_lifetime, qop=("auth",), algorithms=algorithms)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms offered, preferred first. Settable: e.g. ``("MD5",)`` for SIPp 3.6,
        which answers only the first challenge and only MD5 (RFC 8760 §2.4 would have it
        pick the first challenge it supports). Nonces issued so far stay valid."""
        return self._digest.algorithms

    @algorithms.setter
    def algorithms(self, names: tuple[str, ...]) -> None:
        self._digest.algorithms = tuple(names)

    def expire_nonces(self) -> None:
        """Make every nonce issued so far stale (the next request using one gets stale=true)."""
        old = self._digest  # a fresh DigestServer knows none of them; same realm, same opaque
        self._digest = DigestServer(old.realm, self._at, nonce_ttl=old.nonce_ttl, qop=old.qop,
                                    algorithms=old.algorithms, opaque=old.opaque, max_nonces=old.max_nonces)

    def challenge(self, request: Any, code: int = 401, *, stale: bool = False) -> Any:
        """The 401/407 with one challenge per algorithm, preferred first."""
        name = _HEADERS[code][1]
        headers = [(name, value) for value in self._digest.make_challenges(stale=stale)]
        return make_response(request, code, _REASONS[code], to_tag=new_tag(), headers=headers)

    def check(self, request: Any, identity: str | None, now: float, code: int = 401) -> Any | None:
        """None when ``request`` carries valid credentials of user ``identity``; else the
        401/407 challenge, 403 or 400 to answer (``code`` 401 for a UAS or registrar, 407 for
        a proxy)."""
        self._at.now = now
        header = _HEADERS[code][0]
        values = request.headers.lines(header)
        if not values:  # the first request of every exchange
            return self.challenge(request, code)
        credentials, unreadable = self._ours(values)
        if credentials is None:
            if unreadable is not None:
                return _refuse(request, 400, f"bad {header}: {unreadable}")
            return self.challenge(request, code)
        result = self._digest.verify(credentials, method=request.method, password_for=self.users.get,
                                     uri=str(request.uri), body=request.body)
        if result.status == OK:
            if result.username != identity:
                whom = printable(identity or "") or "nobody"
                return _refuse(request, 403, f"credentials of {printable(result.username or '')!r} "
                                             f"do not cover {whom!r}")
            return None
        if result.status == STALE:
            return self.challenge(request, code, stale=True)
        if result.status == UNKNOWN_USER:
            return _refuse(request, 403, f"unknown user {printable(result.username or '')!r}")
        if result.status == BAD_PASSWORD:
            return _refuse(request, 403, "wrong password")
        return _refuse(request, 400, f"bad {header}: {result.reason}")

    def _ours(self, values: list[str]) -> tuple[Credentials | None, str | None]:
        """(the Digest credentials for our realm, parsed, or None; why the first unreadable
        Digest value could not be read, or None). Other schemes and other realms are not ours."""
        unreadable = None
        for value in values:
            # "Digest " is how every digest client writes it; anything else is looked at closer
            if not value.startswith("Digest ") and value.strip().split(" ", 1)[0].lower() != "digest":
                continue
            try:
                cr = Credentials.parse(value)
            except SipParseError as e:
                unreadable = unreadable or str(e)
                continue
            if cr.realm == self.realm:
                return cr, None
        return None, unreadable


def _refuse(request: Any, status: int, reason: str) -> Any:
    return make_response(request, status, printable(reason), to_tag=new_tag())


def printable(text: str) -> str:
    """Peer text fit for a reason phrase: printable ASCII, 80 characters at most."""
    return re.sub(r"[^ -~]", "?", text)[:80]
