"""A vendor phone (Yealink style) as the device under test, or its emulation by the bundled phone.

Why this shape (SPEC §10): a vendor phone has no API but HTTP, and it follows its vendor's
documents, not our wishes. The harness is its provisioning server and the receiver of its
callbacks for the whole session (:mod:`harness.vendor_session`), writes each file in the phone's
firmware generation with every key the driver needs (:mod:`harness.vendor_cfg`), tells it to
re-provision, dial, answer and hang up through its Action URI (:mod:`harness.action_uri`), and
turns its Action URL callbacks into the :class:`DutEvent` s the suites wait on
(:mod:`harness.action_url`). The fakes see its SIP and DNS traffic as they see any phone's, so
every assertion of the suites holds unchanged; what a callback cannot say (the server an account
registered with) the suites read from the fakes' records.

- ``start()``: serve the scenario's file (a new serial line: its MD5 is new, so the phone applies
  it), ``key=AutoP``, wait for the fetch, then for the phone to be **ready**: a fetch is not an
  apply, and a file whose network keys changed reboots the phone, which is ready at its
  ``setup_autop_finish`` callback. A lab phone must ask the fake DNS on port 53 (the vendor has
  no DNS port setting): a fake DNS elsewhere is a lab problem naming ``--lab-address``.
- ``stop()`` parks the phone (its call ended with ``key=CALLEND``, the same file with every
  account disabled, fetched again), so it stops calling servers that are gone; the session keeps
  its provisioning server up for the next test and for a phone that reboots meanwhile.
- ``--phone-ip emulate`` powers on the bundled phone's vendor emulation (:mod:`phone.emulation`,
  every documented behaviour on) on loopback, on the harness's scaled clock
  (``--clock scaled:X@EPOCH``: both processes read the same phone time; the callbacks' extra
  ``$phone_time`` stamps events exactly), once per session.
- Errors name the step (trigger provisioning, provisioning, dial, Action URL callback, ...).
  Those of the lab are :class:`VendorLabProblem` s with the fix: a *lab problem*, never a
  finding (SPEC §10); the rest (the emulation's process failing) are harness errors. A refused
  callback, a serving error of the provisioning server or the emulation's process dying fails
  every pending and later wait of the test at once instead of letting it run into its timeout.
- A phone farm (:mod:`harness.farm`, ``--phone-ip A,B,C`` or ``--sip-lab-file``): each test drives
  the phone of its item (the plugin runs the suite once per phone).

Deadlines of these HTTP steps are wall seconds on the reactor (a phone's web server answers in
wall time whatever the test's clock says); event times are phone seconds of the test clock.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet import defer

from sipharness.phone.vendor_keys import Firmware, keys_for
from sipharness.sipcore.events import EventKind

from .action_url import CallbackMap
from .dut import DutEvent, HarnessErrorsEndWaits
from .farm import EMULATE
from .translation import read_cfg
from .vendor_cfg import Template, scenario_dns, vendor_cfg
from .vendor_errors import VendorError, VendorLabProblem
from .vendor_options import add_options, dut_keywords, farm_of
from .vendor_session import PhoneSession, session_for

__all__ = ["VendorPhone", "VendorError", "VendorLabProblem", "EMULATE"]


class VendorPhone(HarnessErrorsEndWaits):
    """A Yealink-style phone driven by provisioning, Action URI and Action URL (``--dut yealink``)."""

    kind = "yealink"
    exact_time = False
    interp_binding = False
    validates_config = False  # a vendor phone ignores a bad value; it does not refuse the file
    default_clock = "real"
    clocks = ("real", "scaled")
    needs_preflight = True
    fetches_config = True

    #: wall seconds a lab phone's Action URI is watched after the session's first file (does it reboot?)
    REBOOT_GRACE = 5.0
    SPAWN_TIMEOUT = 20.0

    @classmethod
    def add_options(cls, group: Any) -> None:
        add_options(group)

    @classmethod
    def farm(cls, options: Any) -> list:
        """The lab's phones (:mod:`harness.farm`): more than one makes the plugin run the suite on each."""
        return farm_of(options)

    @classmethod
    def from_options(cls, clock: Any, options: Any, **shared: Any) -> "VendorPhone":
        return cls(clock, reactor=shared.get("reactor"), **dut_keywords(options, shared.get("tls_pki")))

    def __init__(self, clock: Any, *, reactor: Any = None, phone: str = EMULATE, name: str = "phone1",
                 user: str = "admin", password: str = "admin", lab_address: str = "127.0.0.1", provision_port: int = 0,
                 provision_timeout: float = 20.0, reboot_timeout: float | None = None, ca_pem: bytes | None = None,
                 ca_file: str | None = None, mac: str = "001565000001", firmware: str = "8x", auth: str = "auto",
                 emulation_args: tuple[str, ...] = (), keep: bool = False):
        super().__init__(clock)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self._reactor = reactor
        self.emulate = phone == EMULATE
        self.name = name
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
        self.user, self.password, self.auth = user, password, auth
        self.lab_address = lab_address
        self.provision_port = provision_port
        self.provision_timeout = provision_timeout
        self.reboot_timeout = reboot_timeout if reboot_timeout is not None else (20.0 if self.emulate else 180.0)
        if ca_pem is None and ca_file:
            with open(ca_file, "rb") as f:
                ca_pem = f.read()
        self.ca_pem = ca_pem
        self.mac = mac
        self.keys = keys_for(firmware)
        self.emulation_args = tuple(emulation_args)
        #: keep the phone's session (its provisioning server; the emulated phone on, parked) for the next test
        self.keep = keep
        self._speed = speed
        self._clock_epoch = self._reactor.seconds() - clock.seconds() / speed  # wall time of phone time 0
        self.notes: list[str] = []
        self.started = False
        self.session: PhoneSession | None = None
        self._accounts: dict[int, dict[str, str]] = {}
        self._map = CallbackMap(self._account_of)
        self._incoming: str | None = None  # the phone's call-id of the latest incoming call
        self._stopping: defer.Deferred | None = None

    # ------------------------------------------------------------------ configuration
    def apply_config(self, cfg_text: str) -> defer.Deferred:
        """Keep the file for ``start()``; the phone's session (and an emulated phone) is made ready here."""
        accounts: dict[int, dict[str, str]] = {}
        try:  # the one reader of a .cfg for a phone the harness does not build (harness.translation)
            cfg = read_cfg(cfg_text, f"<{self.kind} dut .cfg>")
        except ValueError as e:
            return defer.fail(e)
        for key, value in cfg.items():
            head, _, rest = key.partition(".")
            x, _, field = rest.partition(".")
            if head == "account" and x.isdigit() and field:
                accounts.setdefault(int(x), {})[field] = value
        self._accounts = accounts
        self.cfg_text = cfg_text
        return defer.ensureDeferred(self._ensure_session())

    def template(self) -> Template:
        host, port = scenario_dns(self.cfg_text or "")
        return Template(firmware=self.keys.firmware, lab_address=self.lab_address,
                        base_url=self.session.url if self.session is not None else "http://UNSET/",
                        dns_host=host or self.lab_address, dns_port=port, emulate=self.emulate,
                        with_ca=self.ca_pem is not None)

    def vendor_cfg(self, cfg_text: str, *, park: bool = False, serial: int = 0) -> str:
        """The file the phone gets (:func:`harness.vendor_cfg.vendor_cfg`)."""
        return vendor_cfg(cfg_text, self.template(), park=park, serial=serial, mac=self.mac)

    def _file(self, *, park: bool) -> str:
        return self.vendor_cfg(self.cfg_text or "", park=park, serial=self.session.next_serial())

    def _network(self, text: str) -> tuple:
        prefix = self.keys.network_prefix
        return tuple(sorted((k, v) for k, v in read_cfg(text, "<the phone's file>").items() if k.startswith(prefix)))

    def _session_key(self) -> tuple:
        return (self.phone_host, self.phone_http, self.lab_address, self.provision_port, self.mac, self.emulate,
                self._speed if self.emulate else None, self.emulation_args, self.keys.firmware)

    async def _ensure_session(self) -> None:
        self._raise_errors()
        if self.session is not None and not self.session.closed:
            return

        def make() -> PhoneSession:
            return PhoneSession(self._reactor, phone_host=self.phone_host, phone_http=self.phone_http,
                                lab_address=self.lab_address, provision_port=self.provision_port, user=self.user,
                                password=self.password, auth=self.auth)
        try:
            s = session_for(self._session_key(), make) if self.keep else make()
        except RuntimeError as e:  # the provisioning server could not listen
            raise VendorLabProblem(str(e), "check --lab-address and --provision-port") from None
        self.session = s
        s.prov.ca_pem = self.ca_pem
        if self.emulate and s.proc is None:
            s.attach(self)
            try:
                text = self._file(park=True)
                s.serve(text)
                await s.power_on_emulated(self._emulation_argv(s), timeout=self.reboot_timeout,
                                          fetch_timeout=self.provision_timeout, epoch=self._clock_epoch,
                                          network=self._network(text))
            except BaseException:
                await s.close()
                raise
            finally:
                s.detach(self)

    def _emulation_argv(self, s: PhoneSession) -> list[str]:
        speed = self._speed
        clock_spec = ("real" if speed == 1.0 else f"scaled:{speed:g}") + f"@{self._clock_epoch:.6f}"
        return ["--provision", s.url, "--mac", self.mac, "--http", "127.0.0.1:0", "--clock", clock_spec,
                "--name", f"yealink-emulation-{self.name}", "--exit-on-eof", "--action-uri-allow", self.lab_address,
                "--firmware", self.keys.firmware.value, *self.emulation_args]

    def effective_config(self) -> dict[str, str]:
        raise NotImplementedError("a vendor phone does not report its effective configuration in .cfg terms")

    # ------------------------------------------------------------------ life cycle
    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    async def _start(self) -> None:
        if self.cfg_text is None:
            raise VendorError("yealink DUT start(): apply_config() first")
        self._raise_errors()
        await self._ensure_session()
        s = self.session
        s.attach(self)
        text = self._file(park=False)
        s.serve(text)
        await s.provision("provisioning", self.provision_timeout, self._tail())
        await s.settle(self._network(text), reboot_timeout=self.reboot_timeout,
                       grace=0 if self.emulate else self.REBOOT_GRACE, step="provisioning", tail=self._tail)
        host, port = scenario_dns(self.cfg_text)
        if host and port != 53 and not self.emulate:
            raise VendorLabProblem(
                f"step 'provisioning': the fake DNS listens on {host}:{port}, but a lab phone asks DNS on port 53 "
                f"(the vendor has no DNS port setting)",
                "run with --lab-address ADDR (the fake DNS then binds port 53 there: root or CAP_NET_BIND_SERVICE)")
        self._raise_errors()
        self.started = True

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
        s = self.session
        try:
            if s is not None and not s.closed and self.started and not self.errors:
                before = len(self.notes)
                await self.park()
                if len(self.notes) != before:
                    self.keep = False  # a phone that would not park starts the next test from scratch
        finally:
            self.started = False
            if s is not None:
                s.detach(self)
                if not self.keep or self.errors:
                    await s.close()
            self._fail_waits(VendorError("the yealink DUT was stopped"))

    async def park(self) -> None:
        """Leave the phone quiet: end a call (``key=CALLEND``), serve the file with every account disabled, AutoP.

        Failures are noted in :attr:`notes` (the phone may already be gone), never raised: the
        test's own outcome is what matters at teardown."""
        s = self.session
        if s is None or self.cfg_text is None:
            return
        try:
            if self._map.in_call:
                await s.client.request("park: end the call (Action URI key=CALLEND)", "key=CALLEND")
            s.serve(self._file(park=True))
            await s.provision("park", self.provision_timeout, self._tail())
        except VendorError as e:
            self.notes.append(f"park: {e}")

    @property
    def pid(self) -> int | None:
        """The emulated phone's process id while it runs (None otherwise)."""
        return self.session.pid if self.session is not None else None

    @property
    def phone_address(self) -> str | None:
        """Where the phone's Action URI answers (its scheme and port once learned)."""
        return self.session.client.base if self.session is not None else self.phone_http

    # ------------------------------------------------------------------ Action URI
    async def _action(self, step: str, query: str) -> str:
        await self._ensure_session()
        return await self.session.client.request(step, query)

    def ping(self) -> defer.Deferred:
        """The control channel answers (lab preflight): the account status over the Action URI."""
        async def get() -> str:
            await self._action("control channel (Action URI phonecfg=get&accounts=1)", "phonecfg=get&accounts=1")
            return f"the phone at {self.session.client.address} answered its Action URI"
        return defer.ensureDeferred(get())

    def lab_hint(self, step: str) -> str:
        k = self.keys
        if step == "control channel":
            return (f"is --phone-ip right ({self.phone_address or 'emulated'}), the phone on, and {self.lab_address} "
                    f"in its {k.action_uri_limit_ip}?")
        if step == "events" and self.session is not None:
            return (f"its Action URL callbacks ({k.action_url.format(event='registered')} = {self.session.url}"
                    f"action/registered?...) must reach this host over HTTP")
        if step == "dns":
            return (f"the file sets {k.static_dns_enable} = 1 and {k.primary_dns} (key names of --firmware "
                    f"{k.firmware.value}; a firmware-{'71' if k.firmware is Firmware.V8X else '8x'} phone ignores "
                    f"them: --firmware); a lab phone asks port 53 only")
        if step == "dns cache":
            return (f"the file sets {k.dns_cache_type.format(x='X')} = 0 for every account (the vendor's default, 1, "
                    f"keeps answers for their TTL and negative answers too)")
        if step == "tls":
            url = self.session.url + "ca.pem" if self.session is not None else "http://LAB:PORT/ca.pem"
            return (f"the file sets {k.trusted_certificates_url} = {url}; or upload the CA on the phone's web page "
                    f"(Security > Trusted Certificates) and keep the phone's date right (certificates are checked "
                    f"against it)")
        return ""

    def accounts_state(self) -> defer.Deferred:
        """``/servlet?phonecfg=get&accounts=1``: the phone's account status (a dict, as JSON when the phone gives it)."""
        async def get() -> Any:
            import json

            body = await self._action("read account status (phonecfg=get&accounts=1)", "phonecfg=get&accounts=1")
            try:
                return json.loads(body)
            except ValueError:
                return {"text": body}
        return defer.ensureDeferred(get())

    # ------------------------------------------------------------------ calls
    def call(self, uri: str, account: int = 1) -> defer.Deferred:
        number = uri.split(":", 1)[1] if uri.startswith(("sip:", "sips:")) else uri
        acct = self._accounts.get(account, {})
        outgoing = f"{acct.get('user_name', '')}@{acct.get('sip_server.1.address', '')}"
        self._map.hangup_asked = False
        self._map.in_call = True
        query = f"key=number={quote(number, safe='')}&outgoing_uri={quote(outgoing, safe='')}"
        return self._safe(self._action(f"dial {uri} (Action URI key=number=...)", query), account)

    def answer(self) -> defer.Deferred:
        """``key=ASW:<call-id>`` for the ringing call the phone reported ("Answer ... a call (xxx refers to the
        call-id of the active call)"), else ``key=OK`` ("Press the OK key")."""
        key = f"ASW:{self._incoming}" if self._incoming else "OK"
        return self._safe(self._action(f"answer (Action URI key={key})", f"key={quote(key, safe=':')}"), 1)

    def hangup(self) -> defer.Deferred:
        """``key=CALLEND``: "CALLEND/CallEnd — End a call." (the vendor's Action URI variable values)."""
        self._map.hangup_asked = True
        return self._safe(self._action("hang up (Action URI key=CALLEND)", "key=CALLEND"), 1)

    def _safe(self, work: Any, account: int) -> defer.Deferred:
        """A command the suites fire and forget: a failure is a ``failed`` call event, never an unhandled error."""
        from sipharness.sipcore.events import CallState

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
        if self.emulate and self.session is not None and self.session.epoch is not None:
            try:  # the emulation's clock started at its power-on: same speed, other epoch
                time = float(params.get("phone_time", "")) + (self.session.epoch - self._clock_epoch) * self._speed
            except ValueError:
                pass
        mapped = self._map.feed(event, params)
        if mapped is None:
            self.notes.append(f"action URL {event} from {client}: nothing for the suites")
            return
        if mapped.kind is None:
            return  # power-on reports: the session's
        if mapped.kind == EventKind.INCOMING_CALL:
            self._incoming = mapped.fields.get("call_id")
        self._emit(mapped.kind, time, detail=f"action URL {event} from {client}", **mapped.fields)

    def _account_of(self, user: str | None) -> int:
        for x, acct in sorted(self._accounts.items()):
            if user and acct.get("user_name") == user and acct.get("enable") == "1":
                return x
        return 1

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
        if fields.get("server") is not None and kind == EventKind.REGISTERED:
            raise ValueError("a vendor phone's callbacks name no server ($active_host is the account's host): "
                             "read the server an account registered with from the fakes' records "
                             "(harness.assertions.wait_registration)")
        return super().wait_for(kind, timeout, count=count, since=since, **fields)

    def _fail(self, err: VendorError) -> None:
        self.errors.append(err)
        self.notes.append(str(err))
        self._fail_waits(err)

    def _raise_errors(self) -> None:
        if self.errors:
            raise self.errors[0]

    # ------------------------------------------------------------------ observation
    @property
    def log(self) -> list[str]:
        lines = list(self.notes)
        if self.session is not None and self.session.proc is not None:
            lines += self.session.proc.lines[-60:]
        return lines

    def _tail(self) -> str:
        out = self.session.output() if self.session is not None else ""
        return f"the emulated phone said:\n{out}" if out else ""
