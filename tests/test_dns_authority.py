"""Authority (sans-I/O): answers like BIND; garbage in, FORMERR or silence out, never an exception."""

import struct

from dnslib import EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.fakes.dns import Zone
from sipharness.fakes.dns.authority import Authority
from sipharness.fakes.dns.query import Bad, Query, decode
from tests.test_dns_zone import seed_zone


def ask(auth, name, qtype, *, transport="udp", edns=None, udp_limit=None):
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return auth.answer(q, transport=transport, udp_limit=udp_limit)


def test_naptr_answer_carries_srv_and_address_glue():
    r = ask(Authority([seed_zone()]), "yealink.pbx.com", "NAPTR")
    assert r.header.aa == 1 and r.header.rcode == 0 and r.header.ra == 0
    assert [(rr.rtype, rr.ttl) for rr in r.rr] == [(QTYPE.NAPTR, 3600)] * 2
    add = [(str(rr.rname), QTYPE[rr.rtype]) for rr in r.ar]
    assert add == [("_sip._tcp.yealink.pbx.com.", "SRV")] * 2 + [("server1.yealink.pbx.com.", "A"),
                                                                 ("server2.yealink.pbx.com.", "A")]


def test_srv_glue_nxdomain_nodata_refused_cname():
    z = seed_zone()
    z.add("alias", "CNAME", "server1")
    z.add("far", "CNAME", "elsewhere.example.")
    auth = Authority([z])
    r = ask(auth, "_sip._tcp.yealink.pbx.com", "SRV")
    assert sorted(str(rr.rdata) for rr in r.ar) == ["62.10.1.10", "62.10.1.20"]
    nx = ask(auth, "nope.yealink.pbx.com", "A")
    assert (nx.header.rcode, nx.header.aa, len(nx.rr)) == (3, 1, 0)
    assert [(QTYPE[rr.rtype], rr.ttl) for rr in nx.auth] == [("SOA", 60)]  # min(SOA TTL, minimum)
    nodata = ask(auth, "server1.yealink.pbx.com", "AAAA")
    assert (nodata.header.rcode, len(nodata.rr), QTYPE[nodata.auth[0].rtype]) == (0, 0, "SOA")
    ent = ask(auth, "_tcp.yealink.pbx.com", "A")  # empty non-terminal exists: NODATA, not NXDOMAIN
    assert ent.header.rcode == 0 and len(ent.auth) == 1
    refused = ask(auth, "example.org", "A")
    assert (refused.header.rcode, refused.header.aa) == (5, 0)
    chased = ask(auth, "ALIAS.yealink.pbx.com", "A")
    assert [QTYPE[rr.rtype] for rr in chased.rr] == ["CNAME", "A"] and str(chased.rr[1].rdata) == "62.10.1.10"
    assert str(chased.q.qname) == "ALIAS.yealink.pbx.com."  # question echoed as asked
    out = ask(auth, "far.yealink.pbx.com", "A")
    assert [QTYPE[rr.rtype] for rr in out.rr] == ["CNAME"] and out.header.rcode == 0


def big_zone() -> Zone:
    z = seed_zone()
    for i in range(40):
        z.add("big", "A", f"127.0.1.{i}")
    for i in range(20):
        z.add("_sip._udp", "SRV", f"0 {i} 5060 big")
    return z


def test_truncation_drops_additional_first_then_sets_tc():
    auth = Authority([big_zone()])
    r = ask(auth, "big.yealink.pbx.com", "A")  # 40 A = 656 bytes > 512
    assert r.header.tc == 1 and r.rr == []
    r = ask(auth, "big.yealink.pbx.com", "A", edns=1232)
    assert r.header.tc == 0 and len(r.rr) == 40
    assert len(ask(auth, "big.yealink.pbx.com", "A", transport="tcp").rr) == 40
    srv = ask(auth, "_sip._udp.yealink.pbx.com", "SRV", edns=1232)  # 20 SRV fit, their 40 A glue do not
    assert srv.header.tc == 0 and len(srv.rr) == 20 and [rr.rtype for rr in srv.ar] == [QTYPE.OPT]
    assert len(ask(auth, "_sip._udp.yealink.pbx.com", "SRV", edns=4096).ar) == 41
    assert ask(auth, "_sip._udp.yealink.pbx.com", "SRV", edns=4096, udp_limit=512).header.tc == 1


def test_changes_apply_to_the_next_query_despite_the_cache():
    z = seed_zone()
    auth = Authority([z])
    assert str(ask(auth, "server1.yealink.pbx.com", "A").rr[0].rdata) == "62.10.1.10"
    z.replace("server1", "A", ["127.0.0.10"], ttl=5)
    r = ask(auth, "server1.yealink.pbx.com", "A")
    assert (str(r.rr[0].rdata), r.rr[0].ttl) == ("127.0.0.10", 5)


def test_wire_path_keeps_ids_and_handles_garbage():
    auth = Authority([seed_zone()])
    q = DNSRecord.question("server1.yealink.pbx.com", "A")
    q.header.id = 4242
    wire, what = auth.handle(q.pack())
    assert DNSRecord.parse(wire).header.id == 4242 and what == "NOERROR 1 A"
    q.header.id = 7
    assert DNSRecord.parse(auth.handle(q.pack())[0]).header.id == 7  # cached body, fresh id
    assert auth.handle(b"\x01\x02\x03") == (None, "bad: short packet: 3 byte(s), no DNS header -> dropped")
    loop = struct.pack("!HHHHHH", 99, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    wire, what = auth.handle(loop)
    assert "Recursive pointer" in what
    assert struct.unpack("!HH", wire[:4]) == (99, 0x8101)  # id kept, QR, RD echoed, FORMERR
    response = bytearray(q.pack())
    response[2] |= 0x80
    assert auth.handle(bytes(response))[0] is None  # never answer a response
    notify = bytearray(q.pack())
    notify[2] |= 4 << 3
    assert auth.handle(bytes(notify))[0][3] & 0xF == 4  # NOTIMP


@st.composite
def mutated_queries(draw):
    q = DNSRecord(DNSHeader(id=draw(st.integers(0, 65535)), rd=1),
                  q=DNSQuestion(draw(st.sampled_from(["yealink.pbx.com", "server1.yealink.pbx.com", "x.example.org"])),
                                getattr(QTYPE, draw(st.sampled_from(["A", "NAPTR", "SRV", "AAAA", "ANY"])))))
    if draw(st.booleans()):
        q.add_ar(EDNS0(udp_len=draw(st.integers(0, 65535))))
    data = bytearray(q.pack())
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600), mutated_queries()))
def test_any_bytes_give_an_answer_with_the_same_id_or_silence(data):
    auth = Authority([seed_zone()])
    for transport in ("udp", "tcp"):
        wire, what = auth.handle(data, transport=transport)
        assert isinstance(what, str)
        if wire is None:
            continue
        assert wire[:2] == data[:2]  # the id we could read
        assert wire[2] & 0x80  # QR
        _, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
        if isinstance(decode(data), Query):
            assert qd == 1 and (transport == "tcp" or len(wire) <= 4096)
        else:  # FORMERR / NOTIMP: a bare header
            assert flags & 0xF in (1, 4) and len(wire) == 12


def test_decode_reads_edns_payload_and_falls_back_for_compressed_question():
    q = DNSRecord.question("Server1.yealink.pbx.com", "A")
    q.add_ar(EDNS0(udp_len=1232))
    d = decode(q.pack())
    assert isinstance(d, Query) and (d.qname, d.key, d.payload, d.type_name) == (
        "Server1.yealink.pbx.com.", "server1.yealink.pbx.com.", 1232, "A")
    assert isinstance(decode(q.pack() + b"\x00"), Bad)
