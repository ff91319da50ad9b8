"""A fake's rules in order, first match wins (the grammar: :mod:`fakes.rules`), sans-I/O.

A :class:`RuleSet` holds the rules of one fake in the order added (``top=True`` puts one
first), checks each against the fake's :class:`Dialect` (what that kind of fake can match on
and do), and decides: :meth:`RuleSet.match` is fed an input's fields and the phone time and
returns the :class:`Installed` rule that applies (or None), keeping each rule's counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from sipharness.fakes.rulefiles import dump_rules, load_rules, rule_lines
from sipharness.fakes.rules import VERB, Action, Rule, RuleError

__all__ = ["Dialect", "Installed", "RuleSet"]


@dataclass(frozen=True)
class Dialect:
    """What one kind of fake understands: its verbs, its match fields, its transports, and a
    last ``check(rule)`` of its own (e.g. the DNS's record types), raising RuleError."""

    name: str
    actions: frozenset[Action]
    match_fields: frozenset[str]
    transports: tuple[str, ...]
    check: Callable[[Rule], None] | None = None

    def validate(self, rule: Rule) -> None:
        if rule.action not in self.actions:
            why = {Action.TRUNCATE: " (truncation is DNS's TC flag; SIP has none)"}.get(rule.action, "")
            raise RuleError(f"{rule.describe()}: the fake {self.name} has no verb {rule.action.value}{why}")
        for f in ("method", "name", "qtype", "transport", "peer"):
            if getattr(rule, f) is not None and f not in self.match_fields:
                raise RuleError(f"{rule.describe()}: the fake {self.name} matches on "
                                f"{', '.join(sorted(self.match_fields))}, not {f}")
        if rule.transport is not None and rule.transport not in self.transports:
            raise RuleError(f"{rule.describe()}: the fake {self.name} serves {', '.join(self.transports)}")
        if rule.action is Action.RESPOND and (rule.status if self.name == "sip" else rule.rcode) is None:
            raise RuleError(f"{rule.describe()}: respond on the fake {self.name} needs "
                            + ("status=" if self.name == "sip" else "rcode="))
        if self.check is not None:
            self.check(rule)


class Installed:
    """A rule in a :class:`RuleSet`: its number (1-based, in order added, never reused) and its
    counters (``seen``: inputs its *what* matched; ``applied``: times it decided)."""

    __slots__ = ("rule", "number", "seen", "applied", "_owner")

    def __init__(self, rule: Rule, number: int, owner: "RuleSet"):
        self.rule, self.number, self._owner = rule, number, owner
        self.seen = 0
        self.applied = 0

    @property
    def active(self) -> bool:
        """Still in its set (not removed, not spent by ``count``)."""
        return self in self._owner._entries

    def remove(self) -> None:
        """Take the rule out (no error if it is already gone, e.g. spent)."""
        self._owner.remove(self)

    def describe(self) -> str:
        return self.rule.describe(self.number)

    @property
    def note(self) -> str:
        """What a record's note says when this rule decided: ``dropped: rule 1 drop REGISTER first=4``."""
        return f"{VERB[self.rule.action]}: {self.describe()}"

    def __repr__(self) -> str:
        return f"<Installed {self.describe()} seen={self.seen} applied={self.applied}>"

    __str__ = describe


class RuleSet:
    """The ordered rules of one fake, first match wins; safe to change while the fake serves."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._entries: list[Installed] = []
        self._next = 1

    # -- building
    def add(self, rule: Rule, *, top: bool = False) -> Installed:
        """Add ``rule`` at the end (``top=True``: first, ahead of every rule already there)."""
        if not isinstance(rule, Rule):
            raise RuleError(f"add() takes a Rule, got {type(rule).__name__}")
        self.dialect.validate(rule)
        entry = Installed(rule, self._next, self)
        self._next += 1
        if top:
            self._entries.insert(0, entry)
        else:
            self._entries.append(entry)
        return entry

    def extend(self, rules: Iterable[Rule]) -> list[Installed]:
        """Add several rules in order; none is added if one is refused."""
        rules = list(rules)
        for r in rules:
            self.dialect.validate(r)
        return [self.add(r) for r in rules]

    def _build(self, action: Action, *, top: bool = False, **spec: Any) -> Installed:
        return self.add(Rule(action, **spec), top=top)

    def remove(self, which: "Installed | Rule | int") -> None:
        """Remove a rule by its handle, its Rule or its number (no error if already gone)."""
        self._entries = [e for e in self._entries
                         if not (e is which or e.rule is which or e.number == which)]

    def clear(self) -> None:
        self._entries = []

    def load(self, text: str, *, format: str = "toml", source: str = "<rules>") -> list[Installed]:
        """Add the rules of a TOML/JSON text (errors name ``source:line``)."""
        rules = load_rules(text, format=format, source=source)
        lines = rule_lines(text, format)
        for i, r in enumerate(rules):
            try:
                self.dialect.validate(r)
            except RuleError as e:
                raise RuleError(f"{source}:{lines.get(i, 0)}: rule {i + 1}: {e}") from None
        return self.extend(rules)

    def dump(self, format: str = "toml") -> str:
        """The rules as a TOML (or JSON) text :meth:`load` reads back."""
        return dump_rules(self.rules, format=format)

    # -- reading
    @property
    def rules(self) -> list[Rule]:
        return [e.rule for e in self._entries]

    def describe(self) -> list[str]:
        return [e.describe() for e in self._entries]

    def __iter__(self) -> Iterator[Installed]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    # -- deciding
    def match(self, now: float, *, method: str | None = None, name: str | None = None, qtype: str | None = None,
              transport: str | None = None, peer: str | None = None) -> Installed | None:
        """The rule that decides this input (the first whose what and limits hold), or None.

        Every rule whose *what* matches counts the input (its index), whether it decides or
        not; the deciding rule counts one application, and leaves the set when its ``count``
        is spent.
        """
        winner = None
        for entry in self._entries:
            rule = entry.rule
            if not rule.matches(method, name, qtype, transport, peer):
                continue
            entry.seen += 1
            if winner is not None:
                continue
            i = entry.seen
            if ((rule.first is None or i <= rule.first) and (rule.nth is None or i in rule.nth)
                    and (rule.from_nth is None or i >= rule.from_nth)
                    and (rule.after is None or now >= rule.after) and (rule.until is None or now < rule.until)):
                winner = entry
        if winner is not None:
            winner.applied += 1
            if winner.rule.count is not None and winner.applied >= winner.rule.count:
                self.remove(winner)
        return winner
