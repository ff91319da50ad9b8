"""The fake registrar's digest, on sipcore.digestserver.DigestServer (sans-I/O, fed phone time)."""

from __future__ import annotations

from sipharness.sipcore.build import make_request
from sipharness.sipcore.digest import Challenge, authorize
from sipharness.sipcore.ids import new_branch, new_tag

from sipharness.fakes.sip.actions import Origin
from sipharness.fakes.sip.registrar import Registrar

ORIGIN = Origin("udp", ("127.0.0.1", 5062), ("127.0.0.1", 5060))


def _register(auth=None, cseq=1, user="alice"):
    headers = {"Expires": "60"}
    if auth is not None:
        headers["Authorization"] = auth
    return make_request("REGISTER", "sip:example.com", from_=f"<sip:{user}@example.com>;tag={new_tag()}",
                        to=f"<sip:{user}@example.com>", call_id="c@t", cseq=cseq,
                        via=f"SIP/2.0/UDP 127.0.0.1:5062;branch={new_branch()}",
                        contact=f"<sip:{user}@127.0.0.1:5062>", headers=headers)


def _answer(reg, now, auth=None, cseq=1, user="alice"):
    [action] = reg.handle(_register(auth, cseq, user), ORIGIN, now)
    return action.response


def _creds(challenge_response, password="secret", nc=1, user="alice"):
    ch = Challenge.parse(challenge_response.headers.get("WWW-Authenticate"))
    return authorize(ch, method="REGISTER", uri="sip:example.com", username=user, password=password, nc=nc)


def test_challenge_ok_wrong_password_unknown_user_and_malformed():
    reg = Registrar(realm="example.com", users={"alice": "secret"})
    ch = _answer(reg, 0.0)
    assert ch.status == 401 and "stale" not in ch.headers.get("WWW-Authenticate")
    assert _answer(reg, 1.0, _creds(ch, "wrong"), 2).status == 403
    assert _answer(reg, 1.0, _creds(ch, user="mallory"), 2, user="mallory").status == 403
    bad = _answer(reg, 1.0, 'Digest username="alice"', 2)
    assert bad.status == 400 and "Authorization" in bad.reason
    assert _answer(reg, 1.0, _creds(ch), 3).status == 200
    assert reg.bindings("alice", 1.0)


def test_stale_on_expiry_on_replay_and_after_expire_nonces():
    reg = Registrar(realm="example.com", users={"alice": "secret"}, nonce_lifetime=300.0)
    ch = _answer(reg, 0.0)
    assert _answer(reg, 10.0, _creds(ch, nc=1), 2).status == 200
    # the same nonce count again is a replay: stale, not a wrong password
    replay = _answer(reg, 11.0, _creds(ch, nc=1), 3)
    assert replay.status == 401 and "stale=true" in replay.headers.get("WWW-Authenticate")
    assert _answer(reg, 12.0, _creds(ch, nc=2), 4).status == 200
    # past the lifetime on the phone clock
    late = _answer(reg, 400.0, _creds(ch, nc=3), 5)
    assert late.status == 401 and "stale=true" in late.headers.get("WWW-Authenticate")
    fresh = late
    assert _answer(reg, 401.0, _creds(fresh), 6).status == 200
    reg.expire_nonces()
    again = _answer(reg, 402.0, _creds(fresh, nc=2), 7)
    assert again.status == 401 and "stale=true" in again.headers.get("WWW-Authenticate")
    assert _answer(reg, 403.0, _creds(again), 8).status == 200
