"""What the fake registrar grants and lists (RFC 3261 §10.3 steps 7-8), sans-I/O.

``max_expires`` shortens a longer expiry (as Kamailio's ``max_expires``: a lab shortens the
phones' refresh interval, bench/storm.py does); the 200 lists every binding of the AOR, the
longest-lived first, with the time left; a binding made over UDP keeps no socket handle.
"""

from __future__ import annotations

import pytest

from sipharness.fakes.sip.actions import Origin
from sipharness.fakes.sip.registrar import Registrar
from sipharness.sipcore.build import make_request
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.parser import parse

ORIGIN = Origin("udp", ("127.0.0.1", 5062), ("127.0.0.1", 5060), flow=object())


def register(user="alice", port=5062, expires="3600", contact_params=""):
    return parse(make_request(
        "REGISTER", "sip:example.com", from_=f"<sip:{user}@example.com>;tag={new_tag()}", to=f"<sip:{user}@example.com>",
        call_id=f"{user}-{port}@t", cseq=1, via=f"SIP/2.0/UDP 127.0.0.1:{port};branch={new_branch()}",
        contact=f"<sip:{user}@127.0.0.1:{port}>{contact_params}", headers={"Expires": expires}).to_bytes())


def ok(reg, req, now):
    resp = reg.handle(req, ORIGIN, now)[0].response
    assert resp.status == 200, resp
    return [(str(c.uri), c.expires) for c in parse(resp.to_bytes()).contacts]


def test_max_expires_grants_the_shorter_time_and_the_phone_sees_it():
    reg = Registrar(max_expires=10)
    assert ok(reg, register(expires="3600"), 0.0) == [("sip:alice@127.0.0.1:5062", 10)]
    assert reg.bindings("alice", 0.0) == [("sip:alice@127.0.0.1:5062", 10.0)]
    assert ok(reg, register(user="bob", expires="5"), 0.0) == [("sip:bob@127.0.0.1:5062", 5)]  # shorter: as asked
    assert ok(reg, register(user="carol", contact_params=";expires=600"), 0.0) == [("sip:carol@127.0.0.1:5062", 10)]
    assert reg.bindings("alice", 11.0) == []  # lapsed after the granted 10 s, not 3600
    assert ok(reg, register(expires="0"), 1.0) == []  # removal is not "shortened"


def test_max_expires_is_checked():
    with pytest.raises(ValueError, match="max_expires"):
        Registrar(max_expires=0)
    with pytest.raises(ValueError, match="max_expires"):
        Registrar(min_expires=60, max_expires=30)


def test_the_200_lists_every_live_binding_longest_lived_first():
    reg = Registrar()
    ok(reg, register(port=5001, expires="100"), 0.0)
    ok(reg, register(port=5002, expires="300"), 0.0)
    listed = ok(reg, register(port=5003, expires="200"), 50.0)
    assert listed == [("sip:alice@127.0.0.1:5002", 250), ("sip:alice@127.0.0.1:5003", 200),
                      ("sip:alice@127.0.0.1:5001", 50)]
    assert ok(reg, register(port=5004, expires="10"), 120.0) == [  # the first lapsed at 100: gone
        ("sip:alice@127.0.0.1:5002", 180), ("sip:alice@127.0.0.1:5003", 130), ("sip:alice@127.0.0.1:5004", 10)]


def test_a_udp_binding_keeps_the_address_not_the_socket():
    reg = Registrar()
    ok(reg, register(), 0.0)
    (binding,) = reg.lookup("alice", 0.0)
    assert binding.origin.flow is None and binding.origin.peer == ("127.0.0.1", 5062)
    tcp = Origin("tcp", ("127.0.0.1", 5063), ("127.0.0.1", 5060), flow=object())
    reg.handle(register(port=5063), tcp, 0.0)
    assert [b.origin.flow for b in reg.lookup("alice", 0.0) if b.origin.transport == "tcp"] == [tcp.flow]


def test_a_refresh_updates_the_binding_the_proxy_reads():
    # a refresh updates the binding in place: the expiry, Call-ID, CSeq and origin the proxy and
    # the server's originate() read are the refresh's
    reg = Registrar()
    ok(reg, register(expires="100"), 0.0)
    first, = reg.lookup("alice", 0.0)
    refresh = register(expires="300")
    refresh.headers.set("Call-ID", "refresh@t")
    refresh.headers.set("CSeq", "7 REGISTER")
    elsewhere = Origin("udp", ("127.0.0.1", 6000), ("127.0.0.1", 5060))
    assert reg.handle(refresh, elsewhere, 50.0)[0].response.status == 200
    b, = reg.lookup("alice", 200.0)  # past the first expiry (100): the refresh's 300 holds
    assert (b.expires_at, b.call_id, b.cseq, b.origin.peer) == (350.0, "refresh@t", 7, ("127.0.0.1", 6000))
    assert reg.binding_count == 1
