"""What a fake saw, counted: the summary ``sipharness dns`` and ``sipharness registrar`` print at exit.

Why: a fake that ran for an hour in a lab streams thousands of JSON lines; at exit one wants
SIPp's end-of-run table at a glance (how many REGISTERs came in, how many were retransmissions,
what was answered, what a scripted fault dropped) without keeping the records: a
:class:`Tally` keeps counts only, so it grows with the number of distinct messages, not with time.

Rows are keyed by what the record is and which way it went: a SIP request by its method
(``REGISTER``, in), a response by status and method (``200 REGISTER``, out), a DNS query by its
type (``SRV``, in), an answer by its rcode (``NOERROR``, out; ``no answer`` when a fault dropped it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnslib import RCODE

from sipharness.fakes.record import Direction, DnsRecord, Record, SipRecord

__all__ = ["Tally", "Row"]

_MAX_ROWS = 256  # distinct rows kept; garbage with ever-new methods lands in "other"
_RCODE = dict(RCODE.forward)


@dataclass
class Row:
    message: str
    direction: str  # "in" | "out"
    count: int = 0
    retransmissions: int = 0
    dropped: int = 0  # by a scripted fault, or because the fake was down

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "dir": self.direction, "count": self.count,
                "retransmissions": self.retransmissions, "dropped": self.dropped}


class Tally:
    """Counts of records per (message, direction), in order of first appearance."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        # what a record is (its class, method/qtype, status/rcode, direction, summary head) → its row:
        # a registrar counts two records per message, and naming the row each time (an f-string, a
        # chain of isinstance) was most of what counting cost. Bounded as the rows are.
        self._row_of: dict[tuple, Row] = {}

    def add(self, record: Record) -> None:
        cls = type(record)
        if cls is SipRecord:
            what = (cls, record.method, record.status, record.direction,
                    None if record.method or record.status is not None else record.summary.split(" (", 1)[0])
        elif cls is DnsRecord:
            what = (cls, record.qtype, record.rcode, record.direction, None)
        else:
            what = None
        row = self._row_of.get(what) if what is not None else None
        if row is None:
            row = self._row(record)
            if what is not None and len(self._row_of) < 4 * _MAX_ROWS:
                self._row_of[what] = row
        row.count += 1
        if getattr(record, "retransmission", False):
            row.retransmissions += 1
        if _dropped(record):
            row.dropped += 1

    def _row(self, record: Record) -> Row:
        key = (_message(record), record.direction)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= _MAX_ROWS:
                key = ("other", record.direction)
                row = self.rows.setdefault(key, Row(*key))
            else:
                row = self.rows[key] = Row(*key)
        return row

    def to_json(self, t: float) -> dict[str, Any]:
        """The summary line: ``{"t", "kind": "summary", "messages": [...], "total": N}``."""
        rows = list(self.rows.values())
        return {"t": round(t, 6), "kind": "summary", "messages": [r.to_json() for r in rows],
                "total": sum(r.count for r in rows), "retransmissions": sum(r.retransmissions for r in rows),
                "dropped": sum(r.dropped for r in rows)}

    def table(self, title: str) -> list[str]:
        """SIPp's end-of-run table, for a human (stderr)."""
        rows = list(self.rows.values())
        width = max([len(r.message) for r in rows] + [7])
        lines = [title, f"  {'message':<{width}}  dir  {'count':>7}  {'retrans':>7}  {'dropped':>7}"]
        for r in rows:
            arrow = "-->" if r.direction == "in" else "<--"
            lines.append(f"  {r.message:<{width}}  {arrow}  {r.count:>7}  {r.retransmissions:>7}  {r.dropped:>7}")
        total = sum(r.count for r in rows)
        lines.append(f"  {'total':<{width}}       {total:>7}  {sum(r.retransmissions for r in rows):>7}  "
                     f"{sum(r.dropped for r in rows):>7}")
        return lines


def _message(record: Record) -> str:
    if isinstance(record, DnsRecord):
        if record.direction == Direction.IN:
            return record.qtype or "?"
        if record.rcode is None:
            return "no answer"
        return _RCODE.get(record.rcode, str(record.rcode))
    if isinstance(record, SipRecord):
        if record.status is not None:
            return f"{record.status} {record.method or '?'}"
        return record.method or record.summary.split(" (", 1)[0]  # "bad input", "garbage"
    return str(record.kind)  # a serving error


def _dropped(record: Record) -> bool:
    if isinstance(record, DnsRecord) and record.direction == Direction.OUT:
        return record.rcode is None
    return record.note.startswith("dropped")
