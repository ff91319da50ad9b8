"""SIPp as a silent server and as a 503 server, against our own client transactions.

The client is the one the bundled phone uses: sipcore.transaction.ClientTransaction, run by a
TimerDriver, over a sipcore.transport.connect_udp socket. SIPp (Debian sip-tester) is another
process with its own clock, so the client runs on a ScaledClock (16 phone seconds per wall
second: Timer F's 32 s take 2 s) and send times are checked with a tolerance, not exactly.
Every send and every response is recorded as the fakes record (fakes.record.Record, SIPp as
the server column) so the exchange is drawn by fakes.ladder like any test's.
"""

from __future__ import annotations

import errno
import os
import re
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.utils import getProcessOutputAndValue

from sipharness.fakes.ladder import render_ladder
from sipharness.fakes.record import Recorder, SipRecord
from sipharness.sipcore.build import make_request
from sipharness.sipcore.clock import ScaledClock
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.journal import Journal
from sipharness.sipcore.transaction import (ClientTransaction, Deliver, Send, Terminated, TimedOut, TimerDriver,
                                 send_offsets)
from sipharness.sipcore.transport import connect_udp
from tests.conftest import free_port

HERE = os.path.join(os.path.dirname(__file__), "sipp")
SPEED = 16.0
EARLY = 0.02  # phone seconds: a send is never early (an early retransmission would be a bug)
LATE = 1.0  # phone seconds (~60 ms of wall time at SPEED): how late a busy 2-core box may run a timer


def on_schedule(got: float, want: float) -> bool:
    """``got`` is ``want`` or a little later: a reactor on a loaded box fires timers late, never early."""
    return want - EARLY <= got <= want + LATE


def _sipp_uas(sipp, scenario, port, *extra):
    argv = ["-sf", os.path.join(HERE, scenario), "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-t", "u1",
            "-nostdin", "-timeout", "20s", "-timeout_error", *extra]
    return getProcessOutputAndValue(sipp, argv, env=dict(os.environ), path="/tmp", reactor=reactor)


@pytest_twisted.inlineCallbacks
def _until_bound(port, timeout=10.0):
    """Wait (polling the wall clock every 20 ms, with a deadline) until something holds UDP ``port``."""
    deadline = reactor.seconds() + timeout
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return
            raise
        finally:
            s.close()
        if reactor.seconds() > deadline:
            raise AssertionError(f"SIPp did not bind 127.0.0.1:{port} within {timeout} s")
        yield task.deferLater(reactor, 0.02, lambda: None)


class Client:
    """One client transaction at a time, recorded as SIPp-the-server saw it."""

    def __init__(self, clock, server, recorder):
        self.clock, self.server, self.recorder = clock, server, recorder
        self.driver = TimerDriver(clock)
        self.events = Journal(clock)
        self.tx = None
        self.conn = connect_udp(self, server, clock=clock)

    def request(self, method):
        host, port = self.conn.local
        return make_request(method, f"sip:{self.server[0]}:{self.server[1]}",
                            from_=f"<sip:alice@example.com>;tag={new_tag()}", to="<sip:alice@example.com>",
                            call_id=new_tag() + "@test", cseq=1,
                            via=f"SIP/2.0/UDP {host}:{port};branch={new_branch()}",
                            contact=f"<sip:alice@{host}:{port}>", headers={"Expires": "60"} if method == "REGISTER" else None)

    def start(self, request):
        self.tx = ClientTransaction(request, reliable=False)
        self.driver.watch(self.tx, self._events)
        self._events(self.tx.start(self.clock.seconds()))
        self.driver.poke(self.tx)

    def _events(self, events):
        for ev in events:
            if isinstance(ev, Send):
                self.conn.send(ev.message)
                self._record("in", ev.message, retransmission=ev.retransmission)
            self.events.append((self.clock.seconds(), ev))

    def _record(self, direction, m, retransmission=False):
        is_req = m.is_request
        self.recorder.append(SipRecord(
            time=self.clock.seconds(), direction=direction, server="sipp", transport="udp",
            local=self.server, peer=self.conn.local,
            summary=f"{m.method} {m.uri}" if is_req else f"{m.status} {m.reason}",
            method=m.method if is_req else m.cseq[1], status=None if is_req else m.status,
            retransmission=retransmission, call_id=m.call_id, cseq=m.cseq[0], branch=m.top_via.branch,
            message=m, raw=m.to_bytes()))

    # sipcore.transport handler
    def sip_received(self, message, source):
        if message.is_request:
            return
        self._record("out", message)
        if self.tx is not None and self.tx.key == (message.top_via.branch, message.cseq[1]):
            self._events(self.tx.receive(message, self.clock.seconds()))
            self.driver.poke(self.tx)

    def sip_transport_error(self, peer, transport, reason):
        if self.tx is not None:
            self._events(self.tx.transport_error(reason, self.clock.seconds()))


@pytest.fixture
def sipp_client(peer):
    sipp = peer("sipp")
    made = []

    def make(scenario, *extra):
        port = free_port()
        proc = _sipp_uas(sipp, scenario, port, *extra)
        clock = ScaledClock(reactor, SPEED)
        rec = Recorder(clock)
        made.append(rec)
        return proc, port, clock, rec

    yield make
    for rec in made:
        rec.cancel_waits()


def _sipp_counts(out: str, method: str) -> tuple[int, int]:
    """(messages, retransmissions) SIPp counted on its receive line for ``method`` (final screen),
    e.g. ``  ----------> REGISTER           1         10        0         0``."""
    found = re.findall(rf"-+> {method}\s+(\d+)\s+(\d+)", out)
    assert found, f"no SIPp receive line for {method} in:\n{out[-1500:]}"
    return int(found[-1][0]), int(found[-1][1])


@pytest.mark.parametrize("method", ["REGISTER", "OPTIONS"])
@pytest_twisted.inlineCallbacks
def test_silent_sipp_sees_the_rfc3261_retransmission_schedule(sipp_client, method):
    proc, port, clock, rec = sipp_client("uas_silent.xml", "-d", "4000")
    yield _until_bound(port)
    c = Client(clock, ("127.0.0.1", port), rec)
    try:
        c.start(c.request(method))
        t0 = clock.seconds()
        yield c.events.wait_for(lambda e: isinstance(e[1], Terminated), 40)
        sends = [t - t0 for t, ev in c.events if isinstance(ev, Send)]
        expected = [t for t in send_offsets(False, 20) if t < 32.0]  # Timer E until Timer F = 64·T1
        assert len(sends) == len(expected) == 11
        for got, want in zip(sends, expected):
            assert on_schedule(got, want), (got, want)
        [(t_out, timed_out)] = [(t, ev) for t, ev in c.events if isinstance(ev, TimedOut)]
        assert on_schedule(t_out - t0, 32.0) and "Timer F" in timed_out.reason
        assert isinstance(list(c.events)[-1][1], Terminated) and c.tx.state == "terminated"
    finally:
        yield c.conn.close()
    out, err, code = yield proc
    text = out.decode(errors="replace")
    assert code == 0, text[-1500:] + err.decode(errors="replace")[-800:]
    # SIPp's own count: the request once and its 10 retransmissions arrived (absorbed, unanswered)
    assert _sipp_counts(text, method) == (1, 10)


@pytest_twisted.inlineCallbacks
def test_503_from_sipp_ends_the_transaction_and_the_ladder_shows_it(sipp_client):
    proc, port, clock, rec = sipp_client("uas_503.xml")
    yield _until_bound(port)
    c = Client(clock, ("127.0.0.1", port), rec)
    try:
        c.start(c.request("REGISTER"))
        t0 = clock.seconds()
        _, delivered = yield c.events.wait_for(lambda e: isinstance(e[1], Deliver), 10)
        assert delivered.message.status == 503 and delivered.message.headers.get("Retry-After") == "30"
        assert c.tx.state == "completed" and c.tx.final is delivered.message
        # Timer K (T4 = 5 s) ends it; no retransmission after the final response
        yield c.events.wait_for(lambda e: isinstance(e[1], Terminated), 20)
        t_term = [t for t, ev in c.events if isinstance(ev, Terminated)][0]
        assert t_term - t0 == pytest.approx(5.0, abs=1.0)  # 503 arrives within 1 phone s (60 ms wall)
        sends = [ev for _, ev in c.events if isinstance(ev, Send)]
        assert len(sends) <= 2 and not any(isinstance(ev, TimedOut) for _, ev in c.events)
    finally:
        yield c.conn.close()
    out, err, code = yield proc
    assert code == 0, out.decode(errors="replace")[-1500:] + err.decode(errors="replace")[-800:]
    text = render_ladder(rec, title="REGISTER to a SIPp answering 503")
    print(text)
    lines = text.splitlines()
    assert lines[0] == "REGISTER to a SIPp answering 503" and "sipp" in lines[1]
    arrows = [ln for ln in lines if "REGISTER" in ln and "►" in ln]
    assert arrows and "(retx)" not in arrows[0]
    back = [ln for ln in lines if "503 Service Unavailable" in ln]
    assert len(back) == 1 and "◄" in back[0]
    assert lines.index(back[0]) > lines.index(arrows[0])


@pytest_twisted.inlineCallbacks
def test_silent_sipp_ladder_marks_every_retransmission(sipp_client):
    proc, port, clock, rec = sipp_client("uas_silent.xml", "-d", "4000")
    yield _until_bound(port)
    c = Client(clock, ("127.0.0.1", port), rec)
    try:
        c.start(c.request("REGISTER"))
        yield c.events.wait_for(lambda e: isinstance(e[1], TimedOut), 40)
    finally:
        yield c.conn.close()
    yield proc
    lines = render_ladder(rec).splitlines()
    arrows = [ln for ln in lines if "REGISTER" in ln and "►" in ln]
    assert len(arrows) == 11
    assert "(retx)" not in arrows[0] and all("(retx)" in ln for ln in arrows[1:])
    times = [float(ln.split("|")[0]) for ln in arrows]
    t0 = times[0]
    for got, want in zip(times, send_offsets(False, 11)):
        assert on_schedule(got - t0, want), (got - t0, want)
    assert not any("◄" in ln for ln in lines)  # nothing came back
