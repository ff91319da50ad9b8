"""The whole body of a twisted.web client response, for the two sides that speak HTTP.

The vendor phone's emulation (``phone/``) fetches its provisioning files and the vendor driver
(``harness/``) calls the phone's Action URI; both need a response's body. twisted.web's
``readBody`` warns when a response ends without a Content-Length (``PotentialDataLoss``), which
small embedded web servers do, and its abortConnection warning fills the log; this takes what
came. It lives in sipcore so that neither side imports the other.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol

__all__ = ["read_body"]


def read_body(response: Any) -> defer.Deferred:
    """The whole body of a twisted.web response (``readBody`` without its abortConnection warning)."""
    d: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(d))
    return d


class _Body(protocol.Protocol):
    def __init__(self, done: defer.Deferred):
        self.done, self.parts = done, []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.parts))  # ResponseDone, or PotentialDataLoss: take what came
