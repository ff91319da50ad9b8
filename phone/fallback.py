"""Fallback between server 1 (working) and server 2 (fallback) of one account (SPEC §6).

A plain object fed "server Y registered / failed" and "an INVITE through server Y got no
response" with the current time; it answers which servers to register with, in which order a
new request tries the servers, and when the next probe of server 1 is due (successive mode).
The I/O (REGISTER, probes, un-REGISTER) is done by :mod:`phone.registration` on its decisions.

- Concurrent (redundancy_type 0) [seed]: both servers register, each on its own schedule. New
  requests go to server 1 while it is usable (registered, and no INVITE to it has gone
  unanswered since its last successful REGISTER); otherwise server 2 first. An INVITE that
  server 1 never answers (after all its targets) goes on to server 2.
- Successive (redundancy_type 1) [seed]: only server 1 registers. When all its targets fail,
  the phone REGISTERs with server 2 and uses it; every ``fallback.timeout`` seconds (counted
  from the fallback) a REGISTER probes server 1; on its 2xx server 1 is used again and server 2
  is un-REGISTERed (Expires: 0) and no longer refreshed [interp].

Written by hand: this is the vendor's policy; no library has it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fallback", "CONCURRENT", "SUCCESSIVE"]

CONCURRENT, SUCCESSIVE = 0, 1


@dataclass(slots=True)  # one per account / server of every phone
class Fallback:
    redundancy_type: int = CONCURRENT
    timeout: float = 120.0  # fallback.timeout: probe period of server 1 (successive)
    has_server2: bool = False
    active: int = 1  # successive: the server in use
    fell_back_at: float | None = None  # successive: when server 2 took over
    s1_usable: bool = True  # concurrent: new requests may start at server 1

    def __post_init__(self) -> None:
        if self.redundancy_type not in (CONCURRENT, SUCCESSIVE):
            raise ValueError(f"fallback.redundancy_type must be 0 or 1, got {self.redundancy_type!r}")

    @property
    def successive(self) -> bool:
        return self.has_server2 and self.redundancy_type == SUCCESSIVE

    def servers_to_register(self) -> list[int]:
        """Servers that REGISTER at start-up (SPEC §6)."""
        if not self.has_server2:
            return [1]
        return [1] if self.successive else [1, 2]

    def request_order(self) -> list[int]:
        """Servers a new (non-REGISTER) request tries, in order."""
        if not self.has_server2:
            return [1]
        if self.successive:
            return [self.active] if self.active == 2 else [1, 2]
        return [1, 2] if self.s1_usable else [2, 1]

    # -- what happened
    def registered(self, server: int, now: float) -> list[str]:
        """Server ``server`` answered a REGISTER with 2xx; returns actions for the caller:
        ``"unregister:2"`` (successive fail-back: un-REGISTER server 2 and stop refreshing it).
        """
        if server != 1:
            return []
        self.s1_usable = True  # SPEC §6: once server 1 answers again, the next INVITE goes to it
        if self.successive and self.active == 2:
            self.active, self.fell_back_at = 1, None
            return ["unregister:2"]  # SPEC §6 [interp]
        return []

    def register_failed(self, server: int, now: float) -> list[str]:
        """All targets of ``server`` failed a REGISTER; returns ``"register:2"`` when the
        phone must now REGISTER with server 2 (successive fallback)."""
        if server != 1:
            return []
        self.s1_usable = False
        if self.successive and self.active == 1:
            self.active, self.fell_back_at = 2, now
            return ["register:2"]
        return []

    def request_failed(self, server: int, now: float) -> None:
        """A new INVITE got no response from any target of ``server``."""
        if server == 1:
            self.s1_usable = False

    def next_probe_at(self, now: float) -> float | None:
        """Successive: phone time of the next REGISTER probe of server 1 (None: no probing).

        Probes fall at ``fell_back_at + k · timeout`` (k = 1, 2, …), the first one after ``now``
        [interp: "every fallback.timeout seconds", a fixed cadence from the fallback].
        """
        if not self.successive or self.active != 2 or self.fell_back_at is None:
            return None
        k = int((now - self.fell_back_at) // self.timeout) + 1
        return self.fell_back_at + k * self.timeout
