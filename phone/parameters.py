"""The SPEC §1 parameter table: every key the bundled phone reads, with its range, default and source.

One table, :data:`PARAMETERS`, maps each key pattern to (attribute, parser, default, range text,
SPEC tag). Reading a ``.cfg`` file (``cfgfile.py``), ``PhoneConfig.set``/``get`` and dumping
(``config.py``) are all driven by it: there is no per-key code anywhere else, so a key, its range
and its default each have this one home.

Choices where the SPEC and the guide are silent (all [interp]):

- Integers are ASCII decimal with an optional sign (``3.5``, ``abc``, ``1_000``, ``٣`` refused).
- A known key with an account index outside 1..6 (or server index outside 1..2) is reported by
  :func:`match_key` with the reason, so the reader can keep it as an unknown key with a warning
  rather than refuse it: real phones with 16 accounts ship such files. Indices are canonical
  decimals (``account.01.enable`` is not a table key).
- A server address is an IPv4/IPv6 literal (no brackets) or an LDH host name (labels 1..63
  characters of letters, digits and hyphens, not starting or ending with a hyphen, 253
  characters at most, one trailing dot allowed); a name whose last label is all digits must be
  a valid IPv4 literal.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["ACCOUNTS", "SERVERS", "InvalidValue", "Parameter", "PARAMETERS", "match_key"]

ACCOUNTS = range(1, 7)  # SPEC §1 [seed]: "X ranges from 1 to 6"
SERVERS = range(1, 3)  # SPEC §1: sip_server.Y with Y in 1..2


class InvalidValue(Exception):
    """Raised by a value parser; the message is the reason (the reader adds the range)."""


# --------------------------------------------------------------------------- value parsers

_INT_RE = re.compile(r"[+-]?[0-9]+")


def _to_int(text: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise InvalidValue("not a decimal integer")
    if len(text.lstrip("+-").lstrip("0")) > 12:  # avoid converting megabyte-long digit strings
        raise InvalidValue("out of range")
    return int(text)


def _int_range(lo: int, hi: int) -> Callable[[str], tuple[Any, str | None]]:
    def parse(text: str) -> tuple[Any, str | None]:
        n = _to_int(text)
        if not lo <= n <= hi:
            raise InvalidValue("out of range")
        return n, None

    return parse


def _failback_timeout(text: str) -> tuple[Any, str | None]:
    # SPEC §1: 0 or 60..65535 s; 1..59 accepted with a warning and used as 60 [vendor].
    n = _to_int(text)
    if n == 0 or 60 <= n <= 65535:
        return n, None
    if 1 <= n <= 59:
        return 60, "below 60 s: accepted and used as 60 [vendor]"
    raise InvalidValue("out of range")


def _any_text(text: str) -> tuple[Any, str | None]:
    return text, None


def _choice(*values: str) -> Callable[[str], tuple[Any, str | None]]:
    def parse(text: str) -> tuple[Any, str | None]:
        if text not in values:
            raise InvalidValue("not one of the allowed words")
        return text, None

    return parse


def _ip_literal(text: str) -> tuple[Any, str | None]:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue("not an IPv4/IPv6 literal") from None
    return text, None


_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _host(text: str) -> tuple[Any, str | None]:
    try:
        ipaddress.ip_address(text)
        return text, None
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        raise InvalidValue("not an IP literal, and not a host name of 1..253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise InvalidValue(f"not an IP literal, and label {label!r} is not 1..63 letters/digits/hyphens")
    if labels[-1].isdigit():
        raise InvalidValue("not a valid IP literal (a host name cannot end in an all-digit label)")
    return text, None


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Parameter:
    """One row of the table: ``pattern`` uses ``{X}`` for the account and ``{Y}`` for the server.

    ``parse(text)`` returns (value, warning or None) or raises :class:`InvalidValue`."""

    pattern: str
    attr: str
    parse: Callable[[str], tuple[Any, str | None]]
    default: Any
    range_text: str
    spec: str

    @property
    def scope(self) -> str:
        if "{Y}" in self.pattern:
            return "server"
        if "{X}" in self.pattern:
            return "account"
        return "global"

    def key(self, x: int | None = None, y: int | None = None) -> str:
        return self.pattern.replace("{X}", str(x)).replace("{Y}", str(y))

    @staticmethod
    def format(value: Any) -> str:
        return "" if value is None else str(value)


_BOOL = "0..1"
_A = "account.{X}."
_S = "account.{X}.sip_server.{Y}."

PARAMETERS: tuple[Parameter, ...] = (
    # global keys (bundled extras, SPEC §2/§7 need them; vendor key names where one exists)
    Parameter("static.network.primary_dns", "dns_server", _ip_literal, "",
              "IPv4/IPv6 literal or empty", "SPEC §2 [interp, bundled extra]"),
    Parameter("static.network.primary_dns_port", "dns_port", _int_range(1, 65535), 53,
              "1..65535", "SPEC §2 [interp, bundled extra]"),
    Parameter("sip.listen_port", "sip_listen_port", _int_range(0, 65535), 5060,
              "0..65535 (0 = ephemeral)", "SPEC §4 [interp, bundled extra]"),
    Parameter("features.auto_answer_delay", "auto_answer_delay", _int_range(0, 3600), 0,
              "0..3600 s", "SPEC §7 [interp, bundled extra range]"),
    Parameter("features.lines", "lines", _int_range(1, 32), 2,
              "1..32 calls at once (an incoming call beyond them gets 486)", "SPEC §7 [interp, bundled extra]"),
    Parameter("features.ring_timeout", "ring_timeout", _int_range(10, 3600), 180,
              "10..3600 s (an incoming call ringing longer gets 480)", "SPEC §7 [interp, bundled extra]"),
    # account keys
    Parameter(_A + "enable", "enable", _int_range(0, 1), 0, _BOOL, "SPEC §1 [seed]"),
    Parameter(_A + "label", "label", _any_text, "", "any text on one line", "SPEC §1 [seed]"),
    Parameter(_A + "display_name", "display_name", _any_text, "", "any text on one line", "SPEC §1 [seed]"),
    Parameter(_A + "auth_name", "auth_name", _any_text, "", "any text on one line", "SPEC §1 [seed]"),
    Parameter(_A + "user_name", "user_name", _any_text, "", "any text on one line", "SPEC §1 [seed]"),
    Parameter(_A + "password", "password", _any_text, "", "any text on one line", "SPEC §1 [seed]"),
    Parameter(_A + "transport", "transport", _int_range(0, 3), 0,
              "0..3 (0 UDP, 1 TCP, 2 TLS, 3 DNS-NAPTR)", "SPEC §1 [seed]"),
    Parameter(_A + "naptr_build", "naptr_build", _int_range(0, 1), 0,
              "0..1 (0 UDP SRV, 1 TCP/TLS SRV)", "SPEC §1 [seed]"),
    Parameter(_A + "fallback.redundancy_type", "fallback_redundancy_type", _int_range(0, 1), 0,
              "0..1 (0 concurrent, 1 successive)", "SPEC §1 [seed]"),
    Parameter(_A + "fallback.timeout", "fallback_timeout", _int_range(10, 2147483647), 120,
              "10..2147483647 s", "SPEC §1 [seed]"),
    Parameter(_A + "reg_fail_retry_interval", "reg_fail_retry_interval", _int_range(0, 1800), 30,
              "0..1800 s", "SPEC §1 [interp, vendor extra]"),
    Parameter(_A + "srv_select", "srv_select", _choice("seed", "rfc2782"), "seed",
              "seed or rfc2782", "SPEC §2 [bundled extra]"),
    Parameter(_A + "auto_answer", "auto_answer", _int_range(0, 1), 0, _BOOL, "SPEC §7 [vendor]"),
    # server keys
    Parameter(_S + "address", "address", _host, "",
              "IPv4/IPv6 literal or domain name, or empty", "SPEC §1 [seed]"),
    # SPEC §1: 0..65535, 0 = let DNS find it (the guide says 1..65535 but its own text uses port 0)
    Parameter(_S + "port", "port", _int_range(0, 65535), 5060,
              "0..65535 (0 = let DNS find it)", "SPEC §1 [seed]"),
    Parameter(_S + "expires", "expires", _int_range(30, 2147483647), 3600,
              "30..2147483647 s", "SPEC §1 [seed]"),
    Parameter(_S + "retry_counts", "retry_counts", _int_range(0, 20), 3, "0..20", "SPEC §1 [seed]"),
    Parameter(_S + "failback_mode", "failback_mode", _int_range(0, 3), 0,
              "0..3 (0 newRequests, 1 DNSTTL, 2 registration, 3 duration)", "SPEC §1 [seed]"),
    # SPEC §1: default 3600 [vendor]; 1..59 → warning, used as 60
    Parameter(_S + "failback_timeout", "failback_timeout", _failback_timeout, 3600,
              "0 or 60..65535 s (1..59 used as 60)", "SPEC §1 [seed, vendor]"),
    Parameter(_S + "register_on_enable", "register_on_enable", _int_range(0, 1), 0, _BOOL, "SPEC §1 [seed]"),
    Parameter(_S + "invite_retry_counts", "invite_retry_counts", _int_range(1, 10), None,  # "" = default = unset
              "1..10 or empty (unset)", "SPEC §1 [vendor extra]"),
    Parameter(_S + "only_signal_with_registered", "only_signal_with_registered", _int_range(0, 1), 0,
              _BOOL, "SPEC §1 [vendor extra]"),
)

_BY_PATTERN: dict[str, Parameter] = {p.pattern: p for p in PARAMETERS}
_KEY_RE = re.compile(r"account\.([0-9]+)\.(?:sip_server\.([0-9]+)\.)?(.+)")
_CANONICAL = re.compile(r"[1-9][0-9]{0,8}")


def match_key(key: str) -> tuple[Parameter, str | None, int | None, int | None] | None:
    """(parameter, why-unusable-or-None, x, y) for a key shaped like a table row, else None.

    ``why`` is set when the key names a row but an index outside :data:`ACCOUNTS` /
    :data:`SERVERS` (the reader keeps such a key as unknown, with the reason)."""
    if key in _BY_PATTERN and "{" not in key:
        return _BY_PATTERN[key], None, None, None
    m = _KEY_RE.fullmatch(key)
    if not m:
        return None
    xs, ys, rest = m.groups()
    pattern = _S + rest if ys is not None else _A + rest
    param = _BY_PATTERN.get(pattern)
    if param is None:
        return None
    if not _CANONICAL.fullmatch(xs) or (ys is not None and not _CANONICAL.fullmatch(ys)):
        return None
    x, y = int(xs), (int(ys) if ys is not None else None)
    if x not in ACCOUNTS:
        return param, f"account {x} outside {ACCOUNTS.start}..{ACCOUNTS.stop - 1}", x, y
    if y is not None and y not in SERVERS:
        return param, f"server {y} outside {SERVERS.start}..{SERVERS.stop - 1}", x, y
    return param, None, x, y
