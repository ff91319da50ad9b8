"""Registration of one account with one server (SPEC §4), refresh and retry.

- REGISTER To/From ``sip:user_name@<server address as configured>``, Contact with the address
  of the socket used for that target, ``Expires`` = configured expires; one Call-ID per
  (account, server), CSeq + 1 on every REGISTER.
- What a 2xx grants (:func:`granted_expiry`, SPEC §4 revised 2026-12-01): a registration only
  if it lists this Contact with an expiry > 0 (our Contact's ``expires`` parameter, else the
  Expires header, else what was asked); an expiry longer than the one asked is used as the one
  asked [RFC 3261 §10.2.4, §10.3]. A 2xx that is unparsable, grants 0 or less, or omits our
  Contact is a failed attempt: "register_failed", retry as below, never "registered".
- Refresh when 90 % of the granted expiry has passed [interp].
- Every target of the server failed → "register_failed"; retry after reg_fail_retry_interval
  from the top of the list (a new request: failback picks its start) [interp]. A final answer
  that is not a failover trigger (403, 404, 408, …) is a failed registration too, without failover.
- Un-REGISTER: Expires: 0 to the target the phone is registered with (successive fail-back,
  SPEC §6, and ``Phone.stop(unregister=True)``).

The I/O goes through :class:`phone.sender.ServerRequest` and the :class:`RegistrationHost`
around it (a declared Protocol); the rules on what a 2xx grants and when to refresh are the
pure functions at the top, tested on their own.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Protocol

from sipharness.sipcore.build import make_request
from sipharness.sipcore.events import EventKind
from sipharness.sipcore.ids import new_call_id, new_tag
from sipharness.sipcore.nameaddr import NameAddr

from sipharness.phone import addressing
from sipharness.phone.accountserver import AccountServer
from sipharness.phone.sender import RequestHost, ServerRequest

__all__ = ["granted_expiry", "refresh_delay", "Registration", "RegistrationHost", "RegState", "REFRESH_FRACTION"]

REFRESH_FRACTION = 0.9  # SPEC §4 [interp]


class RegistrationHost(RequestHost, Protocol):
    """What a :class:`Registration` needs beyond a :class:`phone.sender.RequestHost`."""

    local_host: str

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any: ...


def granted_expiry(response: Any, contact_uri: Any, requested: int) -> tuple[int | None, str]:
    """What a 2xx to REGISTER grants our Contact (SPEC §4, RFC 3261 §10.2.4, §10.3).

    Returns (seconds, "") for a registration, or (None, why) for a 2xx that is not one: it
    omits our Contact, is unparsable, or grants 0 or less. More than ``requested`` is cut to
    ``requested``."""
    try:
        ours = [c for c in response.contacts if addressing.same_contact(c.uri, contact_uri)]
        if not ours:
            return None, "the 2xx does not list our Contact"
        value = ours[0].params.get("expires")
        if value is not None:
            where = f"Contact expires={value[:20]!r}"
            granted = _delta_seconds(value)
        elif response.headers.get("Expires") is not None:
            where = f"Expires {response.headers.get('Expires')[:20]!r}"
            granted = _delta_seconds(response.headers.get("Expires"))
        else:
            # SPEC §4 [interp]: our Contact is bound but no expiry is named (the registrar broke RFC 3261
            # §10.3 step 8; §10.2.4 gives the UA no rule): the time asked is the time granted
            return int(requested), ""
    except ValueError as e:  # SipParseError too: a header the parser left for later is malformed
        return None, f"the 2xx is unparsable ({e})"
    if granted is None:
        return None, f"the 2xx grants an unparsable expiry ({where})"
    if granted <= 0:
        return None, f"the 2xx grants {granted} s"
    return min(granted, int(requested)), ""


def _delta_seconds(text: str) -> int | None:
    """A delta-seconds value (an optional sign read too, so that -5 is "grants -5 s"), or None."""
    t = text.strip()
    digits = t[1:] if t[:1] in "+-" else t
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > 12:
        return 10**12 if t[:1] != "-" else -1  # huge: cut to what was asked (or a negative grant)
    return int(t[:1] + digits) if t[:1] == "-" else int(digits)


def refresh_delay(granted: float) -> float:
    """Seconds after the 2xx when the refresh REGISTER starts (SPEC §4 [interp])."""
    return REFRESH_FRACTION * granted


class RegState(enum.StrEnum):
    """Where a registration is: IDLE → REGISTERING → REGISTERED (refreshes keep it there) or
    FAILED (retried: REGISTERING again); an un-REGISTER or a stop goes back to IDLE."""

    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class Registration:
    """REGISTER state of one :class:`AccountServer` (``state``: a :class:`RegState`)."""

    __slots__ = ("host", "server", "state", "call_id", "cseq", "from_tag", "target", "flow", "contact",
                 "granted", "registered_at", "refresh_at", "request", "_timer", "on_registered", "on_failed",
                 "retry_on_failure", "wanted")  # one per (account, server) of every phone: no __dict__

    def __init__(self, host: RegistrationHost, server: AccountServer, *,
                 on_registered: Callable[[int, float], Any] | None = None,
                 on_failed: Callable[[int, float], Any] | None = None,
                 retry_on_failure: Callable[[], bool] | None = None):
        self.host, self.server = host, server
        self.state = RegState.IDLE
        self.call_id = new_call_id(host.local_host)
        self.cseq = 0
        self.from_tag = new_tag()
        self.target: Any = None  # registered with
        self.flow: Any = None
        self.contact: Any = None
        self.granted: int | None = None
        self.registered_at: float | None = None
        self.refresh_at: float | None = None
        self.request: ServerRequest | None = None
        self._timer: Any = None
        self.on_registered = on_registered
        self.on_failed = on_failed
        self.retry_on_failure = retry_on_failure or (lambda: True)
        self.wanted = False  # keep this registration up (refresh, retry)

    @property
    def registered(self) -> bool:
        return self.state is RegState.REGISTERED

    def _next_cseq(self) -> int:
        self.cseq += 1
        return self.cseq

    # -- requests
    def build(self, flow: Any, target: Any, cseq: int, extra: dict, *, expires: int | None = None,
              sender: ServerRequest | None = None) -> Any:
        acct, cfg = self.server.account, self.server.cfg
        aor = addressing.aor(acct, cfg)
        if expires is None:
            expires = cfg.expires
            if sender is not None and sender.min_expires is not None:
                expires = sender.min_expires
        name = acct.display_name or None
        return make_request(
            "REGISTER", addressing.registrar_uri(cfg, target),
            from_=NameAddr(aor, display=name, params={"tag": self.from_tag}), to=NameAddr(aor, display=name),
            call_id=self.call_id, cseq=cseq, via=addressing.via(flow),
            contact=NameAddr(addressing.contact_uri(acct, flow)),
            headers=[("Expires", str(expires)), *extra.items(), ("User-Agent", addressing.USER_AGENT)],
        )

    def _sender(self, *, on_answer: Callable[..., Any], on_failed: Callable[[str], Any], expires: int | None = None,
                **kw: Any) -> ServerRequest:
        holder: list[ServerRequest] = []

        def build(flow: Any, target: Any, cseq: int, extra: dict) -> Any:
            return self.build(flow, target, cseq, extra, expires=expires, sender=holder[0])

        sender = ServerRequest(self.host, self.server, "REGISTER", build, next_cseq=self._next_cseq,
                               on_answer=lambda resp, target, index: on_answer(resp, target, holder[0]),
                               on_failed=on_failed, **kw)
        holder.append(sender)
        return sender

    def start(self, *, refresh: bool = False) -> None:
        """A new REGISTER (initial, refresh, retry or probe), from the start failback picks."""
        self.wanted = True
        self._cancel_timer()
        if self.request is not None and not self.request.done:
            return  # one at a time
        if self.state is not RegState.REGISTERED:
            self.state = RegState.REGISTERING
        self.request = self._sender(on_answer=self._answered, on_failed=self._failed, refresh=refresh)
        self.request.start()

    def _answered(self, resp: Any, target: Any, sender: ServerRequest) -> None:
        if not 200 <= resp.status < 300:
            self._failed(f"REGISTER answered {resp.status} {resp.reason} by {target}")
            return
        why = self._accept(resp, target, sender)
        if why is not None:  # SPEC §4: not a registration, a failed attempt on that target
            self._failed(f"REGISTER answered {resp.status} by {target}, not a registration: {why}")

    def _accept(self, resp: Any, target: Any, sender: ServerRequest) -> str | None:
        """Take a 2xx as the registration it grants; why it is none, if it is not (SPEC §4)."""
        requested = sender.min_expires or self.server.cfg.expires
        contact_uri = addressing.contact_uri(self.server.account, sender.flow)
        granted, why = granted_expiry(resp, contact_uri, requested)
        if granted is None:
            return why
        now = self.host.now()
        self.granted = granted
        self.state = RegState.REGISTERED
        self.target, self.flow, self.contact = target, sender.flow, contact_uri
        self.registered_at = now
        self.refresh_at = now + refresh_delay(granted)
        self._timer = self.host.call_later(self.refresh_at - now, self._refresh)
        if self.on_registered:
            self.on_registered(self.server.index, now)
        # the event last: a listener may stop the phone from inside it
        self.host.emit(EventKind.REGISTERED, account=self.server.x, server=self.server.index, target=str(target),
                       detail=f"granted {granted} s, refresh at t={self.refresh_at:.3f}")
        return None

    def _refresh(self) -> None:
        self._timer = None
        self.start(refresh=True)

    def _failed(self, reason: str) -> None:
        now = self.host.now()
        was = self.state
        self.state = RegState.FAILED
        self.target = None
        if self.on_failed:
            self.on_failed(self.server.index, now)  # fallback decides first (probes may replace retries)
        interval = self.server.account.reg_fail_retry_interval
        retry = self.wanted and self.retry_on_failure() and interval > 0
        detail = reason + (f"; retry in {interval} s" if retry else "")
        x, y = self.server.x, self.server.index
        self.host.emit(EventKind.REGISTER_FAILED, account=x, server=y, detail=detail)
        if was is RegState.REGISTERED:
            self.host.emit(EventKind.UNREGISTERED, account=x, server=y, detail="refresh failed")
        if retry:
            self._timer = self.host.call_later(interval, self.start)  # SPEC §4: from the top of the list

    def register_at(self, target: Any, done: Callable[[bool, str], Any]) -> None:
        """register_on_enable (SPEC §5): one REGISTER to ``target`` only, no failover."""

        def answered(resp: Any, t: Any, sender: ServerRequest) -> None:
            if not 200 <= resp.status < 300:
                done(False, f"{resp.status} {resp.reason}")
                return
            why = self._accept(resp, t, sender)
            done(why is None, why or "")

        self._sender(on_answer=answered, on_failed=lambda why: done(False, why), only_target=target,
                     final_list=False).start()

    def unregister(self, done: Callable[[], Any] | None = None) -> None:
        """Stop refreshing; send Expires: 0 to the registered target (if any)."""
        self.wanted = False
        self._cancel_timer()
        if self.request is not None and not self.request.done:
            self.request.cancel()
        target, was = self.target, self.state
        self.state, self.target = RegState.IDLE, None
        if was is not RegState.REGISTERED or target is None:
            if done:
                done()
            return

        def finished(*_: Any) -> None:
            self.host.emit(EventKind.UNREGISTERED, account=self.server.x, server=self.server.index,
                           target=str(target), detail="un-REGISTER (Expires: 0)")
            if done:
                done()

        self.request = self._sender(on_answer=finished, on_failed=finished, expires=0, only_target=target,
                                    final_list=True)
        self.request.start()

    def stop(self) -> None:
        self.wanted = False
        self._cancel_timer()
        if self.request is not None:
            self.request.cancel()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
