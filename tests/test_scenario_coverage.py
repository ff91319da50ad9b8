"""Every SPEC §8 scenario id has a test in suites/, and suites/COVERAGE.md says so truly."""

import re
from pathlib import Path

import pytest

from sipharness.harness.coverage import SCENARIOS, render, scan

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"


def test_every_spec_scenario_has_a_test():
    found = scan(ROOT / "suites")
    missing = [sid for sid in SCENARIOS if not found.get(sid)]
    assert not missing, f"SPEC §8 ids with no @pytest.mark.scenario test in suites/: {missing}"
    unknown = sorted(set(found) - set(SCENARIOS))
    assert not unknown, f"scenario markers with ids not in SPEC §8: {unknown}"


def test_coverage_md_is_current():
    text = (ROOT / "suites" / "COVERAGE.md").read_text(encoding="utf-8")
    assert text == render(scan(ROOT / "suites")), (
        "suites/COVERAGE.md is stale: run `python -m sipharness.harness.coverage > suites/COVERAGE.md`")


def test_scenario_list_matches_spec_table():
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not present beside the checkout")
    section = SPEC.read_text(encoding="utf-8").split("## 8.", 1)[1].split("## 9.", 1)[0]
    ids = re.findall(r"^\| ([A-Z]+(?:-[A-Z0-9]+)?) \|", section, flags=re.M)
    ids = [i for i in ids if i != "id"]
    assert ids == list(SCENARIOS), "harness/coverage.py SCENARIOS differs from SPEC §8's table"
