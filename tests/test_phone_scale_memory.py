"""What keeps a bundled phone small (bench/phone_scale.py measures it; these pin the fixes).

10 000 phones in one process is the target (< 20 KiB each): every object a phone keeps for
its whole life counts ten thousand times, so a few bytes here are megabytes there.
"""

from __future__ import annotations

import random

from twisted.internet import task

from phone.config import loads_config
from phone.phone import Phone

CFG = ("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
       "account.1.sip_server.1.address = 127.0.0.1\n")


def _phone(**kw) -> Phone:
    return Phone(loads_config(CFG), clock=task.Clock(), **kw)


def test_phones_share_one_default_rng_but_keep_a_given_one():
    a, b = _phone(), _phone()
    assert a.rng is b.rng and a.ua.rng is a.rng  # no 2.5 KB Mersenne Twister per phone
    mine = random.Random(7)
    c = _phone(rng=mine)
    assert c.rng is mine and c.ua.rng is mine


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
    reg = ua.registrations[(1, 1)]
    assert reg.registered and reg.request.done
    assert reg.request.request is None  # the REGISTER is not kept until the refresh (3240 s later)
    wire.responders["127.0.0.10"] = registrar()
    run_until(clock, 7.5 + 3240 + 1)  # and the refresh still works
    assert wire.times("REGISTER", "127.0.0.10")[-1] == 3247.5 and reg.registered


def test_events_have_no_instance_dict():
    p = _phone()
    ev = p.ua.emit("registered", account=1, server=1)
    assert not hasattr(ev, "__dict__")  # __slots__: ~100 B less per event kept
