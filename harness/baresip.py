"""baresip 1.0.0 as a device under test (SPEC §10, third-party softphone), driven headless.

Why this shape:

- baresip reads no vendor ``.cfg``; :func:`translate` maps the keys it has an equivalent for
  (DNS server, account, server 1's address/port/transport, expires) into its own ``config`` and
  ``accounts`` files. Which key goes where, and which baresip cannot express (retry_counts,
  failback modes, server 2, ...: the test is skipped as not expressible) is the translation
  table's baresip column (:mod:`harness.translation`, shown in docs/conformance-matrix.md).
- Control goes through baresip's ``ctrl_tcp`` module (netstring-framed JSON, Twisted's
  ``NetstringReceiver``). baresip registers its accounts as soon as it starts, before anyone
  can be connected to ``ctrl_tcp``, so the first REGISTER_OK would be lost: the ``accounts``
  file is written for the record but the ``account`` module is not loaded, and each account is
  created with the ``uanew`` command once the control connection is up.
- The process's life is :class:`harness.process_dut.ProcessDut`'s; baresip's own way to stop is
  ``quit``, then SIGTERM, SIGTERM, SIGKILL with deadlines (PEERS.md: SIGTERM hangs while
  baresip un-REGISTERs from a dead registrar).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import tempfile
from typing import Any, Callable, Iterable

from twisted.internet import defer, error, protocol
from twisted.protocols.basic import NetstringReceiver

from sipharness.sipcore.events import CallState, EventKind

from .child import ChildProcess, deadline
from .process_dut import ProcessDut, ProcessDutError, ProcessDutLabProblem, Step, free_port, pause
from .translation import host_port, read_cfg, stack_accounts

__all__ = ["BaresipPhone", "BaresipError", "BaresipLabProblem", "translate", "read_cfg"]

DEFAULT_MODULE_PATH = "/usr/lib/baresip/modules"


class BaresipError(ProcessDutError):
    """A step of driving baresip failed (start, control connection, command); the message names it."""


class BaresipLabProblem(BaresipError, ProcessDutLabProblem):
    """baresip cannot run on this machine (not installed, no ctrl_tcp module): ``fix`` says what to install."""


# --------------------------------------------------------------------------- .cfg → baresip files


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def translate(cfg: dict[str, str], *, ctrl_port: int, module_path: str = DEFAULT_MODULE_PATH,
              ca_file: str | None = None) -> tuple[str, list[tuple[int, str]], list[str]]:
    """The baresip ``config`` text, the ``accounts`` lines as (account X, line), and notes.

    Only the keys the translation table's baresip column expresses are read; the keys it cannot
    express were refused at ``apply_config`` (harness.translation.check)."""
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
        # the address, not "lo" (that fails): in the lab-in-a-box there is no default route, and without
        # it baresip finds no local address ("SIP register failed: Protocol not supported", measured)
        "net_interface 127.0.0.1",
        f"sip_listen 127.0.0.1:{listen_port}",
        f"dns_server {host_port(dns, dns_port)}",
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
    for a in stack_accounts(cfg, notes):
        x, p, user, server, uri_params = a.x, a.prefix, a.user, a.server, a.params
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
    return "\n".join(lines) + "\n", accounts, notes


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


# --------------------------------------------------------------------------- the DUT

_EVENT_KIND = {"REGISTER_OK": EventKind.REGISTERED, "REGISTER_FAIL": EventKind.REGISTER_FAILED,
               "UNREGISTERING": EventKind.UNREGISTERED, "CALL_INCOMING": EventKind.INCOMING_CALL}
_CALL_STATE = {"CALL_RINGING": CallState.RINGING, "CALL_PROGRESS": CallState.PROCEEDING,
               "CALL_ESTABLISHED": CallState.ESTABLISHED}


class BaresipPhone(ProcessDut):
    """baresip (``baresip -f DIR``) in another process, on the real clock, driven through ctrl_tcp."""

    kind = "baresip"
    stack = "baresip"
    needs_netns = True
    Error = BaresipError
    LabProblem = BaresipLabProblem

    #: wall seconds for baresip to say "ready" and open ctrl_tcp
    START_TIMEOUT = 10.0

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
        super().__init__(clock, reactor=reactor)
        self.program = program
        self.module_path = module_path
        self.ca_file = ca_file
        self._ctrl: _Control | None = None
        self._aors: dict[str, int] = {}
        self._calls: dict[str, dict[str, bool]] = {}
        self._accounts: list[tuple[int, str]] = []
        self._accounts_made = False
        self._hangup_asked = False

    # -- life cycle

    def start(self) -> defer.Deferred:
        return defer.ensureDeferred(self._start())

    def ping(self) -> defer.Deferred:
        """The control channel answers (lab preflight): baresip started (no account yet), ``reginfo`` answered."""
        async def ping() -> str:
            if not self.running:
                await self._start_process()
            reply = await self._command("reginfo")
            if not reply.get("ok"):
                raise BaresipError(f"baresip answered 'reginfo' with an error: {reply.get('data')!r}")
            return f"baresip pid {self.pid} answered 'reginfo' on ctrl_tcp"
        return defer.ensureDeferred(ping())

    async def _start(self) -> None:
        """Spawn baresip (unless ping() did) and create the accounts of the .cfg (``uanew``)."""
        if not self.running:
            await self._start_process()
        elif self._accounts_made:
            raise BaresipError("BaresipPhone.start(): baresip is already running (stop() it first)")
        self._accounts_made = True
        try:
            for x, line in self._accounts:
                reply = await self._command("uanew", line)
                if not reply.get("ok"):
                    raise BaresipError(f"baresip refused account.{x} (uanew {line!r}): {reply.get('data')!r}")
        except BaseException:
            await self.stop()
            raise

    async def _start_process(self) -> None:
        """baresip running with the .cfg's config, its control connection up, no account created yet."""
        if self._cfg is None:
            raise BaresipError("BaresipPhone.start(): apply_config() first")
        program = self._program(self.program, "baresip", "--baresip")
        if not os.path.isfile(os.path.join(self.module_path, "ctrl_tcp.so")):
            raise BaresipLabProblem(f"baresip DUT: no ctrl_tcp.so in module path {self.module_path!r}",
                                    "give --baresip-module-path DIR (Debian: /usr/lib/baresip/modules)")
        ctrl_port = free_port()
        config, accounts, notes = translate(self._cfg, ctrl_port=ctrl_port, module_path=self.module_path,
                                            ca_file=self.ca_file)
        self.notes += notes
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
        self._spawn(proc, argv, path=self.directory)
        try:
            await self._until_ready(proc, argv, ctrl_port)
        except BaseException:
            await self.stop()
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
                await pause(self._reactor, 0.2)
        if self._ctrl is None:
            raise BaresipError(f"baresip did not open ctrl_tcp on {where} ({endpoint_error}); is ctrl_tcp.so in "
                               f"{self.module_path}? its output:\n{proc.output()}")
        self._ready()

    def _stop_steps(self) -> Iterable[Step]:
        """quit over ctrl_tcp, TERM, TERM, KILL (PEERS.md: SIGTERM hangs while baresip un-REGISTERs)."""
        ctrl = self._ctrl
        steps: list[Step] = []
        if ctrl is not None and ctrl.transport is not None and ctrl.transport.connected:
            def quit_() -> None:
                ctrl.command("quit").addErrback(lambda _: None)
            steps.append((quit_, self.QUIT_GRACE))
        return steps + [(signal.SIGTERM, self.TERM_GRACE), (signal.SIGTERM, self.TERM_GRACE),
                        (signal.SIGKILL, self.KILL_GRACE)]

    def _cleanup(self) -> None:
        ctrl, self._ctrl = self._ctrl, None
        if ctrl is not None and ctrl.transport is not None:
            ctrl.transport.loseConnection()
        super()._cleanup()

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
        return self._safe(dial(), f"dial {uri}", account)

    def answer(self) -> defer.Deferred:
        return self._safe(self._command("accept"), "accept")

    def hangup(self) -> defer.Deferred:
        self._hangup_asked = True
        return self._safe(self._command("hangup"), "hangup")

    def _command(self, name: str, params: str = "") -> defer.Deferred:
        if self._ctrl is None:
            return defer.fail(BaresipError(f"baresip DUT: {name!r} while baresip is not running (start() it first)"))
        return self._ctrl.command(name, params)

    # -- events

    def _output(self, proc: ChildProcess) -> str:
        return proc.output(6000) if isinstance(proc, _Process) else super()._output(proc)

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
