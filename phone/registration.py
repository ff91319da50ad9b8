"""Registration of one account with one server (SPEC §4), refresh and retry.

- REGISTER To/From ``sip:user_name@<server address as configured>``, Contact with the address
  of the socket used for that target, ``Expires`` = configured expires; one Call-ID per
  (account, server), CSeq + 1 on every REGISTER.
- Refresh when 90 % of the granted expiry has passed [interp]; granted = the ``expires``
  parameter of the 200's Contact that is ours, else its Expires header, else what was asked
  (:func:`granted_expiry`).
- Every target of the server failed → "register_failed"; retry after reg_fail_retry_interval
  from the top of the list (a new request: failback picks its start) [interp]. A final answer
  that is not a failover trigger (403, 404, …) is a failed registration too, without failover.
- Un-REGISTER: Expires: 0 to the target the phone is registered with (successive fail-back,
  SPEC §6, and ``Phone.stop(unregister=True)``).

The I/O goes through :class:`phone.sender.ServerRequest` and the user agent; the timing rules
are the pure functions at the top, tested on floats.
"""

from __future__ import annotations

from typing import Any, Callable

from sipharness.sipcore.message import NameAddr, make_request

from sipharness.phone.sender import ServerRequest

__all__ = ["granted_expiry", "refresh_delay", "Registration", "REFRESH_FRACTION"]

REFRESH_FRACTION = 0.9  # SPEC §4 [interp]


def granted_expiry(response: Any, contact_uri: Any, requested: int) -> int:
    """Expiry the registrar granted: our Contact's ``expires`` param, else the Expires header,
    else ``requested`` (SPEC §4, RFC 3261 §10.2.4)."""
    for c in getattr(response, "contacts", []) or []:
        uri = c.uri
        if (uri.host == contact_uri.host and (uri.port or 5060) == (contact_uri.port or 5060)
                and uri.user == contact_uri.user):
            value = c.params.get("expires")
            if value is not None:
                try:
                    return int(value)
                except ValueError:
                    break
    if response.expires is not None:
        return int(response.expires)
    return int(requested)


def refresh_delay(granted: float) -> float:
    """Seconds after the 2xx when the refresh REGISTER starts (SPEC §4 [interp])."""
    return REFRESH_FRACTION * granted


class Registration:
    """REGISTER state of (account, server). ``state``: idle, registering, registered, failed."""

    __slots__ = ("ua", "account", "server", "state", "call_id", "cseq", "from_tag", "target", "flow", "contact",
                 "granted", "registered_at", "refresh_at", "request", "_timer", "on_registered", "on_failed",
                 "retry_on_failure", "wanted")  # one per (account, server) of every phone: no __dict__

    def __init__(self, ua: Any, account: int, server: int, *, on_registered: Callable[[int, float], Any] | None = None,
                 on_failed: Callable[[int, float], Any] | None = None, retry_on_failure: Callable[[], bool] | None = None):
        self.ua, self.account, self.server = ua, account, server
        self.state = "idle"
        self.call_id = ua.new_call_id()
        self.cseq = 0
        self.from_tag = ua.new_tag()
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
    def cfg(self) -> Any:
        return self.ua.server_cfg(self.account, self.server)

    @property
    def registered(self) -> bool:
        return self.state == "registered"

    # -- requests
    def build(self, flow: Any, target: Any, cseq: int, extra: dict, *, expires: int | None = None,
              sender: ServerRequest | None = None) -> Any:
        acct = self.ua.account_cfg(self.account)
        aor = f"sip:{acct.user_name}@{_host_text(self.cfg.address)}"
        contact_uri = self.ua.contact_uri(self.account, flow)
        if expires is None:
            expires = self.cfg.expires
            if sender is not None and sender.min_expires is not None:
                expires = sender.min_expires
        name = acct.display_name
        req = make_request(
            "REGISTER", self.ua.registrar_uri(self.account, self.server, target),
            from_=NameAddr(aor, display=name or None, params={"tag": self.from_tag}),
            to=NameAddr(aor, display=name or None),
            call_id=self.call_id, cseq=cseq, via=self.ua.via(flow), contact=NameAddr(contact_uri),
            headers=[("Expires", str(expires)), *extra.items(), ("User-Agent", self.ua.user_agent)],
        )
        return req

    def start(self, *, refresh: bool = False) -> None:
        """A new REGISTER (initial, refresh, retry or probe), from the start failback picks."""
        self.wanted = True
        self._cancel_timer()
        if self.request is not None and not self.request.done:
            return  # one at a time
        self.state = "registering" if self.state != "registered" else "registered"
        holder: dict[str, ServerRequest] = {}

        def build(flow, target, cseq, extra):
            return self.build(flow, target, cseq, extra, sender=holder["s"])

        self.request = holder["s"] = ServerRequest(
            self.ua, self.account, self.server, "REGISTER", build, refresh=refresh,
            on_answer=lambda resp, target, index: self._answered(resp, target, holder["s"]),
            on_failed=self._failed)
        self.request.start()

    def _answered(self, resp: Any, target: Any, sender: ServerRequest) -> None:
        now = self.ua.now()
        if 200 <= resp.status < 300:
            requested = sender.min_expires or self.cfg.expires
            contact_uri = self.ua.contact_uri(self.account, sender.flow)
            self.granted = granted_expiry(resp, contact_uri, requested)
            self.state = "registered"
            self.target, self.flow, self.contact = target, sender.flow, contact_uri
            self.registered_at = now
            self.refresh_at = now + refresh_delay(self.granted)
            if self.granted > 0:
                self._timer = self.ua.call_later(self.refresh_at - now, self._refresh)
            else:
                self.state = "idle"
            if self.on_registered:
                self.on_registered(self.server, now)
            # the event last: a listener may stop the phone from inside it
            self.ua.emit("registered", account=self.account, server=self.server, target=str(target),
                         detail=f"granted {self.granted} s, refresh at t={self.refresh_at:.3f}")
            return
        self._failed(f"REGISTER answered {resp.status} {resp.reason} by {target}")

    def _refresh(self) -> None:
        self._timer = None
        self.start(refresh=True)

    def _failed(self, reason: str) -> None:
        now = self.ua.now()
        was = self.state
        self.state = "failed"
        self.target = None
        if self.on_failed:
            self.on_failed(self.server, now)  # fallback decides first (successive: probes replace retries)
        interval = self.ua.account_cfg(self.account).reg_fail_retry_interval
        retry = self.wanted and self.retry_on_failure() and interval > 0
        detail = reason + (f"; retry in {interval} s" if retry else "")
        self.ua.emit("register_failed", account=self.account, server=self.server, detail=detail)
        if was == "registered":
            self.ua.emit("unregistered", account=self.account, server=self.server, detail="refresh failed")
        if retry:
            self._timer = self.ua.call_later(interval, self.start)  # SPEC §4: from the top of the list

    def register_at(self, target: Any, done: Callable[[bool, str], Any]) -> None:
        """register_on_enable (SPEC §5): one REGISTER to ``target`` only, no failover."""
        holder: dict[str, ServerRequest] = {}

        def build(flow, t, cseq, extra):
            return self.build(flow, t, cseq, extra, sender=holder["s"])

        def answered(resp, t, index):
            if 200 <= resp.status < 300:
                self._answered(resp, t, holder["s"])
                done(True, "")
            else:
                done(False, f"{resp.status} {resp.reason}")

        holder["s"] = ServerRequest(self.ua, self.account, self.server, "REGISTER", build, only_target=target,
                                    final_list=False, on_answer=answered, on_failed=lambda why: done(False, why))
        holder["s"].start()

    def unregister(self, done: Callable[[], Any] | None = None) -> None:
        """Stop refreshing; send Expires: 0 to the registered target (if any)."""
        self.wanted = False
        self._cancel_timer()
        if self.request is not None and not self.request.done:
            self.request.cancel()
        target, was = self.target, self.state
        self.state, self.target = "idle", None
        if was != "registered" or target is None:
            if done:
                done()
            return

        def build(flow, t, cseq, extra):
            return self.build(flow, t, cseq, extra, expires=0)

        def finished(*_: Any) -> None:
            self.ua.emit("unregistered", account=self.account, server=self.server, target=str(target),
                         detail="un-REGISTER (Expires: 0)")
            if done:
                done()

        self.request = ServerRequest(self.ua, self.account, self.server, "REGISTER", build, only_target=target,
                                     final_list=True, on_answer=finished, on_failed=finished)
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


def _host_text(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
