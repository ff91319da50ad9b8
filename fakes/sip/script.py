"""The scripted behaviour of a fake SIP server: an ordered list of rules, first match wins.

Why a hand-written rule engine: the faults a redundancy test needs are few and precise
("drop the first four REGISTERs", "503 with Retry-After to every INVITE after t = 10 s",
"be silent") and must be readable in a failure report, so each rule prints itself as the
line a test wrote (``drop REGISTER first=4``) and every applied rule is named in the
Record's ``note``. Mock libraries match calls, not SIP requests by attempt number on a
phone clock, so nothing off the shelf fits.

Sans-I/O: :meth:`Script.decide` takes the method, the request index (how many requests of
that method this server has seen, 1-based, retransmissions included: SPEC §3 counts
*attempts*) and the current phone time, and returns a :class:`Decision`. The server adapter
does what the decision says. Going down / up / flapping is socket state and lives in the
server (``FakeSipServer.down``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Rule", "Decision", "Script", "ANSWER", "DROP", "RESPOND", "DELAY"]

ANSWER = "answer"  # answer as the role would (registrar/proxy/uas logic)
DROP = "drop"  # stay silent: UDP datagram dropped, TCP message read and never answered
RESPOND = "respond"  # answer with a fixed status code instead of the role's logic
DELAY = "delay"  # answer as the role would, but ``delay`` phone seconds later


@dataclass
class Rule:
    """One line of a script. ``number`` is stable (1-based, in order added, never reused)."""

    number: int
    action: str
    method: str | None = None  # None: every method
    first: int | None = None  # request index <= first
    nth: frozenset[int] | None = None  # request index in this set
    from_index: int | None = None  # request index >= from_index
    after: float | None = None  # phone time >= after (server clock)
    until: float | None = None  # phone time < until
    count: int | None = None  # applies at most this many times, then is spent
    status: int | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    applied: int = 0

    def matches(self, method: str, index: int, now: float) -> bool:
        if self.count is not None and self.applied >= self.count:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.first is not None and index > self.first:
            return False
        if self.nth is not None and index not in self.nth:
            return False
        if self.from_index is not None and index < self.from_index:
            return False
        if self.after is not None and now < self.after:
            return False
        if self.until is not None and now >= self.until:
            return False
        return True

    def describe(self) -> str:
        """The rule as one line, e.g. ``rule 1 drop REGISTER first=4``."""
        parts = [f"rule {self.number}", self.action if self.action != RESPOND else f"respond {self.status}"]
        parts.append(self.method or "*")
        if self.action == DELAY:
            parts.append(f"by={self.delay:g}s")
        if self.first is not None:
            parts.append(f"first={self.first}")
        if self.nth is not None:
            parts.append("nth=" + ",".join(str(i) for i in sorted(self.nth)))
        if self.from_index is not None:
            parts.append(f"from_index={self.from_index}")
        if self.after is not None:
            parts.append(f"after={self.after:g}")
        if self.until is not None:
            parts.append(f"until={self.until:g}")
        if self.count is not None:
            parts.append(f"count={self.count}")
        for k, v in self.headers.items():
            parts.append(f"{k}: {v}")
        return " ".join(parts)

    __str__ = describe


@dataclass(frozen=True)
class Decision:
    """What to do with one request. ``rule`` is None when no rule matched (answer normally)."""

    action: str
    rule: Rule | None = None
    status: int | None = None
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @property
    def note(self) -> str:
        """Text for the Record's ``note``: ``dropped: rule 1 drop REGISTER first=4``; "" when unscripted."""
        if self.rule is None:
            return ""
        verb = {DROP: "dropped", RESPOND: "scripted", DELAY: "delayed", ANSWER: "answered"}[self.action]
        return f"{verb}: {self.rule.describe()}"


_NORMAL = Decision(ANSWER)


class Script:
    """The rules of one server. Methods read as a line in a test::

        server.script.drop("REGISTER", first=4)
        server.script.respond("INVITE", 503, after=10.0, headers={"Retry-After": "30"})
        server.script.silent()            # every request, from now on
        server.script.remove(rule)        # or server.script.clear()

    Selectors shared by every rule: ``method`` (None = all), ``first=N`` (request index
    <= N), ``nth=`` (an index or iterable of indices), ``from_index=N`` (index >= N),
    ``after=``/``until=`` (phone time window on the server's clock, absolute), ``count=``
    (spent after applying that many times).
    """

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self._next = 1

    # building rules
    def _add(self, action: str, method: str | None, *, first=None, nth=None, from_index=None, after=None,
             until=None, count=None, status=None, reason=None, headers=None, delay=0.0) -> Rule:
        if method is not None:
            if not isinstance(method, str) or not method.isalpha():
                raise ValueError(f"script rule: method must be a SIP method name like 'REGISTER' or None, got {method!r}")
            method = method.upper()
        for name, value in (("first", first), ("from_index", from_index), ("count", count)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"script rule: {name} must be an int >= 1, got {value!r}")
        if nth is not None:
            nth = frozenset([nth] if isinstance(nth, int) else nth)
            if not nth or any(not isinstance(i, int) or i < 1 for i in nth):
                raise ValueError(f"script rule: nth must be request indices >= 1, got {sorted(nth)!r}")
        if after is not None and until is not None and until <= after:
            raise ValueError(f"script rule: until={until!r} must be later than after={after!r}")
        if status is not None and not (100 <= int(status) <= 699):
            raise ValueError(f"script rule: status must be 100..699, got {status!r}")
        if delay < 0:
            raise ValueError(f"script rule: delay must be >= 0 phone seconds, got {delay!r}")
        rule = Rule(self._next, action, method, first, nth, from_index, after, until, count,
                    int(status) if status is not None else None, reason, dict(headers or {}), float(delay))
        self._next += 1
        self.rules.append(rule)
        return rule

    def answer(self, method: str | None = None, **sel) -> Rule:
        """Answer normally (useful before a wider rule: rules apply in order, first match wins)."""
        return self._add(ANSWER, method, **sel)

    def drop(self, method: str | None = None, **sel) -> Rule:
        """Stay silent to matching requests (UDP: dropped; TCP: read and never answered)."""
        return self._add(DROP, method, **sel)

    def silent(self, method: str | None = None, **sel) -> Rule:
        """Same as :meth:`drop`; reads better for "the server says nothing"."""
        return self._add(DROP, method, **sel)

    def respond(self, method: str | None, status: int, *, reason: str | None = None,
                headers: dict[str, str] | None = None, **sel) -> Rule:
        """Answer matching requests with ``status`` (e.g. 503 with ``headers={"Retry-After": "30"}``)."""
        return self._add(RESPOND, method, status=status, reason=reason, headers=headers, **sel)

    def delay(self, method: str | None, seconds: float, **sel) -> Rule:
        """Answer matching requests normally, ``seconds`` phone seconds late."""
        return self._add(DELAY, method, delay=seconds, **sel)

    def remove(self, rule: Rule | int) -> None:
        number = rule if isinstance(rule, int) else rule.number
        self.rules = [r for r in self.rules if r.number != number]

    def clear(self) -> None:
        self.rules = []

    # deciding
    def decide(self, method: str, index: int, now: float) -> Decision:
        """The first rule matching (method, index, now) decides; no match → answer normally."""
        for rule in self.rules:
            if rule.matches(method, index, now):
                rule.applied += 1
                return Decision(rule.action, rule, rule.status, rule.reason, dict(rule.headers), rule.delay)
        return _NORMAL

    def describe(self) -> list[str]:
        return [r.describe() for r in self.rules]

    def __iter__(self) -> Iterable[Rule]:
        return iter(list(self.rules))

    def __len__(self) -> int:
        return len(self.rules)
