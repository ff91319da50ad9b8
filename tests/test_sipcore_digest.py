"""sipcore.digest and sipcore.digestserver: RFC 2617 / RFC 7616 vectors, parsing, client/server round trip."""

import gc

import pytest
from twisted.internet.task import Clock

from sipharness.sipcore import digest
from sipharness.sipcore import digestserver
from sipharness.sipcore.digest import Challenge, Credentials, authorize, compute_response, make_challenge
from sipharness.sipcore.digestserver import DigestServer
from sipharness.sipcore.uri import SipParseError

RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                     'opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_rfc2617_section_3_5_example():
    ch = Challenge.parse(RFC2617_CHALLENGE)
    assert ch.realm == "testrealm@host.com" and ch.qop == ["auth", "auth-int"] and ch.algorithm == "MD5"
    value = authorize(ch, method="GET", uri="/dir/index.html", username="Mufasa",
                      password="Circle Of Life", nc=1, cnonce="0a4f113b")
    cr = Credentials.parse(value)
    assert cr.response == "6629fae49393a05397450978507c4ef1"
    assert (cr.nc, cr.cnonce, cr.qop, cr.opaque) == ("00000001", "0a4f113b", "auth", "5ccc069c403ebaf9f0171e9517f40e41")
    assert cr.nonce_count == 1


def test_rfc7616_section_3_9_1_examples():
    common = dict(username="Mufasa", realm="http-auth@example.org", password="Circle of Life",
                  method="GET", uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                  qop="auth", nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert compute_response(algorithm="MD5", **common) == "8ca523f5e9506fed4657c9700eebdbec"
    assert compute_response(algorithm="SHA-256", **common) == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")


def test_legacy_no_qop():
    value = authorize('Digest realm="r", nonce="n"', method="REGISTER", uri="sip:r",
                      username="u", password="p")
    cr = Credentials.parse(value)
    assert cr.qop is None and cr.nc is None and cr.cnonce is None
    import hashlib
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()
    assert cr.response == md5(f"{md5('u:r:p')}:n:{md5('REGISTER:sip:r')}")


def test_challenge_roundtrip_and_stale():
    v = make_challenge("sip.example", stale=True, nonce="abc", opaque="o")
    ch = Challenge.parse(v)
    assert (ch.realm, ch.nonce, ch.stale, ch.opaque, ch.qop) == ("sip.example", "abc", True, "o", ["auth"])
    assert Challenge.parse(str(ch)) == ch


@pytest.mark.parametrize("bad", ['Basic realm="x"', "Digest", 'Digest realm="x"', 'Digest realm="x", nonce="y', 'Digest realm=x nonce=y'])
def test_bad_challenges(bad):
    with pytest.raises(SipParseError):
        Challenge.parse(bad)


@pytest.mark.parametrize("bad", [
    'Digest username="u", realm="r"',
    'Digest username="u", realm="r", nonce="n", uri="sip:r", response="x", qop=auth',
    'Digest username="u", realm="r", nonce="n", uri="sip:r", response="x", qop=auth, nc=zz, cnonce="c"',
    'NoOneKnowsThisScheme opaque-data=here',
])
def test_bad_credentials(bad):
    with pytest.raises(SipParseError):
        Credentials.parse(bad)


USERS = {"alice": "secret", 'we"ird\\': "p"}


def test_server_round_trip_nonce_count_and_expiry():
    clock = Clock()
    srv = DigestServer("sip.example", clock, nonce_ttl=60)
    ch = srv.make_challenge()
    ok = srv.verify(authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="secret"),
                    method="REGISTER", password_for=USERS.get, uri="sip:sip.example")
    assert ok.ok and ok.status == digestserver.OK and ok.username == "alice" and bool(ok)
    # same nonce count again: replay → stale; next count → ok
    again = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="secret", nc=1)
    assert srv.verify(again, method="REGISTER", password_for=USERS.get).status == digestserver.STALE
    nc2 = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="secret", nc=2)
    assert srv.verify(nc2, method="REGISTER", password_for=USERS.get).ok
    bad = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="nope", nc=3)
    assert srv.verify(bad, method="REGISTER", password_for=USERS.get).status == digestserver.BAD_PASSWORD
    who = authorize(ch, method="REGISTER", uri="sip:sip.example", username="bob", password="x", nc=3)
    assert srv.verify(who, method="REGISTER", password_for=USERS.get).status == digestserver.UNKNOWN_USER
    wrong_method = authorize(ch, method="INVITE", uri="sip:sip.example", username="alice", password="secret", nc=4)
    assert srv.verify(wrong_method, method="REGISTER", password_for=USERS.get).status == digestserver.BAD_PASSWORD
    clock.advance(61)
    late = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="secret", nc=5)
    assert srv.verify(late, method="REGISTER", password_for=USERS.get).status == digestserver.STALE
    # a nonce the server never issued, right password → stale (re-challenge with stale=TRUE)
    foreign = authorize(make_challenge("sip.example"), method="REGISTER", uri="sip:x", username="alice", password="secret")
    assert srv.verify(foreign, method="REGISTER", password_for=USERS.get).status == digestserver.STALE
    assert srv.verify("garbage", method="REGISTER", password_for=USERS.get).status == digestserver.MALFORMED
    other_realm = authorize(make_challenge("elsewhere"), method="REGISTER", uri="sip:x", username="alice", password="secret")
    assert srv.verify(other_realm, method="REGISTER", password_for=USERS.get).status == digestserver.MALFORMED
    assert srv.verify(ok_value := authorize(srv.make_challenge(), method="REGISTER", uri="sip:a", username="alice",
                                             password="secret"), method="REGISTER", password_for=USERS.get,
                      uri="sip:b").status == digestserver.MALFORMED
    assert ok_value


def test_server_quoting_and_auth_int_and_sha256():
    srv = DigestServer("r", qop=("auth-int",), algorithm="SHA-256")
    ch = srv.make_challenge()
    assert Challenge.parse(ch).algorithm == "SHA-256"
    v = authorize(ch, method="MESSAGE", uri="sip:r", username='we"ird\\', password="p", body=b"hi")
    assert Credentials.parse(v).username == 'we"ird\\'
    assert srv.verify(v, method="MESSAGE", password_for=USERS.get, body=b"hi").ok
    v2 = authorize(ch, method="MESSAGE", uri="sip:r", username='we"ird\\', password="p", nc=2, body=b"hi")
    assert srv.verify(v2, method="MESSAGE", password_for=USERS.get, body=b"tampered").status == digestserver.BAD_PASSWORD


def test_server_without_clock_and_nonce_cap():
    srv = DigestServer("r", max_nonces=4)
    first = srv.make_challenge()
    for _ in range(4):
        srv.make_challenge()
    v = authorize(first, method="REGISTER", uri="sip:r", username="alice", password="secret")
    assert srv.verify(v, method="REGISTER", password_for=USERS.get).status == digestserver.STALE  # forgotten
    # RFC 7616 §3.3 reads it case-insensitively; its ABNF writes "true" (and peers send that)
    assert "stale=true" in srv.make_challenge(stale=True)
    assert Challenge.parse('Digest realm="r", nonce="n", stale=TRUE').stale


def test_issued_nonces_do_not_load_the_garbage_collector():
    # a registrar issues a nonce per REGISTER and keeps up to max_nonces of them: an object each
    # was one more for every full collection to walk (pauses under load, bench/registrar_rps.py)
    ds = DigestServer("x", Clock(), max_nonces=10000)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(5000):
        ds.make_challenges()
    gc.collect()
    assert len(ds._nonces) == 5000
    assert len(gc.get_objects()) - before < 100


def test_select_challenge_takes_the_first_supported_algorithm():
    # RFC 8760 §2.4: the server lists its preferred first; a client skips what it cannot compute
    offered = ['Digest realm="r", nonce="n", algorithm=SHA-512-256', 'Digest realm="r", nonce="n", algorithm=SHA-256',
               'Digest realm="r", nonce="n", algorithm=MD5']
    assert digest.select_challenge(offered).algorithm == "SHA-256"
    assert digest.select_challenge(offered[2:]).algorithm == "MD5"
    with pytest.raises(SipParseError, match="SHA-512-256"):
        digest.select_challenge(offered[:1] + ["Basic realm=x"])


def test_digest_uri_is_compared_with_the_request_uri_by_sip_equivalence():
    srv = DigestServer("r")
    ch = srv.make_challenge()
    v = authorize(ch, method="REGISTER", uri="sip:EXAMPLE.com;transport=UDP", username="alice", password="secret")
    assert srv.verify(v, method="REGISTER", password_for=USERS.get, uri="sip:example.com;transport=udp").ok
    v = authorize(ch, method="REGISTER", uri="sip:other.example.com", username="alice", password="secret", nc=2)
    bad = srv.verify(v, method="REGISTER", password_for=USERS.get, uri="sip:example.com")
    assert bad.status == digestserver.MALFORMED and "Request-URI" in bad.reason


def test_a_changed_password_is_checked_against_the_new_one_not_a_kept_ha1():
    # the server keeps H(user:realm:password) per user; a password changed (or a realm renamed)
    # must not be answered from it
    srv = DigestServer("sip.example", algorithms=("MD5", "SHA-256"))
    users = {"alice": "old"}
    ch = Challenge.parse(srv.make_challenges()[0])
    value = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="old")
    assert srv.verify(value, method="REGISTER", password_for=users.get).ok
    users["alice"] = "new"
    ch = Challenge.parse(srv.make_challenges()[0])
    stale_password = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="old")
    assert srv.verify(stale_password, method="REGISTER", password_for=users.get).status == digestserver.BAD_PASSWORD
    ch = Challenge.parse(srv.make_challenges()[1])  # SHA-256 as well
    fresh = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="new")
    assert srv.verify(fresh, method="REGISTER", password_for=users.get).ok
    srv.realm = "other.example"
    ch = Challenge.parse(srv.make_challenges()[0])
    renamed = authorize(ch, method="REGISTER", uri="sip:sip.example", username="alice", password="new")
    assert srv.verify(renamed, method="REGISTER", password_for=users.get).ok
