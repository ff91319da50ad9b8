"""A reactor whose I/O is the real reactor's and whose time is an injected clock (SPEC §9).

Library protocols such as ``twisted.names.client.Resolver`` take one ``reactor`` argument
and use it both for sockets (``listenUDP``, ``connectTCP``) and for time (``callLater``
for their timeouts, ``seconds``). This project's time is an injected ``IReactorTime``
(virtual, scaled or real), so those libraries need an object that splits the two: I/O goes
to the real reactor, time to the clock. :func:`clocked_reactor` builds that object.

It also wraps every protocol it connects or listens with, so each datagram and each TCP
segment received calls :func:`sipcore.clock.note_activity` before the protocol sees it:
the virtual clock then knows the process is busy and does not jump over a reply that is
being handled (the rule every adapter of this project follows). Used by the phone's DNS
client and by the phone's SIP transports.

Written by hand because Twisted has no such split: ``task.Clock`` has no I/O and the real
reactor's time cannot be replaced.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import directlyProvides, providedBy

from sipharness.sipcore.clock import note_activity
from sipharness.sipcore.transport import no_delay

__all__ = ["clocked_reactor", "ClockedReactor"]

_WRAPPED = "_sipcore_clocked"


def _wrap_method(protocol: Any, method: str, clock: Any) -> Any:
    """Make ``protocol.<method>`` note activity on ``clock`` first (once per protocol)."""
    if getattr(protocol, _WRAPPED, None) is clock:
        return protocol
    inner = getattr(protocol, method)

    def received(*args: Any, **kw: Any) -> Any:
        note_activity(clock)
        return inner(*args, **kw)

    setattr(protocol, method, received)
    setattr(protocol, _WRAPPED, clock)
    return protocol


class _ClockedFactory:
    """Delegates to a factory; protocols it builds note activity on each ``dataReceived``."""

    def __init__(self, factory: Any, clock: Any):
        self._factory = factory
        self._clock = clock

    def buildProtocol(self, addr: Any) -> Any:
        p = self._factory.buildProtocol(addr)
        if p is not None:
            _wrap_method(p, "dataReceived", self._clock)
            made = p.connectionMade

            def connection_made() -> None:
                no_delay(p.transport)  # see sipcore.transport.no_delay
                made()

            p.connectionMade = connection_made
        return p

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


class ClockedReactor:
    """I/O of ``reactor``, time of ``clock``; see the module docstring."""

    def __init__(self, reactor: Any, clock: IReactorTime):
        self._reactor = reactor
        self.clock = clock
        directlyProvides(self, *list(providedBy(reactor)), IReactorTime)

    # time: the injected clock
    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        return self.clock.callLater(delay, callable, *args, **kw)

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self.clock.getDelayedCalls()

    # I/O: the real reactor, with receive paths noting activity
    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        _wrap_method(protocol, "datagramReceived", self.clock)
        return self._reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=maxPacketSize)

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30, bindAddress: Any = None) -> Any:
        return self._reactor.connectTCP(host, port, _ClockedFactory(factory, self.clock), timeout, bindAddress)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        return self._reactor.listenTCP(port, _ClockedFactory(factory, self.clock), backlog, interface)

    def connectSSL(self, host: str, port: int, factory: Any, contextFactory: Any, timeout: float = 30, bindAddress: Any = None) -> Any:
        return self._reactor.connectSSL(host, port, _ClockedFactory(factory, self.clock), contextFactory, timeout, bindAddress)

    def listenSSL(self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = "") -> Any:
        return self._reactor.listenSSL(port, _ClockedFactory(factory, self.clock), contextFactory, backlog, interface)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def clocked_reactor(reactor: Any, clock: IReactorTime) -> ClockedReactor:
    """A reactor doing ``reactor``'s I/O on ``clock``'s time, noting activity on every receive."""
    return ClockedReactor(reactor, clock)
