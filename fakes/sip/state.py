"""Whether a fake SIP server serves: up, blackhole, refused or stopped, and what each change
of state does to its sockets (the server failures SPEC §3 counts: silence, ICMP port
unreachable, a refused connection).

Why a module of its own: the states and their transition table are the fake's whole
availability model, read by the sans-I/O core (:mod:`fakes.sip.core`, which refuses an
illegal transition) and by the Twisted adapter (:mod:`fakes.sip.server`, which carries out
the socket operation), and findable by name like :mod:`sipcore.transaction.states`.
"""

from __future__ import annotations

from enum import StrEnum

from sipharness.fakes.sip.actions import SocketOp

__all__ = ["ServerState", "TRANSITIONS"]


class ServerState(StrEnum):
    UP = "up"
    BLACKHOLE = "blackhole"  # sockets open, everything dropped
    REFUSED = "refused"  # sockets closed: ICMP port unreachable (UDP), RST (TCP/TLS)
    STOPPED = "stopped"  # for good


_S, _O = ServerState, SocketOp
#: (from, to) → the socket operation that transition needs (None: nothing to do on sockets).
TRANSITIONS: dict[tuple[ServerState, ServerState], SocketOp | None] = {
    (_S.UP, _S.BLACKHOLE): None,
    (_S.UP, _S.REFUSED): _O.CLOSE_REFUSING,
    (_S.UP, _S.STOPPED): _O.CLOSE_REFUSING,
    (_S.BLACKHOLE, _S.UP): None,
    (_S.BLACKHOLE, _S.REFUSED): _O.CLOSE_REFUSING,
    (_S.BLACKHOLE, _S.STOPPED): _O.CLOSE_REFUSING,
    (_S.REFUSED, _S.UP): _O.REOPEN,
    (_S.REFUSED, _S.BLACKHOLE): _O.REOPEN,
    (_S.REFUSED, _S.STOPPED): None,
}
del _S, _O
