"""baresip 1.0.0 as a device under test (SPEC §10, third-party softphone), driven headless.

Why this shape:

- baresip reads no vendor ``.cfg``; :func:`translate` maps the few keys it has an equivalent
  for (DNS server, account, server 1's address/port/transport, expires) into its own ``config``
  and ``accounts`` files, and names every key it cannot honour (retry_counts, failback modes,
  server 2, ...) in :attr:`BaresipPhone.notes`. The mapping is in ``docs/baresip.md``. The
  reader is a tiny ``key = value`` parser written here on purpose: the harness must not import
  the bundled phone's config module to drive another phone (it would lend it our reading).
- Control goes through baresip's ``ctrl_tcp`` module (netstring-framed JSON, Twisted's
  ``NetstringReceiver``). baresip registers its accounts as soon as it starts, before anyone
  can be connected to ``ctrl_tcp``, so the first REGISTER_OK would be lost: the ``accounts``
  file is written for the record but the ``account`` module is not loaded, and each account is
  created with the ``uanew`` command once the control connection is up.
- The process is spawned with ``reactor.spawnProcess`` (the reactor is never blocked) and
  always reaped: ``quit``, then SIGTERM, SIGTERM, SIGKILL with deadlines (PEERS.md: SIGTERM
  hangs while baresip un-REGISTERs from a dead registrar), and an ``atexit`` SIGKILL for any
  child still alive if a test run is torn down abruptly.
- Startup deadlines run on the reactor's wall clock (starting a process costs wall time
  whatever the test clock says); event times are read from the test's clock.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import tempfile
from typing import Any, Callable

from twisted.internet import defer, error, protocol
from twisted.protocols.basic import NetstringReceiver

from sipharness.sipcore.events import CallState, EventKind

from .child import ChildProcess, deadline, track
from .dut import DeviceUnderTest, DutEvent
from .report import HarnessError, LabProblem

__all__ = ["BaresipPhone", "BaresipError", "BaresipLabProblem", "translate", "read_cfg"]

DEFAULT_MODULE_PATH = "/usr/lib/baresip/modules"
_TRANSPORT = {"0": "udp", "1": "tcp", "2": "tls", "3": None}  # 3 DNS-NAPTR: no transport parameter


class BaresipError(HarnessError):
    """A step of driving baresip failed (start, control connection, command); the message names it."""


class BaresipLabProblem(BaresipError, LabProblem):
    """baresip cannot run on this machine (not installed, no ctrl_tcp module): ``fix`` says what to install."""


# --------------------------------------------------------------------------- .cfg → baresip files

def read_cfg(text: str, filename: str = "<cfg>") -> dict[str, str]:
    """``key = value`` lines of a vendor ``.cfg`` (SPEC §1: ``#`` comments, later lines override)."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{filename}:{lineno}: expected 'key = value', got {raw!r}")
        out[key.strip()] = value.strip()
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _host_port(address: str, port: str | None) -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"{host}:{port}" if port and port != "0" else host


def translate(cfg: dict[str, str], *, ctrl_port: int, module_path: str = DEFAULT_MODULE_PATH,
              ca_file: str | None = None) -> tuple[str, list[tuple[int, str]], list[str]]:
    """The baresip ``config`` text, the ``accounts`` lines as (account X, line), and the notes.

    Notes name every setting of the ``.cfg`` that baresip 1.0.0 cannot honour (they are
    findings-to-be, not errors: a vendor phone may also ignore a key).
    """
    notes: list[str] = []
    dns = cfg.get("static.network.primary_dns")
    dns_port = cfg.get("static.network.primary_dns_port", "53")
    if not dns:
        # No DNS server given: point baresip at a closed loopback port, never at the machine's
        # resolvers (no packet may leave 127/8 in a test).
        dns, dns_port = "127.0.0.1", "1"
        notes.append("no static.network.primary_dns: DNS pointed at 127.0.0.1:1 (nothing leaves loopback)")
    listen_port = cfg.get("sip.listen_port", "0") or "0"
    lines = [
        "# written by sip-redundancy-harness (harness/baresip.py) from a vendor .cfg",
        "poll_method epoll",
        f"sip_listen 127.0.0.1:{listen_port}",
        f"dns_server {_host_port(dns, dns_port)}",
        f"module_path {module_path}",
        "call_local_timeout 120",
        "call_max_calls 4",
        # PEERS.md: aubridge with device "nil" for every audio role; ausine refuses PCMU.
        "audio_player aubridge,nil",
        "audio_source aubridge,nil",
        "audio_alert aubridge,nil",
        "module g711.so",
        "module aubridge.so",
        # menu.so carries the dial/hangup/accept/uanew/quit commands; ctrl_tcp.so the socket.
        "module_app menu.so",
        "module_app ctrl_tcp.so",
        f"ctrl_tcp_listen 127.0.0.1:{ctrl_port}",
    ]
    if ca_file:
        lines.append(f"sip_cafile {ca_file}")
    accounts: list[tuple[int, str]] = []
    for x in range(1, 7):
        p = f"account.{x}."
        if cfg.get(p + "enable", "0") != "1":
            continue
        address = cfg.get(p + "sip_server.1.address", "")
        if not address:
            notes.append(f"account.{x}: enabled without sip_server.1.address: not created")
            continue
        user = cfg.get(p + "user_name", "") or "anonymous"
        transport = _TRANSPORT.get(cfg.get(p + "transport", "0"), "udp")
        server = _host_port(address, cfg.get(p + "sip_server.1.port", "5060"))
        uri_params = f";transport={transport}" if transport else ""
        display = cfg.get(p + "display_name", "")
        line = (f"{_quote(display) + ' ' if display else ''}<sip:{user}@{server}{uri_params}>"
                f";auth_user={cfg.get(p + 'auth_name', '') or user}"
                f";auth_pass={cfg.get(p + 'password', '')}"
                f";regint={cfg.get(p + 'sip_server.1.expires', '3600')}"
                # Every request goes to server 1 (a vendor phone sends INVITEs to its server,
                # not to the callee's domain): baresip's outbound proxy does that.
                f";outbound={_quote(f'sip:{server}{uri_params}')}"
                ";answermode=manual;mwi=no;ptime=20;audio_codecs=PCMU/8000/1")
        accounts.append((x, line))
        for key, why in _IGNORED.items():
            if p + key in cfg:
                notes.append(f"account.{x}.{key} = {cfg[p + key]}: {why}")
        if cfg.get(p + "sip_server.2.address"):
            notes.append(f"account.{x}.sip_server.2.address = {cfg[p + 'sip_server.2.address']}: ignored, baresip "
                         "1.0.0 has no server fallback (outbound2 is RFC 5626 flow redundancy, not SPEC §6)")
    return "\n".join(lines) + "\n", accounts, notes


#: .cfg keys (after ``account.X.``) baresip 1.0.0 has no equivalent for, and why.
_IGNORED = {
    "sip_server.1.retry_counts": "baresip gives a target up on the RFC 3261 timeout only",
    "sip_server.1.failback_mode": "baresip re-resolves per request (RFC 3263), no failback modes",
    "sip_server.1.failback_timeout": "no failback modes in baresip",
    "sip_server.1.register_on_enable": "no equivalent in baresip",
    "sip_server.1.invite_retry_counts": "no equivalent in baresip",
    "sip_server.1.only_signal_with_registered": "no equivalent in baresip",
    "fallback.redundancy_type": "no server fallback in baresip 1.0.0",
    "fallback.timeout": "no server fallback in baresip 1.0.0",
    "naptr_build": "baresip follows RFC 3263 when NAPTR is empty",
    "reg_fail_retry_interval": "baresip's own retry interval is not configurable",
}


# --------------------------------------------------------------------------- process and control socket

class _Process(ChildProcess):
    """baresip's output (bounded tail), its "ready" line, and its end."""

    READY = b"baresip is ready."
    KEEP = 16384

    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.ready: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.closeStdin()  # PEERS.md: baresip runs with stdin at EOF (no stdio UI loaded)

    def outReceived(self, data: bytes) -> None:
        self.out = (self.out + data)[-self.KEEP:]
        if not self.ready.called and self.READY in self.out:
            self.ready.callback(None)

    def on_end(self) -> None:
        if not self.ready.called:
            self.ready.callback(None)  # the caller sees ``ended``

    def output(self, limit: int = 1500) -> str:
        text = self.out.decode("utf-8", "replace").strip()
        err = "\n".join(line for line in self.err.decode("utf-8", "replace").replace("\r", "\n").splitlines()
                        if line.strip() and "audio=" not in line)  # drop the call status ticker
        both = text + (("\n[stderr]\n" + err) if err else "")
        return both[-limit:] if both else "(no output)"


class _Control(NetstringReceiver):
    """ctrl_tcp: commands with tokens → Deferreds of their responses; events → a callback."""

    MAX_LENGTH = 1 << 20

    def __init__(self, on_event: Callable[[dict], None]):
        self.on_event = on_event
        self.pending: dict[str, defer.Deferred] = {}
        self.lost: defer.Deferred = defer.Deferred()
        self._token = 0

    def command(self, name: str, params: str = "") -> defer.Deferred:
        self._token += 1
        token = str(self._token)
        d: defer.Deferred = defer.Deferred()
        self.pending[token] = d
        body = {"command": name, "token": token}
        if params:
            body["params"] = params
        self.sendString(json.dumps(body).encode())
        return d

    def stringReceived(self, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return  # a frame we cannot read is not ours to crash on
        if msg.get("response"):
            d = self.pending.pop(str(msg.get("token")), None)
            if d is not None:
                d.callback(msg)
        elif msg.get("event"):
            self.on_event(msg)

    def connectionLost(self, reason: Any = None) -> None:
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(BaresipError("baresip closed its ctrl_tcp connection before answering"))
        if not self.lost.called:
            self.lost.callback(None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the DUT

_EVENT_KIND = {"REGISTER_OK": EventKind.REGISTERED, "REGISTER_FAIL": EventKind.REGISTER_FAILED,
               "UNREGISTERING": EventKind.UNREGISTERED, "CALL_INCOMING": EventKind.INCOMING_CALL}
_CALL_STATE = {"CALL_RINGING": CallState.RINGING, "CALL_PROGRESS": CallState.PROCEEDING,
               "CALL_ESTABLISHED": CallState.ESTABLISHED}


class BaresipPhone(DeviceUnderTest):
    """baresip (``baresip -f DIR``) in another process, on the real clock, driven through ctrl_tcp."""

    kind = "baresip"
    exact_time = False
    interp_binding = False
    validates_config = False
    default_clock = "real"
    clocks = ("real",)
    needs_preflight = True

    #: wall seconds for baresip to say "ready" and open ctrl_tcp; for quit, each TERM, and KILL
    START_TIMEOUT = 10.0
    QUIT_GRACE, TERM_GRACE, KILL_GRACE = 3.0, 2.0, 5.0

    @classmethod
    def add_options(cls, group: Any) -> None:
        group.addoption("--baresip", default="baresip", metavar="PATH", help="baresip DUT: the program to run")
        group.addoption("--baresip-module-path", default=DEFAULT_MODULE_PATH, metavar="DIR",
                        help=f"baresip DUT: its module directory (default {DEFAULT_MODULE_PATH})")

    @classmethod
    def from_options(cls, clock: Any, options: Any, **shared: Any) -> "BaresipPhone":
        pki = shared.get("tls_pki")
        return cls(clock, reactor=shared.get("reactor"), program=options("sipharness_baresip"),
                   module_path=options("sipharness_baresip_module_path"), ca_file=getattr(pki, "ca_file", None))

    def __init__(self, clock: Any, *, reactor: Any = None, program: str = "baresip",
                 module_path: str = DEFAULT_MODULE_PATH, ca_file: str | None = None):
        super().__init__(clock)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self._reactor = reactor
        self.program = program
        self.module_path = module_path
        self.ca_file = ca_file
        self.notes: list[str] = []
        self.directory: str | None = None
        self._cfg: dict[str, str] | None = None
        self._proc: _Process | None = None
        self._ptransport: Any = None
        self._ctrl: _Control | None = None
        self._aors: dict[str, int] = {}
        self._calls: dict[str, dict[str, bool]] = {}
        self._accounts: list[tuple[int, str]] = []
        self._accounts_made = False
        self._hangup_asked = False
        self._stopping: defer.Deferred | None = None

    # -- configuration

    def apply_config(self, cfg_text: str) -> defer.Deferred:
        try:
            self._cfg = read_cfg(cfg_text, "<baresip dut .cfg>")
        except ValueError as e:
            return defer.fail(e)
        self.cfg_text = cfg_text
        return defer.succeed(None)

    def effective_config(self) -> dict[str, str]:
        raise NotImplementedError("baresip DUT cannot report its configuration in .cfg terms (see docs/baresip.md)")

    # -- life cycle

    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    def ping(self) -> defer.Deferred:
        """The control channel answers (lab preflight): baresip started (no account yet), ``reginfo`` answered."""
        async def ping() -> str:
            if self._proc is None or self._proc.ended:
                await self._spawn()
            reply = await self._command("reginfo")
            if not reply.get("ok"):
                raise BaresipError(f"baresip answered 'reginfo' with an error: {reply.get('data')!r}")
            return f"baresip pid {self.pid} answered 'reginfo' on ctrl_tcp"
        return defer.ensureDeferred(ping())

    async def _start(self) -> None:
        """Spawn baresip (unless ping() did) and create the accounts of the .cfg (``uanew``)."""
        if self._proc is None or self._proc.ended:
            await self._spawn()
        elif self._accounts_made:
            raise BaresipError("BaresipPhone.start(): baresip is already running (stop() it first)")
        self._accounts_made = True
        try:
            for x, line in self._accounts:
                reply = await self._command("uanew", line)
                if not reply.get("ok"):
                    raise BaresipError(f"baresip refused account.{x} (uanew {line!r}): {reply.get('data')!r}")
        except BaseException:
            await self._reap()
            raise

    async def _spawn(self) -> None:
        """baresip running with the .cfg's config, its control connection up, no account created yet."""
        if self._cfg is None:
            raise BaresipError("BaresipPhone.start(): apply_config() first")
        program = shutil.which(self.program)
        if program is None:
            raise BaresipLabProblem(f"baresip DUT: program {self.program!r} not found",
                                    "install it (Debian package 'baresip') or give --baresip PATH")
        if not os.path.isfile(os.path.join(self.module_path, "ctrl_tcp.so")):
            raise BaresipLabProblem(f"baresip DUT: no ctrl_tcp.so in module path {self.module_path!r}",
                                    "give --baresip-module-path DIR (Debian: /usr/lib/baresip/modules)")
        ctrl_port = _free_port()
        config, accounts, self.notes = translate(self._cfg, ctrl_port=ctrl_port, module_path=self.module_path,
                                                 ca_file=self.ca_file)
        self.directory = tempfile.mkdtemp(prefix="sipharness-baresip-")
        with open(os.path.join(self.directory, "config"), "w", encoding="utf-8") as f:
            f.write(config)
        with open(os.path.join(self.directory, "accounts"), "w", encoding="utf-8") as f:
            f.write("# created with the uanew command once ctrl_tcp is up (see harness/baresip.py)\n")
            f.write("".join(line + "\n" for _, line in accounts))
        self._aors = {_aor_key(line): x for x, line in accounts}
        self._accounts, self._accounts_made = accounts, False
        self._calls = {}
        proc = _Process()
        argv = [program, "-f", self.directory]
        try:
            self._ptransport = self._reactor.spawnProcess(proc, program, argv, env=dict(os.environ),
                                                          path=self.directory)
        except OSError as e:
            raise BaresipError(f"baresip DUT: cannot run {shlex.join(argv)}: {e}") from None
        self._proc = proc
        if proc.pid is not None and not proc.ended:
            track(proc.pid, self._ptransport, "baresip")
        try:
            await self._until_ready(proc, argv, ctrl_port)
        except BaseException:
            await self._reap()
            raise

    async def _until_ready(self, proc: _Process, argv: list[str], ctrl_port: int) -> None:
        where = f"127.0.0.1:{ctrl_port}"
        ok = await deadline(self._reactor, proc.ready, self.START_TIMEOUT)
        if proc.ended or not ok:
            what = (f"exited with status {proc.status}" if proc.ended else
                    f"did not say 'baresip is ready.' within {self.START_TIMEOUT:g} s")
            raise BaresipError(f"baresip ({shlex.join(argv)}) {what}; its output:\n{proc.output()}")
        # ctrl_tcp listens once its module is loaded, which is before "ready"; a few tries cover a slow box.
        endpoint_error: Exception | None = None
        for _ in range(5):
            try:
                creator = protocol.ClientCreator(self._reactor, _Control, self._event)
                self._ctrl = await creator.connectTCP("127.0.0.1", ctrl_port, timeout=self.START_TIMEOUT)
                break
            except (error.ConnectError, OSError) as e:
                endpoint_error = e
                if proc.ended:
                    break
                d: defer.Deferred = defer.Deferred()
                self._reactor.callLater(0.2, d.callback, None)
                await d
        if self._ctrl is None:
            raise BaresipError(f"baresip did not open ctrl_tcp on {where} ({endpoint_error}); is ctrl_tcp.so in "
                               f"{self.module_path}? its output:\n{proc.output()}")

    def stop(self) -> defer.Deferred:
        if self._stopping is not None:
            return self._stopping
        if self._proc is None:
            return defer.succeed(None)
        d = defer.ensureDeferred(self._reap())

        def done(result: Any) -> Any:
            self._stopping = None
            return result
        self._stopping = d.addBoth(done)
        return self._stopping

    async def _reap(self) -> None:
        """quit, TERM, TERM, KILL with deadlines (PEERS.md); the process is gone when this returns."""
        proc, ptransport, ctrl = self._proc, self._ptransport, self._ctrl
        self._ctrl = None
        try:
            if proc is not None and not proc.ended:
                steps: list[tuple[Any, float]] = []
                if ctrl is not None and ctrl.transport is not None and ctrl.transport.connected:
                    steps.append(("quit", self.QUIT_GRACE))
                steps += [(signal.SIGTERM, self.TERM_GRACE), (signal.SIGTERM, self.TERM_GRACE),
                          (signal.SIGKILL, self.KILL_GRACE)]
                for step, grace in steps:
                    if proc.ended:
                        break
                    if step == "quit":
                        ctrl.command("quit").addErrback(lambda _: None)
                    else:
                        try:
                            ptransport.signalProcess(step)
                        except error.ProcessExitedAlready:
                            break
                    await deadline(self._reactor, proc.when_ended(), grace)
                if not proc.ended:
                    raise BaresipError(f"baresip pid {ptransport.pid} did not exit after quit, TERM, TERM, KILL")
        finally:
            if ctrl is not None and ctrl.transport is not None:
                ctrl.transport.loseConnection()
            self._proc = self._ptransport = None
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None

    @property
    def pid(self) -> int | None:
        """The running baresip's process id (None when stopped)."""
        return self._ptransport.pid if self._ptransport is not None and self._proc and not self._proc.ended else None

    # -- calls

    def call(self, uri: str, account: int = 1) -> defer.Deferred:
        async def dial() -> None:
            if len(self._aors) > 1:
                aor = next((k for k, x in self._aors.items() if x == account), None)
                if aor is not None:
                    await self._command("uafind", aor)
            self._hangup_asked = False
            reply = await self._command("dial", uri)
            state = CallState.CALLING if reply.get("ok") else CallState.FAILED
            self._emit(EventKind.CALL_STATE, account=account, state=state, detail=f"dial {uri}: {reply.get('data', '')}")
        return self._safe(dial(), f"dial {uri}")

    def answer(self) -> defer.Deferred:
        return self._safe(self._command("accept"), "accept")

    def hangup(self) -> defer.Deferred:
        self._hangup_asked = True
        return self._safe(self._command("hangup"), "hangup")

    def _safe(self, work: Any, what: str) -> defer.Deferred:
        """A command the suites fire and forget: a failure becomes a ``failed`` event, never an unhandled error."""
        d = defer.ensureDeferred(work) if not isinstance(work, defer.Deferred) else work

        def failed(f: Any) -> None:
            self._emit(EventKind.CALL_STATE, account=1, state=CallState.FAILED, detail=f"{what}: {f.getErrorMessage()}")
        return d.addErrback(failed)

    def _command(self, name: str, params: str = "") -> defer.Deferred:
        if self._ctrl is None:
            return defer.fail(BaresipError(f"baresip DUT: {name!r} while baresip is not running (start() it first)"))
        return self._ctrl.command(name, params)

    # -- events

    @property
    def log(self) -> list[str]:
        lines = self.notes[:]
        if self._proc is not None:
            lines += self._proc.output(6000).splitlines()
        return lines

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        self.events.append(DutEvent(time=self.clock.seconds(), kind=kind, **fields))

    def _event(self, msg: dict) -> None:
        etype = str(msg.get("type", ""))
        account = self._aors.get(_aor_key(str(msg.get("accountaor", ""))), 1)
        param = str(msg.get("param", ""))
        call_id = msg.get("id")
        if etype in _EVENT_KIND:
            server = 1 if etype != "CALL_INCOMING" else None  # (baresip knows one server per account)
            self._emit(_EVENT_KIND[etype], account=account, server=server, call_id=call_id, detail=param)
            return
        if etype in _CALL_STATE:
            state = _CALL_STATE[etype]
            if call_id:
                self._calls.setdefault(call_id, {})[state] = True
            self._emit(EventKind.CALL_STATE, account=account, server=1, state=state, call_id=call_id, detail=param)
        elif etype == "CALL_CLOSED":
            seen = self._calls.pop(call_id, {}) if call_id else {}
            # SPEC §10 call states: a call that was up (or that we hung up) ends "terminated";
            # one refused or timed out before it was answered ends "failed".
            state = CallState.TERMINATED if seen.get(CallState.ESTABLISHED) or self._hangup_asked else CallState.FAILED
            self._emit(EventKind.CALL_STATE, account=account, server=1, state=state, call_id=call_id, detail=param)


def _aor_key(text: str) -> str:
    """``user@host[:port]`` of an account line or of an event's ``accountaor`` (no display, no params)."""
    if "<" in text:
        text = text.split("<", 1)[1].split(">", 1)[0]
    text = text.split(";", 1)[0].strip()
    return text[4:] if text.startswith("sip:") else text
