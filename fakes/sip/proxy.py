"""The proxy logic of the fake SIP servers (RFC 3261 §16), sans-I/O and deliberately small.

Transaction-stateful just enough for a failover test: an INVITE (and CANCEL, ACK, BYE) to a
user registered here is forwarded to the registered contact with our Via pushed and a
Record-Route added, so in-dialog requests traverse us; responses come back by our Via
branch, are popped and answered upstream through the upstream server transaction (which
absorbs the caller's retransmissions). A non-2xx final to a forwarded INVITE is ACKed here
(hop by hop, RFC 3261 §16.7 / §17.1.1.3). No forking (the newest binding wins), no
retransmission downstream (loopback does not lose datagrams; the caller's retransmissions
are answered from the upstream transaction). 404 for a user never seen, 480 for a known
user with no live contact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from sipharness.sipcore.message import make_request, make_response, new_tag
from sipharness.sipcore.message import MAGIC_COOKIE
from sipharness.sipcore.uri import SipUri, default_port

from sipharness.fakes.sip.actions import Origin, Relay, Respond
from sipharness.fakes.sip.registrar import Registrar

__all__ = ["Proxy"]



@dataclass
class _Leg:
    """One forwarded request: what came from upstream and where it went."""

    upstream: Any  # the request as received
    origin: Origin
    forwarded: Any  # the request as sent downstream
    transport: str
    address: tuple[str, int]
    flow: Any


def _split_uri(text: str) -> Any:
    text = text.strip()
    if "<" in text:
        text = text[text.index("<") + 1:text.index(">")]
    return SipUri.parse(text)


class Proxy:
    """``handle_request(request, origin, now)`` / ``handle_response(response, origin, now)`` → actions.

    ``addresses`` (transport → (host, port)) are the server's listeners, read at each call
    (the adapter fills the dict as it listens); ``domains`` are extra host names that mean us.
    """

    def __init__(self, registrar: Registrar, addresses: dict[str, tuple[str, int]], *,
                 domains: tuple[str, ...] = (), is_up: Callable[[], bool] | None = None):
        self.registrar = registrar
        self.addresses = addresses
        self.domains = tuple(d.lower() for d in domains)
        self._legs: dict[tuple[str, str], _Leg] = {}  # (our branch, method) → leg
        self._by_upstream: dict[tuple, str] = {}  # (upstream branch, call-id) → our branch (INVITE)
        self.call_ids: set[str] = set()  # calls handled here (the PBX routes their requests to us)

    # -- helpers
    def is_mine(self, uri: Any) -> bool:
        host = (uri.host or "").lower()
        if host in self.domains:
            return True
        for _, (h, p) in self.addresses.items():
            if host == h.lower() and (uri.port is None or uri.port == p):
                return True
        return False

    def knows(self, request: Any) -> bool:
        """True when ``request`` belongs to a call this proxy forwarded (PBX routing)."""
        return request.call_id in self.call_ids

    def _branch_for(self, request: Any, extra: str = "") -> str:
        via = request.top_via
        seed = f"{via.branch if via else ''}|{request.call_id}|{request.cseq[0]}|{extra}"
        return MAGIC_COOKIE + "fk" + hashlib.sha1(seed.encode()).hexdigest()[:16]

    def _via(self, transport: str, branch: str) -> str:
        host, port = self.addresses.get(transport) or next(iter(self.addresses.values()))
        hostpart = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{transport.upper()} {hostpart}:{port};branch={branch}"

    def _record_route(self, transport: str) -> str:
        host, port = self.addresses.get(transport) or next(iter(self.addresses.values()))
        hostpart = f"[{host}]" if ":" in host else host
        return f"<sip:{hostpart}:{port};transport={transport};lr>"

    # -- requests
    def handle_request(self, request: Any, origin: Origin, now: float) -> list:
        method = request.method
        if method == "CANCEL":
            return self._cancel(request, origin, now)
        mf = request.max_forwards
        if mf is not None and mf <= 0:
            return [Respond(make_response(request, 483, "Too Many Hops", to_tag=new_tag()))]
        out = request.copy()
        # loose routing (RFC 3261 §16.4): pop a Route that names us
        routes = out.headers.get_all("Route")
        if routes and self.is_mine(_split_uri(routes[0])):
            routes = routes[1:]
            out.headers.remove("Route")
            for r in routes:
                out.headers.add("Route", r)
        default_transport = "udp"
        if routes:
            target = _split_uri(routes[0])
        elif self.is_mine(request.uri) or request.to is None or not request.to.tag:
            user = request.uri.user
            bindings = self.registrar.lookup(user, now) if user else []
            if not bindings:
                if method == "ACK":
                    return []
                if user and user in self.registrar.known_users:
                    return [Respond(make_response(request, 480, "Temporarily Unavailable", to_tag=new_tag()))]
                return [Respond(make_response(request, 404, "Not Found", to_tag=new_tag()))]
            binding = bindings[0]
            out.uri = binding.uri
            target = binding.uri
            default_transport = binding.origin.transport
        else:
            target = request.uri
        transport = (target.transport or default_transport).lower()
        if transport not in self.addresses:
            transport = "udp" if "udp" in self.addresses else next(iter(self.addresses))
        port = target.port or default_port(transport)
        address = (target.host, port)
        flow = None
        if not routes:
            # reach a client registered over a connection through that connection (RFC 5626 spirit)
            for b in self.registrar.lookup(out.uri.user or "", now) if out.uri.user else []:
                if (b.uri == out.uri and b.origin.transport == transport != "udp"
                        and tuple(b.origin.peer) == address):
                    flow = b.origin.flow  # the Contact names the connection's own end
        if mf is not None:
            out.headers.set("Max-Forwards", str(mf - 1))
        branch = self._branch_for(request)
        out.headers.add("Via", self._via(transport, branch), first=True)
        if method == "INVITE" and (request.to is None or not request.to.tag):
            out.headers.add("Record-Route", self._record_route(origin.transport), first=True)
            if transport != origin.transport:
                out.headers.add("Record-Route", self._record_route(transport), first=True)
        self.call_ids.add(request.call_id)
        actions: list = []
        if method != "ACK":
            self._legs[(branch, method)] = _Leg(request, origin, out, transport, address, flow)
            if method == "INVITE":
                self._by_upstream[(request.top_via.branch, request.call_id)] = branch
                actions.append(Respond(make_response(request, 100, "Trying")))
        actions.append(Relay(out, transport, address, flow))
        return actions

    def _cancel(self, cancel: Any, origin: Origin, now: float) -> list:
        branch = self._by_upstream.get((cancel.top_via.branch, cancel.call_id))
        leg = self._legs.get((branch, "INVITE")) if branch else None
        if leg is None:
            return [Respond(make_response(cancel, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()))]
        fwd = leg.forwarded
        down = make_request("CANCEL", fwd.uri, from_=str(fwd.from_), to=str(fwd.to), call_id=fwd.call_id,
                            cseq=fwd.cseq[0], via=self._via(leg.transport, branch),
                            headers=[("Route", r) for r in fwd.headers.get_all("Route")] or None)
        self._legs[(branch, "CANCEL")] = _Leg(cancel, origin, down, leg.transport, leg.address, leg.flow)
        return [Respond(make_response(cancel, 200, "OK", to_tag=new_tag())),
                Relay(down, leg.transport, leg.address, leg.flow)]

    # -- responses
    def handle_response(self, response: Any, origin: Origin, now: float) -> list:
        via = response.top_via
        if via is None:
            return []
        leg = self._legs.get((via.branch, response.cseq[1]))
        if leg is None:
            return []  # not ours (or a late retransmission of one we are done with): dropped
        status = response.status
        actions: list = []
        if response.cseq[1] == "CANCEL":
            return []  # the CANCEL was answered upstream already (hop by hop)
        if response.cseq[1] == "INVITE" and status >= 300:
            actions.append(Relay(self._ack_for(leg, response), leg.transport, leg.address, leg.flow))
        if status == 100:
            return actions  # hop by hop: we sent our own 100
        up = response.copy()
        vias = up.headers.get_all("Via")
        up.headers.remove("Via")
        for v in vias[1:]:
            up.headers.add("Via", v)
        actions.append(Respond(up, request=leg.upstream))
        if status >= 200:
            self._legs.pop((via.branch, response.cseq[1]), None)
            if response.cseq[1] == "INVITE":
                self._by_upstream.pop((leg.upstream.top_via.branch, leg.upstream.call_id), None)
        return actions

    def _ack_for(self, leg: _Leg, response: Any) -> Any:
        fwd = leg.forwarded
        return make_request("ACK", fwd.uri, from_=str(fwd.from_), to=str(response.to), call_id=fwd.call_id,
                            cseq=fwd.cseq[0], via=str(fwd.top_via),
                            headers=[("Route", r) for r in fwd.headers.get_all("Route")] or None)
