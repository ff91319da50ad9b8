"""``--pcap-dir``: one pcap per test of what the fakes saw, stamped in phone time, read back by tshark (issue 13).

A capture taken on the wire during a test on the virtual clock shows four REGISTERs ~11 ms apart
where the ladder says 0 / 0.5 / 1.5 / 3.5 s; the pcap written from the records shows what the
ladder shows. TCP gets a synthetic connection whose sequence numbers tshark's analysis accepts.
"""

from __future__ import annotations

import subprocess
import time

from sipharness.fakes.pcap import pcap_bytes
from sipharness.fakes.record import DnsRecord, SipRecord

from tests.user_project import FAILOVER_TEST, INI

pytest_plugins = ["pytester"]

TESTS = '''
import dns.message
import dns.query
import pytest_twisted

from sipharness.harness.lab import Domain

''' + FAILOVER_TEST + '''

@pytest_twisted.ensureDeferred
async def test_tcp(sip_lab):
    await sip_lab.up(Domain(("primary",)), transport="tcp")
    await sip_lab.dut.wait_registered(account=1, timeout=60)


def test_real_clock_dns_over_tcp(fake_dns):
    fake_dns.add("www.example.com", "A", "127.0.0.9")
    for qtype in ("A", "AAAA"):
        dns.query.tcp(dns.message.make_query("www.example.com", qtype), fake_dns.address[0],
                      port=fake_dns.address[1], timeout=5)
'''


def _fields(tshark: str, path, *fields: str, display: str = "", decode: str = "") -> list[list[str]]:
    args = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=|", "-o", "tcp.analyze_sequence_numbers:TRUE"]
    if decode:
        args += ["-d", decode]
    if display:
        args += ["-Y", display]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.splitlines()]


def test_pcaps_read_back_by_tshark_match_the_ladder(pytester, peer):
    tshark = peer("tshark")
    pytester.makeini(INI)
    pytester.makepyfile(test_user=TESTS)
    before = time.time()
    result = pytester.runpytest_subprocess("--pcap-dir", "pcaps", "--ladder-dir", "ladders")
    after = time.time()
    result.assert_outcomes(passed=3)
    pcaps = pytester.path / "pcaps"
    assert sorted(p.name for p in pcaps.iterdir()) == [
        "test_user.py_test_failover.pcap", "test_user.py_test_real_clock_dns_over_tcp.pcap", "test_user.py_test_tcp.pcap"]

    # virtual clock: phone time, the SPEC §3 schedule of the silent primary, then the secondary
    registers = _fields(tshark, pcaps / "test_user.py_test_failover.pcap", "frame.time_epoch", "ip.dst",
                        display="sip.Method == REGISTER")
    assert [(float(t), dst) for t, dst in registers] == [
        (0.0, "127.0.0.10"), (0.5, "127.0.0.10"), (1.5, "127.0.0.10"), (3.5, "127.0.0.10"), (7.5, "127.0.0.20")]
    assert _fields(tshark, pcaps / "test_user.py_test_failover.pcap", "sip.Status-Code", "ip.src",
                   display="sip.Status-Code") == [["200", "127.0.0.20"]]
    queries = _fields(tshark, pcaps / "test_user.py_test_failover.pcap", "dns.qry.name", "dns.qry.type",
                      display="dns.flags.response == 0")
    assert queries[0] == ["_sip._udp.pbx.example.com", "33"]  # SRV

    # TCP: one connection, a handshake, sequence numbers tshark's analysis finds nothing wrong with
    tcp = pcaps / "test_user.py_test_tcp.pcap"
    assert _fields(tshark, tcp, "frame.number", display="tcp.analysis.flags && !tcp.analysis.window_update") == []
    assert [f[0] for f in _fields(tshark, tcp, "tcp.flags.str", display="tcp.len == 0")][:3] == [
        "··········S·", "·······A··S·", "·······A····"]
    assert [(m or s) for m, s in _fields(tshark, tcp, "sip.Method", "sip.Status-Code", display="sip")] == [
        "REGISTER", "200"]

    # real clock (a plain test: the fakes in the background thread): wall time; DNS over TCP decoded
    real_pcap = pcaps / "test_user.py_test_real_clock_dns_over_tcp.pcap"
    port = _fields(tshark, real_pcap, "tcp.dstport")[0][0]  # (Wireshark decodes DNS over TCP on port 53 only)
    real = _fields(tshark, real_pcap, "frame.time_epoch", "dns.qry.name", "dns.qry.type", "dns.flags.response",
                   display="dns", decode=f"tcp.port=={port},dns")
    assert [(name, qtype, response) for _, name, qtype, response in real] == [
        ("www.example.com", "1", "0"), ("www.example.com", "1", "1"),
        ("www.example.com", "28", "0"), ("www.example.com", "28", "1")]
    assert all(before <= float(t) <= after for t, *_ in real)


def test_ipv6_and_a_message_larger_than_a_segment(tmp_path, peer):
    tshark = peer("tshark")
    body = b"x" * 70000
    big = (b"MESSAGE sip:bob@[::1] SIP/2.0\r\nVia: SIP/2.0/TCP [::1]:5070;branch=z9hG4bK-1\r\n"
           b"From: <sip:a@[::1]>;tag=1\r\nTo: <sip:bob@[::1]>\r\nCall-ID: 1\r\nCSeq: 1 MESSAGE\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    ok = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP [::1]:5070;branch=z9hG4bK-1\r\nFrom: <sip:a@[::1]>;tag=1\r\n"
          b"To: <sip:bob@[::1]>;tag=2\r\nCall-ID: 1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
    records = [
        DnsRecord(time=0.25, direction="in", server="dns", transport="udp", local=("::1", 53), peer=("::1", 40000),
                  name="example.com", qtype="A",
                  raw=bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")),
        SipRecord(time=1.0, direction="in", server="pbx", transport="tcp", local=("::1", 5060), peer=("::1", 5070),
                  method="MESSAGE", raw=big),
        SipRecord(time=2.0, direction="out", server="pbx", transport="tcp", local=("::1", 5060), peer=("::1", 5070),
                  status=200, method="MESSAGE", raw=ok),
    ]
    path = tmp_path / "v6.pcap"
    path.write_bytes(pcap_bytes(records, epoch=1000.0))
    rows = _fields(tshark, path, "frame.time_epoch", "ipv6.src", "udp.srcport", "tcp.len", "dns.qry.name")
    assert rows[0] == ["1000.250000000", "::1", "40000", "", "example.com"]
    assert [int(r[3]) for r in rows[1:]] == [0, 0, 0, 65000, len(big) - 65000, len(ok)]  # handshake, 2 segments, 200
    assert _fields(tshark, path, "frame.number", display="tcp.analysis.flags && !tcp.analysis.window_update") == []
    assert _fields(tshark, path, "sip.Status-Code", display="sip.Status-Code") == [["200"]]
