"""FakeDNS proven by dig (BIND's own client) over real loopback sockets, UDP and TCP."""

import os
import re

import pytest
import pytest_twisted
from twisted.internet import utils

from sipharness.fakes.dns import FakeDNS
from tests.test_dns_zone import seed_zone

D = "yealink.pbx.com"


@pytest.fixture
def fake():
    server = FakeDNS([seed_zone()])
    server.start()
    yield server
    pytest_twisted.blockon(server.stop())


async def dig(path, fake, *args):
    out, err, code = await utils.getProcessOutputAndValue(
        path, ["@127.0.0.1", "-p", str(fake.address[1]), "+norec", "+time=2", "+tries=1", *args], env=dict(os.environ))
    out = out.decode()
    assert code == 0, out + err.decode()
    return out


def section(out, name):
    m = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [line.split() for line in m.group(1).splitlines()] if m else []


def flags(out):
    return re.search(r";; flags: ([a-z ]*);", out).group(1).split()


@pytest_twisted.ensureDeferred
async def test_dig_naptr_udp_aa_exact_ttl_and_glue(peer, fake):
    out = await dig(peer("dig"), fake, "NAPTR", D)
    assert "status: NOERROR" in out and "aa" in flags(out) and "(UDP)" in out
    answer = section(out, "ANSWER")
    assert [(r[1], r[3], r[4], r[6], r[7]) for r in answer] == [("3600", "NAPTR", "90", '"s"', '"SIP+D2T"'),
                                                                ("3600", "NAPTR", "100", '"s"', '"SIP+D2U"')]
    add = {(r[0], r[3]) for r in section(out, "ADDITIONAL")}
    assert add == {(f"_sip._tcp.{D}.", "SRV"), (f"server1.{D}.", "A"), (f"server2.{D}.", "A")}
    q = await fake.wait_for_query(D, "NAPTR", timeout=5)
    assert (q.transport, q.summary) == ("udp", f"Q NAPTR {D}")
    out_rec = fake.recorder.dns(direction="out")[-1]
    assert (out_rec.rcode, out_rec.summary) == (0, "NOERROR 2 NAPTR +4 add")


@pytest_twisted.ensureDeferred
async def test_dig_srv_over_tcp_with_address_glue(peer, fake):
    out = await dig(peer("dig"), fake, "+tcp", "SRV", f"_sip._tcp.{D}")
    assert "(TCP)" in out and "aa" in flags(out)
    assert sorted(r[-1] for r in section(out, "ANSWER")) == [f"server1.{D}.", f"server2.{D}."]
    assert sorted(r[-1] for r in section(out, "ADDITIONAL")) == ["62.10.1.10", "62.10.1.20"]
    assert (await fake.wait_for_query(f"_sip._tcp.{D}", "SRV", timeout=5)).transport == "tcp"


@pytest_twisted.ensureDeferred
async def test_dig_nxdomain_nodata_refused(peer, fake):
    out = await dig(peer("dig"), fake, "A", f"nope.{D}")
    assert "status: NXDOMAIN" in out and "aa" in flags(out)
    assert [(r[0], r[1], r[3]) for r in section(out, "AUTHORITY")] == [(f"{D}.", "60", "SOA")]
    out = await dig(peer("dig"), fake, "AAAA", f"server1.{D}")
    assert "status: NOERROR" in out and "ANSWER: 0," in out and "aa" in flags(out)
    assert [r[3] for r in section(out, "AUTHORITY")] == ["SOA"]
    out = await dig(peer("dig"), fake, "A", "www.example.org")
    assert "status: REFUSED" in out and "aa" not in flags(out)


@pytest_twisted.ensureDeferred
async def test_dig_bufsize_truncation_and_tcp_retry(peer, fake):
    for i in range(40):
        fake.add(f"big.{D}", "A", f"127.0.1.{i}")  # 40 A records: 600+ bytes
    out = await dig(peer("dig"), fake, "+ignore", "+bufsize=512", "A", f"big.{D}")
    assert "tc" in flags(out) and "ANSWER: 0," in out
    out = await dig(peer("dig"), fake, "+bufsize=4096", "A", f"big.{D}")
    assert "tc" not in flags(out) and len(section(out, "ANSWER")) == 40
    out = await dig(peer("dig"), fake, "+noedns", "A", f"big.{D}")  # 512 without EDNS: dig retries over TCP
    assert "Truncated, retrying in TCP mode" in out and len(section(out, "ANSWER")) == 40
    assert [r.transport for r in fake.recorder.dns(name=f"big.{D}", direction="out")][-2:] == ["udp", "tcp"]


@pytest_twisted.ensureDeferred
async def test_dig_sees_runtime_changes_on_the_next_query(peer, fake):
    assert section(await dig(peer("dig"), fake, "A", f"server1.{D}"), "ANSWER")[0][1:] == ["3600", "IN", "A", "62.10.1.10"]
    fake.replace(f"server1.{D}", "A", ["127.0.0.10"])
    fake.set_ttl(f"server1.{D}", "A", 17)
    assert section(await dig(peer("dig"), fake, "A", f"server1.{D}"), "ANSWER")[0][1:] == ["17", "IN", "A", "127.0.0.10"]
    fake.remove(f"server1.{D}")
    assert "status: NXDOMAIN" in await dig(peer("dig"), fake, "A", f"server1.{D}")


@pytest_twisted.ensureDeferred
async def test_dig_sees_faults(peer, fake):
    dig_path = peer("dig")
    fake.faults.servfail(name=D, qtype="NAPTR", count=1)
    assert "status: SERVFAIL" in await dig(dig_path, fake, "NAPTR", D)
    assert "status: NOERROR" in await dig(dig_path, fake, "NAPTR", D)  # count used up
    fault = fake.faults.tcp_only()
    out = await dig(dig_path, fake, "A", f"server1.{D}")
    assert "Truncated, retrying in TCP mode" in out and "62.10.1.10" in out
    fault.remove()
    fake.faults.drop(qtype="A")
    _out, _err, code = await utils.getProcessOutputAndValue(
        dig_path, ["@127.0.0.1", "-p", str(fake.address[1]), "+time=1", "+tries=1", "A", f"server1.{D}"],
        env=dict(os.environ))
    assert code == 9  # dig: no reply from server
    assert fake.recorder.dns(direction="out")[-1].note.startswith("dropped: rule")
