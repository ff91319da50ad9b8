"""The fake registrar (a PBX: registrar, proxy, UAS) as a fuzz target (bench/fuzz.py), in process.

Datagrams go where ``sipcore.transport`` sends them: ``parse``, then the fake's transport handler
(``sip_received`` / ``sip_bad_input``), whose UDP listener is an in-memory one. Users alice, bob
and carol must authenticate. Seeds are refreshed every 500 inputs by real challenge rounds, so
some carry credentials whose nonce count is still unused (a mutant that changes the To user,
the digest uri or the Request-URI may then be accepted once, wrongly). Wrong answers are judged
here with hashlib, not with sipcore.digest: a 2xx (not a retransmission), a changed binding or a
forwarded INVITE for a request without valid credentials of its own identity; a 2xx to a
request the parser refuses or to an unknown URI scheme; a message the server sends that does
not parse back.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from twisted.internet import task

from fuzz_core import Target, streaming_recorder, torture  # bench/ is on sys.path (bench/fuzz.py puts it there)
from sipharness.sipcore.parser import is_keepalive, parse
from sipharness.sipcore.uri import SipParseError

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
_REALM = "pbx.test"


class _Sent:
    """The fake's UDP listener, in memory: what it sends, to whom."""

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.listening = True
        self.out: list[tuple[bytes, tuple[str, int]]] = []

    def send_raw(self, data: bytes, peer: tuple[str, int]) -> bool:
        self.out.append((bytes(data), peer))
        return True

    def close_refusing(self) -> None:
        self.listening = False


class RegistrarTarget(Target):
    name = "registrar"
    component = "fakes/sip"

    LOCAL = ("127.0.0.10", 5060)
    PEER = ("127.0.0.1", 5062)
    CALLEE = ("127.0.0.1", 5070)

    def __init__(self, rng: random.Random, report: Report):
        super().__init__(rng, report)
        from sipharness.fakes.sip.server import FakeSipServer

        self.clock = task.Clock()
        self.server = FakeSipServer("fuzz", clock=self.clock, recorder=streaming_recorder(self.clock),
                                    reactor=self.clock, host=self.LOCAL[0], domain=_REALM, users=USERS)
        self.wire = _Sent(self.LOCAL)
        self.server._listeners["udp"] = self.wire  # the adapter's own UDP listener, in memory
        self.server.addresses["udp"] = self.LOCAL
        # the oracle's own memory, bounded (and small: the RSS measured is the target's): the last
        # nonces challenged with (the server keeps at most 10 000) and the (branch, method) answered
        # 2xx within the server's retransmission window (a retransmission gets the same answer)
        self.issued: dict[str, None] = {}
        self.answered: dict[tuple, None] = {}
        self.last_nc: dict[str, int] = {}
        self.n = 0
        self.static = torture()
        self._refresh_seeds()

    # sending, as sipcore.transport does with a datagram
    def deliver(self, data: bytes, peer: tuple[str, int] | None = None) -> list[bytes]:
        """Feed one datagram; check what the server sent in answer (not what its timers sent
        afterwards, which answers earlier inputs); return that."""
        from sipharness.sipcore.transport import Source

        peer = peer or self.PEER
        self.wire.out = []
        req = None
        try:
            msg = parse(data, max_size=65535) if not is_keepalive(data) else None
        except SipParseError as e:
            msg, error = None, e
        else:
            error = None
        if msg is not None and msg.is_request:
            req = msg
        user = _to_user(req) if req is not None and req.method == "REGISTER" else None
        before = self.server.logic.registrar.bindings(user, self.clock.seconds()) if user else None
        source = Source("udp", self.LOCAL, peer, lambda b: self.wire.send_raw(b, peer), data)
        if error is not None:
            self.server.sip_bad_input(data, error, source)
        elif msg is not None:
            self.server.sip_received(msg, source)
        out = [d for d, _ in self.wire.out]
        for d in out:
            self._note_challenges(d)
        self._check(data, req, error, out, user, before)
        self.wire.out = []
        self.clock.advance(0.002)
        return out

    def _note_challenges(self, data: bytes) -> None:
        for m in re.finditer(rb'(?:WWW|Proxy)-Authenticate: Digest [^\r]*?nonce="([0-9a-f]+)"', data):
            _bounded_put(self.issued, m.group(1).decode(), 12_000)  # > the server's 10 000
        if len(self.last_nc) > 12_000:
            self.last_nc.clear()  # nonces counted by then are long forgotten by the server too

    def _request(self, method: str, user: str, ruri: str, *, to: str | None = None, cseq: int = 1,
                 call_id: str | None = None, auth: str | None = None, header: str = "Authorization",
                 extra: str = "", contact_port: int = 5062) -> bytes:
        call_id = call_id or f"{self.rng.getrandbits(48):x}@fuzz"
        to = to or (user if method == "REGISTER" else "dave")
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.PEER[0]}:{contact_port};branch=z9hG4bK{self.rng.getrandbits(40):x};rport",
                 "Max-Forwards: 70", f"From: <sip:{user}@{_REALM}>;tag={self.rng.getrandbits(24):x}",
                 f"To: <sip:{to}@{_REALM}>", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{user}@{self.PEER[0]}:{contact_port}>"]
        if method == "REGISTER":
            lines.append("Expires: 600")
        if auth:
            lines.append(f"{header}: {auth}")
        body = b""
        if method == "INVITE":
            body = (f"v=0\r\no=- 1 1 IN IP4 {self.PEER[0]}\r\ns=-\r\nc=IN IP4 {self.PEER[0]}\r\nt=0 0\r\n"
                    "m=audio 4000 RTP/AVP 0\r\n").encode()
            lines.append("Content-Type: application/sdp")
        text = "\r\n".join(lines) + "\r\n" + extra + f"Content-Length: {len(body)}\r\n\r\n"
        return text.encode() + body

    def _authenticated(self, method: str, user: str, ruri: str, **kw: Any) -> bytes | None:
        """A request with valid credentials of ``user``, by a real challenge round (a live seed)."""
        from sipharness.sipcore.digest import Challenge, authorize

        call_id = f"{self.rng.getrandbits(48):x}@fuzz"
        first = self.deliver(self._request(method, user, ruri, call_id=call_id, **kw))
        challenge = [parse(d) for d in first if d.startswith(b"SIP/2.0 40")]
        if not challenge:
            return None
        resp = challenge[0]
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        values = resp.headers.lines(header)
        ch = Challenge.parse(self.rng.choice(values))  # SHA-256 or MD5
        value = authorize(ch, method=method, uri=ruri, username=user, password=USERS[user],
                          nc=1 + self.rng.randrange(3))
        return self._request(method, user, ruri, call_id=call_id, cseq=2, auth=value,
                             header="Authorization" if resp.status == 401 else "Proxy-Authorization", **kw)

    def _refresh_seeds(self) -> None:
        """Valid messages of every kind the server handles, with fresh nonces (called now and then)."""
        seeds = list(self.static)
        host = f"{self.LOCAL[0]}:{self.LOCAL[1]}"
        seeds.append(self._request("REGISTER", "alice", f"sip:{host}"))
        for user in ("alice", "bob"):
            reg = self._authenticated("REGISTER", user, f"sip:{host}",
                                      contact_port=self.CALLEE[1] if user == "bob" else 5062)
            if reg:
                seeds.append(reg)
                self.deliver(reg)  # bob stays registered: INVITEs to him are proxied
        spare = self._authenticated("REGISTER", "alice", f"sip:{host}", contact_port=5063)
        if spare:
            seeds += [spare] * 4  # not sent: its nonce count is unused (mutants may change To, uri=...)
        inv = self._authenticated("INVITE", "alice", f"sip:dave@{host}")
        if inv:
            seeds.append(inv)
        proxied = self._authenticated("INVITE", "alice", f"sip:bob@{host}", to="bob")
        if proxied:
            seeds.append(proxied)
            out = self.deliver(proxied)
            fwd = [d for d in out if d.startswith(b"INVITE ")]
            if fwd:  # the callee's answers to the forwarded INVITE: the proxy's response path
                req = parse(fwd[0])
                from sipharness.sipcore.build import make_response
                for status in (180, 200, 486):
                    seeds.append(make_response(req, status, to_tag="callee").to_bytes())
        for method in ("OPTIONS", "BYE", "CANCEL", "MESSAGE", "ACK", "SUBSCRIBE"):
            seeds.append(self._request(method, "alice", f"sip:dave@{host}"))
        seeds.append(self._request("REGISTER", "carol", f"sip:{host}", extra="Require: foo\r\n"))
        self.seeds = seeds

    def feed(self, data: bytes) -> None:
        self.n += 1
        if self.n % 500 == 0:  # fresh nonces: mutants of an unused credential may be accepted once
            self._refresh_seeds()
        self.deliver(data, self.CALLEE if data.startswith(b"SIP/2.0") else self.PEER)

    def _check(self, data: bytes, req: Any, error: Exception | None, out: list[bytes], user: str | None,
               before: list | None) -> None:
        """Wrong answers: a 2xx, a binding or a forwarded INVITE for a request the server had to refuse."""
        answers = []
        for d in out:
            if d.startswith(b"SIP/2.0 2") or d.startswith(b"INVITE "):
                try:
                    answers.append(parse(d))
                except SipParseError:
                    self.wrong("the server sent a message it cannot parse back", data, repr(d[:200]))
        if error is not None:
            if any(not m.is_request for m in answers):
                self.wrong("2xx to a request the parser refuses", data, str(error))
            return
        if req is None:
            return
        mine = [m for m in answers if m.call_id == req.call_id]
        replies = [m for m in mine if not m.is_request and m.cseq == req.cseq]
        forwarded = [m for m in mine if m.is_request and req.method == "INVITE"]
        branch = req.top_via.branch
        fresh = [m for m in replies if (branch, req.method) not in self.answered]
        for _ in replies:
            self._remember_answered((branch, req.method))
        if fresh and req.uri.scheme not in ("sip", "sips", "tel"):
            self.wrong("2xx to a Request-URI scheme nobody here supports (RFC 4475: 416)", data)
        guarded = req.method == "REGISTER" or (req.method == "INVITE" and not req.to.tag)
        if not guarded:
            return
        changed = user is not None and self.server.logic.registrar.bindings(user, self.clock.seconds()) != before
        if not (fresh or forwarded or changed):
            return
        why = self._bad_digest(req)
        if why is None:
            return
        if changed:
            self.wrong("bindings changed by a REGISTER with a bad digest", data, why)
        elif fresh:
            self.wrong(f"2xx to a {req.method} with a bad digest", data, why)
        else:
            self.wrong("INVITE forwarded with a bad digest", data, why)

    def _remember_answered(self, key: tuple) -> None:
        _bounded_put(self.answered, key, 5_000)  # ~200 per 32 s window

    def _bad_digest(self, req: Any) -> str | None:
        """Why ``req`` carries no valid credentials of its identity (To user for REGISTER, From
        user for INVITE), computed here with hashlib, not with sipcore.digest; None when one of
        its credential values is valid (a server may skip a garbled one before it)."""
        values = req.headers.lines("Authorization")
        if req.method != "REGISTER":
            values += req.headers.lines("Proxy-Authorization")
        identity = (req.to if req.method == "REGISTER" else req.from_).uri.user
        reasons = []
        for value in values:
            p = dict((k.lower(), v1 if v1 else v2) for k, v1, v2 in
                     re.findall(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))', value))
            if p.get("realm") != _REALM:
                continue
            why = self._digest_problem(p, req, identity)
            if why is None:
                nonce = p.get("nonce", "")
                self.last_nc[nonce] = int(p["nc"], 16) if p.get("nc") else 0
                return None
            reasons.append(why)
        return reasons[0] if reasons else "no credentials for our realm"

    def _digest_problem(self, p: dict[str, str], req: Any, identity: str | None) -> str | None:
        user = p.get("username", "")
        if user != identity:
            return f"digest user {user!r} is not {identity!r}"
        if user not in USERS:
            return f"unknown user {user!r}"
        algo = p.get("algorithm", "MD5").upper()
        h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}.get(algo)
        if h is None:
            return f"algorithm {algo}"

        def H(text: str) -> str:
            return h(text.encode("utf-8", "surrogateescape")).hexdigest()

        ha1 = H(f"{user}:{_REALM}:{USERS[user]}")
        ha2 = H(f"{req.method}:{p.get('uri', '')}")
        if p.get("qop"):
            expect = H(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p['qop']}:{ha2}")
        else:
            expect = H(f"{ha1}:{p.get('nonce')}:{ha2}")
        if expect != p.get("response", "").lower():
            return "wrong response"
        from sipharness.sipcore.uri import SipUri
        try:
            same = SipUri.parse(p.get("uri", "")) == req.uri
        except SipParseError:
            same = False
        if not same:
            return f"digest uri {p.get('uri')!r} is not the Request-URI {str(req.uri)!r}"
        nonce = p.get("nonce", "")
        if nonce not in self.issued:
            return "nonce never issued"
        nc = int(p["nc"], 16) if re.fullmatch(r"[0-9a-fA-F]{8}", p.get("nc", "")) else -1
        if nc <= self.last_nc.get(nonce, 0):
            return f"nonce count {nc} replayed"
        return None

    def health(self) -> str | None:
        host = f"{self.LOCAL[0]}:{self.LOCAL[1]}"
        reg = self._authenticated("REGISTER", "carol", f"sip:{host}", contact_port=5099)
        if reg is None:
            return "REGISTER got no challenge"
        out = self.deliver(reg)
        statuses = [d.split(b" ", 2)[1].decode("latin-1") for d in out if d.startswith(b"SIP/2.0")]
        if "200" not in statuses:
            return f"an authenticated REGISTER got {statuses or 'nothing'}"
        return None

    def sizes(self) -> dict[str, int]:
        logic = self.server.logic
        auth = logic.registrar.auth
        return {"bindings": getattr(logic.registrar, "binding_count", -1), "proxy legs": len(logic.proxy._legs),
                "proxy calls": len(logic.proxy.call_ids), "uas calls": len(logic.uas._pending),
                "transactions": self.server.core.sizes()["transactions"],
                "nonces": len(auth._digest._nonces) if auth is not None else 0}


def _bounded_put(table: dict, key: Any, limit: int) -> None:
    """Remember ``key``; past ``limit`` keys the oldest half is forgotten."""
    table[key] = None
    if len(table) > limit:
        for old in list(table)[:limit // 2]:
            del table[old]


def _to_user(req: Any) -> str | None:
    try:
        return req.to.uri.user
    except (SipParseError, AttributeError):
        return None


