"""PJSIP (pjsua2, PyPI ``pjsua2-python``) as a device under test (``--dut pjsua``; SPEC §10, third-party stack).

Why this shape:

- PJSIP runs in a process of its own (:mod:`harness.pjsua_driver`, JSON lines on stdin/stdout):
  a crash in its C code is then a harness error of the test, not the end of the test process
  (:class:`harness.process_dut.ProcessDut` turns an exit nobody asked for into one).
- :func:`translate` writes the driver's settings from the keys the translation table's PJSIP
  column expresses (:mod:`harness.translation`); a key it cannot express was refused at
  ``apply_config`` (the test is skipped as not expressible).
- PJSIP's resolver asks a DNS server on port 53 only (its nameserver setting is a bare IP), so
  this kind runs in the lab-in-a-box (``needs_netns``: :mod:`harness.netns`), where the fake DNS
  has port 53. It does SRV then A and never NAPTR: with transport 3 (DNS-NAPTR) the URI carries no
  transport and PJSIP asks ``_sip._udp``; that is a finding of the DNS suites, not a skip.
- Every request goes to server 1 through an outbound proxy (``sipConfig.proxies``), as a vendor
  phone sends its INVITEs to its server, not to the callee's domain.
- PJSIP's own log at level 5 (every message and resolver step) is written beside the driver and
  its tail is shown with a failure: the evidence of a finding in the stack's own words.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import sys
import tempfile
from typing import Any, Callable

from twisted.internet import defer

from sipharness.sipcore.events import CallState, EventKind

from .child import LineChild, deadline
from .process_dut import ProcessDut, ProcessDutError, ProcessDutLabProblem, module_env
from .translation import stack_accounts

__all__ = ["PjsuaPhone", "PjsuaError", "translate"]



class PjsuaError(ProcessDutError):
    """A step of driving PJSIP failed (the driver process, a request it refused); the message names it."""


class PjsuaLabProblem(PjsuaError, ProcessDutLabProblem):
    """PJSIP cannot run here (the pjsua2 wheel is not installed): ``fix`` says what to install."""


def translate(cfg: dict[str, str], *, log_file: str = "", ca_file: str | None = None) -> tuple[dict, list[str]]:
    """The driver's ``start`` settings from a ``.cfg`` (see the translation table's PJSIP column), and notes."""
    notes: list[str] = []
    dns = cfg.get("static.network.primary_dns", "")
    if not dns:
        dns = "127.0.0.1"  # a closed port on loopback: never the machine's resolvers (nothing leaves 127/8)
        notes.append("no static.network.primary_dns: PJSIP's nameserver is 127.0.0.1 (nothing leaves loopback)")
    out: dict[str, Any] = {"nameserver": [dns], "listen_port": int(cfg.get("sip.listen_port", "0") or 0),
                           "log_file": log_file, "ca_file": ca_file or "", "accounts": []}
    for a in stack_accounts(cfg, notes):
        x, p, host, server, params, user = a.x, a.prefix, a.host, a.server, a.params, a.user
        display = cfg.get(p + "display_name", "").replace('"', "")
        out["accounts"].append({
            "x": x,
            "id_uri": (f'"{display}" ' if display else "") + f"<sip:{user}@{host}>",
            "registrar": f"sip:{server}{params}",
            "proxy": f"sip:{server};lr{params}",
            "expires": int(cfg.get(p + "sip_server.1.expires", "3600") or 3600),
            "retry_interval": int(cfg.get(p + "reg_fail_retry_interval", "30") or 30),
            "auth_name": cfg.get(p + "auth_name", "") or user,
            "password": cfg.get(p + "password", ""),
        })
    return out, notes


class _Driver(LineChild):
    """The driver's JSON lines: replies in request order, events to the DUT; "ready" once it is up."""

    def __init__(self, on_event: Any):
        super().__init__(self._line)
        self.on_event = on_event
        self.pending: collections.deque[tuple[str, defer.Deferred]] = collections.deque()
        self.ready: defer.Deferred = defer.Deferred()

    def request(self, op: str, **fields: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        if self.ended:
            d.errback(PjsuaError(f"PJSIP driver: {op!r} after the driver ended (status {self.status})"))
            return d
        self.pending.append((op, d))
        self.transport.write((json.dumps({"op": op, **fields}) + "\n").encode())
        return d

    def _line(self, fd: int, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return  # (PJSIP may print to stdout before the driver's first line; kept in ``lines``)
        if not isinstance(msg, dict):
            return
        if "reply" in msg:
            if self.pending:
                op, d = self.pending.popleft()
                d.callback(msg)
        elif msg.get("event") == "ready":
            if not self.ready.called:
                self.ready.callback(msg)
        elif "event" in msg:
            self.on_event(msg)

    def on_end(self) -> None:
        pending, self.pending = list(self.pending), collections.deque()
        for op, d in pending:
            d.errback(PjsuaError(f"PJSIP driver ended (status {self.status}) before answering {op!r}:\n"
                                 f"{self.output(12)}"))
        if not self.ready.called:
            self.ready.callback(None)


class PjsuaPhone(ProcessDut):
    """PJSIP 2.15 (pjsua2) in a driver process, on the real clock, in the lab-in-a-box."""

    kind = "pjsua"
    stack = "pjsua"
    needs_netns = True
    Error = PjsuaError
    LabProblem = PjsuaLabProblem

    START_TIMEOUT = 20.0  # wall seconds: the driver's first line; PJSIP's start
    REQUEST_TIMEOUT = 10.0

    @classmethod
    def from_options(cls, clock: Any, options: Any, **shared: Any) -> "PjsuaPhone":
        pki = shared.get("tls_pki")
        return cls(clock, reactor=shared.get("reactor"), ca_file=getattr(pki, "ca_file", None))

    def __init__(self, clock: Any, *, reactor: Any = None, ca_file: str | None = None, python: str = sys.executable):
        super().__init__(clock, reactor=reactor)
        self.ca_file = ca_file
        self.python = python
        self.log_file: str | None = None
        self._started = False
        self._calls: dict[str, set[str]] = {}
        self._hangup_asked = False

    # -- life cycle
    def ping(self) -> defer.Deferred:
        async def ping() -> str:
            if not self.running:
                await self._start_driver()
            reply = await self._request("ping")
            return f"the PJSIP driver (pid {self.pid}) answered {reply!r}"
        return defer.ensureDeferred(ping())

    def start(self) -> defer.Deferred:
        async def start() -> None:
            if self._cfg is None:
                raise PjsuaError("PjsuaPhone.start(): apply_config() first")
            if not self.running:
                await self._start_driver()
            elif self._started:
                raise PjsuaError("PjsuaPhone.start(): PJSIP is already running (stop() it first)")
            settings, notes = translate(self._cfg, log_file=self.log_file or "", ca_file=self.ca_file)
            self.notes += notes
            self._started = True
            self._calls = {}
            try:
                version = await self._request("start", config=settings)
            except BaseException:
                await self.stop()
                raise
            self.notes.append(f"PJSIP {version} started; its log (level 5): {self.log_file}")
            self._ready()
        return defer.ensureDeferred(start())

    async def _start_driver(self) -> None:
        if importlib.util.find_spec("pjsua2") is None:
            raise PjsuaLabProblem("pjsua DUT: the Python module 'pjsua2' is not installed",
                                  "pip install 'sip-redundancy-harness[pjsua]' (the pjsua2-python wheel)")
        self.directory = tempfile.mkdtemp(prefix="sipharness-pjsua-")
        self.log_file = os.path.join(self.directory, "pjsip.log")
        env = module_env(PYTHONUNBUFFERED="1")
        proc = _Driver(self._event)
        argv = [self.python, "-m", "sipharness.harness.pjsua_driver"]
        self._started = False
        self._spawn(proc, argv, env=env, path=self.directory)
        ok = await deadline(self._reactor, proc.ready, self.START_TIMEOUT)
        if not ok or proc.ended:
            what = f"exited with status {proc.status}" if proc.ended else \
                f"did not say ready within {self.START_TIMEOUT:g} s"
            output = proc.output(20)
            await self.stop()
            raise PjsuaError(f"the PJSIP driver ({' '.join(argv[1:])}) {what}; its output:\n{output}")

    async def _request(self, op: str, **fields: Any) -> Any:
        proc = self._proc
        if not isinstance(proc, _Driver) or proc.ended:
            raise PjsuaError(f"pjsua DUT: {op!r} while the PJSIP driver is not running (start() it first)")
        reply = await self._within(proc.request(op, **fields), self.REQUEST_TIMEOUT, f"answer {op!r} (PJSIP driver)")
        if not reply.get("ok"):
            raise PjsuaError(f"PJSIP refused {op!r}: {reply.get('data')}")
        return reply.get("data")

    def _quit(self) -> Callable[[], None] | None:
        proc = self._proc
        if not isinstance(proc, _Driver) or proc.ended:
            return None
        return lambda: proc.request("quit").addErrback(lambda _: None)

    def _cleanup(self) -> None:
        self._started = False
        super()._cleanup()

    # -- calls
    def call(self, uri: str, account: int = 1) -> defer.Deferred:
        self._hangup_asked = False
        return self._safe(self._request("call", uri=uri, account=account), f"call {uri}", account)

    def answer(self) -> defer.Deferred:
        return self._safe(self._request("answer"), "answer")

    def hangup(self) -> defer.Deferred:
        self._hangup_asked = True
        return self._safe(self._request("hangup"), "hangup")

    # -- events
    def _event(self, msg: dict) -> None:
        event = msg.get("event")
        account = int(msg.get("account") or 1)
        code, reason = int(msg.get("code") or 0), str(msg.get("reason") or "")
        detail = f"{code} {reason}".strip()
        if event == "reg":
            if 200 <= code < 300:
                kind = EventKind.REGISTERED if msg.get("active") else EventKind.UNREGISTERED
            else:
                kind = EventKind.REGISTER_FAILED
            self._emit(kind, account=account, server=1, detail=detail)
        elif event == "call":
            self._call_event(account, str(msg.get("state")), code, msg.get("call_id"), detail)
        elif event == "error":
            self.notes.append(f"PJSIP driver: {msg.get('detail')}")

    def _call_event(self, account: int, state: str, code: int, call_id: Any, detail: str) -> None:
        seen = self._calls.setdefault(call_id or "", set())
        if state == "incoming":
            self._emit(EventKind.INCOMING_CALL, account=account, call_id=call_id, detail=detail)
            return
        if state == "disconnected":
            self._calls.pop(call_id or "", None)
            # SPEC §10 call states: a call that was up (or that we hung up) ends "terminated";
            # one refused or timed out before it was answered ends "failed".
            up = "confirmed" in seen or self._hangup_asked
            self._emit(EventKind.CALL_STATE, account=account, server=1,
                       state=CallState.TERMINATED if up else CallState.FAILED, call_id=call_id, detail=detail)
            return
        seen.add(state)
        mapped = {"calling": CallState.CALLING, "trying": CallState.PROCEEDING, "early": CallState.RINGING,
                  "confirmed": CallState.ESTABLISHED}.get(state)
        if mapped is not None:
            self._emit(EventKind.CALL_STATE, account=account, server=1, state=mapped, call_id=call_id, detail=detail)

    @property
    def log(self) -> list[str]:
        lines = super().log
        if self.log_file and os.path.isfile(self.log_file):
            with open(self.log_file, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_file) - 6000))
                lines += ["[PJSIP log, level 5, tail]"] + f.read().decode("utf-8", "replace").splitlines()[1:]
        return lines
