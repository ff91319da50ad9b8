"""The provisioning template (harness/vendor_cfg.py) and the key generations (phone/vendor_keys.py): what a lab
phone gets, in its firmware's names, with every key the driver needs; and how the emulation reads it back."""

from __future__ import annotations

import pytest

from sipharness.harness.vendor_cfg import CALLBACK_QUERY, EMULATION_DNS_PORT, Template, driver_rows, vendor_cfg
from sipharness.phone.vendor_keys import ACTION_URL_EVENTS, Firmware, keys_for, parse_lines, translate_to_bundled

SCENARIO = """#!version:1.0.0.1
## written by sip-redundancy-harness
static.network.primary_dns = 127.0.0.53
static.network.primary_dns_port = 40123
sip.listen_port = 0
account.1.enable = 1
account.1.user_name = 1234
account.1.sip_server.1.address = pbx.example.com
account.1.sip_server.1.port = 0
account.1.transport = 2
account.2.enable = 1
account.2.user_name = 1235
account.2.transport = 0
"""


def _keys(text: str) -> dict[str, str]:
    return {k: v for _, k, v in parse_lines(text)}


@pytest.mark.parametrize("firmware", ["8x", "71"])
def test_the_file_carries_every_driver_key_in_the_firmwares_names(firmware):
    t = Template(firmware=Firmware(firmware), lab_address="192.0.2.10", base_url="http://192.0.2.10:8080/",
                 dns_host="192.0.2.10")
    text = vendor_cfg(SCENARIO, t, serial=7, mac="001565000001")
    keys = _keys(text)
    k = keys_for(firmware)
    assert text.splitlines()[0] == "#!version:1.0.0.1"
    assert "## sip-redundancy-harness: file 7 for 001565000001" in text.splitlines()[1]
    assert keys[k.static_dns_enable] == "1" and keys[k.primary_dns] == "192.0.2.10"
    assert keys["account.1.dns_cache_type"] == "0" and keys["account.2.dns_cache_type"] == "0"
    assert keys["features.show_action_uri_option"] == "0" and keys["features.action_uri_limit_ip"] == "192.0.2.10"
    assert keys[k.trusted_certificates_url] == "http://192.0.2.10:8080/ca.pem"
    for event in ACTION_URL_EVENTS:
        assert keys[f"action_url.{event}"] == f"http://192.0.2.10:8080/action/{event}?{CALLBACK_QUERY}"
    assert not [key for key in keys if key.startswith("action_url.") and key[11:] not in ACTION_URL_EVENTS]
    assert "action_url.ringback" not in keys and "action_url.call_proceeding" not in keys
    # the bundled phone's own DNS keys never reach a lab phone; no emulation key either
    assert "static.network.primary_dns_port" not in keys and EMULATION_DNS_PORT not in keys
    if firmware == "8x":
        assert keys["account.1.sip_server.1.transport_type"] == keys["account.1.sip_server.2.transport_type"] == "2"
        assert "account.1.transport" not in keys and "network.primary_dns" not in keys
    else:
        assert keys["account.1.transport"] == "2" and "account.1.sip_server.1.transport_type" not in keys
        assert not [key for key in keys if key.startswith("static.")]


def test_every_file_is_new_and_the_network_keys_never_change():
    t = Template(emulate=True, dns_host="127.0.0.53", dns_port=40123, base_url="http://127.0.0.1:1/")
    one, two = vendor_cfg(SCENARIO, t, serial=1), vendor_cfg(SCENARIO, t, serial=2)
    assert one != two  # its MD5 is new: the phone never skips it as unchanged
    other_port = vendor_cfg(SCENARIO.replace("40123", "40999"), Template(emulate=True, dns_host="127.0.0.53",
                                                                           dns_port=40999), serial=1)
    net = [(k, v) for _, k, v in parse_lines(one) if k.startswith("static.network.")]
    assert net == [(k, v) for _, k, v in parse_lines(other_port) if k.startswith("static.network.")]
    assert _keys(one)[EMULATION_DNS_PORT] == "40123"  # emulation only, outside the network keys: no reboot


def test_parked_file_disables_every_account():
    parked = _keys(vendor_cfg(SCENARIO, Template(), park=True))
    assert parked["account.1.enable"] == parked["account.2.enable"] == "0"
    assert parked["account.1.user_name"] == "1234"


def test_driver_rows_say_why():
    rows = driver_rows(Template(), (1,))
    assert all(r.why for r in rows)
    assert {r.key for r in rows} >= {"static.network.static_dns_enable", "account.1.dns_cache_type",
                                     "features.show_action_uri_option", "static.trusted_certificates.url"}
    assert "static.trusted_certificates.url" not in {r.key for r in driver_rows(Template(with_ca=False))}


@pytest.mark.parametrize("firmware", ["8x", "71"])
def test_the_emulation_reads_only_its_generation(firmware):
    t = Template(firmware=Firmware(firmware))
    text = vendor_cfg(SCENARIO, t)
    bundled, vendor = translate_to_bundled(text, firmware)
    lines = bundled.splitlines()
    assert len(lines) == len(text.splitlines())  # line for line: the bundled phone's errors keep the line numbers
    b = _keys(bundled)
    assert b["account.1.transport"] == "2" and b["account.2.transport"] == "0" and b["sip.listen_port"] == "0"
    assert not [k for k in b if k.startswith(("static.", "network.", "action_url.", "features.action"))]
    k = keys_for(firmware)
    assert vendor[k.static_dns_enable] == "1"
    other = translate_to_bundled(vendor_cfg(SCENARIO, Template(firmware=Firmware("71" if firmware == "8x" else "8x"))),
                                 firmware)
    o = _keys(other[0])
    assert "account.1.transport" not in o  # the other generation's transport means nothing to this phone
    assert k.static_dns_enable not in other[1]
