"""The device under test (SPEC §10): one interface, whatever phone is behind it.

The suites never know which phone they drive. They configure it with a ``.cfg`` text,
start it, wait for its events and ask it to call, answer and hang up; everything they
*assert* about the wire comes from the fakes' records, which see a real phone's traffic
exactly as they see the bundled phone's. A DUT kind only has to map these few operations
to its own means (the bundled phone's Python API here; a vendor phone's provisioning and
Action URI, or a softphone's control socket, elsewhere).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from sipharness.sipcore.events import CallState, EventKind
from sipharness.sipcore.journal import Journal

__all__ = ["DutEvent", "DeviceUnderTest", "HarnessErrorsEndWaits", "ConfigRejected", "NotExpressible", "BundledPhone", "DUT_KINDS",
           "register_dut_kind", "dut_class"]


@dataclass(frozen=True)
class DutEvent:
    """What a DUT reports: the same fields for every kind of phone."""

    time: float  # phone seconds on the harness's clock
    kind: EventKind
    account: int | None = None
    server: int | None = None
    target: str | None = None
    state: CallState | None = None  # for EventKind.CALL_STATE
    call_id: str | None = None
    detail: str = ""


class ConfigRejected(ValueError):
    """The DUT refused a ``.cfg`` (SPEC §1): the message names file:line, the key and the valid range."""


class NotExpressible(Exception):
    """The DUT has no setting for a ``.cfg`` key the test needs (``apply_config``): the test is skipped
    as "not expressible", never a finding, since the phone was never asked (harness.translation)."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()):
        super().__init__(message)
        self.keys = keys


class DeviceUnderTest:
    """Base class of every DUT kind; subclasses fill the operations.

    ``exact_time`` says whether the DUT's timers run on the harness's clock (the bundled
    phone in this process): only then, on the virtual clock, are times exact to the tick (a
    test marked ``exact_time`` is skipped otherwise).
    """

    kind = "abstract"
    exact_time = False
    #: whether [interp] rules (SPEC: our reading where the guide is silent) are binding
    interp_binding = False
    #: whether apply_config() refuses a bad value with ConfigRejected (a vendor phone may ignore it silently)
    validates_config = False
    #: the clock used when --clock is not given; "virtual" only for a DUT running in this process
    default_clock = "real"
    #: clocks this kind can run on (a phone in another process cannot follow a virtual clock)
    clocks = ("real", "scaled")
    #: a DUT in another process: the lab preflight (harness.preflight) proves the lab before its first test
    needs_preflight = False
    #: it fetches its configuration itself (a vendor phone's auto-provisioning): the preflight checks the fetch
    fetches_config = False
    #: it runs in the lab-in-a-box (harness.netns): each test process enters a private network namespace
    #: first, the fake DNS listens on port 53 there (kinds that need it skip, with the reason, where it cannot)
    needs_netns = False

    @classmethod
    def add_options(cls, group: Any) -> None:
        """Add this kind's command-line options to the plugin's option group (none by default).

        ``group.addoption("--phone-ip", ...)`` registers ``--sip-phone-ip`` with the destination
        ``sipharness_phone_ip`` (and ``--phone-ip`` as an alias when free: harness.plugin_options)."""

    @classmethod
    def from_options(cls, clock: IReactorTime, options: Any, **shared: Any) -> "DeviceUnderTest":
        """Build the DUT from pytest's ``config.getoption`` (read by destination: ``options("sipharness_phone_ip")``)
        and the plugin's shared objects (``reactor``, ``tls_pki``)."""
        return cls(clock)

    def __init__(self, clock: IReactorTime):
        self.clock = clock
        self.events: Journal[DutEvent] = Journal(clock)
        self.cfg_text: str | None = None
        #: exceptions the driver's own servers hit while serving (a vendor phone's provisioning server):
        #: the plugin reports them as harness errors, as it does the fakes'
        self.serving_errors: list[BaseException] = []

    # configuration and life cycle
    def apply_config(self, cfg_text: str) -> defer.Deferred:
        raise NotImplementedError

    def start(self) -> defer.Deferred:
        raise NotImplementedError

    def effective_config(self) -> dict[str, str]:
        """The configuration the DUT will use, as ``.cfg`` key → value text (SPEC §1 names)."""
        raise NotImplementedError(f"{self.kind} DUT cannot report its effective configuration")

    def stop(self) -> defer.Deferred:
        raise NotImplementedError

    def ping(self) -> defer.Deferred:
        """Prove the control channel answers (lab preflight, step 1); fires with what answered.

        Called after ``apply_config``; a DUT in this process has nothing to prove."""
        return defer.succeed(f"{self.kind} DUT in this process")

    def lab_hint(self, step: str) -> str:
        """What to set on this kind of phone when the lab preflight step ``step`` fails ("" when nothing)."""
        return ""

    # calls
    def call(self, uri: str, account: int = 1) -> Any:
        raise NotImplementedError

    def answer(self) -> Any:
        raise NotImplementedError

    def hangup(self) -> Any:
        raise NotImplementedError

    # observation
    @property
    def log(self) -> list[str]:
        """The DUT's own account of its decisions, where it gives one (for failure reports)."""
        return []

    def wait_for(self, kind: EventKind | str, timeout: float, *, count: int = 1, since: int | None = 0,
                 **fields: Any) -> defer.Deferred:
        """Wait for the ``count``-th event of ``kind`` whose fields equal ``fields``.

        ``kind`` and a ``state`` field are words of :mod:`sipcore.events` (a member or its text);
        any other word is refused at once, with the known ones, instead of waiting for nothing."""
        try:
            kind = EventKind(kind)
            if fields.get("state") is not None:
                fields["state"] = CallState(fields["state"])
        except ValueError as e:
            known = ", ".join(k.value for k in EventKind) + "; states " + ", ".join(s.value for s in CallState)
            raise ValueError(f"wait_for({kind!r}, ...): {e} (kinds: {known})") from None

        def match(e: DutEvent) -> bool:
            return e.kind == kind and all(getattr(e, k) == v for k, v in fields.items())

        desc = kind + "".join(f" {k}={v}" for k, v in fields.items())
        if count > 1:
            desc = f"event #{count} {desc}"
        return self.events.wait_for(match, timeout, count=count, since=since, what=f"{self.kind} DUT {desc}")

    def wait_registered(self, account: int = 1, timeout: float = 60.0, server: int | None = None,
                        **kw: Any) -> defer.Deferred:
        fields: dict[str, Any] = {"account": account}
        if server is not None:
            fields["server"] = server
        return self.wait_for(EventKind.REGISTERED, timeout, **fields, **kw)


class HarnessErrorsEndWaits(DeviceUnderTest):
    """A DUT driven from outside this process: a harness error ends every wait at once (SPEC §10).

    When the child process dies or the driver's own server breaks, a test waiting for the phone's
    event must not run its timeout out and end as a finding: :meth:`_fail_waits` fails every
    pending wait with the error, and a wait asked after it fails at once. Subclasses record the
    error in ``errors`` and call :meth:`_fail_waits`."""

    def __init__(self, clock: IReactorTime):
        super().__init__(clock)
        self.errors: list[BaseException] = []
        self._waits: dict[defer.Deferred, defer.Deferred] = {}  # a pending wait → the journal's wait it forwards

    def wait_for(self, kind: EventKind | str, timeout: float, *, count: int = 1, since: int | None = 0,
                 **fields: Any) -> defer.Deferred:
        if self.errors:
            return defer.fail(self.errors[0])
        inner = super().wait_for(kind, timeout, count=count, since=since, **fields)
        out: defer.Deferred = defer.Deferred()
        self._waits[out] = inner

        def forward(result: Any) -> None:
            self._waits.pop(out, None)
            if not out.called:
                out.errback(result) if isinstance(result, Failure) else out.callback(result)
            elif isinstance(result, Failure):
                result.trap(defer.CancelledError)
        inner.addBoth(forward)
        return out

    def _fail_waits(self, err: BaseException) -> None:
        """Fail every pending wait with ``err`` (and stop the journal's waits behind them)."""
        waits, self._waits = self._waits, {}
        for out, inner in waits.items():
            if not out.called:
                out.errback(err)
            inner.cancel()


class BundledPhone(DeviceUnderTest):
    """The bundled phone (``phone.Phone``) in this process, on the harness's clock."""

    kind = "bundled"
    exact_time = True
    interp_binding = True
    validates_config = True
    default_clock = "virtual"
    clocks = ("virtual", "real", "scaled")

    @classmethod
    def from_options(cls, clock: IReactorTime, options: Any, **shared: Any) -> "BundledPhone":
        pki = shared.get("tls_pki")
        return cls(clock, reactor=shared.get("reactor"), tls_context=pki.client_context() if pki else None)

    def __init__(self, clock: IReactorTime, *, reactor: Any = None, local_host: str = "127.0.0.1",
                 tls_context: Any = None, dns_server: tuple[str, int] | None = None, name: str = "phone"):
        super().__init__(clock)
        self._reactor = reactor
        self._local_host = local_host
        self._tls_context = tls_context
        self._dns_server = dns_server
        self._name = name
        self._config = None
        self.phone = None
        self._unsubscribe: Callable[[], None] | None = None

    def apply_config(self, cfg_text: str) -> defer.Deferred:
        from sipharness.phone.config import ConfigError, loads_config

        try:
            self._config = loads_config(cfg_text, filename=f"<{self._name}.cfg>")
        except ConfigError as e:
            return defer.fail(ConfigRejected(str(e)))
        self.cfg_text = cfg_text
        return defer.succeed(None)

    def effective_config(self) -> dict[str, str]:
        from sipharness.phone.config import dumps_config

        if self._config is None:
            raise RuntimeError("BundledPhone.effective_config(): apply_config() first")
        out: dict[str, str] = {}
        for line in dumps_config(self._config).splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
        return out

    def start(self) -> defer.Deferred:
        from sipharness.phone.phone import Phone

        if self._config is None:
            raise RuntimeError("BundledPhone.start(): apply_config() first")
        # SPEC §2: the phone draws the order of equal SRV records at random per resolution; each
        # start gets its own seeded generator, so a run is reproducible and DNS-8 never flakes
        self._starts = getattr(self, "_starts", 0) + 1
        self.phone = Phone(self._config, clock=self.clock, reactor=self._reactor, dns_server=self._dns_server,
                           local_host=self._local_host, tls_context=self._tls_context, name=self._name,
                           rng=random.Random(f"{self._name}/{self._starts}"))
        self._unsubscribe = self.phone.events.subscribe(self._forward)
        return defer.maybeDeferred(self.phone.start)

    def _forward(self, e: Any) -> None:
        self.events.append(DutEvent(time=e.time, kind=EventKind(e.kind), account=e.account, server=e.server,
                                    target=e.target, state=CallState(e.state) if e.state else None,
                                    call_id=e.call_id, detail=e.detail))

    def stop(self) -> defer.Deferred:
        phone, self.phone = self.phone, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if phone is None:
            return defer.succeed(None)
        return defer.maybeDeferred(phone.stop)

    def call(self, uri: str, account: int = 1) -> Any:
        return self._running().call(uri, account=account)

    def answer(self) -> Any:
        return self._running().answer()

    def hangup(self) -> Any:
        return self._running().hangup()

    @property
    def log(self) -> list[str]:
        return list(self.phone.log) if self.phone is not None else []

    def _running(self):
        if self.phone is None:
            raise RuntimeError("the bundled phone is not running: start() it first")
        return self.phone


#: ``--dut`` names → "module:Class" of a DeviceUnderTest subclass, imported only when used.
DUT_KINDS: dict[str, str] = {
    "bundled": "sipharness.harness.dut:BundledPhone",
    "baresip": "sipharness.harness.baresip:BaresipPhone",
    "yealink": "sipharness.harness.vendor:VendorPhone",
    "pjsua": "sipharness.harness.pjsua:PjsuaPhone",
    "linphone": "sipharness.harness.linphone:LinphonePhone",
}


def register_dut_kind(name: str, target: str) -> None:
    """Make ``--dut NAME`` build ``target`` ("module:Class"); other projects can add kinds."""
    DUT_KINDS[name] = target


def dut_class(name: str) -> type[DeviceUnderTest]:
    import importlib

    if name not in DUT_KINDS:
        raise KeyError(f"--dut {name!r}: known kinds are {', '.join(sorted(DUT_KINDS))}")
    module, _, cls = DUT_KINDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
