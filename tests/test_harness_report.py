"""harness/report.py on its own (no pytest in it): the four outcomes (SPEC §10), the exit status and its
precedence, the summary line, the HTML index, and the JUnit XML rewrite."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from sipharness.harness.report import (EXIT_FINDINGS, EXIT_HARNESS_ERROR, EXIT_LAB_PROBLEM, EXIT_OK, HarnessError,
                                       LabProblem, Outcome, Tally, TestResult, annotate_junit, classify, exit_status,
                                       index_html, ladder_file_name, serving_failure, with_banner, worst)
from sipharness.sipcore.journal import WaitTimeout


def test_classify_the_four_outcomes():
    timeout = WaitTimeout("REGISTER to secondary", 30, 37.5, 4, 0)
    assert classify(None) is Outcome.PASS
    assert classify(AssertionError("expected 4 REGISTER sends")) is Outcome.FINDING
    assert classify(timeout) is Outcome.FINDING  # a wait that ran out: the phone did not do it
    assert classify(LabProblem("the phone never queried our DNS", "set static DNS")) is Outcome.LAB_PROBLEM
    assert classify(HarnessError("the fake crashed")) is Outcome.HARNESS_ERROR
    assert classify(RuntimeError("a bug in a fixture")) is Outcome.HARNESS_ERROR
    assert classify(OSError("cannot bind")) is Outcome.HARNESS_ERROR


def test_a_test_whose_fakes_saw_an_error_is_never_a_finding():
    crash = KeyError("Via")
    assert classify(WaitTimeout("registered", 30, 30.0, 0, 0), [crash]) is Outcome.HARNESS_ERROR
    assert classify(None, [crash]) is Outcome.HARNESS_ERROR  # a test that passed anyway
    assert classify(LabProblem("x", "y"), [crash]) is Outcome.HARNESS_ERROR


def test_without_a_dut_an_assertion_is_a_plain_failure_but_explicit_types_keep_their_outcome():
    assert classify(AssertionError("x"), dut_involved=False) is None
    assert classify(RuntimeError("x"), dut_involved=False) is None
    assert classify(LabProblem("x"), dut_involved=False) is Outcome.LAB_PROBLEM
    assert classify(HarnessError("x"), dut_involved=False) is Outcome.HARNESS_ERROR
    assert classify(None, [KeyError("x")], dut_involved=False) is Outcome.HARNESS_ERROR


def test_finding_types_are_the_runners_to_add():
    class Failed(BaseException):
        pass

    assert classify(Failed(), finding_types=(AssertionError, Failed)) is Outcome.FINDING
    assert classify(Failed()) is Outcome.HARNESS_ERROR


def test_lab_problem_reads_problem_then_fix_then_evidence():
    e = LabProblem("the phone never queried 127.0.0.53:53 within 30 s", "set static DNS on the phone to 127.0.0.53",
                   step="dns", evidence="the fake DNS saw no query at all")
    assert str(e) == ("the phone never queried 127.0.0.53:53 within 30 s: set static DNS on the phone to 127.0.0.53\n"
                      "the fake DNS saw no query at all")
    assert (e.fix, e.step) == ("set static DNS on the phone to 127.0.0.53", "dns")


def _tally(**counts) -> Tally:
    results = []
    for outcome in Outcome:
        results += [TestResult(f"t{outcome.name}{i}", outcome) for i in range(counts.get(outcome.name.lower(), 0))]
    results += [TestResult(f"u{i}", Outcome.FINDING, counted=False) for i in range(counts.get("uncounted", 0))]
    results += [TestResult(f"p{i}", None, failed=True) for i in range(counts.get("plain", 0))]
    results += [TestResult(f"s{i}", None, skipped=True) for i in range(counts.get("skipped", 0))]
    return Tally.of(results)


def test_exit_status_precedence_harness_error_then_lab_problem_then_findings():
    assert exit_status(_tally(**{"pass": 3, "skipped": 2}), 0) == EXIT_OK
    assert exit_status(_tally(finding=1), 1) == EXIT_FINDINGS
    assert exit_status(_tally(uncounted=5), 1) == EXIT_OK  # report mode: findings do not fail the run
    assert exit_status(_tally(plain=1), 1) == EXIT_FINDINGS  # a test of the harness's own failed
    assert exit_status(_tally(finding=2, lab_problem=1), 1) == EXIT_LAB_PROBLEM == 78
    assert exit_status(_tally(finding=2, lab_problem=1, harness_error=1), 1) == EXIT_HARNESS_ERROR == 70


def test_pytest_own_statuses_stay():
    assert exit_status(_tally(harness_error=1), 4) == 4  # usage error
    assert exit_status(_tally(), 5) == 5  # no tests collected
    assert exit_status(_tally(finding=1), 2) == 2  # interrupted by the user
    assert exit_status(_tally(lab_problem=1), 2) == EXIT_LAB_PROBLEM  # the preflight stopped the run
    assert exit_status(_tally(), 2, stopped_by_preflight=True) == EXIT_OK


def test_worst_and_the_summary_line():
    assert worst(None, Outcome.PASS, Outcome.FINDING) is Outcome.FINDING
    assert worst(Outcome.HARNESS_ERROR, Outcome.LAB_PROBLEM) is Outcome.HARNESS_ERROR
    assert worst() is None
    assert _tally(**{"pass": 57, "finding": 1, "uncounted": 1, "harness_error": 1}).line() == \
        "57 pass, 2 findings (1 counted), 0 lab problems, 1 harness error"
    assert _tally(finding=1).line() == "0 pass, 1 finding, 0 lab problems, 0 harness errors"


def test_serving_failure_keeps_each_error_with_its_note_and_traceback():
    try:
        raise KeyError("Via")
    except KeyError as e:
        e.add_note("fake SIP server 'primary' udp 127.0.0.10:5060: REGISTER from 127.0.0.1:5062")
        first = e
    err = serving_failure([first])
    assert isinstance(err, HarnessError) and err.__cause__ is first and first.__traceback__ is not None
    assert "the fakes hit 1 error while serving (a harness error, not a finding)" in str(err)
    assert "KeyError: 'Via'" in str(err) and "REGISTER from 127.0.0.1:5062" in str(err)
    two = serving_failure([first, ValueError("bad zone")])
    assert isinstance(two.__cause__, BaseExceptionGroup) and len(two.__cause__.exceptions) == 2


def test_index_and_banner_pages():
    results = [TestResult("suites/t.py::test_a[udp]", Outcome.PASS, duration=1.5, phone_time=7.5),
               TestResult("suites/t.py::test_b", Outcome.FINDING, rule="FBK-3", detail="left the <secondary>"),
               TestResult("suites/t.py::test_c", Outcome.LAB_PROBLEM, detail="the phone never queried"),
               TestResult("suites/t.py::test_d", None, skipped=True, detail="needs port 5060")]
    page = index_html(results, title="run", pages={ladder_file_name("suites/t.py::test_a[udp]")})
    for count in ("1 pass", "1 finding", "1 lab problem", "0 harness errors", "1 skipped"):
        assert f"<li>{count}</li>" in page
    assert 'href="suites_t.py_test_a_udp_.html"' in page and page.count("href=") == 1  # only pages that exist
    assert "left the &lt;secondary&gt;" in page and "7.500" in page
    banner = with_banner("<html><body><svg/></body></html>", "finding", "AssertionError: x < y")
    assert banner.index("FINDING") < banner.index("<svg/>") and "x &lt; y" in banner


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="3"
skipped="0" tests="4"><testcase classname="t" name="finding"><properties><property name="sipharness.outcome"
value="finding"/><property name="sipharness.rule" value="REG-FO"/></properties><failure message="x">tb</failure>
</testcase><testcase classname="t" name="lab"><properties><property name="sipharness.outcome" value="lab problem"/>
</properties><error message="y">tb</error></testcase><testcase classname="t" name="harness"><properties><property
name="sipharness.outcome" value="finding"/><property name="sipharness.outcome" value="harness error"/></properties>
<failure message="z">call</failure><error message="t">teardown</error></testcase><testcase classname="t" name="ok">
<properties><property name="sipharness.outcome" value="pass"/></properties></testcase></testsuite></testsuites>"""


def test_junit_status_says_the_outcome(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT, encoding="utf-8")
    annotate_junit(str(path))
    suite = ET.parse(path).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["finding"].find("failure").get("type") == "sipharness.finding"
    lab = cases["lab"].find("error")
    assert lab.get("type") == "sipharness.lab_problem"
    harness = cases["harness"]
    assert harness.find("failure") is None and len(harness.findall("error")) == 1
    assert harness.find("error").get("type") == "sipharness.harness_error"
    assert "call" in harness.find("error").text and "teardown" in harness.find("error").text
    assert [p.get("value") for p in harness.iter("property")] == ["harness error"]  # one outcome per testcase
    assert cases["ok"].find("failure") is None and cases["ok"].find("error") is None
    assert (suite.get("failures"), suite.get("errors")) == ("1", "2")


@pytest.mark.parametrize("nodeid", ["suites/test_x.py::test_y[1-tls]", "a/b.py::C::test_" + "z" * 300])
def test_ladder_file_names_are_safe_and_bounded(nodeid):
    name = ladder_file_name(nodeid)
    assert name.endswith(".html") and "/" not in name and "[" not in name and len(name) <= 185
