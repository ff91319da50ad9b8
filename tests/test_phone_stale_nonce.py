"""A digest challenge with stale=true gets one more retry with the new nonce (RFC 2617 §3.2.1,
RFC 7616 §3.3; SPEC §3 "401/407 with credentials → one retry with digest").

stale=true says the credentials were right and only the nonce was old, so it is not a wrong
password: the phone answers the new nonce once more (once: a server that keeps saying stale
does not make it loop).
"""

from __future__ import annotations

import pytest_twisted

from sipharness.sipcore import digest
from tests.test_phone_fakewire import make_ua, ok, run_until, tgt

P = tgt("127.0.0.10")
DOMAIN = "account.1.sip_server.1.address = pbx.example.com\n"


def _nonce(req):
    value = req.headers.get("Authorization")
    return None if value is None else digest.Credentials.parse(value).nonce


def _challenge(req, nonce, stale=False):
    return ok(req, 401, headers=[("WWW-Authenticate", digest.make_challenge("pbx", nonce=nonce, stale=stale))])


def test_stale_challenge_gets_one_more_retry_with_the_new_nonce():
    def respond(req):
        nonce = _nonce(req)
        if nonce is None:
            return _challenge(req, "n1")
        if nonce == "n1":  # expired meanwhile
            return _challenge(req, "n2", stale=True)
        return ok(req, headers=[("Contact", str(req.contacts[0]))])

    clock, wire, ua = make_ua(DOMAIN, {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 1)
    assert [_nonce(m) for _, _, m in wire.requests("REGISTER")] == [None, "n1", "n2"]
    assert ua.registered(1, 1)
    assert any("stale nonce" in e.detail for e in ua.events if e.kind == "decision")


def test_stale_again_is_not_retried_forever():
    def respond(req):
        nonce = _nonce(req)
        return _challenge(req, f"n{len(nonce or '') + 1}", stale=nonce is not None)

    clock, wire, ua = make_ua(DOMAIN + "account.1.reg_fail_retry_interval = 0\n", {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 100)
    assert len(wire.requests("REGISTER")) == 3 and not ua.registered(1)


def test_a_non_stale_second_challenge_is_a_wrong_password():
    def respond(req):
        return _challenge(req, "n1" if _nonce(req) is None else "n2")  # no stale=true

    clock, wire, ua = make_ua(DOMAIN + "account.1.reg_fail_retry_interval = 0\n", {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 100)
    assert len(wire.requests("REGISTER")) == 2 and not ua.registered(1)


@pytest_twisted.ensureDeferred
async def test_stale_nonce_against_the_fake_registrar(vclock):
    from sipharness.fakes.record import Recorder
    from sipharness.fakes.sip import FakeSipServer
    from sipharness.phone.config import loads_config
    from sipharness.phone.phone import Phone

    rec = Recorder(vclock)
    pbx = FakeSipServer("pbx", clock=vclock, recorder=rec, host="127.0.0.10", users={"1001": "secret"})
    _, port = await pbx.listen("udp")
    challenges = []

    def expire_after_first_challenge(r):
        # the nonce of the first 401 goes stale before the phone's answer to it arrives
        if r.kind == "sip" and r.direction == "out" and r.status == 401:
            challenges.append(r)
            if len(challenges) == 1:
                pbx.logic.registrar.expire_nonces()

    unsubscribe = rec.subscribe(expire_after_first_challenge)
    cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                       "account.1.password = secret\naccount.1.sip_server.1.address = 127.0.0.10\n"
                       f"account.1.sip_server.1.port = {port}\naccount.1.reg_fail_retry_interval = 0\n")
    phone = Phone(cfg, clock=vclock)
    try:
        await phone.start()
        ev = await phone.wait_for("registered", 60, account=1, server=1)
        assert ev.time == 0
        assert len(challenges) == 2 and "stale=true" in challenges[1].message.headers.get("WWW-Authenticate")
        regs = [r for r in rec.sip(server="pbx", method="REGISTER", direction="in")]
        assert len(regs) == 3 and pbx.bindings("1001")
    finally:
        unsubscribe()
        await phone.stop()
        await pbx.stop()
