"""One log line per rejected input, rate-limited on the injected clock (both fakes use it).

A fake must say why it refused an input (a malformed datagram, a connection over the cap,
a slowloris cut off), or a lab cannot tell a hostile or broken peer from a bug; but a flood
must not turn into a flood of log lines. :class:`RateLimitedLog` logs the first ``burst``
rejections of every ``window`` seconds (phone time, SPEC §9) and then one line saying how
many it did not log. Written by hand: :mod:`logging` has no rate limiting, and the filters
on PyPI read the wall clock.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """``log(msg, *args)``: logged while fewer than ``burst`` lines went out in the current
    ``window``; counted otherwise, and the count reported with the first line of the next
    window. ``total`` counts every rejection, ``suppressed`` those not logged so far."""

    def __init__(self, logger: logging.Logger, clock: Any, *, burst: int = 10, window: float = 10.0,
                 level: int = logging.WARNING):
        if burst < 1 or window <= 0:
            raise ValueError(f"RateLimitedLog: burst must be >= 1 and window > 0, got {burst!r}, {window!r}")
        self.logger, self.clock, self.burst, self.window, self.level = logger, clock, burst, window, level
        self.total = 0
        self.suppressed = 0
        self._start = float("-inf")
        self._logged = 0
        self._held = 0  # not logged in the current window

    def __call__(self, msg: str, *args: Any) -> None:
        self.total += 1
        now = self.clock.seconds()
        if now - self._start >= self.window:
            if self._held:
                self.logger.log(self.level, "%d more rejected input(s) in the %g s before t = %.3f s were not logged",
                                self._held, self.window, now)
            self._start, self._logged, self._held = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            self.logger.log(self.level, msg, *args)
        else:
            self._held += 1
            self.suppressed += 1
