"""parse() answers the same through its fast path (sipcore/fastparse.py, Via's one-pattern path, the
From/To and start-line memos) as through the general loop alone: the same verdict, the same error
where it refuses, the same typed views and wire form where it accepts.

The fast path exists for speed only (bench/registrar_rps.py); a message it would answer
differently is a bug a user sees (a binding lost, an error naming the wrong line). Checked on
generated messages mixing the common shape with its edges: compact and oddly cased names, LWS,
IPv6 hosts, ports past 65535, quoted and flag parameters, lists, duplicates, missing headers,
folded lines, lines without a colon, bad names; and on the RFC 4475 messages.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.sipcore import fastparse as F
from sipharness.sipcore import headers as H
from sipharness.sipcore import nameaddr as N
from sipharness.sipcore import parser as P
from sipharness.sipcore import via as V
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError


class _Never:
    @staticmethod
    def match(text):
        return None


@contextlib.contextmanager
def _general_only():
    """parse() with every fast path and memo of the message stack off (the general code alone)."""
    saved = [(F, "_fast_headers"), (P, "_fast_headers"), (V, "_FAST_VIA"), (N, "_FAST_NAME_ADDR"),
             (H, "_FAST_PARAMS"), (N, "_MATCHED"), (P, "_REQUEST_LINES"),
             (P, "_STATUS_LINES"), (V, "_TAILS")]
    old = [getattr(mod, name) for mod, name in saved]
    P._fast_headers = F._fast_headers = lambda msg, lines: F.SLOW
    V._FAST_VIA = N._FAST_NAME_ADDR = H._FAST_PARAMS = _Never()
    N._MATCHED, P._REQUEST_LINES, P._STATUS_LINES, V._TAILS = {}, {}, {}, {}
    try:
        yield
    finally:
        for (mod, name), value in zip(saved, old):
            setattr(mod, name, value)


def _plain(value):
    """A typed view as plain data (the classes' own __eq__ is looser: it lower-cases hosts)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, V.Via):
        return ("via", value.transport, value.host, value.port, list(value.params.items()), str(value))
    if isinstance(value, N.NameAddr):
        return ("name-addr", value.display, _plain(value.uri), list(value.params.items()), str(value),
                value.uri_text)
    if type(value).__name__ == "SipUri":
        return ("uri", value.scheme, value.user, value.password, value.host, value.port,
                list(value.params.items()), list(value.headers.items()), value.opaque, str(value))
    return value


_VIEWS = ("vias", "from_", "to", "contacts", "contact_star", "cseq", "call_id", "expires", "max_forwards")


def _outcome(data: bytes):
    try:
        m = parse(data)
    except SipParseError as e:
        return ("refused", e.what, e.where)
    out = {"start": m.start_line(), "wire": m.to_bytes(), "items": m.headers.items(), "body": m.body,
           "uri": _plain(m.uri) if m.is_request else None}
    for view in _VIEWS:
        try:
            out[view] = _plain(getattr(m, view))
        except SipParseError as e:
            out[view] = ("refused", e.what, e.where)
    for name in ("Authorization", "Require", "Contact", "Via", "v", "Expires", "X-Unknown"):
        out["get " + name] = (m.headers.get(name), m.headers.get_all(name), name in m.headers)
    return out


def _check(data: bytes) -> None:
    fast = _outcome(data)
    again = _outcome(data)  # the memos filled by the first parse answer the same
    with _general_only():
        general = _outcome(data)
    assert fast == general, data
    assert again == general, data


# -- generated messages ----------------------------------------------------------------------

_VIAS = ["SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0", "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport",
         "SIP/2.0/TCP host.example.com;branch=z9hG4bKx;received=10.0.0.1;rport=5070",
         "SIP/2.0/udp h;Branch=z9hG4bKA", "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1", "SIP/2.0/UDP [zz]:5060",
         "SIP/2.0/UDP h:65535;branch=z9hG4bK1", "SIP/2.0/UDP h:65536;branch=z9hG4bK1", "SIP/2.0/UDP h:05060",
         "sip/2.0/UDP h;branch=z9hG4bK1", "SIP/2.1/UDP h", "SIP / 2.0 / UDP h ; branch = z9hG4bK1",
         "SIP/2.0/UDP h;branch=\"q\"", "SIP/2.0/UDP h;branch=", "SIP/2.0/UDP h;;x", "SIP/2.0/TLS-SCTP h",
         "SIP/2.0/UDP h;branch=a, SIP/2.0/TCP g;branch=b", "SIP/2.0/UDP h,", "SIP/2.0/UDP -h", "SIP/2.0/UDP",
         "SIP/2.0/WSS x.invalid;branch=z9hG4bK;ob", "SIP/2.0/UDP h:5060;X=Y;flag", "SIP/2.0/UDP h;é=1"]
_NAME_ADDRS = ["<sip:u0@127.0.0.1>", "<sip:u0@127.0.0.1>;tag=12345SIPpTag001", '"Alice" <sip:alice@h>;tag=1',
               "<sip:u@h:5060;transport=UDP>;tag=x", "<sips:u@h>", "<sip:u@[::1]:5060>;tag=1", "sip:u@h;tag=1",
               "<sip:u@h:65536>", "<sip:u@h;Transport=udp;lr>", '"A \\"q\\"" <sip:u@h>', "Bob <sip:b@h>",
               "<sip:u@h>;tag=a;tag=b", "<sip:u@h", "<tel:+1234>;tag=1", "<sip:u%20x@h>", "<sip:a,b@h>;tag=1",
               "<sip:u@h> ;tag=1", "<sip:u@h>;tag", "<sip:u@h>;tag=", "", "<sip:u@h:0050>"]
_CONTACTS = _NAME_ADDRS + ["*", "<sip:u@h>;expires=3600", "<sip:u@h>;expires=x", "<sip:a@h>, <sip:b@h>",
                           "<sip:u@h>;+sip.instance=\"<urn:uuid:1>\";reg-id=1", "* , <sip:u@h>", "<sip:u@h>;q=0.5"]
_CSEQS = ["1 REGISTER", "2 REGISTER", "314159 INVITE", "1 INVITE", "0001 REGISTER", "2147483648 REGISTER",
          "1  REGISTER", "REGISTER", "1 REG ISTER", "-1 REGISTER", "1 register", "99999999999 REGISTER"]
_NUMBERS = ["0", "70", "3600", "255", "256", "007", "", "x", "1 2", "99999999999", "-1", "4294967296"]
_CALL_IDS = ["1-12345@127.0.0.1", "a84b4c76e66710", "x@[::1]", "c@h", "a b", "", "a\tb"]
_OTHER = [("Authorization", 'Digest username="u0",realm="r",nonce="n",uri="sip:h",response="0123"'),
          ("Allow", "INVITE, ACK, BYE"), ("Supported", "replaces, timer"), ("User-Agent", "test/1.0"),
          ("X-Unknown", "v"), ("Require", ""), ("Route", "<sip:p;lr>"), ("Subject", "a: b")]
_SPELLINGS = {"Via": ["Via", "v", "VIA", "via", "V", "Via ", "Via\t"], "From": ["From", "f", "FROM"],
              "To": ["To", "t", "TO", "to"], "Call-ID": ["Call-ID", "i", "call-id", "Call-Id"],
              "CSeq": ["CSeq", "cseq", "CSEQ"], "Contact": ["Contact", "m", "contact"],
              "Max-Forwards": ["Max-Forwards"], "Expires": ["Expires", "expires"],
              "Content-Length": ["Content-Length", "l", "content-length"]}
_LWS = ["", " ", "\t", "  "]


@st.composite
def _header(draw, name, method):
    spelling = draw(st.sampled_from(_SPELLINGS.get(name, [name])))
    values = {"Via": _VIAS, "From": _NAME_ADDRS, "To": _NAME_ADDRS, "Contact": _CONTACTS, "CSeq": _CSEQS,
              "Call-ID": _CALL_IDS, "Max-Forwards": _NUMBERS, "Expires": _NUMBERS, "Content-Length": ["0"]}[name]
    if draw(st.integers(0, 14)):  # mostly the common shape (the fast path's), sometimes any edge
        value = draw(st.sampled_from(values[:4] if name != "CSeq" else [f"1 {method}", f"2 {method}"]))
    else:
        value = draw(st.sampled_from(values))
    before = draw(st.sampled_from(_LWS)) if draw(st.integers(0, 4)) == 0 else " "
    after = draw(st.sampled_from(_LWS)) if draw(st.integers(0, 4)) == 0 else ""
    return f"{spelling}:{before}{value}{after}"


_ODD_LINES = ["no colon here", ": no name", "Bad Name: x", "X-Folded: a\r\n b", "Via", " continued",
              "Subject:", "Exp ires: 1", "é: 1"]


@st.composite
def _message(draw):
    kind = draw(st.sampled_from(["REGISTER", "INVITE", "200", "401"]))
    if kind in ("REGISTER", "INVITE"):
        starts = [f"{kind} sip:127.0.0.1:5060 SIP/2.0", f"{kind} sip:bob@h SIP/2.0", f"{kind} sip:h?x=1 SIP/2.0",
                  f"{kind}  sip:h SIP/2.0"]
        method = kind
    else:
        starts = [f"SIP/2.0 {kind} OK", f"SIP/2.0 {kind} Unauthorized", "SIP/2.0 99 X"]
        method = draw(st.sampled_from(["REGISTER", "INVITE"]))
    start = draw(st.sampled_from(starts[:2] if draw(st.integers(0, 7)) else starts))
    names = ["Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Expires", "Content-Length"]
    chosen = [n for n in names if draw(st.integers(0, 30)) > 0]  # usually all; sometimes one missing
    lines = [draw(_header(n, method)) for n in chosen]
    for name, value in draw(st.lists(st.sampled_from(_OTHER), max_size=3)):
        lines.insert(draw(st.integers(0, len(lines))), f"{name}: {value}")
    if draw(st.integers(0, 8)) == 0:  # a header given twice
        lines.insert(draw(st.integers(0, len(lines))), draw(_header(draw(st.sampled_from(names)), method)))
    if draw(st.integers(0, 10)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(_ODD_LINES)))
    if lines:
        lines = draw(st.permutations(lines)) if draw(st.integers(0, 5)) == 0 else lines
    body = b"v=0\r\n" if draw(st.booleans()) and "Content-Length" not in chosen else b""
    return ("\r\n".join([start] + lines) + "\r\n\r\n").encode() + body


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_message())
def test_the_fast_path_answers_as_the_general_loop_on_generated_messages(data):
    _check(data)


def test_the_generated_common_messages_take_the_fast_path():
    # the equivalence above means something only if the fast path is taken for the common shape
    data = (b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
            b"f: <sip:u0@127.0.0.1>;tag=1\r\nt: <sip:u0@127.0.0.1>\r\ni: 1@h\r\nCSeq: 1 REGISTER\r\n"
            b"m: <sip:u0@127.0.0.1:5061>\r\nMax-Forwards: 70\r\nExpires: 3600\r\nl: 0\r\n\r\n")
    msg = P._parse_request_line("REGISTER sip:127.0.0.1:5060 SIP/2.0")
    lines = data[:-4].decode().split("\r\n")[1:]
    assert F._fast_headers(msg, lines) == 0
    assert msg.contacts[0].uri.port == 5061 and msg.vias[0].branch == "z9hG4bK-1"
    _check(data)


_RFC4475 = sorted((Path(__file__).parent / "data" / "rfc4475").rglob("*.dat"))


@pytest.mark.parametrize("path", _RFC4475, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_rfc4475_messages_get_the_same_answer_through_both_paths(path):
    _check(path.read_bytes())


@pytest.mark.parametrize("text", _VIAS)
def test_via_fast_path_equals_the_general_pattern(text):
    def outcome(fn):
        try:
            return _plain(fn(text))
        except SipParseError as e:
            return str(e)
    assert outcome(V.Via.parse) == outcome(V.Via._parse_general)


def test_the_memos_keep_no_long_text_whatever_a_peer_sends():
    # a peer sending a new 60 KB From, Contact, CSeq method or Request-URI in every message must
    # not make the memos hold thousands of them (the tables are bounded in entries, and long
    # texts are not kept at all)
    from sipharness.sipcore import fields as FL
    from sipharness.sipcore import uri as U

    for i in range(3):
        long = "x" * 10000 + str(i)
        data = (f"REGISTER sip:{long}@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK{i};x={long}\r\n"
                f"From: <sip:{long}@h>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
                f"Contact: <sip:{long}@h>\r\n{long}: 1\r\n\r\n").encode()
        m = parse(data)
        assert m.from_.uri.user == long and m.contacts[0].uri.user == long and m.uri.user == long
        assert m.headers.get(long) == "1" and m.vias[0].params["x"] == long
    for table in (N._MATCHED, N._HOSTS, P._REQUEST_LINES, P._STATUS_LINES, F._NAMES, FL._CSEQS,
                  U._CACHE, V._TAILS):
        assert all(len(key) <= 256 for key in table), table
