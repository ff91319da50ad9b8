"""``FakeSipServer``: the Twisted adapter of a scriptable fake SIP server.

The decisions live elsewhere, sans-I/O: what to answer in :mod:`fakes.sip.pbx` (registrar,
proxy, UAS), which faults to play in :mod:`fakes.sip.script`, retransmissions in sipcore's
server transactions. This module only moves bytes: it listens on UDP/TCP/TLS, feeds each
message with its origin and the clock's time, carries out the actions, records every
message in and out (``fakes.record``), and plays the socket-level faults a script cannot:
going down as a blackhole (sockets open, everything dropped) or as refused (sockets
closed: the kernel answers ICMP port unreachable for UDP and RST for TCP), coming back on
the same port, flapping.

The sockets are sipcore's (:mod:`sipcore.transport`, the same adapters the bundled phone
uses): this server is the transports' *handler*. What a fake needs beyond a plain server is
all there: the raw bytes of garbage (``sip_bad_input``: answer 400 from the readable headers,
or record and drop them), the datagram as received (``Source.raw``, for the record),
``Listener.close_refusing`` / ``reopen`` to go down as *refused* (ICMP port unreachable for
UDP, RST for TCP/TLS) and come back on the same port; dropping a message after it has been
read is this module's decision. UDP replies go through the listener to the peer's address
(not through the ``Source`` of the request), so a response due after a down/up cycle leaves
from the reopened socket. Measured under SIPp load (5000 REGISTER/s, server CPU
per message, two runs each, same box): this module's former own socket code 169 and 172 µs,
sipcore's transports 167 and 182 µs: within the noise, so the one transport layer it is.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer

from sipharness.sipcore.message import SipParseError, make_response, new_tag, parse
from sipharness.sipcore.transaction import (Send, ServerTransaction, Terminated, TimerDriver, TransactionTable,
                                 TwoXXRetransmitter, server_key)
from sipharness.sipcore.transport import Listener, listen_tcp, listen_tls, listen_udp

from sipharness.fakes.record import Record, Recorder
from sipharness.fakes.sip.actions import Origin, Relay, Respond
from sipharness.fakes.sip.pbx import Pbx
from sipharness.fakes.sip.recent import RecentMap
from sipharness.fakes.sip.script import DELAY, DROP, RESPOND, Script

__all__ = ["FakeSipServer"]

Address = tuple[str, int]
_TRANSPORTS = ("udp", "tcp", "tls")
MAX_MESSAGE = 65535
_WINDOW = 64 * 0.5  # 64·T1: how long a client may retransmit (Timer B/F) and Timer J lasts
_MAX_RECENT = 200_000  # bound of the retransmission memories (requests seen, responses given)


# --------------------------------------------------------------------------- bad input


_HEADER_LINE = re.compile(r"^([A-Za-z\-]+)[ \t]*:[ \t]*(.*)$")
_NEEDED = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
           "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}


def _lenient_400(raw: bytes, what: str) -> bytes | None:
    """A 400 built from the readable headers of a request the parser refused; None if it cannot be formed."""
    text = raw.decode("latin-1")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    if len(head) < 2 or head[0].startswith("SIP/") or not re.match(r"^[A-Za-z]+ \S+ SIP/2\.0$", head[0]):
        return None
    found: dict[str, list[str]] = {}
    for line in head[1:]:
        m = _HEADER_LINE.match(line)
        if m and m.group(1).lower() in _NEEDED and all(32 <= ord(c) < 127 or c == "\t" for c in m.group(2)):
            found.setdefault(_NEEDED[m.group(1).lower()], []).append(m.group(2).strip())
    if any(k not in found or not found[k][0] for k in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    if not re.match(r"^\d{1,10}[ \t]+[A-Za-z]+$", found["CSeq"][0]) or not found["Via"][0].upper().startswith("SIP/2.0/"):
        return None
    to = found["To"][0]
    if ";tag=" not in to.replace(" ", "").lower():
        to += f";tag={new_tag()}"
    reason = re.sub(r"[^ -~]", "?", what)[:80]
    lines = ["SIP/2.0 400 Bad Request"] + [f"Via: {v}" for v in found["Via"]] + [
        f"From: {found['From'][0]}", f"To: {to}", f"Call-ID: {found['Call-ID'][0]}", f"CSeq: {found['CSeq'][0]}",
        f"Warning: 399 fake \"{reason.replace(chr(34), chr(39))}\"", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# Socket buffers of a UDP listener. The default (~200 KB) holds ~150 queued datagrams: under
# thousands of requests a second, a pause of a few tens of milliseconds (a garbage collection)
# overflowed it and the kernel dropped requests, which the client retransmitted 500 ms later.
# Real servers do the same (Kamailio probes up to its maxbuffer, SIPp has -buff_size).
UDP_BUFFER = 4 * 1024 * 1024


def _stateless(request: Any, origin: Origin) -> bool:
    """Whether ``request`` is answered without a ServerTransaction (non-INVITE over UDP)."""
    return origin.transport == "udp" and request.method not in ("INVITE", "ACK")


# --------------------------------------------------------------------------- the server


class FakeSipServer:
    """A scriptable fake SIP server (registrar, proxy, UAS or all three) on the injected clock.

    ``clock`` (IReactorTime, default ``reactor``) gives all times; ``reactor`` does the I/O
    (default: the global reactor); ``recorder`` is the shared :class:`fakes.record.Recorder`
    (one is made when None). ``users`` (name → password) turns digest on for REGISTER.
    """

    def __init__(self, name: str = "sip", *, role: str = "pbx", clock: Any = None, recorder: Recorder | None = None,
                 reactor: Any = None, host: str = "127.0.0.1", domain: str | None = None,
                 users: dict[str, str] | None = None, min_expires: int | None = None, answer_delay: float = 0.0,
                 unknown_user: str = "uas"):
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.name = name
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.recorder = recorder if recorder is not None else Recorder(self.clock)
        self.host = host
        self.addresses: dict[str, Address] = {}
        self.logic = Pbx(role, addresses=self.addresses, domain=domain, users=users, min_expires=min_expires,
                         answer_delay=answer_delay, unknown_user=unknown_user)
        self.script = Script()
        self.state = "up"  # "up" | "blackhole" | "refused"
        self._listeners: dict[str, Listener] = {}
        self._table = TransactionTable()
        self._driver = TimerDriver(self.clock)
        self._origins: dict[tuple, Origin] = {}  # live server transaction key → where its request came from
        # an INVITE answered 2xx here by a proxied callee: its origin, for the callee's 2xx
        # retransmissions, for 64·T1 after the transaction ended (then forgotten; bounded)
        self._answered_2xx = RecentMap(_WINDOW, _MAX_RECENT)
        self._twoxx: list[tuple[TwoXXRetransmitter, Origin]] = []
        self._counts: dict[str, int] = {}
        # SPEC §3 counts attempts: a retransmission is marked, not hidden. Both memories last
        # 64·T1 and are bounded (fakes.sip.recent), whatever a peer sends.
        self._seen = RecentMap(_WINDOW, _MAX_RECENT)  # (method, Call-ID, CSeq, branch) of requests seen
        self._answered = RecentMap(_WINDOW, _MAX_RECENT)  # UDP non-INVITE server key → last response bytes
        self._calls: list[Any] = []  # delayed calls to cancel at stop()
        self._flap: Any = None
        self.stopped = False

    # ------------------------------------------------------------------ public API
    @property
    def role(self) -> str:
        return self.logic.role

    @property
    def address(self) -> Address:
        """The first listener's (host, port)."""
        if not self.addresses:
            raise RuntimeError(f"fake SIP server {self.name!r} is not listening yet: call listen() first")
        return next(iter(self.addresses.values()))

    @property
    def records(self) -> list[Record]:
        return self.recorder.entries(lambda r: r.kind == "sip" and r.server == self.name)

    def listen(self, transport: str = "udp", port: int = 0, *, context: Any = None) -> "defer.Deferred[Address]":
        """Listen on ``transport`` ("udp", "tcp", "tls"; tls needs ``context``, an OpenSSL context factory)."""
        transport = transport.lower()
        if transport not in _TRANSPORTS:
            raise ValueError(f"listen(transport={transport!r}): expected one of {', '.join(_TRANSPORTS)}")
        if transport in self._listeners:
            raise ValueError(f"fake SIP server {self.name!r} already listens on {transport}")
        if transport == "tls" and context is None:
            raise ValueError("listen('tls') needs context= (a server context factory, e.g. from sipcore.tls)")
        common = dict(host=self.host, port=port, clock=self.clock, reactor=self.reactor, max_size=MAX_MESSAGE)
        if transport == "udp":
            listener = listen_udp(self, buffer_size=UDP_BUFFER, **common)
        elif transport == "tcp":
            listener = listen_tcp(self, **common)
        else:
            listener = listen_tls(self, context_factory=context, **common)
        self._listeners[transport] = listener
        self.addresses[transport] = listener.address
        if self.state == "refused":  # listening while down: stay refused
            listener.close_refusing()
        return defer.succeed(listener.address)

    def bindings(self, aor: str) -> list[tuple[str, float]]:
        """Live bindings of ``aor`` ("sip:alice@host", "alice@host" or "alice") as (contact, expires_at)."""
        return self.logic.registrar.bindings(aor, self.clock.seconds())

    def wait_for(self, method: str | None = None, direction: str | None = "in", status: int | None = None,
                 count: int = 1, timeout: float = 60.0, *, since: int | None = 0) -> "defer.Deferred[Record]":
        """Deferred of the ``count``-th record of this server matching; fails with WaitTimeout after
        ``timeout`` phone seconds."""
        def match(r: Record) -> bool:
            return (r.kind == "sip" and r.server == self.name and (method is None or r.method == method)
                    and (direction is None or r.direction == direction) and (status is None or r.status == status))
        what = (f"{self.name}: {count} × {direction or 'any'} {method or 'message'}"
                + (f" {status}" if status is not None else ""))
        return self.recorder.wait_for(match, timeout, count=count, since=since, what=what)

    def down(self, mode: str = "blackhole") -> "defer.Deferred[None]":
        """Go down: ``blackhole`` drops everything with sockets open; ``refused`` closes them (ICMP/RST)."""
        if mode not in ("blackhole", "refused"):
            raise ValueError(f"down(mode={mode!r}): expected 'blackhole' or 'refused'")
        if self.state == mode:
            return defer.succeed(None)
        ds = []
        if mode == "refused":
            for lst in self._listeners.values():
                ds.append(lst.close_refusing())  # UDP: ICMP port unreachable; TCP/TLS: RST, open ones reset
        elif self.state == "refused":
            for lst in self._listeners.values():
                lst.reopen()
        self.state = mode
        return defer.DeferredList(ds).addCallback(lambda _: None)

    def up(self) -> "defer.Deferred[None]":
        """Come up again on the same addresses (also stops a flap)."""
        self._stop_flap()
        return self._up()

    def flap(self, down_for: float, up_for: float, *, mode: str = "blackhole", cycles: int | None = None) -> None:
        """Go down now for ``down_for`` phone seconds, up for ``up_for``, repeat (``cycles`` times, or until up()/stop())."""
        if down_for <= 0 or up_for <= 0:
            raise ValueError(f"flap: down_for and up_for must be > 0 phone seconds, got {down_for!r}, {up_for!r}")
        self._stop_flap()
        state = {"left": cycles, "at": self.clock.seconds()}

        def schedule(after: float, fn: Any) -> None:
            # absolute times, so a big jump of the clock does not make the schedule drift
            state["at"] += after
            self._flap = self.clock.callLater(max(0.0, state["at"] - self.clock.seconds()), fn)

        def go_down() -> None:
            if state["left"] is not None:
                if state["left"] <= 0:
                    self._flap = None
                    return
                state["left"] -= 1
            self.down(mode)
            schedule(down_for, go_up)

        def go_up() -> None:
            self._up()
            schedule(up_for, go_down)

        go_down()

    def stop(self) -> "defer.Deferred[None]":
        """Close every socket and cancel every timer of this server."""
        self.stopped = True
        self._stop_flap()
        for c in self._calls:
            if c.active():
                c.cancel()
        self._calls = []
        for tx in list(self._table):
            self._driver.unwatch(tx)
        for r, _ in self._twoxx:
            self._driver.unwatch(r)
        self._twoxx = []
        ds = [lst.close_refusing() for lst in self._listeners.values() if lst.listening]  # open streams: RST
        return defer.DeferredList(ds).addCallback(lambda _: None)

    # ------------------------------------------------------------------ sockets
    def _up(self) -> "defer.Deferred[None]":
        if self.state == "refused":
            for lst in self._listeners.values():
                if not lst.listening:
                    lst.reopen()
        self.state = "up"
        return defer.succeed(None)

    def _stop_flap(self) -> None:
        if self._flap is not None and self._flap.active():
            self._flap.cancel()
        self._flap = None

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        self._calls = [c for c in self._calls if c.active()]
        self._calls.append(self.clock.callLater(delay, fn, *args))

    # ------------------------------------------------------------------ the transports' handler
    def sip_received(self, message: Any, source: Any) -> None:
        """sipcore.transport: a parsed message (``source.raw``: the datagram, UDP only)."""
        raw = source.raw or message.to_bytes()
        self._message(message, raw, Origin(source.transport, source.peer, source.local, source))

    def sip_bad_input(self, raw: bytes, error: Exception, source: Any) -> None:
        """sipcore.transport: bytes that do not parse. UDP: a 400 when one can be formed;
        TCP/TLS: recorded, and the transport closes the connection (framing is lost)."""
        origin = Origin(source.transport, source.peer, source.local, source)
        if source.transport != "udp":
            self._record("in", None, raw[:2048], origin, note=f"bad input: {error}; connection closed",
                         summary=f"bad input ({len(raw)} bytes)")
            return
        if self.state == "blackhole":
            self._record("in", None, raw, origin, note="dropped: down (blackhole)", summary=f"garbage ({len(raw)} bytes)")
            return
        reply = _lenient_400(raw, str(error))
        note = f"bad input: {error}" + ("" if reply else "; dropped (no response can be formed)")
        self._record("in", None, raw, origin, note=note, summary=f"bad input ({len(raw)} bytes)")
        if reply is not None:
            self._send(origin, reply)
            try:
                resp = parse(reply)
            except SipParseError:
                resp = None
            self._record("out", resp, reply, origin, summary="400 Bad Request")

    def sip_transport_error(self, peer: Address, transport: str, reason: str) -> None:
        """sipcore.transport: a send or a connection we opened failed (nothing to retry: a fake)."""

    def _send(self, origin: Origin, data: bytes) -> bool:
        """Send toward ``origin``: UDP through the listener (the socket open now, after a down/up);
        TCP/TLS on the connection the request came on (sipcore reconnects if it is gone)."""
        if origin.transport == "udp":
            lst = self._listeners.get("udp")
            return lst is not None and lst.send_raw(data, origin.peer)
        if origin.flow is None:
            return False
        origin.flow.send_raw(data)
        return True

    def _message(self, msg: Any, raw: bytes, origin: Origin) -> None:
        if self.stopped:
            return
        try:
            if msg.is_request:
                self._request(msg, raw, origin)
            else:
                if self.state == "blackhole":
                    self._record("in", msg, raw, origin, note="dropped: down (blackhole)")
                    return
                self._record("in", msg, raw, origin)
                self._run(self.logic.handle_response(msg, origin, self.clock.seconds()), None, origin)
        except SipParseError as e:  # a header the logic needed was unreadable
            self._record("in", None, raw, origin, note=f"bad input: {e}", summary=f"bad input ({len(raw)} bytes)")

    def _request(self, request: Any, raw: bytes, origin: Origin) -> None:
        method = request.method
        now = self.clock.seconds()
        via = request.top_via
        key = (method, request.call_id, request.cseq[0], via.branch)
        retx = self._seen.seen(key, now)
        if self.state == "blackhole":
            self._record("in", request, raw, origin, note="dropped: down (blackhole)", retransmission=retx, ids=key)
            return
        index = self._counts[method] = self._counts.get(method, 0) + 1
        decision = self.script.decide(method, index, now)
        self._record("in", request, raw, origin, note=decision.note, retransmission=retx, ids=key)
        if decision.action == DROP:
            return
        if decision.action == RESPOND:
            if method != "ACK":
                resp = make_response(request, decision.status, decision.reason, to_tag=new_tag(),
                                     headers=decision.headers)
                self._answer_scripted(request, resp, origin)
            return
        if decision.action == DELAY and decision.delay > 0:
            self._later(decision.delay, self._process, request, origin)
            return
        self._process(request, origin)

    def _answer_scripted(self, request: Any, response: Any, origin: Origin) -> None:
        if _stateless(request, origin):
            key = server_key(request)
            if not self._absorb(key, origin):
                self._answer_stateless(key, request, response, origin)
            return
        tx = self._table.match_request(request)
        if tx is None or tx.state == "terminated":
            tx = self._new_tx(request, origin)
        if tx.state in ("proceeding", "trying"):
            self._tx_events(tx, tx.respond(response, self.clock.seconds()))
        else:  # already answered: repeat the last response (a retransmission)
            self._tx_events(tx, tx.receive(request, self.clock.seconds()))

    def _new_tx(self, request: Any, origin: Origin) -> ServerTransaction:
        tx = ServerTransaction(request, reliable=origin.transport != "udp")
        self._table.add(tx)
        self._origins[tx.key] = origin
        self._driver.watch(tx, lambda events, tx=tx: self._tx_events(tx, events))
        return tx

    def _process(self, request: Any, origin: Origin) -> None:
        if self.stopped or self.state != "up":
            return
        now = self.clock.seconds()
        if request.method == "ACK":
            tx = self._table.match_request(request)
            if tx is not None:
                self._tx_events(tx, tx.receive(request, now))
                if tx.invite and tx.last_response is not None and tx.last_response.status >= 300:
                    return  # ACK of a non-2xx: hop by hop, ends here
            for r, o in list(self._twoxx):
                if r.matches_ack(request):
                    r.ack_received(now)
                    self._driver.unwatch(r)
                    self._twoxx.remove((r, o))
            self._run(self.logic.handle_request(request, origin, now), request, origin)
            return
        lean = _stateless(request, origin)
        if lean:
            key = server_key(request)
            if self._absorb(key, origin):
                return
        tx = self._table.match_request(request)
        if tx is not None and tx.state != "terminated":
            self._tx_events(tx, tx.receive(request, now))
            return
        actions = self.logic.handle_request(request, origin, now)
        if lean and all(type(a) is Respond and a.after <= 0 and a.request is None for a in actions):
            for a in actions:
                self._answer_stateless(key, request, a.response, origin)
            return
        self._new_tx(request, origin)
        self._run(actions, request, origin)

    # RFC 3261 §17.2.2 without a transaction object: a non-INVITE over UDP answered at once is
    # "completed" from its first response on; for Timer J (64·T1) a retransmission gets the last
    # response again from ``_answered``. A request the logic answers later (a delay, a relayed
    # BYE) still gets a full ServerTransaction. Why: see fakes.sip.recent.
    def _absorb(self, key: tuple, origin: Origin) -> bool:
        data = self._answered.get(key, self.clock.seconds())
        if data is None:
            return False
        self._send(origin, data)
        self._record("out", parse(data), data, origin, retransmission=True)  # rare: parsed for the record only
        return True

    def _answer_stateless(self, key: tuple, request: Any, response: Any, origin: Origin) -> None:
        data = response.to_bytes()
        self._answered.put(key, data, self.clock.seconds())
        self._send(origin, data)
        self._record("out", response, data, origin,
                     ids=(request.method, request.call_id, request.cseq[0], request.top_via.branch))

    # ------------------------------------------------------------------ acting
    def _run(self, actions: list, request: Any, origin: Origin) -> None:
        for a in actions:
            if isinstance(a, Respond):
                req = a.request if a.request is not None else request
                if a.after > 0:
                    self._later(a.after, self._respond, req, a.response)
                else:
                    self._respond(req, a.response)
            elif isinstance(a, Relay):
                self._relay(a)

    def _respond(self, request: Any, response: Any) -> None:
        if self.stopped or self.state != "up":
            return
        now = self.clock.seconds()
        tx = self._table.match_request(request)
        if tx is None or tx.state not in ("proceeding", "trying"):
            if (tx is None or tx.state == "terminated") and request.method == "INVITE" and 200 <= response.status < 300:
                origin = self._answered_2xx.get(server_key(request), now)
                if origin is not None:  # a 2xx retransmission relayed by the proxy: stateless
                    self._transmit(response, origin, retransmission=True)
            return  # e.g. the 200 of a call cancelled meanwhile
        local_2xx = (tx.invite and 200 <= response.status < 300 and not self.logic.proxy.knows(request))
        origin = self._origins.get(tx.key)  # (a 2xx ends the transaction: its origin moves on)
        self._tx_events(tx, tx.respond(response, now))
        if local_2xx and not tx.reliable and origin is not None:
            r = TwoXXRetransmitter(response)
            r.start(now)  # its first send is the one the transaction just made
            self._twoxx.append((r, origin))
            self._driver.watch(r, lambda events, r=r, o=origin: self._twoxx_events(r, o, events))

    def _twoxx_events(self, r: TwoXXRetransmitter, origin: Origin, events: list) -> None:
        for ev in events:
            if isinstance(ev, Send) and self.state == "up":
                self._transmit(ev.message, origin, retransmission=ev.retransmission)
            elif isinstance(ev, Terminated) and (r, origin) in self._twoxx:
                self._twoxx.remove((r, origin))

    def _tx_events(self, tx: ServerTransaction, events: list) -> None:
        origin = self._origins.get(tx.key)
        for ev in events:
            if isinstance(ev, Send):
                if origin is not None and self.state == "up":
                    self._transmit(ev.message, origin, retransmission=ev.retransmission)
            elif isinstance(ev, Terminated):
                self._table.remove(tx)
                self._driver.unwatch(tx)
                origin_ = self._origins.pop(tx.key, None)
                if tx.invite and tx.last_response is not None and tx.last_response.status < 300 and origin_:
                    self._answered_2xx.put(tx.key, origin_, self.clock.seconds())
        if tx.state != "terminated":
            self._driver.poke(tx)

    def _transmit(self, message: Any, origin: Origin, *, retransmission: bool = False) -> None:
        data = message.to_bytes()
        if self._send(origin, data):
            self._record("out", message, data, origin, retransmission=retransmission)

    def _relay(self, a: Relay) -> None:
        if self.state != "up":
            return
        data = a.message.to_bytes()
        lst = self._listeners.get(a.transport)
        if a.transport != "udp" and a.flow is not None:
            a.flow.send_raw(data)  # the connection the callee registered over (or a new one to it)
            local = a.flow.local
        elif lst is not None and lst.send_raw(data, a.address):
            local = lst.address
        else:
            return
        self._record("out", a.message, data, Origin(a.transport, a.address, local, a.flow))

    # ------------------------------------------------------------------ recording
    def _record(self, direction: str, message: Any, raw: bytes, origin: Origin, *, note: str = "",
                retransmission: bool = False, summary: str | None = None, ids: tuple | None = None) -> Record:
        """Append what was seen. ``ids``: (method, Call-ID, CSeq number, branch) when the caller
        has them already (a request's, for its own response): a response we built has no parsed
        headers yet, and parsing them back only to record them was a third of a REGISTER's cost."""
        method = status = call_id = cseq = branch = None
        if message is not None:
            try:
                if message.is_request:
                    method = message.method
                    summary = summary or _request_summary(message, raw)
                else:
                    status = message.status
                    summary = summary or f"{status} {message.reason}"
                if ids is None:
                    c = message.cseq
                    ids = (c[1], message.call_id, c[0], message.top_via.branch)
                method, call_id, cseq, branch = ids
            except (SipParseError, ValueError, IndexError):
                pass
        rec = Record(time=self.clock.seconds(), kind="sip", direction=direction, server=self.name,
                     transport=origin.transport, local=origin.local, peer=origin.peer,
                     summary=summary or "", method=method, status=status, retransmission=retransmission,
                     call_id=call_id, cseq=cseq, branch=branch, message=message, raw=bytes(raw), note=note)
        self.recorder.append(rec)
        return rec


def _request_summary(request: Any, raw: bytes) -> str:
    """"METHOD Request-URI" as the request line had it (the parser accepted it as exactly
    METHOD SP URI SP SIP/2.0), without turning the parsed URI back into text."""
    start = 0
    while raw.startswith(b"\r\n", start):
        start += 2
    end = raw.find(b"\r\n", start)
    line = raw[start:end].decode("utf-8", "surrogateescape") if end > 0 else ""
    head = line.rsplit(" ", 1)[0]
    if not head.startswith(request.method + " "):  # raw is not this request's (a copy we changed)
        return f"{request.method} {request.uri}"
    return head
