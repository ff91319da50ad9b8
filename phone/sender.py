"""One new request to one server of an account, moved down its targets on failure (SPEC §3, §5).

:class:`ServerRequest` glues the pure decisions together: failback picks the start index
(:mod:`phone.failback`), :class:`phone.failover.TargetWalk` gives the per-target send budget,
a :class:`sipcore.transaction.ClientTransaction` runs each attempt on the injected clock, and
:func:`phone.failover.classify` tells what came back. Every step to a new target is a NEW
transaction (new branch, CSeq + 1; the owner keeps the Call-ID). 401/407 get one digest retry
and 423 one retry with the Min-Expires, both on the same target. Every give-up is a "decision"
line in the phone's log.

It does no I/O itself and knows the rest of the phone only through :class:`RequestHost` (a
declared Protocol the user agent satisfies): it is handed flows (``host.flow(target)``:
``Deferred[Flow]``) and its transactions are run for it (``host.run_transaction``). So it
runs unchanged over sockets and over the in-memory wire of the unit tests, on a
``task.Clock``. What it needs of the server (settings, failback, registration) is the
:class:`phone.accountserver.AccountServer` it is given.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet import defer

from sipharness.sipcore import digest
from sipharness.sipcore.events import EventKind
from sipharness.sipcore.transaction import ClientTransaction, Deliver, TimedOut, TransportFailed

from sipharness.phone.accountserver import AccountServer
from sipharness.phone.failover import Outcome, TargetWalk, classify, register_first, retry_counts_for

__all__ = ["ServerRequest", "RequestHost", "Flow", "MAX_EXPIRES", "MIN_EXPIRES_FACTOR"]

MAX_EXPIRES = 2**31 - 1  # SPEC §1: the largest expires a phone is configured with
MIN_EXPIRES_FACTOR = 10  # SPEC §4 [interp]: a Min-Expires above expires × 10 is a failed attempt


class Flow(Protocol):
    """How the phone talks to one target (phone.wire, or a test's in-memory wire)."""

    local: tuple[str, int]  # the socket's address: Via and Contact
    transport: str  # "udp" | "tcp" | "tls"
    reliable: bool

    def send(self, message: Any) -> None: ...


class RequestHost(Protocol):
    """What a :class:`ServerRequest` needs from the user agent around it."""

    def now(self) -> float: ...

    def emit(self, kind: str, **fields: Any) -> Any: ...

    def decide(self, text: str, *, account: int | None = None, server: int | None = None,
               target: Any = None, limit: str | None = None) -> None: ...

    def resolve(self, server: AccountServer) -> defer.Deferred: ...

    def flow(self, target: Any) -> defer.Deferred: ...

    def run_transaction(self, request: Any, flow: Flow, max_sends: int | None,
                        on_events: Callable[[list], Any]) -> ClientTransaction | None: ...

    def drop_transaction(self, tx: ClientTransaction) -> None: ...

    def call_up(self, account: int) -> bool: ...


def _stale(resp: Any) -> bool:
    """The 401/407 is a Digest challenge with ``stale=true`` (an unparsable one is not)."""
    value = resp.headers.get("WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate")
    if value is None:
        return False
    try:
        return digest.Challenge.parse(value).stale
    except ValueError:
        return False


def authorization(account: Any, resp: Any, request: Any) -> str:
    """The Authorization / Proxy-Authorization value answering a 401/407 (SPEC §3: digest,
    with the account's auth_name, or user_name, and password). ValueError if it cannot."""
    name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
    value = resp.headers.get(name)
    if value is None:
        raise ValueError(f"{resp.status} without {name}")
    challenge = digest.Challenge.parse(value)
    return digest.authorize(challenge, method=request.method, uri=str(request.uri),
                            username=account.auth_name or account.user_name, password=account.password)


def min_expires(resp: Any, configured: int) -> tuple[int | None, str]:
    """The Min-Expires of a 423 to use, or None and why not (SPEC §3, §4 [interp])."""
    text = (resp.headers.get("Min-Expires") or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None, f"423 with an unusable Min-Expires {text[:20]!r}"
    value = int(text)
    if value < 1 or value > MAX_EXPIRES or value > configured * MIN_EXPIRES_FACTOR:
        return None, (f"423 Min-Expires {value} is above {MIN_EXPIRES_FACTOR} × the configured {configured} s "
                      f"or 2^31-1 (SPEC §4 [interp]): a failed attempt, not a new request")
    return value, ""


class ServerRequest:
    """A new ``method`` request of ``server``'s account to that server, with failover.

    ``build(flow, target, cseq, extra_headers) -> Request`` makes the request for one attempt
    (the Via branch must be new each time); ``next_cseq()`` gives each attempt its CSeq number
    (a registration's own counter, a dialog's). Callbacks: ``on_provisional(resp, target)``,
    ``on_answer(resp, target, index)`` (a final response that is not a failover trigger) and
    ``on_failed(reason)`` (every target given up, or no target at all).
    """

    __slots__ = ("host", "server", "method", "build", "next_cseq", "on_answer", "on_failed", "on_provisional",
                 "refresh", "final_list", "only_target", "walk", "tx", "request", "flow", "cancelled", "abandoned",
                 "done", "got_provisional", "_auth_tried", "_stale_tried", "_min_expires_tried", "_extra",
                 "min_expires", "started_index")  # a registration keeps its last one: no __dict__

    def __init__(self, host: RequestHost, server: AccountServer, method: str, build: Callable[..., Any], *,
                 next_cseq: Callable[[], int], on_answer: Callable[..., Any], on_failed: Callable[[str], Any],
                 on_provisional: Callable[..., Any] | None = None, refresh: bool = False,
                 final_list: bool | None = None, only_target: Any = None):
        self.host, self.server, self.method = host, server, method
        self.build = build
        self.next_cseq = next_cseq
        self.on_answer, self.on_failed, self.on_provisional = on_answer, on_failed, on_provisional
        self.refresh = refresh
        self.final_list = final_list
        self.only_target = only_target  # register_on_enable: one target, no failover
        self.walk: TargetWalk | None = None
        self.tx: Any = None  # the live client transaction
        self.request: Any = None  # the request of the live transaction (None once done)
        self.flow: Any = None
        self.cancelled = False
        self.abandoned = False  # the user hung up: no further attempt (see abandon())
        self.done = False
        self.got_provisional = False
        self._auth_tried = False
        self._stale_tried = False
        self._min_expires_tried = False
        self._extra: dict[str, str] = {}
        self.min_expires: int | None = None
        self.started_index = 0

    @property
    def account(self) -> int:
        return self.server.x

    # -- lifecycle
    def start(self) -> None:
        if self.only_target is not None:
            self._walk([self.only_target], 0)
            return
        d = self.host.resolve(self.server)
        d.addCallbacks(self._resolved, lambda f: self._resolved([]))

    def cancel(self) -> None:
        """Stop without calling back (phone stopping, call hung up before any answer)."""
        self.cancelled = True
        if self.tx is not None:
            self.host.drop_transaction(self.tx)
            self.tx = None

    def abandon(self) -> None:
        """The user gave the request up while its transaction is on the wire with no response yet.

        RFC 3261 §9.1: a CANCEL must wait for a provisional response, so the live transaction
        runs on (its 1xx / final still reach the callbacks), but nothing new is started: no next
        target, no digest or 423 retry. When it ends without an answer, ``on_failed`` is called."""
        self.abandoned = True

    def _resolved(self, targets: list) -> None:
        if self.cancelled:
            return
        srv = self.server
        if not targets:
            self._finish_failed(f"{self.method}: no target for server {srv.index} "
                                f"({srv.cfg.address!r}): request failed at once")
            return
        start = srv.failback.start_index(self.host.now(), refresh=self.refresh, call_up=self.host.call_up(srv.x))
        if start >= len(targets):
            start = 0
        moved = srv.note_start(targets[start])
        if moved:
            back = srv.failback.switch_at()
            if start and back is not None:
                moved += f"; back to the primary from t = {back:.3f} s (failback mode {srv.failback.mode})"
            self.host.emit(EventKind.TARGET, account=srv.x, server=srv.index, target=str(targets[start]), detail=moved)
        self._walk(targets, start)

    def _walk(self, targets: list, start: int) -> None:
        final = self.final_list if self.final_list is not None else self.server.final
        self.started_index = start
        self.walk = TargetWalk(targets, start=start, retry_counts=retry_counts_for(self.server.cfg, self.method),
                               final_list=final)
        self._attempt()

    # -- one attempt = one transaction to the walk's current target
    def _attempt(self) -> None:
        walk = self.walk
        target = walk.target
        srv = self.server
        why = None
        if self.only_target is None:
            # SPEC §5 register_on_enable, SPEC §1 only_signal_with_registered
            why = register_first(srv.cfg, self.method, position=walk.position, index=walk.index,
                                 is_domain=srv.failback.is_domain, registered_here=srv.registered_on(target))
        if why is not None:
            # register with the target first, send the request after the 2xx
            self._decide(f"{self.method}: {why}: REGISTER with {target} before sending", target)
            srv.registration.register_at(
                target, lambda ok, why: self._send_to(target) if ok else self._give_up(f"REGISTER first: {why}"))
            return
        self._send_to(target)

    def _send_to(self, target: Any) -> None:
        if self.cancelled:
            return
        d = self.host.flow(target)
        d.addCallbacks(lambda flow: self._send_on(flow, target),
                       lambda f: self._give_up(f"transport failed: {f.getErrorMessage()}", sends=0))

    def _send_on(self, flow: Any, target: Any) -> None:
        if self.cancelled:
            return
        self.flow = flow
        self.request = self.build(flow, target, self.next_cseq(), dict(self._extra))
        self.tx = self.host.run_transaction(self.request, flow, self.walk.max_sends, self._events)

    def _events(self, events: list) -> None:
        if self.cancelled:
            return
        tx = self.tx
        for ev in events:
            if isinstance(ev, Deliver):
                self._response(ev.message)
            elif isinstance(ev, (TimedOut, TransportFailed)):
                if tx is self.tx:
                    self.tx = None
                    sends = tx.sends if tx is not None else 0
                    elapsed = self.host.now() - tx.started_at if tx is not None and tx.started_at is not None else 0.0
                    self._give_up(ev.reason, sends=sends, elapsed=elapsed)
                return
            if self.done or self.cancelled:
                return

    def _response(self, resp: Any) -> None:
        outcome = classify(resp.status)
        target = self.walk.target
        if outcome is Outcome.PROVISIONAL:
            self.got_provisional = True
            if self.on_provisional:
                self.on_provisional(resp, target)
            return
        tx = self.tx
        self.tx = None
        if self.abandoned and outcome is not Outcome.NEXT_TARGET:
            self._answer(resp, target)  # no retry of a request the user gave up
            return
        name = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        stale_retry = (outcome is Outcome.CHALLENGE and self._auth_tried and not self._stale_tried
                       and name in self._extra and _stale(resp))
        if stale_retry:
            # RFC 2617 §3.2.1 / RFC 7616 §3.3: stale=true says the credentials were right and only
            # the nonce was old: retry once more with the new nonce (not a wrong password).
            self._stale_tried = True
        if stale_retry or (outcome is Outcome.CHALLENGE and not self._auth_tried and self.server.account.password):
            self._auth_tried = True  # SPEC §3: one retry with digest
            try:
                self._extra[name] = authorization(self.server.account, resp, self.request)
            except ValueError as e:
                self._decide(f"{self.method} to {target}: cannot answer {resp.status} challenge: {e}", target)
                self._answer(resp, target)
                return
            what = "stale nonce (stale=true) → retry once more with the new nonce" if stale_retry else \
                "challenge → retry with digest"
            self._decide(f"{self.method} to {target}: {resp.status} {what}", target)
            self._send_to(target)
            return
        if outcome is Outcome.MIN_EXPIRES and not self._min_expires_tried and self.method == "REGISTER":
            self._min_expires_tried = True  # SPEC §3: retry with the Min-Expires given
            value, why = min_expires(resp, self.server.cfg.expires)
            if value is None:
                self._decide(f"REGISTER to {target}: {why}", target)
                self._answer(resp, target)
                return
            self.min_expires = value
            self._decide(f"REGISTER to {target}: 423 → retry with Expires {value}", target)
            self._send_to(target)
            return
        if outcome is Outcome.NEXT_TARGET:
            sends = tx.sends if tx is not None else 1
            elapsed = self.host.now() - tx.started_at if tx is not None and tx.started_at is not None else 0.0
            if tx is not None:
                self.host.drop_transaction(tx)
            self._give_up(f"{resp.status} {resp.reason}", sends=sends, elapsed=elapsed)
            return
        self._answer(resp, target)

    def _answer(self, resp: Any, target: Any) -> None:
        self.done = True
        index = self.walk.index
        if self.only_target is None:
            self.server.failback.answered(index, target, self.host.now(), started=self.started_index)
            self.server.working_target = target
        self.on_answer(resp, target, index)
        self.request = None  # no live transaction any more; a registration keeps its sender until the refresh

    def _give_up(self, reason: str, *, sends: int | None = None, elapsed: float | None = None) -> None:
        if self.cancelled or self.done:
            return
        target = self.walk.target
        nxt = self.walk.give_up(reason)
        how = ""
        if sends is not None:
            how = f" after {sends} send{'s' if sends != 1 else ''}"
            if elapsed is not None:
                how += f" in {elapsed:.2f} s"
        if self.abandoned:
            nxt = None  # RFC 3261 §9.1 hang-up: the request is not carried to another target
            where = "no next target: the user hung up"
        else:
            where = f"next target {nxt}" if nxt is not None else f"no target left on server {self.server.index}"
        self._decide(f"{self.method} to {target} gave up{how} ({reason}) → {where}", target)
        if nxt is None:
            self._finish_failed(f"{self.method}: every target of server {self.server.index} failed (last: {reason})")
            return
        self._auth_tried = self._stale_tried = self._min_expires_tried = False
        self._extra.clear()
        self._attempt()

    def _finish_failed(self, reason: str) -> None:
        self.done = True
        self.on_failed(reason)
        self.request = None

    def _decide(self, text: str, target: Any) -> None:
        self.host.decide(text, account=self.server.x, server=self.server.index, target=target)
