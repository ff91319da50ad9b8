"""SPEC §1 only_signal_with_registered [vendor extra]: after a failover, requests go only to a
target the phone is registered with (needs register_on_enable 1 and failback_mode 1–3).

The decision is :func:`phone.failover.register_first` (pure, tested on its own); the user agent
runs it on a task.Clock with an in-memory wire, and once over loopback sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import pytest_twisted

from sipharness.phone.failover import only_signal_with_registered, register_first
from tests.test_phone_fakewire import make_ua, ok, registrar, run_until, silent, tgt
from tests.conftest import failover_zone


@dataclass
class Srv:
    register_on_enable: int = 1
    failback_mode: int = 3
    only_signal_with_registered: int = 1


def rf(srv, method="INVITE", position=0, index=1, is_domain=True, registered_here=False):
    return register_first(srv, method, position=position, index=index, is_domain=is_domain,
                          registered_here=registered_here)


def test_in_force_only_with_register_on_enable_1_and_failback_mode_1_to_3_on_a_domain():
    assert only_signal_with_registered(Srv(), is_domain=True)
    assert not only_signal_with_registered(Srv(), is_domain=False)  # modes 1–3: domains only (SPEC §5)
    assert not only_signal_with_registered(Srv(register_on_enable=0), is_domain=True)
    assert not only_signal_with_registered(Srv(failback_mode=0), is_domain=True)
    assert not only_signal_with_registered(Srv(only_signal_with_registered=0), is_domain=True)
    for mode in (1, 2, 3):
        assert only_signal_with_registered(Srv(failback_mode=mode), is_domain=True)


def test_register_first_decisions():
    # a failed-over target (index 1) the phone is not registered with: REGISTER first
    assert "only_signal_with_registered" in rf(Srv())
    # registered there: send at once; the primary is not "after a failover"
    assert rf(Srv(), registered_here=True) is None
    assert rf(Srv(), index=0) is None
    # not in force: the start target gets the request as before
    assert rf(Srv(only_signal_with_registered=0)) is None
    assert rf(Srv(failback_mode=0)) is None
    assert rf(Srv(), is_domain=False) is None
    # REGISTER is how the phone becomes registered: never held back
    assert rf(Srv(), method="REGISTER") is None
    # SPEC §5 register_on_enable: a request that fails over registers first, option or not
    assert rf(Srv(only_signal_with_registered=0), position=1) == "register_on_enable 1"
    assert rf(Srv(register_on_enable=0), position=1) is None


P, S = tgt("127.0.0.10"), tgt("127.0.0.20")


def _cfg(only_signal):
    return ("account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.1.expires = 30\n"
            "account.1.sip_server.1.register_on_enable = 1\naccount.1.sip_server.1.failback_mode = 3\n"
            "account.1.sip_server.1.failback_timeout = 0\n"
            f"account.1.sip_server.1.only_signal_with_registered = {only_signal}\n")


def _lapsed_registration(only_signal):
    """Primary silent → registered with the secondary at 7.5 s (failback duration 0 keeps new
    requests there); its refresh at 34.5 s gets a 403 (the target answered: no failover, but
    the phone is no longer registered with it); a call is placed at 40 s."""
    clock, wire, ua = make_ua(_cfg(only_signal), {1: [P, S]})
    answers = {"n": 0}
    base = registrar()

    def secondary(req, target=None):
        if req.method == "REGISTER":
            answers["n"] += 1
            if answers["n"] == 2:
                return ok(req, 403)
        return base(req, target)

    wire.responders = {"127.0.0.10": silent, "127.0.0.20": secondary}
    ua.start()
    run_until(clock, 20)
    assert ua.servers[(1, 1)].registered_on(S)
    call20 = ua.place_call("2002")  # registered with the secondary: straight there, either way
    run_until(clock, 21)
    assert call20.state == "established" and [t for t, tg, m in wire.requests("REGISTER", "127.0.0.20")] == [7.5]
    ua.hangup(call20)
    run_until(clock, 40)
    assert not ua.registered(1, 1) and ua.servers[(1, 1)].failback.current == 1
    call = ua.place_call("2002")
    run_until(clock, 41)
    return wire, ua, call


def test_only_signal_with_registered_registers_with_the_failed_over_target_before_the_invite():
    wire, ua, call = _lapsed_registration(1)
    at_40 = [(m.method, tg.host) for t, tg, m in wire.requests() if t == 40]
    assert at_40 == [("REGISTER", "127.0.0.20"), ("INVITE", "127.0.0.20"), ("ACK", "127.0.0.20")]
    assert call.state == "established" and ua.servers[(1, 1)].registered_on(S)
    assert any("only_signal_with_registered 1" in e.detail for e in ua.events if e.kind == "decision")


def test_without_the_option_the_invite_goes_to_the_sticky_target_unregistered():
    wire, ua, call = _lapsed_registration(0)
    at_40 = [(m.method, tg.host) for t, tg, m in wire.requests() if t == 40]
    assert at_40 == [("INVITE", "127.0.0.20"), ("ACK", "127.0.0.20")]
    assert call.state == "established" and not ua.registered(1, 1)


def test_a_failed_over_target_that_refuses_the_register_gets_no_invite():
    clock, wire, ua = make_ua(_cfg(1), {1: [P, S]})
    answers = {"n": 0}
    base = registrar()

    def secondary(req, target=None):
        if req.method == "REGISTER":
            answers["n"] += 1
            if answers["n"] >= 2:
                return ok(req, 403)
        return base(req, target)

    wire.responders = {"127.0.0.10": silent, "127.0.0.20": secondary}
    ua.start()
    run_until(clock, 40)
    call = ua.place_call("2002")
    run_until(clock, 100)
    assert wire.requests("INVITE", "127.0.0.20") == []  # never signalled while not registered there
    # the walk went on to the primary, REGISTER first (silent): the call failed
    assert call.state == "failed"


# --- once over loopback (fake DNS + fake SIP servers on the virtual clock) --------------------



@pytest_twisted.ensureDeferred
async def test_only_signal_with_registered_over_loopback(vclock):
    from sipharness.fakes.dns import FakeDNS, Zone
    from sipharness.fakes.record import Recorder
    from sipharness.fakes.sip import FakeSipServer
    from sipharness.phone.config import loads_config
    from sipharness.phone.phone import Phone

    rec = Recorder(vclock)
    primary = FakeSipServer("primary", clock=vclock, recorder=rec, host="127.0.0.10")
    secondary = FakeSipServer("secondary", clock=vclock, recorder=rec, host="127.0.0.20")
    p1, p2 = (await primary.listen("udp"))[1], (await secondary.listen("udp"))[1]
    dns = FakeDNS(zones=[Zone.from_text(failover_zone(p1, p2))], clock=vclock)
    await dns.start()
    cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                       "account.1.sip_server.1.address = pbx.test\naccount.1.sip_server.1.port = 0\n"
                       + _cfg(1).replace("pbx.example.com", "pbx.test"))
    phone = Phone(cfg, clock=vclock, dns_server=dns.address)
    try:
        primary.script.silent()
        await phone.start()
        ev = await phone.wait_for("registered", 60, account=1, server=1)
        assert ev.time == pytest.approx(7.5, abs=1e-6) and ev.target.startswith("udp:127.0.0.20:")
        # the secondary refuses the refresh at 34.5 s: not registered any more, failback stays there
        secondary.script.respond("REGISTER", 403, count=1)
        await phone.wait_for("register_failed", 60, account=1, server=1)
        assert not phone.registered(1, 1)

        def requests():
            return [r.method for r in rec.sip(server="secondary", direction="in") if r.is_request]

        before = len(requests())
        call = phone.call("2002@pbx.test")
        await phone.wait_for("call_state", 60, call_id=call.call_id, state="established")
        # SPEC §1: not registered with the failed-over target → REGISTER with it, INVITE after the 2xx
        assert requests()[before:before + 2] == ["REGISTER", "INVITE"]
        assert phone.registered(1, 1) and rec.sip(server="primary", method="INVITE") == []
        phone.hangup(call)
        await phone.wait_for("call_state", 10, call_id=call.call_id, state="terminated")
    finally:
        await phone.stop()
        await primary.stop()
        await secondary.stop()
        await dns.stop()
