"""The pytest plugin (entry point ``pytest11``): fixtures that wire the fakes to a device under test.

Thin by design, as pytest-httpserver's is: the cores (``fakes``, ``phone``, ``harness.lab``)
know nothing of pytest; this module only turns them into fixtures and options, puts the
SIP/DNS ladder of a failed test at the end of its report, re-raises errors the fakes hit
while serving, and turns deviations from SPEC [interp] rules into *findings* for phones
other than the bundled one (SPEC preamble: a finding is yellow, not a harness failure).

Fixtures: ``sip_clock``, ``sip_recorder``, ``dut``, ``lab``, ``fake_dns``, ``sip_server``
(a factory), ``tls_pki``. Options: ``--dut``, ``--clock``, ``--ladder-dir``, ``--lab-address``.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from sipharness.sipcore.clock import ScaledClock, VirtualClock, parse_clock_spec

_STATE = "_sipharness_state"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sipharness", "SIP redundancy harness")
    group.addoption("--dut", default="bundled",
                    help="device under test: bundled (default) or another registered kind")
    group.addoption("--clock", default=None,
                    help="virtual | scaled:FACTOR | real (SPEC §9). Default: virtual for the bundled phone, "
                         "real for devices in another process")
    group.addoption("--ladder-dir", default=None, metavar="DIR",
                    help="write one HTML SIP/DNS ladder per test into DIR")
    group.addoption("--lab-address", default="127.0.0.1", metavar="ADDR[,ADDR...]",
                    help="this host's address(es) a phone on the network reaches: the fakes listen there and the "
                         "DNS on port 53 (default: loopback, SPEC §8 hosts). Scenarios that need more distinct "
                         "addresses than given are skipped")
    group.addoption("--report-mode", action="store_true", default=False,
                    help="qualify a phone nobody here wrote: every rule it breaks is a finding (summarised in a "
                         "table), and only harness errors (crash, hang, leaked server) fail the run")
    from .dut import DUT_KINDS, dut_class

    for name in DUT_KINDS:
        try:
            dut_class(name).add_options(group)
        except ImportError:  # a kind whose extra dependencies are absent offers no options
            pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(id, passage=''): SPEC §8 scenario id and the guide's passage checked")
    config.addinivalue_line("markers", "interp(rule): checks a SPEC [interp] rule; a deviation of a non-bundled "
                                       "phone is reported as a finding, not a failure")
    config.addinivalue_line("markers", "exact_time: needs the DUT on the harness's clock (skipped otherwise)")
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
    config._sipharness_clock = spec  # type: ignore[attr-defined]


class _TestState:
    """What the plugin keeps per test to report on it: recorder, DUT, fakes, clock."""

    def __init__(self) -> None:
        self.recorder = None
        self.dut = None
        self.clock = None
        self.servers: list[Any] = []


def _state(request: pytest.FixtureRequest) -> _TestState:
    node = request.node
    st = getattr(node, _STATE, None)
    if st is None:
        st = _TestState()
        setattr(node, _STATE, st)
    return st


@pytest.fixture
def sip_clock(request: pytest.FixtureRequest):
    """The test's clock (SPEC §9): the fakes and the DUT all run on it."""
    from twisted.internet import reactor

    kind, speed = parse_clock_spec(request.config._sipharness_clock)
    clock = VirtualClock(reactor) if kind == "virtual" else ScaledClock(reactor, speed)
    _state(request).clock = clock
    start = clock.seconds()
    yield clock
    # How much phone time the test covered: summed in the terminal summary (bench/suite_time.py).
    request.node.user_properties.append(("phone_time_s", round(clock.seconds() - start, 6)))
    if isinstance(clock, VirtualClock):
        clock.stop()


@pytest.fixture
def sip_recorder(request: pytest.FixtureRequest, sip_clock):
    """The shared record of every DNS query and SIP message the fakes of this test saw."""
    from sipharness.fakes.record import Recorder

    recorder = Recorder(sip_clock)
    _state(request).recorder = recorder
    yield recorder
    recorder.cancel_waits()


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


@pytest.fixture
def dut(request: pytest.FixtureRequest, sip_clock, tls_pki):
    """The device under test behind one interface (SPEC §10), chosen by ``--dut``."""
    from twisted.internet import reactor

    from .dut import dut_class

    cls = dut_class(request.config.getoption("--dut"))
    device = cls.from_options(sip_clock, request.config.getoption, reactor=reactor, tls_pki=tls_pki)
    _state(request).dut = device
    yield device
    pytest_twisted.blockon(defer.maybeDeferred(device.stop))


@pytest.fixture
def lab(request: pytest.FixtureRequest, sip_clock, sip_recorder, dut, tls_pki):
    """Builds DNS + SIP servers + DUT from a short description (``await lab.up(...)``)."""
    from twisted.internet import reactor

    from .lab import Lab

    addresses = _lab_addresses(request.config)
    # each xdist worker's DNS on its own address (workerinput exists only in an xdist worker: a pytest
    # run started from inside a worker inherits PYTEST_XDIST_WORKER but is not one)
    worker = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    the_lab = Lab(sip_clock, sip_recorder, dut, reactor=reactor, tls=tls_pki, addresses=addresses,
                  dns_port=53 if addresses else 0, dns_index=int(worker[2:] or 0))
    st = _state(request)
    yield the_lab
    st.servers = list(the_lab._servers) + list(the_lab._dns)
    errors = _server_errors(st.servers)
    pytest_twisted.blockon(defer.ensureDeferred(the_lab.down()))
    if errors:
        raise errors[0]


@pytest.fixture
def sip_server(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """Factory of fake SIP servers: ``srv = await sip_server("primary", "udp")``; stopped after the test."""
    from twisted.internet import reactor

    from sipharness.fakes.sip import FakeSipServer

    made: list[Any] = []

    async def factory(name: str = "sip", transport: str = "udp", *, port: int = 0, **options: Any):
        srv = FakeSipServer(name, clock=sip_clock, recorder=sip_recorder, reactor=reactor,
                            host=options.pop("host", "127.0.0.1"), **options)
        made.append(srv)
        await defer.maybeDeferred(srv.listen, transport, port)
        return srv

    yield factory
    _state(request).servers.extend(made)
    errors = _server_errors(made)
    for srv in made:
        pytest_twisted.blockon(defer.maybeDeferred(srv.stop))
    if errors:
        raise errors[0]


@pytest.fixture
def fake_dns(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """A started fake DNS with an empty ``example.com`` zone; add records with ``fake_dns.add(...)``."""
    from twisted.internet import reactor

    from sipharness.fakes.dns import FakeDNS, Zone

    zone = Zone.from_text("$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns.example.com. hostmaster.example.com. "
                          "1 3600 600 86400 60\n@ IN NS ns.example.com.\nns IN A 127.0.0.53\n")
    dns = FakeDNS([zone], clock=sip_clock, recorder=sip_recorder, host="127.0.0.53", port=0, reactor=reactor)
    pytest_twisted.blockon(defer.maybeDeferred(dns.start))
    yield dns
    pytest_twisted.blockon(defer.maybeDeferred(dns.stop))


def _lab_addresses(config: pytest.Config) -> list[str]:
    """``--lab-address`` as a list; empty for the loopback default."""
    given = [a.strip() for a in config.getoption("--lab-address").split(",") if a.strip()]
    return [] if given == ["127.0.0.1"] else given


def _server_errors(servers: list[Any]) -> list[BaseException]:
    """Exceptions the fakes hit while serving (re-raised in the test, as pytest-httpserver does)."""
    out: list[BaseException] = []
    for s in servers:
        out.extend(getattr(s, "errors", []) or [])
    return out


# -- reports -----------------------------------------------------------------------------------

def _ladder_text(st: _TestState) -> str | None:
    if st is None or st.recorder is None or not len(st.recorder):
        return None
    from sipharness.fakes.ladder import render_ladder

    return render_ladder(list(st.recorder))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    report._sipharness_scenario = _scenario_of(item)  # type: ignore[attr-defined]
    st: _TestState | None = getattr(item, _STATE, None)
    if st is None:
        return
    if report.when == "call":
        _write_html_ladder(item, st)
    if report.failed and call.excinfo is not None:
        from .lab import LabTooSmall

        if isinstance(call.excinfo.value, LabTooSmall):  # a lab with too few addresses: not the phone's fault
            report.outcome, report.longrepr = "skipped", (str(item.path), 0, f"Skipped: {call.excinfo.value}")
            return
        _maybe_finding(item, call, report, st)
    if report.failed:
        ladder = _ladder_text(st)
        longrepr = report.longrepr
        if ladder and hasattr(longrepr, "addsection"):
            if st.dut is not None and st.dut.log:
                longrepr.addsection(f"{st.dut.kind} DUT decisions", "\n".join(st.dut.log[-60:]))
            longrepr.addsection("SIP/DNS ladder (phone time, s)", ladder)
        elif ladder:
            report.sections.append(("SIP/DNS ladder (phone time, s)", ladder))


def _maybe_finding(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport, st: _TestState) -> None:
    """An [interp] rule broken by a non-bundled phone is a finding, not a harness failure."""
    marker = item.get_closest_marker("interp")
    report_mode = item.config.getoption("--report-mode")
    if st.dut is None or not (report_mode or (marker is not None and not st.dut.interp_binding)):
        return
    if not isinstance(call.excinfo.value, AssertionError):
        return  # a crash or a harness error stays a failure (a WaitTimeout is an AssertionError: a finding)
    rule = marker.args[0] if marker is not None and marker.args else _scenario_of(item) or "rule"
    text = str(call.excinfo.value).splitlines()[0] if str(call.excinfo.value) else "deviation"
    report.outcome = "skipped"
    report.wasxfail = f"finding ({rule}): {text}"


def _scenario_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("scenario")
    return marker.args[0] if marker is not None and marker.args else None


def _write_html_ladder(item: pytest.Item, st: _TestState) -> None:
    directory = item.config.getoption("--ladder-dir")
    if not directory or st.recorder is None:
        return
    from sipharness.fakes.ladder import render_ladder_html

    os.makedirs(directory, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[:180] + ".html"
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
        f.write(render_ladder_html(list(st.recorder), title=html.escape(item.nodeid)))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    tr = terminalreporter
    covered = [value for reports in tr.stats.values() for rep in reports
               if getattr(rep, "when", None) == "teardown"
               for key, value in getattr(rep, "user_properties", ()) if key == "phone_time_s"]
    if covered:
        tr.write_line(f"sipharness: {len(covered)} tests covered {sum(covered):.3f} s of phone time "
                      f"on a {config._sipharness_clock} clock")
    # From the reports, not from this process's memory: under xdist the findings were made in
    # the workers and only their reports reach the controller.
    findings = [(rep.nodeid, *rep.wasxfail[len("finding ("):].split("): ", 1))
                for rep in tr.stats.get("xfailed", []) if getattr(rep, "wasxfail", "").startswith("finding (")]
    if findings:
        tr.section("sipharness findings (rules this phone does not meet)", yellow=True)
        for nodeid, rule, text in findings:
            tr.line(f"{rule}: {nodeid}: {text}", yellow=True)
    if config.getoption("--report-mode"):
        _rule_table(tr, config)


def _rule_table(tr, config) -> None:
    """Per SPEC §8 scenario: how many of its tests the phone met, and the findings."""
    from .coverage import SCENARIOS

    seen: dict[str, list[str]] = {}
    for rep in tr.stats.get("passed", []) + tr.stats.get("failed", []) + tr.stats.get("skipped", []) + \
            tr.stats.get("xfailed", []):
        sid = getattr(rep, "_sipharness_scenario", None)
        if sid is not None and (rep.when == "call" or (rep.when == "setup" and not rep.passed)):
            seen.setdefault(sid, []).append(_verdict(rep))
    tr.section(f"sipharness rule table ({config.getoption('--dut')} DUT)")
    tr.line(f"{'id':<7} {'met':>4} {'findings':>8} {'skipped':>7} {'errors':>6}  scenario")
    for sid, title in SCENARIOS.items():
        v = seen.get(sid, [])
        tr.line(f"{sid:<7} {v.count('met'):>4} {v.count('finding'):>8} {v.count('skipped'):>7} "
                f"{v.count('error'):>6}  {title}")


def _verdict(rep) -> str:
    if rep.passed:
        return "met"
    if getattr(rep, "wasxfail", "").startswith("finding"):
        return "finding"
    if rep.skipped:
        return "skipped"
    return "error"
