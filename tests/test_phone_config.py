"""Tests of phone/config.py, phone/parameters.py and phone/cfgfile.py (SPEC §1): ranges, defaults,
the guide's example, errors, round trip.

The expected ranges and defaults below are written out from SPEC §1 (and the brief for the
bundled extras) independently of ``phone.parameters.PARAMETERS``, so a wrong table row fails.
"""

from __future__ import annotations

import pickle
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.phone.cfgfile import VERSION_LINE
from sipharness.phone.config import (
    ConfigError,
    ConfigIssue,
    PhoneConfig,
    dumps_config,
    load_config,
    loads_config,
)
from sipharness.phone.parameters import PARAMETERS

SEED_CFG = Path(__file__).resolve().parents[1] / "suites" / "data" / "seed-example.cfg"

HOST_253 = ".".join(["a" * 63] * 3 + ["b" * 61])  # 63*3 + 61 + 3 dots = 253
assert len(HOST_253) == 253

TEXT_OK = ["", "x", "1234", "a # b = c ; d", "ünïcødé", "with  inner\tspace"]


def _int(lo, hi, default, rng):
    """Expectation for an integer key: both edges accepted, just outside refused."""
    return dict(kind="int", lo=lo, hi=hi, default=default, default_text=str(default),
                ok=[lo, hi], bad=[lo - 1, hi + 1], rng=rng)


# pattern -> expectation, straight from SPEC §1 (and the brief for the bundled extras).
EXPECTED = {
    "static.network.primary_dns": dict(kind="ip", default="", default_text="",
                                       ok=["127.0.0.1", "::1", "2001:db8::53"],
                                       bad=["dns.example.com", "1.2.3", "[::1]", "127.0.0.1:53"],
                                       rng="IPv4/IPv6 literal"),
    "static.network.primary_dns_port": _int(1, 65535, 53, "1..65535"),
    "sip.listen_port": _int(0, 65535, 5060, "0..65535"),
    "features.auto_answer_delay": _int(0, 3600, 0, "0..3600"),
    "features.lines": _int(1, 32, 2, "1..32"),
    "features.ring_timeout": _int(10, 3600, 180, "10..3600"),
    "account.{X}.enable": _int(0, 1, 0, "0..1"),
    "account.{X}.label": dict(kind="text", default="", default_text="", ok=TEXT_OK, bad=[], rng=""),
    "account.{X}.display_name": dict(kind="text", default="", default_text="", ok=TEXT_OK, bad=[], rng=""),
    "account.{X}.auth_name": dict(kind="text", default="", default_text="", ok=TEXT_OK, bad=[], rng=""),
    "account.{X}.user_name": dict(kind="text", default="", default_text="", ok=TEXT_OK, bad=[], rng=""),
    "account.{X}.password": dict(kind="text", default="", default_text="", ok=TEXT_OK, bad=[], rng=""),
    "account.{X}.transport": _int(0, 3, 0, "0..3"),
    "account.{X}.naptr_build": _int(0, 1, 0, "0..1"),
    "account.{X}.fallback.redundancy_type": _int(0, 1, 0, "0..1"),
    "account.{X}.fallback.timeout": _int(10, 2147483647, 120, "10..2147483647"),
    "account.{X}.reg_fail_retry_interval": _int(0, 1800, 30, "0..1800"),
    "account.{X}.srv_select": dict(kind="word", default="seed", default_text="seed",
                                   ok=["seed", "rfc2782"], bad=["Seed", "random", "rfc 2782"],
                                   rng="rfc2782"),
    "account.{X}.auto_answer": _int(0, 1, 0, "0..1"),
    "account.{X}.sip_server.{Y}.address": dict(
        kind="host", default="", default_text="",
        ok=["192.168.1.15", "::1", "yealink.pbx.com", "a", "pbx.example.com.", "a-b.c0m",
            "a" * 63 + ".com", HOST_253],
        bad=["bad host", "a" * 64 + ".com", HOST_253 + "c", "-a.com", "a-.com", "a..b",
             "host_1.com", "999.1.1.1", "[::1]", "pbx.com:5060", "ü.com"],
        rng="domain name"),
    "account.{X}.sip_server.{Y}.port": _int(0, 65535, 5060, "0..65535"),  # SPEC §1 allows 0
    "account.{X}.sip_server.{Y}.expires": _int(30, 2147483647, 3600, "30..2147483647"),
    "account.{X}.sip_server.{Y}.retry_counts": _int(0, 20, 3, "0..20"),
    "account.{X}.sip_server.{Y}.failback_mode": _int(0, 3, 0, "0..3"),
    "account.{X}.sip_server.{Y}.failback_timeout": dict(
        kind="int", lo=0, hi=65535, default=3600, default_text="3600",
        ok=[0, 60, 65535], bad=[-1, 65536], rng="60..65535"),
    "account.{X}.sip_server.{Y}.register_on_enable": _int(0, 1, 0, "0..1"),
    "account.{X}.sip_server.{Y}.invite_retry_counts": dict(
        kind="int", lo=1, hi=10, default=None, default_text="", ok=[1, 10], bad=[0, 11], rng="1..10"),
    "account.{X}.sip_server.{Y}.only_signal_with_registered": _int(0, 1, 0, "0..1"),
}

ATTR = {  # pattern -> (where, attribute) per the contract
    "static.network.primary_dns": ("global", "dns_server"),
    "static.network.primary_dns_port": ("global", "dns_port"),
    "sip.listen_port": ("global", "sip_listen_port"),
    "features.auto_answer_delay": ("global", "auto_answer_delay"),
    "features.lines": ("global", "lines"),
    "features.ring_timeout": ("global", "ring_timeout"),
    "account.{X}.fallback.redundancy_type": ("account", "fallback_redundancy_type"),
    "account.{X}.fallback.timeout": ("account", "fallback_timeout"),
}
for _p in EXPECTED:
    if _p not in ATTR:
        ATTR[_p] = ("server" if "{Y}" in _p else "account", _p.rsplit(".", 1)[1])

# A sample of (account, server) places: both edges of each index, and one in the middle.
PLACES = [(1, 1), (6, 2), (3, 2)]


def _key(pattern, x, y):
    return pattern.replace("{X}", str(x)).replace("{Y}", str(y))


def _keys(pattern, places=PLACES):
    if "{X}" not in pattern:
        return [(pattern, None, None)]
    return [(_key(pattern, x, y), x, y) for x, y in places]


def _attr(cfg, pattern, x, y):
    where, attr = ATTR[pattern]
    target = cfg if where == "global" else cfg.account(x) if where == "account" else cfg.account(x).servers[y]
    return getattr(target, attr)


def _file(*lines):
    return "\n".join([VERSION_LINE, *lines]) + "\n"


# ------------------------------------------------------------------ the table vs. the SPEC


def test_table_has_exactly_the_spec_keys():
    assert sorted(p.pattern for p in PARAMETERS) == sorted(EXPECTED)


def test_table_rows_carry_range_and_spec_tag():
    for p in PARAMETERS:
        assert p.range_text and p.spec.startswith("SPEC §"), p


@pytest.mark.parametrize("pattern", sorted(EXPECTED))
def test_default(pattern):
    exp = EXPECTED[pattern]
    cfg = PhoneConfig()
    for key, x, y in _keys(pattern, [(x, y) for x in range(1, 7) for y in (1, 2)]):
        assert _attr(cfg, pattern, x, y) == exp["default"], key
        assert cfg.get(key) == exp["default_text"], key


@pytest.mark.parametrize("pattern", sorted(EXPECTED))
def test_range_edges_accepted(pattern):
    exp = EXPECTED[pattern]
    for key, x, y in _keys(pattern):
        for v in exp["ok"]:
            cfg = loads_config(_file(f"{key} = {v}"), "ok.cfg")
            assert _attr(cfg, pattern, x, y) == v, (key, v)
            assert cfg.get(key) == str(v)
            assert cfg.warnings == []
            cfg2 = PhoneConfig()
            cfg2.set(key, v)
            assert _attr(cfg2, pattern, x, y) == v


@pytest.mark.parametrize("pattern", sorted(p for p in EXPECTED if EXPECTED[p]["bad"]))
def test_just_outside_refused(pattern):
    exp = EXPECTED[pattern]
    for key, x, y in _keys(pattern):
        for v in exp["bad"]:
            with pytest.raises(ConfigError) as info:
                loads_config(_file("# c", f"{key} = {v}"), "bad.cfg")
            (issue,) = info.value.errors
            assert (issue.filename, issue.line, issue.key, issue.value) == ("bad.cfg", 3, key, str(v))
            text = str(info.value)
            assert text.startswith(f"bad.cfg:3: {key} = {v}: ")
            assert "valid:" in text and exp["rng"] in text, text
            cfg = PhoneConfig()
            with pytest.raises(ConfigError):
                cfg.set(key, v)
            assert cfg == PhoneConfig()


@pytest.mark.parametrize("pattern", sorted(p for p in EXPECTED if EXPECTED[p]["kind"] == "int"))
def test_integers_must_be_decimal(pattern):
    key = _key(pattern, 2, 1)
    for v in ["3.5", "abc", "1_0", "0x10", "1e3", "٣", "3 4", "--1"]:
        with pytest.raises(ConfigError, match="not a decimal integer"):
            loads_config(_file(f"{key} = {v}"))
    huge = "9" * 8_000  # within the line limit (MAX_LINE_CHARS), far beyond any range
    with pytest.raises(ConfigError, match="out of range"):
        loads_config(_file(f"{key} = {huge}"))


@pytest.mark.parametrize("pattern", sorted(p for p in EXPECTED if EXPECTED[p]["kind"] != "text"))
def test_empty_value_resets_to_default(pattern):
    exp = EXPECTED[pattern]
    key = _key(pattern, 4, 2)
    value = exp["ok"][-1]
    cfg = loads_config(_file(f"{key} = {value}"))
    assert _attr(cfg, pattern, 4, 2) != exp["default"] or value == exp["default"]
    cfg = loads_config(_file(f"{key} = {value}", f"{key} ="))
    assert _attr(cfg, pattern, 4, 2) == exp["default"]


def test_failback_timeout_below_60_warns_and_uses_60():
    for v in (1, 30, 59):
        cfg = loads_config(_file(f"account.2.sip_server.1.failback_timeout = {v}"), "fb.cfg")
        assert cfg.account(2).servers[1].failback_timeout == 60
        (w,) = cfg.warnings
        assert (w.filename, w.line, w.key, w.value) == ("fb.cfg", 2, "account.2.sip_server.1.failback_timeout", str(v))
        assert "60" in w.message
        assert cfg.get("account.2.sip_server.1.failback_timeout") == "60"


def test_invite_retry_counts_unset_is_none():
    cfg = loads_config(_file("account.1.sip_server.2.invite_retry_counts = 4"))
    assert cfg.account(1).servers[2].invite_retry_counts == 4
    assert cfg.account(1).servers[1].invite_retry_counts is None
    cfg.set("account.1.sip_server.2.invite_retry_counts", None)
    assert cfg.account(1).servers[2].invite_retry_counts is None


# ------------------------------------------------------------------ the guide's example


def test_seed_example_loads_unchanged():
    cfg = load_config(SEED_CFG)
    assert cfg.warnings == []
    assert cfg.source == str(SEED_CFG)
    a = cfg.account(1)
    assert (a.enable, a.label, a.display_name, a.auth_name, a.user_name, a.password) == (1, "1234", "1234", "1234", "1234", "1234")
    assert (a.transport, a.naptr_build, a.fallback_redundancy_type, a.fallback_timeout) == (3, 0, 1, 120)
    s1, s2 = a.servers[1], a.servers[2]
    assert (s1.address, s1.port, s1.expires, s1.retry_counts) == ("yealink.pbx.com", 5060, 3600, 3)
    assert (s1.failback_mode, s1.failback_timeout, s1.register_on_enable) == (3, 120, 0)
    assert (s2.address, s2.port, s2.expires, s2.retry_counts) == ("192.168.1.15", 5060, 3600, 3)
    assert (s2.failback_mode, s2.failback_timeout, s2.register_on_enable) == (0, 3600, 0)
    assert s1.configured and s2.configured
    for x in range(2, 7):
        assert cfg.account(x) == PhoneConfig().account(x)
    assert cfg.unknown == {}
    # every key/value line of the file reads back through get() exactly as written
    for line in SEED_CFG.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert cfg.get(key.strip()) == value.strip()
    assert loads_config(dumps_config(cfg)) == cfg
    assert loads_config(dumps_config(cfg, only_changed=True)) == cfg


# ------------------------------------------------------------------ errors, all or nothing


def test_all_errors_of_a_file_listed_and_nothing_applied(tmp_path):
    path = tmp_path / "phone.cfg"
    path.write_text(_file(
        "account.1.enable = 1",                        # 2: good
        "account.1.sip_server.1.port = 70000",         # 3: out of range
        "just some words",                             # 4: no '='
        "account.2.sip_server.2.expires = 29",         # 5: below range
        "= 5",                                         # 6: empty key
        "account.3.transport = 3.5",                   # 7: not an integer
        "account.3.sip_server.1.address = bad host",   # 8: bad host
        "mystery.key = 1",                             # 9: unknown (a warning, not an error)
    ), "utf-8")
    base = loads_config(_file("account.4.enable = 1"), "base.cfg")
    snapshot = dumps_config(base)
    with pytest.raises(ConfigError) as info:
        load_config(path, base=base)
    errors = info.value.errors
    assert isinstance(info.value, ValueError)
    assert [e.line for e in errors] == [3, 4, 5, 6, 7, 8]
    assert all(e.filename == str(path) for e in errors)
    lines = str(info.value).splitlines()
    assert len(lines) == 6
    assert lines[0] == f"{path}:3: account.1.sip_server.1.port = 70000: out of range (valid: 0..65535 (0 = let DNS find it))"
    assert lines[1].startswith(f"{path}:4: ") and "'just some words'" in lines[1] and "no '='" in lines[1]
    assert lines[2].startswith(f"{path}:5: account.2.sip_server.2.expires = 29: ") and "30..2147483647" in lines[2]
    assert lines[4].startswith(f"{path}:7: account.3.transport = 3.5: not a decimal integer (valid: 0..3")
    assert lines[5].startswith(f"{path}:8: account.3.sip_server.1.address = bad host: ")
    # nothing applied: base unchanged, and its good line 2 did not reach it
    assert dumps_config(base) == snapshot
    assert base.account(1).enable == 0 and base.unknown == {}


def test_config_error_pickles_and_issue_is_frozen():
    err = ConfigError([ConfigIssue("f.cfg", 2, "k", "v", "bad (valid: 0..1)")])
    again = pickle.loads(pickle.dumps(err))
    assert again.errors == err.errors and str(again) == "f.cfg:2: k = v: bad (valid: 0..1)"
    with pytest.raises(AttributeError):
        err.errors[0].line = 3


def test_utf8_error_names_offset_and_line(tmp_path):
    path = tmp_path / "latin1.cfg"
    path.write_bytes(VERSION_LINE.encode() + b"\naccount.1.label = caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.errors
    assert issue.line == 2
    assert f"byte offset {len(VERSION_LINE) + 1 + len('account.1.label = caf')}" in str(info.value)


def test_set_refuses_bad_keys_and_multiline_values():
    cfg = PhoneConfig()
    for key in ["", "a=b", "# x", "a\nb"]:
        with pytest.raises(ConfigError):
            cfg.set(key, "1")
    with pytest.raises(ConfigError):
        cfg.set("account.1.label", "a\nb")
    with pytest.raises(TypeError):
        cfg.set("account.1.enable", True)
    assert cfg == PhoneConfig()


# ------------------------------------------------------------------ syntax


def test_syntax_comments_blanks_whitespace_crlf_bom():
    text = ("\ufeff" + VERSION_LINE + "\r\n"
            "# a comment = with an equals sign\r\n"
            "   \r\n"
            "  # indented comment\r\n"
            "account.1.enable=1\r\n"
            "account.1.label\t=\t  my # label = x  \r\n"
            "account.1.password =\r\n")
    cfg = loads_config(text.encode("utf-8"))
    assert cfg.warnings == []
    assert cfg.account(1).enable == 1
    assert cfg.account(1).label == "my # label = x"
    assert cfg.account(1).password == ""


def test_keys_are_case_sensitive():
    cfg = loads_config(_file("Account.1.enable = 1"))
    assert cfg.account(1).enable == 0
    assert cfg.unknown == {"Account.1.enable": "1"}


def test_version_line_missing_warns_and_dump_keeps_it():
    cfg = loads_config("account.1.enable = 1\n", "nover.cfg")
    assert cfg.account(1).enable == 1
    (w,) = cfg.warnings
    assert (w.filename, w.line) == ("nover.cfg", 1) and "#!version:1.0.0.1" in w.message
    assert dumps_config(cfg).splitlines()[0] == VERSION_LINE
    assert dumps_config(cfg, only_changed=True).splitlines()[0] == VERSION_LINE
    assert loads_config(_file("account.1.enable = 1")).warnings == []


def test_later_lines_override_earlier_and_base():
    cfg = loads_config(_file("account.1.sip_server.1.port = 5070",
                             "account.1.sip_server.1.port = 5080"))
    assert cfg.account(1).servers[1].port == 5080
    second = loads_config(_file("account.1.sip_server.1.port = 5090"), "second.cfg", base=cfg)
    assert second.account(1).servers[1].port == 5090
    assert cfg.account(1).servers[1].port == 5080  # base is not modified
    assert second.source == "second.cfg"


def test_accounts_and_servers_are_independent():
    cfg = PhoneConfig()
    cfg.set("account.3.sip_server.2.retry_counts", 7)
    cfg.set("account.5.transport", "2")
    for x in range(1, 7):
        for y in (1, 2):
            expected = 7 if (x, y) == (3, 2) else 3
            assert cfg.account(x).servers[y].retry_counts == expected
        assert cfg.account(x).transport == (2 if x == 5 else 0)
    assert cfg.account(3).servers[1] is not cfg.account(3).servers[2]
    with pytest.raises(KeyError):
        cfg.account(7)


# ------------------------------------------------------------------ unknown keys


def test_unknown_key_kept_with_one_warning_and_survives_dump():
    cfg = loads_config(_file("vendor.thing = 1", "account.1.enable = 1", "vendor.thing = 2",
                             "other.key = x", "vendor.thing = 3"), "u.cfg")
    assert cfg.unknown == {"vendor.thing": "3", "other.key": "x"}
    assert list(cfg.unknown) == ["vendor.thing", "other.key"]
    assert [(w.key, w.line) for w in cfg.warnings if "unknown" in w.message] == [("vendor.thing", 2), ("other.key", 5)]
    # set again: the later line wins, said with both lines (SPEC §1)
    assert [(w.line, w.message) for w in cfg.warnings if "unknown" not in w.message] == [
        (4, "also set at line 2: this later line wins"), (6, "also set at line 4: this later line wins")]
    assert cfg.get("vendor.thing") == "3"
    again = loads_config(dumps_config(cfg))
    assert again == cfg and again.unknown == cfg.unknown
    assert loads_config(dumps_config(cfg, only_changed=True)) == cfg
    # applied again on top of a config that already has it: not warned again
    third = loads_config(_file("vendor.thing = 4"), base=cfg)
    assert third.unknown["vendor.thing"] == "4"
    assert [w.key for w in third.warnings if "unknown" in w.message] == ["vendor.thing", "other.key"]
    with pytest.raises(KeyError):
        cfg.get("never.seen")


def test_account_or_server_index_out_of_range_is_unknown_with_warning():
    cfg = loads_config(_file("account.7.enable = 1", "account.1.sip_server.3.port = 1",
                             "account.0.enable = 1", "account.01.enable = 1"))
    assert cfg == PhoneConfig(unknown={"account.7.enable": "1", "account.1.sip_server.3.port": "1",
                                       "account.0.enable": "1", "account.01.enable": "1"})
    assert len(cfg.warnings) == 4
    assert "account 7 outside 1..6" in cfg.warnings[0].message
    assert "server 3 outside 1..2" in cfg.warnings[1].message
    assert loads_config(dumps_config(cfg)) == cfg


# ------------------------------------------------------------------ dumping


def test_dump_order_is_global_then_accounts_then_unknown():
    cfg = PhoneConfig()
    cfg.set("zzz.unknown", "1")
    cfg.set("account.2.sip_server.2.port", 2)
    cfg.set("account.2.sip_server.1.port", 1)
    cfg.set("account.2.enable", 1)
    cfg.set("account.1.password", "p")
    cfg.set("sip.listen_port", 0)
    keys = [line.split(" = ")[0] for line in dumps_config(cfg, only_changed=True).splitlines()
            if not line.startswith("#")]
    assert keys == ["sip.listen_port", "account.1.password", "account.2.enable",
                    "account.2.sip_server.1.port", "account.2.sip_server.2.port", "zzz.unknown"]
    full = [line.split(" = ")[0] for line in dumps_config(cfg).splitlines() if not line.startswith("#")]
    assert len(full) == 6 + 6 * (13 + 2 * 9) + 1
    assert len(set(full)) == len(full)
    assert dumps_config(PhoneConfig(), only_changed=True).splitlines()[0] == VERSION_LINE


# ------------------------------------------------------------------ round trip (hypothesis)

_one_line = st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs", "Cc")),
                    max_size=12).map(lambda s: s.strip(" \t\r"))
_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join).filter(lambda h: not h.split(".")[-1].isdigit())


def _value_strategy(pattern):
    exp = EXPECTED[pattern]
    kind = exp["kind"]
    if pattern.endswith("failback_timeout"):
        return st.one_of(st.just(0), st.integers(60, 65535), st.integers(1, 59))
    if kind == "int":
        return st.integers(exp["lo"], exp["hi"])
    if kind == "text":
        return _one_line
    if kind == "host":
        return st.one_of(st.sampled_from(exp["ok"]), _hostname)
    return st.sampled_from(exp["ok"])


_assignment = st.sampled_from(sorted(EXPECTED)).flatmap(
    lambda p: st.tuples(st.just(p), st.integers(1, 6), st.integers(1, 2), _value_strategy(p)))
_unknown = st.tuples(st.from_regex(r"x_[a-z0-9_.]{0,10}", fullmatch=True), _one_line)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_assignment, max_size=25), st.lists(_unknown, max_size=4))
def test_round_trip_is_lossless(assignments, unknowns):
    cfg = PhoneConfig()
    for pattern, x, y, v in assignments:
        cfg.set(_key(pattern, x, y), v)
    for key, v in unknowns:
        cfg.set(key, v)
    for only_changed in (False, True):
        text = dumps_config(cfg, only_changed=only_changed)
        again = loads_config(text, "dump.cfg")
        assert again == cfg
        assert again.unknown == cfg.unknown
        assert again.warnings == [w for w in again.warnings if w.key.startswith("x_")]
        assert dumps_config(again, only_changed=only_changed) == text
