"""The lane: a registrar that checks what ours checks and keeps what ours keeps, without our layers.

``bench/registrar_rps.py --servers ours,kamailio,floor,lane`` runs it beside ours, the floor and
Kamailio under the same SIPp load, and ``bench/registrar_cost.py --lane`` in process. Where the
floor (``bench/registrar_floor.py``) is the least any Python registrar on Twisted does, the lane
is the least one that keeps our promises does: the ceiling of a redesign of our request path
(issue 16), measured rather than guessed.

Per datagram, in one function and nothing more:

- the request line and every header line matched by a strict pattern of its grammar, each header
  at most once (a REGISTER as SIPp and phones send it: Via, From, To, Call-ID, CSeq, Contact,
  Max-Forwards, Expires, Content-Length, Authorization, User-Agent, Allow, Supported); anything
  else gets no answer here, where ours hands it to its general parser, which names the fault;
- a retransmission answered again from the bytes remembered for 64·T1 (``fakes.sip.recent``);
- the digest checked by sipcore's ``DigestServer`` (nonces tracked, counts must grow, stale
  nonces challenged again), the digest user the To user (403 otherwise);
- the binding kept with its expiry, the answer written as bytes;
- a ``SipRecord`` in and one out, counted by a ``Tally``, as ``sipharness registrar --quiet``.

No scripted faults, transactions, timers, adapters, core or actions: all of which ours has
because a test needs them. Not a product: bench/ only, never imported by the package.
"""

from __future__ import annotations

import re
from typing import Any, Callable

__all__ = ["protocol"]

REALM = "lane"
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*)"
_PORT = r"(?::[0-9]{1,5})?"
_PARAMS = rf"(?:;{_TOKEN}(?:={_TOKEN})?)*"
_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]+"
_NAME_ADDR = rf"(?:\"[^\"\\\r\n]*\"[ \t]*)?<(sips?:(?:({_USER})@)?{_HOST}{_PORT}{_PARAMS})>"
_TEXT = r"[\x20-\x7e]*"
# header name → the pattern its value must match whole (the groups: what the registrar reads)
_VALUES = {name: re.compile(pattern).fullmatch for name, pattern in {
    "Via": rf"SIP/2\.0/UDP[ \t]+{_HOST}{_PORT}{_PARAMS}",
    "From": rf"{_NAME_ADDR}{_PARAMS}",
    "To": rf"{_NAME_ADDR}{_PARAMS}",
    "Call-ID": rf"{_TOKEN}(?:@{_TOKEN})?",
    "CSeq": r"([0-9]{1,9}) REGISTER",
    "Contact": rf"{_NAME_ADDR}(?:;expires=([0-9]{{1,9}}))?{_PARAMS}",
    "Max-Forwards": r"[0-9]{1,3}",
    "Expires": r"[0-9]{1,9}",
    "Content-Length": r"0",
    "Authorization": rf"Digest {_TEXT}",
    "User-Agent": _TEXT, "Allow": _TEXT, "Supported": _TEXT,
}.items()}
_REQUEST_LINE = re.compile(rf"REGISTER (sips?:{_HOST}{_PORT}{_PARAMS}) SIP/2\.0").fullmatch
_BRANCH = re.compile(rf";branch=(z9hG4bK{_TOKEN})").search


def protocol(users: dict[str, str] | None, seconds: Callable[[], float]) -> Any:
    """The lane's ``DatagramProtocol`` (``users``: name → password for digest, MD5; None: no
    authentication; ``seconds``: its clock). ``bench/registrar_rps.py --serve lane PORT`` listens
    with it; ``bench/registrar_cost.py --lane`` feeds it in process, beside ours."""
    from twisted.internet import protocol as tprotocol

    from sipharness.fakes.record import SipRecord
    from sipharness.fakes.sip.answering import MAX_RECENT, WINDOW
    from sipharness.fakes.sip.recent import RecentMap
    from sipharness.fakes.tally import Tally
    from sipharness.sipcore.digestserver import MALFORMED, OK, STALE, DigestServer
    from sipharness.sipcore.ids import new_tag

    class _Now:  # the DigestServer's IReactorTime
        def seconds(self) -> float:
            return seconds()

    digest = DigestServer(REALM, _Now(), qop=("auth",), algorithms=("MD5",)) if users else None
    answered = RecentMap(WINDOW, MAX_RECENT)  # (Call-ID, CSeq, branch) → the answer's bytes
    bindings: dict[str, dict[str, float]] = {}  # user → contact URI → expiry
    tally = Tally()

    class Lane(tprotocol.DatagramProtocol):
        local: tuple[str, int] | None = None

        def datagramReceived(self, data: bytes, addr: tuple) -> None:
            end = data.find(b"\r\n\r\n")
            if end < 0 or end + 4 != len(data):  # (a body, or no end of the header block)
                return
            lines = data[:end].decode("latin-1").split("\r\n")
            start = _REQUEST_LINE(lines[0])
            if start is None:
                return
            h: dict[str, str] = {}
            m: dict[str, Any] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                value = value.strip(" \t")
                check = _VALUES.get(name)
                found = check(value) if check is not None else None
                if found is None or name in h:
                    return
                h[name] = value
                m[name] = found
            try:
                via, frm, to, call_id, cseq = h["Via"], h["From"], h["To"], h["Call-ID"], h["CSeq"]
            except KeyError:
                return
            branch = _BRANCH(via)
            if branch is None:
                return
            now = seconds()
            local = self.local or self._local()
            number = int(m["CSeq"].group(1))
            key = (call_id, number, branch.group(1))
            again = answered.get(key, now)
            tally.add(SipRecord(time=now, direction="in", server="lane", transport="udp", local=local, peer=addr,
                                summary=lines[0][:-8], method="REGISTER", retransmission=again is not None,
                                call_id=call_id, cseq=number, branch=key[2], raw=data))
            if again is not None:
                self._send(again, addr, now, key, local, True)
                return
            head = f"Via: {via}\r\nFrom: {frm}\r\nTo: {to};tag={new_tag()}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
            answer = self._decide(h, m, start.group(1), now)
            out = f"SIP/2.0 {answer[0]}\r\n{head}{answer[1]}Content-Length: 0\r\n\r\n".encode()
            answered.put(key, out, now)
            self._send(out, addr, now, key, local, False)

        def _decide(self, h: dict[str, str], m: dict[str, Any], uri: str, now: float) -> tuple[str, str]:
            """(status line's text, extra header lines) of the answer."""
            user = m["To"].group(2)
            if not user:
                return "400 To header has no user part", ""
            if digest is not None:
                value = h.get("Authorization")
                result = None if value is None else digest.verify(value, method="REGISTER",
                                                                  password_for=users.get, uri=uri)
                if result is None or result.status == STALE:
                    challenge = digest.make_challenges(stale=result is not None)[0]
                    return "401 Unauthorized", f"WWW-Authenticate: {challenge}\r\n"
                if result.status == MALFORMED:
                    return "400 Bad Authorization", ""
                if result.status != OK or result.username != user:
                    return "403 Forbidden", ""
            contact = m.get("Contact")
            if contact is None:
                return "200 OK", ""
            expires = int(contact.group(3) or h.get("Expires", "3600"))
            table = bindings.setdefault(user, {})
            if expires:
                table[contact.group(1)] = now + expires
            else:
                table.pop(contact.group(1), None)
            return "200 OK", "".join(f"Contact: <{c}>;expires={max(0, round(t - now))}\r\n" for c, t in table.items())

        def _send(self, out: bytes, addr: tuple, now: float, key: tuple, local: tuple, again: bool) -> None:
            self.transport.write(out, addr)
            tally.add(SipRecord(time=now, direction="out", server="lane", transport="udp", local=local, peer=addr,
                                summary=out[8:out.index(b"\r\n")].decode("latin-1"), method="REGISTER",
                                status=int(out[8:11]), retransmission=again, call_id=key[0], cseq=key[1],
                                branch=key[2], raw=out))

        def _local(self) -> tuple[str, int]:
            host = self.transport.getHost()
            self.local = (host.host, host.port)
            return self.local

    return Lane()

