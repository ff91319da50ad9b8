"""What the RFC 3263 plan (:mod:`phone.rfc3263`) is fed and what it gives: DNS records, faults,
queries and :class:`Target` (SPEC §2).

Plain frozen values and the checks on them: :func:`invalid` says why a record cannot be used
(out of range, a bad name, the wrong address family), :func:`hostname` normalises a name,
:func:`names_answering` follows the CNAMEs of one answer. A Target is built only by the plan.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence, Union

from sipharness.sipcore.fields import _known

__all__ = ["Target", "Naptr", "Srv", "Address", "Cname", "Fault", "Query", "Answer", "is_ip_literal", "hostname",
           "invalid", "names_answering", "brief", "shared_text", "u16"]

CNAME_GUARD = 8  # CNAME links followed inside one answer


@dataclass(frozen=True)
class Target:
    """One place to send SIP to: (IP address, port, transport), and how DNS gave it.

    ``a_ttl`` / ``expires_at``: TTL of the A (AAAA) record that gave the address and the
    phone time it runs out (None for an IP literal); failback mode DNSTTL (SPEC §5) goes back
    to the primary at ``expires_at`` of the current target. ``source`` is the chain for the
    log, e.g. ``NAPTR 90 50 SIP+D2T → SRV 0 2 5060 server2.example.com → A 62.10.1.20``.
    """

    host: str
    port: int
    transport: str  # "udp" | "tcp" | "tls"
    a_ttl: int | None = None
    expires_at: float | None = None
    source: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def key(self) -> tuple[str, int, str]:
        """(host, port, transport): what identifies the target regardless of TTL."""
        return (self.host, self.port, self.transport)




@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str
    ttl: int = 0
    owner: str | None = None  # the record's name; None (canned answers): the name asked


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str
    ttl: int = 0
    owner: str | None = None


@dataclass(frozen=True)
class Address:
    """An A or AAAA record's address (text form)."""

    address: str
    ttl: int = 0
    owner: str | None = None


@dataclass(frozen=True)
class Cname:
    """A CNAME record of an answer: ``owner`` is an alias of ``target`` (RFC 1034 §3.6.2)."""

    owner: str
    target: str
    ttl: int = 0


class Fault(enum.Enum):
    """Why a query gave no answer (SPEC §2 [interp]); NXDOMAIN counts as an empty answer."""

    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NXDOMAIN = "nxdomain"
    TRUNCATED = "truncated"  # truncated over UDP and the TCP retry failed too
    ERROR = "error"  # anything else: FORMERR, NOTIMP, unparsable answer, socket error
    BUDGET = "budget"  # not asked: the lookup spent MAX_QUERIES_PER_LOOKUP (SPEC §2 [interp])


class Query(NamedTuple):
    name: str
    qtype: str  # "NAPTR" | "SRV" | "A" | "AAAA"


Answer = Union[Sequence[Any], Fault]



def is_ip_literal(address: str) -> bool:
    """True for an IPv4 or IPv6 literal (IPv6 with or without brackets)."""
    try:
        ipaddress.ip_address(address.strip("[]"))
        return True
    except ValueError:
        return False


_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def hostname(name: Any) -> str | None:
    """Normalised domain name (lower case, no trailing dot), '.' for the root, None if bad."""
    if not isinstance(name, str):
        return None
    if name == ".":
        return "."
    n = name[:-1] if name.endswith(".") else name
    if not n or len(n) > 253 or not all(_LABEL.match(label) for label in n.split(".")):
        return None
    return n.lower()


def u16(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535


def _ttl(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0x7FFFFFFF


def names_answering(name: str, answer: list[Any]) -> set[str]:
    """``name`` and every name a chain of the answer's CNAME records leads to from it."""
    links = {}
    for rec in answer:
        if isinstance(rec, Cname):
            owner, target = hostname(rec.owner), hostname(rec.target)
            if owner is not None and target is not None:
                links.setdefault(owner, target)
    names = {name}
    current = name
    for _ in range(CNAME_GUARD):
        current = links.get(current)
        if current is None or current in names:
            break
        names.add(current)
    return names


# the texts lookups wrote lately (log notes, target sources), each once: a fleet of phones
# resolving one domain writes the same ones, and each phone keeps its last lookups for the log
# (10 000 phones in a process, bench/phone_scale.py). Bounded (emptied when full), not
# sys.intern: the texts come from DNS answers, and interned strings are immortal on Python 3.12.
_TEXTS: dict[str, str] = {}
_TEXTS_MAX = 4096


def shared_text(text: str) -> str:
    """``text``, as the one object every lookup that wrote it lately shares."""
    return _TEXTS.get(text) or _known(_TEXTS, text, text, _TEXTS_MAX)


def brief(rec: Any) -> str:
    """A record in a few words for the log (its type, owner and data)."""
    text = repr(rec)
    return text if len(text) <= 120 else text[:117] + "..."


def invalid(rec: Any, qtype: str) -> str | None:
    """Why ``rec`` is unusable for a ``qtype`` answer, or None if it is fine."""
    if qtype == "NAPTR":
        if not isinstance(rec, Naptr):
            return "not a NAPTR record"
        if not (u16(rec.order) and u16(rec.preference)):
            return "order/preference out of range"
        if not (isinstance(rec.flags, str) and isinstance(rec.service, str) and isinstance(rec.regexp, str)):
            return "flags/service/regexp not text"
        if hostname(rec.replacement) is None:
            return f"bad replacement {rec.replacement!r}"
        if rec.flags.lower() in ("s", "") and hostname(rec.replacement) == ".":
            return "empty replacement ('.') with flags s or empty"
    elif qtype == "SRV":
        if not isinstance(rec, Srv):
            return "not an SRV record"
        if not (u16(rec.priority) and u16(rec.weight) and u16(rec.port)):
            return "priority/weight/port out of range"
        if hostname(rec.target) is None:
            return f"bad target {rec.target!r}"
        if rec.port == 0 and hostname(rec.target) != ".":
            return "port 0"
    elif qtype in ("A", "AAAA"):
        if not isinstance(rec, Address) or not isinstance(rec.address, str):
            return f"not an {qtype} record"
        try:
            ip = ipaddress.ip_address(rec.address)
        except ValueError:
            return f"bad address {rec.address!r}"
        if ip.version != (4 if qtype == "A" else 6):
            return f"IPv{ip.version} address in an {qtype} answer"
    else:
        return f"unknown query type {qtype}"
    if not _ttl(rec.ttl):
        return f"bad TTL {rec.ttl!r}"
    return None
