"""What the sans-I/O logic of a fake SIP server asks its adapter to do.

The registrar, proxy and UAS logic are fed ``(message, origin, now)`` and return a list of
these actions; :class:`fakes.sip.server.FakeSipServer` carries them out (through sipcore's
server transactions, on its clock, over its sockets). Keeping them as plain data is what
lets the logic be tested without a reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Origin", "Respond", "Relay"]

Address = tuple[str, int]


@dataclass(frozen=True)
class Origin:
    """Where a message came from: transport ("udp"/"tcp"/"tls"), the peer's and our address,
    and ``flow``, an opaque handle of the connection/socket to answer through (the adapter's
    reply path; the logic only stores it and hands it back)."""

    transport: str
    peer: Address
    local: Address
    flow: Any = None


@dataclass(frozen=True)
class Respond:
    """Answer ``request`` (None: the request being handled) with ``response``, ``after``
    phone seconds from now, through its server transaction. The adapter drops a delayed
    response whose transaction has meanwhile sent a final one (e.g. a 200 after CANCEL)."""

    response: Any
    request: Any = None
    after: float = 0.0


@dataclass(frozen=True)
class Relay:
    """Send ``message`` (a forwarded request, a proxy's own ACK or CANCEL) to ``address``
    over ``transport``; through ``flow`` when it is a live connection to that peer."""

    message: Any
    transport: str
    address: Address
    flow: Any = None
