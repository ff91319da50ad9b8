"""What the fakes saw: one typed record per SIP message, DNS query/answer and serving error.

One :class:`Recorder` is shared by every fake of a test (the harness makes one per test),
so the ladder shows the DNS and all SIP servers in one timeline. The fakes see a real
phone's traffic exactly as they see the bundled phone's, which is why the evidence a test
shows comes from here and not from the device under test.

Records are typed by what they are about: a :class:`SipRecord` has a method and a status
(and the Call-ID, CSeq number and branch that tie a response to its request), a
:class:`DnsRecord` a query name, type and rcode, and an :class:`ErrorRecord` holds an
exception a fake hit while serving (a *harness error*, SPEC §10: never held against the
phone). All share :class:`Record`'s time, direction, fake, transport and addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from twisted.internet.interfaces import IReactorTime

from sipharness.sipcore.frozen import fast_init
from sipharness.sipcore.journal import Journal

__all__ = ["RecordKind", "Direction", "Record", "SipRecord", "DnsRecord", "ErrorRecord", "Recorder"]

Address = tuple[str, int]


class RecordKind(StrEnum):
    SIP = "sip"
    DNS = "dns"
    ERROR = "error"


class Direction(StrEnum):
    IN = "in"  # the fake received it (an error: the fake was handling it)
    OUT = "out"  # the fake sent it


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """What every record has. ``time`` is phone seconds on the fakes' clock; ``server`` the
    fake's name as the test gave it ("dns", "primary", ...); ``local`` the fake's address,
    ``peer`` the other side's; ``summary`` one line for the ladder; ``note`` what a scripted
    rule or the fake did ("dropped: rule 1 drop REGISTER first=4", "bad input: ...")."""

    kind: ClassVar[RecordKind]
    time: float
    direction: str  # Direction
    server: str
    transport: str  # "udp" | "tcp" | "tls"
    local: Address
    peer: Address
    summary: str = ""
    note: str = ""
    message: Any = field(default=None, compare=False, repr=False)  # the parsed message
    raw: bytes = field(default=b"", compare=False, repr=False)

    def to_json(self) -> dict:
        """The record as the CLIs' JSON line (no message object, no raw bytes)."""
        d: dict[str, Any] = {
            "t": round(self.time, 6),
            "kind": str(self.kind),
            "dir": str(self.direction),
            "server": self.server,
            "transport": self.transport,
            "local": f"{self.local[0]}:{self.local[1]}",
            "peer": f"{self.peer[0]}:{self.peer[1]}",
            "summary": self.summary,
        }
        self._json_fields(d)
        if self.note:
            d["note"] = self.note
        return d

    def _json_fields(self, d: dict) -> None:
        pass


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SipRecord(Record):
    """A SIP message. ``method`` is the request's (a response's CSeq method); ``status`` is
    None for a request; ``retransmission``: the same request (method, Call-ID, CSeq,
    branch) seen within 64·T1 before, or a response sent again."""

    kind: ClassVar[RecordKind] = RecordKind.SIP
    method: str | None = None
    status: int | None = None
    retransmission: bool = False
    call_id: str | None = None
    cseq: int | None = None
    branch: str | None = None

    @property
    def is_request(self) -> bool:
        return self.status is None

    def _json_fields(self, d: dict) -> None:
        for key in ("method", "status", "call_id", "cseq", "branch"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.retransmission:
            d["retransmission"] = True


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRecord(Record):
    """A DNS query ("in") or answer ("out"). ``name`` is the query name as asked (no trailing
    dot), ``qtype`` its type ("NAPTR"), ``rcode`` the answer's (0 = NOERROR; None for a query
    and for a query the fake did not answer)."""

    kind: ClassVar[RecordKind] = RecordKind.DNS
    name: str | None = None
    qtype: str | None = None
    rcode: int | None = None

    def _json_fields(self, d: dict) -> None:
        if self.name is not None:
            d["name"] = self.name
        if self.qtype is not None:
            d["qtype"] = d["method"] = self.qtype  # "method"/"status": the CLI's fields since its first version
        if self.rcode is not None:
            d["rcode"] = d["status"] = self.rcode


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRecord(Record):
    """An exception a fake hit while serving (with its traceback and a PEP 678 note naming the
    fake and the input). ``protocol`` ("sip" | "dns") says which kind of fake, for the ladder."""

    kind: ClassVar[RecordKind] = RecordKind.ERROR
    direction: str = "in"
    error: BaseException | None = field(default=None, compare=False)
    protocol: str = "sip"

    def _json_fields(self, d: dict) -> None:
        if self.error is not None:
            d["error"] = f"{type(self.error).__name__}: {self.error}"


class Recorder(Journal[Record]):
    """The shared record of a test: a ``Journal`` of records with filters, and ``errors``,
    every exception the fakes hit while serving (the plugin raises them in the test)."""

    def __init__(self, clock: IReactorTime):
        super().__init__(clock)
        self.errors: list[BaseException] = []

    def sip(self, *, server: str | None = None, method: str | None = None, status: int | None = None,
            direction: str | None = None, peer: Address | None = None,
            local: Address | None = None) -> list[SipRecord]:
        def match(r: Record) -> bool:
            return (type(r) is SipRecord and (server is None or r.server == server)
                    and (method is None or r.method == method) and (status is None or r.status == status)
                    and (direction is None or r.direction == direction)
                    and (peer is None or r.peer == tuple(peer)) and (local is None or r.local == tuple(local)))
        return self.entries(match)  # type: ignore[return-value]

    def dns(self, *, name: str | None = None, qtype: str | None = None, rcode: int | None = None,
            direction: str | None = None, server: str | None = None) -> list[DnsRecord]:
        want = name.rstrip(".").lower() if name is not None else None

        def match(r: Record) -> bool:
            return (type(r) is DnsRecord and (want is None or (r.name or "").rstrip(".").lower() == want)
                    and (qtype is None or r.qtype == qtype) and (rcode is None or r.rcode == rcode)
                    and (direction is None or r.direction == direction) and (server is None or r.server == server))
        return self.entries(match)  # type: ignore[return-value]

    def error_records(self) -> list[ErrorRecord]:
        return self.entries(lambda r: type(r) is ErrorRecord)  # type: ignore[return-value]

    def record_error(self, error: BaseException, *, server: str, protocol: str, transport: str,
                     local: Address, peer: Address, summary: str = "") -> ErrorRecord:
        """Keep ``error`` (in :attr:`errors`) and draw it in the ladder where it happened."""
        self.errors.append(error)
        note = "; ".join(getattr(error, "__notes__", None) or ()) or f"{server}: serving error"
        rec = ErrorRecord(time=self.clock.seconds(), server=server, protocol=protocol, transport=transport,
                          local=local, peer=peer, summary=summary or f"{type(error).__name__}: {error}"[:200],
                          note=f"harness error: {note}", error=error)
        self.append(rec)
        return rec

