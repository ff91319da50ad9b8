"""The bundled phone as a fuzz target (bench/fuzz.py): hostile answers and unsolicited requests.

A ``phone.agent.UserAgent`` behind an in-memory wire on a ``task.Clock`` (expires 30 s, so a
REGISTER is in flight often); seeds are rebuilt from the phone's latest REGISTER and INVITE
(matching branch, Call-ID and CSeq, so mutants reach the registration and call logic), plus
unsolicited INVITE, BYE, CANCEL, OPTIONS... and the RFC 4475 messages. Datagrams go where
``sipcore.transport`` and ``phone.wire`` send them (``parse``, then ``UserAgent.sip_received``).
Wrong answers (SPEC §4, §7), judged from the bytes fed: "registered" on a response that is no
registration (not a 2xx to the REGISTER sent, unparsable, granting 0 s or not our Contact);
more incoming calls at once than the phone's lines.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import task

from fuzz_core import Target, torture  # bench/ is on sys.path (bench/fuzz.py puts it there)
from sipharness.sipcore.parser import is_keepalive, parse
from sipharness.sipcore.uri import SipParseError

_REALM = "pbx.test"

class _PhoneFlow:
    def __init__(self, target: Any, sent: list):
        self.target = target
        self.transport = target.transport
        self.reliable = False
        self.local = ("127.0.0.1", 40000)
        self.peer = (target.host, target.port)
        self._sent = sent

    def send(self, message: Any) -> None:
        self._sent.append(message)


class _PhoneWire:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.flows: dict[tuple, _PhoneFlow] = {}

    def flow(self, target: Any) -> _PhoneFlow:
        key = (target.host, target.port, target.transport)
        if key not in self.flows:
            self.flows[key] = _PhoneFlow(target, self.sent)
        return self.flows[key]


class PhoneTarget(Target):
    """Hostile responses to the phone's REGISTER and INVITE, and unsolicited requests."""

    name = "phone"
    component = "phone"
    SERVER = ("127.0.0.10", 5060)
    LINES = 2  # SPEC §7: the bundled phone takes 2 calls at once

    def __init__(self, rng: random.Random, report: Report):
        super().__init__(rng, report)
        from sipharness.phone.agent import UserAgent
        from sipharness.phone.config import loads_config
        from sipharness.phone.dnsrecords import Target as PhoneTargetAddr

        self.clock = task.Clock()
        self.wire = _PhoneWire()
        cfg = loads_config("#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 1001\n"
                           "account.1.password = secret\naccount.1.sip_server.1.address = 127.0.0.10\n"
                           # the shortest legal expiry: a REGISTER is in flight often, for hostile answers
                           "account.1.sip_server.1.expires = 30\naccount.1.reg_fail_retry_interval = 5\n")
        target = PhoneTargetAddr(self.SERVER[0], self.SERVER[1], "udp")
        self.ua = UserAgent(cfg, clock=self.clock, wire=self.wire, resolve=lambda acct, y: [target])
        self.flow = self.wire.flow(target)
        self.replies: list[Any] = []
        self.static = torture()
        self.n = 0
        self._requests_seen = 0
        self._ringing = 0
        self.ua.start()
        self.clock.advance(0.01)
        self._refresh_seeds()

    def _last(self, method: str) -> Any | None:
        for m in reversed(self.wire.sent[-50:]):
            if m.is_request and m.method == method:
                return m
        return None

    def _refresh_seeds(self) -> None:
        from sipharness.sipcore.build import make_response
        from sipharness.sipcore.digest import make_challenge

        seeds = list(self.static)
        reg = self._last("REGISTER")
        if reg is not None:
            contact = str(reg.contacts[0].uri) if reg.contacts else "sip:1001@127.0.0.1:40000"
            for status, headers in [
                (200, [("Contact", f"<{contact}>;expires=3600")]), (200, [("Contact", f"<{contact}>;expires=0")]),
                (200, [("Expires", "abc")]), (200, [("Contact", f"<{contact}>;expires=4294967296")]),
                (200, []), (401, [("WWW-Authenticate", make_challenge(_REALM, algorithm="SHA-256"))]),
                (401, [("WWW-Authenticate", make_challenge(_REALM))]),
                (423, [("Min-Expires", "4294967296")]), (423, [("Min-Expires", "7200")]), (503, []), (100, [])]:
                seeds.append(make_response(reg, status, to_tag="srv", headers=headers).to_bytes())
        inv = self._last("INVITE")
        if inv is not None:
            sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nt=0 0\r\n"
                   b"m=audio 4000 RTP/AVP 0\r\n")
            contact = [("Contact", "<sip:uas@127.0.0.10:5060>")]
            for status in (100, 180, 183, 486, 407):
                hdr = contact + ([("Proxy-Authenticate", make_challenge(_REALM))] if status == 407 else [])
                seeds.append(make_response(inv, status, to_tag="uas", headers=hdr).to_bytes())
            seeds.append(make_response(inv, 200, to_tag="uas", headers=contact + [("Content-Type", "application/sdp")],
                                       body=sdp).to_bytes())
        # unsolicited requests to the phone (through its server)
        for method in ("INVITE", "OPTIONS", "BYE", "CANCEL", "MESSAGE", "NOTIFY", "ACK", "INFO"):
            seeds.append(self._request(method))
        self.seeds = seeds

    def _request(self, method: str) -> bytes:
        body = b""
        extra = ""
        if method == "INVITE":
            body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            extra = "Content-Type: application/sdp\r\n"
        call_id = f"{self.rng.getrandbits(40):x}@pbx"
        text = (f"{method} sip:1001@127.0.0.1:40000 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bK{self.rng.getrandbits(40):x}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:carol@{_REALM}>;tag=c{self.rng.getrandbits(20):x}\r\n"
                f"To: <sip:1001@{_REALM}>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
                f"Contact: <sip:carol@127.0.0.10:5060>\r\n{extra}Content-Length: {len(body)}\r\n\r\n")
        return text.encode() + body

    def deliver(self, data: bytes) -> list[Any]:
        """What sipcore.transport + phone.wire do with a datagram from the server."""
        from sipharness.sipcore.transport import Source

        self.replies = []
        if is_keepalive(data):
            return []
        try:
            msg = parse(data, max_size=65535)
        except SipParseError:
            return []  # phone.wire: "ignored bad input" (a decision in the log, nothing else)
        source = Source("udp", self.flow.local, self.SERVER, lambda b: self.replies.append(b), data)
        self.ua.sip_received(msg, source)
        return self.replies

    def feed(self, data: bytes) -> None:
        self.n += 1
        sent = sum(1 for m in self.wire.sent if m.is_request and m.method in ("REGISTER", "INVITE"))
        if sent != self._requests_seen or self.n % 1000 == 0:  # answers to what the phone sent last
            self._requests_seen = sent
            self._refresh_seeds()
        if self.n % 997 == 0 and len(self.ua.calls) < 50:
            self.ua.place_call(f"sip:carol@{_REALM}")  # an INVITE in flight, for hostile answers to it
        before = len(self.ua.events)
        self.deliver(data)
        self._check_events(data, before)
        before = len(self.ua.events)
        self.clock.advance(0.05)  # the phone's timers run too (retransmissions, refreshes, ringing limits)
        self._check_calls(data)
        if len(self.wire.sent) > 1000:
            del self.wire.sent[:-100]
            self._requests_seen = sum(1 for m in self.wire.sent if m.is_request and m.method in ("REGISTER", "INVITE"))

    def _check_events(self, data: bytes, before: int) -> None:
        events = list(self.ua.events)[before:] if len(self.ua.events) > before else []
        for ev in events:
            if ev.kind != "registered":
                continue
            why = self._not_a_registration(data)
            if why:
                self.wrong("registered on a 2xx that is no registration (SPEC §4)", data, why)

    def _not_a_registration(self, data: bytes) -> str | None:
        """SPEC §4, checked here from the bytes fed: why this input may not make the phone registered."""
        try:
            resp = parse(data)
        except SipParseError as e:
            return f"unparsable: {e}"
        if resp.is_request or not 200 <= resp.status < 300:
            return "not a 2xx"
        try:
            method = resp.cseq[1]
            reqs = [m for m in self.wire.sent[-50:] if m.is_request and m.method == "REGISTER"]
            match = [r for r in reqs if r.call_id == resp.call_id and r.cseq == resp.cseq
                     and r.top_via.branch == resp.top_via.branch]
        except SipParseError as e:
            return f"unparsable header: {e}"
        if method != "REGISTER" or not match:
            return "Call-ID, CSeq or branch does not match the REGISTER sent"
        ours = match[-1].contacts[0].uri if match[-1].contacts else None
        try:
            header = resp.expires
            for c in resp.contacts:
                if ours is not None and c.uri == ours:
                    granted = c.expires if c.expires is not None else header
                    if granted is None:
                        return None  # SPEC §4 [interp]: our Contact bound, no expiry named → the time asked
                    return None if granted > 0 else f"grants {granted} s"
        except SipParseError as e:
            return f"unparsable expiry: {e}"
        return "our Contact is not in the 2xx"

    def _check_calls(self, data: bytes) -> None:
        """SPEC §7: beyond the lines a call gets 486; counted when an input adds one too many."""
        ringing = sum(1 for c in self.ua.calls.values() if getattr(c, "direction", "") == "in"
                      and getattr(c, "state", "") in ("ringing", "established"))
        if ringing > self.LINES and ringing > self._ringing:
            self.wrong(f"more than {self.LINES} incoming calls at once (SPEC §7: 486 beyond the lines)", data,
                       f"{ringing} calls")
        self._ringing = ringing

    def health(self) -> str | None:
        replies = self.deliver(self._request("OPTIONS"))
        if not any(r.startswith(b"SIP/2.0 200") for r in replies):
            return f"OPTIONS got {[r[:20] for r in replies] or 'nothing'}"
        return None

    def sizes(self) -> dict[str, int]:
        return {"calls": len(self.ua.calls), "transactions": len(self.ua.transactions),
                "events": len(self.ua.events)}


