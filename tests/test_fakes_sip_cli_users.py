"""``sipharness registrar`` credentials without the password on the command line (issue 12):
a users file and the SIPHARNESS_USERS environment variable, errors that name file:line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sipharness.fakes.sip.cli import parse_users


def run_cli(*args: str, env_users: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    env.pop("SIPHARNESS_USERS", None)
    if env_users is not None:
        env["SIPHARNESS_USERS"] = env_users
    return subprocess.run([sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", "udp:127.0.0.1:0",
                           "--quiet", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_users_file_format_and_errors():
    assert parse_users("# lab users\nalice:pa:ss:word\n\n  bob : x\r\n", "u.txt") == {"alice": "pa:ss:word", "bob": " x"}
    for text, line, what in [("alice:pw\nbob\n", 2, "NAME:PASSWORD"), ("alice:pw\nalice:other\n", 2, "twice"),
                             (":pw\n", 1, "NAME:PASSWORD"), ("carol:p\x00w\n", 1, "control character")]:
        with pytest.raises(ValueError) as ei:
            parse_users(text, "u.txt")
        assert str(ei.value).startswith(f"u.txt:{line}: ") and what in str(ei.value)
        assert "pw" not in str(ei.value).split(":", 2)[2] or what == "NAME:PASSWORD"


def test_cli_refuses_a_bad_users_file_with_file_line_before_listening(tmp_path):
    bad = tmp_path / "users.txt"
    bad.write_text("alice:secret\nbob\n")
    done = run_cli("--users-file", str(bad))
    assert done.returncode == 2 and f"{bad}:2: expected NAME:PASSWORD" in done.stderr and not done.stdout
    assert "secret" not in done.stderr
    done = run_cli("--user", "alice:x", env_users="alice:y")
    assert done.returncode == 2 and "alice" in done.stderr and "$SIPHARNESS_USERS" in done.stderr
    done = run_cli("--users-file", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "missing.txt:0: cannot read" in done.stderr


def _register(sock, addr, user, password=None, challenge=None, cseq=1):
    from sipharness.sipcore.build import make_request
    from sipharness.sipcore.digest import authorize
    from sipharness.sipcore.ids import new_branch
    from sipharness.sipcore.parser import parse

    uri = f"sip:{addr[0]}:{addr[1]}"
    headers = {"Expires": "60"}
    if challenge is not None:
        headers["Authorization"] = authorize(challenge, method="REGISTER", uri=uri, username=user, password=password)
    req = make_request("REGISTER", uri, from_=f"<sip:{user}@{addr[0]}>;tag=t{cseq}", to=f"<sip:{user}@{addr[0]}>",
                       call_id=f"{user}@cli", cseq=cseq, via=f"SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};"
                       f"branch={new_branch()}", contact=f"<sip:{user}@127.0.0.1:{sock.getsockname()[1]}>",
                       headers=headers)
    sock.sendto(req.to_bytes(), addr)
    return parse(sock.recv(65535))


def test_users_from_a_file_and_the_environment_register_with_sha256(tmp_path):
    import socket

    users = tmp_path / "users.txt"
    users.write_text("# from a file\nalice:from-file\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
               SIPHARNESS_USERS="bob:from-env")
    proc = subprocess.Popen([sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", "udp:127.0.0.1:0",
                             "--quiet", "--users-file", str(users)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        addr = (first["host"], first["port"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)
            for user, password in (("alice", "from-file"), ("bob", "from-env")):
                challenge = _register(sock, addr, user)
                assert challenge.status == 401
                value = challenge.headers.get("WWW-Authenticate")
                assert "algorithm=SHA-256" in value  # the preferred of the two challenges
                assert _register(sock, addr, user, password, value, cseq=2).status == 200
                wrong = _register(sock, addr, user, cseq=3)
                assert _register(sock, addr, user, "nope", wrong.headers.get("WWW-Authenticate"), cseq=4).status == 403
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
