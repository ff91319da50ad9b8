"""What the bundled phone reports: one :class:`PhoneEvent` per thing that happened.

The harness's DUT interface (SPEC §10) needs the same events from every kind of phone
(registered, register failed, call state); the bundled phone adds "target" and "decision"
events so a failed suite can show *why* the phone did what it did. Events go into a
:class:`sipcore.journal.Journal`, so tests wait on them with a deadline on the phone's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PhoneEvent", "KINDS", "CALL_STATES"]

KINDS = frozenset({"registered", "register_failed", "unregistered", "call_state", "incoming_call", "target", "decision"})
CALL_STATES = ("calling", "proceeding", "ringing", "established", "terminated", "failed")


@dataclass(frozen=True, slots=True)  # slots: a phone keeps every event; 10 000 phones in one process
class PhoneEvent:
    time: float
    kind: str
    account: int | None = None
    server: int | None = None
    target: str | None = None
    state: str | None = None
    call_id: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        where = "".join(
            f" {k}={v}" for k, v in (("account", self.account), ("server", self.server), ("target", self.target),
                                     ("state", self.state), ("call_id", self.call_id)) if v is not None
        )
        return f"t={self.time:.3f} {self.kind}{where}" + (f": {self.detail}" if self.detail else "")
