"""The pytest plugin (entry point ``pytest11``): fixtures that wire the fakes to a device under test.

Thin by design, as pytest-httpserver's is: the cores (``fakes``, ``phone``, ``harness.lab``)
know nothing of pytest, and neither do the verdicts (:mod:`harness.report`: the four outcomes
of SPEC §10, the exit status, the HTML index) nor the lab preflight (:mod:`harness.preflight`).
This module only turns them into fixtures, options and pytest reports:

- each test's outcome (pass, finding, lab problem, harness error) travels in its reports'
  ``user_properties`` (``sipharness.outcome``, ``.rule``, ``.detail``, ``.counted``), so it
  survives pytest-xdist and reaches ``--junitxml``; ``pytest_report_teststatus`` gives pytest's
  summary line the categories "finding", "lab problem" and "error" (harness errors);
- exceptions a fake (or the vendor driver's provisioning server) hit while serving make the
  test a harness error, never a finding: raised at teardown with their tracebacks, or attached
  to the test's failure;
- the lab preflight runs once per session (per xdist worker) before the first test of a DUT in
  another process; when it fails the run stops as a lab problem;
- the ladder of a failed test ends its report; ``--ladder-dir`` gets one page per test and an
  ``index.html``; the exit status tells the outcomes apart (README, "Outcomes and exit status").

Fixtures: ``sip_clock``, ``sip_recorder``, ``dut``, ``lab``, ``fake_dns``, ``sip_server`` (a
factory), ``tls_pki``. Options: ``--dut``, ``--clock``, ``--ladder-dir``, ``--lab-address``,
``--report-mode``, ``--preflight-timeout``.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from sipharness.sipcore.clock import VirtualClock, make_clock, parse_clock_spec

from . import report as rep
from .report import LabProblem, Outcome

_CLOCK = pytest.StashKey[str]()
_STATE = pytest.StashKey["_TestState"]()
_RUN = pytest.StashKey["_Run"]()
_PREFLIGHT = pytest.StashKey[Any]()  # the preflight's lines, or the exception it ended with (this process)

OUTCOME, RULE, DETAIL, COUNTED, SCENARIO, PREFLIGHT, PHONE_TIME = (
    rep.OUTCOME_PROPERTY, "sipharness.rule", "sipharness.detail", "sipharness.counted", "sipharness.scenario",
    "sipharness.preflight", "phone_time_s")
_MINE = (OUTCOME, RULE, DETAIL, COUNTED)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sipharness", "SIP redundancy harness")
    group.addoption("--dut", default="bundled",
                    help="device under test: bundled (default) or another registered kind")
    group.addoption("--clock", default=None,
                    help="virtual | scaled:FACTOR | real (SPEC §9). Default: virtual for the bundled phone, "
                         "real for devices in another process")
    group.addoption("--ladder-dir", default=None, metavar="DIR",
                    help="write one HTML SIP/DNS ladder per test into DIR, and DIR/index.html")
    group.addoption("--lab-address", default="127.0.0.1", metavar="ADDR[,ADDR...]",
                    help="this host's address(es) a phone on the network reaches: the fakes listen there and the "
                         "DNS on port 53 (default: loopback, SPEC §8 hosts). Scenarios that need more distinct "
                         "addresses than given are skipped")
    group.addoption("--report-mode", action="store_true", default=False,
                    help="qualify a phone nobody here wrote: every rule it breaks is a finding (summarised in a "
                         "table) and does not fail the run; lab problems and harness errors still do")
    group.addoption("--preflight-timeout", type=float, default=30.0, metavar="S",
                    help="wall seconds each step of the lab preflight may take (a DUT in another process; "
                         "default 30)")
    from .dut import DUT_KINDS, dut_class

    for name in DUT_KINDS:
        try:
            dut_class(name).add_options(group)
        except ImportError:  # a kind whose extra dependencies are absent offers no options
            pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(id, passage=''): SPEC §8 scenario id and the guide's passage checked")
    config.addinivalue_line("markers", "interp(rule): checks a SPEC [interp] rule; a deviation of a non-bundled "
                                       "phone is a finding that does not fail the run")
    config.addinivalue_line("markers", "exact_time: needs exact phone time, i.e. the DUT on the harness's virtual "
                                       "clock (skipped otherwise, with the reason)")
    config.addinivalue_line("markers", "tls: uses SIP over TLS (the lab preflight then checks the phone trusts our "
                                       "CA; tests parametrized with transport 'tls' count as marked)")
    from .dut import dut_class

    try:
        cls = dut_class(config.getoption("--dut"))
    except (KeyError, ImportError) as e:
        raise pytest.UsageError(str(e).strip('"')) from None
    spec = config.getoption("--clock") or cls.default_clock
    try:
        kind, _ = parse_clock_spec(spec)
    except ValueError as e:
        raise pytest.UsageError(f"--clock: {e}") from None
    if kind not in cls.clocks:
        raise pytest.UsageError(f"--clock {spec}: a {cls.kind} DUT runs on {' or '.join(cls.clocks)} clocks only "
                                f"(SPEC §9: a phone in another process cannot follow a virtual clock)")
    config.stash[_CLOCK] = spec
    config.stash[_RUN] = run = _Run(config, cls.kind)
    config.pluginmanager.register(run, "sipharness-run")


# ---------------------------------------------------------------------------------------------- per test

@dataclass
class _TestState:
    """What the plugin keeps per test (``item.stash``): the objects it reports on, the outcome so far."""

    recorder: Any = None
    dut: Any = None
    clock: Any = None
    lab: Any = None
    fakes: list[Any] = field(default_factory=list)  # every fake the test's fixtures made
    reported: set[int] = field(default_factory=set)  # ids of serving errors already in a report
    outcome: Outcome | None = None


def _state(node: pytest.Item) -> _TestState:
    st = node.stash.get(_STATE, None)
    if st is None:
        st = node.stash[_STATE] = _TestState()
    return st


def _serving_errors(st: _TestState) -> list[BaseException]:
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


def _raise_unreported(node: pytest.Item) -> None:
    """At teardown: serving errors no report has shown yet fail the test (as pytest-httpserver does)."""
    st = _state(node)
    new = [e for e in _serving_errors(st) if id(e) not in st.reported]
    if new:
        st.reported.update(id(e) for e in new)
        err = rep.serving_failure(new)
        raise err from err.__cause__


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def sip_clock(request: pytest.FixtureRequest):
    """The test's clock (SPEC §9): the fakes and the DUT all run on it."""
    from twisted.internet import reactor

    clock = make_clock(request.config.stash[_CLOCK], reactor)
    _state(request.node).clock = clock
    start = clock.seconds()
    yield clock
    # How much phone time the test covered: summed in the terminal summary (bench/suite_time.py).
    request.node.user_properties.append((PHONE_TIME, round(clock.seconds() - start, 6)))
    if isinstance(clock, VirtualClock):
        clock.stop()


@pytest.fixture
def sip_recorder(request: pytest.FixtureRequest, sip_clock):
    """The shared record of every DNS query and SIP message the fakes of this test saw."""
    from sipharness.fakes.record import Recorder

    recorder = Recorder(sip_clock)
    _state(request.node).recorder = recorder
    yield recorder
    recorder.cancel_waits()
    _raise_unreported(request.node)


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory, pytestconfig):
    """Test certificates (trustme): the fakes' TLS server context and a CA file a phone can trust."""
    from sipharness.sipcore.tls import TestPKI

    from .lab import HOSTS

    pki = TestPKI(hosts=tuple(dict.fromkeys(("127.0.0.1", "localhost", *HOSTS.values(),
                                              *_lab_addresses(pytestconfig)))))
    pki.ca_file = str(tmp_path_factory.mktemp("pki") / "ca.pem")
    pki.export_ca(pki.ca_file)
    return pki


@pytest.fixture(scope="session")
def sipharness_preflight(request: pytest.FixtureRequest, tls_pki):
    """The lab preflight (SPEC §10), once per session (per xdist worker), for a DUT in another process.

    Its lines when it passed (None when the DUT needs none); when it fails, the test that asked
    for it ends as a lab problem (or a harness error) and the run stops after it."""
    from .dut import dut_class

    config = request.config
    cls = dut_class(config.getoption("--dut"))
    if not cls.needs_preflight:
        return None
    try:
        lines = pytest_twisted.blockon(defer.ensureDeferred(_preflight(config, cls, tls_pki)))
    except LabProblem as e:
        config.stash[_PREFLIGHT] = e
        config.stash[_RUN].stopped_by_preflight = True
        request.session.shouldstop = f"lab problem: the lab preflight failed at step '{e.step}' (see above)"
        raise
    except Exception as e:  # any other failure of the preflight is the harness's, never a finding
        config.stash[_PREFLIGHT] = e
        config.stash[_RUN].stopped_by_preflight = True
        request.session.shouldstop = f"harness error in the lab preflight: {rep.first_line(e)}"
        if isinstance(e, rep.HarnessError):
            raise
        raise rep.HarnessError(f"the lab preflight failed: {e!r}") from e
    config.stash[_PREFLIGHT] = lines
    return lines


async def _preflight(config: pytest.Config, cls: Any, tls_pki: Any) -> list[str]:
    from twisted.internet import reactor

    from sipharness.fakes.record import Recorder

    from .preflight import run_preflight

    clock = make_clock(config.stash[_CLOCK], reactor)
    try:
        dut = cls.from_options(clock, config.getoption, reactor=reactor, tls_pki=tls_pki)
        lab = _make_lab(config, clock, Recorder(clock), dut, tls_pki)
        return await run_preflight(lab, timeout=config.getoption("--preflight-timeout"),
                                   tls=config.stash[_RUN].tls_selected, reactor=reactor)
    finally:
        if isinstance(clock, VirtualClock):
            clock.stop()


@pytest.fixture
def dut(request: pytest.FixtureRequest, sip_clock, tls_pki, sipharness_preflight):
    """The device under test behind one interface (SPEC §10), chosen by ``--dut``."""
    from twisted.internet import reactor

    from .dut import dut_class

    run = request.config.stash[_RUN]
    if sipharness_preflight is not None and not run.preflight_shown:
        run.preflight_shown = True
        request.node.user_properties.append((PREFLIGHT, "; ".join(sipharness_preflight)))
    cls = dut_class(request.config.getoption("--dut"))
    device = cls.from_options(sip_clock, request.config.getoption, reactor=reactor, tls_pki=tls_pki)
    _state(request.node).dut = device
    yield device
    pytest_twisted.blockon(defer.maybeDeferred(device.stop))
    _raise_unreported(request.node)


@pytest.fixture
def lab(request: pytest.FixtureRequest, sip_clock, sip_recorder, dut, tls_pki):
    """Builds DNS + SIP servers + DUT from a short description (``await lab.up(...)``)."""
    the_lab = _make_lab(request.config, sip_clock, sip_recorder, dut, tls_pki)
    st = _state(request.node)
    st.lab = the_lab
    yield the_lab
    st.fakes.extend(the_lab.fakes)  # (down() forgets them; their errors are still to be read)
    pytest_twisted.blockon(defer.ensureDeferred(the_lab.down()))
    _raise_unreported(request.node)


def _make_lab(config: pytest.Config, clock: Any, recorder: Any, dut: Any, tls_pki: Any) -> Any:
    from twisted.internet import reactor

    from .lab import Lab

    addresses = _lab_addresses(config)
    # each xdist worker's DNS on its own address (workerinput exists only in an xdist worker: a pytest
    # run started from inside a worker inherits PYTEST_XDIST_WORKER but is not one)
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    return Lab(clock, recorder, dut, reactor=reactor, tls=tls_pki, addresses=addresses,
               dns_port=53 if addresses else 0, dns_index=int(worker[2:] or 0))


@pytest.fixture
def sip_server(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """Factory of fake SIP servers: ``srv = await sip_server("primary", "udp")``; stopped after the test."""
    from twisted.internet import reactor

    from sipharness.fakes.sip import FakeSipServer

    st = _state(request.node)
    made: list[Any] = []

    async def factory(name: str = "sip", transport: str = "udp", *, port: int = 0, **options: Any):
        srv = FakeSipServer(name, clock=sip_clock, recorder=sip_recorder, reactor=reactor,
                            host=options.pop("host", "127.0.0.1"), **options)
        made.append(srv)
        st.fakes.append(srv)
        await defer.maybeDeferred(srv.listen, transport, port)
        return srv

    yield factory
    for srv in made:
        pytest_twisted.blockon(defer.maybeDeferred(srv.stop))
    _raise_unreported(request.node)


@pytest.fixture
def fake_dns(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """A started fake DNS with an empty ``example.com`` zone; add records with ``fake_dns.add(...)``."""
    from twisted.internet import reactor

    from sipharness.fakes.dns import FakeDNS, Zone

    zone = Zone.from_text("$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns.example.com. hostmaster.example.com. "
                          "1 3600 600 86400 60\n@ IN NS ns.example.com.\nns IN A 127.0.0.53\n")
    dns = FakeDNS([zone], clock=sip_clock, recorder=sip_recorder, host="127.0.0.53", port=0, reactor=reactor)
    _state(request.node).fakes.append(dns)
    pytest_twisted.blockon(defer.maybeDeferred(dns.start))
    yield dns
    pytest_twisted.blockon(defer.maybeDeferred(dns.stop))
    _raise_unreported(request.node)


def _lab_addresses(config: pytest.Config) -> list[str]:
    """``--lab-address`` as a list; empty for the loopback default."""
    given = [a.strip() for a in config.getoption("--lab-address").split(",") if a.strip()]
    return [] if given == ["127.0.0.1"] else given


# ---------------------------------------------------------------------------------------------- collection

@pytest.hookimpl(trylast=True)  # (after -k / -m deselected: only the tests that will run select TLS)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash[_RUN]
    for item in items:
        sid = _scenario_of(item)
        if sid is not None:
            item.user_properties.append((SCENARIO, sid))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("tls") is not None or "tls" in [v for v in params.values() if isinstance(v, str)]:
            run.tls_selected = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``exact_time``: skipped unless the DUT runs on the harness's virtual clock (times exact to the tick)."""
    if item.get_closest_marker("exact_time") is None:
        return
    from .dut import dut_class

    cls = dut_class(item.config.getoption("--dut"))
    spec = item.config.stash[_CLOCK]
    if not (cls.exact_time and parse_clock_spec(spec)[0] == "virtual"):
        pytest.skip(f"needs exact phone time (a DUT in this process on the virtual clock); this run drives a "
                    f"{cls.kind} DUT on a {spec} clock")


def _scenario_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("scenario")
    return marker.args[0] if marker is not None and marker.args else None


# ---------------------------------------------------------------------------------------------- reports

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report: pytest.TestReport = yield
    st = item.stash.get(_STATE, None)
    exc = call.excinfo.value if call.excinfo is not None else None
    if exc is not None and report.failed:
        from .lab import LabTooSmall

        if isinstance(exc, LabTooSmall):  # a lab with too few addresses: the scenario cannot run here
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, f"Skipped: {exc}")
            return report
    if report.skipped or hasattr(report, "wasxfail"):
        return report
    if st is None and not isinstance(exc, (LabProblem, rep.HarnessError)):
        return report  # a test that used none of the harness's fixtures: pytest's own verdict
    st = st if st is not None else _state(item)
    _judge(item, call, report, st, exc)
    if report.when == "teardown":
        _final(item, report, st)
    return report


def _judge(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport, st: _TestState,
           exc: BaseException | None) -> None:
    """Classify this phase (harness.report.classify) and put the outcome in the reports' user_properties."""
    if report.passed and report.when == "setup":
        return  # (serving errors of the setup are the call's to report)
    new = [e for e in _serving_errors(st) if id(e) not in st.reported]
    if report.passed and report.when == "teardown" and not new:
        return
    outcome = rep.classify(exc if report.failed else None, new, dut_involved=st.dut is not None,
                           finding_types=(AssertionError, pytest.fail.Exception))
    if outcome is None:
        return  # a plain failure of a test that drove no DUT: pytest's own verdict
    if new:
        st.reported.update(id(e) for e in new)
        detail = rep.first_line(_attach_serving_errors(item, report, new))
    else:
        detail = rep.first_line(exc, "error")
    st.outcome = rep.worst(st.outcome, outcome)
    props: list[tuple[str, Any]] = [(OUTCOME, outcome.value)]
    if outcome is not Outcome.PASS:
        props.append((DETAIL, detail))
    if outcome is Outcome.FINDING:
        marker = item.get_closest_marker("interp")
        rule = marker.args[0] if marker is not None and marker.args else _scenario_of(item) or "rule"
        report_mode = item.config.getoption("--report-mode")
        counted = not (report_mode or (marker is not None and not st.dut.interp_binding))
        props += [(RULE, rule), (COUNTED, counted)]
    _set_props(item.user_properties, props)
    _set_props(report.user_properties, props)
    if report.failed:
        _add_ladder(report, st)


def _set_props(props: list, new: list[tuple[str, Any]]) -> None:
    props[:] = [p for p in props if p[0] not in _MINE] + new


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


def _add_ladder(report: pytest.TestReport, st: _TestState) -> None:
    if st.recorder is None or not len(st.recorder):
        return
    from sipharness.fakes.ladder import render_ladder

    if st.dut is not None and st.dut.log:
        _section(report, f"{st.dut.kind} DUT decisions", "\n".join(st.dut.log[-60:]))
    _section(report, "SIP/DNS ladder (phone time, s)", render_ladder(list(st.recorder)))


def _final(item: pytest.Item, report: pytest.TestReport, st: _TestState) -> None:
    """At teardown: the test's outcome (the worst of its phases) on the report junit reads; its ladder page."""
    if st.outcome is not None:
        final = [(OUTCOME, st.outcome.value)]
        keep = [p for p in report.user_properties if p[0] in _MINE and p[0] != OUTCOME]
        _set_props(item.user_properties, keep + final)
        _set_props(report.user_properties, keep + final)
    directory = item.config.getoption("--ladder-dir")
    if directory and st.recorder is not None:
        from sipharness.fakes.ladder import render_ladder_html

        label = _result(item.nodeid, report.user_properties).label if st.outcome is not None else "passed"
        message = dict((k, v) for k, v in report.user_properties).get(DETAIL, "")
        os.makedirs(directory, exist_ok=True)
        page = render_ladder_html(list(st.recorder), title=item.nodeid)
        with open(os.path.join(directory, rep.ladder_file_name(item.nodeid)), "w", encoding="utf-8") as f:
            f.write(rep.with_banner(page, label, message))


def _props(report: Any) -> dict[str, Any]:
    return {k: v for k, v in getattr(report, "user_properties", ()) or ()}


def _result(nodeid: str, user_properties: Any, **kw: Any) -> rep.TestResult:
    p = {k: v for k, v in user_properties or ()}
    outcome = Outcome(p[OUTCOME]) if OUTCOME in p else None
    return rep.TestResult(nodeid, outcome, counted=bool(p.get(COUNTED, True)), rule=str(p.get(RULE, "")),
                          detail=str(p.get(DETAIL, "")), scenario=p.get(SCENARIO),
                          phone_time=p.get(PHONE_TIME), **kw)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if not report.failed or getattr(report, "when", None) not in ("setup", "call", "teardown"):
        return None
    p = _props(report)
    outcome = p.get(OUTCOME)
    if outcome == Outcome.FINDING.value:
        return "finding", "F" if p.get(COUNTED, True) else "f", ("FINDING", {"yellow": True})
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


class _Run:
    """The run's side of the plugin, registered per config: it reads every report (also those xdist
    workers send to the controller), and at the end sets the exit status and writes the summaries."""

    def __init__(self, config: pytest.Config, dut_kind: str):
        self.config, self.dut_kind = config, dut_kind
        self.tests: dict[str, _Test] = {}
        self.collect_failed = False
        self.tls_selected = False
        self.preflight_shown = False
        self.stopped_by_preflight = False
        self.worker = hasattr(config, "workerinput")

    def results(self) -> list[rep.TestResult]:
        out = []
        for nodeid, t in self.tests.items():
            r = _result(nodeid, t.props, skipped=t.skipped, failed=t.failed, duration=t.duration)
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
        directory = self.config.getoption("--ladder-dir")
        if directory and results:
            os.makedirs(directory, exist_ok=True)
            pages = set(os.listdir(directory))
            with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as f:
                f.write(rep.index_html(results, title=f"sip-redundancy-harness: {self.dut_kind} DUT", pages=pages))

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
                          f"on a {config.stash[_CLOCK]} clock")
        for r in results:
            line = {k: v for k, v in self.tests[r.nodeid].props}.get(PREFLIGHT)
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
        if config.getoption("--report-mode"):
            _rule_table(tr, config, results)


def _message(report: Any) -> str:
    """A failed report's exception message (all its lines), without the traceback and the exception's name."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else report.longreprtext
    return re.sub(r"^[\w.]+(Problem|Error): ", "", text)


def _rule_table(tr: Any, config: pytest.Config, results: list[rep.TestResult]) -> None:
    """Per SPEC §8 scenario: how many of its tests the phone met, the findings, and what did not run."""
    from .coverage import SCENARIOS

    seen: dict[str, list[str]] = {}
    for r in results:
        if r.scenario is not None:
            seen.setdefault(r.scenario, []).append(
                "skipped" if r.skipped else "met" if r.outcome in (Outcome.PASS, None) and not r.failed else
                "finding" if r.outcome is Outcome.FINDING else "lab" if r.outcome is Outcome.LAB_PROBLEM else "error")
    tr.section(f"sipharness rule table ({config.getoption('--dut')} DUT)")
    tr.line(f"{'id':<7} {'met':>4} {'findings':>8} {'skipped':>7} {'lab':>4} {'errors':>6}  scenario")
    for sid, title in SCENARIOS.items():
        v = seen.get(sid, [])
        tr.line(f"{sid:<7} {v.count('met'):>4} {v.count('finding'):>8} {v.count('skipped'):>7} {v.count('lab'):>4} "
                f"{v.count('error'):>6}  {title}")
