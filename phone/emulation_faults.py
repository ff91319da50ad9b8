"""The ways the emulated vendor phone can be set up badly on purpose (``--emulate-fault NAME``).

Why: the harness's lab preflight (SPEC §10, ``harness/preflight.py``) must be proven against every
kind of lab phone that is not ready, and against every documented vendor behaviour the driver has to
switch off. A fault that makes the phone ignore keys of its file *withholds* them
(:attr:`Fault.withheld`): they are dropped before the file is applied and the phone keeps its own
behaviour, which is the vendor's documented default (the remote-control prompt, DHCP's DNS, the DNS
cache, the factory CAs, no power-on report). The others break the phone another way.
"""

from __future__ import annotations

import enum
import fnmatch
from typing import Iterable

__all__ = ["Fault", "withhold", "EMULATION_DNS_PORT"]

#: Emulation only (a real phone asks port 53 and has no such key): the port of the file's static DNS.
EMULATION_DNS_PORT = "sipharness.emulation.primary_dns_port"


class Fault(enum.Enum):
    """A way the emulated phone is set up badly, as a lab phone can be (``--emulate-fault NAME``)."""

    IGNORE_DNS = "ignore-dns"  # keeps its own DNS server (none here): the file's static DNS server is withheld
    DHCP_DNS = "dhcp-dns"  # static DNS never enabled: asks the DNS server DHCP handed out
    DNS_CACHE = "dns-cache"  # keeps its DNS cache on (the documented default): the file's dns_cache_type is withheld
    REMOTE_CONTROL_PROMPT = "remote-control-prompt"  # asks "Allow remote control?": show_action_uri_option withheld
    REFUSE_CA = "refuse-ca"  # trusts only its factory CAs: the file's trusted_certificates.url is withheld
    NO_SETUP_EVENTS = "no-setup-events"  # never reports power-on: the file's action_url.setup_* are withheld
    NEVER_FETCH = "never-fetch"  # never fetches its file (its provisioning URL points nowhere)
    DEAD_CONTROL = "dead-control"  # its Action URI accepts connections and never answers
    NEVER_REGISTER = "never-register"  # its accounts stay disabled whatever the file says

    @property
    def withheld(self) -> tuple[str, ...]:
        """``.cfg`` keys (fnmatch patterns, both key generations) the phone ignores with this fault."""
        return _WITHHELD.get(self, ())


_WITHHELD = {Fault.IGNORE_DNS: ("static.network.primary_dns", "network.primary_dns", EMULATION_DNS_PORT),
             Fault.DHCP_DNS: ("static.network.static_dns_enable", "network.static_dns_enable"),
             Fault.DNS_CACHE: ("account.*.dns_cache_type",),
             Fault.REMOTE_CONTROL_PROMPT: ("features.show_action_uri_option",),
             Fault.REFUSE_CA: ("static.trusted_certificates.url", "trusted_certificates.url"),
             Fault.NO_SETUP_EVENTS: ("action_url.setup_completed", "action_url.setup_autop_finish"),
             Fault.NEVER_REGISTER: ("account.*.enable",)}


def withhold(text: str, faults: Iterable[Fault]) -> tuple[str, list[str]]:
    """The file without the lines of keys the ``faults`` withhold, and those keys (in file order)."""
    patterns = [p for f in faults for p in f.withheld]
    if not patterns:
        return text, []
    kept, dropped = [], []
    for line in text.splitlines(keepends=True):
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
        if key and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            dropped.append(key)
        else:
            kept.append(line)
    return "".join(kept), dropped
