"""The emulated vendor phone's web server: the Action URI (``/servlet``) over HTTP and HTTPS.

Why its own module: the order of a vendor phone's checks decides which error a misconfigured lab
sees, so it is written once, here, from the vendor's documents (Administrator's Guide for
SIP-T2/T3/T4/T5/CP920 IP Phones and Administrator's Guide for SIP-T5 Series Smart Media Phones,
"Action URI"):

1. **allow list** (``features.action_uri_limit_ip``): "If it is left blank, the IP phone will
   reject any HTTP GET request. If it is set to 'any', the IP phone will accept and handle HTTP
   GET requests from any IP address." (403; ``10.10.*.*`` wildcards as documented).
2. **credentials**: HTTP Basic ("http(s)://username:password@<phoneIPAddress>/servlet?key=...")
   and, on newer firmware, the login form: "When authentication is required, you must enter
   'p=login&q=login&username=xxx&pwd=yyy&jumpto=URI&' before the variable 'key'." Which ones this
   phone takes is ``auth`` (``basic``, ``login`` or ``both``); a wrong one gets 401.
3. **the remote-control prompt** (``features.show_action_uri_option``, default 1): "When the IP
   phone receives a GET request from the trusted IP address for the first time, the phone screen
   prompts the message 'Allow remote control?'. Press the OK soft key on the phone to allow remote
   control." The request is answered 200 with an empty body and **not carried out** while the
   prompt waits (SPEC §10 [interp]: the guide does not say what the HTTP answer is); nobody presses
   OK in a lab, so every later request from that address is ignored too.
4. the action itself (:class:`Commands`): 200, 400 for an unknown key.

HTTPS ("IP phones can handle an HTTP or HTTPS GET request"): with ``https_only`` the plain-HTTP
port answers every request with a 302 to the same path on the HTTPS port, as a phone whose web
server is set to HTTPS only does; the driver must follow it.
"""

from __future__ import annotations

import base64
import fnmatch
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.web import resource, server

__all__ = ["Servlet", "Silent", "Redirect", "Commands", "site", "allowed_by", "AUTH_MODES"]

AUTH_MODES = ("basic", "login", "both")


def allowed_by(limit: str | None, client: str) -> bool:
    """Whether ``client`` may use the Action URI under ``features.action_uri_limit_ip = limit``."""
    if limit is None:
        return False
    for entry in (a.strip() for a in limit.split(",")):
        if entry.lower() == "any" or (entry and fnmatch.fnmatchcase(client, entry)):
            return True
    return False


def site(root: resource.Resource) -> server.Site:
    s = server.Site(root)
    s.displayTracebacks = False
    s.noisy = False
    return s


class Silent(resource.Resource):
    """An Action URI that accepts the connection and never answers (``Fault.DEAD_CONTROL``)."""

    isLeaf = True

    def render_GET(self, request: Any) -> Any:
        return server.NOT_DONE_YET


class Redirect(resource.Resource):
    """The plain-HTTP port of an HTTPS-only web server: 302 to ``https://<host>:<port><same path>``."""

    isLeaf = True

    def __init__(self, https_port: Any):
        super().__init__()
        self.https_port = https_port  # a callable: the HTTPS port, known once it listens

    def render_GET(self, request: Any) -> bytes:
        host = request.getHost().host
        request.setResponseCode(302)
        request.setHeader(b"location", f"https://{host}:{self.https_port()}".encode() + request.uri)
        return b""


class Servlet(resource.Resource):
    """``/servlet``: allow list, credentials, the remote-control prompt, then the action."""

    isLeaf = True

    def __init__(self, emulation: Any):
        super().__init__()
        self.em = emulation

    def render_GET(self, request: Any) -> bytes:
        em = self.em
        client = request.getClientAddress().host
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if not allowed_by(em.commands.setting_limit_ip(), client):
            em.emit("error", detail=f"action URI from {client} refused: not in features.action_uri_limit_ip")
            request.setResponseCode(403)
            return f"403 action URI not allowed from {client} (features.action_uri_limit_ip)\n".encode()
        query = urlsplit(request.uri.decode("utf-8", "replace")).query
        args = parse_qs(query, keep_blank_values=True)
        if not self._authenticated(request, args):
            request.setResponseCode(401)
            if em.auth in ("basic", "both"):
                request.setHeader(b"www-authenticate", b'Basic realm="phone"')
            return b"401 wrong user name or password\n"
        shown = em.commands.remote_control_prompt(client)
        if shown:
            em.emit("error", detail=f"action URI {_redact(query)}: not carried out: the screen shows 'Allow "
                                    f"remote control?' for {client} (features.show_action_uri_option is not 0)")
            request.setResponseCode(200)
            return b""
        try:
            status, body = em.commands.action(args)
        except Exception as e:  # noqa: BLE001 - a bad request never takes the phone down
            status, body = 400, f"{_redact(query)}: {e}"
        em.emit("daemon" if status == 200 else "error", detail=f"action URI {_redact(query)}: {status} {body}")
        request.setResponseCode(status)
        if status == 200 and args.get("phonecfg"):
            request.setHeader(b"content-type", b"application/json")
        return (body + "\n").encode()

    def _authenticated(self, request: Any, args: dict[str, list[str]]) -> bool:
        user, password = self.em.commands.credentials()
        if self.em.auth in ("login", "both") and args.get("p") == ["login"] and args.get("q") == ["login"]:
            return args.get("username") == [user] and args.get("pwd") == [password]
        if self.em.auth in ("basic", "both"):
            header = request.getHeader(b"authorization") or b""
            scheme, _, token = header.partition(b" ")
            if scheme.lower() == b"basic":
                try:
                    got = base64.b64decode(token, validate=True).decode("utf-8")
                except ValueError:
                    return False
                return got == f"{user}:{password}"
        return False


def _redact(query: str) -> str:
    """A query for the log without the login form's password."""
    return "&".join("pwd=***" if part.startswith("pwd=") else part for part in query.split("&"))


class Commands:
    """What the Action URI does for a request that passed the checks; the allow list, login and prompt state.

    The documented keys: ``AutoP``, ``number=<n>&outgoing_uri=<uri>``, ``OK``, ``ASW:<call-id>``,
    ``CALLEND`` / ``CallEnd`` ("End a call"), ``CANCEL:<call-id>``; ``phonecfg=get&accounts=1`` (its
    answer is this emulation's JSON: the vendor documents no format). A bare ``CANCEL`` is refused."""

    def __init__(self, em: Any):
        self.em = em

    def setting_limit_ip(self) -> str | None:
        if self.em.keys.action_uri_limit_ip in self.em.settings:
            return self.em.settings[self.em.keys.action_uri_limit_ip]
        return ",".join(self.em.factory_allow) if self.em.factory_allow else None

    def credentials(self) -> tuple[str, str]:
        user = self.em.settings.get(self.em.keys.web_user) or self.em.factory_user
        stored = self.em.settings.get(self.em.keys.web_password)
        password = self.em.factory_password
        if stored:
            who, sep, pw = stored.partition(":")
            if sep and who == user:
                password = pw
        return user, password

    def remote_control_prompt(self, client: str) -> bool:
        """True when the request is not carried out: "Allow remote control?" is (now) on the screen."""
        if self.em.settings.get(self.em.keys.show_action_uri_option, "1") == "0":
            return False
        self.em.prompted.add(client)
        return True

    def action(self, args: dict[str, list[str]]) -> tuple[int, str]:
        """Carry out one Action URI request; (HTTP status, body)."""
        if args.get("phonecfg") == ["get"]:
            return 200, json.dumps(self._accounts_state())
        key = (args.get("key") or [""])[0]
        if key == "AutoP":
            self.em.provision()
            return 200, "OK: provisioning"
        if self.em.phone is None:
            return 409, f"key={key}: the phone has no configuration yet (provision it first)"
        if key.startswith("number="):
            account = self._account_of((args.get("outgoing_uri") or [""])[0])
            uri = self._dial_uri(key[len("number="):], account)
            call = self.em.phone.call(uri, account)
            return 200, f"OK: dialing {uri} on account {account}, call {call.call_id}"
        if key == "OK":
            self.em.phone.answer()
            return 200, "OK: answer"
        if key in ("CALLEND", "CallEnd"):
            self.em.phone.hangup()
            return 200, "OK: end the call"
        verb, _, number = key.partition(":")
        if verb in ("ASW", "CANCEL") and number:
            call = self._call_by_number(number)
            if call is None:
                return 400, f"key={key}: no call with call-id {number}"
            (self.em.phone.answer if verb == "ASW" else self.em.phone.hangup)(call)
            return 200, f"OK: {verb} {number}"
        return 400, f"key={key!r}: expected AutoP, number=<n>&outgoing_uri=<uri>, OK, ASW:<id>, CALLEND or CANCEL:<id>"

    def _call_by_number(self, number: str) -> Any:
        sip = self.em.events.sip_call_id(number) if self.em.events is not None else None
        return self.em.phone.ua.calls.get(sip) if sip else None

    def _account_of(self, outgoing_uri: str) -> int:
        """The account whose ``user@server`` the ``outgoing_uri`` names (account 1 if none does)."""
        user = outgoing_uri.removeprefix("sip:").split("@", 1)[0]
        for x, acct in sorted(self.em.config.accounts.items()):
            if acct.enable and user and acct.user_name == user:
                return x
        return 1

    def _dial_uri(self, number: str, account: int) -> str:
        if "@" not in number:
            number = f"{number}@{self.em.config.account(account).servers[1].address}"
        return number if number.startswith(("sip:", "sips:")) else "sip:" + number

    def _accounts_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for x, acct in sorted(self.em.config.accounts.items()) if self.em.config is not None else ():
            if not acct.enable:
                continue
            registered = [y for y in (1, 2) if self.em.phone is not None and self.em.phone.registered(x, y)]
            out[str(x)] = {"user": acct.user_name, "registered": bool(registered)}
        return {"mac": self.em.mac, "firmware": self.em.keys.firmware.value, "accounts": out}

