"""A DNS zone: RRsets by (name, type), read from master-file text and changed by a small API.

The text is ``masterfile.py``'s (RFC 1035 §5.1, errors at ``file:line``); this module keeps the
records and the rules of a zone: one SOA at the apex, nothing outside it, no CNAME beside other
data (RFC 1034 §3.6.2), an RRset is a set. Every change bumps :attr:`Zone.version` and tells the
listeners, so a server drops its cached answers and the change applies to the next query.

Names are kept as lower-case absolute text (``"server1.yealink.pbx.com."``) for lookup;
records are dnslib ``RR`` objects with their configured TTLs (an authoritative server
answers the exact TTL, it never counts down).
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable

from dnslib import QTYPE, RR, DNSLabel

from sipharness.fakes.dns.masterfile import (MAX_TTL, SUPPORTED_TYPES, ZoneError, checked_label, make_rr, name_key,
                                             read_file, read_records, split_rdata)

__all__ = ["Zone", "ZoneError", "SUPPORTED_TYPES"]

_generation = itertools.count(1)  # zone versions are unique across zones (cache keys)


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
        self.origin = checked_label(name_key(origin), "<api>", 0, "zone origin")
        self.default_ttl = ttl
        self._rrsets: dict[tuple[str, int], list[RR]] = {}
        self._nodes: set[str] | None = None
        self._listeners: list[Callable[["Zone"], None]] = []
        self.version = next(_generation)

    # ---- reading master files ----
    @classmethod
    def from_text(cls, text: str, origin: str | None = None, filename: str = "<zone>") -> "Zone":
        """Parse RFC 1035 master-file text; raises :class:`ZoneError` naming ``filename:line``."""
        return cls._build(read_records(text, origin, filename), origin, filename)

    @classmethod
    def from_file(cls, path: str, origin: str | None = None) -> "Zone":
        """Read a master file; errors are :class:`ZoneError` with the path and line."""
        return cls.from_text(read_file(path), origin=origin, filename=str(path))

    @classmethod
    def _build(cls, records: list[tuple[int, RR]], origin: str | None, filename: str) -> "Zone":
        soas = [(line, rr) for line, rr in records if rr.rtype == QTYPE.SOA]
        if not soas:
            raise ZoneError(filename, records[0][0] if records else 1, "zone has no SOA record (an authoritative zone needs one at its apex)")
        if len(soas) > 1:
            raise ZoneError(filename, soas[1][0], f"second SOA record (first at line {soas[0][0]})")
        apex = soas[0][1].rname
        if origin and name_key(apex) != name_key(origin):
            raise ZoneError(filename, soas[0][0], f"SOA owner {apex} is not the zone origin {name_key(origin)}")
        zone = cls.__new__(cls)
        zone._setup(str(apex), soas[0][1].ttl)
        for line, rr in records:
            if not name_key(rr.rname).endswith("." + name_key(apex)) and name_key(rr.rname) != name_key(apex):
                raise ZoneError(filename, line, f"{rr.rname} is outside the zone {apex}")
            try:
                zone._insert(rr)
            except ValueError as e:
                raise ZoneError(filename, line, str(e)) from None
        return zone

    # ---- reading ----
    @property
    def soa(self) -> RR:
        return self._rrsets[(name_key(self.origin), QTYPE.SOA)][0]

    def contains(self, name: str | DNSLabel) -> bool:
        """Is the absolute ``name`` at or below this zone's apex?"""
        k, apex = name_key(name), name_key(self.origin)
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
            apex = name_key(self.origin)
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
        out = list(self._rrsets.get((name_key(self.origin), QTYPE.SOA), ()))
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
        rr = make_rr(checked_label(key, "<api>", 0), rtype, split_rdata(rdata), _check_ttl(ttl), self.origin, "<api>", 0)
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
            want = make_rr(checked_label(key, "<api>", 0), _type_name(rtype), split_rdata(rdata), 0, self.origin, "<api>", 0).rdata
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
        new = [make_rr(checked_label(key, "<api>", 0), rtype, split_rdata(r), _check_ttl(ttl), self.origin, "<api>", 0) for r in rdatas]
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
            return name_key(self.origin)
        if text.endswith("."):
            key = text.lower()
        else:
            apex = name_key(self.origin).rstrip(".")
            low = text.lower()
            key = low + "." if (low == apex or low.endswith("." + apex)) else f"{low}.{name_key(self.origin)}"
        if not self.contains(key):
            raise ValueError(f"{key} is outside the zone {self.origin}")
        return key

    def _insert(self, rr: RR) -> None:
        key = name_key(rr.rname)
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
        if rr.rtype == QTYPE.SOA and rrset and key == name_key(self.origin):
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
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL:
        raise ValueError(f"ttl must be an int in 0..{MAX_TTL}, got {ttl!r}")
    return ttl


def _same_rdata(a, b) -> bool:
    return str(a).lower() == str(b).lower()
