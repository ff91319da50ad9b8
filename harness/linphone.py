"""liblinphone (Debian ``linphone-cli`` 5.1.65) as a device under test (``--dut linphone``; SPEC §10).

Why this shape:

- The program is ``linphone-daemon`` from Debian's ``linphone-cli`` (the package of ``linphonec``
  and ``linphonecsh``), not ``linphonec``: measured here, ``linphonecsh`` talks to ``linphonec``
  over one socket per user (``/tmp/linphonec-<uid>``), so two workers would share one phone, and
  ``linphonec`` fed by a pipe prints no registration or call events we can rely on. The daemon
  reads commands on stdin (``call``, ``answer``, ``terminate``, ``quit``) and prints each
  response (``Status: Ok|Error``) and each call event (``Event-type: call-state-changed``) as
  ``Key: value`` lines: one line protocol, on pipes that end with the harness.
- It prints no registration event: liblinphone's own log does ("Account [...] for identity
  [...] moving from state [...] to [LinphoneRegistrationOk]"). The daemon's ``--log`` is pointed
  at a pipe (``/dev/fd/3``) the harness reads, so those lines are events, and the same log is
  the evidence of a finding in the stack's own words (its tail is shown with a failure).
- liblinphone asks the DNS servers of ``/etc/resolv.conf`` (port 53; it has no setting for a
  server). The daemon runs in the lab-in-a-box (``needs_netns``: the fake DNS on 127.0.0.53:53)
  and in a mount namespace of its own (``unshare -m``) where a ``resolv.conf`` naming the
  ``.cfg``'s DNS server is bind-mounted over ``/etc/resolv.conf``: the machine's file is never
  touched, the other processes never see it.
- liblinphone cannot open its database without ``$HOME/.local/share/linphone``: its global state
  then stays "startup" and it never listens (measured). HOME is the DUT's temporary directory.
- liblinphone checks every few seconds whether "the network" is up by asking which local address
  would reach 87.98.157.38 (a linphone.org address compiled into bctoolbox); with only a loopback
  answer it declares the network DOWN and tears its transports down (measured: 5 s after start,
  "SIP network reachability state is now [DOWN]"). In the lab-in-a-box the namespace gets
  198.51.100.53 (TEST-NET-2) on ``lo`` and a route to that probe address back into ``lo``
  (:func:`harness.netns.loop_route`): the answer is then not loopback, and nothing can leave.
- The ``.cfg`` becomes a linphonerc (``[proxy_N]``, ``[auth_info_N]`` per enabled account) by the
  translation table's liblinphone column (:mod:`harness.translation`); an outbound route
  (``reg_route``) sends every request to server 1, as a vendor phone does.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from typing import Any, Callable

from twisted.internet import defer

from sipharness.sipcore.events import CallState, EventKind

from . import netns
from .child import LineChild, deadline
from .process_dut import ProcessDut, ProcessDutError, ProcessDutLabProblem, free_port
from .translation import stack_accounts

__all__ = ["LinphonePhone", "LinphoneError", "translate"]

PROGRAM = "linphone-daemon"
#: liblinphone's "is the network up" probe (bctoolbox), and the namespace's own address that answers it
REACHABILITY_PROBE, BOX_ADDRESS = "87.98.157.38", "198.51.100.53"
PROMPT = "daemon-linphone>"
_REG = re.compile(r"Account \[[^\]]*\] for identity \[(?P<identity>.*?)\] moving from state \[(?P<old>\w+)\] to "
                  r"\[(?P<new>\w+)\]")
_REG_KIND = {"LinphoneRegistrationOk": EventKind.REGISTERED, "LinphoneRegistrationFailed": EventKind.REGISTER_FAILED,
             "LinphoneRegistrationCleared": EventKind.UNREGISTERED}
_CALL_STATE = {"LinphoneCallOutgoingInit": CallState.CALLING, "LinphoneCallOutgoingRinging": CallState.RINGING,
               "LinphoneCallOutgoingEarlyMedia": CallState.RINGING, "LinphoneCallConnected": CallState.ESTABLISHED}


class LinphoneError(ProcessDutError):
    """A step of driving linphone-daemon failed; the message names it."""


class LinphoneLabProblem(LinphoneError, ProcessDutLabProblem):
    """liblinphone cannot run here (linphone-cli or util-linux's unshare missing): ``fix`` says what to do."""


def translate(cfg: dict[str, str], *, ports: tuple[int, int, int], ca_file: str | None = None,
              rtp_port: int = 7078) -> tuple[str, str, dict[str, int], list[str]]:
    """The linphonerc text, the resolv.conf text, ``user@host`` → account X, and notes."""
    notes: list[str] = []
    dns = cfg.get("static.network.primary_dns", "")
    if not dns:
        dns = "127.0.0.1"  # a closed port on loopback: never the machine's resolvers (nothing leaves 127/8)
        notes.append("no static.network.primary_dns: resolv.conf names 127.0.0.1 (nothing leaves loopback)")
    udp, tcp, tls = ports
    lines = ["# written by sip-redundancy-harness (harness/linphone.py) from a vendor .cfg", "[sip]",
             f"sip_port={udp}", f"sip_tcp_port={tcp}", f"sip_tls_port={tls if ca_file else 0}",
             "inc_timeout=180", "guess_hostname=0", "register_only_when_upnp_is_ok=0", "ipv6=0",
             "contact=sip:linphone@127.0.0.1"]
    if ca_file:
        # the chain is verified against the lab's CA only; the name is not: belle-sip (mbedtls) matches no IP
        # address in a certificate's subjectAltName (measured: "flags=[CN-mismatch]" for 127.0.0.10 with an IP SAN),
        # and the lab's servers are IP addresses (SPEC §8)
        lines += [f"root_ca={ca_file}", "verify_server_certs=1", "verify_server_cn=0"]
    lines += ["", "[rtp]", f"audio_rtp_port={rtp_port}", "", "[video]", "capture=0", "display=0",
              "automatically_initiate=0", "automatically_accept=0", "", "[misc]", "max_calls=4", ""]
    aors: dict[str, int] = {}
    n = 0
    for a in stack_accounts(cfg, notes):
        x, p, address, host, server, params, user = a.x, a.prefix, a.address, a.host, a.server, a.params, a.user
        display = cfg.get(p + "display_name", "").replace('"', "")
        aors[f"{user}@{address}"] = x
        lines += [f"[proxy_{n}]", f"reg_proxy=<sip:{server}{params}>", f"reg_route=<sip:{server}{params};lr>",
                  "reg_identity=" + (f'"{display}" ' if display else "") + f"<sip:{user}@{host}>",
                  f"reg_expires={cfg.get(p + 'sip_server.1.expires', '3600') or 3600}", "reg_sendregister=1",
                  "publish=0", "dial_escape_plus=0", "avpf=0", "",
                  f"[auth_info_{n}]", f"username={user}", f"userid={cfg.get(p + 'auth_name', '') or user}",
                  f"passwd={cfg.get(p + 'password', '')}", ""]
        n += 1
    return "\n".join(lines), f"# written by sip-redundancy-harness for linphone-daemon\nnameserver {dns}\n", aors, notes


class _Daemon(LineChild):
    """linphone-daemon's stdout (responses and events as ``Key: value`` blocks) and its log on fd 3."""

    def __init__(self, on_event: Any, on_log: Any):
        super().__init__(self._line)
        self.on_event, self.on_log = on_event, on_log
        self.pending: list[defer.Deferred] = []
        self.prompts: defer.Deferred = defer.Deferred()  # the first prompt: the daemon reads commands
        self._response: dict[str, str] | None = None
        self._event: dict[str, str] | None = None
        self.log_lines: list[str] = []

    def childDataReceived(self, fd: int, data: bytes) -> None:
        super().childDataReceived(fd, data)
        if fd == 1 and self._bufs.get(1, b"").endswith(PROMPT.encode()):
            self._bufs[1] = b""
            self._prompt()  # (a prompt has no newline: it ends the response before it)

    def command(self, text: str) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        if self.ended:
            d.errback(LinphoneError(f"linphone-daemon: {text!r} after it ended (status {self.status})"))
            return d
        self.pending.append(d)
        self.transport.write((text + "\n").encode())
        return d

    def _line(self, fd: int, text: str) -> None:
        if fd == 3:
            self.log_lines.append(text)
            if len(self.log_lines) > 600:
                del self.log_lines[:100]
            self.on_log(text)
            return
        if fd != 1:
            return
        while text.startswith(PROMPT):
            text = text[len(PROMPT):]
            self._prompt()
        key, sep, value = text.partition(":")
        if not sep:
            return
        key, value = key.strip(), value.strip()
        if key == "Status":
            self._event = None
            self._response = {"Status": value}
        elif key == "Event-type":
            self._response_done()
            self._event = {"Event-type": value}
        elif self._event is not None:
            self._event[key] = value
            if key == "Id" and "Event" in self._event:  # (Id is an event's last field: act on it now)
                self.on_event(self._event)
                self._event = None
        elif self._response is not None:
            self._response[key] = value

    def _prompt(self) -> None:
        if not self.prompts.called:
            self.prompts.callback(None)
        self._response_done()

    def _response_done(self) -> None:
        response, self._response = self._response, None
        if response is not None and self.pending:
            self.pending.pop(0).callback(response)

    def on_end(self) -> None:
        pending, self.pending = self.pending, []
        for d in pending:
            d.errback(LinphoneError(f"linphone-daemon ended (status {self.status}) before answering"))
        if not self.prompts.called:
            self.prompts.callback(None)

    def output(self, limit: int = 40) -> str:
        tail = [f"[log] {line}" for line in self.log_lines[-limit:]]
        return "\n".join(self.lines[-limit:] + tail) or super().output(limit)


class LinphonePhone(ProcessDut):
    """liblinphone 5.1 (``linphone-daemon``) in another process, on the real clock, in the lab-in-a-box."""

    kind = "linphone"
    stack = "linphone"
    needs_netns = True
    Error = LinphoneError
    LabProblem = LinphoneLabProblem

    START_TIMEOUT = 20.0  # wall seconds: the daemon's first prompt
    REQUEST_TIMEOUT = 10.0

    @classmethod
    def add_options(cls, group: Any) -> None:
        group.addoption("--linphone-daemon", default=PROGRAM, metavar="PATH",
                        help="linphone DUT: the linphone-daemon program (Debian package linphone-cli)")

    @classmethod
    def from_options(cls, clock: Any, options: Any, **shared: Any) -> "LinphonePhone":
        pki = shared.get("tls_pki")
        return cls(clock, reactor=shared.get("reactor"), program=options("sipharness_linphone_daemon"),
                   ca_file=getattr(pki, "ca_file", None))

    def __init__(self, clock: Any, *, reactor: Any = None, program: str = PROGRAM, ca_file: str | None = None):
        super().__init__(clock, reactor=reactor)
        self.program = program
        self.ca_file = ca_file
        self._aors: dict[str, int] = {}
        self._calls: dict[str, set[CallState]] = {}
        self._order: list[str] = []  # call ids, latest last
        self._hangup_asked = False
        self._started = False
        self._running_cfg: dict[str, str] | None = None

    # -- life cycle
    def ping(self) -> defer.Deferred:
        async def ping() -> str:
            if not self.running:
                await self._start_daemon()
            reply = await self._command("version")
            return f"linphone-daemon (pid {self.pid}) answered 'version': {reply.get('Version', reply)}"
        return defer.ensureDeferred(ping())

    def start(self) -> defer.Deferred:
        async def start() -> None:
            if self.running and self._started:
                raise LinphoneError("LinphonePhone.start(): linphone-daemon is already running (stop() it first)")
            if self.running and self._running_cfg != self._cfg:
                await self.stop()  # (ping() started it with another file)
            if not self.running:  # (else ping() started it with this very file: its events were read from the start)
                await self._start_daemon()
            self._started = True
        return defer.ensureDeferred(start())

    async def _start_daemon(self) -> None:
        if self._cfg is None:
            raise LinphoneError("LinphonePhone.start(): apply_config() first")
        program = self._program(self.program, "linphone-cli", "--linphone-daemon")
        unshare = self._program("unshare", "util-linux", "PATH for")
        if netns.active():
            netns.loop_route(REACHABILITY_PROBE, BOX_ADDRESS)
        self.directory = tempfile.mkdtemp(prefix="sipharness-linphone-")
        os.makedirs(os.path.join(self.directory, ".local", "share", "linphone"))
        rc, resolv, self._aors, notes = translate(
            self._cfg, ports=(free_port(kind=socket.SOCK_DGRAM), free_port(), free_port()), ca_file=self.ca_file,
            rtp_port=free_port(kind=socket.SOCK_DGRAM))
        self.notes += notes
        for name, text in (("linphonerc", rc), ("resolv.conf", resolv)):
            with open(os.path.join(self.directory, name), "w", encoding="utf-8") as f:
                f.write(text)
        script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" --config "$3" --log /dev/fd/3'
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sipharness-linphone",
                os.path.join(self.directory, "resolv.conf"), program, os.path.join(self.directory, "linphonerc")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE", "DISPLAY"))}
        env["HOME"] = self.directory
        self._calls, self._order, self._started = {}, [], False
        self._running_cfg = dict(self._cfg)
        proc = _Daemon(self._event, self._log_line)
        self._spawn(proc, argv, env=env, path=self.directory, child_fds={0: "w", 1: "r", 2: "r", 3: "r"})
        ok = await deadline(self._reactor, proc.prompts, self.START_TIMEOUT)
        if not ok or proc.ended:
            what = f"exited with status {proc.status}" if proc.ended else \
                f"did not prompt for commands within {self.START_TIMEOUT:g} s"
            output = proc.output(20)
            await self.stop()
            raise LinphoneError(f"linphone-daemon ({' '.join(argv)}) {what}; its output:\n{output}")
        self._ready()

    async def _command(self, text: str) -> dict[str, str]:
        proc = self._proc
        if not isinstance(proc, _Daemon) or proc.ended:
            raise LinphoneError(f"linphone DUT: {text!r} while linphone-daemon is not running (start() it first)")
        reply = await self._within(proc.command(text), self.REQUEST_TIMEOUT, f"answer {text!r} (linphone-daemon)")
        if reply.get("Status") != "Ok":
            raise LinphoneError(f"linphone-daemon refused {text!r}: {reply.get('Reason', reply)}")
        return reply

    def _quit(self) -> Callable[[], None] | None:
        proc = self._proc
        if not isinstance(proc, _Daemon) or proc.ended:
            return None
        return lambda: proc.command("quit").addErrback(lambda _: None)

    def _cleanup(self) -> None:
        self._started = False
        super()._cleanup()

    # -- calls
    def call(self, uri: str, account: int = 1) -> defer.Deferred:
        self._hangup_asked = False
        return self._safe(self._command(f"call {uri}"), f"call {uri}", account)

    def answer(self) -> defer.Deferred:
        async def answer() -> None:
            ringing = [c for c in reversed(self._order) if CallState.ESTABLISHED not in self._calls.get(c, set())]
            await self._command("answer" + (f" {ringing[0]}" if ringing else ""))
        return self._safe(answer(), "answer")

    def hangup(self) -> defer.Deferred:
        self._hangup_asked = True

        async def hangup() -> None:
            await self._command("terminate" + (f" {self._order[-1]}" if self._order else ""))
        return self._safe(hangup(), "terminate")

    # -- events
    def _log_line(self, text: str) -> None:
        m = _REG.search(text)
        if m is None or m.group("new") not in _REG_KIND:
            return
        identity = m.group("identity")
        aor = identity.split("<", 1)[-1].split(">", 1)[0].split(";", 1)[0].removeprefix("sip:")
        self._emit(_REG_KIND[m.group("new")], account=self._aors.get(aor, 1), server=1,
                   detail=f"{m.group('old')} -> {m.group('new')}")

    def _event(self, event: dict[str, str]) -> None:
        if event.get("Event-type") != "call-state-changed":
            return
        state, call_id = event.get("Event", ""), event.get("Id", "")
        if state == "LinphoneCallIncomingReceived":
            self._order.append(call_id)
            self._calls[call_id] = set()
            self._emit(EventKind.INCOMING_CALL, account=1, call_id=call_id, detail=state)
            return
        if state == "LinphoneCallOutgoingInit":
            self._order.append(call_id)
            self._calls[call_id] = set()
        if state in _CALL_STATE:
            self._calls.setdefault(call_id, set()).add(_CALL_STATE[state])
            self._emit(EventKind.CALL_STATE, account=1, server=1, state=_CALL_STATE[state], call_id=call_id,
                       detail=state)
        elif state in ("LinphoneCallEnd", "LinphoneCallError"):
            seen = self._calls.pop(call_id, set())
            if call_id in self._order:
                self._order.remove(call_id)
            # SPEC §10 call states: a call that was up (or that we hung up) ends "terminated";
            # one refused or timed out before it was answered ends "failed".
            up = CallState.ESTABLISHED in seen or self._hangup_asked
            self._emit(EventKind.CALL_STATE, account=1, server=1, state=CallState.TERMINATED if up else CallState.FAILED,
                       call_id=call_id, detail=state)
