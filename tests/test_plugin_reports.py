"""The plugin's failure reports: a broken phone rule is a *finding* of the right suite, with the ladder showing why."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _run_suite(pytester, test: str, conftest: str = "", *args: str):
    pytester.makeini("[pytest]\naddopts = --reactor=default -p no:cacheprovider\n"
                     "markers =\n    scenario(id, passage=''): x\n    interp(rule): x\n")
    target = pytester.path / "test_suite_copy.py"
    target.write_text((SUITES / test).read_text(encoding="utf-8"), encoding="utf-8")
    import shutil

    shutil.copytree(SUITES / "data", pytester.path / "data", dirs_exist_ok=True)
    pytester.makeconftest(conftest)  # (also replaces a previous run's)
    return pytester.runpytest_subprocess("-p", "no:randomly", *args)


BROKEN_FAILBACK = '''
import sipharness.phone.failback as fb
# A deliberately broken phone: the failback mode is ignored (always newRequests).
fb.Failback.start_index = lambda self, now, *, refresh=False, call_up=False: 0
'''


def test_broken_failback_mode_is_an_fbk3_finding_with_a_ladder(pytester):
    result = _run_suite(pytester, "test_failback.py", BROKEN_FAILBACK, "-k", "duration_returns_after and 120")
    assert result.parseoutcomes() == {"finding": 1, "deselected": 5}
    assert result.ret == 1  # a finding that counts (the bundled phone, [seed] rule) fails the run
    out = result.stdout.str()
    assert "FINDINGS (rules the phone broke)" in out
    assert "duration: a call before failback_timeout left the secondary" in out
    assert "SIP/DNS ladder (phone time, s)" in out
    # The ladder shows the INVITE going to the primary column, phone time first.
    ladder = out.split("SIP/DNS ladder (phone time, s)", 1)[1]
    assert "INVITE" in ladder and "primary" in ladder and "secondary" in ladder
    assert "bundled DUT decisions" in out


def test_passing_suite_has_no_ladder_and_ladder_dir_gets_html(pytester, tmp_path):
    out_dir = tmp_path / "ladders"
    result = _run_suite(pytester, "test_register_failover.py", "", f"--ladder-dir={out_dir}")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert "SIP/DNS ladder" not in result.stdout.str()
    pages = [p for p in out_dir.glob("*.html") if p.name != "index.html"]
    assert len(pages) == 1 and "REGISTER" in pages[0].read_text(encoding="utf-8")
    assert ">PASS<" in pages[0].read_text(encoding="utf-8")  # the page says how the test ended
    index = (out_dir / "index.html").read_text(encoding="utf-8")
    assert "<li>1 pass</li>" in index and "<li>0 findings</li>" in index and "<li>0 lab problems</li>" in index
    assert f'href="{pages[0].name}"' in index


def test_bad_clock_option_is_a_usage_error(pytester):
    result = _run_suite(pytester, "test_register_failover.py", "", "--clock=fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--clock*scaled:FACTOR*"])


def test_report_mode_turns_broken_rules_into_findings_under_xdist(pytester):
    """--report-mode (qualifying a phone nobody here wrote): the run passes, the findings are listed
    with the rule, and the per-scenario table counts them, also when xdist workers made them."""
    result = _run_suite(pytester, "test_failback.py", BROKEN_FAILBACK, "--report-mode", "-n", "2",
                        "-k", "duration_returns_after")
    assert result.ret == 0
    assert result.parseoutcomes()["finding"] == 2
    out = result.stdout.str()
    assert "sipharness findings" in out
    assert "FBK-3: " in out and "left the secondary" in out and "(not counted)" in out
    assert "sipharness outcomes: 0 pass, 2 findings (0 counted), 0 lab problems, 0 harness errors" in out
    table = out.split("sipharness rule table", 1)[1]
    row = next(line for line in table.splitlines() if line.startswith("FBK-3"))
    assert row.split()[1:3] == ["0", "2"], row  # met 0, findings 2 (both failback_timeout values)
