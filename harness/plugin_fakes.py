"""The plugin's fixtures of the fakes: the test's clock and recorder, fake DNS and fake SIP servers.

Imported into :mod:`harness.plugin` (the one registered plugin). Why a module of its own: the
fakes run in one of two places, and that choice is this module's whole business:

- **the test's reactor** (pytest-twisted's), for a Twisted-coroutine test
  (``@pytest_twisted.ensureDeferred``/``inlineCallbacks``) and for any test that drives a DUT:
  the fakes share the test's clock (virtual by default, SPEC §9) and the test awaits;
- **a background reactor thread** (:mod:`harness.reactor_thread`) for any other test: a plain
  test that blocks (dnspython's sync resolver, a socket) or an asyncio test (pytest-asyncio). The
  fixtures then give proxies whose calls are marshalled to that thread, each with a deadline.
  The clock is real there (or ``--clock scaled:F``): SPEC §9 [interp] a virtual clock jumps when
  the fakes' process is idle, which a client waiting in real time in another thread would see
  as lost answers.

The fixture ``sip_fakes_in_thread`` chooses: ``None`` (default) as above, ``True`` or ``False``
forced. Override it in a conftest, a module or a class, or parametrize a test with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from sipharness.sipcore.clock import VirtualClock, make_clock, parse_clock_spec

from . import report as rep
from .plugin_outcomes import CLOCK, raise_unreported, state
from .reactor_thread import Marshalled, ReactorThread

__all__ = ["sip_fakes_in_thread", "sipharness_reactor_thread", "sip_clock", "sip_recorder", "make_fake_dns",
           "sip_fake_dns", "make_sip_server", "fake_dns", "sip_server", "stop_reactor_thread",
           "pcap_file_name"]

_THREAD = pytest.StashKey[ReactorThread]()
_SIDE = pytest.StashKey["_Side"]()
_TWISTED_MARKS = ("async_test", "inline_callbacks_test")  # pytest-twisted's marks of a Twisted-coroutine test
_DUT_FIXTURES = ("sip_dut", "sip_lab", "make_sip_lab")

_EXAMPLE_ZONE = ("$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns.example.com. hostmaster.example.com. "
                 "1 3600 600 86400 60\n@ IN NS ns.example.com.\nns IN A 127.0.0.53\n")


class _Side:
    """Where this test's fakes run: the reactor, a clock on it, and how to reach them from the test."""

    def __init__(self, reactor: Any, clock: Any, thread: ReactorThread | None):
        self.reactor, self.clock, self.thread = reactor, clock, thread
        # the wall time of phone time 0 (0 on the virtual clock: its phone time is its own), for pcap stamps
        self.epoch = 0.0 if isinstance(clock, VirtualClock) else (
            reactor.seconds() - clock.seconds() / getattr(clock, "speed", 1.0))

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` where the fakes live (a Deferred's result awaited, from a fixture)."""
        if self.thread is not None:
            return self.thread.call(fn, *args, **kwargs)
        from twisted.internet import defer

        result = fn(*args, **kwargs)
        if isinstance(result, defer.Deferred):
            import pytest_twisted

            return pytest_twisted.blockon(result)
        return result

    def public(self, obj: Any) -> Any:
        """What the test holds: the object itself, or its proxy from another thread."""
        return obj if self.thread is None else Marshalled(obj, self.thread)


class _Made:
    """The fakes one factory fixture made: the test's verdicts know them, and they stop after it."""

    def __init__(self, request: pytest.FixtureRequest):
        self.node = request.node
        self.side: _Side = request.node.stash[_SIDE]
        self._fakes: list[Any] = []

    @property
    def recorder(self) -> Any:
        return state(self.node).recorder

    def keep(self, fake: Any) -> Any:
        self._fakes.append(fake)
        state(self.node).fakes.append(fake)
        return fake

    def stop_all(self) -> None:
        """Stop every fake kept (where they live), then raise what one of them hit while serving."""
        for fake in self._fakes:
            self.side.run(fake.stop)
        raise_unreported(self.node)


def _twisted_test(item: pytest.Item) -> bool:
    # the attribute pytest-twisted's decorators set (pytest_twisted._get_mark reads the same)
    return getattr(getattr(item, "obj", None), "_pytest_twisted_mark", None) in _TWISTED_MARKS


def _in_thread(request: pytest.FixtureRequest, choice: bool | None) -> bool:
    needs_dut = any(name in request.fixturenames for name in _DUT_FIXTURES)
    if choice is None:
        return not (needs_dut or _twisted_test(request.node))
    if choice and needs_dut:
        raise pytest.UsageError(f"{request.node.nodeid}: sip_fakes_in_thread is True but the test drives a DUT "
                                f"(sip_lab/sip_dut), which runs in the test's reactor: write it as a Twisted "
                                f"coroutine (@pytest_twisted.ensureDeferred)")
    return bool(choice)


@pytest.fixture
def sip_fakes_in_thread() -> bool | None:
    """Where this test's fakes run: None (default) = a background reactor thread unless the test is a
    Twisted coroutine or drives a DUT; True = the thread; False = the test's reactor. Override to choose."""
    return None


@pytest.fixture(scope="session")
def sipharness_reactor_thread(pytestconfig: pytest.Config) -> ReactorThread:
    """The background reactor thread of the session (started on first use, stopped at the end)."""
    thread = pytestconfig.stash.get(_THREAD, None)
    if thread is None:
        thread = pytestconfig.stash[_THREAD] = ReactorThread().start()
    return thread


def stop_reactor_thread(config: pytest.Config) -> None:
    thread = config.stash.get(_THREAD, None)
    if thread is not None:
        thread.stop()


@pytest.fixture
def sip_clock(request: pytest.FixtureRequest, sip_fakes_in_thread):
    """The test's clock (SPEC §9): the fakes and the DUT all run on it."""
    spec = request.config.stash[CLOCK]
    state(request.node)  # (the harness's fixtures make the test one the verdicts are about)
    if _in_thread(request, sip_fakes_in_thread):
        thread = request.getfixturevalue("sipharness_reactor_thread")
        if parse_clock_spec(spec)[0] == "virtual":
            spec = "real"  # SPEC §9 [interp]: see the module's docstring
        side = _Side(thread.reactor, thread.call(make_clock, spec, thread.reactor), thread)
    else:
        from twisted.internet import reactor

        side = _Side(reactor, make_clock(spec, reactor), None)
    request.node.stash[_SIDE] = side
    clock = side.clock
    start = clock.seconds()
    yield side.public(clock)
    if side.thread is None:  # (in the thread the clock is real: no phone time to speak of)
        # How much phone time the test covered: summed in the terminal summary (bench/suite_time.py).
        request.node.user_properties.append((rep.PHONE_TIME_PROPERTY, round(clock.seconds() - start, 6)))
    if isinstance(clock, VirtualClock):
        clock.stop()


@pytest.fixture
def sip_recorder(request: pytest.FixtureRequest, sip_clock):
    """The shared record of every DNS query and SIP message the fakes of this test saw."""
    from sipharness.fakes.record import Recorder

    side = request.node.stash[_SIDE]
    recorder = side.run(Recorder, side.clock)
    state(request.node).recorder = recorder
    yield side.public(recorder)
    side.run(recorder.cancel_waits)
    directory = request.config.getoption("sipharness_pcap_dir")
    if directory:  # (the fakes' fixtures depend on this one: their teardown, and every record, came first)
        _write_pcap(directory, request.node.nodeid, side.run(list, recorder), side.epoch)
    raise_unreported(request.node)


def _write_pcap(directory: str, nodeid: str, records: list[Any], epoch: float) -> None:
    import os

    from sipharness.fakes.pcap import write_pcap

    os.makedirs(directory, exist_ok=True)
    write_pcap(os.path.join(directory, pcap_file_name(nodeid)), records, epoch=epoch)


def pcap_file_name(nodeid: str) -> str:
    """A test's pcap in ``--pcap-dir``: its ladder page's name (harness.report) ending in .pcap."""
    return rep.ladder_file_name(nodeid).removesuffix(".html") + ".pcap"


@pytest.fixture
def make_fake_dns(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """Factory of started fake DNS servers: ``make_fake_dns(*zone_texts, host="127.0.0.53", port=0, name="dns")``
    (no zone: an empty ``example.com``); stopped after the test."""
    from sipharness.fakes.dns import FakeDNS, Zone

    made = _Made(request)
    side = made.side

    def build(zone_texts: tuple[str, ...], host: str, port: int, name: str, options: dict[str, Any]) -> Any:
        zones = [Zone.from_text(text, filename=f"<{name} zone {i + 1}>")
                 for i, text in enumerate(zone_texts or (_EXAMPLE_ZONE,))]
        dns = made.keep(FakeDNS(zones, clock=side.clock, recorder=made.recorder, host=host, port=port, name=name,
                                reactor=side.reactor, **options))
        dns.start()  # (binds at once: its Deferred has fired)
        return dns

    def factory(*zone_texts: str, host: str = "127.0.0.53", port: int = 0, name: str = "dns", **options: Any):
        return side.public(side.run(build, zone_texts, host, port, name, options))

    yield factory
    made.stop_all()


@pytest.fixture
def sip_fake_dns(make_fake_dns):
    """A started fake DNS with an empty ``example.com`` zone; add records with ``sip_fake_dns.add(...)``."""
    return make_fake_dns()


@pytest.fixture
def make_sip_server(request: pytest.FixtureRequest, sip_clock, sip_recorder):
    """Factory of fake SIP servers, stopped after the test: in a Twisted-coroutine test
    ``srv = await make_sip_server("primary", "udp")``, in any other ``srv = make_sip_server("primary", "udp")``."""
    from twisted.internet import defer

    from sipharness.fakes.sip import FakeSipServer

    made = _Made(request)
    side = made.side

    def build(name: str, transport: str, port: int, options: dict[str, Any]) -> Any:
        srv = made.keep(FakeSipServer(name, clock=side.clock, recorder=made.recorder, reactor=side.reactor,
                                      host=options.pop("host", "127.0.0.1"), **options))
        return defer.maybeDeferred(srv.listen, transport, port).addCallback(lambda _: srv)

    if side.thread is not None:
        def factory(name: str = "sip", transport: str = "udp", *, port: int = 0, **options: Any) -> Any:
            return side.public(side.run(build, name, transport, port, options))
    else:
        async def factory(name: str = "sip", transport: str = "udp", *, port: int = 0, **options: Any) -> Any:
            return await build(name, transport, port, options)

    yield factory
    made.stop_all()


# Today's short names, kept as aliases a user's own fixture of the same name overrides.

@pytest.fixture
def fake_dns(sip_fake_dns):
    """Alias of ``sip_fake_dns``."""
    return sip_fake_dns


@pytest.fixture
def sip_server(make_sip_server):
    """Alias of ``make_sip_server``."""
    return make_sip_server
