"""How late the harness's own reactor ran: a timing verdict is only as good as its stopwatch.

The fakes stamp each message when the reactor reads it. On a scaled or real clock (SPEC §9) a
box too busy to run the reactor on time stamps a punctual phone late, and a timing rule then
blames the phone for the lab's load (three emulated phones and their workers on two cores do
this at ``scaled:20``, where the SPEC allows 20 ms of wall time). The meter asks the reactor for
a call every few milliseconds and keeps the calls that came later than asked, stamped in phone
time, so a timing mismatch inside such a stall is told apart as a lab problem (SPEC §10: a
phone is never blamed for the lab) instead of a finding.

It measures only this process: a phone starved of CPU in another process is not seen here
(a real phone has its own CPU). The virtual clock needs no meter: its phone time does not move
while the harness works (and a 5 ms timer would keep it from ever being idle).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

__all__ = ["LagMeter", "Stall"]

#: a late call shorter than this is the reactor's ordinary jitter, not worth keeping (wall seconds)
_NOTICE = 0.005
#: stalls kept per test (the longest are what matter; a bound keeps a long soak's memory flat)
_KEEP = 256


@dataclass(frozen=True)
class Stall:
    """The reactor ran ``late`` wall seconds behind, ending at phone time ``end`` (``speed`` phone s per wall s)."""

    end: float
    late: float
    speed: float

    @property
    def start(self) -> float:
        return self.end - self.late * self.speed


class LagMeter:
    """Stalls of ``reactor`` (its wall time), stamped on ``clock`` (the test's phone time)."""

    def __init__(self, reactor: IReactorTime, clock: Any, *, period: float = 0.005):
        self._reactor, self._clock, self._period = reactor, clock, period
        self._speed = float(getattr(clock, "speed", 1.0))
        self._call: Any = None
        self._due = 0.0
        self.stalls: deque[Stall] = deque(maxlen=_KEEP)

    def start(self) -> "LagMeter":
        self._due = self._reactor.seconds() + self._period
        self._call = self._reactor.callLater(self._period, self._tick)
        return self

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        now = self._reactor.seconds()
        late = now - self._due
        if late >= _NOTICE:
            self.stalls.append(Stall(self._clock.seconds(), late, self._speed))
        self._due = now + self._period
        self._call = self._reactor.callLater(self._period, self._tick)

    def worst_during(self, start: float, end: float, *, longer_than: float) -> Stall | None:
        """The longest stall over ``longer_than`` wall seconds that overlaps phone times [start, end]."""
        hits = [s for s in self.stalls if s.late > longer_than and s.start <= end and s.end >= start]
        return max(hits, key=lambda s: s.late, default=None)
