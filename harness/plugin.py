"""The pytest plugin (entry point ``pytest11``): fixtures that wire the fakes to a device under test.

Thin by design, as pytest-httpserver's is: the cores (``fakes``, ``phone``, ``harness.lab``)
know nothing of pytest, and neither do the verdicts (:mod:`harness.report`: the four outcomes
of SPEC §10, the exit status, the HTML index) nor the lab preflight (:mod:`harness.preflight`).
This module turns them into options, markers and fixtures; :mod:`harness.plugin_outcomes` (its
hooks are imported here, so this module stays the one plugin) turns the verdicts into pytest's
reports, summary and exit status.

- Each fixture that makes a fake registers it in the test's state (``item.stash``); at teardown
  exceptions a fake (or the vendor driver's provisioning server) hit while serving and no report
  has shown yet fail the test as a harness error, with their tracebacks.
- ``sipharness_preflight`` runs the lab preflight once per session (per xdist worker) before the
  first test of a DUT in another process; when it fails the run stops after that test, a lab
  problem (or a harness error), before any test could blame the phone.
- The ``exact_time`` marker skips a test unless the DUT runs in this process on the virtual clock.

Names (:mod:`harness.plugin_options` says why): every option is ``--sip-NAME`` (dest ``sipharness_NAME``),
with today's ``--NAME`` as an alias where no conftest of the user took it. Every fixture has a
namespaced name the plugin's own fixtures depend on (``sip_lab``, ``sip_dut``, ``sip_fake_dns``,
``make_sip_server``, ``sip_tls_pki``, ``sip_clock``, ``sip_recorder``, ``sipharness_preflight``), factories
a user can override as pytest-httpserver's ``make_httpserver`` (``make_sip_lab``, ``make_fake_dns``,
``make_sip_server``), and today's short name as an alias a user's own fixture overrides (``lab``,
``dut``, ``fake_dns``, ``sip_server``, ``tls_pki``).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from sipharness.sipcore.clock import VirtualClock, make_clock, parse_clock_spec

from . import report as rep
from .plugin_fakes import (fake_dns, make_fake_dns, make_sip_server, sip_clock, sip_fake_dns,  # noqa: F401 - fixtures
                           sip_fakes_in_thread, sip_recorder, sip_server, sipharness_reactor_thread,
                           stop_reactor_thread)
from .plugin_options import NamespacedGroup, add_aliases
from .plugin_outcomes import CLOCK, RUN, RunReport, raise_unreported, scenario_of, state
from .plugin_outcomes import pytest_report_teststatus, pytest_runtest_makereport  # noqa: F401 - the verdict hooks
from .report import LabProblem

_PENDING: dict[int, list] = {}  # id(parser) → short names to add as aliases once the initial conftests are in
_GROUP = "sipharness"
pytest_plugins = ["sipharness.harness.plugin_farm"]  # the phone farm and the progress of long runs


def pytest_addoption(parser: pytest.Parser) -> None:
    group = NamespacedGroup(parser.getgroup(_GROUP, "SIP redundancy harness (--sip-NAME; --NAME too where free)"),
                            _PENDING.setdefault(id(parser), []))
    group.addoption("--dut", default="bundled", metavar="KIND",
                    help="device under test: bundled (default) or another registered kind")
    group.addoption("--clock", default=None,
                    help="virtual | scaled:FACTOR | real (SPEC §9). Default: virtual for the bundled phone, "
                         "real for devices in another process")
    group.addoption("--ladder-dir", default=None, metavar="DIR",
                    help="write one HTML SIP/DNS ladder per test into DIR, and DIR/index.html")
    group.addoption("--pcap-dir", default=None, metavar="DIR",
                    help="write one pcap per test into DIR: every DNS and SIP message the fakes saw, stamped in "
                         "phone time (Wireshark's flow graph matches the ladder)")
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


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """After the user's initial conftests added their options: our short names where still free."""
    result = yield
    pending = _PENDING.pop(id(parser), None)
    if pending:
        add_aliases(parser, parser.getgroup(_GROUP), pending)
    return result


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
        cls = dut_class(config.getoption("sipharness_dut"))
    except (KeyError, ImportError) as e:
        raise pytest.UsageError(str(e).strip('"')) from None
    spec = config.getoption("sipharness_clock") or cls.default_clock
    try:
        kind, _ = parse_clock_spec(spec)
    except ValueError as e:
        raise pytest.UsageError(f"--clock: {e}") from None
    if kind not in cls.clocks:
        raise pytest.UsageError(f"--clock {spec}: a {cls.kind} DUT runs on {' or '.join(cls.clocks)} clocks only "
                                f"(SPEC §9: a phone in another process cannot follow a virtual clock)")
    config.stash[CLOCK] = spec
    config.stash[RUN] = run = RunReport(config, cls.kind)
    config.pluginmanager.register(run, "sipharness-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_reactor_thread(config)


# ---------------------------------------------------------------------------------------------- fixtures
# (the fakes' fixtures, in the test's reactor or a background one, are in harness.plugin_fakes)

@pytest.fixture(scope="session")
def sip_tls_pki(tmp_path_factory, pytestconfig):
    """Test certificates (trustme): the fakes' TLS server context and a CA file a phone can trust."""
    from sipharness.sipcore.tls import TestPKI

    from .lab import HOSTS

    # the suites' domains too: a phone that checks the certificate against the domain it resolved
    # (PJSIP does, RFC 5922) must find it there, or every TLS test on a domain is a false finding
    names = ("pbx.example.com", "*.pbx.example.com", "yealink.pbx.com", "*.yealink.pbx.com")
    pki = TestPKI(hosts=tuple(dict.fromkeys(("127.0.0.1", "localhost", *HOSTS.values(), *names,
                                              *_lab_addresses(pytestconfig)))))
    pki.ca_file = str(tmp_path_factory.mktemp("pki") / "ca.pem")
    pki.export_ca(pki.ca_file)
    return pki


@pytest.fixture(scope="session")
def sipharness_netns(request: pytest.FixtureRequest) -> bool:
    """Lab-in-a-box (harness.netns): this test process (each xdist worker) enters a private network
    namespace of its own before its first lab, when the DUT kind needs one (``needs_netns``); the
    fake DNS then listens on port 53. Without root or namespaces those tests skip with the reason."""
    from . import netns
    from .dut import dut_class

    cls = dut_class(request.config.getoption("sipharness_dut"))
    if not cls.needs_netns:
        return False
    reason = netns.unavailable()
    if reason is None:
        try:
            netns.enter()
        except OSError as e:
            reason = str(e)
    if reason is not None:
        pytest.skip(f"the {cls.kind} DUT runs in the lab-in-a-box (a private network namespace): {reason}")
    return True


@pytest.fixture(scope="session")
def sipharness_preflight(request: pytest.FixtureRequest, sip_tls_pki, sipharness_netns):
    """The lab preflight (SPEC §10), once per session (per xdist worker), for a DUT in another process.

    Its lines when it passed (None when the DUT needs none); when it fails, the test that asked
    for it ends as a lab problem (or a harness error) and the run stops after it."""
    from .dut import dut_class

    config = request.config
    cls = dut_class(config.getoption("sipharness_dut"))
    if not cls.needs_preflight:
        return None
    try:
        lines = _blockon(defer.ensureDeferred(_preflight(config, cls, sip_tls_pki)))
    except LabProblem as e:
        config.stash[RUN].stopped_by_preflight = True
        request.session.shouldstop = f"lab problem: the lab preflight failed at step '{e.step}' (see above)"
        raise
    except Exception as e:  # any other failure of the preflight is the harness's, never a finding
        config.stash[RUN].stopped_by_preflight = True
        request.session.shouldstop = f"harness error in the lab preflight: {rep.first_line(e)}"
        if isinstance(e, rep.HarnessError):
            raise
        raise rep.HarnessError(f"the lab preflight failed: {e!r}") from e
    return lines


async def _preflight(config: pytest.Config, cls: Any, tls_pki: Any) -> list[str]:
    from twisted.internet import reactor

    from sipharness.fakes.record import Recorder

    from .preflight import run_preflight

    clock = make_clock(config.stash[CLOCK], reactor)
    try:
        dut = cls.from_options(clock, config.getoption, reactor=reactor, tls_pki=tls_pki)
        lab = _make_lab(config, clock, Recorder(clock), dut, tls_pki)
        return await run_preflight(lab, timeout=config.getoption("sipharness_preflight_timeout"),
                                   tls=config.stash[RUN].tls_selected, reactor=reactor)
    finally:
        if isinstance(clock, VirtualClock):
            clock.stop()


@pytest.fixture
def sip_dut(request: pytest.FixtureRequest, sip_clock, sip_tls_pki, sipharness_preflight):
    """The device under test behind one interface (SPEC §10), chosen by ``--sip-dut`` (``--dut``)."""
    from twisted.internet import reactor

    from .dut import dut_class

    run = request.config.stash[RUN]
    if sipharness_preflight is not None and not run.preflight_shown:
        run.preflight_shown = True
        request.node.user_properties.append((rep.PREFLIGHT_PROPERTY, "; ".join(sipharness_preflight)))
    cls = dut_class(request.config.getoption("sipharness_dut"))
    device = cls.from_options(sip_clock, request.config.getoption, reactor=reactor, tls_pki=sip_tls_pki)
    state(request.node).dut = device
    yield device
    _blockon(defer.maybeDeferred(device.stop))
    raise_unreported(request.node)


@pytest.fixture
def make_sip_lab(request: pytest.FixtureRequest, sip_clock, sip_recorder, sip_dut, sip_tls_pki):
    """Factory of labs: ``make_sip_lab(**overrides)`` → a :class:`harness.lab.Lab` on the test's clock,
    recorder and DUT (``overrides``: Lab's keywords, e.g. ``addresses``); each is taken down after the test.

    Override it (as pytest-httpserver's ``make_httpserver``) to change how ``sip_lab``/``lab`` is made."""
    st = state(request.node)
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        the_lab = _make_lab(request.config, sip_clock, sip_recorder, sip_dut, sip_tls_pki, **overrides)
        made.append(the_lab)
        if st.lab is None:
            st.lab = the_lab
        return the_lab

    yield make
    for the_lab in made:
        st.fakes.extend(the_lab.fakes)  # (down() forgets them; their errors are still to be read)
        _blockon(defer.ensureDeferred(the_lab.down()))
    raise_unreported(request.node)


@pytest.fixture
def sip_lab(make_sip_lab):
    """Builds DNS + SIP servers + DUT from a short description (``await sip_lab.up(...)``)."""
    return make_sip_lab()


def _make_lab(config: pytest.Config, clock: Any, recorder: Any, dut: Any, tls_pki: Any, **overrides: Any) -> Any:
    from twisted.internet import reactor

    from .lab import Lab

    addresses = _lab_addresses(config)
    # each xdist worker's DNS on its own address (workerinput exists only in an xdist worker: a pytest
    # run started from inside a worker inherits PYTEST_XDIST_WORKER but is not one)
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    from . import netns

    # a real phone cannot be told another DNS port; nor can a stack in the lab-in-a-box (harness.netns)
    options: dict[str, Any] = dict(reactor=reactor, tls=tls_pki, addresses=addresses,
                                   dns_port=netns.DNS_PORT if addresses or netns.active() else 0,
                                   dns_index=int(worker[2:] or 0))
    options.update(overrides)
    return Lab(clock, recorder, options.pop("dut", dut), **options)


# Today's short names, kept as aliases: a user's own fixture of the same name simply overrides the
# alias, and the plugin's fixtures (which depend on the namespaced names only) keep working.

@pytest.fixture
def lab(sip_lab):
    """Alias of ``sip_lab``."""
    return sip_lab


@pytest.fixture
def dut(sip_dut):
    """Alias of ``sip_dut``."""
    return sip_dut


@pytest.fixture(scope="session")
def tls_pki(sip_tls_pki):
    """Alias of ``sip_tls_pki``."""
    return sip_tls_pki


def _blockon(d: defer.Deferred) -> Any:
    """Wait for ``d`` from a fixture outside the reactor (pytest-twisted's greenlet)."""
    import pytest_twisted

    return pytest_twisted.blockon(d)


def _lab_addresses(config: pytest.Config) -> list[str]:
    """``--lab-address`` as a list; empty for the loopback default."""
    given = [a.strip() for a in config.getoption("sipharness_lab_address").split(",") if a.strip()]
    return [] if given == ["127.0.0.1"] else given


# ---------------------------------------------------------------------------------------------- collection

@pytest.hookimpl(trylast=True)  # (after -k / -m deselected: only the tests that will run select TLS)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    run = config.stash[RUN]
    for item in items:
        sid = scenario_of(item)
        if sid is not None:
            item.user_properties.append((rep.SCENARIO_PROPERTY, sid))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("tls") is not None or "tls" in [v for v in params.values() if isinstance(v, str)]:
            run.tls_selected = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``exact_time``: skipped unless the DUT runs on the harness's virtual clock (times exact to the tick)."""
    if item.get_closest_marker("exact_time") is None:
        return
    from .dut import dut_class

    cls = dut_class(item.config.getoption("sipharness_dut"))
    spec = item.config.stash[CLOCK]
    if not (cls.exact_time and parse_clock_spec(spec)[0] == "virtual"):
        pytest.skip(f"needs exact phone time (a DUT in this process on the virtual clock); this run drives a "
                    f"{cls.kind} DUT on a {spec} clock")
