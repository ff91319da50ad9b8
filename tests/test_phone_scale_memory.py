"""What keeps a bundled phone small (bench/phone_scale.py measures it; these pin the fixes).

10 000 phones in one process is the target (< 20 KiB each): every object a phone keeps for
its whole life counts ten thousand times, so a few bytes here are megabytes there.
"""

from __future__ import annotations

import random

from twisted.internet import task

from sipharness.phone.config import loads_config
from sipharness.phone.phone import Phone

CFG = ("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
       "account.1.sip_server.1.address = 127.0.0.1\n")


def _phone(**kw) -> Phone:
    return Phone(loads_config(CFG), clock=task.Clock(), **kw)


def test_phones_share_one_default_rng_but_keep_a_given_one():
    a, b = _phone(), _phone()
    assert a.rng is b.rng and not hasattr(a.ua, "rng")  # no 2.5 KB Mersenne Twister per phone
    mine = random.Random(7)
    c = _phone(rng=mine)
    assert c.rng is mine  # what the phone's resolvers draw SRV orders from (SPEC §2)


def test_log_lines_are_made_from_the_events_not_kept_twice():
    p = _phone()
    p.ua.decide("first decision", account=1)
    p.ua.emit("registered", account=1, server=1, target="udp:127.0.0.1:5060", detail="granted 60 s")
    assert p.log == [str(e) for e in p.events]
    assert p.log[-1].endswith("registered account=1 server=1 target=udp:127.0.0.1:5060: granted 60 s")
    assert "log" not in vars(p.ua)  # derived, not a second list of strings per phone


def test_a_finished_request_lets_go_of_its_message():
    from tests.test_phone_fakewire import make_ua, registrar, run_until, silent, tgt

    p, s = tgt("127.0.0.10"), tgt("127.0.0.20")
    clock, wire, ua = make_ua("account.1.sip_server.1.address = pbx.example.com\n", {1: [p, s]})
    wire.responders = {"127.0.0.10": silent, "127.0.0.20": registrar()}
    ua.start()
    run_until(clock, 10)
    reg = ua.servers[(1, 1)].registration
    assert reg.registered and reg.request.done
    assert reg.request.request is None  # the REGISTER is not kept until the refresh (3240 s later)
    wire.responders["127.0.0.10"] = registrar()
    run_until(clock, 7.5 + 3240 + 1)  # and the refresh still works
    assert wire.times("REGISTER", "127.0.0.10")[-1] == 3247.5 and reg.registered


def test_events_have_no_instance_dict():
    p = _phone()
    ev = p.ua.emit("registered", account=1, server=1)
    assert not hasattr(ev, "__dict__")  # __slots__: ~100 B less per event kept


# --- configuration: slots, and one shared default per untouched account ------------------------

def test_untouched_accounts_are_shared_read_only_defaults():
    import pytest

    from sipharness.phone.config import PhoneConfig, dumps_config

    a, b = loads_config(CFG), loads_config(CFG.replace("1001", "1002"))
    assert a.accounts[1] is not b.accounts[1]  # configured: each its own
    assert all(a.accounts[x] is b.accounts[x] for x in range(2, 7))  # untouched: one object
    assert not hasattr(a.accounts[1], "__dict__") and not hasattr(a.accounts[1].servers[1], "__dict__")
    with pytest.raises(TypeError, match="shared default"):
        a.accounts[3].enable = 1
    with pytest.raises(TypeError, match="shared default"):
        a.accounts[3].servers[1].address = "x.example.com"
    a.set("account.3.sip_server.1.address", "x.example.com")  # set() gives account 3 its own copy
    assert a.accounts[3].servers[1].address == "x.example.com" and b.accounts[3].servers[1].address == ""
    assert PhoneConfig().accounts[3].servers[1].address == ""
    c = loads_config("account.4.label = four\n", base=a)  # a base's own accounts are copied, not shared
    assert c.accounts[3] is not a.accounts[3] and c.accounts[3] == a.accounts[3] and c.accounts[5] is a.accounts[5]
    assert loads_config(dumps_config(a)) == a  # round trip unchanged


# --- DNS: one twisted.names client per (server, clock) for the process, few resolutions kept -----

def test_resolvers_of_one_server_and_clock_share_one_client_until_the_last_closes():
    from sipharness.phone import dnsclient

    clock, other = task.Clock(), task.Clock()
    r1 = dnsclient.Resolver(("127.0.0.1", 5353), clock=clock)
    r2 = dnsclient.Resolver(("127.0.0.1", 5353), clock=clock)
    r3 = dnsclient.Resolver(("127.0.0.1", 5353), clock=other)
    r4 = dnsclient.Resolver(("127.0.0.2", 5353), clock=clock)
    assert r1._client is r2._client  # no 2.5 KB method table per phone
    assert r3._client is not r1._client and r4._client is not r1._client
    assert dnsclient.KEEP_RESOLUTIONS <= 4
    assert not dnsclient._DatagramProtocol.noisy and not dnsclient._TCPFactory.noisy
    key = r1._client_key
    r1.close()
    r1.close()  # idempotent: does not release r2's share
    assert dnsclient._CLIENTS[key][1] == 1
    r2.close()
    assert key not in dnsclient._CLIENTS
    r5 = dnsclient.Resolver(("127.0.0.1", 5353), clock=clock)
    assert r5._client is not r1._client  # a new one after the last closed
    for r in (r3, r4, r5):
        r.close()


# --- events: the last KEEP_EVENTS kept, whole-log indices stable ------------------------------

def test_event_journal_keeps_the_last_events_with_stable_indices():
    import pytest

    from sipharness.phone.events import EventJournal, PhoneEvent

    clock = task.Clock()
    j = EventJournal(clock, keep=8)
    for i in range(100):
        clock.advance(1)
        j.append(PhoneEvent(time=clock.seconds(), kind="decision", detail=str(i)))
    assert len(j) == 100  # every event ever emitted counts
    kept = list(j)
    assert 8 <= len(kept) <= 10 and kept[-1].detail == "99"  # at least `keep`, trimmed in batches
    assert j.dropped == 100 - len(kept) and j[99].detail == "99" and j[-1].detail == "99"
    assert j[j.dropped].detail == str(j.dropped)
    with pytest.raises(IndexError, match="dropped"):
        j[0]
    assert [e.detail for e in j.entries(since=97)] == ["97", "98", "99"]
    assert [e.detail for e in j[97:]] == ["97", "98", "99"]
    # waits keep their meaning: since=len() is "from now on", an old index still counts from there
    seen = []
    j.wait_for(lambda e: True, 10, since=len(j)).addCallback(seen.append)
    j.wait_for(lambda e: e.detail in ("98", "100"), 10, count=2, since=98).addCallback(seen.append)
    assert seen == []
    j.append(PhoneEvent(time=clock.seconds(), kind="decision", detail="100"))
    assert [e.detail for e in seen] == ["100", "100"]
    failed = []
    j.wait_for(lambda e: False, 5, since=len(j), what="never").addErrback(failed.append)
    clock.advance(5)
    assert "never" in str(failed[0].value)


def test_a_phone_keeps_a_bounded_number_of_events():
    p = Phone(loads_config(CFG), clock=task.Clock(), keep_events=50)
    for i in range(1000):
        p.ua.decide(f"decision {i}")
    assert len(p.events) == 1000 and len(list(p.events)) <= 50 + 50 // 4
    assert p.log[-1].endswith("decision 999")


def test_a_resolver_keeps_its_last_few_lookups_and_a_finished_plan_drops_its_frame():
    from sipharness.phone import dnsclient
    from sipharness.phone.dnsrecords import Address
    from sipharness.phone.rfc3263 import Resolution

    r = dnsclient.Resolver(("127.0.0.1", 5353), clock=task.Clock())
    try:
        for i in range(10):
            res = Resolution("pbx.example.com", 5060, 0, 0, now=0)
            q = res.next_query()
            res.feed(q.name, q.qtype, [Address(f"127.0.0.{i + 1}", 60)], now=0)
            assert res.done and res._gen is None
            r._finish(None, ("pbx.example.com", 5060, 0, 0), res)
        assert len(r.resolutions) == dnsclient.KEEP_RESOLUTIONS
        assert r.resolutions[-1].targets[0].host == "127.0.0.10"
    finally:
        r.close()
