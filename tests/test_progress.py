"""Progress of long runs (harness/progress.py, harness/plugin_farm.py): the estimate from the committed table of
phone time per test, the table's generator, and the progress lines a run prints while a test waits."""

from __future__ import annotations

import pytest

from sipharness.harness import progress as prog
from sipharness.harness import suite_times

pytest_plugins = ["pytester"]


def test_node_ids_lose_the_farm_phone_only():
    assert prog.base_nodeid("suites/t.py::test_x[phone2-udp-3]@phone2", "phone2") == "suites/t.py::test_x[udp-3]"
    assert prog.base_nodeid("suites/t.py::test_x[phone1]", "phone1") == "suites/t.py::test_x"
    assert prog.base_nodeid("suites/t.py::test_x[udp]", None) == "suites/t.py::test_x[udp]"
    assert prog.phone_of("suites/t.py::test_x[desk-2-udp]", ["desk-2"]) is None  # (a name with '-': not split)
    assert prog.phone_of("suites/t.py::test_x[phone2-udp]@phone2", ["phone1", "phone2"]) == "phone2"


def test_estimate_counts_the_table_and_the_median_for_the_rest(monkeypatch):
    monkeypatch.setattr(suite_times, "PHONE_TIME", {"short": {"a": 100.0, "b": 20.0, "c": 60.0}, "seed": {}})
    e = prog.estimate(["a", "b", "new"], clock_spec="real", speed=1.0, kind="lab")
    assert (e.tests, e.phone_s, e.unknown) == (3, 180.0, 1)
    assert e.wall_s == 180.0 + 3 * prog.OVERHEAD_S["lab"]
    fast = prog.estimate(["a", "b"], clock_spec="scaled:20", speed=20.0, kind="emulated")
    assert fast.wall_s == pytest.approx(6.0 + 2 * prog.OVERHEAD_S["emulated"])
    assert "about 3 min of wall time on a real clock (1 not in harness/suite_times.py" in e.line("real")
    assert prog.values_of("virtual") == "seed" and prog.values_of("scaled:20@1.5") == "short"


def test_tick_line_says_what_the_test_waits_for():
    line = prog.tick_line(" [phone1]", "test_x", 95.0, 0.0, 240.0, [("a 2xx to REGISTER from fallback", 130.0),
                                                                      ("x", None)])
    assert line == ("sipharness progress [phone1]: test_x: phone time 95 s of about 240 s; waiting for a 2xx to "
                    "REGISTER from fallback (until t = 130 s) (+1 more)")


def test_the_committed_table_knows_the_suites():
    short = suite_times.PHONE_TIME["short"]
    assert len(short) > 50 and all(k.startswith("suites/test_") and v >= 0 for k, v in short.items())
    assert suite_times.PHONE_TIME["seed"]


def test_the_table_is_made_from_a_junit_report(tmp_path, monkeypatch):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="suites.test_a" name="test_x[phone2-udp]@phone2"><properties>'
        '<property name="sipharness.phone" value="phone2"/><property name="phone_time_s" value="12.345"/>'
        '</properties></testcase>'
        '<testcase classname="suites.test_a" name="test_y"><properties><property name="phone_time_s" value="3"/>'
        '</properties><skipped/></testcase>'
        '</testsuite></testsuites>')
    target = tmp_path / "suite_times.py"
    monkeypatch.setattr(suite_times, "__file__", str(target))
    monkeypatch.setattr(suite_times, "PHONE_TIME", {"seed": {"suites/test_a.py::test_z": 1.0}})
    assert prog.main(["--junit", str(report), "--values", "short"]) == 0
    namespace: dict = {}
    exec(target.read_text(), namespace)
    assert namespace["PHONE_TIME"] == {"seed": {"suites/test_a.py::test_z": 1.0},
                                       "short": {"suites/test_a.py::test_x[udp]": 12.3}}


WAITING = '''
import pytest
import pytest_twisted

from sipharness.harness.lab import Address
from sipharness.sipcore.journal import WaitTimeout


@pytest_twisted.ensureDeferred
async def test_waits(lab):
    await lab.up(Address("fallback"))
    await lab.dut.wait_registered(account=1, timeout=60)
    with pytest.raises(WaitTimeout):  # 30 phone seconds: 1.5 s of wall time on scaled:20
        await lab.recorder.wait_for(lambda r: False, 30, what="something that never comes")
'''


def test_a_run_prints_its_estimate_and_what_each_test_waits_for(pytester):
    pytester.makeini("[pytest]\naddopts = --reactor=default -p no:cacheprovider -p no:randomly\n")
    pytester.makepyfile(test_progress_run=WAITING)
    result = pytester.runpytest_subprocess("--clock", "scaled:20", "--sip-progress", "0.3")
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([
        "sipharness: 1 selected tests cover about * s of phone time: about * s of wall time on a scaled:20 clock*",
        "sipharness progress: test 1: test_progress_run.py::test_waits*",
        "sipharness progress: test_waits: phone time * s; waiting for something that never comes (until t = * s)*",
    ])
