"""What a vendor phone's Action URL callbacks mean for the suites: DUT events (SPEC §10), sans-I/O.

Why its own module: the mapping is where a driver that expects too much turns a slow phone into
false findings, so it reads only what the vendor documents (:data:`phone.vendor_keys.ACTION_URL_EVENTS`;
Administrator's Guide for SIP-T58V/T58A/T56A/CP960 IP Phones, "Action URL"):

- ``registered`` / ``register_failed`` / ``unregistered`` are per **account** (``$active_user``
  names it). ``$active_host`` is "The host part of the SIP URI for the current account", not the
  server the phone registered with, so these events carry **no server**: "registered on server 2"
  is a fact of the fakes' records (the suites read it there). Whether a registration refresh
  fires ``registered`` is not documented: nothing here relies on it.
- calls: ``outgoing_call`` → calling, ``call_established`` → established; a failed outgoing call
  comes as its own event: ``remote_busy`` ("an outgoing call is rejected") → **failed**,
  ``cancel_callout`` (the phone cancelled it in ring-back: our hang-up) → terminated;
  ``incoming_call`` → incoming call; ``reject_incoming_call`` and ``call_remote_canceled`` →
  terminated; ``call_terminated`` → terminated for a call that was up or that the harness hung
  up, else failed (a call no server answered). The first end of a call wins: a phone that also
  sends ``call_terminated`` after ``remote_busy`` does not end it twice.
- ``setup_completed`` / ``setup_autop_finish``: the phone has started / has finished its
  power-on provisioning: not DUT events, the driver's "ready" (:attr:`CallbackMap.power_on`).

``$call_id`` is the phone's own number for the call; the suites only compare it with itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sipharness.sipcore.events import CallState, EventKind

__all__ = ["CallbackMap", "Mapped", "POWER_ON_EVENTS"]

POWER_ON_EVENTS = ("setup_completed", "setup_autop_finish")
_ACCOUNT = {"registered": EventKind.REGISTERED, "register_failed": EventKind.REGISTER_FAILED,
            "unregistered": EventKind.UNREGISTERED}
_ENDS_TERMINATED = {"cancel_callout", "reject_incoming_call", "call_remote_canceled"}


@dataclass(frozen=True)
class Mapped:
    """A DUT event to record (``kind`` and its fields), or a power-on signal (``kind`` None)."""

    kind: EventKind | None
    fields: dict[str, Any] = field(default_factory=dict)
    power_on: str | None = None


@dataclass
class _Call:
    established: bool = False
    ended: bool = False


class CallbackMap:
    """Fed each callback (``event``, its query parameters) → what it means, or None (ignored, noted)."""

    def __init__(self, account_of: Any):
        self._account_of = account_of  # $active_user → account number
        self._calls: dict[str, _Call] = {}
        self.hangup_asked = False  # the harness asked the phone to end a call (then an unanswered end is ours)
        self.in_call = False

    def feed(self, event: str, params: dict[str, str]) -> Mapped | None:
        account = self._account_of(_value(params.get("user")))
        call_id = _value(params.get("call_id"))
        if event in POWER_ON_EVENTS:
            return Mapped(None, power_on=event)
        if event in _ACCOUNT:
            return Mapped(_ACCOUNT[event], {"account": account, "server": None})
        if event == "incoming_call":
            self.in_call = True
            self._call(call_id)
            return Mapped(EventKind.INCOMING_CALL, {"account": account, "call_id": call_id})
        if event == "outgoing_call":
            self.in_call = True
            self._call(call_id)
            return Mapped(EventKind.CALL_STATE, {"account": account, "state": CallState.CALLING, "call_id": call_id})
        if event == "call_established":
            call = self._call(call_id)
            if call is not None and (call.ended or call.established):
                return None
            if call is not None:
                call.established = True
            return Mapped(EventKind.CALL_STATE, {"account": account, "state": CallState.ESTABLISHED,
                                                 "call_id": call_id})
        if event in _ENDS_TERMINATED or event in ("remote_busy", "call_terminated"):
            call = self._call(call_id)
            if call is not None and call.ended:
                return None  # its end was reported already
            up = call.established if call is not None else False
            if event == "remote_busy":
                state = CallState.FAILED
            elif event in _ENDS_TERMINATED or up or self.hangup_asked:
                state = CallState.TERMINATED
            else:
                state = CallState.FAILED  # SPEC §10 call states: no answer from any server
            if call is not None:
                call.ended = True
            self.in_call = any(not c.ended for c in self._calls.values())
            return Mapped(EventKind.CALL_STATE, {"account": account, "state": state, "call_id": call_id})
        return None

    def _call(self, call_id: str | None) -> _Call | None:
        if not call_id:
            return None
        if call_id not in self._calls and len(self._calls) >= 512:  # bounded: the oldest ended calls go
            for key in [k for k, c in self._calls.items() if c.ended][:256]:
                del self._calls[key]
        return self._calls.setdefault(call_id, _Call())


def _value(text: str | None) -> str | None:
    """A callback parameter, or None when the phone left the ``$variable`` unexpanded or empty."""
    return None if not text or text.startswith("$") else text
