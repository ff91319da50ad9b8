"""The registrar logic of the fake SIP servers (RFC 3261 §10.3), sans-I/O.

Fed a REGISTER, its origin and the current phone time; returns the response to send.
Bindings live per AOR user with an absolute expiry on the injected clock, so a test on the
virtual clock can let a 3600 s binding lapse in milliseconds and ``bindings(aor)`` tells
exactly what is left. Written by hand because the point is control: a test configures the
minimum expiry (423), the users that must authenticate (401, stale nonces) and reads the
bindings back; a real registrar (Kamailio) does all that but cannot be scripted per test.

Digest (RFC 2617 / RFC 7616 / RFC 3261 §22.4, MD5, qop=auth) is sipcore's
:class:`sipcore.digest.DigestServer`, the one the phone's tests also meet: a nonce is valid
for ``nonce_lifetime`` phone seconds (or until :meth:`Registrar.expire_nonces`) and its
nonce count must grow; a right password with an old, unknown or replayed nonce gets a new
challenge with ``stale=true`` (401), a wrong password or an unknown user 403, credentials
that cannot be read (or name another realm, an algorithm or qop not offered) 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sipharness.sipcore.digest import BAD_PASSWORD, OK, STALE, UNKNOWN_USER, DigestServer
from sipharness.sipcore.message import make_response, new_tag
from sipharness.sipcore.uri import SipUri

from sipharness.fakes.sip.actions import Origin, Respond

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


class _At:
    """The IReactorTime DigestServer reads, set to the ``now`` each request is handled at
    (the registrar stays sans-I/O: time comes in with the request)."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def seconds(self) -> float:
        return self.now


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
        self._at = _At()
        self._digest = DigestServer(realm, self._at, nonce_ttl=nonce_lifetime, qop=("auth",), algorithm="MD5")
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
        old = self._digest  # a fresh DigestServer knows none of them; same realm, same opaque
        self._digest = DigestServer(old.realm, self._at, nonce_ttl=old.nonce_ttl, qop=old.qop,
                                    algorithm=old.algorithm, opaque=old.opaque, max_nonces=old.max_nonces)

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

    def _challenge(self, request: Any, stale: bool = False) -> Any:
        value = self._digest.make_challenge(stale=stale)
        # sipcore.digest writes stale=TRUE (RFC 2617's ABNF is case-insensitive); RFC 7616 §3.3
        # and the peers write it lower-case, as this fake always did
        value = value.replace("stale=TRUE", "stale=true")
        return make_response(request, 401, "Unauthorized", to_tag=new_tag(), headers={"WWW-Authenticate": value})

    def _authenticate(self, request: Any, now: float) -> Any | None:
        """None when the request carries valid credentials; else the 401/403/400 to send."""
        self._at.now = now
        value = request.headers.get("Authorization")
        if value is None:
            return self._challenge(request)
        result = self._digest.verify(value, method=request.method, password_for=self.users.get)
        if result.status == OK:
            return None
        if result.status == STALE:  # right password, old or unknown nonce: RFC 7616 §3.3
            return self._challenge(request, stale=True)
        if result.status == UNKNOWN_USER:
            return make_response(request, 403, f"unknown user {_printable(result.username or '')!r}",
                                 to_tag=new_tag())
        if result.status == BAD_PASSWORD:
            return make_response(request, 403, "wrong password", to_tag=new_tag())
        return make_response(request, 400, f"bad Authorization: {_printable(result.reason)}", to_tag=new_tag())


def _printable(text: str) -> str:
    """Peer text fit for a reason phrase: printable ASCII, 80 characters at most."""
    return re.sub(r"[^ -~]", "?", text)[:80]


def _int_or_none(text: str) -> int | None:
    text = (text or "").strip()
    if not text.isdigit() or len(text) > 10:
        return None
    return int(text)
