"""One call of the bundled phone and its dialog (SPEC §7, RFC 3261 §12-§15).

A :class:`Call` holds the dialog state (Call-ID, tags, remote target, route set, CSeqs) and
the call state the DUT interface reports (:class:`sipcore.events.CallState`). New INVITEs are
placed by :mod:`phone.calls` with the failover / fallback rules (SPEC §5/§6); everything
inside the dialog (ACK for a 2xx, BYE) follows the dialog's route set and remote target and
never fails over [RFC].

Media need not flow (SPEC §7): the SDP is a fixed PCMU/8000 audio offer/answer.
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.events import CallState
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.uri import SipUri

__all__ = ["Call", "sdp"]


def sdp(host: str, session: int, port: int = 40000) -> bytes:
    """An SDP offer/answer: one audio stream, PCMU/8000 (SPEC §7)."""
    lines = [
        "v=0",
        f"o=- {session} {session} IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


class Call:
    """A call leg: ``direction`` "out" (we sent the INVITE) or "in"."""

    __slots__ = ("call_id", "account", "direction", "local", "remote", "state", "server", "target", "flow",
                 "remote_target", "route_set", "local_cseq", "invite_cseq", "invite", "ack", "sender", "server_tx",
                 "retransmitter", "reply", "reply_local", "timer", "ring_timer", "servers_left", "hangup_requested",
                 "cancel_sent", "request_uri")

    def __init__(self, *, call_id: str, account: int, direction: str, local: NameAddr, remote: NameAddr):
        self.call_id = call_id
        self.account = account
        self.direction = direction
        self.local = local  # our From (out) / To (in), with our tag
        self.remote = remote  # their To (out) / From (in); tag once known
        self.state = CallState.CALLING if direction == "out" else CallState.RINGING
        self.server: int | None = None  # server that carried the INVITE
        self.target: Any = None  # target the INVITE went to / came from
        self.flow: Any = None  # where the INVITE went / came from
        self.remote_target: SipUri | None = None
        self.route_set: list[str] = []
        self.local_cseq = 0
        self.invite_cseq = 0
        self.invite: Any = None  # our INVITE (out) or theirs (in)
        self.ack: Any = None  # our ACK for their 2xx (resent on 2xx retransmissions)
        self.sender: Any = None  # the INVITE's ServerRequest (out)
        self.server_tx: Any = None  # the INVITE server transaction (in)
        self.retransmitter: Any = None  # TwoXXRetransmitter (in)
        self.reply: Any = None  # where replies to the incoming INVITE go (its flow: our Contact)
        self.reply_local: tuple[str, int] | None = None  # the local address the INVITE came in on
        self.timer: Any = None  # auto-answer
        self.ring_timer: Any = None  # an incoming call not answered in time gets 480 (SPEC §7)
        self.servers_left: list[int] = []
        self.hangup_requested = False
        self.cancel_sent = False  # one CANCEL per INVITE (RFC 3261 §9.1)
        self.request_uri: SipUri | None = None  # the INVITE's Request-URI (out)

    @property
    def active(self) -> bool:
        return self.state not in (CallState.TERMINATED, CallState.FAILED)

    @property
    def up(self) -> bool:
        return self.state == CallState.ESTABLISHED

    def cancel_timers(self) -> None:
        for t in (self.timer, self.ring_timer):
            if t is not None and t.active():
                t.cancel()
        self.timer = self.ring_timer = None

    def learn_dialog(self, message: Any, *, uac: bool) -> None:
        """Remote target and route set from a 2xx (UAC) or the INVITE (UAS), RFC 3261 §12.1."""
        contacts = message.contacts
        if contacts:
            self.remote_target = contacts[0].uri
        rr = message.headers.get_all("Record-Route")
        self.route_set = list(reversed(rr)) if uac else list(rr)

    def next_hop(self) -> tuple[str, int | None, str | None] | None:
        """(host, port, transport param) of the next hop of an in-dialog request [RFC 3261 §8.1.2];
        None when the dialog has neither a route nor a remote target (a peer that left out its
        Contact): the request goes back the way the dialog came."""
        try:
            uri = NameAddr.parse(self.route_set[0]).uri if self.route_set else self.remote_target
        except ValueError:  # a Record-Route the peer garbled (parsed only now): back the way it came
            return None
        if uri is None or not uri.host:
            return None
        return uri.host, uri.port, uri.params.get("transport")

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.call_id} {self.state} account={self.account} server={self.server}>"
