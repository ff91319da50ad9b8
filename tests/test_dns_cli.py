"""``sipharness dns`` as a subprocess: address line, dig, JSON query log, clean exit on SIGTERM."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_dns_zone import SEED, SEED_TEXT

ROOT = Path(__file__).resolve().parents[1]


def _zone(tmp_path) -> str:
    if SEED.exists():
        return str(SEED)
    p = tmp_path / "seed-example.zone"
    p.write_text(SEED_TEXT)
    return str(p)


_buffers: dict[int, bytes] = {}


def _readline(proc, deadline: float) -> str:
    """One stdout line, failing (not hanging) if none comes before ``deadline`` (monotonic)."""
    fd = proc.stdout.fileno()
    while b"\n" not in _buffers.get(fd, b""):
        left = deadline - time.monotonic()
        assert left > 0, "sipharness dns printed nothing in time"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, "sipharness dns closed its stdout"
            _buffers[fd] = _buffers.get(fd, b"") + chunk
    line, _buffers[fd] = _buffers[fd].split(b"\n", 1)
    return line.decode() + "\n"


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "sipharness.harness.cli", "dns", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_cli_serves_logs_json_and_exits_0_on_sigterm(peer, tmp_path):
    dig = peer("dig")
    proc = _start("--zone", _zone(tmp_path), "--listen", "127.0.0.1:0")
    try:
        deadline = time.monotonic() + 20
        first = json.loads(_readline(proc, deadline))
        assert (first["kind"], first["transport"], first["host"]) == ("listening", "udp+tcp", "127.0.0.1"), first
        port = str(first["port"])
        assert first["address"] == f"127.0.0.1:{port}" and 0 <= first["t"] < 5
        out = subprocess.run([dig, "@127.0.0.1", "-p", port, "+norec", "+time=2", "+tries=1", "+short",
                              "SRV", "_sip._tcp.yealink.pbx.com"], capture_output=True, text=True, timeout=10)
        assert sorted(out.stdout.split("\n")[:2]) == ["0 1 5060 server1.yealink.pbx.com.",
                                                     "0 2 5060 server2.yealink.pbx.com."]
        q = json.loads(_readline(proc, deadline))
        a = json.loads(_readline(proc, deadline))
        assert (q["kind"], q["dir"], q["method"], q["name"], q["summary"]) == (
            "dns", "in", "SRV", "_sip._tcp.yealink.pbx.com", "Q SRV _sip._tcp.yealink.pbx.com")
        assert (a["dir"], a["status"], a["summary"], a["transport"]) == ("out", 0, "NOERROR 2 SRV +2 add", "udp")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_zone_before_listening(tmp_path):
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nsip NAPTR 10 10 \"s\" \"SIP+D2U\" _sip._udp\n")
    proc = _start("--zone", _zone(tmp_path), "--zone", str(bad))
    out, err = (x.decode() for x in proc.communicate(timeout=20))
    assert proc.returncode == 2 and "listening" not in out
    assert f"{bad}:4: NAPTR record for sip.a.test. takes 6 data field(s), got 5" in err
