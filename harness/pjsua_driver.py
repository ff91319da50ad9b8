"""The PJSIP driver process: pjsua2 in a process of its own, spoken to in JSON lines (``--dut pjsua``).

Why a process of its own: PJSIP is C under a SWIG binding; a crash there (an assertion, a
segfault) must be a harness error the test reports, never the end of the test process
(harness/pjsua.py spawns this and reads its lines). Why JSON lines on stdin/stdout: nothing to
bind, nothing to find, and the end of stdin is the end of the driver (it can never outlive the
harness that holds its pipe).

In (one object a line): ``{"op": "start", "config": {...}}`` (the translated ``.cfg``: see
:func:`harness.pjsua.translate`), ``{"op": "call", "uri": U, "account": X}``, ``{"op": "answer"}``,
``{"op": "hangup"}``, ``{"op": "ping"}``, ``{"op": "quit"}``. Out: ``{"reply": OP, "ok": bool,
"data": ...}`` for each request, and events ``{"event": "reg", "account": X, "code": N,
"reason": R, "active": bool}``, ``{"event": "call", "account": X, "state": S, "code": N,
"reason": R, "call_id": C}`` (S: calling, trying, early, connecting, confirmed, disconnected,
incoming), ``{"event": "ready", "version": V}``, ``{"event": "error", "detail": D}``.

pjsua2 runs with no worker thread (``threadCnt = 0``, ``mainThreadOnly``): this loop polls its
events 20 ms at a time and reads stdin in between, so every callback runs on this one thread.
PJSIP's own log (level 5: every SIP message and resolver step) goes to the file the config
names: the evidence docs/evidence/pjsua/ quotes.
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from typing import Any

import pjsua2 as pj

_STATE = {pj.PJSIP_INV_STATE_CALLING: "calling", pj.PJSIP_INV_STATE_INCOMING: "incoming",
          pj.PJSIP_INV_STATE_EARLY: "early", pj.PJSIP_INV_STATE_CONNECTING: "connecting",
          pj.PJSIP_INV_STATE_CONFIRMED: "confirmed", pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected"}


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def guarded(fn):
    """A pjsua2 callback must never raise into C: an exception becomes an ``error`` event."""
    def wrapper(*args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001
            send({"event": "error", "detail": traceback.format_exc(limit=4)})
    return wrapper


class Call(pj.Call):
    def __init__(self, driver: "Driver", acc: "Account", call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.driver, self.acc = driver, acc
        self.trying_seen = False

    @guarded
    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        state = _STATE.get(info.state, str(info.state))
        send({"event": "call", "account": self.acc.x, "state": state, "code": info.lastStatusCode,
              "reason": info.lastReason, "call_id": info.callIdString})
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.driver.forget(self)

    @guarded
    def onCallTsxState(self, prm: Any) -> None:
        # a 100 Trying to our INVITE: pjsua's call state stays CALLING, so say it here
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE or self.trying_seen:
            return
        tsx = e.body.tsxState.tsx
        if tsx.method == "INVITE" and tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode == 100:
            self.trying_seen = True
            info = self.getInfo()
            send({"event": "call", "account": self.acc.x, "state": "trying", "code": 100, "reason": "Trying",
                  "call_id": info.callIdString})


class Account(pj.Account):
    def __init__(self, driver: "Driver", x: int):
        super().__init__()
        self.driver, self.x = driver, x

    @guarded
    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        send({"event": "reg", "account": self.x, "code": prm.code, "reason": prm.reason,
              "active": bool(info.regIsActive), "expires": info.regExpiresSec})

    @guarded
    def onIncomingCall(self, prm: Any) -> None:
        call = Call(self.driver, self, prm.callId)
        self.driver.calls.append(call)
        info = call.getInfo()
        send({"event": "call", "account": self.x, "state": "incoming", "code": 0, "reason": "",
              "call_id": info.callIdString, "from": info.remoteUri})
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)


class Driver:
    def __init__(self) -> None:
        self.ep: pj.Endpoint | None = None
        self.accounts: dict[int, Account] = {}
        self.calls: list[Call] = []

    def forget(self, call: Call) -> None:
        if call in self.calls:
            self.calls.remove(call)

    # ------------------------------------------------------------------ requests
    def start(self, cfg: dict) -> str:
        ep = self.ep = pj.Endpoint()
        ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.maxCalls = 4
        ep_cfg.uaConfig.userAgent = "sipharness-pjsua2"
        ns = pj.StringVector()
        for host in cfg.get("nameserver", []):
            ns.append(host)
        ep_cfg.uaConfig.nameserver = ns
        ep_cfg.logConfig.level = 5
        ep_cfg.logConfig.consoleLevel = 0
        ep_cfg.logConfig.msgLogging = 1
        if cfg.get("log_file"):
            ep_cfg.logConfig.filename = cfg["log_file"]
        ep_cfg.medConfig.noVad = True
        ep.libInit(ep_cfg)
        host, port = cfg.get("bind", "127.0.0.1"), int(cfg.get("listen_port", 0))
        for kind in ("udp", "tcp", "tls"):
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = host
            tcfg.port = port if kind != "tls" or not port else 0
            if kind == "tls":
                if not cfg.get("ca_file"):
                    continue
                tcfg.tlsConfig.CaListFile = cfg["ca_file"]
                tcfg.tlsConfig.verifyServer = True
                tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            ep.transportCreate({"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP,
                                "tls": pj.PJSIP_TRANSPORT_TLS}[kind], tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for a in cfg.get("accounts", []):
            acfg = pj.AccountConfig()
            acfg.idUri = a["id_uri"]
            acfg.regConfig.registrarUri = a["registrar"]
            acfg.regConfig.timeoutSec = int(a["expires"])
            acfg.regConfig.retryIntervalSec = int(a["retry_interval"])
            acfg.regConfig.firstRetryIntervalSec = int(a["retry_interval"])
            acfg.regConfig.randomRetryIntervalSec = 0
            acfg.regConfig.unregWaitMsec = 1000
            proxies = pj.StringVector()
            proxies.append(a["proxy"])
            acfg.sipConfig.proxies = proxies
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a["auth_name"], 0, a["password"]))
            acc = Account(self, int(a["x"]))
            acc.create(acfg)
            self.accounts[acc.x] = acc
        return ep.libVersion().full

    def call(self, uri: str, x: int) -> str:
        acc = self.accounts.get(x) or next(iter(self.accounts.values()), None)
        if acc is None:
            raise RuntimeError("no account to call from")
        call = Call(self, acc)
        self.calls.append(call)
        op = pj.CallOpParam(True)
        call.makeCall(uri, op)
        return call.getInfo().callIdString

    def answer(self) -> str:
        for call in self.calls:
            info = call.getInfo()
            if info.state in (pj.PJSIP_INV_STATE_INCOMING, pj.PJSIP_INV_STATE_EARLY) and \
                    info.role == pj.PJSIP_ROLE_UAS:
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
                return info.callIdString
        raise RuntimeError("no incoming call to answer")

    def hangup(self) -> str:
        if not self.calls:
            raise RuntimeError("no call to hang up")
        call = self.calls[-1]
        info = call.getInfo()
        op = pj.CallOpParam()
        if info.role == pj.PJSIP_ROLE_UAS and info.state in (pj.PJSIP_INV_STATE_INCOMING, pj.PJSIP_INV_STATE_EARLY):
            op.statusCode = 486
        call.hangup(op)
        return info.callIdString

    def stop(self) -> None:
        if self.ep is not None:
            try:
                self.ep.hangupAllCalls()
            except pj.Error:
                pass
            self.calls.clear()
            self.accounts.clear()  # (pjsua2 Account objects are shut down by libDestroy)
            self.ep.libDestroy()
            self.ep = None

    def handle(self, line: str) -> bool:
        """One request; False once it was ``quit``."""
        try:
            req = json.loads(line)
            op = req.get("op")
        except (ValueError, AttributeError):
            send({"reply": None, "ok": False, "data": f"not a JSON object: {line[:200]!r}"})
            return True
        try:
            if op == "quit":
                self.stop()
                send({"reply": op, "ok": True, "data": ""})
                return False
            data = {"start": lambda: self.start(req["config"]), "call": lambda: self.call(req["uri"], req.get("account", 1)),
                    "answer": self.answer, "hangup": self.hangup, "ping": lambda: "pong"}[op]()
            send({"reply": op, "ok": True, "data": data})
        except KeyError:
            send({"reply": op, "ok": False, "data": f"unknown op {op!r}"})
        except pj.Error as e:
            send({"reply": op, "ok": False, "data": f"{e.title}: {e.reason} (status {e.status})"})
        except Exception as e:  # noqa: BLE001 - the harness decides; the driver reports
            send({"reply": op, "ok": False, "data": f"{type(e).__name__}: {e}"})
        return True


def main() -> int:
    driver = Driver()
    send({"event": "ready", "version": pj.Endpoint.version if hasattr(pj.Endpoint, "version") else ""})
    buf = b""
    fd = sys.stdin.fileno()
    running = True
    while running:
        readable, _, _ = select.select([fd], [], [], 0 if driver.ep is not None else 0.5)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the harness is gone: never outlive it
            buf += chunk
            while b"\n" in buf and running:
                line, buf = buf.split(b"\n", 1)
                running = driver.handle(line.decode("utf-8", "replace"))
        if driver.ep is not None and running:
            driver.ep.libHandleEvents(20)
    driver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
