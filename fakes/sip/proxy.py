"""The proxy logic of the fake SIP servers (RFC 3261 §16), sans-I/O and deliberately small.

Transaction-stateful just enough for a failover test: an INVITE (and CANCEL, ACK, BYE) to a
user registered here is forwarded to the registered contact with our Via pushed and a
Record-Route added, so in-dialog requests traverse us; responses come back by our Via
branch, are popped and answered upstream through the upstream server transaction (which
absorbs the caller's retransmissions). A non-2xx final to a forwarded INVITE is ACKed here
(hop by hop, RFC 3261 §16.7 / §17.1.1.3). No forking (the newest binding wins), no
retransmission downstream (loopback does not lose datagrams; the caller's retransmissions
are answered from the upstream transaction). 404 for a user never seen, 480 for a known
user with no live contact; 404 too for a next hop that is not an IP address (a fake does no
DNS) and 400 for a Route that is not a SIP URI.

Bounded under hostile traffic: what the proxy remembers (the legs waiting for a response,
the INVITEs a CANCEL may name, the Call-IDs it routes) lives in :class:`fakes.sip.recent.RecentMap`
windows with a cap. A leg lasts ``LEG_WINDOW`` phone seconds after it was sent or last heard
of (a provisional response renews it): longer than Timer C (RFC 3261 §16.6: > 3 min), so a
call ringing for minutes still gets its answer relayed; a call's Call-ID lasts ``CALL_WINDOW``
after its last request through us. Past the caps the oldest are forgotten first (their late
responses are dropped, their in-dialog requests answered by the UAS instead).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.ids import MAGIC_COOKIE, new_tag
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.uri import SipParseError, default_port

from sipharness.fakes.sip.actions import Origin, Relay, Respond
from sipharness.fakes.sip.auth import printable
from sipharness.fakes.sip.recent import RecentMap
from sipharness.fakes.sip.registrar import Registrar

__all__ = ["Proxy", "LEG_WINDOW", "CALL_WINDOW", "MAX_LEGS", "MAX_CALLS"]

LEG_WINDOW = 200.0  # phone seconds a forwarded request waits for its response (> Timer C, 3 min)
CALL_WINDOW = 4 * 3600.0  # phone seconds a call's Call-ID is kept after its last request through us
MAX_LEGS = 4096  # forwarded requests remembered at once (each holds two parsed requests)
MAX_CALLS = 20_000  # Call-IDs remembered at once

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
    """The URI of a Route value (name-addr or addr-spec); SipParseError when unreadable."""
    return NameAddr.parse(text).uri


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Proxy:
    """``handle_request(request, origin, now)`` / ``handle_response(response, origin, now)`` → actions.

    ``addresses`` (transport → (host, port)) are the server's listeners, read at each call
    (the adapter fills the dict as it listens); ``domains`` are extra host names that mean us.
    """

    def __init__(self, registrar: Registrar, addresses: dict[str, tuple[str, int]], *,
                 domains: tuple[str, ...] = (), max_legs: int = MAX_LEGS, max_calls: int = MAX_CALLS):
        self.registrar = registrar
        self.addresses = addresses
        self.domains = tuple(d.lower() for d in domains)
        # (our branch, method) → leg; None once answered (a late retransmission finds no leg)
        self._legs = RecentMap(LEG_WINDOW, max_legs)
        self._by_upstream = RecentMap(LEG_WINDOW, max_legs)  # (upstream branch, call-id) → our branch (INVITE)
        self.call_ids = RecentMap(CALL_WINDOW, max_calls)  # calls handled here (the PBX routes their requests to us)

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
        try:
            first = _split_uri(routes[0]) if routes else None
            if first is not None and self.is_mine(first):
                routes = routes[1:]
                out.headers.remove("Route")
                for r in routes:
                    out.headers.add("Route", r)
                first = _split_uri(routes[0]) if routes else None
        except SipParseError as e:
            return self._refuse(request, 400, f"bad Route: {e}")
        default_transport = "udp"
        if first is not None:
            target = first
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
        if not target.is_sip or not _is_ip(target.host):
            # a fake resolves no names (and routes no tel: or other URI)
            return self._refuse(request, 404, f"no route to {str(target)[:60]} (the fake reaches IP addresses only)")
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
        self.call_ids.put(request.call_id, None, now)
        actions: list = []
        if method != "ACK":
            self._legs.put((branch, method), _Leg(request, origin, out, transport, address, flow), now)
            if method == "INVITE":
                self._by_upstream.put((request.top_via.branch, request.call_id), branch, now)
                actions.append(Respond(make_response(request, 100, "Trying")))
        actions.append(Relay(out, transport, address, flow))
        return actions

    def _refuse(self, request: Any, status: int, reason: str) -> list:
        if request.method == "ACK":
            return []  # an ACK is never answered
        return [Respond(make_response(request, status, printable(reason), to_tag=new_tag()))]

    def _cancel(self, cancel: Any, origin: Origin, now: float) -> list:
        branch = self._by_upstream.get((cancel.top_via.branch, cancel.call_id), now)
        leg = self._legs.get((branch, "INVITE"), now) if branch else None
        if leg is None:
            return [Respond(make_response(cancel, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()))]
        fwd = leg.forwarded
        down = make_request("CANCEL", fwd.uri, from_=str(fwd.from_), to=str(fwd.to), call_id=fwd.call_id,
                            cseq=fwd.cseq[0], via=self._via(leg.transport, branch),
                            headers=[("Route", r) for r in fwd.headers.get_all("Route")] or None)
        self._legs.put((branch, "CANCEL"), _Leg(cancel, origin, down, leg.transport, leg.address, leg.flow), now)
        return [Respond(make_response(cancel, 200, "OK", to_tag=new_tag())),
                Relay(down, leg.transport, leg.address, leg.flow)]

    # -- responses
    def handle_response(self, response: Any, origin: Origin, now: float) -> list:
        via = response.top_via
        if via is None:
            return []
        key = (via.branch, response.cseq[1])
        leg = self._legs.get(key, now)
        if leg is None:
            return []  # not ours (or a late retransmission of one we are done with): dropped
        status = response.status
        actions: list = []
        if response.cseq[1] == "CANCEL":
            return []  # the CANCEL was answered upstream already (hop by hop)
        if response.cseq[1] == "INVITE" and status >= 300:
            actions.append(Relay(self._ack_for(leg, response), leg.transport, leg.address, leg.flow))
        if status < 200:
            self._legs.put(key, leg, now)  # the callee is alive: the leg lives on (Timer C)
        if status == 100:
            return actions  # hop by hop: we sent our own 100
        up = response.copy()
        vias = up.headers.get_all("Via")
        if len(vias) < 2:
            # RFC 3261 §16.7 step 3: no Via left once ours is popped: meant for us, not forwarded
            return actions
        up.headers.remove("Via")
        for v in vias[1:]:
            up.headers.add("Via", v)
        actions.append(Respond(up, request=leg.upstream))
        if status >= 200:
            self._legs.put(key, None, now)  # answered: forgotten (RecentMap has no delete)
            if response.cseq[1] == "INVITE":
                self._by_upstream.put((leg.upstream.top_via.branch, leg.upstream.call_id), None, now)
        return actions

    def _ack_for(self, leg: _Leg, response: Any) -> Any:
        fwd = leg.forwarded
        return make_request("ACK", fwd.uri, from_=str(fwd.from_), to=str(response.to), call_id=fwd.call_id,
                            cseq=fwd.cseq[0], via=str(fwd.top_via),
                            headers=[("Route", r) for r in fwd.headers.get_all("Route")] or None)
