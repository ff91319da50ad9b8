"""The .cfg → stack translation table (harness/translation.py): every SPEC §1 key has a row and a cell per
stack; a key a stack cannot express is refused with its reason unless written with its SPEC default;
only enabled accounts count; server 2's other keys are inert without its address."""

from __future__ import annotations

import pytest

from sipharness.harness.dut import NotExpressible
from sipharness.harness.translation import STACKS, TABLE, check, markdown, read_cfg

#: SPEC §1 per account and per server (account.X.sip_server.Y.*), with their defaults
ACCOUNT_DEFAULTS = {"enable": "0", "label": "", "display_name": "", "auth_name": "", "user_name": "", "password": "",
                    "transport": "0", "naptr_build": "0", "fallback.redundancy_type": "0", "fallback.timeout": "120",
                    "reg_fail_retry_interval": "30"}
SERVER_DEFAULTS = {"address": "", "port": "5060", "expires": "3600", "retry_counts": "3", "failback_mode": "0",
                   "failback_timeout": "3600", "register_on_enable": "0", "invite_retry_counts": None,
                   "only_signal_with_registered": "0"}


def test_every_spec_key_has_a_row_with_a_cell_per_stack():
    keys = set(ACCOUNT_DEFAULTS) | {f"sip_server.1.{k}" for k in SERVER_DEFAULTS} | {"sip_server.2.address"}
    assert keys <= set(TABLE), sorted(keys - set(TABLE))
    for key, row in TABLE.items():
        assert set(row) == set(STACKS), key


def test_a_key_a_stack_cannot_set_accepts_exactly_its_spec_default():
    """Writing the default or leaving the key out gives the same verdict: the stack's fixed behaviour is judged."""
    defaults = {**ACCOUNT_DEFAULTS, **{f"sip_server.1.{k}": v for k, v in SERVER_DEFAULTS.items()},
                "sip_server.2.address": ""}
    for key, row in TABLE.items():
        for stack, cell in row.items():
            if not cell.expressible:
                expected = () if defaults.get(key) is None else (defaults[key],)
                assert cell.defaults == expected, (key, stack, cell.defaults)


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_refusal_names_every_key_and_why(stack):
    cfg = read_cfg("account.1.enable = 1\naccount.1.sip_server.1.address = pbx.example.com\n"
                   "account.1.sip_server.1.retry_counts = 1\naccount.1.sip_server.2.address = 127.0.0.15\n"
                   "account.1.sip_server.1.failback_mode = 0\naccount.1.sip_server.1.expires = 30\n")
    with pytest.raises(NotExpressible) as e:
        check(cfg, stack)
    assert e.value.keys == ("account.1.sip_server.1.retry_counts", "account.1.sip_server.2.address")
    assert str(e.value).startswith(f"not expressible in {STACKS[stack]}: account.1.sip_server.1.retry_counts = 1 (")


def test_only_enabled_accounts_count_and_server_2_keys_are_inert_without_its_address():
    cfg = read_cfg("account.1.enable = 1\naccount.1.sip_server.1.address = a\naccount.1.sip_server.2.port = 5070\n"
                   "account.2.enable = 0\naccount.2.sip_server.1.failback_mode = 3\n"
                   "account.1.some.vendor.key = 7\n")
    notes = check(cfg, "baresip")
    assert notes == ["account.1.sip_server.2.port = 5070: no effect without sip_server.2.address"]


def test_pjsip_expresses_the_retry_interval_but_not_zero_and_dns_on_53_only():
    check(read_cfg("account.1.enable = 1\naccount.1.reg_fail_retry_interval = 12\n"), "pjsua")
    with pytest.raises(NotExpressible, match="reg_fail_retry_interval = 0"):
        check(read_cfg("account.1.enable = 1\naccount.1.reg_fail_retry_interval = 0\n"), "pjsua")
    with pytest.raises(NotExpressible, match="primary_dns_port = 5353"):
        check(read_cfg("static.network.primary_dns_port = 5353\n"), "pjsua")
    check(read_cfg("static.network.primary_dns_port = 5353\n"), "baresip")  # baresip takes any port


def test_markdown_has_one_row_per_key():
    text = markdown()
    assert text.count("\n| `") == len(TABLE)
    assert "| `sip_server.1.retry_counts` | **not expressible**: no retry count" in text
    with pytest.raises(KeyError, match="no stack 'nope'"):
        check({}, "nope")
