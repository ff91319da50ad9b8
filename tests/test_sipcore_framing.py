"""sipcore.framing.StreamFramer: Content-Length framing, keep-alives, limits, garbage."""

import pytest

from sipharness.sipcore.build import make_response
from sipharness.sipcore.framing import StreamFramer
from sipharness.sipcore.parser import parse
from sipharness.sipcore.uri import SipParseError

from tests.test_sipcore_message import REGISTER

INVITE = (
    b"INVITE sip:bob@127.0.0.20 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
    b"To: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
    b"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nl: 10\r\n\r\n"
    b"v=0\r\no=x\r\n"
)


def test_two_messages_in_one_segment():
    f = StreamFramer()
    out = f.feed(REGISTER + INVITE)
    assert [m.method for m in out] == ["REGISTER", "INVITE"]
    assert out[1].body == b"v=0\r\no=x\r\n" and f.buffered == 0


def test_one_byte_at_a_time_with_keepalives():
    resp = make_response(parse(INVITE), 200, to_tag="t", body=b"hello").to_bytes()
    stream = b"\r\n\r\n" + INVITE + b"\r\n" + resp + b"\r\n\r\n" + REGISTER + b"\r\n\r\n"
    f = StreamFramer()
    out = []
    for i in range(len(stream)):
        out.extend(f.feed(stream[i:i + 1]))
    assert [m.is_request for m in out] == [True, False, True]
    assert out[1].status == 200 and out[1].body == b"hello"
    assert f.pings == 3 and f.pongs == 1
    assert f.take_pings() == 3 and f.take_pings() == 0
    assert f.buffered == 0


def test_body_split_across_segments():
    f = StreamFramer()
    assert f.feed(INVITE[:-4]) == []
    assert f.buffered == len(INVITE) - 4
    (m,) = f.feed(INVITE[-4:])
    assert m.body.endswith(b"o=x\r\n")


def test_missing_content_length_is_an_error_and_framer_stays_failed():
    f = StreamFramer()
    with pytest.raises(SipParseError) as ei:
        f.feed(REGISTER.replace(b"Content-Length: 0\r\n", b""))
    assert "mandatory" in ei.value.what and ei.value.where == "stream byte 0"
    with pytest.raises(SipParseError):
        f.feed(REGISTER)


@pytest.mark.parametrize("stream, what", [
    (b"\x00\x01garbage garbage\r\n\r\n", "garbage"),
    (b"A" * 100, "garbage"),
    (b"\r\x00", "stray CR"),
    (b"\n\n", "bare LF"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: abc"), "bad Content-Length"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 0"), "more than once"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 70000"), "exceeds"),
    (REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: x"), "bad CSeq"),
])
def test_garbage_raises(stream, what):
    f = StreamFramer()
    with pytest.raises(SipParseError) as ei:
        f.feed(stream)
    assert what in ei.value.what


def test_error_position_in_stream():
    f = StreamFramer()
    bad = REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: x")
    with pytest.raises(SipParseError) as ei:
        f.feed(REGISTER + bad)
    assert ei.value.where == f"stream message at byte {len(REGISTER)}, line 7, header 'CSeq'"


def test_header_block_over_limit():
    f = StreamFramer(max_size=1000)
    f.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as ei:
        for _ in range(100):
            f.feed(b"X-Pad: " + b"p" * 50 + b"\r\n")
    assert "longer than 1000" in ei.value.what


def test_pong_then_message():
    f = StreamFramer()
    assert f.feed(b"\r\n") == []
    assert f.pongs == 0  # undecided: could be the start of a ping
    (m,) = f.feed(REGISTER)
    assert f.pongs == 1 and f.pings == 0 and m.method == "REGISTER"
