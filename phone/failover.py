"""Failover inside one server's target list: where a new request goes and when it moves on.

SPEC §3 and §5 as plain decisions, fed outcomes and nothing else (no sockets, no clock):

- :func:`classify` says what a final or provisional response (or a transaction's
  ``TimedOut`` / ``TransportFailed``) means for the request: an answer, a reason to give the
  target up, a challenge to answer, a Min-Expires to honour.
- :func:`max_sends` is the per-target send budget: ``1 + retry_counts``, except the LAST
  target a request can go to, which keeps the full RFC 3261 transaction timeout (``None``).
- :class:`TargetWalk` is one new request's walk down an ordered target list from the index
  failback chose, each target once; every step is a NEW transaction (the caller builds a new
  branch and CSeq + 1, SPEC §3 "Moving to the next target").

Why written by hand: the give-up rules are the guide's and the vendor manuals' (a retry count
that cuts a UDP transaction short, a last target that does not), which no SIP stack offers as
policy; they are a few lines each, kept apart so each is tested on its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Outcome", "classify", "max_sends", "TargetWalk", "GIVE_UP_STATUSES", "register_first",
           "only_signal_with_registered"]

# SPEC §3 [RFC 3263 §4.3]: the one final response that gives the target up at once. A received
# 408 is an answer like 403 or 486 (SPEC §3 revised 2026-12-01: RFC 3263 §4.3 names only the
# transaction timeout, a transport error and 503; 408 used to be a trigger here).
GIVE_UP_STATUSES = frozenset({503})


class Outcome(enum.Enum):
    PROVISIONAL = "provisional"  # 1xx: the server is alive, the failure window ends (SPEC §3)
    ANSWER = "answer"  # any final response that is not a failure: no failover (SPEC §3)
    NEXT_TARGET = "next_target"  # silence, transport failure, 503 (SPEC §3)
    CHALLENGE = "challenge"  # 401/407: one retry with digest (SPEC §3)
    MIN_EXPIRES = "min_expires"  # 423: retry with the Min-Expires given (SPEC §3)


def classify(status: int | None) -> Outcome:
    """What a response status means for failover; ``None`` = timed out or transport failed."""
    if status is None:
        return Outcome.NEXT_TARGET  # SPEC §3: TimedOut / TransportFailed
    if 100 <= status < 200:
        return Outcome.PROVISIONAL
    if status in GIVE_UP_STATUSES:
        return Outcome.NEXT_TARGET
    if status in (401, 407):
        return Outcome.CHALLENGE
    if status == 423:
        return Outcome.MIN_EXPIRES
    return Outcome.ANSWER


def max_sends(retry_counts: int, *, final: bool) -> int | None:
    """Sends of one request to one target before it is given up (SPEC §3).

    ``final``: this is the last target the request can go to, which gets the full RFC 3261
    timeout (Timer B/F, 32 s) instead of ``1 + retry_counts`` sends.
    """
    if retry_counts < 0:
        raise ValueError(f"retry_counts must be >= 0, got {retry_counts}")
    return None if final else 1 + retry_counts


def retry_counts_for(server: Any, method: str) -> int:
    """``invite_retry_counts`` replaces ``retry_counts`` for INVITE when set [vendor extra]."""
    if method == "INVITE" and getattr(server, "invite_retry_counts", None) is not None:
        return int(server.invite_retry_counts)
    return int(server.retry_counts)


def only_signal_with_registered(server: Any, *, is_domain: bool) -> bool:
    """Is ``only_signal_with_registered`` in force for this server? (SPEC §1 [vendor extra])

    The key works only with ``register_on_enable = 1`` and ``failback_mode`` 1–3, and failback
    modes apply only to domain addresses (SPEC §5); set without them it does nothing."""
    return (getattr(server, "only_signal_with_registered", 0) == 1
            and getattr(server, "register_on_enable", 0) == 1
            and getattr(server, "failback_mode", 0) in (1, 2, 3)
            and is_domain)


def register_first(server: Any, method: str, *, position: int, index: int, is_domain: bool,
                   registered_here: bool) -> str | None:
    """Why a new ``method`` request must REGISTER with its target before it is sent (None: send now).

    ``position``: steps the request's walk has taken (0 = where failback started it);
    ``index``: the target's place in the server's list (0 = the primary); ``registered_here``:
    the phone's registration with this server is on this very target.

    - SPEC §5 ``register_on_enable = 1``: a request that fails over (position > 0) is sent to the
      next target only after a REGISTER with it got a 2xx.
    - SPEC §1 ``only_signal_with_registered = 1`` [vendor extra]: after a failover (a target that
      is not the primary, which failback modes 1–3 keep new requests on) a request goes only to
      a target the phone is registered with; when the phone is not (its registration there
      lapsed or moved), it REGISTERs first and sends after the 2xx, or gives the target up.
    REGISTER itself is never held back: it is how the phone becomes registered.
    """
    if method == "REGISTER" or getattr(server, "register_on_enable", 0) != 1:
        return None
    if position > 0:
        return "register_on_enable 1"  # SPEC §5
    if index != 0 and not registered_here and only_signal_with_registered(server, is_domain=is_domain):
        return "only_signal_with_registered 1 and not registered with this failed-over target"  # SPEC §1
    return None


@dataclass
class TargetWalk:
    """One new request's way through ``targets``, starting at ``start``, each target once.

    The order is ``start, start+1, …, last, 0, …, start-1`` (a request that started on a
    secondary because of failback may still reach the primary) [interp]. ``final_list``: this
    list holds the last target the request can go to (server 1 with no server 2, or server 2),
    so the walk's last step gets the full 32 s.
    """

    targets: Sequence[Any]
    start: int = 0
    retry_counts: int = 3
    final_list: bool = True
    position: int = 0  # steps taken
    failures: list[tuple[Any, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.targets)
        if n and not 0 <= self.start < n:
            raise ValueError(f"start index {self.start} outside a list of {n} targets")
        self.order = [(self.start + i) % n for i in range(n)] if n else []

    @property
    def done(self) -> bool:
        return self.position >= len(self.order)

    @property
    def index(self) -> int:
        """Index (in ``targets``) of the current target."""
        return self.order[self.position]

    @property
    def target(self) -> Any:
        return self.targets[self.index]

    @property
    def is_last(self) -> bool:
        return self.position == len(self.order) - 1

    @property
    def max_sends(self) -> int | None:
        return max_sends(self.retry_counts, final=self.final_list and self.is_last)

    def give_up(self, reason: str) -> Any | None:
        """The current target failed (``reason`` for the log); the next target, or None."""
        self.failures.append((self.target, reason))
        self.position += 1
        return None if self.done else self.target
