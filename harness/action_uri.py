"""The Action URI client: ``GET /servlet?...`` on a vendor phone's web server, as the vendor documents it.

Why its own module: how a phone takes the request varies by model and firmware, and each way must
work without a question to the lab (Administrator's Guides for SIP-T2/T3/T4/T5/CP920 and for the
SIP-T5 Series Smart Media Phones, "Action URI"):

- **HTTP or HTTPS**: "http(s)://<phoneIPAddress>/servlet?key=variable value". A phone whose web
  server is HTTPS only answers plain HTTP with a redirect: the client follows up to
  :data:`MAX_REDIRECTS` on the same host and then talks to where it landed. The phone's
  certificate is not checked: it is the vendor's device certificate (issued by the vendor's own
  CA), and the Action URI runs on the lab's isolated network.
- **credentials**: Basic ("http(s)://username:password@<phoneIPAddress>/servlet?key=...") or,
  on newer firmware, the login form: "When authentication is required, you must enter
  'p=login&q=login&username=xxx&pwd=yyy&jumpto=URI&' before the variable 'key'". ``auth="auto"``
  tries Basic and, on a 401, the form, and keeps what worked for the rest of the session.
- errors name the step: unreachable / no answer / 401 / 403 are the lab's (a
  :class:`VendorLabProblem` with the fix), any other status a :class:`VendorError`.

Deadlines are wall seconds on the reactor (a phone's web server answers in wall time).
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet import defer, error, protocol, ssl
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from .vendor_errors import VendorError, VendorLabProblem

__all__ = ["ActionUriClient", "AUTH_CHOICES", "MAX_REDIRECTS", "read_body"]

AUTH_CHOICES = ("auto", "basic", "login")
MAX_REDIRECTS = 3


@implementer(IPolicyForHTTPS)
class _AnyCertificate:
    """TLS without checking the phone's certificate (see the module docstring); one context for all."""

    def __init__(self) -> None:
        self._options: Any = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        if self._options is None:
            self._options = ssl.CertificateOptions(verify=False)
        return self._options


class ActionUriClient:
    """Requests to one phone's ``/servlet``; learns its scheme, port and login on the way."""

    TIMEOUT = 5.0  # wall seconds for one request

    def __init__(self, reactor: Any, address: str | None, *, user: str, password: str, bind: str,
                 auth: str = "auto", lab_address: str | None = None):
        if auth not in AUTH_CHOICES:
            raise ValueError(f"auth {auth!r}: expected one of {', '.join(AUTH_CHOICES)}")
        self.reactor = reactor
        self.base = f"http://{address}" if address and "://" not in address else address  # scheme://host:port
        self.user, self.password, self.bind, self.auth = user, password, bind, auth
        self.lab_address = lab_address or bind
        self.learned: str | None = None if auth == "auto" else auth  # the login that worked
        # One kept-alive connection: a TLS handshake per request costs tens of milliseconds of the
        # harness's reactor (measured 25-47 ms here), time the fakes would record packets late by.
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 1
        self._pool.cachedConnectionTimeout = 600
        self._policy = _AnyCertificate()

    def close(self) -> defer.Deferred:
        """Close the kept-alive connection (the phone's session ends)."""
        return self._pool.closeCachedConnections()

    @property
    def address(self) -> str | None:
        return urlsplit(self.base).netloc if self.base else None

    def set_address(self, address: str) -> None:
        """The phone's web server moved (the emulation's port is known once it listens)."""
        self.base = f"http://{address}" if "://" not in address else address

    async def request(self, step: str, query: str) -> str:
        """The body of ``GET <base>/servlet?<query>`` (200 only); errors name ``step``."""
        if not self.base:
            raise VendorError(f"step '{step}': the phone's Action URI address is unknown (not started)")
        ways = [self.learned] if self.learned else ["basic", "login"]
        last: tuple[int, str] | None = None
        for way in ways:
            status, body = await self._get(step, query, way)
            if status != 401:
                if self.learned is None and status == 200:
                    self.learned = way
                return self._checked(step, query, status, body)
            last = (status, body)
        return self._checked(step, query, *last)

    async def _get(self, step: str, query: str, way: str) -> tuple[int, str]:
        headers = Headers()
        path_query = query
        if way == "basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers.addRawHeader(b"authorization", f"Basic {token}".encode())
        else:
            path_query = (f"p=login&q=login&username={quote(self.user, safe='')}&pwd={quote(self.password, safe='')}"
                          f"&jumpto=servlet&{query}")
        url = f"{self.base}/servlet?{path_query}"
        for _ in range(MAX_REDIRECTS + 1):
            status, body, location = await self._once(step, url, headers)
            if status not in (301, 302, 303, 307, 308) or not location:
                return status, body
            target = urlsplit(location)
            here = urlsplit(url)
            if target.hostname != here.hostname:
                raise VendorLabProblem(f"step '{step}': the phone at {self.address} redirected GET /servlet to "
                                       f"another host ({location})", "give --phone-ip the address the phone's "
                                                                     "web server really answers on")
            self.base = f"{target.scheme}://{target.netloc}"
            url = location if target.query else f"{self.base}/servlet?{path_query}"
        raise VendorLabProblem(f"step '{step}': the phone at {self.address} redirected more than {MAX_REDIRECTS} "
                               f"times", "check the phone's web server type (HTTP/HTTPS) and --phone-ip")

    async def _once(self, step: str, url: str, headers: Headers) -> tuple[int, str, str | None]:
        agent = Agent(self.reactor, contextFactory=self._policy, connectTimeout=self.TIMEOUT,
                      bindAddress=(self.bind, 0), pool=self._pool)
        d = agent.request(b"GET", url.encode("ascii"), headers)
        expired: list[bool] = []
        timer = self.reactor.callLater(self.TIMEOUT, lambda: (expired.append(True), d.cancel()))
        shown = url.split("?", 1)[0]
        try:
            response = await d
            body = (await read_body(response)).decode("utf-8", "replace").strip()
        except (defer.CancelledError, ResponseNeverReceived, ResponseFailed) as e:
            reasons = getattr(e, "reasons", [])
            if not expired and (isinstance(e, defer.CancelledError) or any(r.check(defer.CancelledError)
                                                                            for r in reasons)):
                raise defer.CancelledError() from None  # the caller gave up (its own deadline): not ours to name
            what = "did not answer" if expired else f"broke off its answer ({reasons[0].getErrorMessage() if reasons else e})"
            raise VendorLabProblem(f"step '{step}': the phone at {self.address} {what} GET {shown}"
                                   + (f" within {self.TIMEOUT:g} s" if expired else ""),
                                   "is --phone-ip right, and the phone on?") from None
        except (error.ConnectError, error.ConnectionRefusedError, OSError) as e:
            raise VendorLabProblem(f"step '{step}': the phone at {self.address} is unreachable (GET {shown}): {e}",
                                   "is --phone-ip right, and the phone on?") from None
        finally:
            if timer.active():
                timer.cancel()
        location = response.headers.getRawHeaders(b"location", [b""])[0].decode("ascii", "replace") or None
        return response.code, body, location

    def _checked(self, step: str, query: str, status: int, body: str) -> str:
        if status == 401:
            raise VendorLabProblem(f"step '{step}': the phone at {self.address} refused the credentials (HTTP 401; "
                                   f"tried {'HTTP Basic and the login form' if self.auth == 'auto' else self.auth})",
                                   f"check --phone-user {self.user!r} and --phone-password")
        if status == 403:
            raise VendorLabProblem(f"step '{step}': the phone at {self.address} refused the Action URI from "
                                   f"{self.lab_address} (HTTP 403)",
                                   "add it to the phone's features.action_uri_limit_ip (docs/lab.md)")
        if status != 200:
            raise VendorError(f"step '{step}': GET /servlet?{query}: HTTP {status}: {body[:300]}")
        return body


def read_body(response: Any) -> defer.Deferred:
    """The whole body of a twisted.web response (``readBody`` without its abortConnection warning).

    A copy of phone.emulation.read_body on purpose: driving a real phone must not import the bundled phone."""
    d: defer.Deferred = defer.Deferred()
    response.deliverBody(_Body(d))
    return d


class _Body(protocol.Protocol):
    def __init__(self, done: defer.Deferred):
        self.done, self.parts = done, []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.parts))
