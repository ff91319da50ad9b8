"""The fake SIP servers over real loopback sockets, on the virtual clock (SPEC §9).

A tiny UDP/TCP test peer sends hand-built requests and keeps what comes back in a Journal,
so every wait has a deadline in phone seconds and nothing sleeps.
"""

from __future__ import annotations

import hashlib

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from sipharness.fakes.ladder import render_ladder
from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.sipcore.build import make_request
from sipharness.sipcore.clock import VirtualClock, note_activity
from sipharness.sipcore.framing import StreamFramer
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.journal import Journal, WaitTimeout
from sipharness.sipcore.parser import parse
from sipharness.sipcore.transport import connect_udp


class Peer(protocol.DatagramProtocol):
    """A UDP phone stand-in: send requests, collect responses/requests in a Journal."""

    def __init__(self, clock):
        self.clock = clock
        self.got = Journal(clock)
        self.refused = Journal(clock)
        self.port = None

    def start(self):
        self.port = reactor.listenUDP(0, self, interface="127.0.0.1")
        self.address = ("127.0.0.1", self.port.getHost().port)
        return self

    def datagramReceived(self, data, addr):
        note_activity(self.clock)
        self.got.append(parse(data))

    def connectionRefused(self):
        note_activity(self.clock)
        self.refused.append("refused")

    def send(self, msg, to):
        self.transport.write(msg if isinstance(msg, bytes) else msg.to_bytes(), to)

    def wait(self, status=None, method=None, count=1, timeout=40.0, since=0):
        def match(m):
            if method is not None and (m.method if not m.is_request else m.method) != method:
                return False
            if status is not None and (m.is_request or m.status != status):
                return False
            return True
        return self.got.wait_for(match, timeout, count=count, since=since, what=f"{method} {status}")


def register(peer, server_addr, user="alice", expires=60, *, call_id=None, cseq=1, contact=None, headers=None,
             transport="UDP"):
    host, port = peer.address
    return make_request(
        "REGISTER", f"sip:{server_addr[0]}", from_=f"<sip:{user}@example.com>;tag={new_tag()}",
        to=f"<sip:{user}@example.com>", call_id=call_id or new_tag() + "@t", cseq=cseq,
        via=f"SIP/2.0/{transport} {host}:{port};branch={new_branch()};rport",
        contact=contact or f"<sip:{user}@{host}:{port}>", headers={"Expires": str(expires), **(headers or {})})


def invite(peer, server_addr, user="bob"):
    host, port = peer.address
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    return make_request(
        "INVITE", f"sip:{user}@{server_addr[0]}:{server_addr[1]}", from_=f"<sip:carol@example.com>;tag={new_tag()}",
        to=f"<sip:{user}@example.com>", call_id=new_tag() + "@t", cseq=1,
        via=f"SIP/2.0/UDP {host}:{port};branch={new_branch()}", contact=f"<sip:carol@{host}:{port}>",
        headers={"Content-Type": "application/sdp"}, body=sdp)


@pytest.fixture
def clock():
    c = VirtualClock(reactor)
    yield c
    c.stop()


@pytest.fixture
def lab(clock):
    servers, peers = [], []
    rec = Recorder(clock)

    def server(name="sip", **kw):
        s = FakeSipServer(name, clock=clock, recorder=rec, **kw)
        servers.append(s)
        return s

    def peer():
        p = Peer(clock).start()
        peers.append(p)
        return p

    yield server, peer, rec
    rec.cancel_waits()
    for s in servers:
        s.stop()
    for p in peers:
        p.port.stopListening()


@pytest_twisted.inlineCallbacks
def test_register_binding_expires_on_the_clock(lab, clock):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    p.send(register(p, addr, expires=60), addr)
    ok = yield p.wait(200)
    assert ok.contacts[0].params["expires"] == "60"
    [(contact, expires_at)] = s.bindings("sip:alice@example.com")
    assert contact == f"sip:alice@{p.address[0]}:{p.address[1]}" and expires_at == pytest.approx(60.0)
    assert s.bindings("alice") == s.bindings("alice@example.com")
    # nothing happens for 60 phone seconds: the binding lapses
    with pytest.raises(WaitTimeout):
        yield s.wait_for("OPTIONS", timeout=61)
    assert s.bindings("alice") == []
    records = s.records
    assert [r.summary for r in records] == [f"REGISTER sip:{addr[0]}", "200 OK"]
    assert records[1].method == "REGISTER" and records[1].direction == "out" and records[1].peer == p.address


@pytest_twisted.inlineCallbacks
def test_refresh_unregister_star_and_min_expires(lab, clock):
    server, peer, rec = lab
    s = server(min_expires=30)
    addr = yield s.listen("udp")
    p = peer()
    p.send(register(p, addr, expires=10), addr)
    r = yield p.wait(423)
    assert r.headers.get("Min-Expires") == "30" and s.bindings("alice") == []
    p.send(register(p, addr, expires=120), addr)
    yield p.wait(200)
    clock.advance(50)
    p.send(register(p, addr, expires=120, contact=f"<sip:alice@{p.address[0]}:{p.address[1]}>;expires=300"), addr)
    yield p.wait(200, count=2)
    assert [e for _, e in s.bindings("alice")] == [pytest.approx(350.0)]
    p.send(register(p, addr, contact="<sip:alice@127.0.0.1:9>"), addr)  # second contact
    yield p.wait(200, count=3)
    assert len(s.bindings("alice")) == 2
    p.send(register(p, addr, expires=0, contact="<sip:alice@127.0.0.1:9>"), addr)  # un-REGISTER one
    yield p.wait(200, count=4)
    assert len(s.bindings("alice")) == 1
    p.send(register(p, addr, expires=60, contact="*"), addr)  # * needs Expires: 0
    yield p.wait(400)
    p.send(register(p, addr, expires=0, contact="*"), addr)
    yield p.wait(200, count=5)
    assert s.bindings("alice") == []


def _digest(challenge: str, user, password, uri, method="REGISTER"):
    params = dict(part.strip().split("=", 1) for part in challenge[len("Digest "):].split(","))
    realm, nonce = params["realm"].strip('"'), params["nonce"].strip('"')
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    resp = hashlib.md5(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}".encode()).hexdigest()
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"')


@pytest_twisted.inlineCallbacks
def test_digest_challenge_wrong_password_and_stale_nonce(lab, clock):
    server, peer, rec = lab
    s = server(users={"alice": "secret"}, domain="example.com")
    addr = yield s.listen("udp")
    p = peer()
    uri = f"sip:{addr[0]}"
    p.send(register(p, addr), addr)
    ch = (yield p.wait(401)).headers.get("WWW-Authenticate")
    assert 'realm="example.com"' in ch and "stale" not in ch
    p.send(register(p, addr, cseq=2, headers={"Authorization": _digest(ch, "alice", "wrong", uri)}), addr)
    yield p.wait(403)
    p.send(register(p, addr, cseq=3, headers={"Authorization": _digest(ch, "alice", "secret", uri)}), addr)
    yield p.wait(200)
    assert len(s.bindings("alice")) == 1
    s.logic.registrar.expire_nonces()
    p.send(register(p, addr, cseq=4, headers={"Authorization": _digest(ch, "alice", "secret", uri)}), addr)
    again = yield p.wait(401, count=2)
    assert "stale=true" in again.headers.get("WWW-Authenticate")


@pytest_twisted.inlineCallbacks
def test_failover_ladder_drop_first_four_then_secondary(lab, clock):
    server, peer, rec = lab
    primary, secondary = server("primary"), server("secondary")
    a1 = yield primary.listen("udp")
    a2 = yield secondary.listen("udp")
    rule = primary.script.drop("REGISTER", first=4)
    p = peer()
    req = register(p, a1)
    for i, t in enumerate((0.0, 0.5, 1.5, 3.5)):  # the RFC 3261 retransmission schedule, retry_counts = 3
        if t:
            clock.advance(t - clock.seconds())
        p.send(req, a1)
        yield primary.wait_for("REGISTER", count=i + 1)
    clock.advance(7.5 - clock.seconds())
    p.send(register(p, a2, call_id=req.call_id, cseq=2), a2)
    yield secondary.wait_for("REGISTER", direction="out", status=200)
    ins = primary.records
    assert [r.note for r in ins] == ["dropped: rule 1 drop REGISTER first=4"] * 4
    assert [r.retransmission for r in ins] == [False, True, True, True]
    assert [r.time for r in ins] == [0.0, 0.5, 1.5, 3.5]
    assert rule.applied == 4
    text = render_ladder(rec, title="REG-FO: 1+3 REGISTERs dropped by the primary, secondary answers")
    lines = text.splitlines()
    assert lines[0].startswith("REG-FO") and "primary" in lines[1] and "secondary" in lines[1]
    assert lines[1].index("phone") < lines[1].index("primary") < lines[1].index("secondary")
    assert sum("✗" in ln and "dropped: rule 1" in ln for ln in lines) == 4
    assert sum("(retx)" in ln for ln in lines) == 3
    assert lines[-2].startswith("   7.500 |") and "REGISTER" in lines[-2] and "►" in lines[-2]
    assert "◄" in lines[-1] and "200 OK" in lines[-1]
    assert max(len(ln) for ln in lines if "dropped" not in ln) <= 120
    print(text)


@pytest_twisted.inlineCallbacks
def test_scripted_503_delay_count_and_removal(lab, clock):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    r503 = s.script.respond("REGISTER", 503, headers={"Retry-After": "30"}, count=1)
    s.script.delay("REGISTER", 2.0, nth=2)
    p.send(register(p, addr), addr)
    r = yield p.wait(503)
    assert r.headers.get("Retry-After") == "30"
    p.send(register(p, addr), addr)
    ok = yield p.wait(200)
    assert clock.seconds() == pytest.approx(2.0)
    notes = [x.note for x in s.records if x.direction == "in"]
    assert notes == ["scripted: rule 1 respond 503 REGISTER count=1 Retry-After: 30", "delayed: rule 2 delay REGISTER by=2s nth=2"]
    s.script.remove(r503)
    late = s.script.respond("REGISTER", 403, after=100.0)
    p.send(register(p, addr), addr)
    yield p.wait(200, count=2)
    clock.advance(100)
    p.send(register(p, addr), addr)
    yield p.wait(403)
    assert late.applied == 1
    assert ok.status == 200


@pytest_twisted.inlineCallbacks
def test_silent_blackhole_refused_and_back_on_same_port(lab, clock):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    s.script.silent()
    p.send(register(p, addr), addr)
    r = yield s.wait_for("REGISTER")
    assert r.note == "dropped: rule 1 drop * "[:-1] + "" or r.note.startswith("dropped: rule 1 drop *")
    s.script.clear()
    yield s.down("blackhole")
    p.send(register(p, addr), addr)
    r = yield s.wait_for("REGISTER", count=2)
    assert r.note == "dropped: down (blackhole)"
    yield s.down("refused")
    # a connected UDP socket (the phone's kind) sees the ICMP port unreachable
    c = _Handler(clock)
    conn = connect_udp(c, addr, clock=clock)
    c.address = conn.local
    conn.send(register(c, addr))
    err = yield c.errors.wait_for(lambda x: True, 5)
    assert err == "ICMP port unreachable"
    assert len(s.records) == 2  # nothing reached the closed socket
    yield s.up()
    assert s.address == addr
    conn.send(register(c, addr))
    yield c.got.wait_for(lambda m: m.status == 200, 5)
    yield conn.close()


class _Handler:
    def __init__(self, clock):
        self.got, self.errors = Journal(clock), Journal(clock)

    def sip_received(self, message, source):
        self.got.append(message)

    def sip_transport_error(self, peer, transport, reason):
        self.errors.append(reason)


@pytest_twisted.inlineCallbacks
def test_flap_schedule(lab, clock):
    server, peer, rec = lab
    s = server()
    yield s.listen("udp")
    s.flap(down_for=10, up_for=20, cycles=2)
    seen = []
    for t in (1, 12, 31, 45):
        clock.advance(t - clock.seconds())
        seen.append(s.state)
    assert seen == ["blackhole", "up", "blackhole", "up"]
    clock.advance(100)
    assert s.state == "up"


@pytest_twisted.inlineCallbacks
def test_uas_answers_after_delay_then_ack_bye_and_cancel(lab, clock):
    server, peer, rec = lab
    s = server(role="uas", answer_delay=3.0)
    addr = yield s.listen("udp")
    p = peer()
    inv = invite(p, addr)
    p.send(inv, addr)
    yield p.wait(180)
    ok = yield p.wait(200)
    assert clock.seconds() == pytest.approx(3.0)
    assert b"PCMU/8000" in ok.body and ok.headers.get("Content-Type") == "application/sdp"
    statuses = [m.status for m in p.got]
    assert statuses[:2] == [100, 180]
    host, port = p.address
    ack = make_request("ACK", str(ok.contacts[0].uri), from_=str(inv.from_), to=str(ok.to), call_id=inv.call_id,
                       cseq=(1, "ACK"), via=f"SIP/2.0/UDP {host}:{port};branch={new_branch()}")
    p.send(ack, addr)
    yield s.wait_for("ACK")
    n = len(p.got)
    clock.advance(10)  # no more 200 retransmissions after the ACK
    assert len(p.got) == n
    bye = make_request("BYE", str(ok.contacts[0].uri), from_=str(inv.from_), to=str(ok.to), call_id=inv.call_id,
                       cseq=2, via=f"SIP/2.0/UDP {host}:{port};branch={new_branch()}")
    p.send(bye, addr)
    r = yield p.wait(200, method="BYE")
    assert r.cseq == (2, "BYE")
    # CANCEL before the answer → 200 to CANCEL, 487 to INVITE
    inv2 = invite(p, addr)
    p.send(inv2, addr)
    yield s.wait_for("INVITE", direction="out", status=180, count=2)
    cancel = make_request("CANCEL", inv2.uri, from_=str(inv2.from_), to=str(inv2.to), call_id=inv2.call_id,
                          cseq=(1, "CANCEL"), via=str(inv2.top_via))
    p.send(cancel, addr)
    yield p.wait(487)
    assert any(m.status == 200 and m.cseq[1] == "CANCEL" for m in p.got)
    clock.advance(5)
    assert not any(m.status == 200 and m.call_id == inv2.call_id and m.cseq[1] == "INVITE" for m in p.got)


@pytest_twisted.inlineCallbacks
def test_uas_retransmits_2xx_until_ack(lab, clock):
    server, peer, rec = lab
    s = server(role="uas")
    addr = yield s.listen("udp")
    p = peer()
    p.send(invite(p, addr), addr)
    yield s.wait_for("INVITE", direction="out", status=200, count=3)
    outs = [r for r in s.records if r.status == 200]
    assert [round(r.time, 3) for r in outs] == [0.0, 0.5, 1.5]
    assert [r.retransmission for r in outs] == [False, True, True]


@pytest_twisted.inlineCallbacks
def test_pbx_proxies_to_registered_user_with_record_route(lab, clock):
    server, peer, rec = lab
    s = server("pbx", unknown_user="404")
    addr = yield s.listen("udp")
    callee, caller = peer(), peer()
    callee.send(register(callee, addr, user="bob"), addr)
    yield callee.wait(200)
    inv = invite(caller, addr, user="bob")
    caller.send(inv, addr)
    got = yield callee.got.wait_for(lambda m: m.is_request and m.method == "INVITE", 5)
    assert str(got.uri) == f"sip:bob@{callee.address[0]}:{callee.address[1]}"
    assert len(got.vias) == 2 and got.vias[1].branch == inv.top_via.branch
    assert got.headers.get_all("Record-Route") == [f"<sip:{addr[0]}:{addr[1]};transport=udp;lr>"]
    assert got.max_forwards == 69
    yield caller.wait(100)
    from sipharness.sipcore.build import make_response
    ok = make_response(got, 200, "OK", to_tag="callee", headers={"Contact": f"<sip:bob@{callee.address[0]}:{callee.address[1]}>"})
    callee.send(ok, addr)
    r = yield caller.wait(200)
    assert len(r.vias) == 1 and r.vias[0].branch == inv.top_via.branch and r.to.tag == "callee"
    assert r.headers.get_all("Record-Route")
    # unknown user → 404; known user without contact → 480
    caller.send(invite(caller, addr, user="nobody"), addr)
    yield caller.wait(404)
    callee.send(register(callee, addr, user="bob", expires=0), addr)
    yield callee.wait(200, count=2)
    caller.send(invite(caller, addr, user="bob"), addr)
    yield caller.wait(480)


@pytest_twisted.inlineCallbacks
def test_pbx_unknown_user_answered_by_uas(lab, clock):
    server, peer, rec = lab
    s = server("pbx")
    addr = yield s.listen("udp")
    p = peer()
    p.send(invite(p, addr, user="anyone"), addr)
    ok = yield p.wait(200)
    assert b"m=audio" in ok.body


@pytest_twisted.inlineCallbacks
def test_bad_input_400_when_formable_else_dropped(lab, clock):
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("udp")
    p = peer()
    good = register(p, addr).to_bytes()
    broken = good.replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    p.send(broken, addr)
    r = yield p.wait(400)
    assert r.call_id and r.to.tag
    p.send(b"\x00\xffgarbage\r\n\r\n", addr)
    bad = yield s.wait_for(None, count=2)
    assert bad.note.startswith("bad input") and bad.note.endswith("dropped (no response can be formed)")
    p.send(good, addr)
    yield p.wait(200)


class _TcpClient(protocol.Protocol):
    def __init__(self, clock):
        self.clock, self.framer, self.got, self.closed = clock, StreamFramer(), Journal(clock), Journal(clock)

    def dataReceived(self, data):
        note_activity(self.clock)
        for m in self.framer.feed(data):
            self.got.append(m)

    def connectionLost(self, reason=None):
        note_activity(self.clock)
        self.closed.append("closed")


@pytest_twisted.inlineCallbacks
def test_tcp_register_silent_and_garbage_closes(lab, clock):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    # real time here: the deadlines are only a bound, nothing waits for them to pass
    rec = Recorder(reactor)
    s = FakeSipServer("tcp", recorder=rec)
    addr = yield s.listen("tcp")
    c = _TcpClient(reactor)
    yield connectProtocol(TCP4ClientEndpoint(reactor, *addr), c)
    h = c.transport.getHost()
    fake = type("P", (), {"address": (h.host, h.port)})
    c.transport.write(register(fake, addr, transport="TCP").to_bytes())
    ok = yield c.got.wait_for(lambda m: m.status == 200, 5)
    assert ok.cseq[1] == "REGISTER"
    s.script.silent("REGISTER")
    c.transport.write(register(fake, addr, transport="TCP").to_bytes())
    r = yield s.wait_for("REGISTER", count=2)
    assert r.note.startswith("dropped") and r.transport == "tcp"
    c.transport.write(b"GARBAGE\x00\x01 / not sip\r\nContent-Length: 99999999\r\n\r\n" * 3)
    bad = yield rec.wait_for(lambda r: r.note.startswith("bad input"), 5)
    assert bad.note.endswith("connection closed") and bad.transport == "tcp"
    yield c.closed.wait_for(lambda x: True, 5)
    # the server keeps serving new connections
    c2 = _TcpClient(reactor)
    yield connectProtocol(TCP4ClientEndpoint(reactor, *addr), c2)
    s.script.clear()
    h = c2.transport.getHost()
    fake = type("P", (), {"address": (h.host, h.port)})
    c2.transport.write(register(fake, addr, transport="TCP").to_bytes())
    yield c2.got.wait_for(lambda m: m.status == 200, 5)
    c2.transport.loseConnection()
    yield s.stop()


@pytest_twisted.inlineCallbacks
def test_tcp_refused_then_up(lab, clock):
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.error import ConnectionRefusedError
    server, peer, rec = lab
    s = server()
    addr = yield s.listen("tcp")
    yield s.down("refused")
    with pytest.raises(ConnectionRefusedError):
        yield connectProtocol(TCP4ClientEndpoint(reactor, *addr), _TcpClient(clock))
    yield s.up()
    c = _TcpClient(clock)
    yield connectProtocol(TCP4ClientEndpoint(reactor, *addr), c)
    c.transport.loseConnection()
