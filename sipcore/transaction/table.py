"""The live transactions of one endpoint, found by the keys of RFC 3261 §17.1.3 / §17.2.3."""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.transaction.client import ClientTransaction
from sipharness.sipcore.transaction.keys import client_key, server_key
from sipharness.sipcore.transaction.server import ServerTransaction
from sipharness.sipcore.transaction.states import TxState

__all__ = ["TransactionTable"]


class TransactionTable:
    """Client and server transactions by their RFC 3261 §17.1.3 / §17.2.3 keys.

    ``match_response`` finds the client transaction of a response; ``match_request`` the
    server transaction of a request (a retransmission, or the ACK of a non-2xx final; an ACK
    for a 2xx matches nothing and goes to the TU). CANCEL has its own transaction (its key
    carries the method); ``match_cancelled`` finds the INVITE a CANCEL targets (§9.2).
    """

    def __init__(self) -> None:
        self._client: dict[tuple, ClientTransaction] = {}
        self._server: dict[tuple, ServerTransaction] = {}

    def add(self, tx: ClientTransaction | ServerTransaction) -> None:
        table = self._client if isinstance(tx, ClientTransaction) else self._server
        old = table.get(tx.key)
        if old is not None and old is not tx and old.state is not TxState.TERMINATED:
            raise ValueError(f"a live transaction with key {tx.key!r} already exists: {old!r}")
        table[tx.key] = tx

    def remove(self, tx: ClientTransaction | ServerTransaction) -> None:
        table = self._client if isinstance(tx, ClientTransaction) else self._server
        if table.get(tx.key) is tx:
            del table[tx.key]

    def match_response(self, response: Any) -> ClientTransaction | None:
        """The client transaction ``response`` answers: same branch and CSeq method (RFC 3261
        §17.1.3), and the same Call-ID and CSeq number as its request (SPEC §4: a response
        that differs there is no answer, whatever its branch)."""
        if response.top_via is None:
            return None
        tx = self._client.get(client_key(response))
        if tx is None or not tx.answers(response):
            return None
        return tx

    def match_request(self, request: Any) -> ServerTransaction | None:
        if request.top_via is None:
            return None
        tx = self._server.get(server_key(request))
        if tx is not None and request.method == "ACK" and not tx.invite:
            return None
        return tx

    def match_cancelled(self, cancel: Any) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL request targets (RFC 3261 §9.2)."""
        key = server_key(cancel)
        return self._server.get(key[:-1] + ("INVITE",))

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    def __iter__(self):
        return iter(list(self._client.values()) + list(self._server.values()))
