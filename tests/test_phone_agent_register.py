"""SPEC §3/§4/§5 through the user agent on a task.Clock: registration, failover, failback."""

import pytest

from tests.test_phone_fakewire import make_ua, ok, registrar, run_until, silent, tgt

P, S = tgt("127.0.0.10"), tgt("127.0.0.20")
DOMAIN = "account.1.sip_server.1.address = pbx.example.com\n"


def kinds(ua, kind, **f):
    return [e for e in ua.events if e.kind == kind and all(getattr(e, k) == v for k, v in f.items())]


def test_reg_fo_primary_silent_secondary_answers_next_register_to_primary():
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 10)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 0.5, 1.5, 3.5]  # 1 + 3 sends
    assert wire.times("REGISTER", "127.0.0.20") == [7.5]
    reg = kinds(ua, "registered")
    assert [(e.time, e.target) for e in reg] == [(7.5, "udp:127.0.0.20:5060")]
    assert ua.current_target(1, 1) == S
    msgs = [m for _, _, m in wire.requests("REGISTER")]
    assert len({m.call_id for m in msgs}) == 1  # same Call-ID
    assert [m.cseq[0] for m in msgs] == [1, 1, 1, 1, 2]  # new transaction: CSeq + 1
    assert msgs[3].top_via.branch != msgs[4].top_via.branch
    assert str(msgs[0].to.uri) == "sip:1001@pbx.example.com" and msgs[0].expires == 3600
    assert any("gave up after 4 sends in 7.50 s" in e.detail for e in kinds(ua, "decision"))
    # refresh at 90 % of 3600 s after the 200: newRequests → primary first
    wire.responders["127.0.0.10"] = registrar()
    run_until(clock, 7.5 + 3240)
    assert wire.times("REGISTER", "127.0.0.10")[-1] == 3247.5
    assert ua.current_target(1, 1) == P
    assert [e.target for e in kinds(ua, "registered")][-1] == "udp:127.0.0.10:5060"


@pytest.mark.parametrize("n, final, sends, gave_up", [
    (0, False, [0], 0.5),
    (3, False, [0, 0.5, 1.5, 3.5], 7.5),
    (20, False, [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
    (0, True, [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
])
def test_retransmission_schedule(n, final, sends, gave_up):
    # final: the single target of server 1 with no server 2 is the last target → full 32 s
    cfg = f"account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.1.retry_counts = {n}\n"
    targets = [P] if final else [P, S]
    clock, wire, ua = make_ua(cfg, {1: targets})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 40)
    assert wire.times("REGISTER", "127.0.0.10") == sends
    if final:
        fails = kinds(ua, "register_failed")
        assert fails[0].time == gave_up
    else:
        assert wire.times("REGISTER", "127.0.0.20") == [gave_up]


def test_all_targets_failed_retry_after_reg_fail_retry_interval_from_the_top():
    clock, wire, ua = make_ua(DOMAIN + "account.1.reg_fail_retry_interval = 30\n", {1: [P, S]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": silent}
    ua.start()
    run_until(clock, 7.5 + 32 + 30 + 1)
    fail = kinds(ua, "register_failed")[0]
    assert fail.time == 39.5 and fail.server == 1
    assert wire.times("REGISTER", "127.0.0.10")[4] == 69.5  # from the top of the list


def test_503_gives_the_target_up_at_once():
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": lambda r: ok(r, 503), "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 1)
    assert wire.times("REGISTER", "127.0.0.10") == [0]
    assert wire.times("REGISTER", "127.0.0.20") == [0]
    assert ua.registered(1, 1)


def test_a_received_408_is_an_answer_not_a_failover_trigger():
    """SPEC §3 revised 2026-12-01: RFC 3263 §4.3 names only the transaction timeout, a transport
    error and 503. A 408 from the primary is a failed registration there (retried after
    reg_fail_retry_interval, from the top), never a REGISTER to the secondary."""
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": lambda r: ok(r, 408), "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 31)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 30]
    assert wire.times("REGISTER", "127.0.0.20") == []
    fails = kinds(ua, "register_failed")
    assert [e.time for e in fails] == [0, 30] and "408" in fails[0].detail and not ua.registered(1)


def test_icmp_unreachable_gives_the_target_up_at_once():
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})

    def unreachable(req):
        clock.callLater(0.001, ua.transport_error, ("127.0.0.10", 5060), "udp", "ICMP port unreachable")
        return []

    wire.responders = {"127.0.0.10": unreachable, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 1)
    assert wire.times("REGISTER", "127.0.0.20") == [0.001]
    assert any("ICMP port unreachable" in e.detail for e in kinds(ua, "decision"))


def test_refused_flow_gives_the_target_up_at_once():
    from twisted.internet import defer

    clock, wire, ua = make_ua(DOMAIN + "account.1.transport = 1\n", {1: [tgt("127.0.0.10", transport="tcp"),
                                                                            tgt("127.0.0.20", transport="tcp")]})
    real = wire.flow
    wire.flow = lambda t: defer.fail(ConnectionRefusedError("refused")) if t.host == "127.0.0.10" else real(t)
    wire.responders = {"127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 1)
    assert ua.registered(1, 1) and wire.times("REGISTER", "127.0.0.20") == [0]


@pytest.mark.parametrize("status", [403, 404, 486, 500])
def test_other_finals_are_answers_not_triggers(status):
    clock, wire, ua = make_ua(DOMAIN, {1: [P, S]})
    wire.responders = {"127.0.0.10": lambda r: ok(r, status), "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 10)
    assert wire.times("REGISTER", "127.0.0.20") == []
    assert kinds(ua, "register_failed")[0].time == 0


def test_423_retries_with_min_expires_and_refreshes_on_it():
    def respond(req):
        if req.expires < 600:
            return ok(req, 423, headers=[("Min-Expires", "600")])
        return ok(req, headers=[("Contact", f"{req.contacts[0]};expires=600")])

    clock, wire, ua = make_ua(DOMAIN + "account.1.sip_server.1.expires = 60\n", {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 1)
    msgs = [m for _, _, m in wire.requests("REGISTER")]
    assert [m.expires for m in msgs] == [60, 600] and msgs[1].cseq[0] == 2
    run_until(clock, 540)
    assert wire.times("REGISTER")[-1] == 540


def test_granted_expiry_from_contact_param_beats_expires_header():
    def respond(req):
        return ok(req, headers=[("Expires", "1000"), ("Contact", f"{req.contacts[0]};expires=100")])

    clock, wire, ua = make_ua(DOMAIN, {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 100)
    assert wire.times("REGISTER") == [0, 90]


def test_digest_challenge_one_retry():
    from sipharness.sipcore import digest

    def respond(req):
        if req.headers.get("Authorization") is None:
            return ok(req, 401, headers=[("WWW-Authenticate", digest.make_challenge("pbx", nonce="abc"))])
        return ok(req, headers=[("Contact", str(req.contacts[0]))])

    clock, wire, ua = make_ua(DOMAIN + "account.1.auth_name = authuser\n", {1: [P]})
    wire.responders = {"127.0.0.10": respond}
    ua.start()
    run_until(clock, 1)
    msgs = [m for _, _, m in wire.requests("REGISTER")]
    assert len(msgs) == 2 and 'username="authuser"' in msgs[1].headers.get("Authorization")
    assert ua.registered(1, 1)


def test_digest_challenge_twice_is_a_failure():
    from sipharness.sipcore import digest

    clock, wire, ua = make_ua(DOMAIN, {1: [P]})
    wire.responders = {"127.0.0.10": lambda r: ok(r, 401, headers=[("WWW-Authenticate", digest.make_challenge("pbx"))])}
    ua.start()
    run_until(clock, 1)
    assert len(wire.requests("REGISTER")) == 2 and not ua.registered(1)
    assert 'username="1001"' in wire.requests("REGISTER")[1][2].headers.get("Authorization")


# --- failback (SPEC §5) through refreshes: expires 30 → refresh every 27 s -----------------

def failback_run(mode, timeout=60, s_expires_at=None):
    cfg = (DOMAIN + f"account.1.sip_server.1.expires = 30\naccount.1.sip_server.1.failback_mode = {mode}\n"
           f"account.1.sip_server.1.failback_timeout = {timeout}\n")
    sec = tgt("127.0.0.20", expires_at=s_expires_at)
    clock, wire, ua = make_ua(cfg, {1: [P, sec]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 8)
    wire.responders["127.0.0.10"] = registrar()  # the primary recovers at once
    run_until(clock, 200)
    return [(e.time, e.target) for e in kinds(ua, "registered")], ua


def test_failback_mode0_refresh_goes_to_primary():
    regs, _ = failback_run(0)
    assert regs[:2] == [(7.5, "udp:127.0.0.20:5060"), (34.5, "udp:127.0.0.10:5060")]


def test_failback_mode1_dnsttl():
    regs, ua = failback_run(1, s_expires_at=50.0)
    assert regs[:3] == [(7.5, "udp:127.0.0.20:5060"), (34.5, "udp:127.0.0.20:5060"), (61.5, "udp:127.0.0.10:5060")]
    # "target": where new requests start changed (to the secondary at the first refresh, back at 61.5)
    assert [(e.time, e.target) for e in kinds(ua, "target")][:2] == [(34.5, "udp:127.0.0.20:5060"),
                                                                       (61.5, "udp:127.0.0.10:5060")]


def test_failback_mode2_registration():
    regs, _ = failback_run(2)
    assert regs[:2] == [(7.5, "udp:127.0.0.20:5060"), (34.5, "udp:127.0.0.10:5060")]


def test_failback_mode3_duration():
    regs, _ = failback_run(3, timeout=60)
    # failed over at 7.5; stays until 67.5: refreshes at 34.5, 61.5 on the secondary, 88.5 primary
    assert [t for t, _ in regs[:4]] == [7.5, 34.5, 61.5, 88.5]
    assert [tg[-7:-5] for _, tg in regs[:4]] == ["20", "20", "20", "10"]


def test_failback_mode3_duration_zero_stays():
    regs, _ = failback_run(3, timeout=0)
    assert all(tg == "udp:127.0.0.20:5060" for _, tg in regs)
    assert len(regs) >= 7
