"""``Phone.stop(unregister=True)``: REGISTER with Expires: 0 (and the registered Contact) to every
server the phone is registered with, waiting for the answers at most ``timeout`` phone seconds,
then nothing of the phone is left (SPEC §4 un-REGISTER, SPEC §10 stop). Loopback, virtual clock.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer
from sipharness.phone.config import loads_config
from sipharness.phone.phone import Phone


async def _lab(vclock):
    rec = Recorder(vclock)
    servers = {name: FakeSipServer(name, clock=vclock, recorder=rec, host=host)
               for name, host in (("a", "127.0.0.10"), ("b", "127.0.0.15"), ("c", "127.0.0.20"))}
    ports = {name: (await s.listen("udp"))[1] for name, s in servers.items()}

    def srv(x, y, name):
        return (f"account.{x}.sip_server.{y}.address = {servers[name].host}\n"
                f"account.{x}.sip_server.{y}.port = {ports[name]}\n")

    cfg = loads_config(
        "#!version:1.0.0.1\n"
        # account 1: concurrent fallback, registered with a and b
        "account.1.enable = 1\naccount.1.user_name = 1001\n" + srv(1, 1, "a") + srv(1, 2, "b")
        # account 2: registered with a
        + "account.2.enable = 1\naccount.2.user_name = 1002\n" + srv(2, 1, "a")
        # account 3: c is silent, never registered: gets no un-REGISTER
        + "account.3.enable = 1\naccount.3.user_name = 1003\naccount.3.reg_fail_retry_interval = 0\n"
        + srv(3, 1, "c"))
    servers["c"].script.silent()
    phone = Phone(cfg, clock=vclock)
    await phone.start()
    await phone.wait_for("registered", 10, account=1, server=1)
    await phone.wait_for("registered", 10, account=1, server=2)
    await phone.wait_for("registered", 10, account=2, server=1)
    assert not phone.registered(3)
    return rec, servers, phone


def _unregisters(rec):
    return [r for r in rec.sip(method="REGISTER", direction="in") if r.message.expires == 0]


def _nothing_left(phone):
    assert phone.wire.closed and not phone.wire._flows
    assert not [t for t in phone.ua._timers if t.active()] and len(phone.ua.transactions) == 0
    assert not phone.ua.running


async def _teardown(servers):
    for s in servers.values():
        await s.stop()


@pytest_twisted.ensureDeferred
async def test_stop_unregister_sends_expires_0_to_every_registered_server_then_closes(vclock):
    rec, servers, phone = await _lab(vclock)
    try:
        contacts = {(s, u): c for s in ("a", "b") for u in ("1001", "1002") for c, _ in servers[s].bindings(u)}
        assert set(contacts) == {("a", "1001"), ("b", "1001"), ("a", "1002")}
        t0 = vclock.seconds()
        await phone.stop(unregister=True)
        assert vclock.seconds() == pytest.approx(t0, abs=1e-6)  # all answered at once: no deadline wait
        unreg = _unregisters(rec)
        assert sorted((r.server, r.message.from_.uri.user) for r in unreg) == [("a", "1001"), ("a", "1002"),
                                                                                ("b", "1001")]
        for r in unreg:  # RFC 3261 §10.2.2: the Contact that was registered, Expires: 0
            assert str(r.message.contacts[0].uri) == contacts[(r.server, r.message.from_.uri.user)]
        assert not rec.sip(server="c", method="REGISTER", direction="in")[-1].message.expires == 0
        assert all(servers[s].bindings(u) == [] for s, u in contacts)  # the registrars dropped them
        assert not any(r.registered for r in (s.registration for s in phone.ua.servers.values()))
        _nothing_left(phone)
    finally:
        await _teardown(servers)


@pytest_twisted.ensureDeferred
async def test_stop_unregister_is_bounded_by_its_deadline(vclock):
    rec, servers, phone = await _lab(vclock)
    try:
        servers["b"].script.silent()  # b will not answer its un-REGISTER
        t0 = vclock.seconds()
        await phone.stop(unregister=True, timeout=5)
        assert vclock.seconds() == pytest.approx(t0 + 5, abs=1e-6)  # not the 32 s of Timer F
        assert sorted(r.server for r in _unregisters(rec) if not r.retransmission) == ["a", "a", "b"]
        assert servers["a"].bindings("1001") == [] and servers["b"].bindings("1001") != []
        assert any("within 5 s → closing anyway" in line for line in phone.log)
        _nothing_left(phone)
    finally:
        await _teardown(servers)


@pytest_twisted.ensureDeferred
async def test_stop_without_unregister_sends_nothing(vclock):
    rec, servers, phone = await _lab(vclock)
    try:
        await phone.stop()
        assert _unregisters(rec) == [] and servers["a"].bindings("1001") != []
        _nothing_left(phone)
    finally:
        await _teardown(servers)
