"""The bundled phone's configuration: load, validate and write vendor ``.cfg`` files (SPEC §1).

Why hand-written: the vendor format looks like INI but is not. There are no sections, keys are
case-sensitive and dotted (``account.1.sip_server.2.port``), ``#`` starts a comment only at the
start of a line (a password may contain ``#`` or ``;``), the first line is a ``#!version:``
marker, and there are no continuation lines or interpolation. ``configparser`` would lowercase
keys, demand a section header and treat ``:``/``;`` specially, so a twenty-line tokenizer is
simpler and exact.

Design:

- One table, :data:`PARAMETERS`, maps each key pattern to (attribute, parser, default, range
  text, SPEC tag). Loading, ``set``/``get`` and dumping are all driven by it; no per-key code.
- A file is applied all-or-nothing: every line is parsed and validated first, all errors of the
  file are collected into one :class:`ConfigError`, and only a clean file is applied (on a copy
  of ``base``; ``base`` itself is never modified).
- Unknown keys (real provisioning files carry hundreds) are kept verbatim, in file order, last
  value wins, with one warning per key per file; :func:`dumps_config` writes them back, so a
  dump/load round trip is lossless.

Choices where the SPEC and the guide are silent (all [interp]):

- An empty value for a non-string key (integer, address, ``srv_select``) resets it to its
  default, as vendor phones do; for ``invite_retry_counts`` the default is "unset".
- Integers are ASCII decimal with an optional sign (``3.5``, ``abc``, ``1_000``, ``٣`` refused).
- A known key with an account index outside 1..6 (or server index outside 1..2) is kept as an
  unknown key with a warning, not refused: real phones with 16 accounts ship such files.
  Indices are canonical decimals (``account.01.enable`` is an unknown key).
- Whitespace trimmed around keys and values is space, tab and CR; lines end at LF (CRLF works).
  A UTF-8 BOM is skipped. A missing ``#!version:1.0.0.1`` first line is a warning.
- A key set twice: the later line wins (SPEC §1), with a warning naming both lines.
- A control character inside a key or value (NUL, a CR that does not end the line, ESC ...;
  TAB is allowed) is an error at that line: no phone field needs one, and a CR or NUL in a
  password or address is a provisioning mistake that would otherwise be sent on the wire.
- Bounds: a file of more than :data:`MAX_CONFIG_BYTES` or a line of more than
  :data:`MAX_LINE_CHARS` is refused with its size (real provisioning files are well under
  200 KB), so memory stays proportionate; only the first :data:`MAX_UNKNOWN_WARNINGS`
  unknown keys get a warning each, then one warning counts the rest.
- A server address is an IPv4/IPv6 literal (no brackets) or an LDH host name (labels 1..63
  characters of letters, digits and hyphens, not starting or ending with a hyphen, 253
  characters at most, one trailing dot allowed); a name whose last label is all digits must be
  a valid IPv4 literal.

Dump order (stable, documented): the version line; the global keys in table order; then for
account 1..6 the account keys in table order, then ``sip_server.1.*``, then ``sip_server.2.*``;
then unknown keys in the order they were first seen.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Callable

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_LINE_CHARS",
    "MAX_UNKNOWN_WARNINGS",
    "ACCOUNTS",
    "SERVERS",
    "VERSION_LINE",
    "AccountConfig",
    "ConfigError",
    "ConfigIssue",
    "Parameter",
    "PARAMETERS",
    "PhoneConfig",
    "ServerConfig",
    "dumps_config",
    "load_config",
    "loads_config",
]

ACCOUNTS = range(1, 7)  # SPEC §1 [seed]: "X ranges from 1 to 6"
SERVERS = range(1, 3)  # SPEC §1: sip_server.Y with Y in 1..2
VERSION_LINE = "#!version:1.0.0.1"  # SPEC §1 [seed-vendor convention]

_WS = " \t\r"  # what is trimmed around keys and values [interp]
MAX_CONFIG_BYTES = 2 * 1024 * 1024  # [interp] a .cfg larger than this is refused (real ones: < 200 KB)
MAX_LINE_CHARS = 8192  # [interp] a longer line is refused
MAX_UNKNOWN_WARNINGS = 100  # unknown keys warned one by one; the rest in one count
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0/C1 controls but TAB


# --------------------------------------------------------------------------- issues / errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem (error or warning) found at ``filename:line``; ``message`` carries the range."""

    filename: str
    line: int
    key: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}"
        if self.key:
            value = self.value if len(self.value) <= 300 else self.value[:297] + "..."
            return f"{where}: {self.key} = {value}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A configuration was refused; ``errors`` lists every problem found (nothing was applied)."""

    def __init__(self, errors: list[ConfigIssue]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self):
        return (type(self), (self.errors,))


class _Invalid(Exception):
    """Raised by a value parser; the message is the reason (the range is added by the caller)."""


# --------------------------------------------------------------------------- configuration objects


_SHARED_IDS: frozenset[int] = frozenset()  # ids of the shared default accounts and servers (below)


def _refuse_if_shared(obj: Any, name: str) -> None:
    if id(obj) in _SHARED_IDS:
        raise TypeError(
            f"cannot set {name!r} on a shared default {type(obj).__name__}: "
            "change configurations with PhoneConfig.set(key, value) or loads_config()")


@dataclass(slots=True)  # slots: one phone = 6 accounts × 2 servers of these; 10 000 phones per process
class ServerConfig:
    """``account.X.sip_server.Y.*`` (SPEC §1)."""

    address: str = ""
    port: int = 5060
    expires: int = 3600
    retry_counts: int = 3
    failback_mode: int = 0
    failback_timeout: int = 3600
    register_on_enable: int = 0
    invite_retry_counts: int | None = None
    only_signal_with_registered: int = 0

    @property
    def configured(self) -> bool:
        return self.address != ""

    def __setattr__(self, name: str, value: Any) -> None:
        _refuse_if_shared(self, name)
        object.__setattr__(self, name, value)


def _default_servers() -> dict[int, ServerConfig]:
    return {y: ServerConfig() for y in SERVERS}


@dataclass(slots=True)
class AccountConfig:
    """``account.X.*`` (SPEC §1); ``servers`` always holds keys 1 and 2.

    An account nobody configured is one shared, read-only default object per index (most phones
    enable one account of six): :meth:`PhoneConfig.set` and :func:`loads_config` give an account
    its own copy before changing it; setting an attribute of a shared default raises TypeError.
    """

    index: int
    enable: int = 0
    label: str = ""
    display_name: str = ""
    auth_name: str = ""
    user_name: str = ""
    password: str = ""
    servers: dict[int, ServerConfig] = field(default_factory=_default_servers)
    transport: int = 0
    naptr_build: int = 0
    fallback_redundancy_type: int = 0
    fallback_timeout: int = 120
    reg_fail_retry_interval: int = 30
    srv_select: str = "seed"
    auto_answer: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        _refuse_if_shared(self, name)
        object.__setattr__(self, name, value)


# The untouched accounts, shared by every PhoneConfig (see AccountConfig); never modified.
_SHARED_ACCOUNTS: dict[int, AccountConfig] = {x: AccountConfig(index=x) for x in ACCOUNTS}
_SHARED_IDS = frozenset({id(a) for a in _SHARED_ACCOUNTS.values()}
                        | {id(srv) for a in _SHARED_ACCOUNTS.values() for srv in a.servers.values()})


def _default_accounts() -> dict[int, AccountConfig]:
    return dict(_SHARED_ACCOUNTS)


def _own_account(cfg: "PhoneConfig", x: int) -> AccountConfig:
    """Account ``x`` of ``cfg``, first replaced by a private copy if it is the shared default."""
    account = cfg.accounts[x]
    if id(account) in _SHARED_IDS:
        account = cfg.accounts[x] = AccountConfig(index=x)
    return account


def _copy_config(cfg: "PhoneConfig") -> "PhoneConfig":
    """A deep copy that keeps sharing the shared default accounts."""
    out = copy.copy(cfg)
    out.accounts = {x: a if id(a) in _SHARED_IDS else copy.deepcopy(a) for x, a in cfg.accounts.items()}
    out.unknown = dict(cfg.unknown)
    out.warnings = list(cfg.warnings)
    return out


@dataclass(slots=True)
class PhoneConfig:
    """The phone's whole effective configuration. ``warnings`` and ``source`` do not take part in
    equality: two configs are equal when they make the phone behave the same (and keep the same
    unknown keys)."""

    accounts: dict[int, AccountConfig] = field(default_factory=_default_accounts)
    dns_server: str = ""
    dns_port: int = 53
    sip_listen_port: int = 5060
    auto_answer_delay: int = 0
    lines: int = 2
    ring_timeout: int = 180
    unknown: dict[str, str] = field(default_factory=dict)
    warnings: list[ConfigIssue] = field(default_factory=list, compare=False)
    source: str | None = field(default=None, compare=False)

    def account(self, x: int) -> AccountConfig:
        if x not in self.accounts:
            raise KeyError(f"account {x!r} does not exist (valid: {ACCOUNTS.start}..{ACCOUNTS.stop - 1})")
        return self.accounts[x]

    def set(self, key: str, value: str | int | None) -> None:
        """Validate and apply one key as if it were a file line; raises :class:`ConfigError`.

        ``value`` may be an int (written as decimal) or None (same as an empty value). Issues
        raised or warned here are located as ``<set>:0``."""
        if value is None:
            text = ""
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"value for {key!r} must be str, int or None, not {type(value).__name__}")
        else:
            text = str(value)
        issues: list[ConfigIssue] = []
        k = key.strip(_WS) if isinstance(key, str) else ""
        v = text.strip(_WS)
        if not k or k.startswith("#") or any(c in k for c in "=\n"):
            issues.append(ConfigIssue("<set>", 0, str(key), v,
                                      "not a valid key (valid: non-empty, no '=', no newline, not starting with '#')"))
        elif "\n" in v:
            issues.append(ConfigIssue("<set>", 0, k, v, "value spans lines (valid: one line of text)"))
        elif _control(k + "=" + v) is not None:
            issues.append(ConfigIssue("<set>", 0, k, _CONTROL.sub("?", v),
                                      f"{_control(k + '=' + v)} (valid: text without control characters; TAB allowed)"))
        if issues:
            raise ConfigError(issues)
        parsed = _Parsed()
        _parse_entry(k, v, "<set>", 0, parsed, self.unknown)
        if parsed.errors:
            raise ConfigError(parsed.errors)
        _apply(self, parsed)

    def get(self, key: str) -> str:
        """The effective value of ``key`` as text (what :func:`dumps_config` would write)."""
        match = _match_key(key)
        if match is not None and match[1] is None:
            param, target = match[0], _target(self, match[0], match[2], match[3])
            return param.format(getattr(target, param.attr))
        if key in self.unknown:
            return self.unknown[key]
        raise KeyError(key)


# --------------------------------------------------------------------------- value parsers

_INT_RE = re.compile(r"[+-]?[0-9]+")


def _to_int(text: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise _Invalid("not a decimal integer")
    if len(text.lstrip("+-").lstrip("0")) > 12:  # avoid converting megabyte-long digit strings
        raise _Invalid("out of range")
    return int(text)


def _int_range(lo: int, hi: int) -> Callable[[str], tuple[Any, str | None]]:
    def parse(text: str) -> tuple[Any, str | None]:
        n = _to_int(text)
        if not lo <= n <= hi:
            raise _Invalid("out of range")
        return n, None

    return parse


def _failback_timeout(text: str) -> tuple[Any, str | None]:
    # SPEC §1: 0 or 60..65535 s; 1..59 accepted with a warning and used as 60 [vendor].
    n = _to_int(text)
    if n == 0 or 60 <= n <= 65535:
        return n, None
    if 1 <= n <= 59:
        return 60, "below 60 s: accepted and used as 60 [vendor]"
    raise _Invalid("out of range")


def _any_text(text: str) -> tuple[Any, str | None]:
    return text, None


def _choice(*values: str) -> Callable[[str], tuple[Any, str | None]]:
    def parse(text: str) -> tuple[Any, str | None]:
        if text not in values:
            raise _Invalid("not one of the allowed words")
        return text, None

    return parse


def _ip_literal(text: str) -> tuple[Any, str | None]:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise _Invalid("not an IPv4/IPv6 literal") from None
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
        raise _Invalid("not an IP literal, and not a host name of 1..253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise _Invalid(f"not an IP literal, and label {label!r} is not 1..63 letters/digits/hyphens")
    if labels[-1].isdigit():
        raise _Invalid("not a valid IP literal (a host name cannot end in an all-digit label)")
    return text, None


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Parameter:
    """One row of the table: ``pattern`` uses ``{X}`` for the account and ``{Y}`` for the server."""

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


def _match_key(key: str) -> tuple[Parameter, str | None, int | None, int | None] | None:
    """(parameter, why-unusable-or-None, x, y) for a key shaped like a table row, else None."""
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


def _target(cfg: PhoneConfig, param: Parameter, x: int | None, y: int | None, *, write: bool = False) -> Any:
    if x is None:
        return cfg
    account = _own_account(cfg, x) if write else cfg.accounts[x]
    return account.servers[y] if y is not None else account


# --------------------------------------------------------------------------- parsing


@dataclass
class _Parsed:
    errors: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)
    sets: list[tuple[Parameter, int | None, int | None, Any]] = field(default_factory=list)
    unknown: dict[str, str] = field(default_factory=dict)  # key → last value, in first-seen order
    lines: dict[str, int] = field(default_factory=dict)  # key → the line that last set it
    unknown_warned: int = 0
    unknown_silent: int = 0


_UNKNOWN = "unknown key, kept but not used"


def _parse_entry(key: str, value: str, filename: str, lineno: int, out: _Parsed,
                 known_unknown: dict[str, str]) -> None:
    before = out.lines.get(key)
    if before is not None:  # SPEC §1: later lines override earlier ones; said, not silent
        out.warnings.append(ConfigIssue(filename, lineno, key, value,
                                        f"also set at line {before}: this later line wins"))
    if lineno:
        out.lines[key] = lineno
    match = _match_key(key)
    if match is None or match[1] is not None:
        if key not in out.unknown and key not in known_unknown:
            if out.unknown_warned < MAX_UNKNOWN_WARNINGS:
                out.unknown_warned += 1
                why = f"{match[1]}: " if match is not None else ""
                out.warnings.append(ConfigIssue(filename, lineno, key, value, why + _UNKNOWN))
            else:
                out.unknown_silent += 1
        out.unknown[key] = value
        return
    param, _, x, y = match
    if value == "":
        out.sets.append((param, x, y, param.default))  # [interp] empty = default, as vendor phones do
        return
    try:
        parsed, warning = param.parse(value)
    except _Invalid as exc:
        out.errors.append(ConfigIssue(filename, lineno, key, value, f"{exc} (valid: {param.range_text})"))
        return
    if warning:
        out.warnings.append(ConfigIssue(filename, lineno, key, value, f"{warning} (valid: {param.range_text})"))
    out.sets.append((param, x, y, parsed))


def _lines(text: str):
    """(line number, line) without splitting the whole text at once (memory: one line at a time)."""
    start, lineno, n = 0, 1, len(text)
    while start <= n:
        end = text.find("\n", start)
        if end < 0:
            end = n
        yield lineno, text[start:end]
        start, lineno = end + 1, lineno + 1


def _control(text: str) -> str | None:
    """A description of the first control character in ``text`` (TAB aside), or None."""
    m = _CONTROL.search(text)
    if m is None:
        return None
    names = {"\x00": "NUL", "\r": "CR", "\x1b": "ESC", "\x7f": "DEL"}
    ch = m.group()
    return f"{names.get(ch, 'control character')} (U+{ord(ch):04X}) at column {m.start() + 1}"


def _parse_text(text: str, filename: str, known_unknown: dict[str, str], max_line: int = MAX_LINE_CHARS) -> _Parsed:
    out = _Parsed()
    if text.startswith("\ufeff"):
        text = text[1:]
    first = text[:text.find("\n")] if "\n" in text[:max_line + 1] else text[:max_line + 1]
    if first.strip(_WS) != VERSION_LINE:
        out.warnings.append(ConfigIssue(filename, 1, "", "",
                                        f"first line is not {VERSION_LINE!r} (vendor convention); accepted"))
    for lineno, raw in _lines(text):
        if len(raw) > max_line:
            out.errors.append(ConfigIssue(filename, lineno, "", "",
                                          f"line of {len(raw)} characters (valid: at most {max_line})"))
            continue
        line = raw.strip(_WS)
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            shown = line if len(line) <= 60 else line[:57] + "..."
            out.errors.append(ConfigIssue(filename, lineno, "", "",
                                          f"{shown!r} is not a comment and has no '=' "
                                          "(valid: 'key = value', '# comment' or a blank line)"))
            continue
        key, value = key.strip(_WS), value.strip(_WS)
        if not key:
            out.errors.append(ConfigIssue(filename, lineno, "", value, "empty key before '=' (valid: 'key = value')"))
            continue
        bad = _control(key + "=" + value)
        if bad is not None:
            out.errors.append(ConfigIssue(filename, lineno, key, _CONTROL.sub("?", value),
                                          f"{bad} (valid: text without control characters; TAB allowed)"))
            continue
        _parse_entry(key, value, filename, lineno, out, known_unknown)
    if out.unknown_silent:
        out.warnings.append(ConfigIssue(filename, 0, "", "",
                                        f"{out.unknown_silent} more unknown keys (not listed one by one), "
                                        "kept but not used"))
    return out


def _apply(cfg: PhoneConfig, parsed: _Parsed) -> None:
    for param, x, y, value in parsed.sets:
        setattr(_target(cfg, param, x, y, write=True), param.attr, value)
    cfg.unknown.update(parsed.unknown)
    cfg.warnings.extend(parsed.warnings)


def _decode(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigIssue(filename, line, "", "",
                                       f"not UTF-8 at byte offset {exc.start} (valid: UTF-8 text)")]) from None


# --------------------------------------------------------------------------- public functions


def loads_config(text: str | bytes, filename: str = "<cfg>", base: PhoneConfig | None = None, *,
                 max_bytes: int = MAX_CONFIG_BYTES, max_line: int = MAX_LINE_CHARS) -> PhoneConfig:
    """Parse ``text`` and return the resulting config, applied on a copy of ``base`` if given.

    All or nothing: on any error, raises one :class:`ConfigError` listing every error of the
    text, and nothing is applied (``base`` is never modified either way). A text of more than
    ``max_bytes`` (UTF-8) is refused whole; a line of more than ``max_line`` characters is an
    error at its line."""
    size = len(text) if isinstance(text, (bytes, bytearray)) else _utf8_size(text, max_bytes)
    if size > max_bytes:
        raise ConfigError([ConfigIssue(filename, 0, "", "", f"{size} bytes or more (valid: a .cfg of at most "
                                                            f"{max_bytes} bytes)")])
    if isinstance(text, (bytes, bytearray)):
        text = _decode(bytes(text), filename)
    known_unknown = base.unknown if base is not None else {}
    parsed = _parse_text(text, filename, known_unknown, max_line)
    if parsed.errors:
        raise ConfigError(parsed.errors)
    cfg = _copy_config(base) if base is not None else PhoneConfig()
    _apply(cfg, parsed)
    cfg.source = filename
    return cfg


def load_config(path: str | PathLike[str], base: PhoneConfig | None = None, *,
                max_bytes: int = MAX_CONFIG_BYTES, max_line: int = MAX_LINE_CHARS) -> PhoneConfig:
    """Read and parse the ``.cfg`` file at ``path`` (see :func:`loads_config`); a file larger
    than ``max_bytes`` is refused without being read whole."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    return loads_config(data, filename=str(path), base=base, max_bytes=max_bytes, max_line=max_line)


def _utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of ``text`` if it may be within ``limit``, else a number above it (cheap)."""
    if len(text) > limit:
        return len(text)
    if len(text) * 4 <= limit or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def dumps_config(cfg: PhoneConfig, *, only_changed: bool = False) -> str:
    """The effective configuration as ``.cfg`` text, in the order given in the module docstring.

    ``only_changed=True`` writes only values that differ from the defaults, plus unknown keys."""
    out = [VERSION_LINE, "## written by phone.config: global keys, accounts 1..6, then unknown keys"]

    def emit(param: Parameter, target: Any, x: int | None, y: int | None) -> None:
        value = getattr(target, param.attr)
        if only_changed and value == param.default:
            return
        out.append(f"{param.key(x, y)} = {param.format(value)}")

    for param in PARAMETERS:
        if param.scope == "global":
            emit(param, cfg, None, None)
    for x in ACCOUNTS:
        account = cfg.accounts[x]
        for param in PARAMETERS:
            if param.scope == "account":
                emit(param, account, x, None)
        for y in SERVERS:
            for param in PARAMETERS:
                if param.scope == "server":
                    emit(param, account.servers[y], x, y)
    for key, value in cfg.unknown.items():
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"
