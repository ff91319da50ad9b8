"""Cut a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3, RFC 5626 §4.4.1 keep-alives).

Sans-I/O, like h11: the transport feeds whatever bytes arrived (one at a time is fine)
and gets back complete messages. Written by hand because no library frames SIP: the
header block ends at the first empty line and the body is exactly Content-Length bytes,
which is mandatory on streams. Between messages, CRLFs are keep-alives: a double CRLF
is a *ping* (the transport answers a single CRLF *pong*), a lone CRLF is a pong.

Limits protect servers from garbage: a header block or whole message longer than
``max_size``, a first line that cannot start a SIP message, a missing or bad
Content-Length all raise :class:`SipParseError`; the framer then stays failed (the
transport closes the connection, as RFC 3261 §18.3 expects after a framing error).
"""

from __future__ import annotations

import re

from sipharness.sipcore.message import Request, Response
from sipharness.sipcore.parser import MAX_SIZE, parse
from sipharness.sipcore.uri import SipParseError

__all__ = ["StreamFramer"]

_CL_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r]*)\r\n", re.I)
_START_RE = re.compile(rb"(?:SIP/[0-9.]+ |[A-Za-z0-9\-.!%*_+`'~]+ )", re.I)


class StreamFramer:
    """``feed(bytes) -> [Request | Response, ...]``. ``pings``/``pongs`` count the RFC 5626
    keep-alives seen; ``take_pings()`` returns and resets the number of pings to answer."""

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size = max_size
        self.pings = 0
        self.pongs = 0
        self._unanswered = 0
        self._buf = bytearray()
        self._scan = 0          # where to resume the search for the empty line
        self._offset = 0        # stream offset of _buf[0], for error positions
        self._need: int | None = None  # total size of the message being received
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def take_pings(self) -> int:
        n, self._unanswered = self._unanswered, 0
        return n

    def feed(self, data: bytes) -> list[Request | Response]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Request | Response] = []
        try:
            while self._step(out):
                pass
        except SipParseError as e:
            self._error = e
            self._buf.clear()
            raise
        return out

    def _fail(self, what: str, at: int) -> None:
        raise SipParseError(what, f"stream byte {self._offset + at}")

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._offset += n
        self._scan = 0
        self._need = None

    def _step(self, out: list[Request | Response]) -> bool:
        buf = self._buf
        if self._need is None:
            # keep-alives between messages
            while buf[:1] == b"\r":
                if buf[:4] == b"\r\n\r\n":
                    self.pings += 1
                    self._unanswered += 1
                    self._consume(4)
                elif len(buf) >= 2 and buf[1:2] != b"\n":
                    self._fail("stray CR between messages", 0)
                elif len(buf) >= 4 or (len(buf) == 3 and buf[2:3] != b"\r"):
                    self.pongs += 1
                    self._consume(2)
                else:
                    return False  # wait for more to tell ping from pong
            if not buf:
                return False
            if buf[:1] == b"\n":
                self._fail("bare LF between messages", 0)
            eol = buf.find(b"\r\n", 0, self.max_size)
            if eol < 0:
                if len(buf) > self.max_size or (len(buf) >= 64 and not _START_RE.match(buf)):
                    self._fail("garbage where a SIP start line was expected", 0)
                return False
            if not _START_RE.match(buf, 0, eol + 1):
                self._fail("garbage where a SIP start line was expected", 0)
            end = buf.find(b"\r\n\r\n", max(self._scan, 0))
            if end < 0:
                if len(buf) > self.max_size:
                    self._fail(f"header block longer than {self.max_size} bytes", self.max_size)
                self._scan = max(0, len(buf) - 3)
                return False
            head_end = end + 4
            found = _CL_RE.findall(bytes(buf[:head_end]))
            if not found:
                self._fail("Content-Length is mandatory on a stream transport", 0)
            if len(found) > 1:
                self._fail("Content-Length appears more than once", 0)
            cl_text = found[0].strip(b" \t")
            if not cl_text.isdigit() or len(cl_text) > 10:
                self._fail(f"bad Content-Length {cl_text[:20]!r}", 0)
            total = head_end + int(cl_text)
            if total > self.max_size:
                self._fail(f"message of {total} bytes exceeds the limit of {self.max_size}", 0)
            self._need = total
        total = self._need
        if len(buf) < total:
            return False
        chunk = bytes(buf[:total])
        start = self._offset
        self._consume(total)
        try:
            out.append(parse(chunk, max_size=self.max_size))
        except SipParseError as e:
            raise SipParseError(e.what, f"stream message at byte {start}, {e.where}") from None
        return True
