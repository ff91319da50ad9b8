"""One fault grammar for every fake: rules as plain data, read top to bottom, first match wins.

A test scripts a fake SIP server (``srv.script``) and a fake DNS (``dns.faults``) with the
same rules. A rule is frozen data (:class:`Rule`): **what** it matches, **when** it applies,
and **what it does** (an :class:`Action`). It prints itself as the line a test wrote
(``rule 1 drop REGISTER first=4``) and every applied rule is named in the record's note, so
a ladder says which rule made a fake misbehave.

Precedence, the one rule for all fakes: **the first matching rule in the order added wins**,
as a firewall reads its rules top to bottom. A rule added later never overrides an earlier
one; to lay a short fault over a standing one, add it with ``top=True`` (it goes first).

Verbs (:class:`Action`):

========== ============================================ ======================================
verb       SIP server (``srv.script``)                  DNS (``dns.faults``)
========== ============================================ ======================================
answer     as the role would (a pass rule that shadows wider rules below it)
drop       say nothing (``silent`` is the same verb): UDP datagram dropped, TCP read and ignored
delay      answer as the role would, ``delay`` seconds (phone time) late
respond    ``status`` (+ ``reason``, ``headers``)       ``rcode``: SERVFAIL, REFUSED, NXDOMAIN
refuse     403 Forbidden                                REFUSED
truncate   (no SIP equivalent: refused)                 TC=1, empty answer
handle     ``fn(request)`` decides (see the fakes)      ``fn(query)`` decides
========== ============================================ ======================================

``respond``, ``refuse`` and ``truncate`` also take ``delay`` (the answer comes late).

What a rule matches (None: anything): ``method`` (SIP), ``name`` and ``qtype`` (DNS),
``transport`` ("udp", "tcp", "tls") and ``peer`` (the sender's IP address).

When it applies, counted per rule from when it was added: its *index* is the number of
inputs that matched its *what* so far (this one included; retransmissions count: SPEC §3
counts attempts), whatever other rules did with them. ``first=N`` (index <= N),
``nth=`` (an index or a list of them), ``from_nth=N`` (index >= N), ``after=`` / ``until=``
(phone time on the fake's clock, absolute: after <= now < until), ``count=N`` (applies N
times, then is spent and leaves the list).

Files: rules serialise to and from TOML and JSON, both as a list of tables named ``rule``::

    # first matching rule wins
    [[rule]]
    action = "respond"
    method = "INVITE"
    status = 503
    after = 10.0
    headers = { "Retry-After" = "30" }

A ``handle`` rule holds code and is refused there. Errors in a file name the place
(``faults.toml:7: rule 2: ...``).

This module is the data (:class:`Rule`, :class:`Action`); :mod:`fakes.ruleset` keeps a
fake's ordered rules and decides (sans-I/O: fed the input's fields and ``now``, it returns
the applied rule or None; the fake does the rest); :mod:`fakes.rulefiles` reads and writes
files.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Callable, Mapping

__all__ = ["Action", "Rule", "RuleError", "VERB"]


class Action(Enum):
    """What a rule does (the verbs of the table in the module docstring)."""

    ANSWER = "answer"
    DROP = "drop"
    DELAY = "delay"
    RESPOND = "respond"
    REFUSE = "refuse"
    TRUNCATE = "truncate"
    HANDLE = "handle"


#: how a record's note names what a rule did: ``dropped: rule 1 drop REGISTER first=4``
VERB = {Action.ANSWER: "answered", Action.DROP: "dropped", Action.DELAY: "delayed", Action.RESPOND: "scripted",
        Action.REFUSE: "refused", Action.TRUNCATE: "truncated", Action.HANDLE: "handled"}
_ALIASES = {"silent": Action.DROP}  # a file may say "silent" as the builders do

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")  # RFC 3261 token (methods, header names)
_TRANSPORTS = ("udp", "tcp", "tls")


class RuleError(ValueError):
    """A rule that cannot be: the message names the rule (and the file:line when loaded)."""


def _int(name: str, value: Any, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _time(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RuleError(f"{name} must be a number of phone seconds >= 0, got {value!r}")
    return float(value)


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
        raise RuleError(f"{name} must be one line of text, got {value!r}")
    return value


@dataclass(frozen=True)
class Rule:
    """One rule: what it matches, when it applies, what it does. Plain frozen data.

    Build one with a fake's builders (``srv.script.drop("REGISTER", first=4)``) or directly
    (``Rule(Action.DROP, method="REGISTER", first=4)``); the constructor checks and
    normalises every field (``method`` upper case, ``name`` lower case and absolute) and
    raises :class:`RuleError` naming the field.
    """

    action: Action
    # what it matches (None: anything)
    method: str | None = None
    name: str | None = None
    qtype: str | None = None
    transport: str | None = None
    peer: str | None = None
    # when it applies
    first: int | None = None
    nth: frozenset[int] | None = None
    from_nth: int | None = None
    after: float | None = None
    until: float | None = None
    count: int | None = None
    # what it does
    status: int | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    rcode: str | None = None
    delay: float = 0.0
    fn: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        action = self.action
        if isinstance(action, str):
            key = action.strip().lower()
            action = _ALIASES.get(key) or next((a for a in Action if a.value == key), None)
            if action is None:
                raise RuleError(f"action {self.action!r}: expected one of "
                                f"{', '.join(a.value for a in Action)} (or silent)")
            set_(self, "action", action)
        elif not isinstance(action, Action):
            raise RuleError(f"action must be an Action or its name, got {action!r}")
        if self.method is not None:
            if not isinstance(self.method, str) or not _TOKEN.match(self.method):
                raise RuleError(f"method must be a SIP method name like 'REGISTER', got {self.method!r}")
            set_(self, "method", self.method.upper())
        if self.name is not None:
            name = _text("name", self.name).strip().lower()
            if not name or len(name) > 255:
                raise RuleError(f"name must be a domain name, got {self.name!r}")
            set_(self, "name", name if name.endswith(".") else name + ".")
        if self.qtype is not None:
            if not isinstance(self.qtype, str) or not self.qtype.isalnum():
                raise RuleError(f"qtype must be a record type name like 'NAPTR', got {self.qtype!r}")
            set_(self, "qtype", self.qtype.upper())
        if self.transport is not None:
            t = self.transport.lower() if isinstance(self.transport, str) else None
            if t not in _TRANSPORTS:
                raise RuleError(f"transport must be one of {', '.join(_TRANSPORTS)}, got {self.transport!r}")
            set_(self, "transport", t)
        if self.peer is not None:
            try:
                set_(self, "peer", str(ipaddress.ip_address(self.peer)))
            except ValueError:
                raise RuleError(f"peer must be an IP address, got {self.peer!r}") from None
        for n in ("first", "from_nth", "count"):
            _int(n, getattr(self, n))
        if self.nth is not None:
            nth = [self.nth] if isinstance(self.nth, int) and not isinstance(self.nth, bool) else self.nth
            try:
                values = frozenset(_int("nth", i) for i in nth)
            except TypeError:
                raise RuleError(f"nth must be an index or a list of indices >= 1, got {self.nth!r}") from None
            if not values:
                raise RuleError("nth must name at least one index")
            set_(self, "nth", values)
        set_(self, "after", _time("after", self.after))
        set_(self, "until", _time("until", self.until))
        if self.after is not None and self.until is not None and self.until <= self.after:
            raise RuleError(f"until={self.until:g} must be later than after={self.after:g}")
        set_(self, "delay", _time("delay", self.delay))
        if self.status is not None and (isinstance(self.status, bool) or not isinstance(self.status, int)
                                        or not 100 <= self.status <= 699):
            raise RuleError(f"status must be a SIP status code 100..699, got {self.status!r}")
        _text("reason", self.reason)
        headers = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        pairs = []
        for pair in headers:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise RuleError(f"headers must be name → value pairs, got {pair!r}")
            k, v = pair
            if not isinstance(k, str) or not _TOKEN.match(k):
                raise RuleError(f"header name {k!r} is not a SIP token")
            if not isinstance(v, str) or any(c in v for c in "\r\n\0"):
                raise RuleError(f"header {k}: value must be one line of text, got {v!r}")
            pairs.append((k, v))
        set_(self, "headers", tuple(pairs))
        if self.rcode is not None:
            if not isinstance(self.rcode, str) or not self.rcode.isalpha():
                raise RuleError(f"rcode must be a DNS rcode name like 'SERVFAIL', got {self.rcode!r}")
            set_(self, "rcode", self.rcode.upper())
        self._check_action()

    def _check_action(self) -> None:
        a = self.action
        answer = (self.status, self.reason, self.headers or None, self.rcode)
        if a is Action.RESPOND:
            if (self.status is None) == (self.rcode is None):
                raise RuleError("respond needs status= (SIP) or rcode= (DNS)")
        elif any(x is not None for x in answer):
            raise RuleError(f"{a.value} takes no status, reason, headers or rcode (only respond does)")
        if a is Action.DELAY and self.delay <= 0:
            raise RuleError("delay needs delay= phone seconds > 0")
        if a in (Action.DROP, Action.ANSWER, Action.HANDLE) and self.delay:
            raise RuleError(f"{a.value} takes no delay" + (" (nothing is sent)" if a is Action.DROP else ""))
        if (a is Action.HANDLE) != (self.fn is not None):
            raise RuleError("handle needs fn= (a callable)" if a is Action.HANDLE
                            else f"{a.value} takes no fn (only handle does)")
        if self.fn is not None and not callable(self.fn):
            raise RuleError(f"fn must be callable, got {self.fn!r}")

    # -- matching (the *what*; the limits are the RuleSet's, it keeps the counters)
    def matches(self, method: str | None = None, name: str | None = None, qtype: str | None = None,
                transport: str | None = None, peer: str | None = None) -> bool:
        """Whether an input with these fields is one this rule is about (its limits aside)."""
        return ((self.method is None or self.method == method) and (self.name is None or self.name == name)
                and (self.qtype is None or self.qtype == qtype)
                and (self.transport is None or self.transport == transport)
                and (self.peer is None or self.peer == peer))

    def describe(self, number: int | None = None) -> str:
        """One line: ``rule 1 respond 503 INVITE after=10 Retry-After: 30``."""
        parts = [f"rule {number}"] if number is not None else []
        verb = self.action.value
        if self.action is Action.RESPOND:
            verb += f" {self.status if self.status is not None else self.rcode}"
        parts.append(verb)
        if self.name is not None or self.qtype is not None:
            name = self.name.rstrip(".") or "." if self.name is not None else "*"
            parts.append(f"{self.qtype or '*'} {name}")
        else:
            parts.append(self.method or "*")
        if self.delay:
            parts.append(f"by={self.delay:g}s")
        for key in ("transport", "peer", "first"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)}")
        if self.nth is not None:
            parts.append("nth=" + ",".join(str(i) for i in sorted(self.nth)))
        for key in ("from_nth", "after", "until", "count"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={value:g}")
        if self.reason is not None:
            parts.append(f"reason={self.reason!r}")
        parts.extend(f"{k}: {v}" for k, v in self.headers)
        if self.fn is not None:
            parts.append(getattr(self.fn, "__qualname__", repr(self.fn)))
        return " ".join(parts)

    __str__ = describe

    # -- plain data
    def to_dict(self) -> dict[str, Any]:
        """The rule as a dict of plain values (the fields that are set), as files hold it."""
        if self.fn is not None:
            raise RuleError(f"{self.describe()}: a handle rule holds code and cannot be written to a file")
        out: dict[str, Any] = {"action": self.action.value}
        for f in fields(self):
            if f.name in ("action", "fn"):
                continue
            value = getattr(self, f.name)
            if value is None or value == () or (f.name == "delay" and not value):
                continue
            if f.name == "nth":
                value = sorted(value)
            elif f.name == "headers":
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Rule":
        """A rule from :meth:`to_dict`'s shape; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise RuleError(f"a rule is a table of fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"fn"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(sorted(known))})")
        if "action" not in data:
            raise RuleError("no action")
        return cls(**dict(data))
