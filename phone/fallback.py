"""Fallback between server 1 (working) and server 2 (fallback) of one account (SPEC §6).

:class:`Fallback` is the one controller of SPEC §6: it is fed what happened ("server Y
registered / failed", "an INVITE through server Y got no response", "the probe timer is due")
with the current time and answers with **actions**, frozen dataclasses the user agent carries
out without deciding anything: :class:`Register` (start a REGISTER with a server),
:class:`Unregister` (Expires: 0, stop refreshing), :class:`ProbeAt` (arm the probe timer for
that phone time; one timer per account, a new one replaces the old) and :class:`CancelProbe`.
The probes of server 1 are held here: when they start, how often, when they stop; the agent
owns only the timer object (``UserAgent._probe_timers``) and calls :meth:`Fallback.probe_due`.

- Concurrent (redundancy_type 0) [seed]: both servers register, each on its own schedule. New
  requests go to server 1 while it is usable (registered, and no INVITE to it has gone
  unanswered since its last successful REGISTER); otherwise server 2 first. An INVITE that
  server 1 never answers (after all its targets) goes on to server 2, and from then on a
  REGISTER probes server 1 every ``fallback.timeout`` seconds until it answers 2xx; then the
  next new INVITE goes to server 1 [seed; interval interp, SPEC §6 revised 2026-12-01].
- Successive (redundancy_type 1) [seed]: only server 1 registers. When all its targets fail,
  the phone REGISTERs with server 2 and uses it; every ``fallback.timeout`` seconds (counted
  from the fallback) a REGISTER probes server 1; on its 2xx server 1 is used again and server 2
  is un-REGISTERed (Expires: 0) and no longer refreshed [interp].
- While probes run, they replace the reg_fail_retry_interval retries of server 1 (and, in
  successive mode, server 2 is not retried while server 1 is in use): :meth:`may_retry`.

Written by hand: this is the vendor's policy; no library has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Fallback", "CONCURRENT", "SUCCESSIVE", "Register", "Unregister", "ProbeAt", "CancelProbe", "Action"]

CONCURRENT, SUCCESSIVE = 0, 1


@dataclass(frozen=True, slots=True)
class Register:
    """Start a REGISTER with ``server`` (from the start failback picks)."""

    server: int
    why: str = ""


@dataclass(frozen=True, slots=True)
class Unregister:
    """Stop refreshing ``server`` and send it Expires: 0 (if registered)."""

    server: int
    why: str = ""


@dataclass(frozen=True, slots=True)
class ProbeAt:
    """Arm the account's probe timer for phone time ``at`` (replacing one already armed)."""

    at: float


@dataclass(frozen=True, slots=True)
class CancelProbe:
    """Disarm the account's probe timer."""


Action = Union[Register, Unregister, ProbeAt, CancelProbe]


@dataclass(slots=True)  # one per account of every phone
class Fallback:
    redundancy_type: int = CONCURRENT
    timeout: float = 120.0  # fallback.timeout: the probe period of server 1
    has_server2: bool = False
    active: int = 1  # successive: the server in use
    fell_back_at: float | None = None  # when the probes' cadence started (None: no probing)
    s1_usable: bool = True  # concurrent: new requests may start at server 1

    def __post_init__(self) -> None:
        if self.redundancy_type not in (CONCURRENT, SUCCESSIVE):
            raise ValueError(f"fallback.redundancy_type must be 0 or 1, got {self.redundancy_type!r}")

    @property
    def successive(self) -> bool:
        return self.has_server2 and self.redundancy_type == SUCCESSIVE

    @property
    def probing(self) -> bool:
        """Server 1 is probed every ``timeout`` seconds."""
        return self.fell_back_at is not None

    # -- what to do
    def start(self) -> list[Action]:
        """The phone starts: the servers that REGISTER at start-up (SPEC §6)."""
        if not self.has_server2 or self.successive:
            return [Register(1)]
        return [Register(1), Register(2)]

    def request_order(self) -> list[int]:
        """Servers a new (non-REGISTER) request tries, in order."""
        if not self.has_server2:
            return [1]
        if self.successive:
            return [self.active] if self.active == 2 else [1, 2]
        return [1, 2] if self.s1_usable else [2, 1]

    def may_retry(self, server: int) -> bool:
        """May a failed registration of ``server`` retry after reg_fail_retry_interval? (SPEC §4, §6)"""
        if server == 1 and self.probing:
            return False  # the probes every fallback.timeout replace the retry
        if self.successive and server == 2 and self.active == 1:
            return False  # server 2 is not in use
        return True

    # -- what happened
    def registered(self, server: int, now: float) -> list[Action]:
        """``server`` answered a REGISTER with 2xx."""
        if server != 1:
            return []
        self.s1_usable = True  # SPEC §6: once server 1 answers again, the next INVITE goes to it
        actions: list[Action] = []
        if self.probing:
            self.fell_back_at = None
            actions.append(CancelProbe())
        if self.successive and self.active == 2:
            self.active = 1
            actions.append(Unregister(2, "server 1 answered the probe → use server 1, un-REGISTER server 2"))
        return actions  # SPEC §6 [interp]

    def register_failed(self, server: int, now: float) -> list[Action]:
        """Every target of ``server`` failed a REGISTER."""
        if server != 1:
            return []
        self.s1_usable = False
        if self.successive and self.active == 1:
            self.active = 2
            return [Register(2, f"server 1 failed → REGISTER with server 2 (successive), probe server 1 every "
                                f"{self.timeout:g} s"), *self._start_probing(now)]
        return []

    def request_failed(self, server: int, now: float) -> list[Action]:
        """A new INVITE got no response from any target of ``server``."""
        if server != 1:
            return []
        self.s1_usable = False
        if self.successive or not self.has_server2:
            return []  # successive: the REGISTERs decide; no server 2: nothing to fall back to
        return self._start_probing(now)  # SPEC §6 concurrent, revised 2026-12-01

    def probe_due(self, now: float) -> list[Action]:
        """The probe timer fired: REGISTER with server 1, and arm the next probe."""
        if not self.probing:
            return []
        return [Register(1, f"probe server 1 with a REGISTER (fallback.timeout {self.timeout:g} s)"),
                ProbeAt(self.next_probe_at(now))]

    def next_probe_at(self, now: float) -> float | None:
        """Phone time of the next REGISTER probe of server 1 (None: no probing).

        Probes fall at ``fell_back_at + k · timeout`` (k = 1, 2, …), the first one after ``now``
        [interp: "every fallback.timeout seconds", a fixed cadence from the fallback].
        """
        if self.fell_back_at is None:
            return None
        k = int((now - self.fell_back_at) // self.timeout) + 1
        return self.fell_back_at + k * self.timeout

    def _start_probing(self, now: float) -> list[Action]:
        if self.probing:
            return []  # already probing: keep the cadence
        self.fell_back_at = now
        return [ProbeAt(self.next_probe_at(now))]
