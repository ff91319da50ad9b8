"""The docs and the code send a reader only to files a clone or an install has (issue 13): no
``../shared/`` (the team's folder beside a developer's checkout), and every relative link of
README.md and docs/*.md leads to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("sipharness", "sipcore", "fakes", "phone", "harness", "suites", "bench", "ci", "docs")


def _texts():
    yield ROOT / "README.md"
    yield ROOT / "setup.cfg"
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".md", ".sh", ".cfg", ".toml", ".zone", ".txt"):
                yield path


def test_nothing_points_outside_the_repository():
    bad = []
    for path in _texts():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if re.search(r"\.\./shared|/work/shared|\bshared/(SPEC|data|seed|PEERS)", line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not bad, "these send a reader outside the repository (cite docs/spec.md instead):\n" + "\n".join(bad)


def test_relative_links_of_the_docs_resolve():
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # (an http(s) or mailto link)
            if not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)
