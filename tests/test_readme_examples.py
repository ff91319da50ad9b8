"""README's examples of tests are run as they are written there, so README cannot rot (issue 13).

Each fenced ``python`` block right after a ``<!-- readme-example: NAME -->`` line is written to a
test module of a fresh project (pytester) and run in a pytest subprocess: every test in it passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
_EXAMPLE = re.compile(r"<!-- readme-example: (\w+) -->\n```python\n(.*?)\n```", re.S)
INI = ("[pytest]\naddopts = --reactor=default -p no:cacheprovider -p no:randomly\n"
       "asyncio_default_fixture_loop_scope = function\n")


def examples() -> dict[str, str]:
    return {name: code for name, code in _EXAMPLE.findall(README.read_text(encoding="utf-8"))}


def test_readme_shows_the_three_styles():
    assert set(examples()) >= {"twisted", "sync", "asyncio"}


@pytest.mark.parametrize("name", sorted(examples()))
def test_readme_example_runs(pytester, name):
    code = examples()[name]
    pytester.makeini(INI)
    pytester.makepyfile(**{f"test_readme_{name}": code})
    result = pytester.runpytest_subprocess("-v")
    outcomes = result.parseoutcomes()
    tests = len(re.findall(r"^(?:async )?def test_", code, flags=re.M))
    assert outcomes.get("passed") == tests and set(outcomes) <= {"passed", "warnings"}, result.stdout.str()
