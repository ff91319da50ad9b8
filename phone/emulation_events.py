"""Which Action URL a vendor phone calls for a bundled-phone event, with which variables (sans-I/O).

Why its own module: this is where the emulation is most tempted to tell the harness more than a
vendor phone would, and the driver must be proven against what a phone really reports. What the
vendor documents (Administrator's Guide for SIP-T58V/T58A/T56A/CP960 IP Phones, "Action URL":
the pre-defined events and the variable values list; key names as in the V84 common template):

- account events **per account**, not per server: ``registered`` "When the IP phone successfully
  registers an account", ``unregistered`` "When the IP phone logs off the registered account",
  ``register_failed`` "When the IP phone fails to register an account". Whether a refresh of a
  registration fires ``registered`` again is not documented: this emulation fires it only when
  the account goes from no registration to one (SPEC §10 [interp]: the least a phone may do), so
  a suite that waits for a refresh this way fails here before it fails on a lab phone.
- ``$active_host`` is "The host part of the SIP URI for the current account": the account's
  host (its ``sip_server.1.address``), never the server it registered with; so no callback can say
  "registered on server 2" (the suites read that from the fakes' records).
- calls: ``outgoing_call`` "When the IP phone places a call", ``call_established``,
  ``call_terminated`` "When the IP phone terminates a call"; a failed outgoing call comes as its own
  event: ``remote_busy`` "When an outgoing call is rejected" (a final 4xx-6xx answer),
  ``cancel_callout`` "When the phone cancels an outgoing call in the ring-back state" (the user
  hung up before the answer); an incoming call ends as ``reject_incoming_call`` (the user declined
  it) or ``call_remote_canceled`` "When the remote party cancels the outgoing call in the ringing
  state" (SPEC §10 [interp]: read as the caller cancelling a call that rings here). There is no
  ``ringback`` and no ``call_proceeding``. An outgoing call that no server answered at all is not
  a rejection: it ends as ``call_terminated`` (SPEC §10 [interp]: the guide names no event for it).
- ``$call_id`` is the phone's own number for the call ("ASW:xxx ... xxx refers to the call-id of
  the active call", e.g. ``ASW:33093``), not the SIP Call-ID: this emulation numbers its calls.

One extension, for the shared clock of the CI: ``$phone_time`` (the event's phone time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sipharness.sipcore.events import CallState, EventKind

__all__ = ["Callback", "EventMap", "FIRST_CALL_ID"]

FIRST_CALL_ID = 33093  # the guide's own example call-id (ASW:33093); any number would do
_FINAL_ANSWER = re.compile(r"[3-6][0-9][0-9] ")  # the bundled phone's detail of a failed call: "486 Busy Here"


@dataclass(frozen=True)
class Callback:
    """One Action URL the phone calls: the ``action_url.<event>`` key and the variables it expands."""

    event: str
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class _Call:
    number: int
    direction: str
    established: bool = False
    ended: bool = False


class EventMap:
    """Fed the bundled phone's events (``feed``) → the Action URL callbacks a vendor phone makes.

    ``account_host(x)`` and ``account_user(x)`` give account ``x``'s host and user (the file's
    ``sip_server.1.address`` and ``user_name``)."""

    def __init__(self, *, mac: str, ip: str, account_host: Any, account_user: Any, first_call_id: int = FIRST_CALL_ID):
        self.mac, self.ip = mac, ip
        self._host, self._user = account_host, account_user
        self._registered: dict[int, set[int]] = {}  # account → servers registered with
        self._calls: dict[str, _Call] = {}  # SIP Call-ID → the phone's call
        self._next_call = first_call_id

    @property
    def next_call_id(self) -> int:
        return self._next_call

    def sip_call_id(self, number: str) -> str | None:
        """The SIP Call-ID of the phone's call ``number`` (its ``$call_id``), or None."""
        for sip, call in self._calls.items():
            if str(call.number) == number and not call.ended:
                return sip
        return None

    def feed(self, ev: Any) -> list[Callback]:
        kind = EventKind(ev.kind)
        x = ev.account or 1
        if kind in (EventKind.REGISTERED, EventKind.UNREGISTERED, EventKind.REGISTER_FAILED):
            return self._account(kind, x, ev.server or 1, ev)
        if kind == EventKind.INCOMING_CALL:
            call = self._call(ev.call_id, "in")
            return [self._cb("incoming_call", ev, x, call)] if call is not None else []
        if kind == EventKind.CALL_STATE:
            return self._call_state(CallState(ev.state), x, ev)
        return []

    # -- accounts: one registration state per account
    def _account(self, kind: EventKind, x: int, y: int, ev: Any) -> list[Callback]:
        servers = self._registered.setdefault(x, set())
        was = bool(servers)
        if kind == EventKind.REGISTERED:
            servers.add(y)
            return [self._cb("registered", ev, x)] if not was else []
        servers.discard(y)
        if servers:  # still registered with the other server: the account is registered
            return []
        if kind == EventKind.UNREGISTERED:
            return [self._cb("unregistered", ev, x)] if was else []
        return [self._cb("register_failed", ev, x)]

    # -- calls
    def _call(self, sip_call_id: str | None, direction: str) -> _Call | None:
        if not sip_call_id:
            return None
        call = self._calls.get(sip_call_id)
        if call is None:
            call = self._calls[sip_call_id] = _Call(self._next_call, direction)
            self._next_call += 1
            if len(self._calls) > 256:  # ended calls are forgotten, oldest first (bounded)
                for key in [k for k, c in self._calls.items() if c.ended][:128]:
                    del self._calls[key]
        return call

    def _call_state(self, state: CallState, x: int, ev: Any) -> list[Callback]:
        if state == CallState.CALLING:
            call = self._call(ev.call_id, "out")
            return [self._cb("outgoing_call", ev, x, call)] if call is not None else []
        call = self._calls.get(ev.call_id or "")
        if call is None or call.ended:
            return []
        if state == CallState.ESTABLISHED:
            if call.established:
                return []
            call.established = True
            return [self._cb("call_established", ev, x, call)]
        if state not in (CallState.TERMINATED, CallState.FAILED):
            return []  # proceeding, ringing: no vendor event
        call.ended = True
        return [self._cb(self._end_event(call, state, ev.detail or ""), ev, x, call)]

    @staticmethod
    def _end_event(call: _Call, state: CallState, detail: str) -> str:
        if call.established:
            return "call_terminated"
        if call.direction == "out":
            if state == CallState.FAILED:
                return "remote_busy" if _FINAL_ANSWER.match(detail) else "call_terminated"
            return "cancel_callout"  # the user hung up before the answer (the bundled phone's TERMINATED)
        return "call_remote_canceled" if "cancelled by the caller" in detail else "reject_incoming_call"

    def _cb(self, event: str, ev: Any, x: int, call: _Call | None = None) -> Callback:
        host, user = self._host(x) or "", self._user(x) or ""
        values = {"mac": self.mac, "ip": self.ip, "phone_time": f"{ev.time:.6f}", "active_user": user,
                  "active_host": host, "active_url": f"sip:{user}@{host}" if user and host else "",
                  "local": f"{user}@{host}" if user else "", "call_id": str(call.number) if call else ""}
        return Callback(event, values)
