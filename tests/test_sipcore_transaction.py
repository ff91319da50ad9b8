"""RFC 3261 §17 transactions and the SPEC §3 retry_counts window, on plain floats and task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet import task

from sipharness.sipcore.transaction import (
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    Terminated,
    TimedOut,
    TimerDriver,
    TransactionTable,
    TransportFailed,
    TwoXXRetransmitter,
    give_up_offset,
    send_offsets,
)

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.ids import new_branch
from sipharness.sipcore.parser import parse


def request(method="INVITE", branch=None, cseq=1, route=None, host="127.0.0.1", port=5062):
    branch = branch or new_branch()
    headers = [("Route", route)] if route else None
    req = make_request(
        method,
        "sip:bob@127.0.0.10",
        from_="<sip:alice@127.0.0.10>;tag=ftag",
        to="<sip:bob@127.0.0.10>",
        call_id="call-1@127.0.0.1",
        cseq=cseq,
        via=f"SIP/2.0/UDP {host}:{port};branch={branch};rport",
        contact=f"<sip:alice@{host}:{port}>",
        headers=headers,
        body=b"v=0\r\n" if method == "INVITE" else b"",
    )
    return req


def response(req, status, to_tag="ttag"):
    return make_response(req, status, to_tag=to_tag if status > 100 else None)


def run(tx, until=40.0, step=None):
    """Drive ``tx`` by its deadlines on plain floats; return [(time, event)]."""
    out = [(0.0, e) for e in tx.start(0.0)]
    while tx.deadline is not None and tx.deadline <= until:
        now = tx.deadline
        out += [(now, e) for e in tx.on_timer(now)]
    return out


def send_times(log):
    return [t for t, e in log if isinstance(e, Send)]


def timeout_at(log):
    return [(t, e.reason) for t, e in log if isinstance(e, TimedOut)]


# ------------------------------------------------------------------ schedules (SPEC §3)

INVITE_CASES = {
    0: ([0.0], 0.5),
    3: ([0.0, 0.5, 1.5, 3.5], 7.5),
    6: ([0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], 32.0),
    10: ([0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], 32.0),
    20: ([0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], 32.0),
    None: ([0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], 32.0),
}

NON_INVITE_CASES = {
    0: ([0.0], 0.5),
    3: ([0.0, 0.5, 1.5, 3.5], 7.5),
    6: ([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5], 19.5),
    10: ([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
    20: ([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
    None: ([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
}


@pytest.mark.parametrize("n", list(INVITE_CASES))
def test_invite_schedule_with_retry_counts(n):
    sends, give_up = INVITE_CASES[n]
    tx = ClientTransaction(request("INVITE"), reliable=False, max_sends=None if n is None else 1 + n)
    log = run(tx)
    assert send_times(log) == sends
    assert [t for t, _ in timeout_at(log)] == [give_up]
    assert tx.state == "terminated" and tx.sends == len(sends)
    assert isinstance(log[-1][1], Terminated)
    assert [e.retransmission for _, e in log if isinstance(e, Send)] == [False] + [True] * (len(sends) - 1)


@pytest.mark.parametrize("n", list(NON_INVITE_CASES))
def test_non_invite_schedule_with_retry_counts(n):
    sends, give_up = NON_INVITE_CASES[n]
    tx = ClientTransaction(request("REGISTER"), reliable=False, max_sends=None if n is None else 1 + n)
    log = run(tx)
    assert send_times(log) == sends
    assert [t for t, _ in timeout_at(log)] == [give_up]
    assert tx.sends == len(sends)


def test_timeout_reasons_are_readable():
    log = run(ClientTransaction(request("INVITE"), reliable=False, max_sends=4))
    assert timeout_at(log) == [(7.5, "no response after 4 sends in 7.50 s (retry_counts 3)")]
    log = run(ClientTransaction(request("INVITE"), reliable=False))
    assert timeout_at(log) == [(32.0, "no response after 7 sends in 32.00 s (Timer B)")]
    log = run(ClientTransaction(request("INVITE"), reliable=True, max_sends=4))
    assert timeout_at(log) == [(7.5, "no response after 1 send in 7.50 s (reliable transport, retry_counts 3)")]


def test_schedule_helpers():
    assert send_offsets(True, 7) == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert send_offsets(False, 7) == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert give_up_offset(True, 4) == 7.5
    assert give_up_offset(False, 11) == 32.0
    assert give_up_offset(True, None) == 32.0


@pytest.mark.parametrize("method,n,give_up", [("INVITE", 3, 7.5), ("INVITE", 0, 0.5), ("INVITE", 6, 32.0),
                                              ("REGISTER", 3, 7.5), ("REGISTER", 10, 32.0),
                                              ("INVITE", None, 32.0), ("OPTIONS", None, 32.0)])
def test_reliable_transport_same_window_no_retransmission(method, n, give_up):
    tx = ClientTransaction(request(method), reliable=True, max_sends=None if n is None else 1 + n)
    log = run(tx)
    assert send_times(log) == [0.0]
    assert [t for t, _ in timeout_at(log)] == [give_up]


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="max_sends"):
        ClientTransaction(request(), reliable=False, max_sends=0)
    with pytest.raises(ValueError, match="ACK"):
        ClientTransaction(request("ACK"), reliable=False)


# ------------------------------------------------------------------ client INVITE


def test_provisional_stops_invite_retransmission_and_window():
    req = request("INVITE")
    tx = ClientTransaction(req, reliable=False, max_sends=4)
    tx.start(0.0)
    assert tx.on_timer(0.5) == [Send(req, retransmission=True)]
    trying = response(req, 100)
    assert tx.receive(trying, 1.0) == [Deliver(trying)]
    assert tx.state == "proceeding"
    assert tx.deadline is None  # no A, no B, no window: the server is alive
    ringing = response(req, 180)
    assert tx.receive(ringing, 60.0) == [Deliver(ringing)]
    ok = response(req, 200)
    assert tx.receive(ok, 61.0) == [Deliver(ok), Terminated()]
    assert tx.state == "terminated" and tx.sends == 2


def test_non_2xx_final_is_acked_per_17_1_1_3():
    req = request("INVITE", route="<sip:127.0.0.10;lr>")
    tx = ClientTransaction(req, reliable=False)
    tx.start(0.0)
    busy = response(req, 486)
    events = tx.receive(busy, 0.2)
    assert [type(e) for e in events] == [Send, Deliver]
    ack = events[0].message
    assert ack.method == "ACK" and str(ack.uri) == str(req.uri)
    assert ack.top_via.branch == req.top_via.branch
    assert len(ack.vias) == 1
    assert ack.to.tag == "ttag" and ack.from_.tag == "ftag"
    assert ack.cseq == (1, "ACK") and ack.call_id == req.call_id
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.10;lr>"]
    assert ack.body == b"" and ack.headers.get("Contact") is None
    wire = ack.to_bytes()
    assert parse(wire).method == "ACK" and b"Content-Length: 0" in wire
    assert tx.state == "completed" and tx.deadline == pytest.approx(32.2)
    # a retransmitted final gets the same ACK again, no second Deliver
    assert tx.receive(busy, 1.0) == [Send(ack, retransmission=True)]
    assert tx.on_timer(32.2) == [Terminated()]


def test_non_2xx_final_over_reliable_terminates_at_once():
    req = request("INVITE")
    tx = ClientTransaction(req, reliable=True)
    tx.start(0.0)
    events = tx.receive(response(req, 503), 0.1)
    assert [type(e) for e in events] == [Send, Deliver, Terminated]


def test_transport_error_fails_the_transaction():
    tx = ClientTransaction(request("INVITE"), reliable=False, max_sends=4)
    tx.start(0.0)
    assert tx.transport_error("ICMP port unreachable", 0.01) == [
        TransportFailed("ICMP port unreachable"), Terminated()]
    assert tx.state == "terminated" and tx.deadline is None
    assert tx.on_timer(10.0) == []


# ------------------------------------------------------------------ client non-INVITE


def test_non_invite_provisional_cancels_window_keeps_timer_f_and_retransmits_at_t2():
    req = request("REGISTER")
    tx = ClientTransaction(req, reliable=False, max_sends=4)
    log = [(0.0, e) for e in tx.start(0.0)]
    log += [(0.5, e) for e in tx.on_timer(0.5)]
    tx.receive(response(req, 100), 1.0)
    assert tx.state == "proceeding"
    while tx.deadline is not None:
        now = tx.deadline
        log += [(now, e) for e in tx.on_timer(now)]
    # E keeps its pending fire at 1.5, then T2 = 4 s apart; F at 32 (the window is gone)
    assert send_times(log) == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert timeout_at(log) == [(32.0, "no final response within 32.00 s (Timer F)")]


def test_non_invite_final_then_timer_k():
    req = request("OPTIONS")
    tx = ClientTransaction(req, reliable=False)
    tx.start(0.0)
    ok = response(req, 200)
    assert tx.receive(ok, 0.3) == [Deliver(ok)]
    assert tx.state == "completed" and tx.deadline == pytest.approx(5.3)
    assert tx.receive(ok, 0.4) == []  # retransmitted final absorbed
    assert tx.on_timer(5.3) == [Terminated()]
    tx2 = ClientTransaction(req, reliable=True)
    tx2.start(0.0)
    assert tx2.receive(ok, 0.3) == [Deliver(ok), Terminated()]


# ------------------------------------------------------------------ server


def test_server_non_invite_absorbs_retransmissions_and_timer_j():
    req = request("REGISTER")
    tx = ServerTransaction(req, reliable=False)
    assert tx.state == "trying"
    assert tx.receive(req, 0.5) == []  # nothing to resend yet
    trying = response(req, 100)
    assert tx.respond(trying, 0.6) == [Send(trying)]
    assert tx.receive(req, 1.0) == [Send(trying, retransmission=True)]
    ok = response(req, 200)
    assert tx.respond(ok, 1.1) == [Send(ok)]
    assert tx.receive(req, 1.5) == [Send(ok, retransmission=True)]
    assert tx.deadline == pytest.approx(33.1)  # Timer J = 64·T1
    assert tx.on_timer(33.1) == [Terminated()]
    with pytest.raises(ValueError, match="state is terminated"):
        tx.respond(ok, 34.0)


def test_server_invite_timer_g_until_ack_then_timer_i():
    req = request("INVITE")
    tx = ServerTransaction(req, reliable=False)
    busy = response(req, 486)
    assert tx.respond(busy, 0.0) == [Send(busy)]
    times = []
    while tx.deadline is not None and tx.deadline < 10:
        now = tx.deadline
        times += [now for e in tx.on_timer(now) if isinstance(e, Send)]
    assert times == [0.5, 1.5, 3.5, 7.5]  # G: T1 doubling, capped at T2
    ack = busy and tx.request.copy()
    ack.method = "ACK"
    assert tx.receive(ack, 9.0) == []
    assert tx.state == "confirmed" and tx.deadline == pytest.approx(14.0)  # Timer I = T4
    assert tx.receive(ack, 9.5) == []  # ACK retransmissions absorbed
    assert tx.on_timer(14.0) == [Terminated()]


def test_server_invite_timer_h_without_ack():
    req = request("INVITE")
    tx = ServerTransaction(req, reliable=False)
    tx.respond(response(req, 404), 0.0)
    sends, timed_out = 0, []
    while tx.deadline is not None:
        now = tx.deadline
        for e in tx.on_timer(now):
            sends += isinstance(e, Send)
            if isinstance(e, TimedOut):
                timed_out.append((now, e.reason))
    # G at .5 1.5 3.5 7.5 11.5 15.5 19.5 23.5 27.5 31.5; H at 32
    assert sends == 10
    assert timed_out == [(32.0, "no ACK for 404 after 32.00 s (Timer H)")]


def test_server_invite_2xx_terminates_and_reliable_has_no_g():
    req = request("INVITE")
    tx = ServerTransaction(req, reliable=False)
    ok = response(req, 200)
    assert tx.respond(ok, 0.0) == [Send(ok), Terminated()]
    tx = ServerTransaction(req, reliable=True)
    tx.respond(response(req, 486), 0.0)
    assert tx.deadline == pytest.approx(32.0)  # H only


def test_two_xx_retransmitter():
    req = request("INVITE")
    ok = response(req, 200)
    r = TwoXXRetransmitter(ok)
    r.start(0.0)
    times = []
    while r.deadline is not None and r.deadline < 12:
        now = r.deadline
        times += [now for e in r.on_timer(now) if isinstance(e, Send)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5]
    ack = req.copy()
    ack.method = "ACK"
    assert r.matches_ack(ack)
    assert r.ack_received(12.0) == [Terminated()] and r.acked
    r2 = TwoXXRetransmitter(ok)
    r2.start(0.0)
    last = []
    while r2.deadline is not None:
        last = r2.on_timer(r2.deadline)
    assert last[0] == TimedOut("no ACK for 200 after 11 sends in 32.00 s")


# ------------------------------------------------------------------ table


def test_table_matching():
    table = TransactionTable()
    inv = request("INVITE")
    stx = ServerTransaction(inv, reliable=False)
    table.add(stx)
    assert table.match_request(inv) is stx
    ack = inv.copy()
    ack.method = "ACK"
    assert table.match_request(ack) is stx  # ACK matches the INVITE transaction
    cancel = inv.copy()
    cancel.method = "CANCEL"
    assert table.match_request(cancel) is None  # CANCEL is its own transaction
    assert table.match_cancelled(cancel) is stx
    other = request("INVITE", branch=stx.key[0], host="127.0.0.2")  # same branch, other sent-by
    assert table.match_request(other) is None

    reg = request("REGISTER")
    ctx = ClientTransaction(reg, reliable=False)
    table.add(ctx)
    assert table.match_response(response(reg, 200)) is ctx
    reg_cancel = reg.copy()
    reg_cancel.method = "CANCEL"
    reg_cancel.headers.set("CSeq", "1 CANCEL")
    assert table.match_response(make_response(reg_cancel, 200)) is None  # CSeq method differs
    assert len(table) == 2
    stx.respond(response(inv, 200), 0.0)
    table.remove(stx)  # a 2xx ends the INVITE server transaction at once; its owner drops it
    assert len(table) == 1
    with pytest.raises(ValueError, match="already exists"):
        table.add(ClientTransaction(reg, reliable=False))


# ------------------------------------------------------------------ on a Twisted clock


def test_timer_driver_on_task_clock_invite_n3():
    clock = task.Clock()
    clock.advance(100.0)  # not starting at 0
    tx = ClientTransaction(request("INVITE"), reliable=False, max_sends=4)
    log = []
    driver = TimerDriver(clock)
    driver.watch(tx, lambda evs: log.extend((clock.seconds() - 100.0, e) for e in evs))
    log += [(0.0, e) for e in tx.start(clock.seconds())]
    driver.poke(tx)
    for _ in range(200):
        clock.advance(0.25)
    assert send_times(log) == [0.0, 0.5, 1.5, 3.5]
    assert timeout_at(log) == [(7.5, "no response after 4 sends in 7.50 s (retry_counts 3)")]
    assert len(driver) == 0 and clock.getDelayedCalls() == []


def test_timer_driver_follows_provisional():
    clock = task.Clock()
    req = request("INVITE")
    tx = ClientTransaction(req, reliable=False, max_sends=4)
    log = []
    driver = TimerDriver(clock)
    driver.watch(tx, log.extend)
    tx.start(clock.seconds())
    driver.poke(tx)
    clock.advance(0.5)
    tx.receive(response(req, 100), clock.seconds())
    driver.poke(tx)
    assert clock.getDelayedCalls() == []
    clock.advance(100)
    assert log == [Send(req, retransmission=True)]


# ------------------------------------------------------------------ states: Enum + transition table


def test_states_are_an_enum_that_still_compares_as_text():
    from sipharness.sipcore.transaction import TxState

    tx = ClientTransaction(request("REGISTER"), reliable=False)
    assert tx.state is TxState.TRYING and tx.state == "trying"
    tx.start(0.0)
    tx.receive(response(tx.request, 200), 0.1)
    assert tx.state is TxState.COMPLETED
    tx.on_timer(10.0)
    assert tx.state is TxState.TERMINATED and tx.state == "terminated" and f"{tx.state}" == "terminated"


def test_an_event_the_table_does_not_allow_raises():
    from sipharness.sipcore.transaction import TransactionStateError

    req = request("INVITE")
    stx = ServerTransaction(req, reliable=False)
    stx.respond(response(req, 486), 0.0)
    with pytest.raises(TransactionStateError, match="completed"):
        stx.respond(response(req, 200), 0.1)  # a second final response
    ctx = ClientTransaction(request("OPTIONS"), reliable=True)
    ctx.start(0.0)
    with pytest.raises(TransactionStateError, match="already started"):
        ctx.start(0.1)
    rt = TwoXXRetransmitter(response(req, 200))
    rt.start(0.0)
    with pytest.raises(TransactionStateError):
        rt.start(0.1)


def test_the_tables_name_every_state_and_lead_only_to_states_they_know():
    from sipharness.sipcore.transaction import states as t

    for table in (t.CLIENT_INVITE, t.CLIENT_NON_INVITE, t.SERVER_INVITE, t.SERVER_NON_INVITE, t.TWO_XX):
        for state, row in table.items():
            assert isinstance(state, t.TxState)
            for event, nxt in row.items():
                assert nxt in table, f"{state} --{event}--> {nxt}: no row for {nxt}"
        assert t.TxState.TERMINATED in table  # what arrives late is absorbed, not raised


@pytest.mark.parametrize("method", ["INVITE", "REGISTER"])
@pytest.mark.parametrize("reliable", [False, True])
def test_whatever_the_wire_brings_in_whatever_order_nothing_raises(method, reliable):
    """Seeded random walks of responses, retransmitted requests, ACKs, transport errors and
    timers through client and server transactions: the tables absorb all of it."""
    import random

    rng = random.Random(f"{method}{reliable}")
    for _ in range(300):
        req = request(method)
        ctx = ClientTransaction(req, reliable=reliable, max_sends=rng.choice([None, 1, 4]))
        stx = ServerTransaction(req, reliable=reliable)
        ctx.start(0.0)
        now = 0.0
        answered = False
        for _ in range(12):
            now += rng.choice([0.0, 0.3, 5.0, 40.0])
            what = rng.randrange(6)
            if what == 0:
                ctx.receive(response(req, rng.choice([100, 180, 200, 302, 404, 486, 503, 699])), now)
            elif what == 1:
                ctx.transport_error("reset", now)
            elif what == 2:
                stx.receive(req, now)
            elif what == 3:
                ack = req.copy()
                ack.method = "ACK"
                ack.headers.set("CSeq", f"{req.cseq[0]} ACK")
                stx.receive(ack, now)
            elif what == 4 and not answered and stx.state in ("trying", "proceeding"):
                status = rng.choice([100, 180, 200, 486])
                stx.respond(response(req, status), now)
                answered = status >= 200
            else:
                ctx.on_timer(now)
                stx.on_timer(now)
            stx.transport_error("gone", now) if rng.random() < 0.02 else None


def test_a_response_with_the_right_branch_but_another_call_id_or_cseq_is_no_answer():
    """SPEC §4 [RFC 3261 §17.1.3]: Call-ID, CSeq and branch must all match the request."""
    table = TransactionTable()
    reg = request("REGISTER", cseq=5)
    tx = ClientTransaction(reg, reliable=False)
    table.add(tx)
    good = response(reg, 200)
    assert table.match_response(good) is tx
    other_call = good.copy()
    other_call.headers.set("Call-ID", "someone-else@127.0.0.66")
    assert table.match_response(other_call) is None
    other_cseq = good.copy()
    other_cseq.headers.set("CSeq", "6 REGISTER")
    assert table.match_response(other_cseq) is None
