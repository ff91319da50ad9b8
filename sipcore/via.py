"""The Via header value (RFC 3261 §20.42): ``SIP/2.0/<transport> <host>[:<port>];params``.

Why a module of its own: a Via is what a transaction is keyed on (its ``branch``, RFC 3261
§17.2.3) and where a response is sent (``received``/``rport``, RFC 3581); the message
classes, the parser, the builders and the phone's addressing all handle it, and none of
them needs the rest of the others. Parsed by one compiled pattern, serialized back with
its parameters as received.
"""

from __future__ import annotations

import re

from sipharness.sipcore.fields import _known
from sipharness.sipcore.headers import _fast_params, format_params, parse_params, split_list
from sipharness.sipcore.uri import SipParseError

__all__ = ["Via"]

_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)"
    r"(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?\Z",
    re.S,
)
# The fast path of Via.parse: ``SIP/2.0/<transport> <host>[:<port>];params`` written plainly (no
# LWS but the one space, a host name or IPv4 address, parameters in the form of
# headers.parse_params' fast pattern), the shape of every Via a phone, SIPp or Kamailio sends. Its
# classes are strict subsets of _VIA_RE's and its parameter part is headers._FAST_PARAMS (a
# leading ;branch= captured on its own), so what it accepts the general pattern accepts with the
# same result (tests/test_parser_fastpath.py compares both); anything else, and a port above
# 65535, takes the general way.
_FAST_VIA = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9_][A-Za-z0-9_\-.]*)(?::([0-9]{1,5}))?"
    r"(?:;branch=([A-Za-z0-9\-.!%*_+`'~\[\]:]+))?"  # the first parameter, nearly always: read without a loop
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)*)\Z")
_TRANSPORTS = {t: t.upper() for t in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "tls")}
# the parameters after the branch (";rport", ";received=...;rport=...") by text: one peer sends
# the same ones every time; each entry an immutable tuple of (lower-case name, value) pairs
_TAILS: dict[str, tuple[tuple[str, str | None], ...]] = {}


def _tail(ptext: str) -> tuple[tuple[str, str | None], ...]:
    return _known(_TAILS, ptext, tuple(_fast_params(ptext).items()))


class Via:
    """One Via value: ``SIP/2.0/<transport> <host>[:<port>];params``."""

    __slots__ = ("transport", "host", "port", "params")

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: dict[str, str | None] | None = None) -> None:
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = dict(params) if params else {}

    @classmethod
    def parse(cls, text: str) -> "Via":
        m = _FAST_VIA.match(text)
        if m is not None:
            transport, host, port, branch, ptext = m.groups()
            v = cls.__new__(cls)
            v.transport = _TRANSPORTS.get(transport) or transport.upper()
            v.host = host
            if port is None:
                v.port = None
            else:
                v.port = int(port)
                if v.port > 65535:
                    return cls._parse_general(text)  # which says why
            params: dict[str, str | None] = {} if branch is None else {"branch": branch}
            if ptext:
                tail = _TAILS.get(ptext)
                if tail is None:
                    tail = _tail(ptext)
                params.update(tail)
            v.params = params
            return v
        return cls._parse_general(text)

    @classmethod
    def _parse_general(cls, text: str) -> "Via":
        """Every form of RFC 3261 §20.42 (the fast path above covers the common one)."""
        m = _VIA_RE.match(text)
        if m is None:
            raise SipParseError(f"bad Via value {text.strip()[:80]!r}")
        name, version, transport, host, port, ptext = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError(f"Via protocol {name}/{version} is not SIP/2.0")
        if host.startswith("["):
            host = host[1:-1]
            if ":" not in host:
                raise SipParseError(f"bad IPv6 address in Via {text.strip()[:80]!r}")
        v = cls.__new__(cls)
        v.transport = transport.upper()
        v.host = host
        v.port = None
        if port is not None:
            v.port = int(port)
            if v.port > 65535:
                raise SipParseError(f"Via port {port} > 65535")
        v.params = parse_params(ptext, "Via") if ptext else {}
        return v

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        if "received" not in self.params:
            return None
        return self.params["received"] or ""

    @property
    def rport(self) -> str | None:
        """``None`` when absent, ``''`` when present without a value, else the value."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self) -> "Via":
        return Via(self.transport, self.host, self.port, self.params)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.transport, self.host.lower(), self.port, self.params) == (
            other.transport, other.host.lower(), other.port, other.params)


def _parse_vias(lines: list[str]) -> list[Via]:
    """The Via values of the Via header lines ``lines``, in order (a line may hold several)."""
    vias = []
    for line in lines:
        if "," in line:
            vias.extend(Via.parse(e) for e in split_list(line))
        else:
            vias.append(Via.parse(line))
    return vias

