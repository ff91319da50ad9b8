"""Where the phone's requests say they come from and go to: Via, Contact, AOR, Request-URI.

Plain functions of the configuration and of the flow a request leaves by (a flow's ``local``
address is the socket the message goes out on: SPEC §3 connected UDP or a TCP/TLS
connection). Registration (SPEC §4) and call control (SPEC §7) build their requests with
them, so each fact is written once: the transport parameter of a Contact, the brackets of an
IPv6 host, when a Request-URI carries a port.
"""

from __future__ import annotations

from typing import Any

from sipharness.sipcore.ids import new_branch
from sipharness.sipcore.uri import SipUri, default_port
from sipharness.sipcore.via import Via

from sipharness.phone.dnsrecords import is_ip_literal

__all__ = ["USER_AGENT", "via", "contact_uri", "aor", "registrar_uri", "same_contact"]

USER_AGENT = "sip-redundancy-harness bundled phone"


def via(flow: Any) -> Via:
    """A top Via for a new client transaction on ``flow``: a new branch, ``rport`` asked."""
    host, port = flow.local
    return Via(flow.transport.upper(), host, port, {"branch": new_branch(), "rport": None})


def contact_uri(account: Any, flow: Any) -> SipUri:
    """The phone's Contact on ``flow``: ``sip:user@local-host:port`` (``;transport=`` unless UDP)."""
    host, port = flow.local
    params = {} if flow.transport == "udp" else {"transport": flow.transport}
    return SipUri(scheme="sip", user=account.user_name or None, host=host, port=port, params=params)


def host_text(address: str) -> str:
    """A configured server address as a URI host (an IPv6 literal in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def aor(account: Any, server: Any) -> str:
    """SPEC §4: To/From ``sip:user_name@<server address as configured>``."""
    return f"sip:{account.user_name}@{host_text(server.address)}"


def registrar_uri(server: Any, target: Any) -> SipUri:
    """The REGISTER Request-URI: the server address as configured; the port only for an IP
    literal whose configured port is not the transport's default (a domain's port is DNS's)."""
    port = None
    if is_ip_literal(server.address) and server.port not in (0, default_port(target.transport)):
        port = server.port
    return SipUri(scheme="sip", host=server.address.strip("[]"), port=port)


def same_contact(uri: Any, ours: Any) -> bool:
    """Is ``uri`` (from a REGISTER's 2xx) the Contact the phone registered (user, host, port)?"""
    transport = ours.params.get("transport") or "udp"
    return (uri.host.lower() == ours.host.lower() and uri.user == ours.user
            and (uri.port or default_port(transport)) == (ours.port or default_port(transport)))
