"""A vendor phone's life for the bundled phone: auto-provisioning, reboots, its DNS, Action URI and URL.

Why: the harness drives a real vendor phone (SPEC §10) through its own means only, and CI has no
such phone. This module makes the bundled phone's daemon mode behave as the vendor documents a
Yealink-style phone behaves, **every documented behaviour on by default**, so the harness's
driver (``harness/vendor.py``) is proven against the phone it will meet, not against a polite one:

- **auto-provisioning** (Yealink IP Phones Auto Provisioning Guide, "Resolving and Updating
  Configurations"): ``GET <provision URL>/<mac>.cfg`` at power-on and on ``key=AutoP``. "If the
  MD5 values of the Common and MAC-Oriented configuration files are the same as those of the last
  downloaded configuration files [...] The IP phone will complete the auto provisioning without
  repeated update": an unchanged file is **skipped**. "For update of some specific configurations
  which require a reboot before taking effect, for example, network configurations, the IP phone
  will reboot": a file whose network keys differ from the stored ones **reboots** the phone
  (``reboot_seconds`` of wall time without web server, SIP or DNS; the stored file survives, the
  DNS cache and the remote-control prompt's memory do not), after which it powers on again.
- **power-on** fires ``action_url.setup_completed`` ("When the IP phone completes startup") with
  the stored file, provisions, then fires ``action_url.setup_autop_finish`` ("When the IP phone
  completes auto provisioning via power on"): the documented moments a driver may call "ready".
- **key generations** (:mod:`phone.vendor_keys`): the phone knows only its firmware's key names
  (``firmware``) and ignores the other generation's, as a real phone ignores unknown keys.
- **DNS** (:mod:`phone.dnscache`): the DNS server the lab's DHCP hands out (``dhcp_dns``) unless
  the file enables static DNS (``static_dns_enable`` = 1 and ``primary_dns``); a real phone asks
  port 53, so the port of a fake DNS on loopback comes from an emulation-only key
  (``sipharness.emulation.primary_dns_port``, never written for a real phone). The DNS cache of
  ``account.X.dns_cache_type`` (default 1: on, negative answers too) sits in front of it and
  survives a re-provisioning.
- **TLS**: the phone trusts the CA the file's ``trusted_certificates.url`` points to (fetched when
  the file is applied), else only its factory CAs (``tls_context``).
- **Action URI** (:mod:`phone.emulation_web`): allow list, Basic and/or the login form, the
  "Allow remote control?" prompt unless ``features.show_action_uri_option = 0``, HTTPS (plain
  HTTP redirected), and the documented keys: ``AutoP``, ``number=<n>&outgoing_uri=<uri>``,
  ``OK``, ``ASW:<call-id>``, ``CALLEND`` / ``CallEnd`` "End a call", ``CANCEL:<call-id>``;
  ``phonecfg=get&accounts=1`` the accounts' state as JSON (an emulation format).
- **Action URL** (:mod:`phone.emulation_events`): the documented events and variables only.
  Callbacks go out one at a time from the phone's own address, in event order.

**Misbehaving on purpose** (:class:`Fault`, ``--emulate-fault NAME``): the emulated phone can be
set up badly the ways a lab phone is, so that the harness's lab preflight (SPEC §10,
``harness/preflight.py``) is proven against each. A fault that makes the phone ignore keys of the
file *withholds* them (:attr:`Fault.withheld`): they are dropped before the file is applied and
the phone keeps its own behaviour, the documented default: withholding
``features.show_action_uri_option`` brings the prompt back, ``static_dns_enable`` the DHCP DNS,
``dns_cache_type`` the cache, ``trusted_certificates.url`` the factory CAs, ``action_url.setup_*``
the silence after a reboot.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any, Callable, Iterable
from urllib.parse import quote

from twisted.internet import defer
from twisted.web import resource
from twisted.web.client import Agent

# Imported now, not when the first file is applied: a provisioned phone must start as fast as the
# bundled phone does in the harness (the suites time it from the harness's start(); SPEC §9).
from sipharness.phone import dnsclient as _dnsclient  # noqa: F401,E402  (the phone imports it lazily at its first query)
from sipharness.phone.config import ConfigError, loads_config  # noqa: E402
from sipharness.phone.dnscache import CachingRelay, DnsCache  # noqa: E402
from sipharness.phone.emulation_events import FIRST_CALL_ID, EventMap  # noqa: E402
from sipharness.phone.emulation_faults import EMULATION_DNS_PORT, Fault, withhold  # noqa: E402
from sipharness.phone.emulation_web import AUTH_MODES, Commands, Redirect, Servlet, Silent, site  # noqa: E402
from sipharness.phone.phone import Phone  # noqa: E402
from sipharness.phone.vendor_keys import Firmware, keys_for, translate_to_bundled  # noqa: E402
from sipharness.sipcore.httpbody import read_body  # noqa: E402

__all__ = ["VendorEmulation", "expand_variables", "Fault", "withhold", "EMULATION_DNS_PORT"]

_VARIABLE = re.compile(r"\$([A-Za-z_]+)")
HTTP_TIMEOUT = 5.0  # wall seconds for one provisioning fetch or Action URL callback


def expand_variables(template: str, values: dict[str, str]) -> str:
    """``$name`` → URL-quoted ``values[name]``; an unknown ``$name`` is left as written (vendor style)."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        return quote(values[name], safe="") if name in values else m.group(0)
    return _VARIABLE.sub(sub, template)


class VendorEmulation:
    """The bundled phone behind a vendor phone's provisioning, reboots, DNS, Action URI and Action URL.

    ``emit(kind, **fields)`` writes a daemon output line; ``on_phone(phone)`` is called with each
    phone started from a provisioned file (and with None when it is stopped). ``http`` (and
    ``https``, a (host, port) with ``https_context`` a server TLS context) is where the Action URI
    listens; with ``https_only`` the HTTP port redirects there."""

    def __init__(self, *, reactor: Any, clock: Any, provision_url: str, mac: str, http: tuple[str, int],
                 emit: Callable[..., None], on_phone: Callable[[Any], None], local_host: str = "127.0.0.1",
                 tls_context: Any = None, dhcp_dns: tuple[str, int] | None = None, user: str = "admin",
                 password: str = "admin", allow: tuple[str, ...] = (), name: str = "phone",
                 faults: Iterable[Fault] = (), firmware: Firmware | str = Firmware.V8X, auth: str = "login",
                 https: tuple[str, int] | None = None, https_context: Any = None, https_only: bool = True,
                 reboot_seconds: float = 1.0):
        self.reactor, self.clock = reactor, clock
        self.faults = frozenset(faults)
        self.keys = keys_for(firmware)
        if auth not in AUTH_MODES:
            raise ValueError(f"auth {auth!r}: expected one of {', '.join(AUTH_MODES)}")
        self.auth = auth
        self.provision_url = provision_url if provision_url.endswith("/") else provision_url + "/"
        self.mac = mac.lower()
        self.http, self.https, self.https_context = http, https, https_context
        self.https_only = https_only and https is not None and https_context is not None
        self.reboot_seconds = reboot_seconds
        self.emit, self.on_phone = emit, on_phone
        self.local_host, self.factory_tls, self.dhcp_dns, self.name = local_host, tls_context, dhcp_dns, name
        #: the web login and allow list until a file sets them (the daemon's --http-user, --action-uri-allow)
        self.factory_user, self.factory_password, self.factory_allow = user, password, tuple(allow)
        # the phone's "flash": what survives a reboot
        self.settings: dict[str, str] = {}  # vendor keys of the applied file (after withholding)
        self._bundled_text: str | None = None
        self._md5: str | None = None
        self._trusted: Any = None  # TLS context trusting the file's CA, once fetched
        # what a reboot forgets
        self.config: Any = None
        self.phone: Any = None
        self.events: EventMap | None = None
        self.prompted: set[str] = set()  # addresses the "Allow remote control?" prompt is up for
        self.cache = DnsCache(clock, mode=1)
        self.relay: CachingRelay | None = None
        self.rebooting = False
        self.reboots = 0
        self._ports: list[Any] = []
        self._bound: dict[str, tuple[str, int]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._callbacks: defer.Deferred = defer.succeed(None)  # the Action URL queue (one at a time)
        self._stopped = False
        self._provisioning: defer.Deferred | None = None
        self._after: list[defer.Deferred] = []  # provision() calls the next fetch will answer
        self.commands = Commands(self)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> defer.Deferred:
        """Power on: listen for the Action URI, then boot (stored file, power-on provisioning)."""
        self._listen()
        host, port = self._bound["http"]
        self.emit("daemon", detail=f"http listening on {host}:{port}")
        if "https" in self._bound:
            self.emit("daemon", detail=f"https listening on {self._bound['https'][0]}:{self._bound['https'][1]}")
        self._boot()
        return defer.succeed((host, port))

    def _listen(self) -> None:
        servlet = Servlet(self) if Fault.DEAD_CONTROL not in self.faults else Silent()
        if self.https_only:
            plain: resource.Resource = Redirect(lambda: self._bound["https"][1])
        else:
            plain = resource.Resource()
            plain.putChild(b"servlet", servlet)
        secure = resource.Resource()
        secure.putChild(b"servlet", servlet)
        http_host, http_port = self._bound.get("http", self.http)
        p = self.reactor.listenTCP(http_port, site(plain), interface=http_host)
        self._ports.append(p)
        self._bound["http"] = (p.getHost().host, p.getHost().port)
        if self.https is not None and self.https_context is not None:
            https_host, https_port = self._bound.get("https", self.https)
            s = self.reactor.listenSSL(https_port, site(secure), self.https_context, interface=https_host)
            self._ports.append(s)
            self._bound["https"] = (s.getHost().host, s.getHost().port)

    def _unlisten(self) -> defer.Deferred:
        ports, self._ports = self._ports, []
        return defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports], consumeErrors=True)

    def stop(self) -> defer.Deferred:
        self._stopped = True
        stops = [self._stop_phone(), self._unlisten()]
        if self.relay is not None:
            stops.append(self.relay.stop())
        return defer.DeferredList(stops, consumeErrors=True).addCallback(lambda _: None)

    def _stop_phone(self) -> defer.Deferred:
        phone, self.phone = self.phone, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if phone is None:
            return defer.succeed(None)
        self.on_phone(None)
        return phone.stop()

    def _boot(self) -> None:
        """Start with the stored file (if any), report startup, then power-on provisioning."""
        async def boot() -> None:
            if self._bundled_text is not None:
                await self._start_phone()
            self._fire_plain("setup_completed")
            self.emit("daemon", detail="setup completed" + (" (stored file)" if self._bundled_text else " (factory)"))
            rebooted_before = self.reboots
            await self.provision()
            if self.reboots == rebooted_before and not self._stopped:
                self._fire_plain("setup_autop_finish")
                self.emit("daemon", detail="auto provisioning via power on finished")
        defer.ensureDeferred(boot()).addErrback(lambda f: self.emit("error", detail=f"boot: {f.getErrorMessage()}"))

    def _reboot(self, why: str) -> None:
        """Down for ``reboot_seconds`` (no web server, no SIP, no DNS), then power on with the stored file."""
        self.rebooting = True
        self.reboots += 1
        self.emit("daemon", detail=f"rebooting for {self.reboot_seconds:g} s: {why}")

        async def reboot() -> None:
            await self._stop_phone()
            await self._unlisten()
            self.cache.clear()
            self.prompted.clear()
            d: defer.Deferred = defer.Deferred()
            self.reactor.callLater(self.reboot_seconds, d.callback, None)  # wall seconds: a phone boots in wall time
            await d
            if self._stopped:
                return
            self.rebooting = False
            self._listen()
            self._boot()
        defer.ensureDeferred(reboot()).addErrback(lambda f: self.emit("error", detail=f"reboot: {f.getErrorMessage()}"))

    # ------------------------------------------------------------------ provisioning
    def provision(self) -> defer.Deferred:
        """Fetch ``<mac>.cfg`` and apply it; never fails (errors are emitted, the phone keeps its file).

        One fetch at a time: an AutoP that comes while one runs fetches again once it is over (the
        file may have changed since that fetch began), however many AutoPs came meanwhile."""
        d: defer.Deferred = defer.Deferred()
        self._after.append(d)
        if self._provisioning is None:
            self._next_round()
        return d

    def _next_round(self) -> None:
        waiting, self._after = self._after, []
        self._provisioning = defer.ensureDeferred(self._provision())

        def done(_: Any) -> None:
            self._provisioning = None
            for d in waiting:
                d.callback(None)
            if self._after and not self._stopped:
                self._next_round()
        self._provisioning.addBoth(done)

    async def _provision(self) -> None:
        url = f"{self.provision_url}{self.mac}.cfg"
        if Fault.NEVER_FETCH in self.faults:
            self.emit("error", detail=f"provisioning: {url} not fetched (emulated fault {Fault.NEVER_FETCH.value})")
            return
        try:
            status, body = await self.get(url)
        except Exception as e:  # noqa: BLE001 - a provisioning failure is reported, never fatal
            self.emit("error", detail=f"provisioning: GET {url}: {e}")
            return
        if status != 200:
            self.emit("error", detail=f"provisioning: GET {url}: HTTP {status}")
            return
        await self._apply(body, url)

    async def _apply(self, body: bytes, source: str) -> None:
        if self._stopped or self.rebooting:
            return
        md5 = hashlib.md5(body).hexdigest()  # noqa: S324 - the vendor's own comparison, not security
        if md5 == self._md5:
            self.emit("daemon", detail=f"provisioned from {source}: unchanged (MD5 {md5[:8]}), not applied")
            return
        text, withheld = withhold(body.decode("utf-8", "replace"), self.faults)
        if withheld:
            self.emit("daemon", detail=f"emulated faults {sorted(f.value for f in self.faults)}: ignoring "
                                       f"{', '.join(dict.fromkeys(withheld))} of {source}")
        bundled, vendor = translate_to_bundled(text, self.keys.firmware)
        try:
            config = loads_config(bundled, filename=source)
        except ConfigError as e:
            self.emit("error", detail=f"provisioning: {source} not applied: {e}")
            return
        changed = self._network_changes(vendor)
        self.settings, self._bundled_text, self._md5, self.config = vendor, bundled, md5, config
        await self._fetch_trusted_certificates()
        if changed:
            await self._stop_phone()
            self._reboot(f"network keys changed ({', '.join(changed)})")
            return
        await self._start_phone()
        self.emit("daemon", detail=f"provisioned from {source}: accounts {sorted(self.phone.ua.fallbacks)}")

    def _network_changes(self, vendor: dict[str, str]) -> list[str]:
        prefix = self.keys.network_prefix
        old = {k: v for k, v in self.settings.items() if k.startswith(prefix)}
        new = {k: v for k, v in vendor.items() if k.startswith(prefix)}
        return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))

    async def _fetch_trusted_certificates(self) -> None:
        url = self.settings.get(self.keys.trusted_certificates_url)
        self._trusted = None
        if not url:
            return
        try:
            status, pem = await self.get(url)
            if status != 200:
                raise ValueError(f"HTTP {status}")
            from twisted.internet import ssl

            self._trusted = ssl.optionsForClientTLS("127.0.0.1", trustRoot=ssl.Certificate.loadPEM(pem))
            self.emit("daemon", detail=f"trusted certificate from {url} installed")
        except Exception as e:  # noqa: BLE001 - a bad certificate URL leaves the factory CAs
            self.emit("error", detail=f"trusted certificates: GET {url}: {e}")

    async def _start_phone(self) -> None:
        await self._stop_phone()
        if self._stopped or self.rebooting or self._bundled_text is None:
            return
        config = self.config
        # SPEC §2: equal SRV records in an order drawn per resolution; each start of the emulated phone
        # draws from its own seeded generator, as the in-process bundled phone does (harness/dut.py), so a
        # CI run is reproducible and DNS-8's ten starts never all land on one host by chance (1 run in 256)
        self._starts = getattr(self, "_starts", 0) + 1
        phone = Phone(config, clock=self.clock, reactor=self.reactor, dns_server=self._dns_server(),
                      local_host=self.local_host, tls_context=self._trusted or self.factory_tls, name=self.name,
                      rng=random.Random(f"{self.name}/{self._starts}"))
        self.phone = phone
        first = self.events.next_call_id if self.events is not None else FIRST_CALL_ID  # numbers go on
        self.events = EventMap(mac=self.mac, ip=self.local_host, account_host=self._account_host,
                               account_user=self._account_user, first_call_id=first)
        self._unsubscribe = phone.events.subscribe(self._phone_event)
        self.on_phone(phone)
        phone.start()

    def _dns_server(self) -> tuple[str, int] | None:
        """Static DNS if the file enables it, else DHCP's; through the DNS cache unless every account turns it off."""
        if self.settings.get(self.keys.static_dns_enable) == "1" and self.settings.get(self.keys.primary_dns):
            port = self.settings.get(EMULATION_DNS_PORT, "53")
            server: tuple[str, int] | None = (self.settings[self.keys.primary_dns], int(port) if port.isdigit() else 53)
        else:
            server = self.dhcp_dns
        modes = [self._cache_mode(x) for x, acct in self.config.accounts.items() if acct.enable] or [1]
        self.cache.mode = max(modes)
        if server is None or self.cache.mode == 0:
            return server
        if self.relay is None:
            self.relay = CachingRelay(self.reactor, self.cache, host=self.local_host)
            self.relay.start()
        self.relay.upstream = server
        return self.relay.address

    def _cache_mode(self, x: int) -> int:
        value = self.settings.get(self.keys.dns_cache_type.format(x=x), "1")
        return int(value) if value in ("0", "1", "2") else 1

    def _account_host(self, x: int) -> str:
        return self.config.account(x).servers[1].address if self.config and x in self.config.accounts else ""

    def _account_user(self, x: int) -> str:
        return self.config.account(x).user_name if self.config and x in self.config.accounts else ""

    # ------------------------------------------------------------------ Action URL
    def _phone_event(self, ev: Any) -> None:
        if self.events is None or self._stopped:
            return
        for cb in self.events.feed(ev):
            self._fire(cb.event, cb.variables)

    def _fire_plain(self, event: str) -> None:
        self._fire(event, {"mac": self.mac, "ip": self.local_host, "phone_time": f"{self.clock.seconds():.6f}"})

    def _fire(self, event: str, variables: dict[str, str]) -> None:
        template = self.settings.get(self.keys.action_url.format(event=event))
        if not template or self._stopped:
            return
        url = expand_variables(template, variables)
        phone = self.phone
        self._callbacks.addCallback(lambda _: defer.ensureDeferred(self._callback(event, url, phone)))

    async def _callback(self, key: str, url: str, phone: Any) -> None:
        if self._stopped or (phone is not None and phone is not self.phone):
            return  # a re-provisioned phone's old events are not reported
        try:
            status, _ = await self.get(url)
            if status != 200:
                self.emit("error", detail=f"action URL {key}: GET {url}: HTTP {status}")
        except Exception as e:  # noqa: BLE001 - the harness may be gone; the phone keeps working
            self.emit("error", detail=f"action URL {key}: GET {url}: {e}")

    # ------------------------------------------------------------------ HTTP client
    async def get(self, url: str) -> tuple[int, bytes]:
        """One GET from the phone's own address, bounded by HTTP_TIMEOUT wall seconds."""
        agent = Agent(self.reactor, connectTimeout=HTTP_TIMEOUT, bindAddress=(self.local_host, 0))
        d = agent.request(b"GET", url.encode("ascii", "replace"))
        timer = self.reactor.callLater(HTTP_TIMEOUT, d.cancel)
        try:
            response = await d
            body = await read_body(response)
        except defer.CancelledError:
            raise TimeoutError(f"no answer within {HTTP_TIMEOUT:g} s") from None
        finally:
            if timer.active():
                timer.cancel()
        return response.code, body


