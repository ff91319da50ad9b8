"""A vendor phone (Yealink style) as the device under test, or its emulation by the bundled phone.

Why this shape (SPEC §10): a vendor phone has no API but HTTP. The harness is its
provisioning server (:mod:`harness.provisioning`: ``<mac>.cfg`` and the Action URL receiver,
on the lab address), tells it to re-provision, dial, answer and hang up through its Action URI
(``GET /servlet?key=...`` with HTTP basic auth), and turns its Action URL callbacks into the
:class:`DutEvent` s the suites wait on. The fakes see its SIP and DNS traffic as they see any
phone's, so every assertion of the suites holds unchanged.

- ``start()``: serve the scenario's ``.cfg`` plus what the driver needs (action URLs back to
  the harness, ``features.action_uri_limit_ip`` = the harness address), ``key=AutoP``, and wait
  for the phone to fetch ``<mac>.cfg``. ``stop()`` parks a real phone (same file with every
  account disabled, fetched again) so it stops calling servers that are gone; it ends an
  emulated phone's process (quit, TERM, KILL with deadlines) and always stops the web server.
- ``--phone-ip emulate`` runs the bundled phone's daemon mode with the same HTTP interface
  (:mod:`phone.emulation`) over loopback, spawned with ``reactor.spawnProcess`` (the reactor is
  never blocked) on the harness's scaled clock: ``--clock scaled:X@EPOCH`` gives both processes
  the same phone time, and the callbacks carry ``$phone_time`` so events are stamped exactly.
- Errors name the step (trigger provisioning, provisioning, dial, Action URL callback, ...).
  Those of the lab (an unreachable phone, wrong credentials, a missing allow list, a phone that
  never fetches its file, a callback from another address) are :class:`VendorLabProblem` s with
  the fix: a *lab problem*, never a finding (SPEC §10); the rest (the emulation's process
  failing) are harness errors. A refused callback, a serving error of the provisioning server
  or the emulation's process dying fails every pending and later wait of the test at once
  instead of letting it run into its timeout.
- Lab preflight (:mod:`harness.preflight`): :meth:`VendorPhone.ping` reads the account status
  over the Action URI; ``start()`` is the provisioning the preflight checks.
- ``--emulate-fault NAME`` sets the emulated phone up badly on purpose (``phone.emulation.Fault``),
  to prove that each kind of broken lab ends as a lab problem.
- Phone farm: ``--phone-ip A,B,C`` under pytest-xdist: worker ``gwN`` drives the N-th phone
  (and, with a fixed ``--provision-port P``, serves it on port P + N).

Deadlines of these HTTP steps are wall seconds on the reactor (a phone's web server answers
in wall time whatever the test's clock says); event times are phone seconds of the test clock.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from typing import Any
from urllib.parse import quote

from twisted.internet import defer, error, protocol
from twisted.web.client import Agent  # imported here, not at the first Action URI: start() is timed
from twisted.web.http_headers import Headers
from twisted.python.failure import Failure as _Failure

from sipharness.sipcore.events import CallState, EventKind
from sipharness.sipcore.journal import WaitTimeout

from .baresip import read_cfg
from .child import ChildProcess, deadline, track
from .dut import DeviceUnderTest, DutEvent
from .provisioning import ProvisioningServer
from .report import HarnessError, LabProblem

__all__ = ["VendorPhone", "VendorError", "VendorLabProblem", "pick_phone", "ACTION_EVENTS", "EMULATE"]

EMULATE = "emulate"
#: action_url.<event> keys the driver provisions; call_proceeding exists only in the emulation.
ACTION_EVENTS = ("registered", "register_failed", "unregistered", "incoming_call", "outgoing_call",
                 "call_proceeding", "ringback", "call_established", "call_terminated")
_CALL_STATE = {"outgoing_call": CallState.CALLING, "call_proceeding": CallState.PROCEEDING,
               "ringback": CallState.RINGING, "call_established": CallState.ESTABLISHED}
_ACCOUNT_EVENTS = {"registered": EventKind.REGISTERED, "register_failed": EventKind.REGISTER_FAILED,
                   "unregistered": EventKind.UNREGISTERED}
_WARM: dict[tuple, "_Warm"] = {}  # parked emulated phones waiting for this worker's next test


class _Warm:
    """An emulated phone left on, parked, with its provisioning server (its URL is set in the phone)."""

    def __init__(self, proc: Any, ptransport: Any, prov: Any, epoch: float, phone_http: str):
        self.proc, self.ptransport, self.prov, self.epoch, self.phone_http = proc, ptransport, prov, epoch, phone_http


class VendorError(HarnessError):
    """A step of driving the vendor phone failed; the message names the step (a harness error)."""


class VendorLabProblem(VendorError, LabProblem):
    """A step failed because of the lab (address, credentials, allow list, provisioning URL): ``fix`` says what to do."""


def pick_phone(spec: str, worker: str | None) -> tuple[str, int]:
    """(phone, index) this pytest-xdist ``worker`` drives from ``--phone-ip A,B,C`` (gwN takes the N-th).

    A lone ``emulate`` serves every worker: each one spawns an emulated phone of its own."""
    phones = [p.strip() for p in (spec or "").split(",") if p.strip()]
    if not phones:
        raise VendorLabProblem("--dut yealink has no phone", "give --phone-ip IP[:PORT][,IP...] (or --phone-ip emulate)")
    index = 0
    if worker and worker.startswith("gw") and worker[2:].isdigit():
        index = int(worker[2:])
    if phones == [EMULATE]:
        return EMULATE, index  # every worker runs an emulated phone of its own
    if index >= len(phones):
        raise VendorLabProblem(f"phone farm: pytest-xdist worker {worker} has no phone: --phone-ip lists {len(phones)} "
                               f"({', '.join(phones)})", f"run with -n {len(phones)} at most")
    return phones[index], index


class _Emulation(ChildProcess):
    """The emulated phone's process: JSON lines out (kept, bounded), its Action URI port, its end."""

    KEEP = 400

    ERR_KEEP = 8192

    def __init__(self, on_end: Any):
        super().__init__()
        self.lines: list[str] = []
        self._buf = b""
        self.listening: defer.Deferred = defer.Deferred()
        self.booted: defer.Deferred = defer.Deferred()  # its power-on provisioning is over (applied or failed)
        self._on_end = on_end
        self.provisionings = 0  # provisioning attempts the phone has finished (applied or failed)
        self._provisioned: list[defer.Deferred] = []

    def outReceived(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            self.lines = (self.lines + [line])[-self.KEEP:]
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            detail = str(obj.get("detail") or "")
            if obj.get("kind") == "daemon" and detail.startswith("http listening on ") and not self.listening.called:
                self.listening.callback(detail.rsplit(" ", 1)[1])
            elif detail.startswith(("provisioned from", "provisioning:")):
                self.provisionings += 1
                if not self.booted.called:
                    self.booted.callback(None)
                waiters, self._provisioned = self._provisioned, []
                for d in waiters:
                    d.callback(None)

    def next_provisioning(self) -> defer.Deferred:
        """Fires when the phone has finished its next provisioning (or has ended)."""
        if self.ended:
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._provisioned.append(d)
        return d

    def on_end(self) -> None:
        for d in self._provisioned:
            d.callback(None)
        self._provisioned = []
        if not self.listening.called:
            self.listening.callback(None)
        if not self.booted.called:
            self.booted.callback(None)
        self._on_end(self)

    def output(self, limit: int = 12) -> str:
        err = self.err.decode("utf-8", "replace").strip()
        return "\n".join(self.lines[-limit:] + ([f"[stderr] {err[-1500:]}"] if err else [])) or "(no output)"


class VendorPhone(DeviceUnderTest):
    """A Yealink-style phone driven by provisioning, Action URI and Action URL (``--dut yealink``)."""

    kind = "yealink"
    exact_time = False
    interp_binding = False
    validates_config = False  # a vendor phone ignores a bad value; it does not refuse the file
    default_clock = "real"
    clocks = ("real", "scaled")
    needs_preflight = True
    fetches_config = True

    #: wall seconds: one Action URI request; the emulation's process to listen; quit, TERM, KILL
    HTTP_TIMEOUT = 5.0
    SPAWN_TIMEOUT = 20.0
    QUIT_GRACE, TERM_GRACE, KILL_GRACE = 3.0, 2.0, 5.0

    @classmethod
    def add_options(cls, group: Any) -> None:
        group.addoption("--phone-ip", default=None, metavar="IP[:PORT][,...]|emulate",
                        help="yealink DUT: the phone's address (Action URI on port 80 unless :PORT); a list drives "
                             "one phone per pytest-xdist worker (gwN takes the N-th); 'emulate' runs the bundled "
                             "phone's vendor emulation on loopback")
        group.addoption("--phone-user", default="admin", help="yealink DUT: the phone's web user (default admin)")
        group.addoption("--phone-password", default="admin",
                        help="yealink DUT: the phone's web password (default admin)")
        group.addoption("--provision-port", type=int, default=0, metavar="PORT",
                        help="yealink DUT: port of the provisioning web server on --lab-address (default 0: any; "
                             "a real phone needs a fixed one; worker gwN of a phone farm uses PORT + N)")
        group.addoption("--provision-timeout", type=float, default=20.0, metavar="S",
                        help="yealink DUT: wall seconds the phone has to fetch its .cfg after key=AutoP (default 20)")
        group.addoption("--emulate-fault", action="append", default=[], metavar="NAME",
                        help="yealink DUT with --phone-ip emulate: set the emulated phone up badly on purpose "
                             "(repeatable; phone.emulation.Fault: ignore-dns, refuse-ca, never-fetch, dead-control, "
                             "never-register), to see the lab preflight name the fix")

    @classmethod
    def from_options(cls, clock: Any, options: Any, **shared: Any) -> "VendorPhone":
        phone, index = pick_phone(options("sipharness_phone_ip"), os.environ.get("PYTEST_XDIST_WORKER"))
        port = options("sipharness_provision_port")
        pki = shared.get("tls_pki")
        faults = list(options("sipharness_emulate_fault") or ())
        if faults and phone != EMULATE:
            raise VendorLabProblem(f"--emulate-fault {' '.join(faults)} with --phone-ip {phone}",
                                   "faults are for the emulated phone only (--phone-ip emulate)")
        return cls(clock, reactor=shared.get("reactor"), phone=phone, user=options("sipharness_phone_user"),
                   password=options("sipharness_phone_password"),
                   lab_address=options("sipharness_lab_address").split(",")[0].strip(),
                   provision_port=port + index if port else 0,
                   provision_timeout=options("sipharness_provision_timeout"),
                   ca_file=getattr(pki, "ca_file", None), mac=f"001565{index + 1:06x}", warm=phone == EMULATE,
                   emulation_args=tuple(a for f in faults for a in ("--emulate-fault", f)))

    def __init__(self, clock: Any, *, reactor: Any = None, phone: str = EMULATE, user: str = "admin",
                 password: str = "admin", lab_address: str = "127.0.0.1", provision_port: int = 0,
                 provision_timeout: float = 20.0, ca_file: str | None = None, mac: str = "001565000001",
                 emulation_args: tuple[str, ...] = (), warm: bool = False):
        super().__init__(clock)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self._reactor = reactor
        self.emulate = phone == EMULATE
        speed = float(getattr(clock, "speed", 1.0))
        if not self.emulate and speed != 1.0:
            raise VendorLabProblem(f"--dut yealink --phone-ip {phone}: a real phone runs on the real clock only",
                                   f"use --clock real, not scaled:{speed:g}; scaled clocks are for --phone-ip emulate")
        if self.emulate:
            self.phone_host, self.phone_http = "127.0.0.1", None
        else:
            host, sep, port = phone.rpartition(":") if phone.count(":") == 1 else (phone, "", "")
            self.phone_host = host if sep else phone
            self.phone_http = f"{self.phone_host}:{port or 80}"
        self.user, self.password = user, password
        self.lab_address = lab_address
        self.provision_port = provision_port
        self.provision_timeout = provision_timeout
        self.ca_file = ca_file
        self.mac = mac
        self.emulation_args = tuple(emulation_args)
        #: keep the emulated phone on, parked, for the next test of this worker (as a lab phone stays on)
        self.warm = warm and self.emulate and not self.emulation_args
        self._speed = speed
        self._clock_epoch = self._reactor.seconds() - clock.seconds() / speed  # wall time of phone time 0
        self._phone_epoch = self._clock_epoch  # the same for the emulated phone's clock (unless reused)
        self.errors: list[VendorError] = []
        self.notes: list[str] = []
        self.started = False
        self._prov: ProvisioningServer | None = None
        self._proc: _Emulation | None = None
        self._ptransport: Any = None
        self._cfg: dict[str, str] = {}
        self._waits: dict[defer.Deferred, defer.Deferred] = {}  # a pending wait → the journal's wait it forwards
        self._calls: dict[str, bool] = {}  # call_id → established seen
        self._hangup_asked = False
        self._in_call = False
        self._stopping: defer.Deferred | None = None

    # ------------------------------------------------------------------ configuration
    def apply_config(self, cfg_text: str) -> defer.Deferred:
        """Keep the file for ``start()``; the emulation's process is started here, parked (see ``start``)."""
        try:
            self._cfg = read_cfg(cfg_text, "<yealink dut .cfg>")
        except ValueError as e:
            return defer.fail(e)
        self.cfg_text = cfg_text
        if self.emulate and not self.started:
            return defer.ensureDeferred(self._power_on())
        return defer.succeed(None)

    async def _power_on(self) -> None:
        """Web server up and the emulated phone running with the parked file (every account disabled).

        Done before ``start()`` so that start costs what it costs on a lab phone that is already on:
        key=AutoP and one fetch, not a process start (SPEC §9: the suites time the phone from start()).
        """
        self._raise_errors()
        if self._proc is None and self.warm:
            self._take_warm()
        self._serve(park=True)
        if self._proc is None or self._proc.ended:
            await self._spawn()

    def _warm_key(self) -> tuple:
        return (self._speed, self.lab_address, self.provision_port, self.ca_file, self.mac)

    def _take_warm(self) -> None:
        w = _WARM.pop(self._warm_key(), None)
        if w is None or w.proc.ended:
            return
        self._proc, self._ptransport, self._prov = w.proc, w.ptransport, w.prov
        self._phone_epoch, self.phone_http = w.epoch, w.phone_http
        w.proc._on_end = self._ended
        w.prov.on_callback, w.prov.on_refused, w.prov.on_error = self._callback, self._refused, self._serving_error
        w.prov.errors = self.serving_errors

    async def _leave_warm(self) -> bool:
        """Park the emulated phone and keep it for the next test; False if it cannot be (then it is reaped)."""
        proc = self._proc
        if not (self.warm and self.started and proc is not None and not proc.ended and not self.errors
                and self._prov is not None):
            return False
        before = len(self.notes)
        await self.park()
        if len(self.notes) != before or proc.ended:
            return False
        self._prov.on_callback = lambda *a: None  # stale callbacks between tests go nowhere
        self._prov.on_refused = lambda *a: None
        self._prov.on_error = None
        self._prov.errors = []
        _WARM[self._warm_key()] = _Warm(proc, self._ptransport, self._prov, self._phone_epoch, self.phone_http)
        proc._on_end = lambda p: None
        self._proc = self._ptransport = None
        self._prov = None
        return True

    def _serve(self, *, park: bool) -> None:
        if self._prov is None:
            self._prov = ProvisioningServer(reactor=self._reactor, host=self.lab_address, port=self.provision_port,
                                            phone_host=self.phone_host, on_callback=self._callback,
                                            on_refused=self._refused, on_error=self._serving_error,
                                            errors=self.serving_errors)
        self._prov.start()
        self._prov.cfg_text = self.vendor_cfg(self.cfg_text, park=park)

    def effective_config(self) -> dict[str, str]:
        raise NotImplementedError("a vendor phone does not report its effective configuration in .cfg terms")

    def vendor_cfg(self, cfg_text: str, *, park: bool = False) -> str:
        """The file the phone gets: the scenario's, then the driver's keys (action URLs, whitelist).

        ``park``: every enabled account disabled (what a stopped real phone is left with).
        """
        base = self._prov.url.rstrip("/") if self._prov is not None and self._prov.listening else "http://UNSET"
        lines = cfg_text.rstrip("\n").splitlines()
        if park:
            lines = [_disable(line) for line in lines]
        lines += ["## added by sip-redundancy-harness (harness/vendor.py): Action URI whitelist and Action URLs",
                  f"features.action_uri_limit_ip = {self.lab_address}"]
        for event in ACTION_EVENTS:
            lines.append(f"action_url.{event} = {base}/action/{event}?mac=$mac&ip=$ip&user=$active_user"
                         f"&host=$active_host&call_id=$call_id&phone_time=$phone_time")
        if not lines[0].startswith("#!version:"):
            lines.insert(0, "#!version:1.0.0.1")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        if self.cfg_text is None:
            raise VendorError("yealink DUT start(): apply_config() first")
        self._raise_errors()
        if self.emulate and (self._proc is None or self._proc.ended):
            await self._power_on()
        self._serve(park=False)
        await self._provision("provisioning")
        self.started = True

    async def _provision(self, step: str) -> None:
        mark = len(self._prov.fetches)
        await self._action(f"trigger {step} (Action URI key=AutoP)", "key=AutoP")
        try:
            await self._prov.wait_fetch(self.provision_timeout, since=mark)
        except WaitTimeout:
            raise VendorLabProblem(f"step '{step}': the phone at {self.phone_host} accepted key=AutoP but did not "
                                   f"fetch <mac>.cfg within {self.provision_timeout:g} s",
                                   f"set its provisioning server URL to {self._prov.url} (docs/lab.md)",
                                   evidence=self._tail().removeprefix("; ")) from None
        self._raise_errors()

    def stop(self) -> defer.Deferred:
        if self._stopping is not None:
            return self._stopping
        d = defer.ensureDeferred(self._stop())

        def done(result: Any) -> Any:
            self._stopping = None
            return result
        self._stopping = d.addBoth(done)
        return self._stopping

    async def _stop(self) -> None:
        try:
            if self.emulate:
                if not await self._leave_warm():
                    await self._reap()
            elif self.started:
                await self.park()
        finally:
            self.started = False
            prov, self._prov = self._prov, None
            if prov is not None:
                await prov.stop()
            self._fail_waits(VendorError("the yealink DUT was stopped"))

    async def park(self) -> None:
        """Leave a real phone quiet: end a call, serve the file with every account disabled, AutoP.

        Failures are noted in :attr:`notes` (the phone may already be gone), never raised: the
        test's own outcome is what matters at teardown.
        """
        if self._prov is None or self.cfg_text is None:
            return
        try:
            if self._in_call:
                await self._action("park: end the call (Action URI key=CANCEL)", "key=CANCEL")
            self._prov.cfg_text = self.vendor_cfg(self.cfg_text, park=True)
            # The emulation says when it has applied a file; a real phone does not (it may reboot).
            applied = self._proc.next_provisioning() if self._proc is not None else None
            await self._provision("park")
            if applied is not None and not await deadline(self._reactor, applied, self.provision_timeout):
                self.notes.append(f"park: the emulated phone did not apply the parked file within "
                                  f"{self.provision_timeout:g} s")
        except VendorError as e:
            self.notes.append(f"park: {e}")

    # ------------------------------------------------------------------ the emulation's process
    async def _spawn(self) -> None:
        speed = self._speed
        self._phone_epoch = self._clock_epoch
        clock_spec = ("real" if speed == 1.0 else f"scaled:{speed:g}") + f"@{self._phone_epoch:.6f}"
        argv = [sys.executable, "-m", "sipharness.phone.daemon", "--provision", self._prov.url, "--mac", self.mac,
                "--http", "127.0.0.1:0", "--clock", clock_spec, "--name", "yealink-emulation", "--exit-on-eof",
                "--action-uri-allow", self.lab_address]
        if self.ca_file:
            argv += ["--ca-file", self.ca_file]
        argv += list(self.emulation_args)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = _Emulation(self._ended)
        self._ptransport = self._reactor.spawnProcess(proc, sys.executable, argv, env=env, path=root)
        self._proc = proc
        if proc.pid is not None and not proc.ended:
            track(proc.pid, self._ptransport, "vendor emulation")
        ok = await deadline(self._reactor, proc.listening, self.SPAWN_TIMEOUT)
        address = proc.listening.result if proc.listening.called else None
        if not ok or proc.ended or not address:
            what = (f"exited with status {proc.status}" if proc.ended else
                    f"did not listen within {self.SPAWN_TIMEOUT:g} s")
            await self._reap()
            raise VendorError(f"step 'start the emulated phone': {' '.join(argv[1:])} {what}:\n{proc.output()}")
        self.phone_http = address
        # Let its power-on provisioning (the parked file) finish: the phone is then settled, as a lab
        # phone is, and start() costs only key=AutoP and one fetch. A failed fetch is start()'s to report.
        await deadline(self._reactor, proc.booted, self.SPAWN_TIMEOUT)

    def _ended(self, proc: _Emulation) -> None:
        if proc is self._proc and self._stopping is None:
            self._fail(VendorError(f"the emulated phone exited unexpectedly (status {proc.status}):\n{proc.output()}"))

    async def _reap(self) -> None:
        """quit on stdin, then TERM, then KILL, with deadlines: the process is gone when this returns."""
        proc, ptransport = self._proc, self._ptransport
        if proc is None:
            return
        try:
            for step, grace in (("quit", self.QUIT_GRACE), (signal.SIGTERM, self.TERM_GRACE),
                                (signal.SIGKILL, self.KILL_GRACE)):
                if proc.ended:
                    break
                try:
                    if step == "quit":
                        ptransport.write(b"quit\n")
                    else:
                        ptransport.signalProcess(step)
                except (error.ProcessExitedAlready, OSError):
                    pass
                await deadline(self._reactor, proc.when_ended(), grace)
            if not proc.ended:
                raise VendorError(f"the emulated phone (pid {proc.pid}) did not exit after quit, TERM, KILL")
        finally:
            self._proc = self._ptransport = None

    @property
    def pid(self) -> int | None:
        """The emulated phone's process id while it runs (None otherwise)."""
        return self._proc.pid if self._proc is not None and not self._proc.ended else None

    # ------------------------------------------------------------------ Action URI
    async def _action(self, step: str, query: str) -> str:
        """``GET http://PHONE/servlet?QUERY`` with basic auth; VendorError naming ``step`` unless 200."""
        if self.phone_http is None:
            raise VendorError(f"step '{step}': the phone's Action URI address is unknown (not started)")
        url = f"http://{self.phone_http}/servlet?{query}"
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        agent = Agent(self._reactor, connectTimeout=self.HTTP_TIMEOUT, bindAddress=(self.lab_address, 0))
        d = agent.request(b"GET", url.encode("ascii"), Headers({b"authorization": [f"Basic {token}".encode()]}))
        timer = self._reactor.callLater(self.HTTP_TIMEOUT, d.cancel)
        try:
            response = await d
            body = (await _read_body(response)).decode("utf-8", "replace").strip()
        except defer.CancelledError:
            raise VendorLabProblem(f"step '{step}': the phone at {self.phone_http} did not answer GET {url} within "
                                   f"{self.HTTP_TIMEOUT:g} s", "is --phone-ip right, and the phone on?") from None
        except (error.ConnectError, error.ConnectionRefusedError, OSError) as e:
            raise VendorLabProblem(f"step '{step}': the phone at {self.phone_http} is unreachable (GET {url}): {e}",
                                   "is --phone-ip right, and the phone on?") from None
        finally:
            if timer.active():
                timer.cancel()
        if response.code == 401:
            raise VendorLabProblem(f"step '{step}': the phone at {self.phone_http} refused the credentials (HTTP 401)",
                                   f"check --phone-user {self.user!r} and --phone-password")
        if response.code == 403:
            raise VendorLabProblem(f"step '{step}': the phone at {self.phone_http} refused the Action URI from "
                                   f"{self.lab_address} (HTTP 403)",
                                   "add it to the phone's features.action_uri_limit_ip (docs/lab.md)")
        if response.code != 200:
            raise VendorError(f"step '{step}': GET {url}: HTTP {response.code}: {body[:300]}")
        return body

    def ping(self) -> defer.Deferred:
        """The control channel answers (lab preflight): the account status over the Action URI."""
        async def get() -> str:
            await self._action("control channel (Action URI phonecfg=get&accounts=1)", "phonecfg=get&accounts=1")
            return f"the phone at {self.phone_http} answered its Action URI"
        return defer.ensureDeferred(get())

    def lab_hint(self, step: str) -> str:
        if step == "control channel":
            return (f"is --phone-ip right ({self.phone_http or 'emulated'}), the phone on, and {self.lab_address} in "
                    f"its features.action_uri_limit_ip?")
        if step == "events" and self._prov is not None:
            return (f"its Action URL callbacks (action_url.registered = {self._prov.url}action/registered?...) must "
                    f"reach this host over HTTP")
        if step == "tls":
            return ("the emulated phone trusts the CA given with --ca-file" if self.emulate else
                    "upload it to the phone's trusted certificates (and keep the phone's clock right)")
        return ""

    def accounts_state(self) -> defer.Deferred:
        """``/servlet?phonecfg=get&accounts=1``: the phone's account status (a dict, as JSON)."""
        async def get() -> Any:
            body = await self._action("read account status (phonecfg=get&accounts=1)", "phonecfg=get&accounts=1")
            try:
                return json.loads(body)
            except ValueError:
                return {"text": body}
        return defer.ensureDeferred(get())

    # ------------------------------------------------------------------ calls
    def call(self, uri: str, account: int = 1) -> defer.Deferred:
        number = uri.split(":", 1)[1] if uri.startswith(("sip:", "sips:")) else uri
        p = f"account.{account}."
        outgoing = f"{self._cfg.get(p + 'user_name', '')}@{self._cfg.get(p + 'sip_server.1.address', '')}"
        self._hangup_asked = False
        self._in_call = True
        query = f"key=number={quote(number, safe='')}&outgoing_uri={quote(outgoing, safe='')}"
        return self._safe(self._action(f"dial {uri} (Action URI key=number=...)", query), account)

    def answer(self) -> defer.Deferred:
        return self._safe(self._action("answer (Action URI key=OK)", "key=OK"), 1)

    def hangup(self) -> defer.Deferred:
        self._hangup_asked = True
        return self._safe(self._action("hang up (Action URI key=CANCEL)", "key=CANCEL"), 1)

    def _safe(self, work: Any, account: int) -> defer.Deferred:
        """A command the suites fire and forget: a failure is a ``failed`` call event, never an unhandled error."""
        def failed(f: Any) -> None:
            self.notes.append(f.getErrorMessage())
            self._emit(EventKind.CALL_STATE, self.clock.seconds(), account=account, state=CallState.FAILED,
                       detail=f.getErrorMessage())
        return defer.ensureDeferred(work).addCallback(lambda _: None).addErrback(failed)

    # ------------------------------------------------------------------ events (Action URL callbacks)
    def _emit(self, kind: EventKind, time: float, **fields: Any) -> None:
        self.events.append(DutEvent(time=time, kind=kind, **fields))

    def _callback(self, event: str, params: dict[str, str], client: str) -> None:
        time = self.clock.seconds()
        if self.emulate:  # the emulation says when it happened, on the shared clock
            try:  # its clock may have started for an earlier test (a warm phone): same speed, other epoch
                time = float(params.get("phone_time", "")) + (self._phone_epoch - self._clock_epoch) * self._speed
            except ValueError:
                pass
        account = self._account_of(params.get("user", ""))
        call_id = _value(params.get("call_id"))
        detail = f"action URL {event} from {client}"
        if event in _ACCOUNT_EVENTS:
            self._emit(_ACCOUNT_EVENTS[event], time, account=account,
                       server=self._server_of(account, params.get("host", "")), detail=detail)
        elif event == "incoming_call":
            self._in_call = True
            self._emit(EventKind.INCOMING_CALL, time, account=account, call_id=call_id, detail=detail)
        elif event in _CALL_STATE:
            if event == "call_established" and call_id:
                self._calls[call_id] = True
            self._emit(EventKind.CALL_STATE, time, account=account, state=_CALL_STATE[event], call_id=call_id,
                       detail=detail)
        elif event == "call_terminated":
            up = self._calls.pop(call_id, False) if call_id else False
            self._in_call = False
            # SPEC §10 call states: a call that was up, or that we hung up, ends "terminated";
            # one refused or timed out before it was answered ends "failed".
            state = CallState.TERMINATED if up or self._hangup_asked else CallState.FAILED
            self._emit(EventKind.CALL_STATE, time, account=account, state=state, call_id=call_id, detail=detail)
        else:
            self.notes.append(f"ignored action URL callback {event!r} from {client}")

    def _account_of(self, user: str) -> int:
        user = _value(user) or ""
        for x in range(1, 7):
            if user and self._cfg.get(f"account.{x}.user_name") == user and self._cfg.get(f"account.{x}.enable") == "1":
                return x
        return 1

    def _server_of(self, account: int, host: str) -> int | None:
        """Server Y of ``account`` whose address is the host the phone says it registered with."""
        host = _value(host)
        for y in (1, 2):
            if host and self._cfg.get(f"account.{account}.sip_server.{y}.address") == host:
                return y
        return None

    def _refused(self, message: str) -> None:
        step, _, what = message.partition(":")
        self._fail(VendorLabProblem(f"step '{step}': {what.strip()}",
                                    "only the phone under test may call the harness (another phone of the farm with a "
                                    "wrong URL? a browser?)"))

    def _serving_error(self, e: BaseException) -> None:
        """The provisioning server hit an exception: the test's waits end now (a harness error, not a finding)."""
        self._fail(VendorError(f"the harness's provisioning server failed while serving: {e!r}"))

    # ------------------------------------------------------------------ waits that a harness error ends at once
    def wait_for(self, kind: str, timeout: float, *, count: int = 1, since: int | None = 0,
                 **fields: Any) -> defer.Deferred:
        if self.errors:
            return defer.fail(self.errors[0])
        inner = super().wait_for(kind, timeout, count=count, since=since, **fields)
        out: defer.Deferred = defer.Deferred()
        self._waits[out] = inner

        def forward(result: Any) -> None:
            self._waits.pop(out, None)
            if not out.called:
                out.callback(result) if not isinstance(result, _Failure) else out.errback(result)
            elif isinstance(result, _Failure):
                result.trap(defer.CancelledError)
        inner.addBoth(forward)
        return out

    def _fail(self, err: VendorError) -> None:
        self.errors.append(err)
        self.notes.append(str(err))
        self._fail_waits(err)

    def _fail_waits(self, err: VendorError) -> None:
        waits, self._waits = self._waits, {}
        for out, inner in waits.items():
            if not out.called:
                out.errback(err)
            inner.cancel()

    def _raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    # ------------------------------------------------------------------ observation
    @property
    def log(self) -> list[str]:
        lines = list(self.notes)
        if self._proc is not None:
            lines += self._proc.lines[-60:]
        return lines

    def _tail(self) -> str:
        return f"; the emulated phone said:\n{self._proc.output()}" if self._proc is not None else ""


def _read_body(response: Any) -> defer.Deferred:
    """The whole body of a twisted.web response (``readBody`` without its abortConnection warning).

    A copy of phone.emulation.read_body on purpose: driving a real phone must not import the bundled phone."""
    d: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(d))
    return d


class _Body(protocol.Protocol):
    def __init__(self, done: defer.Deferred):
        self.done, self.parts = done, []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.parts))


def _value(text: str | None) -> str | None:
    """A callback parameter, or None when the phone left the ``$variable`` unexpanded or empty."""
    return None if not text or text.startswith("$") else text


def _disable(line: str) -> str:
    key, sep, value = line.partition("=")
    k = key.strip()
    if sep and k.startswith("account.") and k.endswith(".enable") and value.strip() == "1":
        return f"{k} = 0"
    return line

