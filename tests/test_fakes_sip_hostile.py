"""Hostile input to the fake SIP servers' logic (issue 12), sans-I/O through ``Pbx``: digest
attacks, RFC 4475 answers, caps on what a flood can make them remember."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from sipharness.fakes.sip.actions import Origin, Relay, Respond
from sipharness.fakes.sip.pbx import Pbx
from sipharness.fakes.sip.registrar import Registrar
from sipharness.sipcore.build import make_request
from sipharness.sipcore.digest import Challenge, authorize
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.parser import parse

ORIGIN = Origin("udp", ("127.0.0.1", 5062), ("127.0.0.1", 5060))
USERS = {"alice": "secret", "bob": "hunter2"}
TORTURE = Path(__file__).parent / "data" / "rfc4475" / "valid"


def request(method="REGISTER", user="alice", *, ruri="sip:example.com", auth=None, header="Authorization",
            to=None, to_tag=None, cseq=1, call_id="c@t", extra=None, contact_port=5062):
    headers = dict(extra or {})
    if method == "REGISTER":
        headers.setdefault("Expires", "60")
    if auth is not None:
        headers[header] = auth
    to = to or (user if method == "REGISTER" else "carol")
    return make_request(method, ruri, from_=f"<sip:{user}@example.com>;tag={new_tag()}",
                        to=f"<sip:{to}@example.com>" + (f";tag={to_tag}" if to_tag else ""), call_id=call_id, cseq=cseq,
                        via=f"SIP/2.0/UDP 127.0.0.1:{contact_port};branch={new_branch()}",
                        contact=f"<sip:{user}@127.0.0.1:{contact_port}>", headers=headers)


def answers(pbx, req, now=0.0):
    return [a.response for a in pbx.handle_request(req, ORIGIN, now) if isinstance(a, Respond)]


def status(pbx, req, now=0.0):
    return [r.status for r in answers(pbx, req, now)]


def creds(challenge_response, user="alice", password="secret", *, method="REGISTER", uri="sip:example.com", nc=1,
          header="WWW-Authenticate", which=0):
    ch = Challenge.parse(challenge_response.headers.lines(header)[which])
    return authorize(ch, method=method, uri=uri, username=user, password=password, nc=nc)


def pbx(role="pbx", **kw):
    return Pbx(role, addresses={"udp": ("127.0.0.1", 5060)}, domain="example.com", users=USERS, **kw)


# -- digest -------------------------------------------------------------------------------------

def test_alices_credentials_register_no_contact_for_bob():
    p = pbx()
    [ch] = answers(p, request(user="bob"))
    forged = answers(p, request(user="bob", auth=creds(ch), cseq=2))[0]  # alice's password, To: bob
    assert forged.status == 403 and "'alice'" in forged.reason and "'bob'" in forged.reason
    assert p.registrar.bindings("bob", 1.0) == []
    [ch] = answers(p, request(user="bob", cseq=3))
    assert status(p, request(user="bob", auth=creds(ch, "bob", "hunter2"), cseq=4)) == [200]


def test_digest_uri_must_name_the_request_uri():
    p = pbx()
    [ch] = answers(p, request())
    other = creds(ch, uri="sip:elsewhere.example.com")
    reply = answers(p, request(auth=other, cseq=2))[0]
    assert reply.status == 400 and "Request-URI" in reply.reason  # RFC 2617 §3.2.2.5 / RFC 7616 §3.4.6
    same = creds(ch, uri="sip:EXAMPLE.com", nc=2)  # RFC 3261 §19.1.4: the same URI
    assert status(p, request(auth=same, cseq=3)) == [200]


def test_sha256_and_md5_are_offered_in_that_order_and_both_accepted():
    p = pbx()
    [ch] = answers(p, request())
    offered = [Challenge.parse(v) for v in ch.headers.lines("WWW-Authenticate")]
    assert [c.algorithm for c in offered] == ["SHA-256", "MD5"] and offered[0].nonce == offered[1].nonce
    assert status(p, request(auth=creds(ch, which=0), cseq=2)) == [200]
    assert status(p, request(auth=creds(ch, which=1, nc=2), cseq=3)) == [200]


@pytest.mark.parametrize("field", [b'username="al\xffice"', b'nonce="\xff\xfe"', b'uri="sip:ex\xe9mple.com"',
                                   b'cnonce="\xc3"', b'response="\xc3\xa9\xc3\xa9"'])
def test_non_utf8_digest_fields_get_400(field):
    p = pbx()
    [ch] = answers(p, request())
    good = creds(ch).encode()
    name = field.split(b"=")[0]
    start = good.index(name + b"=")
    end = good.find(b", ", start)
    raw = request(auth=good[:start].decode() + "X" + good[end:].decode(), cseq=2).to_bytes()
    raw = raw.replace(b"X, ", field + b", ")
    reply = answers(p, parse(raw))[0]
    assert reply.status == 400 and name.decode() in reply.reason and reply.reason.isascii()


def test_credentials_of_another_scheme_are_no_credentials():
    # RFC 4475 regaut01: an unknown scheme in Authorization; a server that wants digest challenges
    msg = parse((TORTURE / "regaut01.dat").read_bytes())
    p = Pbx("registrar", domain="example.com", users=USERS)
    [reply] = answers(p, msg)
    assert reply.status == 401 and reply.headers.get("WWW-Authenticate").startswith("Digest ")
    assert [r.status for r in answers(Pbx("registrar"), msg)] == [200]  # no users: nothing to check


def test_invite_is_challenged_401_by_the_uas_and_407_by_the_proxy():
    p = pbx()
    # to a user registered here: proxied → 407 / Proxy-Authenticate
    [ch] = answers(p, request(user="bob"))
    assert status(p, request(user="bob", auth=creds(ch, "bob", "hunter2"), cseq=2)) == [200]
    invite = request("INVITE", "alice", ruri="sip:bob@example.com", to="bob", call_id="call1")
    [challenge] = answers(p, invite)
    assert challenge.status == 407 and challenge.headers.get("Proxy-Authenticate")
    answer = creds(challenge, method="INVITE", uri="sip:bob@example.com", header="Proxy-Authenticate")
    again = request("INVITE", "alice", ruri="sip:bob@example.com", to="bob", call_id="call1", cseq=2,
                    auth=answer, header="Proxy-Authorization")
    actions = p.handle_request(again, ORIGIN, 1.0)
    assert any(isinstance(a, Relay) for a in actions)  # forwarded to bob's contact
    # to anyone else: the UAS answers → 401 / WWW-Authenticate
    uas_call = request("INVITE", "alice", ruri="sip:carol@example.com", call_id="call2")
    [challenge] = answers(p, uas_call)
    assert challenge.status == 401
    answer = creds(challenge, method="INVITE", uri="sip:carol@example.com", nc=1)
    ok = answers(p, request("INVITE", "alice", ruri="sip:carol@example.com", call_id="call2", cseq=2, auth=answer))
    assert [r.status for r in ok] == [100, 180, 200]
    # the caller must be the digest user
    forged = creds(challenge, user="bob", password="hunter2", method="INVITE", uri="sip:carol@example.com", nc=2)
    assert status(p, request("INVITE", "alice", ruri="sip:carol@example.com", call_id="call3", auth=forged)) == [403]
    # ACK, CANCEL and in-dialog requests are not challenged (RFC 3261 §22.1)
    bye = request("BYE", "alice", ruri="sip:carol@example.com", call_id="call2", to_tag="t")
    assert status(p, bye) == [200]


# -- RFC 4475 answers ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_scheme_gets_416(name):
    msg = parse((TORTURE / f"{name}.dat").read_bytes())
    for role in ("pbx", "registrar", "proxy", "uas"):
        assert status(Pbx(role), msg) == [416], role


def test_unknown_require_gets_420_listing_it_and_proxy_require_when_forwarding():
    p = Pbx(addresses={"udp": ("127.0.0.1", 5060)})
    reg = request(extra={"Require": "foo, bar"})
    [reply] = answers(p, reg)
    assert reply.status == 420 and reply.headers.get("Unsupported") == "foo, bar"
    invite = request("INVITE", ruri="sip:carol@example.com", extra={"Require": "100rel"})
    assert status(p, invite) == [420]
    # a proxy does not inspect Require (the callee does), but Proxy-Require is its own (RFC 3261 §16.3)
    assert status(p, request(user="bob")) == [200]
    fwd = request("INVITE", ruri="sip:bob@example.com", to="bob", call_id="x1", extra={"Require": "100rel"})
    assert any(isinstance(a, Relay) for a in p.handle_request(fwd, ORIGIN, 1.0))
    fwd = request("INVITE", ruri="sip:bob@example.com", to="bob", call_id="x2", extra={"Proxy-Require": "sec-agree"})
    [reply] = answers(p, fwd, 1.0)
    assert reply.status == 420 and reply.headers.get("Unsupported") == "sec-agree"


def test_unknown_method_gets_501_and_a_method_not_served_here_405_both_with_allow():
    msg = parse((TORTURE.parent / "valid" / "intmeth.dat").read_bytes())  # RFC 4475 intmeth
    [reply] = answers(Pbx(), msg)
    assert reply.status == 501 and "INVITE" in reply.headers.get("Allow")
    [reply] = answers(Pbx("registrar"), request("INVITE", ruri="sip:carol@example.com"))
    assert reply.status == 405 and reply.headers.get("Allow") == "REGISTER, OPTIONS, ACK"
    [reply] = answers(Pbx("uas"), request())
    assert reply.status == 405 and "REGISTER" not in reply.headers.get("Allow")
    assert answers(Pbx("registrar"), request("ACK", ruri="sip:carol@example.com")) == []  # never answered


# -- caps ---------------------------------------------------------------------------------------

def test_registration_cap_503_then_refresh_ok_and_space_again_after_expiry():
    reg = Registrar(max_bindings=100, max_contacts=3)
    for i in range(100):
        assert status_of(reg, request(user=f"u{i}"), 0.0) == 200
    full = reg.handle(request(user="late"), ORIGIN, 1.0)[0].response
    assert full.status == 503 and full.headers.get("Retry-After") == "60"
    assert status_of(reg, request(user="u7"), 1.0) == 200  # a refresh adds nothing
    assert reg.binding_count == 100
    assert status_of(reg, request(user="late"), 61.0) == 200  # the 60 s bindings lapsed: swept
    assert reg.binding_count == 1 and len(reg._bindings) == 1
    for port in (1, 2, 3):
        assert status_of(reg, request(user="many", contact_port=port), 62.0) == 200
    assert "too many contacts" in reg.handle(request(user="many", contact_port=4), ORIGIN, 62.0)[0].response.reason


def status_of(reg, req, now):
    return reg.handle(req, ORIGIN, now)[0].response.status


def test_a_flood_of_unique_users_stays_under_the_cap_and_leaves_nothing_behind():
    reg = Registrar(max_bindings=500)
    for i in range(5000):
        req = request(user=f"flood{i}", extra={"Expires": "0" if i % 2 else "30"})
        reg.handle(req, ORIGIN, i * 0.01)
        assert reg.binding_count <= 500 and len(reg._bindings) <= 500 and len(reg.known_users) <= 500
    for user in list(reg._bindings):
        reg.lookup(user, 1000.0)
    assert reg._bindings == {} and reg.binding_count == 0


def test_proxy_memory_is_bounded_under_a_flood_of_calls_nobody_answers():
    p = Pbx(addresses={"udp": ("127.0.0.1", 5060)})
    p.proxy._legs.max_entries = p.proxy._by_upstream.max_entries = 300
    p.proxy.call_ids.max_entries = 300
    assert status(p, request(user="bob", extra={"Expires": "3600"})) == [200]
    for i in range(3000):
        inv = request("INVITE", f"c{i}", ruri="sip:bob@example.com", to="bob", call_id=f"flood{i}")
        assert any(isinstance(a, Relay) for a in p.handle_request(inv, ORIGIN, 1.0 + i * 0.001))
        assert len(p.proxy._legs) <= 300 and len(p.proxy._by_upstream) <= 300 and len(p.proxy.call_ids) <= 300
    # past the window (Timer C) everything is forgotten at the next call
    inv = request("INVITE", "late", ruri="sip:bob@example.com", to="bob", call_id="late")
    p.handle_request(inv, ORIGIN, 500.0)
    assert len(p.proxy._legs) == 1 and len(p.proxy._by_upstream) == 1


def test_route_values_and_next_hops_the_proxy_cannot_use_are_answered():
    p = Pbx("proxy", addresses={"udp": ("127.0.0.1", 5060)})
    bad_route = request("BYE", ruri="sip:bob@127.0.0.1:5070", to_tag="1", extra={"Route": "<sip:127.0.0.1:5070;lr"})
    [reply] = answers(p, bad_route)
    assert reply.status == 400 and "Route" in reply.reason
    by_name = request("BYE", ruri="sip:bob@phone.example.net", to_tag="1")
    [reply] = answers(p, by_name)
    assert reply.status == 404 and "IP" in reply.reason


# -- the bundled phone answers the SHA-256 challenge over real sockets -----------------------------


@pytest_twisted.ensureDeferred
async def test_bundled_phone_registers_and_calls_with_sha256_through_the_fake(vclock):
    from sipharness.fakes.record import Recorder
    from sipharness.fakes.sip import FakeSipServer
    from sipharness.phone.config import loads_config
    from sipharness.phone.phone import Phone

    rec = Recorder(vclock)
    server = FakeSipServer("pbx", clock=vclock, recorder=rec, host="127.0.0.10", users={"1001": "secret"})
    _, port = await server.listen("udp")
    cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                       "account.1.password = secret\naccount.1.sip_server.1.address = 127.0.0.10\n"
                       f"account.1.sip_server.1.port = {port}\n")
    phone = Phone(cfg, clock=vclock)
    try:
        await phone.start()
        await phone.wait_for("registered", 60, account=1, server=1)
        call = phone.call(f"sip:carol@127.0.0.10:{port}")
        await phone.wait_for("call_state", 60, state="established", call_id=call.call_id)
        auth = [r.message.headers.get("Authorization") for r in rec.sip(server="pbx", direction="in")
                if r.method in ("REGISTER", "INVITE") and r.message.headers.get("Authorization")]
        assert len(auth) == 2 and all("algorithm=SHA-256" in a for a in auth)
        out = [(r.method, r.status) for r in rec.sip(server="pbx", direction="out") if r.status and r.status != 100]
        assert out[:2] == [("REGISTER", 401), ("REGISTER", 200)]
        assert ("INVITE", 401) in out and ("INVITE", 200) in out
    finally:
        await phone.stop()
        await server.stop()


def test_a_response_with_only_our_via_is_not_relayed_without_any():
    # found by bench/fuzz.py: a callee that drops the caller's Via made the proxy send a response with no Via
    p = Pbx(addresses={"udp": ("127.0.0.1", 5060)})
    assert status(p, request(user="bob", contact_port=5070, extra={"Expires": "3600"})) == [200]
    inv = request("INVITE", "alice", ruri="sip:bob@example.com", to="bob", call_id="v1")
    [relay] = [a for a in p.handle_request(inv, ORIGIN, 1.0) if isinstance(a, Relay)]
    fwd = relay.message
    from sipharness.sipcore.build import make_response
    ok = make_response(fwd, 200, to_tag="callee")
    ok.headers.remove("Via")
    ok.headers.add("Via", str(fwd.top_via))  # only ours
    callee = Origin("udp", ("127.0.0.1", 5070), ("127.0.0.1", 5060))
    assert [a for a in p.handle_response(parse(ok.to_bytes()), callee, 1.1) if isinstance(a, Respond)] == []
    busy = make_response(fwd, 486, to_tag="callee")  # the usual case still goes up, Via popped
    [up] = [a for a in p.handle_response(parse(busy.to_bytes()), callee, 1.2) if isinstance(a, Respond)]
    assert up.response.status == 486 and len(up.response.vias) == 1
