"""The yealink DUT (harness/vendor.py) against the bundled phone's vendor emulation (phone/emulation.py):
provisioning, Action URI calls, Action URL events, account status, parking, the emulation's HTTP rules,
and no process or server left behind."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from sipharness.fakes.record import Recorder
from sipharness.harness.dut import dut_class
from sipharness.harness.lab import Address, Domain, Lab
from sipharness.harness.provisioning import EMPTY_CFG
from sipharness.harness.vendor import ACTION_EVENTS, VendorError, VendorLabProblem, VendorPhone, pick_phone
from sipharness.phone.emulation import expand_variables
from sipharness.sipcore.clock import ScaledClock

SPEED = 20.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _get(url: str, *, user: str = "admin", password: str = "admin", bind: str = "127.0.0.1") -> tuple[int, str]:
    import base64

    from twisted.web.client import Agent
    from twisted.web.http_headers import Headers

    from sipharness.harness.vendor import _read_body

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    agent = Agent(reactor, connectTimeout=5, bindAddress=(bind, 0))
    response = await agent.request(b"GET", url.encode(), Headers({b"authorization": [f"Basic {token}".encode()]}))
    return response.code, (await _read_body(response)).decode()


@pytest.fixture
def vendor_lab(tls_pki):
    """(lab, dut) on a scaled clock with an emulated vendor phone; everything stopped after the test."""
    clock = ScaledClock(reactor, SPEED)
    dut = VendorPhone(clock, reactor=reactor, phone="emulate", ca_file=tls_pki.ca_file)
    lab = Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki)
    yield lab, dut
    pytest_twisted.blockon(defer.ensureDeferred(lab.down()))


def test_kind_is_registered_with_its_clocks():
    cls = dut_class("yealink")
    assert cls is VendorPhone
    assert (cls.default_clock, cls.clocks) == ("real", ("real", "scaled"))
    assert not cls.validates_config and not cls.interp_binding and not cls.exact_time


def test_vendor_cfg_adds_whitelist_and_action_urls():
    dut = VendorPhone(ScaledClock(reactor, 1.0), reactor=reactor, phone="192.0.2.7", lab_address="192.0.2.1")
    text = dut.vendor_cfg("#!version:1.0.0.1\naccount.1.enable = 1\naccount.2.enable = 0\n", park=False)
    lines = text.splitlines()
    assert lines[0] == "#!version:1.0.0.1"
    assert "features.action_uri_limit_ip = 192.0.2.1" in lines
    for event in ACTION_EVENTS:
        assert any(line.startswith(f"action_url.{event} = ") and "$mac" in line and "$call_id" in line
                   for line in lines), event
    parked = dut.vendor_cfg("#!version:1.0.0.1\naccount.1.enable = 1\naccount.2.enable = 0\n", park=True)
    assert "account.1.enable = 0" in parked.splitlines() and "account.1.enable = 1" not in parked
    assert dut.phone_http == "192.0.2.7:80"
    assert VendorPhone(ScaledClock(reactor, 1.0), reactor=reactor, phone="192.0.2.7:8080").phone_http == "192.0.2.7:8080"


def test_real_phone_refuses_a_scaled_clock():
    with pytest.raises(VendorError, match="real clock only"):
        VendorPhone(ScaledClock(reactor, 20.0), reactor=reactor, phone="192.0.2.7")


def test_phone_farm_gives_worker_n_the_nth_phone():
    assert pick_phone("10.0.0.1, 10.0.0.2,10.0.0.3", "gw2") == ("10.0.0.3", 2)
    assert pick_phone("10.0.0.1,10.0.0.2", None) == ("10.0.0.1", 0)
    assert pick_phone("emulate", "master") == ("emulate", 0)
    with pytest.raises(VendorError, match="worker gw2 has no phone.*-n 2 at most"):
        pick_phone("10.0.0.1,10.0.0.2", "gw2")
    with pytest.raises(VendorLabProblem, match="has no phone: give --phone-ip"):
        pick_phone("", None)


def test_from_options_takes_the_workers_phone_and_port(monkeypatch):
    opts = {"sipharness_phone_ip": "10.0.0.1,10.0.0.2", "sipharness_phone_user": "u",
            "sipharness_phone_password": "p", "sipharness_provision_port": 8080,
            "sipharness_provision_timeout": 7.0, "sipharness_lab_address": "10.0.0.100"}
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    dut = VendorPhone.from_options(ScaledClock(reactor, 1.0), opts.get, reactor=reactor)
    assert (dut.phone_host, dut.provision_port, dut.mac, dut.user) == ("10.0.0.2", 8081, "001565000002", "u")


def test_expand_variables_quotes_and_keeps_unknown():
    assert expand_variables("http://h/a?m=$mac&u=$active_user&x=$nope", {"mac": "0015", "active_user": "a b@c"}) == \
        "http://h/a?m=0015&u=a%20b%40c&x=$nope"


@pytest_twisted.ensureDeferred
async def test_emulated_phone_registers_calls_and_hangs_up(vendor_lab):
    lab, dut = vendor_lab
    topo = await lab.up(Domain(("primary", "secondary")))
    fetches = [f for f in dut._prov.fetches if f.mac == dut.mac]
    assert fetches and all(f.client == "127.0.0.1" and f.status == 200 for f in fetches)
    reg = await dut.wait_registered(account=1, server=1, timeout=30)
    assert "action URL registered from 127.0.0.1" in reg.detail
    state = await dut.accounts_state()
    assert state["mac"] == dut.mac and state["accounts"]["1"]["registered"] is True
    assert state["accounts"]["1"]["servers"] == [1]
    mark = len(dut.events)
    dut.call(topo.uri("2000"))
    calling = await dut.wait_for("call_state", 30, state="calling", since=mark)
    est = await dut.wait_for("call_state", 30, state="established", since=mark)
    assert est.call_id == calling.call_id and est.call_id
    invites = lab.recorder.sip(method="INVITE", direction="in")
    assert invites and invites[0].server == "primary"
    mark = len(dut.events)
    dut.hangup()
    end = await dut.wait_for("call_state", 30, state="terminated", since=mark)
    assert end.call_id == est.call_id
    assert lab.recorder.sip(method="BYE", direction="in")
    pid = dut.pid
    assert pid and _alive(pid)
    await dut.stop()
    assert dut.pid is None and not _alive(pid)
    assert dut._prov is None


@pytest_twisted.ensureDeferred
async def test_event_times_are_phone_times_of_the_shared_clock(vendor_lab):
    lab, dut = vendor_lab
    await lab.up(Domain(("primary", "secondary")))
    reg = await dut.wait_registered(account=1, timeout=30)
    ok = [r for r in lab.recorder.sip(method="REGISTER", direction="out") if r.status == 200]
    assert ok, "no 200 OK to REGISTER recorded"
    # The phone stamps the event when it reads the 200 OK, the fake when it sends it: the same moment
    # within the scaled clock's tolerance (20 ms of wall time), not the callback's arrival.
    assert abs(reg.time - ok[0].time) < 0.020 * SPEED, (reg.time, ok[0].time)


@pytest_twisted.ensureDeferred
async def test_fallback_server_is_reported_as_server_2(vendor_lab):
    lab, dut = vendor_lab
    await lab.up(Domain(("primary",)), Address("fallback"), start=False)
    lab.topology["primary"].script.silent()
    await dut.start()
    reg = await dut.wait_registered(account=1, server=2, timeout=60)
    assert reg.server == 2


@pytest_twisted.ensureDeferred
async def test_failed_call_is_reported_failed_not_terminated(vendor_lab):
    lab, dut = vendor_lab
    topo = await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    topo["fallback"].script.respond("INVITE", 486)
    mark = len(dut.events)
    dut.call(topo.uri("2000"))
    await dut.wait_for("call_state", 30, state="failed", since=mark)
    assert not dut.events.entries(lambda e: e.state == "terminated", since=mark)


@pytest_twisted.ensureDeferred
async def test_park_disables_the_accounts_and_the_phone_fetches_again(vendor_lab):
    lab, dut = vendor_lab
    await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    before = len(dut._prov.fetches)
    await dut.park()
    assert not dut.notes, dut.notes
    assert len(dut._prov.fetches) > before
    assert "account.1.enable = 0" in dut._prov.cfg_text.splitlines()
    state = await dut.accounts_state()
    assert state["accounts"] == {}


@pytest_twisted.ensureDeferred
async def test_action_uri_whitelist_and_auth_of_the_emulation(vendor_lab):
    lab, dut = vendor_lab
    await lab.up(Address("fallback"))
    base = f"http://{dut.phone_http}/servlet"
    assert (await _get(base + "?phonecfg=get&accounts=1", bind="127.0.0.2"))[0] == 403
    assert (await _get(base + "?phonecfg=get&accounts=1", password="wrong"))[0] == 401
    assert (await _get(base + "?key=FROBNICATE"))[0] == 400
    assert (await _get(base + "?phonecfg=get&accounts=1"))[0] == 200


@pytest_twisted.ensureDeferred
async def test_provisioning_server_serves_only_the_phone(vendor_lab):
    lab, dut = vendor_lab
    await lab.up(Address("fallback"))
    url = dut._prov.url
    status, body = await _get(url + "y000000000044.cfg")  # a model's common file: empty
    assert (status, body) == (200, EMPTY_CFG)
    status, body = await _get(url + f"{dut.mac}.cfg")
    assert status == 200 and "account.1.enable = 1" in body
    assert (await _get(url + "nothing.html"))[0] == 404
    status, _ = await _get(url + f"{dut.mac}.cfg", bind="127.0.0.3")
    assert status == 403
    with pytest.raises(VendorError, match="step 'provisioning': refused GET /001565000001.cfg from 127.0.0.3"):
        await dut.wait_registered(account=1, timeout=30)


def test_daemon_refuses_an_incomplete_vendor_command_line(capsys):
    from sipharness.phone.daemon import main

    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "xyz", "--http", "127.0.0.1:0"]) == 2
    assert "--mac 'xyz': expected 12 hex digits" in capsys.readouterr().err
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001"]) == 2
    assert "--provision needs --http" in capsys.readouterr().err
    assert main(["--mac", "001565000001"]) == 2
    assert "give --config FILE, or --provision" in capsys.readouterr().err
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0",
                 "--clock", "scaled:20@soon"]) == 2
    assert "--clock scaled:20@soon" in capsys.readouterr().err


def test_no_emulation_left_running():
    from sipharness.harness.child import running

    assert not [pid for pid in running("vendor emulation") if _alive(pid)], "an emulated phone outlived its test"
    assert os.getpid()


@pytest_twisted.ensureDeferred
async def test_warm_phone_is_parked_and_reused_by_the_next_test_with_its_clock(tls_pki):
    from sipharness.harness.vendor import _WARM

    pids, labs = [], []
    try:
        for round_ in range(2):
            clock = ScaledClock(reactor, SPEED)
            dut = VendorPhone(clock, reactor=reactor, phone="emulate", ca_file=tls_pki.ca_file, warm=True,
                              mac="0015650000aa")
            lab = Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki)
            labs.append(lab)
            await lab.up(Address("fallback"))
            reg = await dut.wait_registered(account=1, timeout=30)
            ok = [r for r in lab.recorder.sip(method="REGISTER", direction="out") if r.status == 200]
            assert abs(reg.time - ok[0].time) < 0.020 * SPEED, (round_, reg.time, ok[0].time)
            pids.append(dut.pid)
            await lab.down()
            assert dut.pid is None and _alive(pids[-1]), "a warm phone is parked, not ended"
            assert not dut.notes, dut.notes
        assert pids[0] == pids[1], "the second test did not reuse the parked phone"
    finally:
        for key in [k for k in _WARM if k[-1] == "0015650000aa"]:
            w = _WARM.pop(key)
            w.ptransport.signalProcess("KILL")
            await w.proc.when_ended()
            await w.prov.stop()


def test_faults_withhold_the_keys_they_name_and_nothing_else():
    from sipharness.phone.emulation import Fault, withhold

    text = ("#!version:1.0.0.1\nstatic.network.primary_dns = 127.0.0.53\nstatic.network.primary_dns_port = 5353\n"
            "# account.1.enable = 1 (a comment stays)\naccount.1.enable = 1\naccount.12.enable=1\n"
            "account.1.user_name = 1234\n")
    same, dropped = withhold(text, [Fault.REFUSE_CA, Fault.NEVER_FETCH])
    assert (same, dropped) == (text, [])
    no_dns, dropped = withhold(text, [Fault.IGNORE_DNS])
    assert dropped == ["static.network.primary_dns", "static.network.primary_dns_port"]
    assert "primary_dns" not in no_dns and "account.1.enable = 1" in no_dns
    no_reg, dropped = withhold(text, [Fault.NEVER_REGISTER])
    assert dropped == ["account.1.enable", "account.12.enable"]
    assert "# account.1.enable = 1 (a comment stays)" in no_reg and "user_name = 1234" in no_reg


def test_emulate_fault_is_for_the_emulated_phone_and_names_known_faults(capsys, monkeypatch):
    from sipharness.harness.vendor import VendorLabProblem
    from sipharness.phone.daemon import main

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # (one phone: as worker gw1 this would be a farm error)
    opts = {"sipharness_phone_ip": "10.0.0.1", "sipharness_phone_user": "u", "sipharness_phone_password": "p",
            "sipharness_provision_port": 0, "sipharness_provision_timeout": 7.0,
            "sipharness_lab_address": "10.0.0.100", "sipharness_emulate_fault": ["ignore-dns"]}
    with pytest.raises(VendorLabProblem, match="faults are for the emulated phone only"):
        VendorPhone.from_options(ScaledClock(reactor, 1.0), opts.get, reactor=reactor)
    opts["sipharness_phone_ip"] = "emulate"
    dut = VendorPhone.from_options(ScaledClock(reactor, 20.0), opts.get, reactor=reactor)
    assert dut.emulation_args == ("--emulate-fault", "ignore-dns") and not dut.warm  # a faulty phone is never reused
    assert main(["--config", "x.cfg", "--emulate-fault", "ignore-dns"]) == 2
    assert "--emulate-fault is for the vendor emulation" in capsys.readouterr().err
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0",
                 "--emulate-fault", "bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_ping_reads_the_account_status_and_hints_name_the_settings(vendor_lab):
    lab, dut = vendor_lab
    await dut.apply_config(lab.write_cfg(None, {"enable": 1, "user_name": "1234", "sip_server.1.address": "127.0.0.15"}))
    answer = await dut.ping()
    assert answer == f"the phone at {dut.phone_http} answered its Action URI"
    assert "features.action_uri_limit_ip" in dut.lab_hint("control channel")
    assert "--ca-file" in dut.lab_hint("tls") and dut.lab_hint("dns") == ""
    assert dut.needs_preflight and dut.fetches_config
