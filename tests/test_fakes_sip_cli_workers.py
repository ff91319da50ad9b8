"""``sipharness registrar --reuse-port N --max-expires S``: worker processes sharing one port.

Two processes started with the same ``--listen`` share the UDP port; a client always meets
the same worker (its source port modulo 2), which holds its binding; every 200 grants at
most S seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipharness.sipcore.build import make_request
from sipharness.sipcore.ids import new_branch, new_tag
from sipharness.sipcore.parser import parse

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT steering is Linux only")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(parity: int) -> socket.socket:
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if s.getsockname()[1] % 2 == parity:
            s.settimeout(5)
            return s
        s.close()
    raise RuntimeError("no port of that parity")


def _register(sock: socket.socket, port: int, user: str) -> object:
    me = sock.getsockname()[1]
    req = make_request("REGISTER", f"sip:127.0.0.1:{port}", from_=f"<sip:{user}@127.0.0.1>;tag={new_tag()}",
                       to=f"<sip:{user}@127.0.0.1>", call_id=f"{user}@t", cseq=1,
                       via=f"SIP/2.0/UDP 127.0.0.1:{me};branch={new_branch()}", contact=f"<sip:{user}@127.0.0.1:{me}>",
                       headers={"Expires": "3600"})
    sock.sendto(req.to_bytes(), ("127.0.0.1", port))
    return parse(sock.recv(65535))


def test_two_workers_share_the_port_each_client_on_its_own_and_grants_are_capped():
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    workers = []
    try:
        for name in ("w0", "w1"):  # in order: w0 is worker 0 (even source ports), w1 worker 1
            p = subprocess.Popen([sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", f"udp:127.0.0.1:{port}",
                                  "--reuse-port", "2", "--max-expires", "10", "--name", name],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
            workers.append(p)
            listening = json.loads(p.stdout.readline())
            assert (listening["kind"], listening["transport"], listening["port"]) == ("listening", "udp", port)
        even, odd = _client(0), _client(1)
        for sock, user in ((even, "alice"), (odd, "bob"), (even, "alice")):
            ok = _register(sock, port, user)
            assert ok.status == 200 and ok.contacts[0].expires == 10  # asked 3600, granted at most 10
        even.close()
        odd.close()
    finally:
        for p in workers:
            p.terminate()
    seen = {}
    for name, p in zip(("w0", "w1"), workers):
        out, _ = p.communicate(timeout=10)
        seen[name] = [r for r in map(json.loads, out.splitlines()) if r["kind"] == "sip"]
    users = {name: {r["summary"] for r in recs if r.get("method") == "REGISTER" and r["dir"] == "in"}
             for name, recs in seen.items()}
    assert all(len(v) == 1 for v in users.values()), users  # each worker met one client only
    assert sum(1 for r in seen["w0"] if r["dir"] == "in") == 2 and sum(1 for r in seen["w1"] if r["dir"] == "in") == 1


def test_bad_worker_and_grant_counts_are_refused():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for flag in (["--reuse-port", "0"], ["--max-expires", "0"]):
        p = subprocess.run([sys.executable, "-m", "sipharness.fakes.sip.cli", "--listen", "udp:127.0.0.1:0", *flag],
                           capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 2 and flag[0] in p.stderr, (flag, p.stderr)
