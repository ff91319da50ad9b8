"""The UAC role of a fake SIP server: originate an INVITE to the DUT and keep what comes back.

SPEC §6/§7 (revised): calls *arriving* through server 1, through server 2 and from the
secondary of a failover must be accepted, and a call beyond the phone's lines gets 486. To
test that, a fake must call the phone, as a PBX does for a call from elsewhere::

    call = srv.originate("1234")          # to the Contact "1234" registered here
    final = await call.final(timeout=32)  # the final response to the INVITE (a Response)
    call.bye()                            # (the 2xx was ACKed at once: auto_ack=True)
    await call.final(method="BYE")

Every message in and out is recorded like the rest (the ladder shows it). Two parts:

- :class:`UacCall`, sans-I/O: the dialog's state (an Enum with a transition table; an
  illegal step, e.g. ``bye()`` before any 2xx, raises :class:`UacError` as h11 does) and
  the requests it needs (INVITE with an SDP offer, ACK for a 2xx, BYE, CANCEL). The
  server's core runs its client transactions on the fake's clock.
- :class:`OutgoingCall`, what a test holds: the call's state and responses, ``final()`` (a
  Deferred from the shared recorder, with a deadline on the fakes' clock), ``ack()``,
  ``bye()``, ``cancel()``.

Where the INVITE goes (:func:`target_for`): to the registered Contact; a client registered
over TCP/TLS is reached over the connection it registered on (RFC 5626's flow), a UDP client
at its Contact's address from the server's own UDP socket (which is where a phone with a
connected UDP socket per server listens).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from sipharness.sipcore.build import make_request
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.uri import SipUri, default_port

__all__ = ["UacState", "UacOp", "UacError", "Target", "UacCall", "OutgoingCall", "target_for", "sdp_offer"]

Address = tuple[str, int]


class UacState(Enum):
    CALLING = "calling"  # INVITE sent, nothing back yet
    PROCEEDING = "proceeding"  # a provisional came back
    CANCELLING = "cancelling"  # CANCEL sent, the INVITE's final response pending
    ANSWERED = "answered"  # a 2xx came back, not ACKed yet
    CONFIRMED = "confirmed"  # the 2xx was ACKed: the call is up
    REJECTED = "rejected"  # a final response >= 300 (487 after a CANCEL)
    TIMED_OUT = "timed out"  # no final response (Timer B) or the transport failed
    ENDING = "ending"  # BYE sent
    ENDED = "ended"  # BYE answered (or given up)


class _Event(Enum):
    PROVISIONAL = "provisional"
    SUCCESS = "2xx"
    FAILURE = "final >= 300"
    TIMEOUT = "timeout"
    ACK = "ack"
    CANCEL = "cancel"
    BYE = "bye"
    BYE_DONE = "bye answered"


class UacOp(Enum):
    """What a test asks of a call (``OutgoingCall`` hands these to its server)."""

    ACK = "ack"
    BYE = "bye"
    CANCEL = "cancel"


S, E = UacState, _Event
_TRANSITIONS: dict[tuple[UacState, _Event], UacState] = {
    (S.CALLING, E.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, E.PROVISIONAL): S.PROCEEDING,
    (S.CANCELLING, E.PROVISIONAL): S.CANCELLING,
    (S.CALLING, E.SUCCESS): S.ANSWERED,
    (S.PROCEEDING, E.SUCCESS): S.ANSWERED,
    (S.CANCELLING, E.SUCCESS): S.ANSWERED,  # the 2xx crossed the CANCEL (RFC 3261 §9.1)
    (S.CALLING, E.FAILURE): S.REJECTED,
    (S.PROCEEDING, E.FAILURE): S.REJECTED,
    (S.CANCELLING, E.FAILURE): S.REJECTED,
    (S.CALLING, E.TIMEOUT): S.TIMED_OUT,
    (S.PROCEEDING, E.TIMEOUT): S.TIMED_OUT,
    (S.CANCELLING, E.TIMEOUT): S.TIMED_OUT,
    (S.PROCEEDING, E.CANCEL): S.CANCELLING,
    (S.ANSWERED, E.ACK): S.CONFIRMED,
    (S.CONFIRMED, E.BYE): S.ENDING,
    (S.ENDING, E.BYE_DONE): S.ENDED,
}
del S, E


class UacError(ValueError):
    """A step the call's state does not allow (e.g. ``cancel()`` before any provisional)."""


@dataclass(frozen=True)
class Target:
    """Where the call's requests go: over ``transport`` to ``peer`` (through ``flow``, a live
    connection, when there is one), from the fake's ``local`` address."""

    transport: str
    peer: Address
    local: Address
    flow: Any = None


def target_for(contact: SipUri, addresses: dict[str, Address], origin: Any = None) -> Target:
    """The target of a call to ``contact`` (a registered Contact or one a test gave).

    ``origin`` (the REGISTER's :class:`fakes.sip.actions.Origin`): a client registered over
    TCP/TLS is reached over that connection. ``addresses``: the fake's listeners by transport.
    """
    transport = (contact.params.get("transport") or (origin.transport if origin is not None else "udp") or "udp")
    transport = transport.lower()
    if contact.scheme == "sips":
        transport = "tls"
    if transport not in addresses:
        raise ValueError(f"cannot call {contact}: this fake does not listen on {transport} "
                         f"(it listens on {', '.join(addresses) or 'nothing'})")
    if origin is not None and origin.transport == transport != "udp" and origin.flow is not None:
        return Target(transport, tuple(origin.peer), tuple(origin.local), origin.flow)
    try:
        ipaddress.ip_address(contact.host)
    except ValueError:
        raise ValueError(f"cannot call {contact}: its host {contact.host!r} is not an IP address "
                         f"(a fake resolves no names)") from None
    return Target(transport, (contact.host, contact.port or default_port(transport)), addresses[transport])


def sdp_offer(host: str, port: int = 49172, session: int = 1) -> bytes:
    """A minimal SDP offer: audio, PCMU/8000 (SPEC §7: media need not flow)."""
    family = "IP6" if ":" in host else "IP4"
    return (f"v=0\r\no=- {session} 1 IN {family} {host}\r\ns=-\r\nc=IN {family} {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n").encode()


def _hostport(a: Address) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


class UacCall:
    """One call a fake originated: its requests and its state, sans-I/O."""

    def __init__(self, contact: SipUri, target: Target, *, user: str, from_user: str = "2000",
                 aor: str | None = None, sdp: bool = True, headers: Any = None, auto_ack: bool = True):
        local = target.local
        host = f"[{local[0]}]" if ":" in local[0] else local[0]
        self.target = target
        self.auto_ack = auto_ack
        self.state = UacState.CALLING
        self.responses: list[Response] = []
        self.final: Response | None = None
        self.ack_request: Request | None = None
        self.bye_request: Request | None = None
        self.cancel_request: Request | None = None
        self.bye_final: Response | None = None
        self.reason = ""  # why the call timed out, when it did
        self._cseq = 1
        extra = [("Content-Type", "application/sdp")] if sdp else []
        extra += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.invite = make_request(
            "INVITE", contact, from_=f"<sip:{from_user}@{host}>;tag={new_tag()}",
            to=f"<{aor}>" if aor else f"<sip:{user}@{host}>",
            call_id=f"{new_tag()}{new_tag()}@{host}", cseq=self._cseq,
            via=f"SIP/2.0/{target.transport.upper()} {_hostport(local)};branch={new_branch()};rport",
            contact=f"<sip:{from_user}@{_hostport(local)};transport={target.transport}>",
            headers=extra, body=sdp_offer(local[0]) if sdp else b"")
        self.call_id = self.invite.call_id
        self._remote_target: Any = None
        self._to: str | None = None

    def __repr__(self) -> str:
        return f"<UacCall {self.call_id} {self.state.value}>"

    # -- the state machine
    def _step(self, event: _Event) -> UacState:
        nxt = _TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise UacError(f"call {self.call_id}: cannot {event.value} in state {self.state.value}")
        self.state = nxt
        return nxt

    # -- fed by the core
    def invite_response(self, response: Response) -> None:
        """A response to the INVITE (from its client transaction, or a 2xx retransmission)."""
        status = response.status
        if status >= 200 and self.final is not None:
            return  # a retransmission of the final response
        self.responses.append(response)
        if status < 200:
            if self.state in (UacState.CALLING, UacState.PROCEEDING, UacState.CANCELLING):
                self._step(_Event.PROVISIONAL)
            return
        self.final = response
        if status < 300:
            self._step(_Event.SUCCESS)
            contacts = response.contacts
            self._remote_target = contacts[0].uri if contacts else self.invite.uri
            self._to = response.headers.get("To")
        else:
            self._step(_Event.FAILURE)

    def timed_out(self, reason: str) -> None:
        if self.state in (UacState.CALLING, UacState.PROCEEDING, UacState.CANCELLING):
            self.reason = reason
            self._step(_Event.TIMEOUT)
        elif self.state is UacState.ENDING:
            self.reason = reason
            self._step(_Event.BYE_DONE)

    def bye_response(self, response: Response) -> None:
        if response.status >= 200 and self.state is UacState.ENDING:
            self.bye_final = response
            self._step(_Event.BYE_DONE)

    # -- requests, each one a step of the state machine
    def ack(self) -> Request:
        """The ACK for the 2xx (RFC 3261 §13.2.2.4: a new transaction, to the remote target)."""
        self._step(_Event.ACK)
        self.ack_request = self._in_dialog("ACK", self._cseq)
        return self.ack_request

    def bye(self) -> Request:
        self._step(_Event.BYE)
        self._cseq += 1
        self.bye_request = self._in_dialog("BYE", self._cseq)
        return self.bye_request

    def cancel(self) -> Request:
        """RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq number and Via as the INVITE."""
        self._step(_Event.CANCEL)
        inv = self.invite
        self.cancel_request = make_request(
            "CANCEL", inv.uri, from_=inv.headers.get("From"), to=inv.headers.get("To"), call_id=inv.call_id,
            cseq=(inv.cseq[0], "CANCEL"), via=inv.headers.get_all("Via")[0])
        return self.cancel_request

    def _in_dialog(self, method: str, cseq: int) -> Request:
        inv = self.invite
        local = self.target.local
        return make_request(
            method, self._remote_target, from_=inv.headers.get("From"), to=self._to or inv.headers.get("To"),
            call_id=inv.call_id, cseq=(cseq, method),
            via=f"SIP/2.0/{self.target.transport.upper()} {_hostport(local)};branch={new_branch()};rport")


class OutgoingCall:
    """What :meth:`FakeSipServer.originate` returns: a call the fake placed to the DUT.

    ``state`` (:class:`UacState`), ``responses`` (every distinct response to the INVITE, in
    order), ``call_id``; ``final(timeout)`` fires with the final response to the INVITE (or,
    ``method="BYE"``, to the BYE), a :class:`~sipcore.journal.WaitTimeout` past ``timeout``
    phone seconds; ``ack()``, ``bye()``, ``cancel()`` send those requests.
    """

    def __init__(self, call: UacCall, *, recorder: Any, server: str, act: Callable[[UacCall, UacOp], None]):
        self._call = call
        self._recorder = recorder
        self._server = server
        self._act = act

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def state(self) -> UacState:
        return self._call.state

    @property
    def responses(self) -> list[Response]:
        return list(self._call.responses)

    @property
    def invite(self) -> Request:
        return self._call.invite

    @property
    def reason(self) -> str:
        return self._call.reason

    def final(self, timeout: float = 32.0, *, method: str = "INVITE") -> Any:
        """Deferred of the final response the fake received to this call's ``method``."""
        call_id, server = self._call.call_id, self._server

        def match(r: Any) -> bool:
            return (r.kind == "sip" and r.direction == "in" and r.server == server and r.call_id == call_id
                    and r.method == method and r.status is not None and r.status >= 200)

        d = self._recorder.wait_for(match, timeout, what=f"{server}: the final response to its {method} "
                                                             f"(call {call_id})")
        return d.addCallback(lambda record: record.message)

    def ack(self) -> None:
        """ACK the 2xx (only with ``auto_ack=False``; the default ACKs at once)."""
        self._act(self._call, UacOp.ACK)

    def bye(self) -> None:
        """End the call (after its 2xx was ACKed)."""
        self._act(self._call, UacOp.BYE)

    def cancel(self) -> None:
        """Cancel the INVITE (after a provisional, before its final response: RFC 3261 §9.1)."""
        self._act(self._call, UacOp.CANCEL)

    def __repr__(self) -> str:
        return f"<OutgoingCall {self._server} {self.call_id} {self.state.value}>"
