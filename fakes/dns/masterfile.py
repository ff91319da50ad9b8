"""RFC 1035 master-file text (§5.1): tokens, directives and records, refused with ``file:line``.

Why partly by hand: dnslib's ``ZoneParser`` reads the record syntax we need (it is one of
the few Python parsers that reads quoted NAPTR strings, and we use its per-type ``fromZone``
for every RDATA), but it does not track line numbers, accepts unknown tokens silently in
places and reports errors as bare ``ValueError``/``IndexError``. A fake server's zone file is
written by hand for a test, so a mistake must be refused with ``file:line`` and the reason
(house rule). This module therefore does the master-file *framing* itself (logical lines
with parentheses, quotes, comments, ``$ORIGIN``, ``$TTL``, owner/TTL/class inheritance,
RFC 1035 §5.1) and hands each record's RDATA tokens to dnslib.

``zone.py`` keeps the records this module reads (and the records its mutation API is given
in the same RDATA syntax, through :func:`make_rr`): this module knows the text, not the zone.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterator

from dnslib import CLASS, QTYPE, RR, DNSBuffer, DNSLabel
from dnslib.dns import RDMAP

__all__ = ["ZoneError", "SUPPORTED_TYPES", "MAX_TTL", "MAX_ZONE_BYTES", "read_file", "read_records", "make_rr",
           "split_rdata", "checked_label", "name_key", "parse_ttl"]

# How many RDATA tokens each type takes (min, max); None = no upper bound.
_RDATA_ARITY = {
    "A": (1, 1), "AAAA": (1, 1), "CNAME": (1, 1), "NS": (1, 1), "PTR": (1, 1),
    "MX": (2, 2), "SRV": (4, 4), "NAPTR": (6, 6), "SOA": (7, 7), "TXT": (1, None),
}
SUPPORTED_TYPES = frozenset(_RDATA_ARITY)
# Which RDATA fields are domain names (made absolute here: dnslib leaves some relative).
_NAME_FIELDS = {"CNAME": (0,), "NS": (0,), "PTR": (0,), "MX": (1,), "SRV": (3,), "NAPTR": (5,), "SOA": (0, 1)}

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_RE = re.compile(r"^(?:\d+[smhdwSMHDW]?)+$")
_NUMBERISH = re.compile(r"^[+-]?(?:\d+[smhdwSMHDW]?)+$")  # a TTL, maybe signed or out of range
MAX_TTL = 2**31 - 1

MAX_ZONE_BYTES = 16 * 1024 * 1024  # a zone file larger than this is refused before it is read whole


class ZoneError(ValueError):
    """A zone file (or text) is wrong at ``filename:line``; ``str()`` is ``"FILE:LINE: reason"``."""

    def __init__(self, filename: str, line: int, reason: str):
        self.filename, self.line, self.reason = filename, line, reason
        super().__init__(f"{filename}:{line}: {reason}")


def parse_ttl(token: str) -> int | None:
    """``3600``, ``1h``, ``1h30m`` → seconds; None when ``token`` is not a TTL."""
    if not _TTL_RE.match(token):
        return None
    value = sum(int(n) * _TTL_UNITS.get(u.lower(), 1) for n, u in re.findall(r"(\d+)([smhdwSMHDW]?)", token))
    return value if value <= MAX_TTL else None


def _name_problem(text: str) -> str | None:
    """Why ``text`` is not a domain name DNS can carry (RFC 1035 §2.3.4), or None."""
    body = text[:-1] if text.endswith(".") else text
    if not body:
        return None  # the root
    for label in body.split("."):
        if not label:
            return "has an empty label (two dots in a row, or a leading dot)"
        try:  # dnslib writes a non-ASCII label as IDNA (xn--...)
            size = len(label) if label.isascii() else len(label.encode("idna"))
        except UnicodeError:
            return f"has a label {label[:20]!r} that IDNA cannot encode (or longer than 63 octets)"
        if size > 63:
            return f"has a label of {size} octets ({label[:20]}...; at most 63, RFC 1035 §2.3.4)"
    octets = sum(len(lb) + 1 for lb in DNSLabel(text).label) + 1
    if octets > 255:
        return f"is {octets} octets long (at most 255, RFC 1035 §2.3.4)"
    return None


def checked_label(text: str, filename: str, line: int, what: str = "name") -> DNSLabel:
    """``DNSLabel(text)``, or a ZoneError (ValueError from the API, line 0) saying what is wrong."""
    problem = _name_problem(text)
    if problem is not None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise _err(filename, line, f"{what} {shown!r} {problem}")
    return DNSLabel(text)


def name_key(name: str | DNSLabel) -> str:
    """Lookup key of an absolute name: lower case, one trailing dot."""
    text = str(name).lower()
    return text if text.endswith(".") else text + "."


def _is_type_token(token: str) -> bool:
    return token.upper() in SUPPORTED_TYPES or token.upper() in QTYPE.reverse


def _tokens(text: str, filename: str) -> Iterator[tuple[int, bool, list[tuple[str, bool]]]]:
    """Logical records of master-file text: (first line, owner omitted?, [(value, quoted)]).

    Handles ``;`` comments, ``"quoted strings"`` with ``\\`` escapes and ``( ... )`` spanning
    lines (RFC 1035 §5.1). Errors name the line where the problem starts.
    """
    tokens: list[tuple[str, bool]] = []
    start_line = 0
    blank_owner = False
    depth = 0
    paren_line = 0
    line = 1
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            if depth == 0 and tokens:
                yield start_line, blank_owner, tokens
                tokens = []
            line += 1
            i += 1
            at_line_start = True
            continue
        if c in " \t\r":
            if at_line_start and depth == 0 and not tokens:
                blank_owner = True
            at_line_start = False
            i += 1
            continue
        if at_line_start and depth == 0 and not tokens:
            blank_owner = False
        at_line_start = False
        if c == ";":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if not tokens and depth == 0:
            start_line = line
        if c == "(":
            if depth == 0:
                paren_line = line
            depth += 1
            i += 1
            continue
        if c == ")":
            if depth == 0:
                raise ZoneError(filename, line, "')' without a matching '('")
            depth -= 1
            i += 1
            continue
        if c == '"':
            j = i + 1
            out = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    out.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "\n":
                    raise ZoneError(filename, line, "quoted string not closed before the end of the line")
                out.append(text[j])
                j += 1
            if j >= n:
                raise ZoneError(filename, line, "quoted string not closed before the end of the file")
            tokens.append(("".join(out), True))
            i = j + 1
            continue
        j = i
        while j < n and text[j] not in ' \t\r\n;()"':
            j += 1
        tokens.append((text[i:j], False))
        i = j
    if depth:
        raise ZoneError(filename, paren_line, "'(' not closed before the end of the file")
    if tokens:
        yield start_line, blank_owner, tokens


def read_records(text: str, origin: str | None = None, filename: str = "<zone>") -> list[tuple[int, RR]]:
    """The records of RFC 1035 master-file text, each with its line; :class:`ZoneError` naming
    ``filename:line`` for the first thing wrong (directives, owner/TTL/class inheritance, RDATA)."""
    cur_origin = checked_label(name_key(origin), filename, 0, "origin") if origin else None
    cur_ttl: int | None = None
    last_ttl: int | None = None
    owner: DNSLabel | None = None
    records: list[tuple[int, RR]] = []
    for line, blank_owner, toks in _tokens(text, filename):
        values = [v for v, _ in toks]
        first, first_quoted = toks[0]
        if first.startswith("$") and not first_quoted and not blank_owner:
            directive = first.upper()
            if directive == "$ORIGIN":
                if len(values) != 2:
                    raise ZoneError(filename, line, "$ORIGIN takes one domain name")
                cur_origin = checked_label(name_key(_absolute(values[1], cur_origin, filename, line)), filename,
                                           line, "$ORIGIN")
            elif directive == "$TTL":
                ttl = parse_ttl(values[1]) if len(values) == 2 else None
                if ttl is None:
                    raise ZoneError(filename, line, f"$TTL takes one TTL (0..{MAX_TTL} s, e.g. 3600 or 1h), got {' '.join(values[1:])!r}")
                cur_ttl = ttl
            else:
                raise ZoneError(filename, line, f"directive {first} is not supported (only $ORIGIN and $TTL)")
            continue
        pos = 0
        if blank_owner:
            if owner is None:
                raise ZoneError(filename, line, "record with no owner name and no previous record to inherit it from")
        else:
            owner = checked_label(_absolute(values[0], cur_origin, filename, line), filename, line, "owner name")
            pos = 1
        ttl, rclass = None, None
        while pos < len(values) and not toks[pos][1] and len(values) - pos > 1:
            tok = values[pos]
            if ttl is None and parse_ttl(tok) is not None and not _is_type_token(tok):
                ttl = parse_ttl(tok)
            elif rclass is None and tok.upper() in ("IN", "CH", "CS", "HS"):
                rclass = tok.upper()
            else:
                break
            pos += 1
        if pos >= len(values):
            raise ZoneError(filename, line, f"record for {owner} has no type")
        if ttl is None and not toks[pos][1] and _NUMBERISH.match(values[pos]) and len(values) - pos > 1:
            raise ZoneError(filename, line, f"TTL {values[pos][:20]!r} is out of range (valid: 0..{MAX_TTL} s, "
                            "e.g. 3600 or 1h)")
        if rclass not in (None, "IN"):
            raise ZoneError(filename, line, f"class {rclass} is not supported (only IN)")
        rtype = values[pos].upper()
        if rtype not in SUPPORTED_TYPES:
            raise ZoneError(filename, line, f"unknown or unsupported record type {values[pos]!r} "
                            f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})")
        if ttl is None:
            ttl = cur_ttl if cur_ttl is not None else last_ttl
        if ttl is None:
            raise ZoneError(filename, line, "record has no TTL and no $TTL or earlier TTL to default to")
        last_ttl = ttl
        rr = make_rr(owner, rtype, values[pos + 1:], ttl, cur_origin, filename, line)
        records.append((line, rr))
    return records


def read_file(path: str) -> str:
    """The text of the master file at ``path``, read within :data:`MAX_ZONE_BYTES`; errors are
    :class:`ZoneError` with the path (and the line of a byte that is not UTF-8)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ZONE_BYTES + 1)
    except OSError as e:
        raise ZoneError(str(path), 0, f"cannot read zone file: {e.strerror or e}") from None
    if len(data) > MAX_ZONE_BYTES:
        raise ZoneError(str(path), 0, f"zone file larger than {MAX_ZONE_BYTES} bytes (a test zone is a few lines)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ZoneError(str(path), line, f"not UTF-8 (byte 0x{data[e.start]:02x} at column {col}); "
                        "a zone file is UTF-8 text") from None
    return text


def _absolute(name: str, origin: DNSLabel | None, filename: str, line: int) -> str:
    if name == "@":
        if origin is None:
            raise ZoneError(filename, line, "'@' used with no $ORIGIN")
        return str(origin)
    if name.endswith("."):
        return name
    if origin is None:
        raise ZoneError(filename, line, f"relative name {name!r} with no $ORIGIN")
    return f"{name}.{origin}"


def split_rdata(rdata: str) -> list[str]:
    toks = list(_tokens(rdata, "<rdata>"))
    if len(toks) != 1:
        raise ValueError(f"rdata {rdata!r}: expected one record's data")
    return [v for v, _ in toks[0][2]]


def make_rr(owner: DNSLabel, rtype: str, rdata: list[str], ttl: int, origin, filename: str, line: int) -> RR:
    """One record via dnslib's per-type ``fromZone``, with the checks dnslib does not make."""
    lo, hi = _RDATA_ARITY[rtype]
    if len(rdata) < lo or (hi is not None and len(rdata) > hi):
        want = f"{lo}" if lo == hi else f"at least {lo}"
        raise _err(filename, line, f"{rtype} record for {owner} takes {want} data field(s), got {len(rdata)}: {' '.join(rdata)!r}")
    try:
        if rtype == "A":
            ipaddress.IPv4Address(rdata[0])
        elif rtype == "AAAA":
            ipaddress.IPv6Address(rdata[0])
        elif rtype in ("SRV", "MX", "NAPTR", "SOA"):
            ints = {"SRV": rdata[:3], "MX": rdata[:1], "NAPTR": rdata[:2], "SOA": rdata[2:]}[rtype]
            for v in ints:
                if parse_ttl(v) is None or (rtype != "SOA" and not (v.isdigit() and int(v) <= 65535)):
                    raise ValueError(f"{v!r} is not a number in range")
        rdata = list(rdata)
        for i in _NAME_FIELDS.get(rtype, ()):
            if rdata[i] == "@" or not rdata[i].endswith("."):
                if origin is None:
                    raise ValueError(f"relative name {rdata[i]!r} with no $ORIGIN")
                rdata[i] = str(origin) if rdata[i] == "@" else f"{rdata[i]}.{origin}"
            problem = _name_problem(rdata[i])
            if problem is not None:
                raise ValueError(f"name {rdata[i][:80]!r} {problem}")
        if rtype == "SOA":
            rdata = rdata[:2] + [str(parse_ttl(v)) for v in rdata[2:]]
        rd = RDMAP[rtype].fromZone(rdata, origin if origin is not None else DNSLabel(""))
        rr = RR(rname=owner, rtype=getattr(QTYPE, rtype), rclass=CLASS.IN, ttl=ttl, rdata=rd)
        try:
            rr.pack(DNSBuffer())  # what dnslib reads it may not write (a character-string over 255 octets...)
        except Exception as e:
            raise ValueError(f"cannot be put on the wire: {e} (a character-string is at most 255 octets)") from None
        return rr
    except ZoneError:
        raise
    except Exception as e:
        raise _err(filename, line, f"bad {rtype} data {' '.join(rdata)!r} for {owner}: {e}") from None


def _err(filename: str, line: int, reason: str) -> Exception:
    return ZoneError(filename, line, reason) if line else ValueError(reason)
