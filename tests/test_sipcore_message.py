"""sipcore.parser / message / via / nameaddr / build / ids / uri / headers: parsing, typed views, builders."""

import pytest

from sipharness.sipcore.build import make_request, make_response
from sipharness.sipcore.headers import Headers, split_list
from sipharness.sipcore.ids import new_branch, new_call_id, new_tag
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.parser import is_keepalive, parse
from sipharness.sipcore.uri import SipParseError, SipUri
from sipharness.sipcore.via import Via

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@example.com>\r\n'
    b'From: "Bob" <sip:bob@example.com>;tag=456248\r\n'
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:bob@127.0.0.1:5070;transport=udp>;expires=3600\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)

RESPONSE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"v: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKabc;received=192.0.2.1;rport=5099\r\n"
    b"f: <sip:alice@example.com>;tag=1\r\n"
    b"t: sip:alice@example.com;tag=2\r\n"
    b"i: abc@host\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="x", nonce="y, z"\r\n'
    b"l: 4\r\n\r\nbodyEXTRA"
)


# -- URI ---------------------------------------------------------------------------------------

def test_uri_parse_full():
    u = SipUri.parse("sips:alice:secret@Example.COM:5061;transport=TCP;lr;Maddr=1.2.3.4?subject=x&h=%20")
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sips", "alice", "secret", "Example.COM", 5061)
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "1.2.3.4"}
    assert u.transport == "TCP"
    assert u.headers == {"subject": "x", "h": "%20"}
    assert SipUri.parse(str(u)) == u
    assert str(u) == "sips:alice:secret@Example.COM:5061;transport=TCP;lr;maddr=1.2.3.4?subject=x&h=%20"


def test_uri_ipv6_and_tel_and_opaque():
    u = SipUri.parse("sip:[2001:db8::10]:5070")
    assert u.host == "2001:db8::10" and u.port == 5070
    assert str(u) == "sip:[2001:db8::10]:5070"
    t = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert t.scheme == "tel" and t.user == "+1-201-555-0123"
    assert str(t) == "tel:+1-201-555-0123;phone-context=example.com"
    o = SipUri.parse("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert o.opaque == "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    assert str(o) == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


def test_uri_equality_rfc3261_19_1_4():
    assert SipUri.parse("sip:%61lice@atlanta.com;transport=TCP") == SipUri.parse("sip:alice@AtLanTa.CoM;Transport=tcp")
    assert SipUri.parse("sip:carol@chicago.com") == SipUri.parse("sip:carol@chicago.com;newparam=5")
    assert SipUri.parse("sip:ALICE@AtLanTa.CoM") != SipUri.parse("sip:alice@atlanta.com")
    assert SipUri.parse("sip:bob@biloxi.com") != SipUri.parse("sip:bob@biloxi.com:5060")
    assert SipUri.parse("sip:bob@biloxi.com") != SipUri.parse("sip:bob@biloxi.com;transport=udp")
    assert SipUri.parse("sip:carol@chicago.com;security=on") != SipUri.parse("sip:carol@chicago.com;security=off")


def test_uri_helpers():
    u = SipUri.parse("sip:bob@127.0.0.1:5060")
    v = u.with_params(transport="tcp", lr=None)
    assert str(v) == "sip:bob@127.0.0.1:5060;transport=tcp;lr" and u.params == {}
    assert str(u.replace(port=None, user=None)) == "sip:127.0.0.1"
    assert u.hostport == "127.0.0.1:5060"


@pytest.mark.parametrize("bad", [
    "", "sip", "<sip:a@b>", "sip:a@b c", "sip:a@b:99999", "sip:a@b:x", "sip:[::1", "sip:a@",
    "sip:a b@c", "sip:a@b;", "sip:a@b;x=", "sip:a@b?x", "tel:abc;;", "http:a b", "1ip:a@b",
])
def test_uri_bad(bad):
    with pytest.raises(SipParseError):
        SipUri.parse(bad)


# -- headers -----------------------------------------------------------------------------------

def test_headers_multimap():
    h = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c"),
                 ("cseq", "1 INVITE"), ("X-Foo", "1")])
    assert h.items()[0][0] == "Via" and h.items()[2][0] == "CSeq"
    assert h.get("VIA") == "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"
    assert h.get_all("v") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert "x-foo" in h and "X-Bar" not in h
    h.add("Via", "SIP/2.0/UDP top", first=True)
    assert h.get_all("Via")[0] == "SIP/2.0/UDP top"
    h.set("via", "SIP/2.0/UDP only")
    assert h.get_all("Via") == ["SIP/2.0/UDP only"] and h.items()[0] == ("Via", "SIP/2.0/UDP only")
    c = h.copy()
    h.remove("Via")
    assert "Via" not in h and "Via" in c
    assert h.get("Via", "d") == "d"


def test_split_list_respects_quotes_and_angles():
    v = '"Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>'
    assert split_list(v) == ['"Doe, John" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>"]
    with pytest.raises(SipParseError):
        split_list("a,,b")
    h = Headers([("Contact", v), ("Authorization", 'Digest a="1", b="2"')])
    assert len(h.get_all("m")) == 2
    assert h.get_all("Authorization") == ['Digest a="1", b="2"']  # not a list header


# -- typed values ------------------------------------------------------------------------------

def test_via():
    v = Via.parse("SIP / 2.0 / tcp  host.example.com : 5061 ; branch = z9hG4bK1;rport;received=1.2.3.4")
    assert (v.transport, v.host, v.port, v.branch, v.rport, v.received) == (
        "TCP", "host.example.com", 5061, "z9hG4bK1", "", "1.2.3.4")
    assert str(v) == "SIP/2.0/TCP host.example.com:5061;branch=z9hG4bK1;rport;received=1.2.3.4"
    assert Via.parse("SIP/2.0/UDP [::1];rport=5").rport == "5"
    assert Via.parse("SIP/2.0/UDP 1.2.3.4").rport is None
    assert str(Via("udp", "::1", 5060, {"branch": "z9hG4bKx"})) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx"
    for bad in ["SIP/2.0/UDP", "SIP/3.0/UDP h", "SIP/2.0/UDP h;;", "SIP/2.0/UDP h:1:2", "HTTP/2.0/UDP h"]:
        with pytest.raises(SipParseError):
            Via.parse(bad)


def test_name_addr():
    n = NameAddr.parse('"A \\"q\\" B" <sip:a@b;lr>;tag=x;+sip.instance="<urn:uuid:1>"')
    assert n.display == 'A "q" B' and n.uri.params == {"lr": None} and n.tag == "x"
    assert n.params["+sip.instance"] == '"<urn:uuid:1>"'
    assert NameAddr.parse(str(n)) == n
    a = NameAddr.parse("sip:a@b;tag=7")  # addr-spec: the params belong to the header
    assert a.tag == "7" and a.uri.params == {} and str(a) == "<sip:a@b>;tag=7"
    t = NameAddr.parse("Bob Smith<sip:bob@b>")
    assert t.display == "Bob Smith"
    w = a.with_tag("9")
    assert w.tag == "9" and a.tag == "7"
    for bad in ['"unbalanced <sip:a@b>', "<sip:a@b", "< sip:a@b>", "sip:a@b?x=y", "<sip:a@b>;;", "<sip:a@b> x"]:
        with pytest.raises(SipParseError):
            NameAddr.parse(bad)


# -- parse -------------------------------------------------------------------------------------

def test_parse_register():
    m = parse(REGISTER)
    assert isinstance(m, Request) and m.is_request and m.method == "REGISTER"
    assert str(m.uri) == "sip:example.com" and m.version == "SIP/2.0"
    assert m.call_id == "843817637684230@998sdasdh09"
    assert m.cseq == (1826, "REGISTER")
    assert m.top_via.branch == "z9hG4bK776asdhds" and m.top_via.rport == ""
    assert m.from_.tag == "456248" and m.to.tag is None and m.to.display == "Bob"
    assert [str(c.uri) for c in m.contacts] == ["sip:bob@127.0.0.1:5070;transport=udp"]
    assert m.contacts[0].params == {"expires": "3600"} and not m.contact_star
    assert m.expires == 3600 and m.max_forwards == 70 and m.content_length == 0
    assert m.to_bytes() == REGISTER
    assert parse(m.to_bytes()) == m


def test_parse_response_compact_and_truncation():
    r = parse(RESPONSE)
    assert isinstance(r, Response) and not r.is_request
    assert (r.status, r.reason, r.method) == (401, "Unauthorized", "REGISTER")
    assert r.body == b"body"  # Content-Length 4: the rest of the datagram is dropped (§18.3)
    v = r.top_via
    assert (v.transport, v.host, v.port, v.received, v.rport) == ("TCP", "2001:db8::1", 5061, "192.0.2.1", "5099")
    assert r.to.tag == "2" and r.from_.tag == "1" and r.call_id == "abc@host"
    assert r.headers.get("WWW-Authenticate") == 'Digest realm="x", nonce="y, z"'
    out = r.to_bytes()
    assert out.startswith(b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/TCP [2001:db8::1]")
    assert b"\r\nContent-Length: 4\r\n\r\nbody" in out and out.endswith(b"body")
    assert parse(out) == r


def test_parse_folding_and_star_contact():
    data = (b"REGISTER sip:r SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@r>\r\n"
            b"From: <sip:a@r>;\r\n tag=1\r\nCall-ID: x\r\nCSeq: 2\r\n\tREGISTER\r\nContact: *\r\n"
            b"Expires: 0\r\nX-Long: a\r\n  b\r\n\r\n")
    m = parse(data)
    assert m.from_.tag == "1" and m.cseq == (2, "REGISTER") and m.headers.get("X-Long") == "a b"
    assert m.contact_star and m.contacts == [] and m.expires == 0 and m.max_forwards is None
    assert m.content_length == 0


def test_parse_without_content_length_takes_whole_body():
    data = REGISTER.replace(b"Content-Length: 0\r\n", b"") + b"hello"
    assert parse(data).body == b"hello"


def test_parse_tolerates_leading_crlf_and_missing_final_empty_line():
    assert parse(b"\r\n\r\n" + REGISTER).method == "REGISTER"
    assert parse(REGISTER[:-2]).body == b""


@pytest.mark.parametrize("data, where, what", [
    (REGISTER.replace(b"Call-ID: 843817637684230@998sdasdh09\r\n", b""), "header block", "missing Call-ID"),
    (REGISTER.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5070", b"Via: SIP/2.0/UDP 127.0.0.1:5070:9"), "line 2, header 'Via'", "Via"),
    (REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE"), "line 7, header 'CSeq'", "does not match"),
    (REGISTER.replace(b"CSeq: 1826", b"CSeq: 4294967296"), "line 7, header 'CSeq'", "2**31"),
    (REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), "line 3, header 'Max-Forwards'", "0..255"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 10"), "header 'Content-Length'", "exceeds"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: -1"), "line 10, header 'Content-Length'", "Content-Length"),
    (REGISTER.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), "line 1", "version"),
    (REGISTER.replace(b"REGISTER sip", b"REG<ISTER sip", 1), "line 1", "method"),
    (REGISTER.replace(b"REGISTER sip:example.com", b"REGISTER  sip:example.com", 1), "line 1", "single spaces"),
    (REGISTER.replace(b"Expires: 3600\r\n", b"Expires 3600\r\n"), "line 9", "':'"),
    (REGISTER.replace(b"To: ", b"To: <sip:x@y>\r\nTo: "), "header 'To'", "more than once"),
    (REGISTER.replace(b"\r\n\r\n", b"\r\n"), "byte", "empty line") if False else
    (REGISTER.replace(b"Expires: 3600\r\n", b"Exp\rires: 3600\r\n"), "line 9", "bare CR"),
    (b"SIP/2.0 1000 OK\r\n\r\n", "line 1", "status"),
    (b"SIP/2.0 099 OK\r\n\r\n", "line 1", "status"),
    (b"SIP/2.0 800 OK\r\n\r\n", "line 1", "status"),
    (b"no header block end", "byte 19", "empty line"),
    (b"\r\n\r\n", "byte 0", "empty message"),
])
def test_parse_errors_name_the_place(data, where, what):
    with pytest.raises(SipParseError) as ei:
        parse(data)
    assert ei.value.where.startswith(where) or where in ei.value.where, ei.value
    assert what in ei.value.what
    assert str(ei.value) == f"{ei.value.where}: {ei.value.what}"


def test_parse_max_size_and_type():
    with pytest.raises(SipParseError) as ei:
        parse(REGISTER, max_size=100)
    assert ei.value.where == "byte 100"
    with pytest.raises(TypeError):
        parse("text")  # type: ignore[arg-type]


def test_lazy_views_follow_header_changes():
    m = parse(REGISTER)
    assert m.expires == 3600
    m.headers.set("Expires", "60")
    assert m.expires == 60
    m.expires = None
    assert m.expires is None and "Expires" not in m.headers
    m.to = m.to.with_tag("zz")
    assert m.to.tag == "zz"
    m.headers.set("Expires", "x")
    with pytest.raises(SipParseError):
        m.expires
    m.headers.set("Expires", "99999999999")
    assert m.expires == 2**32 - 1


def test_copy_is_independent():
    m = parse(REGISTER)
    c = m.copy()
    assert c == m and c is not m
    c.headers.add("X", "1")
    c.uri.params["lr"] = None
    assert c != m and "X" not in m.headers and m.uri.params == {}


def test_keepalive():
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and not is_keepalive(b"") and not is_keepalive(REGISTER)


# -- builders ----------------------------------------------------------------------------------

def test_make_request_and_response():
    branch = new_branch()
    assert branch.startswith("z9hG4bK") and len(branch) > 12 and branch != new_branch()
    tag = new_tag()
    cid = new_call_id("127.0.0.1")
    assert cid.endswith("@127.0.0.1") and tag and tag != new_tag()
    req = make_request(
        "INVITE", "sip:bob@127.0.0.20", from_=NameAddr.parse(f"<sip:alice@a>;tag={tag}"),
        to="<sip:bob@b>", call_id=cid, cseq=5,
        via=[Via("UDP", "127.0.0.1", 5070, {"branch": branch, "rport": None}), "SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKp"],
        contact="<sip:alice@127.0.0.1:5070>", headers={"Content-Type": "application/sdp"}, body=b"v=0\r\n",
        max_forwards=69)
    data = req.to_bytes()
    m = parse(data)
    assert m == req
    assert m.cseq == (5, "INVITE") and m.max_forwards == 69 and m.body == b"v=0\r\n"
    assert [v.host for v in m.vias] == ["127.0.0.1", "127.0.0.2"] and m.top_via.rport == ""
    assert data.endswith(b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
    req.headers.add("Record-Route", "<sip:p1;lr>")
    req.headers.add("Timestamp", "54")
    ringing = make_response(m if False else req, 180, to_tag="t1")
    assert ringing.reason == "Ringing" and ringing.to.tag == "t1" and ringing.from_.tag == tag
    assert ringing.headers.get_all("Via") == req.headers.get_all("Via")
    assert ringing.headers.get("Record-Route") == "<sip:p1;lr>"
    assert ringing.call_id == cid and ringing.cseq == (5, "INVITE") and ringing.method == "INVITE"
    assert "Timestamp" not in ringing.headers
    trying = make_response(req, 100)
    assert trying.to.tag is None and trying.headers.get("Timestamp") == "54" and "Record-Route" not in trying.headers
    ok = make_response(parse(ringing.to_bytes()) and req, 200, "Fine", to_tag="t1",
                       headers=[("Contact", "<sip:bob@b>")], body=b"x")
    assert ok.reason == "Fine" and ok.contacts[0].uri.user == "bob"
    r2 = parse(ok.to_bytes())
    assert r2 == ok and r2.body == b"x"
    # a To that already has a tag keeps it
    m.headers.set("To", "<sip:bob@b>;tag=old")
    assert make_response(m, 486, to_tag="new").to.tag == "old"
    assert make_response(m, 499).reason == ""
    assert make_request("REGISTER", SipUri.parse("sip:r"), from_="<sip:a@r>;tag=1", to="<sip:a@r>",
                        call_id="c", cseq=(3, "REGISTER"), via="SIP/2.0/UDP h;branch=z9hG4bKz").cseq == (3, "REGISTER")


def test_uri_parse_cache_hands_out_independent_objects():
    a = SipUri.parse("sip:cache@127.0.0.1;transport=tcp?x=1")
    a.params["lr"] = None
    a.headers["y"] = "2"
    a.user = "changed"
    b = SipUri.parse("sip:cache@127.0.0.1;transport=tcp?x=1")
    assert b.user == "cache" and b.params == {"transport": "tcp"} and b.headers == {"x": "1"}


def test_header_name_cache_still_validates():
    for _ in range(2):
        with pytest.raises(SipParseError):
            parse(REGISTER.replace(b"Expires: 3600", b"Exp ires: 3600"))
    m = parse(REGISTER.replace(b"Expires: 3600", b"EXPIRES  : 3600"))
    assert m.expires == 3600 and ("Expires", "3600") in m.headers.items()
