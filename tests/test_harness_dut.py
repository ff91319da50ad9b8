"""harness/dut.py: DUT events speak sipcore.events' vocabulary (EventKind, CallState), and a wait for a word
outside it is refused at once instead of running into its deadline."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.fakes.record import Recorder
from sipharness.harness.dut import BundledPhone, DeviceUnderTest
from sipharness.harness.lab import Address, Lab
from sipharness.sipcore.events import CallState, EventKind


def test_a_wait_for_an_unknown_kind_or_state_is_refused_naming_the_words(vclock):
    dut = DeviceUnderTest(vclock)
    with pytest.raises(ValueError, match=r"wait_for\('registred', \.\.\.\).*kinds: registered, register_failed"):
        dut.wait_for("registred", 10)
    with pytest.raises(ValueError, match="states calling, proceeding"):
        dut.wait_for("call_state", 10, state="up")
    assert dut.ping().result == "abstract DUT in this process"  # nothing to prove for a DUT in this process
    assert dut.lab_hint("dns") == "" and not dut.needs_preflight and dut.serving_errors == []


@pytest_twisted.ensureDeferred
async def test_bundled_phone_events_are_typed(vclock):
    dut = BundledPhone(vclock, reactor=reactor)
    lab = Lab(vclock, Recorder(vclock), dut, reactor=reactor)
    try:
        topo = await lab.up(Address("fallback"))
        reg = await dut.wait_registered(account=1, timeout=30)
        assert reg.kind is EventKind.REGISTERED and reg.state is None
        mark = len(dut.events)
        dut.call(topo.uri("2000"))
        est = await dut.wait_for(EventKind.CALL_STATE, 30, state=CallState.ESTABLISHED, since=mark)
        assert est.state is CallState.ESTABLISHED and est.state == "established"  # a StrEnum is its text
    finally:
        await lab.down()
