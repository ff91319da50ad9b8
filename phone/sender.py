"""One new request to one server of an account, moved down its targets on failure (SPEC §3, §5).

:class:`ServerRequest` glues the pure decisions together: failback picks the start index
(:mod:`phone.failback`), :class:`phone.failover.TargetWalk` gives the per-target send budget,
a :class:`sipcore.transaction.ClientTransaction` runs each attempt on the injected clock, and
:func:`phone.failover.classify` tells what came back. Every step to a new target is a NEW
transaction (new branch, CSeq + 1; the owner keeps the Call-ID). 401/407 get one digest retry
and 423 one retry with the Min-Expires, both on the same target. Every give-up is a "decision"
line in the phone's log.

It does no I/O itself: the user agent (``ua``) hands it flows (``ua.flow(target)``:
``Deferred[flow]`` with ``.local``, ``.reliable``, ``.send(message)``) and runs its transactions
(``ua.run_transaction``). So it runs unchanged over sockets and over the in-memory wire of the
unit tests, on a ``task.Clock``.
"""

from __future__ import annotations

from typing import Any, Callable

from sipharness.sipcore.transaction import Deliver, TimedOut, TransportFailed

from sipharness.phone.failover import Outcome, TargetWalk, classify, register_first, retry_counts_for

__all__ = ["ServerRequest"]


def _why(status_or_reason: Any) -> str:
    return str(status_or_reason)


def _stale(resp: Any) -> bool:
    """The 401/407 is a Digest challenge with ``stale=true`` (an unparsable one is not)."""
    from sipharness.sipcore import digest

    value = resp.headers.get("WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate")
    if value is None:
        return False
    try:
        return digest.Challenge.parse(value).stale
    except ValueError:
        return False


class ServerRequest:
    """A new ``method`` request of ``account`` to ``server`` (1 or 2), with failover.

    ``build(flow, target, cseq, extra_headers) -> Request`` makes the request for one attempt
    (the Via branch must be new each time). Callbacks: ``on_provisional(resp, target)``,
    ``on_answer(resp, target, index)`` (a final response that is not a failover trigger) and
    ``on_failed(reason)`` (every target given up, or no target at all). ``owner``: what the request
    belongs to (a call), set by the caller.
    """

    __slots__ = ("ua", "account", "server", "method", "build", "on_answer", "on_failed", "on_provisional",
                 "refresh", "final_list", "only_target", "walk", "tx", "request", "flow", "cancelled", "abandoned",
                 "done", "got_provisional", "_auth_tried", "_stale_tried", "_min_expires_tried", "_extra",
                 "min_expires", "started_index", "owner")  # a registration keeps its last one: no __dict__

    def __init__(self, ua: Any, account: Any, server: int, method: str, build: Callable[..., Any], *,
                 on_answer: Callable[..., Any], on_failed: Callable[[str], Any],
                 on_provisional: Callable[..., Any] | None = None, refresh: bool = False,
                 final_list: bool | None = None, only_target: Any = None):
        self.ua, self.account, self.server, self.method = ua, account, server, method
        self.build = build
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
        self.owner: Any = None

    # -- lifecycle
    def start(self) -> None:
        if self.only_target is not None:
            self._walk([self.only_target], 0)
            return
        d = self.ua.resolve(self.account, self.server)
        d.addCallbacks(self._resolved, lambda f: self._resolved([]))

    def cancel(self) -> None:
        """Stop without calling back (phone stopping, call hung up before any answer)."""
        self.cancelled = True
        if self.tx is not None:
            self.ua.drop_transaction(self.tx)
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
        if not targets:
            self._finish_failed(f"{self.method}: no target for server {self.server} "
                                f"({self.ua.server_cfg(self.account, self.server).address!r}): request failed at once")
            return
        fb = self.ua.failback(self.account, self.server)
        start = fb.start_index(self.ua.now(), refresh=self.refresh, call_up=self.ua.call_up(self.account))
        if start >= len(targets):
            start = 0
        self.ua.note_start(self.account, self.server, targets[start])
        self._walk(targets, start)

    def _walk(self, targets: list, start: int) -> None:
        cfg = self.ua.server_cfg(self.account, self.server)
        final = self.final_list if self.final_list is not None else self.ua.is_final_server(self.account, self.server)
        self.started_index = start
        self.walk = TargetWalk(targets, start=start, retry_counts=retry_counts_for(cfg, self.method),
                               final_list=final)
        self._attempt()

    # -- one attempt = one transaction to the walk's current target
    def _attempt(self) -> None:
        walk = self.walk
        target = walk.target
        cfg = self.ua.server_cfg(self.account, self.server)
        why = None
        if self.only_target is None:
            # SPEC §5 register_on_enable, SPEC §1 only_signal_with_registered
            why = register_first(cfg, self.method, position=walk.position, index=walk.index,
                                 is_domain=self.ua.failback(self.account, self.server).is_domain,
                                 registered_here=self.ua.registered_with(self.account, self.server, target))
        if why is not None:
            # register with the target first, send the request after the 2xx
            self.ua.decide(f"{self.method}: {why}: REGISTER with {target} before sending",
                           account=self.account, server=self.server, target=target)
            self.ua.register_at(self.account, self.server, target,
                                lambda ok, why: self._send_to(target) if ok else self._give_up(f"REGISTER first: {why}"))
            return
        self._send_to(target)

    def _send_to(self, target: Any) -> None:
        if self.cancelled:
            return
        d = self.ua.flow(target)
        d.addCallbacks(lambda flow: self._send_on(flow, target),
                       lambda f: self._give_up(f"transport failed: {f.getErrorMessage()}", sends=0))

    def _send_on(self, flow: Any, target: Any) -> None:
        if self.cancelled:
            return
        self.flow = flow
        cseq = self.ua.next_cseq(self)
        self.request = self.build(flow, target, cseq, dict(self._extra))
        self.tx = self.ua.run_transaction(self.request, flow, self.walk.max_sends, self._events)

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
                    elapsed = self.ua.now() - tx.started_at if tx is not None and tx.started_at is not None else 0.0
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
        if stale_retry or (outcome is Outcome.CHALLENGE and not self._auth_tried
                           and self.ua.can_authenticate(self.account)):
            self._auth_tried = True  # SPEC §3: one retry with digest
            try:
                self._extra[name] = self.ua.authorize(self.account, resp, self.request)
            except ValueError as e:
                self.ua.decide(f"{self.method} to {target}: cannot answer {resp.status} challenge: {e}",
                               account=self.account, server=self.server, target=target)
                self._answer(resp, target)
                return
            what = "stale nonce (stale=true) → retry once more with the new nonce" if stale_retry else \
                "challenge → retry with digest"
            self.ua.decide(f"{self.method} to {target}: {resp.status} {what}",
                           account=self.account, server=self.server, target=target)
            self._send_to(target)
            return
        if outcome is Outcome.MIN_EXPIRES and not self._min_expires_tried and self.method == "REGISTER":
            self._min_expires_tried = True  # SPEC §3: retry with the Min-Expires given
            try:
                self.min_expires = int((resp.headers.get("Min-Expires") or "").strip())
            except ValueError:
                self._answer(resp, target)
                return
            self.ua.decide(f"REGISTER to {target}: 423 → retry with Expires {self.min_expires}",
                           account=self.account, server=self.server, target=target)
            self._send_to(target)
            return
        if outcome is Outcome.NEXT_TARGET:
            sends = tx.sends if tx is not None else 1
            elapsed = self.ua.now() - tx.started_at if tx is not None and tx.started_at is not None else 0.0
            if tx is not None:
                self.ua.drop_transaction(tx)
            self._give_up(f"{resp.status} {resp.reason}", sends=sends, elapsed=elapsed)
            return
        self._answer(resp, target)

    def _answer(self, resp: Any, target: Any) -> None:
        self.done = True
        index = self.walk.index
        if self.only_target is None:
            self.ua.failback(self.account, self.server).answered(index, target, self.ua.now(), started=self.started_index)
            self.ua.note_working(self.account, self.server, target)
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
            where = f"next target {nxt}" if nxt is not None else f"no target left on server {self.server}"
        self.ua.decide(f"{self.method} to {target} gave up{how} ({reason}) → {where}",
                       account=self.account, server=self.server, target=target)
        if nxt is None:
            self._finish_failed(f"{self.method}: every target of server {self.server} failed (last: {reason})")
            return
        self._auth_tried = self._stale_tried = self._min_expires_tried = False
        self._extra.clear()
        self._attempt()

    def _finish_failed(self, reason: str) -> None:
        self.done = True
        self.on_failed(reason)
        self.request = None
