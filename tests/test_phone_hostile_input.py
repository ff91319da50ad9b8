"""The bundled phone as the target of hostile responses and requests: never an uncaught exception.

Seeded mutations (deterministic) of the messages a phone meets — the 2xx / 401 / 423 to its
REGISTER, the 1xx / 2xx to its INVITE, INVITE / ACK / BYE / CANCEL / OPTIONS to it — with
header values replaced by what a hostile peer sends (numbers thousands of digits long,
negative or non-ASCII values, empty values, wrong methods), headers dropped or duplicated,
fed after the parser to a phone in each of its states. What the parser refuses never reaches
the phone; whatever it accepts, the phone answers or ignores, and keeps working.
"""

from __future__ import annotations

import random

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError
from tests.test_phone_fakewire import make_ua, registrar, run_until, tgt

P, S, F = tgt("127.0.0.10"), tgt("127.0.0.20"), tgt("127.0.0.15")
CFG = ("account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.2.address = 127.0.0.15\n"
       "account.1.auto_answer = 1\n")
HOSTILE = ["", "0", "-1", "abc", "1" * 3000, "4294967296", "\u00e9\u00e9", "\x7f", "9" * 25, "3600;x=\"", "<>", "*",
           "sip:", "<sip:@>", ";;;", "1 INVITE", "2147483648 REGISTER", "z9hG4bK", "Digest realm=\"x\", nonce=\"",
           "Digest nonce=\"n\", stale=true, algorithm=SHA-512"]
HEADERS = ["Expires", "Contact", "Min-Expires", "CSeq", "Call-ID", "To", "From", "Via", "WWW-Authenticate",
           "Proxy-Authenticate", "Record-Route", "Content-Length", "Max-Forwards", "Require", "Route"]


class Reply:
    transport, reliable, peer, local = "udp", False, ("127.0.0.15", 5060), ("127.0.0.1", 40000)

    def __init__(self):
        self.sent = []

    def send(self, m):
        self.sent.append(m)


def _seeds(ua, wire):
    """Valid messages for this phone right now: answers to what it sent, requests to it."""
    out = []
    for _, _, req in wire.sent[-6:]:
        if not req.is_request:
            continue
        for status in (100, 180, 200, 401, 407, 423, 486, 503):
            headers = [("Contact", f"{req.contacts[0]};expires=60")] if req.contacts else []
            if status in (401, 407):
                headers.append(("WWW-Authenticate" if status == 401 else "Proxy-Authenticate",
                                'Digest realm="pbx", nonce="abc", qop="auth"'))
            if status == 423:
                headers.append(("Min-Expires", "7200"))
            out.append(make_response(req, status, to_tag="t" if status > 100 else None, headers=headers))
    for n, method in enumerate(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "FOO"]):
        out.append(make_request(method, "sip:1001@127.0.0.1:40000",
                                from_=NameAddr("sip:x@pbx", params={"tag": f"f{n}"}), to=NameAddr("sip:1001@pbx"),
                                call_id=f"h-{n % 3}", cseq=(1, method), via=f"SIP/2.0/UDP 127.0.0.15:5060;branch=z9hG4bKh{n}",
                                contact=NameAddr("sip:x@127.0.0.15:5060"), body=b"v=0\r\n" if method == "INVITE" else b""))
    return out


def _mutate(rng, message) -> bytes:
    lines = message.to_bytes().split(b"\r\n")
    head_end = lines.index(b"")
    head, body = lines[:head_end], lines[head_end:]
    for _ in range(rng.randint(1, 3)):
        what = rng.randrange(4)
        if what == 0:  # a header's value replaced
            name = rng.choice(HEADERS)
            value = rng.choice(HOSTILE)
            head = [h for h in head if not h.lower().startswith(name.lower().encode() + b":")] or head
            head.append(f"{name}: {value}".encode("utf-8", "surrogateescape"))
        elif what == 1 and len(head) > 2:  # a header dropped
            head.pop(rng.randrange(1, len(head)))
        elif what == 2 and len(head) > 1:  # a header twice
            head.append(head[rng.randrange(1, len(head))])
        else:  # the status line's code / the request's method
            first = head[0].split(b" ")
            if first[0] == b"SIP/2.0":
                first[1] = rng.choice([b"199", b"299", b"600", b"999", b"100", b"202"])
            else:
                first[0] = rng.choice([b"INVITE", b"BYE", b"REGISTER", b"PRACK"])
            head[0] = b" ".join(first)
    return b"\r\n".join(head + body)


def test_mutated_messages_never_raise_and_the_phone_keeps_working():
    rng = random.Random(12)
    fed = refused = 0
    for round_ in range(40):
        clock, wire, ua = make_ua(CFG, {1: [P, S], 2: [F]})
        wire.responders = {"127.0.0.10": registrar(), "127.0.0.20": registrar(), "127.0.0.15": registrar()}
        ua.start()
        run_until(clock, 1)
        if round_ % 2:
            ua.place_call("2002")
        reply = Reply()
        for _ in range(100):
            seed = rng.choice(_seeds(ua, wire))
            try:
                msg = parse(_mutate(rng, seed))
            except SipParseError:
                refused += 1
                continue
            fed += 1
            ua.sip_received(msg, reply)  # an exception here fails the test
            run_until(clock, clock.seconds() + rng.choice([0, 0.5, 5, 40]))
        run_until(clock, clock.seconds() + 4000)  # and it still refreshes its registrations
        assert ua.registered(1, 1) or any(e.kind == "register_failed" for e in ua.events)
    assert fed > 800 and refused > 100, (fed, refused)
