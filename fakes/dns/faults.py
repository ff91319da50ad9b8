"""Scripted DNS faults (SPEC §2 "DNS faults", §8 DNS-7): :mod:`fakes.rules` in the DNS dialect.

The grammar (verbs, match fields, limits, precedence: first matching rule wins, ``top=True``
puts one first, files in TOML/JSON) is :mod:`fakes.rules`, shared with the fake SIP servers.
What each verb means to the fake DNS::

    dns.faults.drop(name="example.com", qtype="NAPTR", count=1)   # no answer: the client times out
    dns.faults.delay(2.5, qtype="SRV")          # the normal answer, 2.5 phone seconds late
    dns.faults.servfail(name="example.com")     # respond(rcode="SERVFAIL"): empty, no AA
    dns.faults.refuse()                         # REFUSED, empty, no AA
    dns.faults.nxdomain(name="one.example.com") # NXDOMAIN with the zone's SOA and AA
    dns.faults.truncate()                       # TC=1, empty, over UDP *and* TCP (a broken server)
    dns.faults.tcp_only()                       # truncate(transport="udp"): TCP is answered
    dns.faults.handle(decide, qtype="A")        # decide(query) → see below

A ``handle`` function is called with the decoded query (:class:`fakes.dns.query.Query`:
``qname``, ``type_name``, ``record`` ...) and returns ``None`` (answer normally), an rcode
name (``"SERVFAIL"``, ``"REFUSED"``, ``"NXDOMAIN"``), a dnslib ``DNSRecord`` (sent with the
query's id), bytes (sent as they are) or ``Action.DROP``. Anything else, or an exception,
is a *serving error* of the fake (kept in ``dns.errors``; the query is answered SERVFAIL).

Sans-I/O: :meth:`Faults.decide` is fed the query's name, type, transport, sender and the
phone time and returns the deciding rule (or None); the server carries it out.
"""

from __future__ import annotations

from typing import Any, Callable

from dnslib import QTYPE

from sipharness.fakes.rules import Action, Rule, RuleError
from sipharness.fakes.ruleset import Dialect, Installed, RuleSet

__all__ = ["Faults", "DNS_DIALECT", "RCODES"]

#: the rcodes a ``respond`` rule can send (the answers the authority builds for a fault)
RCODES = ("SERVFAIL", "REFUSED", "NXDOMAIN")


def _check(rule: Rule) -> None:
    if rule.qtype is not None:
        try:
            getattr(QTYPE, rule.qtype)
        except Exception:  # dnslib raises its DNSError for an unknown name
            raise RuleError(f"{rule.describe()}: qtype {rule.qtype!r} is not a DNS record type") from None
    if rule.rcode is not None and rule.rcode not in RCODES:
        raise RuleError(f"{rule.describe()}: rcode {rule.rcode!r}: a fault answers one of {', '.join(RCODES)}")


DNS_DIALECT = Dialect(
    "dns",
    actions=frozenset(Action),
    match_fields=frozenset({"name", "qtype", "transport", "peer"}),
    transports=("udp", "tcp"),
    check=_check,
)


class Faults(RuleSet):
    """The fault rules of one fake DNS (selectors of every builder: ``name=``, ``qtype=``,
    ``transport=``, ``peer=``, ``first=``, ``nth=``, ``from_nth=``, ``after=``, ``until=``,
    ``count=``, ``top=``; the answering verbs also take ``delay=``)."""

    def __init__(self) -> None:
        super().__init__(DNS_DIALECT)

    def answer(self, **sel: Any) -> Installed:
        """Answer normally (a pass rule: shadows wider rules added after it)."""
        return self._build(Action.ANSWER, **sel)

    def drop(self, **sel: Any) -> Installed:
        """No answer at all (the client times out)."""
        return self._build(Action.DROP, **sel)

    def silent(self, **sel: Any) -> Installed:
        """Same as :meth:`drop`."""
        return self._build(Action.DROP, **sel)

    def delay(self, seconds: float, **sel: Any) -> Installed:
        """The normal answer, ``seconds`` phone seconds late."""
        return self._build(Action.DELAY, delay=seconds, **sel)

    def respond(self, rcode: str, **sel: Any) -> Installed:
        """Answer with ``rcode`` (one of :data:`RCODES`) instead of the zone's answer."""
        return self._build(Action.RESPOND, rcode=rcode, **sel)

    def servfail(self, **sel: Any) -> Installed:
        return self.respond("SERVFAIL", **sel)

    def nxdomain(self, **sel: Any) -> Installed:
        return self.respond("NXDOMAIN", **sel)

    def refuse(self, **sel: Any) -> Installed:
        """REFUSED (the DNS reading of the shared verb)."""
        return self._build(Action.REFUSE, **sel)

    def truncate(self, **sel: Any) -> Installed:
        """TC=1 with an empty answer (over TCP too unless ``transport="udp"``)."""
        return self._build(Action.TRUNCATE, **sel)

    def tcp_only(self, **sel: Any) -> Installed:
        """UDP answers truncated, TCP answered normally (TCP queries do not count for the rule)."""
        return self._build(Action.TRUNCATE, transport="udp", **sel)

    def handle(self, fn: Callable[[Any], Any], **sel: Any) -> Installed:
        """Call ``fn(query)`` for matching queries; it returns what to do (module docstring)."""
        return self._build(Action.HANDLE, fn=fn, **sel)

    def decide(self, name: str, qtype: str, transport: str, peer: str, now: float) -> Installed | None:
        """The rule deciding this query (``name`` absolute, lower case), or None."""
        if not self._entries:
            return None
        return self.match(now, name=name, qtype=qtype, transport=transport, peer=peer)
