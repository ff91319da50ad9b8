"""A real peer drives the fake SIP servers: SIPp (Debian sip-tester 3.6.1), UDP and TCP.

SIPp runs as a subprocess without blocking the reactor (``getProcessOutputAndValue``),
always with ``-m N -timeout 20s -timeout_error`` so it can never hang a test. The fakes run
on the real clock here (SIPp has its own). SIPp's ``-p 0`` means 5060, so each SIPp gets a
port the test found free a moment before (a small race, on 127.0.0.1 only).
"""

from __future__ import annotations

import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from tests.conftest import free_port

HERE = os.path.join(os.path.dirname(__file__), "sipp")




def run_sipp(sipp: str, target, *args: str, transport: str = "udp", calls: int = 1):
    argv = [f"{target[0]}:{target[1]}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls),
            "-timeout", "20s", "-timeout_error", "-nostdin", "-t", "u1" if transport == "udp" else "t1",
            *args]
    return getProcessOutputAndValue(sipp, argv, env=dict(os.environ), path="/tmp", reactor=reactor)


@pytest.fixture
def fake():
    servers = []

    def make(name="pbx", **kw):
        s = FakeSipServer(name, recorder=kw.pop("recorder", None) or Recorder(reactor), **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def _check(result):
    out, err, code = result
    assert code == 0, f"sipp exit {code}\n{out.decode(errors='replace')[-1500:]}\n{err.decode(errors='replace')[-1500:]}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest_twisted.inlineCallbacks
def test_sipp_register_plain(peer, fake, transport):
    sipp = peer("sipp")
    s = fake()
    addr = yield s.listen(transport)
    _check((yield run_sipp(sipp, addr, "-sf", os.path.join(HERE, "register.xml"), transport=transport, calls=3)))
    assert len(s.bindings("user1")) == 1 and len(s.bindings("user3")) == 1
    assert [r.status for r in s.records if r.direction == "out"] == [200, 200, 200]
    assert all(r.transport == transport for r in s.records)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest_twisted.inlineCallbacks
def test_sipp_register_digest(peer, fake, transport):
    sipp = peer("sipp")
    s = fake(users={"alice": "s3cret"}, domain="example.com")
    # SIPp 3.6 answers only the first challenge, and only MD5 (RFC 8760 §2.4 would have it pick the
    # first it supports): offer MD5 alone (SHA-256 is proven by the bundled phone)
    s.logic.registrar.auth.algorithms = ("MD5",)
    addr = yield s.listen(transport)
    _check((yield run_sipp(sipp, addr, "-sf", os.path.join(HERE, "register_auth.xml"), "-s", "alice",
                           "-au", "alice", "-ap", "s3cret", transport=transport)))
    assert [r.status for r in s.records if r.direction == "out"] == [401, 200]
    assert len(s.bindings("alice")) == 1
    # a wrong password is refused: SIPp sees 403 where it expects 200 and fails
    result = yield run_sipp(sipp, addr, "-sf", os.path.join(HERE, "register_auth.xml"), "-s", "alice",
                            "-au", "alice", "-ap", "wrong", transport=transport)
    assert result[2] != 0
    assert 403 in [r.status for r in s.records if r.direction == "out"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest_twisted.inlineCallbacks
def test_sipp_call_to_uas(peer, fake, transport):
    sipp = peer("sipp")
    s = fake(role="uas")
    addr = yield s.listen(transport)
    _check((yield run_sipp(sipp, addr, "-sn", "uac", "-s", "anyone", transport=transport)))
    summary = [(r.direction, r.method, r.status) for r in s.records if not r.retransmission]
    assert ("in", "INVITE", None) in summary and ("out", "INVITE", 200) in summary
    assert ("in", "ACK", None) in summary and ("in", "BYE", None) in summary and ("out", "BYE", 200) in summary


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest_twisted.inlineCallbacks
def test_sipp_call_through_proxy_to_registered_sipp(peer, fake, transport):
    """Three SIPp processes: a UAS (-sn uas) on port P; a REGISTER of 'bob' with Contact port P
    (a SIPp scenario cannot take an INVITE with a new Call-ID after its REGISTER, so the
    callee is two processes); a UAC calling bob through our proxy."""
    sipp = peer("sipp")
    s = fake(unknown_user="404")
    addr = yield s.listen(transport)
    uas_port = free_port()
    callee = getProcessOutputAndValue(sipp, [
        f"{addr[0]}:{addr[1]}", "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-m", "1", "-timeout", "20s",
        "-timeout_error", "-nostdin", "-t", "u1" if transport == "udp" else "t1"], env=dict(os.environ), path="/tmp",
        reactor=reactor)
    _check((yield run_sipp(sipp, addr, "-sf", os.path.join(HERE, "register_contact.xml"), "-s", "bob",
                           "-key", "contact_port", str(uas_port), transport=transport)))
    assert s.bindings("bob")[0][0].lower() == f"sip:bob@127.0.0.1:{uas_port};transport={transport}"
    caller = yield run_sipp(sipp, addr, "-sn", "uac", "-s", "bob", transport=transport)
    from sipharness.fakes.ladder import render_ladder
    print(render_ladder(s.records))
    _check(caller)
    _check((yield callee))
    fwd = [r for r in s.records if r.direction == "out" and r.method == "INVITE" and r.status is None]
    assert len(fwd) == 1 and fwd[0].message.headers.get_all("Record-Route") and fwd[0].peer == ("127.0.0.1", uas_port)
    relayed = [r.status for r in s.records if r.direction == "out" and r.method == "INVITE" and r.status]
    assert 100 in relayed and 180 in relayed and 200 in relayed
    byes = [r for r in s.records if r.method == "BYE" and r.status is None]
    assert [r.direction for r in byes] == ["in", "out"]  # the BYE traversed the proxy
    assert [r.direction for r in s.records if r.method == "BYE" and r.status == 200] == ["in", "out"]
