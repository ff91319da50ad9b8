"""A DNS zone: RRsets by (name, type), read from RFC 1035 master-file text and changed by a small API.

Why partly by hand: dnslib's ``ZoneParser`` reads the record syntax we need (it is one of
the few Python parsers that reads quoted NAPTR strings, and we use its per-type ``fromZone``
for every RDATA), but it does not track line numbers, accepts unknown tokens silently in
places and reports errors as bare ``ValueError``/``IndexError``. A fake server's zone file is
written by hand for a test, so a mistake must be refused with ``file:line`` and the reason
(house rule). This module therefore does the master-file *framing* itself (logical lines
with parentheses, quotes, comments, ``$ORIGIN``, ``$TTL``, owner/TTL/class inheritance,
RFC 1035 §5.1) and hands each record's RDATA tokens to dnslib.

Names are kept as lower-case absolute text (``"server1.yealink.pbx.com."``) for lookup;
records are dnslib ``RR`` objects with their configured TTLs (an authoritative server
answers the exact TTL, it never counts down).
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from typing import Callable, Iterable, Iterator

from dnslib import CLASS, QTYPE, RR, DNSBuffer, DNSLabel
from dnslib.dns import RDMAP

__all__ = ["Zone", "ZoneError", "SUPPORTED_TYPES"]

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
_MAX_TTL = 2**31 - 1

MAX_ZONE_BYTES = 16 * 1024 * 1024  # a zone file larger than this is refused before it is read whole
_generation = itertools.count(1)  # zone versions are unique across zones (cache keys)


class ZoneError(ValueError):
    """A zone file (or text) is wrong at ``filename:line``; ``str()`` is ``"FILE:LINE: reason"``."""

    def __init__(self, filename: str, line: int, reason: str):
        self.filename, self.line, self.reason = filename, line, reason
        super().__init__(f"{filename}:{line}: {reason}")


def _parse_ttl(token: str) -> int | None:
    """``3600``, ``1h``, ``1h30m`` → seconds; None when ``token`` is not a TTL."""
    if not _TTL_RE.match(token):
        return None
    value = sum(int(n) * _TTL_UNITS.get(u.lower(), 1) for n, u in re.findall(r"(\d+)([smhdwSMHDW]?)", token))
    return value if value <= _MAX_TTL else None


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


def _label(text: str, filename: str, line: int, what: str = "name") -> DNSLabel:
    """``DNSLabel(text)``, or a ZoneError (ValueError from the API, line 0) saying what is wrong."""
    problem = _name_problem(text)
    if problem is not None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise _err(filename, line, f"{what} {shown!r} {problem}")
    return DNSLabel(text)


def _key(name: str | DNSLabel) -> str:
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


class Zone:
    """The records of one zone (apex = owner of its SOA), changeable while a server uses it.

    ``Zone(origin)`` makes an empty zone with a default SOA; :meth:`from_text` and
    :meth:`from_file` read master files. Names given to the mutation API are relative to
    the origin unless they end with ``.`` or already end with the origin (``"server1"``,
    ``"server1.yealink.pbx.com"`` and ``"server1.yealink.pbx.com."`` are the same name);
    ``"@"`` is the apex. Every change bumps :attr:`version` and tells the listeners added
    with :meth:`on_change` (the server drops its cached answers), so it applies to the next
    query.
    """

    def __init__(self, origin: str, *, ttl: int = 3600, soa: str | None = None):
        self._setup(origin, ttl)
        self.add("@", "SOA", soa or f"ns.{self.origin} hostmaster.{self.origin} 1 3600 600 86400 60", ttl)

    def _setup(self, origin: str, ttl: int) -> None:
        self.origin = _label(_key(origin), "<api>", 0, "zone origin")
        self.default_ttl = ttl
        self._rrsets: dict[tuple[str, int], list[RR]] = {}
        self._nodes: set[str] | None = None
        self._listeners: list[Callable[["Zone"], None]] = []
        self.version = next(_generation)

    # ---- reading master files ----
    @classmethod
    def from_text(cls, text: str, origin: str | None = None, filename: str = "<zone>") -> "Zone":
        """Parse RFC 1035 master-file text; raises :class:`ZoneError` naming ``filename:line``."""
        cur_origin = _label(_key(origin), filename, 0, "origin") if origin else None
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
                    cur_origin = _label(_key(_absolute(values[1], cur_origin, filename, line)), filename, line,
                                        "$ORIGIN")
                elif directive == "$TTL":
                    ttl = _parse_ttl(values[1]) if len(values) == 2 else None
                    if ttl is None:
                        raise ZoneError(filename, line, f"$TTL takes one TTL (0..{_MAX_TTL} s, e.g. 3600 or 1h), got {' '.join(values[1:])!r}")
                    cur_ttl = ttl
                else:
                    raise ZoneError(filename, line, f"directive {first} is not supported (only $ORIGIN and $TTL)")
                continue
            pos = 0
            if blank_owner:
                if owner is None:
                    raise ZoneError(filename, line, "record with no owner name and no previous record to inherit it from")
            else:
                owner = _label(_absolute(values[0], cur_origin, filename, line), filename, line, "owner name")
                pos = 1
            ttl, rclass = None, None
            while pos < len(values) and not toks[pos][1] and len(values) - pos > 1:
                tok = values[pos]
                if ttl is None and _parse_ttl(tok) is not None and not _is_type_token(tok):
                    ttl = _parse_ttl(tok)
                elif rclass is None and tok.upper() in ("IN", "CH", "CS", "HS"):
                    rclass = tok.upper()
                else:
                    break
                pos += 1
            if pos >= len(values):
                raise ZoneError(filename, line, f"record for {owner} has no type")
            if ttl is None and not toks[pos][1] and _NUMBERISH.match(values[pos]) and len(values) - pos > 1:
                raise ZoneError(filename, line, f"TTL {values[pos][:20]!r} is out of range (valid: 0..{_MAX_TTL} s, "
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
            rr = _make_rr(owner, rtype, values[pos + 1:], ttl, cur_origin, filename, line)
            records.append((line, rr))
        return cls._build(records, origin, filename)

    @classmethod
    def from_file(cls, path: str, origin: str | None = None) -> "Zone":
        """Read a master file; errors are :class:`ZoneError` with the path and line."""
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
        return cls.from_text(text, origin=origin, filename=str(path))

    @classmethod
    def _build(cls, records: list[tuple[int, RR]], origin: str | None, filename: str) -> "Zone":
        soas = [(line, rr) for line, rr in records if rr.rtype == QTYPE.SOA]
        if not soas:
            raise ZoneError(filename, records[0][0] if records else 1, "zone has no SOA record (an authoritative zone needs one at its apex)")
        if len(soas) > 1:
            raise ZoneError(filename, soas[1][0], f"second SOA record (first at line {soas[0][0]})")
        apex = soas[0][1].rname
        if origin and _key(apex) != _key(origin):
            raise ZoneError(filename, soas[0][0], f"SOA owner {apex} is not the zone origin {_key(origin)}")
        zone = cls.__new__(cls)
        zone._setup(str(apex), soas[0][1].ttl)
        for line, rr in records:
            if not _key(rr.rname).endswith("." + _key(apex)) and _key(rr.rname) != _key(apex):
                raise ZoneError(filename, line, f"{rr.rname} is outside the zone {apex}")
            try:
                zone._insert(rr)
            except ValueError as e:
                raise ZoneError(filename, line, str(e)) from None
        return zone

    # ---- reading ----
    @property
    def soa(self) -> RR:
        return self._rrsets[(_key(self.origin), QTYPE.SOA)][0]

    def contains(self, name: str | DNSLabel) -> bool:
        """Is the absolute ``name`` at or below this zone's apex?"""
        k, apex = _key(name), _key(self.origin)
        return k == apex or k.endswith("." + apex)

    def get(self, name: str | DNSLabel, rtype: str | int) -> list[RR]:
        """The RRset (list of dnslib ``RR``) at ``name`` (absolute or relative) of ``rtype``; [] when none."""
        return list(self._rrsets.get((self._name(name), _qtype(rtype)), ()))

    def lookup(self, key: str, qtype: int) -> list[RR]:
        """Fast path for the server: ``key`` already lower-case absolute."""
        return self._rrsets.get((key, qtype), [])

    def types_at(self, key: str) -> list[int]:
        return [t for (n, t) in self._rrsets if n == key]

    def name_exists(self, key: str) -> bool:
        """Does ``key`` own records or have descendants (an empty non-terminal exists, RFC 8020)?"""
        if self._nodes is None:
            apex = _key(self.origin)
            nodes: set[str] = set()
            for name, _ in self._rrsets:
                while name not in nodes:
                    nodes.add(name)
                    if name == apex or "." not in name.rstrip("."):
                        break
                    name = name.split(".", 1)[1]
            self._nodes = nodes
        return key in self._nodes

    def records(self) -> list[RR]:
        """Every record, SOA first."""
        out = list(self._rrsets.get((_key(self.origin), QTYPE.SOA), ()))
        for (name, t), rrs in self._rrsets.items():
            if t != QTYPE.SOA:
                out.extend(rrs)
        return out

    def to_text(self) -> str:
        """The zone as master-file text (absolute names), readable by :meth:`from_text`."""
        return "".join(rr.toZone() + "\n" for rr in self.records())

    def on_change(self, listener: Callable[["Zone"], None]) -> None:
        self._listeners.append(listener)

    # ---- the mutation API (SPEC: changes apply to the next query) ----
    def add(self, name: str, rtype: str, rdata: str, ttl: int | None = None) -> RR:
        """Add one record (``rdata`` in master-file syntax, e.g. ``'0 1 5060 server1'``).

        ``ttl`` None: the TTL of the existing RRset, else the zone's default TTL. Adding a
        record that is already there changes nothing (an RRset is a set).
        """
        rtype = _type_name(rtype)
        key = self._name(name)
        if ttl is None:
            existing = self._rrsets.get((key, getattr(QTYPE, rtype)))
            ttl = existing[0].ttl if existing else self.default_ttl
        rr = _make_rr(_label(key, "<api>", 0), rtype, _split_rdata(rdata), _check_ttl(ttl), self.origin, "<api>", 0)
        self._insert(rr)
        self._changed()
        return rr

    def remove(self, name: str, rtype: str | None = None, rdata: str | None = None) -> int:
        """Remove the records at ``name`` (of ``rtype``, equal to ``rdata``); returns how many.

        Raises ``KeyError`` when nothing matched (a silent no-op would hide a typo in a test)
        and ``ValueError`` for the apex SOA (the zone needs it for negative answers).
        """
        key = self._name(name)
        qt = _qtype(rtype) if rtype is not None else None
        if qt == QTYPE.SOA:
            raise ValueError("the SOA record cannot be removed (use replace to change it)")
        want = None
        if rdata is not None:
            if qt is None:
                raise ValueError("remove(): rdata needs rtype")
            want = _make_rr(_label(key, "<api>", 0), _type_name(rtype), _split_rdata(rdata), 0, self.origin, "<api>", 0).rdata
        removed = 0
        for k in [k for k in self._rrsets if k[0] == key and (qt is None or k[1] == qt) and k[1] != QTYPE.SOA]:
            keep = [rr for rr in self._rrsets[k] if want is not None and not _same_rdata(rr.rdata, want)]
            removed += len(self._rrsets[k]) - len(keep)
            if keep:
                self._rrsets[k] = keep
            else:
                del self._rrsets[k]
        if not removed:
            what = f"{key} {_type_name(rtype) if rtype else ''} {rdata or ''}".strip()
            raise KeyError(f"no record {what!r} in zone {self.origin}")
        self._changed()
        return removed

    def replace(self, name: str, rtype: str, rdatas: Iterable[str], ttl: int | None = None) -> list[RR]:
        """Make the RRset at (``name``, ``rtype``) exactly ``rdatas`` (empty: remove it)."""
        rtype = _type_name(rtype)
        key = self._name(name)
        qt = getattr(QTYPE, rtype)
        old = self._rrsets.get((key, qt), [])
        if ttl is None:
            ttl = old[0].ttl if old else self.default_ttl
        new = [_make_rr(_label(key, "<api>", 0), rtype, _split_rdata(r), _check_ttl(ttl), self.origin, "<api>", 0) for r in rdatas]
        if qt == QTYPE.SOA and len(new) != 1:
            raise ValueError("a zone has exactly one SOA record")
        self._rrsets.pop((key, qt), None)
        try:
            for rr in new:
                self._insert(rr)
        except ValueError:
            if old:
                self._rrsets[(key, qt)] = old
            raise
        self._changed()
        return new

    def set_ttl(self, name: str, rtype: str, ttl: int) -> None:
        """Give every record of the RRset at (``name``, ``rtype``) the TTL ``ttl``."""
        rrs = self._rrsets.get((self._name(name), _qtype(rtype)))
        if not rrs:
            raise KeyError(f"no {_type_name(rtype)} record at {self._name(name)} in zone {self.origin}")
        ttl = _check_ttl(ttl)
        for rr in rrs:
            rr.ttl = ttl
        self._changed()

    # ---- internals ----
    def _name(self, name: str | DNSLabel) -> str:
        text = str(name).strip()
        if text in ("@", ""):
            return _key(self.origin)
        if text.endswith("."):
            key = text.lower()
        else:
            apex = _key(self.origin).rstrip(".")
            low = text.lower()
            key = low + "." if (low == apex or low.endswith("." + apex)) else f"{low}.{_key(self.origin)}"
        if not self.contains(key):
            raise ValueError(f"{key} is outside the zone {self.origin}")
        return key

    def _insert(self, rr: RR) -> None:
        key = _key(rr.rname)
        if not self.contains(key):
            raise ValueError(f"{key} is outside the zone {self.origin}")
        types = self.types_at(key)
        if rr.rtype == QTYPE.CNAME and any(t != QTYPE.CNAME for t in types):
            raise ValueError(f"CNAME at {key} next to other data (RFC 1034 §3.6.2)")
        if rr.rtype != QTYPE.CNAME and QTYPE.CNAME in types:
            raise ValueError(f"{QTYPE[rr.rtype]} at {key} next to its CNAME (RFC 1034 §3.6.2)")
        rrset = self._rrsets.setdefault((key, rr.rtype), [])
        if rr.rtype == QTYPE.CNAME and rrset and not _same_rdata(rrset[0].rdata, rr.rdata):
            raise ValueError(f"second CNAME at {key}")
        if rr.rtype == QTYPE.SOA and rrset and key == _key(self.origin):
            rrset.clear()
        if not any(_same_rdata(x.rdata, rr.rdata) for x in rrset):
            rrset.append(rr)
        self._nodes = None

    def _changed(self) -> None:
        self._nodes = None
        self.version = next(_generation)
        for listener in list(self._listeners):
            listener(self)

    def __repr__(self) -> str:
        return f"<Zone {self.origin} {sum(len(v) for v in self._rrsets.values())} records>"


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


def _qtype(rtype: str | int) -> int:
    if isinstance(rtype, int):
        return rtype
    try:
        return getattr(QTYPE, rtype.upper())
    except Exception:
        raise ValueError(f"unknown record type {rtype!r}") from None


def _type_name(rtype: str | int) -> str:
    name = QTYPE[rtype] if isinstance(rtype, int) else str(rtype).upper()
    if name not in SUPPORTED_TYPES:
        raise ValueError(f"unsupported record type {rtype!r} (supported: {', '.join(sorted(SUPPORTED_TYPES))})")
    return name


def _check_ttl(ttl: int) -> int:
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= _MAX_TTL:
        raise ValueError(f"ttl must be an int in 0..{_MAX_TTL}, got {ttl!r}")
    return ttl


def _split_rdata(rdata: str) -> list[str]:
    toks = list(_tokens(rdata, "<rdata>"))
    if len(toks) != 1:
        raise ValueError(f"rdata {rdata!r}: expected one record's data")
    return [v for v, _ in toks[0][2]]


def _same_rdata(a, b) -> bool:
    return str(a).lower() == str(b).lower()


def _make_rr(owner: DNSLabel, rtype: str, rdata: list[str], ttl: int, origin, filename: str, line: int) -> RR:
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
                if _parse_ttl(v) is None or (rtype != "SOA" and not (v.isdigit() and int(v) <= 65535)):
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
            rdata = rdata[:2] + [str(_parse_ttl(v)) for v in rdata[2:]]
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
