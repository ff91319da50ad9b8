"""Which logic answers a message: the role of a fake SIP server, sans-I/O.

A PBX-like server (the working or fallback server of the vendor guide) combines the three:
REGISTER → registrar; an INVITE to a user registered here → proxy (and everything else of
that call: CANCEL, ACK, BYE, the responses); an INVITE to anyone else → the UAS answers it
itself, or 404 when ``unknown_user='404'``. The single roles are the same router with
parts switched off: ``registrar`` (REGISTER, OPTIONS; 405 otherwise), ``proxy`` (REGISTER
and forwarding; 404/480 for users without a contact), ``uas`` (answers everything itself).

Before a request reaches its logic, the router inspects it as RFC 3261 has the element that
answers it do (the RFC 4475 torture messages check these):

- a Request-URI scheme other than sip, sips or tel → 416 (§8.2.2.1, §16.3 step 2);
- answered here (UAS or registrar): a method nobody here knows → 501 Not Implemented with
  Allow (§8.2.1 and §21.5.2: 405 is for a method the element *recognizes* but does not
  allow, e.g. INVITE to a registrar-only server); an option tag in Require we do not
  support → 420 with Unsupported (§8.2.2.3, §10.3 step 2); ACK and CANCEL are never
  refused this way;
- forwarded (proxy): only Proxy-Require is ours to inspect (§16.3 step 4) → 420;
- with users configured, a new INVITE must carry credentials of its caller (the From user):
  401 from a UAS, 407 from a proxy (§22.1, §22.3), through the registrar's digest gate.
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.build import make_response
from sipharness.sipcore.ids import new_tag

from sipharness.fakes.sip.actions import Origin, Respond
from sipharness.fakes.sip.proxy import Proxy
from sipharness.fakes.sip.registrar import Registrar
from sipharness.fakes.sip.uas import UAS_METHODS, Uas

__all__ = ["Pbx", "ROLES", "KNOWN_METHODS", "SUPPORTED_OPTIONS", "SCHEMES"]

ROLES = ("pbx", "registrar", "proxy", "uas")
#: Methods of RFC 3261 and its extensions (PRACK 3262, SUBSCRIBE/NOTIFY 6665, UPDATE 3311,
#: INFO 6086, REFER 3515, MESSAGE 3428, PUBLISH 3903): known, so 405 when not served here.
KNOWN_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
                           "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"})
REGISTRAR_METHODS = ("REGISTER", "OPTIONS", "ACK")
#: Option tags a fake supports in Require (none: it implements no extension).
SUPPORTED_OPTIONS: frozenset[str] = frozenset()
SCHEMES = ("sip", "sips", "tel")

_REGISTRAR, _PROXY, _UAS = "registrar", "proxy", "uas"


class Pbx:
    """``handle_request(request, origin, now)`` / ``handle_response(...)`` → actions (fakes.sip.actions)."""

    def __init__(self, role: str = "pbx", *, addresses: dict[str, tuple[str, int]] | None = None,
                 domain: str | None = None, users: dict[str, str] | None = None, min_expires: int | None = None,
                 answer_delay: float = 0.0, unknown_user: str = "uas"):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        if unknown_user not in ("uas", "404"):
            raise ValueError(f"unknown_user must be 'uas' or '404', got {unknown_user!r}")
        self.role = role
        self.unknown_user = unknown_user
        self.addresses = addresses if addresses is not None else {}
        self.registrar = Registrar(realm=domain or "fake", users=users, min_expires=min_expires)
        self.proxy = Proxy(self.registrar, self.addresses, domains=(domain,) if domain else ())
        self.uas = Uas(answer_delay=answer_delay)

    def handle_request(self, request: Any, origin: Origin, now: float) -> list:
        handler = self._route(request, now)
        refused = self._inspect(request, handler, now)
        if refused is not None:
            return [] if request.method == "ACK" else [Respond(refused)]
        if handler == _REGISTRAR:
            if request.method == "REGISTER":
                return self.registrar.handle(request, origin, now)
            if request.method == "ACK":
                return []
            return [Respond(make_response(request, 200, "OK", to_tag=new_tag()))]  # OPTIONS
        if handler == _PROXY:
            return self.proxy.handle_request(request, origin, now)
        return self.uas.handle(request, origin, now)

    def handle_response(self, response: Any, origin: Origin, now: float) -> list:
        if self.role == "uas":
            return []
        return self.proxy.handle_response(response, origin, now)

    # -- routing and inspection
    def _route(self, request: Any, now: float) -> str:
        """Which logic answers ``request``: registrar, proxy or UAS."""
        method = request.method
        role = self.role
        if role == "uas":
            return _UAS
        if method == "REGISTER" or role == "registrar":
            return _REGISTRAR
        if role == "proxy" or self.proxy.knows(request):
            return _PROXY
        # pbx: a new call to a registered user is proxied; anything else is ours to answer
        if method == "INVITE" and (request.to is None or not request.to.tag):
            user = request.uri.user
            if (user and self.registrar.lookup(user, now)) or self.unknown_user == "404":
                return _PROXY  # forwarded, or 404 / 480
        return _UAS

    def _inspect(self, request: Any, handler: str, now: float) -> Any | None:
        """The response refusing ``request`` before its logic sees it, or None."""
        method = request.method
        if request.uri.scheme not in SCHEMES:
            return _refuse(request, 416, "Unsupported URI Scheme")
        if method in ("ACK", "CANCEL"):
            return None
        if handler == _PROXY:
            unsupported = _unsupported(request, "Proxy-Require")
            if unsupported:
                return _refuse(request, 420, "Bad Extension", {"Unsupported": ", ".join(unsupported)})
        else:
            allowed = REGISTRAR_METHODS if handler == _REGISTRAR else UAS_METHODS
            if method not in allowed:
                status = 405 if method in KNOWN_METHODS else 501
                return _refuse(request, status, None, {"Allow": ", ".join(allowed)})
            unsupported = _unsupported(request, "Require")
            if unsupported:
                return _refuse(request, 420, "Bad Extension", {"Unsupported": ", ".join(unsupported)})
        auth = self.registrar.auth
        if auth is not None and method == "INVITE" and (request.to is None or not request.to.tag):
            caller = request.from_.uri.user if request.from_ is not None else None
            return auth.check(request, caller, now, 407 if handler == _PROXY else 401)
        return None


def _unsupported(request: Any, header: str) -> list[str]:
    """The option tags of ``header`` (Require or Proxy-Require) we do not support, as sent."""
    return [tag for tag in request.headers.get_all(header) if tag.lower() not in SUPPORTED_OPTIONS]


def _refuse(request: Any, status: int, reason: str | None, headers: dict[str, str] | None = None) -> Any:
    return make_response(request, status, reason, to_tag=new_tag(), headers=headers)
