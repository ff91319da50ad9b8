"""``sipharness dns|registrar|phone`` as a user's shell sees them (issue 13): every stdout line is JSON
(``jq`` reads the whole stream, the first line included), ``t`` is seconds since the process started
in all three, ``--version`` answers, and the fakes print a SIPp-style summary at exit."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dnslib import DNSRecord

from sipharness import __version__

ROOT = Path(__file__).resolve().parents[1]
ZONE = """$ORIGIN pbx.test.
$TTL 60
@          IN SOA  ns.pbx.test. hostmaster.pbx.test. 1 3600 600 86400 60
@          IN NS   ns.pbx.test.
ns         IN A    127.0.0.1
_sip._udp  IN SRV  0 1 5060 server1.pbx.test.
server1    IN A    127.0.0.1
"""


class Cli:
    """A ``sipharness`` role as a subprocess; stdout read line by line with deadlines, never blocking."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "sipharness.harness.cli", *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.lines: list[bytes] = []
        self._buf = b""

    def line(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no stdout line within {timeout} s; stderr: {self.proc.stderr.read1(4096)!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed; stderr: {self.proc.stderr.read()!r}"
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        self.lines.append(raw)
        return json.loads(raw)

    def finish(self, sig: int | None = signal.SIGTERM, timeout: float = 20.0) -> tuple[list[dict], str]:
        """Signal it, wait for its exit (status 0), and → (the rest of stdout as JSON, stderr)."""
        if sig is not None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err.decode()
        rest = (self._buf + out).splitlines()
        self.lines += rest
        return [json.loads(x) for x in rest], err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def cli():
    made: list[Cli] = []

    def start(*args: str) -> Cli:
        made.append(Cli(*args))
        return made[-1]

    yield start
    for c in made:
        c.kill()


def _jq_reads(peer, lines: list[bytes]) -> list:
    out = subprocess.run([peer("jq"), "-c", "."], input=b"\n".join(lines) + b"\n", capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().splitlines()


def register(to, local, branch: str = "z9hG4bK-1") -> bytes:
    host, port = local
    return (f"REGISTER sip:{to[0]} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={branch}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: {branch}\r\n"
            f"CSeq: 1 REGISTER\r\nContact: <sip:alice@{host}:{port}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
            ).encode()


def test_registrar_json_lines_and_summary(cli, peer):
    reg = cli("registrar", "--listen", "udp:127.0.0.1:0", "--name", "pbx")
    first = reg.line()
    assert (first["kind"], first["transport"], first["host"]) == ("listening", "udp", "127.0.0.1")
    assert 0 <= first["t"] < 5 and abs(first["unix_time"] - time.time()) < 60
    to = (first["host"], first["port"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.bind(("127.0.0.1", 0))
        for _ in range(2):  # the second is a retransmission (same branch)
            s.sendto(register(to, s.getsockname()), to)
            assert s.recv(65535).startswith(b"SIP/2.0 200 OK")
        s.sendto(b"OPTIONS garbage\r\n\r\n", to)
        request = reg.line()
    assert (request["kind"], request["method"], request["dir"]) == ("sip", "REGISTER", "in")
    assert first["t"] <= request["t"] < 20  # seconds since start, not Unix time
    rest, err = reg.finish()
    summary = rest[-1]
    assert summary["kind"] == "summary" and summary["t"] >= request["t"]
    rows = {(m["message"], m["dir"]): m for m in summary["messages"]}
    assert rows[("REGISTER", "in")]["count"] == 2 and rows[("REGISTER", "in")]["retransmissions"] == 1
    assert rows[("200 REGISTER", "out")]["count"] == 2  # the second one repeats the first answer
    assert rows[("200 REGISTER", "out")]["retransmissions"] == 1
    assert summary["retransmissions"] == 2 and summary["total"] == sum(m["count"] for m in summary["messages"])
    assert "REGISTER" in err and "retrans" in err  # the table for a human, on stderr
    assert len(_jq_reads(peer, reg.lines)) == len(reg.lines) >= 6


def test_dns_json_lines_and_summary(cli, peer, tmp_path):
    zone = tmp_path / "pbx.zone"
    zone.write_text(ZONE)
    dns = cli("dns", "--zone", str(zone), "--listen", "127.0.0.1:0")
    first = dns.line()
    assert (first["kind"], first["transport"]) == ("listening", "udp+tcp") and 0 <= first["t"] < 5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        for name, qtype in (("_sip._udp.pbx.test", "SRV"), ("server1.pbx.test", "A"), ("nope.pbx.test", "A")):
            s.sendto(DNSRecord.question(name, qtype).pack(), (first["host"], first["port"]))
            DNSRecord.parse(s.recv(4096))
    rest, err = dns.finish(signal.SIGINT)
    summary = rest[-1]
    rows = {(m["message"], m["dir"]): m["count"] for m in summary["messages"]}
    assert rows == {("SRV", "in"): 1, ("A", "in"): 2, ("NOERROR", "out"): 2, ("NXDOMAIN", "out"): 1}
    assert [x["t"] for x in rest[:-1]] == sorted(x["t"] for x in rest[:-1]) and rest[0]["t"] < 20
    assert "NXDOMAIN" in err
    assert len(_jq_reads(peer, dns.lines)) == len(dns.lines) == 8


def test_phone_json_lines_from_the_first(cli, peer, tmp_path):
    cfg = tmp_path / "phone.cfg"
    cfg.write_text("#!version:1.0.0.1\nsip.listen_port = 0\n")
    phone = cli("phone", "--config", str(cfg))
    first = phone.line()
    assert first["kind"] == "daemon" and first["detail"].startswith("started") and 0 <= first["t"] < 5
    phone.proc.stdin.write(b"quit\n")
    phone.proc.stdin.flush()
    rest, _ = phone.finish(sig=None)
    assert rest[-1]["detail"] == "stopped" and rest[-1]["t"] < 20
    assert len(_jq_reads(peer, phone.lines)) == len(phone.lines)


@pytest.mark.parametrize("role", ["", "dns", "registrar", "phone"])
def test_version(role):
    args = [role, "--version"] if role else ["--version"]
    out = subprocess.run([sys.executable, "-m", "sipharness.harness.cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0 and out.stdout == f"sipharness{' ' + role if role else ''} {__version__}\n"


def test_registrar_script_file_in_toml(cli, tmp_path):
    rules = tmp_path / "faults.toml"
    rules.write_text('# the first REGISTER gets a 503\n[[rule]]\naction = "respond"\nmethod = "REGISTER"\n'
                     'status = 503\nfirst = 1\nheaders = { "Retry-After" = "30" }\n')
    reg = cli("registrar", "--listen", "udp:127.0.0.1:0", "--script", str(rules), "--quiet")
    first = reg.line()
    to = (first["host"], first["port"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.bind(("127.0.0.1", 0))
        s.sendto(register(to, s.getsockname(), "z9hG4bK-1"), to)
        assert s.recv(65535).startswith(b"SIP/2.0 503 Service Unavailable\r\n")
        s.sendto(register(to, s.getsockname(), "z9hG4bK-2"), to)
        assert s.recv(65535).startswith(b"SIP/2.0 200 OK")
    rest, _ = reg.finish()
    rows = {(m["message"], m["dir"]): m["count"] for m in rest[-1]["messages"]}
    assert rows == {("REGISTER", "in"): 2, ("503 REGISTER", "out"): 1, ("200 REGISTER", "out"): 1}


def test_dns_script_file_in_json(cli, tmp_path):
    zone = tmp_path / "pbx.zone"
    zone.write_text(ZONE)
    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps({"rule": [{"action": "respond", "rcode": "SERVFAIL", "name": "server1.pbx.test",
                                           "qtype": "A", "count": 1}]}))
    dns = cli("dns", "--zone", str(zone), "--script", str(rules))
    first = dns.line()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        for rcode in (2, 0):  # SERVFAIL once (count = 1), then the zone's answer
            s.sendto(DNSRecord.question("server1.pbx.test", "A").pack(), (first["host"], first["port"]))
            assert DNSRecord.parse(s.recv(4096)).header.rcode == rcode
    rest, _ = dns.finish()
    assert [x.get("note", "") for x in rest if x["kind"] == "dns" and x["dir"] == "out"][0].startswith("scripted: rule 1")


@pytest.mark.parametrize("role, text, error", [
    ("registrar", '[[rule]]\naction = "respond"\nstatus = 503\n\n[[rule]]\naction = "drop"\nfirts = 2\n',
     "faults.toml:5: rule 2: unknown field 'firts'"),
    ("dns", '[[rule]]\naction = "respond"\nrcode = "BOGUS"\n', "faults.toml:1: rule 1:"),
    ("registrar", '[[rule]\n', "faults.toml: not TOML"),
])
def test_a_bad_script_is_refused_naming_file_and_line_before_listening(tmp_path, role, text, error):
    rules = tmp_path / "faults.toml"
    rules.write_text(text)
    zone = tmp_path / "pbx.zone"
    zone.write_text(ZONE)
    args = ["--listen", "udp:127.0.0.1:0"] if role == "registrar" else ["--zone", str(zone)]
    out = subprocess.run([sys.executable, "-m", "sipharness.harness.cli", role, *args, "--script", str(rules)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 2 and out.stdout == "", out.stdout
    assert f"sipharness {role}: {tmp_path}/{error}" in out.stderr, out.stderr
