"""The bundled phone against real SIP peers: Kamailio 5.6 (registrar + proxy) and a SIPp UAS.

- Kamailio (tests/kamailio/phone.cfg) runs once per module and per flavour (plain, and
  ``-A WITH_AUTH``: digest with the fixed password "secret"), listening UDP and TCP on
  127.0.0.1 on a port found free a moment before (a small race: another process may take it
  between our probe and Kamailio's bind; a start that does not answer is retried on a new
  port). Two bundled phones register with it and one calls the other through it (record-
  route, so ACK and BYE follow the route set), over UDP and over TCP.
- SIPp (tests/sipp/phone_uas.xml) is the phone's server directly: it answers the phone's
  REGISTER, then its INVITE; the phone hangs up. SIPp exits 0 only if both "calls" completed.

Kamailio and SIPp are separate processes with their own clocks, so the phones run on the
real clock (``ScaledClock(reactor, 1.0)``); every wait has a deadline, peers are spawned with
``spawnProcess`` (the reactor keeps serving) and stopped with SIGTERM, SIGKILL after a timeout
(PEERS.md: Kamailio may take its time to exit, and a second instance could bind its port).
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from sipharness.phone.config import loads_config
from sipharness.phone.phone import Phone
from sipharness.sipcore.clock import ScaledClock
from tests.conftest import require_peer
from tests.conftest import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
KAMAILIO_CFG = os.path.join(HERE, "kamailio", "phone.cfg")
SIPP_UAS = os.path.join(HERE, "sipp", "phone_uas.xml")
WAIT = 15.0  # wall seconds for any single thing to happen




def deadline(d: defer.Deferred, seconds: float, what: str) -> defer.Deferred:
    """``d``, or an AssertionError naming ``what`` after ``seconds`` wall seconds."""
    out: defer.Deferred = defer.Deferred()
    timer = reactor.callLater(seconds, lambda: out.called or out.errback(
        AssertionError(f"{what}: nothing after {seconds:g} s")))

    def done(result):
        if timer.active():
            timer.cancel()
        if not out.called:
            out.callback(result)
        return result

    d.addBoth(done)
    return out


class PeerProcess(protocol.ProcessProtocol):
    """A real peer run in its own session (so SIGKILL reaches its children); output kept."""

    def __init__(self, name: str):
        self.name = name
        self.out = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.out += data[-200_000:]

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        v = reason.value
        self.exit_code = v.exitCode if v.exitCode is not None else -(v.signal or 0)
        self.ended.callback(self.exit_code)

    @property
    def running(self) -> bool:
        return not self.ended.called

    def tail(self, n: int = 3000) -> str:
        return self.out.decode(errors="replace")[-n:]

    def _signal_group(self, sig: int) -> None:
        pid = self.transport.pid
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait for the PID to exit; SIGKILL the whole group after ``timeout``."""
        if not self.running:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await deadline(self.ended, timeout, f"{self.name} exit after SIGTERM")
        except AssertionError:
            self._signal_group(signal.SIGKILL)
            await deadline(self.ended, timeout, f"{self.name} exit after SIGKILL")


def spawn(name: str, argv: list[str]) -> PeerProcess:
    p = PeerProcess(name)
    setsid = shutil.which("setsid")
    if setsid:  # not a group leader here, so setsid(1) execs in place: same PID, own session
        argv = [setsid, *argv]
    reactor.spawnProcess(p, argv[0], argv, env=dict(os.environ), path="/tmp")
    return p


class _OptionsProbe(protocol.DatagramProtocol):
    def __init__(self):
        self.answered: defer.Deferred = defer.Deferred()

    def datagramReceived(self, data, addr):
        if data.startswith(b"SIP/2.0 200") and not self.answered.called:
            self.answered.callback(data)


async def sip_answers(port: int, process: PeerProcess, seconds: float = WAIT) -> bool:
    """Send OPTIONS to 127.0.0.1:port every 0.2 s until a 200 (True) or the process exits / time runs out."""
    probe = _OptionsProbe()
    udp = reactor.listenUDP(0, probe, interface="127.0.0.1")
    me = udp.getHost().port
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKprobe{me}\r\n"
           f"From: <sip:probe@127.0.0.1>;tag=p{me}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe{me}@127.0.0.1\r\n"
           f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()

    def send():
        if not probe.answered.called:
            udp.write(msg, ("127.0.0.1", port))
            timers.append(reactor.callLater(0.2, send))

    timers: list = []
    send()
    done: defer.Deferred = defer.DeferredList([probe.answered, process.ended], fireOnOneCallback=True,
                                              consumeErrors=True)
    try:
        _, index = await deadline(done, seconds, f"{process.name} answering OPTIONS on port {port}")
        return index == 0
    except AssertionError:
        return False
    finally:
        for t in timers:
            if t.active():
                t.cancel()
        if not probe.answered.called:
            probe.answered.callback(None)
        await udp.stopListening()


async def start_kamailio(auth: bool, workdir: str) -> tuple[PeerProcess, int]:
    kamailio = require_peer("kamailio")
    last = None
    for _ in range(4):  # a port taken between free_port() and Kamailio's bind: try another one
        port = free_port()
        argv = [kamailio, "-f", KAMAILIO_CFG, "-DD", "-E", "-n", "1", "-m", "64", "-M", "8", "-w", workdir,
                "-l", f"udp:127.0.0.1:{port}", "-l", f"tcp:127.0.0.1:{port}"] + (["-A", "WITH_AUTH"] if auth else [])
        proc = spawn("kamailio", argv)
        if await sip_answers(port, proc):
            return proc, port
        last = proc
        await proc.stop()
    raise AssertionError(f"Kamailio did not start; its output:\n{last.tail() if last else ''}")


@pytest_twisted.async_yield_fixture(scope="module")
async def kamailio_plain(tmp_path_factory):
    proc, port = await start_kamailio(False, str(tmp_path_factory.mktemp("kamailio")))
    yield port
    await proc.stop()


@pytest_twisted.async_yield_fixture(scope="module")
async def kamailio_auth(tmp_path_factory):
    proc, port = await start_kamailio(True, str(tmp_path_factory.mktemp("kamailio-auth")))
    yield port
    await proc.stop()


@pytest_twisted.async_yield_fixture
async def phones():
    clock = ScaledClock(reactor, 1.0)
    made: list[Phone] = []

    def make(user: str, server_port: int, transport: int, extra: str = "") -> Phone:
        cfg = loads_config(
            "#!version:1.0.0.1\naccount.1.enable = 1\n"
            f"account.1.user_name = {user}\naccount.1.transport = {transport}\n"
            f"account.1.sip_server.1.address = 127.0.0.1\naccount.1.sip_server.1.port = {server_port}\n"
            "account.1.reg_fail_retry_interval = 1\n" + extra)
        p = Phone(cfg, clock=clock, name=f"phone-{user}")
        made.append(p)
        return p

    yield make
    for p in made:
        await deadline(p.stop(), WAIT, f"{p.name} stop")


TRANSPORTS = pytest.mark.parametrize("transport", [0, 1], ids=["udp", "tcp"])


async def _call_through(make, port: int, transport: int, extra: str = "") -> None:
    a = make("1001", port, transport, extra)
    b = make("1002", port, transport, extra + "account.1.auto_answer = 1\n")
    kind = ("udp", "tcp")[transport]
    for p in (a, b):
        await p.start()
        ev = await p.wait_for("registered", WAIT, account=1, server=1)
        assert ev.target == f"{kind}:127.0.0.1:{port}"
    call = a.call("1002")
    up = await a.wait_for("call_state", WAIT, state="established", call_id=call.call_id)
    assert up.detail.startswith("200")
    b_up = await b.wait_for("call_state", WAIT, state="established", call_id=call.call_id)
    assert b_up.detail == "ACK received"  # the ACK came through Kamailio on the route set
    a.hangup(call)
    await a.wait_for("call_state", WAIT, state="terminated", call_id=call.call_id)
    ev = await b.wait_for("call_state", WAIT, state="terminated", call_id=call.call_id)
    assert ev.detail == "BYE received"


@TRANSPORTS
@pytest_twisted.ensureDeferred
async def test_kamailio_register_and_call(peer, kamailio_plain, phones, transport):
    await _call_through(phones, kamailio_plain, transport)


@TRANSPORTS
@pytest_twisted.ensureDeferred
async def test_kamailio_digest_register_and_call(peer, kamailio_auth, phones, transport):
    await _call_through(phones, kamailio_auth, transport, "account.1.password = secret\n")


@pytest_twisted.ensureDeferred
async def test_kamailio_digest_wrong_password_is_refused(peer, kamailio_auth, phones):
    p = phones("1003", kamailio_auth, 0, "account.1.password = wrong\naccount.1.reg_fail_retry_interval = 0\n")
    await p.start()
    ev = await p.wait_for("register_failed", WAIT, account=1, server=1)
    assert "401" in ev.detail or "403" in ev.detail
    assert not p.registered(1)


# ---------------------------------------------------------------------------- SIPp UAS


@TRANSPORTS
@pytest_twisted.ensureDeferred
async def test_sipp_uas_answers_the_phones_call(peer, phones, transport):
    sipp = peer("sipp")
    port = free_port()  # small race, see free_port()
    proc = spawn("sipp", [sipp, "-sf", SIPP_UAS, "-i", "127.0.0.1", "-p", str(port), "-m", "2",
                          "-t", "u1" if transport == 0 else "t1", "-timeout", "30s", "-timeout_error", "-nostdin",
                          "-trace_err", "-error_file", f"/tmp/sipp-phone-{os.getpid()}-{port}.log"])
    try:
        # the phone retries a refused REGISTER every second until SIPp listens
        p = phones("1001", port, transport)
        await p.start()
        await p.wait_for("registered", WAIT, account=1, server=1)
        call = p.call(f"sip:uas@127.0.0.1:{port}")
        up = await p.wait_for("call_state", WAIT, state="established", call_id=call.call_id)
        assert up.target == f"{('udp', 'tcp')[transport]}:127.0.0.1:{port}"
        p.hangup(call)
        await p.wait_for("call_state", WAIT, state="terminated", call_id=call.call_id)
        code = await deadline(proc.ended, WAIT, "SIPp exit after 2 calls")
        assert code == 0, proc.tail()
    finally:
        await proc.stop()
        try:
            os.unlink(f"/tmp/sipp-phone-{os.getpid()}-{port}.log")
        except OSError:
            pass
