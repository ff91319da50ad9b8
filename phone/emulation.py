"""A vendor phone's HTTP face for the bundled phone: auto-provisioning, Action URI, Action URL.

Why: the harness drives a real vendor phone (SPEC §10) through three HTTP conversations, and
CI has no such phone. This module gives the bundled phone's daemon mode the same three, so
the harness's vendor driver (``harness/vendor.py``) runs line for line against it on loopback:

- **auto-provisioning**: ``GET <provision URL>/<mac>.cfg``, apply it, (re)start the phone. A file
  identical to the one applied is a no-op (a vendor phone compares before rebooting), so a
  power-on fetch and a ``key=AutoP`` racing it restart the phone once. A file that does not load
  is reported and the phone keeps what it had.
- **Action URI** (``GET /servlet?...`` on ``--http``): ``key=AutoP`` re-provisions,
  ``key=number=<n>&outgoing_uri=<account URI>`` dials, ``key=OK`` answers, ``key=CANCEL`` ends a
  call, ``phonecfg=get&accounts=1`` returns the accounts' registration state as JSON. Accepted
  only from the addresses in ``features.action_uri_limit_ip`` (comma separated, ``any`` for
  all; before the first provisioning: the daemon's ``--action-uri-allow``) and with HTTP basic
  auth of the phone's web user (``static.security.user_name.admin`` and
  ``static.security.user_password = <user>:<password>``, vendor style; default admin/admin).
- **Action URL**: on each phone event, ``GET`` the URL of ``action_url.<event>`` with
  ``$variables`` expanded (``$mac $ip $call_id $active_user $active_host $remote $local``, plus
  ``$phone_time``, an extension of this emulation: the event's phone time, so the harness can
  stamp it exactly). Callbacks go out one at a time from the phone's own address, in event order.

Written by hand on twisted.web (server and ``Agent``): the protocol is a handful of GETs, and
the point is to behave like the device, not like a framework.

**Misbehaving on purpose** (:class:`Fault`, ``--emulate-fault NAME``): the emulated phone can be
set up badly the ways a lab phone is, so that the harness's lab preflight (SPEC §10,
``harness/preflight.py``) is proven against each: it ignores the file's DNS server, does not
trust the harness's CA, never fetches its file, never answers its Action URI, never
registers. Each fault acts at one of a few points of a vendor phone's life (fetching the
file, *applying* it, answering the Action URI, trusting a certificate); a fault that makes
the phone ignore keys of the file *withholds* them (:attr:`Fault.withheld`): they are dropped
before the file is applied and the phone keeps its own value, so further vendor behaviours
(a DHCP DNS server unless static DNS is set, a DNS cache, ...) add a member and, where a key
is concerned, the keys it withholds.
"""

from __future__ import annotations

import enum
import fnmatch
import json
import re
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote, urlsplit

from twisted.internet import defer, protocol
from twisted.web import resource, server
from twisted.web.client import Agent

# Imported now, not when the first file is applied: a provisioned phone must start as fast as the
# bundled phone does in the harness (the suites time it from the harness's start(); SPEC §9).
from sipharness.phone import dnsclient as _dnsclient  # noqa: F401,E402  (the phone imports it lazily at its first query)
from sipharness.phone.config import ConfigError, loads_config  # noqa: E402
from sipharness.phone.phone import Phone  # noqa: E402
from sipharness.sipcore.events import CallState, EventKind  # noqa: E402

__all__ = ["VendorEmulation", "ACTION_URL_EVENTS", "expand_variables", "Fault", "withhold"]

#: phone event (kind, state) → the ``action_url.<name>`` key it fires. ``call_proceeding`` is an
#: extension of this emulation (vendor phones have no action URL for a 100 Trying).
ACTION_URL_EVENTS = {
    (EventKind.REGISTERED, None): "registered",
    (EventKind.REGISTER_FAILED, None): "register_failed",
    (EventKind.UNREGISTERED, None): "unregistered",
    (EventKind.INCOMING_CALL, None): "incoming_call",
    (EventKind.CALL_STATE, CallState.CALLING): "outgoing_call",
    (EventKind.CALL_STATE, CallState.PROCEEDING): "call_proceeding",
    (EventKind.CALL_STATE, CallState.RINGING): "ringback",
    (EventKind.CALL_STATE, CallState.ESTABLISHED): "call_established",
    (EventKind.CALL_STATE, CallState.TERMINATED): "call_terminated",
    (EventKind.CALL_STATE, CallState.FAILED): "call_terminated",
}


class Fault(enum.Enum):
    """A way the emulated phone is set up badly, as a lab phone can be (``--emulate-fault NAME``)."""

    IGNORE_DNS = "ignore-dns"  # keeps its own DNS server (none here): the file's static DNS is withheld
    REFUSE_CA = "refuse-ca"  # trusts only the system's CAs, not the one it was given (--ca-file)
    NEVER_FETCH = "never-fetch"  # never fetches its file (its provisioning URL points nowhere)
    DEAD_CONTROL = "dead-control"  # its Action URI accepts connections and never answers
    NEVER_REGISTER = "never-register"  # its accounts stay disabled whatever the file says

    @property
    def withheld(self) -> tuple[str, ...]:
        """``.cfg`` keys (fnmatch patterns) the phone ignores with this fault."""
        return _WITHHELD.get(self, ())


_WITHHELD = {Fault.IGNORE_DNS: ("static.network.primary_dns", "static.network.primary_dns_port"),
             Fault.NEVER_REGISTER: ("account.*.enable",)}


def withhold(text: str, faults: Iterable[Fault]) -> tuple[str, list[str]]:
    """The file without the lines of keys the ``faults`` withhold, and those keys (in file order)."""
    patterns = [p for f in faults for p in f.withheld]
    if not patterns:
        return text, []
    kept, dropped = [], []
    for line in text.splitlines(keepends=True):
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else ""
        if key and any(fnmatch.fnmatchcase(key, p) for p in patterns):
            dropped.append(key)
        else:
            kept.append(line)
    return "".join(kept), dropped
_VARIABLE = re.compile(r"\$([A-Za-z_]+)")
HTTP_TIMEOUT = 5.0  # wall seconds for one provisioning fetch or Action URL callback


def expand_variables(template: str, values: dict[str, str]) -> str:
    """``$name`` → URL-quoted ``values[name]``; an unknown ``$name`` is left as written (vendor style)."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        return quote(values[name], safe="") if name in values else m.group(0)
    return _VARIABLE.sub(sub, template)


class VendorEmulation:
    """The bundled phone behind a vendor phone's provisioning, Action URI and Action URL.

    ``emit(kind, **fields)`` writes a daemon output line; ``on_phone(phone)`` is called with
    each phone started from a provisioned file (and with None when it is stopped).
    """

    def __init__(self, *, reactor: Any, clock: Any, provision_url: str, mac: str, http: tuple[str, int],
                 emit: Callable[..., None], on_phone: Callable[[Any], None], local_host: str = "127.0.0.1",
                 tls_context: Any = None, dns: tuple[str, int] | None = None, user: str = "admin",
                 password: str = "admin", allow: tuple[str, ...] = (), name: str = "phone",
                 faults: Iterable[Fault] = ()):
        self.reactor, self.clock = reactor, clock
        self.faults = frozenset(faults)
        if Fault.REFUSE_CA in self.faults:
            from twisted.internet import ssl

            tls_context = ssl.optionsForClientTLS("127.0.0.1")  # the platform's CAs only, never the harness's
        self.provision_url = provision_url if provision_url.endswith("/") else provision_url + "/"
        self.mac = mac.lower()
        self.http = http
        self.emit, self.on_phone = emit, on_phone
        self.local_host, self.tls_context, self.dns, self.name = local_host, tls_context, dns, name
        self._user, self._password, self._allow = user, password, tuple(allow)
        self.config: Any = None
        self.phone: Any = None
        self._applied: str | None = None
        self._port: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._callbacks: defer.Deferred = defer.succeed(None)  # the Action URL queue (one at a time)
        self._stopped = False
        self._provisioning: defer.Deferred | None = None
        self._after: list[defer.Deferred] = []  # provision() calls the next fetch will answer

    # ------------------------------------------------------------------ life cycle
    def start(self) -> defer.Deferred:
        """Listen for the Action URI, then fetch the configuration (the phone's power-on provisioning)."""
        root = resource.Resource()
        root.putChild(b"servlet", _Servlet(self) if Fault.DEAD_CONTROL not in self.faults else _Silent())
        site = server.Site(root)
        site.displayTracebacks = False
        site.noisy = False
        self._port = self.reactor.listenTCP(self.http[1], site, interface=self.http[0])
        host, port = self._port.getHost().host, self._port.getHost().port
        self.emit("daemon", detail=f"http listening on {host}:{port}")
        self.provision()
        return defer.succeed((host, port))

    def stop(self) -> defer.Deferred:
        self._stopped = True
        stops = [self._stop_phone()]
        if self._port is not None:
            port, self._port = self._port, None
            stops.append(defer.maybeDeferred(port.stopListening))
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
            status, body = await self._get(url)
        except Exception as e:  # noqa: BLE001 - a provisioning failure is reported, never fatal
            self.emit("error", detail=f"provisioning: GET {url}: {e}")
            return
        if status != 200:
            self.emit("error", detail=f"provisioning: GET {url}: HTTP {status}")
            return
        await self._apply(body.decode("utf-8", "replace"), url)

    async def _apply(self, text: str, source: str) -> None:
        if self._stopped:
            return
        if text == self._applied and self.phone is not None:
            self.emit("daemon", detail=f"provisioned from {source}: unchanged")
            return
        applied, withheld = withhold(text, self.faults)
        if withheld:
            self.emit("daemon", detail=f"emulated faults {sorted(f.value for f in self.faults)}: ignoring "
                                       f"{', '.join(dict.fromkeys(withheld))} of {source}")
        try:
            config = loads_config(applied, filename=source)
        except ConfigError as e:
            self.emit("error", detail=f"provisioning: {source} not applied: {e}")
            return
        await self._stop_phone()
        if self._stopped:
            return
        self.config, self._applied = config, text
        dns = self.dns or ((config.dns_server, config.dns_port) if config.dns_server else None)
        phone = Phone(config, clock=self.clock, reactor=self.reactor, dns_server=dns, local_host=self.local_host,
                      tls_context=self.tls_context, name=self.name)
        self.phone = phone
        self._unsubscribe = phone.events.subscribe(self._phone_event)
        self.on_phone(phone)
        self.emit("daemon", detail=f"provisioned from {source}: accounts {sorted(phone.ua.fallbacks)}")
        phone.start()

    # ------------------------------------------------------------------ Action URI
    def allowed(self, client: str) -> bool:
        limit = self._setting("features.action_uri_limit_ip")
        allow = [a.strip() for a in limit.split(",") if a.strip()] if limit is not None else list(self._allow)
        return "any" in allow or client in allow

    def credentials(self) -> tuple[str, str]:
        user = self._setting("static.security.user_name.admin") or self._user
        stored = self._setting("static.security.user_password")
        password = self._password
        if stored:
            who, sep, pw = stored.partition(":")
            if sep and who == user:
                password = pw
        return user, password

    def _setting(self, key: str) -> str | None:
        return self.config.unknown.get(key) if self.config is not None else None

    def action(self, args: dict[str, list[str]]) -> tuple[int, str]:
        """Carry out one Action URI request; (HTTP status, body)."""
        if args.get("phonecfg") == ["get"]:
            return 200, json.dumps(self._accounts_state())
        key = (args.get("key") or [""])[0]
        if key == "AutoP":
            self.provision()
            return 200, "OK: provisioning"
        if self.phone is None:
            return 409, f"key={key}: the phone has no configuration yet (provision it first)"
        if key.startswith("number="):
            account = self._account_of((args.get("outgoing_uri") or [""])[0])
            uri = self._dial_uri(key[len("number="):], account)
            call = self.phone.call(uri, account)
            return 200, f"OK: dialing {uri} on account {account}, call {call.call_id}"
        if key == "OK":
            self.phone.answer()
            return 200, "OK: answer"
        if key in ("CANCEL", "X"):
            self.phone.hangup()
            return 200, "OK: hang up"
        return 400, f"key={key!r}: expected AutoP, number=<n>, OK or CANCEL"

    def _account_of(self, outgoing_uri: str) -> int:
        """The account whose ``user@server`` the ``outgoing_uri`` names (account 1 if none does)."""
        user = outgoing_uri.removeprefix("sip:").split("@", 1)[0]
        for x, acct in sorted(self.config.accounts.items()):
            if acct.enable and user and acct.user_name == user:
                return x
        return 1

    def _dial_uri(self, number: str, account: int) -> str:
        if "@" not in number:
            number = f"{number}@{self.config.account(account).servers[1].address}"
        return number if number.startswith(("sip:", "sips:")) else "sip:" + number

    def _accounts_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for x, acct in sorted(self.config.accounts.items()) if self.config is not None else ():
            if not acct.enable:
                continue
            registered = [y for y in (1, 2) if self.phone is not None and self.phone.registered(x, y)]
            out[str(x)] = {"user": acct.user_name, "registered": bool(registered), "servers": registered}
        return {"mac": self.mac, "accounts": out}

    # ------------------------------------------------------------------ Action URL
    def _phone_event(self, ev: Any) -> None:
        key = ACTION_URL_EVENTS.get((ev.kind, ev.state if ev.kind == EventKind.CALL_STATE else None))
        template = self._setting(f"action_url.{key}") if key else None
        if not template or self._stopped:
            return
        url = expand_variables(template, self._variables(ev))
        phone = self.phone
        self._callbacks.addCallback(lambda _: defer.ensureDeferred(self._callback(key, url, phone)))

    def _variables(self, ev: Any) -> dict[str, str]:
        x = ev.account or 1
        acct = self.config.account(x) if x in self.config.accounts else None
        y = ev.server or 1
        values = {"mac": self.mac, "ip": self.local_host, "phone_time": f"{ev.time:.6f}",
                  "active_user": acct.user_name if acct else "", "active_host": acct.servers[y].address if acct else "",
                  "call_id": ev.call_id or ""}
        call = self.phone.ua.calls.get(ev.call_id) if ev.call_id and self.phone is not None else None
        if call is not None:
            values["remote"] = str(call.remote or "")
        if acct is not None:
            values["local"] = f"{acct.user_name}@{acct.servers[1].address}"
        return values

    async def _callback(self, key: str, url: str, phone: Any) -> None:
        if self._stopped or phone is not self.phone:  # a re-provisioned phone's old events are not reported
            return
        try:
            status, _ = await self._get(url)
            if status != 200:
                self.emit("error", detail=f"action URL {key}: GET {url}: HTTP {status}")
        except Exception as e:  # noqa: BLE001 - the harness may be gone; the phone keeps working
            self.emit("error", detail=f"action URL {key}: GET {url}: {e}")

    # ------------------------------------------------------------------ HTTP client
    async def _get(self, url: str) -> tuple[int, bytes]:
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


def read_body(response: Any) -> defer.Deferred:
    """The whole body of a twisted.web response (``readBody`` without its abortConnection warning)."""
    d: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(d))
    return d


class _Body(protocol.Protocol):
    def __init__(self, done: defer.Deferred):
        self.done, self.parts = done, []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.parts))  # ResponseDone, or PotentialDataLoss: take what came


class _Silent(resource.Resource):
    """An Action URI that accepts the connection and never answers (``Fault.DEAD_CONTROL``)."""

    isLeaf = True

    def render_GET(self, request: Any) -> Any:
        return server.NOT_DONE_YET


class _Servlet(resource.Resource):
    """``/servlet``: whitelist, then basic auth, then the action (vendor order of checks)."""

    isLeaf = True

    def __init__(self, emulation: VendorEmulation):
        super().__init__()
        self.emulation = emulation

    def render_GET(self, request: Any) -> bytes:
        em = self.emulation
        client = request.getClientAddress().host
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if not em.allowed(client):
            em.emit("error", detail=f"action URI from {client} refused: not in features.action_uri_limit_ip")
            request.setResponseCode(403)
            return f"403 action URI not allowed from {client} (features.action_uri_limit_ip)\n".encode()
        user, password = em.credentials()
        if request.getUser() != user.encode() or request.getPassword() != password.encode():
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="phone"')
            return b"401 wrong user name or password\n"
        query = urlsplit(request.uri.decode("utf-8", "replace")).query
        args = parse_qs(query, keep_blank_values=True)
        try:
            status, body = em.action(args)
        except Exception as e:  # noqa: BLE001 - a bad request never takes the phone down
            status, body = 400, f"{query}: {e}"
        em.emit("daemon" if status == 200 else "error", detail=f"action URI {query}: {status} {body}")
        request.setResponseCode(status)
        if status == 200 and args.get("phonecfg"):
            request.setHeader(b"content-type", b"application/json")
        return (body + "\n").encode()
