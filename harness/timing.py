"""How exactly a phone time can be asserted on a given clock (SPEC §9).

Expected times are always written in phone seconds; the clock decides the tolerance:
virtual → exact (to the microsecond tick), scaled → ±5 % or 20 ms of wall time,
real → ±10 % or 1 s, whichever is larger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipharness.sipcore.clock import ScaledClock, VirtualClock

__all__ = ["Tolerance", "tolerance_for", "TimingMismatch"]


@dataclass(frozen=True)
class Tolerance:
    relative: float
    absolute: float  # phone seconds
    name: str
    speed: float = 1.0  # phone seconds per wall second

    @property
    def wall_floor(self) -> float:
        """The smallest slack this clock allows, in wall seconds (0 on the virtual clock: exact)."""
        return 0.0 if self.name == "virtual" else self.absolute / self.speed

    def allows(self, expected: float, seen: float) -> bool:
        return abs(seen - expected) <= max(self.absolute, abs(expected) * self.relative)

    def describe(self, expected: float) -> str:
        if self.name == "virtual":
            return "exact"
        return f"±{max(self.absolute, abs(expected) * self.relative):.3f} s"


EXACT = Tolerance(0.0, 1e-6, "virtual")


def tolerance_for(clock: Any) -> Tolerance:
    if isinstance(clock, VirtualClock):
        return EXACT
    if isinstance(clock, ScaledClock) and clock.speed != 1.0:
        return Tolerance(0.05, 0.020 * clock.speed, "scaled", clock.speed)
    return Tolerance(0.10, 1.0, "real")


class TimingMismatch(AssertionError):
    """A phone time outside its tolerance: a finding, unless the harness itself stalled inside ``window``.

    ``window``: the phone times (first, last) the check compared, expected and seen alike; the
    plugin asks the lag meter (harness.lagmeter) whether the reactor stalled there longer than
    ``tolerance.wall_floor`` (SPEC §10: then it is a lab problem, not the phone's)."""

    def __init__(self, message: str, tolerance: Tolerance, window: tuple[float, float]):
        super().__init__(message)
        self.tolerance, self.window = tolerance, window
