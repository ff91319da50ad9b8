"""The phone farm (harness/farm.py, harness/plugin_farm.py): the phones from --phone-ip or a lab file, their
errors, and a farm of emulated phones that runs the whole (small) suite on each phone in parallel under
pytest-xdist with a per-phone report; the usage errors that keep -n and the farm in step."""

from __future__ import annotations

import pytest

from sipharness.harness.farm import FarmPhone, farm_from, load_lab_file, mac_of
from sipharness.harness.vendor import VendorLabProblem

pytest_plugins = ["pytester"]


def test_phone_ip_list_names_the_phones_in_order():
    farm = farm_from(" 10.0.0.1, 10.0.0.2:8080 ,emulate")
    assert [(p.name, p.address, p.index, p.emulate) for p in farm] == [
        ("phone1", "10.0.0.1", 0, False), ("phone2", "10.0.0.2:8080", 1, False), ("phone3", "emulate", 2, True)]
    assert mac_of(2) == "001565000003"
    with pytest.raises(VendorLabProblem, match="has no phone: give --phone-ip"):
        farm_from("")


def test_lab_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DESK2_PW", "s3cret")
    path = tmp_path / "lab.toml"
    path.write_text('[lab]\nprovision_port = 8080\nfirmware = "71"\n\n'
                    '[[phone]]\nname = "desk-1"\naddress = "192.0.2.21"\nmodel = "T46U"\nfirmware = "8x"\n\n'
                    '[[phone]]\naddress = "192.0.2.22"\nuser = "boss"\npassword_env = "DESK2_PW"\n')
    farm = load_lab_file(str(path))
    assert farm == [FarmPhone("desk-1", "192.0.2.21", 0, "T46U", "8x", None, None, 8080),
                    FarmPhone("phone2", "192.0.2.22", 1, "", "71", "boss", "s3cret", 8080)]
    assert farm_from("ignored", str(path)) == farm
    assert farm[0].label() == "desk-1 (192.0.2.21, T46U)"


@pytest.mark.parametrize("text, error", [
    ("[[phone]]\nname = \"a\"\n", "'address' is required"),
    ("[[phone]]\naddress = \"x\"\ncolour = \"red\"\n", "unknown key(s) colour"),
    ("[[phone]]\naddress = \"x\"\nname = \"a\"\n[[phone]]\naddress = \"y\"\nname = \"a\"\n", "name 'a' is used twice"),
    ("[[phone]]\naddress = \"x\"\nname = \"a b\"\n", "name 'a b' must be"),
    ("[[phone]]\naddress = \"x\"\nfirmware = \"9\"\n", "firmware '9'"),
    ("[[phone]]\naddress = \"x\"\npassword_env = \"NOT_SET_ANYWHERE_42\"\n", "NOT_SET_ANYWHERE_42 (password_env) is not set"),
    ("[lab]\nport = 1\n[[phone]]\naddress = \"x\"\n", "[lab] takes"),
    ("[lab]\nprovision_port = 0\n[[phone]]\naddress = \"x\"\n", "provision_port 0"),
    ("[phones]\n", "unknown table(s) phones"),
    ("", "no [[phone]] table"),
    ("[[phone]\naddress = 1", "line 1"),
])
def test_lab_file_errors_name_the_file_and_what_is_wrong(tmp_path, text, error):
    path = tmp_path / "lab.toml"
    path.write_text(text)
    with pytest.raises(VendorLabProblem) as e:
        load_lab_file(str(path))
    assert str(e.value).startswith(f"lab file {path}: ") and error in str(e.value), str(e.value)
    with pytest.raises(VendorLabProblem, match="No such file"):
        load_lab_file(str(tmp_path / "none.toml"))


SUITE = '''
import pytest
import pytest_twisted

from sipharness.harness.assertions import wait_registration
from sipharness.harness.lab import Address


@pytest.mark.scenario("REG-FO", "a registration")
@pytest_twisted.ensureDeferred
async def test_register(lab):
    await lab.up(Address("fallback"))
    await wait_registration(lab.recorder, "fallback", 60)


@pytest.mark.scenario("INV-FO", "a call")
@pytest.mark.parametrize("number", ["2000", "2001"])
@pytest_twisted.ensureDeferred
async def test_call(lab, number):
    topo = await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=60)
    events = len(lab.dut.events)
    lab.dut.call(topo.uri(number))
    await lab.dut.wait_for("call_state", 60, state="established", since=events)
    lab.dut.hangup()
    await lab.dut.wait_for("call_state", 60, state="terminated", since=events)


def test_no_dut():
    pass
'''

FARM = ("--dut", "yealink", "--clock", "scaled:20", "--preflight-timeout", "10", "--provision-timeout", "10",
        "-p", "no:randomly")


def test_a_farm_runs_the_whole_suite_on_each_phone_in_parallel_with_a_report_per_phone(pytester):
    pytester.makeini("[pytest]\naddopts = --reactor=default -p no:cacheprovider\n")
    pytester.makepyfile(test_farm_suite=SUITE)
    result = pytester.runpytest_subprocess(*FARM, "--phone-ip", "emulate,emulate", "-n", "2", "-v", "--report-mode")
    assert result.ret == 0, result.stdout.str()[-4000:]
    out = result.stdout.str()
    # every test that drives a DUT once per phone; the one that does not, once
    result.assert_outcomes(passed=7)
    for phone in ("phone1", "phone2"):
        for test in ("test_register", "test_call[phone-2000]".replace("phone", phone),
                     "test_call[phone-2001]".replace("phone", phone)):
            name = test if "[" in test else f"{test}[{phone}]"
            assert f"test_farm_suite.py::{name}" in out, name
    # one worker per phone: each phone's tests ran on one worker, the phones on different ones
    workers: dict[str, set] = {}
    for line in result.outlines:
        if " PASSED test_farm_suite.py::test_" in line and "[phone" in line:
            gw = line.split()[0]
            phone = "phone1" if "phone1" in line else "phone2"
            workers.setdefault(phone, set()).add(gw)
    assert len(workers) == 2 and all(len(w) == 1 for w in workers.values()) and \
        workers["phone1"] != workers["phone2"], workers
    result.stdout.fnmatch_lines(["*sipharness per phone (the whole suite on each)*",
                                 "phone1 (emulate): 3 tests, * s of phone time; outcomes: 3 pass, 0 findings, 0 lab "
                                 "problems, 0 harness errors",
                                 "phone2 (emulate): 3 tests, * s of phone time; outcomes: 3 pass, 0 findings, *",
                                 "*sipharness rule table: phone1 (emulate)*"])
    result.stdout.fnmatch_lines(["sipharness: 3 selected tests on phone1 cover about * s of phone time: about * of "
                                 "wall time on a scaled:20 clock*"])
    assert out.count("lab preflight passed") == 2  # each phone proven on its own worker


@pytest.mark.parametrize("args, error", [
    ((), "a phone farm of 2 phones runs one pytest-xdist worker per phone: add -n 2 --dist loadgroup"),
    (("-n", "3"), "needs 2 pytest-xdist workers, one per phone; this run has 3: use -n 2"),
    (("-n", "2", "--dist", "loadfile"), "a phone farm runs with --dist loadgroup"),
])
def test_the_farm_and_the_workers_must_match(pytester, args, error):
    pytester.makeini("[pytest]\naddopts = --reactor=default -p no:cacheprovider\n")
    pytester.makepyfile(test_farm_suite=SUITE)
    result = pytester.runpytest_subprocess(*FARM, "--phone-ip", "emulate,emulate", *args)
    assert result.ret == 4, result.stdout.str()[-2000:]
    assert error in result.stderr.str()
