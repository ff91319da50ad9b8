"""One lab phone for the whole pytest session: its provisioning server, its Action URI, what it has applied.

Why: a lab phone is powered on for the whole run and reboots when it likes (after its network
keys change, after a power cut). If the harness's provisioning server were up only during tests,
a phone that rebooted between two tests would find nothing at its provisioning URL. So a
:class:`PhoneSession` starts the server once and keeps it, serving the parked file between tests
(every account disabled); it keeps the Action URI client (which learned the phone's scheme and
login), a serial number for the files (each one's MD5 is new), the network keys the phone has
applied (a change reboots it), and the phone's power-on reports (``setup_completed``,
``setup_autop_finish``). A test's DUT *attaches* to the session (callbacks go to it) and
*detaches* at its end (callbacks between tests are dropped). With ``--phone-ip emulate`` the
session also owns the emulated phone's process, powered on once and kept.

Sessions live in this process's registry (:func:`session_for`) until :func:`close_sessions`
(the plugin calls it when the pytest session ends; a session whose phone misbehaved is closed
at once, so the next test starts from a fresh one).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from sipharness.sipcore.journal import Journal, WaitTimeout

from .action_uri import ActionUriClient
from .action_url import POWER_ON_EVENTS
from .emulated import EmulatedPhone, spawn_emulated
from .provisioning import ProvisioningServer
from .vendor_errors import VendorError, VendorLabProblem

__all__ = ["PhoneSession", "session_for", "close_sessions", "sessions"]

_SESSIONS: dict[tuple, "PhoneSession"] = {}


def sessions() -> list["PhoneSession"]:
    return list(_SESSIONS.values())


def session_for(key: tuple, make: Any) -> "PhoneSession":
    """The open session of ``key``, or a new one from ``make()``."""
    s = _SESSIONS.get(key)
    if s is None or s.closed:
        s = _SESSIONS[key] = make()
        s.key = key
    return s


async def close_sessions() -> None:
    """End every session of this process (servers stopped, emulated phones ended)."""
    for s in list(_SESSIONS.values()):
        await s.close()


class PhoneSession:
    """A lab phone's side of the harness, for as long as the pytest session runs."""

    def __init__(self, reactor: Any, *, phone_host: str, phone_http: str | None, lab_address: str,
                 provision_port: int, user: str, password: str, auth: str = "auto"):
        self.reactor = reactor
        self.key: tuple = ()
        self.phone_host = phone_host
        self.lab_address = lab_address
        self.closed = False
        self.dut: Any = None
        self._gate = 0  # callbacks reach the DUT after the first fetch from this index on
        self.serial = 0
        self.network: tuple | None = None  # the network rows the phone has applied (None: not known)
        self.epoch: float | None = None  # the emulated phone's phone time 0 (wall seconds)
        self.proc: EmulatedPhone | None = None
        self.errors: list[BaseException] = []  # serving errors while no test is attached
        self.notes: list[str] = []
        self.power_on: Journal[str] = Journal(reactor)  # setup_completed / setup_autop_finish, in wall time
        self.prov = ProvisioningServer(reactor=reactor, host=lab_address, port=provision_port, phone_host=phone_host,
                                       on_callback=self._callback, on_refused=self._refused, on_error=self._error,
                                       errors=self.errors)
        self.prov.start()
        self.client = ActionUriClient(reactor, phone_http, user=user, password=password, bind=lab_address,
                                      auth=auth, lab_address=lab_address)

    @property
    def url(self) -> str:
        return self.prov.url

    # -------------------------------------------------------------------------------- the test attached
    def attach(self, dut: Any) -> None:
        """Callbacks go to ``dut`` once the phone has fetched a file served from now on: what it reports
        before that (a callback still in flight, an event of the previous file) is the previous test's."""
        self.dut = dut
        self._gate = len(self.prov.fetches)
        self.prov.errors = dut.serving_errors

    def detach(self, dut: Any) -> None:
        if self.dut is dut:
            self.dut = None
            self.prov.errors = self.errors

    def _callback(self, event: str, params: dict[str, str], client: str) -> None:
        if event in POWER_ON_EVENTS:
            self.power_on.append(event)
        if self.dut is None:
            return
        if not any(f.mac is not None and f.status == 200 for f in list(self.prov.fetches)[self._gate:]):
            self.notes.append(f"action URL {event} from {client} before the test's file was fetched: dropped")
            return
        self.dut._callback(event, params, client)

    def _refused(self, message: str) -> None:
        if self.dut is not None:
            self.dut._refused(message)
        else:
            self.notes.append(message)

    def _error(self, e: BaseException) -> None:
        if self.dut is not None:
            self.dut._serving_error(e)

    # -------------------------------------------------------------------------------- provisioning
    def serve(self, text: str) -> None:
        self.prov.cfg_text = text

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def fetched_before(self, mark: int) -> bool:
        """Whether the phone fetched its file from this session's server before fetch number ``mark``."""
        return any(f.mac is not None and f.status == 200 for f in list(self.prov.fetches)[:mark])

    async def provision(self, step: str, timeout: float, tail: str = "") -> None:
        """``key=AutoP``, then the phone's next fetch of ``<mac>.cfg`` within ``timeout`` wall seconds."""
        mark = len(self.prov.fetches)
        await self.client.request(f"trigger {step} (Action URI key=AutoP)", "key=AutoP")
        try:
            await self.prov.wait_fetch(timeout, since=mark)
        except WaitTimeout:
            if self.fetched_before(mark):
                raise VendorLabProblem(
                    f"step '{step}': the phone at {self.phone_host} fetched <mac>.cfg from {self.url} before (so "
                    f"its provisioning URL is right) but did not act on key=AutoP within {timeout:g} s: it is "
                    f"probably showing 'Allow remote control?'",
                    "press OK on the phone (every file sets features.show_action_uri_option = 0, which keeps the "
                    "prompt away once the phone has applied one), or set it on the phone's web page: Features > "
                    "Remote Control", evidence=tail) from None
            raise VendorLabProblem(
                f"step '{step}': the phone at {self.phone_host} accepted key=AutoP but did not fetch <mac>.cfg "
                f"within {timeout:g} s", f"set its provisioning server URL to {self.url} (docs/lab.md); if its "
                                         f"screen shows 'Allow remote control?', press OK", evidence=tail) from None

    async def settle(self, network: tuple, *, reboot_timeout: float, grace: float, step: str, tail: Any) -> str:
        """After a fetch: wait until the phone is ready; what happened ("applied", "rebooted").

        Unchanged network keys: nothing to wait for (it applies the file at once). Changed ones
        reboot it: ready at its ``setup_autop_finish`` ("completes auto provisioning via power on").
        Unknown (the session's first file to a lab phone): its Action URI is asked every second
        for ``grace`` s; a phone that stops answering is rebooting and is waited for as above."""
        if self.network == network:
            return "applied"
        known_change = self.network is not None
        mark = len(self.power_on)
        self.network = network
        if not known_change and grace > 0:
            for _ in range(int(grace)):
                d: defer.Deferred = defer.Deferred()
                self.reactor.callLater(1.0, d.callback, None)
                await d
                if len(self.power_on) > mark:
                    break
                try:
                    await self.client.request(f"{step}: is the phone up? (Action URI phonecfg=get)",
                                              "phonecfg=get&accounts=1")
                except VendorLabProblem:
                    break  # no answer: rebooting
            else:
                return "applied"
        await self.wait_power_on(mark, reboot_timeout, step=step, tail=tail,
                                 why="its network keys changed (the vendor reboots the phone for them)")
        return "rebooted"

    async def wait_power_on(self, mark: int, timeout: float, *, step: str, tail: Any, why: str) -> None:
        try:
            await self.power_on.wait_for(lambda e: e == "setup_autop_finish", timeout, since=mark,
                                         what="action URL setup_autop_finish")
        except WaitTimeout:
            seen = list(self.power_on)[mark:]
            raise VendorLabProblem(
                f"step '{step}': the phone was to reboot ({why}) but did not report action URL "
                f"setup_autop_finish within {timeout:g} s" + (f" (it reported {', '.join(seen)})" if seen else ""),
                f"its action_url.setup_autop_finish = {self.url}action/setup_autop_finish?... must reach this "
                f"host (the file sets it; a phone that rebooted applies it at power-on); a slow phone needs a "
                f"longer --reboot-timeout", evidence=tail() if callable(tail) else tail) from None

    # -------------------------------------------------------------------------------- the emulated phone
    async def power_on_emulated(self, args: list[str], *, timeout: float, fetch_timeout: float, epoch: float,
                                network: tuple) -> None:
        """Spawn the emulated phone and wait until it is ready, as a lab phone is before a run.

        It fetches the served (parked) file at power-on; its network keys reboot it, and it is
        ready at its ``setup_autop_finish``. A phone that fetches nothing is left on as it is:
        ``start()`` then names its provisioning URL, as for a lab phone."""
        self.epoch = epoch
        mark, fetches = len(self.power_on), len(self.prov.fetches)
        self.proc = await spawn_emulated(self.reactor, args, on_end=self._proc_ended)
        self.client.set_address(self.proc.listening.result)
        try:
            await self.prov.wait_fetch(fetch_timeout, since=fetches)
        except WaitTimeout:
            return
        self.network = network
        await self.wait_power_on(mark, timeout, step="power on the emulated phone", tail=self.proc.output,
                                 why="its first file brings network keys")

    def _proc_ended(self, proc: EmulatedPhone) -> None:
        if proc is self.proc and not self.closed:
            err = VendorError(f"the emulated phone exited unexpectedly (status {proc.status}):\n{proc.output()}")
            if self.dut is not None:
                self.dut._fail(err)
            defer.ensureDeferred(self.close())

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and not self.proc.ended else None

    # -------------------------------------------------------------------------------- end
    async def close(self) -> None:
        """Stop the provisioning server and end the emulated phone (idempotent)."""
        self.closed = True
        if _SESSIONS.get(self.key) is self:
            del _SESSIONS[self.key]
        proc, self.proc = self.proc, None
        try:
            await self.client.close()
            if proc is not None:
                await proc.reap(self.reactor)
        finally:
            await self.prov.stop()

    def output(self) -> str:
        return self.proc.output() if self.proc is not None else ""

