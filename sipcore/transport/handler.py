"""What every SIP transport shares: the way back to a peer (:class:`Source`), the handler
call that never lets a handler's error stop the transport (:func:`_call`), and the words
for a failure (:class:`SipTransportError`, :func:`describe_failure`).

Why a module of its own: the UDP and stream protocols, the listener and the client side
all report to the same duck-typed handler (see :mod:`sipcore.transport` for its methods)
and must word failures the same way, so the phone's failover logic and the fakes' records
read one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import error
from twisted.logger import Logger

from sipharness.sipcore.frozen import fast_init

__all__ = ["Address", "Source", "SipTransportError", "describe_failure"]

_log = Logger(namespace="sipharness.sipcore.transport")

Address = tuple[str, int]


class SipTransportError(Exception):
    """A connection could not be made or was lost; ``str`` is the human-readable reason."""

    def __init__(self, peer: Address, transport: str, reason: str):
        self.peer, self.transport, self.reason = peer, transport, reason
        super().__init__(f"{transport.upper()} {peer[0]}:{peer[1]}: {reason}")


@fast_init  # one per datagram (sipcore/frozen.py)
@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, and the way back on the same socket / connection."""

    transport: str  # 'udp' | 'tcp' | 'tls'
    local: Address
    peer: Address
    _reply: Callable[[bytes], None] = field(repr=False, compare=False)
    raw: bytes = field(default=b"", repr=False, compare=False)  # UDP: the datagram as received (fakes record it)

    def send(self, message: Any) -> None:
        """Reply with ``message`` (a Request or Response) the way this one came."""
        self._reply(message.to_bytes())

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (fakes sending garbage or keep-alives on purpose)."""
        self._reply(bytes(data))


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


def _addr(a: Any) -> Address:
    return (a.host, a.port)


def describe_failure(reason: Any) -> str:
    """A short human-readable text for a connection failure (a Failure or an exception)."""
    exc = getattr(reason, "value", reason)
    try:
        from OpenSSL import SSL

        if isinstance(exc, SSL.Error):
            parts = []
            for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
                if isinstance(item, tuple) and item:
                    parts.append(str(item[-1]))
            return "TLS handshake failed: " + (", ".join(p for p in parts if p) or str(exc) or "TLS error")
    except ImportError:  # pragma: no cover - twisted[tls] is a dependency
        pass
    if isinstance(exc, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, error.ConnectionDone):
        return "connection closed by peer"
    if isinstance(exc, (error.ConnectionLost, ConnectionResetError)):
        return "connection reset by peer"
    if isinstance(exc, error.TimeoutError):
        return "connect timed out"
    if isinstance(exc, error.DNSLookupError):
        return f"cannot resolve host: {exc}"
    return str(exc) or type(exc).__name__


def _call(handler: Any, name: str, *args: Any) -> None:
    """Call a handler method; an error goes to ``handler.sip_handler_error`` (or Twisted's
    log), the transport keeps serving."""
    method = getattr(handler, name, None)
    if method is None:
        return
    try:
        method(*args)
    except Exception as e:
        keep = getattr(handler, "sip_handler_error", None)
        if keep is not None:
            try:
                keep(e, _where(name, args))
                return
            except Exception:
                pass
        _log.failure("SIP handler {handler!r}.{name} raised", handler=handler, name=name)


def _where(name: str, args: tuple) -> str:
    """What the handler was doing, for the error's note: "while handling REGISTER from 127.0.0.1:5062 over udp"."""
    try:
        if name in ("sip_received", "sip_bad_input"):
            source = args[-1]
            what = "bad input" if name == "sip_bad_input" else (
                args[0].method if args[0].is_request else f"{args[0].status} ({args[0].cseq[1]})")
            return f"while handling {what} from {source.peer[0]}:{source.peer[1]} over {source.transport}"
        if name == "sip_connection_closed":
            source = args[0]
            return f"while handling the close of {source.transport} {source.peer[0]}:{source.peer[1]}"
        peer, transport = args[0], args[1]
        return f"while handling {name} for {transport} {peer[0]}:{peer[1]}"
    except Exception:  # the args themselves are odd: say what was called
        return f"in {name}"
