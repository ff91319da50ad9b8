"""Bad input and safety of the yealink DUT (issue 7): an unreachable phone, wrong HTTP credentials, a phone
that never fetches its configuration, a callback from an unexpected address, a phone process that dies.
Each ends with a VendorError naming the step (never a hang), and nothing is left running. What the lab
got wrong is a lab problem (issue 10: never a finding); the emulation failing is a harness error."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted

from sipharness.harness.lab import Address
from sipharness.harness.report import HarnessError, LabProblem, Outcome, classify
from sipharness.harness.vendor import VendorError
from tests.conftest import free_port
from tests.vendor_helpers import alive as _alive
from tests.vendor_helpers import get, make_lab  # noqa: F401 (make_lab: a fixture)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@pytest_twisted.ensureDeferred
async def test_unreachable_phone_names_the_step_and_stops_the_web_server(make_lab):
    port = free_port()
    lab, dut = make_lab(phone=f"127.0.0.1:{port}", speed=1.0, provision_timeout=2.0)
    with pytest.raises(VendorError) as e:
        await lab.up(Address("fallback"))
    assert "step 'trigger provisioning (Action URI key=AutoP)'" in str(e.value)
    assert f"127.0.0.1:{port} is unreachable" in str(e.value) and "--phone-ip" in str(e.value)
    assert classify(e.value) is Outcome.LAB_PROBLEM and "--phone-ip" in e.value.fix
    web = dut.session.url
    host, web_port = web[len("http://"):].rstrip("/").split(":")
    assert _listening(host, int(web_port))
    await lab.down()
    assert not _listening(host, int(web_port)), "the provisioning server outlived stop()"
    assert not dut.notes or all("park" not in n for n in dut.notes)  # never started: nothing to park


@pytest_twisted.ensureDeferred
async def test_wrong_credentials_name_the_step_and_the_options(make_lab):
    lab, dut = make_lab(phone="emulate", password="not-the-password")
    with pytest.raises(VendorError) as e:
        await lab.up(Address("fallback"))
    text = str(e.value)
    assert "step 'trigger provisioning (Action URI key=AutoP)'" in text and "HTTP 401" in text
    assert "--phone-user 'admin' and --phone-password" in text and "not-the-password" not in text
    assert isinstance(e.value, LabProblem)
    pid = dut.pid
    assert pid and _alive(pid)
    await lab.down()
    assert dut.pid is None and not _alive(pid)


@pytest_twisted.ensureDeferred
async def test_action_uri_not_whitelisted_says_what_to_set(make_lab):
    # (the power-on fetch would bring the harness's whitelist: point it nowhere)
    lab, dut = make_lab(phone="emulate", provision_timeout=1.0, emulation_args=("--action-uri-allow", "127.0.0.9", "--provision",
                                                        f"http://127.0.0.1:{free_port()}/"))
    with pytest.raises(VendorError, match=r"refused the Action URI from 127\.0\.0\.1 \(HTTP 403\).*"
                                          r"features\.action_uri_limit_ip"):
        await lab.up(Address("fallback"))


@pytest_twisted.ensureDeferred
async def test_phone_that_never_fetches_its_file_times_out_naming_the_url(make_lab):
    closed = free_port()
    lab, dut = make_lab(phone="emulate", provision_timeout=1.0,
                        emulation_args=("--provision", f"http://127.0.0.1:{closed}/"))
    with pytest.raises(VendorError) as e:
        await lab.up(Address("fallback"))
    text = str(e.value)
    assert "step 'provisioning'" in text and "did not fetch <mac>.cfg within 1 s" in text
    assert f"set its provisioning server URL to {dut.session.url}" in text
    assert f"127.0.0.1:{closed}/001565000001.cfg" in e.value.evidence  # the emulation's own complaint, from its output
    assert classify(e.value) is Outcome.LAB_PROBLEM


@pytest_twisted.ensureDeferred
async def test_callback_from_another_address_ends_the_waits_at_once(make_lab):
    lab, dut = make_lab(phone="emulate")
    await lab.up(Address("fallback"), start=False)
    lab.topology["fallback"].script.silent()  # the phone will never register: only the error can end the wait
    await dut.start()
    waiting = dut.wait_registered(account=1, timeout=3600)
    t0 = lab.now()
    status, _, _ = await get(dut.session.url + "action/registered?mac=001565000001&user=1234", bind="127.0.0.2")
    assert status == 403
    with pytest.raises(VendorError) as e:
        await waiting
    assert "step 'Action URL callback': refused GET /action/registered" in str(e.value)
    assert "from 127.0.0.2" in str(e.value) and "only from the phone's address 127.0.0.1" in str(e.value)
    assert isinstance(e.value, LabProblem) and "only the phone under test may call the harness" in e.value.fix
    assert lab.now() - t0 < 60  # ended by the error, not by the 3600 s deadline
    with pytest.raises(VendorError):  # and every later wait of the test too
        await dut.wait_for("call_state", 10, state="established")
    assert not [e for e in dut.events if e.kind == "registered"]


@pytest_twisted.ensureDeferred
async def test_emulated_phone_dying_ends_the_waits(make_lab):
    import os
    import signal

    lab, dut = make_lab(phone="emulate")
    await lab.up(Address("fallback"), start=False)
    lab.topology["fallback"].script.silent()
    await dut.start()
    waiting = dut.wait_registered(account=1, timeout=3600)
    os.kill(dut.pid, signal.SIGKILL)
    with pytest.raises(VendorError, match="the emulated phone exited unexpectedly") as e:
        await waiting
    assert classify(e.value) is Outcome.HARNESS_ERROR and not isinstance(e.value, LabProblem)


@pytest_twisted.ensureDeferred
async def test_emulation_that_cannot_start_names_the_step(make_lab):
    lab, dut = make_lab(phone="emulate", emulation_args=("--mac", "not-a-mac"))
    with pytest.raises(VendorError) as e:
        await lab.up(Address("fallback"))
    assert "step 'start the emulated phone'" in str(e.value) and "exited with status 2" in str(e.value)
    assert "expected 12 hex digits" in str(e.value)
    assert isinstance(e.value, HarnessError) and not isinstance(e.value, LabProblem)
    assert dut.pid is None
