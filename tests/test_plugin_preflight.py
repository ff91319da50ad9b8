"""The lab preflight (SPEC §10) against the emulated vendor phone told to misbehave (``--emulate-fault``):
a broken lab ends the run at once as a *lab problem* (exit 78) with zero findings, and the message names
the fix (every fault's message: tests/test_harness_preflight.py, in process); a working lab passes it;
also under ``-n 2``. Plus: a failure of the preflight
that is not the lab's is a harness error (70), and the driver's provisioning server raising while
serving makes the test a harness error, not a finding.

Each test runs pytest in a subprocess (pytester): ``--dut yealink --phone-ip emulate --clock scaled:20``
with short deadlines, so a failing step costs a few seconds.
"""

from __future__ import annotations

import pytest

from tests.user_project import INI

pytest_plugins = ["pytester"]

TESTS = '''
import pytest
import pytest_twisted

from sipharness.harness.lab import Address


@pytest_twisted.ensureDeferred
async def test_register(lab):
    await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=60)


@pytest.mark.tls
@pytest_twisted.ensureDeferred
async def test_register_over_tls(lab):
    await lab.up(Address("fallback"), transport="tls")
    await lab.dut.wait_registered(account=1, timeout=60)
'''

VENDOR = ("--dut", "yealink", "--phone-ip", "emulate", "--clock", "scaled:20", "--preflight-timeout", "3",
          "--provision-timeout", "3", "--reboot-timeout", "5")


def _run(pytester, *args: str, source: str = TESTS):
    pytester.makeini(INI)
    pytester.makepyfile(test_lab=source)
    return pytester.runpytest_subprocess(*VENDOR, *args)


def _outcomes_line(result) -> str:
    return next(line for line in result.outlines if line.startswith("sipharness outcomes:"))


@pytest.mark.parametrize("fault, tls, step, fix", [
    # (every fault, run in this process: tests/test_harness_preflight.py; here, the run they end)
    pytest.param("never-register", False, "3/5 'register'",
                 "the file says account.1.enable = 1, account.1.sip_server.1.address", id="never-register"),
    pytest.param("refuse-ca", True, "6/6 'tls'", "the file sets static.trusted_certificates.url = http://127.0.0.1:",
                 id="refuse-ca"),
])
def test_broken_lab_ends_the_run_as_a_lab_problem_naming_the_fix(pytester, fault, tls, step, fix):
    result = _run(pytester, "--emulate-fault", fault, *(() if tls else ("-k", "not tls")))
    assert result.ret == 78, result.stdout.str()[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes["lab"] == 1 and "finding" not in outcomes and "passed" not in outcomes, outcomes
    assert _outcomes_line(result).startswith("sipharness outcomes: 0 pass, 0 findings, 1 lab problem, 0 harness")
    out = result.stdout.str()
    assert f"lab preflight, step {step}" in out and fix in out
    assert "Interrupted: lab problem: the lab preflight failed" in out  # the run ended at once


def test_dns_fix_names_our_dns_and_the_keys(pytester):
    result = _run(pytester, "--emulate-fault", "ignore-dns", "-k", "not tls")
    line = next(line for line in result.outlines if "lab preflight, step 4/5 'dns'" in line)
    assert "the phone never queried 127.0.0.53:" in line and " within 3 s: set static DNS on the phone to " in line
    assert "static.network.static_dns_enable = 1 and static.network.primary_dns" in line
    assert ".preflight.sipharness.test" in line and "a lab phone asks port 53 only" in line
    assert "the fake DNS saw no query at all" in result.stdout.str()


def test_a_working_lab_passes_the_preflight_and_runs_the_tests(pytester):
    result = _run(pytester)
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["sipharness: lab preflight passed: control channel: *; configuration: fetched; "
                                 "register: account 1 registered with 127.0.0.10:*; dns: the phone asked 127.0.0.53:*"
                                 "; dns cache: after _sip._udp.pf-*.preflight.sipharness.test moved to port *, the "
                                 "phone asked again and registered there; tls: handshake with 127.0.0.10:*; "
                                 "6 steps in *"])


def test_a_broken_lab_under_xdist_is_a_lab_problem_with_zero_findings(pytester):
    result = _run(pytester, "--emulate-fault", "never-register", "-n", "2")
    assert result.ret == 78, result.stdout.str()[-3000:]
    outcomes = result.parseoutcomes()
    assert 1 <= outcomes["lab"] <= 2 and "finding" not in outcomes and "passed" not in outcomes, outcomes
    assert " 0 findings, " in _outcomes_line(result)


def test_a_preflight_that_fails_for_the_harness_is_a_harness_error(pytester):
    result = _run(pytester, "--emulate-fault", "no-such-fault", "-k", "not tls")
    assert result.ret == 70, result.stdout.str()[-3000:]
    assert result.parseoutcomes()["errors"] == 1
    out = result.stdout.str()
    assert "harness error in the lab preflight" in out and "step 'start the emulated phone'" in out
    assert "invalid choice: 'no-such-fault'" in out


PROVISIONING_RAISES = '''
import pytest_twisted

from sipharness.harness.lab import Address


@pytest_twisted.ensureDeferred
async def test_callback_handler_raises(lab):
    topo = await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=60)

    prov = lab.dut.session.prov
    working = prov.on_callback

    def broken(event, params, client):  # a bug in the driver's Action URL handling, once
        prov.on_callback = working
        raise KeyError(event)

    prov.on_callback = broken
    mark = len(lab.dut.events)
    lab.dut.call(topo.uri("2000"))
    await lab.dut.wait_for("call_state", 60, state="established", since=mark)
'''


def test_the_provisioning_server_raising_is_a_harness_error_not_a_finding(pytester):
    result = _run(pytester, "--report-mode", source=PROVISIONING_RAISES)
    assert result.ret == 70, result.stdout.str()[-3000:]
    assert result.parseoutcomes() == {"errors": 1}
    out = result.stdout.str()
    assert "the harness's provisioning server failed while serving" in out
    assert "provisioning server http://127.0.0.1:" in out and "GET /action/outgoing_call?" in out  # the PEP 678 note
