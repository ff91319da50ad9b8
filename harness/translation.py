"""The vendor ``.cfg`` → third-party stack translation table (SPEC §1 keys; issue 15), in one place.

Why a table: the suites configure every phone with the guide's ``.cfg``. A stack nobody here
wrote (baresip, PJSIP, liblinphone) has settings of its own; each driver writes them from the
keys of this table, and a key a stack has no setting for is **not expressible** there. A test
whose ``.cfg`` needs such a key is skipped with the reason (:class:`harness.dut.NotExpressible`,
raised by :func:`check` at ``apply_config``): the stack was never asked, so it is not a finding.

A stack that cannot *set* a key still has a fixed behaviour for it: a ``.cfg`` that writes the
SPEC §1 default of such a key asks for nothing the stack does not claim to do, so the key is
accepted (``defaults``) and the stack's fixed behaviour is judged against the rule (a deviation
is a finding, exactly as when the key is absent). Writing the default or leaving the key out
thus always gives the same verdict. [SPEC §1 interp: "not expressible" is ours, the guide only
knows phones that have every key.]

Also the plain ``key = value`` reader every driver of a phone in another process uses: the
harness must not lend such a phone the bundled phone's own reading of SPEC §1 (phone/config.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dut import NotExpressible

__all__ = ["read_cfg", "Cell", "TABLE", "STACKS", "check", "markdown", "account_keys", "StackAccount",
           "stack_accounts", "uri_host", "host_port"]

#: the stacks the table covers, by DUT kind; their names in the docs
STACKS = {"baresip": "baresip 1.0.0", "pjsua": "PJSIP 2.15.1 (pjsua2)", "linphone": "liblinphone 5.1.65"}


def read_cfg(text: str, filename: str = "<cfg>") -> dict[str, str]:
    """``key = value`` lines of a vendor ``.cfg`` (SPEC §1: ``#`` comments, later lines override)."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{filename}:{lineno}: expected 'key = value', got {raw!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Cell:
    """How one stack takes one key: ``setting`` names where it goes; ``why`` (set) says it cannot.

    ``defaults``: values the stack accepts although it has no setting (its fixed behaviour is
    the SPEC default, judged like any rule). ``values``: for a key it *can* set, the only values
    it can express (None: all)."""

    setting: str = ""
    why: str = ""
    defaults: tuple[str, ...] = ()
    values: tuple[str, ...] | None = None

    @property
    def expressible(self) -> bool:
        return not self.why

    def refuses(self, value: str) -> bool:
        if self.why:
            return value not in self.defaults
        return self.values is not None and value not in self.values


def _to(setting: str, values: tuple[str, ...] | None = None) -> Cell:
    return Cell(setting=setting, values=values)


def _no(why: str, *defaults: str) -> Cell:
    return Cell(why=why, defaults=defaults)


_NO_FALLBACK = "no server fallback (SPEC §6): the stack registers with one server per account"
_NO_FAILBACK = "no failback modes (SPEC §5): no setting for when new requests return to the primary"
_RETRY = "no retry count: a silent target is given up when the RFC 3261 transaction times out (32 s)"

#: ``.cfg`` key (``account.X.`` removed; ``sip_server.Y`` as written) → stack → :class:`Cell`.
TABLE: dict[str, dict[str, Cell]] = {
    "static.network.primary_dns": {
        "baresip": _to("config: dns_server HOST:PORT"),
        "pjsua": _to("UaConfig.nameserver = [HOST] (port 53 only)"),
        "linphone": _to("/etc/resolv.conf 'nameserver HOST' bind-mounted for linphone-daemon only (port 53 only)"),
    },
    "static.network.primary_dns_port": {
        "baresip": _to("config: dns_server HOST:PORT"),
        "pjsua": _to("(port 53 only)", values=("53",)),
        "linphone": _to("(port 53 only)", values=("53",)),
    },
    "sip.listen_port": {
        "baresip": _to("config: sip_listen 127.0.0.1:PORT"),
        "pjsua": _to("TransportConfig.port"),
        "linphone": _to("[sip] sip_port / sip_tcp_port / sip_tls_port"),
    },
    "enable": {
        "baresip": _to("an account line (uanew) per enabled account"),
        "pjsua": _to("an Account per enabled account"),
        "linphone": _to("a [proxy_N] section per enabled account"),
    },
    "label": {s: _to("(display only)") for s in STACKS},
    "display_name": {
        "baresip": _to('account line: "NAME" <sip:...>'),
        "pjsua": _to('AccountConfig.idUri "NAME" <sip:...>'),
        "linphone": _to('[proxy_N] reg_identity "NAME" <sip:...>'),
    },
    "user_name": {
        "baresip": _to("account line: sip:USER@server"),
        "pjsua": _to("AccountConfig.idUri sip:USER@server"),
        "linphone": _to("[proxy_N] reg_identity sip:USER@server"),
    },
    "auth_name": {
        "baresip": _to("account line: auth_user"),
        "pjsua": _to("AuthCredInfo.username"),
        "linphone": _to("[auth_info_N] username"),
    },
    "password": {
        "baresip": _to("account line: auth_pass"),
        "pjsua": _to("AuthCredInfo.data"),
        "linphone": _to("[auth_info_N] passwd"),
    },
    "sip_server.1.address": {
        "baresip": _to("account line: AOR host and outbound proxy"),
        "pjsua": _to("regConfig.registrarUri, idUri host, sipConfig.proxies (outbound proxy)"),
        "linphone": _to("[proxy_N] reg_proxy and reg_route (outbound proxy)"),
    },
    "sip_server.1.port": {
        "baresip": _to("host:port in the URIs (0: none, DNS finds it)"),
        "pjsua": _to("host:port in the URIs (0: none, DNS finds it)"),
        "linphone": _to("host:port in the URIs (0: none, DNS finds it)"),
    },
    "sip_server.1.expires": {
        "baresip": _to("account line: regint"),
        "pjsua": _to("regConfig.timeoutSec"),
        "linphone": _to("[proxy_N] reg_expires"),
    },
    "transport": {
        "baresip": _to(";transport=udp|tcp|tls; 3 (DNS-NAPTR): none, RFC 3263 from NAPTR"),
        "pjsua": _to(";transport=udp|tcp|tls; 3 (DNS-NAPTR): none (PJSIP then does SRV, never NAPTR)"),
        "linphone": _to(";transport=udp|tcp|tls; 3 (DNS-NAPTR): none, belle-sip's RFC 3263 resolver"),
    },
    "sip_server.1.retry_counts": {s: _no(_RETRY, "3") for s in STACKS},
    "sip_server.1.failback_mode": {s: _no(_NO_FAILBACK, "0") for s in STACKS},
    "sip_server.1.failback_timeout": {s: _no("no failback modes (failback_timeout applies to mode 3)", "3600")
                                      for s in STACKS},
    "sip_server.1.register_on_enable": {s: _no("no REGISTER to the next target before a failed-over request", "0")
                                        for s in STACKS},
    "sip_server.1.invite_retry_counts": {s: _no("no retry count of its own for INVITE") for s in STACKS},
    "sip_server.1.only_signal_with_registered": {s: _no("no such restriction", "0") for s in STACKS},
    "naptr_build": {s: _no("no choice of SRV names when NAPTR is empty (RFC 3263 §4.1: SRV for each transport it "
                           "supports)", "0") for s in STACKS},
    "reg_fail_retry_interval": {
        "baresip": _no("its retry interval after a failed registration is not configurable", "30"),
        "pjsua": _to("regConfig.retryIntervalSec (randomRetryIntervalSec 0); 0 cannot be said (0 = never retry)",
                     values=tuple(str(n) for n in range(1, 1801))),
        "linphone": _no("its retry interval after a failed registration is not configurable", "30"),
    },
    "fallback.redundancy_type": {s: _no(_NO_FALLBACK, "0") for s in STACKS},
    "fallback.timeout": {s: _no(_NO_FALLBACK, "120") for s in STACKS},
    "sip_server.2.address": {s: _no(_NO_FALLBACK, "") for s in STACKS},
}

#: keys with no effect on what the stack does (server 2's other keys while it has no address)
_INERT = re.compile(r"sip_server\.2\.(?!address$)")
_ACCOUNT = re.compile(r"account\.([1-6])\.(.+)")
_SERVER_KEY = re.compile(r"sip_server\.([12])\.(.+)")


def account_keys(cfg: dict[str, str]) -> dict[int, dict[str, str]]:
    """The ``.cfg``'s keys per account X (``account.X.`` removed)."""
    out: dict[int, dict[str, str]] = {}
    for key, value in cfg.items():
        m = _ACCOUNT.fullmatch(key)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return out


#: account.X.transport → the transport parameter of server 1's URI (3, DNS-NAPTR: none, the stack resolves)
_TRANSPORT = {"0": "udp", "1": "tcp", "2": "tls", "3": None}


@dataclass(frozen=True)
class StackAccount:
    """An enabled account with a server 1, in the pieces every stack's own settings are written from."""

    x: int
    prefix: str  # "account.X.": the account's other keys
    address: str  # sip_server.1.address as written
    host: str  # as the host of a SIP URI (an IPv6 literal in brackets)
    server: str  # host[:port] (no port when the port is 0)
    params: str  # ";transport=udp" or "" (transport 3: the stack's own resolution decides)
    user: str  # user_name, "anonymous" when empty


def uri_host(address: str) -> str:
    """An address as the host of a SIP URI: an IPv6 literal in brackets."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def host_port(address: str, port: str | int | None) -> str:
    """``host:port`` for a URI or a stack's setting (no port when it is absent or 0)."""
    host = uri_host(address)
    return f"{host}:{port}" if port and str(port) != "0" else host


def stack_accounts(cfg: dict[str, str], notes: list[str]) -> list[StackAccount]:
    """The accounts a stack creates: enabled, with a server 1 address (the others are said in ``notes``)."""
    out = []
    for x in range(1, 7):
        p = f"account.{x}."
        if cfg.get(p + "enable", "0") != "1":
            continue
        address = cfg.get(p + "sip_server.1.address", "")
        if not address:
            notes.append(f"account.{x}: enabled without sip_server.1.address: not created")
            continue
        transport = _TRANSPORT.get(cfg.get(p + "transport", "0"), "udp")
        out.append(StackAccount(x, p, address, uri_host(address), host_port(address, cfg.get(p + "sip_server.1.port", "5060")),
                                f";transport={transport}" if transport else "",
                                cfg.get(p + "user_name", "") or "anonymous"))
    return out


def _row(key: str) -> dict[str, Cell] | None:
    """The table's row of an account-relative or global key (server 1's row for ``sip_server.1.*``)."""
    return TABLE.get(key)


def check(cfg: dict[str, str], stack: str) -> list[str]:
    """Raise :class:`NotExpressible` naming every key of ``cfg`` the stack cannot express.

    Returns notes on keys the stack ignores (unknown to the table, or inert). Only enabled
    accounts count: a disabled account's keys ask nothing of the phone."""
    if stack not in STACKS:
        raise KeyError(f"no stack {stack!r} in the translation table ({', '.join(STACKS)})")
    refused: list[str] = []
    notes: list[str] = []
    for key, value in cfg.items():
        if key.startswith("account."):
            continue
        row = _row(key)
        if row is not None and row[stack].refuses(value):
            refused.append(_reason(key, value, row[stack]))
    for x, keys in sorted(account_keys(cfg).items()):
        if keys.get("enable", "0") != "1":
            continue
        for key, value in keys.items():
            full = f"account.{x}.{key}"
            if _INERT.match(key):
                if keys.get("sip_server.2.address"):
                    continue  # (refused with the address)
                notes.append(f"{full} = {value}: no effect without sip_server.2.address")
                continue
            row = _row(key)
            if row is None:
                continue  # a key SPEC §1 does not know, or one of another vendor: ignored as a phone would
            if row[stack].refuses(value):
                refused.append(_reason(full, value, row[stack]))
    if refused:
        raise NotExpressible(f"not expressible in {STACKS[stack]}: " + "; ".join(refused), keys=tuple(
            r.split(" = ", 1)[0] for r in refused))
    return notes


def _reason(key: str, value: str, cell: Cell) -> str:
    if cell.why:
        return f"{key} = {value} ({cell.why})"
    shown = cell.values if cell.values is not None and len(cell.values) <= 4 else None
    return f"{key} = {value} ({cell.setting}" + (f": only {', '.join(shown)}" if shown else "") + ")"


def markdown() -> str:
    """The table as Markdown (docs/conformance-matrix.md): one row per key, one column per stack."""
    head = "| `.cfg` key | " + " | ".join(STACKS.values()) + " |\n|---|" + "---|" * len(STACKS) + "\n"
    rows = []
    for key, row in TABLE.items():
        cells = []
        for stack in STACKS:
            cell = row[stack]
            if cell.expressible:
                cells.append(cell.setting.replace("|", "\\|"))
            else:
                ok = ", ".join(f"`{d}`" if d else "empty" for d in cell.defaults)
                cells.append(f"**not expressible**: {cell.why}" + (f" (accepted: {ok})" if ok else ""))
        rows.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"
