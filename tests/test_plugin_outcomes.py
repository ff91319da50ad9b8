"""The four outcomes as a user of the plugin sees them (SPEC §10): pytest's summary line, the exit status,
--junitxml, and the rule that a test whose fakes saw an error is a harness error, never a finding.

Each test runs pytest in a subprocess (pytester) on a small test module against the bundled phone.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sipharness.fakes.sip.script import Script
from tests.user_project import INI

pytest_plugins = ["pytester"]


# Appends an exception to a fake's (or the recorder's) errors list, as a fake does when it hits one
# while serving (the list exists once the fakes keep their serving errors; made here otherwise).
CONFTEST = '''
def break_fake(fake, exc):
    errors = getattr(fake, "errors", None)
    if errors is None:
        fake.errors = errors = []
    try:
        raise exc
    except BaseException as e:
        e.add_note(f"fake {getattr(fake, 'name', type(fake).__name__)!r}: injected by the test's conftest")
        errors.append(e)
'''

HEAD = '''
import pytest
import pytest_twisted

from sipharness.harness.lab import Address
from sipharness.harness.report import HarnessError, LabProblem
from conftest import break_fake
'''

FOUR = HEAD + '''

@pytest_twisted.ensureDeferred
async def test_pass(lab):
    await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=30)


@pytest.mark.scenario("REG-FO")
@pytest_twisted.ensureDeferred
async def test_finding(lab):
    await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=2, timeout=30)  # account 2 is not configured: a wait that runs out


@pytest_twisted.ensureDeferred
async def test_lab_problem(lab):
    raise LabProblem("the phone is not on the lab network", "plug it in")


@pytest_twisted.ensureDeferred
async def test_harness_error(lab):
    await lab.up(Address("fallback"))
    raise RuntimeError("a bug in the harness")
'''


def _run(pytester, source: str, *args: str):
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_outcomes=source)
    return pytester.runpytest_subprocess(*args)


def test_four_outcomes_in_the_summary_line_exit_status_and_junit(pytester):
    result = _run(pytester, FOUR, "--junitxml=junit.xml")
    # "lab problem" is two words: pytester's parser keeps the first
    assert result.parseoutcomes() == {"passed": 1, "finding": 1, "lab": 1, "errors": 1}
    assert result.ret == 70  # a harness error outranks the lab problem (78) and the finding (1)
    out = result.stdout.str()
    assert "sipharness outcomes: 1 pass, 1 finding, 1 lab problem, 1 harness error" in out
    assert "LAB PROBLEMS (fix the lab, not the phone)" in out
    assert "test_lab_problem: the phone is not on the lab network: plug it in" in out
    assert "FINDINGS (rules the phone broke)" in out and "SIP/DNS ladder" in out
    result.stdout.fnmatch_lines(["*ERROR at call of test_harness_error*", "*RuntimeError: a bug in the harness*"])
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    props = {n: {p.get("name"): p.get("value") for p in c.iter("property")} for n, c in cases.items()}
    assert props["test_pass"]["sipharness.outcome"] == "pass"
    assert props["test_finding"]["sipharness.outcome"] == "finding"
    assert props["test_finding"]["sipharness.rule"] == "REG-FO"
    assert "wait" in props["test_finding"]["sipharness.detail"]
    assert cases["test_finding"].find("failure").get("type") == "sipharness.finding"
    assert cases["test_lab_problem"].find("error").get("type") == "sipharness.lab_problem"
    assert cases["test_harness_error"].find("failure") is None
    assert cases["test_harness_error"].find("error").get("type") == "sipharness.harness_error"


def test_lab_problem_outranks_findings_and_report_mode_keeps_findings_from_failing(pytester):
    result = _run(pytester, FOUR, "-k", "finding or lab_problem")
    assert result.ret == 78
    result = _run(pytester, FOUR, "-k", "finding or pass")
    assert result.ret == 1
    result = _run(pytester, FOUR, "-k", "finding or pass", "--report-mode")
    assert result.ret == 0 and result.parseoutcomes() == {"passed": 1, "finding": 1, "deselected": 2}
    assert "REG-FO: test_outcomes.py::test_finding: " in result.stdout.str()


FAKE_ERRORS = HEAD + '''

@pytest_twisted.ensureDeferred
async def test_fake_error_in_a_test_that_passed(lab):
    topo = await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=30)
    break_fake(topo["fallback"], KeyError("Via"))


@pytest_twisted.ensureDeferred
async def test_fake_error_and_a_wait_that_ran_out(lab):
    topo = await lab.up(Address("fallback"), start=False)
    topo["fallback"].script.silent()
    break_fake(lab.recorder, ValueError("the registrar crashed"))
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=30)  # never: a finding, were it not for the fake's error


@pytest_twisted.ensureDeferred
async def test_fake_dns_error_without_a_dut(fake_dns):
    break_fake(fake_dns, OSError("sendto failed"))
'''


def test_serving_errors_are_harness_errors_never_findings(pytester):
    result = _run(pytester, FAKE_ERRORS, "--report-mode")  # (where a finding would not even fail the run)
    assert result.parseoutcomes() == {"errors": 3}
    assert result.ret == 70
    out = result.stdout.str()
    assert "sipharness outcomes: 0 pass, 0 findings, 0 lab problems, 3 harness errors" in out
    # the test that passed: failed with the fake's error, its traceback and its note
    assert "the fakes hit 1 error while serving (a harness error, not a finding)" in out
    assert "KeyError: 'Via'" in out and "fake 'fallback': injected by the test's conftest" in out
    # the wait that ran out: its WaitTimeout is shown with the fake's error beside it, and the ladder
    assert "errors the fakes hit while serving (this test is a harness error, not a finding)" in out
    assert "ValueError: the registrar crashed" in out


@pytest.mark.skipif(not hasattr(Script, "handle"), reason="fakes without script.handle (H2a's branch)")
def test_a_scripted_action_that_raises_is_a_harness_error_not_a_finding(pytester):
    source = HEAD + '''

@pytest_twisted.ensureDeferred
async def test_scripted_action_raises(lab):
    topo = await lab.up(Address("fallback"), start=False)

    def boom(request):
        raise RuntimeError("scripted action failed")

    topo["fallback"].script.handle("REGISTER", boom)
    await lab.dut.start()
    await lab.dut.wait_registered(account=1, timeout=30)
'''
    result = _run(pytester, source, "--report-mode")
    assert result.parseoutcomes() == {"errors": 1}
    assert result.ret == 70
    assert "RuntimeError: scripted action failed" in result.stdout.str()


def test_assertion_in_a_test_without_a_dut_is_a_plain_failure(pytester):
    source = HEAD + '''

@pytest_twisted.ensureDeferred
async def test_fake_only(sip_server):
    srv = await sip_server("primary", "udp")
    assert srv.addresses["udp"][1] == 0, "a test of the fakes themselves"
'''
    result = _run(pytester, source)
    result.assert_outcomes(failed=1)
    assert result.ret == 1 and "sipharness outcomes" not in result.stdout.str()


EXACT = '''
import pytest


@pytest.mark.exact_time
def test_needs_exact_time(dut):
    assert dut.exact_time
'''


def test_exact_time_marker_skips_unless_the_dut_is_on_the_virtual_clock(pytester):
    result = _run(pytester, EXACT)
    result.assert_outcomes(passed=1)
    result = _run(pytester, EXACT, "--clock", "scaled:20", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs exact phone time*this run drives a bundled DUT on a scaled:20 clock*"])


# ---------------------------------------------------------------------------------------------- a busy box
STALL = HEAD + '''
import time

from twisted.internet import reactor, task

from sipharness.harness.assertions import expect_gaps


async def _a_check_one_second_off(lab, stall: float):
    await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=30)
    await task.deferLater(reactor, 0.2, lambda: None)  # (past the lab's start: its own stalls are long over)
    t0 = lab.clock.seconds()
    time.sleep(stall)  # the stimulus, not a wait: the harness's own reactor blocked (a box too busy to run it)
    await task.deferLater(reactor, 0.05, lambda: None)  # (running again: the meter sees how late it is)
    # a check comparing phone times around t0 (5 ms of wall time either side) that fails
    expect_gaps([t0 - 0.1, t0 + 0.1], 2.0, tolerance=lab.tolerance, what="two probes")


@pytest.mark.scenario("REG-FO")
@pytest_twisted.ensureDeferred
async def test_timing_while_the_harness_ran(lab):
    await _a_check_one_second_off(lab, 0.0)


@pytest.mark.scenario("REG-FO")
@pytest_twisted.ensureDeferred
async def test_timing_while_the_harness_stalled(lab):
    await _a_check_one_second_off(lab, 0.25)
'''


def test_a_timing_mismatch_while_the_harness_stalled_is_a_lab_problem_not_a_finding(pytester):
    """SPEC §9/§10: on a scaled clock the fakes' stamps are only as punctual as the harness's reactor; a phone
    time off by more than the tolerance inside a stall of that reactor longer than the clock's slack (20 ms of
    wall time) says nothing about the phone."""
    result = _run(pytester, STALL, "--clock", "scaled:20", "-p", "no:randomly")
    assert result.parseoutcomes() == {"finding": 1, "lab": 1}, result.stdout.str()[-3000:]
    assert result.ret == 78
    out = result.stdout.str()
    assert "REG-FO: test_outcomes.py::test_timing_while_the_harness_ran: expected two probes every 2 s" in out
    assert "test_outcomes.py::test_timing_while_the_harness_stalled: the harness could not time the phone: its own " \
           "reactor ran" in out  # (the lab problems' list shows the verdict, not the check's assertion)
    assert "where the scaled clock allows 20 ms of wall time" in out and "--clock scaled:5" in out
    # on the virtual clock there is no stall to speak of (phone time stands still while the harness works)
    result = _run(pytester, STALL, "-p", "no:randomly")
    assert result.parseoutcomes() == {"finding": 2}, result.stdout.str()[-3000:]
