"""SPEC §4 (revised 2026-12-01), issue 12: what a hostile or broken registrar's answer counts as.

A 2xx is a registration only if it grants our Contact an expiry > 0; more than asked is used
as asked; an unparsable 2xx, one granting 0 or less, or one without our Contact is a failed
attempt ("register_failed", retry after reg_fail_retry_interval), never "registered". A
response whose Call-ID or CSeq differs from the request's is no answer at all. A Min-Expires
above expires × 10 or 2^31-1 is a failed attempt [interp]. All on a task.Clock, exact.
"""

from __future__ import annotations

import pytest

from sipharness.sipcore.build import make_response
from tests.test_phone_fakewire import make_ua, ok, registrar, run_until, silent, tgt

P, S = tgt("127.0.0.10"), tgt("127.0.0.20")
DOMAIN = "account.1.sip_server.1.address = pbx.example.com\n"


def kinds(ua, kind):
    return [e for e in ua.events if e.kind == kind]


def answer_once(first, then=None):
    """A registrar whose first REGISTER gets ``first(req)``, the rest ``then`` (a good one)."""
    then = then or registrar()
    seen = {"n": 0}

    def respond(req, target=None):
        seen["n"] += 1
        if req.method == "REGISTER" and seen["n"] == 1:
            return first(req)
        return then(req, target)
    return respond


def contact_expires(value):
    return lambda req: ok(req, headers=[("Contact", f"{req.contacts[0]};expires={value}")])


@pytest.mark.parametrize("first, why", [
    (lambda req: ok(req, headers=[("Contact", str(req.contacts[0])), ("Expires", "abc")]), "unparsable expiry"),
    (contact_expires("abc"), "unparsable expiry"),
    (contact_expires("1" * 5000), "grants"),  # thousands of digits: no int() blow-up either
    (contact_expires(0), "grants 0 s"),
    (contact_expires(-5), "grants -5 s"),
    (lambda req: ok(req, headers=[("Contact", str(req.contacts[0])), ("Expires", "0")]), "grants 0 s"),
    (lambda req: ok(req), "does not list our Contact"),
    (lambda req: ok(req, headers=[("Contact", "<sip:1001@127.0.0.99:5999>;expires=3600")]), "does not list our Contact"),
])
def test_a_2xx_that_is_no_registration_is_a_failed_attempt_then_retried(first, why):
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": answer_once(first)}
    ua.start()
    run_until(clock, 1)
    if "grants" == why:  # 10^5000 seconds: more than asked → used as asked (3600), a registration
        assert ua.registered(1, 1) and kinds(ua, "registered")[0].detail.startswith("granted 3600 s")
        return
    assert not ua.registered(1, 1) and not kinds(ua, "registered")
    fail = kinds(ua, "register_failed")
    assert len(fail) == 1 and why in fail[0].detail and "retry in 30 s" in fail[0].detail
    assert wire.times("REGISTER", "127.0.0.20") == []  # an answer, not a failover trigger (SPEC §3)
    run_until(clock, 31)  # SPEC §4: retried after reg_fail_retry_interval, from the top of the list
    assert wire.times("REGISTER", "127.0.0.10") == [0, 30] and ua.registered(1, 1)


def test_a_granted_expiry_longer_than_asked_is_used_as_asked():
    clock, wire, ua = make_ua(DOMAIN, {1: [P]})
    wire.responders = {"127.0.0.10": answer_once(contact_expires(2**32))}
    ua.start()
    run_until(clock, 1)
    assert kinds(ua, "registered")[0].detail == "granted 3600 s, refresh at t=3240.000"
    run_until(clock, 3241)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 3240]


def test_a_shorter_granted_expiry_is_used():
    clock, wire, ua = make_ua(DOMAIN, {1: [P]})
    wire.responders = {"127.0.0.10": answer_once(contact_expires(600))}
    ua.start()
    run_until(clock, 541)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 540]


@pytest.mark.parametrize("header", ["Call-ID", "CSeq"])
def test_a_response_with_the_right_branch_but_another_call_id_or_cseq_is_no_answer(header):
    """RFC 3261 §17.1.3, SPEC §4: not an answer, so the primary stays silent for the phone: 1 + 3
    sends, then the secondary at 7.5 s."""
    def forged(req):
        resp = make_response(req, 200, to_tag="x", headers=[("Contact", f"{req.contacts[0]};expires=3600")])
        if header == "Call-ID":
            resp.headers.set("Call-ID", "forged@127.0.0.66")
        else:
            resp.headers.set("CSeq", f"{req.cseq[0] + 7} REGISTER")
        return [(0.0, resp)]

    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": forged, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 10)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 0.5, 1.5, 3.5]
    reg = kinds(ua, "registered")
    assert [(e.time, e.target) for e in reg] == [(7.5, "udp:127.0.0.20:5060")]


@pytest.mark.parametrize("min_expires, retried", [
    ("7200", True),  # a sane Min-Expires: retried with it (SPEC §3)
    ("36001", False),  # above expires × 10 [interp]
    (str(2**32), False),  # above 2^31-1 [interp]
    ("abc", False),
    ("0", False),
])
def test_min_expires_beyond_bounds_is_a_failed_attempt(min_expires, retried):
    def first(req):
        return ok(req, 423, "Interval Too Brief", headers=[("Min-Expires", min_expires)])

    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": answer_once(first)}
    ua.start()
    run_until(clock, 1)
    regs = [m for _, _, m in wire.requests("REGISTER", "127.0.0.10")]
    if retried:
        assert [m.expires for m in regs] == [3600, 7200] and ua.registered(1, 1)
        assert kinds(ua, "registered")[0].detail.startswith("granted 7200 s")
    else:
        assert [m.expires for m in regs] == [3600] and not ua.registered(1, 1)
        assert "423" in kinds(ua, "register_failed")[0].detail
        assert wire.times("REGISTER", "127.0.0.20") == []


def test_a_phone_fed_only_bad_2xx_keeps_trying_and_never_raises():
    """The account never stops for good (issue 12: an uncaught parse error used to end it)."""
    bad = lambda req, target=None: ok(req, headers=[("Contact", str(req.contacts[0])), ("Expires", "x")])  # noqa: E731
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": bad, "127.0.0.20": silent}
    ua.start()
    run_until(clock, 200)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 30, 60, 90, 120, 150, 180]
    assert len(kinds(ua, "register_failed")) == 7 and not kinds(ua, "registered")
