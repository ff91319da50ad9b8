"""Action URL events, both sides, sans-I/O: what the emulated phone reports for a bundled-phone event
(phone/emulation_events.py: the documented events and variables only) and what the driver makes of a
callback (harness/action_url.py: a rejected call fails at once, one end per call, no server)."""

from __future__ import annotations

from dataclasses import dataclass

from sipharness.harness.action_url import CallbackMap
from sipharness.phone.emulation_events import FIRST_CALL_ID, EventMap
from sipharness.sipcore.events import CallState, EventKind


@dataclass
class Ev:
    kind: str
    time: float = 1.0
    account: int | None = 1
    server: int | None = None
    state: str | None = None
    call_id: str | None = None
    detail: str = ""


def _map() -> EventMap:
    return EventMap(mac="001565000001", ip="127.0.0.1", account_host=lambda x: "pbx.example.com",
                    account_user=lambda x: "1234")


def _events(m: EventMap, *evs: Ev) -> list[str]:
    return [cb.event for ev in evs for cb in m.feed(ev)]


def test_registered_is_per_account_and_fires_on_the_transition_only():
    m = _map()
    out = _events(m, Ev(EventKind.REGISTERED, server=1), Ev(EventKind.REGISTERED, server=2),
                  Ev(EventKind.REGISTERED, server=1))  # a second server, a refresh: no new callback
    assert out == ["registered"]
    assert _events(m, Ev(EventKind.REGISTER_FAILED, server=1)) == []  # still registered with server 2
    assert _events(m, Ev(EventKind.UNREGISTERED, server=2)) == ["unregistered"]
    assert _events(m, Ev(EventKind.REGISTER_FAILED, server=1)) == ["register_failed"]


def test_active_host_is_the_accounts_host_whatever_server_registered():
    m = _map()
    [cb] = m.feed(Ev(EventKind.REGISTERED, server=2, time=12.5))
    assert cb.variables["active_host"] == "pbx.example.com" and cb.variables["active_user"] == "1234"
    assert cb.variables["phone_time"] == "12.500000" and "server" not in cb.variables


def test_calls_get_the_phones_own_ids_and_documented_end_events():
    m = _map()
    out = m.feed(Ev(EventKind.CALL_STATE, state=CallState.CALLING, call_id="abc@h"))
    assert [c.event for c in out] == ["outgoing_call"] and out[0].variables["call_id"] == str(FIRST_CALL_ID)
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.PROCEEDING, call_id="abc@h"),
                   Ev(EventKind.CALL_STATE, state=CallState.RINGING, call_id="abc@h")) == []  # no such vendor event
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.FAILED, call_id="abc@h",
                         detail="486 Busy Here")) == ["remote_busy"]
    assert m.sip_call_id(str(FIRST_CALL_ID)) is None  # ended
    m.feed(Ev(EventKind.CALL_STATE, state=CallState.CALLING, call_id="t@h"))
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.FAILED, call_id="t@h",
                         detail="no server left")) == ["call_terminated"]  # no answer at all is not a rejection
    m.feed(Ev(EventKind.CALL_STATE, state=CallState.CALLING, call_id="c@h"))
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.TERMINATED, call_id="c@h",
                         detail="cancelled (487)")) == ["cancel_callout"]
    m.feed(Ev(EventKind.CALL_STATE, state=CallState.CALLING, call_id="u@h"))
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.ESTABLISHED, call_id="u@h"),
                   Ev(EventKind.CALL_STATE, state=CallState.TERMINATED, call_id="u@h")) == \
        ["call_established", "call_terminated"]
    assert m.next_call_id == FIRST_CALL_ID + 4


def test_incoming_calls_end_as_rejected_or_remote_cancelled():
    m = _map()
    [cb] = m.feed(Ev(EventKind.INCOMING_CALL, call_id="in1"))
    assert cb.event == "incoming_call" and m.sip_call_id(cb.variables["call_id"]) == "in1"
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.TERMINATED, call_id="in1",
                         detail="declined (486)")) == ["reject_incoming_call"]
    m.feed(Ev(EventKind.INCOMING_CALL, call_id="in2"))
    assert _events(m, Ev(EventKind.CALL_STATE, state=CallState.TERMINATED, call_id="in2",
                         detail="cancelled by the caller")) == ["call_remote_canceled"]


# ---------------------------------------------------------------------------------------------- the driver side

def _driver():
    return CallbackMap(lambda user: {"1234": 1, "1235": 2}.get(user or "", 1))


def test_account_events_name_the_account_and_no_server():
    c = _driver()
    m = c.feed("registered", {"user": "1235", "host": "pbx.example.com"})
    assert (m.kind, m.fields) == (EventKind.REGISTERED, {"account": 2, "server": None})
    assert c.feed("register_failed", {"user": "$active_user"}).fields["account"] == 1  # unexpanded: account 1


def test_a_rejected_call_is_failed_and_ends_once():
    c = _driver()
    assert c.feed("outgoing_call", {"call_id": "7"}).fields["state"] == CallState.CALLING
    assert c.feed("remote_busy", {"call_id": "7"}).fields["state"] == CallState.FAILED
    assert c.feed("call_terminated", {"call_id": "7"}) is None  # a phone that also says terminated: one end only
    assert not c.in_call


def test_call_terminated_is_failed_unless_up_or_hung_up_by_the_harness():
    c = _driver()
    c.feed("outgoing_call", {"call_id": "1"})
    assert c.feed("call_terminated", {"call_id": "1"}).fields["state"] == CallState.FAILED
    c.feed("outgoing_call", {"call_id": "2"})
    c.feed("call_established", {"call_id": "2"})
    assert c.feed("call_established", {"call_id": "2"}) is None
    assert c.feed("call_terminated", {"call_id": "2"}).fields["state"] == CallState.TERMINATED
    c.feed("outgoing_call", {"call_id": "3"})
    c.hangup_asked = True
    assert c.feed("call_terminated", {"call_id": "3"}).fields["state"] == CallState.TERMINATED
    for event in ("cancel_callout", "reject_incoming_call", "call_remote_canceled"):
        assert c.feed(event, {"call_id": event}).fields["state"] == CallState.TERMINATED


def test_power_on_reports_and_unknown_events():
    c = _driver()
    assert c.feed("setup_autop_finish", {}).power_on == "setup_autop_finish" and c.feed("setup_completed", {}).kind is None
    assert c.feed("ringback", {}) is None and c.feed("call_proceeding", {}) is None
