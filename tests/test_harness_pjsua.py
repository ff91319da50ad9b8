"""The PJSIP DUT (harness/pjsua.py + harness/pjsua_driver.py): .cfg translation, a real PJSIP registering
and calling through the fakes in the lab-in-a-box (DNS on 127.0.0.53:53), a crash of the stack as a
harness error of the test (never of the test process), and no process left behind."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted

from sipharness.harness.child import running
from sipharness.harness.dut import NotExpressible, dut_class
from sipharness.harness.lab import Address, Domain
from sipharness.harness.pjsua import PjsuaError, PjsuaPhone, translate
from sipharness.harness.translation import read_cfg
from sipharness.sipcore.events import CallState, EventKind
from tests.test_harness_netns import box_lab, in_a_box  # noqa: F401 - fixtures

CFG = """#!version:1.0.0.1
static.network.primary_dns = 127.0.0.53
static.network.primary_dns_port = 53
account.1.enable = 1
account.1.display_name = Desk 1
account.1.user_name = 1234
account.1.auth_name = a1234
account.1.password = secret
account.1.sip_server.1.address = pbx.example.com
account.1.sip_server.1.port = 0
account.1.sip_server.1.expires = 30
account.1.transport = 3
account.1.reg_fail_retry_interval = 12
account.2.enable = 1
account.2.user_name = 77
account.2.sip_server.1.address = 127.0.0.10
account.2.sip_server.1.port = 5070
account.2.transport = 1
"""


def _pjsua2():
    pytest.importorskip("pjsua2", reason="the pjsua2-python wheel is not installed (pip install '.[pjsua]')")


def test_translation_follows_the_table():
    settings, notes = translate(read_cfg(CFG), log_file="/x/pjsip.log", ca_file="/ca.pem")
    assert settings["nameserver"] == ["127.0.0.53"] and settings["ca_file"] == "/ca.pem"
    one, two = settings["accounts"]
    # transport 3, port 0: no transport, no port: PJSIP resolves by SRV (it has no NAPTR)
    assert (one["registrar"], one["proxy"], one["id_uri"]) == (
        "sip:pbx.example.com", "sip:pbx.example.com;lr", '"Desk 1" <sip:1234@pbx.example.com>')
    assert (one["expires"], one["retry_interval"], one["auth_name"], one["password"]) == (30, 12, "a1234", "secret")
    assert two["registrar"] == "sip:127.0.0.10:5070;transport=tcp" and two["proxy"].endswith(";lr;transport=tcp")
    assert not notes


@pytest_twisted.ensureDeferred
async def test_keys_pjsip_cannot_express_are_refused():
    from twisted.internet import reactor

    from sipharness.sipcore.clock import ScaledClock

    dut = PjsuaPhone(ScaledClock(reactor, 1.0), reactor=reactor)
    with pytest.raises(NotExpressible, match=r"primary_dns_port = 5353 \(\(port 53 only\): only 53\)"):
        await dut.apply_config(CFG.replace("primary_dns_port = 53", "primary_dns_port = 5353"))
    with pytest.raises(NotExpressible, match=r"account\.1\.sip_server\.1\.failback_mode = 3"):
        await dut.apply_config(CFG + "account.1.sip_server.1.failback_mode = 3\n")
    await dut.apply_config(CFG + "account.1.sip_server.1.failback_mode = 0\n")  # the default: judged, not refused


def test_registered_as_a_dut_kind():
    cls = dut_class("pjsua")
    assert cls is PjsuaPhone and cls.needs_netns and cls.needs_preflight and cls.clocks == ("real",)


def _pjsua(clock, reactor, **kw):
    return PjsuaPhone(clock, reactor=reactor, **kw)


@pytest_twisted.ensureDeferred
async def test_registers_resolves_calls_and_hangs_up_in_the_box(box_lab):
    _pjsua2()
    lab = box_lab(_pjsua)
    topo = await lab.up(Domain(("primary", "secondary")), account={"sip_server.1.expires": 60})
    assert topo.dns.address == ("127.0.0.53", 53)
    reg = await lab.dut.wait_registered(account=1, timeout=15)
    assert reg.server == 1 and reg.detail.startswith("200")
    queries = [(r.qtype, r.name.rstrip(".")) for r in lab.recorder.dns(direction="in")]
    assert ("SRV", "_sip._udp.pbx.example.com") in queries, queries
    assert [r.server for r in lab.recorder.entries() if getattr(r, "method", None) == "REGISTER" and r.direction == "in"][0] == "primary"
    mark, events = len(lab.recorder), len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    est = await lab.dut.wait_for("call_state", 15, state="established", since=events)
    invite = [r for r in lab.recorder.entries(since=mark) if getattr(r, "method", None) == "INVITE" and r.direction == "in"][0]
    assert invite.server == "primary" and est.call_id == invite.call_id
    events = len(lab.dut.events)
    lab.dut.hangup()
    await lab.dut.wait_for("call_state", 10, state="terminated", since=events)
    await topo["primary"].wait_for("BYE", timeout=5, since=mark)
    pid = lab.dut.pid
    assert any("[PJSIP log, level 5, tail]" == line for line in lab.dut.log)
    await lab.dut.stop()
    assert lab.dut.pid is None and not running("pjsua")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest_twisted.ensureDeferred
async def test_a_refused_call_ends_failed_and_a_100_is_proceeding(box_lab):
    _pjsua2()
    lab = box_lab(_pjsua)
    topo = await lab.up(Address("primary"), account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=15)
    topo["primary"].script.respond("INVITE", 486)
    events = len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    failed = await lab.dut.wait_for("call_state", 10, state="failed", since=events)
    assert failed.detail.startswith("486")
    states = [e.state for e in lab.dut.events.entries(since=events) if e.kind == EventKind.CALL_STATE]
    assert states == [CallState.CALLING, CallState.FAILED], states
    topo["primary"].script.clear()
    topo["primary"].script.respond("INVITE", 100)  # and nothing more: only a 100 Trying tells it is alive
    events = len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    await lab.dut.wait_for("call_state", 10, state="proceeding", since=events)
    lab.dut.hangup()
    await lab.dut.wait_for("call_state", 40, state="terminated", since=events)


@pytest_twisted.ensureDeferred
async def test_a_crash_of_the_stack_is_a_harness_error_of_the_test(box_lab):
    """PJSIP dies (SIGSEGV, as a C crash would): the test's waits fail at once with a harness error
    naming the status, the error is a serving error the plugin reports, and this process lives on."""
    _pjsua2()
    from sipharness.harness.report import HarnessError

    lab = box_lab(_pjsua)
    await lab.up(Address("primary"), account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=15)
    wait = lab.dut.wait_for("call_state", 60, state="established")
    os.kill(lab.dut.pid, signal.SIGSEGV)
    with pytest.raises(PjsuaError, match=r"exited unexpectedly \(status -11\)") as e:
        await wait
    assert isinstance(e.value, HarnessError) and lab.dut.serving_errors == [e.value]
    with pytest.raises(PjsuaError):
        await lab.dut.wait_registered(account=1, timeout=60)  # later waits fail at once too
    await lab.dut.stop()
    assert not running("pjsua")


@pytest_twisted.ensureDeferred
async def test_registers_over_tls_trusting_the_labs_ca(box_lab, tls_pki):
    _pjsua2()
    lab = box_lab(lambda clock, reactor: PjsuaPhone(clock, reactor=reactor, ca_file=tls_pki.ca_file))
    lab.tls = tls_pki
    await lab.up(Address("primary"), transport="tls", account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=15)
    assert [r.transport for r in lab.recorder.entries() if getattr(r, "method", None) == "REGISTER" and r.direction == "in"][0] == "tls"
