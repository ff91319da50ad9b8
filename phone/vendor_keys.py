"""A vendor phone's ``.cfg`` key names, per firmware generation: the one home of these names.

Why a table: a Yealink-style phone ignores a key it does not know, silently. A driver that writes
firmware-71 names to a firmware-8x phone (or the reverse) gets a phone that keeps its own DNS
server, its own transport, its own CA list, and every test then reads as a finding. Both sides of
the vendor conversation read the names from here: the harness's provisioning template
(``harness/vendor_cfg.py``) writes them, the bundled phone's vendor emulation
(``phone/emulation.py``) reads them, and ``docs/lab.md`` is generated from the same table.

Sources (the vendor's own documents; quoted where the names are used):

- **Generation 71** (firmware V70-V80): no ``static.`` prefix on network, security and
  auto-provisioning keys (``network.static_dns_enable``, ``security.user_password``,
  ``trusted_certificates.url``), one transport per account (``account.X.transport``, as the seed
  guide writes it). As in the vendor's V73 template (wazo-platform/wazo-provd-plugins,
  plugins/wazo_yealink/v73/templates/base.tpl: ``account.N.transport``, ``network.vlan.*``,
  ``security.user_name.admin``).
- **Generation 8x** (firmware V81 and later): ``static.network.*``, ``static.security.*``,
  ``static.auto_provision.*``, ``static.trusted_certificates.url``, and a transport per server
  (``account.X.sip_server.Y.transport_type``). As in the vendor's V84 common template (the
  "Network Internet", "Trusted Certificates" and "Action URL&URI" sections kept in
  wazo-platform/wazo-provd-plugins, plugins/wazo_yealink/v87/templates/base.tpl, and its
  ``account.N.sip_server.1.transport_type`` lines; V81 is the first plugin with ``static.``).

Keys that are the same in both (``account.X.sip_server.Y.address``, ``features.*``,
``action_url.*``, ``account.X.dns_cache_type``) are written once. Pure data and functions: no
Twisted here, so the harness can import it without the bundled phone.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Firmware", "Keys", "keys_for", "ACTION_URL_EVENTS", "REBOOT_PREFIXES", "translate_to_bundled",
           "parse_lines"]


class Firmware(enum.Enum):
    """A firmware generation: it decides the key names (``--sip-firmware 71|8x``)."""

    V71 = "71"
    V8X = "8x"


@dataclass(frozen=True)
class Keys:
    """The key names of one generation (``{x}`` an account, ``{y}`` a server)."""

    firmware: Firmware
    static_dns_enable: str
    primary_dns: str
    secondary_dns: str
    transport: str  # per account (71) or per server (8x): see ``per_server_transport``
    per_server_transport: bool
    trusted_certificates_url: str
    web_user: str
    web_password: str
    provisioning_url: str
    # the same in both generations
    show_action_uri_option: str = "features.show_action_uri_option"
    action_uri_limit_ip: str = "features.action_uri_limit_ip"
    action_uri_enable: str = "features.action_uri.enable"
    dns_cache_type: str = "account.{x}.dns_cache_type"
    action_url: str = "action_url.{event}"

    @property
    def network_prefix(self) -> str:
        """Keys under it make the phone reboot when they change (see :data:`REBOOT_PREFIXES`)."""
        return REBOOT_PREFIXES[self.firmware]

    def transport_keys(self, x: int) -> tuple[str, ...]:
        """The keys that set account ``x``'s transport in this generation."""
        if self.per_server_transport:
            return tuple(self.transport.format(x=x, y=y) for y in (1, 2))
        return (self.transport.format(x=x),)


_KEYS = {
    Firmware.V71: Keys(Firmware.V71, static_dns_enable="network.static_dns_enable",
                       primary_dns="network.primary_dns", secondary_dns="network.secondary_dns",
                       transport="account.{x}.transport", per_server_transport=False,
                       trusted_certificates_url="trusted_certificates.url",
                       web_user="security.user_name.admin", web_password="security.user_password",
                       provisioning_url="auto_provision.server.url"),
    Firmware.V8X: Keys(Firmware.V8X, static_dns_enable="static.network.static_dns_enable",
                       primary_dns="static.network.primary_dns", secondary_dns="static.network.secondary_dns",
                       transport="account.{x}.sip_server.{y}.transport_type", per_server_transport=True,
                       trusted_certificates_url="static.trusted_certificates.url",
                       web_user="static.security.user_name.admin", web_password="static.security.user_password",
                       provisioning_url="static.auto_provision.server.url"),
}

#: Auto Provisioning Guide, "Resolving and Updating Configurations": "For update of some specific
#: configurations which require a reboot before taking effect, for example, network configurations,
#: the IP phone will reboot to make the configurations effective after the auto provisioning
#: process is completed." The network keys of each generation.
REBOOT_PREFIXES = {Firmware.V71: "network.", Firmware.V8X: "static.network."}

#: The Action URL events both sides use, with the vendor's description (Administrator's Guide for
#: SIP-T58V/T58A/T56A/CP960 IP Phones, "Action URL", pre-defined events; the key names as in the V84
#: common template's "Action URL&URI" section). There is no ``ringback`` and no
#: ``call_proceeding``: a failed outgoing call comes as ``remote_busy`` (rejected) or
#: ``cancel_callout`` (the phone cancelled it in ring-back), never as a "ringback" or a 100 Trying.
ACTION_URL_EVENTS = {
    "setup_completed": "When the IP phone completes startup.",
    "setup_autop_finish": "When the IP phone completes auto provisioning via power on.",
    "registered": "When the IP phone successfully registers an account.",
    "unregistered": "When the IP phone logs off the registered account.",
    "register_failed": "When the IP phone fails to register an account.",
    "incoming_call": "When the IP phone receives an incoming call.",
    "outgoing_call": "When the IP phone places a call.",
    "call_established": "When the IP phone establishes a call.",
    "call_terminated": "When the IP phone terminates a call.",
    "reject_incoming_call": "When the IP phone rejects an incoming call.",
    "cancel_callout": "When the phone cancels an outgoing call in the ring-back state.",
    "remote_busy": "When an outgoing call is rejected.",
    "call_remote_canceled": "When the remote party cancels the outgoing call in the ringing state.",
}


def keys_for(firmware: Firmware | str) -> Keys:
    """The key names of ``firmware`` (a :class:`Firmware` or its text, ``"71"`` / ``"8x"``)."""
    try:
        return _KEYS[Firmware(firmware)]
    except ValueError:
        raise ValueError(f"firmware {firmware!r}: expected one of {', '.join(f.value for f in Firmware)}") from None


_LINE = re.compile(r"\s*([^#=\s][^=]*?)\s*=\s*(.*?)\s*$")


def parse_lines(text: str) -> list[tuple[int, str, str]]:
    """``(line number, key, value)`` of each ``key = value`` line (comments, blanks and the rest skipped)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if m:
            out.append((n, m.group(1), m.group(2)))
    return out


_SERVER_TRANSPORT = re.compile(r"account\.([0-9]+)\.sip_server\.([12])\.transport_type")


#: Keys the vendor phone acts on itself (network, web login, remote control, callbacks, certificates,
#: provisioning) and the bundled phone must not: they never reach its ``.cfg``.
VENDOR_ONLY_PREFIXES = ("static.", "network.", "security.", "action_url.", "features.action_uri",
                        "features.show_action_uri_option", "trusted_certificates.", "auto_provision.", "sipharness.")


def translate_to_bundled(text: str, firmware: Firmware | str) -> tuple[str, dict[str, str]]:
    """A vendor file of ``firmware``'s generation → (the bundled phone's ``.cfg`` text, the vendor-only keys).

    Line for line (the bundled phone's errors keep the vendor file's line numbers): keys the
    bundled phone shares pass unchanged; this generation's per-server transport becomes the
    account's transport (server 1's: the bundled phone has one per account); the other
    generation's transport key, which this phone does not know, is dropped; vendor-only keys
    (:data:`VENDOR_ONLY_PREFIXES`, ``account.X.dns_cache_type``) become comments and are returned
    by name, last value wins, for the emulation to act on as a vendor phone would."""
    keys = keys_for(firmware)
    vendor: dict[str, str] = {}
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            out.append(line)
            continue
        key, value = m.group(1), m.group(2)
        st = _SERVER_TRANSPORT.fullmatch(key)
        if st and keys.per_server_transport and st.group(2) == "1":
            out.append(f"account.{st.group(1)}.transport = {value}")
            vendor[key] = value
        elif (st or key.startswith(VENDOR_ONLY_PREFIXES) or key.endswith(".dns_cache_type")
              or _is_other_generation(key, keys)):
            vendor[key] = value
            out.append("# " + line)
        else:
            out.append(line)
    return "\n".join(out) + "\n", vendor


def _is_other_generation(key: str, keys: Keys) -> bool:
    """An account key this generation does not know: 71's per-account transport on an 8x phone."""
    return keys.per_server_transport and re.fullmatch(r"account\.[0-9]+\.transport", key) is not None
