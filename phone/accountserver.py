"""One ``sip_server.Y`` of one account, as the phone uses it (SPEC §1, §4, §5).

What a new request to a server needs to know lives here, in one object per (account, server):
the settings, the failback state (:class:`phone.failback.Failback`), the registration
(:class:`phone.registration.Registration`), where new requests start and which target last
answered. :class:`phone.sender.ServerRequest` reads it; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from sipharness.phone.failback import Failback
from sipharness.phone.dnsrecords import is_ip_literal

__all__ = ["AccountServer"]


class AccountServer:
    """Server ``index`` (1 or 2) of ``account`` (an ``AccountConfig``).

    ``final``: this server's list holds the last target a request can go to (server 2, or
    server 1 when no server 2 is configured), which keeps the full RFC 3261 timeout (SPEC §3).
    """

    __slots__ = ("account", "index", "cfg", "failback", "final", "registration", "start_target",
                 "working_target")  # two per account of every phone: no __dict__

    def __init__(self, account: Any, index: int):
        self.account = account
        self.index = index
        self.cfg = account.servers[index]
        self.failback = Failback(self.cfg.failback_mode, self.cfg.failback_timeout,
                                 is_domain=not is_ip_literal(self.cfg.address))
        self.final = index == 2 or not account.servers[2].configured
        self.registration: Any = None  # set by the user agent (it needs this object first)
        self.start_target: Any = None  # where the last new request started
        self.working_target: Any = None  # the target that last answered a new request

    @property
    def x(self) -> int:
        """The account's index."""
        return self.account.index

    def note_start(self, target: Any) -> str | None:
        """A new request starts at ``target``; the "target" event's text when that changed."""
        prev, self.start_target = self.start_target, target
        if prev is None or prev.key == target.key:
            return None
        return f"new requests start at {target} (was {prev})"

    def registered_on(self, target: Any) -> bool:
        """The registration is up, on this very target (SPEC §1 only_signal_with_registered)."""
        reg = self.registration
        return reg is not None and reg.registered and reg.target is not None and reg.target.key == target.key

    def __repr__(self) -> str:
        return f"<AccountServer account {self.x} server {self.index} {self.cfg.address!r}>"
