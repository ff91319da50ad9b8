"""The baresip DUT (harness/baresip.py): .cfg translation, a real baresip registering and calling
through the lab's fakes on the real clock, clear errors when it cannot start, and no process left behind."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import defer

from sipharness.harness import baresip as hb
from sipharness.harness.baresip import BaresipError, BaresipPhone, read_cfg, translate
from sipharness.harness.dut import dut_class
from sipharness.harness.lab import Address, Domain, Lab
from sipharness.harness.child import running
from sipharness.sipcore.clock import ScaledClock


def _children(name: str = "baresip") -> list[int]:
    """Pids of this process's live (not zombie) children running ``name``."""
    me, out = os.getpid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == me and fields[0] != "Z" and comm == name:
            out.append(int(pid))
    return out


# ---------------------------------------------------------------------------------------- translation

CFG = """#!version:1.0.0.1
static.network.primary_dns = 127.0.0.53
static.network.primary_dns_port = 40053
sip.listen_port = 0
account.1.enable = 1
account.1.display_name = Desk 1
account.1.user_name = 1234
account.1.auth_name = auth1234
account.1.password = secret
account.1.sip_server.1.address = pbx.example.com
account.1.sip_server.1.port = 0
account.1.sip_server.1.expires = 30
account.1.sip_server.1.retry_counts = 3
account.1.sip_server.2.address = 127.0.0.15
account.1.transport = 3
account.2.enable = 0
account.2.sip_server.1.address = 127.0.0.99
account.3.enable = 1
account.3.user_name = 77
account.3.sip_server.1.address = 127.0.0.10
account.3.sip_server.1.port = 5070
account.3.transport = 1
"""


def test_translate_config_and_accounts():
    config, accounts, notes = translate(read_cfg(CFG), ctrl_port=4444, module_path="/mods", ca_file="/ca.pem")
    lines = config.splitlines()
    assert "dns_server 127.0.0.53:40053" in lines
    assert "sip_listen 127.0.0.1:0" in lines
    assert "ctrl_tcp_listen 127.0.0.1:4444" in lines and "module_app ctrl_tcp.so" in lines
    assert "module_path /mods" in lines and "sip_cafile /ca.pem" in lines
    assert not any("stdio" in line for line in lines), "the stdio UI fails with stdin at EOF (PEERS.md)"
    assert [x for x, _ in accounts] == [1, 3], "only enabled accounts"
    one, three = accounts[0][1], accounts[1][1]
    # transport 3 (DNS-NAPTR), port 0: no port, no transport parameter, so baresip starts with NAPTR
    assert one.startswith('"Desk 1" <sip:1234@pbx.example.com>;')
    assert ";auth_user=auth1234;auth_pass=secret;regint=30;" in one
    assert ';outbound="sip:pbx.example.com";' in one
    assert three.startswith("<sip:77@127.0.0.10:5070;transport=tcp>;")
    assert ';outbound="sip:127.0.0.10:5070;transport=tcp";' in three
    assert not any("sip_server.2" in line for line in config.splitlines() + [a for _, a in accounts])


@pytest_twisted.ensureDeferred
async def test_a_key_baresip_cannot_express_is_refused_at_apply_config():
    """Server 2 (no fallback in baresip 1.0.0): NotExpressible, never a finding; retry_counts = 3 is
    the SPEC default, which baresip's fixed behaviour is judged against, so it is accepted."""
    from sipharness.harness.dut import NotExpressible

    dut = BaresipPhone(ScaledClock(_reactor(), 1.0))
    with pytest.raises(NotExpressible, match=r"account\.1\.sip_server\.2\.address = 127\.0\.0\.15 \(no server "
                                             r"fallback") as e:
        await dut.apply_config(CFG)
    assert e.value.keys == ("account.1.sip_server.2.address",)
    await dut.apply_config(CFG.replace("account.1.sip_server.2.address = 127.0.0.15\n", ""))
    with pytest.raises(NotExpressible, match=r"retry_counts = 1 \(no retry count"):
        await dut.apply_config(CFG.replace("retry_counts = 3", "retry_counts = 1")
                               .replace("account.1.sip_server.2.address = 127.0.0.15\n", ""))


def _reactor():
    from twisted.internet import reactor
    return reactor


def test_translate_without_dns_never_leaves_loopback():
    config, _, notes = translate(read_cfg("account.1.enable = 1\naccount.1.sip_server.1.address = 127.0.0.10\n"),
                                 ctrl_port=1)
    assert "dns_server 127.0.0.1:1" in config.splitlines()
    assert notes


def test_read_cfg_names_the_bad_line():
    with pytest.raises(ValueError, match=r"<x>:3: expected 'key = value'"):
        read_cfg("#!version:1.0.0.1\na = 1\nnonsense\n", "<x>")
    assert read_cfg("a = 1\n# c\n\na = 2\n") == {"a": "2"}


def test_registered_as_a_dut_kind():
    cls = dut_class("baresip")
    assert cls is BaresipPhone
    assert (cls.kind, cls.default_clock, cls.clocks) == ("baresip", "real", ("real",))
    assert not (cls.interp_binding or cls.validates_config or cls.exact_time)


# ---------------------------------------------------------------------------------------- a real baresip

@pytest.fixture
def real_lab(peer):
    """A lab on the real clock (SPEC §9) with a baresip DUT; baresip and the fakes are stopped after."""
    from twisted.internet import reactor

    from sipharness.fakes.record import Recorder
    from sipharness.sipcore.clock import ScaledClock

    program = peer("baresip")
    clock = ScaledClock(reactor, 1.0)
    dut = BaresipPhone(clock, reactor=reactor, program=program)
    lab = Lab(clock, Recorder(clock), dut, reactor=reactor)
    yield lab
    pytest_twisted.blockon(defer.ensureDeferred(lab.down()))
    assert not _children(), "a baresip process was left behind"
    assert not running("baresip")


@pytest_twisted.ensureDeferred
async def test_registers_calls_and_hangs_up_through_the_lab(real_lab):
    lab = real_lab
    topo = await lab.up(Address("primary"), account={"sip_server.1.expires": 60})
    assert lab.dut.pid in _children()
    reg = await lab.dut.wait_registered(account=1, timeout=10)
    assert reg.server == 1 and "200" in reg.detail
    regs = lab.recorder.sip(method="REGISTER", direction="in")
    assert regs and regs[0].server == "primary" and b"expires=60" in regs[0].raw
    mark, events = len(lab.recorder), len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    est = await lab.dut.wait_for("call_state", 10, state="established", since=events)
    invite = [r for r in lab.recorder.entries(since=mark) if r.kind == "sip" and r.method == "INVITE"
              and r.direction == "in"][0]
    assert invite.server == "primary" and est.call_id == invite.call_id
    states = [e.state for e in lab.dut.events.entries(since=events) if e.kind == "call_state"]
    assert states[0] == "calling" or "calling" in states
    events = len(lab.dut.events)
    lab.dut.hangup()
    await lab.dut.wait_for("call_state", 10, state="terminated", since=events)
    await topo["primary"].wait_for("BYE", timeout=5, since=mark)
    pid = lab.dut.pid
    await lab.dut.stop()
    assert lab.dut.pid is None and pid not in _children()


@pytest_twisted.ensureDeferred
async def test_resolves_through_the_fake_dns_and_reports_a_refused_call(real_lab):
    """SRV → A through the lab's DNS (dns_server with a port); a 486 ends the call "failed"."""
    lab = real_lab
    topo = await lab.up(Domain(("primary", "secondary")), account={"sip_server.1.expires": 60})
    await lab.dut.wait_registered(account=1, timeout=10)
    queries = [(r.qtype, r.name.rstrip(".")) for r in lab.recorder.dns(direction="in")]
    assert ("SRV", "_sip._udp.pbx.example.com") in queries, queries
    assert [r.server for r in lab.recorder.sip(method="REGISTER")][0] == "primary"
    topo["primary"].script.respond("INVITE", 486)
    events = len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    failed = await lab.dut.wait_for("call_state", 10, state="failed", since=events)
    assert "486" in failed.detail


# ---------------------------------------------------------------------------------------- clear errors, no leaks

@pytest_twisted.ensureDeferred
async def test_missing_program_is_a_clear_error(real_lab):
    lab = real_lab
    lab.dut.program = "/nonexistent/baresip"
    with pytest.raises(BaresipError, match=r"program '/nonexistent/baresip' not found"):
        await lab.up(Address("primary"))


@pytest_twisted.ensureDeferred
async def test_module_path_without_ctrl_tcp_is_a_clear_error(real_lab, tmp_path):
    lab = real_lab
    lab.dut.module_path = str(tmp_path)
    with pytest.raises(BaresipError, match=r"no ctrl_tcp\.so in module path"):
        await lab.up(Address("primary"))


@pytest_twisted.ensureDeferred
async def test_missing_command_module_names_the_step_and_reaps_baresip(real_lab, tmp_path):
    """Only ctrl_tcp.so in the module path: baresip starts, but has no uanew (menu.so): the error says so."""
    lab = real_lab
    os.symlink(os.path.join(hb.DEFAULT_MODULE_PATH, "ctrl_tcp.so"), tmp_path / "ctrl_tcp.so")
    lab.dut.module_path = str(tmp_path)
    with pytest.raises(BaresipError, match=r"baresip refused account\.1 \(uanew"):
        await lab.up(Address("primary"))
    assert not _children() and not running("baresip")


@pytest_twisted.ensureDeferred
async def test_program_that_never_gets_ready_times_out_and_is_killed(real_lab, tmp_path):
    """A program that ignores SIGTERM and never says ready: named timeout, then TERM, TERM, KILL."""
    lab = real_lab
    fake = tmp_path / "baresip"
    fake.write_text("#!/usr/bin/env python3\nimport signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "print('starting', flush=True)\ntime.sleep(60)\n")
    fake.chmod(0o755)
    lab.dut.program = str(fake)
    lab.dut.START_TIMEOUT, lab.dut.TERM_GRACE = 1.0, 0.3
    with pytest.raises(BaresipError, match=r"did not say 'baresip is ready\.' within 1 s; its output:\nstarting"):
        await lab.up(Address("primary"))
    assert not running("baresip") and not _children()


@pytest_twisted.ensureDeferred
async def test_program_that_exits_at_once_reports_its_output(real_lab, tmp_path):
    lab = real_lab
    fake = tmp_path / "baresip"
    fake.write_text("#!/bin/sh\necho 'config: bad line' >&2\nexit 3\n")
    fake.chmod(0o755)
    lab.dut.program = str(fake)
    with pytest.raises(BaresipError, match=r"(?s)exited with status 3; its output:\n.*config: bad line"):
        await lab.up(Address("primary"))
