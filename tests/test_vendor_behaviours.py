"""Each documented vendor-phone behaviour the emulation has on by default, and the driver coping with it:
a reboot when network keys change (ready at setup_autop_finish), an unchanged file skipped (the driver's
files always differ), DHCP's DNS unless static DNS is enabled, the DNS cache (turned off by the driver),
the remote-control prompt (named as the fix when the key is withheld), the key generations and the CA by
URL (firmware 71 and 8x over TLS)."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor

from sipharness.harness.child import deadline
from sipharness.harness.lab import Address, Domain
from sipharness.harness.vendor import VendorLabProblem
from tests.vendor_helpers import make_lab  # noqa: F401 (a fixture)


def _said(dut, text: str) -> list[str]:
    return [line for line in dut.session.proc.lines if text in line]


@pytest_twisted.ensureDeferred
async def test_network_keys_reboot_the_phone_and_the_driver_waits_for_setup_autop_finish(make_lab):
    lab, dut = make_lab(phone="emulate", keep=True)
    await lab.up(Address("fallback"))
    assert len(_said(dut, "rebooting")) == 1, "its first file (static DNS) rebooted the phone at power-on"
    assert list(dut.session.power_on)[-1] == "setup_autop_finish"
    await dut.wait_registered(account=1, timeout=30)
    # the same network keys: no reboot
    mark = len(dut.session.power_on)
    await dut.start()
    assert len(_said(dut, "rebooting")) == 1 and len(dut.session.power_on) == mark
    # another DNS server: the phone reboots; start() returns once it reported setup_autop_finish
    lab2, dut2 = make_lab(phone="emulate", keep=True)
    dut2.session = dut.session
    cfg = lab.topology.cfg_text.replace("static.network.primary_dns = 127.0.0.53",
                                        "static.network.primary_dns = 127.0.0.54")
    await dut2.apply_config(cfg)
    await dut2.start()
    assert len(_said(dut, "rebooting")) == 2
    assert list(dut.session.power_on)[mark:] == ["setup_completed", "setup_autop_finish"]
    await dut2.wait_registered(account=1, timeout=30)  # (the fallback server is an IP literal: no DNS needed)


@pytest_twisted.ensureDeferred
async def test_a_reboot_without_its_report_names_the_callback(make_lab):
    lab, dut = make_lab(phone="emulate", keep=True, reboot_timeout=1.0,
                        emulation_args=("--emulate-fault", "no-setup-events"), provision_timeout=5.0)
    with pytest.raises(VendorLabProblem) as e:
        await lab.up(Address("fallback"))
    assert "did not report action URL setup_autop_finish within 1 s" in str(e.value)
    assert "action_url.setup_autop_finish = http://127.0.0.1:" in e.value.fix and "--reboot-timeout" in e.value.fix


@pytest_twisted.ensureDeferred
async def test_an_unchanged_file_is_skipped_so_the_driver_never_sends_one(make_lab):
    from tests.vendor_helpers import get

    lab, dut = make_lab(phone="emulate", keep=True)
    await lab.up(Address("fallback"))
    await dut.wait_registered(account=1, timeout=30)
    said = dut.session.proc.next_line("provisioned from")
    await dut.start()  # the same scenario again: a new serial line, so a new MD5
    assert await deadline(reactor, said, 10) and "unchanged" not in said.result, said.result
    # the phone itself: the same file fetched twice is skipped the second time (AutoP by hand)
    base = dut.session.client.base
    login = "p=login&q=login&username=admin&pwd=admin&jumpto=servlet"
    said = dut.session.proc.next_line("unchanged (MD5")
    assert (await get(f"{base}/servlet?{login}&key=AutoP", user=None))[0] == 200
    assert await deadline(reactor, said, 10), "the same file again was not skipped"


@pytest_twisted.ensureDeferred
async def test_dhcps_dns_unless_the_file_enables_static_dns(make_lab, tls_pki):
    office = None
    from sipharness.fakes.dns import FakeDNS, Zone

    for fault, asked in ((("--emulate-fault", "dhcp-dns"), "office"), ((), "lab")):
        lab, dut = make_lab(phone="emulate")
        office = FakeDNS([Zone.from_text(lab.soa("example.com"))], clock=lab.clock, recorder=lab.recorder,
                         host="127.0.0.54", port=0, name="office", reactor=reactor)
        office.start()
        dut.emulation_args += ("--dhcp-dns", f"{office.address[0]}:{office.address[1]}", *fault)
        try:
            await lab.up(Domain(("primary",)))
            if asked == "lab":
                await dut.wait_registered(account=1, timeout=30)
            else:
                await lab.recorder.wait_for(lambda r: r.kind == "dns" and r.server == "office", 30)
            by = {r.server for r in lab.recorder.dns(direction="in") if r.name.endswith("pbx.example.com")}
            assert by == ({"dns"} if asked == "lab" else {"office"}), (fault, by)
        finally:
            await lab.down()
            await office.stop()


@pytest.mark.parametrize("fault", [False, True], ids=["driver-turns-it-off", "cache-on"])
@pytest_twisted.ensureDeferred
async def test_the_dns_cache_answers_the_next_tests_names_unless_turned_off(make_lab, fault):
    """Two tests, one phone: the same names on new ports. With the vendor's default cache the second test meets
    the first one's SRV answer; the driver's account.X.dns_cache_type = 0 makes the phone ask again."""
    args = ("--emulate-fault", "dns-cache") if fault else ()
    lab1, dut1 = make_lab(phone="emulate", keep=True, emulation_args=args)
    await lab1.up(Domain(("primary", "secondary")))
    await dut1.wait_registered(account=1, timeout=30)
    await lab1.down()
    lab2, dut2 = make_lab(phone="emulate", keep=True, emulation_args=args)
    await lab2.up(Domain(("primary", "secondary")))
    if fault:
        await lab2.at(lab2.now() + 10)
        assert not [r for r in lab2.recorder.dns(direction="in") if r.qtype == "SRV"], "a cached answer was asked again"
        assert not lab2.recorder.sip(server="primary", direction="in"), "the phone found the new port without asking"
    else:
        await dut2.wait_registered(account=1, timeout=30)
        assert [r for r in lab2.recorder.dns(direction="in") if r.qtype == "SRV"]
        assert lab2.recorder.sip(server="primary", direction="in")


@pytest_twisted.ensureDeferred
async def test_the_remote_control_prompt_is_named_when_its_key_is_withheld(make_lab):
    lab, dut = make_lab(phone="emulate", provision_timeout=2.0,
                        emulation_args=("--emulate-fault", "remote-control-prompt"))
    with pytest.raises(VendorLabProblem) as e:
        await lab.up(Address("fallback"))
    assert "did not act on key=AutoP" in e.value.problem and "'Allow remote control?'" in e.value.problem
    assert "press OK on the phone" in e.value.fix and "features.show_action_uri_option = 0" in e.value.fix
    assert _said(dut, "not carried out: the screen shows 'Allow remote control?'")


@pytest.mark.parametrize("firmware", ["71", "8x"])
@pytest_twisted.ensureDeferred
async def test_each_generation_registers_over_tls_with_the_ca_from_its_url(make_lab, firmware):
    lab, dut = make_lab(phone="emulate", firmware=firmware)
    await lab.up(Address("fallback"), transport="tls")
    await dut.wait_registered(account=1, timeout=30)
    tls = [r for r in lab.recorder.sip(method="REGISTER", direction="in") if r.transport == "tls"]
    assert tls, "no REGISTER over TLS: the phone did not read its generation's transport key"
    assert _said(dut, "trusted certificate from")


@pytest_twisted.ensureDeferred
async def test_a_lab_phones_first_file_may_reboot_it_and_the_driver_waits(tls_pki):
    """A phone the harness did not power on (a lab phone: the emulation driven by its address, on the real clock):
    the session's first file brings network keys, so the driver watches it; it reboots and the driver waits for its
    setup_autop_finish before it calls the phone ready. Then the lab's DNS port is named: a lab phone asks port 53."""
    from sipharness.fakes.record import Recorder
    from sipharness.harness.emulated import spawn_emulated
    from sipharness.harness.lab import Lab
    from sipharness.harness.vendor import VendorPhone
    from sipharness.harness.vendor_session import close_sessions
    from sipharness.sipcore.clock import ScaledClock
    from tests.conftest import free_port

    prov_port, http_port = free_port(), free_port()
    clock = ScaledClock(reactor, 1.0)
    dut = VendorPhone(clock, reactor=reactor, phone=f"127.0.0.1:{http_port}", provision_port=prov_port,
                      ca_pem=tls_pki.ca_pem, keep=True)
    lab = Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki)
    proc = None
    try:
        await dut.apply_config(lab.write_cfg(None, {"enable": 1, "user_name": "1234", "sip_server.1.address": "127.0.0.15"}))
        # what the lab sets by hand before a run (docs/lab.md): no remote-control prompt
        dut.session.serve("#!version:1.0.0.1\nfeatures.show_action_uri_option = 0\n")
        proc = await spawn_emulated(reactor, ["--provision", f"http://127.0.0.1:{prov_port}/", "--mac", dut.mac,
                                              "--http", f"127.0.0.1:{http_port}", "--action-uri-allow", "127.0.0.1",
                                              "--reboot-seconds", "2", "--exit-on-eof", "--name", "lab-phone"])
        booted = proc.next_line("auto provisioning via power on finished")
        assert await deadline(reactor, booted, 10), "the lab phone did not finish its power-on (an empty file)"
        with pytest.raises(VendorLabProblem) as e:
            await lab.up(Address("fallback"))
        assert "a lab phone asks DNS on port 53" in str(e.value) and "--lab-address" in e.value.fix
        assert any("rebooting" in line for line in proc.lines)
        assert list(dut.session.power_on)[-2:] == ["setup_completed", "setup_autop_finish"]
        assert dut.session.network is not None  # known now: the next file with the same keys is not watched
    finally:
        await lab.down()
        await close_sessions()
        if proc is not None:
            await proc.reap(reactor)
