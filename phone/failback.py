"""Failback: which target of server Y a NEW request starts at (SPEC §5, the four modes).

A plain object per (account, server), fed "this request was answered by target i at time t",
"target i failed" and asked "where does a new request start now?". No clock: the caller
passes ``now``; :meth:`Failback.switch_at` tells it when the answer will change (for the
"target" event and the log).

Modes (``failback_mode``):

- 0 newRequests: every new request starts at the primary (index 0) [seed].
- 1 DNSTTL: after a failover, stay on the current target until the TTL of the A record that
  gave it runs out (``Target.expires_at``), then start at the primary [seed, details interp].
- 2 registration: stay on the current target until the next registration refresh, which starts
  at the primary [seed, details interp].
- 3 duration: stay ``failback_timeout`` seconds after the failover, then the primary;
  ``failback_timeout = 0``: stay until the current target itself fails [seed].

Modes 1-3 apply only to domain addresses and switch only when no call is up [vendor extra]:
while a call is up, new requests keep going to the current target.

Written by hand: this is the vendor's policy, not a protocol; no library has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Failback", "NEW_REQUESTS", "DNSTTL", "REGISTRATION", "DURATION", "MODE_NAMES"]

NEW_REQUESTS, DNSTTL, REGISTRATION, DURATION = 0, 1, 2, 3
MODE_NAMES = {0: "newRequests", 1: "DNSTTL", 2: "registration", 3: "duration"}


@dataclass(slots=True)  # one per account / server of every phone
class Failback:
    mode: int = NEW_REQUESTS
    timeout: float = 3600.0  # failback_timeout, mode 3 only
    is_domain: bool = True
    current: int = 0  # index new requests stick to after a failover (0 = primary)
    since: float = 0.0  # phone time the phone moved to ``current``
    current_target: Any = None  # the Target at ``current`` (mode 1 reads its expires_at)

    def __post_init__(self) -> None:
        if self.mode not in MODE_NAMES:
            raise ValueError(f"failback_mode must be 0..3, got {self.mode!r}")

    @property
    def sticky(self) -> bool:
        """Does this mode keep requests on a failed-over target at all? (SPEC §5)"""
        return self.mode != NEW_REQUESTS and self.is_domain

    def start_index(self, now: float, *, refresh: bool = False, call_up: bool = False) -> int:
        """Index a new request starts at. ``refresh``: it is a registration refresh."""
        if not self.sticky or self.current == 0:
            return 0  # SPEC §5 mode 0, or nothing failed over
        if call_up:
            return self.current  # SPEC §5 [vendor extra]: switch only when no call is up
        if self._expired(now, refresh):
            return 0
        return self.current

    def _expired(self, now: float, refresh: bool) -> bool:
        if self.mode == DNSTTL:
            at = getattr(self.current_target, "expires_at", None)
            return at is None or now >= at
        if self.mode == REGISTRATION:
            return refresh
        # DURATION
        if self.timeout == 0:
            return False  # stay until the current target itself fails
        return now >= self.since + self.timeout

    def switch_at(self) -> float | None:
        """Phone time a new request will start at the primary again (None: not by time)."""
        if not self.sticky or self.current == 0:
            return None
        if self.mode == DNSTTL:
            return getattr(self.current_target, "expires_at", None)
        if self.mode == DURATION and self.timeout:
            return self.since + self.timeout
        return None

    def answered(self, index: int, target: Any, now: float, *, started: int) -> None:
        """A request that started at ``started`` was answered by target ``index``."""
        if index == 0:
            self.current, self.current_target, self.since = 0, target, now
        elif index != self.current or started != index:
            # a failover happened (or a refresh went back to the primary and failed over
            # again): the clock of mode 1 / 3 starts now
            self.current, self.current_target, self.since = index, target, now
        # else: the same target again (a request that stayed there): the switch that is running
        # keeps its time — ``since`` and the A record whose TTL counts (mode 1). A stay a call
        # forced past the switch time does not start a new one: the switch happens as soon as
        # no call is up (SPEC §5 [vendor extra]), even if a re-resolution gave a fresh TTL.
