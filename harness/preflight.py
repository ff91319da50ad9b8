"""The lab preflight (SPEC §10): prove the lab before the first test against a phone in another process.

Why: a phone in a lab (or baresip, or the emulated vendor phone) depends on things the harness
does not control: it must answer its control channel, fetch its file, ask *our* DNS, reach our
fakes, trust our CA. A lab that gets one of these wrong makes every test fail, and each
failure would read as a *finding* against the phone. The preflight checks them once, step by
step, each with a deadline, on a trivial lab of its own, and ends the run as a **lab problem**
that names the fix (:class:`harness.report.LabProblem`) instead. Only a finding counts against
a phone; a lab problem never does.

The steps, in order (each failure names the ``.cfg`` keys the phone did not honour, so a key a
phone withholds shows up here, not as a finding):

1. **control channel**: the DUT answers its own means of control (:meth:`DeviceUnderTest.ping`:
   a vendor phone's Action URI, baresip's ``ctrl_tcp``).
2. **configuration**: the DUT takes the preflight file (``start()``: a vendor phone is told
   ``key=AutoP`` and must fetch ``<mac>.cfg`` from the provisioning server).
3. **register**: account 1, an IP literal on UDP (no DNS needed), REGISTERs with a fake, the
   fake answers 200, and the DUT reports ``registered`` (for a vendor phone: its Action URL
   callback reached the harness).
4. **dns**: the phone asks the fake DNS (seen in its query log) for a name that exists only
   for this preflight (``account.2``'s server, port 0: an SRV query ``_sip._udp.<name>``, then
   A, SPEC §2). A lab phone asks port 53 only; the DUT's hint names its static-DNS keys.
5. **dns cache** (a DUT that keeps running between tests: ``fetches_config``): the name's SRV
   record moves to another fake, and the phone is re-provisioned with account 2 under a new
   user: it must register at the new port. A phone that answers from its DNS cache (a vendor
   phone's default, ``account.X.dns_cache_type = 1``) registers at the old one, and every test
   after the first would meet the previous test's targets.
6. **tls** (only when TLS tests are selected): ``account.3`` on TLS to the fake's IP literal:
   a SIP message arrives over TLS, so the handshake with a certificate of the harness's CA
   succeeded.

Register comes before DNS so each failure points at one cause: a phone that cannot register on
an IP literal is not a DNS problem (SPEC §10 [interp]: the SPEC lists what the preflight proves,
not in which order). Deadlines are wall seconds (a lab's network answers in
wall time, whatever the test clock says). Pytest-agnostic: the plugin runs it once per session
(per xdist worker) and stops the run when it fails.
"""

from __future__ import annotations

import enum
import secrets
import time
from typing import Any, Awaitable

from twisted.internet import defer
from twisted.python.failure import Failure

from sipharness.sipcore.journal import WaitTimeout

from .lab import Lab
from .report import HarnessError, LabProblem

__all__ = ["Step", "run_preflight", "PREFLIGHT_ZONE", "DEFAULT_TIMEOUT"]

PREFLIGHT_ZONE = "preflight.sipharness.test"
DEFAULT_TIMEOUT = 30.0  # wall seconds per step
USERS = {1: "9001", 2: "9002", 3: "9003"}  # one user per preflight account (a vendor phone's callbacks name it)
MOVED_USER = "9004"  # account 2's user once its server moved (a new identity: any phone registers it)


class Step(enum.Enum):
    """A preflight step; the value is its name in messages."""

    CONTROL = "control channel"
    CONFIGURATION = "configuration"
    REGISTER = "register"
    DNS = "dns"
    DNS_CACHE = "dns cache"
    TLS = "tls"


class _Run:
    def __init__(self, lab: Lab, *, timeout: float, tls: bool, reactor: Any):
        self.lab, self.dut, self.timeout, self.tls, self.reactor = lab, lab.dut, timeout, tls, reactor
        self.cache_step = bool(getattr(lab.dut, "fetches_config", False))
        self.steps = ([Step.CONTROL, Step.CONFIGURATION, Step.REGISTER, Step.DNS]
                      + ([Step.DNS_CACHE] if self.cache_step else []) + ([Step.TLS] if tls else []))
        self.passed: list[str] = []
        self.name = f"pf-{secrets.token_hex(4)}.{PREFLIGHT_ZONE}"
        self.speed = float(getattr(lab.clock, "speed", 1.0))

    # -------------------------------------------------------------------------------- the trivial lab
    async def build(self) -> str:
        lab = self.lab
        self.registrar = await lab.server("primary", "udp")
        self.by_name = await lab.server("secondary", "udp")  # account 2, reached through the preflight name
        self.host, self.port = self.registrar.addresses["udp"]
        named_host, self.named_port = self.by_name.addresses["udp"]
        if self.tls:
            if lab.tls is None:
                raise HarnessError("lab preflight: TLS tests are selected but the lab has no test PKI")
            await defer.maybeDeferred(self.registrar.listen, "tls", 0, context=lab.tls.server_context())
            self.tls_port = self.registrar.addresses["tls"][1]
        self.named_host = named_host
        self.srv = f"_sip._udp.{self.name}"
        self.fake_dns = await lab.dns(lab.soa(PREFLIGHT_ZONE) + f"{self.srv}. 60 IN SRV 0 10 {self.named_port} "
                                      f"{self.name}.\n{self.name}. 60 IN A {named_host}\n", name="dns")
        expires = lab.value("expires")
        accounts = {1: {"sip_server.1.address": self.host, "sip_server.1.port": self.port, "transport": 0},
                    2: {"sip_server.1.address": self.name, "sip_server.1.port": 0, "transport": 0}}
        if self.tls:
            accounts[3] = {"sip_server.1.address": self.host, "sip_server.1.port": self.tls_port, "transport": 2}
        text = ""
        self.accounts = accounts
        self.cfg_text = self._text(USERS)
        return self.cfg_text

    def _text(self, users: dict[int, str]) -> str:
        text = ""
        for x, keys in self.accounts.items():
            user = users[x]
            full = {"enable": 1, "label": user, "display_name": user, "auth_name": user, "user_name": user,
                    "password": user, **keys, "sip_server.1.expires": self.lab.value("expires")}
            if x == 1:
                text = self.lab.write_cfg(self.fake_dns, full, index=1)
            else:
                text += "".join(f"account.{x}.{k} = {v}\n" for k, v in full.items())
        return text

    # -------------------------------------------------------------------------------- steps
    def _fail(self, step: Step, problem: str, fix: str, evidence: str = "", *, hint: str | None = None) -> LabProblem:
        n = self.steps.index(step) + 1
        hint = self.dut.lab_hint(hint or step.value)
        return LabProblem(f"lab preflight, step {n}/{len(self.steps)} '{step.value}': {problem}",
                          fix + (f"; {hint}" if hint else ""), step=step.value, evidence=evidence)

    async def _bounded(self, step: Step, work: Awaitable[Any], seconds: float, what: str, fix: str) -> Any:
        """``work`` within ``seconds`` of wall time; a LabProblem of the DUT's own is re-labelled with the step."""
        d = defer.ensureDeferred(work) if not isinstance(work, defer.Deferred) else work
        out: defer.Deferred = defer.Deferred()
        timer = self.reactor.callLater(seconds, lambda: out.called or out.errback(defer.TimeoutError()))

        def done(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if not out.called:
                out.callback(result)  # (a Failure errbacks ``out``)
            elif isinstance(result, Failure):
                result.trap(defer.CancelledError)
        d.addBoth(done)
        try:
            return await out
        except defer.TimeoutError:
            d.cancel()
            raise self._fail(step, f"{what} within {seconds:g} s", fix) from None
        except LabProblem as e:
            if e.step in {s.value for s in Step}:
                raise
            raise self._fail(step, e.problem, e.fix, e.evidence) from e

    async def _seen(self, match: Any, what: str) -> Any:
        """The first record ``match`` accepts within the step's deadline (None after it)."""
        try:
            return await self.lab.recorder.wait_for(match, self.timeout * self.speed, what=what)
        except WaitTimeout:
            return None

    async def control(self) -> None:
        # (a generous bound: an emulated phone's process starts here, with deadlines of its own)
        await self._bounded(Step.CONTROL, self.dut.apply_config(self.cfg_text), self.timeout + 60.0,
                            f"the {self.dut.kind} DUT did not take the preflight file", "see the DUT's own output")
        answer = await self._bounded(Step.CONTROL, self.dut.ping(), self.timeout,
                                     f"the {self.dut.kind} DUT's control channel did not answer",
                                     "check that the DUT is on and reachable from this host")
        # (the DUT's own hint, e.g. the options naming its address, follows the fix)
        self.passed.append(f"control channel: {answer}")

    async def configuration(self) -> None:
        kind = self.dut.kind
        what = (f"the {kind} DUT did not fetch its configuration" if self.dut.fetches_config else
                f"the {kind} DUT did not start with its configuration")
        # (a bound above the DUT's own deadlines, e.g. a vendor phone's --provision-timeout, whose
        # message names the fix: this one only catches a DUT that has none)
        await self._bounded(Step.CONFIGURATION, self.dut.start(), self.timeout + 30.0, what,
                            "see the DUT's output")
        self.passed.append("configuration: " + ("fetched" if self.dut.fetches_config else "started"))

    async def register(self) -> None:
        where = f"{self.host}:{self.port}"
        keys = (f"account.1.enable = 1, account.1.sip_server.1.address = {self.host}, "
                f"account.1.sip_server.1.port = {self.port}, account.1.transport = 0 (UDP)")
        sent = await self._seen(lambda r: r.kind == "sip" and r.direction == "in" and r.server == "primary"
                                and r.method == "REGISTER" and r.transport == "udp", f"a REGISTER to {where}")
        if sent is None:
            raise self._fail(Step.REGISTER, f"the phone sent no REGISTER to the fake registrar at {where} (UDP) "
                                            f"within {self.timeout:g} s",
                             f"the file says {keys}: make sure the phone applies these keys and reaches "
                             f"{self.host} over UDP (no firewall, no outbound proxy, no other SIP server)")
        ok = await self._seen(lambda r: r.kind == "sip" and r.direction == "out" and r.server == "primary"
                              and r.method == "REGISTER" and r.status is not None and 200 <= r.status < 300,
                              f"a 2xx to REGISTER from {where}")
        if ok is None:
            raise HarnessError(f"lab preflight, step 'register': the fake registrar at {where} did not accept "
                               f"the phone's REGISTER within {self.timeout:g} s")
        try:
            await self.dut.wait_registered(account=1, timeout=self.timeout * self.speed)
        except WaitTimeout:
            raise self._fail(Step.REGISTER, f"the fake registrar at {where} accepted account 1's REGISTER (t = "
                                            f"{ok.time:.3f} s) but the {self.dut.kind} DUT did not report it "
                                            f"within {self.timeout:g} s",
                             "the phone's events must reach the harness", hint="events") from None
        self.passed.append(f"register: account 1 registered with {where}")

    def _asked(self, r: Any) -> bool:
        return r.kind == "dns" and r.direction == "in" and (r.name or "").rstrip(".").lower().endswith(self.name)

    async def dns(self) -> None:
        host, port = self.fake_dns.address
        seen = await self._seen(self._asked, f"a DNS query for {self.srv} or {self.name}")
        if seen is None:
            where = f"{host}{f' port {port}' if port != 53 else ''}"
            others = sorted({(r.name or "").rstrip(".") for r in self.lab.recorder.dns(direction="in")} - {""})
            evidence = f"the fake DNS saw queries for: {', '.join(others[:8])}" if others else \
                "the fake DNS saw no query at all"
            keys = "" if self.dut.lab_hint("dns") else (
                f" (static.network.primary_dns = {host}" + (f", static.network.primary_dns_port = {port}"
                                                            if port != 53 else "") + " in the file)")
            raise self._fail(Step.DNS, f"the phone never queried {host}:{port} for {self.srv} within "
                                       f"{self.timeout:g} s",
                             f"set static DNS on the phone to {where}{keys} and let it take no DNS server from "
                             f"DHCP; the file's account.2.sip_server.1.address = {self.name} needs it", evidence)
        self.passed.append(f"dns: the phone asked {host}:{port} for {(seen.name or '').rstrip('.')} ({seen.qtype})")

    async def dns_cache(self) -> None:
        """The name's SRV record moves to another fake; account 2 re-provisioned must register there."""
        old = (self.named_host, self.named_port)
        moved = await self.lab.server("pf-moved", "udp", host=self.named_host)
        new = moved.addresses["udp"]
        self.fake_dns.replace(self.srv, "SRV", [f"0 10 {new[1]} {self.name}."])
        mark = len(self.lab.recorder)
        users = {**USERS, 2: MOVED_USER}
        await self._bounded(Step.DNS_CACHE, self.dut.apply_config(self._text(users)), self.timeout + 30.0,
                            f"the {self.dut.kind} DUT did not take the changed file", "see the DUT's output")
        await self._bounded(Step.DNS_CACHE, self.dut.start(), self.timeout + 30.0,
                            f"the {self.dut.kind} DUT did not fetch its changed file", "see the DUT's output")
        seen = await self._first_register(mark, {old, new})
        if seen is not None and seen.local == new:
            self.passed.append(f"dns cache: after {self.srv} moved to port {new[1]}, the phone asked again and "
                               f"registered there")
            return
        if seen is not None:
            raise self._fail(Step.DNS_CACHE, f"the phone answered {self.srv} from its DNS cache: after the record "
                                             f"moved from port {old[1]} to {new[1]} and the phone was re-provisioned, "
                                             f"account 2 registered at the old {old[0]}:{old[1]}",
                             "turn the phone's DNS cache off: every test brings the same names on new ports")
        raise self._fail(Step.DNS_CACHE, f"the phone did not register account 2 ({MOVED_USER}) again within "
                                         f"{self.timeout:g} s of its re-provisioning (its SRV record had moved to "
                                         f"port {new[1]})",
                         "the phone must apply a changed file at once and register a changed account")

    async def _first_register(self, mark: int, at: set[tuple[str, int]]) -> Any:
        """The first REGISTER for the moved user to one of ``at`` (fake addresses) after record ``mark``."""
        aor = f"sip:{MOVED_USER}@".encode()

        def match(r: Any) -> bool:
            return (r.kind == "sip" and r.direction == "in" and r.method == "REGISTER" and tuple(r.local) in at
                    and aor in (r.raw or b""))
        try:
            return await self.lab.recorder.wait_for(match, self.timeout * self.speed, since=mark,
                                                    what=f"a REGISTER of {MOVED_USER}")
        except WaitTimeout:
            return None

    async def tls_handshake(self) -> None:
        where = f"{self.host}:{self.tls_port}"
        seen = await self._seen(lambda r: r.kind == "sip" and r.direction == "in" and r.server == "primary"
                                and r.transport == "tls", f"a SIP message over TLS to {where}")
        if seen is None:
            ca = getattr(self.lab.tls, "ca_file", None) or "the harness's CA (tls_pki.ca_file)"
            raise self._fail(Step.TLS, f"the phone completed no TLS handshake with the fake at {where} within "
                                       f"{self.timeout:g} s (the file's account.3: sip_server.1.address = {self.host}, "
                                       f"port {self.tls_port}, account.3.transport = 2 (TLS))",
                             f"make the phone trust the harness's CA: install {ca} as a trusted CA certificate")
        self.passed.append(f"tls: handshake with {where} ({seen.summary})")

    def fake_errors(self) -> list[BaseException]:
        out: list[BaseException] = list(getattr(self.lab.recorder, "errors", ()) or ())
        for fake in self.lab.fakes:
            out += [e for e in getattr(fake, "errors", ()) or () if e not in out]
        return out


async def run_preflight(lab: Lab, *, timeout: float = DEFAULT_TIMEOUT, tls: bool = False,
                        reactor: Any = None) -> list[str]:
    """Prove the lab with ``lab.dut`` (not yet configured); one line per step passed.

    Raises :class:`LabProblem` (the step, what went wrong, what to fix) or :class:`HarnessError`
    (a fake failed: not the lab's fault). Everything the preflight built is stopped on return."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    run = _Run(lab, timeout=timeout, tls=tls, reactor=reactor)
    t0 = time.monotonic()
    try:
        await run.build()
        await run.control()
        await run.configuration()
        await run.register()
        await run.dns()
        if run.cache_step:
            await run.dns_cache()
        if tls:
            await run.tls_handshake()
        errors = run.fake_errors()
        if errors:
            raise HarnessError(f"lab preflight: the fakes hit {len(errors)} error(s) while serving: {errors[0]!r}") \
                from errors[0]
    finally:
        try:
            await lab.down()
        except Exception as e:  # noqa: BLE001 - the preflight's own verdict matters more than a teardown note
            run.passed.append(f"(teardown: {e})")
    run.passed.append(f"{len(run.steps)} steps in {time.monotonic() - t0:.1f} s")
    return run.passed
