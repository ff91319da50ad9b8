"""What the sans-I/O parts of a fake SIP server ask of the next layer, as plain data.

The registrar, proxy and UAS logic are fed ``(message, origin, now)`` and return
:class:`Respond` and :class:`Relay`; the core (:mod:`fakes.sip.core`) runs those through
sipcore's transactions and returns :class:`Transmit`, :class:`ChangeSockets`,
:class:`ServingError` and :class:`Rejected` to :class:`fakes.sip.server.FakeSipServer`, which
carries them out on its clock, over its sockets. Keeping them as plain data is what lets
the logic and the core be tested without a reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sipharness.sipcore.frozen import fast_init
from sipharness.fakes.record import SipRecord

__all__ = ["Origin", "Respond", "Relay", "Transmit", "ChangeSockets", "SocketOp", "ServingError", "Rejected"]

Address = tuple[str, int]


@fast_init  # made for every message a fake receives (sipcore/frozen.py)
@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: transport ("udp"/"tcp"/"tls"), the peer's and our address,
    and ``flow``, an opaque handle of the connection/socket to answer through (the adapter's
    reply path; the logic only stores it and hands it back)."""

    transport: str
    peer: Address
    local: Address
    flow: Any = None


@fast_init  # made for every answer
@dataclass(frozen=True, slots=True)
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


# --------------------------------------------------------------------------- the core's, for the adapter


class SocketOp(Enum):
    CLOSE_REFUSING = "close refusing"  # UDP socket closed (ICMP), TCP/TLS stop listening, open ones reset
    REOPEN = "reopen"  # listen again on the same addresses


@fast_init
@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``data`` over ``transport`` to ``peer``: through ``flow`` (a live stream) when
    given, else from the listener; append ``record`` to the recorder once it is out."""

    data: bytes
    transport: str
    peer: Address
    flow: Any
    record: SipRecord


@dataclass(frozen=True, slots=True)
class ChangeSockets:
    """Carry out a state transition's socket operation on every listener."""

    op: SocketOp


@dataclass(frozen=True, slots=True)
class ServingError:
    """The fake failed while serving (a harness error): keep ``error`` (it carries its
    traceback and a note naming the fake and the input)."""

    error: BaseException
    origin: Origin
    summary: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input refused as malformed (log it, rate-limited): ``what`` says why."""

    what: str
    origin: Origin
