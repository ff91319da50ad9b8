"""The registrar logic of the fake SIP servers (RFC 3261 §10.3), sans-I/O.

Fed a REGISTER, its origin and the current phone time; returns the response to send.
Bindings live per AOR user with an absolute expiry on the injected clock, so a test on the
virtual clock can let a 3600 s binding lapse in milliseconds and ``bindings(aor)`` tells
exactly what is left. Written by hand because the point is control: a test configures the
minimum expiry (423), the users that must authenticate (401, stale nonces) and reads the
bindings back; a real registrar (Kamailio) does all that but cannot be scripted per test.

Digest is :class:`fakes.sip.auth.DigestGate` (on sipcore's DigestServer, the one the phone's
tests also meet): SHA-256 and MD5 offered, the digest user must be the AOR's user (403), the
digest uri the Request-URI (400); a nonce is valid for ``nonce_lifetime`` phone seconds (or
until :meth:`Registrar.expire_nonces`) and its count must grow (stale=true otherwise).

Bounded whatever a peer sends: at most ``max_bindings`` bindings in all and
``max_contacts`` per AOR (a REGISTER that would add one more is answered 503 with
Retry-After, as Kamailio's usrloc answers when its ``max_contacts`` is reached; refreshes
and removals still work), expired bindings are swept when the cap is reached, and an AOR
with no binding left is forgotten (only the last ``max_bindings`` user names are kept for
the proxy's 404/480 distinction). A binding costs ~635 bytes (tracemalloc, 100 000 REGISTERs of
distinct users): the default cap of 100 000 (~60 MB) is above what bench/registrar_rps.py
registers (rate × seconds, 40 000 at 8000/s for 5 s) and far below what a flood would take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sipharness.sipcore.build import make_response
from sipharness.sipcore.digest import ALGORITHMS
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.uri import SipParseError, SipUri

from sipharness.fakes.sip.actions import Origin, Respond
from sipharness.fakes.sip.auth import DigestGate, printable

__all__ = ["Binding", "Registrar", "aor_user"]


@dataclass(slots=True)
class Binding:
    """One registered contact of an AOR.

    Slots and text only (the Contact URI is parsed again when a call needs it): a registrar
    under load keeps tens of thousands of these, and every object they hold is one more for
    the garbage collector to walk (bench/registrar_rps.py). A refresh updates the binding in
    place (most REGISTERs under load are refreshes).
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


MAX_BINDINGS = 100_000  # all AORs together (≈ 60 MB of bindings)
MAX_CONTACTS = 100  # per AOR: also keeps the 200 OK's Contact list inside a datagram
RETRY_AFTER = 60  # seconds, in the 503 of a full registrar


class Registrar:
    """Bindings per AOR; ``handle(register, origin, now)`` → ``[Respond(...)]``.

    ``users`` (name → password) turns digest on: every REGISTER must carry valid
    credentials of the AOR's own user (401 challenge first, 403 for a wrong password, an
    unlisted user or another user's credentials). ``min_expires``: a non-zero expiry below
    it gets 423 with Min-Expires. ``max_expires``: a longer expiry is granted as this one (as
    Kamailio's ``max_expires``: a lab shortens the phones' refresh interval, bench/storm.py
    too). ``max_bindings`` / ``max_contacts``: the caps (503 beyond).
    """

    def __init__(self, *, realm: str = "fake", users: dict[str, str] | None = None,
                 min_expires: int | None = None, max_expires: int | None = None, default_expires: int = 3600,
                 nonce_lifetime: float = 300.0,
                 max_bindings: int = MAX_BINDINGS, max_contacts: int = MAX_CONTACTS,
                 algorithms: tuple[str, ...] = ALGORITHMS):
        if min_expires is not None and min_expires < 0:
            raise ValueError(f"min_expires must be >= 0 seconds, got {min_expires!r}")
        if max_expires is not None and (max_expires < 1 or (min_expires is not None and max_expires < min_expires)):
            raise ValueError(f"max_expires must be >= 1 second and >= min_expires, got {max_expires!r}")
        if max_bindings < 1 or max_contacts < 1:
            raise ValueError(f"max_bindings and max_contacts must be >= 1, got {max_bindings!r}, {max_contacts!r}")
        self.realm = realm
        self.users = dict(users) if users else None
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.nonce_lifetime = nonce_lifetime
        self.max_bindings = max_bindings
        self.max_contacts = max_contacts
        self._bindings: dict[str, dict[str, Binding]] = {}  # user → contact URI text → binding
        self._count = 0  # bindings in _bindings (expired ones included until swept)
        self._swept_at: float | None = None
        #: the digest gate (None without users); the PBX router challenges INVITEs with it too
        self.auth = DigestGate(realm, self.users, nonce_lifetime=nonce_lifetime,
                               algorithms=algorithms) if self.users else None
        # users seen registering (ordered: the oldest are forgotten past max_bindings)
        self.known_users: dict[str, None] = dict.fromkeys(self.users or ())

    # -- queries
    def bindings(self, aor: str, now: float) -> list[tuple[str, float]]:
        """(contact, expires_at) of the live bindings of ``aor`` ("sip:alice@x", "alice@x" or "alice")."""
        return [(b.contact, b.expires_at) for b in self.lookup(aor_user(aor), now)]

    @property
    def binding_count(self) -> int:
        """Bindings held (expired ones not swept yet included): what the cap counts."""
        return self._count

    def lookup(self, user: str, now: float) -> list[Binding]:
        """Live bindings of ``user``, the longest-lived first (expired ones are dropped)."""
        table = self._bindings.get(user)
        if not table:
            return []
        if len(table) == 1:  # the common case, without the sort
            (key, b), = table.items()
            if b.expires_at <= now:
                self._drop(user, table, key)
                return []
            return [b]
        for key in [k for k, b in table.items() if b.expires_at <= now]:
            self._drop(user, table, key)
        return sorted(table.values(), key=lambda b: -b.expires_at)

    def expire_nonces(self) -> None:
        """Make every nonce issued so far stale (the next REGISTER using one gets stale=true)."""
        if self.auth is not None:
            self.auth.expire_nonces()

    # -- the logic
    def handle(self, request: Any, origin: Origin, now: float) -> list[Respond]:
        to = request.to
        to_uri = to.uri if to is not None else None
        user = to_uri.user if to_uri is not None else None
        if not user:
            return [Respond(make_response(request, 400, "To header has no user part", to_tag=new_tag()))]
        if self.auth is not None:
            denied = self.auth.check(request, user, now, 401)
            if denied is not None:
                return [Respond(denied)]
        contacts = request.contacts
        try:
            header_expires = request.expires
        except SipParseError as e:
            return [Respond(make_response(request, 400, printable(str(e)), to_tag=new_tag()))]
        if request.contact_star:
            # RFC 3261 §10.3 step 6: "*" only with Expires: 0 and no other Contact
            if header_expires != 0 or contacts:
                return [Respond(make_response(request, 400, 'Contact "*" needs Expires: 0 and no other Contact',
                                              to_tag=new_tag()))]
            table = self._bindings.pop(user, None)
            self._count -= len(table or ())
            return [Respond(self._ok(request, None, now))]
        changes = []
        default = header_expires if header_expires is not None else self.default_expires
        min_expires = self.min_expires
        for c in contacts:
            if "expires" in c.params:
                try:
                    expires = c.expires  # RFC 3261 §10.3 step 7: the parameter, else the header, else ours
                except SipParseError as e:
                    return [Respond(make_response(request, 400, printable(str(e)), to_tag=new_tag()))]
            else:
                expires = default
            if expires and min_expires is not None and expires < min_expires:
                return [Respond(make_response(request, 423, "Interval Too Brief", to_tag=new_tag(),
                                              headers={"Min-Expires": str(min_expires)}))]
            if expires and self.max_expires is not None and expires > self.max_expires:
                expires = self.max_expires  # RFC 3261 §10.3 step 7: the registrar may shorten it
            changes.append((c.uri_text, expires))  # str(c.uri), without writing it again when parsed so
        bindings = self._bindings
        table = bindings.get(user)
        if table:
            live = self.lookup(user, now)
            added = len({key for key, expires in changes if expires and key not in table})
        else:
            live = []
            added = len({key for key, expires in changes if expires})
        if added:
            full = self._full(now, len(live) + added)
            if full:
                return [Respond(make_response(request, 503, full, to_tag=new_tag(),
                                              headers={"Retry-After": str(RETRY_AFTER)}))]
        self._remember(user)
        table = bindings.get(user)
        if table is None:
            table = bindings[user] = {}
        if origin.flow is not None and origin.transport == "udp":
            # a UDP client is reached at its address: the socket handle (and the datagram it
            # carries) is not kept for the binding's lifetime (tens of thousands under load)
            origin = Origin("udp", origin.peer, origin.local)
        aor = None
        for key, expires in changes:
            if expires == 0:
                if table.pop(key, None) is not None:
                    self._count -= 1
                continue
            if aor is None:
                aor = to.uri_text
            b = table.get(key)
            if b is None:
                self._count += 1
                table[key] = Binding(aor, key, now + expires, origin, request.call_id, request.cseq[0])
            else:  # a refresh (most REGISTERs): the binding updated in place, not built again
                b.aor, b.expires_at, b.origin, b.call_id, b.cseq = (aor, now + expires, origin, request.call_id,
                                                                    request.cseq[0])
        if not table:
            del bindings[user]
        return [Respond(self._ok(request, table, now))]

    def _full(self, now: float, contacts_after: int) -> str | None:
        """Why one more binding does not fit (None: it fits): per AOR, then in all (after
        sweeping the expired ones, at most once a second of phone time under a flood)."""
        if contacts_after > self.max_contacts:
            return f"too many contacts for this AOR (max {self.max_contacts})"
        if self._count >= self.max_bindings and (self._swept_at is None or now >= self._swept_at + 1.0):
            self._swept_at = now
            for user in list(self._bindings):
                self.lookup(user, now)
        if self._count >= self.max_bindings:
            return f"registrar full ({self.max_bindings} bindings)"
        return None

    def _drop(self, user: str, table: dict[str, Binding], key: str) -> None:
        del table[key]
        self._count -= 1
        if not table:
            self._bindings.pop(user, None)

    def _remember(self, user: str) -> None:
        known = self.known_users
        if user in known:
            return
        known[user] = None
        if len(known) > self.max_bindings:
            del known[next(iter(known))]

    def _ok(self, request: Any, table: dict[str, Binding] | None, now: float) -> Any:
        """The 200 listing the AOR's bindings (``table``: every one live, just updated), the
        longest-lived first (RFC 3261 §10.3 step 8)."""
        if not table:
            return make_response(request, 200, "OK", to_tag=new_tag())
        if len(table) == 1:  # the common case, without the sort and the join
            b, = table.values()
            contact = _listed(b, now)
        else:
            contact = ", ".join(_listed(b, now) for b in sorted(table.values(), key=lambda b: -b.expires_at))
        return make_response(request, 200, "OK", to_tag=new_tag(), headers=(("Contact", contact),))


def _listed(b: Binding, now: float) -> str:
    """A binding as the 200's Contact lists it: ``<uri>;expires=<seconds left>``."""
    return f"<{b.contact}>;expires={max(0, math.ceil(b.expires_at - now))}"
