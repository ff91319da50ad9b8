"""The vocabulary of what a user agent reports: event kinds and call states (SPEC §10).

One home for words that the bundled phone emits, the DUT drivers translate other phones'
signals into (a vendor phone's Action URL callbacks, a softphone's control socket), the suites
wait for and the reports print. They are ``StrEnum`` members: a member *is* its text, so a JSON
line, a log line or an Action URL template carries the same word, and nothing is spelt twice.
"""

from __future__ import annotations

import enum

__all__ = ["EventKind", "CallState"]


class EventKind(enum.StrEnum):
    """What happened (the ``kind`` of a phone event and of a DUT event)."""

    REGISTERED = "registered"  # a 2xx to REGISTER granted this phone's Contact (SPEC §4)
    REGISTER_FAILED = "register_failed"  # every target of a server failed, or no valid 2xx (SPEC §4)
    UNREGISTERED = "unregistered"  # a registration ended (un-REGISTER, or a refresh that failed)
    CALL_STATE = "call_state"  # a call moved to a new :class:`CallState`
    INCOMING_CALL = "incoming_call"  # an INVITE arrived for this phone
    TARGET = "target"  # new requests of a server now start at another target (SPEC §5)
    DECISION = "decision"  # the phone explains a choice (bundled phone only: the failure report's "why")


class CallState(enum.StrEnum):
    """Where a call is (the ``state`` of a CALL_STATE event), caller and callee alike (SPEC §7)."""

    CALLING = "calling"  # INVITE on its way (or waiting for DNS, a connection, a REGISTER first)
    PROCEEDING = "proceeding"  # 100 Trying: the server is alive
    RINGING = "ringing"  # 180/183 (caller), or ringing here (callee)
    ESTABLISHED = "established"  # 2xx and ACK
    TERMINATED = "terminated"  # ended after it was up, or cancelled / declined
    FAILED = "failed"  # no answer from any server, or a final error response

    @property
    def active(self) -> bool:
        """The call is not over."""
        return self not in (CallState.TERMINATED, CallState.FAILED)
