"""A fake authoritative DNS server for phone tests (UDP + TCP, scripted faults, query log).

``FakeDNS`` (server.py) wires the sans-I/O parts to sockets: ``Zone`` (zone.py: the records and
a mutation API, read from master files by masterfile.py), ``decode`` (query.py: a query off the
wire, or why not), ``Authority`` (authority.py: answers like BIND for the records a SIP phone
asks for), ``Faults`` (faults.py: drop, delay, SERVFAIL, ... per name/type).
"""

from sipharness.fakes.dns.server import FakeDNS
from sipharness.fakes.dns.zone import Zone, ZoneError

__all__ = ["FakeDNS", "Zone", "ZoneError"]
