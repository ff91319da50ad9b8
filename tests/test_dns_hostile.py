"""Hostile input to the fake DNS's content (issue 12): query names the encoder cannot write
back, and zone files whose errors escaped as idna errors, odd messages or line 0."""

from __future__ import annotations

import socket
import struct

import dns.message
import dns.rcode
import pytest
import pytest_twisted
from dnslib import QTYPE, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import threads

from sipharness.fakes.dns.authority import Authority
from sipharness.fakes.dns.zone import Zone, ZoneError

SOA = "$ORIGIN example.com.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 60\n"


def query(name_wire: bytes, qtype=1, id=7, an=0) -> bytes:
    return struct.pack("!HHHHHH", id, 0x0100, 1, an, 0, 0) + name_wire + struct.pack("!HH", qtype, 1)


def wire(*labels: bytes) -> bytes:
    return b"".join(bytes([len(lb) & 0xFF]) + lb for lb in labels) + b"\x00"


@pytest.mark.parametrize("data", [
    query(b"\x40" + b"a" * 64 + wire(b"example", b"com")),  # a 64-octet label (length byte 0x40)
    query(wire(b"www") [:-1] + b"\x40" + b"a" * 64 + b"\x00"),  # the same after a first label
    query(b"\x80" + wire(b"com")),  # the other extended label type
    query(b"\xc0\x0c"),  # a pointer to itself
    query(b"\x01a\xc0\x0e"),  # a pointer loop of two
    query(wire(*[b"a" * 63] * 4)),  # 257 octets
])
def test_query_names_dns_cannot_carry_get_formerr(data):
    reply, what = Authority([Zone("example.com")]).handle(data)
    assert reply is not None and reply[3] & 0x0F == 1, what  # FORMERR, with the query's id
    assert reply[:2] == data[:2]


def test_a_dnslib_query_with_a_long_label_is_a_value_error_not_an_encoder_crash():
    rec = DNSRecord()
    q = DNSQuestion("x.example.com", QTYPE.A)
    q.qname = DNSLabel([b"a" * 64, b"example", b"com"])
    rec.add_question(q)
    with pytest.raises(ValueError, match="63"):
        Authority([Zone("example.com")]).answer(rec)


@pytest_twisted.inlineCallbacks
def test_the_server_answers_formerr_to_a_real_client(fake_dns):
    # dnspython builds the query; its first label is then made 64 octets long on the wire
    q = dns.message.make_query("ok.example.com", "A")
    data = q.to_wire()[:12] + b"\x40" + b"b" * 64 + b"\x00\x00\x01\x00\x01"

    def ask() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(data, fake_dns.address)
            return s.recv(4096)

    reply = yield threads.deferToThread(ask)
    header = dns.message.from_wire(reply, question_only=True)
    assert header.rcode() == dns.rcode.FORMERR and header.id == q.id


# -- zone files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("record, line, reason", [
    ("a" * 64 + " 60 IN A 127.0.0.1", 3, "label of 64 octets"),
    ("_sip._udp 60 IN SRV 0 0 5060 " + "b" * 64, 3, "label of 64 octets"),
    (".".join(["c" * 60] * 5) + " 60 IN A 127.0.0.1", 3, "at most 255"),
    ("a..b 60 IN A 127.0.0.1", 3, "empty label"),
    ("x -5 IN A 127.0.0.1", 3, "TTL '-5' is out of range"),
    ("x 99999999999 IN A 127.0.0.1", 3, "TTL '99999999999' is out of range"),
    ('n 60 IN NAPTR 10 10 "s" "' + "S" * 300 + '" "" _sip._udp', 3, "at most 255 octets"),
    ("c 60 IN CNAME " + ".".join(["c" * 63] * 4), 3, "octets long"),
    ("$ORIGIN " + "d" * 64 + ".com.", 3, "label of 64 octets"),
])
def test_zone_errors_name_file_line_and_reason(record, line, reason):
    with pytest.raises(ZoneError) as ei:
        Zone.from_text(SOA + record + "\n", filename="lab.zone")
    assert (ei.value.filename, ei.value.line) == ("lab.zone", line) and reason in ei.value.reason


def test_non_utf8_zone_file_names_its_line(tmp_path):
    path = tmp_path / "bad.zone"
    path.write_bytes(SOA.encode() + b'x 60 IN TXT "caf\xe9"\n')
    with pytest.raises(ZoneError) as ei:
        Zone.from_file(str(path))
    assert ei.value.line == 3 and "not UTF-8" in ei.value.reason and "column 17" in ei.value.reason


def test_api_names_too_long_are_value_errors():
    z = Zone("example.com")
    with pytest.raises(ValueError, match="63"):
        z.add("a" * 64, "A", "127.0.0.1")
    with pytest.raises(ValueError, match="255"):
        z.add(".".join(["b" * 60] * 5), "A", "127.0.0.1")


_ZONE_TOKENS = st.sampled_from(["x", "@", "60", "-5", "1h", "IN", "A", "AAAA", "SRV", "NAPTR", "TXT", "CNAME", "MX",
                                "SOA", "$ORIGIN", "$TTL", "127.0.0.1", "::1", '"s"', '"', "(", ")", ";", "\\",
                                "a" * 64, ".", "..", "é", "\x00", "\t", " ", "\n", "65536", "_sip._udp",
                                "9" * 30, "xn--", "b" * 63 + "." + "b" * 63])


@settings(max_examples=1500, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_ZONE_TOKENS, max_size=40).map(" ".join) | st.text(max_size=200))
def test_any_zone_text_is_a_zone_or_a_zone_error(text):
    try:
        zone = Zone.from_text(SOA + text + "\n", filename="f.zone")
    except ZoneError as e:
        assert e.filename == "f.zone" and e.line >= 1 and e.reason
        return
    # what was accepted can be served: every record goes on the wire
    auth = Authority([zone])
    for rr in zone.records():
        name = str(rr.rname)
        labels = [lb for lb in DNSLabel(name).label]
        reply, _ = auth.handle(query(wire(*labels), rr.rtype))
        assert reply is not None
