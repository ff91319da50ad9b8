"""The parser's fast paths answer exactly as the general parser (sipcore.nameaddr, sipcore.headers).

The fast paths (one compiled pattern for the common name-addr and ``;param`` shapes) exist for
speed only (bench/registrar_rps.py): whatever they accept, the general parser must accept with
the same result, and whatever they refuse goes the general way, errors included. Checked on
generated values close to the grammar's edges (characters just outside each class, empty
parts, whitespace, quotes, escapes, ports past 65535) and on the RFC 4475 messages.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipharness.sipcore import headers as H
from sipharness.sipcore import nameaddr as N
from sipharness.sipcore.nameaddr import NameAddr
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError

# pieces close to the edges of the classes: legal ones and their neighbours
_USERS = ["alice", "user1234", "a.b-c_d!~*'()&=+$,", "a;b", "a?b", "a/b", "a%20b", "a%2", "", "a b", "é", "a@b"]
_HOSTS = ["127.0.0.1", "example.com", "_sip.x", "a-b.c", "[::1]", "-bad", "", "ex ample", "x:y", "é.com"]
_PORTS = ["", ":5060", ":0", ":05060", ":00", ":65535", ":65536", ":99999", ":123456", ":", ":5a"]
_UPARAMS = ["", ";transport=udp", ";Transport=UDP", ";lr", ";lr;x=[1:2]/a", ";a=b=c", ";", ";a=", ";%41=b",
            ";a=%zz", ";ob;expires=10", ";lr;lr", ";a=1;A=2", ";x=1;x=2"]
_PARAMS = ["", ";tag=1234SIPpTag001", ";tag=a;expires=3600", ";Expires=10", ";flag", ";q=0.5;+sip.instance=x",
           "; tag=x", ";tag = x", ';tag="q"', ";tag=", ";", ";t=a b", ";t=[x]:y", ";t=é", ";t=%"]
_DISPLAYS = ["", '"Alice" ', '"Alice"', '"A \\"q\\" b" ', '"" ', 'Alice ', '"unterminated ']
_SCHEMES = ["sip", "sips", "SIP", "tel", "sipx"]


def _same_uri(a, b) -> bool:
    return ((a.scheme, a.user, a.password, a.host, a.port, list(a.params.items()), list(a.headers.items()), a.opaque)
            == (b.scheme, b.user, b.password, b.host, b.port, list(b.params.items()), list(b.headers.items()),
                b.opaque))


def _outcome(parse_fn, text):
    try:
        return parse_fn(text)
    except SipParseError as e:
        return e


def _check_name_addr(text: str) -> None:
    fast = _outcome(NameAddr.parse, text)
    general = _outcome(NameAddr._parse_general, text)
    if isinstance(general, SipParseError):
        assert isinstance(fast, SipParseError), f"fast path accepted {text!r}, the general parser refuses it"
        assert str(fast) == str(general)
        return
    assert not isinstance(fast, SipParseError), f"{text!r}: {fast}"
    assert fast.display == general.display and list(fast.params.items()) == list(general.params.items())
    assert _same_uri(fast.uri, general.uri), text
    assert str(fast) == str(general)
    assert fast.uri_text == str(fast.uri) == general.uri_text, text  # the text kept is str(uri)


def test_name_addr_fast_path_equals_the_general_parser_on_every_combination_of_edges():
    # the user, host and port pieces against each other, then the parameters, display names
    # and schemes against each other (each with good values elsewhere): every pair is met
    for user, host, port, with_user in itertools.product(_USERS, _HOSTS, _PORTS, (True, False)):
        userpart = f"{user}@" if with_user else ""
        _check_name_addr(f"<sip:{userpart}{host}{port}>;tag=1")
    for display, scheme, uparams, params in itertools.product(_DISPLAYS, _SCHEMES, _UPARAMS, _PARAMS):
        _check_name_addr(f"{display}<{scheme}:alice@127.0.0.1:5060{uparams}>{params}")
    for edge in (" ", "\t", ">", "<", "\x0b", "\xa0", ","):
        for text in ("<sip:a@b>", "<sip:a@b>;tag=1", '"A" <sip:a@b>'):
            _check_name_addr(edge + text)
            _check_name_addr(text + edge)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="<>\"'sip:@.;=aZ09-_ \t%[]/,?&+$~!*()é", max_size=40))
def test_name_addr_fast_path_on_arbitrary_text(text):
    _check_name_addr(text)
    _check_name_addr("<sip:" + text)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_PARAMS + [";branch=z9hG4bK-1", ";rport", ";received=1.2.3.4", ";X=Y"]),
                max_size=4).map("".join))
def test_params_fast_path_equals_the_general_loop(text):
    fast = _outcome(lambda t: H.parse_params(t, "test"), text)
    general = _outcome(lambda t: H._parse_params_general(t, "test") if t and not t.isspace() else {}, text)
    if isinstance(general, SipParseError):
        assert isinstance(fast, SipParseError) and str(fast) == str(general)
    else:
        assert list(fast.items()) == list(general.items())


def test_the_fast_paths_are_taken_for_the_common_shapes():
    assert N._FAST_NAME_ADDR.match("<sip:user12@127.0.0.1:5060;transport=UDP>;tag=1234SIPpTag0012")
    assert N._FAST_NAME_ADDR.match('"Alice" <sip:alice@example.com>;tag=88sja8x')
    assert H._FAST_PARAMS.match(";branch=z9hG4bK776asdhds;rport")


def test_a_port_past_65535_is_refused_as_before():
    with pytest.raises(SipParseError, match="65535"):
        NameAddr.parse("<sip:a@b:65536>")


_RFC4475 = sorted((Path(__file__).parent / "data" / "rfc4475" / "valid").glob("*.dat"))


@pytest.mark.parametrize("path", _RFC4475, ids=lambda p: p.stem)
def test_rfc4475_messages_parse_to_the_same_values_through_both_paths(path, monkeypatch):
    fast = parse(path.read_bytes())
    monkeypatch.setattr(N, "_FAST_NAME_ADDR", _NEVER)
    monkeypatch.setattr(H, "_FAST_PARAMS", _NEVER)
    general = parse(path.read_bytes())
    assert fast == general
    for view in ("from_", "to"):
        a, b = getattr(fast, view), getattr(general, view)
        assert a.display == b.display and list(a.params.items()) == list(b.params.items()) and _same_uri(a.uri, b.uri)
    assert [str(c) for c in fast.contacts] == [str(c) for c in general.contacts]
    assert [(v.host, v.port, list(v.params.items())) for v in fast.vias] == [
        (v.host, v.port, list(v.params.items())) for v in general.vias]


class _Never:
    @staticmethod
    def match(text):
        return None


_NEVER = _Never()


# -- digest parameters (sipcore.digest._parse_auth): the fast paths against the loop

_AUTH_PARAMS = ['username="u0"', 'realm="fake"', 'nonce="a1b2"', 'uri="sip:127.0.0.1:5060"', "nc=00000001",
                'response="0123456789abcdef0123456789abcdef"', "algorithm=MD5", "qop=auth", 'cnonce="x\\"y"',
                'opaque=""', "x=", 'y="un\\\\escaped"', 'bad="ctl\x01"', "n a=1", 'q="open', "=v", "dup=1"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_AUTH_PARAMS), max_size=7),
       st.sampled_from([",", ", ", " ,", ",\t", " , ", "  ", ""]), st.sampled_from(["", " ", ","]))
def test_auth_params_fast_path_equals_the_loop(params, sep, tail):
    from sipharness.sipcore import digest as D

    text = "Digest " + sep.join(params) + tail
    fast = _outcome(lambda t: D._parse_auth(t, "credentials"), text)
    saved = D._PARAMS_WHOLE, D._fast_params
    D._PARAMS_WHOLE, D._fast_params = _NEVER, lambda rest: None
    try:
        general = _outcome(lambda t: D._parse_auth(t, "credentials"), text)
    finally:
        D._PARAMS_WHOLE, D._fast_params = saved
    if isinstance(general, SipParseError):
        assert isinstance(fast, SipParseError) and str(fast) == str(general), text
    else:
        assert fast == general, text
