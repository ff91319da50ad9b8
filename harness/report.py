"""The four outcomes of a test (SPEC §10) and what a run reports about them; no pytest here.

Why a module of its own: the verdict a lab reads ("did the phone break a rule?") must not
depend on how the harness is driven. The plugin feeds it pytest's exceptions and reports;
a script or another runner can feed it its own. Every test ends as one :class:`Outcome`:

- **pass**;
- **finding**: the DUT broke a rule. An ``AssertionError`` from the suites or
  :mod:`harness.assertions` (a :class:`sipcore.journal.WaitTimeout` is one) in a test that
  drives a DUT. Only a finding counts against a phone;
- **lab problem**: the lab is not ready (a :class:`LabProblem`, with what to fix), raised by
  the lab preflight (:mod:`harness.preflight`) or by a DUT driver that cannot reach its phone;
- **harness error**: a fake or the harness failed: an exception a fake hit while serving (a
  test whose fakes saw one is never a finding, whatever else went wrong), a
  :class:`HarnessError`, or any other exception in a test or its fixtures.

Exit status of a run (precedence: harness error > lab problem > findings):
:data:`EXIT_HARNESS_ERROR` 70 (sysexits EX_SOFTWARE), :data:`EXIT_LAB_PROBLEM` 78 (EX_CONFIG),
:data:`EXIT_FINDINGS` 1, else 0. Findings that do not count (``--report-mode``; an [interp]
rule against a phone other than the bundled one) do not set 1. pytest's own statuses for a
usage error (4), an internal error (3), no tests (5) and an interruption by the user (2) stay.
"""

from __future__ import annotations

import enum
import html
import re
import posixpath
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable, Sequence

__all__ = ["Outcome", "LabProblem", "HarnessError", "classify", "worst", "serving_failure", "TestResult", "Tally", "verdict",
           "exit_status", "ladder_file_name", "pcap_file_name", "with_banner", "index_html", "annotate_junit", "first_line",
           "outcome_properties", "result_of", "rule_table",
           "EXIT_OK", "EXIT_FINDINGS", "EXIT_HARNESS_ERROR", "EXIT_LAB_PROBLEM"]

# SPEC §10 [interp]: the SPEC asks that the exit status tell the outcomes apart, not which numbers.
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_HARNESS_ERROR = 70  # sysexits.h EX_SOFTWARE: internal software error
EXIT_LAB_PROBLEM = 78  # sysexits.h EX_CONFIG: configuration error
_PYTEST_INTERRUPTED, _PYTEST_KEPT = 2, (3, 4, 5)  # interrupted; internal error, usage error, no tests


class LabProblem(Exception):
    """The lab is not ready for the test (SPEC §10): the message says what went wrong, ``fix`` what to do.

    ``str()`` is ``"<problem>: <fix>"``, then ``evidence`` (what the phone or the fakes said) on the
    lines after; ``step`` names the preflight step or the driver's step."""

    def __init__(self, problem: str, fix: str = "", *, step: str | None = None, evidence: str = ""):
        self.problem, self.fix, self.step, self.evidence = problem, fix, step, evidence
        super().__init__((f"{problem}: {fix}" if fix else problem) + (f"\n{evidence}" if evidence else ""))


class HarnessError(Exception):
    """The harness itself (or a fake) failed; never the phone's fault."""


class Outcome(enum.Enum):
    """How a test ended (SPEC §10). Ordered by precedence: a later member outranks an earlier one."""

    PASS = "pass"
    FINDING = "finding"
    LAB_PROBLEM = "lab problem"
    HARNESS_ERROR = "harness error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Outcome.PASS: 0, Outcome.FINDING: 1, Outcome.LAB_PROBLEM: 2, Outcome.HARNESS_ERROR: 3}


def worst(*outcomes: Outcome | None) -> Outcome | None:
    """The outcome of highest precedence (None when none given)."""
    given = [o for o in outcomes if o is not None]
    return max(given, key=lambda o: o.rank) if given else None


def classify(exc: BaseException | None, fake_errors: Sequence[BaseException] = (), *, dut_involved: bool = True,
             finding_types: tuple[type[BaseException], ...] = (AssertionError,)) -> Outcome | None:
    """The outcome of one test phase that raised ``exc`` (None: it did not) while its fakes hit ``fake_errors``.

    ``dut_involved``: the test drove a device under test; without one an assertion is a plain
    test failure of the harness's own tests (None is returned: not one of the four outcomes).
    SPEC §10 [interp]: the SPEC names the outcomes, not the exceptions; an assertion (a wait that
    ran out included) is the only finding, because only the suites' checks state a rule.
    ``finding_types``: the exceptions that mean "a rule was broken" (a runner adds its own
    explicit-failure exception, e.g. pytest's ``Failed``)."""
    if fake_errors:
        return Outcome.HARNESS_ERROR
    if exc is None:
        return Outcome.PASS
    if isinstance(exc, LabProblem):
        return Outcome.LAB_PROBLEM
    if isinstance(exc, HarnessError):
        return Outcome.HARNESS_ERROR
    if not dut_involved:
        return None
    if isinstance(exc, finding_types):
        return Outcome.FINDING
    return Outcome.HARNESS_ERROR


def serving_failure(errors: Sequence[BaseException]) -> HarnessError:
    """One harness error for the exceptions fakes hit while serving, caused by them (tracebacks kept).

    Raise it ``from`` its ``__cause__`` (set here): the single error, or an exception group of all."""
    lines = [f"  {type(e).__name__}: {first_line(e)}" + "".join(f"\n    ({note})" for note in getattr(e, "__notes__", ()))
             for e in errors]
    err = HarnessError(f"the fakes hit {_n(len(errors), 'error')} while serving (a harness error, not a finding):\n"
                       + "\n".join(lines))
    err.__cause__ = errors[0] if len(errors) == 1 else BaseExceptionGroup("errors the fakes hit while serving",
                                                                            list(errors))
    return err


def first_line(exc: BaseException | str | None, default: str = "") -> str:
    text = str(exc) if exc is not None else ""
    return text.strip().splitlines()[0] if text.strip() else default


@dataclass(frozen=True)
class TestResult:
    """One test as the run's reports show it."""

    __test__ = False  # not a pytest test class despite the name

    nodeid: str
    outcome: Outcome | None  # None: skipped, or a plain failure of a test that drove no DUT
    counted: bool = True  # a finding that fails the run (False: --report-mode, or [interp] on another phone)
    skipped: bool = False
    failed: bool = False  # pytest saw a failure (with outcome None: a plain failure)
    rule: str = ""
    detail: str = ""  # the first line of the failure or the skip reason
    scenario: str | None = None
    duration: float = 0.0  # wall seconds, all phases
    phone_time: float | None = None  # phone seconds the test covered
    not_expressible: bool = False  # skipped: the DUT cannot express a .cfg key the test needs

    @property
    def label(self) -> str:
        if self.skipped:
            return "not expressible" if self.not_expressible else "skipped"
        if self.outcome is None:
            return "failed" if self.failed else "passed"
        if self.outcome is Outcome.FINDING and not self.counted:
            return "finding (not counted)"
        return self.outcome.value


@dataclass
class Tally:
    """Counts of a run's outcomes, and what decides its exit status."""

    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    counted_findings: int = 0
    skipped: int = 0
    plain_failures: int = 0  # failures outside the four outcomes (a test of the harness's own, a collection error)

    @classmethod
    def of(cls, results: Iterable[TestResult]) -> "Tally":
        t = cls()
        for r in results:
            if r.skipped:
                t.skipped += 1
            elif r.outcome is not None:
                t.outcomes[r.outcome] += 1
                t.counted_findings += r.outcome is Outcome.FINDING and r.counted
            elif r.failed:
                t.plain_failures += 1
        return t

    def line(self) -> str:
        """``57 pass, 2 findings (0 counted), 0 lab problems, 1 harness error``."""
        o = self.outcomes
        findings = o[Outcome.FINDING]
        note = f" ({self.counted_findings} counted)" if findings != self.counted_findings else ""
        return (f"{o[Outcome.PASS]} pass, {_n(findings, 'finding')}{note}, {_n(o[Outcome.LAB_PROBLEM], 'lab problem')}, "
                f"{_n(o[Outcome.HARNESS_ERROR], 'harness error')}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def exit_status(tally: Tally, pytest_status: int, *, stopped_by_preflight: bool = False) -> int:
    """The run's exit status from its outcomes; the runner's own status where it is not about outcomes.

    ``stopped_by_preflight``: the runner was interrupted because the lab preflight ended the run,
    not by the user (under xdist the controller sees the outcomes only: a lab problem or a
    harness error that interrupted the run speaks for itself)."""
    if pytest_status in _PYTEST_KEPT:
        return pytest_status
    if pytest_status == _PYTEST_INTERRUPTED and not (stopped_by_preflight or tally.outcomes[Outcome.LAB_PROBLEM]
                                                     or tally.outcomes[Outcome.HARNESS_ERROR]):
        return pytest_status
    if tally.outcomes[Outcome.HARNESS_ERROR]:
        return EXIT_HARNESS_ERROR
    if tally.outcomes[Outcome.LAB_PROBLEM]:
        return EXIT_LAB_PROBLEM
    if tally.counted_findings or tally.plain_failures:
        return EXIT_FINDINGS
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- HTML

_COLOUR = {"pass": "#070", "passed": "#070", "finding": "#b60", "finding (not counted)": "#b60",
           "lab problem": "#05a", "harness error": "#c00", "failed": "#c00", "skipped": "#777",
           "not expressible": "#777"}


def ladder_file_name(nodeid: str) -> str:
    """The ladder page of a test in ``--ladder-dir`` (the same name from a worker and the controller)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[:180] + ".html"


def pcap_file_name(nodeid: str) -> str:
    """A test's pcap in ``--pcap-dir``: its ladder page's name ending in .pcap (so the two pair up)."""
    return ladder_file_name(nodeid).removesuffix(".html") + ".pcap"


def with_banner(page: str, label: str, message: str = "", *, pcap: str | None = None) -> str:
    """A ladder page with the test's outcome and failure message above the ladder.

    ``pcap``: the test's pcap, relative to the page (the same exchange, for Wireshark)."""
    e = html.escape
    colour = _COLOUR.get(label, "#333")
    link = f' &middot; <a href="{e(pcap)}">pcap</a>' if pcap else ""
    banner = (f'<div style="font-family:sans-serif;border-left:6px solid {colour};padding:4px 10px;margin:8px 0">'
              f'<b style="color:{colour}">{e(label.upper())}</b>{link}'
              + (f'<pre style="white-space:pre-wrap;margin:6px 0">{e(message)}</pre>' if message else "") + "</div>\n")
    at = page.find("<body>")
    return page[:at + len("<body>")] + banner + page[at + len("<body>"):] if at >= 0 else banner + page


def index_html(results: Sequence[TestResult], *, title: str, pages: set[str] | None = None,
               pcaps: set[str] = frozenset(), pcap_dir: str = "") -> str:
    """The run's index of ladder pages: the four counts, then one row per test.

    ``pages``: file names that exist in the ladder directory (a link is made only to those);
    ``pcaps``: file names that exist in ``pcap_dir`` (relative to the index), linked beside them."""
    e = html.escape
    tally = Tally.of(results)
    rows = []
    for r in results:
        name = ladder_file_name(r.nodeid)
        link = f'<a href="{e(name)}">ladder</a>' if pages is None or name in pages else ""
        if pcap_file_name(r.nodeid) in pcaps:
            link += f' <a href="{e(posixpath.join(pcap_dir, pcap_file_name(r.nodeid)))}">pcap</a>'
        phone = f"{r.phone_time:.3f}" if r.phone_time is not None else ""
        colour = _COLOUR.get(r.label, "#333")
        rows.append(f'<tr><td style="color:{colour}">{e(r.label)}</td><td>{e(r.nodeid)}</td>'
                    f'<td align="right">{r.duration:.2f}</td><td align="right">{phone}</td><td>{link}</td>'
                    f'<td>{e(r.detail[:300])}</td></tr>')
    counts = "".join(f"<li>{e(_n(tally.outcomes[o], o.value))}</li>" for o in Outcome)
    skipped = f"<li>{tally.skipped} skipped</li>" if tally.skipped else ""
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + e(title) + "</title></head>"
            "<body style=\"font-family:sans-serif\"><h1>" + e(title) + "</h1>"
            f"<ul>{counts}{skipped}</ul><p>Only a finding counts against the phone.</p>"
            "<table border=\"1\" cellspacing=\"0\" cellpadding=\"3\"><tr><th>outcome</th><th>test</th>"
            "<th>wall s</th><th>phone s</th><th></th><th>message</th></tr>\n" + "\n".join(rows) +
            "\n</table></body></html>\n")


# ---------------------------------------------------------------------------------------------- properties

#: A test's outcome travels as (name, value) properties (pytest: ``user_properties``; JUnit XML: testcase
#: properties): they are plain data, so they survive pytest-xdist and any other runner's reports.
OUTCOME_PROPERTY, RULE_PROPERTY, DETAIL_PROPERTY, COUNTED_PROPERTY = (
    "sipharness.outcome", "sipharness.rule", "sipharness.detail", "sipharness.counted")
SCENARIO_PROPERTY, PREFLIGHT_PROPERTY, PHONE_TIME_PROPERTY = "sipharness.scenario", "sipharness.preflight", "phone_time_s"
#: a test skipped because the DUT has no setting for a ``.cfg`` key it needs (harness.dut.NotExpressible): the reason
NOT_EXPRESSIBLE_PROPERTY = "sipharness.not_expressible"
VERDICT_PROPERTIES = (OUTCOME_PROPERTY, RULE_PROPERTY, DETAIL_PROPERTY, COUNTED_PROPERTY)


def outcome_properties(outcome: Outcome, detail: str = "", *, rule: str | None = None,
                       counted: bool | None = None) -> list[tuple[str, object]]:
    """The properties that say how a test (or one phase of it) ended."""
    props: list[tuple[str, object]] = [(OUTCOME_PROPERTY, outcome.value)]
    if outcome is not Outcome.PASS:
        props.append((DETAIL_PROPERTY, detail))
    if rule is not None:
        props.append((RULE_PROPERTY, rule))
    if counted is not None:
        props.append((COUNTED_PROPERTY, counted))
    return props


def result_of(nodeid: str, properties: Iterable[tuple[str, object]], **fields) -> TestResult:
    """A :class:`TestResult` from a test's properties (the last value of a name wins) and other fields."""
    p = {k: v for k, v in properties or ()}
    outcome = Outcome(p[OUTCOME_PROPERTY]) if OUTCOME_PROPERTY in p else None
    fields.setdefault("detail", str(p.get(DETAIL_PROPERTY, "")))
    if NOT_EXPRESSIBLE_PROPERTY in p:
        fields["not_expressible"] = True
    return TestResult(nodeid, outcome, counted=bool(p.get(COUNTED_PROPERTY, True)), rule=str(p.get(RULE_PROPERTY, "")),
                      scenario=p.get(SCENARIO_PROPERTY), phone_time=p.get(PHONE_TIME_PROPERTY), **fields)


def verdict(r: TestResult) -> str:
    """One word per test for the rule tables: met, finding, not expressible, skipped, lab, error."""
    if r.skipped:
        return "not expressible" if r.not_expressible else "skipped"
    if r.outcome in (Outcome.PASS, None) and not r.failed:
        return "met"
    return {Outcome.FINDING: "finding", Outcome.LAB_PROBLEM: "lab"}.get(r.outcome, "error")


def rule_table(results: Iterable[TestResult], scenarios: dict[str, str]) -> list[str]:
    """Per SPEC §8 scenario: how many of its tests the phone met, the findings, what the phone cannot
    express (``n/e``: a .cfg key it has no setting for) and what did not run."""
    seen: dict[str, list[str]] = {}
    for r in results:
        if r.scenario is not None:
            seen.setdefault(r.scenario, []).append(verdict(r))
    lines = [f"{'id':<8} {'met':>4} {'findings':>8} {'n/e':>4} {'skipped':>7} {'lab':>4} {'errors':>6}  scenario"]
    for sid, title in scenarios.items():
        v = seen.get(sid, [])
        lines.append(f"{sid:<8} {v.count('met'):>4} {v.count('finding'):>8} {v.count('not expressible'):>4} "
                     f"{v.count('skipped'):>7} {v.count('lab'):>4} {v.count('error'):>6}  {title}")
    return lines


# ---------------------------------------------------------------------------------------------- JUnit XML

#: testcase child element and its ``type`` per outcome (a finding is a failure, the others are errors)
_JUNIT = {Outcome.FINDING: ("failure", "sipharness.finding"), Outcome.LAB_PROBLEM: ("error", "sipharness.lab_problem"),
          Outcome.HARNESS_ERROR: ("error", "sipharness.harness_error")}


def annotate_junit(path: str) -> None:
    """Rewrite a JUnit XML file so each testcase's status says its outcome.

    The outcome travels as the testcase property ``sipharness.outcome``: a finding becomes a
    ``<failure type="sipharness.finding">``, a lab problem and a harness error an ``<error>``
    with ``type`` ``sipharness.lab_problem`` / ``sipharness.harness_error``; the suites'
    ``failures`` / ``errors`` counts follow."""
    tree = ET.parse(path)
    root = tree.getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        for case in suite.findall("testcase"):
            _annotate_case(case)
        suite.set("failures", str(len(suite.findall("testcase/failure"))))
        suite.set("errors", str(len(suite.findall("testcase/error"))))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _annotate_case(case: ET.Element) -> None:
    props = case.find("properties")
    value = None
    if props is not None:
        mine = [p for p in props.findall("property") if p.get("name") == OUTCOME_PROPERTY]
        for p in mine[:-1]:  # one outcome property per testcase: the final one
            props.remove(p)
        value = mine[-1].get("value") if mine else None
    try:
        outcome = Outcome(value) if value is not None else None
    except ValueError:
        return
    if outcome not in _JUNIT:
        return
    tag, kind = _JUNIT[outcome]
    found = case.findall("failure") + case.findall("error")
    if not found:  # (a finding's failure is always there; a teardown-only error may be the other tag)
        ET.SubElement(case, tag, message=outcome.value, type=kind)
        return
    for el in found[1:]:  # a call failure and a teardown error of one test: one status, both texts
        found[0].text = (found[0].text or "") + "\n\n" + (el.text or "")
        case.remove(el)
    found[0].tag = tag
    found[0].set("type", kind)
