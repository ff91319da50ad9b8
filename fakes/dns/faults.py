"""Scripted DNS faults (SPEC §2 "DNS faults", §8 DNS-7): what the fake does instead of answering.

Sans-I/O: a :class:`Faults` table is asked "which fault applies to this query?" and
answers with a :class:`Fault` (or None); the server carries the fault out (it owns the
sockets and the clock). Rules are matched newest first, so a test can lay a short fault
over a standing one; a rule limited to ``count`` queries removes itself after the last.

Actions:

- ``drop``: no answer at all (a client times out).
- ``delay``: answer normally, ``delay`` phone seconds later (on the server's clock).
- ``servfail``, ``refused``: that rcode, empty answer, no AA.
- ``nxdomain``: NXDOMAIN with the zone's SOA and AA, as if the name did not exist.
- ``truncate``: TC=1 with an empty answer, over UDP *and* TCP (a broken server: the
  client's TCP retry gets no data either).
- ``tcp_only``: UDP queries get TC=1 with an empty answer, TCP queries are answered
  normally (and do not consume ``count``): proves the client retries over TCP.

``delay`` may also be given with ``servfail``/``refused``/``nxdomain``/``truncate``/
``tcp_only`` (the fault's answer comes late).
"""

from __future__ import annotations

from dnslib import QTYPE

__all__ = ["Fault", "Faults", "ACTIONS"]

ACTIONS = ("drop", "delay", "servfail", "refused", "nxdomain", "truncate", "tcp_only")


def _norm_name(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _norm_type(qtype: str | int) -> int:
    if isinstance(qtype, int):
        return qtype
    try:
        return getattr(QTYPE, qtype.upper())
    except Exception:
        raise ValueError(f"fault qtype {qtype!r}: not a DNS record type") from None


class Fault:
    """One rule. ``remaining`` is None (unlimited) or how many more queries it applies to;
    ``hits`` counts the queries it was applied to."""

    def __init__(self, owner: "Faults", action: str, name: str | None, qtype: int | None,
                 count: int | None, delay: float | None):
        self._owner = owner
        self.action, self.name, self.qtype = action, name, qtype
        self.remaining, self.delay = count, delay
        self.hits = 0

    @property
    def active(self) -> bool:
        return self in self._owner._rules

    def remove(self) -> None:
        """Stop applying this rule (no error if already gone, e.g. its count ran out)."""
        self._owner._discard(self)

    def applies(self, name: str, qtype: int, transport: str) -> bool:
        if self.action == "tcp_only" and transport != "udp":
            return False
        return (self.name is None or self.name == name) and (self.qtype is None or self.qtype == qtype)

    @property
    def note(self) -> str:
        """What the record of the answer says: ``fault: drop``, ``fault: servfail after 2s``."""
        if self.action == "delay":
            return f"fault: delay {self.delay:g}s"
        return f"fault: {self.action}" + (f" after {self.delay:g}s" if self.delay else "")

    def __repr__(self) -> str:
        what = f"{self.name or '*'} {QTYPE.get(self.qtype, self.qtype) if self.qtype else '*'}"
        left = "" if self.remaining is None else f" x{self.remaining}"
        return f"<Fault {self.action} {what}{left}{f' delay={self.delay:g}' if self.delay else ''}>"


class Faults:
    """The fault table of one fake DNS server; safe to change while it serves."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []

    def add(self, action: str, *, name: str | None = None, qtype: str | int | None = None,
            count: int | None = None, delay: float | None = None) -> Fault:
        """Apply ``action`` to queries for ``name`` (None: any) of ``qtype`` (None: any),
        for the next ``count`` of them (None: until removed)."""
        if action not in ACTIONS:
            raise ValueError(f"fault action {action!r}: expected one of {', '.join(ACTIONS)}")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError(f"fault count must be an int >= 1 or None, got {count!r}")
        if delay is not None and (not isinstance(delay, (int, float)) or delay < 0):
            raise ValueError(f"fault delay must be >= 0 phone seconds, got {delay!r}")
        if action == "delay" and not delay:
            raise ValueError("fault action 'delay' needs delay=SECONDS > 0")
        if action == "drop" and delay:
            raise ValueError("fault action 'drop' takes no delay (nothing is sent)")
        fault = Fault(self, action, _norm_name(name) if name is not None else None,
                      _norm_type(qtype) if qtype is not None else None, count, float(delay) if delay else None)
        self._rules.append(fault)
        return fault

    def match(self, name: str, qtype: str | int, transport: str) -> Fault | None:
        """The fault to apply to this query (newest matching rule), consuming one of its count."""
        if not self._rules:
            return None
        key, qt = _norm_name(name), _norm_type(qtype)
        for fault in reversed(self._rules):
            if fault.applies(key, qt, transport):
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._discard(fault)
                return fault
        return None

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def _discard(self, fault: Fault) -> None:
        if fault in self._rules:
            self._rules.remove(fault)

    def __iter__(self):
        return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)
