"""Zone: master files (with file:line errors) and the mutation API."""

from pathlib import Path

import pytest
from dnslib import QTYPE

from sipharness.fakes.dns import Zone, ZoneError

SEED = Path(__file__).resolve().parents[1] / "suites" / "data" / "seed-example.zone"
SEED_TEXT = """\
$ORIGIN yealink.pbx.com.
$TTL 3600
@          IN SOA  ns.yealink.pbx.com. hostmaster.yealink.pbx.com. 1 3600 600 86400 60
@          IN NS   ns.yealink.pbx.com.
ns         IN A    127.0.0.53
@          IN NAPTR 90  50 "s" "SIP+D2T" "" _sip._tcp.yealink.pbx.com.
@          IN NAPTR 100 50 "s" "SIP+D2U" "" _sip._udp.yealink.pbx.com.
_sip._tcp  IN SRV  0 1 5060 server1.yealink.pbx.com.
_sip._tcp  IN SRV  0 2 5060 server2.yealink.pbx.com.
server1    IN A    62.10.1.10
server2    IN A    62.10.1.20
"""


def seed_zone() -> Zone:
    return Zone.from_file(str(SEED)) if SEED.exists() else Zone.from_text(SEED_TEXT, filename="seed-example.zone")


def test_seed_zone_reads_quoted_naptr_and_srv():
    z = seed_zone()
    assert str(z.origin) == "yealink.pbx.com."
    naptr = z.get("@", "NAPTR")
    assert [(r.rdata.order, bytes(r.rdata.service)) for r in naptr] == [(90, b"SIP+D2T"), (100, b"SIP+D2U")]
    assert str(naptr[0].rdata.replacement) == "_sip._tcp.yealink.pbx.com."
    assert [r.rdata.weight for r in z.get("_sip._tcp", "SRV")] == [1, 2]
    assert z.soa.rdata.times[4] == 60 and all(r.ttl == 3600 for r in z.records())


def test_master_file_syntax_parens_inheritance_units():
    z = Zone.from_text(
        "$ORIGIN a.test.\n$TTL 1h\n@ IN SOA ns hm ( 1 ; serial\n  2h 10m 1d 30 )\n"
        "x 30 IN A 127.0.0.1\n   IN AAAA ::1\ny IN TXT \"two words\" \"x\\\"y\"\nc CNAME x\n", filename="a.zone")
    assert z.soa.ttl == 3600 and list(z.soa.rdata.times) == [1, 7200, 600, 86400, 30]
    assert z.get("x", "AAAA")[0].ttl == 3600 and z.get("x", "A")[0].ttl == 30
    assert z.get("y", "TXT")[0].rdata.data == [b"two words", b'x"y']
    assert str(z.get("c", "CNAME")[0].rdata.label) == "x.a.test."


@pytest.mark.parametrize("text, line, reason", [
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nx A 1.2.3\n", 4, "bad A data '1.2.3'"),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\n\nx FOO 1\n", 5, "unknown or unsupported record type 'FOO'"),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nx SRV 0 1 5060\n", 4, "SRV record for x.a.test. takes 4"),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nx NAPTR 1 2 \"s\" \"SIP+D2U\" \"\n", 4, "quoted string not closed"),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ( ns hm 1 2 3 4 5\n", 3, "'(' not closed"),
    ("$ORIGIN a.test.\n$TTL 60\nx A 1.2.3.4\n", 3, "no SOA"),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nx.b.test. A 1.2.3.4\n", 4, "outside the zone a.test."),
    ("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nx CNAME y\nx A 1.2.3.4\n", 5, "next to its CNAME"),
    ("$ORIGIN a.test.\n$TTL sixty\n", 2, "$TTL takes one TTL"),
    ("$ORIGIN a.test.\n$INCLUDE other\n", 2, "not supported"),
    ("x A 1.2.3.4\n", 1, "relative name 'x' with no $ORIGIN"),
    ("$ORIGIN a.test.\n@ SOA ns hm 1 2 3 4 5\n", 2, "no TTL"),
])
def test_zone_errors_name_file_line_and_reason(text, line, reason):
    with pytest.raises(ZoneError) as info:
        Zone.from_text(text, filename="bad.zone")
    e = info.value
    assert (e.filename, e.line) == ("bad.zone", line)
    assert reason in e.reason
    assert str(e).startswith(f"bad.zone:{line}: ")


def test_from_file_error_names_the_path(tmp_path):
    p = tmp_path / "z.zone"
    p.write_text("$ORIGIN a.test.\n$TTL 60\n@ SOA ns hm 1 2 3 4 5\nsrv SRV 0 1 x t\n")
    with pytest.raises(ZoneError, match=rf"^{p}:4: bad SRV data"):
        Zone.from_file(str(p))


def test_mutation_api():
    z = seed_zone()
    v0 = z.version
    z.add("server1", "A", "127.0.0.10")
    assert [str(r.rdata) for r in z.get("server1.yealink.pbx.com.", "A")] == ["62.10.1.10", "127.0.0.10"]
    assert z.version != v0
    z.add("server3.yealink.pbx.com", "A", "127.0.0.30", ttl=5)
    assert z.get("server3", "A")[0].ttl == 5
    assert z.remove("server1", "A", "62.10.1.10") == 1
    z.replace("_sip._udp", "SRV", ["0 0 5060 server3"], ttl=7)
    assert str(z.get("_sip._udp", "SRV")[0].rdata.target) == "server3.yealink.pbx.com." and z.get("_sip._udp", "SRV")[0].ttl == 7
    z.set_ttl("_sip._tcp", "SRV", 30)
    assert {r.ttl for r in z.get("_sip._tcp", "SRV")} == {30}
    z.replace("server2", "A", [])
    assert z.get("server2", "A") == [] and not z.name_exists("server2.yealink.pbx.com.")
    assert z.name_exists("_tcp.yealink.pbx.com.")  # empty non-terminal
    with pytest.raises(KeyError):
        z.remove("nothing")
    with pytest.raises(ValueError, match="outside the zone"):
        z.add("other.test.", "A", "1.2.3.4")
    with pytest.raises(ValueError, match="SOA"):
        z.remove("@", "SOA")
    with pytest.raises(ValueError, match="bad A data"):
        z.add("x", "A", "not-an-ip")
    seen = []
    z.on_change(seen.append)
    z.add("x", "TXT", '"hello"')
    assert seen == [z] and z.get("x", QTYPE.TXT)


def test_round_trip_text():
    z = seed_zone()
    again = Zone.from_text(z.to_text())
    assert [rr.toZone() for rr in again.records()] == [rr.toZone() for rr in z.records()]
