"""``sipharness phone`` (phone/daemon.py) as a subprocess against fakes in the test process.

The daemon runs on the real clock (or scaled), as it would for a harness in another process;
the fakes run on the reactor's clock. Its JSON lines are read with a ProcessProtocol into a
Journal, and every wait has a deadline in wall seconds: nothing blocks the reactor, nothing
sleeps. A test that ends with the daemon still running kills it (SIGKILL) and waits for it.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from sipharness.fakes.dns import FakeDNS, Zone
from sipharness.fakes.sip import FakeSipServer
from sipharness.phone.daemon import event_json, parse_command
from sipharness.sipcore.journal import Journal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = 20.0  # wall seconds a daemon may take to start and register (Python start-up included)

ZONE = """$ORIGIN pbx.test.
$TTL 60
@          IN SOA  ns.pbx.test. hostmaster.pbx.test. 1 3600 600 86400 60
@          IN NS   ns.pbx.test.
ns         IN A    127.0.0.1
_sip._udp  IN SRV  0 1 {port} server1.pbx.test.
server1    IN A    127.0.0.1
"""


class DaemonProcess(protocol.ProcessProtocol):
    """The daemon's stdout lines (parsed JSON) in a Journal; ``ended`` fires with the exit code."""

    def __init__(self):
        self.lines: Journal[dict] = Journal(reactor)
        self.stderr = b""
        self.garbage: list[bytes] = []
        self._buf = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.garbage.append(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.exit_code = reason.value.exitCode if reason.value.exitCode is not None else -(reason.value.signal or 0)
        self.ended.callback(self.exit_code)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def send(self, line: str) -> None:
        self.transport.write(line.encode() + b"\n")

    def wait(self, kind: str, timeout: float = START, count: int = 1, **fields):
        def match(e: dict) -> bool:
            return e.get("kind") == kind and all(e.get(k) == v for k, v in fields.items())
        return self.lines.wait_for(match, timeout, count=count, what=f"daemon line kind={kind} {fields}")

    def exit(self, timeout: float = 15.0) -> defer.Deferred:
        """The exit code, or a failure after ``timeout`` wall seconds."""
        d: defer.Deferred = defer.Deferred()
        self.ended.addCallback(lambda code: (d.called or d.callback(code), code)[1])
        timer = reactor.callLater(timeout, lambda: d.called or d.errback(
            AssertionError(f"daemon still running after {timeout} s; stderr: {self.stderr.decode(errors='replace')}")))
        d.addBoth(lambda r: (timer.active() and timer.cancel(), r)[1])
        return d

    def kind_list(self) -> list[str]:
        return [e["kind"] for e in self.lines]


@pytest_twisted.async_yield_fixture
async def spawn(tmp_path):
    procs: list[DaemonProcess] = []

    def run(cfg_text: str, *extra: str) -> DaemonProcess:
        cfg = tmp_path / f"phone{len(procs)}.cfg"
        cfg.write_text(cfg_text)
        p = DaemonProcess()
        argv = [sys.executable, "-m", "sipharness.harness.cli", "phone", "--config", str(cfg), *extra]
        reactor.spawnProcess(p, sys.executable, argv, env=dict(os.environ), path=ROOT)
        procs.append(p)
        return p

    yield run
    for p in procs:
        if p.running:
            p.transport.signalProcess("KILL")
            await p.exit(10)


@pytest_twisted.async_yield_fixture
async def registrar():
    server = FakeSipServer("registrar", role="pbx", clock=reactor)
    await server.listen("udp")
    yield server
    await server.stop()


def cfg(address: str, port: int, extra: str = "") -> str:
    return ("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
            f"account.1.sip_server.1.address = {address}\naccount.1.sip_server.1.port = {port}\n" + extra)


# ---------------------------------------------------------------------------- pure parts


def test_event_json_has_every_key():
    obj = json.loads(event_json("registered", 7.5, account=1, server=1, target="udp:127.0.0.1:5060"))
    assert obj == {"t": 7.5, "kind": "registered", "account": 1, "server": 1, "target": "udp:127.0.0.1:5060",
                   "state": None, "call_id": None, "detail": ""}


@pytest.mark.parametrize("line, parsed", [
    ("call 2002", ("call", ["2002"])), ("call sip:2002@127.0.0.1 2", ("call", ["sip:2002@127.0.0.1", "2"])),
    ("  answer ", ("answer", [])), ("hangup abc@x", ("hangup", ["abc@x"])), ("QUIT", ("quit", [])), ("", ("", [])),
])
def test_parse_command(line, parsed):
    assert parse_command(line) == parsed


@pytest.mark.parametrize("line, text", [
    ("dial 2002", "unknown command"), ("call", "expected 'call URI"), ("call 2002 7", "ACCOUNT must be 1..6"),
    ("quit now", "takes no argument"), ("answer a b", "expected 'answer"),
])
def test_parse_command_refuses(line, text):
    with pytest.raises(ValueError, match=text):
        parse_command(line)


# ---------------------------------------------------------------------------- the process


@pytest_twisted.ensureDeferred
async def test_bad_cfg_exits_2_naming_file_and_line(spawn, registrar):
    p = spawn(cfg("127.0.0.1", registrar.address[1], "account.1.sip_server.1.retry_counts = 99\n"))
    assert await p.exit() == 2
    err = p.stderr.decode()
    assert "phone0.cfg:6: account.1.sip_server.1.retry_counts = 99" in err and "0..20" in err
    assert len(p.lines) == 0  # nothing started: no event line
    assert registrar.records == []  # and no packet sent


@pytest_twisted.ensureDeferred
async def test_missing_cfg_and_virtual_clock_exit_2(spawn, tmp_path, registrar):
    p = DaemonProcess()
    missing = str(tmp_path / "nope.cfg")
    reactor.spawnProcess(p, sys.executable, [sys.executable, "-m", "sipharness.harness.cli", "phone", "--config", missing],
                         env=dict(os.environ), path=ROOT)
    assert await p.exit() == 2 and "nope.cfg" in p.stderr.decode()
    q = spawn(cfg("127.0.0.1", registrar.address[1]), "--clock", "virtual")
    assert await q.exit() == 2 and "virtual" in q.stderr.decode()


@pytest_twisted.ensureDeferred
async def test_registers_through_fake_dns_and_sigterm_exits_0(spawn, registrar):
    dns = FakeDNS(Zone.from_text(ZONE.format(port=registrar.address[1])))
    await dns.start()
    try:
        p = spawn(cfg("pbx.test", 0), "--dns", f"{dns.address[0]}:{dns.address[1]}")
        ev = await p.wait("registered", account=1, server=1)
        assert ev["target"] == f"udp:127.0.0.1:{registrar.address[1]}"
        assert registrar.bindings("1001"), "the fake registrar holds the daemon's binding"
        names = {r.name for r in dns.recorder.entries() if r.kind == "dns" and r.direction == "in"}
        assert {"_sip._udp.pbx.test", "server1.pbx.test"} <= {n.rstrip(".") for n in names if n}, names
        p.transport.signalProcess("TERM")
        assert await p.exit() == 0
        assert p.kind_list()[0] == "daemon" and p.lines[-1]["detail"] == "stopped"
        assert not p.garbage
    finally:
        await dns.stop()


@pytest_twisted.ensureDeferred
async def test_commands_call_hangup_error_and_quit(spawn, registrar):
    p = spawn(cfg("127.0.0.1", registrar.address[1]))
    await p.wait("registered")
    p.send("dial 2002")
    err = await p.wait("error")
    assert "unknown command 'dial 2002'" in err["detail"]
    p.send("call 2002 3")  # account 3 is not enabled: an error line, the daemon goes on
    assert "not enabled" in (await p.wait("error", count=2))["detail"]
    p.send("call 2002")
    up = await p.wait("call_state", state="established")
    assert up["account"] == 1 and up["server"] == 1
    await registrar.wait_for("ACK", timeout=10)
    p.send(f"hangup {up['call_id']}")
    await p.wait("call_state", state="terminated", call_id=up["call_id"])
    await registrar.wait_for("BYE", timeout=10)
    p.send("quit")
    assert await p.exit() == 0


@pytest_twisted.ensureDeferred
async def test_sigint_with_unregister_on_exit_sends_expires_0(spawn, registrar):
    p = spawn(cfg("127.0.0.1", registrar.address[1]), "--unregister-on-exit")
    await p.wait("registered")
    assert registrar.bindings("1001")
    p.transport.signalProcess("INT")
    assert await p.exit() == 0
    assert not registrar.bindings("1001"), "the binding was removed by REGISTER Expires: 0"
    assert "unregistered" in p.kind_list()


@pytest_twisted.ensureDeferred
async def test_eof_keeps_running_unless_exit_on_eof(spawn, registrar):
    p = spawn(cfg("127.0.0.1", registrar.address[1]))
    q = spawn(cfg("127.0.0.1", registrar.address[1]), "--exit-on-eof")
    await p.wait("registered")
    await q.wait("registered")
    p.transport.closeStdin()
    q.transport.closeStdin()
    assert await q.exit() == 0
    assert p.running  # its stdin closed at the same time as q's
    p.transport.signalProcess("TERM")
    assert await p.exit() == 0
    assert p.lines[-1]["detail"] == "stopped"


@pytest_twisted.ensureDeferred
async def test_scaled_clock_refreshes_on_phone_time(spawn, registrar):
    # expires 30 → refresh at 27 phone s = 1.35 wall s at scaled:20
    p = spawn(cfg("127.0.0.1", registrar.address[1], "account.1.sip_server.1.expires = 30\n"), "--clock", "scaled:20")
    first = await p.wait("registered")
    second = await p.wait("registered", count=2, timeout=START)
    assert second["t"] - first["t"] == pytest.approx(27.0, abs=1.5)  # SPEC §9: ±5 % on phone time
    p.transport.signalProcess("TERM")
    assert await p.exit() == 0
