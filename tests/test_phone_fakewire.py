"""An in-memory wire for the phone's user agent (no tests here: helpers for test_phone_agent_*.py).

Used by tests/test_phone_agent*.py to check every SPEC rule on a task.Clock, without sockets.
"""

from __future__ import annotations

from twisted.internet import task

from sipharness.phone.agent import UserAgent
from sipharness.phone.config import loads_config
from sipharness.phone.dnsrecords import Target
from sipharness.sipcore.build import make_response


class Flow:
    def __init__(self, wire, target, n):
        self.wire, self.target = wire, target
        self.transport = target.transport
        self.reliable = target.transport != "udp"
        self.local = ("127.0.0.1", 40000 + n)
        self.peer = (target.host, target.port)

    def send(self, message):
        self.wire.sent.append((self.wire.clock.seconds(), self.target, message))
        responder = self.wire.responders.get(self.target.host)
        if responder is None or not message.is_request:
            return
        args = (message, self.target) if responder.__code__.co_argcount >= 2 else (message,)
        for delay, resp in responder(*args) or []:
            self.wire.clock.callLater(delay, self.wire.ua.sip_received, resp, self)


class Wire:
    def __init__(self, clock):
        self.clock = clock
        self.sent = []  # (time, target, message)
        self.responders = {}  # host → fn(request) -> [(delay, response)]
        self.flows = {}
        self.ua = None

    def flow(self, target):
        key = (target.host, target.port, target.transport)
        if key not in self.flows:
            self.flows[key] = Flow(self, target, len(self.flows))
        return self.flows[key]

    def requests(self, method=None, host=None):
        return [(t, tg, m) for t, tg, m in self.sent
                if m.is_request and (method is None or m.method == method) and (host is None or tg.host == host)]

    def times(self, method=None, host=None):
        return [round(t, 3) for t, _, _ in self.requests(method, host)]


def ok(req, status=200, reason=None, delay=0.0, headers=None, **kw):
    return [(delay, make_response(req, status, reason, to_tag="srv", headers=headers or [], **kw))]


def registrar(status=200):
    def respond(req, target=None):
        if req.method == "REGISTER":
            exp = req.headers.get("Expires")
            return ok(req, status, headers=[("Contact", f"{req.contacts[0]};expires={exp}")])
        if req.method == "INVITE":
            where = f"{target.host}:{target.port}" if target is not None else req.uri.host
            contact = [("Contact", f"<sip:uas@{where}>")]
            return [(0.0, make_response(req, 100))] + ok(req, 180, headers=contact) + ok(req, 200, headers=contact)
        if req.method in ("BYE", "CANCEL"):
            return ok(req)
        return []
    return respond


def silent(req):
    return []


CFG_HEAD = "#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\naccount.1.password = secret\n"


def make_ua(cfg_lines: str, targets: dict, **kw):
    """A UserAgent on a task.Clock with ``targets`` {server: [Target, ...]} and an in-memory wire."""
    clock = task.Clock()
    cfg = loads_config(CFG_HEAD + cfg_lines)
    wire = Wire(clock)
    ua = UserAgent(cfg, clock=clock, wire=wire, resolve=lambda acct, y: list(targets.get(y, [])), **kw)
    wire.ua = ua
    return clock, wire, ua


def run_until(clock, t):
    """Fire every call due up to phone time ``t``, in order, then stand at ``t``."""
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        nxt = min(due, default=None)
        if nxt is None or nxt > t + 1e-9:
            break
        clock.advance(max(0.0, nxt - clock.seconds()))
    if t > clock.seconds():
        clock.advance(t - clock.seconds())


def tgt(host, port=5060, transport="udp", expires_at=None):
    return Target(host, port, transport, a_ttl=None if expires_at is None else 300, expires_at=expires_at)
