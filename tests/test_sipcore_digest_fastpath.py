"""sipcore.digest's fast reading of a credentials list answers exactly as the general loop.

The fast path (``_fast_params``: one split by a C pattern, a dict without a Python call per
parameter) exists for speed only (bench/registrar_rps.py). Whatever it accepts, the loop of
``_parse_auth`` must read to the same parameters; whatever it declines (a backslash to
unescape, a control character or non-UTF-8 byte, whitespace around ``=``, a name twice, a
stray character) goes the general way, errors included. Checked on generated lists whose
names, values and separators sit on the edges of each class.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipharness.sipcore import digest as D
from sipharness.sipcore.digest import Credentials
from sipharness.sipcore.uri import SipParseError


def _outcome(fn, text):
    try:
        return fn(text)
    except SipParseError as e:
        return e


def _general(text: str, what: str = "credentials"):
    """``_parse_auth`` with both fast paths off: the loop alone."""
    saved = D._fast_params, D._PARAMS_WHOLE
    D._fast_params = lambda rest: None
    D._PARAMS_WHOLE = _Never
    try:
        return _outcome(lambda t: D._parse_auth(t, what), text)
    finally:
        D._fast_params, D._PARAMS_WHOLE = saved


class _Never:
    @staticmethod
    def match(text):
        return None


def _same(fast, general, text):
    if isinstance(general, SipParseError):
        assert isinstance(fast, SipParseError) and str(fast) == str(general), text
    else:
        assert not isinstance(fast, SipParseError), (text, fast)
        assert fast == general, text
        assert list(fast[1]) == list(general[1]), text  # same order too


# characters on the edges: quote, backslash, comma, equals, whitespace of several kinds, control
# characters, DEL, a surrogate escape (a non-UTF-8 byte on the wire), non-ASCII text
_EDGE = ['"', "\\", ",", "=", " ", "\t", "\r\n", "\x00", "\x01", "\x0b", "\x1f", "\x7f", "\udcff", "é", "\u00a0",
         "a", "Z", "0", "-", ".", "~", "'", ":", "@", ";"]
# mostly ordinary printable characters, so that many lists are ones the fast path takes
_text = st.lists(st.sampled_from(_EDGE + [chr(c) for c in range(0x20, 0x7f)] * 3), max_size=8).map("".join)
_names = (st.sampled_from(["username", "realm", "nonce", "uri", "response", "nc", "qop", "cnonce", "opaque",
                           "algorithm", "Realm", "NONCE", "n a", "", "=", "é"])
          | st.from_regex(r"[A-Za-z0-9\-_.!%*+`'~]{1,6}", fullmatch=True))


@st.composite
def _param(draw):
    name = draw(_names)
    value = draw(_text)
    shape = draw(st.sampled_from(["quoted", "token", "escaped", "raw"]))
    if shape == "quoted":
        value = '"' + value.replace('"', "").replace("\\", "") + '"'
    elif shape == "escaped":
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif shape == "token":
        value = "".join(c for c in value if c not in ' ,"\t\r\n')
    eq = draw(st.sampled_from(["="] * 12 + [" =", "= ", " = "]))
    return name + eq + value


@settings(max_examples=2000, deadline=None)
@given(st.lists(_param(), max_size=8, unique_by=lambda p: p.split("=")[0].lower()) | st.lists(_param(), max_size=8),
       st.lists(st.sampled_from([",", ", ", " ,", " , ", ",\t", "\t,\r\n"] * 6 + [",,", " ", "", ",\x0b"]),
                min_size=8, max_size=8),
       st.sampled_from(["", "", "", ",", " ,", ", x"]))
def test_fast_params_read_as_the_loop_does(params, seps, tail):
    text = "Digest " + "".join(p + (seps[i] if i < len(params) - 1 else "") for i, p in enumerate(params)) + tail
    _same(_outcome(lambda t: D._parse_auth(t, "credentials"), text), _general(text), text)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_EDGE + ["username", "realm=", 'nonce="', "Digest "]), max_size=40).map("".join))
def test_any_text_reads_as_the_loop_does(rest):
    text = "Digest " + rest
    _same(_outcome(lambda t: D._parse_auth(t, "credentials"), text), _general(text), text)


_SIPP = ('Digest username="u0",realm="127.0.0.1",cnonce="6b8b4567",nc=00000001,qop=auth,'
         'uri="sip:127.0.0.1:5060",nonce="6f2a5d0e1c9b8a7f6e5d4c3b2a190807",'
         'response="0123456789abcdef0123456789abcdef",algorithm=MD5,opaque="1234567890abcdef"')


def test_what_sipp_and_our_client_send_takes_the_fast_path():
    # the point of the fast path: the lists a load generator and our own client send use it
    ours = D.authorize('Digest realm="r", nonce="n", qop="auth", algorithm=MD5', method="REGISTER",
                       uri="sip:127.0.0.1", username="alice", password="pw")
    for text in (_SIPP, ours):
        assert D._fast_params(text[7:]) == _general(text)[1] != {}, text


@pytest.mark.parametrize("rest, why", [
    ('username="a\\"b"', "a backslash to unescape"),
    ('username="a\x01b"', "a control character"),
    ('username="a\udcffb"', "a non-UTF-8 byte"),
    ("username = x", "whitespace around ="),
    ("username=x,Username=y", "a name twice"),
    ("username=x,,realm=y", "an empty element"),
    ('username="open', "an unterminated quote"),
])
def test_the_fast_path_declines_what_needs_the_loop(rest, why):
    assert D._fast_params(rest) is None, why


def test_errors_still_name_the_parameter():
    with pytest.raises(SipParseError, match="'username' appears twice"):
        Credentials.parse(_SIPP + ',USERNAME="x"')
    with pytest.raises(SipParseError, match="'cnonce' of credentials is not UTF-8 text"):
        Credentials.parse(_SIPP.replace('cnonce="6b8b4567"', 'cnonce="6b8b\udcff4567"'))
