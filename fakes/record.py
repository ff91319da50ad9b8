"""What the fakes saw: one :class:`Record` per DNS query/answer and SIP message, in and out.

One :class:`Recorder` is shared by every fake of a test (the harness makes one per test),
so the ladder shows the DNS and all SIP servers in one timeline. The fakes see a real
phone's traffic exactly as they see the bundled phone's, which is why the evidence a test
shows comes from here and not from the device under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from sipharness.sipcore.journal import Journal

__all__ = ["Record", "Recorder"]

Address = tuple[str, int]


@dataclass(frozen=True)
class Record:
    time: float  # phone seconds on the fakes' clock
    kind: str  # "sip" | "dns"
    direction: str  # "in": the fake received it; "out": the fake sent it
    server: str  # the fake's name as the test gave it ("dns", "primary", "fallback", ...)
    transport: str  # "udp" | "tcp" | "tls"
    local: Address  # the fake's address
    peer: Address  # the other side's address
    summary: str  # one line: "REGISTER sip:example.com", "200 OK", "Q NAPTR example.com", "NOERROR 2 NAPTR"
    method: str | None = None  # SIP method (CSeq method for a response); DNS query type for DNS
    status: int | None = None  # SIP status code of a response; DNS rcode of an answer
    retransmission: bool = False  # same request (method, Call-ID, CSeq, branch) seen before
    call_id: str | None = None
    cseq: int | None = None
    branch: str | None = None
    name: str | None = None  # DNS query name
    message: Any = field(default=None, compare=False, repr=False)  # parsed message object
    raw: bytes = field(default=b"", compare=False, repr=False)
    note: str = ""  # what a scripted fault did: "dropped (rule: silent)", "refused", ...

    @property
    def is_request(self) -> bool:
        return self.kind == "sip" and self.status is None

    def to_json(self) -> dict:
        """The record as the CLI's JSON line (no message object, no raw bytes)."""
        d = {
            "t": round(self.time, 6),
            "kind": self.kind,
            "dir": self.direction,
            "server": self.server,
            "transport": self.transport,
            "local": f"{self.local[0]}:{self.local[1]}",
            "peer": f"{self.peer[0]}:{self.peer[1]}",
            "summary": self.summary,
        }
        for key in ("method", "status", "call_id", "cseq", "branch", "name", "note"):
            value = getattr(self, key)
            if value is None or value == "" or value is False:
                continue  # (0 is a value: DNS NOERROR)
            d[key] = value
        if self.retransmission:
            d["retransmission"] = True
        return d


class Recorder(Journal[Record]):
    """The shared record of a test; a ``Journal`` of :class:`Record` with filters."""

    def __init__(self, clock: IReactorTime):
        super().__init__(clock)

    def sip(self, *, server: str | None = None, method: str | None = None, direction: str | None = None,
            peer: Address | None = None, local: Address | None = None) -> list[Record]:
        return self.entries(_filter("sip", server, method, direction, peer, local))

    def dns(self, *, name: str | None = None, qtype: str | None = None, direction: str | None = None) -> list[Record]:
        def match(r: Record) -> bool:
            return (r.kind == "dns" and (name is None or (r.name or "").rstrip(".").lower() == name.rstrip(".").lower())
                    and (qtype is None or r.method == qtype) and (direction is None or r.direction == direction))
        return self.entries(match)


def _filter(kind, server, method, direction, peer, local) -> Callable[[Record], bool]:
    def match(r: Record) -> bool:
        return (r.kind == kind and (server is None or r.server == server) and (method is None or r.method == method)
                and (direction is None or r.direction == direction) and (peer is None or r.peer == tuple(peer))
                and (local is None or r.local == tuple(local)))
    return match
