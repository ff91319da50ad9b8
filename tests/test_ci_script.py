"""`.ci/run` calls exactly the README's "all tests" command, and installs every peer the README names.

The developers' guide makes the README's two commands the whole set-up of a fresh machine; CI proves
them only if it runs the same text, so the two must not drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    """The indented command lines of README's quick start."""
    text = (ROOT / "README.md").read_text()
    quick = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 5)]
    return [line.strip() for line in quick.splitlines() if line.startswith("    python3 ")]


def test_ci_runs_the_readme_all_tests_command_verbatim():
    suites, all_tests = _readme_commands()
    assert suites.endswith("python3 -m pytest suites/") and all_tests.endswith("python3 -m pytest -n 2")
    ci = (ROOT / ".ci" / "run").read_text()
    assert f'"{all_tests}"' in ci or f"'{all_tests}'" in ci or f"\n{all_tests}\n" in ci, (
        f".ci/run must call the README's test command as written: {all_tests}")


def test_ci_installs_every_peer_the_readme_names():
    text = (ROOT / "README.md").read_text()
    named = re.search(r"installing the real peers (.*?)\s+with apt-get", text, re.S).group(1)
    peers = set(re.findall(r"`([\w.-]+)`", named))
    apt = re.search(r"apt-get install -y -qq ([^>']+)", (ROOT / ".ci" / "run").read_text()).group(1).split()
    packages = {"dig": "dnsutils", "sipp": "sip-tester"}  # program → Debian package, where they differ
    missing = {p for p in peers if packages.get(p, p) not in apt}
    assert not missing, f".ci/run's apt-get line lacks the packages of {sorted(missing)}"
