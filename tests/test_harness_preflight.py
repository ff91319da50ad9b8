"""harness/preflight.py driven directly (no pytest in it): the steps, their order and their messages, with
the bundled phone made to misbehave in this process (fast), and with a real baresip (its control channel,
its DNS, a TLS handshake with our CA). The emulated vendor phone's faults are proven through the plugin
in tests/test_plugin_preflight.py."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from sipharness.fakes.record import Recorder
from sipharness.harness.baresip import BaresipPhone
from sipharness.harness.dut import BundledPhone
from sipharness.harness.lab import Lab
from sipharness.harness.preflight import PREFLIGHT_ZONE, run_preflight
from sipharness.harness.report import LabProblem, Outcome, classify
from sipharness.sipcore.clock import ScaledClock


class _NoDNS(BundledPhone):
    """A phone that keeps its own DNS server (none): the file's static DNS is ignored."""

    def apply_config(self, cfg_text):
        return super().apply_config("\n".join(line for line in cfg_text.splitlines() if "primary_dns" not in line))


class _Mute(BundledPhone):
    """A phone whose events never reach the harness (as a vendor phone whose Action URLs are blocked)."""

    def _forward(self, e):
        pass


class _Refusing(BundledPhone):
    """A phone that does not trust our CA."""

    def __init__(self, clock, **kw):
        from twisted.internet import ssl

        super().__init__(clock, **kw, tls_context=ssl.optionsForClientTLS("127.0.0.1"))


def _lab(dut_class, tls_pki, speed=20.0, **kw):
    clock = ScaledClock(reactor, speed)
    dut = dut_class(clock, reactor=reactor, **kw)
    return Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki)


@pytest_twisted.ensureDeferred
async def test_a_phone_that_does_everything_passes_every_step(tls_pki):
    lab = _lab(BundledPhone, tls_pki, tls_context=tls_pki.client_context())
    lines = await run_preflight(lab, timeout=5, tls=True, reactor=reactor)
    assert [line.split(":")[0] for line in lines[:5]] == ["control channel", "configuration", "register", "dns", "tls"]
    assert lines[-1].startswith("5 steps in ")
    assert f".{PREFLIGHT_ZONE} (SRV)" in lines[3]
    assert not lab.fakes, "the preflight stops what it built"


@pytest_twisted.ensureDeferred
async def test_a_phone_that_ignores_our_dns_fails_the_dns_step(tls_pki):
    lab = _lab(_NoDNS, tls_pki)
    with pytest.raises(LabProblem) as e:
        await run_preflight(lab, timeout=2, reactor=reactor)
    assert e.value.step == "dns" and classify(e.value) is Outcome.LAB_PROBLEM
    assert str(e.value).startswith("lab preflight, step 4/4 'dns': the phone never queried 127.0.0.53:")
    assert "set static DNS on the phone to 127.0.0.53" in e.value.fix
    assert e.value.evidence == "the fake DNS saw no query at all"
    assert not lab.fakes


@pytest_twisted.ensureDeferred
async def test_registered_but_not_reported_names_the_event_channel(tls_pki):
    lab = _lab(_Mute, tls_pki)
    with pytest.raises(LabProblem) as e:
        await run_preflight(lab, timeout=2, reactor=reactor)
    assert e.value.step == "register"
    assert "accepted account 1's REGISTER" in e.value.problem and "did not report it within 2 s" in e.value.problem
    assert e.value.fix == "the phone's events must reach the harness"


@pytest_twisted.ensureDeferred
async def test_tls_step_only_when_asked_and_it_names_our_ca(tls_pki):
    assert (await run_preflight(_lab(_Refusing, tls_pki), timeout=2, reactor=reactor))[-1].startswith("4 steps")
    with pytest.raises(LabProblem) as e:
        await run_preflight(_lab(_Refusing, tls_pki), timeout=2, tls=True, reactor=reactor)
    assert e.value.step == "tls" and "step 5/5 'tls': the phone completed no TLS handshake" in str(e.value)
    assert f"install {tls_pki.ca_file} as a trusted CA certificate" in e.value.fix


@pytest_twisted.ensureDeferred
async def test_real_baresip_passes_the_preflight_with_tls(tls_pki, peer):
    lab = _lab(BaresipPhone, tls_pki, speed=1.0, program=peer("baresip"), ca_file=tls_pki.ca_file)
    lines = await run_preflight(lab, timeout=10, tls=True, reactor=reactor)
    assert lines[0].startswith("control channel: baresip pid ") and "answered 'reginfo' on ctrl_tcp" in lines[0]
    assert lines[4].startswith("tls: handshake with 127.0.0.10:")
    assert lab.dut.pid is None, "baresip is stopped after the preflight"


# ---------------------------------------------------------------------------------------------- the vendor phone
VENDOR_FAULTS = [
    ("dead-control", False, "1/5 'control channel'", "is --phone-ip right"),
    ("no-setup-events", False, "1/5 'control channel'", "did not report action URL setup_autop_finish within 2 s"),
    ("never-fetch", False, "2/5 'configuration'", "set its provisioning server URL to http://127.0.0.1:"),
    ("remote-control-prompt", False, "2/5 'configuration'", "'Allow remote control?': press OK on the phone"),
    ("never-register", False, "3/5 'register'", "the file says account.1.enable = 1, account.1.sip_server.1.address"),
    ("ignore-dns", False, "4/5 'dns'", "set static DNS on the phone to 127.0.0.53"),
    ("dhcp-dns", False, "4/5 'dns'", "the file sets static.network.static_dns_enable = 1"),
    ("dns-cache", False, "5/5 'dns cache'", "turn the phone's DNS cache off"),
    ("refuse-ca", True, "6/6 'tls'", "the file sets static.trusted_certificates.url = http://127.0.0.1:"),
    # the driver writes 8x names (static.network.*) to a firmware-71 phone, which ignores them
    ("firmware-71", False, "4/5 'dns'", "a firmware-71 phone ignores them: --firmware"),
]


@pytest.mark.parametrize("fault, tls, step, fix", VENDOR_FAULTS, ids=[f[0] for f in VENDOR_FAULTS])
@pytest_twisted.ensureDeferred
async def test_each_vendor_behaviour_withheld_is_a_lab_problem_naming_its_fix(tls_pki, fault, tls, step, fix):
    """The emulated vendor phone with one documented behaviour's key withheld (or broken another way): the
    preflight stops at the step that shows it, as a lab problem whose message names the fix, never a finding."""
    from sipharness.harness.vendor import VendorPhone
    from sipharness.harness.vendor_session import close_sessions

    clock = ScaledClock(reactor, 20.0)
    dut = VendorPhone(clock, reactor=reactor, phone="emulate", ca_pem=tls_pki.ca_pem, provision_timeout=2,
                      reboot_timeout=2, keep=True,
                      emulation_args=("--reboot-seconds", "0.2", *(("--firmware", "71") if fault == "firmware-71" else
                                                                    ("--emulate-fault", fault))))
    lab = Lab(clock, Recorder(clock), dut, reactor=reactor, tls=tls_pki)
    try:
        with pytest.raises(LabProblem) as e:
            await run_preflight(lab, timeout=2, tls=tls, reactor=reactor)
    finally:
        await close_sessions()
    assert classify(e.value) is Outcome.LAB_PROBLEM
    assert str(e.value).startswith(f"lab preflight, step {step}:"), str(e.value)
    assert fix in str(e.value), str(e.value)
    assert not lab.fakes and dut.pid is None
