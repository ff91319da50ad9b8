"""The scripted behaviour of a fake SIP server: :mod:`fakes.rules` in the SIP dialect.

The grammar (verbs, match fields, limits, precedence: first matching rule wins, ``top=True``
puts one first, files in TOML/JSON) is :mod:`fakes.rules`, shared with the fake DNS. This
module adds what is SIP's: the builders a test reads as a line, and what each verb means to
a SIP server::

    srv.script.drop("REGISTER", first=4)          # say nothing to the first four REGISTERs
    srv.script.respond("INVITE", 503, after=10.0, headers={"Retry-After": "30"})
    srv.script.silent()                           # every request, from now on
    srv.script.refuse("INVITE", transport="tcp")  # 403 Forbidden
    srv.script.handle("INVITE", decide)           # decide(request) → see below
    srv.script.remove(rule)                       # or srv.script.clear()

A ``handle`` function is called with the parsed request (:class:`sipcore.message.Request`)
and returns what to do: ``None`` (answer as the role would: registrar, proxy, UAS), an int
(that status code, with the standard reason), a :class:`sipcore.message.Response` (sent as
it is, through the server transaction), or ``Action.DROP`` (say nothing). Anything else, or
an exception, is a *serving error* of the fake (kept in ``srv.errors``; the request is
answered 500).

Sans-I/O: :meth:`Script.decide` is fed the request's method, transport, sender and the
phone time, and returns the rule that decides (or None: no rule, answer normally); the
server's core does what it says.
"""

from __future__ import annotations

from typing import Any, Callable

from sipharness.fakes.rules import Action, Rule, RuleError
from sipharness.fakes.ruleset import Dialect, Installed, RuleSet

__all__ = ["Script", "SIP_DIALECT", "Action", "Rule", "Installed", "RuleError"]

SIP_DIALECT = Dialect(
    "sip",
    actions=frozenset({Action.ANSWER, Action.DROP, Action.DELAY, Action.RESPOND, Action.REFUSE, Action.HANDLE}),
    match_fields=frozenset({"method", "transport", "peer"}),
    transports=("udp", "tcp", "tls"),
)

#: what ``refuse`` answers on a SIP server
REFUSE_STATUS = 403


class Script(RuleSet):
    """The rules of one fake SIP server (selectors of every builder: ``transport=``, ``peer=``,
    ``first=``, ``nth=``, ``from_nth=``, ``after=``, ``until=``, ``count=``, ``top=``; the
    answering verbs also take ``delay=``)."""

    def __init__(self) -> None:
        super().__init__(SIP_DIALECT)

    def answer(self, method: str | None = None, **sel: Any) -> Installed:
        """Answer as the role would (a pass rule: shadows wider rules added after it)."""
        return self._build(Action.ANSWER, method=method, **sel)

    def drop(self, method: str | None = None, **sel: Any) -> Installed:
        """Say nothing to matching requests (UDP: dropped; TCP: read and never answered)."""
        return self._build(Action.DROP, method=method, **sel)

    def silent(self, method: str | None = None, **sel: Any) -> Installed:
        """Same as :meth:`drop`; reads better for "the server says nothing"."""
        return self._build(Action.DROP, method=method, **sel)

    def respond(self, method: str | None, status: int, *, reason: str | None = None,
                headers: Any = None, **sel: Any) -> Installed:
        """Answer matching requests with ``status`` (e.g. 503 with ``headers={"Retry-After": "30"}``)."""
        return self._build(Action.RESPOND, method=method, status=status, reason=reason,
                           headers=headers or (), **sel)

    def refuse(self, method: str | None = None, **sel: Any) -> Installed:
        """Answer matching requests 403 Forbidden (the SIP reading of the shared verb)."""
        return self._build(Action.REFUSE, method=method, **sel)

    def delay(self, method: str | None, seconds: float, **sel: Any) -> Installed:
        """Answer matching requests as the role would, ``seconds`` phone seconds late."""
        return self._build(Action.DELAY, method=method, delay=seconds, **sel)

    def handle(self, method: str | None, fn: Callable[[Any], Any], **sel: Any) -> Installed:
        """Call ``fn(request)`` for matching requests; it returns what to do (module docstring)."""
        return self._build(Action.HANDLE, method=method, fn=fn, **sel)

    def decide(self, method: str, transport: str, peer: str, now: float) -> Installed | None:
        """The rule deciding this request, or None (answer normally)."""
        if not self._entries:
            return None
        return self.match(now, method=method, transport=transport, peer=peer)
