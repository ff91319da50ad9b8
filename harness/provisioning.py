"""The harness's web server for a vendor phone: auto-provisioning files and Action URL callbacks.

Why one small twisted.web site: a vendor phone (SPEC §10) is configured only by fetching
``<mac>.cfg`` over HTTP and reports its events only by calling URLs, so the harness has to be
the phone's provisioning server *and* the receiver of its callbacks, on an address the phone
can reach (the lab address). Both run in the reactor the fakes run in, so nothing blocks.

- ``GET /<name>.cfg``: ``<12 hex digits>.cfg`` gets the scenario's file; any other ``.cfg``
  (a vendor phone first asks for its model's common file, e.g. ``y000000000044.cfg``) gets an
  empty one (``#!version:1.0.0.1`` only). Every fetch is recorded in :attr:`fetches` (a
  :class:`Journal` on the reactor's wall clock: provisioning deadlines are wall time, whatever
  the test's clock). Only the phone's address is served; others get 403 and are recorded.
- ``GET /ca.pem``: the harness's test CA (``ca_pem``), which the file's ``trusted_certificates.url``
  points to, so the phone trusts the fakes' TLS certificates (served to the phone only).
- ``GET /action/<event>?...``: an Action URL callback, handed to ``on_callback(event, params)``.
  Accepted only from the phone's address; any other address gets 403 and ``on_refused`` is told
  (the DUT turns it into a test error naming the step).
- An exception while serving a request (a bug of the harness, never the phone's fault) is kept
  in :attr:`errors` with a note naming this server and the request (PEP 678), answered 500, and
  handed to ``on_error``; the plugin reports it as a harness error, as it does the fakes'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer
from twisted.web import resource, server

from sipharness.sipcore.journal import Journal

__all__ = ["ProvisioningServer", "Fetch", "EMPTY_CFG"]

EMPTY_CFG = "#!version:1.0.0.1\n## sip-redundancy-harness: nothing here\n"
_MAC_CFG = re.compile(r"([0-9a-f]{12})\.cfg")


@dataclass(frozen=True)
class Fetch:
    """One request the provisioning server saw."""

    time: float  # wall seconds (the reactor's clock)
    client: str
    path: str
    status: int
    mac: str | None = None


class ProvisioningServer:
    """Serves ``cfg_text`` as ``<mac>.cfg`` to ``phone_host`` and receives its Action URL callbacks."""

    def __init__(self, *, reactor: Any, host: str, port: int = 0, phone_host: str,
                 on_callback: Callable[[str, dict[str, str], str], None],
                 on_refused: Callable[[str], None], on_error: Callable[[BaseException], None] | None = None,
                 errors: list[BaseException] | None = None):
        self.reactor = reactor
        self.host, self.port = host, port
        self.phone_host = phone_host
        self.on_callback, self.on_refused, self.on_error = on_callback, on_refused, on_error
        #: exceptions hit while serving (a list given by the owner is shared: it outlives this server)
        self.errors: list[BaseException] = errors if errors is not None else []
        self.cfg_text = EMPTY_CFG
        self.ca_pem: bytes | None = None
        self.fetches: Journal[Fetch] = Journal(reactor)
        self._listening: Any = None

    @property
    def url(self) -> str:
        """The provisioning URL to set on the phone (``http://ADDR:PORT/``)."""
        if self._listening is None:
            raise RuntimeError("ProvisioningServer.url: start() it first")
        h = self._listening.getHost()
        host = f"[{h.host}]" if ":" in h.host else h.host
        return f"http://{host}:{h.port}/"

    def start(self) -> None:
        if self._listening is not None:
            return
        root = _Root(self)
        site = server.Site(root)
        site.displayTracebacks = False
        site.noisy = False
        try:
            self._listening = self.reactor.listenTCP(self.port, site, interface=self.host)
        except Exception as e:
            raise RuntimeError(f"provisioning server: cannot listen on {self.host}:{self.port} "
                               f"(--lab-address / --provision-port): {e}") from None

    def stop(self) -> defer.Deferred:
        port, self._listening = self._listening, None
        self.fetches.cancel_waits()
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)

    @property
    def listening(self) -> bool:
        return self._listening is not None

    def wait_fetch(self, timeout: float, *, since: int) -> defer.Deferred:
        """The phone's next successful ``<mac>.cfg`` fetch from index ``since`` (deadline in wall seconds)."""
        return self.fetches.wait_for(lambda f: f.mac is not None and f.status == 200 and f.client == self.phone_host,
                                     timeout, since=since, what=f"GET <mac>.cfg from {self.phone_host}")

    # -- request handling (called by the resource)
    def _serve_cfg(self, client: str, name: str) -> tuple[int, str]:
        m = _MAC_CFG.fullmatch(name.lower())
        status = 200 if client == self.phone_host else 403
        self.fetches.append(Fetch(self.reactor.seconds(), client, name, status, m.group(1) if m else None))
        if status != 200:
            self.on_refused(f"provisioning: refused GET /{name} from {client}: only the phone at "
                            f"{self.phone_host} is served")
            return status, f"403 not served to {client}\n"
        return 200, self.cfg_text if m else EMPTY_CFG


class _Root(resource.Resource):
    isLeaf = True

    def __init__(self, prov: ProvisioningServer):
        super().__init__()
        self.prov = prov

    def render_GET(self, request: Any) -> bytes:
        try:
            return self._render(request)
        except Exception as e:  # noqa: BLE001 - a serving error is the harness's, kept and reported, never lost
            prov = self.prov
            uri = request.uri.decode("utf-8", "replace")
            where = prov.url if prov.listening else f"http://{prov.host}:{prov.port}/"
            e.add_note(f"provisioning server {where}: GET {uri[:300]} from "
                       f"{request.getClientAddress().host}")
            prov.errors.append(e)
            if prov.on_error is not None:
                prov.on_error(e)
            request.setResponseCode(500)
            return f"500 harness error while serving {uri[:100]}\n".encode("utf-8", "replace")

    def _render(self, request: Any) -> bytes:
        prov = self.prov
        client = request.getClientAddress().host
        parts = urlsplit(request.uri.decode("utf-8", "replace"))
        path = parts.path.lstrip("/")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if path.endswith(".cfg") and "/" not in path:
            status, body = prov._serve_cfg(client, path)
        elif path == "ca.pem" and prov.ca_pem is not None:
            status, body = (200, prov.ca_pem.decode("ascii", "replace")) if client == prov.phone_host else \
                (403, f"403 not served to {client}\n")
        elif path.startswith("action/") and path.count("/") == 1:
            event = path.split("/", 1)[1]
            if client != prov.phone_host:
                prov.on_refused(f"Action URL callback: refused GET /{path} from {client}: callbacks are accepted "
                                f"only from the phone's address {prov.phone_host}")
                status, body = 403, f"403 callbacks accepted only from {prov.phone_host}\n"
            else:
                params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                prov.on_callback(event, params, client)
                status, body = 200, "OK\n"
        else:
            status, body = 404, "404 not a provisioning file or an action URL\n"
        request.setResponseCode(status)
        return body.encode("utf-8")
