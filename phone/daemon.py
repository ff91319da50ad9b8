"""``sipharness phone``: the bundled phone as a process, events out as JSON lines, commands in.

Why a daemon at all: a harness in another process (another machine's lab runner, a shell
script, a language that is not Python) must be able to drive the bundled phone exactly as
it drives a third-party softphone (SPEC §10): start it from a ``.cfg``, read its events,
tell it to call, answer, hang up, quit. The protocol is the simplest thing a pipe carries
(:mod:`phone.console`):

- **stdout**: one JSON object per line, flushed as it happens. Each :class:`PhoneEvent`
  becomes ``{"t", "kind", "account", "server", "target", "state", "call_id", "detail"}``
  (every key present, ``null`` when empty; ``t`` in phone seconds of the daemon's clock).
  The daemon adds lines of its own with the same keys: ``kind = "daemon"`` (``detail``
  ``started ...`` / ``stopping: ...`` / ``stopped``) and ``kind = "error"`` (a command it
  could not carry out; the daemon keeps running).
- **stdin**: one command per line: ``call URI [ACCOUNT]``, ``answer [CALL_ID]``,
  ``hangup [CALL_ID]``, ``quit``. EOF on stdin keeps the phone running unless
  ``--exit-on-eof`` (a harness that dies takes the phone with it that way).
- **exit status**: 0 after ``quit``, SIGINT or SIGTERM (the phone is stopped first and,
  with ``--unregister-on-exit``, un-REGISTERs, bounded by ``--stop-timeout`` wall seconds);
  2 for a bad command line or a ``.cfg`` that does not load (the :class:`ConfigError`
  text, ``file:line: key = value: reason``, on stderr, before any socket is opened).

Clock (SPEC §9): ``real`` (default) or ``scaled:X``, both :class:`sipcore.clock.ScaledClock`
starting at phone time 0; ``virtual`` is refused because its jumps are only safe when the
harness shares the process. ``scaled:X@EPOCH`` (or ``real@EPOCH``) puts phone time 0 at the
wall time EPOCH (Unix seconds) instead: a harness passes its own clock's epoch, so both
processes read the same phone time.

Vendor emulation (SPEC §10, :mod:`phone.emulation`): with ``--provision URL --mac MAC
--http HOST:PORT`` instead of ``--config``, the daemon behaves like a vendor phone as the vendor
documents one: it fetches ``<URL>/<mac>.cfg`` at power-on and on ``key=AutoP`` (an unchanged file is
skipped, changed network keys reboot it for ``--reboot-seconds``), serves the Action URI on
``--http`` (port 0: any; the daemon prints ``http listening on HOST:PORT``) and, unless
``--no-https``, on ``--https`` with plain HTTP redirected there, takes ``--action-uri-auth``
credentials, shows the remote-control prompt until the file sets
``features.show_action_uri_option = 0``, asks the DNS server of ``--dhcp-dns`` unless the file
enables static DNS, caches DNS answers unless ``account.X.dns_cache_type = 0``, reads the key names
of ``--firmware 71|8x`` and calls the file's Action URLs. ``--emulate-fault NAME`` (repeatable) sets
it up badly on purpose, as a lab phone can be (:class:`phone.emulation.Fault`), to prove the
harness's lab preflight.

Thin adapter: all the phone's behaviour is :class:`phone.phone.Phone`; stdin/stdout go
through ``twisted.internet.stdio`` (non-blocking, so a slow reader never stalls the phone's
timers), and the shutdown is a reactor "before shutdown" trigger, so SIGINT, SIGTERM and
``quit`` take the same path.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, stdio

from sipharness.phone.console import COMMANDS, FIELDS, Console, event_json, parse_command

__all__ = ["main", "event_json", "parse_command", "COMMANDS"]


class _Daemon:
    def __init__(self, args: argparse.Namespace, config: Any, reactor: Any, clock: Any, dns: tuple[str, int] | None,
                 tls_context: Any = None, https_context: Any = None):
        from sipharness.phone.phone import Phone

        self.args, self.reactor, self.clock = args, reactor, clock
        self.emulation: Any = None
        self.phone: Any = None
        if config is not None:
            self.phone = Phone(config, clock=clock, reactor=reactor, dns_server=dns, local_host=args.local_host,
                               tls_context=tls_context, name=args.name)
        else:  # vendor emulation: the phone comes from the provisioning server
            from sipharness.phone.emulation import Fault, VendorEmulation

            allow = tuple(a for a in (args.action_uri_allow or "").split(",") if a)
            https = None
            if args.no_https:
                https_context = None
            else:
                https = args.https or (args.http[0], 0)
                https_context = https_context or _device_certificate(args.local_host)
            self.emulation = VendorEmulation(
                reactor=reactor, clock=clock, provision_url=args.provision, mac=args.mac, http=args.http,
                emit=self.emit, on_phone=self._attach, local_host=args.local_host, tls_context=tls_context,
                dhcp_dns=args.dhcp_dns, user=args.http_user, password=args.http_password, allow=allow, name=args.name,
                faults=[Fault(f) for f in args.emulate_fault or ()], firmware=args.firmware,
                auth=args.action_uri_auth, https=https, https_context=https_context,
                reboot_seconds=args.reboot_seconds)
        self.console = Console(self._command, self._eof)
        self.stopping = False

    # -- output
    def emit(self, kind: str, **fields: Any) -> None:
        self.console.write_line(event_json(kind, self.clock.seconds(), **fields))

    def _phone_event(self, ev: Any) -> None:
        self.console.write_line(event_json(ev.kind, ev.time, **{f: getattr(ev, f) for f in FIELDS}))

    def _attach(self, phone: Any) -> None:
        self.phone = phone
        if phone is not None:
            phone.events.subscribe(self._phone_event)

    # -- life cycle
    def start(self) -> None:
        if self.emulation is not None:
            self.emulation.start()
            self.emit("daemon", detail=f"started: clock {self.args.clock}, vendor emulation, mac {self.args.mac}")
            return
        self.phone.events.subscribe(self._phone_event)
        self.phone.start()
        accounts = sorted(self.phone.ua.fallbacks)
        self.emit("daemon", detail=f"started: clock {self.args.clock}, accounts {accounts}")

    @defer.inlineCallbacks
    def shutdown(self) -> Any:
        """Stop the phone (un-REGISTER first when asked, bounded), flush stdout, close stdio."""
        self.stopping = True
        self.emit("daemon", detail="stopping" + (": un-REGISTER" if self.args.unregister_on_exit else ""))
        if self.emulation is not None:
            self.emulation._stopped = True  # no re-provisioning, no callbacks while stopping
        phone = self.phone
        stop = phone.stop(unregister=self.args.unregister_on_exit) if phone is not None else defer.succeed(None)
        if self.args.unregister_on_exit:
            timer = self.reactor.callLater(self.args.stop_timeout, stop.cancel)  # wall seconds
            try:
                yield stop
            except defer.CancelledError:
                self.emit("error", detail=f"un-REGISTER not finished after {self.args.stop_timeout:g} s: stopped anyway")
                yield phone.stop(unregister=False)
            finally:
                if timer.active():
                    timer.cancel()
        else:
            yield stop
        if self.emulation is not None:
            yield self.emulation.stop()
        self.emit("daemon", detail="stopped")
        if self.console.transport is not None:
            self.console.transport.loseConnection()  # flushes what is buffered, then closes
            flushed = self.console.closed
            guard = self.reactor.callLater(2.0, lambda: flushed.called or flushed.callback(None))
            yield flushed
            if guard.active():
                guard.cancel()

    def quit(self) -> None:
        if not self.stopping and self.reactor.running:
            self.reactor.stop()  # goes through the "before shutdown" trigger

    # -- input
    def _eof(self) -> None:
        if self.args.exit_on_eof:
            self.quit()

    def _command(self, line: str) -> None:
        if self.stopping:
            return
        try:
            verb, args = parse_command(line)
        except ValueError as e:
            self.emit("error", detail=str(e).replace("\x00", ""))
            return
        try:
            if verb == "quit":
                self.quit()
                return
            if self.phone is None:
                raise ValueError("the phone has no configuration yet (not provisioned)")
            if verb == "call":
                account = int(args[1]) if len(args) > 1 else 1
                self.phone.call(args[0], account)  # the phone's call_state "calling" carries the Call-ID
            elif verb in ("answer", "hangup"):
                call = None
                if args:
                    call = self.phone.ua.calls.get(args[0])
                    if call is None:
                        raise ValueError(f"{verb}: no call with Call-ID {args[0]!r}")
                getattr(self.phone, verb)(call)
        except Exception as e:  # noqa: BLE001 - a bad command never takes the phone down
            self.emit("error", detail=f"{line.strip()!r}: {e}")


def _address(text: str, lowest: int = 1) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT (e.g. 127.0.0.1:5353)")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sipharness phone",
                                description="The bundled phone: events as JSON lines on stdout, commands on stdin "
                                            f"({COMMANDS}).")
    p.add_argument("--config", metavar="FILE", help="the phone's .cfg (SPEC §1); or --provision")
    p.add_argument("--dns", type=_address, metavar="HOST:PORT",
                   help="DNS server (default: static.network.primary_dns of the .cfg)")
    p.add_argument("--clock", default="real", metavar="real|scaled:X",
                   help="phone time: real (default) or scaled:X (X phone seconds per wall second); "
                        "add @EPOCH to put phone time 0 at that wall time (Unix seconds)")
    p.add_argument("--local-host", default="127.0.0.1", help="address the phone's sockets bind (default 127.0.0.1)")
    p.add_argument("--name", default="phone", help="name in the phone's log")
    p.add_argument("--unregister-on-exit", action="store_true", help="un-REGISTER (Expires: 0) before exiting")
    p.add_argument("--stop-timeout", type=float, default=5.0, metavar="S",
                   help="wall seconds the un-REGISTER may take at exit (default 5)")
    p.add_argument("--exit-on-eof", action="store_true", help="quit when stdin reaches EOF (default: keep running)")
    p.add_argument("--ca-file", metavar="PEM", help="CA certificates the phone trusts for SIP over TLS (vendor "
                                                   "emulation: its factory CAs, until a file sets trusted_certificates.url)")
    v = p.add_argument_group("vendor emulation (instead of --config; see phone/emulation.py)")
    v.add_argument("--provision", metavar="URL", help="provisioning server: fetch URL/<mac>.cfg at start and on AutoP")
    v.add_argument("--mac", metavar="MAC", help="the phone's MAC address, 12 hex digits (names <mac>.cfg)")
    v.add_argument("--http", type=lambda t: _address(t, 0), metavar="HOST:PORT",
                   help="Action URI server address (port 0: any, printed as 'http listening on HOST:PORT')")
    v.add_argument("--http-user", default="admin", help="web user until the .cfg sets one (default admin)")
    v.add_argument("--http-password", default="admin", help="web password until the .cfg sets one (default admin)")
    v.add_argument("--action-uri-allow", metavar="IP[,IP]",
                   help="Action URI whitelist until the .cfg sets features.action_uri_limit_ip "
                        "(default: the provisioning server's host)")
    v.add_argument("--action-uri-auth", choices=("basic", "login", "both"), default="login",
                   help="how the Action URI takes the web login: HTTP Basic, the login form "
                        "(p=login&q=login&username=..&pwd=..), or both (default login)")
    v.add_argument("--https", type=lambda t: _address(t, 0), metavar="HOST:PORT",
                   help="HTTPS Action URI (default: the --http host, any port; printed as 'https listening on')")
    v.add_argument("--no-https", action="store_true", help="plain HTTP only (default: HTTPS, HTTP redirected)")
    v.add_argument("--https-cert", metavar="PEM", help="the web server's certificate chain (default: made up)")
    v.add_argument("--https-key", metavar="PEM", help="its private key")
    v.add_argument("--firmware", choices=("71", "8x"), default="8x",
                   help="firmware generation: which .cfg key names the phone knows (default 8x)")
    v.add_argument("--dhcp-dns", type=_address, metavar="HOST:PORT",
                   help="the DNS server the lab's DHCP hands out (default: none); used unless the file enables "
                        "static DNS")
    v.add_argument("--reboot-seconds", type=float, default=1.0, metavar="S",
                   help="wall seconds a reboot takes (after a file changes network keys; default 1)")
    from sipharness.phone.emulation import Fault

    faults = [f.value for f in Fault]
    v.add_argument("--emulate-fault", action="append", metavar="NAME", choices=faults,
                   help="set the emulated phone up badly on purpose, as a lab phone can be (repeatable): "
                        + ", ".join(faults))
    return p


def main(argv: list[str] | None = None, reactor: Any = None) -> int:
    """Run the daemon until quit / SIGINT / SIGTERM; the exit status (0, or 2 for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from sipharness.phone.config import ConfigError, load_config
    from sipharness.sipcore.clock import ScaledClock, parse_clock_spec

    spec, _, epoch_text = args.clock.partition("@")
    try:
        kind, speed = parse_clock_spec(spec)
        if kind == "virtual":
            raise ValueError("clock 'virtual' needs the harness's process: use real or scaled:X here")
        epoch = float(epoch_text) if epoch_text else None
    except ValueError as e:
        print(f"sipharness phone: --clock {args.clock}: {e}", file=sys.stderr)
        return 2
    problem = _vendor_args_problem(args)
    if problem:
        print(f"sipharness phone: {problem}", file=sys.stderr)
        return 2
    tls_context = None
    if args.ca_file:
        try:
            tls_context = _client_tls(args.ca_file)
        except Exception as e:  # noqa: BLE001 - any unreadable CA file is a bad command line
            print(f"sipharness phone: --ca-file {args.ca_file}: {e}", file=sys.stderr)
            return 2
    https_context = None
    if args.https_cert and args.https_key:
        try:
            https_context = _device_certificate(args.local_host, args.https_cert, args.https_key)
        except (OSError, ValueError) as e:  # unreadable, not PEM, or a key that is not the certificate's
            print(f"sipharness phone: --https-cert {args.https_cert} --https-key {args.https_key}: {e}",
                  file=sys.stderr)
            return 2
    config = None
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as e:
            print(f"sipharness phone: {args.config}: configuration refused, nothing started:\n{e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"sipharness phone: --config {args.config}: {e.strerror or e}", file=sys.stderr)
            return 2
        for warning in getattr(config, "warnings", []):
            print(f"sipharness phone: warning: {warning}", file=sys.stderr)
    dns = args.dns
    if dns is None and config is not None and config.dns_server:
        dns = (config.dns_server, config.dns_port)

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    _log_warnings_to_stderr()
    start = 0.0 if epoch is None else (reactor.seconds() - epoch) * speed
    clock = ScaledClock(reactor, speed, start=start)
    daemon = _Daemon(args, config, reactor, clock, dns, tls_context, https_context)
    stdio.StandardIO(daemon.console, reactor=reactor)
    reactor.addSystemEventTrigger("before", "shutdown", daemon.shutdown)
    reactor.callWhenRunning(daemon.start)
    _freeze_startup_objects()
    reactor.run()  # installs SIGINT/SIGTERM handlers that stop the reactor → shutdown above
    return 0


def _freeze_startup_objects() -> None:
    """Keep the garbage collector's full passes off the phone's timers (SPEC §9, scaled clock).

    What start-up imported (Twisted, OpenSSL, the phone: ~50 000 tracked objects) lives as long as
    the process, yet every full collection walked it: measured 74 ms on the CI box, a pause that
    a scaled:20 clock turns into 1.5 phone seconds, far past its 20 ms wall tolerance (a suite
    saw a REGISTER 0.9 s late after a warm emulated phone had served one more file).
    ``gc.freeze()`` moves those objects out of the collector's sight (Python's own advice for
    long-lived processes); full passes then cost about nothing. Objects made later (phones,
    calls, files) are collected as before."""
    import gc

    gc.collect()
    gc.freeze()


def _vendor_args_problem(args: argparse.Namespace) -> str | None:
    """Why the command line is neither ``--config FILE`` nor a complete vendor emulation (or None)."""
    if args.config and args.provision:
        return "--config and --provision exclude each other"
    if not args.config and not args.provision:
        return "give --config FILE, or --provision URL --mac MAC --http HOST:PORT (vendor emulation)"
    if args.emulate_fault and not args.provision:
        return "--emulate-fault is for the vendor emulation (--provision URL --mac MAC --http HOST:PORT)"
    if args.provision and args.dns:
        return "--dns is for --config; a vendor phone's DNS comes from its file or from DHCP (--dhcp-dns HOST:PORT)"
    if bool(args.https_cert) != bool(args.https_key):
        return "--https-cert and --https-key go together"
    if args.provision:
        if not args.provision.startswith(("http://", "https://")):
            return f"--provision {args.provision!r}: expected an http:// URL"
        if not args.mac or not re.fullmatch(r"[0-9A-Fa-f]{12}", args.mac):
            return f"--mac {args.mac!r}: expected 12 hex digits (e.g. 001565000001)"
        if args.http is None:
            return "--provision needs --http HOST:PORT (where the Action URI listens)"
        if args.action_uri_allow is None:
            args.action_uri_allow = urlsplit(args.provision).hostname or ""
    return None


def _device_certificate(host: str, cert: str | None = None, key: str | None = None) -> Any:
    """The emulated phone's HTTPS server context: the given chain and key, else one made up for ``host``
    (a lab phone's certificate is its vendor's; the harness does not check it)."""
    from sipharness.sipcore.tls import server_options

    if cert and key:
        with open(cert, "rb") as c, open(key, "rb") as k:
            return server_options(c.read(), k.read())
    import trustme

    # an ECDSA key: a handshake costs the phone a fraction of an RSA one (its SIP timers share the process)
    leaf = trustme.CA(key_type=trustme.KeyType.ECDSA, organization_name="emulated phone vendor CA").issue_cert(host)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return server_options(chain, leaf.private_key_pem.bytes())


def _client_tls(ca_file: str) -> Any:
    from twisted.internet import ssl

    with open(ca_file, "rb") as f:
        return ssl.optionsForClientTLS("127.0.0.1", trustRoot=ssl.Certificate.loadPEM(f.read()))


def _log_warnings_to_stderr() -> None:
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
                                     redirectStandardIO=False)


if __name__ == "__main__":
    sys.exit(main())
