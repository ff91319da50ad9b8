"""SPEC §5/§6/§7 through the user agent on a task.Clock: fallback, INVITE failover, calls."""

from sipharness.sipcore.build import make_request
from sipharness.sipcore.nameaddr import NameAddr
from tests.test_phone_fakewire import make_ua, ok, registrar, run_until, silent, tgt

P, S, F = tgt("127.0.0.10"), tgt("127.0.0.20"), tgt("127.0.0.15")
TWO_SERVERS = ("account.1.sip_server.1.address = 127.0.0.10\naccount.1.sip_server.2.address = 127.0.0.15\n")


def kinds(ua, kind, **f):
    return [e for e in ua.events if e.kind == kind and all(getattr(e, k) == v for k, v in f.items())]


def states(ua, call):
    return [(e.time, e.state) for e in kinds(ua, "call_state", call_id=call.call_id)]


def test_reg_fb_successive_probes_and_unregisters_server2():
    clock, wire, ua = make_ua(TWO_SERVERS + "account.1.fallback.redundancy_type = 1\n", {1: [P], 2: [F]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.15": registrar()}
    ua.start()
    run_until(clock, 10)
    assert wire.times("REGISTER", "127.0.0.10") == [0, 0.5, 1.5, 3.5]  # server 1 is not the last: 1 + 3
    assert wire.times("REGISTER", "127.0.0.15") == [7.5]
    assert ua.registered(1, 2) and not ua.registered(1, 1)
    run_until(clock, 250)
    # probes every fallback.timeout (120 s) from the fallback at 7.5 s
    assert [t for t in wire.times("REGISTER", "127.0.0.10") if t > 5] == [127.5, 128, 129, 131, 247.5, 248, 249]
    run_until(clock, 300)
    wire.responders["127.0.0.10"] = registrar()
    run_until(clock, 368)
    assert ua.registered(1, 1)
    assert wire.times("REGISTER", "127.0.0.10")[-1] == 367.5
    unreg = [m for t, _, m in wire.requests("REGISTER", "127.0.0.15") if t == 367.5]
    assert len(unreg) == 1 and unreg[0].expires == 0  # un-REGISTER server 2
    assert not ua.registered(1, 2)
    run_until(clock, 5000)
    assert wire.times("REGISTER", "127.0.0.15")[-1] == 367.5  # no more refreshes of server 2


def test_inv_fb_concurrent_invite_to_server2_then_back_to_server1_after_it_registers():
    clock, wire, ua = make_ua(TWO_SERVERS + "account.1.sip_server.1.expires = 60\n", {1: [P], 2: [F]})
    wire.responders = {"127.0.0.10": registrar(), "127.0.0.15": registrar()}
    ua.start()
    run_until(clock, 1)
    assert ua.registered(1, 1) and ua.registered(1, 2)  # concurrent: both at once
    assert wire.times("REGISTER") == [0, 0]
    wire.responders["127.0.0.10"] = silent
    run_until(clock, 10)
    call = ua.place_call("sip:2002@127.0.0.10")
    run_until(clock, 20)
    assert wire.times("INVITE", "127.0.0.10") == [10, 10.5, 11.5, 12.5 + 1]
    assert wire.times("INVITE", "127.0.0.15") == [17.5]
    assert states(ua, call)[-1] == (17.5, "established") and call.server == 2
    assert wire.times("ACK", "127.0.0.15") == [17.5]
    ua.hangup(call)
    run_until(clock, 21)
    assert states(ua, call)[-1][1] == "terminated"
    # server 1 still unusable: the next call goes to server 2 first
    call2 = ua.place_call("2002")
    run_until(clock, 22)
    assert call2.server == 2 and call2.state == "established"
    ua.hangup(call2)
    wire.responders["127.0.0.10"] = registrar()
    run_until(clock, 60)  # server 1's refresh at 54 s succeeds
    call3 = ua.place_call("2002")
    run_until(clock, 61)
    assert call3.server == 1 and call3.state == "established"


def test_inv_fo_failover_inside_server1_then_next_call_to_primary():
    clock, wire, ua = make_ua("account.1.sip_server.1.address = pbx.example.com\n", {1: [P, S]})
    wire.responders = {"127.0.0.10": registrar(), "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 1)
    wire.responders["127.0.0.10"] = silent
    call = ua.place_call("2002")
    run_until(clock, 10)
    assert wire.times("INVITE", "127.0.0.10") == [1, 1.5, 2.5, 4.5]
    assert wire.times("INVITE", "127.0.0.20") == [8.5]
    assert call.state == "established"
    invs = [m for _, _, m in wire.requests("INVITE")]
    assert invs[-1].cseq[0] == invs[0].cseq[0] + 1 and invs[-1].call_id == invs[0].call_id
    assert b"PCMU/8000" in invs[0].body
    ua.hangup(call)
    run_until(clock, 11)
    wire.responders["127.0.0.10"] = registrar()
    call2 = ua.place_call("2002")
    run_until(clock, 12)
    assert wire.requests("INVITE")[-1][1] == P and call2.state == "established"


def test_invite_retry_counts_replaces_retry_counts():
    cfg = "account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.1.invite_retry_counts = 1\n"
    clock, wire, ua = make_ua(cfg, {1: [P, S]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.place_call("2002")
    ua.running = True
    run_until(clock, 5)
    assert wire.times("INVITE", "127.0.0.10") == [0, 0.5]
    assert wire.times("INVITE", "127.0.0.20") == [1.5]


def test_100_trying_stops_invite_failover_486_is_an_answer():
    def trying_then_busy(req):
        if req.method == "INVITE":
            from sipharness.sipcore.build import make_response
            return [(0.0, make_response(req, 100))] + ok(req, 486, delay=40.0)
        return []

    clock, wire, ua = make_ua("account.1.sip_server.1.address = pbx.example.com\n", {1: [P, S]})
    ua.running = True
    wire.responders = {"127.0.0.10": trying_then_busy, "127.0.0.20": registrar()}
    call = ua.place_call("2002")
    run_until(clock, 60)
    assert wire.times("INVITE", "127.0.0.10") == [0]  # 100 stopped retransmissions
    assert wire.times("INVITE", "127.0.0.20") == []  # and the failover
    assert states(ua, call) == [(0, "calling"), (0, "proceeding"), (40, "failed")]
    assert wire.times("ACK", "127.0.0.10") == [40]  # non-2xx ACK from the transaction


def test_register_on_enable_registers_with_the_next_target_before_the_invite():
    cfg = ("account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.1.register_on_enable = 1\n")
    clock, wire, ua = make_ua(cfg, {1: [P, S]})
    ua.running = True
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    call = ua.place_call("2002")
    run_until(clock, 10)
    to_s = [(round(t, 3), m.method) for t, tg, m in wire.requests() if tg == S]
    assert to_s == [(7.5, "REGISTER"), (7.5, "INVITE"), (7.5, "ACK")]
    assert call.state == "established" and ua.registered(1, 1)


def test_register_on_enable_0_goes_straight_to_the_next_target():
    clock, wire, ua = make_ua("account.1.sip_server.1.address = pbx.example.com\n", {1: [P, S]})
    ua.running = True
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.place_call("2002")
    run_until(clock, 10)
    assert [m.method for t, tg, m in wire.requests() if tg == S] == ["INVITE", "ACK"]


class Reply:
    transport, reliable, peer = "udp", False, ("127.0.0.15", 5060)
    local = ("127.0.0.1", 40000)

    def __init__(self, clock):
        self.clock, self.sent = clock, []

    def send(self, m):
        self.sent.append((self.clock.seconds(), m))


def incoming_invite():
    return make_request("INVITE", "sip:1001@127.0.0.1:40000", from_=NameAddr("sip:2002@pbx", params={"tag": "a"}),
                        to=NameAddr("sip:1001@pbx"), call_id="in-1", cseq=1,
                        via="SIP/2.0/UDP 127.0.0.15:5060;branch=z9hG4bKin1",
                        contact=NameAddr("sip:2002@127.0.0.15:5060"), body=b"v=0\r\n")


def test_incoming_call_auto_answer_after_delay_and_2xx_until_ack():
    clock, wire, ua = make_ua(TWO_SERVERS + "account.1.auto_answer = 1\nfeatures.auto_answer_delay = 3\n", {1: [P], 2: [F]})
    ua.running = True
    reply = Reply(clock)
    ua.sip_received(incoming_invite(), reply)
    assert [m.status for _, m in reply.sent] == [100, 180]
    assert kinds(ua, "incoming_call")[0].call_id == "in-1"
    run_until(clock, 4)
    assert [(t, m.status) for t, m in reply.sent[2:]] == [(3, 200), (3.5, 200)]  # 2xx retransmitted
    ack = make_request("ACK", "sip:1001@127.0.0.1:40000", from_=NameAddr("sip:2002@pbx", params={"tag": "a"}),
                       to=reply.sent[2][1].to, call_id="in-1", cseq=(1, "ACK"),
                       via="SIP/2.0/UDP 127.0.0.15:5060;branch=z9hG4bKack")
    ua.sip_received(ack, reply)
    run_until(clock, 20)
    assert len(reply.sent) == 4
    call = ua.calls["in-1"]
    assert call.state == "established"
    bye = make_request("BYE", "sip:1001@127.0.0.1:40000", from_=NameAddr("sip:2002@pbx", params={"tag": "a"}),
                       to=reply.sent[2][1].to, call_id="in-1", cseq=2,
                       via="SIP/2.0/UDP 127.0.0.15:5060;branch=z9hG4bKbye")
    ua.sip_received(bye, reply)
    assert reply.sent[-1][1].status == 200 and call.state == "terminated"


def test_incoming_call_without_auto_answer_rings_until_answer():
    clock, wire, ua = make_ua(TWO_SERVERS, {1: [P], 2: [F]})
    ua.running = True
    reply = Reply(clock)
    ua.sip_received(incoming_invite(), reply)
    run_until(clock, 100)
    assert ua.calls["in-1"].state == "ringing"
    ua.answer()
    assert reply.sent[-1][1].status == 200
