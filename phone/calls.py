"""Call control of the bundled phone: placing, answering and ending calls (SPEC §7).

:class:`CallControl` owns the phone's calls (:class:`phone.call.Call`, by Call-ID). Outgoing
calls go out here: a new INVITE tries the servers in the order SPEC §6's controller gives
(:meth:`CallHost.request_order`), each with failover down its targets (SPEC §3/§5, through a
:class:`phone.sender.ServerRequest`); an INVITE no target of server 1 answered is reported
(:meth:`CallHost.invite_failed`) and goes on to server 2. Inside a dialog (ACK for a 2xx, BYE,
CANCEL) requests follow the dialog's route, never a failover [RFC]. The user's hang-up of any
call is here too (BYE, CANCEL, or 486 to a ringing incoming call). Incoming requests are
:mod:`phone.incoming`'s; both meet here for the state changes and the bounds:

- Ended calls are let go of: the last :data:`KEEP_ENDED` stay findable by Call-ID (late
  retransmissions, the DUT drivers asking after an event), older ones are dropped, so a
  flood of calls cannot grow the phone (issue 12, SPEC §7).
- Every state change is a "call_state" event with a :class:`sipcore.events.CallState`.

It knows the user agent only through :class:`CallHost`, a declared Protocol.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet import defer

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.events import CallState, EventKind
from sipharness.sipcore.ids import new_call_id, new_tag
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.transaction import TxState
from sipharness.sipcore.uri import SipUri, default_port

from sipharness.phone import addressing
from sipharness.phone.accountserver import AccountServer
from sipharness.phone.call import Call, sdp
from sipharness.phone.rfc3263 import hop_target
from sipharness.phone.sender import RequestHost, ServerRequest
from sipharness.phone.transactions import TransactionLayer

__all__ = ["CallControl", "CallHost", "KEEP_ENDED"]

KEEP_ENDED = 16  # ended calls kept findable by Call-ID (the rest are dropped) [interp]


class CallHost(RequestHost, Protocol):
    """What call control needs from the user agent around it."""

    config: Any  # phone.config.PhoneConfig
    local_host: str
    transactions: TransactionLayer

    def server(self, account: int, index: int) -> AccountServer | None: ...

    def request_order(self, account: int) -> list[int]: ...

    def invite_failed(self, account: int, server: int) -> None: ...

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any: ...


class CallControl:
    """The calls of one phone (SPEC §7)."""

    __slots__ = ("host", "calls", "_ended")

    def __init__(self, host: CallHost):
        self.host = host
        self.calls: dict[str, Call] = {}
        self._ended: list[str] = []  # Call-IDs of ended calls still kept, oldest first

    # ------------------------------------------------------------------ queries
    def call_up(self, account: int) -> bool:
        """A call of ``account`` is established (SPEC §5: failback modes 1-3 wait for it)."""
        return any(c.account == account and c.up for c in self.calls.values())

    def active(self) -> int:
        """Calls not over, either direction (the phone's lines in use, SPEC §7)."""
        return sum(1 for c in self.calls.values() if c.active)

    def latest(self, direction: str | None = None) -> Call | None:
        for call in reversed(list(self.calls.values())):
            if call.active and (direction is None or call.direction == direction):
                return call
        return None

    def set_state(self, call: Call, state: CallState, detail: str = "") -> None:
        call.state = state
        self.host.emit(EventKind.CALL_STATE, account=call.account, server=call.server,
                       target=None if call.target is None else str(call.target), state=state, call_id=call.call_id,
                       detail=detail)
        if not call.active:
            self._retire(call)

    def _retire(self, call: Call) -> None:
        call.cancel_timers()
        if call.call_id in self._ended:
            return
        self._ended.append(call.call_id)
        while len(self._ended) > KEEP_ENDED:
            old = self.calls.get(self._ended[0])
            if old is not None and old.retransmitter is not None and old.retransmitter.state is not TxState.TERMINATED:
                break  # still retransmitting its 2xx: dropped once that is over
            self.calls.pop(self._ended.pop(0), None)

    def add(self, call: Call) -> None:
        self.calls[call.call_id] = call

    # ------------------------------------------------------------------ outgoing (UAC)
    def place(self, uri: str, account: int) -> Call:
        acct = self.host.config.accounts[account]
        srv1 = acct.servers[1]
        if "@" not in uri and not uri.startswith("sip:"):
            uri = f"sip:{uri}@{srv1.address}"
        elif uri.startswith("sip:") and "@" not in uri:
            uri = f"{uri}@{srv1.address}"
        elif not uri.startswith(("sip:", "sips:")):
            uri = f"sip:{uri}"  # "2002@pbx.example.com"
        ruri = SipUri.parse(uri)
        local = NameAddr(f"sip:{acct.user_name}@{srv1.address}", display=acct.display_name or None,
                         params={"tag": new_tag()})
        call = Call(call_id=new_call_id(self.host.local_host), account=account, direction="out", local=local,
                    remote=NameAddr(ruri))
        call.request_uri = ruri
        call.servers_left = [y for y in self.host.request_order(account) if self.host.server(account, y) is not None]
        self.add(call)
        self.set_state(call, CallState.CALLING, detail=f"to {ruri}")
        self._invite_next_server(call)
        return call

    def _invite_next_server(self, call: Call) -> None:
        if not call.servers_left:
            self.set_state(call, CallState.FAILED, detail="no server left")
            return
        y = call.servers_left.pop(0)
        call.server = y
        acct = self.host.config.accounts[call.account]

        def build(flow: Any, target: Any, cseq: int, extra: dict) -> Any:
            call.flow, call.target = flow, target
            call.invite_cseq = cseq
            call.invite = make_request(
                "INVITE", call.request_uri, from_=call.local, to=call.remote, call_id=call.call_id, cseq=cseq,
                via=addressing.via(flow), contact=NameAddr(addressing.contact_uri(acct, flow)),
                headers=[*extra.items(), ("User-Agent", addressing.USER_AGENT), ("Content-Type", "application/sdp")],
                body=sdp(flow.local[0], 1),
            )
            return call.invite

        def next_cseq() -> int:
            call.local_cseq += 1
            return call.local_cseq

        def failed(reason: str) -> None:
            if call.hangup_requested:  # the walk stopped at the user's hang-up: says nothing of the server
                if call.active:
                    self.set_state(call, CallState.TERMINATED, detail="cancelled")
                return
            self.host.invite_failed(call.account, y)
            if call.servers_left:
                self.host.decide(f"INVITE {call.call_id}: server {y} gave no response → server {call.servers_left[0]}",
                                 account=call.account, server=y)
                self._invite_next_server(call)
            else:
                self.set_state(call, CallState.FAILED, detail=reason)

        call.sender = ServerRequest(self.host, self.host.server(call.account, y), "INVITE", build,
                                    next_cseq=next_cseq,
                                    on_provisional=lambda resp, t: self._provisional(call, resp),
                                    on_answer=lambda resp, t, i: self._answered(call, resp),
                                    on_failed=failed, final_list=not call.servers_left)  # SPEC §3: last server
        call.sender.start()

    def _provisional(self, call: Call, resp: Any) -> None:
        if call.hangup_requested:
            if not call.cancel_sent and call.state != CallState.ESTABLISHED:
                self._send_cancel(call)  # RFC 3261 §9.1: the hang-up waited for this provisional
            return
        state = CallState.PROCEEDING if resp.status == 100 else CallState.RINGING
        if call.state != state and call.active:
            self.set_state(call, state, detail=f"{resp.status} {resp.reason}")

    def _answered(self, call: Call, resp: Any) -> None:
        if 200 <= resp.status < 300:
            call.remote = resp.to
            call.learn_dialog(resp, uac=True)
            self._send_ack(call)
            if call.hangup_requested:
                if call.active:
                    self.set_state(call, CallState.ESTABLISHED, detail="200 OK after hangup")
                else:  # the call already ended for the user: end the dialog the 2xx made (RFC 3261 §15)
                    self.host.decide(f"INVITE {call.call_id}: {resp.status} after the user hung up → ACK, BYE",
                                     account=call.account, server=call.server)
                self.send_bye(call)
                return
            self.set_state(call, CallState.ESTABLISHED, detail=f"{resp.status} {resp.reason} via server {call.server}")
            return
        if not call.active:
            return
        if resp.status == 487 and call.hangup_requested:
            self.set_state(call, CallState.TERMINATED, detail="cancelled (487)")
            return
        self.set_state(call, CallState.FAILED, detail=f"{resp.status} {resp.reason}")

    def stray_response(self, message: Any) -> None:
        """A response no transaction took: a 2xx to our INVITE again → ACK again (RFC 3261 §13.2.2.4)."""
        call = self.calls.get(message.call_id)
        if call is not None and message.method == "INVITE" and 200 <= message.status < 300 and call.ack is not None:
            call.flow.send(call.ack)

    # ------------------------------------------------------------------ inside a dialog (never a failover)
    def _in_dialog_flow(self, call: Call) -> defer.Deferred:
        hop = call.next_hop()
        if hop is None:
            return defer.succeed(call.flow)
        host, port, transport = hop
        tgt = call.target
        transport = (transport or call.flow.transport).lower()
        port = port or default_port(transport)
        if tgt is not None and (tgt.host, tgt.port, tgt.transport) == (host, port, transport):
            return defer.succeed(call.flow)
        return self.host.flow(hop_target(host, port, transport))

    def _in_dialog_request(self, call: Call, method: str, cseq: int, flow: Any) -> Any:
        uri = call.remote_target or call.request_uri or call.remote.uri
        return make_request(method, uri, from_=call.local, to=call.remote, call_id=call.call_id,
                            cseq=(cseq, method), via=addressing.via(flow),
                            headers=[("Route", r) for r in call.route_set] + [("User-Agent", addressing.USER_AGENT)])

    def _send_ack(self, call: Call) -> None:
        def send(flow: Any) -> None:
            call.ack = self._in_dialog_request(call, "ACK", call.invite_cseq, flow)
            flow.send(call.ack)
        self._in_dialog_flow(call).addCallbacks(
            send, lambda f: self.host.decide(f"ACK not sent: {f.getErrorMessage()}"))

    def send_bye(self, call: Call) -> None:
        def send(flow: Any) -> None:
            call.local_cseq += 1
            req = self._in_dialog_request(call, "BYE", call.local_cseq, flow)
            self.host.run_transaction(req, flow, None, lambda evs: self.set_state(
                call, CallState.TERMINATED, detail="BYE sent") if call.active else None)
        self._in_dialog_flow(call).addCallbacks(
            send, lambda f: self.set_state(call, CallState.TERMINATED, detail=f"BYE not sent: {f.getErrorMessage()}"))

    def _send_cancel(self, call: Call) -> None:
        sender = call.sender
        if sender is None or sender.tx is None or sender.request is None:
            return
        inv = sender.request
        # RFC 3261 §9.1: same Request-URI, Call-ID, To, From, CSeq number, top Via and Route set.
        routes = [("Route", r) for r in inv.headers.get_all("Route")]
        cancel = make_request("CANCEL", inv.uri, from_=inv.from_, to=inv.to, call_id=inv.call_id,
                              cseq=(inv.cseq[0], "CANCEL"), via=inv.top_via, headers=routes)
        call.cancel_sent = True
        self.host.run_transaction(cancel, sender.flow, None, lambda evs: None)

    def hangup(self, call: Call | None = None) -> None:
        """The user hangs up ``call`` (the latest active call when None)."""
        call = call or self.latest()
        if call is None or not call.active:
            return
        call.hangup_requested = True
        if call.up:
            self.send_bye(call)
        elif call.direction == "in":
            self.end_ringing(call, 486, "Busy Here")
            self.set_state(call, CallState.TERMINATED, detail="declined (486)")
        else:
            self._hangup_unanswered(call)

    def end_ringing(self, call: Call, status: int, reason: str) -> None:
        """End a ringing incoming call with a final response on its INVITE transaction."""
        call.cancel_timers()
        self.host.transactions.send(call.server_tx, call.reply,
                                    make_response(call.invite, status, reason, to_tag=call.local.tag))

    def _hangup_unanswered(self, call: Call) -> None:
        """An outgoing call the callee has not answered yet: CANCEL, or wait for a provisional."""
        if call.sender is not None and call.sender.got_provisional:
            if not call.cancel_sent:
                self._send_cancel(call)
        elif call.sender is not None and call.sender.tx is not None:
            # RFC 3261 §9.1: no CANCEL before a provisional. The INVITE transaction runs on: a 1xx
            # gets the CANCEL, a 2xx gets ACK then BYE, silence ends it; the user's call ends now.
            call.sender.abandon()
            self.set_state(call, CallState.TERMINATED,
                           detail="hung up before any response (CANCEL once a provisional arrives)")
        elif call.sender is not None:  # nothing on the wire yet (DNS, connecting, REGISTER first)
            call.sender.cancel()
            self.set_state(call, CallState.TERMINATED, detail="hung up before any request was sent")

    # ------------------------------------------------------------------ life cycle
    def halt(self) -> None:
        for call in self.calls.values():
            call.cancel_timers()
            if call.sender is not None:
                call.sender.cancel()
            if call.retransmitter is not None:
                self.host.transactions.driver.unwatch(call.retransmitter)
