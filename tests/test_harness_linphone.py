"""The liblinphone DUT (harness/linphone.py): .cfg → linphonerc + resolv.conf, a real linphone-daemon
registering and calling through the fakes in the lab-in-a-box (DNS on 127.0.0.53:53 through its own
bind-mounted resolv.conf, the machine's file untouched), a crash as a harness error, no leftovers."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted

from sipharness.harness.child import running
from sipharness.harness.dut import NotExpressible, dut_class
from sipharness.harness.lab import Address, Domain
from sipharness.harness.linphone import LinphoneError, LinphonePhone, translate
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
account.3.enable = 1
account.3.user_name = 77
account.3.sip_server.1.address = 127.0.0.10
account.3.sip_server.1.port = 5070
account.3.transport = 1
"""


def _daemon(peer):
    peer("linphone-daemon")


def test_translation_follows_the_table():
    rc, resolv, aors, notes = translate(read_cfg(CFG), ports=(5062, 5063, 5064), ca_file="/ca.pem")
    assert resolv.splitlines()[-1] == "nameserver 127.0.0.53"
    lines = rc.splitlines()
    assert {"sip_port=5062", "sip_tcp_port=5063", "sip_tls_port=5064", "root_ca=/ca.pem", "verify_server_cn=0"} <= set(lines)
    # transport 3, port 0: no transport, no port: liblinphone's resolver decides (RFC 3263)
    assert "reg_proxy=<sip:pbx.example.com>" in lines and "reg_route=<sip:pbx.example.com;lr>" in lines
    assert 'reg_identity="Desk 1" <sip:1234@pbx.example.com>' in lines and "reg_expires=30" in lines
    assert "reg_proxy=<sip:127.0.0.10:5070;transport=tcp>" in lines
    assert {"username=1234", "userid=a1234", "passwd=secret"} <= set(lines)
    assert aors == {"1234@pbx.example.com": 1, "77@127.0.0.10": 3} and not notes


@pytest_twisted.ensureDeferred
async def test_keys_liblinphone_cannot_express_are_refused():
    from twisted.internet import reactor

    from sipharness.sipcore.clock import ScaledClock

    dut = LinphonePhone(ScaledClock(reactor, 1.0), reactor=reactor)
    with pytest.raises(NotExpressible, match=r"primary_dns_port = 5353"):
        await dut.apply_config(CFG.replace("primary_dns_port = 53", "primary_dns_port = 5353"))
    with pytest.raises(NotExpressible, match=r"account\.1\.reg_fail_retry_interval = 5 \(its retry interval"):
        await dut.apply_config(CFG + "account.1.reg_fail_retry_interval = 5\n")


def test_registered_as_a_dut_kind():
    cls = dut_class("linphone")
    assert cls is LinphonePhone and cls.needs_netns and cls.needs_preflight and cls.clocks == ("real",)


def _linphone(clock, reactor, **kw):
    return LinphonePhone(clock, reactor=reactor, **kw)


@pytest_twisted.ensureDeferred
async def test_registers_resolves_calls_and_hangs_up_in_the_box(box_lab, peer):
    _daemon(peer)
    with open("/etc/resolv.conf", encoding="utf-8") as f:
        machine_resolv = f.read()
    lab = box_lab(_linphone)
    topo = await lab.up(Domain(("primary", "secondary")), account={"sip_server.1.expires": 60})
    reg = await lab.dut.wait_registered(account=1, timeout=20)
    assert reg.server == 1 and reg.detail.endswith("LinphoneRegistrationOk")
    queries = [(r.qtype, r.name.rstrip(".")) for r in lab.recorder.dns(direction="in")]
    assert any(name == "_sip._udp.pbx.example.com" for _, name in queries), queries
    assert [r.server for r in lab.recorder.entries() if getattr(r, "method", None) == "REGISTER" and r.direction == "in"][0] == "primary"
    # past liblinphone's "is the network up" check (every 5 s: with no answer but loopback it tore its
    # transports down; harness/linphone.py gives the box a route back into lo for its probe)
    await lab.at(lab.now() + 7)
    mark, events = len(lab.recorder), len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    est = await lab.dut.wait_for("call_state", 15, state="established", since=events)
    assert not [e for e in lab.dut.events.entries() if e.kind == EventKind.UNREGISTERED]
    assert [r for r in lab.recorder.entries(since=mark) if getattr(r, "method", None) == "INVITE" and r.direction == "in"][0].server \
        == "primary"
    events = len(lab.dut.events)
    lab.dut.hangup()
    await lab.dut.wait_for("call_state", 10, state="terminated", call_id=est.call_id, since=events)
    await topo["primary"].wait_for("BYE", timeout=5, since=mark)
    pid = lab.dut.pid
    await lab.dut.stop()
    assert lab.dut.pid is None and not running("linphone")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with open("/etc/resolv.conf", encoding="utf-8") as f:
        assert f.read() == machine_resolv, "the machine's resolv.conf is never touched"


@pytest_twisted.ensureDeferred
async def test_a_refused_call_ends_failed(box_lab, peer):
    _daemon(peer)
    lab = box_lab(_linphone)
    topo = await lab.up(Address("primary"), account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=20)
    topo["primary"].script.respond("INVITE", 486)
    events = len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    await lab.dut.wait_for("call_state", 10, state="failed", since=events)
    states = [e.state for e in lab.dut.events.entries(since=events) if e.kind == EventKind.CALL_STATE]
    assert states == [CallState.CALLING, CallState.FAILED], states


@pytest_twisted.ensureDeferred
async def test_a_crash_of_the_stack_is_a_harness_error_of_the_test(box_lab, peer):
    _daemon(peer)
    lab = box_lab(_linphone)
    await lab.up(Address("primary"), account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=20)
    wait = lab.dut.wait_for("call_state", 60, state="established")
    os.kill(lab.dut.pid, signal.SIGSEGV)
    with pytest.raises(LinphoneError, match=r"exited unexpectedly \(status -11\)"):
        await wait
    await lab.dut.stop()
    assert not running("linphone")


@pytest_twisted.ensureDeferred
async def test_registers_over_tls_trusting_the_labs_ca(box_lab, tls_pki, peer):
    """The chain is checked against the lab's CA (root_ca); the name is not (belle-sip matches no IP SAN)."""
    _daemon(peer)
    lab = box_lab(lambda clock, reactor: LinphonePhone(clock, reactor=reactor, ca_file=tls_pki.ca_file))
    lab.tls = tls_pki
    await lab.up(Address("primary"), transport="tls", account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=15)
    assert [r.transport for r in lab.recorder.entries() if getattr(r, "method", None) == "REGISTER" and r.direction == "in"][0] == "tls"
