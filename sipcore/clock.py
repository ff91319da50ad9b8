"""The three clocks of SPEC §9: virtual (autojump), scaled and real.

Everything in this project that waits (SIP timers, DNS timeouts, registration refresh,
fallback probes, a test's deadline) asks an ``IReactorTime`` it was given, never the
global reactor. Which clock that is decides what a phone second costs:

- :class:`VirtualClock` stands still while anything is happening and jumps to the next
  timer once the process has been idle for ``autojump_threshold`` seconds of wall time
  (Trio's ``MockClock(autojump_threshold=...)`` idea). A 3600 s registration cycle costs
  milliseconds and every time a test asserts is exact.
- :class:`ScaledClock` runs real time multiplied by ``speed`` (``speed=100``: one phone
  second is 10 ms of wall time), for a device in another process that shares our clock.
- ``ScaledClock(reactor, 1.0)`` is the real clock, for real phones.

Why not ``twisted.internet.task.Clock`` alone: it only moves when told to. The virtual
clock wraps one and adds the autojump, which needs to know when the process is idle.
*Idle* is judged by activity notes: every protocol adapter of this project calls
:func:`note_activity` on each datagram, TCP segment or fired call, and the jump happens
only after two consecutive idle checks with one I/O poll of the reactor between them,
so a packet already in a socket buffer is always read before virtual time moves.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

__all__ = ["VirtualClock", "ScaledClock", "note_activity", "parse_clock_spec", "make_clock"]


def note_activity(clock: Any) -> None:
    """Tell ``clock`` that something happened now (no-op for clocks that do not care)."""
    hook = getattr(clock, "activity", None)
    if hook is not None:
        hook()


@implementer(IReactorTime)
class VirtualClock:
    #: reactor I/O polls that must pass with no activity, after the threshold, before a jump
    CONFIRM_POLLS = 3

    """Virtual phone time that jumps to the next timer when the process is idle.

    ``reactor`` is the real reactor that does the I/O; it is used only for the wall-time
    idle checks. ``start`` is the phone time at creation (0 by default, so ladders and
    assertions read "t = 7.50 s" rather than an epoch).
    """

    def __init__(self, reactor: Any, autojump_threshold: float = 0.005, start: float = 0.0):
        if autojump_threshold <= 0:
            raise ValueError(f"autojump_threshold must be > 0 s, got {autojump_threshold!r}")
        self._reactor = reactor
        self._clock = task.Clock()
        self._clock.rightNow = float(start)
        self.threshold = float(autojump_threshold)
        self._busy = False  # activity seen since the last idle check
        self._armed: IDelayedCall | None = None  # the real-time idle check
        self._confirming = 0
        self.jumps = 0  # how many times virtual time has jumped (for tests and benches)
        self.stopped = False

    # IReactorTime
    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        def fire() -> None:
            self._busy = True
            callable(*args, **kw)

        call = self._clock.callLater(max(0.0, delay), fire)
        self.activity()
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self._clock.getDelayedCalls()

    # activity and autojump
    def activity(self) -> None:
        """Note that something happened: virtual time must not move before it settles."""
        self._busy = True
        self._confirming = 0
        self._arm()

    def advance(self, amount: float) -> None:
        """Move virtual time by hand (fires what falls due), as ``task.Clock.advance``."""
        self._clock.advance(amount)
        self._busy = True
        self._arm()

    def stop(self) -> None:
        """Stop jumping (pending virtual calls stay pending)."""
        self.stopped = True
        if self._armed is not None and self._armed.active():
            self._armed.cancel()
        self._armed = None

    def _arm(self) -> None:
        if self.stopped or (self._armed is not None and self._armed.active()):
            return
        self._armed = self._reactor.callLater(self.threshold, self._check)

    def _check(self) -> None:
        self._armed = None
        if self.stopped:
            return
        if self._busy:
            self._busy = False
            self._confirming = 0
            self._arm()
            return
        if self._confirming < self.CONFIRM_POLLS:
            # Idle so far: look again after more reactor I/O polls. One poll flushes a
            # buffered TCP write to the kernel, the next lets the peer read it; a datagram
            # that arrived while this process was descheduled is read in the first.
            self._confirming += 1
            self._armed = self._reactor.callLater(0, self._check)
            return
        self._confirming = 0
        pending = [c for c in self._clock.getDelayedCalls() if c.active()]
        if not pending:
            return  # nothing to jump to; the next callLater re-arms
        nxt = min(c.getTime() for c in pending)
        self.jumps += 1
        self._clock.advance(max(0.0, nxt - self._clock.seconds()))
        self._busy = True
        self._arm()


class _ScaledCall:
    """An ``IDelayedCall`` in phone seconds over a real one in wall seconds."""

    def __init__(self, clock: "ScaledClock", call: IDelayedCall):
        self._clock = clock
        self._call = call

    def getTime(self) -> float:
        return self._clock._to_phone(self._call.getTime())

    def cancel(self) -> None:
        self._call.cancel()

    def delay(self, secondsLater: float) -> None:
        self._call.delay(secondsLater / self._clock.speed)

    def reset(self, secondsFromNow: float) -> None:
        self._call.reset(secondsFromNow / self._clock.speed)

    def active(self) -> bool:
        return self._call.active()


@implementer(IReactorTime)
class ScaledClock:
    """Phone time = ``start`` + wall time since creation × ``speed``."""

    def __init__(self, reactor: Any, speed: float = 1.0, start: float = 0.0):
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self._reactor = reactor
        self.speed = float(speed)
        self._wall0 = reactor.seconds()
        self._start = float(start)
        self._calls: list[_ScaledCall] = []
        self._pruned_at = 0

    def _to_phone(self, wall: float) -> float:
        return self._start + (wall - self._wall0) * self.speed

    def seconds(self) -> float:
        return self._to_phone(self._reactor.seconds())

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        call = _ScaledCall(self, self._reactor.callLater(max(0.0, delay) / self.speed, callable, *args, **kw))
        self._calls.append(call)
        if len(self._calls) > 2 * self._pruned_at + 64:  # prune now and then: amortised O(1) per call
            self._calls = [c for c in self._calls if c.active()]
            self._pruned_at = len(self._calls)
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return [c for c in self._calls if c.active()]


def parse_clock_spec(spec: str) -> tuple[str, float]:
    """``virtual`` | ``real`` | ``scaled:FACTOR`` → (kind, speed); errors name the spec."""
    spec = spec.strip()
    if spec == "virtual":
        return "virtual", 0.0
    if spec == "real":
        return "real", 1.0
    if spec.startswith("scaled:"):
        try:
            speed = float(spec.split(":", 1)[1])
        except ValueError:
            speed = -1.0
        if speed > 0:
            return "scaled", speed
    raise ValueError(f"clock {spec!r}: expected 'virtual', 'real' or 'scaled:FACTOR' with FACTOR > 0 (e.g. scaled:100)")


def make_clock(spec: str, reactor: Any = None) -> IReactorTime:
    """Build the clock a ``--clock`` option names, over ``reactor`` (the global one if None)."""
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    kind, speed = parse_clock_spec(spec)
    if kind == "virtual":
        return VirtualClock(reactor)
    return ScaledClock(reactor, speed)
