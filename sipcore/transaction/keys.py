"""Which transaction a message belongs to: the keys of RFC 3261 §17.1.3 (client) and §17.2.3 (server)."""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.ids import MAGIC_COOKIE
from sipharness.sipcore.uri import default_port

__all__ = ["branch", "client_key", "server_key"]


def branch(message: Any) -> str:
    """The top Via's branch ("" when it has none); ValueError without a Via."""
    via = message.top_via
    if via is None:
        raise ValueError(f"{_describe(message)}: no Via header, cannot key a transaction")
    return via.branch or ""


def _describe(message: Any) -> str:
    if getattr(message, "is_request", False):
        return f"{message.method} request"
    return f"{getattr(message, 'status', '?')} response"


def server_key(request: Any) -> tuple:
    """RFC 3261 §17.2.3 key of the server transaction a request belongs to.

    RFC 3261 branch: (branch, sent-by host, sent-by port, method) with ACK → INVITE.
    RFC 2543 peers (no magic cookie): (Call-ID, CSeq number, From tag, top Via, method),
    a simplification of §17.2.3's legacy rules that is enough for fakes and the phone.
    """
    method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    if via is None:
        raise ValueError(f"{request.method} request without Via: cannot match a transaction")
    via_branch = via.branch or ""
    if via_branch.startswith(MAGIC_COOKIE):
        port = via.port if via.port is not None else default_port(via.transport)
        return (via_branch, via.host.lower(), port, method)
    from_tag = request.from_.tag if request.from_ is not None else None
    return ("rfc2543", request.call_id, request.cseq[0], from_tag, str(via), method)


def client_key(response: Any) -> tuple:
    """RFC 3261 §17.1.3: (top Via branch, CSeq method)."""
    return (branch(response), response.cseq[1])
