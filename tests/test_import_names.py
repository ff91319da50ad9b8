"""Installed, the role folders are ``sipharness.*`` (setup.cfg ``package_dir``): our code must import
them by that name only. A bare ``import phone`` works inside the checkout (the current directory is
on ``sys.path``) and would load a second copy of the module, or a user's own ``phone.py``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"sipcore", "fakes", "phone", "harness"}


def test_no_bare_role_imports():
    bad = []
    for folder in ("sipcore", "fakes", "phone", "harness", "sipharness", "suites", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in ROLES]
    assert not bad, "import these as sipharness.<role>…:\n" + "\n".join(bad)
