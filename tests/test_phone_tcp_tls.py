"""The bundled phone over real TCP and TLS sockets against fakes.sip.FakeSipServer (SPEC §3).

- REGISTER failover over TCP, with the fake DNS giving SRV ``_sip._tcp`` → primary
  (127.0.0.10) then secondary (127.0.0.20): a primary that refuses the connection (RST) is
  given up at once; a primary that accepts the connection and never answers is given up
  after the UDP window, 7.5 s for retry_counts 3, exact on the virtual clock (SPEC §9), with
  a single REGISTER on the primary's connection (TCP has no retransmissions).
- REGISTER over TLS with a throw-away CA (sipcore.tls.TestPKI): the phone trusting that CA
  registers; a phone trusting another CA fails the handshake and gives the target up at once.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.fakes.dns import FakeDNS, Zone
from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.phone.config import loads_config
from sipharness.phone.phone import Phone

from sipharness.sipcore.tls import TestPKI
from tests.conftest import failover_zone




@pytest_twisted.async_yield_fixture
async def lab(vclock):
    rec = Recorder(vclock)
    primary = FakeSipServer("primary", role="registrar", clock=vclock, recorder=rec, host="127.0.0.10")
    secondary = FakeSipServer("secondary", role="registrar", clock=vclock, recorder=rec, host="127.0.0.20")
    await primary.listen("tcp")
    await secondary.listen("tcp")
    dns = FakeDNS(Zone.from_text(failover_zone(primary.address[1], secondary.address[1], srv="_sip._tcp")), clock=vclock)
    await dns.start()
    phones: list[Phone] = []

    def make_phone(extra: str = "", **kw) -> Phone:
        cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                           "account.1.transport = 1\naccount.1.sip_server.1.address = pbx.test\n"
                           "account.1.sip_server.1.port = 0\n" + extra)
        p = Phone(cfg, clock=vclock, dns_server=dns.address, **kw)
        phones.append(p)
        return p

    yield make_phone, primary, secondary
    for p in phones:
        await p.stop()
        assert p.wire.closed and not p.wire._flows
    await primary.stop()
    await secondary.stop()
    await dns.stop()


def _registers(server) -> list[tuple[float, str]]:
    return [(round(r.time, 3), r.transport) for r in server.records if r.direction == "in" and r.method == "REGISTER"]


@pytest_twisted.ensureDeferred
async def test_tcp_refused_primary_fails_over_at_once(lab, vclock):
    make_phone, primary, secondary = lab
    await primary.down("refused")  # listener closed: the connect gets RST
    phone = make_phone()
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.time == pytest.approx(0.0, abs=1e-6)  # no phone time passed: refused gives up at once
    assert ev.target == f"tcp:127.0.0.20:{secondary.address[1]}"
    assert _registers(primary) == []
    assert _registers(secondary) == [(0.0, "tcp")]
    assert any("refused" in line for line in phone.log)
    assert "transport=tcp" in secondary.bindings("1001")[0][0]


@pytest_twisted.ensureDeferred
async def test_tcp_silent_primary_fails_over_after_7_5_s(lab, vclock):
    make_phone, primary, secondary = lab
    primary.script.silent()  # accepts the connection, reads the REGISTER, never answers
    phone = make_phone()
    t0 = vclock.seconds()
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.time - t0 == pytest.approx(7.5, abs=1e-6)  # SPEC §3: the UDP window for N = 3
    assert ev.target == f"tcp:127.0.0.20:{secondary.address[1]}"
    assert _registers(primary) == [(round(t0, 3), "tcp")]  # one send: TCP does not retransmit
    assert _registers(secondary) == [(round(t0 + 7.5, 3), "tcp")]


@pytest_twisted.ensureDeferred
async def test_tcp_retry_counts_1_gives_up_after_1_5_s(lab, vclock):
    make_phone, primary, secondary = lab
    primary.script.silent()
    phone = make_phone("account.1.sip_server.1.retry_counts = 1\n")
    t0 = vclock.seconds()
    await phone.start()
    ev = await phone.wait_for("registered", 60, account=1, server=1)
    assert ev.time - t0 == pytest.approx(1.5, abs=1e-6)  # T1·(2^(N+1) − 1), N = 1


# ---------------------------------------------------------------------------- TLS


@pytest_twisted.async_yield_fixture
async def tls_server(vclock):
    pki = TestPKI()
    server = FakeSipServer("tls", role="registrar", clock=vclock, host="127.0.0.1")
    await server.listen("tls", context=pki.server_context())
    yield pki, server
    await server.stop()


def _tls_cfg(port: int) -> str:
    return ("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\naccount.1.transport = 2\n"
            f"account.1.sip_server.1.address = 127.0.0.1\naccount.1.sip_server.1.port = {port}\n")


@pytest_twisted.ensureDeferred
async def test_tls_register(tls_server, vclock):
    pki, server = tls_server
    phone = Phone(loads_config(_tls_cfg(server.address[1])), clock=vclock, tls_context=pki.client_context())
    try:
        await phone.start()
        ev = await phone.wait_for("registered", 60, account=1, server=1)
        assert ev.target == f"tls:127.0.0.1:{server.address[1]}"
        assert ev.time == pytest.approx(0.0, abs=1e-6)
        assert [r.transport for r in server.records if r.direction == "in" and r.method == "REGISTER"] == ["tls"]
        contact = server.bindings("1001")[0][0]
        assert "transport=tls" in contact
        # the refresh goes over the same TLS connection at 90 % of 3600 s (virtual time)
        ev2 = await phone.wait_for("registered", 4000, count=2, account=1, server=1)
        assert ev2.time == pytest.approx(3240.0, abs=1e-6)
        peers = {r.peer for r in server.records if r.direction == "in" and r.method == "REGISTER"}
        assert len(peers) == 1
    finally:
        await phone.stop()


@pytest_twisted.ensureDeferred
async def test_tls_untrusted_server_fails_at_once(tls_server, vclock):
    pki, server = tls_server
    other = TestPKI()  # the phone trusts another CA: the handshake fails
    phone = Phone(loads_config(_tls_cfg(server.address[1]) + "account.1.reg_fail_retry_interval = 0\n"),
                  clock=vclock, tls_context=other.client_context())
    try:
        await phone.start()
        ev = await phone.wait_for("register_failed", 60, account=1, server=1)
        assert ev.time == pytest.approx(0.0, abs=1e-6)  # SPEC §3: TLS handshake failure gives up at once
        assert "TLS handshake failed" in ev.detail
        assert not [r for r in server.records if r.direction == "in" and r.method == "REGISTER"]
    finally:
        await phone.stop()
