"""The bundled phone over loopback on the virtual clock (SPEC §8 REG-FO, INV-FO; §9 timing).

The fake DNS (fakes.dns) serves pbx.test: SRV _sip._udp → server1 (127.0.0.10) priority 0 and
server2 (127.0.0.20) priority 1; the SIP side is a tiny in-test responder on sipcore listeners
(bound on port 0: the SRV records carry the ports). Times asserted are exact phone seconds.
"""

from __future__ import annotations


import pytest
import pytest_twisted

from sipharness.fakes.dns import FakeDNS, Zone
from sipharness.phone.config import loads_config
from sipharness.phone.phone import Phone
from sipharness.sipcore import transport

from sipharness.sipcore.build import make_response
from sipharness.sipcore.journal import Journal
from tests.conftest import failover_zone



class Responder:
    """A registrar + answering UAS that can be silent; records (phone time, method) it saw."""

    def __init__(self, clock, host):
        self.clock, self.host = clock, host
        self.silent = False
        self.seen = Journal(clock)
        self.listener = None

    def sip_received(self, msg, source):
        if not msg.is_request:
            return
        self.seen.append((self.clock.seconds(), msg.method))
        if self.silent or msg.method == "ACK":
            return
        port = self.listener.address[1]
        if msg.method == "REGISTER":
            source.send(make_response(msg, 200, to_tag="r", headers=[("Contact", f"{msg.contacts[0]};expires={msg.expires}")]))
        elif msg.method == "INVITE":
            contact = [("Contact", f"<sip:uas@{self.host}:{port}>")]
            source.send(make_response(msg, 100))
            source.send(make_response(msg, 200, to_tag="u", headers=contact + [("Content-Type", "application/sdp")],
                                      body=b"v=0\r\n"))
        else:
            source.send(make_response(msg, 200))

    def sip_bad_input(self, raw, error, source):
        pass

    def sip_transport_error(self, peer, transport, reason):
        pass

    def wait(self, method, timeout=10, count=1):
        return self.seen.wait_for(lambda e: e[1] == method, timeout, count=count, what=method)

    def times(self, method):
        return [round(t, 3) for t, m in self.seen if m == method]



@pytest_twisted.async_yield_fixture
async def lab(vclock):
    r1, r2 = Responder(vclock, "127.0.0.10"), Responder(vclock, "127.0.0.20")
    r1.listener = transport.listen_udp(r1, host="127.0.0.10", port=0, clock=vclock)
    r2.listener = transport.listen_udp(r2, host="127.0.0.20", port=0, clock=vclock)
    dns = FakeDNS(zones=[Zone.from_text(failover_zone(r1.listener.address[1], r2.listener.address[1]))],
                  clock=vclock)
    await dns.start()
    phones = []

    def make_phone(cfg_text):
        cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                           "account.1.sip_server.1.address = pbx.test\naccount.1.sip_server.1.port = 0\n" + cfg_text)
        p = Phone(cfg, clock=vclock, dns_server=dns.address)
        phones.append(p)
        return p

    yield make_phone, r1, r2
    for p in phones:
        await p.stop()
        # nothing of the phone is left on the clock: no timer, no watched transaction
        assert not [t for t in p.ua._timers if t.active()] and len(p.ua.transactions) == 0
        assert p.wire.closed and not p.wire._flows
    await r1.listener.stop()
    await r2.listener.stop()
    await dns.stop()


@pytest_twisted.ensureDeferred
async def test_reg_fo_over_loopback_3600_s_cycle_in_milliseconds(lab, vclock):
    make_phone, r1, r2 = lab
    r1.silent = True
    phone = make_phone("")
    jumps = vclock.jumps
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.time == pytest.approx(7.5, abs=1e-6) and ev.target.startswith("udp:127.0.0.20:")
    assert r1.times("REGISTER") == [0, 0.5, 1.5, 3.5]
    assert r2.times("REGISTER") == [7.5]
    r1.silent = False
    ev2 = await phone.wait_for("registered", 4000, count=2, account=1, server=1)
    assert ev2.time == pytest.approx(7.5 + 3240, abs=1e-6) and ev2.target.startswith("udp:127.0.0.10:")
    assert r1.times("REGISTER")[-1] == 3247.5
    assert phone.current_target(1, 1).host == "127.0.0.10"
    # The hour passed by virtual-clock jumps, not by waiting (wall cost: bench/phone_scale.py).
    assert vclock.jumps > jumps


@pytest_twisted.ensureDeferred
async def test_inv_fo_over_loopback_next_call_to_primary(lab, vclock):
    make_phone, r1, r2 = lab
    phone = make_phone("")
    await phone.start()
    await phone.wait_for("registered", 10, account=1)
    t0 = vclock.seconds()
    r1.silent = True
    call = phone.call("2002")
    ev = await phone.wait_for("call_state", 60, state="established", call_id=call.call_id)
    assert ev.time - t0 == pytest.approx(7.5, abs=1e-6)
    assert [round(t - t0, 3) for t in r1.times("INVITE")] == [0, 0.5, 1.5, 3.5]
    assert [round(t - t0, 3) for t in r2.times("INVITE")] == [7.5]
    ack = await r2.wait("ACK")
    assert ack[0] == pytest.approx(t0 + 7.5, abs=1e-6)
    phone.hangup(call)
    await phone.wait_for("call_state", 10, state="terminated", call_id=call.call_id)
    await r2.wait("BYE")
    r1.silent = False
    t1 = vclock.seconds()
    call2 = phone.call("2002")
    await phone.wait_for("call_state", 10, state="established", call_id=call2.call_id)
    assert r1.times("INVITE")[-1] == round(t1, 3)


@pytest_twisted.ensureDeferred
async def test_icmp_unreachable_over_loopback_moves_on_at_once(lab, vclock):
    make_phone, r1, r2 = lab
    await r1.listener.stop()  # nothing listens on the primary's port: ICMP port unreachable
    phone = make_phone("")
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.time < 0.5 and ev.target.startswith("udp:127.0.0.20:")
    assert any("ICMP" in line for line in phone.log)


@pytest_twisted.ensureDeferred
async def test_ip_literal_with_dns_naptr_transport_is_udp_whatever_naptr_build(lab, vclock):
    """SPEC §2: an IP literal is one target, no DNS. Transport 3 (DNS-NAPTR) has no NAPTR to ask,
    so UDP [RFC 3263 §4.1]; naptr_build (which SRV names to ask when NAPTR gives nothing) does not
    apply. The phone used to pick TCP here while its resolver picked UDP: one home now decides."""
    make_phone, r1, r2 = lab
    port = r1.listener.address[1]
    phone = make_phone(f"account.1.sip_server.1.address = 127.0.0.10\naccount.1.sip_server.1.port = {port}\n"
                       "account.1.transport = 3\naccount.1.naptr_build = 1\n")
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.target == f"udp:127.0.0.10:{port}" and r1.times("REGISTER") == [0]
