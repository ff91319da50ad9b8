"""A lab on loopback from a short description: DNS, SIP servers, the DUT, and its ``.cfg``.

The vendor guide's scenarios all have the same shape: SIP server 1 is a domain that DNS
resolves to a primary and a secondary (failover) or an IP address; SIP server 2, if any,
is a fallback server; the phone is configured by a ``.cfg``. :class:`Lab` builds that
shape on 127/8 (SPEC §8 maps the guide's addresses: primary 127.0.0.10, secondary
127.0.0.20, fallback 127.0.0.15) with ephemeral ports, writes the zone that leads the phone
to those ports (SRV carries them; for an A-only lookup every target shares one port),
writes the ``.cfg``, and starts the DUT. It knows nothing of pytest: the plugin makes it a
fixture, and a script can use it on its own.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from twisted.internet import defer

from sipharness.fakes.dns import FakeDNS, Zone
from sipharness.fakes.record import Recorder
from sipharness.fakes.sip import FakeSipServer

from .dut import DeviceUnderTest
from .timing import Tolerance, tolerance_for

__all__ = ["Domain", "Address", "Lab", "LabTooSmall", "Topology", "HOSTS", "USER", "PASSWORD"]

#: SPEC §8: the guide's example addresses mapped to loopback, and the other roles' hosts.
HOSTS = {"primary": "127.0.0.10", "secondary": "127.0.0.20", "fallback": "127.0.0.15", "dns": "127.0.0.53",
         "tertiary": "127.0.0.30", "fallback2": "127.0.0.25"}
#: More loopback hosts by role (SPEC §8 maps the guide's server1/server2 to .10/.20).
_MORE_HOSTS = {"server1": "127.0.0.10", "server2": "127.0.0.20", "low-1": "127.0.0.11", "low-2": "127.0.0.12",
               "decoy": "127.0.0.30", "high": "127.0.0.20"}
#: In lab mode the roles take the lab addresses in this order (then the others, round robin).
_LAB_ROLES = ("primary", "secondary", "fallback")
USER, PASSWORD = "1234", "1234"  # the guide's example account
#: SPEC §9: the seed's own values run on the virtual clock; against a DUT on a real (or scaled)
#: clock the suites use the smallest legal values so that a whole suite fits in about an hour.
SEED_VALUES = {"expires": 3600, "fallback.timeout": 120, "failback_timeout": 120, "a_ttl": 300}
SHORT_VALUES = {"expires": 30, "fallback.timeout": 10, "failback_timeout": 60, "a_ttl": 60}
TRANSPORT_SETTING = {"udp": 0, "tcp": 1, "tls": 2}
_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_NAPTR_SERVICE = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}


@dataclass(frozen=True)
class Domain:
    """SIP server Y is a domain resolving to ``targets`` in this order (first = primary).

    ``lookup``: "srv" (transport UDP/TCP/TLS, port 0: SRV then A), "naptr" (transport
    DNS-NAPTR, port 0: NAPTR → SRV → A), "a" (explicit port: A only, one A record per
    target on the domain itself, all targets on one port).
    """

    targets: tuple[str, ...] = ("primary", "secondary")
    name: str = "pbx.example.com"
    lookup: str = "srv"
    a_ttl: int = 3600


@dataclass(frozen=True)
class Address:
    """SIP server Y is the IP literal of the fake called ``target`` (no DNS)."""

    target: str = "fallback"


@dataclass
class Topology:
    """What :meth:`Lab.up` built: the fakes by name, the DNS, the DUT and the ``.cfg`` it got."""

    servers: dict[str, FakeSipServer]
    dns: FakeDNS
    dut: DeviceUnderTest
    recorder: Recorder
    cfg_text: str
    transport: str
    server_targets: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> FakeSipServer:
        return self.servers[name]

    def address(self, name: str) -> tuple[str, int]:
        return self.servers[name].addresses[self.transport]

    def uri(self, user: str = "2000", server: int = 1) -> str:
        """A SIP URI of a callee served by server ``server`` (the fakes' UAS answers it)."""
        names = self.server_targets[server]
        return f"sip:{user}@{self._domain_of[server]}" if server in self._domain_of else \
            f"sip:{user}@{self.servers[names[0]].addresses[self.transport][0]}"

    _domain_of: dict[int, str] = field(default_factory=dict)


_spare = itertools.count(1)


class LabTooSmall(RuntimeError):
    """The scenario needs more distinct lab addresses than ``--lab-address`` gave (the plugin skips it)."""


class Lab:
    """Builds topologies on one clock and one recorder; ``down()`` stops everything it built.

    On loopback (default) every role has its SPEC §8 host and the DNS an ephemeral port. In lab
    mode (``addresses``: the harness host's addresses a phone on the network can reach) the roles
    share those addresses (primary the first, secondary the second, ...) and the DNS listens on
    ``dns_port`` (53: a real phone cannot be told another port).
    """

    def __init__(self, clock: Any, recorder: Recorder, dut: DeviceUnderTest, *, reactor: Any = None,
                 tls: Any = None, addresses: Sequence[str] | None = None, dns_port: int = 0, dns_index: int = 0):
        self.clock = clock
        self.recorder = recorder
        self.dut = dut
        self.reactor = reactor
        self.tls = tls  # a sipcore.tls.TestPKI, needed only for TLS topologies
        self.addresses = list(addresses or [])
        self.dns_port = dns_port
        self.dns_index = dns_index  # which lab address holds this worker's DNS (one port 53 per address)
        self._assigned: dict[str, str] = {}
        self._servers: list[FakeSipServer] = []
        self._dns: list[FakeDNS] = []
        self.topology: Topology | None = None

    @property
    def fakes(self) -> tuple[Any, ...]:
        """Every fake this lab runs now (SIP servers, then DNS servers): their ``errors`` are the harness's."""
        return (*self._servers, *self._dns)

    def host(self, name: str) -> str:
        """The address the fake called ``name`` listens on (its SPEC §8 host on loopback)."""
        if not self.addresses:
            return HOSTS.get(name) or _MORE_HOSTS.get(name) or "127.0.0.1"
        if name == "dns":
            return self.addresses[self.dns_index % len(self.addresses)]
        if name not in self._assigned:
            if name in _LAB_ROLES:
                self._assigned[name] = self.addresses[_LAB_ROLES.index(name) % len(self.addresses)]
            else:
                others = len([n for n in self._assigned if n not in _LAB_ROLES])
                self._assigned[name] = self.addresses[(len(_LAB_ROLES) + others) % len(self.addresses)]
        return self._assigned[name]

    def spare_host(self) -> str:
        """A host no other test uses now, for a fake that must sit on a fixed port (5060, SPEC §2)."""
        if self.addresses:
            return self.addresses[-1]
        pid = os.getpid()
        reserved = set(HOSTS.values()) | set(_MORE_HOSTS.values()) | {"127.0.0.1"}
        while True:
            n = next(_spare)
            host = f"127.{1 + (pid >> 8) % 254}.{1 + pid % 254}.{1 + n % 254}"
            if host not in reserved:
                return host

    def soa(self, origin: str) -> str:
        """A zone's head: $ORIGIN, $TTL, SOA and NS (with the fake DNS's address)."""
        return _soa(origin, self.host("dns"))

    def value(self, name: str) -> int:
        """The seed's value of ``name`` on the virtual clock, the smallest legal one otherwise (SPEC §9)."""
        from sipharness.sipcore.clock import VirtualClock

        return (SEED_VALUES if isinstance(self.clock, VirtualClock) else SHORT_VALUES)[name]

    @property
    def tolerance(self) -> Tolerance:
        """How exactly phone times can be asserted on this lab's clock (SPEC §9)."""
        return tolerance_for(self.clock)

    async def dns(self, *zone_texts: str, name: str = "dns") -> FakeDNS:
        """A fake DNS (127.0.0.53 on loopback) serving one zone per text (none: an empty example.com zone)."""
        zones = [Zone.from_text(text, filename=f"<{name} zone {i + 1}>")
                 for i, text in enumerate(zone_texts or (self.soa("example.com"),))]
        dns = FakeDNS(zones, clock=self.clock, recorder=self.recorder, host=self.host("dns"), port=self.dns_port,
                      name=name,
                      reactor=self.reactor)
        self._dns.append(dns)
        await defer.maybeDeferred(dns.start)
        return dns

    async def server(self, name: str, transport: str = "udp", *, port: int = 0, host: str | None = None,
                     **options: Any) -> FakeSipServer:
        """A PBX-like fake called ``name`` on :meth:`host` (its SPEC §8 host on loopback), on ``transport``."""
        srv = FakeSipServer(name, role="pbx", clock=self.clock, recorder=self.recorder, reactor=self.reactor,
                            host=host or self.host(name), users=options.pop("users", None), **options)
        self._servers.append(srv)
        kw = {"context": self.tls.server_context()} if transport == "tls" and self.tls is not None else {}
        await defer.maybeDeferred(srv.listen, transport, port, **kw)
        return srv

    async def up(self, server1: Domain | Address = Domain(), server2: Domain | Address | None = None, *,
                 transport: str = "udp", account: Mapping[str, Any] | None = None, start: bool = True,
                 server_options: Mapping[str, Mapping[str, Any]] | None = None) -> Topology:
        """Build the topology, write the ``.cfg``, configure and (by default) start the DUT.

        ``account`` holds ``.cfg`` keys of account 1 without the ``account.1.`` prefix
        (``{"sip_server.1.failback_mode": 3, "fallback.redundancy_type": 1}``); they
        override what the lab writes.
        """
        if transport not in TRANSPORT_SETTING:
            raise ValueError(f"transport {transport!r}: expected one of {sorted(TRANSPORT_SETTING)}")
        server_options = server_options or {}
        servers: dict[str, FakeSipServer] = {}
        zones: list[str] = []
        cfg: dict[str, Any] = {"enable": 1, "label": USER, "display_name": USER, "auth_name": USER,
                               "user_name": USER, "password": PASSWORD}
        transport_setting = TRANSPORT_SETTING[transport]
        targets: dict[int, tuple[str, ...]] = {}
        domains: dict[int, str] = {}
        for y, spec in ((1, server1), (2, server2)):
            if spec is None:
                continue
            if isinstance(spec, Address):
                srv = await self.server(spec.target, transport, **dict(server_options.get(spec.target, {})))
                servers[spec.target] = srv
                host, port = srv.addresses[transport]
                cfg[f"sip_server.{y}.address"], cfg[f"sip_server.{y}.port"] = host, port
                targets[y] = (spec.target,)
                continue
            names = spec.targets
            if spec.lookup == "a":
                made = await self._same_port(names, transport, server_options)
            else:
                made = [await self.server(n, transport, **dict(server_options.get(n, {}))) for n in names]
            servers.update(zip(names, made))
            zones.append(_zone_for(spec, made, transport, self.soa(spec.name.rstrip("."))))
            cfg[f"sip_server.{y}.address"] = spec.name
            cfg[f"sip_server.{y}.port"] = made[0].addresses[transport][1] if spec.lookup == "a" else 0
            if spec.lookup == "naptr":
                transport_setting = 3
            targets[y] = names
            domains[y] = spec.name
        cfg["transport"] = transport_setting
        dns = await self.dns(*zones)
        cfg.update(dict(account or {}))
        cfg_text = self.write_cfg(dns, cfg)
        topo = Topology(servers=servers, dns=dns, dut=self.dut, recorder=self.recorder, cfg_text=cfg_text,
                        transport=transport, server_targets=targets)
        topo._domain_of = domains
        self.topology = topo
        await defer.maybeDeferred(self.dut.apply_config, cfg_text)
        if start:
            await defer.maybeDeferred(self.dut.start)
        return topo

    def write_cfg(self, dns: FakeDNS | None, account: Mapping[str, Any], *, index: int = 1) -> str:
        """A ``.cfg`` text: the DNS server to use, then account ``index``'s keys (without ``account.N.``)."""
        head = ["sip.listen_port = 0"]
        if dns is not None:
            head[:0] = [f"static.network.primary_dns = {dns.address[0]}",
                        f"static.network.primary_dns_port = {dns.address[1]}"]
        body = [f"account.{index}.{k} = {v}" for k, v in account.items()]
        return "#!version:1.0.0.1\n## written by sip-redundancy-harness\n" + "\n".join(head + body) + "\n"

    def at(self, t: float) -> defer.Deferred:
        """Fires at phone time ``t`` (now if past): a scenario step ("at t = 310 s the user dials"), not a sleep."""
        d: defer.Deferred = defer.Deferred()
        self.clock.callLater(max(0.0, t - self.clock.seconds()), d.callback, None)
        return d

    def now(self) -> float:
        return self.clock.seconds()

    async def call(self, uri: str, *, timeout: float = 120.0) -> Any:
        """A scenario step: the DUT calls ``uri``; → the event of the call established (waited
        for up to ``timeout`` phone seconds, a finding after that)."""
        since = len(self.dut.events)
        self.dut.call(uri)
        return await self.dut.wait_for("call_state", timeout, state="established", since=since)

    async def hang_up(self, *, timeout: float = 60.0, **fields: Any) -> Any:
        """A scenario step: the DUT hangs up (its latest call, as a hang-up key does); → the event of
        the call terminated (``fields``, e.g. ``call_id``, narrow which)."""
        since = len(self.dut.events)
        self.dut.hangup()
        return await self.dut.wait_for("call_state", timeout, state="terminated", since=since, **fields)

    async def same_port(self, names, transport: str = "udp", server_options=None) -> list[FakeSipServer]:
        """Fakes on their SPEC §8 hosts sharing one port (an A-only lookup gives one port to all addresses)."""
        return await self._same_port(tuple(names), transport, server_options or {})

    async def _same_port(self, names, transport, server_options) -> list[FakeSipServer]:
        """Servers on different hosts sharing one port (an A-only lookup gives one port for all)."""
        hosts = [dict(server_options.get(n, {})).get("host") or self.host(n) for n in names]
        if len(set(hosts)) < len(hosts):
            raise LabTooSmall(f"{', '.join(names)} must sit on {len(names)} different addresses with one port "
                              f"(an A-only lookup); the lab gives {', '.join(sorted(set(hosts)))}: add addresses "
                              f"to --lab-address")
        for _attempt in range(20):
            first = await self.server(names[0], transport, **dict(server_options.get(names[0], {})))
            port = first.addresses[transport][1]
            made = [first]
            try:
                for n in names[1:]:
                    made.append(await self.server(n, transport, port=port, **dict(server_options.get(n, {}))))
                return made
            except Exception:  # that port is taken on another host: try another one
                for s in made:
                    await defer.maybeDeferred(s.stop)
                    self._servers.remove(s)
        raise RuntimeError(f"could not bind {names} on one common port after 20 tries")

    async def down(self) -> None:
        """Stop the DUT, then every fake (errors of one do not keep the others up)."""
        errors: list[BaseException] = []
        for stop in [self.dut.stop] + [s.stop for s in self._servers] + [d.stop for d in self._dns]:
            try:
                await defer.maybeDeferred(stop)
            except Exception as e:  # keep stopping the rest, report after
                errors.append(e)
        self._servers.clear()
        self._dns.clear()
        if errors:
            raise errors[0]


def _soa(origin: str, ns_host: str) -> str:
    return (f"$ORIGIN {origin}.\n$TTL 3600\n@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60\n"
            f"@ IN NS ns.{origin}.\nns IN A {ns_host}\n")


def _zone_for(spec: Domain, servers: list[FakeSipServer], transport: str, head: str) -> str:
    """Records leading ``spec.name`` to the servers, in order (first = primary). SPEC §2."""
    d = spec.name.rstrip(".")
    lines = [head]
    if spec.lookup == "a":
        for s in servers:
            lines.append(f"@ {spec.a_ttl} IN A {s.addresses[transport][0]}")
        return "\n".join(lines) + "\n"
    srv_name = f"{_SRV_PREFIX[transport]}.{d}."
    if spec.lookup == "naptr":
        flags_service = _NAPTR_SERVICE[transport]
        lines.append(f'@ 3600 IN NAPTR 10 50 "s" "{flags_service}" "" {srv_name}')
    for i, s in enumerate(servers):
        host, port = s.addresses[transport]
        label = f"{s.name}-host"
        # Priority by position: the order of the list is the order the phone must try (SPEC §2).
        lines.append(f"{srv_name} 3600 IN SRV {i * 10} 10 {port} {label}.{d}.")
        lines.append(f"{label} {spec.a_ttl} IN A {host}")
    return "\n".join(lines) + "\n"

