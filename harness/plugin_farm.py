"""The plugin's phone farm and progress: the whole suite on each phone, per-phone reports, a moving long run.

Loaded with the plugin (``pytest_plugins`` of :mod:`harness.plugin`), its own options and hooks:

- **farm** (:mod:`harness.farm`): when the DUT kind has a farm of more than one phone
  (``--phone-ip A,B,C``, ``--sip-lab-file``), every test that drives a DUT is parametrized once
  per phone (the id is the phone's name) and marked ``xdist_group(<phone>)``; pytest-xdist with
  ``--dist loadgroup`` then gives each worker one phone's tests, all of them: the whole suite
  runs on each phone, the phones in parallel. ``-n N`` must equal the number of phones (remote
  lab hosts: ``--tx ssh=user@host//python=python3`` once per phone, see docs/lab.md); a plain
  ``-n N`` (``--dist load``) is switched to ``loadgroup``. Before each test the item's phone is
  made current (:func:`harness.farm.set_current`) so the DUT drives it, and its name is a
  user property (``sipharness.phone``) the reports carry. At the end: per phone, the outcomes
  line and (in ``--report-mode``) the rule table.
- **progress** (:mod:`harness.progress`): at the start, the estimated phone time and wall time of
  the selected tests on this clock (per phone for a farm); with ``--sip-progress S`` (default 30 on
  a real clock, off otherwise), every S wall seconds of a test, a line: its phone time of what
  it should take, and what it waits for.
- the phones' sessions (:mod:`harness.vendor_session`) end with the pytest session.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any

import pytest

from . import progress as prog
from . import report as rep
from .farm import PARAM, named, set_current
from .plugin import _GROUP, _PENDING
from .plugin_options import NamespacedGroup
from .plugin_outcomes import CLOCK, RUN

PHONE_PROPERTY = "sipharness.phone"
_FARM = pytest.StashKey[list]()
_TICK = pytest.StashKey["_Ticker"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = NamespacedGroup(parser.getgroup(_GROUP), _PENDING.setdefault(id(parser), []))
    group.addoption("--progress", type=float, default=None, metavar="S",
                    help="every S wall seconds of a test, a progress line (its phone time of what it should take, "
                         "what it waits for); default 30 on a real clock, off otherwise (0: off)")


def _farm(config: pytest.Config) -> list:
    """The DUT kind's farm (its phones), empty when the kind has none or one phone."""
    if _FARM in config.stash:
        return config.stash[_FARM]
    from .dut import dut_class

    phones: list = []
    try:
        cls = dut_class(config.getoption("sipharness_dut"))
    except (KeyError, ImportError):
        cls = None
    if cls is not None and hasattr(cls, "farm"):
        phones = cls.farm(config.getoption)
    config.stash[_FARM] = phones if len(phones) > 1 else []
    return config.stash[_FARM]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from .report import LabProblem

    try:
        farm = _farm(config)
    except LabProblem as e:
        raise pytest.UsageError(str(e)) from None
    if farm and hasattr(config, "workerinput"):
        # A worker parses the original command line: a plain -n there said --dist load. The controller
        # schedules by xdist_group; the worker must put the group in the test ids for it (xdist.remote).
        config.option.loadgroup = True
    if farm and not hasattr(config, "workerinput"):
        n = config.getoption("numprocesses", None) or len(_tx(config))
        if not n:
            raise pytest.UsageError(f"a phone farm of {len(farm)} phones runs one pytest-xdist worker per phone: add "
                                    f"-n {len(farm)} --dist loadgroup")
        if n != len(farm):
            raise pytest.UsageError(f"a phone farm of {len(farm)} phones ({', '.join(p.name for p in farm)}) needs "
                                    f"{len(farm)} pytest-xdist workers, one per phone; this run has {n}: use "
                                    f"-n {len(farm)}")
        dist = config.getoption("dist", "no")
        if dist == "load":
            config.option.dist = "loadgroup"  # the whole suite on each phone, not a share of it
        elif dist != "loadgroup":
            raise pytest.UsageError(f"a phone farm runs with --dist loadgroup (one worker per phone), not --dist {dist}")
    spec = config.stash[CLOCK]
    every = config.getoption("sipharness_progress")
    if every is None:
        every = 30.0 if spec.startswith("real") else 0.0
    config.stash[_TICK] = _Ticker(config, every)


def _tx(config: pytest.Config) -> list[str]:
    out = []
    for spec in config.getoption("tx", None) or []:
        count, star, rest = spec.partition("*")
        out += [rest] * int(count) if star and count.isdigit() else [spec]
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    farm = _farm(metafunc.config)
    if farm and "sip_dut" in metafunc.fixturenames:
        names = [p.name for p in farm]
        metafunc.fixturenames.append(PARAM)
        metafunc.parametrize(PARAM, names, ids=names)


@pytest.hookimpl(tryfirst=True)  # (before pytest-xdist's loadgroup reads the marks)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        phone = getattr(getattr(item, "callspec", None), "params", {}).get(PARAM)
        if phone is not None:
            item.add_marker(pytest.mark.xdist_group(phone))


def pytest_collection_finish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        _announce(session.config, [item.nodeid for item in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    config = node.config
    if not getattr(config, "_sipharness_announced", False):
        config._sipharness_announced = True
        _announce(config, ids)


def _announce(config: pytest.Config, nodeids: list[str]) -> None:
    from .dut import dut_class

    try:
        cls = dut_class(config.getoption("sipharness_dut"))
    except (KeyError, ImportError):
        return
    spec = config.stash[CLOCK]
    if spec.startswith("virtual") or not nodeids:
        return
    from sipharness.sipcore.clock import parse_clock_spec

    speed = parse_clock_spec(spec)[1] or 1.0
    emulated = "emulate" in (config.getoption("sipharness_phone_ip", None) or "") if cls.kind == "yealink" else True
    kind = "emulated" if emulated else "lab"
    farm = _farm(config)
    groups = {p.name: [] for p in farm} if farm else {"": []}
    for nodeid in nodeids:
        phone = prog.phone_of(nodeid, [p.name for p in farm])
        groups.setdefault(phone or "", []).append(prog.base_nodeid(nodeid, phone))
    for phone, ids in groups.items():
        if ids:
            e = prog.estimate(ids, clock_spec=spec, speed=speed, kind=kind)
            _say(config, e.line(spec, f" on {phone}" if phone else ""))


def _say(config: pytest.Config, line: str) -> None:
    """A line on the user's terminal now, from the controller or from an xdist worker (its stderr)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
        tr = config.pluginmanager.getplugin("terminalreporter")
        if tr is not None and not hasattr(config, "workerinput"):
            tr.write_line(line)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    phone_name = getattr(getattr(item, "callspec", None), "params", {}).get(PARAM)
    farm = _farm(item.config)
    set_current(named(farm, phone_name) if phone_name and farm else None)
    if phone_name:
        item.user_properties.append((PHONE_PROPERTY, phone_name))
    item.config.stash[_TICK].begin(item, phone_name)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    item.config.stash[_TICK].end()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """End every phone session of this process (provisioning servers, emulated phones)."""
    from .vendor_session import close_sessions, sessions

    set_current(None)
    if not sessions():
        return
    import pytest_twisted
    from twisted.internet import defer

    try:
        pytest_twisted.blockon(defer.ensureDeferred(close_sessions()))
    except Exception as e:  # noqa: BLE001 - the run's verdict is already made; say why a phone stayed on
        _say(session.config, f"sipharness: closing the phones' sessions failed: {e!r}")


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    farm = _farm(config)
    if not farm or RUN not in config.stash:
        return
    run = config.stash[RUN]
    results = run.results()
    by_phone: dict[str, list] = {p.name: [] for p in farm}
    for r in results:
        props = {k: v for k, v in run.tests[r.nodeid].props}
        phone = props.get(PHONE_PROPERTY)
        if phone in by_phone:
            by_phone[phone].append(r)
    tr = terminalreporter
    tr.section("sipharness per phone (the whole suite on each)")
    for p in farm:
        rs = by_phone[p.name]
        covered = sum(r.phone_time for r in rs if r.phone_time is not None)
        tr.write_line(f"{p.label()}: {len(rs)} tests, {covered:.0f} s of phone time; "
                      f"outcomes: {rep.Tally.of(rs).line()}")
    if config.getoption("sipharness_report_mode"):
        from .coverage import SCENARIOS

        for p in farm:
            tr.section(f"sipharness rule table: {p.label()}")
            for line in rep.rule_table(by_phone[p.name], SCENARIOS):
                tr.line(line)


class _Ticker:
    """Every ``every`` wall seconds of a test, a progress line (nothing when ``every`` is 0)."""

    def __init__(self, config: pytest.Config, every: float):
        self.config, self.every = config, every
        self.item: Any = None
        self.call: Any = None
        self.expect: float | None = None
        self.who = ""
        self.count = 0

    def begin(self, item: pytest.Item, phone: str | None) -> None:
        if self.every <= 0:
            return
        from twisted.internet import reactor

        self.item, self.count = item, self.count + 1
        self.who = f" [{phone}]" if phone else ""
        base = prog.base_nodeid(item.nodeid, phone)
        self.expect = prog.expected(base, prog.values_of(self.config.stash[CLOCK]))
        of = f", about {self.expect:.0f} s of phone time" if self.expect else ""
        _say(self.config, f"sipharness progress{self.who}: test {self.count}: {item.nodeid}{of}")
        self.call = reactor.callLater(self.every, self._tick)

    def _tick(self) -> None:
        from twisted.internet import reactor

        from .plugin_outcomes import STATE

        st = self.item.stash.get(STATE, None) if self.item is not None else None
        clock = getattr(getattr(st, "recorder", None), "clock", None)
        if clock is not None:  # (each test's clock starts at phone time 0)
            waits = []
            for journal in (getattr(st, "recorder", None), getattr(getattr(st, "dut", None), "events", None)):
                if journal is not None and hasattr(journal, "pending"):
                    waits += journal.pending()
            _say(self.config, prog.tick_line(self.who, self.item.name, clock.seconds(), 0.0, self.expect, waits))
        self.call = reactor.callLater(self.every, self._tick)

    def end(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = self.item = None
