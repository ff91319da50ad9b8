"""Installed as a user installs it: the wheel, without extras, into a fresh venv (issue 13).

The plugin is loaded into every pytest run of an environment it is installed in (its ``pytest11``
entry point), so installing it must never break an unrelated project's tests, and a plain install
must give a working plugin (its runtime dependencies are ``install_requires``, not an extra).
These tests build the wheel from this checkout, install it into a new virtualenv (no
``--system-site-packages``), then run small projects with the venv's own pytest:

- an unrelated project, plain: its own ``phone.py`` and ``harness.py`` beside the tests and a
  conftest with its own ``--dut`` option;
- an unrelated project using pytest-asyncio;
- a project that uses our fixtures from the installed package.

Installing downloads from the package index: offline the tests skip with the reason, and under
``SIPHARNESS_REQUIRE_PEERS=1`` (CI) they fail instead, as a missing real peer does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "sipharness", "sipcore", "fakes", "phone", "harness")
_OFFLINE_HINTS = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
                  "No matching distribution found", "Could not find a version", "ConnectTimeout", "ReadTimeout")


def _need_index(what: str, output: str) -> None:
    """Skip (or fail under SIPHARNESS_REQUIRE_PEERS=1) when the package index could not be reached."""
    reason = f"{what}: the package index was not reachable ({output.strip().splitlines()[-1][:200]})"
    if os.environ.get("SIPHARNESS_REQUIRE_PEERS") == "1":
        pytest.fail(reason + "; SIPHARNESS_REQUIRE_PEERS=1 requires it", pytrace=False)
    pytest.skip(reason)


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**_clean_env(), **(env or {})})


def _clean_env() -> dict[str, str]:
    """The environment without this checkout on PYTHONPATH and without pytest's own variables."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                         "PYTEST_CURRENT_TEST", "PYTEST_PLUGINS", "SIPHARNESS_REQUIRE_PEERS")}


def _source_hash() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                      and "__pycache__" not in p.parts)
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _pip(python: Path, *args: str, what: str) -> None:
    r = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], timeout=900)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        if any(hint in out for hint in _OFFLINE_HINTS):
            _need_index(what, out)
        raise AssertionError(f"{what} failed:\n{out[-4000:]}")


# Building the wheel and two venvs downloads and installs packages: minutes on a busy box, not the
# 120 s tox.ini gives an ordinary test (every step below has its own subprocess timeout).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """A venv with this checkout's wheel installed without extras; → its python.

    Made once per source state and shared by the xdist workers (a lock beside their base temp)."""
    shared = tmp_path_factory.getbasetemp().parent / f"sipharness-wheel-{_source_hash()}"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = shared / "venv" / "bin" / "python"
        if (shared / "ready").exists():
            return python
        src = shared / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        for name in SOURCES:  # (a copy: a build in the checkout would leave build/ and *.egg-info there)
            path = ROOT / name
            if path.is_file():
                shutil.copy2(path, src / name)
            else:
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        wheels = shared / "wheels"
        r = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)], timeout=900)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if any(hint in out for hint in _OFFLINE_HINTS):
                _need_index("building the wheel", out)
            raise AssertionError(f"building the wheel failed:\n{out[-4000:]}")
        (wheel,) = wheels.glob("sip_redundancy_harness-*.whl")
        shutil.rmtree(shared / "venv", ignore_errors=True)
        r = _run([sys.executable, "-m", "venv", str(shared / "venv")])
        assert r.returncode == 0, r.stderr
        _pip(python, str(wheel), what="installing the wheel without extras")
        # a second venv for the pytest-asyncio project: the first one's packages (a .pth file) plus
        # pytest-asyncio, so the plain project runs where pytest-asyncio is not installed at all
        r = _run([sys.executable, "-m", "venv", str(shared / "venv-asyncio")])
        assert r.returncode == 0, r.stderr
        site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        python2 = shared / "venv-asyncio" / "bin" / "python"
        site2 = _run([str(python2), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        Path(site2, "sipharness-wheel-venv.pth").write_text(site + "\n")
        _pip(python2, "pytest-asyncio>=0.23", what="installing pytest-asyncio")
        (shared / "ready").write_text(str(wheel))
        return python


@pytest.fixture(scope="session")
def installed_with_asyncio(installed) -> Path:
    """The same install, plus pytest-asyncio (a second venv that sees the first one's packages)."""
    return installed.parent.parent.parent / "venv-asyncio" / "bin" / "python"


def _pytest(python: Path, project: Path, *args: str):
    return _run([str(python), "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project, timeout=300)


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_an_unrelated_project_runs_as_before(installed, tmp_path):
    project = _project(tmp_path, {
        "phone.py": "def dial(n):\n    return f'dialling {n}'\n",
        "harness.py": "WHO = 'the project'\n",
        "conftest.py": "def pytest_addoption(parser):\n    parser.addoption('--dut', default='toaster')\n",
        "test_plain.py": (
            "import harness\nimport phone\n\n\n"
            "def test_its_own_modules():\n"
            "    assert phone.dial(7) == 'dialling 7' and harness.WHO == 'the project'\n\n\n"
            "def test_its_own_option(pytestconfig):\n"
            "    assert pytestconfig.getoption('--dut') == 'oven'\n"),
    })
    r = _pytest(installed, project, "--dut", "oven")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout and "sip-redundancy-harness" in r.stdout  # (our plugin was loaded)
    assert "asyncio" not in r.stdout  # (where pytest-asyncio is not installed)
    assert "sipharness" not in r.stdout.replace("sip-redundancy-harness", "")  # and it said nothing
    assert r.stderr == ""


def test_an_unrelated_pytest_asyncio_project_runs_as_before(installed_with_asyncio, tmp_path):
    project = _project(tmp_path, {
        "test_async.py": (
            "import asyncio\n\nimport pytest\n\n\n"
            "@pytest.mark.asyncio\n"
            "async def test_sleeps():\n"
            "    await asyncio.sleep(0.01)\n"
            "    assert asyncio.get_running_loop().is_running()\n\n\n"
            "@pytest.fixture\n"
            "async def value():\n"
            "    await asyncio.sleep(0)\n"
            "    return 42\n\n\n"
            "@pytest.mark.asyncio\n"
            "async def test_async_fixture(value):\n"
            "    assert value == 42\n"),
        "pytest.ini": "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
    })
    r = _pytest(installed_with_asyncio, project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout and "asyncio-" in r.stdout and "sip-redundancy-harness" in r.stdout


def test_the_installed_plugin_gives_working_fixtures(installed, tmp_path):
    """Without extras: the Twisted-style lab on the bundled phone, and a blocking client of the fake DNS."""
    project = _project(tmp_path, {
        "phone.py": "OWN = True\n",
        "test_lab.py": (
            "import pytest_twisted\n\n"
            "import phone\n"
            "from sipharness.harness.lab import Address\n\n\n"
            "@pytest_twisted.ensureDeferred\n"
            "async def test_registers(lab):\n"
            "    assert phone.OWN\n"
            "    await lab.up(Address('fallback'))\n"
            "    await lab.dut.wait_registered(account=1, timeout=30)\n"),
        "test_blocking.py": (
            "import socket\n\n"
            "from dnslib import DNSRecord\n\n\n"
            "def test_a_blocking_client_of_the_fake_dns(fake_dns):\n"
            "    fake_dns.add('www.example.com', 'A', '127.0.0.9')\n"
            "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
            "        s.settimeout(5)\n"
            "        s.sendto(DNSRecord.question('www.example.com', 'A').pack(), fake_dns.address)\n"
            "        reply = DNSRecord.parse(s.recv(4096))\n"
            "    assert [str(rr.rdata) for rr in reply.rr] == ['127.0.0.9']\n"),
    })
    r = _pytest(installed, project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout and "sipharness outcomes: 2 pass" in r.stdout
