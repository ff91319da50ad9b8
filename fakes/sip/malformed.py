"""The answer a fake SIP server gives to a request its parser refused (RFC 3261 §21.4.1, §8.2.6).

Sans-I/O: fed the raw bytes and the parse error, returns the bytes of a response (or None
when none can be formed: a response is never answered, and without a Via there is nowhere
to send one). Written by hand because the point is leniency the real parser must not have:
the headers a response needs are read line by line from bytes that failed to parse, so the
client learns *why* its request was refused instead of retransmitting it into silence.

- A start line that names a SIP version other than 2.0 → 505 Version Not Supported
  (RFC 3261 §21.5.7; RFC 4475 §3.1.2.19 ``badvers``).
- Anything else → 400 Bad Request with a ``Warning: 399`` saying what the parser found
  (RFC 4475 §3.1.2: "should respond 400"), including start lines with stray whitespace
  (``lwsstart``, ``trws``, ``lwsruri``), CSeq numbers past 2^31 (``scalar02``,
  ``scalarlg``) and missing From/To/Call-ID (``insuf``): what the request had of Via,
  From, To, Call-ID and CSeq is copied back, Via and CSeq at least are needed.

Copied values are bounded (a header value of at most 1024 printable characters, a CSeq
number of at most 40 digits) and the Warning text is cut to 80 printable characters, so the
answer to hostile bytes stays small and well formed.
"""

from __future__ import annotations

import re

from sipharness.sipcore.ids import new_tag

__all__ = ["reply_to_malformed"]

_START = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(.*?)[ \t]+SIP/(\d+)\.(\d+)[ \t]*$")
_HEADER_LINE = re.compile(r"^([A-Za-z\-]+)[ \t]*:[ \t]*(.*)$")
_NEEDED = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
           "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
_CSEQ = re.compile(r"^\d{1,40}[ \t]+[A-Za-z0-9\-.!%*_+`'~]+$")
_MAX_VALUE = 1024


def _printable(value: str) -> bool:
    return len(value) <= _MAX_VALUE and all(32 <= ord(c) < 127 or c == "\t" for c in value)


def reply_to_malformed(raw: bytes, what: str) -> bytes | None:
    """A 400 (or 505) to the request in ``raw`` the parser refused with ``what``; None if none can be formed."""
    text = raw[:65536].decode("latin-1")
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    while head and head[0] == "":  # leading CRLFs (RFC 3261 §7.5 lets a server ignore them)
        head = head[1:]
    if len(head) < 2 or head[0].startswith("SIP/"):
        return None  # nothing, or a response: responses are never answered
    start = _START.match(head[0])
    if start is None:
        return None
    found: dict[str, list[str]] = {}
    for line in head[1:]:
        m = _HEADER_LINE.match(line)
        if m and m.group(1).lower() in _NEEDED and _printable(m.group(2)):
            found.setdefault(_NEEDED[m.group(1).lower()], []).append(m.group(2).strip())
    vias = [v for v in found.get("Via", []) if v.upper().startswith("SIP/")]
    cseq = found.get("CSeq", [""])[0]
    if not vias or not _CSEQ.match(cseq):
        return None
    if (start.group(3), start.group(4)) != ("2", "0"):
        status = "505 Version Not Supported"
    else:
        status = "400 Bad Request"
    lines = [f"SIP/2.0 {status}"] + [f"Via: {v}" for v in vias]
    if found.get("From"):
        lines.append(f"From: {found['From'][0]}")
    if found.get("To"):
        to = found["To"][0]
        if ";tag=" not in to.replace(" ", "").lower():
            to += f";tag={new_tag()}"
        lines.append(f"To: {to}")
    if found.get("Call-ID"):
        lines.append(f"Call-ID: {found['Call-ID'][0]}")
    reason = re.sub(r"[^ -~]", "?", what)[:80].replace('"', "'")
    lines += [f"CSeq: {cseq}", f'Warning: 399 fake "{reason}"', "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
