"""Which logic answers a message: the role of a fake SIP server, sans-I/O.

A PBX-like server (the working or fallback server of the vendor guide) combines the three:
REGISTER → registrar; an INVITE to a user registered here → proxy (and everything else of
that call: CANCEL, ACK, BYE, the responses); an INVITE to anyone else → the UAS answers it
itself, or 404 when ``unknown_user='404'``. The single roles are the same router with
parts switched off: ``registrar`` (REGISTER, OPTIONS; 405 otherwise), ``proxy`` (REGISTER
and forwarding; 404/480 for users without a contact), ``uas`` (answers everything itself).
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.message import make_response, new_tag

from sipharness.fakes.sip.actions import Origin, Respond
from sipharness.fakes.sip.proxy import Proxy
from sipharness.fakes.sip.registrar import Registrar
from sipharness.fakes.sip.uas import Uas

__all__ = ["Pbx", "ROLES"]

ROLES = ("pbx", "registrar", "proxy", "uas")


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
        method = request.method
        role = self.role
        if role == "uas":
            return self.uas.handle(request, origin, now)
        if method == "REGISTER":
            return self.registrar.handle(request, origin, now)
        if role == "registrar":
            if method == "OPTIONS":
                return [Respond(make_response(request, 200, "OK", to_tag=new_tag()))]
            if method == "ACK":
                return []
            return [Respond(make_response(request, 405, "Method Not Allowed", to_tag=new_tag(),
                                          headers={"Allow": "REGISTER, OPTIONS"}))]
        if role == "proxy" or self.proxy.knows(request):
            return self.proxy.handle_request(request, origin, now)
        # pbx: a new call to a registered user is proxied; anything else is ours to answer
        if method == "INVITE" and (request.to is None or not request.to.tag):
            user = request.uri.user
            if user and self.registrar.lookup(user, now):
                return self.proxy.handle_request(request, origin, now)
            if self.unknown_user == "404":
                return self.proxy.handle_request(request, origin, now)  # 404 / 480
        return self.uas.handle(request, origin, now)

    def handle_response(self, response: Any, origin: Origin, now: float) -> list:
        if self.role == "uas":
            return []
        return self.proxy.handle_response(response, origin, now)
