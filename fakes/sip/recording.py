"""What a fake SIP server records of each message it receives or sends: a
:class:`~fakes.record.SipRecord` (time, direction, addresses, summary line, method or status,
Call-ID, CSeq, branch, the bytes), the evidence tests wait on and reports show.

Why a module of its own: the core (:mod:`fakes.sip.core`) decides, this describes; and the
description is on the hot path (a registrar under load records every request and every
response), so it reads what the parser already has and takes the ids of a response we
built from its request instead of parsing the response back. An unreadable header leaves
its fields empty: a record is made of anything, even garbage.
"""

from __future__ import annotations

from typing import Any

from sipharness.fakes.record import SipRecord
from sipharness.fakes.sip.actions import Origin
from sipharness.sipcore.uri import SipParseError

__all__ = ["sip_record", "status_line"]


def sip_record(now: float, server: str, direction: str, message: Any, raw: bytes, origin: Origin, *, note: str = "",
               retransmission: bool = False, summary: str | None = None, ids: tuple | None = None,
               status: int | None = None) -> SipRecord:
    """A record of what server ``server`` saw or sent at ``now`` (``direction``: "in" or "out").
    ``ids``: (method, Call-ID, CSeq number, branch) when the caller has them already (a
    request's, for its own response): a response we built has no parsed headers yet, and
    parsing them back only to record them was a third of a REGISTER's cost. Without a parsed
    ``message`` (an answer sent again from its bytes), ``ids``, ``status`` and ``summary`` say
    what it is."""
    method = call_id = cseq = branch = None
    if message is None:
        if ids is not None:
            method, call_id, cseq, branch = ids
    else:
        status = None
        try:
            if message.is_request:
                summary = summary or _request_summary(message, raw)
            else:
                status = message.status
                summary = summary or f"{status} {message.reason}"
            if ids is None:
                c = message.cseq
                via = message.top_via
                ids = (c[1], message.call_id, c[0], via.branch if via is not None else None)
            method, call_id, cseq, branch = ids
        except (SipParseError, ValueError, IndexError):
            pass
    return SipRecord(time=now, direction=direction, server=server, transport=origin.transport,
                     local=origin.local, peer=origin.peer, summary=summary or "", method=method, status=status,
                     retransmission=retransmission, call_id=call_id, cseq=cseq, branch=branch, message=message,
                     raw=bytes(raw), note=note)


def status_line(answer: bytes) -> str:
    """What the status line of an answer we wrote says after "SIP/2.0 " ("200 OK"): the summary
    of its record, read without parsing the answer."""
    return answer[8:answer.index(b"\r\n")].decode("latin-1")


def _request_summary(request: Any, raw: bytes) -> str:
    """"METHOD Request-URI" as the request line had it (the parser accepted it as exactly
    METHOD SP URI SP SIP/2.0), without turning the parsed URI back into text."""
    start = 0
    while raw.startswith(b"\r\n", start):
        start += 2
    end = raw.find(b"\r\n", start)
    line = raw[start:end].decode("utf-8", "surrogateescape") if end > 0 else ""
    head = line.rsplit(" ", 1)[0]
    if not head.startswith(request.method + " "):  # raw is not this request's (a copy we changed)
        return f"{request.method} {request.uri}"
    return head
