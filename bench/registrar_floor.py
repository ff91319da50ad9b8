"""The floor: the least a registrar written in Python on Twisted does per REGISTER, as a yardstick.

``bench/registrar_rps.py --servers ours,kamailio,floor`` runs it beside ours and Kamailio,
under the same SIPp load, and prints floor / Kamailio: the highest ratio any CPython
registrar on this Twisted could print on this box. Issue 16 asks ours for 0.5 of Kamailio;
this is what tells whether the gap left is our work per message or the platform's.

What it does per datagram, and nothing more: split the header block at ``\\r\\n`` and ``:``
(no folding, no compact names, no validation: a malformed request gets no answer), answer a
REGISTER without credentials with a 401 (one MD5 challenge, a fresh nonce), check MD5 digest
credentials (qop=auth, the nonce one we issued, the response), keep the binding, answer 200
with the Contact and its expiry, or a plain REGISTER with its 200 at once (``plain`` mode). It
keeps no record of what it saw, no memory of answered requests (a retransmission is handled
again), no transactions, no timers, no scripted faults, no bounds beyond the nonce table's:
all of which ours has, because a test needs them. Not a product: bench/ only, never imported
by the package.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Callable

__all__ = ["protocol"]

REALM = "floor"
MAX_NONCES = 100_000  # forgotten all at once when full (a bench run issues a few hundred thousand at most)
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def protocol(users: dict[str, str] | None, seconds: Callable[[], float]) -> Any:
    """The floor's ``DatagramProtocol`` (``users``: name → password for digest; None: no
    authentication; ``seconds``: the clock a binding's expiry is read from).
    ``bench/registrar_rps.py --serve floor PORT`` listens with it; ``bench/registrar_cost.py
    --floor`` feeds it in process, beside ours."""
    from twisted.internet import protocol as tprotocol

    nonces: set[str] = set()
    bindings: dict[str, tuple[str, float]] = {}
    ha1s: dict[str, str] = {}

    def answer(h: dict[str, str], code: str, extra: str) -> bytes:
        return (f"SIP/2.0 {code}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\n"
                f"To: {h['to']};tag={os.urandom(6).hex()}\r\nCall-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n"
                f"{extra}Content-Length: 0\r\n\r\n").encode()

    def authorized(h: dict[str, str], uri: str) -> bool:
        value = h.get("authorization")
        if users is None:
            return True
        if not value or not value.startswith("Digest "):
            return False
        p = {m[0]: m[1] or m[2] for m in _PARAM.findall(value)}
        password = users.get(p.get("username", ""))
        if password is None or p.get("nonce") not in nonces or p.get("realm") != REALM:
            return False
        ha1 = ha1s.get(p["username"]) or ha1s.setdefault(p["username"], _md5(f"{p['username']}:{REALM}:{password}"))
        expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc')}:{p.get('cnonce')}:auth:{_md5('REGISTER:' + p.get('uri', uri))}")
        return expected == p.get("response")

    class Floor(tprotocol.DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: tuple) -> None:
            try:
                self._answer(data, addr)
            except (ValueError, KeyError, IndexError):  # malformed: no answer, and no traceback per datagram
                pass

        def _answer(self, data: bytes, addr: tuple) -> None:
            lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, uri, _ = lines[0].split(" ", 2)
            if method != "REGISTER":
                return
            h = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                h[name.strip().lower()] = value.strip()
            if not authorized(h, uri):
                nonce = os.urandom(16).hex()
                if len(nonces) >= MAX_NONCES:
                    nonces.clear()
                nonces.add(nonce)
                self.transport.write(answer(h, "401 Unauthorized", f'WWW-Authenticate: Digest realm="{REALM}", '
                                            f'nonce="{nonce}", qop="auth", algorithm=MD5\r\n'), addr)
                return
            contact = h["contact"].split(">", 1)[0].lstrip("<")
            expires = int(h.get("expires", "3600"))
            user = h["to"].split("sip:", 1)[1].split("@", 1)[0]
            bindings[user] = (contact, seconds() + expires)
            self.transport.write(answer(h, "200 OK", f"Contact: <{contact}>;expires={expires}\r\n"), addr)

    return Floor()

