"""CFG: every parameter's range and default, and the guide's example file (SPEC §1).

The table below is SPEC §1's, written out here on purpose and not imported from the bundled
phone's own table (``phone/parameters.py``): a suite that read the phone's table would agree with
any phone. Everything goes through the DUT interface: ``apply_config`` (which refuses a bad
file with ``ConfigRejected`` where the DUT validates, ``dut.validates_config``) and
``effective_config`` (what the DUT will use). No DUT is started here: the guide's example
addresses are outside 127/8 and must never be contacted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_twisted

from sipharness.harness.dut import ConfigRejected

DATA = Path(__file__).resolve().parent / "data"
SEED_CFG = DATA / "seed-example.cfg"
HEAD = "#!version:1.0.0.1"

PASSAGE = ("SPEC §1: a value out of range or of the wrong type is refused with file:line, the key and the valid "
           "range; nothing is applied from a file that has an error [seed parameter tables]")

ACCOUNTS = range(1, 7)  # account.X, X in 1..6 [seed]
SERVERS = (1, 2)  # sip_server.Y, Y in 1..2 [seed]
MAX32 = 2147483647
UNSET = object()  # invite_retry_counts: no value until set

#: SPEC §1, per account: key suffix → (default, range (low, high) or None for a string).
ACCOUNT_KEYS: dict[str, tuple[object, tuple[int, int] | None]] = {
    "enable": (0, (0, 1)),
    "label": ("", None),
    "display_name": ("", None),
    "auth_name": ("", None),
    "user_name": ("", None),
    "password": ("", None),
    "transport": (0, (0, 3)),
    "naptr_build": (0, (0, 1)),
    "fallback.redundancy_type": (0, (0, 1)),
    "fallback.timeout": (120, (10, MAX32)),
    "reg_fail_retry_interval": (30, (0, 1800)),
}
#: SPEC §1, per server Y of an account: ``sip_server.Y.<suffix>`` → (default, range or None).
SERVER_KEYS: dict[str, tuple[object, tuple[int, int] | None]] = {
    "address": ("", None),
    "port": (5060, (0, 65535)),
    "expires": (3600, (30, MAX32)),
    "retry_counts": (3, (0, 20)),
    "failback_mode": (0, (0, 3)),
    "failback_timeout": (3600, (0, 65535)),  # 0 or 60..65535; 1..59 used as 60 (below)
    "register_on_enable": (0, (0, 1)),
    "invite_retry_counts": (UNSET, (1, 10)),
    "only_signal_with_registered": (0, (0, 1)),
}

#: (account, server) pairs the range tests run on: the first and the last of each.
PLACES = [(1, 1), (6, 2)]


def _key(x: int, y: int, suffix: str, per_server: bool) -> str:
    return f"account.{x}.sip_server.{y}.{suffix}" if per_server else f"account.{x}.{suffix}"


def _ranged() -> list:
    out = []
    for per_server, table in ((False, ACCOUNT_KEYS), (True, SERVER_KEYS)):
        for suffix, (_default, rng) in table.items():
            if rng is None:
                continue
            for x, y in PLACES:
                if not per_server and y != 1:
                    y = 1
                out.append(pytest.param(_key(x, y, suffix, per_server), rng, id=_key(x, y, suffix, per_server)))
    return out


RANGED = _ranged()


def _cfg(*lines: str) -> str:
    return "\n".join((HEAD,) + lines) + "\n"


def _effective(dut) -> dict[str, str]:
    try:
        return dut.effective_config()
    except NotImplementedError as e:
        pytest.skip(f"this DUT cannot report its effective configuration: {e}")


def _needs_validation(dut) -> None:
    if not dut.validates_config:
        pytest.skip(f"the {dut.kind} DUT does not refuse bad values when given a .cfg (validates_config False): "
                    "a vendor phone may ignore them silently, which this suite cannot see")


async def _rejected(dut, text: str) -> ConfigRejected:
    try:
        await dut.apply_config(text)
    except ConfigRejected as e:
        return e
    raise AssertionError(f"expected the DUT to refuse this .cfg:\n{text}")


def _names_range(message: str, key: str, low: int, high: int, line: int) -> None:
    assert key in message, f"the refusal must name the key {key}: {message!r}"
    for edge in (low, high):
        assert re.search(rf"(?<![\d-]){edge}(?!\d)", message), (
            f"the refusal must give the valid range {low}..{high} of {key}: {message!r}")
    assert re.search(rf":{line}\b", message), f"the refusal must say file:line (line {line}): {message!r}"


# ------------------------------------------------------------------------------------------ defaults

@pytest.mark.scenario("CFG", "SPEC §1 table: the default of every parameter, for accounts 1..6 and servers 1..2")
@pytest_twisted.ensureDeferred
async def test_defaults_of_every_parameter(dut):
    await dut.apply_config(_cfg("## nothing set: every parameter at its default"))
    eff = _effective(dut)
    wrong = []
    for x in ACCOUNTS:
        for suffix, (default, _rng) in ACCOUNT_KEYS.items():
            key = _key(x, 1, suffix, False)
            if eff.get(key) != str(default):
                wrong.append(f"{key}: expected {default!r}, effective {eff.get(key)!r}")
        for y in SERVERS:
            for suffix, (default, _rng) in SERVER_KEYS.items():
                key = _key(x, y, suffix, True)
                if default is UNSET:
                    if eff.get(key, "") != "":
                        wrong.append(f"{key}: expected unset, effective {eff.get(key)!r}")
                elif eff.get(key) != str(default):
                    wrong.append(f"{key}: expected {default!r}, effective {eff.get(key)!r}")
    assert not wrong, "defaults differing from SPEC §1:\n" + "\n".join(wrong)


# ------------------------------------------------------------------------------------------ ranges

@pytest.mark.scenario("CFG", "SPEC §1 table: both edges of every range are accepted and used")
@pytest.mark.parametrize("key, rng", RANGED)
@pytest_twisted.ensureDeferred
async def test_range_edges_accepted(dut, key, rng):
    for value in rng:
        await dut.apply_config(_cfg(f"{key} = {value}"))
        got = _effective(dut).get(key)
        assert got == str(value), f"{key} = {value} (a range edge) must be used as is; effective {got!r}"


@pytest.mark.scenario("CFG", PASSAGE)
@pytest.mark.parametrize("key, rng", RANGED)
@pytest_twisted.ensureDeferred
async def test_just_outside_range_refused(dut, key, rng):
    _needs_validation(dut)
    low, high = rng
    for value in (low - 1, high + 1):
        text = _cfg("## line 2", f"{key} = {value}")
        e = await _rejected(dut, text)
        _names_range(str(e), key, 0 if key.endswith("failback_timeout") else low, high, 3)


@pytest.mark.scenario("CFG", PASSAGE)
# (An empty value is not listed: SPEC §1 does not say; vendor files use it for "back to the default".)
@pytest.mark.parametrize("value", ["abc", "1.5", "0x10", "3 4", "-"])
@pytest.mark.parametrize("key", ["account.1.sip_server.1.expires", "account.1.transport",
                                 "account.2.sip_server.2.retry_counts"])
@pytest_twisted.ensureDeferred
async def test_wrong_type_refused(dut, key, value):
    _needs_validation(dut)
    e = await _rejected(dut, _cfg(f"{key} = {value}"))
    assert key in str(e) and re.search(r":2\b", str(e)), f"the refusal must name {key} and line 2: {e}"


@pytest.mark.scenario("CFG", "SPEC §1: nothing is applied from a file that has an error")
@pytest_twisted.ensureDeferred
async def test_nothing_applied_from_a_file_with_an_error(dut):
    _needs_validation(dut)
    await dut.apply_config(_cfg("account.1.label = before", "account.1.sip_server.1.expires = 600"))
    await _rejected(dut, _cfg("account.1.label = after", "account.1.sip_server.1.expires = 700",
                              "account.1.sip_server.1.retry_counts = 21"))
    eff = _effective(dut)
    assert (eff.get("account.1.label"), eff.get("account.1.sip_server.1.expires")) == ("before", "600"), (
        "a refused file changed the effective configuration")


# ------------------------------------------------------------------------------------------ failback_timeout

@pytest.mark.scenario("CFG", "SPEC §1: failback_timeout 0 or 60..65535 s; 1..59 accepted with a warning and "
                             "used as 60 [vendor]")
@pytest.mark.parametrize("value, used", [(0, 0), (1, 60), (30, 60), (59, 60), (60, 60), (61, 61), (65535, 65535)])
@pytest_twisted.ensureDeferred
async def test_failback_timeout_below_60_used_as_60(dut, value, used):
    key = "account.1.sip_server.1.failback_timeout"
    await dut.apply_config(_cfg(f"{key} = {value}"))
    got = _effective(dut).get(key)
    assert got == str(used), f"{key} = {value}: expected it used as {used}; effective {got!r}"


# ------------------------------------------------------------------------------------------ file syntax

@pytest.mark.scenario("CFG", "SPEC §1: # comments, blank lines, later lines override earlier ones, keys "
                             "case-sensitive, unknown keys kept (not refused)")
@pytest_twisted.ensureDeferred
async def test_file_syntax(dut):
    await dut.apply_config(_cfg(
        "# a comment line",
        "",
        "account.1.sip_server.1.expires = 600",
        "account.1.sip_server.1.expires = 900",  # later wins
        "Account.1.sip_server.1.retry_counts = 7",  # another key (case-sensitive): not retry_counts
        "features.some_vendor_key = 42",  # unknown: kept, warned, not refused
    ))
    eff = _effective(dut)
    assert eff.get("account.1.sip_server.1.expires") == "900", "the later line must override the earlier one"
    assert eff.get("account.1.sip_server.1.retry_counts") == "3", (
        "Account.1.… is not account.1.… (keys are case-sensitive): retry_counts must stay at its default")


@pytest.mark.scenario("CFG", "SPEC §1: the phone can write its effective configuration back in the same format "
                             "(round trip is lossless)")
@pytest_twisted.ensureDeferred
async def test_effective_configuration_round_trip(dut):
    await dut.apply_config(SEED_CFG.read_text(encoding="utf-8"))
    first = _effective(dut)
    await dut.apply_config(_cfg(*(f"{k} = {v}" for k, v in first.items())))
    assert _effective(dut) == first


# ------------------------------------------------------------------------------------------ the guide's file

@pytest.mark.scenario("CFG", "the guide's example configuration file (account 1: server 1 yealink.pbx.com, server "
                             "2 192.168.1.15, DNS-NAPTR, successive fallback 120 s, failback duration 120 s) loads")
@pytest_twisted.ensureDeferred
async def test_guide_example_file_loads_and_is_effective(dut):
    text = SEED_CFG.read_text(encoding="utf-8")
    await dut.apply_config(text)  # never started: its addresses are outside 127/8
    eff = _effective(dut)
    given = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            given[key.strip()] = value.strip()
    assert len(given) == 23, f"{SEED_CFG}: expected the guide's 23 settings, read {len(given)}"
    wrong = {k: (v, eff.get(k)) for k, v in given.items() if eff.get(k) != v}
    assert not wrong, "the guide's values not effective (key: (file, effective)): " + repr(wrong)
