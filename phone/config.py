"""The bundled phone's configuration as typed objects, loaded from and dumped to ``.cfg`` text (SPEC §1).

The parts: ``parameters.py`` holds the SPEC §1 table (keys, ranges, defaults, vendor extras);
``cfgfile.py`` reads and writes the vendor text (``file:line`` errors, warnings, size bounds);
this module holds what the phone reads (:class:`PhoneConfig`, :class:`AccountConfig`,
:class:`ServerConfig`) and the entry points :func:`loads_config`, :func:`load_config` and
:func:`dumps_config`, which put the two together.

- A text is applied all-or-nothing: every line is parsed and validated first, all errors of the
  text are collected into one :class:`ConfigError`, and only a clean text is applied (on a copy
  of ``base``; ``base`` itself is never modified).
- Unknown keys are kept in :attr:`PhoneConfig.unknown` and written back by :func:`dumps_config`,
  so a dump/load round trip is lossless.
- An account nobody configured is one shared, read-only default object per index (see
  :class:`AccountConfig`): 10 000 phones in one process cost 10 000 enabled accounts, not 60 000.

Dump order (stable, documented): the version line; the global keys in table order; then for
account 1..6 the account keys in table order, then ``sip_server.1.*``, then ``sip_server.2.*``;
then unknown keys in the order they were first seen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Iterator

from sipharness.phone.cfgfile import (MAX_CONFIG_BYTES, MAX_LINE_CHARS, ConfigError, ConfigIssue, Parsed, format_cfg,
                                      read_cfg, read_setting)
from sipharness.phone.parameters import ACCOUNTS, PARAMETERS, SERVERS, match_key

__all__ = [
    "AccountConfig",
    "ConfigError",  # what loads_config / load_config / PhoneConfig.set raise (its home: cfgfile)
    "ConfigIssue",  # what PhoneConfig.warnings holds (its home: cfgfile)
    "PhoneConfig",
    "ServerConfig",
    "dumps_config",
    "load_config",
    "loads_config",
]


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
        _apply(self, read_setting(key, text, self.unknown))

    def get(self, key: str) -> str:
        """The effective value of ``key`` as text (what :func:`dumps_config` would write)."""
        match = match_key(key)
        if match is not None and match[1] is None:
            param, target = match[0], _target(self, match[2], match[3])
            return param.format(getattr(target, param.attr))
        if key in self.unknown:
            return self.unknown[key]
        raise KeyError(key)


def _target(cfg: PhoneConfig, x: int | None, y: int | None, *, write: bool = False) -> Any:
    """The object that holds a table row's attribute: the config, account ``x`` or its server ``y``."""
    if x is None:
        return cfg
    account = _own_account(cfg, x) if write else cfg.accounts[x]
    return account.servers[y] if y is not None else account


def _apply(cfg: PhoneConfig, parsed: Parsed) -> None:
    for param, x, y, value in parsed.sets:
        setattr(_target(cfg, x, y, write=True), param.attr, value)
    cfg.unknown.update(parsed.unknown)
    cfg.warnings.extend(parsed.warnings)


# --------------------------------------------------------------------------- public functions


def loads_config(text: str | bytes, filename: str = "<cfg>", base: PhoneConfig | None = None, *,
                 max_bytes: int = MAX_CONFIG_BYTES, max_line: int = MAX_LINE_CHARS) -> PhoneConfig:
    """Parse ``text`` and return the resulting config, applied on a copy of ``base`` if given.

    All or nothing: on any error, raises one :class:`ConfigError` listing every error of the
    text, and nothing is applied (``base`` is never modified either way). A text of more than
    ``max_bytes`` (UTF-8) is refused whole; a line of more than ``max_line`` characters is an
    error at its line."""
    known_unknown = base.unknown if base is not None else {}
    parsed = read_cfg(text, filename, known_unknown, max_bytes=max_bytes, max_line=max_line)
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


def dumps_config(cfg: PhoneConfig, *, only_changed: bool = False) -> str:
    """The effective configuration as ``.cfg`` text, in the order given in the module docstring.

    ``only_changed=True`` writes only values that differ from the defaults, plus unknown keys."""
    return format_cfg(_entries(cfg, only_changed),
                      "## written by phone.config: global keys, accounts 1..6, then unknown keys")


def _entries(cfg: PhoneConfig, only_changed: bool) -> Iterator[tuple[str, str]]:
    def rows(scope: str, target: Any, x: int | None, y: int | None) -> Iterator[tuple[str, str]]:
        for param in PARAMETERS:
            if param.scope == scope:
                value = getattr(target, param.attr)
                if not (only_changed and value == param.default):
                    yield param.key(x, y), param.format(value)

    yield from rows("global", cfg, None, None)
    for x in ACCOUNTS:
        account = cfg.accounts[x]
        yield from rows("account", account, x, None)
        for y in SERVERS:
            yield from rows("server", account.servers[y], x, y)
    yield from cfg.unknown.items()

