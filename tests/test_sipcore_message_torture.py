"""RFC 4475 torture messages (tests/data/rfc4475/) and property tests on garbage input."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.sipcore.framing import StreamFramer
from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError

DATA = Path(__file__).parent / "data" / "rfc4475"
VALID = sorted((DATA / "valid").glob("*.dat"))
INVALID = sorted((DATA / "invalid").glob("*.dat"))


def test_the_corpus_is_there():
    assert len(VALID) >= 12 and len(INVALID) >= 10


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_messages_parse_and_round_trip(path):
    msg = parse(path.read_bytes())
    # every typed view a consumer may touch must work
    assert msg.call_id and msg.cseq[0] >= 0 and msg.vias and msg.from_ and msg.to
    msg.contacts, msg.contact_star, msg.max_forwards
    again = parse(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_messages_raise_sip_parse_error(path):
    with pytest.raises(SipParseError) as ei:
        parse(path.read_bytes())
    assert ei.value.where and ei.value.what


def load(name: str) -> Request | Response:
    return parse((DATA / "valid" / f"{name}.dat").read_bytes())


def test_wsinv_details():
    m = load("wsinv")
    assert m.method == "INVITE" and m.uri.params == {"unknownparam": None}
    assert m.to.tag == "1918181833n" and m.to.uri.user == "vivekg"
    assert m.from_.display == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.max_forwards == 68 and m.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"), ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (c,) = m.contacts
    assert c.display == 'Quoted string ""' and c.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(m.body) == 150 and m.content_type == "application/sdp"


def test_intmeth_details():
    m = load("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-" and m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_escapes_and_compact_forms():
    esc01 = load("esc01")
    assert esc01.to.uri == load("esc01").to.uri.replace(user="user")  # %75se%72 == user
    assert esc01.contacts[0].uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    esc02 = load("esc02")
    assert esc02.method == "RE%47IST%45R" and len(esc02.contacts) == 2
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    escnull = load("escnull")
    assert [c.uri.user for c in escnull.contacts] == ["%00", "%00%00"]


def test_longreq_dblreq_semiuri_transports_responses():
    longreq = load("longreq")
    assert len(longreq.vias) == 34 and longreq.vias[-1].received == "192.0.2.5"
    dblreq = load("dblreq")
    assert dblreq.method == "REGISTER" and dblreq.body == b""  # the second request is dropped
    semiuri = load("semiuri")
    assert semiuri.uri.user == "user;par=u%40example.net" and semiuri.uri.host == "example.com"
    assert len(semiuri.headers.get_all("Accept")) == 6
    transports = load("transports")
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    noreason = load("noreason")
    assert noreason.status == 100 and noreason.reason == ""
    unreason = load("unreason")
    assert unreason.status == 200 and unreason.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    assert load("unkscm").uri.opaque == "totallyopaquecontent"


# -- property tests: garbage never escapes as anything but SipParseError -----------------------

SEED = (DATA / "valid" / "wsinv.dat").read_bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise(data):
    try:
        msg = parse(data)
    except SipParseError:
        return
    assert isinstance(msg, (Request, Response))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_valid_message_parses_or_raises(data):
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["set", "del", "ins"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        b = data.draw(st.sampled_from(list(b'\r\n :;,<>"\\@%=/\x00\xff') + [ord("a"), ord("9")]))
        if op == "set":
            raw[i] = b
        elif op == "del":
            del raw[i]
        else:
            raw.insert(i, b)
    try:
        msg = parse(bytes(raw))
    except SipParseError:
        return
    # whatever parsed must serialize and parse back
    again = parse(msg.to_bytes())
    assert again == msg


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12), st.booleans())
def test_stream_framer_random_chunks(chunks, prefix_valid):
    f = StreamFramer(max_size=4096)
    if prefix_valid:
        chunks = [SEED[:7], SEED[7:]] + chunks
    try:
        for c in chunks:
            for m in f.feed(c):
                assert isinstance(m, (Request, Response))
    except SipParseError:
        with pytest.raises(SipParseError):
            f.feed(b"x")  # a failed framer stays failed: the transport closes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=40))
def test_stream_framer_any_chunking_gives_the_same_messages(sizes):
    stream = b"\r\n\r\n" + SEED + b"\r\n" + SEED + b"\r\n\r\n"
    f = StreamFramer()
    out = []
    pos = 0
    i = 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        out.extend(f.feed(stream[pos:pos + n]))
        pos += n
        i += 1
    assert len(out) == 2 and out[0] == out[1] == parse(SEED)
    assert f.pings == 2 and f.pongs == 1
