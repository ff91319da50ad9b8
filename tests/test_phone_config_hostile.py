"""Hostile .cfg input (issue 12): what was accepted silently is now said or refused, with file:line,
and a huge file costs memory in proportion (or is refused before it is read whole)."""

from __future__ import annotations

import tracemalloc

import pytest

from sipharness.phone.cfgfile import MAX_CONFIG_BYTES, MAX_LINE_CHARS, MAX_UNKNOWN_WARNINGS
from sipharness.phone.config import ConfigError, PhoneConfig, load_config, loads_config


def cfg_text(*lines: str) -> str:
    return "\n".join(("#!version:1.0.0.1",) + lines) + "\n"


def test_a_key_set_twice_warns_naming_both_lines_and_the_later_wins():
    cfg = loads_config(cfg_text("account.1.sip_server.1.port = 5070", "vendor.x = 1", "# ...",
                                "account.1.sip_server.1.port = 5080", "vendor.x = 2"), "dup.cfg")
    assert cfg.account(1).servers[1].port == 5080 and cfg.unknown["vendor.x"] == "2"  # SPEC §1
    dup = [str(w) for w in cfg.warnings if "later line wins" in w.message]
    assert dup == ["dup.cfg:5: account.1.sip_server.1.port = 5080: also set at line 2: this later line wins",
                   "dup.cfg:6: vendor.x = 2: also set at line 3: this later line wins"]


@pytest.mark.parametrize("value, what", [("pa\x00ss", "NUL (U+0000)"), ("pa\rss", "CR (U+000D)"),
                                         ("\x1b[31mred", "ESC (U+001B)"), ("a\x85b", "U+0085")])
def test_control_characters_inside_a_value_are_refused_at_their_line(value, what):
    with pytest.raises(ConfigError) as ei:
        loads_config(cfg_text("account.1.enable = 1", f"account.1.password = {value}"), "ctl.cfg")
    (err,) = ei.value.errors
    assert (err.filename, err.line, err.key) == ("ctl.cfg", 3, "account.1.password") and what in err.message
    assert "\x00" not in str(ei.value) and "\x1b" not in str(ei.value)  # the refusal itself prints clean
    with pytest.raises(ConfigError, match="control"):
        PhoneConfig().set("account.1.password", value)
    # CRLF line ends and TABs inside values are fine
    ok = loads_config(cfg_text("account.1.label = a\tb\r", "account.1.enable = 1\r"))
    assert ok.account(1).label == "a\tb" and ok.account(1).enable == 1


def test_a_ten_megabyte_line_or_file_is_refused_with_its_size(tmp_path):
    with pytest.raises(ConfigError) as ei:
        loads_config(cfg_text("vendor.blob = " + "x" * 10_000_000), "big.cfg")
    assert ei.value.errors[0].line == 0 and f"at most {MAX_CONFIG_BYTES} bytes" in str(ei.value)
    path = tmp_path / "big.cfg"
    path.write_bytes(cfg_text("vendor.blob = " + "x" * 10_000_000).encode())
    with pytest.raises(ConfigError, match="at most"):
        load_config(path)
    with pytest.raises(ConfigError) as ei:
        loads_config(cfg_text("account.1.enable = 1", "vendor.blob = " + "x" * (MAX_LINE_CHARS + 1)), "long.cfg")
    (err,) = ei.value.errors
    assert err.line == 3 and f"at most {MAX_LINE_CHARS}" in err.message


def test_a_file_of_unknown_keys_at_the_limit_costs_memory_in_proportion():
    lines, size, i = [], 0, 0
    while size < MAX_CONFIG_BYTES - 100:
        lines.append(f"vendor.unknown.key{i} = value{i}")
        size += len(lines[-1]) + 1
        i += 1
    data = cfg_text(*lines).encode()
    tracemalloc.start()
    try:
        cfg = loads_config(data, "many.cfg")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cfg.unknown) == i  # lossless
    assert peak < 10 * len(data), f"{peak / 1e6:.1f} MB for a {len(data) / 1e6:.1f} MB file"
    listed = [w for w in cfg.warnings if w.key]
    assert len(listed) == MAX_UNKNOWN_WARNINGS
    assert f"{i - MAX_UNKNOWN_WARNINGS} more unknown keys" in cfg.warnings[-1].message
