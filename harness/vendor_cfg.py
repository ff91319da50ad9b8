"""The provisioning template: the file a vendor phone gets, in its firmware's key names.

Why one module: every key the harness sets on a lab phone is decided here, and ``docs/lab.md``
is generated from the same rows (:func:`driver_rows`), so the lab's checklist and the driver can
never disagree. The scenario's ``.cfg`` is written in the seed guide's names (SPEC §1); this
module turns it into the phone's generation (:mod:`phone.vendor_keys`) and adds what the driver
needs, each row with the vendor document it follows:

- **static DNS** (``static.network.static_dns_enable = 1`` and ``primary_dns``): a phone on DHCP
  otherwise asks the DNS server DHCP handed out and never the fake DNS. The vendor has no DNS
  port key (``static.network.primary_dns_port`` is the bundled phone's own): a lab phone asks
  port 53, so the fake DNS of a lab listens there; the emulated phone on loopback gets the port
  in an emulation-only key. The network keys never change within a session: a phone "will reboot
  to make the configurations effective" when they do (Auto Provisioning Guide).
- **DNS cache off** (``account.X.dns_cache_type = 0``): "0-Perform real-time DNS query rather
  than using DNS cache", default 1 (Admin Guide, "Static DNS Cache"). Every test brings the same
  names on new ports; a cached answer is the previous test's.
- **remote control without the prompt** (``features.show_action_uri_option = 0``: "the phone will
  not pop up the Allow Remote Control prompt when receiving an HTTP or HTTPS GET request [...] The
  phone will directly perform the specified action") and the allow list
  (``features.action_uri_limit_ip``).
- **our CA** (``static.trusted_certificates.url``, ``trusted_certificates.url`` on firmware 71):
  the harness's test CA, served by the provisioning server (``/ca.pem``), for SIP over TLS.
- **the Action URLs** of :data:`phone.vendor_keys.ACTION_URL_EVENTS`, each calling
  ``/action/<event>`` with the documented variables (``$phone_time`` is the emulation's extension:
  a lab phone leaves it as written and the driver ignores it).
- **a serial line** (``## ... file N``): every file differs, so its MD5 does; a phone "will
  complete the auto provisioning without repeated update" when the MD5 matches the last file's.

Pure functions (no I/O): the driver serves what :func:`vendor_cfg` returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipharness.phone.vendor_keys import ACTION_URL_EVENTS, Firmware, keys_for

from .translation import read_cfg

__all__ = ["Template", "vendor_cfg", "driver_rows", "Row", "CALLBACK_QUERY", "EMULATION_DNS_PORT", "CA_PATH",
           "scenario_dns"]

#: What every Action URL carries (the vendor's documented variables, plus the emulation's $phone_time).
CALLBACK_QUERY = "mac=$mac&ip=$ip&user=$active_user&host=$active_host&call_id=$call_id&phone_time=$phone_time"
#: The emulated phone's static DNS port (phone.emulation.EMULATION_DNS_PORT; written only when emulating).
EMULATION_DNS_PORT = "sipharness.emulation.primary_dns_port"
CA_PATH = "ca.pem"  # where the provisioning server serves the harness's CA
_SCENARIO_DNS = ("static.network.primary_dns", "static.network.primary_dns_port")
_ACCOUNT_TRANSPORT = re.compile(r"account\.([0-9]+)\.transport")
_ACCOUNT_ENABLE = re.compile(r"account\.([0-9]+)\.enable")
_ACCOUNT = re.compile(r"account\.([0-9]+)\.")


@dataclass(frozen=True)
class Template:
    """What the driver's part of a file depends on."""

    firmware: Firmware = Firmware.V8X
    lab_address: str = "LAB"  # the harness host on the lab network (allow list)
    base_url: str = "http://LAB:PORT/"  # the provisioning server
    dns_host: str = "LAB"  # the fake DNS (port 53 on a lab; any port for the emulation)
    dns_port: int = 53
    emulate: bool = False
    with_ca: bool = True


@dataclass(frozen=True)
class Row:
    """One key the driver writes: its name, value, why (the document it follows)."""

    key: str
    value: str
    why: str


def scenario_dns(cfg_text: str) -> tuple[str | None, int]:
    """The fake DNS the scenario's file names (``static.network.primary_dns`` and its port; 53 if none)."""
    cfg = read_cfg(cfg_text, "<scenario .cfg>")
    port = cfg.get("static.network.primary_dns_port", "")
    return cfg.get("static.network.primary_dns"), int(port) if port.isdigit() else 53


def _accounts(cfg_text: str) -> list[int]:
    return sorted({int(m.group(1)) for key in read_cfg(cfg_text, "<scenario .cfg>") if (m := _ACCOUNT.match(key))})


def driver_rows(t: Template, accounts: list[int] | tuple[int, ...] = (1,)) -> list[Row]:
    """The keys the driver adds to every file (in order), with the reason for each."""
    k = keys_for(t.firmware)
    base = t.base_url.rstrip("/")
    rows = [
        Row(k.static_dns_enable, "1", "ask the file's DNS server, not the one DHCP hands out (Admin Guide, "
                                      "network settings; a phone reboots when it changes)"),
        Row(k.primary_dns, t.dns_host, "the fake DNS (a lab phone asks port 53)"),
    ]
    if t.emulate:
        rows.append(Row(EMULATION_DNS_PORT, str(t.dns_port), "emulation only: the fake DNS's port on loopback "
                                                              "(never written for a lab phone)"))
    rows += [Row(k.dns_cache_type.format(x=x), "0", "no DNS cache: every test brings the same names on new "
                                                    "ports (Admin Guide, Static DNS Cache: default 1)")
             for x in accounts]
    rows += [
        Row(k.show_action_uri_option, "0", "no 'Allow remote control?' prompt on the first Action URI "
                                           "(Admin Guide, Action URI Configuration: default 1)"),
        Row(k.action_uri_limit_ip, t.lab_address, "accept the Action URI from the harness only"),
    ]
    if t.with_ca:
        rows.append(Row(k.trusted_certificates_url, f"{base}/{CA_PATH}", "trust the harness's test CA for SIP "
                                                                         "over TLS (Admin Guide, TLS: custom "
                                                                         "trusted certificates)"))
    rows += [Row(k.action_url.format(event=event), f"{base}/action/{event}?{CALLBACK_QUERY}", doc)
             for event, doc in ACTION_URL_EVENTS.items()]
    return rows


def vendor_cfg(cfg_text: str, t: Template, *, park: bool = False, serial: int = 0, mac: str = "") -> str:
    """The file the phone gets: the scenario's keys in ``t.firmware``'s names, then :func:`driver_rows`.

    ``park``: every enabled account disabled (what a phone between tests is left with).
    ``serial``: a line that makes every file's MD5 new."""
    k = keys_for(t.firmware)
    out = ["#!version:1.0.0.1", f"## sip-redundancy-harness: file {serial} for {mac or 'the phone'}"
                                f"{' (parked: every account disabled)' if park else ''}"]
    for line in cfg_text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep:
            out.append(line)
            continue
        if key in _SCENARIO_DNS:
            continue  # the driver writes the DNS in the phone's own names (rows below)
        if park and _ACCOUNT_ENABLE.fullmatch(key) and value == "1":
            value = "0"
        m = _ACCOUNT_TRANSPORT.fullmatch(key)
        if m:
            out += [f"{name} = {value}" for name in k.transport_keys(int(m.group(1)))]
            continue
        out.append(f"{key} = {value}")
    out.append("## added by sip-redundancy-harness (harness/vendor_cfg.py; docs/lab.md lists every key and why)")
    out += [f"{r.key} = {r.value}" for r in driver_rows(t, _accounts(cfg_text) or [1])]
    return "\n".join(out) + "\n"
