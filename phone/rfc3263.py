"""The RFC 3263 plan: ``sip_server.Y`` → the ordered list of targets (SPEC §2).

This module holds SPEC §2's steps and is the only place that builds a :class:`Target` (an IP
literal's too: :func:`literal_targets`); what it is fed (records, faults) is
:mod:`phone.dnsrecords`, the order of SRV records :mod:`phone.srvorder`. Two layers, in the
project's sans-I/O style:

- :class:`Resolution` is the plan for one lookup. It knows nothing of sockets or clocks: it
  says which query to make next (:meth:`Resolution.next_query`), is fed the answer (records
  or a :class:`Fault`), and when done exposes the ordered :class:`Target` list and a log of
  every decision. Every rule of SPEC §2 lives here and is tested on canned answers.
- :class:`phone.dnsclient.Resolver` (the DNS client) puts it on the wire with
  ``twisted.names`` and keeps the TTL cache on the injected clock.

What a hostile or broken DNS server cannot make the plan do (SPEC §2, issue 12): use a record
that does not answer the question (its owner must be the name asked, or reached from it by a
CNAME of the same answer [RFC 2181 §5.4.1, RFC 5452]); use more than
:data:`MAX_RECORDS_PER_ANSWER` records of one answer; ask more than
:data:`MAX_QUERIES_PER_LOOKUP` queries in one lookup. Each cut is a log line.

Why written by hand: no Python library implements the *guide's* reading of RFC 3263. The
guide orders equal-priority SRV records by weight, heaviest first, instead of RFC 2782's
weighted random (both are offered, ``srv_select``), re-queries NAPTR on a record with empty
flags, picks the fallback SRV names by ``naptr_build`` and treats DNS faults step by step
([interp] rules of SPEC §2). dnspython's resolver does the wire only and twisted.names has no
RFC 3263 logic at all.

The plan is written as a generator (each ``yield`` is one query, the answer is sent back),
so the order of the steps reads top to bottom like SPEC §2.
"""

from __future__ import annotations

import ipaddress
import random as _random
from typing import Any, Generator, NamedTuple, Sequence

from sipharness.sipcore.uri import default_port

from sipharness.phone.srvorder import SRV_SELECT, order_srv
from sipharness.phone.dnsrecords import (Answer, Cname, Fault, Naptr, Query, Srv, Target, brief, hostname, invalid,
                                         is_ip_literal, names_answering, shared_text, u16)

__all__ = [
    "Resolution",
    "TRANSPORTS",
    "NAPTR_LOOP_GUARD",
    "literal_targets",
    "hop_target",
    "MAX_RECORDS_PER_ANSWER",
    "MAX_QUERIES_PER_LOOKUP",
]

# account.X.transport → transport of the targets (3 = DNS-NAPTR decides). SPEC §1
TRANSPORTS = {0: "udp", 1: "tcp", 2: "tls"}
_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}  # SPEC §2 [RFC]
_NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}  # SPEC §2 [seed]
NAPTR_LOOP_GUARD = 8  # at most this many NAPTR queries in one lookup, SPEC §2
# SPEC §2 [interp]: records of one answer the plan uses (the most preferred, after ordering) and
# queries one lookup may make. A real SIP service has a handful of each; 1 000 SRV records once
# cost ~850 A queries for one lookup (issue 12). 16 targets already mean 2 minutes of failover.
MAX_RECORDS_PER_ANSWER = 16
MAX_QUERIES_PER_LOOKUP = 64
_LOG_EXAMPLES = 3  # records quoted when many are cut or ignored (the rest are counted)


def hop_target(host: str, port: int, transport: str) -> Target:
    """The next hop of an in-dialog request (the dialog's route or remote target, RFC 3261
    §12.2.1.1): SPEC §5 says those follow the dialog, never a failover, so no lookup."""
    return Target(host, port, transport, source="in-dialog next hop")


def literal_targets(address: str, port: int = 0, transport: int = 0) -> list[Target]:
    """The one target of an IP-literal server address (SPEC §2: no DNS).

    Transport 3 (DNS-NAPTR) has no DNS to ask here, so UDP [RFC 3263 §4.1: a numeric IP
    address uses UDP for a sip: URI]; ``naptr_build`` does not apply (it picks the SRV names
    when NAPTR gives nothing, and no NAPTR is asked)."""
    return Resolution(address, port, transport).targets


# --- the plan ------------------------------------------------------------------------------


class _Chain(NamedTuple):
    """How we got to an SRV name: text for Target.source and when each record of it expires."""

    text: tuple[str, ...]
    expiries: tuple[float, ...]


class Resolution:
    """The sans-I/O plan of one RFC 3263 lookup (SPEC §2).

    ``address``/``port``/``transport``/``naptr_build`` are the account settings
    (``transport``: 0 UDP, 1 TCP, 2 TLS, 3 DNS-NAPTR). ``srv_select``: ``"seed"`` (equal
    priority → heavier weight first; equal priority and weight → an order drawn from ``rng``
    for this resolution, so a fleet spreads over those hosts) or ``"rfc2782"`` (weighted
    random, drawn from ``rng``). ``rng``: a :class:`random.Random` (inject a seeded one for
    an exact test). ``ipv6``: also query AAAA. ``now``: phone time at the start;
    :meth:`feed` takes the time each answer arrived.

    Loop: ``while (q := r.next_query()) is not None: r.feed(q.name, q.qtype, answer, now=t)``;
    then :attr:`targets`, :attr:`log`, :attr:`expires_at` (when the result should be
    re-resolved; None = never, for an IP literal) and :attr:`cacheable`.
    """

    def __init__(
        self,
        address: str,
        port: int = 0,
        transport: int = 0,
        naptr_build: int = 0,
        *,
        srv_select: str = "seed",
        ipv6: bool = False,
        now: float = 0.0,
        rng: _random.Random | None = None,
    ):
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"address: expected an IP literal or a domain name, got {address!r}")
        if not u16(port):
            raise ValueError(f"port: expected 0..65535, got {port!r}")
        if transport not in (0, 1, 2, 3):
            raise ValueError(f"transport: expected 0 UDP, 1 TCP, 2 TLS or 3 DNS-NAPTR, got {transport!r}")
        if naptr_build not in (0, 1):
            raise ValueError(f"naptr_build: expected 0 (UDP SRV) or 1 (TCP/TLS SRV), got {naptr_build!r}")
        if srv_select not in SRV_SELECT:
            raise ValueError(f"srv_select: expected one of {SRV_SELECT}, got {srv_select!r}")
        self.address = address.strip()
        self.port = port
        self.transport = transport
        self.naptr_build = naptr_build
        self.srv_select = srv_select
        self.ipv6 = bool(ipv6)
        self.now = float(now)
        self.started_at = self.now
        self.rng = rng if rng is not None else _random.Random()
        self.targets: list[Target] = []
        self.log: list[str] = []
        self.queries: list[Query] = []  # every query made, in order
        self.faults: list[tuple[Query, Fault]] = []
        self._expiries: list[float] = []  # expiry of every record the result depends on
        self._answered: dict[Query, list[Any]] = {}
        self._additional: Sequence[Any] = ()
        self._pending: Query | None = None
        self.done = False
        self._gen = self._plan()
        self._advance(None)

    # public driving interface
    def next_query(self) -> Query | None:
        """The query to make now, or None when done."""
        return self._pending

    def feed(self, name: str, qtype: str, answer: Answer, now: float | None = None,
             additional: Sequence[Any] = ()) -> None:
        """Give the answer (the answer section's records, or a :class:`Fault`) to the pending
        query; ``additional``: the additional section's records (never used: the phone asks A
        for each target itself [seed]; the ones that are not glue of this answer are logged)."""
        if self._pending is None:
            raise RuntimeError(f"feed({name!r}, {qtype!r}): no query is pending (resolution done)")
        if (hostname(name) or name, qtype.upper()) != tuple(self._pending):
            raise ValueError(f"feed({name!r}, {qtype!r}): the pending query is {self._pending.qtype} {self._pending.name}")
        if now is not None:
            self.now = float(now)
        self._additional = additional
        self._advance(answer)

    @property
    def cacheable(self) -> bool:
        """A result is cached only if it has targets and no step met a fault (SPEC §2 [interp])."""
        return bool(self.targets) and not self.faults

    @property
    def expires_at(self) -> float | None:
        """Phone time the result must be re-resolved: the smallest TTL of the chain."""
        if not self._expiries:
            return None
        return min(self._expiries)

    # internals
    def _advance(self, answer: Any) -> None:
        try:
            q = self._gen.send(answer)
        except StopIteration:
            self._pending = None
            self.done = True
            # a finished plan lets go of what only the lookup needed: its frame, the answers it
            # memoized per query, the expiry of each record (their minimum is what is left to
            # read); a phone keeps its last lookups for the log, 10 000 phones in a process
            self._gen = None
            self._answered.clear()
            if len(self._expiries) > 1:
                self._expiries = [min(self._expiries)]
            return
        self._pending = q
        self.queries.append(q)

    def _note(self, text: str) -> None:
        self.log.append(shared_text(text))

    def _ask(self, name: str, qtype: str) -> Generator[Query, Any, list[Any]]:
        """One query; returns the usable records of the answer ([] on a fault, logged).

        Usable: valid (:func:`_invalid`) and answering the question: owned by ``name`` or by a
        name a CNAME of the same answer leads to from it (SPEC §2 [RFC 2181 §5.4.1, RFC 5452]).
        """
        q = Query(name, qtype)
        if q in self._answered:  # asked already in this lookup (e.g. NAPTR's UDP SRV, then naptr_build 0)
            self._note(f"{qtype} {name}: answered earlier in this lookup")
            return self._answered[q]
        self._answered[q] = []
        if len(self.queries) >= MAX_QUERIES_PER_LOOKUP:
            self.faults.append((q, Fault.BUDGET))
            self._note(f"{qtype} {name}: not asked: this lookup made {MAX_QUERIES_PER_LOOKUP} queries already "
                       f"(SPEC §2 [interp])")
            return []
        answer = yield q
        if isinstance(answer, Fault):
            if answer is Fault.NXDOMAIN:
                self._note(f"{qtype} {name}: NXDOMAIN")
            else:
                self.faults.append((q, answer))
                self._note(f"{qtype} {name}: {answer.value} → as empty")
            return []
        if answer is None or isinstance(answer, (str, bytes)):
            self.faults.append((q, Fault.ERROR))
            self._note(f"{qtype} {name}: unusable answer {answer!r} → as empty")
            return []
        answer = list(answer)
        names = names_answering(name, answer)
        good, bad, foreign = [], [], []
        for rec in answer:
            if isinstance(rec, Cname):
                if hostname(rec.owner) not in names:
                    foreign.append(rec)
                continue
            owner = getattr(rec, "owner", None)
            why = invalid(rec, qtype)
            if why:
                bad.append(f"{why}: {rec!r}")
            elif owner is not None and hostname(owner) not in names:
                foreign.append(rec)
            else:
                good.append(rec)
        if bad:
            self._note(f"{qtype} {name}: {len(bad)} bad record(s) skipped: " + "; ".join(bad[:_LOG_EXAMPLES])
                       + (" ..." if len(bad) > _LOG_EXAMPLES else ""))
        if foreign:
            self._note(f"{qtype} {name}: {len(foreign)} record(s) that do not answer the question ignored "
                       f"(SPEC §2): " + "; ".join(brief(r) for r in foreign[:_LOG_EXAMPLES])
                       + (" ..." if len(foreign) > _LOG_EXAMPLES else ""))
        if len(names) > 1:
            self._note(f"{qtype} {name}: CNAME → {' → '.join(sorted(names - {name}))}")
        self._note_additional(name, qtype, good)
        self._note(f"{qtype} {name}: {len(good)} record(s)")
        self._answered[q] = good
        return good

    def _note_additional(self, name: str, qtype: str, good: list[Any]) -> None:
        """Log the additional-section records that are not glue of this answer (SPEC §2)."""
        extra, self._additional = self._additional, ()
        if not extra:
            return
        glue = {hostname(r.target) for r in good if isinstance(r, Srv)}
        glue |= {hostname(r.replacement) for r in good if isinstance(r, Naptr)}
        stray = [r for r in extra if hostname(getattr(r, "owner", None)) not in glue]
        if stray:
            self._note(f"{qtype} {name}: {len(stray)} additional record(s) for names this answer does not lead "
                       f"to ignored: " + "; ".join(brief(r) for r in stray[:_LOG_EXAMPLES])
                       + (" ..." if len(stray) > _LOG_EXAMPLES else ""))

    def _cut(self, records: list[Any], what: str) -> list[Any]:
        """The first :data:`MAX_RECORDS_PER_ANSWER` of ``records`` (already in preference order)."""
        if len(records) <= MAX_RECORDS_PER_ANSWER:
            return records
        cut = records[MAX_RECORDS_PER_ANSWER:]
        self._note(f"{what}: {len(records)} usable records, the first {MAX_RECORDS_PER_ANSWER} used, {len(cut)} cut "
                   f"(SPEC §2 [interp]): " + "; ".join(brief(r) for r in cut[:_LOG_EXAMPLES])
                   + (" ..." if len(cut) > _LOG_EXAMPLES else ""))
        return records[:MAX_RECORDS_PER_ANSWER]

    def _plan(self) -> Generator[Query, Any, None]:
        addr = self.address
        # SPEC §2: an IP literal is one target, no DNS; port 0 → 5060 (5061 for TLS).
        if is_ip_literal(addr):
            host = str(ipaddress.ip_address(addr.strip("[]")))
            transport = TRANSPORTS.get(self.transport, "udp")
            port = self.port or default_port(transport)
            self._note(f"{addr} is an IP literal: no DNS")
            self.targets = [Target(host, port, transport, None, None, "IP literal")]
            return
        domain = hostname(addr)
        if domain is None or domain == ".":
            raise ValueError(f"address: {addr!r} is neither an IP literal nor a valid domain name")

        if self.port != 0:
            # SPEC §2: explicit port → A query only (transport 3 with a port: UDP [interp, RFC 3263 §4.1]).
            transport = TRANSPORTS.get(self.transport, "udp")
            self._note(f"explicit port {self.port}: A query only on {domain}")
            yield from self._resolve_host(domain, self.port, transport, _Chain((), ()))
            return

        srv_found = False
        if self.transport == 3:
            # SPEC §2: NAPTR, then SRV, then A.
            found, srv_found = yield from self._naptr(domain)
            if found:
                return
            if self.naptr_build == 0:
                fallbacks = ["udp"]
            else:
                fallbacks = ["tcp", "tls"]
            self._note(f"NAPTR gave no usable record: SRV by naptr_build {self.naptr_build}")
            a_transport = fallbacks[0]
        else:
            fallbacks = [TRANSPORTS[self.transport]]
            a_transport = fallbacks[0]
        for transport in fallbacks:
            name = f"{_SRV_PREFIX[transport]}.{domain}"
            got, answered = yield from self._srv(name, transport, _Chain((), ()))
            srv_found = srv_found or answered
            if got:
                return
        if srv_found:
            self._note("SRV said no service ('.') or gave no address: no A query on the domain")
            return
        # SPEC §2: no SRV and no NAPTR result → A on the domain, port 5060 (5061 for TLS, RFC 3263).
        port = default_port(a_transport)
        self._note(f"no SRV/NAPTR result: A on {domain}, port {port}")
        yield from self._resolve_host(domain, port, a_transport, _Chain((), ()))

    def _naptr(self, domain: str) -> Generator[Query, Any, tuple[bool, bool]]:
        """NAPTR stage. Returns (targets found, some SRV answered with records)."""
        steps = 0
        srv_answered = False
        # Depth-first: candidates of a re-query come before the rest of the outer list.
        stack: list[tuple[Naptr, _Chain, float]] = []
        pending_names: list[tuple[str, _Chain]] = [(domain, _Chain((), ()))]
        while pending_names or stack:
            if pending_names:
                name, chain = pending_names.pop()
                steps += 1
                if steps > NAPTR_LOOP_GUARD:
                    self._note(f"NAPTR loop guard: more than {NAPTR_LOOP_GUARD} NAPTR queries → no NAPTR result")
                    return False, srv_answered
                records = yield from self._ask(name, "NAPTR")
                usable = []
                for r in sorted(records, key=lambda r: (r.order, r.preference)):  # SPEC §2 [RFC 3403]
                    flags = r.flags.lower()
                    service = r.service.upper()
                    if flags == "s" and service in _NAPTR_SERVICES:
                        usable.append(r)
                    elif flags == "" and (service == "" or service in _NAPTR_SERVICES):
                        usable.append(r)
                    else:
                        self._note(f"NAPTR {r.order} {r.preference} {r.flags!r} {r.service!r} skipped")
                usable = self._cut(usable, f"NAPTR {name}")
                stack[:0] = [(r, chain, self.now) for r in usable]
                continue
            rec, chain, received = stack.pop(0)
            repl = hostname(rec.replacement)
            step = f"NAPTR {rec.order} {rec.preference} {rec.service or '(no service)'}"
            link = _Chain(chain.text + (step,), chain.expiries + (received + rec.ttl,))
            if rec.flags == "":
                # SPEC §2 [seed]: empty flags → NAPTR query again on the replacement.
                self._note(f"{step} flags empty → NAPTR again on {repl}")
                pending_names.append((repl, link))
                continue
            transport = _NAPTR_SERVICES[rec.service.upper()]
            self._note(f"{step} → SRV {repl} ({transport})")
            got, answered = yield from self._srv(repl, transport, link)
            srv_answered = srv_answered or answered
            if got:
                return True, srv_answered
        return False, srv_answered

    def _srv(self, name: str, transport: str, chain: _Chain) -> Generator[Query, Any, tuple[bool, bool]]:
        """SRV on ``name`` then A per target. Returns (targets found, answered with records)."""
        records = yield from self._ask(name, "SRV")
        received = self.now
        if not records:
            return False, False
        live = [r for r in records if hostname(r.target) != "."]
        if not live:
            self._note(f"SRV {name}: target '.' → no service")  # SPEC §2 [RFC 2782]
            return False, True
        ordered = self._cut(order_srv(live, self.srv_select, self.rng, MAX_RECORDS_PER_ANSWER), f"SRV {name}")
        self._note("SRV order: " + ", ".join(f"{r.priority} {r.weight} {r.port} {hostname(r.target)}" for r in ordered))
        before = len(self.targets)
        for r in ordered:
            step = f"SRV {r.priority} {r.weight} {r.port} {hostname(r.target)}"
            link = _Chain(chain.text + (step,), chain.expiries + (received + r.ttl,))
            yield from self._resolve_host(hostname(r.target), r.port, transport, link)
        return len(self.targets) > before, True

    def _resolve_host(self, host: str, port: int, transport: str, chain: _Chain) -> Generator[Query, Any, None]:
        """A (and AAAA with ipv6) on ``host``: each address is a target, in answer order."""
        qtypes = ["A", "AAAA"] if self.ipv6 else ["A"]
        for qtype in qtypes:
            records = yield from self._ask(host, qtype)
            for r in self._cut(records, f"{qtype} {host}"):
                ip = str(ipaddress.ip_address(r.address))
                step = f"{qtype} {ip}"
                source = " → ".join(chain.text + (step,)) if chain.text else f"{qtype} {host} → {ip}"
                t = Target(ip, port, transport, r.ttl, self.now + r.ttl, shared_text(source))
                if any(x.key == t.key for x in self.targets):
                    self._note(f"{t} again (from {source}): kept once")
                    continue
                self._expiries.extend(chain.expiries + (self.now + r.ttl,))
                self.targets.append(t)
                self._note(f"target {t} ttl {r.ttl}")
