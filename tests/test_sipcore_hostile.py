"""Hostile input to the SIP core (issue 12): every bad value is a SipParseError naming its place.

A number thousands of digits long (int() refuses past 4300 digits with a bare ValueError),
bytes that are not UTF-8 in digest fields (hashing a surrogate escape raised
UnicodeEncodeError), a non-ASCII digest response (secrets.compare_digest raised TypeError):
each used to escape the parser or the digest code as another exception, so a fake sent no
response and printed a traceback.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.sipcore.digest import Challenge, Credentials, authorize
from sipharness.sipcore.digestserver import DigestServer
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError

BASE = ("REGISTER sip:example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKabc\r\n"
        "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c@t\r\n"
        "CSeq: {cseq} REGISTER\r\nMax-Forwards: {mf}\r\nContact: <sip:alice@127.0.0.1:5062>{cparams}\r\n"
        "{extra}Content-Length: 0\r\n\r\n")


def message(cseq="1", mf="70", cparams="", extra=""):
    return parse(BASE.format(cseq=cseq, mf=mf, cparams=cparams, extra=extra).encode())


@pytest.mark.parametrize("field, header, line", [("cseq", "CSeq", 6), ("mf", "Max-Forwards", 7)])
def test_numbers_thousands_of_digits_long_are_refused_naming_the_header(field, header, line):
    with pytest.raises(SipParseError) as ei:
        message(**{field: "9" * 5000})
    assert ei.value.where == f"line {line}, header '{header}'"
    assert "(5000 characters)" in ei.value.what  # the value is cut in the message, its size said


def test_cseq_and_max_forwards_ranges():
    assert message(cseq="0002147483647").cseq == (2**31 - 1, "REGISTER")  # RFC 3261 §8.1.1.5: < 2**31
    with pytest.raises(SipParseError, match="not below 2"):
        message(cseq="2147483648")
    assert message(mf="000255").max_forwards == 255
    for bad in ("256", "-1", "٣", "1e3"):
        with pytest.raises(SipParseError, match="Max-Forwards"):
            message(mf=bad)


def test_expires_min_expires_and_the_contact_parameter():
    # RFC 3261 §20.19: beyond 2**32-1 means 2**32-1, whatever the length
    m = message(cparams=";expires=" + "7" * 5000, extra="Expires: " + "8" * 5000 + "\r\nMin-Expires: 60\r\n")
    assert m.expires == 2**32 - 1 and m.contacts[0].expires == 2**32 - 1 and m.min_expires == 60
    bad = message(cparams=";expires=abc", extra="Expires: -5\r\nMin-Expires: ６０\r\n")
    for view, where in ((lambda: bad.expires, "header 'Expires'"), (lambda: bad.min_expires, "header 'Min-Expires'"),
                        (lambda: bad.contacts[0].expires, "Contact parameter 'expires'")):
        with pytest.raises(SipParseError) as ei:
            view()
        assert ei.value.where == where
    with pytest.raises(SipParseError, match="no value"):
        NameAddr.parse("<sip:a@b>;expires").expires
    assert message().expires is None and message().min_expires is None and message().contacts[0].expires is None


_DIGEST = ('Digest username="{u}", realm="r", nonce="{n}", uri="sip:r", response="{resp}", '
           'nc=00000001, cnonce="{c}", qop=auth')


@pytest.mark.parametrize("param", ["u", "n", "c", "resp"])
def test_non_utf8_bytes_in_any_digest_field_is_a_parse_error_naming_it(param):
    fields = dict(u="alice", n="abc", c="xyz", resp="0" * 64)
    fields[param] = b"al\xffice".decode("utf-8", "surrogateescape")  # as sipcore.parser keeps it
    value = _DIGEST.format(**fields).replace("nc=", "algorithm=SHA-256, nc=")
    with pytest.raises(SipParseError) as ei:
        Credentials.parse(value)
    name = {"u": "username", "n": "nonce", "c": "cnonce", "resp": "response"}[param]
    assert repr(name) in str(ei.value)
    # the server side says MALFORMED (a fake answers 400), never raises
    result = DigestServer("r").verify(value, method="REGISTER", password_for={"alice": "x"}.get)
    assert result.status == "malformed" and name in result.reason


@pytest.mark.parametrize("response", ["é" * 32, "0" * 31, "0" * 64 + "0", "zz" * 16, ""])
def test_digest_response_must_be_hex_of_the_algorithms_length(response):
    value = _DIGEST.format(u="alice", n="abc", c="xyz", resp=response)
    result = DigestServer("r", algorithm="MD5").verify(value, method="REGISTER", password_for={"alice": "x"}.get)
    assert result.status == "malformed" and "response" in result.reason


def test_control_characters_and_duplicate_parameters_are_refused():
    with pytest.raises(SipParseError, match="'nonce'"):
        Challenge.parse('Digest realm="r", nonce="a\x00b"')
    with pytest.raises(SipParseError, match="'realm' appears twice"):
        Challenge.parse('Digest realm="r", nonce="n", realm="s"')


# -- fuzzing the typed views: nothing but SipParseError, whatever the value ------------------------

_NUMBERS = st.builds(lambda sign, n, tail: sign + "9" * n + tail, st.sampled_from(["", "-", "+", "0", " "]),
                     st.integers(0, 6000), st.sampled_from(["", "x", ".5", "\t", "٣", "\udcff"]))
_VALUES = st.one_of(
    _NUMBERS,
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.lists(st.sampled_from(['"', "\\", ",", ";", "=", "<", ">", "expires", "q", "sip:a@b", "Digest", "realm",
                              "nonce", "algorithm=SHA-256", "qop", "=auth", " ", "\t", "é", "\udcff", "\x00"]),
             max_size=30).map("".join),
)
_HEADERS = ["Expires", "Min-Expires", "Contact", "Via", "WWW-Authenticate", "Proxy-Authenticate", "Authorization",
            "Max-Forwards", "CSeq"]


def _views(msg):
    msg.expires, msg.min_expires, msg.max_forwards, msg.cseq
    for c in msg.contacts:
        c.expires
    for v in msg.vias:
        v.branch, v.rport, v.received, v.sent_by
    for name in ("WWW-Authenticate", "Proxy-Authenticate"):
        if msg.headers.get(name) is not None:
            Challenge.parse(msg.headers.get(name))
    if msg.headers.get("Authorization") is not None:
        Credentials.parse(msg.headers.get("Authorization"))
        DigestServer("r").verify(msg.headers.get("Authorization"), method="REGISTER",
                                 password_for=lambda u: "pw", uri="sip:example.com")


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_HEADERS), _VALUES)
def test_typed_views_raise_only_sip_parse_error(header, value):
    raw = BASE.format(cseq="1", mf="70", cparams="", extra="").replace(
        "Content-Length: 0", f"{header}: {value}\r\nContent-Length: 0").encode("utf-8", "surrogateescape")
    try:
        msg = parse(raw)
        _views(msg)
    except SipParseError as e:
        assert e.what  # says what; the place is in where or in what (header / parameter)


def test_sha256_client_answer_is_accepted_by_a_server_offering_both():
    srv = DigestServer("r")
    first, second = srv.make_challenges()
    assert Challenge.parse(first).algorithm == "SHA-256" and Challenge.parse(second).algorithm == "MD5"
    assert Challenge.parse(first).nonce == Challenge.parse(second).nonce  # one nonce, RFC 7616 §3.9.1
    for nc, ch in enumerate((first, second), start=1):
        value = authorize(ch, method="REGISTER", uri="sip:r", username="alice", password="pw", nc=nc)
        assert srv.verify(value, method="REGISTER", password_for={"alice": "pw"}.get, uri="sip:r").ok
