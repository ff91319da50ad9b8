"""The plugin's verdicts: each test's outcome in pytest's reports, and the run's summary and exit status.

The pytest half of :mod:`harness.report` (which decides, knowing nothing of pytest); its hooks are
imported into :mod:`harness.plugin`, the one registered plugin. Per test, ``pytest_runtest_makereport`` classifies
each phase and writes the outcome into the reports' ``user_properties`` (``sipharness.outcome``,
``.rule``, ``.detail``, ``.counted``), where pytest-xdist and ``--junitxml`` carry it;
``pytest_report_teststatus`` names pytest's categories "finding", "lab problem" and "error"
(a harness error). Serving errors of the fakes make a test a harness error, never a finding.
Per run, :class:`RunReport` reads every report (also those xdist workers send to the controller),
sets the exit status, writes ``--ladder-dir``'s ``index.html``, rewrites the JUnit XML and prints
the summary: the findings with their ladders, the lab problems with their fixes, the counts.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from . import report as rep
from .report import LabProblem, Outcome, first_line
from .timing import TimingMismatch

if TYPE_CHECKING:
    from sipharness.fakes.record import Recorder

    from .dut import DeviceUnderTest
    from .lab import Lab
    from .lagmeter import LagMeter

__all__ = ["TestState", "state", "raise_unreported", "scenario_of", "RunReport", "RUN", "CLOCK"]

CLOCK = pytest.StashKey[str]()  # the --clock spec of the run
STATE = pytest.StashKey["TestState"]()
RUN = pytest.StashKey["RunReport"]()


# ---------------------------------------------------------------------------------------------- per test

@dataclass
class TestState:
    """What the plugin keeps per test (``item.stash``): the objects it reports on, the outcome so far."""

    __test__ = False  # not a pytest test class despite the name

    recorder: Recorder | None = None
    dut: DeviceUnderTest | None = None
    lab: Lab | None = None
    fakes: list[Any] = field(default_factory=list)  # every fake the test's fixtures made (FakeDNS, FakeSipServer)
    reported: set[int] = field(default_factory=set)  # ids of serving errors already in a report
    outcome: Outcome | None = None
    message: str = ""  # the failure message of the phase that decided the outcome (for the ladder page)
    skipped: bool = False
    lag: LagMeter | None = None  # on a scaled or real clock: how late the harness's reactor ran


def state(node: pytest.Item) -> TestState:
    st = node.stash.get(STATE, None)
    if st is None:
        st = node.stash[STATE] = TestState()
    return st


def _serving_errors(st: TestState) -> list[BaseException]:
    """Exceptions the fakes (and the DUT driver's own servers) hit while serving, each once."""
    sources = [st.recorder, *st.fakes, *(st.lab.fakes if st.lab is not None else ())]
    lists = [getattr(s, "errors", None) for s in sources]
    if st.dut is not None:
        lists.append(st.dut.serving_errors)
    out: list[BaseException] = []
    seen: set[int] = set()
    for errors in lists:
        for e in errors or ():
            if id(e) not in seen:
                seen.add(id(e))
                out.append(e)
    return out


def raise_unreported(node: pytest.Item) -> None:
    """At a fixture's teardown: serving errors no report has shown yet fail the test (as pytest-httpserver)."""
    st = state(node)
    new = [e for e in _serving_errors(st) if id(e) not in st.reported]
    if new:
        st.reported.update(id(e) for e in new)
        err = rep.serving_failure(new)
        raise err from err.__cause__


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report: pytest.TestReport = yield
    st = item.stash.get(STATE, None)
    exc = call.excinfo.value if call.excinfo is not None else None
    if exc is not None and report.failed:
        from .lab import LabTooSmall

        if isinstance(exc, LabTooSmall):  # a lab with too few addresses: the scenario cannot run here
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, f"Skipped: {exc}")
            return report
        from .dut import NotExpressible

        if isinstance(exc, NotExpressible):  # the phone was never asked: not expressible, never a finding
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, f"Skipped: {exc}")
            item.user_properties.append((rep.NOT_EXPRESSIBLE_PROPERTY, str(exc)))
            report.user_properties.append((rep.NOT_EXPRESSIBLE_PROPERTY, str(exc)))
            return report
    if report.skipped or hasattr(report, "wasxfail"):
        if st is not None and report.skipped:
            st.skipped = True
        return report
    if st is None and not isinstance(exc, (LabProblem, rep.HarnessError)):
        return report  # a test that used none of the harness's fixtures: pytest's own verdict
    st = st if st is not None else state(item)
    _judge(item, report, st, exc)
    if report.when == "teardown":
        _final(item, report, st)
    return report


def _judge(item: pytest.Item, report: pytest.TestReport, st: TestState, exc: BaseException | None) -> None:
    """Classify this phase (:func:`harness.report.classify`); the outcome goes into the user_properties."""
    if report.passed and report.when == "setup":
        return  # (serving errors of the setup are the call's to report)
    new = [e for e in _serving_errors(st) if id(e) not in st.reported]
    if report.passed and report.when == "teardown" and not new:
        return
    outcome = rep.classify(exc if report.failed else None, new, dut_involved=st.dut is not None,
                           finding_types=(AssertionError, pytest.fail.Exception))
    if outcome is None:
        return  # a plain failure of a test that drove no DUT: pytest's own verdict
    if outcome is Outcome.FINDING and isinstance(exc, TimingMismatch):
        stalled = _stalled(st, exc)
        if stalled is not None:  # the report says the lab problem; the check's own failure stays beside it
            outcome, exc, check = Outcome.LAB_PROBLEM, stalled, report.longreprtext
            try:
                raise stalled  # (a traceback for pytest's report of it)
            except LabProblem:
                pass
            report.longrepr = item.repr_failure(pytest.ExceptionInfo.from_exception(stalled))
            _section(report, "the timing check the harness could not judge (not a finding)", check)
    if new:
        st.reported.update(id(e) for e in new)
        exc = _attach_serving_errors(item, report, new)
    if rep.worst(st.outcome, outcome) is not st.outcome:
        st.outcome, st.message = outcome, str(exc or "")[:4000]
    rule = counted = None
    if outcome is Outcome.FINDING:
        marker = item.get_closest_marker("interp")
        rule = marker.args[0] if marker is not None and marker.args else scenario_of(item) or "rule"
        counted = not (item.config.getoption("sipharness_report_mode")
                       or (marker is not None and not st.dut.interp_binding))
    props = rep.outcome_properties(outcome, rep.first_line(exc, "error"), rule=rule, counted=counted)
    _set_props(item.user_properties, props)
    _set_props(report.user_properties, props)
    if report.failed:
        _add_ladder(report, st)


def _stalled(st: TestState, exc: TimingMismatch) -> LabProblem | None:
    """SPEC §10: a timing mismatch inside a stall of the harness's own reactor longer than the clock's slack
    is the lab's (the box was too busy to time the phone), not a finding."""
    floor = exc.tolerance.wall_floor
    stall = st.lag.worst_during(*exc.window, longer_than=floor) if st.lag is not None and floor > 0 else None
    if stall is None:
        return None
    return LabProblem(
        f"the harness could not time the phone: its own reactor ran {stall.late * 1000:.0f} ms late at "
        f"t = {stall.end:.3f} s, inside the phone times this check compares ({exc.window[0]:.3f} to "
        f"{exc.window[1]:.3f} s), where the {exc.tolerance.name} clock allows {floor * 1000:.0f} ms of wall "
        f"time (the check said: {first_line(exc)})",
        fix="run on a less loaded box: fewer pytest-xdist workers or phones per host, or a slower clock "
            "(e.g. --clock scaled:5)")


def scenario_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("scenario")
    return marker.args[0] if marker is not None and marker.args else None


def _set_props(props: list, new: list[tuple[str, Any]]) -> None:
    props[:] = [p for p in props if p[0] not in rep.VERDICT_PROPERTIES] + new


def _attach_serving_errors(item: pytest.Item, report: pytest.TestReport,
                           errors: list[BaseException]) -> rep.HarnessError:
    """A phase that passed fails with the serving errors (the traceback is the fake's); one that failed
    shows them beside its own failure. Either way the report says it is a harness error."""
    err = rep.serving_failure(errors)
    cause = err.__cause__
    if report.passed:
        if cause.__traceback__ is None:  # (an exception group made here: give it a traceback of its own)
            try:
                raise cause
            except BaseException:  # noqa: BLE001
                pass
        report.outcome = "failed"
        report.longrepr = item.repr_failure(pytest.ExceptionInfo.from_exception(cause))
        _section(report, "harness error", str(err))
        return err
    text = str(err) + "\n\n" + "".join(traceback.format_exception(cause))
    _section(report, "errors the fakes hit while serving (this test is a harness error, not a finding)", text)
    return err


def _section(report: pytest.TestReport, title: str, text: str) -> None:
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection(title, text)
    else:
        report.sections.append((title, text))


def _add_ladder(report: pytest.TestReport, st: TestState) -> None:
    if st.recorder is None or not len(st.recorder):
        return
    from sipharness.fakes.ladder import render_ladder

    if st.dut is not None and st.dut.log:
        _section(report, f"{st.dut.kind} DUT decisions", "\n".join(st.dut.log[-60:]))
    _section(report, "SIP/DNS ladder (phone time, s)", render_ladder(list(st.recorder)))


def _final(item: pytest.Item, report: pytest.TestReport, st: TestState) -> None:
    """At teardown: the test's outcome (the worst of its phases) on the report junit reads; its ladder page."""
    if st.outcome is not None:
        final = [p for p in report.user_properties if p[0] in rep.VERDICT_PROPERTIES[1:]]
        final.append((rep.OUTCOME_PROPERTY, st.outcome.value))
        _set_props(item.user_properties, final)
        _set_props(report.user_properties, final)
    directory = item.config.getoption("sipharness_ladder_dir")
    if directory and st.recorder is not None:
        from sipharness.fakes.ladder import render_ladder_html

        label = rep.result_of(item.nodeid, report.user_properties, skipped=st.skipped).label
        os.makedirs(directory, exist_ok=True)
        page = render_ladder_html(list(st.recorder), title=item.nodeid)
        pcap = _pcap_link(item.config, directory, item.nodeid)
        with open(os.path.join(directory, rep.ladder_file_name(item.nodeid)), "w", encoding="utf-8") as f:
            f.write(rep.with_banner(page, label, st.message, pcap=pcap))


def _pcap_dir(config: pytest.Config, ladder_dir: str) -> tuple[str, str] | None:
    """``--pcap-dir`` as a path and as a link relative to ``--ladder-dir``, when both are given."""
    pcap_dir = config.getoption("sipharness_pcap_dir")
    if not pcap_dir:
        return None
    rel = os.path.relpath(os.path.abspath(pcap_dir), os.path.abspath(ladder_dir))
    return pcap_dir, rel.replace(os.sep, "/")


def _pcap_link(config: pytest.Config, ladder_dir: str, nodeid: str) -> str | None:
    """The test's pcap relative to its ladder page, if one was written (the recorder's teardown came first)."""
    where = _pcap_dir(config, ladder_dir)
    if where is None or not os.path.isfile(os.path.join(where[0], rep.pcap_file_name(nodeid))):
        return None
    return f"{where[1]}/{rep.pcap_file_name(nodeid)}"


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if not report.failed or getattr(report, "when", None) not in ("setup", "call", "teardown"):
        return None
    p = {k: v for k, v in report.user_properties}
    outcome = p.get(rep.OUTCOME_PROPERTY)
    if outcome == Outcome.FINDING.value:
        return "finding", "F" if p.get(rep.COUNTED_PROPERTY, True) else "f", ("FINDING", {"yellow": True})
    if outcome == Outcome.LAB_PROBLEM.value:
        return "lab problem", "L", ("LAB PROBLEM", {"blue": True})
    if outcome == Outcome.HARNESS_ERROR.value:
        return "error", "E", ("ERROR", {"red": True})
    return None


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class _Test:
    """What the run's reports say about one test (the controller's view under xdist)."""

    duration: float = 0.0
    skipped: bool = False
    failed: bool = False
    skip_reason: str = ""
    props: Any = ()
    evidence: list[Any] = field(default_factory=list)  # its failed reports


class RunReport:
    """The run's side of the plugin, registered per config (``config.stash[RUN]``)."""

    def __init__(self, config: pytest.Config, dut_kind: str):
        self.config, self.dut_kind = config, dut_kind
        self.tests: dict[str, _Test] = {}
        self.collect_failed = False
        self.tls_selected = False  # a test that will run uses SIP over TLS (the preflight checks our CA)
        self.preflight_shown = False
        self.stopped_by_preflight = False
        self.worker = hasattr(config, "workerinput")

    def results(self) -> list[rep.TestResult]:
        out = []
        for nodeid, t in self.tests.items():
            r = rep.result_of(nodeid, t.props, skipped=t.skipped, failed=t.failed, duration=t.duration)
            if t.skipped and not r.detail:
                r = rep.TestResult(**{**r.__dict__, "detail": t.skip_reason})
            out.append(r)
        return out

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        t = self.tests.setdefault(report.nodeid, _Test())
        t.duration += getattr(report, "duration", 0.0) or 0.0
        if report.skipped and not hasattr(report, "wasxfail"):
            t.skipped = True
            longrepr = report.longrepr
            t.skip_reason = str(longrepr[2]).removeprefix("Skipped: ") if isinstance(longrepr, tuple) else ""
        if report.failed:
            t.failed = True
            t.evidence.append(report)
        if report.when == "teardown":
            t.props = list(report.user_properties)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_failed = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.worker:
            return  # the controller decides, from every worker's reports
        results = self.results()
        tally = rep.Tally.of(results)
        tally.plain_failures += self.collect_failed
        session.exitstatus = rep.exit_status(tally, int(exitstatus), stopped_by_preflight=self.stopped_by_preflight)
        directory = self.config.getoption("sipharness_ladder_dir")
        if directory and results:
            os.makedirs(directory, exist_ok=True)
            pages = set(os.listdir(directory))
            where = _pcap_dir(self.config, directory)
            pcaps = set(os.listdir(where[0])) if where and os.path.isdir(where[0]) else set()
            with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as f:
                f.write(rep.index_html(results, title=f"sip-redundancy-harness: {self.dut_kind} DUT", pages=pages,
                                       pcaps=pcaps, pcap_dir=where[1] if where else ""))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        path = config.getoption("xmlpath", None)
        if path and not self.worker and os.path.isfile(path):
            rep.annotate_junit(path)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        tr = terminalreporter
        results = self.results()
        covered = [r.phone_time for r in results if r.phone_time is not None]
        if covered:
            tr.write_line(f"sipharness: {len(covered)} tests covered {sum(covered):.3f} s of phone time "
                          f"on a {config.stash[CLOCK]} clock")
        for r in results:
            line = {k: v for k, v in self.tests[r.nodeid].props}.get(rep.PREFLIGHT_PROPERTY)
            if line:
                tr.write_line(f"sipharness: lab preflight passed: {line}")
        findings = [r for r in results if r.outcome is Outcome.FINDING]
        counted = [rp for r in findings if r.counted for rp in self.tests[r.nodeid].evidence]
        if counted:  # each finding that counts, with its evidence, as pytest shows a failure
            tr.section("FINDINGS (rules the phone broke)", sep="=", yellow=True)
            for report in counted:
                tr.section(report.head_line or report.nodeid, sep="_", yellow=True)
                tr.write_line(report.longreprtext)
        if findings:
            tr.section("sipharness findings (rules this phone does not meet)", yellow=True)
            for r in findings:
                tr.line(f"{r.rule}: {r.nodeid}: {r.detail}" + ("" if r.counted else "  (not counted)"), yellow=True)
        lab = [r for r in results if r.outcome is Outcome.LAB_PROBLEM]
        if lab:
            tr.section("LAB PROBLEMS (fix the lab, not the phone)", sep="=", blue=True)
            for r in lab:
                for report in self.tests[r.nodeid].evidence:
                    tr.line(f"{r.nodeid}: {_message(report)}", blue=True)
        if any(r.outcome is not None for r in results):
            tr.write_line(f"sipharness outcomes: {rep.Tally.of(results).line()} "
                          f"(only a finding counts against the phone)")
        if config.getoption("sipharness_report_mode"):
            from .coverage import SCENARIOS

            tr.section(f"sipharness rule table ({self.dut_kind} DUT)")
            for line in rep.rule_table(results, SCENARIOS):
                tr.line(line)


def _message(report: Any) -> str:
    """A failed report's exception message (all its lines), without the traceback and the exception's name."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    return re.sub(r"^[\w.]+(Problem|Error): ", "", text)
