"""The registrar logic of the fake SIP servers (RFC 3261 §10.3), sans-I/O.

Fed a REGISTER, its origin and the current phone time; returns the response to send.
Bindings live per AOR user with an absolute expiry on the injected clock, so a test on the
virtual clock can let a 3600 s binding lapse in milliseconds and ``bindings(aor)`` tells
exactly what is left. Written by hand because the point is control: a test configures the
minimum expiry (423), the users that must authenticate (401, stale nonces) and reads the
bindings back; a real registrar (Kamailio) does all that but cannot be scripted per test.

Digest (RFC 2617 / RFC 3261 §22.4, MD5, qop=auth or none) is checked here with a private
helper: a nonce is valid for ``nonce_lifetime`` phone seconds (or until
:meth:`Registrar.expire_nonces`), a request carrying an old or unknown nonce gets a new
challenge with ``stale=true``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from sipcore.message import make_response, new_tag
from sipcore.uri import SipUri

from fakes.sip.actions import Origin, Respond

__all__ = ["Binding", "Registrar", "aor_user"]


@dataclass(slots=True)
class Binding:
    """One registered contact of an AOR.

    Slots and text only (the Contact URI is parsed again when a call needs it): a registrar
    under load keeps tens of thousands of these, and every object they hold is one more for
    the garbage collector to walk (bench/registrar_rps.py).
    """

    aor: str  # "sip:alice@example.com" as the To header said
    contact: str  # the Contact URI as registered, e.g. "sip:alice@127.0.0.1:5062;transport=udp"
    expires_at: float  # phone time on the server's clock
    origin: Origin  # where the REGISTER came from (flow reused to reach a TCP client)
    call_id: str
    cseq: int

    @property
    def uri(self) -> Any:
        """The contact as a fresh SipUri (a caller may change it freely)."""
        return SipUri.parse(self.contact)


def aor_user(aor: str) -> str:
    """The key bindings are kept under: the user part of an AOR ("sip:alice@x" → "alice").

    A fake PBX serves whatever host the phone put in its To header (the configured server
    address or the domain), so the user part alone names the account.
    """
    text = aor.strip().strip("<>")
    for scheme in ("sips:", "sip:"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
            break
    user = text.split("@", 1)[0] if "@" in text else text
    return user.split(";", 1)[0]


_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


def _parse_authorization(value: str) -> dict[str, str] | None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if not m or m.end() == pos:
            return None
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[m.group(1).lower()] = v
        pos = m.end()
    return params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class Registrar:
    """Bindings per AOR; ``handle(register, origin, now)`` → ``[Respond(...)]``.

    ``users`` (name → password) turns digest on: every REGISTER must carry valid
    credentials of a listed user (401 challenge first, 403 for a wrong password or an
    unlisted user). ``min_expires``: a non-zero expiry below it gets 423 with Min-Expires.
    """

    def __init__(self, *, realm: str = "fake", users: dict[str, str] | None = None,
                 min_expires: int | None = None, default_expires: int = 3600, nonce_lifetime: float = 300.0):
        if min_expires is not None and min_expires < 0:
            raise ValueError(f"min_expires must be >= 0 seconds, got {min_expires!r}")
        self.realm = realm
        self.users = dict(users) if users else None
        self.min_expires = min_expires
        self.default_expires = default_expires
        self.nonce_lifetime = nonce_lifetime
        self._bindings: dict[str, dict[str, Binding]] = {}  # user → contact URI text → binding
        self._nonces: dict[str, float] = {}  # nonce → issued at
        self.known_users: set[str] = set(self.users or ())

    # -- queries
    def bindings(self, aor: str, now: float) -> list[tuple[str, float]]:
        """(contact, expires_at) of the live bindings of ``aor`` ("sip:alice@x", "alice@x" or "alice")."""
        return [(b.contact, b.expires_at) for b in self.lookup(aor_user(aor), now)]

    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live bindings of ``user``, the longest-lived first (expired ones are dropped)."""
        table = self._bindings.get(user)
        if not table:
            return []
        if len(table) == 1:  # the common case, without the sort
            (key, b), = table.items()
            if b.expires_at <= now:
                del table[key]
                return []
            return [b]
        for key in [k for k, b in table.items() if b.expires_at <= now]:
            del table[key]
        return sorted(table.values(), key=lambda b: -b.expires_at)

    def expire_nonces(self) -> None:
        """Make every nonce issued so far stale (the next REGISTER using one gets stale=true)."""
        self._nonces.clear()

    # -- the logic
    def handle(self, request: Any, origin: Origin, now: float) -> list[Respond]:
        to = request.to
        to_uri = to.uri if to is not None else None
        user = to_uri.user if to_uri is not None else None
        if not user:
            return [Respond(make_response(request, 400, "To header has no user part", to_tag=new_tag()))]
        if self.users is not None:
            denied = self._authenticate(request, now)
            if denied is not None:
                return [Respond(denied)]
        contacts = request.contacts
        header_expires = request.expires
        if request.contact_star:
            # RFC 3261 §10.3 step 6: "*" only with Expires: 0 and no other Contact
            if header_expires != 0 or contacts:
                return [Respond(make_response(request, 400, 'Contact "*" needs Expires: 0 and no other Contact',
                                              to_tag=new_tag()))]
            self._bindings.pop(user, None)
            return [Respond(self._ok(request, user, now))]
        changes = []
        for c in contacts:
            raw = c.params.get("expires") if c.params else None
            expires = header_expires if raw is None else _int_or_none(raw)
            if expires is None:
                expires = self.default_expires if raw is None else None
            if expires is None:
                return [Respond(make_response(request, 400, f"bad expires parameter {raw!r}", to_tag=new_tag()))]
            if expires and self.min_expires is not None and expires < self.min_expires:
                return [Respond(make_response(request, 423, "Interval Too Brief", to_tag=new_tag(),
                                              headers={"Min-Expires": str(self.min_expires)}))]
            changes.append((c, expires))
        table = self._bindings.setdefault(user, {})
        self.known_users.add(user)
        aor = str(to_uri)
        for c, expires in changes:
            key = str(c.uri)
            if expires == 0:
                table.pop(key, None)
            else:
                table[key] = Binding(aor, key, now + expires, origin, request.call_id, request.cseq[0])
        return [Respond(self._ok(request, user, now))]

    def _ok(self, request: Any, user: str, now: float) -> Any:
        live = self.lookup(user, now)
        headers = {}
        if live:
            headers["Contact"] = ", ".join(f"<{b.contact}>;expires={max(0, math.ceil(b.expires_at - now))}"
                                           for b in live)
        return make_response(request, 200, "OK", to_tag=new_tag(), headers=headers)

    def _challenge(self, request: Any, now: float, stale: bool = False) -> Any:
        nonce = os.urandom(12).hex()
        self._nonces[nonce] = now
        value = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
        if stale:
            value += ", stale=true"
        return make_response(request, 401, "Unauthorized", to_tag=new_tag(), headers={"WWW-Authenticate": value})

    def _authenticate(self, request: Any, now: float) -> Any | None:
        """None when the request carries valid credentials; else the 401/403 to send."""
        value = request.headers.get("Authorization")
        if value is None:
            return self._challenge(request, now)
        p = _parse_authorization(value)
        if p is None or not all(k in p for k in ("username", "realm", "nonce", "uri", "response")):
            return make_response(request, 400, "malformed Authorization header", to_tag=new_tag())
        issued = self._nonces.get(p["nonce"])
        if issued is None or now - issued > self.nonce_lifetime:
            return self._challenge(request, now, stale=True)
        password = self.users.get(p["username"])
        if password is None:
            return make_response(request, 403, f"unknown user {p['username']!r}", to_tag=new_tag())
        ha1 = _md5(f"{p['username']}:{p['realm']}:{password}")
        ha2 = _md5(f"{request.method}:{p['uri']}")
        if p.get("qop"):
            expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        if expected != p["response"].lower():
            return make_response(request, 403, "wrong password", to_tag=new_tag())
        return None


def _int_or_none(text: str) -> int | None:
    text = (text or "").strip()
    if not text.isdigit() or len(text) > 10:
        return None
    return int(text)
