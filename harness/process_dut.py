"""The base of every device under test that runs in another process (SPEC §10): its life and its failures.

Why one base: baresip, the PJSIP driver, linphone-daemon and the vendor phone's emulation are all a
child process the harness spawns, talks to, and must never leak. The handling is the same for each
and lives here once:

- :func:`spawn_child` (``ProcessDut._spawn``): ``reactor.spawnProcess`` (the reactor is never
  blocked), the pid registered with :mod:`harness.child` (an ``atexit`` SIGKILL reaps what a
  crashed run left), a clear error naming the command when it cannot start; :func:`module_env`
  for a child that is a module of this checkout (the PJSIP driver, the emulated vendor phone);
- :func:`reap_child` (``ProcessDut.stop()``, idempotent): walks the kind's stop steps (a polite
  command, then signals) each with a wall-clock grace, raises if the process survived SIGKILL,
  then ``_cleanup`` (temporary files);
- a child that ends while nobody stopped it (the stack crashed) is a **harness error**: every
  pending and later wait of the test fails at once with the child's own output, and the error
  is a serving error the plugin reports (SPEC §10: never a finding, and never the test
  process's death: the stack crashed in its own process);
- ``_safe``: a command the suites fire and forget (dial, answer, hang up) that fails becomes a
  ``call_state failed`` event, never an unhandled error;
- ``apply_config``: the ``.cfg`` read with :func:`harness.translation.read_cfg` and checked
  against the translation table for ``stack`` (a key the stack cannot express raises
  :class:`NotExpressible`: the test is skipped, not judged).

The vendor phone's driver (harness/vendor.py) is no ``ProcessDut``: a lab phone is no child of the
harness, and the emulated one belongs to the pytest session (harness/vendor_session.py: powered on
once, kept across tests), not to one test's DUT. Its process (harness/emulated.py) is started and
ended by the same :func:`spawn_child` and :func:`reap_child`.

Deadlines of process steps are wall seconds on the reactor (a process starts in wall time,
whatever the test clock says); event times are phone seconds of the test's clock.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.python.failure import Failure

from sipharness.sipcore.events import CallState, EventKind

from . import translation
from .child import ChildProcess, deadline, track
from .dut import DutEvent, HarnessErrorsEndWaits
from .report import HarnessError, LabProblem

__all__ = ["ProcessDut", "ProcessDutError", "ProcessDutLabProblem", "free_port", "pause", "Step", "spawn_child",
           "reap_child", "module_env"]

#: one step of stopping a child: a signal, or a callable that asks it politely; and its grace (wall s)
Step = tuple[Any, float]


class ProcessDutError(HarnessError):
    """A step of driving a phone in another process failed; the message names the step."""


class ProcessDutLabProblem(ProcessDutError, LabProblem):
    """The phone cannot run on this machine (not installed, a module missing): ``fix`` says what to do."""


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free on ``host`` now (for a child that must be told one: its control socket, its SIP port)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def module_env(**extra: str) -> dict[str, str]:
    """The environment of a child that runs a module of this checkout (``python -m sipharness...``):
    this checkout first on its ``PYTHONPATH``, so the child runs the code the test runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def spawn_child(reactor: Any, proc: ChildProcess, argv: list[str], *, kind: str,
                error: type[Exception] = ProcessDutError, env: dict[str, str] | None = None,
                path: str | None = None, child_fds: dict[int, Any] | None = None) -> Any:
    """Start ``argv`` with ``proc`` as its protocol and track it until it ends; the process transport.

    A command that cannot start raises ``error`` naming ``kind`` and the command."""
    kw: dict[str, Any] = {"env": dict(os.environ) if env is None else env, "path": path}
    if child_fds is not None:
        kw["childFDs"] = child_fds
    try:
        ptransport = reactor.spawnProcess(proc, argv[0], argv, **kw)
    except OSError as e:
        raise error(f"{kind}: cannot run {shlex.join(argv)}: {e}") from None
    if proc.pid is not None and not proc.ended:
        track(proc.pid, ptransport, kind)
    return ptransport


async def reap_child(reactor: Any, proc: ChildProcess, ptransport: Any, steps: Iterable[Step], *, kind: str,
                     error: type[Exception] = ProcessDutError, notes: list[str] | None = None) -> None:
    """Walk ``steps`` (a polite request, a callable; or a signal; each with its grace in wall seconds)
    until ``proc`` has ended; raise ``error`` if it survived them all. A polite request that fails is
    noted in ``notes`` and the walk goes on to the signals."""
    steps = list(steps)
    for step, grace in steps:
        if proc.ended:
            return
        try:
            if callable(step):
                step()
            else:
                ptransport.signalProcess(step)
        except (ProcessExitedAlready, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - a polite request that failed: go on to signals
            if notes is not None:
                notes.append(f"stop: {e}")
        await deadline(reactor, proc.when_ended(), grace)
    if not proc.ended:
        raise error(f"{kind} pid {proc.pid} did not exit after {', '.join(_step_name(s) for s, _ in steps)}")


class ProcessDut(HarnessErrorsEndWaits):
    """A phone in a child process, on the real clock; subclasses say how to start, command and stop it."""

    exact_time = False
    interp_binding = False
    validates_config = False
    default_clock = "real"
    clocks: tuple[str, ...] = ("real",)
    needs_preflight = True
    #: the translation table's column (harness.translation.STACKS); None: no table (a vendor phone reads the .cfg itself)
    stack: str | None = None
    #: the error class of this kind (a subclass of ProcessDutError names the kind in tracebacks)
    Error: type[ProcessDutError] = ProcessDutError
    LabProblem: type[ProcessDutLabProblem] = ProcessDutLabProblem
    #: wall seconds each step of stopping may take: a polite request, each TERM, KILL
    QUIT_GRACE, TERM_GRACE, KILL_GRACE = 3.0, 2.0, 5.0

    def __init__(self, clock: Any, *, reactor: Any = None):
        super().__init__(clock)
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self._reactor = reactor
        self.notes: list[str] = []
        self._cfg: dict[str, str] | None = None
        self._proc: ChildProcess | None = None
        self._ptransport: Any = None
        self._stopping: defer.Deferred | None = None
        self._up = False
        self.directory: str | None = None  # the kind's files for this start (configuration, logs), removed at stop

    # ------------------------------------------------------------------ configuration
    def apply_config(self, cfg_text: str) -> defer.Deferred:
        """Read the ``.cfg``; a key the stack cannot express fails with :class:`NotExpressible`."""
        try:
            cfg = translation.read_cfg(cfg_text, f"<{self.kind} dut .cfg>")
            if self.stack is not None:
                self.notes = translation.check(cfg, self.stack)
        except Exception as e:  # noqa: BLE001 - a ValueError naming the line, or NotExpressible
            return defer.fail(e)
        self._cfg = cfg
        self.cfg_text = cfg_text
        return defer.succeed(None)

    def effective_config(self) -> dict[str, str]:
        raise NotImplementedError(f"the {self.kind} DUT cannot report its configuration in .cfg terms")

    # ------------------------------------------------------------------ the child process
    def _program(self, name: str, package: str, option: str) -> str:
        """The full path of ``name``, or a lab problem naming the package and the option."""
        found = shutil.which(name)
        if found is None:
            raise self.LabProblem(f"{self.kind} DUT: program {name!r} not found",
                                  f"install it (Debian package '{package}') or give {option} PATH")
        return found

    def _spawn(self, proc: ChildProcess, argv: list[str], *, env: dict[str, str] | None = None,
               path: str | None = None, child_fds: dict[int, Any] | None = None) -> None:
        """Start ``argv`` with ``proc`` as its protocol; it is tracked until it ends."""
        if self._proc is not None and not self._proc.ended:
            raise self.Error(f"{self.kind} DUT: already running (pid {self.pid}): stop() it first")
        proc.exit_callbacks.append(self._child_ended)
        self._ptransport = spawn_child(self._reactor, proc, argv, kind=self.kind, error=self.Error, env=env,
                                       path=path, child_fds=child_fds)
        self._proc = proc
        self._argv = argv
        self._up = False

    def _ready(self) -> None:
        """The child is up (started, its control channel answers): from now on an exit nobody asked for is a crash."""
        self._up = True

    def _child_ended(self, proc: ChildProcess) -> None:
        if proc is self._proc and self._stopping is None and self._up:
            self._fail(self.Error(f"{self.kind} ({shlex.join(getattr(self, '_argv', []))}) exited unexpectedly "
                                  f"(status {proc.status}); its output:\n{self._output(proc)}"))

    def _output(self, proc: ChildProcess) -> str:
        out = getattr(proc, "output", None)
        return out() if callable(out) else proc.err.decode("utf-8", "replace")[-1500:] or "(no output)"

    def _stop_steps(self) -> Iterable[Step]:
        """How to stop this kind: its polite request first where it has one (:meth:`_quit`), then signals."""
        quit_ = self._quit()
        return ([(quit_, self.QUIT_GRACE)] if quit_ is not None else []) + [
            (signal.SIGTERM, self.TERM_GRACE), (signal.SIGKILL, self.KILL_GRACE)]

    def _quit(self) -> Callable[[], None] | None:
        """Hook: a callable that asks the running child to quit by its own means (None: it has none now)."""
        return None

    def stop(self) -> defer.Deferred:
        if self._stopping is not None:
            return self._stopping
        if self._proc is None:
            self._cleanup()
            return defer.succeed(None)
        d = defer.ensureDeferred(self._reap())

        def done(result: Any) -> Any:
            self._stopping = None
            return result
        self._stopping = d
        d.addBoth(done)
        return d

    async def _reap(self) -> None:
        """Walk the stop steps with their deadlines; the process is gone when this returns (or it raises)."""
        proc, ptransport = self._proc, self._ptransport
        try:
            if proc is not None and not proc.ended:
                await reap_child(self._reactor, proc, ptransport, self._stop_steps(), kind=self.kind,
                                 error=self.Error, notes=self.notes)
        finally:
            self._proc = self._ptransport = None
            self._cleanup()

    def _cleanup(self) -> None:
        """Remove what the start left (its directory); called once the process is gone. Kinds extend it."""
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when stopped)."""
        return self._proc.pid if self._proc is not None and not self._proc.ended else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._proc.ended

    # ------------------------------------------------------------------ failures end the test's waits
    def _fail(self, err: BaseException) -> None:
        """A harness error (the child died, the driver broke): every pending and later wait fails with it."""
        self.errors.append(err)
        self.serving_errors.append(err)
        self.notes.append(str(err).splitlines()[0])
        self._fail_waits(err)

    def _within(self, d: defer.Deferred, seconds: float, what: str) -> defer.Deferred:
        """``d``'s result, or this kind's error "did not <what> within S s" after ``seconds`` of wall time."""
        out: defer.Deferred = defer.Deferred()

        def expire() -> None:
            if not out.called:
                out.errback(self.Error(f"{self.kind} DUT: did not {what} within {seconds:g} s"))
        timer = self._reactor.callLater(seconds, expire)

        def done(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if not out.called:
                out.errback(result) if isinstance(result, Failure) else out.callback(result)
            elif isinstance(result, Failure):
                pass  # (too late: the expiry was reported)
        d.addBoth(done)
        return out

    # ------------------------------------------------------------------ events and commands
    def _emit(self, kind: EventKind, time: float | None = None, **fields: Any) -> None:
        self.events.append(DutEvent(time=self.clock.seconds() if time is None else time, kind=kind, **fields))

    def _safe(self, work: Any, what: str, account: int = 1) -> defer.Deferred:
        """A command the suites fire and forget: a failure is a ``call_state failed`` event, never unhandled."""
        d = work if isinstance(work, defer.Deferred) else defer.ensureDeferred(work)

        def failed(f: Failure) -> None:
            self.notes.append(f"{what}: {f.getErrorMessage()}")
            self._emit(EventKind.CALL_STATE, account=account, state=CallState.FAILED,
                       detail=f"{what}: {f.getErrorMessage()}")
        return d.addCallback(lambda _: None).addErrback(failed)

    @property
    def log(self) -> list[str]:
        lines = list(self.notes)
        if self._proc is not None:
            lines += self._output(self._proc).splitlines()[-60:]
        return lines


def _step_name(step: Any) -> str:
    if isinstance(step, signal.Signals):
        return step.name.removeprefix("SIG")
    if isinstance(step, int):
        return signal.Signals(step).name.removeprefix("SIG")
    return getattr(step, "__name__", "quit").strip("_")


def pause(reactor: Any, seconds: float) -> defer.Deferred:
    """A wall-clock pause between retries of a process step (never a test's wait)."""
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d

