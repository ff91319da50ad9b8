"""The yealink DUT (harness/vendor.py) against the bundled phone's vendor emulation (phone/emulation.py):
provisioning, Action URI calls (CALLEND), Action URL events, account status, parking, the session kept
between tests (its provisioning server, the phone on), the emulation's web rules, and no process or
server left behind."""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.harness.dut import dut_class
from sipharness.harness.farm import mac_of
from sipharness.harness.lab import Address, Domain
from sipharness.harness.provisioning import EMPTY_CFG
from sipharness.harness.vendor import VendorError, VendorLabProblem, VendorPhone
from sipharness.harness.vendor_session import close_sessions, sessions
from sipharness.phone.emulation import expand_variables
from sipharness.sipcore.clock import ScaledClock
from tests.vendor_helpers import SPEED, alive, get, make_lab  # noqa: F401 (make_lab: a fixture)

OPTIONS = {"sipharness_phone_ip": "10.0.0.1,10.0.0.2", "sipharness_lab_file": None, "sipharness_phone_user": "u",
           "sipharness_phone_password": "p", "sipharness_provision_port": 8080, "sipharness_provision_timeout": 7.0,
           "sipharness_lab_address": "10.0.0.100", "sipharness_emulate_fault": [], "sipharness_emulate_firmware": None,
           "sipharness_firmware": "8x", "sipharness_phone_auth": "auto", "sipharness_reboot_timeout": None}


def test_kind_is_registered_with_its_clocks():
    cls = dut_class("yealink")
    assert cls is VendorPhone
    assert (cls.default_clock, cls.clocks) == ("real", ("real", "scaled"))
    assert not cls.validates_config and not cls.interp_binding and not cls.exact_time


def test_real_phone_refuses_a_scaled_clock():
    with pytest.raises(VendorError, match="real clock only"):
        VendorPhone(ScaledClock(reactor, 20.0), reactor=reactor, phone="192.0.2.7")


def test_from_options_drives_the_items_phone_with_its_own_port(monkeypatch):
    from sipharness.harness import farm

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    phones = farm.farm_from("10.0.0.1,10.0.0.2")
    farm.set_current(phones[1])
    try:
        dut = VendorPhone.from_options(ScaledClock(reactor, 1.0), OPTIONS.get, reactor=reactor)
    finally:
        farm.set_current(None)
    assert (dut.phone_host, dut.provision_port, dut.mac, dut.user, dut.name) == \
        ("10.0.0.2", 8081, mac_of(1), "u", "phone2")
    with pytest.raises(VendorLabProblem, match="phone farm of 2 phones"):  # no item chose a phone
        VendorPhone.from_options(ScaledClock(reactor, 1.0), OPTIONS.get, reactor=reactor)


def test_one_lab_phone_is_not_shared_by_workers(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    opts = dict(OPTIONS, sipharness_phone_ip="10.0.0.1")
    with pytest.raises(VendorLabProblem, match="worker gw1 has no phone of its own"):
        VendorPhone.from_options(ScaledClock(reactor, 1.0), opts.get, reactor=reactor)
    opts["sipharness_phone_ip"] = "emulate"  # a lone emulate: each worker powers on its own emulated phone
    dut = VendorPhone.from_options(ScaledClock(reactor, 20.0), opts.get, reactor=reactor)
    assert dut.mac == mac_of(1) and dut.emulate


def test_expand_variables_quotes_and_keeps_unknown():
    assert expand_variables("http://h/a?m=$mac&u=$active_user&x=$nope", {"mac": "0015", "active_user": "a b@c"}) == \
        "http://h/a?m=0015&u=a%20b%40c&x=$nope"


@pytest_twisted.ensureDeferred
async def test_emulated_phone_registers_calls_and_hangs_up_with_callend(make_lab):
    lab, dut = make_lab(phone="emulate")
    topo = await lab.up(Domain(("primary", "secondary")))
    fetches = [f for f in dut.session.prov.fetches if f.mac == dut.mac]
    assert fetches and all(f.client == "127.0.0.1" and f.status == 200 for f in fetches)
    reg = await dut.wait_registered(account=1, timeout=30)
    assert "action URL registered from 127.0.0.1" in reg.detail and reg.server is None  # a callback names no server
    state = await dut.accounts_state()
    assert state["mac"] == dut.mac and state["accounts"]["1"]["registered"] is True
    mark = len(dut.events)
    dut.call(topo.uri("2000"))
    calling = await dut.wait_for("call_state", 30, state="calling", since=mark)
    est = await dut.wait_for("call_state", 30, state="established", since=mark)
    assert est.call_id == calling.call_id and est.call_id.isdigit()  # the phone's own call-id, as ASW:xxx takes it
    invites = lab.recorder.sip(method="INVITE", direction="in")
    assert invites and invites[0].server == "primary"
    mark = len(dut.events)
    dut.hangup()
    end = await dut.wait_for("call_state", 30, state="terminated", since=mark)
    assert end.call_id == est.call_id
    assert lab.recorder.sip(method="BYE", direction="in")
    assert any("key=CALLEND: 200" in line for line in dut.log)
    pid = dut.pid
    assert pid and alive(pid)
    await dut.stop()
    assert not alive(pid) and not dut.session.prov.listening  # not kept: the session ends with the test


@pytest.mark.parametrize("status", [403, 486])
@pytest_twisted.ensureDeferred
async def test_a_rejected_call_is_failed_at_once_not_after_a_timeout(make_lab, status):
    """remote_busy ('an outgoing call is rejected') is the failure: no call_terminated is waited for."""
    lab, dut = make_lab(phone="emulate")
    topo = await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    topo["fallback"].script.respond("INVITE", status)
    mark = len(dut.events)
    dut.call(topo.uri("2000"))
    failed = await dut.wait_for("call_state", 30, state="failed", since=mark)
    answered = [r for r in lab.recorder.sip(method="INVITE", direction="out") if r.status == status]
    assert failed.detail.startswith("action URL remote_busy")
    assert failed.time - answered[0].time < 1.0, "the failure came with the rejection, not after a timeout"
    assert not dut.events.entries(lambda e: e.state == "terminated", since=mark)


@pytest_twisted.ensureDeferred
async def test_hanging_up_an_unanswered_call_is_cancel_callout(make_lab):
    lab, dut = make_lab(phone="emulate")
    topo = await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    topo["fallback"].script.delay("INVITE", 120)  # not answered while the test runs
    mark = len(dut.events)
    dut.call(topo.uri("2000"))
    await topo["fallback"].wait_for("INVITE", direction="in", timeout=30)
    dut.hangup()
    end = await dut.wait_for("call_state", 30, state="terminated", since=mark)
    assert end.detail.startswith("action URL cancel_callout")


@pytest_twisted.ensureDeferred
async def test_event_times_are_phone_times_of_the_shared_clock(make_lab):
    lab, dut = make_lab(phone="emulate")
    await lab.up(Domain(("primary", "secondary")))
    reg = await dut.wait_registered(account=1, timeout=30)
    ok = [r for r in lab.recorder.sip(method="REGISTER", direction="out") if r.status == 200]
    assert ok, "no 200 OK to REGISTER recorded"
    # The phone stamps the event when it reads the 200 OK, the fake when it sends it: the same moment
    # within the scaled clock's tolerance (20 ms of wall time), not the callback's arrival.
    assert abs(reg.time - ok[0].time) < 0.020 * SPEED, (reg.time, ok[0].time)


@pytest_twisted.ensureDeferred
async def test_waiting_for_a_server_in_a_callback_is_refused_with_the_way_out(make_lab):
    lab, dut = make_lab(phone="emulate")
    with pytest.raises(ValueError, match=r"name no server.*wait_registration"):
        dut.wait_registered(account=1, server=2, timeout=10)


@pytest_twisted.ensureDeferred
async def test_park_disables_the_accounts_and_the_phone_fetches_again(make_lab):
    lab, dut = make_lab(phone="emulate", keep=True)
    await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    prov = dut.session.prov
    before = len(prov.fetches)
    await dut.park()
    assert not dut.notes, dut.notes
    assert len(prov.fetches) > before
    lines = prov.cfg_text.splitlines()
    assert "account.1.enable = 0" in lines and any("(parked" in line for line in lines)
    state = await dut.accounts_state()
    assert state["accounts"] == {}


@pytest_twisted.ensureDeferred
async def test_the_session_outlives_the_test_and_serves_a_phone_that_reboots(tls_pki):
    """Item 10: the provisioning server stays up between tests (the parked file), and the next test reuses the
    powered-on phone with its clock."""
    from tests.vendor_helpers import make_vendor_lab

    pids = []
    try:
        for round_ in range(2):
            lab, dut = make_vendor_lab(tls_pki, phone="emulate", keep=True, mac="0015650000aa")
            await lab.up(Address("fallback"))
            reg = await dut.wait_registered(account=1, timeout=30)
            ok = [r for r in lab.recorder.sip(method="REGISTER", direction="out") if r.status == 200]
            assert abs(reg.time - ok[0].time) < 0.020 * SPEED, (round_, reg.time, ok[0].time)
            pids.append(dut.pid)
            url = dut.session.url
            await lab.down()
            assert alive(pids[-1]) and dut.session.prov.listening, "a kept phone is parked, not ended"
            status, body, _ = await get(f"{url}{dut.mac}.cfg")  # what a phone rebooting now would find
            assert status == 200 and "account.1.enable = 0" in body
            assert not dut.notes, dut.notes
        assert pids[0] == pids[1], "the second test did not reuse the parked phone"
    finally:
        await close_sessions()
    assert not sessions() and not alive(pids[0])


@pytest_twisted.ensureDeferred
async def test_action_uri_of_the_emulation_allow_list_login_https(make_lab):
    lab, dut = make_lab(phone="emulate")
    await lab.up(Address("fallback"))
    http = dut.session.proc.listening.result
    base = f"http://{http}/servlet"
    status, _, headers = await get(base + "?phonecfg=get&accounts=1")
    assert status == 302 and headers["location"][0].startswith("https://127.0.0.1:")  # HTTPS only: redirected
    https = headers["location"][0].split("/servlet")[0]
    assert (await get(f"{https}/servlet?phonecfg=get&accounts=1", bind="127.0.0.2"))[0] == 403
    assert (await get(f"{https}/servlet?phonecfg=get&accounts=1"))[0] == 401  # Basic: this firmware wants the form
    login = "p=login&q=login&username=admin&pwd=admin&jumpto=servlet"
    assert (await get(f"{https}/servlet?{login}&phonecfg=get&accounts=1", user=None))[0] == 200
    assert (await get(f"{https}/servlet?p=login&q=login&username=admin&pwd=no&key=OK", user=None))[0] == 401
    assert (await get(f"{https}/servlet?{login}&key=FROBNICATE", user=None))[0] == 400
    assert (await get(f"{https}/servlet?{login}&key=CANCEL", user=None))[0] == 400  # CALLEND ends a call
    assert dut.session.client.learned == "login" and dut.session.client.base == https


@pytest_twisted.ensureDeferred
async def test_provisioning_server_serves_only_the_phone(make_lab):
    lab, dut = make_lab(phone="emulate")
    await lab.up(Address("fallback"))
    url = dut.session.url
    status, body, _ = await get(url + "y000000000044.cfg")  # a model's common file: empty
    assert (status, body) == (200, EMPTY_CFG)
    status, body, _ = await get(url + f"{dut.mac}.cfg")
    assert status == 200 and "account.1.enable = 1" in body
    assert (await get(url + "ca.pem"))[1].startswith("-----BEGIN CERTIFICATE-----")
    assert (await get(url + "nothing.html"))[0] == 404
    assert (await get(url + "ca.pem", bind="127.0.0.3"))[0] == 403
    status, _, _ = await get(url + f"{dut.mac}.cfg", bind="127.0.0.3")
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
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0",
                 "--dns", "127.0.0.1:53"]) == 2
    assert "--dhcp-dns" in capsys.readouterr().err
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0",
                 "--https-cert", "x.pem"]) == 2
    assert "--https-cert and --https-key go together" in capsys.readouterr().err


def test_daemon_names_an_unusable_web_certificate_and_starts_nothing(capsys, tmp_path):
    from sipharness.phone.daemon import main
    from sipharness.sipcore.tls import TestPKI

    line = ["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0"]
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    assert main(line + ["--https-cert", str(cert), "--https-key", str(key)]) == 2
    assert f"--https-cert {cert} --https-key {key}:" in capsys.readouterr().err
    assert main(line + ["--https-cert", str(tmp_path / "absent.pem"), "--https-key", str(key)]) == 2
    assert "No such file" in capsys.readouterr().err
    one, other = TestPKI(), TestPKI()
    one.export_server(cert, tmp_path / "unused.pem")
    other.export_server(tmp_path / "other.pem", key)  # a key of another certificate
    assert main(line + ["--https-cert", str(cert), "--https-key", str(key)]) == 2
    assert "the private key is not the one of the chain's first certificate" in capsys.readouterr().err
    from sipharness.phone.daemon import _device_certificate

    good = one.export_server(tmp_path / "good.pem", tmp_path / "good.key")
    _device_certificate("127.0.0.1", *map(str, good)).getContext().check_privatekey()  # a lab's own pair is taken


def test_no_emulation_left_running():
    from sipharness.harness.child import running

    assert not [pid for pid in running("vendor emulation") if alive(pid)], "an emulated phone outlived its test"
    assert os.getpid()


def test_faults_withhold_the_keys_they_name_and_nothing_else():
    from sipharness.phone.emulation import Fault, withhold

    text = ("#!version:1.0.0.1\nstatic.network.primary_dns = 127.0.0.53\nstatic.network.static_dns_enable = 1\n"
            "# account.1.enable = 1 (a comment stays)\naccount.1.enable = 1\naccount.12.enable=1\n"
            "account.1.user_name = 1234\naccount.1.dns_cache_type = 0\nfeatures.show_action_uri_option = 0\n"
            "static.trusted_certificates.url = http://h/ca.pem\naction_url.setup_autop_finish = http://h/a\n")
    same, dropped = withhold(text, [Fault.NEVER_FETCH, Fault.DEAD_CONTROL])
    assert (same, dropped) == (text, [])
    cases = {Fault.IGNORE_DNS: ["static.network.primary_dns"], Fault.DHCP_DNS: ["static.network.static_dns_enable"],
             Fault.NEVER_REGISTER: ["account.1.enable", "account.12.enable"],
             Fault.DNS_CACHE: ["account.1.dns_cache_type"],
             Fault.REMOTE_CONTROL_PROMPT: ["features.show_action_uri_option"],
             Fault.REFUSE_CA: ["static.trusted_certificates.url"],
             Fault.NO_SETUP_EVENTS: ["action_url.setup_autop_finish"]}
    for fault, keys in cases.items():
        kept, dropped = withhold(text, [fault])
        assert dropped == keys, fault
        assert all(f"\n{k} =" not in kept and f"\n{k}=" not in kept for k in keys)
        assert "# account.1.enable = 1 (a comment stays)" in kept and "user_name = 1234" in kept
    assert not [f for f in Fault if f not in cases and f not in (Fault.NEVER_FETCH, Fault.DEAD_CONTROL)]


def test_emulate_fault_is_for_the_emulated_phone_and_names_known_faults(capsys, monkeypatch):
    from sipharness.phone.daemon import main

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    opts = dict(OPTIONS, sipharness_phone_ip="10.0.0.1", sipharness_provision_port=0,
                sipharness_emulate_fault=["ignore-dns"])
    with pytest.raises(VendorLabProblem, match="for the emulated phone only"):
        VendorPhone.from_options(ScaledClock(reactor, 1.0), opts.get, reactor=reactor)
    opts["sipharness_phone_ip"] = "emulate"
    dut = VendorPhone.from_options(ScaledClock(reactor, 20.0), opts.get, reactor=reactor)
    assert dut.emulation_args == ("--emulate-fault", "ignore-dns") and dut.keep
    assert main(["--config", "x.cfg", "--emulate-fault", "ignore-dns"]) == 2
    assert "--emulate-fault is for the vendor emulation" in capsys.readouterr().err
    assert main(["--provision", "http://127.0.0.1:1/", "--mac", "001565000001", "--http", "127.0.0.1:0",
                 "--emulate-fault", "bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest_twisted.ensureDeferred
async def test_ping_reads_the_account_status_and_hints_name_the_settings(make_lab):
    lab, dut = make_lab(phone="emulate")
    await dut.apply_config(lab.write_cfg(None, {"enable": 1, "user_name": "1234", "sip_server.1.address": "127.0.0.15"}))
    answer = await dut.ping()
    assert answer.startswith("the phone at 127.0.0.1:") and answer.endswith("answered its Action URI")
    assert "features.action_uri_limit_ip" in dut.lab_hint("control channel")
    assert "static.trusted_certificates.url" in dut.lab_hint("tls")
    assert "static.network.static_dns_enable = 1" in dut.lab_hint("dns") and "--firmware" in dut.lab_hint("dns")
    assert "account.X.dns_cache_type = 0" in dut.lab_hint("dns cache")
    assert dut.needs_preflight and dut.fetches_config
