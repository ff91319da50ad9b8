"""The UAS logic of the fake SIP servers: answer calls itself (SPEC §7), sans-I/O.

INVITE → 100 Trying at once, 180 Ringing, then 200 OK with an SDP answer (audio PCMU/8000)
``answer_delay`` phone seconds later; CANCEL before the 200 → 200 to the CANCEL and 487 to
the INVITE; BYE → 200; ACK is absorbed. Media never flows (SPEC §7 "media need not flow"),
so the SDP only has to be well formed. Written by hand: a few responses with a scripted
delay are all a failover test needs of a callee, and they must run on the phone clock.

Bounded: a call is remembered (for a CANCEL) until 64·T1 after its answer time, the life of
its INVITE server transaction; older ones are swept in batches as new calls come, and at most
``max_pending`` are kept whatever the load (the oldest go first).
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.build import make_response
from sipharness.sipcore.ids import new_tag

from sipharness.fakes.sip.actions import Origin, Respond

__all__ = ["Uas", "sdp_answer", "UAS_METHODS"]

KEEP = 64 * 0.5  # 64·T1 after the answer: a CANCEL later than that finds no transaction (481)
#: What the UAS answers (the Allow of its 405/501): a call, and a plain 200 to the in-call
#: requests a phone may send (BYE, OPTIONS, INFO, UPDATE, MESSAGE, NOTIFY, PRACK).
UAS_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "MESSAGE", "NOTIFY", "PRACK")


def sdp_answer(host: str, port: int = 49170, session: int = 1) -> bytes:
    """A minimal SDP answer: audio, PCMU/8000 (RFC 3264), from ``host``."""
    family = "IP6" if ":" in host else "IP4"
    return (f"v=0\r\no=- {session} 1 IN {family} {host}\r\ns=-\r\nc=IN {family} {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n").encode()


class Uas:
    """``handle(request, origin, now)`` → ``[Respond(...)]``; ``answer_delay`` in phone seconds."""

    def __init__(self, *, answer_delay: float = 0.0, user: str = "fake", max_pending: int = 10_000):
        if answer_delay < 0:
            raise ValueError(f"answer_delay must be >= 0 phone seconds, got {answer_delay!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        self.max_pending = max_pending
        self._sweep_at = 64
        self.answer_delay = float(answer_delay)
        self.user = user
        self._pending: dict[tuple, tuple[Any, float, str]] = {}  # INVITE key → (request, answer time, to-tag)
        self._sessions = 0
        self.calls_answered = 0

    @staticmethod
    def _key(request: Any) -> tuple:
        via = request.top_via
        return (request.call_id, request.cseq[0], via.branch if via is not None else None)

    def handle(self, request: Any, origin: Origin, now: float) -> list[Respond]:
        method = request.method
        if method == "INVITE":
            return self._invite(request, origin, now)
        if method == "ACK":
            return []
        if method == "CANCEL":
            return self._cancel(request, now)
        if method not in UAS_METHODS:  # RFC 3261 §8.2.1: 405 for a method known elsewhere (REGISTER...)
            return [Respond(make_response(request, 405, "Method Not Allowed", to_tag=new_tag(),
                                          headers={"Allow": ", ".join(UAS_METHODS)}))]
        # BYE, OPTIONS, INFO, UPDATE, MESSAGE, NOTIFY, PRACK: a plain 200
        tag = request.to.tag if request.to is not None and request.to.tag else new_tag()
        return [Respond(make_response(request, 200, "OK", to_tag=tag))]

    def _invite(self, request: Any, origin: Origin, now: float) -> list[Respond]:
        tag = request.to.tag if request.to is not None and request.to.tag else new_tag()
        host, port = origin.local
        hostpart = f"[{host}]" if ":" in host else host
        contact = f"<sip:{self.user}@{hostpart}:{port};transport={origin.transport}>"
        self._sessions += 1
        answer = make_response(request, 200, "OK", to_tag=tag,
                               headers={"Contact": contact, "Content-Type": "application/sdp"},
                               body=sdp_answer(host, session=self._sessions))
        self._remember(self._key(request), (request, now + self.answer_delay, tag), now)
        self.calls_answered += 1
        return [
            Respond(make_response(request, 100, "Trying")),
            Respond(make_response(request, 180, "Ringing", to_tag=tag, headers={"Contact": contact})),
            Respond(answer, after=self.answer_delay),
        ]

    def _cancel(self, cancel: Any, now: float) -> list[Respond]:
        key = self._key(cancel)
        pending = self._pending.get(key)
        if pending is not None and pending[1] + KEEP <= now:  # its transaction is over
            del self._pending[key]
            pending = None
        if pending is None:
            return [Respond(make_response(cancel, 481, "Call/Transaction Does Not Exist", to_tag=new_tag()))]
        invite, answer_at, tag = pending
        actions = [Respond(make_response(cancel, 200, "OK", to_tag=tag))]
        if answer_at > now:  # not answered yet: the INVITE ends with 487
            del self._pending[key]
            self.calls_answered -= 1
            actions.append(Respond(make_response(invite, 487, "Request Terminated", to_tag=tag), request=invite))
        return actions

    def _remember(self, key: tuple, entry: tuple, now: float) -> None:
        pending = self._pending
        pending.pop(key, None)  # a retransmitted INVITE moves to the end (insertion order = age)
        pending[key] = entry
        if len(pending) > self.max_pending:  # the cap, at once: the oldest call goes
            del pending[next(iter(pending))]
        if len(pending) >= self._sweep_at:  # amortised: a sweep each time the table doubles
            for k in [k for k, (_, answer_at, _) in pending.items() if answer_at + KEEP <= now]:
                del pending[k]
            self._sweep_at = max(64, 2 * len(pending))
