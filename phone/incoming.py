"""Requests that reach the phone: incoming calls and what arrives inside a dialog (SPEC §6/§7).

:class:`Incoming` answers every request the transaction layer did not absorb as a
retransmission. A new INVITE is an incoming call whatever brought it: server 1, server 2 or
the secondary of a failover (SPEC §6: "calls arriving through either server are accepted");
the account is the one whose user name the Request-URI carries, else the first enabled one.

The bounds of SPEC §7 [interp] (issue 12: 5 000 unsolicited INVITEs in 45 s once grew the
phone from 49 to 96 MB):

- at most ``features.lines`` calls at once (default 2, either direction): an INVITE beyond
  them gets **486 Busy Here** and leaves nothing behind but a rate-limited log line;
- a call left ringing is ended after ``features.ring_timeout`` seconds (default 180) with
  **480 Temporarily Unavailable**;
- ended calls are let go of (:class:`phone.calls.CallControl`), and past the transaction
  layer's cap responses go out statelessly (:mod:`phone.transactions`).
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.build import make_response
from sipharness.sipcore.events import CallState, EventKind
from sipharness.sipcore.ids import new_tag
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.transaction import Send, TimedOut, TwoXXRetransmitter

from sipharness.phone import addressing
from sipharness.phone.call import Call, sdp
from sipharness.phone.calls import CallControl, CallHost

__all__ = ["Incoming"]


class Incoming:
    """New requests for one phone, answered with its :class:`phone.calls.CallControl`."""

    __slots__ = ("host", "calls")

    def __init__(self, host: CallHost, calls: CallControl):
        self.host = host
        self.calls = calls

    def request(self, req: Any, reply: Any) -> None:
        """A request that is not a retransmission of one being answered."""
        method = req.method
        tx = self.host.transactions
        if method == "ACK":
            self._ack(req)
            tx.retransmission(req, reply)  # the ACK of a non-2xx final: its transaction's
            return
        if tx.retransmission(req, reply):
            return
        call = self.calls.calls.get(req.call_id)
        if method == "INVITE" and req.to.tag is None:
            self._invite(req, reply)
        elif method == "CANCEL":
            tx.respond(req, reply, 200 if tx.table.match_cancelled(req) is not None else 481)
            if call is not None and call.direction == "in" and call.state == CallState.RINGING:
                self.calls.end_ringing(call, 487, "Request Terminated")
                self.calls.set_state(call, CallState.TERMINATED, detail="cancelled by the caller")
        elif method == "BYE":
            if call is None:
                tx.respond(req, reply, 481)
                return
            tx.respond(req, reply, 200)
            if call.retransmitter is not None:
                tx.driver.unwatch(call.retransmitter)
            if call.active:
                self.calls.set_state(call, CallState.TERMINATED, detail="BYE received")
        elif method in ("OPTIONS", "NOTIFY", "INFO", "UPDATE"):
            tx.respond(req, reply, 200)
        elif method == "INVITE":  # re-INVITE: accept with the same SDP
            tx.respond(req, reply, 200, body=sdp(self.host.local_host, 3))
        else:
            tx.respond(req, reply, 405)

    def _ack(self, req: Any) -> None:
        call = self.calls.calls.get(req.call_id)
        if call is not None and call.retransmitter is not None and call.retransmitter.matches_ack(req):
            self.host.transactions.driver.unwatch(call.retransmitter)
            call.retransmitter.ack_received(self.host.now())
            if call.state == CallState.RINGING:
                self.calls.set_state(call, CallState.ESTABLISHED, detail="ACK received")

    # ------------------------------------------------------------------ a new call
    def _invite(self, req: Any, reply: Any) -> None:
        host, tx = self.host, self.host.transactions
        x = self._account_for(req)
        if x is None:
            tx.respond(req, reply, 404)
            return
        if not req.contacts:  # RFC 3261 §8.1.1.8: an INVITE carries a Contact (the dialog's remote target)
            tx.respond(req, reply, 400, "Missing Contact")
            return
        known = self.calls.calls.get(req.call_id)
        if known is not None and known.active:  # RFC 3261 §8.2.2.2: a merged request (same call, new branch)
            tx.respond(req, reply, 482, "Loop Detected")
            return
        lines = host.config.lines
        busy = self.calls.active()
        if busy >= lines:  # SPEC §7 [interp]: beyond the phone's lines
            tx.respond(req, reply, 486, "Busy Here")
            host.decide(f"INVITE from {req.from_}: {busy} of {lines} lines in use → 486 Busy Here", account=x,
                        limit="486")
            return
        stx = tx.server_transaction(req, reply)
        if stx is None:  # too many requests in flight: no new call now
            tx.respond(req, reply, 486, "Busy Here")
            host.decide(f"INVITE from {req.from_}: too many transactions → 486", account=x, limit="486")
            return
        local = req.to.with_tag(new_tag())
        call = Call(call_id=req.call_id, account=x, direction="in", local=local, remote=req.from_)
        call.invite, call.server_tx, call.reply, call.flow = req, stx, reply, reply
        call.reply_local = getattr(reply, "local", (host.local_host, 0))
        call.server = self._server_for(x, reply)
        call.learn_dialog(req, uac=False)
        self.calls.add(call)
        tx.send(stx, reply, make_response(req, 100, "Trying"))
        tx.send(stx, reply, make_response(req, 180, "Ringing", to_tag=local.tag))
        host.emit(EventKind.INCOMING_CALL, account=x, server=call.server, call_id=call.call_id,
                  detail=f"from {req.from_}")
        self.calls.set_state(call, CallState.RINGING, detail="incoming, 180 sent")
        ring = host.config.ring_timeout
        call.ring_timer = host.call_later(ring, self._not_answered, call)
        if host.config.accounts[x].auto_answer:
            call.timer = host.call_later(host.config.auto_answer_delay, self.answer, call)

    def _not_answered(self, call: Call) -> None:
        call.ring_timer = None
        if call.state != CallState.RINGING:
            return
        self.calls.end_ringing(call, 480, "Temporarily Unavailable")
        self.calls.set_state(call, CallState.TERMINATED,
                             detail=f"not answered within {self.host.config.ring_timeout} s → 480 (SPEC §7)")

    def answer(self, call: Call | None = None) -> None:
        """Answer a ringing incoming call (the latest when None): 200 with SDP, resent until the
        ACK (RFC 3261 §13.3.1.4)."""
        call = call or self.calls.latest(direction="in")
        if call is None or call.direction != "in" or call.state != CallState.RINGING:
            return
        call.cancel_timers()
        acct = self.host.config.accounts[call.account]
        resp = make_response(call.invite, 200, "OK", to_tag=call.local.tag,
                             headers=[("Contact", str(NameAddr(addressing.contact_uri(acct, call.flow)))),
                                      ("Content-Type", "application/sdp"), ("User-Agent", addressing.USER_AGENT)],
                             body=sdp(call.reply_local[0], 2))
        self.host.transactions.end_with_2xx(call.server_tx, resp)  # the retransmitter below sends it
        rt = call.retransmitter = TwoXXRetransmitter(resp)

        def on_events(events: list) -> None:
            for ev in events:
                if isinstance(ev, Send):
                    call.reply.send(ev.message)
                elif isinstance(ev, TimedOut):
                    self.host.decide(f"call {call.call_id}: {ev.reason} → BYE", account=call.account)
                    self.calls.send_bye(call)

        self.host.transactions.watch(rt, on_events)
        on_events(rt.start(self.host.now()))
        self.host.transactions.driver.poke(rt)

    # ------------------------------------------------------------------ whose call is it
    def _account_for(self, req: Any) -> int | None:
        user = req.uri.user
        enabled = [x for x, acct in self.host.config.accounts.items() if acct.enable]
        for x in enabled:
            name = self.host.config.accounts[x].user_name
            if name and name == user:
                return x
        return enabled[0] if enabled else None

    def _server_for(self, x: int, reply: Any) -> int | None:
        """The server the INVITE came through: the one registered with its sender (else None)."""
        peer = getattr(reply, "peer", None)
        if peer is None:
            return None
        for y in (1, 2):
            srv = self.host.server(x, y)
            reg = srv.registration if srv is not None else None
            if reg is not None and reg.target is not None and (reg.target.host, reg.target.port) == tuple(peer)[:2]:
                return y
        return None
